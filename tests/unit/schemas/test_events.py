"""The event classes: the fast constructor replay builds log events with."""

from __future__ import annotations

import dataclasses

import pytest

from refstream.schemas.events import (
    LOG_EVENT_CONSTRUCTORS,
    LOG_EVENT_TYPES,
    LogEvent,
    fast_constructor,
)


@pytest.mark.parametrize("cls", list(LOG_EVENT_TYPES.values()), ids=list(LOG_EVENT_TYPES))
def test_the_fast_builders_make_the_very_events_the_classes_make(cls: type[LogEvent]) -> None:
    build = LOG_EVENT_CONSTRUCTORS[cls.event_type]
    assert build is not cls  # the fast path is in use on this interpreter
    values = [f"{f.name}-1" if f.type in ("str", "str | None") else 7
              for f in dataclasses.fields(cls)]
    built, made = build(*values), cls(*values)
    assert type(built) is cls
    assert built == made and hash(built) == hash(made) and repr(built) == repr(made)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.event_id = "changed"  # type: ignore[misc]


def test_a_class_whose_instances_cannot_change_class_is_built_by_itself() -> None:
    @dataclasses.dataclass(frozen=True)  # no slots: the twin's layout differs
    class Unslotted:
        event_id: str

    Unslotted.__slots__ = ("event_id",)  # type: ignore[attr-defined]
    assert fast_constructor(Unslotted) is Unslotted
