"""Exit codes scripts can trust (README "Exit codes"): each documented code, produced by the
real `refstream` process on real inputs, and an unreachable broker (a closed port) is 4 for
every command that talks to Kafka, within the command's bound."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from refstream.schemas.errors import RefstreamError
from refstream.streams.exit_codes import (
    DOCUMENTED_EXIT_CODES,
    EXIT_INPUT_REJECTED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
)

ORDER = {"event_type": "order", "event_id": "e-1", "shop_id": "shop-1",
         "occurred_at": "2026-10-03T12:30:00.000Z", "order_id": "o-1", "customer_id": "c-1",
         "amount_minor": 4599, "currency": "EUR", "ip": "203.0.113.9"}
# The bound every Kafka client of a command gets (REFSTREAM_CLIENT_TIMEOUT_S).
BOUND_S = 2.0
# What a command may take beyond its bound: interpreter start, imports, closing.
STARTUP_ALLOWANCE_S = 40.0


# The console script pip installs, as a script or supervisor runs it.
REFSTREAM = str(Path(sys.executable).with_name("refstream"))


def closed_port() -> int:
    """A port nothing listens on: bound once to learn a free number, then released."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]
    code: int
    says: str  # a piece of what stderr must tell the person
    env: tuple[tuple[str, str], ...] = ()


def refstream(argv: list[str], tmp_path: Path, **env: str
              ) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "REFSTREAM_DATA_DIR": str(tmp_path / "data"),
               "REFSTREAM_CLIENT_TIMEOUT_S": str(BOUND_S), "CI": "1", **env}
    environ.pop("REFSTREAM_KAFKA_BOOTSTRAP", None)
    return subprocess.run([REFSTREAM, *argv],
                           capture_output=True, text=True, env=environ, timeout=300,
                           cwd=tmp_path, check=False)


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    (tmp_path / "good.jsonl").write_text(json.dumps(ORDER) + "\n", encoding="utf-8")
    (tmp_path / "bad.jsonl").write_text(
        json.dumps(ORDER) + "\n" + json.dumps(ORDER | {"event_id": "e-2",
                                                        "amount_minor": 45.99}) + "\n",
        encoding="utf-8")
    (tmp_path / "fixes.jsonl").write_text("this is not JSON\n", encoding="utf-8")
    return tmp_path


OFFLINE = [
    Case("topics list needs no broker", ("topics", "list"), EXIT_OK, ""),
    Case("a clean run", ("run", "--events", "good.jsonl", "--db", "r.duckdb"), EXIT_OK, ""),
    Case("help", ("dlq", "redrive", "--help"), EXIT_OK, ""),
    Case("invalid fixes skipped: a problem found", ("dlq", "redrive", "fixes.jsonl",
                                                   "--skip-invalid", "--dry-run"),
         EXIT_PROBLEM, "not JSON"),
    Case("an unknown option", ("run", "--nope"), EXIT_USAGE, "No such option"),
    Case("an unknown command", ("nope",), EXIT_USAGE, "No such command"),
    Case("a missing required option", ("sql", "SELECT 1"), EXIT_USAGE, "--db"),
    Case("a choice that is not offered", ("sql", "SELECT 1", "--db", "x.duckdb", "--format",
                                          "xml"), EXIT_USAGE, "'xml' is not one of"),
    Case("an input file that is not there", ("run", "--events", "missing.jsonl", "--db",
                                             "r.duckdb"), EXIT_USAGE, "no events file"),
    Case("a database that is not there", ("report", "scorecard", "--db", "missing.duckdb"),
         EXIT_USAGE, "refstream run"),
    Case("a time that is not a time", ("run", "--events", "good.jsonl", "--db", "r.duckdb",
                                       "--wall-clock", "yesterday"), EXIT_USAGE, "ISO-8601"),
    Case("a setting in the environment that is not one", ("topics", "list"), EXIT_USAGE,
         "invalid settings", env=(("REFSTREAM_PARTITIONS", "many"),)),
    Case("a port that is not a port", ("serve", "--port", "99999999"), EXIT_USAGE,
         "not in the range"),
    Case("run dead-letters a line", ("run", "--events", "bad.jsonl", "--db", "r.duckdb"),
         EXIT_INPUT_REJECTED, ""),
    Case("invalid fixes: nothing published", ("dlq", "redrive", "fixes.jsonl"),
         EXIT_INPUT_REJECTED, "nothing published"),
]


@pytest.mark.parametrize("case", OFFLINE, ids=[c.name for c in OFFLINE])
def test_exit_code_without_a_broker(case: Case, inputs: Path) -> None:
    done = refstream(list(case.argv), inputs, **dict(case.env))
    assert done.returncode == case.code, done.stdout[-2000:] + done.stderr[-2000:]
    assert case.says in done.stderr + (done.stdout if case.code == EXIT_OK else "")
    if case.code in (EXIT_USAGE, EXIT_INPUT_REJECTED, EXIT_PROBLEM):
        assert "Traceback" not in done.stderr, done.stderr


