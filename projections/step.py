"""One application of the core to one shop: the shop, the rules, the time, and where outputs go.

The pipeline makes one per event (a timer firing moves `now` on); handlers read and append
to it instead of threading four arguments through every call.
"""

from __future__ import annotations

from dataclasses import dataclass

from refstream.fraud.signals import FraudSignals
from refstream.projections.state import ShopState
from refstream.rewards.rules import Rules
from refstream.schemas.events import DerivedEvent


@dataclass(slots=True, init=False)
class Step:
    shop: ShopState
    rules: Rules
    signals: FraudSignals  # the rules' fraud section, read once per pipeline
    # The time decisions are stamped with: the shop's stream time, or a firing timer's deadline.
    now: int
    out: list[DerivedEvent]

    # Written out, not generated: mypyc compiles this one, while a dataclass-generated
    # __init__ stays interpreted (a Python call per Step, i.e. per event).
    def __init__(self, shop: ShopState, rules: Rules, signals: FraudSignals, now: int,
                 out: list[DerivedEvent]) -> None:
        self.shop = shop
        self.rules = rules
        self.signals = signals
        self.now = now
        self.out = out
