"""Validation of orders and ticks, shared by every sidecar and by the engine.

Decimals travel as strings (or exact integers). Floats, NaN, infinities, exponents,
non-positive values, more than ``MAX_DECIMALS`` places and more than
``MAX_INTEGER_DIGITS`` integer digits are refused, each with the field and the reason.
"""

from __future__ import annotations

import hashlib
import math
import re
from decimal import Decimal
from typing import Any, Mapping, NamedTuple

MAX_DECIMALS = 8
MAX_INTEGER_DIGITS = 12
MAX_TAG_LENGTH = 128

_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_SYMBOL = re.compile(r"[A-Za-z0-9._:&/-]{1,64}")
# ASCII digits only (``\d`` would also take Arabic-Indic or full-width digits).
_DECIMAL = re.compile(r"([+-]?)([0-9]+)(?:\.([0-9]+))?")
# The published JSON-schema pattern of a decimal string, the same rule as ``_decimal``.
DECIMAL_PATTERN = r"^(0|[1-9][0-9]*)(\.[0-9]+)?$"
ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
SYMBOL_PATTERN = r"^[A-Za-z0-9._:&/-]{1,64}$"
_NOT_FINITE = frozenset({"nan", "snan", "inf", "infinity"})

SIDES = ("buy", "sell")
ORDER_TYPES = ("market", "limit")
TIMES_IN_FORCE = ("day", "ioc", "gtc")
ORDER_FIELDS = (
    "client_order_id",
    "account",
    "symbol",
    "side",
    "quantity",
    "order_type",
    "limit_price",
    "time_in_force",
    "tag",
)
_REQUIRED = ("client_order_id", "account", "symbol", "side", "quantity", "order_type")
_ORDER_FIELD_SET = frozenset(ORDER_FIELDS)
TICK_FIELDS = ("symbol", "bid", "ask", "last")
TICK_OPTIONAL_FIELDS = ("sequence", "exchange_time")
_TICK_FIELD_SET = frozenset(TICK_FIELDS + TICK_OPTIONAL_FIELDS)
MAX_SEQUENCE = 2**63 - 1
_EXCHANGE_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})")


class FieldError(NamedTuple):
    """One reason a field was refused; ``code`` is stable, ``reason`` is for people."""

    field: str
    reason: str
    code: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason, "code": self.code}


def _decimal(field: str, value: Any, errors: list[FieldError]) -> str | None:
    """Canonical positive decimal string for ``value``, or None after recording why not."""
    if isinstance(value, bool):
        errors.append(FieldError(field, 'must be a decimal string such as "10.5"', "decimal_type"))
        return None
    if isinstance(value, int):
        if value <= 0:
            errors.append(FieldError(field, "must be greater than 0", "greater_than"))
            return None
        text = str(value)
        if len(text) > MAX_INTEGER_DIGITS:
            errors.append(FieldError(field, f"must have at most {MAX_INTEGER_DIGITS} integer digits", "too_large"))
            return None
        return text
    if isinstance(value, float):
        if not math.isfinite(value):
            errors.append(FieldError(field, "must be a finite number", "finite_number"))
            return None
        errors.append(
            FieldError(field, 'floats lose precision: send the decimal as a string such as "10.5"', "float_not_allowed")
        )
        return None
    if not isinstance(value, str):
        errors.append(FieldError(field, 'must be a decimal string such as "10.5"', "decimal_type"))
        return None
    match = _DECIMAL.fullmatch(value) if len(value) <= 64 else None
    if match is None:
        if value.strip().lstrip("+-").lower() in _NOT_FINITE:
            errors.append(FieldError(field, "must be a finite number", "finite_number"))
        else:
            errors.append(FieldError(field, "is not a plain decimal number (digits, optional point)", "decimal_parsing"))
        return None
    sign, whole, frac = match.groups()
    if sign == "+":
        errors.append(FieldError(field, "must not carry a sign", "decimal_parsing"))
        return None
    if len(whole) > 1 and whole[0] == "0" and sign != "-":
        errors.append(FieldError(field, "must not have leading zeros", "decimal_parsing"))
        return None
    whole = whole.lstrip("0") or "0"
    frac = (frac or "").rstrip("0")
    if len(whole) > MAX_INTEGER_DIGITS:
        errors.append(FieldError(field, f"must have at most {MAX_INTEGER_DIGITS} integer digits", "too_large"))
        return None
    if len(frac) > MAX_DECIMALS:
        errors.append(FieldError(field, f"must have at most {MAX_DECIMALS} decimal places", "decimal_max_places"))
        return None
    if sign == "-" or (whole == "0" and not frac):
        errors.append(FieldError(field, "must be greater than 0", "greater_than"))
        return None
    return f"{whole}.{frac}" if frac else whole


def _text(field: str, value: Any, pattern: re.Pattern[str], errors: list[FieldError]) -> str | None:
    if not isinstance(value, str):
        errors.append(FieldError(field, "must be a string", "string_type"))
        return None
    if pattern.fullmatch(value) is None:
        errors.append(FieldError(field, f"must match {pattern.pattern}", "string_pattern_mismatch"))
        return None
    return value


