"""Log events a worker appended, by their bytes, for its own pipeline stage to take.

When ingest and the pipeline run in one process, every log record the pipeline reads was
encoded by that process's ingest a moment before, from an event it still holds. Decoding
those bytes again gives back an equal event (the codec's round trip, held by
tests/unit/streams/test_handoff.py for every log event type), so the pipeline takes the
event ingest encoded instead of decoding it: one decode less per event in one process.

The key is the record's whole value, header included: only the exact bytes ingest encoded
find their event, and anything else (another worker's appends, a foreign writer, a gap read
from the log) is decoded as before. Bounded: two generations of `capacity` entries, the
older dropped when the newer fills, so appends this process's pipeline never reads (their
partition is another worker's) cannot grow it.
"""

from __future__ import annotations

from refstream.schemas.events import LogEvent


class AppendedEvents:
    """Value bytes -> the log event they encode, for the events this process appended."""

    __slots__ = ("_newer", "_older", "capacity")

    def __init__(self, capacity: int = 32_768) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._newer: dict[bytes, LogEvent] = {}
        self._older: dict[bytes, LogEvent] = {}

    def __len__(self) -> int:
        return len(self._newer) + len(self._older)

    def put(self, value: bytes, event: LogEvent) -> None:
        """`value` is `event` as the codec encoded it for the log."""
        newer = self._newer
        newer[value] = event
        if len(newer) >= self.capacity:
            self._older, self._newer = newer, {}

    def take(self, value: bytes) -> LogEvent | None:
        """The event these exact bytes were put with (once), or None: decode them."""
        event = self._newer.pop(value, None)
        if event is None and self._older:
            event = self._older.pop(value, None)
        return event
