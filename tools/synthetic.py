"""The seeded synthetic shop behind `refstream generate`: realistic funnels plus labelled fraud.
Owns the shop-event generator (JSON Lines form, global event-time order), ground truth and sizing.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cache
from operator import itemgetter
from pathlib import Path
from typing import Any

from refstream.replay.collector import collector_paused
from refstream.schemas.epoch import epoch_ms, from_epoch_ms
from refstream.schemas.shop import SHOP_MODELS, ShopEvent

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
MONTH_DAYS = 30  # the "per month" rates below are per 30 days of shopping activity

EventDict = dict[str, Any]

# ---------------------------------------------------------------------------- rates


@dataclass(frozen=True)
class DelayBand:
    """One band of a delay distribution: with relative `weight`, uniform in [low_ms, high_ms)."""

    weight: float
    low_ms: int
    high_ms: int


Delay = tuple[DelayBand, ...]


@dataclass(frozen=True)
class FunnelRates:
    """Every behavioural rate of the synthetic shop in one place (figures from docs/benchmarks.md).

    Probabilities are per visitor/customer/order; `*_month` figures are per 30 days and
    scale with `SyntheticConfig.days`.
    """

    # The existing customer base keeps ordering; some orders follow a tracked visit.
    orders_per_customer_month: float = 0.7
    tracked_visit_before_order: float = 0.35
    # Sharing: participation (sharers and referees among the customers a month shows) of
    # 5-15% is "healthy"; the demo lands near 13% and a share rate near 5%. Each share
    # reaches a few visitors.
    share_participation_month: float = 0.025
    further_share: float = 0.4
    visitors_per_share: float = 4.0
    revisit: float = 0.15
    # An existing customer clicking a friend's link is tracked, but is no new referral.
    existing_customer_referral_click: float = 0.04
    existing_customer_order_after_click: float = 0.3
    # Referred visitors: click -> signup -> first order; referral conversion lands near
    # 10-12% (top quartile is 8%+), enough referred buyers for a revenue share above 5%.
    referred_signup: float = 0.15
    referred_first_order: float = 0.6
    typed_code_signup: float = 0.10
    late_click: float = 0.03
    referee_checkout_code: float = 0.2
    repeat_order: float = 0.3
    # Referred customers (through a code or a tracked campaign) are worth more than others:
    # larger baskets and more repeat orders put the demo's CLV premium near +20% (the
    # scorecard's median band is +16-25%).
    referred_value_factor: float = 1.5
    referred_repeat_order: float = 0.55
    # Organic visitors (no referral) who sign up and order dilute the referral rate.
    organic_visitors_per_customer_month: float = 0.9
    organic_signup: float = 0.07
    organic_first_order: float = 0.45
    organic_checkout_code: float = 0.04
    # Media campaigns (tracked, no kickback).
    podcast_clicks_per_customer_month: float = 0.12
    blog_clicks_per_customer_month: float = 0.06
    media_signup: float = 0.06
    media_first_order: float = 0.4
    # Influencers: few shares, wide reach, slightly colder audience.
    influencer_shares_month: float = 4.5
    influencer_reach_per_customer: float = 0.004
    influencer_signup: float = 0.10
    influencer_first_order: float = 0.3
    # Returns: ~10% of orders; most inside the 30-day hold, some after it (reversals).
    return_rate: float = 0.10
    return_after_hold: float = 0.2
    partial_return: float = 0.3
    partial_share: float = 0.4  # of the order's value, when only part of it comes back
    hold_period_ms: int = 30 * DAY_MS
    # Order values in minor units: log-normal around the median, clipped.
    order_median_minor: int = 5_500
    order_sigma: float = 0.6
    order_min_minor: int = 1_500
    order_max_minor: int = 25_000
    # Timings.
    share_to_click: Delay = (DelayBand(0.55, 1 * MINUTE_MS, 2 * HOUR_MS),
                             DelayBand(0.35, 2 * HOUR_MS, 1 * DAY_MS),
                             DelayBand(0.10, 1 * DAY_MS, 4 * DAY_MS))
    click_to_signup: Delay = (DelayBand(0.55, 2 * MINUTE_MS, 1 * HOUR_MS),
                              DelayBand(0.30, 1 * HOUR_MS, 1 * DAY_MS),
                              DelayBand(0.15, 1 * DAY_MS, 7 * DAY_MS))
    signup_to_first_order: Delay = (DelayBand(0.5, 5 * MINUTE_MS, 2 * HOUR_MS),
                                    DelayBand(0.3, 2 * HOUR_MS, 3 * DAY_MS),
                                    DelayBand(0.2, 3 * DAY_MS, 14 * DAY_MS))
    between_orders: Delay = (DelayBand(1.0, 2 * DAY_MS, 25 * DAY_MS),)
    between_shares: Delay = (DelayBand(1.0, 2 * DAY_MS, 12 * DAY_MS),)
    visit_to_order: Delay = (DelayBand(1.0, 2 * MINUTE_MS, 90 * MINUTE_MS),)
    revisit_after: Delay = (DelayBand(0.6, 1 * HOUR_MS, 1 * DAY_MS),
                            DelayBand(0.4, 1 * DAY_MS, 6 * DAY_MS))
    # Inside the hold, but clear of its edge, so a test never hinges on a boundary.
    return_inside_hold: Delay = (DelayBand(1.0, 1 * DAY_MS, 28 * DAY_MS),)
    return_outside_hold: Delay = (DelayBand(1.0, 31 * DAY_MS, 40 * DAY_MS),)
    # Out-of-order producers: the click that brought a visitor lands seconds after the signup.
    late_click_lag: Delay = (DelayBand(1.0, 1 * SECOND_MS, 6 * SECOND_MS),)


Span = tuple[int, int]  # (low_ms, high_ms): a uniform draw in [low, high)


@dataclass(frozen=True)
class FraudPlan:
    """How much fraud is injected and how it unfolds.

    Case counts are per `per_customers` of the base (at least 1 each); the step timings
    are shared by every scenario (fraud moves fast: minutes, not days).
    """

    per_customers: int = 2_000
    self_referrals: int = 4
    multi_accounting_rings: int = 1
    ip_bursts: int = 1
    coupon_broadcasts: int = 1
    buy_and_returns: int = 4
    buy_and_return_minimum: int = 2  # one returned inside the hold, one after it
    ring_accounts: tuple[int, int] = (4, 6)  # accounts one device creates, inclusive
    ring_window_ms: int = 70 * HOUR_MS       # signups inside the 72 h the signal watches
    ring_order: float = 0.75
    burst_signups: tuple[int, int] = (6, 9)  # "more than 5 from one IP within an hour"
    burst_window_ms: int = 50 * MINUTE_MS
    burst_order: float = 0.5
    coupon_redeemers: tuple[int, int] = (12, 18)
    coupon_window_ms: int = 20 * HOUR_MS     # signups inside the 24 h the signal watches
    coupon_order: float = 0.5
    abuse_amount_minor: tuple[int, int] = (15_000, 25_000)
    share_to_click: Span = (5 * MINUTE_MS, 1 * HOUR_MS)
    click_to_signup: Span = (2 * MINUTE_MS, 20 * MINUTE_MS)
    signup_to_order: Span = (10 * MINUTE_MS, 3 * HOUR_MS)
    order_to_self_share: Span = (6 * HOUR_MS, 30 * HOUR_MS)  # the self-referrer's own share
    scenario_span_ms: int = 4 * DAY_MS  # room every scenario leaves before the period ends


# The podcast campaign's window as the default rules state it ([starts_at, ends_at)): its
# clicks keep coming after the end, and the rules record those as invalid.
PODCAST_START = datetime(2026, 10, 1, tzinfo=UTC)
PODCAST_END_EXCLUSIVE = datetime(2026, 10, 25, tzinfo=UTC)
INFLUENCERS = ("inf-001", "inf-002", "inf-003")  # named referrers of the `vip` campaign

PATTERNS = ("self_referral", "multi_accounting", "ip_burst", "coupon_broadcast", "buy_and_return")

# ---------------------------------------------------------------------------- config


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate. `days` bounds shopping activity; returns trail it by up to 40 days."""

    seed: int = 7
    shops: int = 3
    customers_per_shop: int = 2000  # size of the existing customer base per shop
    days: int = 30
    start: datetime = datetime(2026, 10, 1, tzinfo=UTC)
    fraud: bool = True  # inject fraud patterns
    currency: str = "EUR"
    rates: FunnelRates = field(default_factory=FunnelRates)
    fraud_plan: FraudPlan = field(default_factory=FraudPlan)

    def __post_init__(self) -> None:
        if not 1 <= self.shops <= _MAX_SHOPS:
            raise ValueError(f"shops must be 1..{_MAX_SHOPS}, got {self.shops}")
        if self.customers_per_shop < 1 or self.days < 1:
            raise ValueError("customers_per_shop and days must be at least 1")
        if self.start.tzinfo is None:
            raise ValueError("start must be timezone-aware (UTC), e.g. datetime(..., tzinfo=UTC)")
        if len(self.currency) != 3 or not self.currency.isupper():
            raise ValueError(f"currency must be an ISO 4217 code like EUR, got {self.currency!r}")

    def describe(self) -> dict[str, Any]:
        """The sizing fields as JSON (rates are recorded only when they differ from defaults)."""
        described: dict[str, Any] = {
            "seed": self.seed, "shops": self.shops, "customers_per_shop": self.customers_per_shop,
            "days": self.days, "start": _iso(epoch_ms(self.start)), "fraud": self.fraud,
            "currency": self.currency,
        }
        if self.rates != FunnelRates():
            described["rates"] = asdict(self.rates)
        if self.fraud_plan != FraudPlan():
            described["fraud_plan"] = asdict(self.fraud_plan)
        return described


