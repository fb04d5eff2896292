"""The per-shop pipeline: attribution -> fraud -> rewards over the canonical log, with snapshots.

It owns what every event shares: idempotence, stream time and timers, dispatch on event type
and the order outputs come out in. The live pipeline and replay both call exactly this.

Event time: a shop's watermark is its stream time (largest event time seen) minus the rules'
allowed lateness. An event waits until the watermark reaches it; waiting events are applied in
(time, arrival) order. One that arrives after the watermark passed it is applied at once,
after a LateArrival that reports it.

Timer rule: when an applied event moves a shop's watermark to T, every timer with deadline
<= T fires first, in (deadline, order the timers were set in) order, each stamped with its
deadline; touches that no pending decision can use any more are then forgotten; then the
event is applied, stamped T; last, any timer the event itself set with a deadline <= T (a
late signup) fires, stamped T. Events that do not move the watermark are stamped with it;
when stream time moves, the watermark follows after the events it passes are applied.
"""

from __future__ import annotations

import heapq
import pickle
from collections.abc import Callable
from itertools import pairwise
from typing import Final, NamedTuple

from refstream.fraud import identity
from refstream.fraud import signals as fraud
from refstream.projections import attribution, referrals
from refstream.projections.state import (
    CHECKOUT_CODE,
    DECIDE_ATTRIBUTION,
    HOLD_PERIOD_ENDS,
    SIGNUP_CODE,
    SIGNUP_GRACE_ENDS,
    Customer,
    OrderFacts,
    PendingDecision,
    PipelineState,
    Referral,
    ShopState,
    Touch,
)
from refstream.projections.step import Step
from refstream.projections.timers import pop_due, schedule
from refstream.rewards.rules import Rules
from refstream.schemas.errors import RefstreamError
from refstream.schemas.events import (
    Click,
    CodeIssued,
    DerivedEvent,
    LateArrival,
    LogEvent,
    OrderPlaced,
    OrderReturned,
    ReviewDecided,
    Share,
    Signup,
    Tick,
)

SNAPSHOT_FORMAT: Final = 4  # 2: core objects pickle by calling their class (records.py)
# 3: shops hold a watermark and the events waiting for it
# 4: core objects pickle their fields by name (persistence/records.py): a field added later
#    takes its default when an older snapshot is restored
# The formats `restore` reads: 3 is read as it was written (fields in order), so it restores
# while the core's fields are those of format 3's time.
READABLE_SNAPSHOT_FORMATS: Final = frozenset({3, 4})
# Sources of a code use, for the broadcasting signal (clicks use their utm_source).
TYPED_SOURCE: Final = "typed"
NO_SOURCE: Final = "(none)"

# Fields of the log events that no part of the core reads (a landing page, a browser string).
# Replay neither reads them from the archive nor fills them in the events it builds only for
# the core: there they are "" (tests/unit/replay/test_columnar_replay.py holds the core to it).
UNREAD_FIELDS: Final = frozenset({"landing_url", "user_agent"})

# The log events the pipeline folds (derived events never come back in).
_FOLDED: Final = frozenset({Share, Click, Signup, OrderPlaced, OrderReturned, ReviewDecided,
                            Tick, CodeIssued})


class Foresight(NamedTuple):
    """What a pipeline is told of the log ahead, by a caller that has seen all of it (replay
    of an archived partition that holds its shops' whole log). A frozen value: the core
    reads it and never changes a derived event because of it; it only keeps less state and
    lets the caller skip rows the core promises not to need (`Pipeline.only_moves_time`).

    - `repeats`: the event ids, order ids and return ids that occur more than once. The
      pipeline remembers those alone for idempotence: an id that comes once is never asked
      about again (remembering every id cost ~7% of the core: cache misses in a dict the
      size of the log).
    - `deciding_visitors`: the visitor ids on the log's signups and orders. A decision reads
      the touches of its customer's visitor, which comes from a signup or an order, so the
      pipeline keeps no touch of anyone else (87% of the clicks through a code or campaign
      in the benchmark's log); their code uses still count for fraud.
    - `active_customers`: the customers who sign up, type a code at checkout, share a code
      or are issued one (as referrer).
    - `signup_visitors`: the visitor ids on the log's signups.
    """

    repeats: frozenset[str]
    deciding_visitors: frozenset[str]
    active_customers: frozenset[str]
    signup_visitors: frozenset[str]


