"""Domain model: Decimal value objects, the order state table and the order events."""

from wojak.engine.domain._accounts import AccountView
from wojak.engine.domain._orders import (
    FINAL_STATES,
    OPEN_STATES,
    TRANSITIONS,
    IllegalTransition,
    Order,
    OrderEvent,
    OrderState,
    Side,
    fingerprint,
    transition,
)
from wojak.engine.domain._positions import Position
from wojak.engine.domain._values import MONEY, Price, Quantity, quantize_money, to_decimal

__all__ = [
    "AccountView",
    "OPEN_STATES",
    "MONEY",
    "quantize_money",
    "FINAL_STATES",
    "TRANSITIONS",
    "IllegalTransition",
    "Order",
    "OrderEvent",
    "OrderState",
    "Position",
    "Price",
    "Quantity",
    "Side",
    "fingerprint",
    "to_decimal",
    "transition",
]
