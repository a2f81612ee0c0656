"""Money and quantity value objects: always ``Decimal``, never float."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal, Inexact, InvalidOperation, Overflow

# The context of all money arithmetic, whatever the process's default context is: 34 digits
# (IEEE decimal128), banker's rounding, and an error rather than a silent NaN or infinity.
MONEY = Context(prec=34, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, Overflow])
del Inexact


def quantize_money(value: Decimal, quantum: Decimal | None) -> Decimal:
    """``value`` rounded (half-even) to ``quantum`` (e.g. Decimal("0.01")), or as is if None."""
    return value if quantum is None else value.quantize(quantum, context=MONEY)


def to_decimal(value: str | int | Decimal) -> Decimal:
    if isinstance(value, float):  # pragma: no cover - a programming error, not input
        raise TypeError("floats are not money: pass a string or Decimal")
    return value if isinstance(value, Decimal) else Decimal(value)


class _Positive(Decimal):
    """A strictly positive, finite decimal; subclasses only name what it measures."""

    __slots__ = ()

    def __new__(cls, value: str | int | Decimal) -> "_Positive":
        self = super().__new__(cls, to_decimal(value))
        if not self.is_finite() or self <= 0:
            raise ValueError(f"{cls.__name__.lower()} must be finite and > 0, got {value!r}")
        return self


class Quantity(_Positive):
    __slots__ = ()


class Price(_Positive):
    __slots__ = ()