class SnapshotError(RefstreamError):
    """A snapshot this pipeline cannot continue from (other format or rules version)."""


class Pipeline:
    """attribution -> fraud -> rewards for every shop of a log partition; one per partition."""

    __slots__ = ("_deciding", "_repeats", "foresight", "lateness", "rules", "signals", "state")

    def __init__(self, rules: Rules, state: PipelineState | None = None,
                 foresight: Foresight | None = None) -> None:
        """`foresight`: what the log ahead holds, when the caller has seen all of it (replay);
        None (the live log): nothing is known ahead. It never changes a derived event."""
        self.rules = rules
        self.signals = fraud.FraudSignals.from_rules(rules)
        self.lateness = rules.event_time.allowed_lateness_ms  # read on every event
        self.state = state if state is not None else PipelineState()
        self.foresight = foresight
        # Read on every event: the two sets the hot path asks (see Foresight).
        self._repeats = None if foresight is None else foresight.repeats
        self._deciding = None if foresight is None else foresight.deciding_visitors

    def with_foresight(self, foresight: Foresight | None) -> Pipeline:
        """This pipeline's state under the same rules, told `foresight` (replay: per
        partition, each the whole log of its shops, or None when it is not)."""
        told = Pipeline(self.rules, self.state, foresight)
        told.signals = self.signals  # the same rules: no need to build them again
        return told

    # ------------------------------------------------------------------------- public

    def apply(self, event: LogEvent) -> list[DerivedEvent]:
        """Take one log event; the derived events it lets the core decide, in a deterministic
        order. An event waits until the shop's watermark reaches its time, then is applied
        in event-time order; one that comes after the watermark passed it is applied at once
        and reported by a LateArrival first (nothing if it repeats an event id; only the
        report if its natural key, an order id, return id or customer's signup, is held by
        an event applied already)."""
        if type(event) not in _FOLDED:
            raise TypeError(f"the pipeline does not apply {type(event).__name__} events; "
                            "it folds the canonical log's events only")
        shops = self.state.shops
        shop = shops.get(event.shop_id)
        if shop is None:
            shop = shops[event.shop_id] = ShopState.empty(event.shop_id, self.signals)
        at = event.occurred_at
        if isinstance(event, Tick) or (isinstance(event, Click)
                                       and is_organic(self.rules, event)):
            # A Tick, or a visit through no referral link or campaign: time moves, and that
            # is all. Nothing to remember for idempotence either: a repeat carries the same
            # time, which stream time has reached already.
            return self._advance_only(shop, at)
        key = event.event_id
        remember = self._repeats is None or key in self._repeats
        if remember and key in shop.seen_events:
            return []  # a repeat of an event id: nothing moves, not even time
        watermark = shop.watermark
        if _claimed(shop, event):
            # A natural key an applied event holds (a retried order, a second signup of a
            # customer): nothing moves, not even time. If the watermark had passed it, the
            # time-ordered log could have made it the one that counts (it may be earlier
            # than the holder): so it is reported late, once, like any late event. Its id
            # is remembered, so coming again it is a plain repeat, whatever time it is.
            if remember:
                shop.seen_events[key] = None
            if watermark is None or at >= watermark:
                return []
            return [self._late_report(shop, event, watermark)]
        if remember:
            shop.seen_events[key] = None
        if watermark is not None and at < watermark:
            return self._late(shop, event, watermark)
        if watermark is not None and not self.lateness:
            # No lateness allowed: the watermark is stream time and moves to this event
            # (nothing ever waits), so it is applied at once, without the heap.
            shop.stream_time = at
            out = self._apply_now(shop, event)
            return [] if out is None else out
        heapq.heappush(shop.waiting, (at, shop.arrivals, event))
        shop.arrivals += 1
        return self._advance_only(shop, at)

    def _late(self, shop: ShopState, event: LogEvent, watermark: int) -> list[DerivedEvent]:
        """An event the watermark passed already: applied now, after the report of it."""
        applied = self._apply_now(shop, event)
        report = self._late_report(shop, event, watermark)
        return [report] if applied is None else [report, *applied]

    def _late_report(self, shop: ShopState, event: LogEvent, watermark: int) -> LateArrival:
        return LateArrival(event.event_id, shop.shop_id, watermark, self.rules.version,
                           event.event_type, event.occurred_at, watermark - event.occurred_at)

    def _apply_now(self, shop: ShopState, event: LogEvent) -> list[DerivedEvent] | None:
        """Fold one event at the shop's watermark (or its own time, if later); None if it is
        a repeat (event ids are claimed as they arrive, natural keys as events are applied:
        of two orders with one order id, the first in event time is the order)."""
        repeats = self._repeats
        # Natural keys: a second order with the same order id is the same order, whatever
        # its event id; likewise a return, and a customer's signup.
        if isinstance(event, OrderPlaced):
            if not _claim_order(shop, event, repeats):
                return None
        elif isinstance(event, OrderReturned):
            if not _claim_return(shop, event, repeats):
                return None
        elif isinstance(event, Signup) and not _claim_signup(shop, event):
            return None
        at = event.occurred_at
        previous = shop.watermark
        step = Step(shop, self.rules, self.signals, at if previous is None else previous, [])
        timers = shop.timers
        if previous is None or at > previous:
            shop.watermark = at
            if timers and timers[0][0] <= at:
                self._fire(step, at)
            step.now = at
            expiries = shop.touch_expiries
            if expiries and expiries[0][0] <= at:
                attribution.expire_touches(shop, self.rules, at)
        if isinstance(event, Click):
            self._on_click(step, event)
        elif isinstance(event, OrderPlaced):
            self._on_order(step, event)
        elif isinstance(event, Signup):
            self._on_signup(step, event)
        elif isinstance(event, Share | CodeIssued):
            attribution.register_code(step, event)
        elif isinstance(event, OrderReturned):
            referrals.order_returned(step, event)
        elif isinstance(event, ReviewDecided):
            referrals.review(step, event)
        if timers and timers[0][0] <= step.now:
            self._fire(step, step.now)
        return step.out

    def advance(self, shop_id: str, at: int) -> list[DerivedEvent]:
        """What applying a Tick (or an organic click, see `is_organic`) of the shop at `at`
        does: stream time moves on, timers fire. Replay calls it for rows it never decodes."""
        shop = self.state.shops.get(shop_id)
        if shop is None:
            shop = self.state.shops[shop_id] = ShopState.empty(shop_id, self.signals)
        return self._advance_only(shop, at)

    def fold(self, events: list[LogEvent | None], organic_shops: list[str | None],
             times: list[int], emit: Callable[[DerivedEvent], object]) -> None:
        """Rows of the log in order, as replay hands them over: a row with an event is
        applied; a row without one only moves the time of `organic_shops[row]` to
        `times[row]` (see `advance`): a row the core promised not to need
        (`only_moves_time`: an organic click; told the foresight, a click without a code by
        a visitor outside the deciding visitors, a quiet order); with no shop either, a
        record passed over.
        Every derived event goes to `emit`, in order. Compiled with the core, so this loop
        runs as C, not as interpreted bytecode around each call.

        A run of organic clicks of one shop moves its time once, to the run's latest: the
        same timers fire, stamped with their deadlines, in the same order, before the same
        next row; only touches no decision can use are forgotten once instead of in steps
        (decisions choose touches by time themselves, see `attribution.decide`)."""
        run_shop: str | None = None
        run_until = 0
        for row in range(len(events)):
            event = events[row]
            shop_id = organic_shops[row] if event is None else None
            if event is None and shop_id is None:
                continue  # passed over
            if shop_id is not None and shop_id == run_shop:
                run_until = max(run_until, times[row])
                continue
            if run_shop is not None:  # the run ends here
                for item in self.advance(run_shop, run_until):
                    emit(item)
            run_shop, run_until = shop_id, times[row]
            if event is not None:
                for item in self.apply(event):
                    emit(item)
        if run_shop is not None:
            for item in self.advance(run_shop, run_until):
                emit(item)

    def forget(self, shop_id: str) -> None:
        """Drop all state of a shop. Replay calls it once the log has no more of the shop's
        events, so a long replay holds one shop's state at a time, not every shop's."""
        self.state.shops.pop(shop_id, None)

    def stream_time(self, shop_id: str) -> int | None:
        """The largest event time seen in the shop's log, or None for an unseen shop."""
        shop = self.state.shops.get(shop_id)
        return shop.stream_time if shop is not None else None

    def snapshot(self) -> bytes:
        """The whole state, to continue later with `Pipeline.restore` under the same rules."""
        if self.foresight is not None:
            raise SnapshotError("this pipeline was told what the rest of its log holds "
                                "(replay: the ids that repeat, the visitors who sign up or "
                                "order): its state cannot continue a live log")
        return pickle.dumps((SNAPSHOT_FORMAT, self.rules.version, self.state),
                            protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def restore(cls, rules: Rules, data: bytes) -> Pipeline:
        """A pipeline continuing from `snapshot()` bytes taken under the same rules version."""
        try:
            loaded = pickle.loads(data)  # our own checkpoint bytes, never foreign input
        except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError) as exc:
            raise SnapshotError(f"unreadable pipeline snapshot: {exc!r}") from exc
        if not (isinstance(loaded, tuple) and len(loaded) == 3):
            raise SnapshotError("not a refstream pipeline snapshot")
        fmt, version, state = loaded
        if fmt not in READABLE_SNAPSHOT_FORMATS or not isinstance(state, PipelineState):
            readable = ", ".join(str(f) for f in sorted(READABLE_SNAPSHOT_FORMATS))
            raise SnapshotError(f"snapshot format {fmt!r}; this refstream reads {readable}")
        if version != rules.version:
            raise SnapshotError(
                f"snapshot was taken under rules {version!r}, not {rules.version!r}: state of "
                "one rules version cannot continue under another; replay the log from offset 0")
        return cls(rules, state)

    # --------------------------------------------------------------------------- time

    def _advance_only(self, shop: ShopState, at: int) -> list[DerivedEvent]:
        """Stream time moves to `at` (if later), the watermark with it: the waiting events it
        passes are applied in event-time order, then the timers due by it fire."""
        previous = shop.stream_time
        if previous is None or at > previous:
            shop.stream_time = previous = at
        elif shop.watermark is not None:
            return []  # neither stream time nor the watermark moves
        watermark = previous - self.lateness
        out: list[DerivedEvent] = []
        waiting = shop.waiting
        while waiting and waiting[0][0] <= watermark:
            applied = self._apply_now(shop, heapq.heappop(waiting)[2])
            if applied:
                out += applied
        self._advance_watermark(shop, watermark, out)
        return out

    def _advance_watermark(self, shop: ShopState, at: int, out: list[DerivedEvent]) -> None:
        previous = shop.watermark
        if previous is not None and at <= previous:
            return
        shop.watermark = at
        timers = shop.timers
        if timers and timers[0][0] <= at:
            step = Step(shop, self.rules, self.signals, at if previous is None else previous,
                        out)
            self._fire(step, at)
        expiries = shop.touch_expiries
        if expiries and expiries[0][0] <= at:
            attribution.expire_touches(shop, self.rules, at)

    def _fire(self, step: Step, upto: int) -> None:
        """Fire timers due by `upto`; each is stamped with its deadline, never going back."""
        shop = step.shop
        while (timer := pop_due(shop, upto)) is not None:
            deadline, _, kind, key = timer
            step.now = max(step.now, deadline)
            if kind == DECIDE_ATTRIBUTION:
                self._decide(step, key)
            elif kind == HOLD_PERIOD_ENDS:
                referrals.hold_period_ended(step, key)
            elif kind == SIGNUP_GRACE_ENDS:
                self._signup_grace_ends(step, key)

    def _decide(self, step: Step, customer_id: str) -> None:
        customer = step.shop.customers.get(customer_id)
        if customer is None or customer.pending is None or not customer.signed_up:
            return
        pending, customer.pending = customer.pending, None
        referral = attribution.decide(step, customer, pending)
        if referral is None:
            return
        self._after_attribution(step, referral, customer, customer.converted_at)
        for order in _in_time_order(pending.orders):
            referrals.referee_ordered(step, referral, customer, order)

    def _signup_grace_ends(self, step: Step, customer_id: str) -> None:
        customer = step.shop.customers.get(customer_id)
        if customer is not None and customer.awaiting_signup:
            self._existed_before_log(step, customer)

    def _existed_before_log(self, step: Step, customer: Customer) -> None:
        """No signup precedes the customer's first order: they are from before the log.

        Nothing is decided for them. Their held-back orders and typed codes now go through in
        time order, as they would have had they been appended in time order: an existing
        customer's orders and codes are taken as they come.
        """
        pending, customer.pending = customer.pending or PendingDecision(), None
        customer.existed_before_log = True
        checkout = {t.event_id: t for t in pending.typed_codes if t.kind == CHECKOUT_CODE}
        # At most one: a customer signs up once. At or before an order at the same time.
        signup_codes = [t for t in pending.typed_codes if t.kind != CHECKOUT_CODE]
        done = 0
        for order in _in_time_order(pending.orders):
            while signup_codes and signup_codes[0].at <= order.at:
                self._typed_later(step, customer, signup_codes.pop(0), done)
            self._ordered(step, customer, checkout.get(order.event_id), order)
            done += 1
        for touch in signup_codes:
            self._typed_later(step, customer, touch, done)

    # ------------------------------------------------------------------------ handlers

    # What replay may skip is promised here, next to the handlers that keep the promise:
    # a change to `_on_click`, `_on_order` or to what a new customer leaves behind
    # (`_new_customer`, `_existed_before_log`) is a change to `only_moves_time` too.
    # tests/property/test_replay_properties.py holds replay's column-wise twin to it.

    def only_moves_time(self, event: LogEvent) -> bool:
        """The core's promise: applied in time (the watermark has not passed it), `event`
        derives nothing and leaves nothing a later decision reads, beyond moving its shop's
        time. Any pipeline: an organic click (`is_organic`). Told the `foresight`, also:

        - a click without a code by a visitor outside `deciding_visitors`: `_on_click`
          keeps no touch of them, and without a code it is no code use;
        - a quiet order: of a customer not in `active_customers`, by a visitor on none of
          the signups (or none). No decision is ever taken for such a customer (decisions
          follow signups), nobody is referred through a code of theirs (codes are
          registered by shares and issues), so their identity is never compared, no fraud
          window or ledger entry names them, and their grace timers fire with nothing to
          do; the one trace others read is `visitor_customers`, read for a signup's
          visitor alone.

        Never a row whose event id or order id repeats: of such rows, the first decides
        whether a later one is a repeat or (reported) late."""
        if isinstance(event, Click) and is_organic(self.rules, event):
            return True
        foresight = self.foresight
        if foresight is None or event.event_id in foresight.repeats:
            return False
        if isinstance(event, Click):
            return not event.referral_code and event.visitor_id not in foresight.deciding_visitors
        if isinstance(event, OrderPlaced):
            return (event.order_id not in foresight.repeats
                    and event.customer_id not in foresight.active_customers
                    and (event.visitor_id is None
                         or event.visitor_id not in foresight.signup_visitors))
        return False

    def _on_click(self, step: Step, event: Click) -> None:
        deciding = self._deciding
        if deciding is None or event.visitor_id in deciding:
            attribution.record_click(step.shop, self.rules, event)
        code = event.referral_code
        if code and code in step.shop.codes:
            self._code_used(step, code, event.visitor_id, event.utm_source or NO_SOURCE, event)

    def _on_signup(self, step: Step, event: Signup) -> None:
        shop = step.shop
        customer = shop.customers.get(event.customer_id)
        if customer is None:
            customer = self._new_customer(shop, event)
        elif customer.awaiting_signup:
            first_order_at = customer.first_order_at  # set: they were first seen ordering
            if first_order_at is None or event.occurred_at <= first_order_at:
                # Appended after orders it precedes: a new customer whose orders came later.
                self._signed_up_before_ordering(shop, customer, event)
            else:
                # They ordered before signing up, as a customer from before the log does.
                self._existed_before_log(step, customer)
        customer.signed_up = True
        _remember(customer, identity.EMAIL, event.email_hash, event.event_id)
        _remember(customer, identity.DEVICE, event.device_id, event.event_id)
        if event.visitor_id:
            shop.visitor_customers[event.visitor_id] = event.customer_id
        if event.referral_code:
            touch = Touch(event.occurred_at, event.event_id, event.referral_code, None,
                          SIGNUP_CODE)
            self._typed(step, customer, touch, customer.orders, event)

    def _on_order(self, step: Step, event: OrderPlaced) -> None:
        shop = step.shop
        customer = shop.customers.get(event.customer_id)
        if customer is None:
            customer = self._new_customer(shop, event)
        at = event.occurred_at
        customer.orders += 1
        if customer.first_order_at is None or at < customer.first_order_at:
            customer.first_order_at = at
        _remember(customer, identity.DEVICE, event.device_id, event.event_id)
        _remember(customer, identity.PAYMENT, event.payment_hash, event.event_id)
        _remember(customer, identity.SHIPPING, event.shipping_hash, event.event_id)
        if event.visitor_id:
            shop.visitor_customers[event.visitor_id] = event.customer_id
        order = _order_facts(event, customer.orders)
        touch = None
        if event.discount_code:
            touch = Touch(at, event.event_id, event.discount_code, None, CHECKOUT_CODE)
            self._code_use_typed(step, customer, touch.code, event)
        if customer.pending is not None:
            if touch is not None:
                customer.pending.typed_codes.append(touch)
            customer.pending.orders.append(order)
            if customer.signed_up and at < customer.converted_at:
                # A signup appended before an earlier order: they ordered before signing
                # up, so they are an existing customer, as in time order (see _on_signup).
                self._existed_before_log(step, customer)
            return
        self._ordered(step, customer, touch, order)

    # ------------------------------------------------------------------------- helpers

    def _ordered(self, step: Step, customer: Customer, touch: Touch | None,
                 order: OrderFacts) -> None:
        """An order of a customer whose attribution is decided: its code, then the order."""
        if touch is not None:
            self._typed_later(step, customer, touch, order.number - 1)
        if customer.referral_id is not None:
            referral = step.shop.referrals[customer.referral_id]
            referrals.referee_ordered(step, referral, customer, order)

    def _signed_up_before_ordering(self, shop: ShopState, customer: Customer,
                                   event: Signup) -> None:
        """A late-appended signup at or before the customer's first order: a new customer,
        converted by this signup; the orders held back are decided with it."""
        customer.conversion_event_id = event.event_id
        customer.converted_at = event.occurred_at
        customer.visitor_id = event.visitor_id
        customer.ip_hash = event.ip_hash
        customer.device_id = event.device_id
        schedule(shop, event.occurred_at + self.rules.attribution.grace_period_ms,
                 DECIDE_ATTRIBUTION, event.customer_id)

    def _new_customer(self, shop: ShopState, event: Signup | OrderPlaced) -> Customer:
        """A customer first seen signing up, or first seen ordering with no signup yet.

        A signup's attribution waits for the grace period. A first order most likely is a
        customer's from before the log began; but the shop's topics are read independently,
        so their signup may still be appended a little later with an earlier time: their
        orders wait, like a new customer's, for a grace period after this one.
        """
        signed_up = isinstance(event, Signup)
        customer = Customer(event.customer_id, event.event_id, event.occurred_at,
                            event.visitor_id, event.ip_hash, event.device_id,
                            signed_up=signed_up, pending=PendingDecision())
        shop.customers[event.customer_id] = customer
        schedule(shop, event.occurred_at + self.rules.attribution.grace_period_ms,
                 DECIDE_ATTRIBUTION if signed_up else SIGNUP_GRACE_ENDS, event.customer_id)
        return customer

    def _typed(self, step: Step, customer: Customer, touch: Touch, orders_before: int,
               event: Signup) -> None:
        """A code typed at signup: a code use, and a touch (now or for later)."""
        self._code_use_typed(step, customer, touch.code, event)
        if customer.pending is not None:
            customer.pending.typed_codes.append(touch)
            return
        self._typed_later(step, customer, touch, orders_before)

    def _code_use_typed(self, step: Step, customer: Customer, code: str | None,
                        event: Signup | OrderPlaced) -> None:
        if code and code in step.shop.codes:
            self._code_used(step, code, event.visitor_id or customer.customer_id, TYPED_SOURCE,
                            event)

    def _typed_later(self, step: Step, customer: Customer, touch: Touch,
                     orders_before: int) -> None:
        referral = attribution.typed_code_later(step, customer, touch, orders_before)
        if referral is not None:
            self._after_attribution(step, referral, customer, touch.at)

    def _after_attribution(self, step: Step, referral: Referral, customer: Customer,
                           at: int) -> None:
        """Fraud first; then, if referrals qualify at signup, qualification right away."""
        referrals.check_attributed(step, referral, customer)
        if self.rules.qualification.trigger == "signup" and referrals.awaits_qualification(
                referral):
            referrals.qualify(step, referral, None, at)

    def _code_used(self, step: Step, code: str, visitor: str, source: str,
                   event: LogEvent) -> None:
        verdicts = fraud.code_used(step.shop.fraud, self.signals, step.now, code=code,
                                   visitor=visitor, source=source, at=event.occurred_at,
                                   event_id=event.event_id)
        if verdicts:
            referrals.apply_verdicts(step, verdicts)


