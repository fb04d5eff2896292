"""The exit codes of every `refstream` command, and the broker errors that choose 4 and 5.

One table for scripts and supervisors (README "Exit codes"); the numbers and the error
classes that declare them live in schemas/errors.py, the one error root:

- 0 done;
- 1 the job ran and found a problem (a finance conflict, invalid lines skipped), an agent
  crashed, or an internal error (a traceback: a bug to report);
- 2 bad usage: the command line asked for something that cannot be done as asked (an
  unknown option, a file that is not there, a referral that is not waiting for review);
- 3 input rejected: an input was read and some of its content refused (`run`'s dead
  letters, `produce` stopping at an invalid line, `dlq redrive` with invalid fixes);
- 4 a dependency was unavailable: the broker (or registry, Java) did not answer within the
  command's bound;
- 5 refused: the broker answered and rejected the request (not authorized);
- 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

from refstream.schemas.errors import (
    EXIT_INPUT_REJECTED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    DependencyUnavailable,
    RefstreamError,
    Refused,
)

# `run` and other commands that went through their input but rejected some of it.
EXIT_DEAD_LETTERS = EXIT_INPUT_REJECTED

DOCUMENTED_EXIT_CODES = frozenset({EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, EXIT_INPUT_REJECTED,
                                   EXIT_UNAVAILABLE, EXIT_REFUSED, EXIT_INTERRUPTED})

__all__ = [
    "DOCUMENTED_EXIT_CODES", "EXIT_DEAD_LETTERS", "EXIT_INPUT_REJECTED", "EXIT_INTERRUPTED",
    "EXIT_OK", "EXIT_PROBLEM", "EXIT_REFUSED", "EXIT_UNAVAILABLE", "EXIT_USAGE",
    "BrokerRefused", "BrokerUnavailable", "broker_error", "exit_code_for",
]


class BrokerUnavailable(DependencyUnavailable):
    """The broker did not answer (or did not acknowledge) within a command's bound."""


class BrokerRefused(Refused):
    """The broker answered and refused: not authorized, or a request it will not accept."""


def exit_code_for(error: RefstreamError) -> int:
    """The code a command ends with when `error` stops it: the one its class declares."""
    code = type(error).exit_code
    return code if code in DOCUMENTED_EXIT_CODES else EXIT_PROBLEM


def broker_error(action: str, bootstrap: str, exc: BaseException, bound_s: float
                 ) -> RefstreamError:
    """A kafka-python error while doing `action`, as the error a person can act on."""
    from kafka import errors as kafka_errors

    name = type(exc).__name__
    if isinstance(exc, kafka_errors.AuthorizationError
                  | kafka_errors.SaslAuthenticationFailedError):
        return BrokerRefused(
            f"{action}: the broker at {bootstrap} refused it ({name}: {exc}); grant this "
            "principal the rights docs/security.md lists for the job, or use the principal "
            "meant for it")
    return BrokerUnavailable(
        f"{action}: no answer from the broker at {bootstrap} within {bound_s:.0f}s "
        f"({name}: {exc}); check that it runs and is reachable, then run the command again "
        "(what was not acknowledged is sent again; ids make repeats harmless)")
