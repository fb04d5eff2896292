"""The replay jobs: fold the archived log (or the topic) under any rules, compare two
projection databases, publish the corrections, and compare attribution models."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from refstream.jobs.common import as_jsonable, epoch_ms, progress_bar
from refstream.jobs.rules import announced_rules
from refstream.schemas.status import (
    ACTIVE_REFERRAL_STATUSES,
    OWED_REWARD_STATUSES,
    AttributionStatus,
    RewardKind,
    sql_list,
    sql_literal,
)
from refstream.streams.exit_codes import EXIT_OK
from refstream.streams.settings import Settings

# One row per attribution model: active referrals, qualified ones, referrers, money owed.
_MODEL_SUMMARY_SQL = f"""
    SELECT count(*) FILTER (WHERE status IN {sql_list(ACTIVE_REFERRAL_STATUSES)}),
           count(*) FILTER (WHERE status = {sql_literal(AttributionStatus.QUALIFIED)}),
           count(DISTINCT referrer_id),
           (SELECT coalesce(sum(amount_minor), 0) FROM rewards
             WHERE status IN {sql_list(OWED_REWARD_STATUSES)}
               AND kind <> {sql_literal(RewardKind.POINTS)})
    FROM referrals"""


def replay(settings: Settings, db_path: Path, *, archive: str | None, rules_path: str | None,
           as_of_time: str | None, as_of_offsets: str | None, diff_against: Path | None,
           fmt: str) -> int:
    """Replay the archive (or the log topic from offset 0) into a fresh `db_path`."""
    from refstream.persistence.archive import ArchiveReader
    from refstream.persistence.store import ProjectionStore
    from refstream.replay.engine import replay_archive, replay_events
    from refstream.replay.sources import AsOf, events_of, topic_records
    from refstream.streams.topics import TopicNames

    rules = announced_rules(rules_path)
    as_of = AsOf.parse(epoch_ms(as_of_time, "--as-of-time"), as_of_offsets)
    db_path.unlink(missing_ok=True)
    store = ProjectionStore(db_path)
    try:
        if archive and Path(archive, "_commits").is_dir():
            source = f"archive {archive}"
            total = ArchiveReader(archive).record_count
            with progress_bar(total, "ev", f"replay {rules.version}") as advance:
                counts = replay_archive(archive, rules, store, as_of, advance)
        else:
            topic = TopicNames.from_settings(settings).log
            records = topic_records(settings.kafka_bootstrap, topic, settings.kafka_security(),
                                    as_of, stall_timeout_s=settings.client_timeout_s)
            source = f"topic {topic} from offset 0"
            with progress_bar(None, "ev", f"replay {rules.version}") as advance:
                counts = replay_events(events_of(records), rules, store, advance)
    finally:
        store.close()
    print(f"replayed {counts.events} events from {source} with rules {rules.version} "
          f"in {counts.seconds:.1f}s ({counts.events_per_second:,.0f} events/s) -> {db_path}")
    if diff_against is not None:
        return print_diff(diff_against, db_path, fmt)
    return EXIT_OK


def diff(settings: Settings, before: Path, after: Path, fmt: str, *, apply: bool) -> int:
    """Print the diff from `before` to `after`; with `apply`, publish the corrections."""
    code = print_diff(before, after, fmt)
    if apply:
        publish_corrections(settings, before, after)
    return code


def publish_corrections(settings: Settings, before: Path, after: Path) -> int:
    """Publish the reward-due and reversal corrections from `before` to `after`; returns how
    many. Deterministic ids and bytes: publishing them again gives finance duplicates."""
    from refstream.replay.diff import corrections
    from refstream.streams.producer import kafka_producer
    from refstream.streams.schema_registry import worker_codec
    from refstream.streams.topics import TopicNames, ensure_topics

    ensure_topics(settings)
    messages = corrections(str(before), str(after))
    producer = kafka_producer(settings)
    # In registry framing too when the worker writes its outputs so.
    codec, topic = worker_codec(settings), TopicNames.from_settings(settings).reward_due
    for message in messages:
        producer.send(topic, key=message.reward_id.encode(), value=codec.encode(message))
    producer.flush()
    producer.close()
    print(f"published {len(messages)} corrections to {topic} (deterministic ids and "
          "bytes: publishing them again gives finance duplicates, never conflicts)")
    return len(messages)


def print_diff(before: Path, after: Path, fmt: str) -> int:
    from refstream.replay.diff import diff_projections
    from refstream.reports.tables_output import render_rows

    diff = diff_projections(before, after)
    if diff.before_version != diff.after_version:
        # Plain words on the side that a person reads (stdout for a table, stderr otherwise).
        print(f"note: the two sides ran under different rules versions: {diff.before} with "
              f"{diff.before_version}, {diff.after} with {diff.after_version}; differences "
              "below may come from the rules, not only from the log",
              file=sys.stdout if fmt == "table" else sys.stderr)
    if fmt == "json":
        print(json.dumps(as_jsonable({
            "before": diff.before, "after": diff.after, "before_version": diff.before_version,
            "after_version": diff.after_version,
            "same_rules_version": diff.before_version == diff.after_version,
            "entities": {k: {"added": v.added, "removed": v.removed, "changed": v.changed}
                         for k, v in diff.entities.items()},
            "money": [dict(as_jsonable(m), delta_minor=m.delta_minor) for m in diff.money],
        }), default=str, indent=2))
        return EXIT_OK
    money_rows = [(m.dimension, m.key, m.currency, m.before_minor, m.after_minor, m.delta_minor)
                  for m in diff.money]
    if fmt == "csv":
        print(render_rows(["dimension", "key", "currency", "before_minor", "after_minor",
                           "delta_minor"], money_rows, "csv"), end="")
        return EXIT_OK
    print(f"diff {diff.before} ({diff.before_version}) -> {diff.after} ({diff.after_version})")
    print(render_rows(["table", "added", "removed", "changed"], diff.summary_rows(), "table"))
    print(render_rows(["dimension", "key", "currency", "before", "after", "delta"], money_rows,
                      "table"))
    for name, entity in diff.entities.items():
        for kind, rows in (("added", entity.added), ("removed", entity.removed),
                           ("changed", entity.changed)):
            for row in rows[:5]:
                print(f"  {name} {kind}: {row}")
            if len(rows) > 5:
                print(f"  ... {len(rows) - 5} more {name} {kind}")
    return EXIT_OK


def compare_models(archive: str, *, rules_path: str | None, fmt: str) -> int:
    """First vs last touch, code override on/off, over the same log."""
    import tempfile

    from refstream.persistence.store import ProjectionStore
    from refstream.replay.engine import replay_archive
    from refstream.reports.tables_output import render_rows

    base = announced_rules(rules_path)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for model in ("last_touch", "first_touch"):
            for override in (True, False):
                attribution = base.attribution.model_copy(
                    update={"model": model, "code_overrides_link": override})
                rules = base.model_copy(update={
                    "attribution": attribution,
                    "version": f"{base.version}+{model}+override={override}"})
                store = ProjectionStore(Path(scratch) / f"{model}-{override}.duckdb")
                replay_archive(archive, rules, store)
                summary = store.connection.execute(_MODEL_SUMMARY_SQL).fetchone()
                store.close()
                assert summary is not None
                rows.append((model, "on" if override else "off", *summary))
    print(render_rows(["model", "code overrides link", "referrals", "qualified",
                       "referrers", "rewards owed (minor, non-points)"], rows, fmt))
    return EXIT_OK
