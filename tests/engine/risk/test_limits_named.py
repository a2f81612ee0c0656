"""A risk file names every limit: a value, or an explicit, reasoned unlimited. Fail closed."""

from __future__ import annotations

from decimal import Decimal

import pytest
import yaml

from tests.engine.risk.test_checks import order
from wojak.engine.domain import Position
from wojak.engine.risk import Action, RiskConfigError, RiskEngine, default_risk_config, demo_risk_config_path, load_risk_config
from wojak.engine.risk._config import LIMIT_NAMES, _parse

UNLIMITED = {"value": None, "reason": "test"}


def text(limits: dict, **more) -> str:
    return yaml.safe_dump({"limits": limits, "instruments": {"FUT": {"price_decimals": 2}}, **more})


def every(**values) -> dict:
    """Every limit unlimited (with a reason), except the ones given."""
    return {name: values.get(name, UNLIMITED) for name in LIMIT_NAMES}


def test_every_limit_named_loads_and_remembers_the_reasons():
    config = _parse(text(every(max_order_quantity="10", max_tick_jump_percent="10", tick_jump_seconds="60")), "risk.yaml")
    assert config.limits.max_order_quantity == Decimal(10)
    assert (config.limits.max_tick_jump_percent, config.limits.tick_jump_seconds) == (Decimal(10), Decimal(60))
    assert config.limits.max_daily_loss is None
    assert config.unlimited["max_daily_loss"] == "test" and "max_order_quantity" not in config.unlimited


@pytest.mark.parametrize("name", LIMIT_NAMES)
def test_a_missing_limit_is_refused_by_name(name):
    limits = every()
    del limits[name]
    with pytest.raises(RiskConfigError, match=rf"risk\.yaml: limits: missing {name}\b"):
        _parse(text(limits), "risk.yaml")


@pytest.mark.parametrize("name", ["max_daily_loss", "stale_tick_seconds", "max_tick_jump_percent"])
def test_a_bare_null_is_refused_by_name(name):
    with pytest.raises(RiskConfigError, match=rf"limits: {name}: a bare null is not a limit"):
        _parse(text({**every(), name: None}), "risk.yaml")


@pytest.mark.parametrize(
    "value, fragment",
    [
        ({"value": None}, "needs a reason"),
        ({"value": None, "reason": "  "}, "needs a reason"),
        ({"value": None, "reason": "x", "until": "later"}, "write a value"),
        ({"reason": "x"}, "write a value"),
    ],
)
def test_an_unlimited_needs_a_reason(value, fragment):
    with pytest.raises(RiskConfigError, match=f"limits.max_daily_loss: .*{fragment}"):
        _parse(text({**every(), "max_daily_loss": value}), "risk.yaml")


def test_no_limits_section_names_every_limit():
    with pytest.raises(RiskConfigError) as err:
        _parse("instruments: {FUT: {}}", "risk.yaml")
    for name in LIMIT_NAMES:
        assert name in str(err.value)


def test_a_value_in_the_long_form_is_that_value():
    config = _parse(text({**every(), "max_position": {"value": "50", "reason": "desk policy"}}), "risk.yaml")
    assert config.limits.max_position == Decimal(50) and "max_position" not in config.unlimited


def test_account_and_instrument_limits_stay_partial_overrides():
    config = _parse(text(every(max_order_quantity="10"), accounts={"small": {"limits": {"max_daily_loss": "100"}}},
                         instruments={"FUT": {"limits": {"max_position": "5"}}}), "risk.yaml")  # fmt: skip
    assert config.accounts["small"].limits.max_daily_loss == Decimal(100)
    assert config.instruments["FUT"].limits.max_position == Decimal(5)
    with pytest.raises(RiskConfigError, match="accounts.small.limits.max_daily_loss: an override is a plain value"):
        _parse(text(every(), accounts={"small": {"limits": {"max_daily_loss": UNLIMITED}}}), "risk.yaml")


def test_tick_jump_limits_go_together_and_belong_to_instruments():
    with pytest.raises(RiskConfigError, match="max_tick_jump_percent and tick_jump_seconds go together"):
        _parse(text(every(max_tick_jump_percent="10")), "risk.yaml")
    # an instrument override completing the pair is fine; one breaking it is not
    _parse(text(every(), instruments={"FUT": {"limits": {"max_tick_jump_percent": "5", "tick_jump_seconds": "1"}}}), "r")
    with pytest.raises(RiskConfigError, match="instruments.FUT.limits: max_tick_jump_percent and tick_jump_seconds"):
        _parse(text(every(), instruments={"FUT": {"limits": {"max_tick_jump_percent": "5"}}}), "risk.yaml")
    with pytest.raises(RiskConfigError, match="accounts.a.limits: tick_jump_seconds: ticks are per instrument"):
        _parse(text(every(max_tick_jump_percent="10", tick_jump_seconds="60"),
                    accounts={"a": {"limits": {"tick_jump_seconds": "5"}}}), "risk.yaml")  # fmt: skip
    for bad, fragment in ((1.5, "floats lose precision"), ("0", "greater than 0")):
        with pytest.raises(RiskConfigError, match=f"limits.max_tick_jump_percent: .*{fragment}"):
            _parse(text(every(tick_jump_seconds="60", max_tick_jump_percent=bad)), "risk.yaml")


def test_the_demo_file_names_every_limit_with_a_value(caplog):
    path = demo_risk_config_path()
    raw = yaml.safe_load(open(path))["limits"]
    assert set(raw) == set(LIMIT_NAMES)
    config = load_risk_config(path)
    assert config.unlimited == {}
    assert all(getattr(config.limits, name) is not None for name in LIMIT_NAMES)
    assert config.limits.stale_tick_seconds == Decimal(5)
    assert config == default_risk_config()


def test_the_demo_file_enforces_stale_ticks_of_5_seconds_and_passes_the_readme_first_order():
    engine, now = RiskEngine(load_risk_config(demo_risk_config_path())), 1_000_000.0
    last = {"NIFTY-FUT": Decimal("24000.5")}
    readme = order(symbol="NIFTY-FUT", quantity="50", limit_price="24001", account="desk-1")
    assert engine.check(readme, Position("desk-1", "NIFTY-FUT"), last, {"NIFTY-FUT": now - 4.9}, now).action is None
    market = order(symbol="NIFTY-FUT", quantity="50", order_type="market", account="desk-1")
    assert engine.check(market, Position("desk-1", "NIFTY-FUT"), last, {"NIFTY-FUT": now - 4.9}, now).action is None
    stale = engine.check(market, Position("desk-1", "NIFTY-FUT"), last, {"NIFTY-FUT": now - 5.1}, now)
    assert stale.action is Action.DENY and [b.code for b in stale.breaches] == ["stale_tick"]
