"""The one configuration object of the runtimes, read from REFSTREAM_* environment variables.

Built once at the edge (CLI, worker start) and passed down explicitly; nothing below reads
the environment itself.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# A fixed development secret keeps the embedded demo reproducible; deployments must set
# REFSTREAM_PII_SECRET (workers log a warning while they run with this one).
DEVELOPMENT_PII_SECRET = "refstream-development-secret-do-not-use-in-production"


class Settings(BaseSettings):
    """Everything a refstream process needs to know about where it runs."""

    model_config = SettingsConfigDict(env_prefix="REFSTREAM_", extra="ignore")

    kafka_bootstrap: str = Field(default="127.0.0.1:9092", description="host:port[,host:port]")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    pii_secret: SecretStr = SecretStr(DEVELOPMENT_PII_SECRET)
    known_shops: list[str] = Field(
        default_factory=list, description="shop ids ingest accepts; empty accepts any shop"
    )
    max_event_bytes: int = 1_048_576
    # Opt-in: when set, ingest writes customer ids to the log as per-person tokens kept in
    # this SQLite file, so `refstream erase` can make one person unrecoverable.
    person_vault: Path | None = None

    topic_prefix: str = "refstream"
    shop_topic_prefix: str = "shop"
    partitions: int = 6
    replication_factor: int = 1
    app_id: str = "refstream"
    data_dir: Path = Path("out/state")
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    checkpoint_interval_s: float = 2.0
    # The pipeline stage's consumer (streams/pipeline_stage.py): how long a fetch may wait for
    # records (faust's own consumer waits 1.5 s, fixed), how many records one batch takes,
    # and how long its producer lets a request fill before sending.
    fetch_max_wait_ms: int = Field(default=25, ge=0)
    pipeline_max_records: int = Field(default=5000, ge=1)
    producer_linger_ms: int = Field(default=5, ge=0)
    # Snapshot the pipeline's state in a forked child (streams/checkpoint.py), so the event
    # loop pays only the fork; off (or without os.fork) it pickles in the worker itself.
    checkpoint_in_background: bool = True
    # How fast the group notices a dead worker (kill -9) and moves its partitions.
    session_timeout_s: float = 10.0
    tick_interval_s: float = 5.0
    # Ingest appends each batch it consumed within this window in event-time order.
    ingest_batch_s: float = 0.25
    rules_path: Path | None = None

    def pii_secret_bytes(self) -> bytes:
        return self.pii_secret.get_secret_value().encode()

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of the configured protocol for faust/aiokafka (None without TLS)."""
        if not self.security_protocol.endswith("SSL"):
            return None
        context = ssl.create_default_context(
            cafile=str(self.ssl_cafile) if self.ssl_cafile else None
        )
        if self.ssl_certfile:
            context.load_cert_chain(
                str(self.ssl_certfile), str(self.ssl_keyfile) if self.ssl_keyfile else None
            )
        return context

    def aiokafka_security(self) -> dict[str, object]:
        """Client settings for an aiokafka client of its own (faust gets `broker_credentials`)."""
        return {"security_protocol": self.security_protocol, "ssl_context": self.ssl_context(),
                **self._sasl_options()}

    def kafka_security(self) -> dict[str, object]:
        """Client settings for kafka-python (faust/aiokafka get `broker_credentials`)."""
        options: dict[str, object] = {"security_protocol": self.security_protocol,
                                      **self._sasl_options()}
        if self.security_protocol.endswith("SSL"):
            options["ssl_cafile"] = str(self.ssl_cafile) if self.ssl_cafile else None
            options["ssl_certfile"] = str(self.ssl_certfile) if self.ssl_certfile else None
            options["ssl_keyfile"] = str(self.ssl_keyfile) if self.ssl_keyfile else None
        return options

    def _sasl_options(self) -> dict[str, object]:
        if not self.security_protocol.startswith("SASL"):
            return {}
        return {
            "sasl_mechanism": self.sasl_mechanism,
            "sasl_plain_username": self.sasl_username,
            "sasl_plain_password": (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            ),
        }
