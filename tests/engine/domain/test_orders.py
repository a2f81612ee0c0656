from __future__ import annotations

from decimal import Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wojak.engine.domain import (
    FINAL_STATES,
    MONEY,
    TRANSITIONS,
    IllegalTransition,
    Order,
    OrderEvent,
    OrderState,
    Position,
    Price,
    Quantity,
    fingerprint,
    transition,
)
from wojak.engine.protocol import validate_order

WIRE, _ = validate_order({"client_order_id": "c1", "account": "a", "symbol": "S", "side": "buy",
                          "quantity": "5", "order_type": "limit", "limit_price": "10"})  # fmt: skip


def test_every_transition_in_the_table_and_nothing_else():
    for state in OrderState:
        for event in OrderEvent:
            if (state, event) in TRANSITIONS:
                assert transition(state, event) is TRANSITIONS[(state, event)]
            else:
                with pytest.raises(IllegalTransition):
                    transition(state, event)


def test_final_states_have_no_way_back_to_pending():
    for (state, _event), target in TRANSITIONS.items():
        assert target is not OrderState.PENDING or state is OrderState.INITIALIZED
    for state in (OrderState.FILLED, OrderState.REJECTED, OrderState.DENIED, OrderState.ESCALATED, OrderState.CANCELED):
        assert state in FINAL_STATES
        assert not any(s is state for (s, _e) in TRANSITIONS)


def test_order_from_wire_uses_decimals():
    order = Order.from_wire(WIRE)
    assert order.quantity == Decimal(5) and isinstance(order.limit_price, Decimal)
    assert order.signed_quantity == 5
    assert order.apply(OrderEvent.SUBMITTED) is OrderState.PENDING
    assert order.apply(OrderEvent.FILLED) is OrderState.FILLED


def test_fingerprint_changes_with_content_only():
    assert fingerprint(WIRE) == fingerprint(dict(WIRE))
    for field, value in [("quantity", "6"), ("limit_price", "11"), ("side", "sell"), ("account", "b"), ("tag", "t")]:
        assert fingerprint({**WIRE, field: value}) != fingerprint(WIRE)


@pytest.mark.parametrize("cls", [Quantity, Price])
@pytest.mark.parametrize("bad", ["0", "-1", "NaN", "Infinity"])
def test_value_objects_refuse_non_positive_and_non_finite(cls, bad):
    with pytest.raises(ValueError):
        cls(bad)


def test_value_objects_refuse_floats():
    with pytest.raises(TypeError):
        Quantity(1.5)  # type: ignore[arg-type]


def test_position_netting_and_realised_pnl():
    p = Position("a", "S")
    assert p.fill(Decimal(10), Decimal(100)) == 0
    assert p.fill(Decimal(10), Decimal(110)) == 0
    assert p.average_price == Decimal(105)
    assert p.fill(Decimal(-5), Decimal(115)) == Decimal(50)
    assert p.quantity == 15 and p.average_price == 105
    assert p.fill(Decimal(-20), Decimal(100)) == Decimal(-75)  # closes 15 at a loss, opens 5 short at 100
    assert p.quantity == -5 and p.average_price == 100 and p.realised_pnl == Decimal(-25)


@given(st.lists(st.tuples(st.integers(-50, 50).filter(bool), st.integers(1, 500)), max_size=30))
def test_position_quantity_is_the_sum_of_fills(fills):
    p = Position("a", "S")
    total_realised = Decimal(0)
    for qty, price in fills:
        with localcontext(MONEY):  # the sum in the context positions use
            total_realised += p.fill(Decimal(qty), Decimal(price))
    assert p.quantity == sum(q for q, _ in fills)
    assert p.realised_pnl == total_realised
    if p.quantity == 0:
        assert p.average_price == 0


@given(st.lists(st.integers(-20, 20).filter(bool), max_size=20))
def test_reservations_release_to_zero(orders):
    p = Position("a", "S")
    for q in orders:
        p.reserve(Decimal(q))
    for q in orders:
        p.release(Decimal(q))
    assert p.pending_buy == 0 and p.pending_sell == 0
