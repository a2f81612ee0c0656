"""Position arithmetic case by case: longs and shorts, adding, closing, closing exactly,
flipping through zero, multipliers, reservations both ways, the worst case, the start of
the day; money rounded half-even in its own context whatever the process's context is."""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_UP, Decimal, localcontext

import pytest

from wojak.engine.domain import Position
from wojak.engine.domain._values import Price, Quantity, quantize_money, to_decimal

D = Decimal


def position(quantity=0, average=0, **kw) -> Position:
    return Position("a", "S", quantity=D(quantity), average_price=D(average), **{k: D(v) for k, v in kw.items()})


@pytest.mark.parametrize("start, fill, price, quantity, average", [
    ((0, 0), 10, 100, 10, 100),            # open long
    ((0, 0), -10, 100, -10, 100),          # open short
    ((10, 100), 10, 110, 20, 105),         # add to a long
    ((-10, 100), -30, 120, -40, 115),      # add to a short
    ((10, 100), 1, 111, 11, 101),          # add one unit
    ((-1, 100), -1, 90, -2, 95),
])  # fmt: skip
def test_opening_and_adding_averages_the_price(start, fill, price, quantity, average):
    p = position(*start)
    assert p.fill(D(fill), D(price)) == 0
    assert (p.quantity, p.average_price, p.realised_pnl) == (quantity, average, 0)


@pytest.mark.parametrize("start, fill, price, multiplier, realised, quantity, average", [
    ((10, 100), -4, 110, 1, 40, 6, 100),          # part of a long closed at a profit
    ((10, 100), -10, 90, 1, -100, 0, 0),          # a long closed exactly, at a loss
    ((-10, 100), 4, 90, 1, 40, -6, 100),          # part of a short closed at a profit
    ((-10, 100), 10, 110, 1, -100, 0, 0),         # a short closed exactly, at a loss
    ((-10, 100), 4, 90, 50, 2000, -6, 100),       # ... times the multiplier
    ((10, 100), -4, 110, 50, 2000, 6, 100),
    ((10, 100), -15, 120, 2, 400, -5, 120),       # a long flipped short: the rest opened at the fill price
    ((-10, 100), 15, 80, 2, 400, 5, 80),          # a short flipped long
    ((1, 100), -2, 100, 1, 0, -1, 100),           # flipped at the same price: nothing realised
    ((1, 100), -1, 110, 1, 10, 0, 0),             # a long of one unit closed
    ((-10, 100), 11, 90, 1, 100, 1, 90),          # flipped to a long of one unit
    ((1, 100), -3, 90, 1, -10, -2, 90),           # a long of one unit flipped short
])  # fmt: skip
def test_closing_realises_pnl_with_the_sign_of_the_position(start, fill, price, multiplier, realised, quantity, average):
    p = position(*start)
    assert p.fill(D(fill), D(price), D(multiplier)) == realised
    assert (p.quantity, p.average_price, p.realised_pnl) == (quantity, average, realised)


def test_realised_pnl_accumulates():
    p = position(10, 100)
    p.fill(D(-2), D(105))
    p.fill(D(-3), D(90))
    assert p.realised_pnl == 10 - 30 and p.quantity == 5 and p.average_price == 100


@pytest.mark.parametrize("signed, pending_buy, pending_sell", [(5, 5, 0), (-5, 0, 5), (1, 1, 0), (-1, 0, 1)])
def test_reserve_and_release_count_each_side_apart(signed, pending_buy, pending_sell):
    p = position()
    p.reserve(D(signed), D(3))
    assert (p.pending_buy, p.pending_sell, p.pending_loss) == (pending_buy, pending_sell, 3)
    p.release(D(signed), D(1))
    assert (p.pending_buy, p.pending_sell, p.pending_loss) == (0, 0, 2)
    p.release(D(signed), D(5))  # never below zero
    assert (p.pending_buy, p.pending_sell, p.pending_loss) == (0, 0, 0)
    p.reserve(D(signed))
    assert p.pending_loss == 0


@pytest.mark.parametrize("held, pending_buy, pending_sell, signed, worst", [
    (0, 0, 0, 5, 5), (0, 0, 0, -5, 5), (10, 0, 0, -5, 10), (10, 0, 0, -25, 15), (-10, 0, 0, 5, 10),
    (-10, 0, 0, 25, 15), (10, 5, 0, 1, 16), (10, 0, 30, 1, 20), (-10, 30, 0, -1, 20), (0, 0, 0, 0, 0),
    (10, 0, 20, -0, 10),
])  # fmt: skip
def test_worst_case_is_the_largest_reachable_absolute_position(held, pending_buy, pending_sell, signed, worst):
    assert position(held, 1, pending_buy=pending_buy, pending_sell=pending_sell).worst_case(D(signed)) == worst


def test_worst_case_at_equal_long_and_short():
    assert position(0, 1, pending_buy=5, pending_sell=5).worst_case(D(0)) == 5


def test_the_start_of_the_day():
    p = position(10, 100)
    assert p.start_of_day_mark(D(110), "2024-05-01") == 100  # unchanged today: as held now
    assert p.start_of_day_mark(None, "2024-05-01") == 0
    p.roll("2024-05-01")
    p.fill(D(-10), D(120))  # closed during the day
    assert p.start_of_day_mark(D(110), "2024-05-01") == 100  # still marks what was held as the day began
    assert p.start_of_day_mark(D(90), "2024-05-01") == -100
    assert p.start_of_day_mark(D(110), "2024-05-02") == 0  # a later day: held nothing since
    p.roll("2024-05-01")  # a second change the same day: the snapshot stays
    assert (p.sod_quantity, p.sod_average) == (10, 100)
    p.roll("")  # no day: nothing to snapshot
    assert p.sod_day == "2024-05-01"
    p.roll("2024-05-02")
    assert (p.sod_day, p.sod_quantity, p.sod_average) == ("2024-05-02", 0, 0)
    short = position(-4, 50)
    assert short.start_of_day_mark(D(40), "d") == 40


def test_money_rounds_half_even_whatever_the_process_context():
    for rounding in (ROUND_DOWN, ROUND_UP):
        with localcontext() as ctx:
            ctx.rounding = rounding
            assert quantize_money(D("0.125"), D("0.01")) == D("0.12")
            assert quantize_money(D("0.135"), D("0.01")) == D("0.14")
            assert quantize_money(D("-0.125"), D("0.01")) == D("-0.12")
    assert quantize_money(D("0.125"), None) == D("0.125")


def test_values_are_never_floats():
    with pytest.raises(TypeError, match="^floats are not money: pass a string or Decimal$"):
        to_decimal(1.5)  # type: ignore[arg-type]
    assert to_decimal("1.50") == D("1.50") and to_decimal(3) == 3
    assert Quantity("2") == 2 and Price(D("0.5")) == D("0.5")
    for bad in ("0", "-1", "NaN", "Infinity"):
        with pytest.raises(ValueError, match="must be finite and > 0"):
            Quantity(bad)
