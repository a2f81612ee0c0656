"""An order's wire form, field by field, and its fingerprint pinned: the store keeps
fingerprints, so a change to how they are computed would make every resend after an
upgrade a ``conflict``."""

from __future__ import annotations

from decimal import Decimal

import pytest

from wojak.engine.domain import IllegalTransition, Order, OrderEvent, OrderState, fingerprint
from wojak.engine.protocol import validate_order

WIRE = {"client_order_id": "c", "account": "desk-1", "symbol": "NIFTY-FUT", "side": "buy", "quantity": "10",
        "order_type": "limit", "limit_price": "24000", "time_in_force": "day", "tag": None}  # fmt: skip


def test_fingerprints_are_pinned():
    assert fingerprint(WIRE) == "f0621c24dfacad8e697e56e1"
    assert fingerprint({**WIRE, "order_type": "market", "limit_price": None, "tag": "t"}) == "896c19ae3c7774c10933f25d"


def test_the_wire_form_field_by_field():
    wire, errors = validate_order({**WIRE, "side": "sell", "quantity": "2.5", "tag": "strategy-a", "time_in_force": "gtc"})
    assert not errors
    order = Order.from_wire(wire)
    assert (order.side.value, order.quantity, order.limit_price, order.tag, order.time_in_force) == (
        "sell", Decimal("2.5"), Decimal(24000), "strategy-a", "gtc")
    order.apply(OrderEvent.SUBMITTED)
    order.apply(OrderEvent.PARTIALLY_FILLED)
    order.filled_quantity, order.average_price = Decimal("1.5"), Decimal("24000.5")
    order.venue_order_id, order.reason, order.principal = "SBX-1", "partial", "desk-algo"
    order.created_at, order.updated_at = 1.5, 2.5
    assert order.to_wire() == {
        "client_order_id": "c", "account": "desk-1", "symbol": "NIFTY-FUT", "side": "sell", "quantity": "2.5",
        "order_type": "limit", "limit_price": "24000", "time_in_force": "gtc", "tag": "strategy-a",
        "state": "partially_filled", "filled_quantity": "1.5", "average_price": "24000.5", "venue_order_id": "SBX-1",
        "reason": "partial", "created_at": 1.5, "updated_at": 2.5, "principal": "desk-algo",
    }  # fmt: skip
    assert order.key == "desk-1/c"
    assert order.signed_quantity == Decimal("-2.5")


def test_a_new_market_order_on_the_wire():
    wire, _ = validate_order({**WIRE, "order_type": "market", "limit_price": None})
    out = Order.from_wire(wire).to_wire()
    assert (out["limit_price"], out["average_price"], out["filled_quantity"], out["state"], out["tag"]) == (
        None, None, "0", "initialized", None)
    assert out["venue_order_id"] is None and out["reason"] is None and out["principal"] is None
    assert out["quantity"] == "10" and Order.from_wire(wire).signed_quantity == 10


def test_an_illegal_transition_names_both_ends():
    order = Order.from_wire(WIRE)
    with pytest.raises(IllegalTransition, match="^no transition from initialized on OrderFilled$") as info:
        order.apply(OrderEvent.FILLED)
    assert (info.value.state, info.value.event) == (OrderState.INITIALIZED, OrderEvent.FILLED)
