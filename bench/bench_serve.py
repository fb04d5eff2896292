"""Benchmark of `refstream serve`'s followed links: GET /r/{code} requests per second and
p50/p99 latency, one server process (uvicorn, httptools, uvloop), keep-alive clients.

The baseline, measured in the same run by the same load generator against the same server
stack, is a bare ASGI app answering every request with a fixed 302: the ratio is what the
edge adds (code lookup, rate limit, cookie, click event validated and appended to the event
log) across hosts. Rounds alternate between the two; the best round of each is reported.
The load generator runs in this process, the server in a child, so on a 2-core machine they
share the CPUs with whatever else runs.

    PYTHONPATH=. .venv/bin/python bench/bench_serve.py [--seconds 5] [--connections 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SHOP = "shop-bench"


async def bare_redirect(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The baseline: a fixed 302, nothing looked up, nothing recorded."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 302,
                "headers": [(b"location", b"https://shop.example/?utm_source=referral"),
                            (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


def _settings(folder: Path, port: int) -> Any:
    from refstream.streams.settings import Settings

    return Settings(web_public_url=f"http://127.0.0.1:{port}",
                    web_event_log=folder / "events.jsonl",
                    web_registry=folder / "registry.sqlite",
                    web_snapshot=folder / "analysts.duckdb",
                    # one client address sends everything here: no limit in the way
                    web_clicks_per_minute=1e9, web_click_burst=1_000_000_000)


def serve(kind: str, folder: Path, port: int) -> None:
    import uvicorn

    if kind == "bare":
        app: Any = bare_redirect
    else:
        from refstream.rewards.rules import default_rules_path, load_rules
        from refstream.web.app import create_app

        app = create_app(_settings(folder, port), load_rules(default_rules_path()))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                loop="uvloop", http="httptools")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _issue_code(folder: Path) -> str:
    from refstream.web.registry import IssuedCode, Registry

    registry = Registry(folder / "registry.sqlite")
    try:
        issued, _ = registry.record(IssuedCode(registry.unused_code(), SHOP, "cust-bench",
                                               "friends", 0, "code-bench"))
    finally:
        registry.close()
    return issued.code


async def _connection(port: int, request: bytes, until: float,
                      latencies: list[float]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    done = 0
    try:
        while time.perf_counter() < until:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 302"):
                raise RuntimeError(f"unexpected answer: {head[:80]!r}")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            done += 1
    finally:
        writer.close()
    return done


async def _load(port: int, path: str, connections: int, seconds: float) -> dict[str, float]:
    requests = [(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                 f"User-Agent: Mozilla/5.0 bench\r\nCookie: rs_visitor=v-bench-visitor-{i}\r\n"
                 "\r\n").encode() for i in range(connections)]
    warm: list[float] = []
    await asyncio.gather(*(_connection(port, r, time.perf_counter() + 1.0, warm)
                           for r in requests))
    latencies: list[float] = []
    started = time.perf_counter()
    until = started + seconds
    counts = await asyncio.gather(*(_connection(port, r, until, latencies) for r in requests))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"requests": float(sum(counts)), "rps": sum(counts) / elapsed,
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))]}


def _round(kind: str, folder: Path, path: str, connections: int,
           seconds: float) -> dict[str, float]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")]))}
    server = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--dir", str(folder),
                               "--port", str(port)], env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"the {kind} server did not start") from None
                time.sleep(0.05)
        return asyncio.run(_load(port, path, connections, seconds))
    finally:
        server.terminate()
        server.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--serve", choices=["refstream", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, Path(args.dir), args.port)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        folder = Path(tmp)
        code = _issue_code(folder)
        best: dict[str, dict[str, float]] = {}
        recorded = 0
        for _ in range(args.rounds):
            for kind in ("refstream", "bare"):
                result = _round(kind, folder, f"/r/{code}", args.connections, args.seconds)
                if kind == "refstream":
                    lines = (folder / "events.jsonl").read_text().count("\n")
                    recorded = lines
                if kind not in best or result["rps"] > best[kind]["rps"]:
                    best[kind] = result
        clicks = sum(1 for line in (folder / "events.jsonl").read_text().splitlines()
                     if json.loads(line)["event_type"] == "click")
    edge, bare = best["refstream"], best["bare"]
    print(f"GET /r/{{code}}, {args.connections} keep-alive connections, {args.seconds:.0f} s "
          f"per round, best of {args.rounds}, one server process")
    for name, result in (("refstream serve", edge), ("bare ASGI 302", bare)):
        print(f"  {name:16} {result['rps']:8,.0f} requests/s   p50 {result['p50_ms']:6.2f} ms"
              f"   p99 {result['p99_ms']:6.2f} ms")
    print(f"  ratio (refstream / bare): {edge['rps'] / bare['rps']:.2f}")
    print(f"  click events recorded: {clicks} in the event log ({recorded} lines)")
    aim = edge["rps"] >= 2000 and edge["p99_ms"] < 50
    print(f"  aim >= 2,000 redirects/s with p99 < 50 ms: {'met' if aim else 'not met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