# ---------------------------------------------------------------------------- ground truth


@dataclass
class FraudCase:
    """One injected fraud instance: who, through which code, and the events that make it up."""

    pattern: str
    referrer_id: str
    referral_code: str
    customer_ids: list[str]
    event_ids: list[str]
    evidence: dict[str, Any]


@dataclass
class ShopTruth:
    """One shop's labelled truth.

    Referred visitors are new visitors who came through a referral link or typed a code at
    signup (existing customers clicking a link are counted apart); referral orders are all
    orders of referred customers plus new customers' first orders carrying a friend's code.
    """

    shop_id: str
    customers: int
    sharers: int
    shares: int
    referred_visitors: int = 0
    referred_signups: int = 0
    referred_first_orders: int = 0
    referral_orders: int = 0
    checkout_code_orders: int = 0
    existing_customer_referral_clicks: int = 0
    signups: int = 0
    orders: int = 0
    returns: int = 0
    returns_after_hold: int = 0
    # Genuine referees returning their qualifying order: the return-abuse signal sees these
    # too, but they are ordinary returns, not injected buy-and-return cases.
    genuine_first_order_returns: int = 0
    podcast_clicks_outside_window: int = 0
    late_click_ids: list[str] = field(default_factory=list)
    fraud: dict[str, list[FraudCase]] = field(default_factory=dict)


@dataclass
class GroundTruth:
    """Labelled truth of one generated stream, serialisable to JSON (`<stem>.truth.json`)."""

    config: dict[str, Any]
    shops: list[ShopTruth]
    events_by_type: dict[str, int]
    totals: dict[str, int]
    funnel: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> GroundTruth:
        shops = []
        for shop in raw["shops"]:
            fraud = {pattern: [FraudCase(**case) for case in cases]
                     for pattern, cases in shop["fraud"].items()}
            shops.append(ShopTruth(**{**shop, "fraud": fraud}))
        return cls(config=raw["config"], shops=shops, events_by_type=raw["events_by_type"],
                   totals=raw["totals"], funnel=raw["funnel"])

    def cases(self, pattern: str) -> list[FraudCase]:
        return [case for shop in self.shops for case in shop.fraud.get(pattern, [])]


@dataclass(frozen=True)
class GenerationSummary:
    """What `write_jsonl` wrote."""

    path: Path
    truth_path: Path
    events: int
    bytes_written: int
    events_by_type: dict[str, int]
    first_occurred_at: str
    last_occurred_at: str
    funnel: dict[str, float]
    fraud_cases: dict[str, int]
    config: dict[str, Any]


# ---------------------------------------------------------------------------- identities

_MAX_SHOPS = 999
_SEQ_BITS = 32  # event ids stay unique up to 2**32 events per shop

_FIRST_NAMES = (
    "anna", "lena", "marie", "sofia", "emma", "lea", "julia", "laura", "sarah", "nina",
    "clara", "hannah", "lisa", "eva", "mia", "paula", "ines", "chloe", "giulia", "elena",
    "lukas", "jonas", "felix", "paul", "max", "leon", "noah", "elias", "david", "tim",
    "jan", "finn", "ben", "luca", "marco", "pierre", "tom", "oliver", "samuel", "jakob",
)
_LAST_NAMES = (
    "mueller", "schmidt", "schneider", "fischer", "weber", "meyer", "wagner", "becker",
    "schulz", "hoffmann", "koch", "richter", "klein", "wolf", "neumann", "schwarz", "braun",
    "zimmermann", "krueger", "hartmann", "lange", "werner", "krause", "lehmann", "martin",
    "bernard", "dubois", "rossi", "russo", "ferrari", "garcia", "lopez", "jansen", "devries",
    "novak", "kowalski", "nielsen", "larsen", "silva", "costa",
)
# Repeats weight the draw towards the common providers.
_EMAIL_DOMAINS = ("gmail.com",) * 9 + ("outlook.com",) * 3 + ("yahoo.com",) * 2 + (
    "gmx.de", "gmx.de", "web.de", "web.de", "icloud.com", "icloud.com", "hotmail.com", "posteo.de")
