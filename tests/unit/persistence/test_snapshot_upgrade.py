"""Snapshots survive the code that reads them changing.

- `snapshots/format3.pickle` was written by refstream before snapshots named their fields
  (format 3, commit d301344, from `snapshot_log.first_part()`); restored today and fed the rest
  of the log, the pipeline derives what folding the whole log from scratch derives.
- A class that gains a field (with a default) restores an object written before: the new
  field takes its default. A field that is gone is an error that names it.
"""

from __future__ import annotations

import pickle
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from refstream.persistence.records import by_fields
from refstream.projections.pipeline import SNAPSHOT_FORMAT, Pipeline, SnapshotError
from tests.unit.core.builders import DEFAULT_RULES
from tests.unit.persistence.snapshot_log import first_part, rest, whole_log

FORMAT3 = Path(__file__).parent / "snapshots" / "format3.pickle"


def test_a_format_3_snapshot_restores_and_continues_as_folding_from_scratch() -> None:
    fresh = Pipeline(DEFAULT_RULES)
    expected = [o for e in whole_log() for o in fresh.apply(e)]
    before_cut = Pipeline(DEFAULT_RULES)
    already = [o for e in first_part() for o in before_cut.apply(e)]

    restored = Pipeline.restore(DEFAULT_RULES, FORMAT3.read_bytes())
    assert restored.state == before_cut.state
    assert already + [o for e in rest() for o in restored.apply(e)] == expected
    assert len(expected) > 50  # referrals, rewards, a fraud flag, late arrivals
    # Written again, it is today's format, and reads back the same.
    again = restored.snapshot()
    assert pickle.loads(again)[0] == SNAPSHOT_FORMAT == 4
    assert Pipeline.restore(DEFAULT_RULES, again).state == restored.state


def test_an_unknown_format_is_refused_with_the_formats_it_reads() -> None:
    data = pickle.dumps((2, DEFAULT_RULES.version, Pipeline(DEFAULT_RULES).state))
    with pytest.raises(SnapshotError, match="format 2; this refstream reads 3, 4"):
        Pipeline.restore(DEFAULT_RULES, data)


def _module_with(cls: type) -> None:
    """Publish `cls` as `refstream_snapshot_test_classes.Referrer`, where pickle finds it."""
    module = ModuleType("refstream_snapshot_test_classes")
    cls.__module__, cls.__qualname__ = module.__name__, "Referrer"
    module.Referrer = cls  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module


def test_a_field_added_later_takes_its_default_and_a_removed_one_is_named() -> None:
    @dataclass(slots=True)
    class Referrer:
        name: str
        shares: int

        def __reduce__(self) -> tuple[object, tuple[object, ...]]:
            return by_fields(self)

    _module_with(Referrer)
    written = pickle.dumps([Referrer("alice", 3), Referrer("bob", 1)])

    @dataclass(slots=True)
    class Referrer:  # type: ignore[no-redef]  # the next version of the class
        name: str
        shares: int
        tier: str = "standard"

        def __reduce__(self) -> tuple[object, tuple[object, ...]]:
            return by_fields(self)

    _module_with(Referrer)
    assert pickle.loads(written) == [Referrer("alice", 3), Referrer("bob", 1)]
    assert pickle.loads(written)[0].tier == "standard"

    @dataclass(slots=True)
    class Referrer:  # type: ignore[no-redef]  # a version without `shares`
        name: str

        def __reduce__(self) -> tuple[object, tuple[object, ...]]:
            return by_fields(self)

    _module_with(Referrer)
    with pytest.raises(TypeError, match=r"fields \['shares'\] that it no longer has"):
        pickle.loads(written)


def test_classes_of_no_one_and_several_fields_round_trip() -> None:
    """`by_fields` reads a class's values in one call (an `attrgetter` of its names), which
    for a single name gives the value itself, not a one-value tuple: each arity restores."""
    @dataclass(slots=True)
    class Nothing:
        def __reduce__(self) -> tuple[object, tuple[object, ...]]:
            return by_fields(self)

    @dataclass(slots=True)
    class One:
        code: tuple[str, str]

        def __reduce__(self) -> tuple[object, tuple[object, ...]]:
            return by_fields(self)

    @dataclass(slots=True)
    class Three:
        name: str
        shares: int
        codes: list[str]

        def __reduce__(self) -> tuple[object, tuple[object, ...]]:
            return by_fields(self)

    values = [Nothing(), One(("ref", "abc")), Three("alice", 3, ["x", "y"])]
    for cls in (Nothing, One, Three):
        module = ModuleType(f"refstream_snapshot_test_{cls.__name__}")
        cls.__module__ = module.__name__
        cls.__qualname__ = cls.__name__
        setattr(module, cls.__name__, cls)
        sys.modules[module.__name__] = module
    assert pickle.loads(pickle.dumps(values)) == values
