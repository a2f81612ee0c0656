"""Each rule at its boundary: exactly at the limit passes, one tick past it breaches."""

from __future__ import annotations

from decimal import Decimal

import pytest

from wojak.engine.domain import Order, Position
from wojak.engine.protocol import validate_order
from wojak.engine.risk import Action, RiskConfig, RiskConfigError, RiskEngine, TradingState, default_risk_config
from wojak.engine.risk._config import _parse

CONFIG = {
    "limits": {"max_order_quantity": "100", "max_order_notional": "1000000", "max_position": "300",
               "price_band_percent": "5"},
    "instruments": {"FUT": {"price_decimals": 2}, "BIG": {"multiplier": "50", "limits": {"max_order_quantity": "10"}}},
    "accounts": {"reducer": {"trading_state": "REDUCING"}, "stopped": {"trading_state": "HALTED"}},
}  # fmt: skip


def engine(**overrides) -> RiskEngine:
    return RiskEngine(RiskConfig.model_validate({**CONFIG, **overrides}))


def order(**fields) -> Order:
    raw = {"client_order_id": "c1", "account": "a", "symbol": "FUT", "side": "buy", "quantity": "10",
           "order_type": "limit", "limit_price": "100", **fields}  # fmt: skip
    if raw["order_type"] == "market":
        raw.pop("limit_price", None)
    wire, errors = validate_order(raw)
    assert not errors, errors
    return Order.from_wire(wire)


def codes(decision):
    return [b.code for b in decision.breaches]


LAST = Decimal(100)


def test_a_plain_order_passes():
    assert engine().check(order(), Position("a", "FUT"), LAST).action is None


def test_max_order_quantity_boundary():
    assert engine().check(order(quantity="100"), Position("a", "FUT"), LAST).action is None
    d = engine().check(order(quantity="101"), Position("a", "FUT"), LAST)
    assert d.action is Action.DENY and codes(d) == ["max_order_quantity_exceeded"]


def test_instrument_limits_override_defaults():
    assert engine().check(order(symbol="BIG", quantity="10"), Position("a", "BIG"), LAST).action is None
    assert codes(engine().check(order(symbol="BIG", quantity="11"), Position("a", "BIG"), LAST)) == ["max_order_quantity_exceeded"]


def test_max_order_notional_boundary_uses_multiplier():
    e = engine(limits={**CONFIG["limits"], "max_order_notional": "50000"})
    assert e.check(order(symbol="BIG", quantity="10", limit_price="100"), Position("a", "BIG"), LAST).action is None
    d = e.check(order(symbol="BIG", quantity="10", limit_price="100.01"), Position("a", "BIG"), LAST)
    assert d.action is Action.ESCALATE and codes(d) == ["max_order_notional_exceeded"]


def test_market_order_without_a_tick_fails_closed():
    d = engine().check(order(order_type="market"), Position("a", "FUT"), None)
    assert d.action is Action.ESCALATE and "no_reference_price" in codes(d)


def test_max_position_boundary_counts_reservations():
    e = engine()
    assert e.check(order(quantity="100"), Position("a", "FUT", quantity=Decimal(200)), LAST).action is None
    d = e.check(order(quantity="100"), Position("a", "FUT", quantity=Decimal(200), pending_buy=Decimal("0.01")), LAST)
    assert d.action is Action.ESCALATE and codes(d) == ["max_position_exceeded"]
    short = Position("a", "FUT", quantity=Decimal(-250), pending_sell=Decimal(50))
    assert codes(e.check(order(side="sell", quantity="1"), short, LAST)) == ["max_position_exceeded"]


def test_price_band_boundary():
    e = engine()
    assert e.check(order(limit_price="105"), Position("a", "FUT"), LAST).action is None
    assert e.check(order(limit_price="95"), Position("a", "FUT"), LAST).action is None
    assert codes(e.check(order(limit_price="105.01"), Position("a", "FUT"), LAST)) == ["price_band_exceeded"]
    assert codes(e.check(order(limit_price="94.99"), Position("a", "FUT"), LAST)) == ["price_band_exceeded"]
    assert codes(e.check(order(), Position("a", "FUT"), None)) == ["no_reference_price"]


def test_unknown_symbol_is_denied():
    d = engine().check(order(symbol="NOPE"), Position("a", "NOPE"), LAST)
    assert d.action is Action.DENY and "unknown_symbol" in codes(d)


def test_halted_denies_everything():
    d = engine(trading_state="HALTED").check(order(), Position("a", "FUT", quantity=Decimal(-10)), LAST)
    assert d.action is Action.DENY and codes(d) == ["trading_halted"]
    assert codes(engine().check(order(account="stopped"), Position("stopped", "FUT"), LAST)) == ["trading_halted"]


def test_reducing_passes_only_orders_that_shrink_the_position():
    e = engine()
    long = Position("reducer", "FUT", quantity=Decimal(20))
    assert e.check(order(account="reducer", side="sell", quantity="20"), long, LAST).action is None
    assert codes(e.check(order(account="reducer", side="sell", quantity="21"), long, LAST)) == ["reducing_only"]
    assert codes(e.check(order(account="reducer", side="buy", quantity="1"), long, LAST)) == ["reducing_only"]
    flat = Position("reducer", "FUT")
    assert codes(e.check(order(account="reducer", side="sell", quantity="1"), flat, LAST)) == ["reducing_only"]


def test_global_state_wins_over_a_more_permissive_account_state():
    e = engine(trading_state="REDUCING")
    assert e.trading_state("anyone") is TradingState.REDUCING
    assert e.trading_state("stopped") is TradingState.HALTED


def test_deny_beats_escalate_and_all_breaches_are_reported():
    d = engine().check(order(quantity="101", limit_price="200"), Position("a", "FUT", quantity=Decimal(250)), LAST)
    assert d.action is Action.DENY
    assert set(codes(d)) == {"max_order_quantity_exceeded", "max_position_exceeded", "price_band_exceeded"}


def test_rule_actions_are_configurable():
    e = engine(rules={"max_order_quantity": "escalate"})
    assert e.check(order(quantity="101"), Position("a", "FUT"), LAST).action is Action.ESCALATE


def test_precision_is_per_instrument():
    e = engine()
    assert list(e.precision_errors(order(limit_price="100.12"))) == []
    assert [f for f, *_ in e.precision_errors(order(limit_price="100.125"))] == ["limit_price"]
    assert [f for f, *_ in e.precision_errors(order(quantity="1.5"))] == ["quantity"]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("limits: {max_order_quantity: 1.5}", "floats lose precision"),
        ("limits: {max_order_quantity: '-1'}", "greater than 0"),
        ("trading_state: PAUSED", "trading_state"),
        ("rules: {price_band: ignore}", "rules.price_band"),
        ("instrumentz: {}", "instrumentz"),
        ("[unclosed", "not valid YAML"),
    ],
)
def test_bad_config_names_the_setting(text, fragment):
    with pytest.raises(RiskConfigError, match=fragment):
        _parse(text, "risk.yaml")


def test_the_embedded_default_config_loads():
    config = default_risk_config()
    assert "NIFTY-FUT" in config.instruments and config.trading_state is TradingState.ACTIVE