_STREETS = (
    "Hauptstrasse", "Bahnhofstrasse", "Gartenweg", "Schillerstrasse", "Goethestrasse",
    "Lindenallee", "Bergstrasse", "Kirchgasse", "Am Markt", "Rosenweg", "Muehlenweg",
    "Parkstrasse", "Ringstrasse", "Waldweg", "Feldstrasse", "Schulstrasse", "Birkenweg",
    "Wiesenstrasse", "Friedhofstrasse", "Dorfstrasse", "Lessingstrasse", "Uhlandstrasse",
    "Mozartstrasse", "Beethovenstrasse", "Poststrasse", "Kastanienallee", "Ahornweg",
    "Eichenstrasse", "Tulpenweg", "Hafenstrasse", "Rathausplatz", "Marktstrasse",
    "Sonnenstrasse", "Blumenstrasse", "Brunnenstrasse", "Moltkestrasse", "Kantstrasse",
    "Heinestrasse", "Luisenstrasse", "Wilhelmstrasse", "Karlstrasse", "Friedrichstrasse",
    "Herderstrasse", "Fontanestrasse", "Jahnstrasse", "Talstrasse", "Seestrasse", "Auweg",
)
_CITIES = (  # (postcode prefix, city); postcodes get three more digits
    ("10", "Berlin"), ("20", "Hamburg"), ("80", "Muenchen"), ("50", "Koeln"),
    ("60", "Frankfurt am Main"), ("70", "Stuttgart"), ("40", "Duesseldorf"), ("44", "Dortmund"),
    ("45", "Essen"), ("04", "Leipzig"), ("28", "Bremen"), ("01", "Dresden"), ("30", "Hannover"),
    ("90", "Nuernberg"), ("47", "Duisburg"), ("44", "Bochum"), ("42", "Wuppertal"),
    ("33", "Bielefeld"), ("53", "Bonn"), ("48", "Muenster"), ("76", "Karlsruhe"),
    ("68", "Mannheim"), ("86", "Augsburg"), ("65", "Wiesbaden"), ("41", "Moenchengladbach"),
    ("45", "Gelsenkirchen"), ("38", "Braunschweig"), ("24", "Kiel"), ("52", "Aachen"),
    ("06", "Halle"), ("39", "Magdeburg"), ("79", "Freiburg"),
)
_HOUSE_NUMBERS = 200
_POSTCODE_TAILS = 1000
_ADDRESS_BITS = 28  # streets x houses x tails x cities covers 2**28, so addresses never repeat
# Public first octets (no private, loopback or multicast ranges); 32 of them for 29-bit IPs.
_FIRST_OCTETS = (
    31, 37, 46, 62, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88,
    89, 91, 92, 93, 94, 95, 109, 176, 178, 185, 188, 193, 194, 195, 212, 217,
)
_IP_BITS = 29
_USER_AGENTS = (
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_6 like Mac OS X) AppleWebKit/605.1.15 "
     "(KHTML, like Gecko) Version/18.6 Mobile/15E148 Safari/604.1"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_6 like Mac OS X) AppleWebKit/605.1.15 "
     "(KHTML, like Gecko) Version/18.6 Mobile/15E148 Safari/604.1"),
    ("Mozilla/5.0 (Linux; Android 15; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/140.0.0.0 Mobile Safari/537.36"),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/140.0.0.0 Mobile Safari/537.36"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/140.0.0.0 Safari/537.36"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/140.0.0.0 Safari/537.36 Edg/140.0.0.0"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
     "(KHTML, like Gecko) Version/18.6 Safari/605.1.15"),
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:143.0) Gecko/20100101 Firefox/143.0",
)
_LANDING_PATHS = ("", "sale", "new-in", "products/sneakers", "products/jackets",
                  "products/bags", "collections/autumn", "gift-cards")
_ORGANIC_SOURCES: tuple[tuple[str, str, str] | None, ...] = (  # None: a direct visit
    None, None, None, ("google", "cpc", "brand"), ("google", "organic", "seo"),
    ("newsletter", "email", "weekly"), ("instagram", "paid_social", "autumn"),
    ("bing", "cpc", "brand"),
)
_CHANNELS = ("email",) * 5 + ("whatsapp",) * 8 + ("social",) * 5 + ("qr",) * 2
_COUPON_SOURCES = ("couponsite", "dealsforum", "slickdeals", "mydealz", "vouchercodes")
_ALIAS_TAGS = ("deals", "shop", "2", "promo", "new", "x")
_MEDIA = {  # campaign -> (utm_source, utm_medium, landing path)
    "podcast-fall": ("podcast", "audio", "podcast"),
    "partner-blog": ("stylemag", "partner", "blog-picks"),
}
# Shopping follows the day: quiet nights, a lunch bump, evening peak (UTC hours).
_HOURLY_WEIGHTS = (1, 1, 1, 1, 1, 2, 3, 5, 6, 6, 7, 8, 9, 8, 7, 7, 7, 8, 10, 12, 13, 11, 7, 3)
_HOUR_TABLE = tuple(hour for hour, weight in enumerate(_HOURLY_WEIGHTS) for _ in range(weight))

_ODD_A = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1
_MASK40, _SHIFT40 = (1 << 40) - 1, 40 // 2 + 1
_MASK32, _SHIFT32 = (1 << 32) - 1, 32 // 2 + 1
_MASK_IP, _SHIFT_IP = (1 << _IP_BITS) - 1, _IP_BITS // 2 + 1


