"""Events appended out of event-time order within a window shorter than the grace period
decide the same referrals and the same rewards as the event-time order.

Logs are bursts of shares, clicks, signups and orders a few minutes long, a day apart; inside
a burst ingest may append them in any order (it reads a shop's topics independently).
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refstream.rewards.rules import Rules
from refstream.schemas.events import (
    Attribution,
    Click,
    LogEvent,
    OrderPlaced,
    RewardDue,
    Share,
    Signup,
    Tick,
)
from tests.unit.core.builders import DAY, DEFAULT_RULES, SECOND, T0, run

SHOP = "shop-1"
REFERRERS = ("alice", "carol")
# Every share of a code names the same campaign, so which share registers it cannot matter.
SHARE_CAMPAIGNS = {"alice": "friends", "carol": None}
CUSTOMERS = ("bob", "dan", "eve", "alice")
# Each customer browses as their own visitor (the click test reads the visitor's customer as
# appended; a visitor shared by two customers is a known gap).
VISITORS = tuple(f"v-{customer}" for customer in CUSTOMERS)
CAMPAIGNS = (None, "friends")
# Events of a burst are this far apart, so a burst of MAX_BURST lasts under five minutes: well
# inside the grace period of every rule variant that has one.
SPACING = 10 * SECOND
MAX_BURST = 12

Burst = list[LogEvent]


@st.composite
def bursts(draw: st.DrawFn) -> list[Burst]:
    """Bursts in event-time order, each event at its own time (ties are decided by log order)."""
    result: list[Burst] = []
    counter = 0
    # A code is used only after its first share in event time (as a shop's codes are): which
    # share registers a code then never depends on the order they are appended in.
    codes: list[str | None] = [None, None, "R-unknown"]
    # Typed codes only name codes shared in an earlier burst: a code typed after its
    # customer's decision is resolved at once, so a share appended after it is not waited
    # for (a known gap: only the signup decision waits the grace period).
    typed: list[str | None] = list(codes)
    # A customer signs up once (a retried signup repeats the same event).
    not_signed_up = list(CUSTOMERS)
    visitor_of: dict[str, str] = {}  # customer -> the visitor they signed up as
    for number in range(draw(st.integers(1, 4))):
        burst: Burst = []
        # Visitors whose customer ordered earlier in this burst click organically: a touch
        # after a first order is dropped or kept depending on whether that order was
        # appended yet (a known gap: the click test reads the customers as appended).
        ordered: set[str] = set()
        # One order per customer per burst: orders after a customer's decision are taken as
        # appended (another known gap), so two of them must not swap inside a burst.
        buyers = list(CUSTOMERS)
        for position in range(draw(st.integers(1, MAX_BURST))):
            at = T0 + number * DAY + position * SPACING
            counter += 1
            event_id = f"e{counter}"
            kind = draw(st.sampled_from(("share", "click", "click", "signup", "order", "order")))
            event: LogEvent
            if kind == "share":
                referrer = draw(st.sampled_from(REFERRERS))
                event = Share(event_id, SHOP, at, referrer, f"R-{referrer}", "email",
                              SHARE_CAMPAIGNS[referrer])
                if event.referral_code not in codes:
                    codes.append(event.referral_code)
            elif kind == "signup" and not_signed_up:
                customer = draw(st.sampled_from(not_signed_up))
                not_signed_up.remove(customer)
                visitor = draw(st.sampled_from((f"v-{customer}", None)))
                if visitor is not None:
                    visitor_of[customer] = visitor
                event = Signup(event_id, SHOP, at, customer, f"email:{customer}",
                               f"ip:{customer}", visitor, draw(st.sampled_from(typed)), None)
            elif kind in ("click", "signup"):
                visitor = draw(st.sampled_from(VISITORS))
                code, campaign = draw(st.sampled_from(codes)), draw(st.sampled_from(CAMPAIGNS))
                if visitor in ordered:
                    code = campaign = None
                event = Click(event_id, SHOP, at, visitor, "https://shop.example/",
                              f"ip:{counter}", "agent", code, None, None, None, campaign, None)
            elif buyers:
                customer = draw(st.sampled_from(buyers))
                buyers.remove(customer)
                if customer in visitor_of:
                    ordered.add(visitor_of[customer])
                event = OrderPlaced(event_id, SHOP, at, f"o{counter}", customer,
                                    draw(st.sampled_from((500, 40_000))), "EUR",
                                    f"ip:{customer}", None, draw(st.sampled_from(typed)))
            else:
                continue
            burst.append(event)
        result.append(burst)
        typed = list(codes)
    return result


def _outcome(rules: Rules, events: list[LogEvent]) -> tuple[list[tuple[str, str]], list[str]]:
    """The final status of every referral and the ids of the rewards that fell due."""
    end = Tick("tick-end", SHOP, T0 + 200 * DAY)  # past every grace and hold period
    outputs = run([*events, end], rules)
    final = {a.referral_id: a.status for a in outputs if isinstance(a, Attribution)}
    return sorted(final.items()), sorted(d.reward_id for d in outputs if isinstance(d, RewardDue))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bursts(), st.data())
def test_shuffling_within_a_burst_changes_no_referral_and_no_reward(
        in_time: list[Burst], data: st.DataObject) -> None:
    # The default rules only. Known gaps other rule variants hit: fraud windows count code
    # uses as appended (broadcasting on the 2nd use differs), and an existing customer who
    # may qualify has the orders before a code typed later counted as appended.
    rules = DEFAULT_RULES
    shuffled = [event for burst in in_time
                for event in data.draw(st.permutations(burst), label="appended as")]
    expected = _outcome(rules, [event for burst in in_time for event in burst])
    assert _outcome(rules, shuffled) == expected


def test_the_bursts_fit_in_the_default_grace_period() -> None:
    assert DEFAULT_RULES.attribution.grace_period_ms > MAX_BURST * SPACING
