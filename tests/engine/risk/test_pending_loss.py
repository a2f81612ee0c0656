"""The daily-loss limit counts orders in flight: a passing order's worst immediate loss is
reserved (``Decision.loss_per_unit`` -> the position's ``pending_loss``) and counted by
``daily_loss`` until its fills are recorded."""

from __future__ import annotations

from decimal import Decimal

from tests.engine.risk.test_checks import order
from tests.engine.risk.test_rules import codes, engine, view
from wojak.engine.domain import Position
from wojak.engine.risk import daily_loss

D = Decimal


def test_a_passing_limit_order_worse_than_the_last_tick_reserves_its_immediate_loss_per_unit():
    e = engine()
    last = {"FUT": D(100), "OPT": D(100)}
    assert e.check(order(limit_price="100.5"), view(), last).loss_per_unit == D("0.5")
    assert e.check(order(side="sell", limit_price="99.5"), view(), last).loss_per_unit == D("0.5")
    assert e.check(order(symbol="OPT", limit_price="101"), view(), last).loss_per_unit == D(10)  # x multiplier
    assert e.check(order(limit_price="99.5"), view(), last).loss_per_unit == 0  # better than the last tick
    assert e.check(order(side="sell", limit_price="100.5"), view(), last).loss_per_unit == 0
    assert e.check(order(order_type="market"), view(), last).loss_per_unit == 0  # fills at the market
    assert e.check(order(limit_price="101"), view(), {}).loss_per_unit == 0  # no tick to mark against
    denied = engine({"max_order_quantity": "1"}).check(order(limit_price="101"), view(), last)
    assert denied.action is not None and denied.loss_per_unit == 0  # only a passing order reserves


def test_daily_loss_counts_the_loss_reserved_by_orders_in_flight_at_its_boundary():
    e = engine({"max_daily_loss": "100"})
    last = {"FUT": D(990)}
    # 9 buys 10 over the last tick in flight (90 reserved) + this one (10): 100, at the limit
    in_flight = Position("a", "FUT", pending_buy=D(9), pending_loss=D(90))
    assert daily_loss(view(in_flight), last, e) == D(90)
    assert e.check(order(quantity="1", limit_price="1000"), view(in_flight), last).action is None
    over = Position("a", "FUT", pending_buy=D(9), pending_loss=D("90.01"))
    d = e.check(order(quantity="1", limit_price="1000"), view(over), last)
    assert codes(d) == ["max_daily_loss_exceeded"] and d.halt
    # with a marked loss and realised P&L as well: 40 realised + 30 marked + 20 reserved + 10 own
    held = Position("a", "FUT", quantity=D(3), average_price=D(1000), pending_loss=D(20))
    assert daily_loss(view(held, realised_today=D(-40)), last, e) == D(90)
    assert e.check(order(quantity="1", limit_price="1000"), view(held, realised_today=D(-40)), last).action is None
    assert codes(e.check(order(quantity="1", limit_price="1000"), view(held, realised_today=D("-40.01")), last)) == [
        "max_daily_loss_exceeded"
    ]
