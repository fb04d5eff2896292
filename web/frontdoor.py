"""What the edge decides, apart from HTTP: who may have a code, what a followed link records
and where it leads. The handlers in `app.py` only parse requests and render these outcomes.
"""

from __future__ import annotations

import os
import re
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from refstream.rewards.rules import Campaign, Rules
from refstream.schemas.epoch import from_epoch_ms
from refstream.schemas.errors import EXIT_PROBLEM, RefstreamError
from refstream.schemas.shop import ShopCodeIssued
from refstream.streams.settings import Settings
from refstream.web.codes import normalise_code, share_link, utm_tags, with_query
from refstream.web.publishing import EventPublisher
from refstream.web.ratelimit import RateLimiter
from refstream.web.registry import IssuedCode, Registry

Clock = Callable[[], int]  # epoch milliseconds, UTC

VISITOR_COOKIE = "rs_visitor"
VISITOR_COOKIE_MAX_AGE_S = 365 * 24 * 3600
_VISITOR_ID = re.compile(r"v-[A-Za-z0-9_-]{8,64}")
MAX_AGENT_CHARS = 4096  # the click schema's limit
UTM_MEDIUM_QR = "qr"

# Link unfurlers, crawlers and prefetchers fetch a link without a person behind it: their
# requests are redirected but never recorded as clicks (docs/serve.md lists the rule).
_CRAWLER_AGENTS = re.compile(
    r"bot\b|bot/|crawl|spider|slurp|preview|facebookexternalhit|facebookcatalog|"
    r"whatsapp|telegram|slack|discord|skype|embedly|quora link|pinterest|vkshare|"
    r"bingpreview|google-inspectiontool", re.IGNORECASE)
_PREFETCH_HEADERS = ("purpose", "sec-purpose", "x-purpose", "x-moz")


class IssueError(RefstreamError):
    """A code cannot be issued: unknown campaign, or a campaign not open to this referrer."""

    exit_code: ClassVar[int] = EXIT_PROBLEM


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def is_automated(method: str, user_agent: str, headers: Mapping[str, str]) -> bool:
    """True for requests no person made: HEAD, known crawlers and unfurlers, prefetches."""
    if method == "HEAD":
        return True
    if _CRAWLER_AGENTS.search(user_agent):
        return True
    for name in _PREFETCH_HEADERS:
        value = headers.get(name)
        if value and ("prefetch" in value.lower() or "preview" in value.lower()):
            return True
    return False


@dataclass(frozen=True)
class Followed:
    """A followed link: where to send the visitor, or why not (campaign not running)."""

    code: IssuedCode | None
    campaign: Campaign | None
    redirect_to: str | None  # None: show `problem` instead
    problem: str | None
    visitor_id: str
    new_visitor: bool
    recorded: dict[str, Any] | None  # the click event published (JSON form), if counted


