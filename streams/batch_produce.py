"""Sending many records at once: one aiokafka record batch per topic partition.

The stages (ingest, pipeline) hand a fetch batch's outputs to their producer here instead of
one `send` per record; partitions are chosen as Kafka's Java client and faust's producer
choose them (murmur2 of the key, `schemas/partitioning.py`: compiled, where aiokafka's
`DefaultPartitioner` hashes a byte per interpreted step), so a shop's records land where its
key says.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer

from refstream.schemas.partitioning import partition_for_key
from refstream.streams.settings import Settings


def stage_producer(settings: Settings) -> AIOKafkaProducer:
    """A stage's own producer (not started): idempotent like the worker's faust producer,
    so a batch re-sent after a lost acknowledgement (broker restart, leader change) is
    written once, in order."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap.split(","), acks="all",
        enable_idempotence=True, linger_ms=settings.producer_linger_ms,
        max_batch_size=512 * 1024, max_request_size=16 * 1024 * 1024,
        **settings.aiokafka_security())


class PartitionedSender:
    """Builds one record batch per (topic, partition) and hands each to the producer.
    Delivery is not awaited here: the caller flushes the producer before it commits."""

    # Keys whose partition is remembered (a shop id keys every log append of its shop);
    # forgotten all at once when full, so one-off keys (reward ids) cannot grow it.
    KEY_CACHE = 50_000

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self.partitions_of_topic: dict[str, list[int]] = {}
        self.partition_of_key: dict[tuple[str, bytes], int] = {}

    async def send(self, records: Iterable[tuple[str, bytes, bytes]]) -> int:
        """Send (topic, key, value) records, each topic partition's in the given order;
        returns how many were sent."""
        producer = self.producer
        batches: dict[tuple[str, int], Any] = {}
        known = self.partition_of_key
        count = 0
        for topic, key, value in records:
            partition = known.get((topic, key))
            if partition is None:  # the one await per new key, not per record
                partition = await self.partition_of(topic, key)
            target = (topic, partition)
            batch = batches.get(target)
            if batch is None:
                batch = batches[target] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                await producer.send_batch(batch, target[0], partition=target[1])  # full
                batch = batches[target] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
            count += 1
        for (topic, partition), batch in batches.items():
            await producer.send_batch(batch, topic, partition=partition)
        return count

    async def partition_of(self, topic: str, key: bytes) -> int:
        known = self.partition_of_key.get((topic, key))
        if known is not None:
            return known
        partitions = self.partitions_of_topic.get(topic)
        if partitions is None:
            partitions = sorted(await self.producer.partitions_for(topic))
            self.partitions_of_topic[topic] = partitions
        chosen = partitions[partition_for_key(key, len(partitions))]
        if len(self.partition_of_key) >= self.KEY_CACHE:
            self.partition_of_key.clear()
        self.partition_of_key[topic, key] = chosen
        return chosen
