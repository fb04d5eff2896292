"""The merge's metrics: an append later than the allowed lateness behind its shop's latest
appended event counts as late; a partition that moved away starts afresh."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from refstream.streams.ingest import MergeMetrics

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
