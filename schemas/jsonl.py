"""The JSON Lines form of shop events: one JSON object per line, `occurred_at` in ISO-8601.

This is the file format the CLI reads (`run`, `produce`) and writes (`generate`); each
object carries `event_type` so one file can hold every kind of event, in any order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import IO, Any

from pydantic import ValidationError

from refstream.schemas.shop import SHOP_MODELS, ShopEvent


def parse_line(line: str) -> ShopEvent:
    """A validated shop event from one JSON line; ValueError says what is wrong."""
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg} at column {exc.colno}") from exc
    if not isinstance(raw, dict):
        raise ValueError("a line must be a JSON object")
    event_type = raw.get("event_type")
    model = SHOP_MODELS.get(event_type) if isinstance(event_type, str) else None
    if model is None:
        raise ValueError(
            f"unknown event_type {event_type!r}; expected one of {', '.join(sorted(SHOP_MODELS))}"
        )
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ValueError(f"invalid {event_type} event: {details}") from exc


def read_lines(stream: IO[str]) -> Iterator[tuple[int, str]]:
    """(line number, text) for every non-blank line."""
    for number, line in enumerate(stream, start=1):
        if line.strip():
            yield number, line


def to_json_object(event: ShopEvent) -> dict[str, Any]:
    record = event.model_dump(mode="json", exclude_none=True)
    record["occurred_at"] = event.occurred_at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return record


def write_events(stream: IO[str], events: Iterable[ShopEvent]) -> int:
    count = 0
    for event in events:
        stream.write(json.dumps(to_json_object(event), separators=(",", ":")))
        stream.write("\n")
        count += 1
    return count
