"""What a risk check answers: a ``Decision`` (the action, the breaches, shadow breaches, a halt,
the loss per unit a passing order reserves), built from ``Breach`` es."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from wojak.engine.risk._config import Action

ZERO = Decimal(0)
ONE = Decimal(1)
HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class Breach:
    rule: str
    code: str  # stable reason code, e.g. "max_order_quantity_exceeded"
    detail: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of the checks: ``action`` None means the order may go to the venue.

    ``shadow`` lists breaches of rules in shadow mode (logged, not enforced); ``halt`` is
    set when the account must be stored HALTED (a daily-loss breach). ``loss_per_unit`` is,
    for an order that passes, the loss per unit its fills are marked at the moment they fill
    (see ``RiskEngine.loss_per_unit``): the store reserves it as the position's ``pending_loss``."""

    action: Action | None
    breaches: tuple[Breach, ...] = ()
    shadow: tuple[tuple[Action, Breach], ...] = ()
    halt: str | None = None
    loss_per_unit: Decimal = ZERO

    @property
    def reason(self) -> str | None:
        return ",".join(b.code for b in self.breaches) or None


PASSED = Decision(None)
