"""The synthetic shop: same seed same bytes, one global time order, valid events, the
documented funnel figures (docs/benchmarks.md), and every injected fraud pattern both labelled
and visible in the stream."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from refstream.schemas.jsonl import parse_line
from refstream.schemas.privacy import normalise_email
from refstream.schemas.shop import ShopClick, ShopEvent, ShopOrder, ShopSignup
from refstream.tools.synthetic import (
    PATTERNS,
    GroundTruth,
    SyntheticConfig,
    events_for_target,
    ground_truth,
    iter_event_dicts,
    iter_shop_events,
    load_ground_truth,
    truth_path_for,
    write_jsonl,
)

SMALL = SyntheticConfig(seed=11, shops=2, customers_per_shop=400, days=30)
MEDIUM = SyntheticConfig(seed=3, shops=3, customers_per_shop=5000, days=30)
HOLD = timedelta(days=30)
COUPON_SOURCES = {"couponsite", "dealsforum", "slickdeals", "mydealz", "vouchercodes"}


def when(record: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(record["occurred_at"])


class Stream:
    """A generated stream indexed the way a reviewer would look at it."""

    def __init__(self, config: SyntheticConfig) -> None:
        self.config = config
        self.records = list(iter_event_dicts(config))
        self.truth = ground_truth(config)
        self.by_id = {(r["shop_id"], r["event_id"]): r for r in self.records}
        self.of_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for record in self.records:
            self.of_type[record["event_type"]].append(record)
        self.signup_of = {(r["shop_id"], r["customer_id"]): r for r in self.of_type["signup"]}
        self.orders_of: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for order in self.of_type["order"]:
            self.orders_of[(order["shop_id"], order["customer_id"])].append(order)
        self.referral_clicks_of: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for click in self.of_type["click"]:
            if "referral_code" in click:
                self.referral_clicks_of[(click["shop_id"], click["visitor_id"])].append(click)

    def referred_signups(self) -> list[dict[str, Any]]:
        """Signups that came through a referral link (even one reported late) or a typed code."""
        return [s for s in self.of_type["signup"]
                if "referral_code" in s or (s["shop_id"], s["visitor_id"]) in
                self.referral_clicks_of]


@pytest.fixture(scope="module")
def small() -> Stream:
    return Stream(SMALL)


@pytest.fixture(scope="module")
def medium() -> Stream:
    return Stream(MEDIUM)


def jsonl_bytes(config: SyntheticConfig, path: Path) -> bytes:
    write_jsonl(config, path)
    return path.read_bytes()


# ---------------------------------------------------------------------------- determinism


def test_same_seed_gives_byte_identical_events_and_truth(tmp_path: Path) -> None:
    first = jsonl_bytes(SMALL, tmp_path / "a.jsonl")
    second = jsonl_bytes(SMALL, tmp_path / "b.jsonl")
    assert first == second
    assert (tmp_path / "a.truth.json").read_bytes() == (tmp_path / "b.truth.json").read_bytes()


def test_a_different_seed_gives_a_different_stream(tmp_path: Path) -> None:
    other = SyntheticConfig(seed=12, shops=2, customers_per_shop=400, days=30)
    assert jsonl_bytes(SMALL, tmp_path / "a.jsonl") != jsonl_bytes(other, tmp_path / "b.jsonl")


def test_write_jsonl_summary_matches_the_file_and_truth_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "out" / "events.jsonl"
    summary = write_jsonl(SMALL, path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert summary.events == len(lines) and summary.bytes_written == path.stat().st_size
    assert summary.truth_path == tmp_path / "out" / "events.truth.json" == truth_path_for(path)
    assert json.loads(lines[0])["occurred_at"] == summary.first_occurred_at
    assert json.loads(lines[-1])["occurred_at"] == summary.last_occurred_at
    assert load_ground_truth(summary.truth_path) == ground_truth(SMALL)
    assert summary.events_by_type == dict(Counter(json.loads(x)["event_type"] for x in lines))
    # compact separators keep a million lines small
    assert lines[0] == json.dumps(json.loads(lines[0]), separators=(",", ":"))


# ---------------------------------------------------------------------------- form and order


def test_events_are_globally_in_event_time_order_with_shops_interleaved(small: Stream) -> None:
    times = [when(r) for r in small.records]
    assert times == sorted(times)
    assert all(r["occurred_at"].endswith("Z") and len(r["occurred_at"]) == 24
               for r in small.records)
    first_hundred = {r["shop_id"] for r in small.records[:100]}
    assert first_hundred == {"shop-001", "shop-002"}


def test_every_line_validates_against_the_shop_contract(small: Stream) -> None:
    parsed = [parse_line(json.dumps(r)) for r in small.records]
    assert Counter(e.event_type for e in parsed) == small.truth.events_by_type
    assert set(small.truth.events_by_type) == {"share", "click", "signup", "order", "return"}
    order = next(e for e in parsed if isinstance(e, ShopOrder))
    assert order.currency == "EUR" and 1_500 <= order.amount_minor <= 25_000
    assert order.payment_fingerprint and order.payment_fingerprint.startswith("pm_")


def test_pydantic_iterator_yields_the_same_events() -> None:
    tiny = SyntheticConfig(seed=5, shops=1, customers_per_shop=60, days=7)
    models: list[ShopEvent] = list(iter_shop_events(tiny))
    assert [m.event_id for m in models] == [r["event_id"] for r in iter_event_dicts(tiny)]


def test_ids_are_unique(small: Stream) -> None:
    assert len(small.by_id) == len(small.records)
    orders = [(o["shop_id"], o["order_id"]) for o in small.of_type["order"]]
    assert len(set(orders)) == len(orders)
    customers = [(s["shop_id"], s["customer_id"]) for s in small.of_type["signup"]]
    assert len(set(customers)) == len(customers)


def test_returns_point_at_earlier_orders_of_the_same_customer(small: Stream) -> None:
    orders = {(o["shop_id"], o["order_id"]): o for o in small.of_type["order"]}
    for ret in small.of_type["return"]:
        order = orders[(ret["shop_id"], ret["order_id"])]
        assert order["customer_id"] == ret["customer_id"]
        assert when(order) < when(ret) and ret["amount_minor"] <= order["amount_minor"]


# ---------------------------------------------------------------------------- realism


def test_referral_clicks_carry_utm_and_referral_fields(small: Stream) -> None:
    clicks = [c for c in small.of_type["click"] if "referral_code" in c]
    assert clicks
    for click in clicks:
        model = parse_line(json.dumps(click))
        assert isinstance(model, ShopClick)
        assert model.utm_medium == "referral" and model.utm_campaign in {"friends", "vip"}
        assert f"ref={model.referral_code}" in model.landing_url
        assert f"utm_source={model.utm_source}" in model.landing_url
        assert model.device_id
    channels = {c["utm_source"] for c in clicks}
    assert {"email", "whatsapp", "social", "qr"} <= channels


def test_influencers_media_typed_codes_and_checkout_codes_are_present(small: Stream) -> None:
    shares = small.of_type["share"]
    for shop in ("shop-001", "shop-002"):
        assert {s["referrer_id"] for s in shares if s["shop_id"] == shop
                and s["campaign_id"] == "vip"} == {"inf-001", "inf-002", "inf-003"}
    campaigns = Counter(c.get("utm_campaign") for c in small.of_type["click"])
    assert campaigns["podcast-fall"] > 0 and campaigns["partner-blog"] > 0
    assert any("referral_code" in s for s in small.of_type["signup"])
    assert any("discount_code" in o for o in small.of_type["order"])


def test_podcast_clicks_after_the_campaign_end_are_counted(small: Stream) -> None:
    end = datetime(2026, 10, 25, tzinfo=UTC)  # ends_at of the default rules, exclusive
    late = [c for c in small.of_type["click"]
            if c.get("utm_campaign") == "podcast-fall" and when(c) >= end]
    assert late
    assert len(late) == sum(s.podcast_clicks_outside_window for s in small.truth.shops)


def test_late_clicks_arrive_seconds_after_their_signup(medium: Stream) -> None:
    late_ids = [(s.shop_id, i) for s in medium.truth.shops for i in s.late_click_ids]
    assert len(late_ids) >= 10
    signup_of_visitor = {(s["shop_id"], s["visitor_id"]): s for s in medium.of_type["signup"]}
    for key in late_ids:
        click = medium.by_id[key]
        signup = signup_of_visitor[(click["shop_id"], click["visitor_id"])]
        assert timedelta(0) < when(click) - when(signup) < timedelta(seconds=10)
        assert "referral_code" in click and "referral_code" not in signup


def test_truth_counts_match_what_the_stream_shows(medium: Stream) -> None:
    totals = medium.truth.totals
    referred = medium.referred_signups()
    assert totals["referred_signups"] == len(referred)
    first_orders = [min(medium.orders_of[(s["shop_id"], s["customer_id"])], key=when)
                    for s in referred if (s["shop_id"], s["customer_id"]) in medium.orders_of]
    assert totals["referred_first_orders"] == len(first_orders)
    assert totals["orders"] == len(medium.of_type["order"])
    assert totals["returns"] == len(medium.of_type["return"])
    assert medium.truth.events_by_type == dict(Counter(r["event_type"] for r in medium.records))


def test_funnel_figures_fall_in_the_domain_bands(medium: Stream) -> None:
    records = medium.of_type
    # As the scorecard counts them: the customers the month shows (who ordered, signed up
    # or shared), not the whole base, most of whom do nothing in a given month.
    customers = len({(r["shop_id"], r["customer_id"]) for r in records["order"]}
                    | {(r["shop_id"], r["customer_id"]) for r in records["signup"]}
                    | {(r["shop_id"], r["referrer_id"]) for r in records["share"]})
    sharers = {(s["shop_id"], s["referrer_id"]) for s in records["share"]
               if s["referrer_id"].startswith("cust-")
               and int(s["referrer_id"][5:]) <= MEDIUM.customers_per_shop}
    share_rate = len(sharers) / customers
    # Computed from the stream alone: every visitor who came through a referral link counts
    # (a few are existing customers, which only lowers the figure).
    visitors = set(medium.referral_clicks_of) | {
        (s["shop_id"], s["visitor_id"]) for s in records["signup"] if "referral_code" in s}
    conversion = medium.truth.totals["referred_first_orders"] / len(visitors)
    return_rate = len(records["return"]) / len(records["order"])
    referral_rate = medium.truth.funnel["referral_rate"]
    assert 0.03 <= share_rate <= 0.20
    assert 0.01 <= conversion <= 0.15  # up to the top quartile (8%+): referrals convert well
    assert 0.05 <= return_rate <= 0.15
    assert 0.01 <= referral_rate <= 0.25
    assert medium.truth.funnel["referral_conversion"] == pytest.approx(conversion, rel=0.1)
    returns = medium.truth.totals
    assert 0 < returns["returns_after_hold"] < returns["returns"] / 2


# ---------------------------------------------------------------------------- fraud


def signups_of(stream: Stream, shop_id: str, customer_ids: list[str]) -> list[dict[str, Any]]:
    return [stream.signup_of[(shop_id, c)] for c in customer_ids]


def shop_cases(truth: GroundTruth, pattern: str) -> Iterator[tuple[str, Any]]:
    for shop in truth.shops:
        for case in shop.fraud[pattern]:
            yield shop.shop_id, case


def test_every_pattern_is_labelled_in_every_shop_and_its_events_are_in_the_stream(
        small: Stream) -> None:
    for shop in small.truth.shops:
        assert set(shop.fraud) == set(PATTERNS)
        assert all(shop.fraud[pattern] for pattern in PATTERNS), shop.shop_id
        for cases in shop.fraud.values():
            for case in cases:
                assert all((shop.shop_id, e) in small.by_id for e in case.event_ids)
                shares = [small.by_id[(shop.shop_id, e)] for e in case.event_ids
                          if small.by_id[(shop.shop_id, e)]["event_type"] == "share"]
                assert [s["referral_code"] for s in shares] == [case.referral_code]
                assert case.referral_code == f"R-{case.referrer_id}"


def test_self_referral_uses_an_alias_of_the_referrers_own_mailbox(medium: Stream) -> None:
    cases = list(shop_cases(medium.truth, "self_referral"))
    assert cases
    for shop_id, case in cases:
        owner, alias = signups_of(medium, shop_id, case.customer_ids)
        assert owner["email"] != alias["email"]
        assert normalise_email(owner["email"]) == normalise_email(alias["email"])
        assert normalise_email(alias["email"]) == case.evidence["mailbox"]
        # the alias account came through the referrer's own link
        clicks = medium.referral_clicks_of[(shop_id, alias["visitor_id"])]
        assert [c["referral_code"] for c in clicks] == [case.referral_code]
        owner_order = medium.orders_of[(shop_id, owner["customer_id"])][0]
        alias_order = medium.orders_of[(shop_id, alias["customer_id"])][0]
        shared = {name for name in ("device_id", "payment_fingerprint")
                  if owner_order[name] == alias_order[name]}
        assert shared and shared == set(case.evidence["shared"])


def test_multi_accounting_is_one_device_with_four_plus_referred_accounts_in_72h(
        medium: Stream) -> None:
    for shop_id, case in shop_cases(medium.truth, "multi_accounting"):
        signups = signups_of(medium, shop_id, case.customer_ids)
        assert len(signups) >= 4
        assert {s["device_id"] for s in signups} == {case.evidence["device_id"]}
        assert len({s["ip"] for s in signups}) == len(signups)  # not an IP burst as well
        times = sorted(when(s) for s in signups)
        assert times[-1] - times[0] <= timedelta(hours=72)
        for signup in signups:
            codes = {c["referral_code"] for c in
                     medium.referral_clicks_of[(shop_id, signup["visitor_id"])]}
            assert codes == {case.referral_code}


def test_ip_burst_is_more_than_five_referred_signups_from_one_ip_in_an_hour(
        medium: Stream) -> None:
    for shop_id, case in shop_cases(medium.truth, "ip_burst"):
        signups = signups_of(medium, shop_id, case.customer_ids)
        assert len(signups) > 5 and {s["ip"] for s in signups} == {case.evidence["ip"]}
        times = sorted(when(s) for s in signups)
        assert times[-1] - times[0] <= timedelta(hours=1)
        assert len({s["device_id"] for s in signups}) == len(signups)


def test_coupon_broadcast_is_one_code_redeemed_by_a_dozen_strangers_in_a_day(
        medium: Stream) -> None:
    for shop_id, case in shop_cases(medium.truth, "coupon_broadcast"):
        signups = signups_of(medium, shop_id, case.customer_ids)
        assert len(signups) >= 12
        assert len({normalise_email(s["email"]) for s in signups}) == len(signups)
        assert len({s["ip"] for s in signups}) == len(signups)
        times = sorted(when(s) for s in signups)
        assert times[-1] - times[0] <= timedelta(hours=24)
        for signup in signups:
            clicks = medium.referral_clicks_of[(shop_id, signup["visitor_id"])]
            assert {c["utm_source"] for c in clicks} <= COUPON_SOURCES
            assert {c["referral_code"] for c in clicks} == {case.referral_code}


def test_buy_and_return_returns_the_first_order_inside_and_after_the_hold(
        medium: Stream) -> None:
    timings: Counter[str] = Counter()
    returns = {(r["shop_id"], r["order_id"]): r for r in medium.of_type["return"]}
    for shop_id, case in shop_cases(medium.truth, "buy_and_return"):
        (customer,) = case.customer_ids
        first = min(medium.orders_of[(shop_id, customer)], key=when)
        assert first["order_id"] == case.evidence["order_id"]
        returned = returns[(shop_id, first["order_id"])]
        assert returned["amount_minor"] == first["amount_minor"]
        after_hold = when(returned) - when(first) > HOLD
        assert case.evidence["return_timing"] == ("after_hold" if after_hold else "inside_hold")
        timings[case.evidence["return_timing"]] += 1
    assert timings["after_hold"] > 0 and timings["inside_hold"] > 0


def test_only_injected_fraud_trips_the_signals(medium: Stream) -> None:
    """Genuine traffic never shares a mailbox or a device, bursts from an IP or broadcasts."""
    mailboxes: dict[tuple[str, str], int] = Counter()
    devices: dict[tuple[str, str], int] = Counter()
    for signup in medium.of_type["signup"]:
        mailboxes[(signup["shop_id"], normalise_email(signup["email"]))] += 1
        devices[(signup["shop_id"], signup["device_id"])] += 1
    shared_mailboxes = {key for key, n in mailboxes.items() if n > 1}
    crowded_devices = {key for key, n in devices.items() if n >= 4}
    ips: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for signup in medium.referred_signups():
        ips[(signup["shop_id"], signup["ip"])].append(when(signup))
    bursting_ips = {key for key, times in ips.items() if len(times) > 5 and any(
        sum(1 for t in times if start <= t < start + timedelta(hours=1)) > 5 for start in times)}
    # Broadcasting: one code reaching 10+ distinct visitors from 3+ sources within 24 hours.
    uses: dict[tuple[str, str], list[tuple[datetime, str, str]]] = defaultdict(list)
    for (shop_id, visitor), clicks in medium.referral_clicks_of.items():
        for click in clicks:
            uses[(shop_id, click["referral_code"])].append(
                (when(click), visitor, click["utm_source"]))
    broadcast_codes = set()
    for key, seen in uses.items():
        for start, _, _ in seen:
            inside = [(v, s) for t, v, s in seen if start <= t < start + timedelta(hours=24)]
            if len({v for v, _ in inside}) >= 10 and len({s for _, s in inside}) >= 3:
                broadcast_codes.add(key)
                break
    truth = medium.truth
    assert broadcast_codes == {(s, c.referral_code)
                               for s, c in shop_cases(truth, "coupon_broadcast")}
    assert shared_mailboxes == {(s, c.evidence["mailbox"])
                                for s, c in shop_cases(truth, "self_referral")}
    assert crowded_devices == {(s, c.evidence["device_id"])
                               for s, c in shop_cases(truth, "multi_accounting")}
    assert bursting_ips == {(s, c.evidence["ip"]) for s, c in shop_cases(truth, "ip_burst")}


def shared_across_customers(stream: Stream, event_type: str, name: str) -> set[tuple[str, str]]:
    owners: dict[tuple[str, str], set[str]] = defaultdict(set)
    for record in stream.of_type[event_type]:
        owners[(record["shop_id"], record[name])].add(record["customer_id"])
    return {key for key, customers in owners.items() if len(customers) > 1}


def test_identifiers_are_shared_between_accounts_only_where_fraud_was_injected(
        medium: Stream) -> None:
    """Even a pair of accounts sharing a device, card or address is an injected pattern."""
    truth = medium.truth
    selfish = list(shop_cases(truth, "self_referral"))
    rings = list(shop_cases(truth, "multi_accounting"))
    assert shared_across_customers(medium, "signup", "device_id") == (
        {(s, c.evidence["device_id"]) for s, c in selfish if "device_id" in c.evidence}
        | {(s, c.evidence["device_id"]) for s, c in rings})
    assert shared_across_customers(medium, "order", "payment_fingerprint") == {
        (s, c.evidence["payment_fingerprint"]) for s, c in selfish
        if "payment_fingerprint" in c.evidence}
    ring_drops = {(s, c.evidence["shipping_address"]) for s, c in rings}
    shared_addresses = shared_across_customers(medium, "order", "shipping_address")
    assert shared_addresses - ring_drops == {
        (s, c.evidence["shipping_address"]) for s, c in selfish}
    assert shared_addresses & ring_drops  # rings with 2+ paying accounts ship to the drop
    assert shared_across_customers(medium, "signup", "ip") == (
        {(s, c.evidence["ip"]) for s, c in shop_cases(truth, "ip_burst")}
        | {(s, medium.signup_of[(s, c.customer_ids[0])]["ip"]) for s, c in selfish})


def test_fraud_off_injects_nothing() -> None:
    clean = SyntheticConfig(seed=11, shops=1, customers_per_shop=400, fraud=False)
    truth = ground_truth(clean)
    assert all(not shop.fraud for shop in truth.shops)
    signups = [r for r in iter_event_dicts(clean) if r["event_type"] == "signup"]
    mailboxes = Counter(normalise_email(s["email"]) for s in signups)
    assert max(mailboxes.values()) == 1


# ---------------------------------------------------------------------------- sizing


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        SyntheticConfig(start=datetime(2026, 10, 1))  # naive on purpose
    with pytest.raises(ValueError, match="shops"):
        SyntheticConfig(shops=0)


def test_events_for_target_lands_near_a_small_target() -> None:
    config = events_for_target(40_000, seed=9)
    produced = sum(1 for _ in iter_event_dicts(config))
    assert 0.85 * 40_000 <= produced <= 1.15 * 40_000


@pytest.mark.slow
def test_events_for_target_lands_within_15_percent_of_a_million() -> None:
    config = events_for_target(1_000_000)
    produced = sum(1 for _ in iter_event_dicts(config))
    assert 850_000 <= produced <= 1_150_000


def test_signup_models_parse_aliases_as_emails(small: Stream) -> None:
    for shop_id, case in shop_cases(small.truth, "self_referral"):
        alias = small.signup_of[(shop_id, case.customer_ids[1])]
        model = parse_line(json.dumps(alias))
        assert isinstance(model, ShopSignup) and "@" in model.email


def test_identity_spaces_are_large_enough_to_stay_collision_free() -> None:
    """Addresses and IPs are bijections of the person number only if the tables cover the bits."""
    from refstream.tools import synthetic

    assert (len(synthetic._STREETS) * synthetic._HOUSE_NUMBERS * synthetic._POSTCODE_TAILS
            * len(synthetic._CITIES)) >= 2 ** synthetic._ADDRESS_BITS
    assert len(set(synthetic._FIRST_OCTETS)) == 2 ** (synthetic._IP_BITS - 24)
