"""Checkpoint pacing: snapshots (O(state) each) take a bounded share of the pipeline's time,
and a crash never redoes more than the configured longest spacing."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from refstream.streams.pipeline_stage import CheckpointPacing
from refstream.streams.settings import Settings


def test_a_cheap_snapshot_keeps_the_configured_interval() -> None:
    pacing = CheckpointPacing(interval_s=2.0, max_interval_s=30.0, share=0.2, cost_s=0.05)
    assert pacing.spacing() == 2.0
    assert not pacing.due(1.9)
    assert pacing.due(2.0)


def test_a_costly_snapshot_spaces_the_next_one_to_keep_its_share() -> None:
    # 4.3 s to snapshot a million events' state: 21.5 s apart keeps it at a fifth of the time.
    pacing = CheckpointPacing(interval_s=2.0, max_interval_s=30.0, share=0.2, started=100.0,
                              cost_s=4.3)
    assert pacing.spacing() == 4.3 / 0.2
    assert not pacing.due(100.0 + 21.0)
    assert pacing.due(100.0 + 21.5)


def test_the_longest_spacing_bounds_what_a_crash_redoes() -> None:
    pacing = CheckpointPacing(interval_s=2.0, max_interval_s=30.0, share=0.2, cost_s=60.0)
    assert pacing.spacing() == 30.0
    # A longest spacing below the interval cannot shorten the interval.
    assert CheckpointPacing(5.0, 1.0, 0.2, cost_s=60.0).spacing() == 5.0


def test_the_settings_defaults() -> None:
    pacing = CheckpointPacing.from_settings(Settings(), now=7.0)
    assert (pacing.interval_s, pacing.max_interval_s, pacing.share, pacing.started) == (
        2.0, 120.0, 0.1, 7.0)


@given(interval=st.floats(0.01, 60), longest=st.floats(0.01, 600), share=st.floats(0.01, 1),
       cost=st.floats(0, 1000))
def test_spacing_bounds(interval: float, longest: float, share: float, cost: float) -> None:
    spacing = CheckpointPacing(interval, longest, share, cost_s=cost).spacing()
    assert interval <= spacing <= max(interval, longest)
    # Below the longest spacing, snapshotting takes at most its share of the time.
    if cost / share <= max(interval, longest):
        assert cost <= share * spacing * (1 + 1e-9)
