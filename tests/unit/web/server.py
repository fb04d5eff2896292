"""A real uvicorn server for the edge's tests, on a free port, in a thread of the test."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from refstream.streams.settings import Settings

API_KEY = "test-shop-key-7f3a9c"
SHOP = "shop-001"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def edge_settings(folder: Path, port: int, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "web_host": "127.0.0.1", "web_port": port,
        "web_public_url": f"http://127.0.0.1:{port}",
        "web_event_log": folder / "events.jsonl", "web_registry": folder / "registry.sqlite",
        "web_snapshot": folder / "analysts.duckdb",
        "web_api_keys": {SHOP: API_KEY},
        "web_landing_urls": {SHOP: "https://shop-001.example/welcome?lang=en"},
        "web_referee_discounts": {"friends": 10},
    }
    values.update(overrides)
    return Settings(**values)


@contextmanager
def running(app: Any, port: int) -> Iterator[str]:
    """Serve `app` on 127.0.0.1:port until the block ends; yields the base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False,
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
