"""The venue interface the order path executes against."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from wojak.errors import WojakError


class VenueStatus(str, enum.Enum):
    FILLED = "filled"
    PARTIALLY_FILLED = "partially_filled"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    CANCELED = "canceled"
    NOT_FOUND = "not_found"  # a lookup for an order the venue never received


class VenueError(WojakError, RuntimeError):
    """The venue could not be reached or did not answer; the outcome is unknown (look it up).

    ``partial`` (when set) holds, per order of the call, the report of the parts that did
    answer (None where the outcome is unknown): those are booked, the rest looked up later."""

    def __init__(self, message: str, partial: "list[VenueReport | None] | None" = None) -> None:
        super().__init__(message)
        self.partial = partial


@dataclass(frozen=True, slots=True)
class VenueReport:
    client_order_id: str
    status: VenueStatus
    filled_quantity: Decimal = Decimal(0)
    average_price: Decimal | None = None
    venue_order_id: str | None = None
    reason: str | None = None
    problem: str | None = None  # the report could not be read as one (never booked: a venue anomaly)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "VenueReport":
        """A report as the venue sent it. Raises only when it names no order; any other
        defect (a float, an unknown status, a non-numeric quantity) is kept as ``problem``."""
        from wojak.engine.venue._checks import parse_decimal

        coid = d.get("client_order_id") if isinstance(d, dict) else None
        if not isinstance(coid, str):
            raise ValueError("a venue report without a client_order_id")
        problems = []
        try:
            status = VenueStatus(d.get("status"))
        except ValueError:
            status, problems = VenueStatus.REJECTED, [f"unknown status {str(d.get('status'))[:32]!r}"]
        values: dict[str, Decimal | None] = {}
        for field in ("filled_quantity", "average_price"):
            try:
                values[field] = parse_decimal(d.get(field))
            except ValueError as exc:
                values[field], problems = None, [*problems, f"{field}: {exc}"]
        venue_order_id, reason = d.get("venue_order_id"), d.get("reason")
        return cls(
            client_order_id=coid,
            status=status,
            filled_quantity=values["filled_quantity"] or Decimal(0),
            average_price=values["average_price"],
            venue_order_id=venue_order_id if isinstance(venue_order_id, str) else None,
            reason=str(reason)[:256] if reason is not None else None,
            problem="; ".join(problems) or None,
        )


class Venue(Protocol):
    """Every call takes wire-form orders and uses ``client_order_id`` as the idempotency key.

    ``execute`` submits; ``lookup`` asks what the venue knows without submitting. Both
    raise ``VenueError`` when the outcome is unknown.
    """

    async def execute(self, orders: list[dict[str, Any]]) -> list[VenueReport]: ...

    async def lookup(self, orders: list[dict[str, Any]]) -> list[VenueReport]: ...

    async def cancel(self, orders: list[dict[str, Any]]) -> list[VenueReport]: ...

    async def close(self) -> None: ...
