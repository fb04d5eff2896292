"""The canonical log's events and the derived events, as frozen slotted dataclasses.

These are the values the pure core folds; they carry no raw personal data (ingest replaced
emails, IPs, payment fingerprints and shipping addresses with keyed hashes). Every
timestamp is UTC event time in integer epoch milliseconds; money is integer minor units.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar

from refstream.schemas.status import (
    AttributionStatus,
    FraudAction,
    ReviewDecision,
    RewardKind,
    RewardSide,
    RewardStatusName,
)

# --------------------------------------------------------------------------------------
# Canonical log events (what `refstream.log` holds, in one fixed order per shop)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Share:
    """A referrer sent their link, code or QR through a channel."""

    event_type: ClassVar[str] = "share"
    event_id: str
    shop_id: str
    occurred_at: int
    referrer_id: str
    referral_code: str
    channel: str
    campaign_id: str | None = None


@dataclass(frozen=True, slots=True)
class Click:
    """A visitor landed on the shop, possibly through a referral link or campaign."""

    event_type: ClassVar[str] = "click"
    event_id: str
    shop_id: str
    occurred_at: int
    visitor_id: str
    landing_url: str
    ip_hash: str
    user_agent: str
    referral_code: str | None = None
    campaign_id: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    device_id: str | None = None


@dataclass(frozen=True, slots=True)
class Signup:
    """A visitor became a customer (a lead); a referral code may have been typed."""

    event_type: ClassVar[str] = "signup"
    event_id: str
    shop_id: str
    occurred_at: int
    customer_id: str
    email_hash: str
    ip_hash: str
    visitor_id: str | None = None
    referral_code: str | None = None
    device_id: str | None = None


@dataclass(frozen=True, slots=True)
class OrderPlaced:
    """A customer placed an order; `order_id` is its natural key."""

    event_type: ClassVar[str] = "order"
    event_id: str
    shop_id: str
    occurred_at: int
    order_id: str
    customer_id: str
    amount_minor: int
    currency: str
    ip_hash: str
    visitor_id: str | None = None
    discount_code: str | None = None
    device_id: str | None = None
    payment_hash: str | None = None
    shipping_hash: str | None = None


@dataclass(frozen=True, slots=True)
class OrderReturned:
    """An order (or part of it) was returned; `return_id` is its natural key."""

    event_type: ClassVar[str] = "return"
    event_id: str
    shop_id: str
    occurred_at: int
    return_id: str
    order_id: str
    customer_id: str
    amount_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class ReviewDecided:
    """A person reviewed a referral held by fraud controls and approved or rejected it."""

    event_type: ClassVar[str] = "review"
    event_id: str
    shop_id: str
    occurred_at: int
    referral_id: str
    decision: ReviewDecision
    reviewer_id: str
    note: str | None = None


@dataclass(frozen=True, slots=True)
class CodeIssued:
    """A referral code was issued to one referrer (for one campaign): from now on it pays them.

    The first issue or share of a code fixes its owner; a later share by someone else is
    attributed to the owner and flagged, never re-owned.
    """

    event_type: ClassVar[str] = "code_issued"
    event_id: str
    shop_id: str
    occurred_at: int
    referrer_id: str
    referral_code: str
    campaign_id: str | None = None


@dataclass(frozen=True, slots=True)
class Tick:
    """Stream time of a quiet shop moved on; ingest appends it so timers fire in replay too."""

    event_type: ClassVar[str] = "tick"
    event_id: str
    shop_id: str
    occurred_at: int


LogEvent = (Share | Click | Signup | OrderPlaced | OrderReturned | ReviewDecided | Tick
            | CodeIssued)

LOG_EVENT_TYPES: dict[str, type[LogEvent]] = {
    cls.event_type: cls
    for cls in (Share, Click, Signup, OrderPlaced, OrderReturned, ReviewDecided, Tick,
                CodeIssued)
}

# --------------------------------------------------------------------------------------
# Derived events (what the pipeline emits; every id is deterministic)
# --------------------------------------------------------------------------------------

# Status fields take their vocabulary from `status.py`; a decoded event holds the plain
# string, which equals the member (a StrEnum member is its string).


@dataclass(frozen=True, slots=True)
class Attribution:
    """Who referred whom, as currently decided; re-emitted (same id) when its status moves."""

    event_type: ClassVar[str] = "attribution"
    referral_id: str
    shop_id: str
    occurred_at: int
    rules_version: str
    status: AttributionStatus
    referee_id: str
    referrer_id: str | None
    referral_code: str | None
    campaign_id: str | None
    touch: str
    reason: str | None
    touch_event_id: str | None
    signup_event_id: str
    qualifying_order_id: str | None = None
    revision: int = 0


@dataclass(frozen=True, slots=True)
class FraudFlag:
    """A fraud signal crossed its threshold; the evidence names the events behind it."""

    event_type: ClassVar[str] = "fraud_flag"
    flag_id: str
    shop_id: str
    occurred_at: int
    rules_version: str
    signal: str
    entity_type: str
    entity_key: str
    threshold: int
    observed: int
    window_ms: int
    action: FraudAction
    evidence_event_ids: tuple[str, ...] = field(default_factory=tuple)
    referral_id: str | None = None


@dataclass(frozen=True, slots=True)
class RewardStatus:
    """A reward's lifecycle step (pending, held, due, voided, reversed, rejected)."""

    event_type: ClassVar[str] = "reward_status"
    reward_id: str
    shop_id: str
    occurred_at: int
    rules_version: str
    status: RewardStatusName
    referral_id: str
    beneficiary_id: str
    side: RewardSide
    kind: RewardKind
    amount_minor: int
    currency: str
    due_at: int
    reason: str
    order_id: str | None = None
    revision: int = 0


