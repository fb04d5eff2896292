"""What the live pipeline must have produced: the pure core run from scratch over the log."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from refstream.projections.pipeline import Pipeline
from refstream.rewards.rules import Rules
from refstream.schemas.codec import Codec
from refstream.streams.pipeline_runtime import route
from refstream.streams.topics import TopicNames

Message = tuple[bytes, bytes]  # (key, value)


def expected_outputs(log_records: list[Any], rules: Rules, names: TopicNames
                     ) -> dict[str, list[Message]]:
    """Per output topic, the messages a from-scratch run emits, in emission order per
    log partition (each partition has its own pipeline, as in a worker)."""
    codec = Codec()
    by_partition: dict[int, list[Any]] = defaultdict(list)
    for record in log_records:
        by_partition[record.partition].append(record)
    outputs: dict[str, list[Message]] = defaultdict(list)
    for partition in sorted(by_partition):
        pipeline = Pipeline(rules)
        for record in sorted(by_partition[partition], key=lambda r: r.offset):
            event = codec.decode_log_event(record.value)
            if event is None:
                continue
            for derived in pipeline.apply(event):
                out = route(names, codec, derived)
                outputs[out.topic].append((out.key, out.value))
    return dict(outputs)


def received(records: list[Any]) -> list[Message]:
    return [(r.key, r.value) for r in sorted(records, key=lambda r: (r.partition, r.offset))]


def same_messages_per_key(got: list[Message], want: list[Message]) -> bool:
    """Equal as sequences per key (a key's messages share a partition, so their order is
    defined; across keys the interleaving depends on the output partitioning)."""
    def group(messages: list[Message]) -> dict[bytes, list[bytes]]:
        grouped: dict[bytes, list[bytes]] = defaultdict(list)
        for key, value in messages:
            grouped[key].append(value)
        return dict(grouped)
    return group(got) == group(want)
