"""A small shop log for the snapshot upgrade test: a referral that qualifies, one held for
velocity, a return, with decisions still pending where the log is cut."""

from __future__ import annotations

from refstream.schemas.events import LogEvent
from tests.unit.core.builders import ShopLog, when


def whole_log() -> list[LogEvent]:
    log = ShopLog()
    log.share("alice", "R-alice", at=when(0))
    for n, friend in enumerate(("bob", "carol", "dan", "eve", "fay", "gus", "hal")):
        log.click(f"v-{friend}", at=when(1, minutes=n), code="R-alice", ip="ip:shared")
        log.signup(friend, at=when(1, minutes=n + 1), visitor=f"v-{friend}", ip="ip:shared")
        log.order(f"o-{friend}", friend, 4_000 + n, at=when(2, hours=n), visitor=f"v-{friend}")
    log.ret("r-bob", "o-bob", "bob", 4_000, at=when(10))
    log.click("v-ida", at=when(12), code="R-alice")
    log.signup("ida", at=when(12, minutes=5), visitor="v-ida")
    log.order("o-ida", "ida", 9_000, at=when(13), visitor="v-ida")
    log.tick(at=when(60))
    return log.events


CUT = 20  # the snapshot was taken after this many events


def first_part() -> list[LogEvent]:
    return whole_log()[:CUT]


def rest() -> list[LogEvent]:
    return whole_log()[CUT:]
