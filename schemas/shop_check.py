"""Which decoded shop records pydantic would accept exactly as they are, told without it.

Ingest validates every shop record with the pydantic models of `shop.py`: about 3 µs per
record, plus turning `occurred_at` from milliseconds into a datetime for it and back. Most
records are valid and need no normalising (no surrounding whitespace to strip), so for each
model a check is generated from the model's own field constraints (`model_fields`): a record
it passes is one pydantic accepts unchanged, and ingest takes its fields straight from the
decoded record. Anything else (a value to strip, a constraint broken, a type it does not
know) fails the check and goes through pydantic, which normalises it or says what is wrong.

The checks are conservative by construction: a constraint they do not recognise gives the
model no check at all, several length limits all apply, and a value pydantic would strip is
refused (Python's `str.isspace` takes every character pydantic strips, and `str.strip`
strips exactly those: both tested over all of Unicode).
`tests/unit/schemas/test_shop_check.py` holds them to pydantic on random records.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

import annotated_types
from pydantic.types import Strict

from refstream.schemas.avro_compiled import Generated
from refstream.schemas.shop import ShopEvent, ShopSignup, looks_like_email

RecordCheck = Callable[[dict[str, Any]], bool]

# The epoch milliseconds a check passes for `occurred_at`: 1970 to the end of year 9999, all
# of which a UTC datetime holds (earlier or later values go through pydantic).
LATEST_MS = 253_402_300_799_999
# Field validators a check knows, by the model and the validator's name: the test its
# generated code calls instead.
KNOWN_VALIDATORS: dict[tuple[type[ShopEvent], str], Callable[[str], bool]] = {
    (ShopSignup, "_looks_like_email"): looks_like_email,
}
CURRENCY_PATTERN = "^[A-Z]{3}$"


def _text_lines(field: str, metadata: list[Any], optional: bool,
                extra: list[str]) -> list[str] | None:
    shortest, longest, currency = 0, None, False
    for item in metadata:
        if isinstance(item, annotated_types.MinLen):
            shortest = max(shortest, item.min_length)
        elif isinstance(item, annotated_types.MaxLen):
            longest = item.max_length if longest is None else min(longest, item.max_length)
        elif getattr(item, "__dict__", None) == {"pattern": CURRENCY_PATTERN}:
            currency = True  # that pattern and nothing else beside it
        else:
            return None
    tests = ["type(v) is not str"]
    if longest is not None:
        tests.append(f"not {shortest} <= len(v) <= {longest}")
    elif shortest:
        tests.append(f"len(v) < {shortest}")
    # Pydantic strips surrounding whitespace (str_strip_whitespace): such a value is not
    # taken as it is. (`str.strip` hands back the very string when it has nothing to strip,
    # so the common case is one call and an identity compare.)
    tests.append("v.strip() != v")
    if currency:
        tests.append("not (len(v) == 3 and v.isascii() and v.isalpha() and v.isupper())")
    tests += extra
    condition = " or ".join(tests)
    if optional:
        condition = f"v is not None and ({condition})"
    return [f"v = r[{field!r}]", f"if {condition}:", "    return False"]


def _field_lines(model: type[ShopEvent], field: str, constants: dict[str, Any]
                 ) -> list[str] | None:
    info = model.model_fields[field]
    annotation, metadata = info.annotation, list(info.metadata)
    extra = []
    for name, decorator in model.__pydantic_decorators__.field_validators.items():
        if field in decorator.info.fields:
            known = KNOWN_VALIDATORS.get((model, name))
            if known is None:
                return None
            constants[f"VALIDATOR_{field}"] = known
            extra.append(f"not VALIDATOR_{field}(v)")
    if typing.get_origin(annotation) is Literal:
        allowed = typing.get_args(annotation)
        if metadata or extra or not all(type(a) is str for a in allowed):
            return None
        return [f"v = r[{field!r}]", f"if type(v) is not str or v not in {allowed!r}:",
                "    return False"]
    if annotation is datetime and field == "occurred_at" and not extra:
        # The wire's epoch milliseconds; the model's only validator makes the moment UTC,
        # which a moment from milliseconds already is.
        return [f"v = r[{field!r}]", f"if type(v) is not int or not 0 <= v <= {LATEST_MS}:",
                "    return False"]
    if annotation is int and not extra:
        low, high, strict = None, None, False
        for item in metadata:
            if isinstance(item, Strict) and item.strict:
                strict = True
            elif isinstance(item, annotated_types.Ge):
                low = item.ge
            elif isinstance(item, annotated_types.Le):
                high = item.le
            else:
                return None
        if not strict or low is None or high is None:
            return None
        return [f"v = r[{field!r}]", f"if type(v) is not int or not {low} <= v <= {high}:",
                "    return False"]
    if annotation is str:
        return _text_lines(field, metadata, False, extra)
    if (isinstance(annotation, types.UnionType)
            and set(typing.get_args(annotation)) == {str, type(None)}):
        return _text_lines(field, metadata, True, extra)
    return None


def check_source(model: type[ShopEvent]) -> Generated | None:
    """The generated check of `model`'s records, or None when a field's type or constraint
    is not one the generator knows (that model's records all go through pydantic)."""
    config = model.model_config
    if config.get("extra") != "forbid" or not config.get("str_strip_whitespace"):
        return None
    if model.__pydantic_decorators__.model_validators:
        return None
    name = f"check_{model.__name__}"
    constants: dict[str, Any] = {}
    body = [f"if len(r) != {len(model.model_fields)}:", "    return False"]
    for field in model.model_fields:
        lines = _field_lines(model, field, constants)
        if lines is None:
            return None
        body += lines
    body.append("return True")
    lines = [f"def {name}(r: dict[str, Any]) -> bool:", "    try:",
             *("        " + line for line in body),
             "    except KeyError:", "        return False"]
    return Generated(name, tuple(lines), constants)


def record_check(model: type[ShopEvent]) -> RecordCheck | None:
    """`check(record)`: True only for a decoded record (epoch-millisecond `occurred_at`) that
    `model` accepts with every value as it is; None when the model has no check."""
    source = check_source(model)
    return None if source is None else source.compile()
