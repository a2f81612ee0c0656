"""Money and quantity value objects: always ``Decimal``, never float."""

from __future__ import annotations

from decimal import Decimal


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
