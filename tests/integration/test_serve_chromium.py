"""The edge in a real browser: headless Chromium follows a referral link and lands on the
shop with UTM tags, the click is in the event log; a signup and an order follow (the
generator's event shapes), the log is folded into the analysts' snapshot, and the
referrer's status page shows the referral and its pending reward, with a QR code that
decodes (zbarimg) to the referrer's link.

Needs Debian's `chromium` and `zbar-tools` (`make tools`); skipped with that hint without.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from refstream.rewards.rules import default_rules_path, load_rules
from refstream.schemas.jsonl import parse_line, to_json_object
from refstream.schemas.shop import ShopClick, ShopOrder, ShopSignup
from refstream.web.app import create_app
from tests.integration.test_html_report_chromium import png_size, run_chromium
from tests.unit.web.server import API_KEY, SHOP, edge_settings, free_port, running

pytestmark = pytest.mark.integration

REFERRER = "cust-000042"
FRIEND = "cust-009001"
ORDER_MINOR = 4599
WINDOW = (1000, 2000)

LANDING_PAGE = b"""<!doctype html><html><body><h1>Welcome to shop-001</h1>
<pre id=landed></pre><script>
document.getElementById('landed').textContent = location.search;
</script></body></html>"""


class _Landing(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        self.wfile.write(LANDING_PAGE)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def landing() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Landing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/welcome"
    finally:
        server.shutdown()


def zbarimg() -> str:
    found = shutil.which("zbarimg")
    if not found:
        pytest.skip("no zbarimg: apt-get install -y zbar-tools")
    return found


def append(log: Path, *events: object) -> None:
    with log.open("a", encoding="utf-8") as out:
        for event in events:
            out.write(json.dumps(to_json_object(event), separators=(",", ":")) + "\n")  # type: ignore[arg-type]


def test_follow_sign_up_order_then_the_status_page_shows_it(
        tmp_path: Path, landing: str) -> None:
    decoder = zbarimg()
    port = free_port()
    settings = edge_settings(tmp_path, port, web_landing_urls={SHOP: landing})
    log, snapshot = settings.web_event_log, settings.web_snapshot
    auth = {"Authorization": f"Bearer {API_KEY}"}
    with running(create_app(settings, load_rules(default_rules_path())), port) as base:
        issued = httpx.post(f"{base}/api/v1/codes", headers=auth, json={
            "shop_id": SHOP, "referrer_id": REFERRER, "campaign_id": "friends"}).json()
        code = issued["code"]
        status_url = httpx.post(f"{base}/api/v1/status-links", headers=auth, json={
            "shop_id": SHOP, "referrer_id": REFERRER}).json()["status_url"]

        # 1. Chromium follows the link and lands on the shop with the UTM tags.
        dom = run_chromium(tmp_path / "profile", "--dump-dom", issued["link"]).stdout
        landed = re.search(r'<pre id="landed">([^<]*)</pre>', dom)
        assert landed, dom[:500]
        query = parse_qs(landed.group(1).lstrip("?").replace("&amp;", "&"))
        assert query["utm_source"] == ["referral"] and query["utm_campaign"] == ["friends"]
        assert query["referral_code"] == [code]
        assert query["referee_discount_percent"] == ["10"]

        # 2. The click is in the event log, with Chromium's agent and a visitor cookie id.
        [click] = [e for e in map(parse_line, log.read_text().splitlines())
                   if isinstance(e, ShopClick)]
        assert "HeadlessChrome" in click.user_agent and click.referral_code == code

        # 3. The friend signs up and orders (the generator's shapes), an hour apart.
        signed_up = click.occurred_at + timedelta(minutes=2)
        append(log,
               ShopSignup(event_id="e-signup-1", shop_id=SHOP, occurred_at=signed_up,
                          customer_id=FRIEND, email="friend@example.org", ip="198.51.100.7",
                          visitor_id=click.visitor_id, device_id="dev-friend"),
               ShopOrder(event_id="e-order-1", shop_id=SHOP,
                         occurred_at=signed_up + timedelta(hours=1), order_id="ord-1",
                         customer_id=FRIEND, amount_minor=ORDER_MINOR, currency="EUR",
                         ip="198.51.100.7", visitor_id=click.visitor_id))

        # 4. The log folded into the analysts' snapshot, as the embedded runner does.
        # The friend's order is an hour after now: fold with the clock after it, as a later
        # run would (ingest dead-letters events dated ahead of its clock).
        later = (signed_up + timedelta(hours=2)).isoformat()
        folded = subprocess.run([sys.executable, "-m", "refstream.cli", "run",
                                 "--events", str(log), "--db", str(snapshot), "--strict",
                                 "--wall-clock", later],
                                capture_output=True, text=True, check=False)
        assert folded.returncode == 0, folded.stderr

        # 5. The status page in Chromium: the numbers, the referral, the pending reward.
        dom = run_chromium(tmp_path / "profile", "--dump-dom", status_url).stdout
        numbers = dict(re.findall(r'<td id="n-(\w+)">(\d+)</td>', dom))
        assert numbers == {"clicks": "1", "signups": "1", "orders": "1", "qualified": "1",
                           "held": "0", "rejected": "0", "rewards_due": "0"}
        assert re.search(r"<td>qualified</td>", dom)
        due = (signed_up + timedelta(hours=1) + timedelta(days=30)).strftime("%Y-%m-%d")
        assert re.search(rf"10\.00 EUR</td><td>pending until {due}T", dom), dom[-2000:]
        # The same numbers through the API and as `refstream report referrers` has them.
        api = httpx.get(status_url.replace("/s/", "/api/v1/status/")).json()
        assert (api["signups"], api["qualified"], api["clicks"]) == (1, 1, 1)
        report = subprocess.run([sys.executable, "-m", "refstream.cli", "report",
                                 "referrers", "--db", str(snapshot), "--format", "json"],
                                capture_output=True, text=True, check=True).stdout
        [row] = [r for r in json.loads(report)["rows"] if r["referrer_id"] == REFERRER]
        assert (row["successful"], row["held"], row["rejected"], row["rewards_due"]) == (
            api["qualified"], api["held"], api["rejected"], api["rewards_due"])

        # 6. The screenshot: a real picture whose QR code decodes to the referrer's link.
        shot = tmp_path / "status.png"
        run_chromium(tmp_path / "profile", f"--window-size={WINDOW[0]},{WINDOW[1]}",
                     f"--screenshot={shot}", status_url)
        assert png_size(shot) == WINDOW
        decoded = subprocess.run([decoder, "--quiet", "--raw", str(shot)],
                                 capture_output=True, text=True, check=False)
        assert decoded.returncode == 0, f"no QR code found in {shot}: {decoded.stderr}"
        qr_link = urlsplit(decoded.stdout.strip())
        assert f"{qr_link.scheme}://{qr_link.netloc}{qr_link.path}" == f"{base}/r/{code}"
        assert parse_qs(qr_link.query)["utm_medium"] == ["qr"]

        # 7. A share page for a campaign open to everyone; a named-only one refuses.
        secret = status_url.rsplit("/", 1)[1]
        share = run_chromium(tmp_path / "profile", "--dump-dom",
                             f"{base}/s/{secret}/share/default").stdout
        assert re.search(r'class="code"[^>]*>[0-9A-Z]{10}<', share)
        refused = httpx.get(f"{base}/s/{secret}/share/vip")
        assert refused.status_code == 403 and "named customers only" in refused.text