def _choice(field: str, value: Any, choices: tuple[str, ...], errors: list[FieldError]) -> str | None:
    if value not in choices or not isinstance(value, str):
        errors.append(FieldError(field, f"must be one of {', '.join(choices)}", "enum"))
        return None
    return value


def validate_order(raw: Any) -> tuple[dict[str, Any] | None, list[FieldError]]:
    """Return ``(order, [])`` with canonical fields, or ``(None, errors)`` naming every bad field."""
    if not isinstance(raw, Mapping):
        return None, [FieldError("body", "must be an object", "model_type")]
    errors: list[FieldError] = []
    for key in raw:
        if key not in _ORDER_FIELD_SET:
            errors.append(FieldError(str(key)[:64], "is not a field of an order", "extra_forbidden"))
    for key in _REQUIRED:
        if raw.get(key) is None:
            errors.append(FieldError(key, "is required", "missing"))
    get = raw.get
    order: dict[str, Any] = {
        "client_order_id": None
        if get("client_order_id") is None
        else _text("client_order_id", get("client_order_id"), _ID, errors),
        "account": None if get("account") is None else _text("account", get("account"), _ID, errors),
        "symbol": None if get("symbol") is None else _text("symbol", get("symbol"), _SYMBOL, errors),
        "side": None if get("side") is None else _choice("side", get("side"), SIDES, errors),
        "quantity": None if get("quantity") is None else _decimal("quantity", get("quantity"), errors),
        "order_type": None if get("order_type") is None else _choice("order_type", get("order_type"), ORDER_TYPES, errors),
        "limit_price": None,
        "time_in_force": "day",
        "tag": None,
    }
    if get("time_in_force") is not None:
        order["time_in_force"] = _choice("time_in_force", get("time_in_force"), TIMES_IN_FORCE, errors)
    price = get("limit_price")
    if order["order_type"] == "limit":
        if price is None:
            errors.append(FieldError("limit_price", "is required for a limit order", "missing"))
        else:
            order["limit_price"] = _decimal("limit_price", price, errors)
    elif order["order_type"] == "market" and price is not None:
        errors.append(FieldError("limit_price", "must be absent for a market order", "extra_forbidden"))
    tag = get("tag")
    if tag is not None:
        if not isinstance(tag, str):
            errors.append(FieldError("tag", "must be a string", "string_type"))
        elif len(tag) > MAX_TAG_LENGTH or not tag.isprintable():
            errors.append(FieldError("tag", f"must be at most {MAX_TAG_LENGTH} printable characters", "string_too_long"))
        else:
            order["tag"] = tag
    if errors:
        return None, errors
    return order, errors


def validate_tick(raw: Any) -> tuple[dict[str, Any] | None, list[FieldError]]:
    """Return ``(tick, [])`` with canonical prices, or ``(None, errors)``."""
    if not isinstance(raw, Mapping):
        return None, [FieldError("body", "must be an object", "model_type")]
    errors: list[FieldError] = []
    for key in raw:
        if key not in _TICK_FIELD_SET:
            errors.append(FieldError(str(key)[:64], "is not a field of a tick", "extra_forbidden"))
    tick: dict[str, Any] = {}
    for key in TICK_FIELDS:
        value = raw.get(key)
        if value is None:
            errors.append(FieldError(key, "is required", "missing"))
        elif key == "symbol":
            tick[key] = _text(key, value, _SYMBOL, errors)
        else:
            tick[key] = _decimal(key, value, errors)
    sequence = raw.get("sequence")
    if sequence is not None:
        if type(sequence) is not int or not 0 <= sequence <= MAX_SEQUENCE:
            errors.append(FieldError("sequence", f"must be an integer from 0 to {MAX_SEQUENCE}", "int_type"))
        else:
            tick["sequence"] = sequence
    exchange_time = raw.get("exchange_time")
    if exchange_time is not None:
        if not isinstance(exchange_time, str) or not _EXCHANGE_TIME.fullmatch(exchange_time):
            errors.append(
                FieldError("exchange_time", "must be an RFC 3339 time such as 2026-11-30T09:15:00.125Z", "datetime_parsing")
            )
        else:
            tick["exchange_time"] = exchange_time
    if errors:
        return None, errors
    if Decimal(tick["bid"]) > Decimal(tick["ask"]):
        return None, [FieldError("bid", "must not exceed ask", "crossed_quote")]
    return tick, errors


def derive_client_order_id(source: str, *coordinates: object) -> str:
    """A deterministic ``client_order_id`` from a message's source coordinates.

    The same coordinates (queue + message id, topic + partition + offset, ...) always
    give the same id, so a redelivered message is recognised as a duplicate.
    """
    digest = hashlib.blake2b("\x1f".join([source, *map(str, coordinates)]).encode(), digest_size=16).hexdigest()
    prefix = re.sub(r"[^A-Za-z0-9._-]", "-", source)[:24]
    return f"{prefix}:{digest}"
