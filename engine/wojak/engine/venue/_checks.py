"""The venue is not trusted: every report is checked against the order before it is booked.

A report that fails (``check_report`` returns the reason) is never booked: the order goes
to ``venue_anomaly``, its account to REDUCING and an escalation is raised, and the rest of
the batch carries on.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation, localcontext
from typing import Any

from wojak.engine.venue._base import VenueReport, VenueStatus

ZERO = Decimal(0)


def parse_decimal(value: Any) -> Decimal | None:
    """A decimal from a report field: a string or an exact integer, never a float (which has
    already lost the venue's digits). Raises ``ValueError`` for anything else."""
    if value is None:
        return None
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError(f"{value!r} is a float: a venue must send decimals as strings")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        return value
    if isinstance(value, str) and len(value) <= 64:
        try:
            return Decimal(value)
        except InvalidOperation:
            pass
    raise ValueError(f"{str(value)[:64]!r} is not a decimal")


def check_report(order: Any, report: VenueReport, previous_filled: Decimal, previous_average: Decimal | None) -> str | None:
    """The reason ``report`` cannot be booked for ``order``, or None if it is consistent."""
    if report.problem:
        return report.problem
    if report.status is VenueStatus.NOT_FOUND:
        return "not_found after a submit"
    filled, price = report.filled_quantity, report.average_price
    if not filled.is_finite():
        return f"filled_quantity {filled} is not finite"
    if filled < ZERO or filled > order.quantity:
        return f"filled_quantity {filled} outside 0..{order.quantity}"
    if filled < previous_filled:
        return f"filled_quantity went back from {previous_filled} to {filled}"
    status = report.status
    if status is VenueStatus.FILLED and filled != order.quantity:
        return f"filled with {filled} of {order.quantity}"
    if status is VenueStatus.PARTIALLY_FILLED and not ZERO < filled < order.quantity:
        return f"partially_filled with {filled} of {order.quantity}"
    if status in (VenueStatus.ACCEPTED, VenueStatus.REJECTED) and filled != previous_filled:
        return f"{status.value} with a new fill of {filled - previous_filled}"
    if filled == previous_filled:
        return None
    if price is None:
        return "a fill without a price"
    if not price.is_finite() or price <= ZERO:
        return f"average_price {price} is not a positive finite number"
    marginal = fill_price(filled, price, previous_filled, previous_average)
    if marginal is None or marginal <= ZERO:
        return f"average_price {price} implies a non-positive price for the new fill"
    limit = order.limit_price
    if limit is not None:
        buy = order.side.value == "buy"
        for p in {price, marginal}:
            if (buy and p > limit) or (not buy and p < limit):
                return f"fill at {p} beyond the {'buy' if buy else 'sell'} limit {limit}"
    return None


def fill_price(filled: Decimal, average: Decimal, previous_filled: Decimal, previous_average: Decimal | None) -> Decimal | None:
    """The price of the newest fill, from cumulative quantities and averages (10@100 then an
    average of 101 over 20 is a fill of 10@102), exact to 28 significant digits."""
    if previous_filled == ZERO:
        return average
    if previous_average is None:
        return None
    with localcontext() as ctx:
        ctx.prec = 28
        return (filled * average - previous_filled * previous_average) / (filled - previous_filled)
