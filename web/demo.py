"""The demo's way in to the edge: a status link and a share page for its busiest referrer,
whose codes the edge's registry adopts from the demo's projection database."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from refstream.schemas.status import AttributionStatus, sql_literal
from refstream.web.frontdoor import wall_clock_ms
from refstream.web.registry import Registry


@dataclass(frozen=True)
class DemoLinks:
    shop_id: str
    referrer_id: str
    status_url: str
    share_url: str


def demo_links(db: Path, registry_path: Path, public_url: str) -> DemoLinks | None:
    """The referrer with the most qualified referrals, their codes adopted into the edge's
    registry (the log's shares already own them) and a new status secret; None if nobody
    referred anyone."""
    conn = duckdb.connect(str(db), read_only=True)
    try:
        top = conn.execute(f"""
            SELECT shop_id, referrer_id FROM referrals
            WHERE referrer_id IS NOT NULL AND status = {sql_literal(AttributionStatus.QUALIFIED)}
            GROUP BY ALL ORDER BY count(*) DESC, shop_id, referrer_id LIMIT 1""").fetchone()
        if top is None:
            return None
        shop_id, referrer_id = top
        codes = conn.execute("""
            SELECT referral_code, any_value(campaign_id ORDER BY occurred_at),
                   min(epoch_ms(occurred_at)), min(event_id)
            FROM shares WHERE shop_id = ? AND referrer_id = ? GROUP BY referral_code
            ORDER BY referral_code""", [shop_id, referrer_id]).fetchall()
    finally:
        conn.close()
    registry = Registry(registry_path)
    try:
        for code, campaign_id, at_ms, event_id in codes:
            registry.adopt(code, shop_id, referrer_id, campaign_id, at_ms=at_ms,
                           event_id=event_id)
        secret = registry.new_status_secret(shop_id, referrer_id, wall_clock_ms())
    finally:
        registry.close()
    base = public_url.rstrip("/")
    return DemoLinks(shop_id, referrer_id, f"{base}/s/{secret}",
                     f"{base}/s/{secret}/share/default")
