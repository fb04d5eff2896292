"""What several jobs share: a progress bar on stderr, JSON-ready values, fixed clocks.
No job logic: helpers the job modules import."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from refstream.schemas.epoch import epoch_ms as to_epoch_ms
from refstream.schemas.errors import RefstreamError


@contextmanager
def progress_bar(total: int | None, unit: str, desc: str) -> Iterator[Callable[[int], None]]:
    """A tqdm bar on stderr (quiet when stderr is not a terminal and CI is set)."""
    from tqdm import tqdm

    with tqdm(total=total, unit=unit, desc=desc, file=sys.stderr, unit_scale=True,
              dynamic_ncols=True, mininterval=0.5) as bar:

        def advance(count: int) -> None:
            bar.update(count)

        yield advance


def as_jsonable(value: Any) -> Any:
    """Dataclasses, paths and containers as plain JSON values."""
    from dataclasses import asdict, is_dataclass

    if is_dataclass(value) and not isinstance(value, type):
        return {k: as_jsonable(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): as_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def parse_moment(text: str, option: str, *, zone_required: bool) -> datetime:
    """An ISO-8601 time given as `option`, in UTC; without a zone it is UTC unless
    `zone_required` (then it is refused, as an ambiguous time)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise RefstreamError(f"{option} {text!r} is not an ISO-8601 time such as "
                             "2026-11-30T00:00:00Z") from exc
    if moment.tzinfo is None:
        if zone_required:
            raise RefstreamError(f"{option} {text!r} has no zone; write it in UTC, e.g. "
                                 f"{text}Z")
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def fixed_clock(iso: str) -> Callable[[], int]:
    """A clock stopped at `iso` (the end of a recorded or simulated history)."""
    ms = to_epoch_ms(parse_moment(iso, "--wall-clock", zone_required=True))
    return lambda: ms


def epoch_ms(text: str | None, option: str) -> int | None:
    """An ISO-8601 time (UTC when it names no zone) as epoch milliseconds."""
    if not text:
        return None
    return to_epoch_ms(parse_moment(text, option, zone_required=False))


def count_lines(path: Path) -> int:
    with path.open("rb") as stream:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: stream.read(1 << 20), b""))
