"""The venue interface the order path executes against."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol


class VenueStatus(str, enum.Enum):
    FILLED = "filled"
    PARTIALLY_FILLED = "partially_filled"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    CANCELED = "canceled"
    NOT_FOUND = "not_found"  # a lookup for an order the venue never received


class VenueError(RuntimeError):
    """The venue could not be reached or did not answer; the outcome is unknown (look it up)."""


@dataclass(frozen=True, slots=True)
class VenueReport:
    client_order_id: str
    status: VenueStatus
    filled_quantity: Decimal = Decimal(0)
    average_price: Decimal | None = None
    venue_order_id: str | None = None
    reason: str | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "VenueReport":
        price = d.get("average_price")
        return cls(
            client_order_id=d["client_order_id"],
            status=VenueStatus(d["status"]),
            filled_quantity=Decimal(d.get("filled_quantity") or 0),
            average_price=None if price is None else Decimal(price),
            venue_order_id=d.get("venue_order_id"),
            reason=d.get("reason"),
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
