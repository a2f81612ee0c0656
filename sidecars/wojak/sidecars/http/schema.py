"""The published request schemas, generated from the validator's own rules.

Nothing here is written by hand twice: the fields, patterns, enums and limits come from
``wojak.engine.protocol`` (the module ``validate_order`` and ``validate_tick`` use), so the
OpenAPI document cannot disagree with what the intake accepts. Two things JSON Schema
cannot say are noted in the descriptions: a JSON number written ``1.0`` is the integer 1
to JSON Schema but a float to the validator (refused), and a crossed quote (bid > ask).
Patterns are ECMA-262 (JSON Schema's dialect): ``$`` matches only at the very end.
"""

from __future__ import annotations

import functools
from typing import Any

from wojak.engine.protocol import (
    DECIMAL_PATTERN,
    ID_PATTERN,
    ORDER_FIELDS,
    SYMBOL_PATTERN,
    rules,  # the validator's enums, limits and field lists
)

assert set(ORDER_FIELDS) == set(rules.ORDER_FIELDS)


def _decimal_pattern() -> str:
    """What ``_decimal`` accepts as a string, beyond ``DECIMAL_PATTERN``'s syntax: > 0, at most
    ``MAX_INTEGER_DIGITS`` integer digits, at most ``MAX_DECIMALS`` places once trailing zeros go."""
    whole, places = rules.MAX_INTEGER_DIGITS, rules.MAX_DECIMALS
    positive_whole = f"[1-9][0-9]{{0,{whole - 1}}}(\\.[0-9]{{1,{places}}}0*)?"
    below_one = f"0\\.[0-9]{{0,{places - 1}}}[1-9]0*"
    return f"^({positive_whole}|{below_one})$"


def _char_class_of(predicate: Any) -> str:
    """A regex character class of every code point for which ``predicate`` holds, as ranges.

    BMP code points are ``\\uXXXX`` escapes (the same in Python and ECMA-262); code points
    above U+FFFF are written as themselves (one code point in Python and in ECMA-262's
    unicode mode)."""

    def esc(c: int) -> str:
        return f"\\u{c:04x}" if c <= 0xFFFF else chr(c)

    parts, start = [], None
    for c in range(0x110000):
        if predicate(c):
            if start is None:
                start = c
        elif start is not None:
            parts.append(esc(start) if start == c - 1 else f"{esc(start)}-{esc(c - 1)}")
            start = None
    if start is not None:
        parts.append(f"{esc(start)}-{esc(0x10FFFF)}")
    return "[" + "".join(parts) + "]"


@functools.lru_cache(maxsize=1)
def _tag_pattern() -> str:
    # validate_order: len(tag) <= MAX_TAG_LENGTH and tag.isprintable()
    not_printable = _char_class_of(lambda c: not chr(c).isprintable())
    return "^" + not_printable.replace("[", "[^", 1) + "*$"


def decimal_schema(description: str, *, nullable: bool = False) -> dict[str, Any]:
    string = {"type": "string", "maxLength": 64, "allOf": [{"pattern": DECIMAL_PATTERN}, {"pattern": _decimal_pattern()}]}
    integer = {"type": "integer", "minimum": 1, "maximum": 10**rules.MAX_INTEGER_DIGITS - 1}
    options: list[dict[str, Any]] = [string, integer]
    if nullable:
        options.append({"type": "null"})
    return {
        "description": description + f" A decimal string > 0 with at most {rules.MAX_INTEGER_DIGITS} integer digits and"
        f" {rules.MAX_DECIMALS} places (or an integer written without a point or exponent); never a float.",
        "oneOf": options,
        "examples": ["50", "24000.05"],
    }


def _enum(values: tuple[str, ...], description: str, *, nullable: bool = False, default: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": ["string", "null"] if nullable else "string",
        "enum": [*values, *([None] if nullable else [])],
        "description": description,
    }
    if default is not None:
        schema["default"] = default
    return schema


def _id(description: str) -> dict[str, Any]:
    return {"type": "string", "pattern": ID_PATTERN, "description": description}


