"""refstream and a Confluent-compatible schema registry: fetching writer schemas by id or
GUID for ingest, registering refstream's own schemas, and the codec a worker uses.

The REST calls are the Confluent Schema Registry API (`GET /schemas/ids/{id}`,
`GET /schemas/guids/{guid}`, `POST /subjects/{subject}/versions`), which Confluent's
registry, Apicurio's `/apis/ccompat/v7` and Karapace all serve. Subjects follow
TopicRecordNameStrategy (`schemas.registry.subject_name`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from refstream.schemas.codec import Codec
from refstream.schemas.errors import DependencyUnavailable, Refused
from refstream.schemas.registry import SchemaNotFound, subject_name
from refstream.streams.settings import Settings
from refstream.streams.topics import TopicNames

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


# The Confluent API's error_code for a schema (id, GUID) the registry does not have.
SCHEMA_NOT_FOUND = 40403


class RegistryUnavailable(DependencyUnavailable):
    """The registry did not answer (after retries) or answered with a server error.

    Ingest lets this stop the worker instead of dead-lettering records it could have read:
    restarted, the worker resumes from its committed offsets once the registry is back.
    """


class RegistryRejected(Refused):
    """The registry refused a schema (incompatible with the subject's versions, invalid)."""


@dataclass(frozen=True)
class RegistryConfig:
    url: str  # e.g. http://registry:8081 or http://apicurio:8080/apis/ccompat/v7
    timeout_s: float = 10.0
    retries: int = 4
    username: str | None = None
    password: str | None = None


class HttpSchemaRegistry:
    """A `SchemaResolver` over HTTP, plus registration; retries connection and 5xx errors
    with backoff (urllib3's Retry), and says which registry and call failed."""

    def __init__(self, config: RegistryConfig) -> None:
        self._config = config
        self._base = config.url.rstrip("/")
        self._session = requests.Session()
        retry = Retry(total=config.retries, backoff_factor=0.3, allowed_methods=None,
                      status_forcelist=(500, 502, 503, 504), raise_on_status=False)
        adapter = HTTPAdapter(max_retries=retry)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        if config.username is not None:
            self._session.auth = (config.username, config.password or "")
        self._session.headers["Accept"] = _CONTENT_TYPE

    def close(self) -> None:
        self._session.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None
              ) -> tuple[int, dict[str, Any]]:
        url = f"{self._base}{path}"
        try:
            reply = self._session.request(
                method, url, timeout=self._config.timeout_s,
                data=None if body is None else json.dumps(body),
                headers=None if body is None else {"Content-Type": _CONTENT_TYPE})
        except requests.RequestException as exc:
            raise RegistryUnavailable(
                f"schema registry {self._base} did not answer {method} {path}: {exc}; "
                "check REFSTREAM_SCHEMA_REGISTRY_URL and that the registry runs") from exc
        if reply.status_code >= 500:
            raise RegistryUnavailable(
                f"schema registry {self._base} answered {reply.status_code} to {method} {path}: "
                f"{reply.text[:300]}")
        try:
            payload = reply.json() if reply.content else {}
        except ValueError as exc:
            raise RegistryUnavailable(
                f"schema registry {self._base} answered {method} {path} with non-JSON "
                f"({reply.status_code}): {reply.text[:300]}") from exc
        return reply.status_code, payload if isinstance(payload, dict) else {"value": payload}

    def _schema(self, path: str, what: str) -> str:
        status, payload = self._call("GET", path)
        if status == 404 and payload.get("error_code", SCHEMA_NOT_FOUND) != SCHEMA_NOT_FOUND:
            # A 404 that is not the API's "schema not found" (40403): the registry has no such
            # endpoint (Apicurio's Confluent API has no /schemas/guids, for one).
            raise SchemaNotFound(
                f"schema registry {self._base} does not serve GET {path} "
                f"({payload.get('message', 'not found')}), so {what} cannot be looked up "
                "there; use a registry whose Confluent API serves it, or produce with the "
                "schema id (magic 00)")
        if status == 404:
            raise SchemaNotFound(
                f"{what} is not in schema registry {self._base} "
                f"({payload.get('message', 'not found')}); was the record produced against "
                "another registry?")
        if status != 200 or "schema" not in payload:
            raise RegistryUnavailable(
                f"schema registry {self._base}: GET {path} answered {status}: {payload}")
        schema_type = payload.get("schemaType", "AVRO")
        if schema_type != "AVRO":
            raise SchemaNotFound(f"{what} is a {schema_type} schema; refstream reads Avro only")
        return str(payload["schema"])

    def schema_by_id(self, schema_id: int) -> str:
        return self._schema(f"/schemas/ids/{schema_id}", f"schema id {schema_id}")

    def schema_by_guid(self, guid: str) -> str:
        return self._schema(f"/schemas/guids/{guid}", f"schema GUID {guid}")

    def register(self, subject: str, schema: Mapping[str, Any]) -> int:
        """The id of `schema` under `subject`, registering it as a new version if needed; the
        registry checks compatibility with the subject's earlier versions."""
        status, payload = self._call("POST", f"/subjects/{quote(subject, safe='')}/versions",
                                     {"schema": json.dumps(schema), "schemaType": "AVRO"})
        if status in (200, 201) and isinstance(payload.get("id"), int):
            return int(payload["id"])
        raise RegistryRejected(
            f"schema registry {self._base} refused {subject} ({status}): "
            f"{payload.get('message', payload)}")


def output_records(names: TopicNames) -> dict[str, tuple[str, ...]]:
    """Which records refstream writes to each output topic (several share a topic)."""
    return {
        names.attributions: ("refstream.derived.Attribution",),
        names.fraud_flags: ("refstream.derived.FraudFlag",),
        names.reward_due: ("refstream.derived.RewardDue", "refstream.derived.RewardReversal"),
        names.rewards: ("refstream.derived.RewardStatus",),
    }


def register_output_schemas(registry: HttpSchemaRegistry, names: TopicNames,
                            codec: Codec) -> dict[str, int]:
    """Registers the newest version of every output record under its
    TopicRecordNameStrategy subject; record full name -> schema id."""
    ids: dict[str, int] = {}
    for topic, records in output_records(names).items():
        for full_name in records:
            ids[full_name] = registry.register(subject_name(topic, full_name),
                                               codec.newest(full_name).declared)
    return ids


def registry_config(settings: Settings) -> RegistryConfig | None:
    if not settings.schema_registry_url:
        return None
    password = settings.schema_registry_password
    return RegistryConfig(settings.schema_registry_url,
                          username=settings.schema_registry_username,
                          password=password.get_secret_value() if password else None)


def reader_codec(settings: Settings) -> Codec:
    """The codec of a process that only reads refstream's topics (projector, finance): with
    a registry configured, it also reads outputs a worker wrote in registry framing."""
    config = registry_config(settings)
    return Codec() if config is None else Codec(resolver=HttpSchemaRegistry(config))


def worker_codec(settings: Settings) -> Codec:
    """The codec a worker uses: single-object encoding only without a registry; with
    REFSTREAM_SCHEMA_REGISTRY_URL it also reads registry-framed shop records, and with
    REFSTREAM_REGISTRY_FRAMED_OUTPUTS it registers and writes its outputs in that framing."""
    config = registry_config(settings)
    if config is None:
        return Codec()
    registry = HttpSchemaRegistry(config)
    ids: dict[str, int] = {}
    if settings.registry_framed_outputs:
        ids = register_output_schemas(registry, TopicNames.from_settings(settings), Codec())
    return Codec(resolver=registry, registry_ids=ids)
