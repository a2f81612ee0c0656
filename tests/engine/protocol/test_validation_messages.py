"""Validation of orders and ticks, error by error: the field, the stable code *and* the text
a client reads (the 422's ``msg``), at each boundary. Canonical forms of what is accepted."""

from __future__ import annotations

import pytest

from wojak.engine.protocol import FieldError, derive_client_order_id, validate_order, validate_tick
from wojak.engine.protocol.rules import MAX_DECIMALS, MAX_INTEGER_DIGITS, MAX_SEQUENCE, MAX_TAG_LENGTH

BASE = {"client_order_id": "c-1", "account": "desk-1", "symbol": "NIFTY-FUT", "side": "buy", "quantity": "10",
        "order_type": "limit", "limit_price": "24000"}  # fmt: skip
DECIMAL_TYPE = 'must be a decimal string such as "10.5"'
FLOAT = 'floats lose precision: send the decimal as a string such as "10.5"'
GT0 = "must be greater than 0"
PLAIN = "is not a plain decimal number (digits, optional point)"


def errors(**fields):
    order, errs = validate_order({**BASE, **fields})
    assert order is None
    return [tuple(e) for e in errs]


def accepted(**fields):
    order, errs = validate_order({**BASE, **fields})
    assert errs == [] and order is not None, errs
    return order


def test_limits():
    assert (MAX_DECIMALS, MAX_INTEGER_DIGITS, MAX_TAG_LENGTH, MAX_SEQUENCE) == (8, 12, 128, 2**63 - 1)


@pytest.mark.parametrize("value, reason, code", [
    (True, DECIMAL_TYPE, "decimal_type"),
    (["1"], DECIMAL_TYPE, "decimal_type"),
    (0, GT0, "greater_than"),
    (-1, GT0, "greater_than"),
    (10**12, f"must have at most {MAX_INTEGER_DIGITS} integer digits", "too_large"),
    (float("inf"), "must be a finite number", "finite_number"),
    (float("nan"), "must be a finite number", "finite_number"),
    (1.5, FLOAT, "float_not_allowed"),
    (2.0, FLOAT, "float_not_allowed"),
    ("NaN", "must be a finite number", "finite_number"),
    ("-Infinity", "must be a finite number", "finite_number"),
    ("+inf", "must be a finite number", "finite_number"),
    (" snan ", "must be a finite number", "finite_number"),
    ("1e5", PLAIN, "decimal_parsing"),
    ("1.", PLAIN, "decimal_parsing"),
    (".5", PLAIN, "decimal_parsing"),
    ("", PLAIN, "decimal_parsing"),
    ("1" * 65, PLAIN, "decimal_parsing"),  # over 64 characters: not even parsed
    ("+5", "must not carry a sign", "decimal_parsing"),
    ("05", "must not have leading zeros", "decimal_parsing"),
    ("00.5", "must not have leading zeros", "decimal_parsing"),
    ("-5", GT0, "greater_than"),
    ("-05", GT0, "greater_than"),
    ("0", GT0, "greater_than"),
    ("0.0", GT0, "greater_than"),
    ("0.000000000", GT0, "greater_than"),  # trailing zeros are dropped before the places are counted
    ("1" * 13, f"must have at most {MAX_INTEGER_DIGITS} integer digits", "too_large"),
    ("1.123456789", f"must have at most {MAX_DECIMALS} decimal places", "decimal_max_places"),
])  # fmt: skip
def test_each_bad_decimal_is_named_with_its_reason(value, reason, code):
    assert errors(quantity=value) == [("quantity", reason, code)]
    assert errors(limit_price=value) == [("limit_price", reason, code)]


@pytest.mark.parametrize("value, canonical", [
    (1, "1"), (10**12 - 1, "999999999999"), ("1", "1"), ("10.50", "10.5"), ("10.0", "10"), ("0.5", "0.5"),
    ("0.00000001", "0.00000001"), ("1.100000000", "1.1"), ("9" * 12, "9" * 12), ("9" * 12 + ".12345678", "9" * 12 + ".12345678"),
    ("1" + "0" * 11 + "." + "0" * 51, "1" + "0" * 11),  # 64 characters: parsed
])  # fmt: skip
def test_good_decimals_are_made_canonical(value, canonical):
    assert accepted(quantity=value)["quantity"] == canonical
    assert accepted(limit_price=value)["limit_price"] == canonical


def test_a_decimal_of_exactly_64_characters_is_parsed_and_65_is_not():
    assert len("1" + "0" * 11 + "." + "0" * 51) == 64
    assert errors(quantity="1" + "0" * 11 + "." + "0" * 52) == [("quantity", PLAIN, "decimal_parsing")]


@pytest.mark.parametrize("fields, expected", [
    ({"client_order_id": 5}, [("client_order_id", "must be a string", "string_type")]),
    ({"account": "desk 1"}, [("account", "must match [A-Za-z0-9._:-]{1,64}", "string_pattern_mismatch")]),
    ({"account": "a" * 65}, [("account", "must match [A-Za-z0-9._:-]{1,64}", "string_pattern_mismatch")]),
    ({"symbol": "NIFTY FUT"}, [("symbol", "must match [A-Za-z0-9._:&/-]{1,64}", "string_pattern_mismatch")]),
    ({"side": "long"}, [("side", "must be one of buy, sell", "enum")]),
    ({"side": ["buy"]}, [("side", "must be one of buy, sell", "enum")]),
    ({"order_type": "stop"}, [("order_type", "must be one of market, limit", "enum")]),
    ({"time_in_force": "fok"}, [("time_in_force", "must be one of day, ioc, gtc", "enum")]),
    ({"limit_price": None}, [("limit_price", "is required for a limit order", "missing")]),
    ({"order_type": "market"}, [("limit_price", "must be absent for a market order", "extra_forbidden")]),
    ({"tag": 5}, [("tag", "must be a string", "string_type")]),
    ({"tag": "x" * 129}, [("tag", "must be at most 128 printable characters", "string_too_long")]),
    ({"tag": "a\nb"}, [("tag", "must be at most 128 printable characters", "string_too_long")]),
    ({"price": "1"}, [("price", "is not a field of an order", "extra_forbidden")]),
    ({"side": None, "quantity": None}, [("side", "is required", "missing"), ("quantity", "is required", "missing")]),
])  # fmt: skip
def test_each_bad_field_is_named_with_its_reason(fields, expected):
    assert errors(**fields) == expected


