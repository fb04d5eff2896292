"""Fraud building blocks: windows slide by event time and forget quiet entities; identities
keep the first event that showed each identifier."""

from __future__ import annotations

from refstream.fraud.identity import DEVICE, EMAIL, PAYMENT, Identity, first_seen, remember
from refstream.fraud.windows import SlidingWindow, WindowGroup

HOUR = 3_600_000


def test_facts_slide_out_and_distinct_counts_follow() -> None:
    window = SlidingWindow.empty(HOUR, dimensions=2)
    assert window.add(0, "e1", ("v1", "ads")) is True
    assert window.add(10, "e2", ("v1", "blog")) is False  # v1 already in the window
    assert window.add(20, "e3", ("v2", "ads")) is True
    assert (window.distinct(0), window.distinct(1), window.size) == (2, 2, 3)
    window.add(HOUR + 10, "e4", ("v3", "ads"))  # e1 and e2 are now an hour old or more
    assert (window.evidence(), window.members_in_order()) == (("e3", "e4"), ("v2", "v3"))
    assert (window.distinct(0), window.distinct(1)) == (2, 1)


def test_a_late_fact_takes_its_place_in_time_order() -> None:
    window = SlidingWindow.empty(HOUR, dimensions=1)
    window.add(100, "a", ("x",))
    window.add(300, "c", ("z",))
    window.add(200, "b", ("y",))
    assert window.members_in_order() == ("x", "y", "z")
    assert window.opening_event_id == "a"
    window.add(300 + HOUR - 150, "d", ("w",))  # late-ish: "a" (100) slides out
    assert window.members_in_order() == ("y", "z", "w")


def test_a_busy_window_compacts_and_keeps_counting_right() -> None:
    window = SlidingWindow.empty(10, dimensions=1)
    for at in range(1000):
        window.add(at, f"e{at}", (f"m{at % 7}",))
        assert window.size == min(at + 1, 10)
    assert len(window.entries) <= 2 * window.size + 1  # dead facts do not pile up
    assert window.evidence() == tuple(sorted(f"e{at}" for at in range(990, 1000)))
    assert window.distinct() == 7


def test_an_emptied_window_ends_its_episode() -> None:
    window = SlidingWindow.empty(HOUR, dimensions=1)
    window.add(0, "e1", ("r1",))
    window.open_flag_id = "episode"
    window.add(2 * HOUR, "e2", ("r2",))
    assert window.open_flag_id is None


def test_a_group_forgets_entities_that_went_quiet() -> None:
    group = WindowGroup(HOUR)
    group.add("ip:quiet", 0, "e1", ("r1",))
    group.add("ip:busy", 0, "e2", ("r2",))
    group.add("ip:busy", HOUR - 1, "e3", ("r3",))
    group.sweep(HOUR)
    assert list(group.windows) == ["ip:busy"]
    assert group.windows["ip:busy"].evidence() == ("e3",)
    group.sweep(2 * HOUR - 1)
    assert group.windows == {}


def test_identity_keeps_the_first_event_of_each_kind_and_value() -> None:
    facts: Identity = ()
    facts = remember(facts, EMAIL, "e:1", "signup-1")
    facts = remember(facts, DEVICE, "e:1", "signup-1")  # same text, another kind
    facts = remember(facts, DEVICE, "e:1", "order-2")  # already known: first event stays
    facts = remember(facts, PAYMENT, None, "order-2")  # nothing shown
    assert facts == (EMAIL, "e:1", "signup-1", DEVICE, "e:1", "signup-1")
    assert first_seen(facts, DEVICE, "e:1") == "signup-1"
    assert first_seen(facts, PAYMENT, "e:1") is None
    assert first_seen(facts, EMAIL, "signup-1") is None  # an event id is no value