def is_organic(rules: Rules, event: Click) -> bool:
    """A visit through no referral code and no campaign of the rules: it only moves time.

    Replay evaluates the same test on whole Arrow columns (replay/engine.organic_clicks);
    tests/unit/replay/test_columnar_replay.py holds the two to the same answers."""
    return not event.referral_code and attribution.click_campaign(rules, event) is None


def _order_facts(event: OrderPlaced, number: int) -> OrderFacts:
    return OrderFacts(event.order_id, event.event_id, event.occurred_at, event.amount_minor,
                      event.currency, number, event.payment_hash, event.shipping_hash,
                      event.device_id)


def _in_time_order(orders: list[OrderFacts]) -> list[OrderFacts]:
    """Orders held for a decision, by time, renumbered so the nth by time is the nth: an order
    appended late (before its signup, or before an earlier order) counts where it happened."""
    if all(a.at <= b.at for a, b in pairwise(orders)):
        return orders  # the common case: appended in time order
    numbers = sorted(order.number for order in orders)
    by_time = sorted(orders, key=lambda order: order.at)  # stable: log order among equals
    return [order._replace(number=n) for order, n in zip(by_time, numbers, strict=True)]


def _remember(customer: Customer, kind: str, value: str | None, event_id: str) -> None:
    """Keep the first event that showed an identifier (the evidence of a later match)."""
    customer.identity = identity.remember(customer.identity, kind, value, event_id)


def _claimed(shop: ShopState, event: LogEvent) -> bool:
    """The event's natural key belongs to an event applied already (read only)."""
    if isinstance(event, OrderPlaced):
        return event.order_id in shop.seen_orders
    if isinstance(event, OrderReturned):
        return event.return_id in shop.seen_returns
    if isinstance(event, Signup):
        return not _claim_signup(shop, event)
    return False


def _claim_signup(shop: ShopState, event: Signup) -> bool:
    customer = shop.customers.get(event.customer_id)
    return customer is None or not customer.signed_up


def _claim_order(shop: ShopState, event: OrderPlaced, repeats: frozenset[str] | None) -> bool:
    key = event.order_id
    if key in shop.seen_orders:
        return False
    if repeats is None or key in repeats:
        shop.seen_orders[key] = None
    return True


def _claim_return(shop: ShopState, event: OrderReturned,
                  repeats: frozenset[str] | None) -> bool:
    key = event.return_id
    if key in shop.seen_returns:
        return False
    if repeats is None or key in repeats:
        shop.seen_returns[key] = None
    return True