def test_every_missing_field_is_named_in_order():
    order, errs = validate_order({})
    assert order is None
    assert [tuple(e) for e in errs] == [(f, "is required", "missing") for f in
                                        ("client_order_id", "account", "symbol", "side", "quantity", "order_type")]  # fmt: skip
    assert validate_order([BASE]) == (None, [FieldError("body", "must be an object", "model_type")])
    assert validate_order(None)[1][0].as_dict() == {"field": "body", "reason": "must be an object", "code": "model_type"}


def test_an_unknown_key_is_cut_to_64_characters():
    assert errors(**{"k" * 100: 1})[0][0] == "k" * 64


def test_optional_fields_and_their_defaults():
    order = accepted()
    assert (order["time_in_force"], order["tag"]) == ("day", None)
    assert accepted(tag="x" * 128)["tag"] == "x" * 128
    assert accepted(time_in_force="gtc")["time_in_force"] == "gtc"
    market = accepted(order_type="market", limit_price=None)
    assert market["limit_price"] is None


TICK = {"symbol": "NIFTY-FUT", "bid": "100", "ask": "101", "last": "100.5"}


def tick_errors(**fields):
    tick, errs = validate_tick({**TICK, **fields})
    assert tick is None
    return [tuple(e) for e in errs]


def test_ticks():
    assert validate_tick(TICK) == ({"symbol": "NIFTY-FUT", "bid": "100", "ask": "101", "last": "100.5"}, [])
    assert validate_tick({**TICK, "ask": "100"})[0] is not None  # bid == ask is a quote, not crossed
    assert tick_errors(bid="101.01") == [("bid", "must not exceed ask", "crossed_quote")]
    assert tick_errors(last=None) == [("last", "is required", "missing")]
    assert tick_errors(x=1) == [("x", "is not a field of a tick", "extra_forbidden")]
    assert validate_tick("x") == (None, [FieldError("body", "must be an object", "model_type")])
    seq = f"must be an integer from 0 to {MAX_SEQUENCE}"
    for bad in (-1, MAX_SEQUENCE + 1, True, 1.0, "1"):
        assert tick_errors(sequence=bad) == [("sequence", seq, "int_type")], bad
    for good in (0, MAX_SEQUENCE):
        assert validate_tick({**TICK, "sequence": good})[0]["sequence"] == good
    when = "must be an RFC 3339 time such as 2026-11-30T09:15:00.125Z"
    for bad in ("2026-11-30 09:15:00Z", "2026-11-30T09:15:00", 5, "2026-11-30T09:15:00.1234567890Z"):
        assert tick_errors(exchange_time=bad) == [("exchange_time", when, "datetime_parsing")], bad
    for good in ("2026-11-30T09:15:00Z", "2026-11-30T09:15:00.123456789+05:30", "2026-11-30T09:15:00-01:00"):
        assert validate_tick({**TICK, "exchange_time": good})[0]["exchange_time"] == good


def test_derived_ids():
    one = derive_client_order_id("rabbit mq/queue", "q", 1)
    assert one == derive_client_order_id("rabbit mq/queue", "q", 1)
    assert one.startswith("rabbit-mq-queue:") and len(one.split(":")[1]) == 32
    assert one != derive_client_order_id("rabbit mq/queue", "q", 2)
    assert derive_client_order_id("q2", "q", 1) != derive_client_order_id("q", "q", 1)
    assert derive_client_order_id("s" * 40, 1).split(":")[0] == "s" * 24


def test_a_valid_order_comes_back_as_exactly_the_canonical_order():
    order, errs = validate_order({**BASE, "quantity": "10.50", "time_in_force": "ioc", "tag": "t"})
    assert errs == []
    assert order == {"client_order_id": "c-1", "account": "desk-1", "symbol": "NIFTY-FUT", "side": "buy",
                     "quantity": "10.5", "order_type": "limit", "limit_price": "24000", "time_in_force": "ioc", "tag": "t"}  # fmt: skip


def test_garbage_that_only_ends_like_a_non_finite_number_is_not_called_one():
    assert errors(quantity="Xinf") == [("quantity", PLAIN, "decimal_parsing")]
    assert errors(quantity="+-nan") == [("quantity", "must be a finite number", "finite_number")]


def test_a_tick_symbol_is_checked_and_unknown_tick_keys_cut_to_64():
    assert tick_errors(symbol="NIFTY FUT") == [("symbol", "must match [A-Za-z0-9._:&/-]{1,64}", "string_pattern_mismatch")]
    assert tick_errors(**{"k" * 100: 1})[0][0] == "k" * 64


def test_derived_ids_are_stable_across_versions():
    # a message redelivered after an upgrade must get the same id, or it would execute again
    assert derive_client_order_id("rabbitmq", "wojak.orders", "m-1") == "rabbitmq:" + __import__("hashlib").blake2b(
        "rabbitmq\x1fwojak.orders\x1fm-1".encode(), digest_size=16).hexdigest()  # fmt: skip
    assert derive_client_order_id("RabbitMQ.Q_1", 1).startswith("RabbitMQ.Q_1:")