@dataclass(frozen=True, slots=True)
class RewardDue:
    """Finance owes `amount_minor` to the beneficiary; pay each `reward_id` once."""

    event_type: ClassVar[str] = "reward_due"
    reward_id: str
    shop_id: str
    occurred_at: int
    rules_version: str
    referral_id: str
    beneficiary_id: str
    side: RewardSide
    kind: RewardKind
    amount_minor: int
    currency: str
    due_at: int
    reason: str
    order_id: str | None = None


@dataclass(frozen=True, slots=True)
class RewardReversal:
    """A due reward is clawed back (its qualifying order was returned after it fell due)."""

    event_type: ClassVar[str] = "reward_reversal"
    reversal_id: str
    reward_id: str
    shop_id: str
    occurred_at: int
    rules_version: str
    beneficiary_id: str
    amount_minor: int
    currency: str
    reason: str
    return_id: str | None = None


@dataclass(frozen=True, slots=True)
class LateArrival:
    """A log event appended after its shop's watermark had passed its time (later than the
    rules' allowed lateness). It is applied all the same; decisions taken before it arrived
    did not see it, and the derived events that follow this one are what it changed."""

    event_type: ClassVar[str] = "late_arrival"
    event_id: str  # the late event's
    shop_id: str
    occurred_at: int  # the watermark when it was applied
    rules_version: str
    late_event_type: str
    event_occurred_at: int
    lateness_ms: int  # how far the watermark had passed its time


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record ingest could not accept, with its original bytes and where it came from."""

    event_type: ClassVar[str] = "dead_letter"
    source_topic: str
    source_partition: int
    source_offset: int
    error: str
    original: bytes
    shop_id: str | None = None
    failed_at: int = 0


DerivedEvent = Attribution | FraudFlag | RewardStatus | RewardDue | RewardReversal | LateArrival


def _quick_init(cls: type[Any]) -> None:
    """Give a frozen slotted dataclass an `__init__` that fills its slots directly.

    The generated one sets each field through `object.__setattr__`, the way round the frozen
    guard: half of the time it takes to build an event, and replay and the codec build
    millions. This one calls each slot's own setter, with the same signature and defaults;
    the instance stays frozen to everything else.
    """
    namespace: dict[str, Any] = {}
    params, body = [], []
    for f in fields(cls):
        namespace[f"_set_{f.name}"] = getattr(cls, f.name).__set__  # the slot's descriptor
        if f.default is not MISSING:
            namespace[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        elif f.default_factory is not MISSING:  # only immutable values: made once
            namespace[f"_default_{f.name}"] = f.default_factory()
            params.append(f"{f.name}=_default_{f.name}")
        else:
            params.append(f.name)
        body.append(f"    _set_{f.name}(self, {f.name})")
    source = f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body) + "\n"
    exec(source, namespace)  # our own field names only, as dataclasses itself does
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init


for _cls in (*LOG_EVENT_TYPES.values(), Attribution, FraudFlag, RewardStatus, RewardDue,
             RewardReversal, LateArrival, DeadLetter):
    _quick_init(_cls)



def fast_constructor(cls: type[Any]) -> Callable[..., Any]:
    """A faster constructor of a frozen slotted dataclass, from one value per field (in
    field order, no defaults), for code that builds events by the million (replay).

    Even with `_quick_init`, the class's `__init__` calls a slot setter per field. This
    builds an instance of a twin class with the same slots by plain assignment, then makes
    it a `cls` (same layout, so CPython allows the `__class__` change): the very same object
    `cls(...)` makes, in about half the time. Checked here once; where the change is
    refused, `cls` itself."""
    names = [f.name for f in fields(cls)]
    namespace: dict[str, Any] = {"cls": cls}
    assignments = "".join(f"    self.{name} = {name}\n" for name in names)
    exec(f"def __init__(self, {', '.join(names)}):\n{assignments}"  # field names only
         "    self.__class__ = cls\n", namespace)
    twin = type(f"_{cls.__name__}Builder", (), {"__slots__": cls.__slots__,
                                                 "__init__": namespace["__init__"]})
    sample = tuple(range(len(names)))
    try:
        built = twin(*sample)
    except TypeError:
        return cls
    return twin if type(built) is cls and built == cls(*sample) else cls


# Log events by type name, built from their field values (replay builds them from columns).
LOG_EVENT_CONSTRUCTORS: dict[str, Callable[..., LogEvent]] = {
    name: fast_constructor(cls) for name, cls in LOG_EVENT_TYPES.items()}
