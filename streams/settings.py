"""The one configuration object of the runtimes, read from REFSTREAM_* environment variables.

Built once at the edge (CLI, worker start) and passed down explicitly; nothing below reads
the environment itself.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated, Literal

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
    # Every checkpoint_interval_s the pipeline records how far the broker acknowledged its
    # outputs (an O(1) write: the log between snapshots is the change); snapshots of the
    # state are paced below.
    checkpoint_interval_s: float = 2.0
    # The stages' consumers (streams/ingest_stage.py, pipeline_stage.py): how long a fetch
    # may wait for records (faust's own consumer waits 1.5 s, fixed), how many records one
    # batch takes, and how long their producers let a request fill before sending.
    fetch_max_wait_ms: int = Field(default=25, ge=0)
    # ... and how many bytes a fetch waits for (up to the fetch wait) before it answers.
    fetch_min_bytes: int = Field(default=1, ge=1)
    # ... and how many bytes one fetch takes from each partition at most: with a backlog,
    # each answer is this large. 1 MiB, Kafka's own default: 16 MiB answers cost the
    # pipeline stage a fifth more CPU per event at a million events (README, "The live
    # pipeline at Kafka speed", sessions 18 and 19). A record larger than this (shop topics
    # accept 16 MiB, for the DLQ) still comes whole when its partition is the first with
    # data in a fetch, and aiokafka shuffles the partitions of every fetch.
    fetch_max_partition_bytes: int = Field(default=1024 * 1024, ge=1024)
    # The long-running processes' asyncio event loop (faust's own switch, mode.loop.use):
    # uvloop (libuv, already a dependency of `refstream serve`) runs the stages' sockets and
    # callbacks for less CPU per record; "aio" is the standard library's loop.
    event_loop: Literal["uvloop", "aio"] = "uvloop"
    # The long-running processes' cyclic garbage collector: a young collection after this
    # many allocations net of frees (Python's own default is 700; a worker allocates dozens
    # of objects per record, so it collected every few records), and what exists once the
    # process is built (modules, the app) is frozen out of every later collection. Most of
    # what a young collection finds alive is held only briefly (records in the merge, the
    # handoff, a fetch); collected rarely, it is freed before anything scans it: at 1M events
    # in one process, one collection of 0.35-0.41 s against 7-11 (0.84-1.82 s in all, the
    # longest 274-352 ms) at 200,000 (README, session 21; refstream_gc_pause_seconds).
    gc_young_threshold: int = Field(default=1_000_000, ge=1)
    pipeline_max_records: int = Field(default=5000, ge=1)
    producer_linger_ms: int = Field(default=5, ge=0)
    # Take the pipeline's snapshot off the batch lock: the broker's acknowledgement and the
    # commit run while the stage goes on consuming; off, the stage waits for both itself.
    checkpoint_in_background: bool = True
    # The snapshot is pickled by a forked child (persistence/checkpoint.py; the loop pays only
    # the fork) when the partitions it covers were folded from more than this many log
    # records; a smaller state is pickled in the worker at once (tens of milliseconds), since
    # a child costs the worker a copy of every memory page it writes until the child exits
    # (copy-on-write), which cost more than the pickling at 100,000 events (README, session
    # 23). Without os.fork, always in the worker. 0: every snapshot forks.
    checkpoint_inline_max_events: int = Field(default=150_000, ge=0)
    # A snapshot costs O(state): snapshots are spaced so that snapshotting takes at most this
    # share of the pipeline's wall time (so at least checkpoint_interval_s apart, further as
    # the state grows), but never more than checkpoint_max_interval_s apart, which bounds the
    # log a restart re-applies silently (streams/pipeline_stage.py, CheckpointPacing).
    checkpoint_snapshot_share: float = Field(default=0.1, gt=0, le=1)
    checkpoint_max_interval_s: float = Field(default=120.0, gt=0)
    # How fast the group notices a dead worker (kill -9) and moves its partitions.
    session_timeout_s: float = 10.0
    tick_interval_s: float = 5.0
    ingest_max_records: int = Field(default=5000, ge=1)
    # How often ingest commits its shop-topic offsets (after flushing what it appended): a
    # crash re-reads at most this much, which the core dedupes.
    ingest_commit_interval_s: float = Field(default=1.0, gt=0)
    # Event time at the edge (README, "Event time at ingest"). Ingest merges a shop's topics
    # by event time and waits at most this long (wall time, from each record's arrival) for
    # an empty shop topic-partition before appending the rest of its co-partition without it
    # (Kafka Streams' max.task.idle.ms, bounded per record rather than per quiet spell): a
    # stall up to this long delays the log instead of reordering it.
    merge_idle_s: float = Field(default=1.0, ge=0)
    # Dead-letter events dated further ahead of ingest's wall clock than this (clock skew)
    # or older than the horizon (1970 and the like; raise it for older backfills).
    future_tolerance_s: float = Field(default=300.0, ge=0)
    event_horizon_days: float = Field(default=3650.0, gt=0)
    # A shop credential speaks only for its shop: principal -> shop id. Each listed shop
    # publishes on its own topics (<shop_topic_prefix>.<shop id>.<type>), which only its
    # principal may write (deploy/acls.py); ingest dead-letters an event whose shop_id is
    # not the topic's shop, and events of these shops arriving on the shared topics.
    shop_principals: dict[str, str] = Field(default_factory=dict)
    rules_path: Path | None = None
    # A Confluent-compatible schema registry (docs/producers.md): ingest then also reads
    # records in registry framing; with registry_framed_outputs the worker registers its
    # output schemas and writes its output topics in that framing.
    schema_registry_url: str = ""
    schema_registry_username: str | None = None
    schema_registry_password: SecretStr | None = None
    registry_framed_outputs: bool = False

    # `refstream serve`, the HTTP edge (docs/serve.md). Shop events it makes (code issued,
    # click) go to the shop topics ("kafka") or are appended to `web_event_log` ("log").
    web_host: str = "127.0.0.1"
    web_port: int = 8080
    web_public_url: str = Field(default="http://127.0.0.1:8080",
                                description="the service's address as visitors reach it")
    web_publish_to: Literal["log", "kafka"] = "log"
    web_event_log: Path = Path("out/serve/events.jsonl")
    web_registry: Path = Path("out/serve/registry.sqlite")
    # The analysts' published snapshot the status pages read (never the writer's file).
    web_snapshot: Path = Path("out/serve/analysts.duckdb")
    # shop id -> API key for the issuing API; a shop without a key cannot issue codes.
    web_api_keys: dict[str, SecretStr] = Field(default_factory=dict)
    # shop id -> landing URL a followed link redirects to; others get the default.
    web_landing_urls: dict[str, str] = Field(default_factory=dict)
    web_default_landing_url: str = "https://shop.example/"
    # campaign id -> percent off that the shop's checkout gives the people a referrer sends:
    # passed to the landing page on every followed link and shown on the share page. An
    # offer of the shop's, not a reward: refstream never sees checkout prices.
    web_referee_discounts: dict[str, Annotated[int, Field(ge=0, le=100)]] = Field(
        default_factory=dict)
    # Followed links counted per client IP: a bucket of `burst` refilled at this rate.
    web_clicks_per_minute: float = 60.0
    web_click_burst: int = 20

    # Reward webhooks (refstream webhooks): one endpoint per shop, signed with its secret.
    webhook_endpoints: dict[str, str] = Field(default_factory=dict)
    webhook_secrets: dict[str, SecretStr] = Field(default_factory=dict)
    webhook_outbox: Path = Path("out/serve/webhooks.sqlite")
    webhook_backoff_base_s: float = 30.0
    webhook_backoff_cap_s: float = 3600.0
    # Retries stop (dead letter) once the next attempt would start after this budget.
    webhook_retry_budget_s: float = 26 * 3600.0
    webhook_timeout_s: float = 10.0

    # Bounds on waiting for the broker. A command (produce, topics create, dlq, finance-tail,
    # replay from the topic) that gets no answer for this long stops with exit code 4.
    client_timeout_s: float = 60.0
    # A long-running process probes the broker this often; readiness fails while it is down.
    broker_probe_interval_s: float = 5.0
    # SIGTERM: the final flush + checkpoint may take this long, the whole shutdown this long.
    drain_timeout_s: float = 10.0
    shutdown_timeout_s: float = 30.0

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
