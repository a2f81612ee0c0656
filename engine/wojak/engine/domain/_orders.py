"""Orders and their state machine, kept as a data table ``{(state, event): state}``."""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from wojak.errors import WojakError


class Side(str, enum.Enum):
    BUY = "buy"
    SELL = "sell"


class OrderState(str, enum.Enum):
    INITIALIZED = "initialized"  # never stored: the state before the first event
    PENDING = "pending"  # passed risk; may be at the venue; resolved by asking the venue
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    REJECTED = "rejected"
    CANCELED = "canceled"
    DENIED = "denied"
    ESCALATED = "escalated"
    VENUE_ANOMALY = "venue_anomaly"  # the venue's report failed its checks: never booked, held for people
    EXPIRED = "expired"  # pending, never seen by the venue, released by reconciliation: never executes


class OrderEvent(str, enum.Enum):
    """Events are named in the past tense: each records something that happened."""

    SUBMITTED = "OrderSubmitted"
    DENIED = "OrderDenied"
    ESCALATED = "OrderEscalated"
    ACCEPTED = "OrderAccepted"
    PARTIALLY_FILLED = "OrderPartiallyFilled"
    FILLED = "OrderFilled"
    REJECTED = "OrderRejected"
    CANCELED = "OrderCanceled"
    VENUE_ANOMALY_DETECTED = "OrderVenueAnomalyDetected"
    EXPIRED = "OrderExpired"


S, E = OrderState, OrderEvent
TRANSITIONS: dict[tuple[OrderState, OrderEvent], OrderState] = {
    (S.INITIALIZED, E.SUBMITTED): S.PENDING,
    (S.INITIALIZED, E.DENIED): S.DENIED,
    (S.INITIALIZED, E.ESCALATED): S.ESCALATED,
    (S.PENDING, E.ACCEPTED): S.ACCEPTED,
    (S.PENDING, E.PARTIALLY_FILLED): S.PARTIALLY_FILLED,
    (S.PENDING, E.FILLED): S.FILLED,
    (S.PENDING, E.REJECTED): S.REJECTED,
    (S.PENDING, E.CANCELED): S.CANCELED,
    (S.ACCEPTED, E.PARTIALLY_FILLED): S.PARTIALLY_FILLED,
    (S.ACCEPTED, E.FILLED): S.FILLED,
    (S.ACCEPTED, E.CANCELED): S.CANCELED,
    (S.PARTIALLY_FILLED, E.PARTIALLY_FILLED): S.PARTIALLY_FILLED,
    (S.PARTIALLY_FILLED, E.FILLED): S.FILLED,
    (S.PARTIALLY_FILLED, E.CANCELED): S.CANCELED,
    (S.PENDING, E.VENUE_ANOMALY_DETECTED): S.VENUE_ANOMALY,
    (S.ACCEPTED, E.VENUE_ANOMALY_DETECTED): S.VENUE_ANOMALY,
    (S.PARTIALLY_FILLED, E.VENUE_ANOMALY_DETECTED): S.VENUE_ANOMALY,
    (S.PENDING, E.EXPIRED): S.EXPIRED,
}
del S, E

# States in which a resend is answered from the record (`duplicate`), not re-executed.
FINAL_STATES = frozenset(OrderState) - {OrderState.INITIALIZED, OrderState.PENDING}
# States whose remaining quantity may still trade at the venue.
OPEN_STATES = frozenset({OrderState.PENDING, OrderState.ACCEPTED, OrderState.PARTIALLY_FILLED})


class IllegalTransition(WojakError, RuntimeError):
    def __init__(self, state: OrderState, event: OrderEvent) -> None:
        super().__init__(f"no transition from {state.value} on {event.value}")
        self.state, self.event = state, event


def transition(state: OrderState, event: OrderEvent) -> OrderState:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(state, event) from None


def fingerprint(order: dict[str, Any]) -> str:
    """Identity of an order's content: a resend with another fingerprint is a ``conflict``."""
    key = "\x1f".join(
        str(order[f] or "")
        for f in ("account", "symbol", "side", "quantity", "order_type", "limit_price", "time_in_force", "tag")
    )
    return hashlib.blake2b(key.encode(), digest_size=12).hexdigest()


@dataclass(slots=True)
class Order:
    """An order as the engine knows it; quantities and prices are ``Decimal``."""

    client_order_id: str
    account: str
    symbol: str
    side: Side
    quantity: Decimal
    order_type: str
    limit_price: Decimal | None
    time_in_force: str
    tag: str | None
    fingerprint: str
    state: OrderState = OrderState.INITIALIZED
    filled_quantity: Decimal = Decimal(0)
    average_price: Decimal | None = None
    venue_order_id: str | None = None
    reason: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    principal: str | None = None  # who submitted it (kept on the record: the audit of each order)
    # The execution lease of a ``pending`` order: the engine that may submit it to the venue
    # until ``lease_until`` (another replica meanwhile answers ``retry``, never submits).
    lease_owner: str | None = None
    lease_until: float = 0.0

    @property
    def key(self) -> str:
        """The order's identity: ``client_order_id`` is unique per account, so the key is both
        (``/`` is in neither alphabet, so the pair reads back unambiguously)."""
        return f"{self.account}/{self.client_order_id}"

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> "Order":
        """From a validated wire order (see ``protocol.validate_order``)."""
        price = wire["limit_price"]
        return cls(
            client_order_id=wire["client_order_id"],
            account=wire["account"],
            symbol=wire["symbol"],
            side=Side(wire["side"]),
            quantity=Decimal(wire["quantity"]),
            order_type=wire["order_type"],
            limit_price=None if price is None else Decimal(price),
            time_in_force=wire["time_in_force"],
            tag=wire["tag"],
            fingerprint=fingerprint(wire),
        )

    @property
    def signed_quantity(self) -> Decimal:
        return self.quantity if self.side is Side.BUY else -self.quantity

    def apply(self, event: OrderEvent) -> OrderState:
        self.state = transition(self.state, event)
        return self.state

    def to_wire(self) -> dict[str, Any]:
        return {
            "client_order_id": self.client_order_id,
            "account": self.account,
            "symbol": self.symbol,
            "side": self.side.value,
            "quantity": str(self.quantity),
            "order_type": self.order_type,
            "limit_price": None if self.limit_price is None else str(self.limit_price),
            "time_in_force": self.time_in_force,
            "tag": self.tag,
            "state": self.state.value,
            "filled_quantity": str(self.filled_quantity),
            "average_price": None if self.average_price is None else str(self.average_price),
            "venue_order_id": self.venue_order_id,
            "reason": self.reason,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "principal": self.principal,
        }