def _mix(value: int, bits: int) -> int:
    """A bijection on [0, 2**bits): distinct inputs give distinct, random-looking outputs."""
    value = (value * _ODD_A) & ((1 << bits) - 1)  # an odd multiplier is invertible mod 2**bits
    return value ^ (value >> (bits // 2 + 1))      # and so is an xor-shift


class _Identities:
    """Personal data derived from a person number: stable per person and unique per shop.

    Deriving instead of sampling keeps genuine customers from colliding on a device, IP,
    mailbox or address by chance, so every such collision in the stream is injected fraud.
    """

    def __init__(self, rng: random.Random) -> None:
        self.visitor_salt = rng.getrandbits(40)
        self.device_salt = rng.getrandbits(40)
        self.ip_salt = rng.getrandbits(_IP_BITS)
        self.agent_salt = rng.getrandbits(32)
        self.payment_salt = rng.getrandbits(64)
        self.email_salt = rng.getrandbits(32)
        self.address_salt = rng.getrandbits(_ADDRESS_BITS)

    def visitor(self, person: int) -> _Visitor:
        """The browser identity of a person; `_mix` inlined, as this runs once per visitor."""
        visitor = ((person ^ self.visitor_salt) * _ODD_A) & _MASK40
        device = ((person ^ self.device_salt) * _ODD_A) & _MASK40
        ip = ((person ^ self.ip_salt) * _ODD_A) & _MASK_IP
        ip ^= ip >> _SHIFT_IP
        agent = ((person ^ self.agent_salt) * _ODD_A) & _MASK32
        return _Visitor(
            person,
            f"v-{visitor ^ (visitor >> _SHIFT40):010x}",
            f"{_FIRST_OCTETS[ip >> 24]}.{(ip >> 16) & 255}.{(ip >> 8) & 255}.{ip & 255}",
            _USER_AGENTS[(agent ^ (agent >> _SHIFT32)) % len(_USER_AGENTS)],
            f"dev-{device ^ (device >> _SHIFT40):010x}",
        )

    def ip(self, person: int) -> str:
        return self.visitor(person).ip

    def payment(self, person: int) -> str:
        return f"pm_{_mix(person ^ self.payment_salt, 64):016x}"

    def email(self, person: int, number: int, domain: str | None = None) -> str:
        x = _mix(person ^ self.email_salt, 32)
        x, first = divmod(x, len(_FIRST_NAMES))
        x, last = divmod(x, len(_LAST_NAMES))
        x, style = divmod(x, 4)
        first_name, last_name = _FIRST_NAMES[first], _LAST_NAMES[last]
        # The customer number keeps mailboxes unique whatever the spelling style.
        local = (f"{first_name}.{last_name}{number}", f"{first_name}{last_name}{number}",
                 f"{first_name[0]}.{last_name}{number}", f"{last_name}.{first_name}{number}")[style]
        return f"{local}@{domain or _EMAIL_DOMAINS[x % len(_EMAIL_DOMAINS)]}"

    def address(self, person: int) -> str:
        x = _mix(person ^ self.address_salt, _ADDRESS_BITS)
        x, street = divmod(x, len(_STREETS))
        x, house = divmod(x, _HOUSE_NUMBERS)
        x, tail = divmod(x, _POSTCODE_TAILS)
        prefix, city = _CITIES[x]
        return f"{_STREETS[street]} {house + 1}, {prefix}{tail:03d} {city}, DE"


@dataclass(slots=True)
class _Visitor:
    """A browser session's identity; a customer adds an account, mailbox, card and address."""

    person: int
    visitor_id: str
    ip: str
    user_agent: str
    device_id: str
    customer_id: str = ""
    email: str = ""
    payment: str = ""
    address: str = ""


class _Link:
    """Where a click came from: the URL and the UTM/referral fields it carries."""

    __slots__ = ("fields", "referral_code")

    def __init__(self, landing_url: str, referral_code: str | None = None,
                 campaign_id: str | None = None,
                 utm: tuple[str, str, str] | None = None) -> None:
        self.referral_code = referral_code
        # Built once per link: every click through it copies these click fields.
        self.fields: dict[str, str] = {"landing_url": landing_url}
        if referral_code is not None:
            self.fields["referral_code"] = referral_code
        if campaign_id is not None:
            self.fields["campaign_id"] = campaign_id
        if utm is not None:
            self.fields.update(zip(("utm_source", "utm_medium", "utm_campaign"), utm,
                                   strict=True))


@dataclass(frozen=True, slots=True)
class _Conversion:
    signup: float
    first_order: float
    checkout_code: float


_Table = tuple[tuple[float, int, int], ...]


def _table(delay: Delay) -> _Table:
    """Cumulative form of a delay distribution for fast sampling."""
    total = sum(band.weight for band in delay)
    cumulative, rows = 0.0, []
    for band in delay:
        cumulative += band.weight / total
        rows.append((cumulative, band.low_ms, band.high_ms - band.low_ms))
    return tuple(rows)


_PRICE_STEP = 100  # minor units of one euro


def _shelf_price(minor: int) -> int:
    """The nearest price ending in .99 (shops price like that)."""
    return max(_PRICE_STEP, round(minor / _PRICE_STEP) * _PRICE_STEP) - 1


def _iso(ms: int) -> str:
    return from_epoch_ms(ms).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# ---------------------------------------------------------------------------- one shop


class _ShopGenerator:
    """Generates one shop's events (unordered) and its truth from its own seeded RNG."""

    def __init__(self, config: SyntheticConfig, shop_no: int) -> None:
        self.config = config
        self.rates = config.rates
        self.shop_no = shop_no
        self.shop_id = f"shop-{shop_no:03d}"
        # Seeding with a string hashes it with SHA-512: stable across runs and Python builds.
        self.rng = random.Random(f"refstream-synthetic:{config.seed}:{shop_no}")
        self.ids = _Identities(self.rng)
        self.start_ms = epoch_ms(config.start)
        self.end_ms = self.start_ms + config.days * DAY_MS
        self.months = config.days / MONTH_DAYS
        self.base = config.customers_per_shop
        self.currency = config.currency
        self.domain = f"https://www.{self.shop_id}.example"
        # Generation order; `occurred_at` holds epoch ms until the records are written out.
        self.events: list[EventDict] = []
        self.counts: Counter[str] = Counter()
        self._seq = 0
        self._next_person = self.base + 1
        self._next_customer = self.base + 1
        self._next_order = 1
        self._next_return = 1
        self._sharers: set[str] = set()
        self._codes: list[str] = []
        self._order_median_log = math.log(self.rates.order_median_minor)
        rates = self.rates
        self._share_to_click = _table(rates.share_to_click)
        self._click_to_signup = _table(rates.click_to_signup)
        self._signup_to_order = _table(rates.signup_to_first_order)
        self._between_orders = _table(rates.between_orders)
        self._between_shares = _table(rates.between_shares)
        self._visit_to_order = _table(rates.visit_to_order)
        self._revisit_after = _table(rates.revisit_after)
        self._inside_hold = _table(rates.return_inside_hold)
        self._outside_hold = _table(rates.return_outside_hold)
        self._late_click_lag = _table(rates.late_click_lag)
        self._organic = self._organic_links()
        self.truth = ShopTruth(shop_id=self.shop_id, customers=self.base, sharers=0, shares=0)

    # ------------------------------------------------------------------ the whole shop

    def run(self) -> ShopTruth:
        influencers = self._influencer_accounts()
        self._existing_customers()
        self._influencers(influencers)
        self._organic_visitors()
        self._media_visitors()
        if self.config.fraud:
            self._inject_fraud()
        self.counts = Counter(record["event_type"] for record in self.events)
        truth = self.truth
        truth.customers = self.base + len(influencers)
        truth.sharers = len(self._sharers)
        truth.shares = self.counts["share"]
        truth.signups = self.counts["signup"]
        truth.orders = self.counts["order"]
        truth.returns = self.counts["return"]
        podcast_start, podcast_end = epoch_ms(PODCAST_START), epoch_ms(PODCAST_END_EXCLUSIVE)
        truth.podcast_clicks_outside_window = sum(
            1 for record in self.events
            if not podcast_start <= record["occurred_at"] < podcast_end
            and record.get("utm_campaign") == "podcast-fall")
        return truth

    # ------------------------------------------------------------------ sampling helpers

    def _delay(self, table: _Table) -> int:
        rng = self.rng
        r = rng.random()
        for cumulative, low, span in table:
            if r < cumulative:
                return low + int(rng.random() * span)
        _, low, span = table[-1]
        return low + int(rng.random() * span)

    def _moment(self) -> int:
        """A time inside the period, following the daily rhythm."""
        rng = self.rng
        day = int(rng.random() * self.config.days)
        hour = _HOUR_TABLE[int(rng.random() * len(_HOUR_TABLE))]
        return self.start_ms + day * DAY_MS + hour * HOUR_MS + int(rng.random() * HOUR_MS)

    def _count(self, mean: float) -> int:
        """A Poisson count (Knuth's method: means here are small)."""
        rng = self.rng
        if mean > 30:  # normal approximation keeps large means cheap
            return max(0, round(rng.gauss(mean, math.sqrt(mean))))
        limit, product, count = math.exp(-mean), rng.random(), 0
        while product > limit:
            count += 1
            product *= rng.random()
        return count

    def _scaled(self, mean: float) -> int:
        """`mean` rounded to a whole count, the fraction decided by a coin."""
        whole = int(mean)
        return whole + (1 if self.rng.random() < mean - whole else 0)

    def _amount(self) -> int:
        rates = self.rates
        raw = self.rng.lognormvariate(self._order_median_log, rates.order_sigma)
        return min(rates.order_max_minor, max(rates.order_min_minor, _shelf_price(round(raw))))

    def _within(self, ts: int) -> bool:
        return ts < self.end_ms

    # ------------------------------------------------------------------ people

    def _visitor(self, person: int | None = None) -> _Visitor:
        if person is None:
            person = self._next_person
            self._next_person += 1
        return self.ids.visitor(person)

    def _customer(self, person: int) -> _Visitor:
        """An existing customer (cust-<person>) with their account data."""
        visitor = self._visitor(person)
        visitor.customer_id = f"cust-{person:06d}"
        visitor.payment = self.ids.payment(person)
        visitor.address = self.ids.address(person)
        return visitor

    def _register(self, visitor: _Visitor, email_domain: str | None = None) -> None:
        """A visitor becomes a new customer: account number, mailbox, card, address."""
        number = self._next_customer
        self._next_customer += 1
        visitor.customer_id = f"cust-{number:06d}"
        visitor.email = self.ids.email(visitor.person, number, email_domain)
        visitor.payment = self.ids.payment(visitor.person)
        visitor.address = self.ids.address(visitor.person)

    # ------------------------------------------------------------------ event emitters

    def _event_id(self) -> str:
        seq = self._seq
        self._seq = seq + 1
        # Opaque but unique across shops: an odd multiplier is a bijection mod 2**64.
        return f"evt_{(((self.shop_no << _SEQ_BITS) | seq) * _ODD_A) & _MASK64:016x}"

    def _share(self, ts: int, referrer_id: str, code: str, channel: str, campaign: str) -> str:
        event_id = self._event_id()
        self.events.append({"event_type": "share", "event_id": event_id, "shop_id": self.shop_id,
                        "occurred_at": ts, "referrer_id": referrer_id, "referral_code": code,
                        "channel": channel, "campaign_id": campaign})
        self._sharers.add(referrer_id)
        return event_id

    def _click(self, ts: int, visitor: _Visitor, link: _Link) -> str:
        event_id = self._event_id()
        self.events.append({
            "event_type": "click", "event_id": event_id, "shop_id": self.shop_id,
            "occurred_at": ts, "visitor_id": visitor.visitor_id, **link.fields,
            "ip": visitor.ip, "user_agent": visitor.user_agent, "device_id": visitor.device_id})
        return event_id

    def _signup(self, ts: int, visitor: _Visitor, typed_code: str | None = None) -> str:
        event_id = self._event_id()
        record: EventDict = {
            "event_type": "signup", "event_id": event_id, "shop_id": self.shop_id,
            "occurred_at": ts, "customer_id": visitor.customer_id, "email": visitor.email,
            "ip": visitor.ip, "visitor_id": visitor.visitor_id}
        if typed_code is not None:
            record["referral_code"] = typed_code
        record["device_id"] = visitor.device_id
        self.events.append(record)
        return event_id

    def _order(self, ts: int, visitor: _Visitor, discount_code: str | None = None, *,
               amount: int | None = None, address: str | None = None) -> tuple[str, str, int]:
        """Emits the order (and perhaps its return); returns (event id, order id, amount)."""
        event_id = self._event_id()
        order_id = f"ord-{self.shop_no:03d}-{self._next_order:07d}"
        self._next_order += 1
        amount = self._amount() if amount is None else amount
        record: EventDict = {
            "event_type": "order", "event_id": event_id, "shop_id": self.shop_id,
            "occurred_at": ts, "order_id": order_id, "customer_id": visitor.customer_id,
            "amount_minor": amount, "currency": self.currency, "ip": visitor.ip,
            "visitor_id": visitor.visitor_id}
        if discount_code is not None:
            record["discount_code"] = discount_code
        record["device_id"] = visitor.device_id
        record["payment_fingerprint"] = visitor.payment
        record["shipping_address"] = address or visitor.address
        self.events.append(record)
        return event_id, order_id, amount

    def _return(self, ts: int, order_ts: int, order_id: str, customer_id: str,
                amount: int) -> str:
        event_id = self._event_id()
        return_id = f"ret-{self.shop_no:03d}-{self._next_return:07d}"
        self._next_return += 1
        self.events.append({"event_type": "return", "event_id": event_id, "shop_id": self.shop_id,
                        "occurred_at": ts, "return_id": return_id, "order_id": order_id,
                        "customer_id": customer_id, "amount_minor": amount,
                        "currency": self.currency})
        if ts - order_ts > self.rates.hold_period_ms:
            self.truth.returns_after_hold += 1
        return event_id

    def _shop_order(self, ts: int, visitor: _Visitor, discount_code: str | None = None,
                    value_factor: float = 1.0) -> bool:
        """A genuine order; ~10% come back, most inside the hold, some after it (True)."""
        amount: int | None = None
        if value_factor != 1.0:
            rates = self.rates
            amount = min(rates.order_max_minor, max(rates.order_min_minor, _shelf_price(
                round(self._amount() * value_factor))))
        _, order_id, amount = self._order(ts, visitor, discount_code, amount=amount)
        rng = self.rng
        rates = self.rates
        if rng.random() >= rates.return_rate:
            return False
        late = rng.random() < rates.return_after_hold
        returned_at = ts + self._delay(self._outside_hold if late else self._inside_hold)
        if rng.random() < rates.partial_return:
            amount = max(rates.order_min_minor, _shelf_price(round(amount * rates.partial_share)))
        self._return(returned_at, ts, order_id, visitor.customer_id, amount)
        return True

    # ------------------------------------------------------------------ links

    def _referral_link(self, code: str, channel: str, campaign: str) -> _Link:
        return _Link(f"{self.domain}/?ref={code}&utm_source={channel}&utm_medium=referral"
                     f"&utm_campaign={campaign}", code, campaign, (channel, "referral", campaign))

    def _organic_links(self) -> tuple[_Link, ...]:
        """Every landing page under every organic source (a direct visit has no UTM)."""
        links = []
        for path in _LANDING_PATHS:
            for source in _ORGANIC_SOURCES:
                if source is None:
                    links.append(_Link(f"{self.domain}/{path}"))
                    continue
                utm_source, utm_medium, utm_campaign = source
                links.append(_Link(f"{self.domain}/{path}?utm_source={utm_source}"
                                   f"&utm_medium={utm_medium}&utm_campaign={utm_campaign}",
                                   utm=source))
        return tuple(links)

    def _organic_link(self) -> _Link:
        return self._organic[int(self.rng.random() * len(self._organic))]

    def _direct_link(self) -> _Link:
        return _Link(f"{self.domain}/")

    # ------------------------------------------------------------------ genuine behaviour

    def _existing_customers(self) -> None:
        rng = self.rng
        rates = self.rates
        order_mean = rates.orders_per_customer_month * self.months
        # Participation over the period, from the monthly figure.
        sharing = 1 - (1 - rates.share_participation_month) ** self.months
        for person in range(1, self.base + 1):
            orders = self._count(order_mean)
            shares = rng.random() < sharing
            if not orders and not shares:
                continue
            customer = self._customer(person)
            for _ in range(orders):
                ts = self._moment()
                if rng.random() < rates.tracked_visit_before_order:
                    visit_ts = ts - self._delay(self._visit_to_order)
                    self._click(max(self.start_ms, visit_ts), customer, self._organic_link())
                self._shop_order(ts, customer)
            if shares:
                self._share_around(customer.customer_id, "friends")

    def _share_around(self, referrer_id: str, campaign: str) -> None:
        """A customer shares their code one or more times; each share reaches a few visitors."""
        rng = self.rng
        rates = self.rates
        code = f"R-{referrer_id}"
        self._codes.append(code)
        conversion = _Conversion(rates.referred_signup, rates.referred_first_order,
                                 rates.referee_checkout_code)
        ts = self._moment()
        while True:
            channel = _CHANNELS[int(rng.random() * len(_CHANNELS))]
            self._share(ts, referrer_id, code, channel, campaign)
            link = self._referral_link(code, channel, campaign)
            reached = 1 + self._count(rates.visitors_per_share - 1)
            for _ in range(reached):
                self._referral_visit(link, ts, conversion)
            if rng.random() >= rates.further_share:
                break
            # People share again days later, not in bursts (a burst is what broadcasting is).
            ts += self._delay(self._between_shares)
            if not self._within(ts):
                break

    def _referral_visit(self, link: _Link, share_ts: int, conversion: _Conversion) -> None:
        rng = self.rng
        rates = self.rates
        click_ts = share_ts + self._delay(self._share_to_click)
        if not self._within(click_ts):
            return
        if rng.random() < rates.existing_customer_referral_click:
            self._existing_customer_click(click_ts, link)
            return
        visitor = self._visitor()
        self.truth.referred_visitors += 1
        signup_ts = click_ts + self._delay(self._click_to_signup)
        if rng.random() >= conversion.signup or not self._within(signup_ts):
            self._click(click_ts, visitor, link)
            if rng.random() < rates.revisit:
                again = click_ts + self._delay(self._revisit_after)
                if self._within(again):
                    self._click(again, visitor, link)
            return
        code = link.referral_code
        self._register(visitor)
        style = rng.random()
        if style < rates.typed_code_signup:
            # Heard of the code, came straight to the shop and typed it at signup.
            self._click(click_ts, visitor, self._direct_link())
            self._signup(signup_ts, visitor, typed_code=code)
        elif style < rates.typed_code_signup + rates.late_click:
            self._signup(signup_ts, visitor)
            late_ts = signup_ts + self._delay(self._late_click_lag)
            self.truth.late_click_ids.append(self._click(late_ts, visitor, link))
        else:
            self._click(click_ts, visitor, link)
            self._signup(signup_ts, visitor)
        self.truth.referred_signups += 1
        self._new_customer_orders(visitor, signup_ts, conversion, code, referred=True)

    def _existing_customer_click(self, ts: int, link: _Link) -> None:
        customer = self._customer(1 + int(self.rng.random() * self.base))
        self._click(ts, customer, link)
        self.truth.existing_customer_referral_clicks += 1
        if self.rng.random() < self.rates.existing_customer_order_after_click:
            order_ts = ts + self._delay(self._visit_to_order)
            if self._within(order_ts):
                self._shop_order(order_ts, customer)

    def _new_customer_orders(self, customer: _Visitor, signup_ts: int, conversion: _Conversion,
                             code: str | None, referred: bool, *, attributed: bool = False) -> None:
        """`referred`: through a customer's code; `attributed`: through a tracked campaign.
        Both count as referred customers in the scorecard, and both are worth more."""
        rng = self.rng
        if rng.random() >= conversion.first_order:
            return
        ts = signup_ts + self._delay(self._signup_to_order)
        if not self._within(ts):
            return
        discount = code if code is not None and rng.random() < conversion.checkout_code else None
        rates = self.rates
        value = rates.referred_value_factor if referred or attributed else 1.0
        repeat = rates.referred_repeat_order if referred or attributed else rates.repeat_order
        returned = self._shop_order(ts, customer, discount, value)
        truth = self.truth
        if referred:
            truth.referred_first_orders += 1
            truth.genuine_first_order_returns += returned
            truth.referral_orders += 1
        elif discount is not None:
            truth.checkout_code_orders += 1
            truth.referral_orders += 1
        while rng.random() < repeat:
            ts += self._delay(self._between_orders)
            if not self._within(ts):
                break
            self._shop_order(ts, customer, value_factor=value)
            if referred:
                truth.referral_orders += 1

    def _influencer_accounts(self) -> list[_Visitor]:
        accounts = []
        for customer_id in INFLUENCERS:
            influencer = self._customer(self._next_person)
            self._next_person += 1
            influencer.customer_id = customer_id
            accounts.append(influencer)
        return accounts

    def _influencers(self, influencers: list[_Visitor]) -> None:
        rates = self.rates
        conversion = _Conversion(rates.influencer_signup, rates.influencer_first_order,
                                 rates.referee_checkout_code)
        reach = rates.influencer_reach_per_customer * self.base
        for influencer in influencers:
            code = f"R-{influencer.customer_id}"
            self._codes.append(code)
            link = self._referral_link(code, "social", "vip")
            for _ in range(max(1, self._count(rates.influencer_shares_month * self.months))):
                ts = self._moment()
                self._share(ts, influencer.customer_id, code, "social", "vip")
                for _ in range(1 + self._count(reach)):
                    self._referral_visit(link, ts, conversion)

    def _organic_visitors(self) -> None:
        rates = self.rates
        conversion = _Conversion(rates.organic_signup, rates.organic_first_order,
                                 rates.organic_checkout_code)
        visits = self._scaled(rates.organic_visitors_per_customer_month * self.base * self.months)
        for _ in range(visits):
            self._visit(self._moment(), self._organic_link(), conversion, friend_codes=self._codes)

    def _media_visitors(self) -> None:
        rates = self.rates
        conversion = _Conversion(rates.media_signup, rates.media_first_order, 0.0)
        for campaign, per_customer in (("podcast-fall", rates.podcast_clicks_per_customer_month),
                                       ("partner-blog", rates.blog_clicks_per_customer_month)):
            source, medium, path = _MEDIA[campaign]
            # Media links are plain UTM links: the campaign is known by its utm_campaign slug.
            link = _Link(f"{self.domain}/{path}?utm_source={source}&utm_medium={medium}"
                         f"&utm_campaign={campaign}", utm=(source, medium, campaign))
            for _ in range(self._scaled(per_customer * self.base * self.months)):
                self._visit(self._moment(), link, conversion, friend_codes=[], attributed=True)

    def _visit(self, ts: int, link: _Link, conversion: _Conversion,
               friend_codes: list[str], attributed: bool = False) -> None:
        """A non-referral visitor: click, perhaps revisit, perhaps sign up and order."""
        rng = self.rng
        visitor = self._visitor()
        self._click(ts, visitor, link)
        signup_ts = ts + self._delay(self._click_to_signup)
        if rng.random() >= conversion.signup or not self._within(signup_ts):
            if rng.random() < self.rates.revisit:
                again = ts + self._delay(self._revisit_after)
                if self._within(again):
                    self._click(again, visitor, link)
            return
        self._register(visitor)
        self._signup(signup_ts, visitor)
        # A friend's code typed at checkout, without ever clicking their link.
        code = friend_codes[int(rng.random() * len(friend_codes))] if friend_codes else None
        self._new_customer_orders(visitor, signup_ts, conversion, code, referred=False,
                                  attributed=attributed)

    # ------------------------------------------------------------------ fraud

    def _cases(self, per_base: int, minimum: int = 1) -> int:
        plan = self.config.fraud_plan
        return max(minimum, round(per_base * self.base / plan.per_customers))

    def _anchor(self, latest_fraction: float = 1.0) -> int:
        """A scenario start leaving the scenario's span before the period ends (if it can)."""
        span_ms = self.config.fraud_plan.scenario_span_ms
        room = max(0, int((self.end_ms - self.start_ms - span_ms) * latest_fraction))
        return self.start_ms + int(self.rng.random() * room)

    def _between(self, span: Span) -> int:
        low, high = span
        return low + int(self.rng.random() * (high - low))

    def _how_many(self, span: tuple[int, int]) -> int:
        """A count drawn from an inclusive range."""
        low, high = span
        return low + int(self.rng.random() * (high - low + 1))

    def _pick_referrers(self, count: int) -> list[_Visitor]:
        """Distinct existing customers (when the base is large enough) to act as referrers."""
        rng = self.rng
        if count <= self.base:
            people = rng.sample(range(1, self.base + 1), count)
        else:
            people = [1 + int(rng.random() * self.base) for _ in range(count)]
        return [self._customer(person) for person in people]

    def _record(self, case: FraudCase) -> None:
        self.truth.fraud.setdefault(case.pattern, []).append(case)

    def _inject_fraud(self) -> None:
        plan = self.config.fraud_plan
        for pattern in PATTERNS:
            self.truth.fraud[pattern] = []
        for index in range(self._cases(plan.self_referrals)):
            self._self_referral(index)
        rings = self._cases(plan.multi_accounting_rings)
        bursts = self._cases(plan.ip_bursts)
        coupons = self._cases(plan.coupon_broadcasts)
        abuses = self._cases(plan.buy_and_returns, plan.buy_and_return_minimum)
        referrers = iter(self._pick_referrers(rings + bursts + coupons + abuses))
        for _ in range(rings):
            self._multi_accounting(next(referrers))
        for _ in range(bursts):
            self._ip_burst(next(referrers))
        for _ in range(coupons):
            self._coupon_broadcast(next(referrers))
        for index in range(abuses):
            self._buy_and_return(next(referrers), after_hold=index % 2 == 1)

    def _alias(self, email: str, variant: int) -> str:
        """A spelling of the same gmail mailbox: dots, +tags, case and googlemail vary."""
        local, _, _ = email.partition("@")
        tag = _ALIAS_TAGS[int(self.rng.random() * len(_ALIAS_TAGS))]
        bare = local.replace(".", "")
        spellings = (
            f"{bare}+{tag}@gmail.com",
            f"{bare[0]}.{bare[1:].capitalize()}@gmail.com",
            f"{local.upper()}+{tag}@googlemail.com",
        )
        return spellings[variant % len(spellings)]

    def _self_referral(self, index: int) -> None:
        """A new customer refers themselves: own link, aliased mailbox, same device or card."""
        plan = self.config.fraud_plan
        anchor = self._anchor()
        owner = self._visitor()
        self._register(owner, email_domain="gmail.com")
        events = [self._click(anchor, owner, self._organic_link())]
        signup_ts = anchor + self._between(plan.click_to_signup)
        events.append(self._signup(signup_ts, owner))
        order_ts = signup_ts + self._between(plan.signup_to_order)
        events.append(self._order(order_ts, owner)[0])
        code = f"R-{owner.customer_id}"
        share_ts = order_ts + self._between(plan.order_to_self_share)
        channel = _CHANNELS[int(self.rng.random() * len(_CHANNELS))]
        events.append(self._share(share_ts, owner.customer_id, code, channel, "friends"))
        # Variants: 0 same device and card, 1 same card on a new device, 2 same device, new card.
        variant = index % 3
        same_device, same_card = variant != 1, variant != 2
        second = self._visitor()
        if same_device:
            second.device_id, second.user_agent = owner.device_id, owner.user_agent
        second.ip = owner.ip
        self._register(second)
        second.email = self._alias(owner.email, index)
        if same_card:
            second.payment = owner.payment
        second.address = owner.address
        click_ts = share_ts + self._between(plan.share_to_click)
        link = self._referral_link(code, channel, "friends")
        alias_signup_ts = click_ts + self._between(plan.click_to_signup)
        self._referred_account(second, link, click_ts, alias_signup_ts, events, registered=True)
        alias_order_ts = alias_signup_ts + self._between(plan.signup_to_order)
        self._fraud_first_order(alias_order_ts, second, events, discount_code=code)
        evidence: dict[str, Any] = {
            "referrer_email": owner.email, "alias_email": second.email,
            "mailbox": _gmail_mailbox(owner.email), "shipping_address": owner.address,
            "shared": [name for name, same in (("device_id", same_device),
                                               ("payment_fingerprint", same_card)) if same],
        }
        if same_device:
            evidence["device_id"] = owner.device_id
        if same_card:
            evidence["payment_fingerprint"] = owner.payment
        self._record(FraudCase("self_referral", owner.customer_id, code,
                               [owner.customer_id, second.customer_id], events, evidence))

    def _referred_account(self, visitor: _Visitor, link: _Link, click_ts: int,
                          signup_ts: int, events: list[str], *, registered: bool = False
                          ) -> None:
        if not registered:
            self._register(visitor)
        events.append(self._click(click_ts, visitor, link))
        events.append(self._signup(signup_ts, visitor))
        self.truth.referred_visitors += 1
        self.truth.referred_signups += 1

    def _fraud_first_order(self, ts: int, visitor: _Visitor, events: list[str], *,
                           address: str | None = None, discount_code: str | None = None,
                           amount: int | None = None) -> tuple[str, int]:
        event_id, order_id, amount = self._order(ts, visitor, discount_code, amount=amount,
                                                 address=address)
        events.append(event_id)
        self.truth.referred_first_orders += 1
        self.truth.referral_orders += 1
        return order_id, amount

    def _multi_accounting(self, referrer: _Visitor) -> None:
        """One device creates several referred accounts through one code within 72 hours."""
        plan = self.config.fraud_plan
        anchor = self._anchor()
        code = f"R-{referrer.customer_id}"
        events = [self._share(anchor, referrer.customer_id, code, "whatsapp", "friends")]
        link = self._referral_link(code, "whatsapp", "friends")
        rig = self._visitor()  # the one phone all accounts are made on
        drop_address = self.ids.address(rig.person)  # every parcel goes to the one drop
        accounts = self._how_many(plan.ring_accounts)
        first_click = anchor + self._between(plan.share_to_click)
        # The last signup must stay inside the window the device signal watches.
        spread = (0, plan.ring_window_ms - plan.click_to_signup[1])
        offsets = sorted(self._between(spread) for _ in range(accounts))
        customers = []
        for offset in offsets:
            account = self._visitor()
            account.device_id, account.user_agent = rig.device_id, rig.user_agent
            click_ts = first_click + offset
            signup_ts = click_ts + self._between(plan.click_to_signup)
            self._referred_account(account, link, click_ts, signup_ts, events)
            customers.append(account.customer_id)
            if self.rng.random() < plan.ring_order:
                order_ts = signup_ts + self._between(plan.signup_to_order)
                self._fraud_first_order(order_ts, account, events, address=drop_address)
        self._record(FraudCase("multi_accounting", referrer.customer_id, code, customers, events,
                               {"device_id": rig.device_id, "accounts": accounts,
                                "shipping_address": drop_address}))

    def _ip_burst(self, referrer: _Visitor) -> None:
        """More than five referred signups from one IP inside an hour, each on its own device."""
        plan = self.config.fraud_plan
        anchor = self._anchor()
        code = f"R-{referrer.customer_id}"
        channel = "social"
        events = [self._share(anchor, referrer.customer_id, code, channel, "friends")]
        link = self._referral_link(code, channel, "friends")
        shared_ip = self._visitor().ip  # one connection (a flat, a VPN exit) for every account
        signups = self._how_many(plan.burst_signups)
        # Clicks come before signups, so the window opens one click-to-signup after the share.
        window_start = anchor + plan.share_to_click[0] + plan.click_to_signup[1]
        customers = []
        for _ in range(signups):
            account = self._visitor()
            account.ip = shared_ip
            signup_ts = window_start + self._between((0, plan.burst_window_ms))
            click_ts = signup_ts - self._between(plan.click_to_signup)
            self._referred_account(account, link, click_ts, signup_ts, events)
            customers.append(account.customer_id)
            if self.rng.random() < plan.burst_order:
                order_ts = signup_ts + self._between(plan.signup_to_order)
                self._fraud_first_order(order_ts, account, events)
        self._record(FraudCase("ip_burst", referrer.customer_id, code, customers, events,
                               {"ip": shared_ip, "signups": signups}))

    def _coupon_broadcast(self, referrer: _Visitor) -> None:
        """A personal code posted on coupon sites, redeemed by a dozen-plus strangers in a day."""
        plan = self.config.fraud_plan
        rng = self.rng
        anchor = self._anchor()
        code = f"R-{referrer.customer_id}"
        events = [self._share(anchor, referrer.customer_id, code, "social", "friends")]
        redeemers = self._how_many(plan.coupon_redeemers)
        posted = anchor + self._between(plan.share_to_click)
        # Strangers arrive from every site the code was posted on.
        first_site = int(rng.random() * len(_COUPON_SOURCES))
        sources = [_COUPON_SOURCES[(first_site + n) % len(_COUPON_SOURCES)]
                   for n in range(redeemers)]
        rng.shuffle(sources)
        clicks_until = (0, plan.coupon_window_ms - plan.click_to_signup[1])
        customers = []
        for source in sources:
            link = _Link(f"{self.domain}/?ref={code}&utm_source={source}&utm_medium=referral"
                         f"&utm_campaign=friends", code, "friends", (source, "referral", "friends"))
            account = self._visitor()
            click_ts = posted + self._between(clicks_until)
            signup_ts = click_ts + self._between(plan.click_to_signup)
            self._referred_account(account, link, click_ts, signup_ts, events)
            customers.append(account.customer_id)
            if rng.random() < plan.coupon_order:
                order_ts = signup_ts + self._between(plan.signup_to_order)
                self._fraud_first_order(order_ts, account, events, discount_code=code)
        self._record(FraudCase("coupon_broadcast", referrer.customer_id, code, customers, events,
                               {"utm_sources": sorted(set(sources)), "redeemers": redeemers}))

    def _buy_and_return(self, referrer: _Visitor, after_hold: bool) -> None:
        """A referee buys big to trigger the reward, then sends it all back."""
        plan = self.config.fraud_plan
        # A return after the hold needs its order early, or the stream's tail gets long.
        anchor = self._anchor(latest_fraction=0.5 if after_hold else 1.0)
        code = f"R-{referrer.customer_id}"
        channel = "whatsapp"
        events = [self._share(anchor, referrer.customer_id, code, channel, "friends")]
        account = self._visitor()
        click_ts = anchor + self._between(plan.share_to_click)
        signup_ts = click_ts + self._between(plan.click_to_signup)
        self._referred_account(account, self._referral_link(code, channel, "friends"),
                               click_ts, signup_ts, events)
        order_ts = signup_ts + self._between(plan.signup_to_order)
        amount = _shelf_price(self._between(plan.abuse_amount_minor))
        order_id, amount = self._fraud_first_order(order_ts, account, events,
                                                   discount_code=code, amount=amount)
        returned_at = order_ts + self._delay(self._outside_hold if after_hold
                                             else self._inside_hold)
        events.append(self._return(returned_at, order_ts, order_id, account.customer_id, amount))
        self._record(FraudCase("buy_and_return", referrer.customer_id, code,
                               [account.customer_id], events,
                               {"order_id": order_id, "amount_minor": amount,
                                "return_timing": "after_hold" if after_hold else "inside_hold",
                                "returned_after_ms": returned_at - order_ts}))


def _gmail_mailbox(email: str) -> str:
    local, _, _ = email.lower().partition("@")
    return f"{local.split('+', 1)[0].replace('.', '')}@gmail.com"


# ---------------------------------------------------------------------------- generation


def _funnel(totals: dict[str, int], customers: int, sharers: int) -> dict[str, float]:
    def ratio(part: int, whole: int) -> float:
        return round(part / whole, 4) if whole else 0.0

    return {
        "share_rate": ratio(sharers, customers),
        "referral_conversion": ratio(totals["referred_first_orders"], totals["referred_visitors"]),
        "referred_signup_rate": ratio(totals["referred_signups"], totals["referred_visitors"]),
        "referral_rate": ratio(totals["referral_orders"], totals["orders"]),
        "return_rate": ratio(totals["returns"], totals["orders"]),
    }


_TOTALLED = ("customers", "sharers", "shares", "referred_visitors", "referred_signups",
             "referred_first_orders", "referral_orders", "checkout_code_orders",
             "existing_customer_referral_clicks", "signups", "orders", "returns",
             "returns_after_hold", "genuine_first_order_returns", "podcast_clicks_outside_window")


def _generate(config: SyntheticConfig) -> tuple[list[EventDict], GroundTruth]:
    """Every shop's events, globally sorted by (event time, shop, generation order)."""
    events: list[EventDict] = []
    shops: list[ShopTruth] = []
    by_type: Counter[str] = Counter()
    with collector_paused():
        for shop_no in range(1, config.shops + 1):
            generator = _ShopGenerator(config, shop_no)
            shops.append(generator.run())
            events.extend(generator.events)
            by_type.update(generator.counts)
    # Stable sort on time alone: ties keep shop order, then generation order.
    events.sort(key=itemgetter("occurred_at"))
    totals = {name: sum(getattr(shop, name) for shop in shops) for name in _TOTALLED}
    totals["late_clicks"] = sum(len(shop.late_click_ids) for shop in shops)
    totals["events"] = len(events)
    truth = GroundTruth(config=config.describe(), shops=shops,
                        events_by_type=dict(sorted(by_type.items())), totals=totals,
                        funnel=_funnel(totals, totals["customers"], totals["sharers"]))
    return events, truth


_MINUTE_PREFIX = len("2026-10-01T12:34:")


@cache
def _second_texts() -> tuple[str, ...]:
    """Every millisecond of a minute as text ("SS.mmmZ")."""
    return tuple(f"{ms // SECOND_MS:02d}.{ms % SECOND_MS:03d}Z" for ms in range(MINUTE_MS))


def _formatted(events: list[EventDict]) -> Iterator[EventDict]:
    """Yields the (time-sorted) records with `occurred_at` as ISO-8601 text.

    Formatting dominates output cost, so the "YYYY-MM-DDTHH:MM:" prefix is made once per
    minute (the records are in time order) and "SS.mmmZ" comes from a table.
    """
    seconds_text = _second_texts()
    minute_start, prefix = 0, ""
    for record in events:
        ms = record["occurred_at"]
        offset = ms - minute_start
        if not 0 <= offset < MINUTE_MS:
            minute_start = ms - ms % MINUTE_MS
            prefix = _iso(minute_start)[:_MINUTE_PREFIX]
            offset = ms - minute_start
        record["occurred_at"] = prefix + seconds_text[offset]
        yield record


def iter_event_dicts(config: SyntheticConfig) -> Iterator[EventDict]:
    """JSON-ready shop events (the JSON Lines form), in global event-time order."""
    events, _ = _generate(config)
    yield from _formatted(events)


def iter_shop_events(config: SyntheticConfig) -> Iterator[ShopEvent]:
    """The same events as validated pydantic models (slow: for tests and small runs)."""
    for record in iter_event_dicts(config):
        yield SHOP_MODELS[record["event_type"]].model_validate(record)


def ground_truth(config: SyntheticConfig) -> GroundTruth:
    """The labelled truth of `config`'s stream (re-derived by the same deterministic pass)."""
    return _generate(config)[1]


def truth_path_for(path: Path) -> Path:
    """Where `write_jsonl` puts the ground truth: `<stem>.truth.json` beside the events."""
    return path.with_name(f"{path.stem}.truth.json")


_WRITE_BATCH = 10_000


def write_jsonl(config: SyntheticConfig, path: Path) -> GenerationSummary:
    """Writes the events as JSON Lines and their ground truth beside them; one generation pass."""
    path = Path(path)
    events, truth = _generate(config)
    encode = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
    written = 0
    first = last = ""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as stream:
        batch: list[str] = []
        for record in _formatted(events):
            batch.append(encode(record))
            if len(batch) == _WRITE_BATCH:
                written += stream.write("\n".join(batch) + "\n")
                batch.clear()
        if batch:
            written += stream.write("\n".join(batch) + "\n")
    if events:
        first, last = events[0]["occurred_at"], events[-1]["occurred_at"]
    truth_path = truth_path_for(path)
    truth_path.write_text(json.dumps(truth.to_dict(), indent=1) + "\n", encoding="utf-8")
    return GenerationSummary(
        path=path, truth_path=truth_path, events=len(events), bytes_written=written,
        events_by_type=truth.events_by_type, first_occurred_at=first, last_occurred_at=last,
        funnel=truth.funnel,
        fraud_cases={pattern: len(truth.cases(pattern)) for pattern in PATTERNS},
        config=truth.config)


def load_ground_truth(path: Path) -> GroundTruth:
    """The ground truth `write_jsonl` wrote (pass the `.truth.json` path)."""
    return GroundTruth.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


# ---------------------------------------------------------------------------- sizing

_CALIBRATION_CUSTOMERS = 4_000
_MIN_CUSTOMERS = 20


def events_for_target(target_events: int, seed: int = 7) -> SyntheticConfig:
    """A config (3 shops, 30 days) sized so that about `target_events` are generated.

    Volume is linear in the customer base, so one small calibration shop measures events
    per customer under the same rates and seed.
    """
    if target_events < 1:
        raise ValueError(f"target_events must be positive, got {target_events}")
    base = SyntheticConfig(seed=seed)
    probe = _ShopGenerator(SyntheticConfig(seed=seed, shops=1,
                                           customers_per_shop=_CALIBRATION_CUSTOMERS), 1)
    probe.run()
    per_customer = len(probe.events) / _CALIBRATION_CUSTOMERS
    customers = max(_MIN_CUSTOMERS, round(target_events / (base.shops * per_customer)))
    return SyntheticConfig(seed=seed, shops=base.shops, customers_per_shop=customers,
                           days=base.days)
