"""Decisions on the fraud review queue: a review event appended to the log the database was
built from (embedded: the JSON Lines file, applied at once) or published to shop.review."""

from __future__ import annotations

import json
from pathlib import Path

from refstream.jobs.rules import announced_rules
from refstream.reports.review import Decision, ReviewError, decision_event, held_referral_shop
from refstream.schemas.shop import ShopReview
from refstream.streams.settings import Settings


def decide(decision: Decision, *, events: str | None, db: str | None, archive: str | None,
           rules_path: str | None, bootstrap: str | None, shop: str | None) -> int:
    """Record a decision: embedded (append to --events, apply to --db) or on Kafka."""
    if bootstrap:
        return _decide_on_kafka(decision, bootstrap, db=db, shop=shop)
    if not (events and db):
        raise ReviewError("say where the log is: --events FILE.jsonl --db FILE.duckdb for an "
                          "embedded run, or --bootstrap HOST:PORT for Kafka")
    shop_id = held_referral_shop(db, decision.referral_id)
    event = decision_event(decision, shop_id)
    return _decide_embedded(event, Path(events), Path(db), archive=archive,
                            rules_path=rules_path)


def _decide_embedded(event: ShopReview, events_path: Path, db_path: Path, *,
                     archive: str | None, rules_path: str | None) -> int:
    from refstream.persistence.store import ProjectionStore
    from refstream.schemas.jsonl import to_json_object
    from refstream.streams.embedded import EmbeddedRunner

    if not events_path.is_file():
        raise ReviewError(f"no events file at {events_path}: the decision is appended to the "
                          "log the database was built from")
    line = json.dumps(to_json_object(event), separators=(",", ":"))
    rules = announced_rules(rules_path)
    settings = Settings()
    log = None
    if archive:
        from refstream.persistence.archive import ArchiveWriter
        from refstream.schemas.codec import Codec
        from refstream.streams.embedded import EmbeddedLog

        # The demo's log archive: replay from it sees the decision too.
        log = EmbeddedLog(ArchiveWriter(Path(archive)), Codec(), settings.partitions)
    store = ProjectionStore(db_path)
    try:
        runner = EmbeddedRunner(settings, rules, store,
                                log.append if log is not None else None)
        runner.restore_state()
        number = _append_line(events_path, line)
        summary = runner.run_lines(str(events_path), [(number, line)])
        runner.save_state()
        status = store.connection.execute(
            "SELECT status FROM referrals WHERE referral_id = ?", [event.referral_id]).fetchone()
    finally:
        if log is not None:
            log.close()
        store.close()
    if summary.dead_letters:
        raise ReviewError(summary.dead_letters[0].error)
    print(f"{event.decision}d referral {event.referral_id} as {event.reviewer_id}: appended "
          f"to {events_path}:{number} and applied to {db_path}; the referral is now "
          f"{status[0] if status else '?'}")
    return 0


def _append_line(path: Path, line: str) -> int:
    """Append one line to a JSON Lines file; returns its line number."""
    with path.open("rb") as stream:
        data = stream.read()
    with path.open("ab") as stream:
        if data and not data.endswith(b"\n"):
            stream.write(b"\n")
        stream.write(line.encode("utf-8") + b"\n")
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0) + 1


def _decide_on_kafka(decision: Decision, bootstrap: str, *, db: str | None,
                     shop: str | None) -> int:
    from refstream.streams.producer import publish_shop_events
    from refstream.streams.topics import TopicNames, ensure_topics

    if db:
        shop_id = held_referral_shop(db, decision.referral_id)
    elif shop:
        shop_id = shop
    else:
        raise ReviewError("on Kafka, name the shop (--shop) or the analysts' snapshot to "
                          "check the referral against (--db)")
    settings = Settings(kafka_bootstrap=bootstrap)
    ensure_topics(settings)
    event = decision_event(decision, shop_id)
    publish_shop_events(settings, [event])
    topic = TopicNames.from_settings(settings).shop("review")
    print(f"{event.decision}d referral {event.referral_id} as {event.reviewer_id}: published "
          f"to {topic}; ingest appends it to the canonical log and the pipeline applies it")
    return 0