@functools.lru_cache(maxsize=1)
def order_schema() -> dict[str, Any]:
    """The body of ``POST /v1/orders``: exactly what ``validate_order`` accepts (``client_order_id`` may
    come from the ``Idempotency-Key`` header instead, so the body need not carry it)."""
    properties: dict[str, Any] = {
        "client_order_id": _id("The idempotency key, unique per account; or send the Idempotency-Key header."),
        "account": _id("The account; the API key must permit it."),
        "symbol": {"type": "string", "pattern": SYMBOL_PATTERN, "description": "An instrument of the risk configuration."},
        "side": _enum(rules.SIDES, "buy or sell"),
        "quantity": decimal_schema("Contracts; a whole number of lots."),
        "order_type": _enum(rules.ORDER_TYPES, "market or limit"),
        "limit_price": decimal_schema("Limit orders only, on the instrument's tick grid.", nullable=True),
        "time_in_force": _enum(rules.TIMES_IN_FORCE, "day (default), ioc or gtc", nullable=True, default="day"),
        "tag": {
            "type": ["string", "null"],
            "maxLength": rules.MAX_TAG_LENGTH,
            "pattern": _tag_pattern(),
            "description": f"Free text, at most {rules.MAX_TAG_LENGTH} printable characters.",
        },
    }
    assert list(properties) == list(rules.ORDER_FIELDS), "a field of the validator is missing from the schema"
    required = [f for f in rules.REQUIRED_ORDER_FIELDS if f != "client_order_id"]
    return {
        "type": "object",
        "additionalProperties": False,
        "required": required,
        "properties": properties,
        # A limit order needs a limit price; a market order must not have one.
        "if": {"required": ["order_type"], "properties": {"order_type": {"const": "limit"}}},
        "then": {"required": ["limit_price"], "properties": {"limit_price": {"not": {"type": "null"}}}},
        "else": {"properties": {"limit_price": {"type": "null"}}},
        "example": {
            "client_order_id": "first-1",
            "account": "desk-1",
            "symbol": "NIFTY-FUT",
            "side": "buy",
            "quantity": "50",
            "order_type": "limit",
            "limit_price": "24001",
        },
    }


@functools.lru_cache(maxsize=1)
def tick_schema() -> dict[str, Any]:
    """The body of ``POST /v1/ticks`` (``validate_tick``); bid must not exceed ask."""
    properties: dict[str, Any] = {"symbol": {"type": "string", "pattern": SYMBOL_PATTERN}}
    for name in rules.TICK_FIELDS[1:]:
        properties[name] = decimal_schema(name + ".")
    properties["sequence"] = {
        "type": ["integer", "null"],
        "minimum": 0,
        "maximum": rules.MAX_SEQUENCE,
        "description": "The feed's sequence number: an older one is answered status stale.",
    }
    properties["exchange_time"] = {
        "type": ["string", "null"],
        "pattern": f"^{rules.EXCHANGE_TIME_PATTERN}$",
        "description": "RFC 3339, e.g. 2026-11-30T09:15:00.125Z",
    }
    assert set(properties) == set(rules.TICK_FIELDS + rules.TICK_OPTIONAL_FIELDS)
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(rules.TICK_FIELDS),
        "properties": properties,
        "description": "A quote. bid must not exceed ask (a crossed quote is a 422 naming bid).",
        "example": {"symbol": "NIFTY-FUT", "bid": "24000", "ask": "24001", "last": "24000.5"},
    }


FORBIDDEN_SCHEMA = {
    "type": "object",
    "required": ["verdict", "reason", "detail"],
    "properties": {
        "verdict": {"const": "forbidden"},
        "reason": {
            "type": "string",
            "examples": ["scope_missing", "account_not_permitted"],
            "description": "scope_missing or account_not_permitted (checked here and in the engine); the engine may"
            " also refuse an account traded on another cluster (account_homed_elsewhere)",
        },
        "detail": {"type": "string"},
        "client_order_id": {"type": "string"},
    },
}
