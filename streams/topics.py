"""Topic names and specifications (partitions, retention, compaction), and their creation.

Creating topics is code, not a manual step: `refstream topics create` and every runtime call
`ensure_topics`, which creates what is missing and leaves existing topics alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

from refstream.schemas.shop import SHOP_MODELS
from refstream.streams.settings import Settings

SHOP_EVENT_TYPES = tuple(SHOP_MODELS)
FOREVER = "-1"
# The worker's stages, each reading with a consumer group of its own (README, "Stages").
STAGES = ("ingest", "pipeline", "archiver")


def stage_group(app_id: str, stage: str) -> str:
    """A stage's consumer group: apart from faust's group (the app id) and from each other,
    so a member is never handed partitions meant for another stage."""
    return f"{app_id}.{stage}"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    purpose: str = ""


@dataclass(frozen=True)
class TopicNames:
    """Every topic name, derived from the settings' prefixes (each built once: the stages
    name a topic per record they send)."""

    shop_prefix: str
    prefix: str

    @classmethod
    def from_settings(cls, settings: Settings) -> TopicNames:
        return cls(settings.shop_topic_prefix, settings.topic_prefix)

    def shop(self, event_type: str) -> str:
        return f"{self.shop_prefix}.{event_type}"

    @cached_property
    def shop_topics(self) -> tuple[str, ...]:
        return tuple(self.shop(t) for t in SHOP_EVENT_TYPES)

    def own_shop(self, shop_id: str, event_type: str) -> str:
        """A topic of one shop's own (with REFSTREAM_SHOP_PRINCIPALS): only it may write it."""
        return f"{self.shop_prefix}.{shop_id}.{event_type}"

    def topic_for(self, shop_id: str, event_type: str, own_topic_shops: Iterable[str]) -> str:
        """Where a shop publishes an event: its own topic if it has them, else the shared one."""
        if shop_id in own_topic_shops:
            return self.own_shop(shop_id, event_type)
        return self.shop(event_type)

    def own_shop_topics(self, shop_ids: Iterable[str]) -> tuple[str, ...]:
        return tuple(self.own_shop(shop, t) for shop in sorted(set(shop_ids))
                     for t in SHOP_EVENT_TYPES)

    @cached_property
    def log(self) -> str:
        return f"{self.prefix}.log"

    @cached_property
    def dlq(self) -> str:
        return f"{self.prefix}.dlq"

    @cached_property
    def attributions(self) -> str:
        return f"{self.prefix}.attributions"

    @cached_property
    def fraud_flags(self) -> str:
        return f"{self.prefix}.fraud-flags"

    @cached_property
    def reward_due(self) -> str:
        return f"{self.prefix}.reward-due"

    @cached_property
    def rewards(self) -> str:
        return f"{self.prefix}.rewards"

    def event_type_of(self, shop_topic: str) -> str | None:
        head, _, tail = shop_topic.partition(".")
        event_type = tail.rpartition(".")[2]  # shop.<type> or a shop's own shop.<id>.<type>
        return event_type if head == self.shop_prefix and event_type in SHOP_EVENT_TYPES else None


# Shop topics accept records up to 16 MiB so an oversized event reaches ingest and ends in
# the DLQ with its error, instead of failing invisibly in some producer's retry loop.
_LARGE_RECORDS = {"max.message.bytes": str(16 * 1024 * 1024)}


def min_insync_replicas(replication_factor: int) -> int:
    """Replicas that must hold a write before `acks=all` succeeds: 2 of 3 (one broker may
    be down, and no acknowledged write lives on one disk only); 1 below three replicas,
    where 2 would stop every write while one broker is down."""
    return 2 if replication_factor >= 3 else 1


def durability(replication_factor: int) -> dict[str, str]:
    """Every topic: acknowledged writes survive a broker loss, and a replica that missed
    writes never becomes leader (that would silently drop acknowledged records)."""
    return {"min.insync.replicas": str(min_insync_replicas(replication_factor)),
            "unclean.leader.election.enable": "false"}


