"""Net position per (account, symbol), with reservations for orders still at the venue."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, localcontext

from wojak.engine.domain._values import MONEY, quantize_money

ZERO = Decimal(0)


@dataclass(slots=True)
class Position:
    account: str
    symbol: str
    quantity: Decimal = ZERO  # signed net filled quantity
    average_price: Decimal = ZERO  # of the open quantity
    realised_pnl: Decimal = ZERO
    pending_buy: Decimal = ZERO  # reserved by orders that passed risk and may still fill
    pending_sell: Decimal = ZERO
    # the worst loss those orders are marked at the moment they fill (a limit worse than the
    # last tick), reserved at admit and released at record: the daily-loss limit counts it
    pending_loss: Decimal = ZERO
    version: int = field(default=0, compare=False)
    # the position as the trading day ``sod_day`` began (its first change that day snapshots it):
    # today's loss marks what was held then against the start-of-day price, not against cost
    sod_day: str = ""
    sod_quantity: Decimal = ZERO
    sod_average: Decimal = ZERO

    def roll(self, day: str) -> None:
        """Before the first change of ``day``: remember the position as the day began."""
        if day and self.sod_day != day:
            self.sod_day, self.sod_quantity, self.sod_average = day, self.quantity, self.average_price

    def start_of_day_mark(self, sod_price: Decimal | None, day: str) -> Decimal:
        """Unrealised P&L (before the multiplier) of what was held as ``day`` began, at ``sod_price``."""
        if self.sod_day == day:
            held, average = self.sod_quantity, self.sod_average
        else:  # unchanged today: held the same as it began
            held, average = self.quantity, self.average_price
        if not held or sod_price is None:
            return ZERO
        return (sod_price - average) * held

    def worst_case(self, signed_quantity: Decimal) -> Decimal:
        """The largest absolute position reachable if every reservation and this order fill."""
        long = self.quantity + self.pending_buy
        short = self.quantity - self.pending_sell
        if signed_quantity > 0:
            long += signed_quantity
        else:
            short += signed_quantity
        return long if long >= -short else -short  # = max(|long|, |short|), since long >= short

    def reserve(self, signed_quantity: Decimal, loss: Decimal = ZERO) -> None:
        if signed_quantity > 0:
            self.pending_buy += signed_quantity
        else:
            self.pending_sell -= signed_quantity
        if loss:
            self.pending_loss += loss

    def release(self, signed_quantity: Decimal, loss: Decimal = ZERO) -> None:
        if signed_quantity > 0:
            self.pending_buy = max(self.pending_buy - signed_quantity, ZERO)
        else:
            self.pending_sell = max(self.pending_sell + signed_quantity, ZERO)
        if loss:
            self.pending_loss = max(self.pending_loss - loss, ZERO)

    def fill(
        self, signed_quantity: Decimal, price: Decimal, multiplier: Decimal = Decimal(1), quantum: Decimal | None = None
    ) -> Decimal:
        """Apply a fill; returns the P&L it realised, rounded to ``quantum`` (the instrument's
        currency unit) if given. All arithmetic runs in the ``MONEY`` context."""
        with localcontext(MONEY):
            return self._fill(signed_quantity, price, multiplier, quantum)

    def _fill(self, signed_quantity: Decimal, price: Decimal, multiplier: Decimal, quantum: Decimal | None) -> Decimal:
        realised = ZERO
        qty = self.quantity
        if qty == 0 or (qty > 0) == (signed_quantity > 0):
            total = qty + signed_quantity
            self.average_price = (self.average_price * abs(qty) + price * abs(signed_quantity)) / abs(total)
            self.quantity = total
            return realised
        closing = min(abs(signed_quantity), abs(qty))
        direction = Decimal(1) if qty > 0 else Decimal(-1)
        realised = quantize_money((price - self.average_price) * closing * direction * multiplier, quantum)
        self.realised_pnl += realised
        total = qty + signed_quantity
        if total == 0:
            self.average_price = ZERO
        elif (total > 0) != (qty > 0):  # flipped through zero: the remainder opened at price
            self.average_price = price
        self.quantity = total
        return realised
