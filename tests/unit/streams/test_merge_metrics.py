"""The merge's metrics: an append later than the allowed lateness behind its shop's latest
appended event counts as late; a partition that moved away starts afresh."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from refstream.streams.ingest import MergeMetrics
from refstream.streams.merge import Released

MINUTE = 60_000


def test_late_appends_are_counted_per_shop_and_forgotten_with_their_partition() -> None:
    registry = CollectorRegistry()
    metrics = MergeMetrics.register(registry)
    metrics.appended(0, "a", 100 * MINUTE, False, 15 * MINUTE)
    metrics.appended(0, "a", 86 * MINUTE, True, 15 * MINUTE)   # 14 minutes behind: in time
    metrics.appended(0, "b", 10 * MINUTE, False, 15 * MINUTE)  # another shop: its own time
    metrics.appended(0, "a", 84 * MINUTE, False, 15 * MINUTE)  # 16 minutes behind: late
    assert registry.get_sample_value("refstream_ingest_late_appends_total") == 1
    assert registry.get_sample_value("refstream_ingest_waited_out_total") == 1
    metrics.forget({0})
    metrics.appended(0, "a", 50 * MINUTE, False, 15 * MINUTE)  # the partition came back: afresh
    assert registry.get_sample_value("refstream_ingest_late_appends_total") == 1


@settings(max_examples=100, deadline=None)
@given(appends=st.lists(st.tuples(st.integers(0, 2), st.sampled_from(["a", "b"]),
                                  st.integers(0, 60).map(lambda m: m * MINUTE),
                                  st.booleans()), max_size=40),
       cut=st.integers(0, 40), lateness=st.sampled_from([0, 15 * MINUTE]))
def test_a_release_counted_at_once_counts_as_each_append_did(
        appends: list[tuple[int, str, int, bool]], cut: int, lateness: int) -> None:
    one, batched = CollectorRegistry(), CollectorRegistry()
    each, together = MergeMetrics.register(one), MergeMetrics.register(batched)
    for partition, shop, occurred_at, waited_out in appends:
        each.appended(partition, shop, occurred_at, waited_out, lateness)
    released = [Released(("shop.order", partition), offset, shop, occurred_at, None, waited_out)
                for offset, (partition, shop, occurred_at, waited_out) in enumerate(appends)]
    together.appended_batch(released[:cut], lateness)  # two releases
    together.appended_batch(released[cut:], lateness)
    for name in ("refstream_ingest_late_appends_total", "refstream_ingest_waited_out_total"):
        assert one.get_sample_value(name) == batched.get_sample_value(name)
    assert each.latest == together.latest
