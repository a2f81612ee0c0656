"""Money arithmetic in its own context, rounded to the instrument's currency unit."""

from __future__ import annotations

from decimal import Decimal, localcontext

from wojak.engine.domain import Position


def test_realised_pnl_is_rounded_half_even_to_the_currency_unit():
    p = Position("a", "S")
    p.fill(Decimal(3), Decimal("100.001"))
    realised = p.fill(Decimal(-1), Decimal("100.0065"), quantum=Decimal("0.01"))
    assert realised == Decimal("0.01")  # 0.0055 -> 0.01 (half-even keeps 0.0055 -> 0.01)
    realised = p.fill(Decimal(-1), Decimal("100.0035"), quantum=Decimal("0.01"))
    assert realised == Decimal("0.00")  # 0.0025 -> 0.00 under banker's rounding
    assert p.realised_pnl == Decimal("0.01")


def test_the_process_default_context_does_not_change_position_arithmetic():
    def run() -> tuple[Decimal, Decimal]:
        p = Position("a", "S")
        p.fill(Decimal(1), Decimal("100"))
        p.fill(Decimal(2), Decimal("101"))
        return p.average_price, p.fill(Decimal(-3), Decimal("102.5"), quantum=Decimal("0.01"))

    expected = run()
    with localcontext() as ctx:
        ctx.prec = 3  # a library that lowers the precision must not move a position's average
        assert run() == expected
    assert expected[0] == Decimal("100.6666666666666666666666666666667")
