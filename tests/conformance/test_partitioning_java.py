"""Where refstream's stages send a keyed record, against kafka-clients itself: the Java
producer's `BuiltInPartitioner.partitionForKey` and `Utils.murmur2`, run by the conformance
program, for the keys refstream's outputs carry and for random bytes."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest

from refstream.projections.pipeline import Pipeline
from refstream.rewards.rules import default_rules_path, load_rules
from refstream.schemas import events as ev
from refstream.schemas.codec import Codec
from refstream.schemas.partitioning import murmur2, partition_for_key
from refstream.schemas.privacy import Pseudonymiser
from refstream.streams.batch_produce import PartitionedSender
from refstream.streams.pipeline_runtime import route
from refstream.streams.topics import TopicNames
from refstream.tools.synthetic import SyntheticConfig, iter_shop_events
from tests.conformance import java_program
from tests.conformance.samples import log_and_derived

pytestmark = pytest.mark.slow


class _Producer:
    """Answers `partitions_for` only: the one call `partition_of` makes of the producer."""

    def __init__(self, count: int) -> None:
        self.count = count

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.count))


def keys() -> list[bytes]:
    rng = random.Random(2023)
    codec = Codec()
    names = TopicNames("shop", "refstream")
    outputs = (ev.Attribution, ev.FraudFlag, ev.RewardStatus, ev.RewardDue,
               ev.RewardReversal, ev.LateArrival)
    samples = [route(names, codec, value).key for value in log_and_derived()
               if isinstance(value, outputs)]
    assert len(samples) == len(outputs)
    # The keys a synthetic shop's derived events carry (UUIDs), and the
    # shop ids that key the log.
    pipeline = Pipeline(load_rules(default_rules_path()))
    pseudonymiser = Pseudonymiser(b"partitioning-conformance-secret")
    derived: list[bytes] = []
    shops: set[bytes] = set()
    for shop_event in iter_shop_events(SyntheticConfig(shops=3, customers_per_shop=200,
                                                       days=10)):
        shops.add(shop_event.shop_id.encode())
        derived += [route(names, codec, d).key
                    for d in pipeline.apply(pseudonymiser.to_log_event(shop_event))]
    unique = sorted(set(derived))
    assert len(unique) > 200
    derived = [*samples, *sorted(shops), *rng.sample(unique, 200)]
    texts = ["", "s", "shop-1", "ü✓€", "😀", "x" * 63]
    return [*derived, *(t.encode() for t in texts),
            *(bytes(rng.randrange(256) for _ in range(rng.randrange(0, 90)))
              for _ in range(400))]


def test_partitions_are_the_java_producers(tmp_path: Path) -> None:
    try:
        java_program.classpath()
    except java_program.JavaProgramError as exc:
        pytest.skip(str(exc))
    rng = random.Random(7)
    cases = [(key, rng.choice([1, 2, 3, 6, 12, 64, 1000])) for key in keys()]
    given = tmp_path / "keys.jsonl"
    given.write_text("".join(json.dumps({"key": key.hex(), "partitions": count}) + "\n"
                             for key, count in cases))
    answers = java_program.run("partition", str(given))
    assert len(answers) == len(cases)

    async def senders_choice() -> list[int]:
        by_count = {count: PartitionedSender(_Producer(count))
                    for _, count in cases}
        return [await by_count[count].partition_of("t", key) for key, count in cases]

    chosen = asyncio.run(senders_choice())
    for (key, count), java, sent in zip(cases, answers, chosen, strict=True):
        assert java["key"] == key.hex()
        assert murmur2(key) == java["murmur2"], key
        assert partition_for_key(key, count) == java["partition"] == sent, (key, count)
