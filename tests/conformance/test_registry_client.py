"""refstream's registry client against the session's real registry (no Kafka): registering is
idempotent, a registered schema reads back by id, and the two kinds of 404 (a schema the
registry does not have, a lookup it does not serve) are told apart."""

from __future__ import annotations

import json
import uuid
from typing import Any

import fastavro
import pytest
import requests

from refstream.schemas.codec import Codec
from refstream.schemas.registry import SchemaNotFound, subject_name
from refstream.streams.schema_registry import HttpSchemaRegistry, RegistryConfig

pytestmark = pytest.mark.slow
CODEC = Codec()


def canonical(schema: Any) -> str:
    return str(fastavro.schema.to_parsing_canonical_form(fastavro.parse_schema(schema)))


def test_register_twice_is_one_id_and_reads_back(schema_registry_url: str) -> None:
    registry = HttpSchemaRegistry(RegistryConfig(schema_registry_url))
    declared = CODEC.newest("refstream.derived.FraudFlag").declared
    subject = subject_name(f"client-{uuid.uuid4().hex[:8]}", "refstream.derived.FraudFlag")
    first = registry.register(subject, declared)
    assert registry.register(subject, declared) == first
    assert canonical(json.loads(registry.schema_by_id(first))) == canonical(declared)


def test_unknown_id_is_not_found(schema_registry_url: str) -> None:
    registry = HttpSchemaRegistry(RegistryConfig(schema_registry_url))
    with pytest.raises(SchemaNotFound, match="schema id 987654 is not in schema registry"):
        registry.schema_by_id(987654)


def test_guid_lookup_names_the_registry_or_the_schema(schema_registry_url: str) -> None:
    """A registry either serves /schemas/guids (then an unknown GUID is not found, 40403) or
    does not (Apicurio 2.4: a 404 of another kind, and the error says so instead of blaming
    the record)."""
    registry = HttpSchemaRegistry(RegistryConfig(schema_registry_url))
    guid = str(uuid.uuid4())
    answer = requests.get(f"{schema_registry_url}/schemas/guids/{guid}", timeout=10)
    assert answer.status_code == 404
    served = answer.json().get("error_code") == 40403
    expected = (f"schema GUID {guid} is not in schema registry" if served
                else f"does not serve GET /schemas/guids/{guid}")
    with pytest.raises(SchemaNotFound, match=expected):
        registry.schema_by_guid(guid)
