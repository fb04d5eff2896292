"""Error types of the event contract (bad bytes, invalid events, unreadable input files), and
`RefstreamError`, the root of every error refstream raises on purpose; messages say what/where."""

from __future__ import annotations


class RefstreamError(Exception):
    """Base of every error refstream raises on purpose."""


class DecodeError(RefstreamError):
    """Bytes that are not a valid refstream message (bad header, schema, body or fields)."""


class InvalidEvent(RefstreamError):
    """A well-formed event that breaks a business rule (unknown shop, bad amount, ...)."""


class InputFileError(RefstreamError):
    """A line of an input file that cannot be read; names file and line."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason
