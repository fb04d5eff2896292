"""Where the stages send a keyed record: the partition Kafka's Java client would choose
(murmur2 of the key, checked against kafka-python's independent port of Java's
Utils.murmur2), the same whether or not the key's partition is remembered."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.partitioner.default import murmur2

from refstream.streams.batch_produce import PartitionedSender


class _Producer:
    """Answers `partitions_for` only: the one call `partition_of` makes of the producer."""

    def __init__(self, count: int) -> None:
        self.count = count

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.count))


def _java_choice(key: bytes, count: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % count


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=30),
       st.integers(1, 12))
def test_partition_of_a_key_is_javas_choice_cached_or_not(keys: list[bytes],
                                                          count: int) -> None:
    sender = PartitionedSender(_Producer(count))  # type: ignore[arg-type]
    sender.KEY_CACHE = 5  # small, so the test also crosses a forgetting

    async def choose_twice() -> list[tuple[int, int]]:
        return [(await sender.partition_of("t", key), await sender.partition_of("t", key))
                for key in keys]

    for key, (first, again) in zip(keys, asyncio.run(choose_twice()), strict=True):
        assert first == again == _java_choice(key, count)
    assert len(sender.partition_of_key) <= 5
