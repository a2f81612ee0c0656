"""Order and tick validation: every bad input is named by field; nothing bad gets through."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wojak.engine.protocol import ORDER_FIELDS, derive_client_order_id, validate_order, validate_tick

GOOD = {
    "client_order_id": "c-1",
    "account": "desk-1",
    "symbol": "NIFTY-FUT",
    "side": "buy",
    "quantity": "50",
    "order_type": "limit",
    "limit_price": "24000.5",
}


def fields(errors):
    return {e.field: e.code for e in errors}


def test_a_good_order_is_canonicalised():
    order, errors = validate_order({**GOOD, "quantity": "50.000", "limit_price": "24000.50"})
    assert errors == []
    assert order["quantity"] == "50" and order["limit_price"] == "24000.5"
    assert order["time_in_force"] == "day" and order["tag"] is None


@pytest.mark.parametrize(
    "field, value, code",
    [
        ("quantity", "NaN", "finite_number"),
        ("quantity", "nan", "finite_number"),
        ("quantity", "Infinity", "finite_number"),
        ("quantity", "-inf", "finite_number"),
        ("quantity", float("nan"), "finite_number"),
        ("quantity", float("inf"), "finite_number"),
        ("quantity", "-5", "greater_than"),
        ("quantity", "050", "decimal_parsing"),  # the published pattern has no leading zeros
        ("quantity", "+5", "decimal_parsing"),
        ("quantity", "\u0665\u0660", "decimal_parsing"),  # Arabic-Indic digits
        ("quantity", "\uff15\uff10", "decimal_parsing"),  # full-width digits
        ("limit_price", "00.5", "decimal_parsing"),
        ("quantity", "0", "greater_than"),
        ("quantity", "0.000", "greater_than"),
        ("quantity", -5, "greater_than"),
        ("quantity", 0, "greater_than"),
        ("quantity", 1.5, "float_not_allowed"),
        ("limit_price", 24000.5, "float_not_allowed"),
        ("quantity", "1.123456789", "decimal_max_places"),
        ("quantity", "1e3", "decimal_parsing"),
        ("quantity", "1_000", "decimal_parsing"),
        ("quantity", " 10", "decimal_parsing"),
        ("quantity", "9" * 13, "too_large"),
        ("quantity", 10**30, "too_large"),
        ("limit_price", "9" * 400, "decimal_parsing"),
        ("quantity", True, "decimal_type"),
        ("quantity", ["1"], "decimal_type"),
        ("quantity", {"v": 1}, "decimal_type"),
        ("side", "BUY", "enum"),
        ("side", 1, "enum"),
        ("order_type", "stop", "enum"),
        ("time_in_force", "fok", "enum"),
        ("client_order_id", "has space", "string_pattern_mismatch"),
        ("client_order_id", "x" * 65, "string_pattern_mismatch"),
        ("client_order_id", 123, "string_type"),
        ("account", "", "string_pattern_mismatch"),
        ("symbol", "NIFTY FUT", "string_pattern_mismatch"),
        ("tag", 5, "string_type"),
        ("tag", "x" * 129, "string_too_long"),
    ],
)
def test_each_bad_value_is_named(field, value, code):
    order, errors = validate_order({**GOOD, field: value})
    assert order is None
    assert fields(errors) == {field: code}


@pytest.mark.parametrize("missing", ["client_order_id", "account", "symbol", "side", "quantity", "order_type"])
def test_missing_fields_are_named(missing):
    body = {k: v for k, v in GOOD.items() if k != missing}
    order, errors = validate_order(body)
    assert order is None and fields(errors)[missing] == "missing"


def test_unknown_fields_are_refused():
    order, errors = validate_order({**GOOD, "price": "1", "leverage": 10})
    assert order is None and fields(errors) == {"price": "extra_forbidden", "leverage": "extra_forbidden"}


def test_limit_needs_a_price_and_market_refuses_one():
    assert fields(validate_order({k: v for k, v in GOOD.items() if k != "limit_price"})[1]) == {"limit_price": "missing"}
    assert fields(validate_order({**GOOD, "order_type": "market"})[1]) == {"limit_price": "extra_forbidden"}


@pytest.mark.parametrize("body", [None, [], "x", 1, [GOOD]])
def test_a_body_that_is_not_an_object(body):
    order, errors = validate_order(body)
    assert order is None and fields(errors) == {"body": "model_type"}


def test_several_errors_are_all_reported():
    order, errors = validate_order({"quantity": 1.5, "side": "up"})
    assert order is None
    assert {"client_order_id", "account", "symbol", "order_type", "quantity", "side"} <= set(fields(errors))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=10,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from([*ORDER_FIELDS, "x"]), json_values))
def test_validation_never_raises_and_accepts_only_sound_orders(raw):
    order, errors = validate_order(raw)
    assert (order is None) == bool(errors)
    if order is not None:
        q = Decimal(order["quantity"])
        assert q.is_finite() and q > 0
        assert not isinstance(raw["quantity"], float)
        if order["limit_price"] is not None:
            assert Decimal(order["limit_price"]) > 0


decimal_text = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("999999999999"), places=8, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(decimal_text, decimal_text)
def test_canonical_decimals_keep_their_value(quantity, price):
    order, errors = validate_order({**GOOD, "quantity": f"{quantity:f}", "limit_price": f"{price:f}"})
    assert errors == []
    assert Decimal(order["quantity"]) == quantity and Decimal(order["limit_price"]) == price
    again, _ = validate_order({**GOOD, "quantity": order["quantity"], "limit_price": order["limit_price"]})
    assert again == order  # canonical form is a fixed point


def test_ticks():
    tick, errors = validate_tick({"symbol": "X", "bid": "1", "ask": "2", "last": "1.5"})
    assert errors == [] and tick["last"] == "1.5"
    assert fields(validate_tick({"symbol": "X", "bid": "3", "ask": "2", "last": "2"})[1]) == {"bid": "crossed_quote"}
    assert fields(validate_tick({"symbol": "X", "bid": 1.0, "ask": "2", "last": "2"})[1]) == {"bid": "float_not_allowed"}
    assert fields(validate_tick({"symbol": "X", "ask": "2", "last": "2", "extra": 1})[1]) == {"bid": "missing", "extra": "extra_forbidden"}


@given(st.text(max_size=40), st.lists(st.one_of(st.text(max_size=20), st.integers()), max_size=4))
def test_derived_ids_are_valid_deterministic_and_distinct(source, coordinates):
    coid = derive_client_order_id(source, *coordinates)
    assert coid == derive_client_order_id(source, *coordinates)
    assert validate_order({**GOOD, "client_order_id": coid})[1] == []
    assert coid != derive_client_order_id(source, *coordinates, "other")
