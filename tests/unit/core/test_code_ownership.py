"""Given codes issued and shared, then a code belongs to exactly one referrer: the first to
be issued or share it. A share or issue naming someone else is flagged, never re-owned, and
referrals through the code pay its owner."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from refstream.projections.attribution import FOREIGN_CODE_SIGNAL
from refstream.schemas.events import Attribution, CodeIssued, FraudFlag, LogEvent
from tests.unit.core.builders import SHOP, ShopLog, of_type, run, when


def issued(log: ShopLog, referrer: str, code: str, *, at: int,
           campaign: str | None = "friends") -> CodeIssued:
    event = CodeIssued(f"issue-{len(log.events) + 1}", SHOP, at, referrer, code, campaign)
    log.events.append(event)
    return event


def referred_through(log: ShopLog, code: str, *, start: int) -> None:
    log.click("visitor-9", at=start, code=code)
    log.signup("friend-9", at=start + 60_000, visitor="visitor-9")
    log.tick(at=start + 3_600_000)  # past the grace period: the referral is decided


def test_an_issued_code_pays_its_owner_without_any_share() -> None:
    log = ShopLog()
    issued(log, "alice", "K7M2QX9TRB", at=when())
    referred_through(log, "K7M2QX9TRB", start=when(hours=1))
    outputs = run(log.events)
    [referral] = of_type(outputs, Attribution)
    assert (referral.referrer_id, referral.campaign_id, referral.status) == (
        "alice", "friends", "attributed")
    assert of_type(outputs, FraudFlag) == []


def test_a_share_of_someone_elses_code_is_flagged_and_still_pays_the_owner() -> None:
    log = ShopLog()
    issued(log, "alice", "K7M2QX9TRB", at=when())
    log.share("alice", "K7M2QX9TRB", at=when(minutes=5))  # her own: nothing to flag
    foreign = log.share("mallory", "K7M2QX9TRB", at=when(minutes=10))
    referred_through(log, "K7M2QX9TRB", start=when(hours=1))
    outputs = run(log.events)
    [flag] = of_type(outputs, FraudFlag)
    assert (flag.signal, flag.entity_type, flag.action, flag.evidence_event_ids) == (
        FOREIGN_CODE_SIGNAL, "code", "flag", (foreign.event_id,))
    assert flag.entity_key == "K7M2QX9TRB:mallory"
    [referral] = of_type(outputs, Attribution)
    assert referral.referrer_id == "alice"


def test_a_second_issue_to_another_referrer_does_not_re_own_the_code() -> None:
    log = ShopLog()
    log.share("alice", "ALICE-1", at=when())
    issued(log, "bob", "ALICE-1", at=when(minutes=1))
    referred_through(log, "ALICE-1", start=when(hours=1))
    outputs = run(log.events)
    assert [f.entity_key for f in of_type(outputs, FraudFlag)] == ["ALICE-1:bob"]
    assert [a.referrer_id for a in of_type(outputs, Attribution)] == ["alice"]


def test_the_flag_is_deterministic() -> None:
    log = ShopLog()
    issued(log, "alice", "CODE", at=when())
    log.share("mallory", "CODE", at=when(minutes=1))
    assert run(log.events) == run(list(log.events))


@settings(max_examples=60, deadline=None)
@given(claims=st.lists(st.tuples(st.sampled_from(["alice", "bob", "carol"]),
                                 st.booleans()), min_size=1, max_size=6),
       order=st.randoms(use_true_random=False))
def test_whatever_the_order_the_first_claim_owns_the_code(
        claims: list[tuple[str, bool]], order: object) -> None:
    """Permuting the issues and shares of one code: the first in log order owns it, every
    later claim by another referrer is one flag, and the referral pays the first."""
    shuffled = list(claims)
    order.shuffle(shuffled)  # type: ignore[attr-defined]
    log = ShopLog()
    for minute, (referrer, is_issue) in enumerate(shuffled):
        if is_issue:
            issued(log, referrer, "SHARED", at=when(minutes=minute))
        else:
            log.share(referrer, "SHARED", at=when(minutes=minute), campaign="friends")
    referred_through(log, "SHARED", start=when(hours=1))
    events: list[LogEvent] = log.events
    outputs = run(events)
    owner = shuffled[0][0]
    assert [a.referrer_id for a in of_type(outputs, Attribution)] == [owner]
    expected_flags = sorted(f"SHARED:{r}" for r, _ in shuffled[1:] if r != owner)
    assert sorted(f.entity_key for f in of_type(outputs, FraudFlag)) == expected_flags
