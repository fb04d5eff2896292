"""The state the pure core folds the canonical log into: per shop, keyed finely inside.

Plain slotted dataclasses, dicts and tuples: they compare by value, pickle for snapshots,
and cost no validation on the hot path. Fraud windows and the reward ledger live in their
own packages and hang off `ShopState`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from refstream.fraud.identity import Identity
from refstream.fraud.signals import FraudSignals, FraudState
from refstream.persistence.records import by_fields
from refstream.rewards.ledger import LedgerState
from refstream.schemas.events import LogEvent
from refstream.schemas.status import ACTIVE_REFERRAL_STATUSES, AttributionStatus

# Statuses in which fraud actions and reviews still reach a referral.
OPEN_STATUSES: Final = frozenset(ACTIVE_REFERRAL_STATUSES)

# How a referee arrived (Attribution.touch).
LINK: Final = "link"                    # a click carrying a referral code
CAMPAIGN: Final = "campaign"            # a click naming only a campaign
SIGNUP_CODE: Final = "signup_code"      # a code typed at signup
CHECKOUT_CODE: Final = "checkout_code"  # a code typed at checkout

# Timer kinds; a timer is (deadline, sequence, kind, key) in a per-shop heap.
DECIDE_ATTRIBUTION: Final = 0  # key: customer id
HOLD_PERIOD_ENDS: Final = 1    # key: referral id
# A customer first seen ordering waits a grace for a signup appended late; key: customer id.
SIGNUP_GRACE_ENDS: Final = 2

Timer = tuple[int, int, int, str]


class Touch(NamedTuple):
    """A moment a visitor met a referral code or campaign."""

    at: int
    event_id: str
    code: str | None
    campaign_id: str | None  # the campaign the click named, else its code's share named
    kind: str


class CodeOwner(NamedTuple):
    """Who a referral code pays, registered by the first Share that carried it."""

    referrer_id: str
    campaign_id: str | None


# State holds touches and code owners as exact tuples: the cyclic GC stops tracking a tuple
# of strings and ints, but never a NamedTuple, and a shop holds hundreds of thousands.
StoredTouch = tuple[int, str, str | None, str | None, str]  # the fields of Touch
TOUCH_AT: Final = 0  # where Touch.at is in a StoredTouch
StoredOwner = tuple[str, str | None]  # the fields of CodeOwner
OWNER_CAMPAIGN: Final = 1  # where CodeOwner.campaign_id is in a StoredOwner


class OrderFacts(NamedTuple):
    """What qualification and fraud read from an order."""

    order_id: str
    event_id: str
    at: int
    amount_minor: int
    currency: str
    number: int  # the customer's nth order in this shop
    payment_hash: str | None
    shipping_hash: str | None
    device_id: str | None


@dataclass(slots=True, init=False)
class PendingDecision:
    """What a new customer did before their attribution is decided (signup + grace), or what
    a customer first seen ordering did before we know whether a late signup precedes it."""

    typed_codes: list[Touch]
    orders: list[OrderFacts]

    # Written out (init=False): mypyc compiles an explicit __init__, while a dataclass-
    # generated one stays interpreted, a Python call per object on the hot path.
    def __init__(self, typed_codes: list[Touch] | None = None,
                 orders: list[OrderFacts] | None = None) -> None:
        self.typed_codes = [] if typed_codes is None else typed_codes
        self.orders = [] if orders is None else orders

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        return by_fields(self)


@dataclass(slots=True, init=False)
class Customer:
    customer_id: str
    # Their signup (or, for a customer from before the log, the first order the log shows).
    conversion_event_id: str
    converted_at: int
    visitor_id: str | None
    ip_hash: str | None
    device_id: str | None
    signed_up: bool
    # First seen placing an order, and no signup at or before it arrived within the grace
    # period: a customer from before the log began.
    existed_before_log: bool = False
    orders: int = 0
    first_order_at: int | None = None
    # Emails, devices, cards and addresses seen, with their first event: self-referral checks.
    identity: Identity = ()
    referral_id: str | None = None
    # Signed up: their attribution is not decided yet. Not signed up: first seen ordering,
    # and the grace period in which a late-appended signup may still precede it runs.
    pending: PendingDecision | None = None

    # Written out (init=False): mypyc compiles an explicit __init__, while a dataclass-
    # generated one stays interpreted, a Python call per object on the hot path.
    def __init__(self, customer_id: str, conversion_event_id: str, converted_at: int,  # noqa: PLR0917
                 visitor_id: str | None, ip_hash: str | None, device_id: str | None,
                 signed_up: bool, existed_before_log: bool = False, orders: int = 0,
                 first_order_at: int | None = None, identity: Identity = (),
                 referral_id: str | None = None,
                 pending: PendingDecision | None = None) -> None:
        self.customer_id = customer_id
        self.conversion_event_id = conversion_event_id
        self.converted_at = converted_at
        self.visitor_id = visitor_id
        self.ip_hash = ip_hash
        self.device_id = device_id
        self.signed_up = signed_up
        self.existed_before_log = existed_before_log
        self.orders = orders
        self.first_order_at = first_order_at
        self.identity = identity
        self.referral_id = referral_id
        self.pending = pending

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        return by_fields(self)

    @property
    def awaiting_signup(self) -> bool:
        """First seen ordering, and not yet known to be new or from before the log."""
        return self.pending is not None and not self.signed_up

    def ordered_before(self, at: int) -> bool:
        """An existing customer at `at`: tracked, but never a new referral."""
        return self.existed_before_log or (
            self.first_order_at is not None and self.first_order_at < at)


@dataclass(slots=True, init=False)
class Referral:
    """Who referred a referee, as currently decided; every change is a new Attribution revision."""

    referral_id: str
    referee_id: str
    referrer_id: str | None
    referral_code: str | None
    campaign_id: str | None
    touch: str
    touch_event_id: str | None
    conversion_event_id: str
    converted_at: int
    status: AttributionStatus
    reason: str | None
    revision: int = 0
    # Orders the referee had placed before the winning touch; qualification counts after it.
    order_base: int = 0
    status_before_hold: AttributionStatus | None = None
    qualified_at: int | None = None
    qualifying_order_id: str | None = None
    qualifying_order_event_id: str | None = None
    qualifying_amount_minor: int = 0
    returned_minor: int = 0
    rewards_due: bool = False
    closed_by_return: bool = False
    return_flagged: bool = False

    # Written out (init=False): mypyc compiles an explicit __init__, while a dataclass-
    # generated one stays interpreted, a Python call per object on the hot path.
    def __init__(self, referral_id: str, referee_id: str, referrer_id: str | None,  # noqa: PLR0917
                 referral_code: str | None, campaign_id: str | None, touch: str,
                 touch_event_id: str | None, conversion_event_id: str, converted_at: int,
                 status: AttributionStatus, reason: str | None, revision: int = 0,
                 order_base: int = 0,
                 status_before_hold: AttributionStatus | None = None,
                 qualified_at: int | None = None,
                 qualifying_order_id: str | None = None,
                 qualifying_order_event_id: str | None = None,
                 qualifying_amount_minor: int = 0, returned_minor: int = 0,
                 rewards_due: bool = False, closed_by_return: bool = False,
                 return_flagged: bool = False) -> None:
        self.referral_id = referral_id
        self.referee_id = referee_id
        self.referrer_id = referrer_id
        self.referral_code = referral_code
        self.campaign_id = campaign_id
        self.touch = touch
        self.touch_event_id = touch_event_id
        self.conversion_event_id = conversion_event_id
        self.converted_at = converted_at
        self.status = status
        self.reason = reason
        self.revision = revision
        self.order_base = order_base
        self.status_before_hold = status_before_hold
        self.qualified_at = qualified_at
        self.qualifying_order_id = qualifying_order_id
        self.qualifying_order_event_id = qualifying_order_event_id
        self.qualifying_amount_minor = qualifying_amount_minor
        self.returned_minor = returned_minor
        self.rewards_due = rewards_due
        self.closed_by_return = closed_by_return
        self.return_flagged = return_flagged

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        return by_fields(self)


@dataclass(slots=True)
class ShopState:
    """Everything the core knows about one shop; it depends on that shop's events only."""

    shop_id: str
    fraud: FraudState
    ledger: LedgerState
    stream_time: int | None = None
    # Event time (README "Event time"): the watermark, stream time minus the rules' allowed
    # lateness, is the time the core has decided up to: every event at or before it has
    # been applied, every timer due by it has fired. None until the first event.
    watermark: int | None = None
    # Events not yet applied (their time is after the watermark), a heap by (time, arrival
    # number): they are applied in event-time order, ties in log order, as the watermark
    # passes them.
    waiting: list[tuple[int, int, LogEvent]] = field(default_factory=list)
    arrivals: int = 0
    # Idempotence: the applied event ids and natural keys themselves (exact, and mostly
    # strings the state holds anyway; no hashing per event). Dicts, not sets: a dict of
    # strings is never tracked by the cyclic GC, a set is walked by every full collection,
    # and these grow with every event.
    seen_events: dict[str, None] = field(default_factory=dict)
    seen_orders: dict[str, None] = field(default_factory=dict)
    seen_returns: dict[str, None] = field(default_factory=dict)
    timers: list[Timer] = field(default_factory=list)
    timer_sequence: int = 0
    codes: dict[str, StoredOwner] = field(default_factory=dict)
    # Touches per visitor within the window (plus grace), oldest first; a visitor listed
    # here has exactly one entry in touch_expiries.
    visitors: dict[str, tuple[StoredTouch, ...]] = field(default_factory=dict)
    # (when a visitor's oldest touch runs out, visitor id), nearly in time order: expiry
    # only frees memory, so a queue does what a timer would at O(1).
    touch_expiries: deque[tuple[int, str]] = field(default_factory=deque)
    visitor_customers: dict[str, str] = field(default_factory=dict)
    customers: dict[str, Customer] = field(default_factory=dict)
    referrals: dict[str, Referral] = field(default_factory=dict)
    # Orders whose return matters (order id -> (referral id, order event id)): a referral's
    # qualifying order (its return voids or reverses the rewards) or, when referrals qualify
    # at signup, the referee's first order (its return is flagged as return abuse).
    watched_orders: dict[str, tuple[str, str]] = field(default_factory=dict)
    # Clicks outside their campaign's start/end, per campaign id: recorded, never attributed.
    invalid_clicks: dict[str, int] = field(default_factory=dict)
    # Clicks through referral links or campaigns by customers who had already ordered.
    existing_customer_clicks: int = 0

    def code_owner(self, code: str | None) -> CodeOwner | None:
        stored = self.codes.get(code) if code else None
        return CodeOwner(*stored) if stored is not None else None

    @classmethod
    def empty(cls, shop_id: str, signals: FraudSignals) -> ShopState:
        return cls(shop_id, FraudState.empty(shop_id, signals), LedgerState(shop_id))


@dataclass(slots=True)
class PipelineState:
    """All shops a pipeline has seen."""

    shops: dict[str, ShopState] = field(default_factory=dict)