def topic_specs(names: TopicNames, partitions: int,
                replication_factor: int = 1,
                own_topic_shops: Iterable[str] = ()) -> list[TopicSpec]:
    safe = durability(replication_factor)
    shop = [
        TopicSpec(t, partitions, {"retention.ms": str(7 * 24 * 3600 * 1000), **_LARGE_RECORDS,
                                  **safe},
                  "raw shop events; ingest reads them")
        for t in (*names.shop_topics, *names.own_shop_topics(own_topic_shops))
    ]
    derived = {"retention.ms": FOREVER, "cleanup.policy": "delete", **safe}
    return [
        *shop,
        TopicSpec(names.log, partitions, {"retention.ms": FOREVER, "retention.bytes": "-1",
                                          "cleanup.policy": "delete", **safe},
                  "the canonical log: kept forever, never compacted"),
        TopicSpec(names.dlq, partitions, {"retention.ms": FOREVER, **_LARGE_RECORDS, **safe},
                  "records ingest rejected, with original bytes and error"),
        TopicSpec(names.attributions, partitions, derived, "attribution decisions"),
        TopicSpec(names.fraud_flags, partitions, derived, "fraud flags with evidence"),
        # Not compacted: a reversal and its due event share no key, and finance audits history.
        TopicSpec(names.reward_due, partitions, derived, "rewards due and reversals (finance)"),
        TopicSpec(names.rewards, partitions, derived, "reward lifecycle (pending/held/due/...)"),
    ]


def ensure_topics(settings: Settings, timeout_s: float | None = None, *,
                  strict: bool = False) -> list[str]:
    """Create the missing topics; returns the names created.

    Runtimes call it lenient: with ACLs only the topics principal creates topics, and
    topics a principal may not describe look missing. `refstream topics create` calls it
    `strict`: a topic it was refused is an error (exit 5), not "created 0 topics". A broker
    that does not answer within `timeout_s` (default: the settings' client timeout) is
    `BrokerUnavailable` (exit 4) either way.
    """
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import (
        KafkaError,
        TopicAlreadyExistsError,
        TopicAuthorizationFailedError,
    )

    from refstream.streams.exit_codes import BrokerRefused, broker_error

    bound_s = settings.client_timeout_s if timeout_s is None else timeout_s
    action = "creating the topics"
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap,
            request_timeout_ms=int(bound_s * 1000),
            bootstrap_timeout_ms=int(bound_s * 1000),
            **settings.kafka_security(),
        )
    except KafkaError as exc:
        raise broker_error(action, settings.kafka_bootstrap, exc, bound_s) from exc
    try:
        existing = set(admin.list_topics())
        wanted = [
            s for s in topic_specs(TopicNames.from_settings(settings), settings.partitions,
                                   replication_factor=settings.replication_factor,
                                   own_topic_shops=settings.shop_principals.values())
            if s.name not in existing
        ]
        created: list[str] = []
        refused: list[str] = []
        for spec in wanted:
            try:
                admin.create_topics(
                    [NewTopic(spec.name, spec.partitions, settings.replication_factor,
                              topic_configs=spec.config)]
                )
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass  # another worker created it between list and create
            except TopicAuthorizationFailedError:
                refused.append(spec.name)
        if strict and refused:
            raise BrokerRefused(
                f"{action}: the broker at {settings.kafka_bootstrap} refused to create "
                f"{len(refused)} of {len(wanted)} missing topics ({', '.join(refused)}); "
                "created: " + (", ".join(created) or "none") + ". Run it as the topics "
                "principal (docs/security.md, \"Who may do what\") or ask the cluster admin")
        return created
    except KafkaError as exc:
        raise broker_error(action, settings.kafka_bootstrap, exc, bound_s) from exc
    finally:
        admin.close()
