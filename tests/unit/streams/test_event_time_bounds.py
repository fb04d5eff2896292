"""Clock skew cannot move money, and a shop's own topics speak only for that shop: given
events dated far ahead of ingest's clock or in 1970, next to pending rewards, then dead
letters that say why, and the rewards stay pending."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from refstream.persistence.store import ProjectionStore
from refstream.rewards.rules import default_rules_path, load_rules
from refstream.schemas.codec import Codec
from refstream.schemas.jsonl import to_json_object
from refstream.schemas.privacy import Pseudonymiser
from refstream.schemas.shop import ShopClick
from refstream.streams.embedded import EmbeddedRunner
from refstream.streams.ingest import (
    Accepted,
    EventTimeBounds,
    Ingestor,
    Rejected,
    ShopTopics,
    SourceRef,
)
from refstream.streams.settings import Settings
from refstream.streams.topics import TopicNames
from refstream.tools.synthetic import SyntheticConfig, iter_shop_events

CODEC = Codec()
RULES = load_rules(Path(default_rules_path()))
MONTH = SyntheticConfig(seed=5, shops=1, customers_per_shop=250, days=20)
# Ingest's wall clock in these tests: the evening after the synthetic period ends.
NOW = datetime(2026, 10, 21, 18, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
BOUNDS = EventTimeBounds.from_settings(Settings())


def click(occurred_at: datetime, event_id: str = "skewed", shop_id: str = "shop-001"
          ) -> ShopClick:
    return ShopClick.model_validate(dict(
        event_id=event_id, shop_id=shop_id, occurred_at=occurred_at, visitor_id="v-skew",
        landing_url="https://shop.example/", ip="203.0.113.7", device_id="d-skew",
        user_agent="Mozilla/5.0"))


def test_the_defaults_are_five_minutes_ahead_and_ten_years_back() -> None:
    assert BOUNDS.violation(NOW_MS + 300_000, NOW_MS) is None
    assert BOUNDS.violation(NOW_MS - 3649 * 86_400_000, NOW_MS) is None
    ahead = BOUNDS.violation(NOW_MS + 301_000, NOW_MS)
    assert ahead is not None and "5.0 minutes ahead of ingest's clock" in ahead
    assert "REFSTREAM_FUTURE_TOLERANCE_S" in ahead
    old = BOUNDS.violation(0, NOW_MS)
    assert old is not None and "1970-01-01T00:00:00+00:00 is older than the 3,650.0 days" in old
    assert "REFSTREAM_EVENT_HORIZON_DAYS" in old


@pytest.mark.parametrize(("occurred_at", "says"), [
    (datetime(2031, 1, 1, tzinfo=UTC), "ahead of ingest's clock"),
    (datetime(1970, 1, 1, tzinfo=UTC), "older than the"),
])
def test_live_ingest_dead_letters_skewed_events_with_their_source(occurred_at: datetime,
                                                                   says: str) -> None:
    ingestor = Ingestor(CODEC, Pseudonymiser(b"k" * 32), event_time_bounds=BOUNDS)
    raw = CODEC.encode(click(occurred_at))
    outcome = ingestor.accept(raw, SourceRef("shop.click", 2, 41), "click", now_ms=NOW_MS)
    assert isinstance(outcome, Rejected), outcome
    letter = outcome.dead_letter
    assert says in letter.error
    assert (letter.source_topic, letter.source_partition, letter.source_offset,
            letter.original) == (
        "shop.click", 2, 41, raw)
    # Rejected before deduplication: the same event with its real time is still accepted.
    fixed = CODEC.encode(click(NOW))
    assert isinstance(ingestor.accept(fixed, SourceRef("shop.click", 2, 42), "click",
                                      now_ms=NOW_MS), Accepted)


def run(tmp_path: Path, extra: list[ShopClick], settings: Settings) -> tuple[dict[str, int], int]:
    """Reward statuses after the synthetic period plus `extra`, and the dead letters."""
    events = [*iter_shop_events(MONTH), *extra]
    lines = [(n, json.dumps(to_json_object(e))) for n, e in enumerate(events, 1)]
    db = tmp_path / f"run{len(list(tmp_path.iterdir()))}.duckdb"
    store = ProjectionStore(db)
    summary = EmbeddedRunner(settings, RULES, store, wall_clock_ms=lambda: NOW_MS).run_lines(
        "events.jsonl", lines)
    store.close()
    with duckdb.connect(str(db), read_only=True) as conn:
        statuses = dict(conn.execute(
            "SELECT status, count(*) FROM rewards GROUP BY status").fetchall())
    return statuses, len(summary.dead_letters)


def test_embedded_run_keeps_pending_rewards_pending_next_to_skewed_events(
        tmp_path: Path) -> None:
    skewed = [click(datetime(2031, 6, 1, tzinfo=UTC), "from-the-future"),
              click(datetime(1970, 1, 1, tzinfo=UTC), "from-1970")]
    before, letters_before = run(tmp_path, [], Settings())
    assert before.get("pending", 0) >= 5, before  # the last 30 days' rewards wait their hold
    after, letters_after = run(tmp_path, skewed, Settings())
    assert after == before
    assert letters_after == letters_before + 2
    # What the bound prevents: with the tolerance opened up, the one event from 2031 moves
    # the shop's time past every hold and the pending rewards fall due.
    lax, _ = run(tmp_path, skewed, Settings(future_tolerance_s=10 * 365 * 86_400))
    assert lax.get("pending", 0) < before["pending"], lax


def test_embedded_dead_letter_names_the_line_and_the_reason(tmp_path: Path) -> None:
    store = ProjectionStore(tmp_path / "one.duckdb")
    line = json.dumps(to_json_object(click(datetime(2031, 6, 1, tzinfo=UTC))))
    summary = EmbeddedRunner(Settings(), RULES, store, wall_clock_ms=lambda: NOW_MS).run_lines(
        "events.jsonl", [(7, line)])
    store.close()
    [letter] = summary.dead_letters
    assert letter.error.startswith(
        "events.jsonl:7: rejected by ingest: occurred_at 2031-06-01T00:00:00+00:00 is ")
    assert letter.shop_id == "shop-001"


def test_the_default_horizon_accepts_the_demo_month() -> None:
    first = next(iter(iter_shop_events(MONTH)))
    assert BOUNDS.violation(first.occurred_at_ms, int(datetime.now(UTC).timestamp() * 1000)) \
        is None


# ---------------------------------------------------------------------------- shop topics

OWN = ShopTopics("shop", frozenset({"acme", "beta"}))
NAMES = TopicNames("shop", "refstream")


def test_a_shop_topic_names_its_shop_and_type() -> None:
    topic = NAMES.own_shop("acme", "order")
    assert topic == "shop.acme.order"
    assert (OWN.topic_shop(topic), NAMES.event_type_of(topic)) == ("acme", "order")
    assert OWN.topic_shop("shop.order") is None
    assert OWN.topic_shop("shop.gamma.order") is None  # not a shop with topics of its own
    assert len(NAMES.own_shop_topics(["beta", "acme", "acme"])) == 2 * len(NAMES.shop_topics)


@pytest.mark.parametrize(("topic", "shop_id", "says"), [
    ("shop.acme.click", "beta", "only shop 'acme''s credential may write"),
    ("shop.click", "acme", "publishes on its own topics"),
])
def test_an_event_for_another_shop_is_dead_lettered(topic: str, shop_id: str, says: str) -> None:
    ingestor = Ingestor(CODEC, Pseudonymiser(b"k" * 32), shop_topics=OWN)
    outcome = ingestor.accept(CODEC.encode(click(NOW, shop_id=shop_id)),
                              SourceRef(topic, 0, 3), "click", now_ms=NOW_MS)
    assert isinstance(outcome, Rejected) and says in outcome.dead_letter.error, outcome


@pytest.mark.parametrize(("topic", "shop_id"), [
    ("shop.acme.click", "acme"), ("shop.click", "gamma")])
def test_a_shop_on_its_own_topic_or_a_shop_without_topics_is_accepted(topic: str,
                                                                        shop_id: str) -> None:
    ingestor = Ingestor(CODEC, Pseudonymiser(b"k" * 32), shop_topics=OWN)
    outcome = ingestor.accept(CODEC.encode(click(NOW, shop_id=shop_id)),
                              SourceRef(topic, 0, 3), "click", now_ms=NOW_MS)
    assert isinstance(outcome, Accepted), outcome


def test_an_accepted_event_that_was_never_appended_is_no_duplicate_when_read_again() -> None:
    """A partition moving away takes ingest's buffered records with it; read again by the
    same worker later, they must be appended then, not dropped as duplicates."""
    ingestor = Ingestor(CODEC, Pseudonymiser(b"k" * 32))
    raw = CODEC.encode(click(NOW, "moved"))
    first = ingestor.accept(raw, SourceRef("shop.click", 0, 5), "click", now_ms=NOW_MS)
    assert isinstance(first, Accepted)
    ingestor.forget(first.event)
    again = ingestor.accept(raw, SourceRef("shop.click", 0, 5), "click", now_ms=NOW_MS)
    assert isinstance(again, Accepted)
