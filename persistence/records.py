"""Pickling for the core's slotted dataclasses that write out their own `__init__`: by field
name, so a snapshot written before a field was added still restores (the field's default).

mypyc compiles a written-out `__init__` (a dataclass-generated one stays interpreted) and
then runs it whenever such an object is created, so pickle's default path, which creates an
empty object and fills its slots, fails. These classes rebuild by calling the class with
their fields by name instead: a field added later (with a default) takes its default when an
older snapshot is restored; a field removed or renamed is an error naming it. Snapshots of
format 3 (before December 2026) call the class with every field in order; they restore as
long as the fields are those of that time (tests/unit/persistence/test_snapshot_upgrade.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from operator import attrgetter
from typing import Any

# Per class: its field names (one tuple, which pickle writes once per snapshot and refers to
# after) and a getter of their values as a tuple, in one C call (a snapshot reduces every
# record of the state: a generator of getattr calls took most of the pickling time).
_NAMES: dict[type, tuple[tuple[str, ...], Callable[[Any], tuple[object, ...]]]] = {}


def by_fields(obj: Any) -> tuple[Any, tuple[object, ...]]:
    """`__reduce__` of a dataclass whose `__init__` takes every field as a keyword."""
    cls = type(obj)
    known = _NAMES.get(cls)
    if known is None:
        known = _NAMES[cls] = _names_and_getter(tuple(f.name for f in fields(obj)))
    names, values = known
    return rebuild, (cls, names, values(obj))


def _names_and_getter(names: tuple[str, ...]
                      ) -> tuple[tuple[str, ...], Callable[[Any], tuple[object, ...]]]:
    if len(names) == 1:  # attrgetter of one name returns the value itself, not a tuple
        (name,) = names
        return names, lambda obj: (getattr(obj, name),)
    return names, attrgetter(*names) if names else (lambda obj: ())


def rebuild(cls: type, names: tuple[str, ...], values: tuple[object, ...]) -> Any:
    """The object `by_fields` took apart, its fields passed by name."""
    try:
        return cls(**dict(zip(names, values, strict=True)))
    except TypeError as exc:
        known = {f.name for f in fields(cls)}
        gone = sorted(set(names) - known)
        raise TypeError(f"cannot restore a {cls.__qualname__} written with fields {gone} that "
                        f"it no longer has: a snapshot from another refstream ({exc})") from exc
