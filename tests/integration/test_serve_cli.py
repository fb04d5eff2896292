"""`refstream demo` prints a status link and a share page; `refstream serve` (the real
command, its own process) opens them; `refstream links` issues and revokes from the shell."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from refstream.schemas.jsonl import parse_line
from refstream.schemas.shop import ShopCodeIssued
from tests.integration.kafka_helpers import wait_for
from tests.unit.web.server import free_port

pytestmark = [pytest.mark.slow]


def refstream(*args: str) -> list[str]:
    return [sys.executable, "-m", "refstream.cli", *args]


def test_demo_status_link_opens_under_serve_and_links_cli(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    port = free_port()
    env = {**os.environ, "REFSTREAM_WEB_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    demo = subprocess.run(refstream("demo", "--out", str(out), "--shops", "1", "--customers",
                                    "800"), capture_output=True, text=True, env=env,
                          check=True, timeout=300).stdout
    status_url = re.search(r"then open (\S+)", demo)
    share_url = re.search(r"share page\s+(\S+)", demo)
    referrer = re.search(r"status page of (\S+) at (\S+)\)", demo)
    assert status_url and share_url and referrer, demo
    events = tmp_path / "events.jsonl"
    server = subprocess.Popen(refstream(
        "serve", "--port", str(port), "--registry", str(out / "registry.sqlite"),
        "--snapshot", str(out / "refstream.duckdb"), "--event-log", str(events)), env=env)
    try:
        wait_for(lambda: _answers(port), 60, "refstream serve")
        page = httpx.get(status_url.group(1))
        assert page.status_code == 200
        numbers = {k: int(v) for k, v in re.findall(r'<td id=n-(\w+)>(\d+)</td>', page.text)}
        assert numbers["qualified"] >= 1 and numbers["clicks"] >= numbers["signups"] >= 1
        api = httpx.get(status_url.group(1).replace("/s/", "/api/v1/status/")).json()
        report = json.loads(subprocess.run(
            refstream("report", "referrers", "--db", str(out / "refstream.duckdb"),
                      "--format", "json"), capture_output=True, text=True, check=True).stdout)
        [row] = [r for r in report["rows"] if r["referrer_id"] == referrer.group(1)][:1]
        assert (row["successful"], row["rejected"], row["held"]) == (
            api["qualified"], api["rejected"], api["held"])
        if api["rewards_due"]:  # the demo's reference payer paid them
            assert "paid" in {w["status"] for w in api["rewards"]}
        share = httpx.get(share_url.group(1))
        assert share.status_code == 200
        [issued] = [e for e in map(parse_line, events.read_text().splitlines())
                    if isinstance(e, ShopCodeIssued)]
        assert issued.referrer_id == referrer.group(1) and issued.referral_code in share.text

        # The shell side: issue for the same registry, then revoke every status link.
        printed = subprocess.run(refstream(
            "links", "issue", "--shop", referrer.group(2), "--referrer", "cust-777",
            "--campaign", "friends", "--registry", str(out / "registry.sqlite"),
            "--event-log", str(events), "--qr-dir", str(tmp_path / "qr"), "--status-link",
            "--format", "json"), capture_output=True, text=True, env=env, check=True).stdout
        link = json.loads(printed)
        assert (tmp_path / "qr" / f"{link['code']}.png").stat().st_size > 100
        assert httpx.get(link["link"]).status_code == 302  # the running server knows it
        refused = subprocess.run(refstream(
            "links", "issue", "--shop", referrer.group(2), "--referrer", "cust-777",
            "--campaign", "vip", "--registry", str(out / "registry.sqlite"),
            "--event-log", str(events)), capture_output=True, text=True, check=False)
        assert refused.returncode == 1 and "named customers only" in refused.stderr
        subprocess.run(refstream("links", "revoke", "--shop", referrer.group(2), "--referrer",
                                 referrer.group(1), "--registry", str(out / "registry.sqlite")),
                       check=True, capture_output=True)
        assert httpx.get(status_url.group(1)).status_code == 404
    finally:
        server.terminate()
        server.wait(timeout=30)


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
