"""The one root of refstream's errors (`RefstreamError`) and the exit code each kind declares;
also the event contract's errors (bad bytes, invalid events, unreadable input files).

Every error refstream raises on purpose is a `RefstreamError`; its class says which exit code
a command ends with (README "Exit codes"), so the CLI maps errors to codes in one place.
"""

from __future__ import annotations

from typing import ClassVar

# The documented exit codes (README "Exit codes"); streams/exit_codes.py re-exports them.
EXIT_OK = 0
EXIT_PROBLEM = 1  # the job ran and found a problem, or an internal error (a bug)
EXIT_USAGE = 2  # the command line asked for something that cannot be done as asked
EXIT_INPUT_REJECTED = 3  # an input's content was read and (some of it) rejected
EXIT_UNAVAILABLE = 4  # a dependency (the broker, a schema registry, Java) did not answer
EXIT_REFUSED = 5  # a dependency answered and refused (not authorized, invalid request)
EXIT_INTERRUPTED = 130  # Ctrl-C


class RefstreamError(Exception):
    """Base of every error refstream raises on purpose; a subclass declares its exit code."""

    exit_code: ClassVar[int] = EXIT_USAGE


class ProblemFound(RefstreamError):
    """The job ran and found something wrong that a person must look at."""

    exit_code: ClassVar[int] = EXIT_PROBLEM


class InputRejected(RefstreamError):
    """The content of an input (a file's line, a message) was read and refused."""

    exit_code: ClassVar[int] = EXIT_INPUT_REJECTED


class DependencyUnavailable(RefstreamError):
    """Something refstream needs (broker, registry, Java, jars) did not answer in time."""

    exit_code: ClassVar[int] = EXIT_UNAVAILABLE


class Refused(RefstreamError):
    """Something refstream needs answered and refused the request."""

    exit_code: ClassVar[int] = EXIT_REFUSED


class DecodeError(InputRejected):
    """Bytes that are not a valid refstream message (bad header, schema, body or fields)."""


class InvalidEvent(InputRejected):
    """A well-formed event that breaks a business rule (unknown shop, bad amount, ...)."""


class InputFileError(InputRejected):
    """A line of an input file that cannot be read; names file and line."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason
