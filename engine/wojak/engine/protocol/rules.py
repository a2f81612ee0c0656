"""The validator's rules as public constants, for what must agree with it (the published JSON
schema of the HTTP intake): enums, limits and field lists. The rules themselves are in
``validate_order`` / ``validate_tick``."""

from wojak.engine.protocol._orders import (
    _EXCHANGE_TIME,
    _REQUIRED,
    DECIMAL_PATTERN,
    ID_PATTERN,
    MAX_DECIMALS,
    MAX_INTEGER_DIGITS,
    MAX_SEQUENCE,
    MAX_TAG_LENGTH,
    ORDER_FIELDS,
    ORDER_TYPES,
    SIDES,
    SYMBOL_PATTERN,
    TICK_FIELDS,
    TICK_OPTIONAL_FIELDS,
    TIMES_IN_FORCE,
)

REQUIRED_ORDER_FIELDS = _REQUIRED
EXCHANGE_TIME_PATTERN = _EXCHANGE_TIME.pattern

__all__ = [
    "DECIMAL_PATTERN",
    "EXCHANGE_TIME_PATTERN",
    "ID_PATTERN",
    "MAX_DECIMALS",
    "MAX_INTEGER_DIGITS",
    "MAX_SEQUENCE",
    "MAX_TAG_LENGTH",
    "ORDER_FIELDS",
    "ORDER_TYPES",
    "REQUIRED_ORDER_FIELDS",
    "SIDES",
    "SYMBOL_PATTERN",
    "TICK_FIELDS",
    "TICK_OPTIONAL_FIELDS",
    "TIMES_IN_FORCE",
]
