"""Pickling for the core's slotted dataclasses that write out their own `__init__`.

mypyc compiles a written-out `__init__` (a dataclass-generated one stays interpreted) and
then runs it whenever such an object is created, so pickle's default path, which creates an
empty object and fills its slots, fails. These classes rebuild by calling the class with
every field in order instead.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any


def by_fields(obj: Any) -> tuple[type, tuple[object, ...]]:
    """`__reduce__` of a dataclass whose `__init__` takes every field, in field order."""
    return type(obj), tuple(getattr(obj, f.name) for f in fields(obj))
