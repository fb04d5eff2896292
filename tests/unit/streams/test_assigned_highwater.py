"""Lag and checkpoint code ask a partition's high watermark; a rebalance may revoke the
partition first. That must read as "not assigned here", never crash the agent (a chaos run
lost its steady worker to aiokafka's AssertionError from a checkpoint)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer
from faust.types import TP

from refstream.streams.faust_app import assigned_highwater

LOG = TP("refstream.log", 1)


def test_a_partition_this_consumer_does_not_hold_has_no_highwater() -> None:
    async def ask() -> int | None:
        consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")  # never started
        try:
            return assigned_highwater(consumer, LOG)
        finally:
            await consumer.stop()

    assert asyncio.run(ask()) is None


class _RevokedWhileAsking:
    """Lists the partition, then finds it revoked (aiokafka's own assertion)."""

    def assignment(self) -> set[TP]:
        return {LOG}

    def highwater(self, tp: TP) -> int:
        raise AssertionError("Partition is not assigned")


class _Held:
    def assignment(self) -> set[TP]:
        return {LOG}

    def highwater(self, tp: TP) -> int:
        return 42


def test_a_partition_revoked_between_listing_and_asking_has_no_highwater() -> None:
    assert assigned_highwater(_RevokedWhileAsking(), LOG) is None
    assert assigned_highwater(_Held(), LOG) == 42