# Every command that talks to Kafka, pointed at a port nothing listens on.
UNREACHABLE = [
    ("produce", "good.jsonl"),
    ("topics", "create"),
    ("worker",),
    ("projector", "--db", "p.duckdb"),
    ("archive", "--archive", "archive"),
    ("replay", "--db", "replayed.duckdb"),
    ("diff", "r.duckdb", "r.duckdb", "--apply"),
    ("finance-tail", "--ledger", "ledger.sqlite"),
    ("dlq", "list"),
    ("dlq", "export", "--out", "dead.jsonl"),
    ("review", "approve", "ref-1", "--reviewer", "ana", "--shop", "shop-1"),
    ("acls", "apply"),
    ("kafka-users", "list"),
    ("links", "issue", "--shop", "shop-1", "--referrer", "c-1", "--publish-to", "kafka",
     "--registry", "registry.sqlite"),
    ("webhooks", "run", "--source", "kafka", "--outbox", "outbox.sqlite"),
    # the front door waits for the broker before it listens (port 0: any free one)
    ("serve", "--publish-to", "kafka", "--port", "0", "--registry", "registry.sqlite"),
]


@pytest.mark.slow
@pytest.mark.parametrize("argv", UNREACHABLE, ids=[" ".join(a[:2]) for a in UNREACHABLE])
def test_an_unreachable_broker_is_4_within_the_bound(argv: tuple[str, ...], inputs: Path
                                                     ) -> None:
    if argv[0] == "diff":  # a database to compare, made without a broker
        assert refstream(["run", "--events", "good.jsonl", "--db", "r.duckdb"],
                         inputs).returncode == EXIT_OK
    bootstrap = f"127.0.0.1:{closed_port()}"
    started = time.monotonic()
    done = refstream([*argv, "--bootstrap", bootstrap], inputs,
                     REFSTREAM_WEBHOOK_ENDPOINTS='{"shop-1": "http://127.0.0.1:9/hook"}',
                     REFSTREAM_WEBHOOK_SECRETS='{"shop-1": "a-secret-of-20-chars"}')
    took = time.monotonic() - started
    assert done.returncode == EXIT_UNAVAILABLE, done.stdout[-2000:] + done.stderr[-2000:]
    assert bootstrap in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert took < BOUND_S + STARTUP_ALLOWANCE_S, f"{argv}: {took:.1f}s"


WITH_DEFAULT_SIGINT = [sys.executable, "-c", "import os, signal, sys; "
                       "signal.signal(signal.SIGINT, signal.SIG_DFL); "
                       "os.execv(sys.argv[1], sys.argv[1:])"]


def test_ctrl_c_is_130(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.sqlite"
    environ = {**os.environ, "CI": "1",
               "REFSTREAM_WEBHOOK_ENDPOINTS": '{"shop-1": "http://127.0.0.1:9/hook"}',
               "REFSTREAM_WEBHOOK_SECRETS": '{"shop-1": "a-secret-of-20-chars"}'}
    # The delivery worker waits for a snapshot that never comes, until interrupted. A test
    # run started in the background (`nohup`, `cmd &` without job control) hands its children
    # SIGINT ignored, and Python keeps an ignored SIGINT: the CLI gets a terminal's default.
    process = subprocess.Popen(
        [*WITH_DEFAULT_SIGINT, REFSTREAM, "webhooks", "run", "--outbox",
         str(outbox), "--snapshot", str(tmp_path / "never.duckdb")], env=environ,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not outbox.exists():  # it is working once its outbox exists
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the delivery worker never started"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"no exit 60 s after SIGINT: {_stuck(process.pid)}") from None
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == EXIT_INTERRUPTED, err[-2000:]
    assert "Traceback" not in err


def _stuck(pid: int) -> str:
    """What a process that did not end is doing: its signal masks and its Python stack."""
    status = Path(f"/proc/{pid}/status")
    masks = [line for line in status.read_text().splitlines()
             if line.startswith(("SigBlk", "SigIgn", "SigCgt"))] if status.exists() else []
    spy = Path(sys.executable).parent / "py-spy"
    stack = subprocess.run([str(spy), "dump", "--pid", str(pid)], capture_output=True, check=False,
                           text=True, timeout=60).stdout if spy.exists() else ""
    return f"{masks}\n{stack}"


def _subclasses(root: type[RefstreamError]) -> set[type[RefstreamError]]:
    found: set[type[RefstreamError]] = set(root.__subclasses__())
    for child in list(found):
        found |= _subclasses(child)
    return found


def test_every_error_class_declares_a_documented_code() -> None:
    import importlib
    import pkgutil

    import refstream

    for room in ("schemas", "projections", "rewards", "fraud", "streams", "replay", "deploy",
                 "web", "jobs", "cli"):
        package = importlib.import_module(f"refstream.{room}")
        for module in pkgutil.walk_packages(package.__path__, f"refstream.{room}."):
            if module.name.endswith(("faust_app", "__main__")) or ".native" in module.name:
                continue
            importlib.import_module(module.name)
    assert refstream is not None
    undocumented = {cls.__qualname__: cls.exit_code for cls in _subclasses(RefstreamError)
                    if cls.exit_code not in DOCUMENTED_EXIT_CODES}
    assert undocumented == {}
    # The second root is gone: no error of ours is a RuntimeError that skips the mapping.
    from refstream.deploy.kafka_launcher import LocalKafkaError
    from refstream.deploy.security import SecuritySetupError
    from refstream.persistence.checkpoint import SnapshotFailed
    from refstream.streams.log_range import LogGapError

    for error in (LocalKafkaError, SecuritySetupError, SnapshotFailed, LogGapError):
        assert issubclass(error, RefstreamError) and not issubclass(error, RuntimeError)
