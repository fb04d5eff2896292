"""The exit codes of every `refstream` command, and the errors that choose them.

One table for scripts and supervisors (documented in the README, "Exit codes"):

- 0 done;
- 1 the job ran and found a problem (dead letters with --strict, a finance conflict), an
  agent crashed, or an internal error (a traceback: a bug to report);
- 2 bad usage, or input that could not be read (a file, a flag);
- 3 input rejected: `run` went through its whole input but dead-lettered records (they are
  in the DLQ file it names);
- 4 a dependency was unavailable: the broker did not answer within the command's bound;
- 5 refused: the broker rejected the request (not authorized, invalid configuration);
- 130 interrupted (Ctrl-C).

A worker or projector whose agent crashed exits 1 after logging why, so its supervisor
restarts it.
"""

from __future__ import annotations

from refstream.schemas.errors import RefstreamError

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2
EXIT_DEAD_LETTERS = 3
EXIT_UNAVAILABLE = 4
EXIT_REFUSED = 5
EXIT_INTERRUPTED = 130


class BrokerUnavailable(RefstreamError):
    """The broker did not answer (or did not acknowledge) within a command's bound."""

    exit_code = EXIT_UNAVAILABLE


class BrokerRefused(RefstreamError):
    """The broker answered and refused: not authorized, or a request it will not accept."""

    exit_code = EXIT_REFUSED


def exit_code_for(error: RefstreamError) -> int:
    """The code a command ends with when `error` stops it (bad input unless it says otherwise)."""
    code = getattr(error, "exit_code", EXIT_USAGE)
    return code if isinstance(code, int) else EXIT_USAGE


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
