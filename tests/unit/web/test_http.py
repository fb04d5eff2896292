"""The edge driven over real HTTP (httpx against uvicorn): issuing, following, security."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from refstream.rewards.rules import default_rules_path, load_rules
from refstream.schemas.jsonl import parse_line
from refstream.schemas.shop import ShopClick, ShopCodeIssued
from refstream.web.app import create_app
from refstream.web.codes import CODE_ALPHABET, CODE_LENGTH
from tests.unit.web.server import API_KEY, SHOP, edge_settings, free_port, running

RULES = load_rules(default_rules_path())
AUTH = {"Authorization": f"Bearer {API_KEY}"}


class FixedClock:
    def __init__(self, at: datetime) -> None:
        self.ms = int(at.timestamp() * 1000)

    def __call__(self) -> int:
        return self.ms


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 10, 10, 12, 0, tzinfo=UTC))  # inside the podcast campaign


@pytest.fixture
def edge(tmp_path: Path, clock: FixedClock) -> Iterator[tuple[str, Path]]:
    port = free_port()
    settings = edge_settings(tmp_path, port, web_click_burst=5, web_clicks_per_minute=60)
    with running(create_app(settings, RULES, clock=clock), port) as base:
        yield base, tmp_path / "events.jsonl"


def log_events(path: Path) -> list[object]:
    if not path.exists():
        return []
    return [parse_line(line) for line in path.read_text().splitlines() if line.strip()]


def issue(base: str, referrer: str, campaign: str | None = "friends",
          headers: dict[str, str] = AUTH) -> httpx.Response:
    body = {"shop_id": SHOP, "referrer_id": referrer}
    if campaign:
        body["campaign_id"] = campaign
    return httpx.post(f"{base}/api/v1/codes", json=body, headers=headers)


def test_issuing_needs_the_shop_api_key(edge: tuple[str, Path]) -> None:
    base, log = edge
    assert issue(base, "cust-1", headers={}).status_code == 401
    assert issue(base, "cust-1", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert log_events(log) == []


def test_issuing_is_an_event_and_asking_again_gives_the_same_code(
        edge: tuple[str, Path]) -> None:
    base, log = edge
    first = issue(base, "cust-1")
    assert first.status_code == 201, first.text
    data = first.json()
    code = data["code"]
    assert len(code) == CODE_LENGTH and set(code) <= set(CODE_ALPHABET)
    link = urlsplit(data["link"])
    assert link.path == f"/r/{code}"
    assert parse_qs(link.query) == {"utm_source": ["referral"], "utm_medium": ["share-link"],
                                    "utm_campaign": ["friends"]}
    again = issue(base, "cust-1")
    assert again.status_code == 200 and again.json()["code"] == code
    other = issue(base, "cust-2").json()["code"]
    assert other != code
    issued = [e for e in log_events(log) if isinstance(e, ShopCodeIssued)]
    assert [(e.referrer_id, e.referral_code, e.campaign_id) for e in issued] == [
        ("cust-1", code, "friends"), ("cust-2", other, "friends")]


def test_named_campaign_is_only_for_its_named_customers(edge: tuple[str, Path]) -> None:
    base, _ = edge
    refused = issue(base, "cust-1", campaign="vip")
    assert refused.status_code == 422 and "named customers only" in refused.json()["error"]
    assert issue(base, "inf-001", campaign="vip").status_code == 201
    assert issue(base, "cust-1", campaign="no-such").status_code == 422


def test_following_a_link_records_a_click_and_redirects_with_utm_and_discount(
        edge: tuple[str, Path]) -> None:
    base, log = edge
    code = issue(base, "cust-1").json()["code"]
    with httpx.Client() as client:
        response = client.get(f"{base}/r/{code.lower()}", headers={"User-Agent": "Firefox/140"})
        assert response.status_code == 302
        target = urlsplit(response.headers["location"])
        assert (target.scheme, target.netloc, target.path) == ("https", "shop-001.example",
                                                               "/welcome")
        assert parse_qs(target.query) == {
            "lang": ["en"], "utm_source": ["referral"], "utm_medium": ["share-link"],
            "utm_campaign": ["friends"], "referral_code": [code],
            "referee_discount_percent": ["10"]}
        visitor = client.cookies.get("rs_visitor")
        assert visitor
        client.get(f"{base}/r/{code}", headers={"User-Agent": "Firefox/140"})
    clicks = [e for e in log_events(log) if isinstance(e, ShopClick)]
    assert len(clicks) == 2
    assert {c.visitor_id for c in clicks} == {visitor}  # the cookie was read back
    click = clicks[0]
    assert (click.referral_code, click.campaign_id, click.utm_campaign, click.ip,
            click.user_agent) == (code, "friends", "friends", "127.0.0.1", "Firefox/140")
    # No personal data in the URL: neither the referrer nor the visitor.
    assert "cust-1" not in response.headers["location"]
    assert visitor not in response.headers["location"]


def test_head_requests_and_crawlers_are_redirected_but_not_counted(
        edge: tuple[str, Path]) -> None:
    base, log = edge
    code = issue(base, "cust-1").json()["code"]
    assert httpx.head(f"{base}/r/{code}").status_code == 302
    for agent in ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
                  "facebookexternalhit/1.1", "WhatsApp/2.23.20.0", "Slackbot-LinkExpanding 1.0"):
        assert httpx.get(f"{base}/r/{code}", headers={"User-Agent": agent}).status_code == 302
    prefetch = httpx.get(f"{base}/r/{code}", headers={"Sec-Purpose": "prefetch"})
    assert prefetch.status_code == 302
    assert [e for e in log_events(log) if isinstance(e, ShopClick)] == []


def test_outside_the_campaign_a_clear_page_and_an_invalid_click(
        edge: tuple[str, Path], clock: FixedClock) -> None:
    base, log = edge
    code = issue(base, "cust-1", campaign="podcast").json()["code"]
    clock.ms = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)  # after ends_at
    response = httpx.get(f"{base}/r/{code}")
    assert response.status_code == 410
    assert "not running" in response.text and "25 October 2026" in response.text
    clicks = [e for e in log_events(log) if isinstance(e, ShopClick)]
    assert len(clicks) == 1 and clicks[0].campaign_id == "podcast"
    # The core judges it: outside the campaign's start/end it is no valid touch.
    assert not RULES.campaign_by_id["podcast"].running_at(int(
        clicks[0].occurred_at.timestamp() * 1000))


def test_unknown_code_is_a_404_page_and_no_event(edge: tuple[str, Path]) -> None:
    base, log = edge
    response = httpx.get(f"{base}/r/ZZZZZZZZZZ")
    assert response.status_code == 404 and "not known" in response.text
    assert log_events(log) == []


def test_rate_limit_per_ip_stops_flooding_the_log(edge: tuple[str, Path]) -> None:
    base, log = edge
    code = issue(base, "cust-1").json()["code"]
    statuses = [httpx.get(f"{base}/r/{code}").status_code for _ in range(12)]
    # A burst of 5, refilled at 1/s: the fixed clock does not move, so no refill.
    assert statuses == [302] * 5 + [429] * 7
    limited = httpx.get(f"{base}/r/{code}")
    assert limited.headers["retry-after"] == "1"
    assert len([e for e in log_events(log) if isinstance(e, ShopClick)]) == 5


def test_qr_codes_as_svg_and_png(edge: tuple[str, Path]) -> None:
    base, _ = edge
    data = issue(base, "cust-1").json()
    svg = httpx.get(data["qr_svg"])
    assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml"
    assert b"<svg" in svg.content
    png = httpx.get(data["qr_png"])
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_status_links_are_secret_and_revocable(edge: tuple[str, Path]) -> None:
    base, _ = edge
    body = {"shop_id": SHOP, "referrer_id": "cust-1"}
    assert httpx.post(f"{base}/api/v1/status-links", json=body).status_code == 401
    url = httpx.post(f"{base}/api/v1/status-links", json=body, headers=AUTH).json()["status_url"]
    secret = url.rsplit("/", 1)[1]
    assert len(secret) >= 43  # 256 random bits
    assert "cust-1" not in url
    # No snapshot published yet: a clear 503, not a crash.
    assert httpx.get(url).status_code == 503
    revoked = httpx.post(f"{base}/api/v1/status-links/revoke", json=body, headers=AUTH)
    assert revoked.json() == {"revoked": 1}
    assert httpx.get(url).status_code == 404
    assert httpx.get(f"{base}/api/v1/status/{secret}").status_code == 404
    assert json.loads(httpx.get(f"{base}/healthz").text)["ok"] is True


def test_concurrent_requests_for_one_referrer_get_one_code(edge: tuple[str, Path]) -> None:
    base, log = edge

    async def together() -> list[httpx.Response]:
        async with httpx.AsyncClient() as client:
            body = {"shop_id": SHOP, "referrer_id": "cust-7", "campaign_id": "friends"}
            return list(await asyncio.gather(*(
                client.post(f"{base}/api/v1/codes", json=body, headers=AUTH)
                for _ in range(8))))

    answers = asyncio.run(together())
    codes = {a.json()["code"] for a in answers}
    assert len(codes) == 1 and all(a.status_code in (200, 201) for a in answers)
    # The log heard of every code it may have to attribute, each owned by the same referrer.
    issued = [e for e in log_events(log) if isinstance(e, ShopCodeIssued)]
    assert codes <= {e.referral_code for e in issued}
    assert {e.referrer_id for e in issued} == {"cust-7"}
