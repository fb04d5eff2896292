"""Replay with code_issued events in the log: columnar replay of the archive builds the same
tables as folding event by event (live), foreign shares included."""

from __future__ import annotations

import random
from pathlib import Path

from refstream.schemas.events import CodeIssued, LogEvent, Share
from tests.unit.replay.test_columnar_replay import replay_both, synthetic_log, write_archive


def with_issued_codes(events: list[LogEvent]) -> list[LogEvent]:
    """Before each code's first share, an issue of it; some shares moved to another sharer."""
    rng = random.Random(11)
    seen: set[tuple[str, str]] = set()
    referrers = sorted({e.referrer_id for e in events if isinstance(e, Share)})
    out: list[LogEvent] = []
    for event in events:
        if isinstance(event, Share):
            key = (event.shop_id, event.referral_code)
            if key not in seen:
                seen.add(key)
                out.append(CodeIssued(f"issue-{event.event_id}", event.shop_id,
                                      event.occurred_at, event.referrer_id,
                                      event.referral_code, event.campaign_id))
            elif rng.random() < 0.2:
                out.append(Share(event.event_id, event.shop_id, event.occurred_at,
                                 rng.choice(referrers), event.referral_code, event.channel,
                                 event.campaign_id))
                continue
        out.append(event)
    return out


def test_replay_of_issued_codes_equals_folding_event_by_event(tmp_path: Path) -> None:
    events = with_issued_codes(synthetic_log(seed=4))
    assert sum(isinstance(e, CodeIssued) for e in events) > 20
    write_archive(tmp_path / "archive", events, duplicates=50)
    slow, fast = replay_both(tmp_path)
    flags = [r for r in slow["fraud_flags"] if r[2] == "foreign_code_share"]
    assert len(flags) > 5
    for name, rows in slow.items():
        assert fast[name] == rows, name
