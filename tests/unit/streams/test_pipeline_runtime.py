"""The live pipeline's bookkeeping without a broker: offset gating, checkpoints, rollouts."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from refstream.persistence.checkpoint import CheckpointStore
from refstream.projections.pipeline import Pipeline
from refstream.rewards.rules import Rules
from refstream.schemas.codec import Codec
from refstream.streams.pipeline_runtime import (
    Applied,
    CatchUp,
    Decision,
    Output,
    PipelineRuntime,
    Skipped,
)
from refstream.streams.topics import TopicNames
from tests.unit.core.builders import DEFAULT_RULES, ShopLog, rules_with, when

CODEC = Codec()
NAMES = TopicNames("shop", "refstream")


def log_values() -> list[bytes]:
    log = ShopLog()
    log.share("alice", "R-alice", at=when(0), campaign="friends")
    log.click("v-bob", at=when(1), code="R-alice", campaign_id="friends")
    log.signup("bob", at=when(1, hours=1), visitor="v-bob")
    log.order("o-bob", "bob", 4000, at=when(1, hours=2), visitor="v-bob")
    log.tick(at=when(40))
    return [CODEC.encode(e) for e in log.events]


def runtime(tmp_path: Path, rules: object = DEFAULT_RULES) -> PipelineRuntime:
    return PipelineRuntime(rules, CODEC, CheckpointStore(tmp_path / "cp.sqlite"), NAMES)  # type: ignore[arg-type]


def test_applies_only_the_next_offset_skips_older_and_asks_to_catch_up_on_newer(
        tmp_path: Path) -> None:
    values = log_values()
    rt = runtime(tmp_path)
    assert isinstance(rt.handle(0, 0, values[0]), Applied)
    assert isinstance(rt.handle(0, 0, values[0]), Skipped)  # a redelivery
    assert rt.handle(0, 3, values[3]) == CatchUp(1, 3)      # the consumer ran ahead
    # Nothing moved: the same answer until the gap is handled, whatever comes meanwhile.
    assert rt.handle(0, 4, values[4]) == CatchUp(1, 4)
    assert isinstance(rt.handle(0, 1, values[1]), Applied)  # the gap, read from the log
    assert isinstance(rt.handle(0, 2, values[2]), Applied)
    assert isinstance(rt.handle(0, 3, values[3]), Applied)  # then the record that was ahead
    assert isinstance(rt.handle(0, 3, values[3]), Skipped)


def test_restart_from_a_checkpoint_continues_with_identical_outputs(tmp_path: Path) -> None:
    values = log_values()
    straight = runtime(tmp_path / "a")
    expected = [o.value for i, v in enumerate(values) for o in straight.handle(0, i, v).outputs]  # type: ignore[union-attr]
    first = runtime(tmp_path / "b")
    got = [o.value for i, v in enumerate(values[:3]) for o in first.handle(0, i, v).outputs]  # type: ignore[union-attr]
    first.checkpoint()
    second = runtime(tmp_path / "b")  # a new process: state comes from the checkpoint
    assert isinstance(second.handle(0, 0, values[0]), Skipped)
    got += [o.value for i, v in enumerate(values[3:], 3) for o in second.handle(0, i, v).outputs]  # type: ignore[union-attr]
    assert got == expected and expected


def rebuilt_after_checkpoint(tmp_path: Path, rules: Rules,
                             damage: bool = False) -> tuple[PipelineRuntime, list[Decision]]:
    """A checkpoint after 4 records under the default rules (its state bytes damaged if
    asked), then a runtime under `rules` handling the whole log: it must rebuild silently."""
    values = log_values()
    old = runtime(tmp_path)
    for i, value in enumerate(values[:4]):
        old.handle(0, i, value)
    old.checkpoint()
    if damage:  # as a refstream with another snapshot format, or a damaged file, left it
        old.store._db.execute("UPDATE checkpoints SET state = ?", (b"not a snapshot",))
    new = runtime(tmp_path, rules)
    assert new.handle(0, 4, values[4]) == CatchUp(0, 4)  # rebuilt from the log's start
    replayed = [new.handle(0, i, v) for i, v in enumerate(values)]
    assert all(isinstance(d, Applied) for d in replayed)
    assert [d.outputs for d in replayed[:4]] == [[], [], [], []]  # type: ignore[union-attr]
    scratch = Pipeline(rules)
    for value in values:
        scratch.apply(CODEC.decode_log_event(value))  # type: ignore[arg-type]
    assert new.partitions[0].pipeline.state == scratch.state
    return new, replayed


def test_a_rules_rollout_rebuilds_state_silently_up_to_the_checkpoint(tmp_path: Path) -> None:
    _, replayed = rebuilt_after_checkpoint(tmp_path, rules_with({"version": "2026.12-new"}))
    assert replayed[4].outputs  # type: ignore[union-attr]  # the tick's due rewards, new rules


def test_an_unreadable_checkpoint_is_rebuilt_silently_instead_of_crashing(tmp_path: Path) -> None:
    rebuilt_after_checkpoint(tmp_path, DEFAULT_RULES, damage=True)


class Record(NamedTuple):
    """What `handle_run` reads of an aiokafka record."""

    offset: int
    value: bytes
    timestamp: int


def test_a_run_of_records_is_handled_as_one_at_a_time_and_stops_where_the_log_is_ahead(
        tmp_path: Path) -> None:
    values = log_values()
    one_by_one = runtime(tmp_path / "a")
    decisions = [one_by_one.handle(0, i, v) for i, v in enumerate(values)]
    expected = [o.value for d in decisions for o in d.outputs]  # type: ignore[union-attr]
    # One append time per record that has outputs (log timestamps are in milliseconds).
    expected_stamps = [float(i) for i, d in enumerate(decisions) if d.outputs]  # type: ignore[union-attr]
    assert expected and expected_stamps

    rt = runtime(tmp_path / "b")
    records = [Record(i, v, 1_000 * i) for i, v in enumerate(values)]
    # A redelivered record in the middle is passed over; a record ahead of the state stops
    # the run at its index, nothing of it applied.
    batch = [*records[:2], records[0], records[4], *records[2:]]
    outputs: list[Output] = []
    stamps: list[float] = []
    assert rt.handle_run(0, batch, 0, outputs, stamps) == 3
    assert rt.partitions[0].gate.next_offset == 2
    # The gap read first (records 2 and 3), then the run goes on from the record that was
    # ahead: it is applied, and what follows it is redelivered (passed over).
    assert rt.handle_run(0, records, 2, outputs, stamps) == len(records)
    assert rt.handle_run(0, batch, 4, outputs, stamps) == len(batch)
    assert [o.value for o in outputs] == expected
    assert stamps == expected_stamps