class FrontDoor:
    """Issues codes, records followed links; one per server process."""

    def __init__(self, settings: Settings, rules: Rules, registry: Registry,
                 publisher: EventPublisher, clock: Clock = wall_clock_ms) -> None:
        self.settings = settings
        self.rules = rules
        self.registry = registry
        self.publisher = publisher
        self.clock = clock
        # Why the publisher did not start under `serve` (the broker did not answer), if so.
        self.start_error: BaseException | None = None
        self.limiter = RateLimiter(settings.web_clicks_per_minute / 60.0,
                                   settings.web_click_burst)
        self._destinations: dict[str, tuple[str, dict[str, str]]] = {}
        self._second: tuple[int, str] = (-1, "")

    def _iso(self, ms: int) -> str:
        """ISO-8601 UTC with milliseconds; the second's text is reused (clicks come many a
        second)."""
        second = ms // 1000
        if self._second[0] != second:
            self._second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        return f"{self._second[1]}.{ms % 1000:03d}Z"

    # ------------------------------------------------------------------------ issuing

    def campaign(self, campaign_id: str | None) -> Campaign | None:
        if campaign_id is None:
            return None
        campaign = self.rules.campaign_by_id.get(campaign_id)
        if campaign is None:
            known = ", ".join(sorted(self.rules.campaign_by_id)) or "none"
            raise IssueError(f"unknown campaign {campaign_id!r}; the rules "
                             f"({self.rules.version}) have: {known}")
        return campaign

    def open_campaigns(self, referrer_id: str) -> list[Campaign]:
        """The campaigns whose share page this referrer may open: open to the public, or
        naming them (the rules' `eligible_referrers`)."""
        return [c for c in self.rules.campaigns if c.accepts_referrer(referrer_id)]

    async def issue(self, shop_id: str, referrer_id: str,
                    campaign_id: str | None) -> tuple[IssuedCode, bool]:
        """The referrer's code for the campaign (issued and published on first request)."""
        campaign = self.campaign(campaign_id)
        if campaign is not None and not campaign.accepts_referrer(referrer_id):
            raise IssueError(f"campaign {campaign.id} is open to named customers only, and "
                             f"{referrer_id!r} is not one of them")
        existing = self.registry.code_of(shop_id, referrer_id, campaign_id)
        if existing is not None:
            return existing, False
        issued = IssuedCode(self.registry.unused_code(), shop_id, referrer_id, campaign_id,
                            self.clock(), f"code-{uuid.uuid4()}")
        # The log first: a crash between the two leaves a code the log gives the referrer
        # and nobody was told (harmless), never one the registry hands out and the log does
        # not know (whose clicks would pay nobody).
        await self.publisher.publish(ShopCodeIssued(
            event_id=issued.event_id, shop_id=shop_id,
            occurred_at=from_epoch_ms(issued.issued_at_ms), referrer_id=referrer_id,
            referral_code=issued.code, campaign_id=campaign_id))
        return self.registry.record(issued)

    def link(self, issued: IssuedCode, medium: str | None = None) -> str:
        campaign = self.rules.campaign_by_id.get(issued.campaign_id or "")
        link = share_link(self.settings.web_public_url, issued.code,
                          campaign.utm_campaign if campaign else None)
        return with_query(link, {"utm_medium": medium}) if medium else link

    # ------------------------------------------------------------------------ clicks

    def referee_discount(self, campaign_id: str | None) -> int:
        """The shop's checkout offer to the people a referrer sends through this campaign
        (REFSTREAM_WEB_REFEREE_DISCOUNTS), passed to its landing page; 0 for none."""
        return self.settings.web_referee_discounts.get(campaign_id or "", 0)

    def destination(self, issued: IssuedCode) -> tuple[str, dict[str, str]]:
        """(the landing URL a code's link redirects to, its UTM tags); fixed per code."""
        cached = self._destinations.get(issued.code)
        if cached is not None:
            return cached
        campaign = self.rules.campaign_by_id.get(issued.campaign_id or "")
        tags = utm_tags(campaign.utm_campaign if campaign else None)
        landing = self.settings.web_landing_urls.get(issued.shop_id,
                                                     self.settings.web_default_landing_url)
        params = {**tags, "referral_code": issued.code}
        discount = self.referee_discount(issued.campaign_id)
        if discount:
            params["referee_discount_percent"] = str(discount)
        cached = self._destinations[issued.code] = (with_query(landing, params), tags)
        return cached

    async def follow(self, code_text: str, *, visitor_id: str | None, ip: str,
                     user_agent: str, automated: bool) -> Followed:
        """Record a followed link (unless automated) and say where it leads."""
        now = self.clock()
        if visitor_id is not None and not _VISITOR_ID.fullmatch(visitor_id):
            visitor_id = None  # not a cookie we set: a fresh visitor id, never a bad event
        new_visitor = visitor_id is None
        visitor = visitor_id or f"v-{secrets.token_urlsafe(16)}"
        issued = self.registry.cached(code_text)  # the link as issued: no normalising
        if issued is None:
            code = normalise_code(code_text)
            issued = self.registry.code(code) if code else None
        if issued is None:
            return Followed(None, None, None, "This referral link is not known. Check that "
                            "it was copied whole, or ask your friend to send it again.",
                            visitor, new_visitor, None)
        campaign = self.rules.campaign_by_id.get(issued.campaign_id or "")
        target, tags = self.destination(issued)
        running = campaign is None or campaign.running_at(now)
        problem = None if running else _not_running(campaign)
        recorded = None
        if not automated:
            # Outside its campaign the click is still recorded: the core counts it invalid.
            # Every value is ours or checked above (visitor id, agent cut to the schema's
            # limit); the shop_click schema's fields, as the JSON Lines form writes them.
            recorded = {
                "event_type": "click", "event_id": f"click-{os.urandom(16).hex()}",
                "shop_id": issued.shop_id, "occurred_at": self._iso(now),
                "visitor_id": visitor, "landing_url": target, "ip": ip or "unknown",
                "user_agent": user_agent[:MAX_AGENT_CHARS], "referral_code": issued.code,
                **({"campaign_id": issued.campaign_id} if issued.campaign_id else {}),
                **tags}
            await self.publisher.publish_record(recorded)
        return Followed(issued, campaign, target if running else None, problem, visitor,
                        new_visitor, recorded)


def _not_running(campaign: Campaign | None) -> str:
    """What a visitor reads when a link's campaign is outside its start/end."""
    if campaign is None:
        return "This offer is not running now."
    starts = _day(campaign.starts_at) if campaign.starts_at else None
    ends = _day(campaign.ends_at) if campaign.ends_at else None
    if starts and ends:
        return f"This offer runs from {starts} to {ends}; it is not running now."
    if starts:
        return f"This offer starts on {starts}. Please come back then."
    return f"This offer ended on {ends}."


def _day(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%d %B %Y, %H:%M UTC")

