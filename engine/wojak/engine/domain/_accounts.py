"""What risk sees of one account: the store builds it inside its atomic admit; risk reads it."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Mapping

from wojak.engine.domain._positions import Position


@dataclass(slots=True)
class AccountView:
    """What risk sees of one account inside ``admit`` (the store keeps it current in a batch).

    ``positions`` holds every symbol of the account the store knows (reservations included)
    and, always, the order's own symbol (flat if new). ``realised_today`` is the realised
    P&L of ``day``; ``orders_last_second`` / ``orders_last_minute`` count orders admitted
    ``pending`` in the sliding windows ending now. ``state`` is the stored trading-state
    override (``None``: the configuration decides). ``decide`` may set ``halt`` to a reason
    to store the account as HALTED (e.g. on a daily-loss breach).

    ``loss_per_unit`` (reset to 0 before each ``decide``) is what ``decide`` sets for an order
    it passes: the loss per unit its fills are marked at the moment they fill (a limit price
    worse than the last tick, times the multiplier). The store reserves it x quantity in the
    position's ``pending_loss`` and releases it per unit as the order fills or closes, so the
    daily-loss limit counts orders in flight on every replica.
    """

    account: str
    positions: dict[str, Position]
    day: str = ""
    realised_today: Decimal = Decimal(0)
    orders_last_second: int = 0
    orders_last_minute: int = 0
    state: str | None = None
    halt: str | None = None
    now: float = 0.0
    loss_per_unit: Decimal = Decimal(0)
    sod_prices: Mapping[str, Decimal] = field(default_factory=dict)  # start-of-day price by symbol (set by decide)

    def position(self, symbol: str) -> Position:
        p = self.positions.get(symbol)
        if p is None:
            p = self.positions[symbol] = Position(self.account, symbol)
        return p
