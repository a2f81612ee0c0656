"""Money and quantity value objects: always ``Decimal``, never float."""

from __future__ import annotations

from decimal import Decimal


def to_decimal(value: str | int | Decimal) -> Decimal:
    if isinstance(value, float):  # pragma: no cover - a programming error, not input
        raise TypeError("floats are not money: pass a string or Decimal")
    return value if isinstance(value, Decimal) else Decimal(value)


class Quantity(Decimal):
    """A strictly positive, finite quantity."""

    __slots__ = ()

    def __new__(cls, value: str | int | Decimal) -> "Quantity":
        self = super().__new__(cls, to_decimal(value))
        if not self.is_finite() or self <= 0:
            raise ValueError(f"quantity must be finite and > 0, got {value!r}")
        return self


class Price(Decimal):
    """A strictly positive, finite price."""

    __slots__ = ()

    def __new__(cls, value: str | int | Decimal) -> "Price":
        self = super().__new__(cls, to_decimal(value))
        if not self.is_finite() or self <= 0:
            raise ValueError(f"price must be finite and > 0, got {value!r}")
        return self
