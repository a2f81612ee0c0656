"""The rules added with reference data and account-wide limits, each at its boundary:
exactly at the limit passes, one tick past it breaches."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from tests.engine.risk.test_checks import order
from wojak.engine.domain import Position
from wojak.engine.risk import AccountView, Action, RiskConfig, RiskConfigError, RiskEngine, load_risk_config
from wojak.engine.risk._config import LIMIT_NAMES, _parse

D = Decimal
NOW = 1_714_550_400.0  # 2024-05-01T08:00:00Z = 13:30 in Asia/Kolkata


def engine(limits=None, rules=None, instruments=None, **more) -> RiskEngine:
    return RiskEngine(RiskConfig.model_validate({
        "limits": limits or {},
        "rules": rules or {},
        "instruments": instruments or {"FUT": {"tick_size": "0.05", "lot_size": "25"}, "OPT": {"multiplier": "10"}},
        **more,
    }))  # fmt: skip


def view(*positions: Position, **fields) -> AccountView:
    return AccountView("a", {p.symbol: p for p in positions}, **fields)


def codes(d):
    return [b.code for b in d.breaches]


def test_lot_size_and_tick_grid_are_invalid_naming_the_field():
    e = engine()
    assert list(e.precision_errors(order(quantity="50", limit_price="100.05"))) == []
    assert [(f, c) for f, _, c in e.precision_errors(order(quantity="60"))] == [("quantity", "lot_size")]
    assert [(f, c) for f, _, c in e.precision_errors(order(quantity="50", limit_price="100.01"))] == [("limit_price", "tick_size")]
    assert [(f, c) for f, _, c in e.precision_errors(order(quantity="50", limit_price="100.001"))] == [
        ("limit_price", "decimal_max_places")
    ]


def test_gross_exposure_boundary_sums_every_symbol_with_reservations_and_multiplier():
    e = engine({"max_gross_exposure": "20000"})
    prices = {"FUT": D(100), "OPT": D(50)}
    held = view(Position("a", "FUT", quantity=D(-50), pending_sell=D(25)), Position("a", "OPT", quantity=D(10)))
    # |FUT| 75 x 100 = 7500, OPT 10 x 50 x 10 = 5000: 12500 used, 7500 left = 15 OPT (x500)
    assert e.check(order(symbol="OPT", quantity="15", limit_price="50"), held, prices).action is None
    d = e.check(order(symbol="OPT", quantity="15", limit_price="50"),
                view(Position("a", "FUT", quantity=D(-50), pending_sell=D("25.01")), Position("a", "OPT", quantity=D(10))),
                prices)  # fmt: skip
    assert d.action is Action.ESCALATE and codes(d) == ["max_gross_exposure_exceeded"]


def test_daily_loss_boundary_is_realised_plus_marked_to_the_last_tick_and_halts():
    e = engine({"max_daily_loss": "1000"})
    long = Position("a", "FUT", quantity=D(10), average_price=D(100))
    at50, at4999 = order(limit_price="50"), order(limit_price="49.99")
    assert e.check(at50, view(long, realised_today=D(-500)), {"FUT": D(50)}).action is None  # 500 + 500
    d = e.check(at4999, view(long, realised_today=D(-500)), {"FUT": D("49.99")})
    assert d.action is Action.DENY and codes(d) == ["max_daily_loss_exceeded"] and d.halt
    assert engine({"max_daily_loss": "1000"}, halt_on_daily_loss=False).check(
        at4999, view(long, realised_today=D(-500)), {"FUT": D("49.99")}).halt is None  # fmt: skip
    # buying above the last tick counts the loss it is marked at once filled: 900 + 10 x 10
    assert e.check(order(limit_price="60"), view(long, realised_today=D(-400)), {"FUT": D(50)}).action is None
    assert codes(e.check(order(limit_price="60.01"), view(long, realised_today=D(-400)), {"FUT": D(50)})) == [
        "max_daily_loss_exceeded"
    ]


def test_order_rate_boundary_per_second_and_per_minute():
    e = engine({"max_orders_per_second": 5, "max_orders_per_minute": 20})
    assert e.check(order(), view(orders_last_second=4, orders_last_minute=4), D(100)).action is None
    assert codes(e.check(order(), view(orders_last_second=5, orders_last_minute=5), D(100))) == ["order_rate_exceeded"]
    assert e.check(order(), view(orders_last_second=0, orders_last_minute=19), D(100)).action is None
    assert codes(e.check(order(), view(orders_last_second=0, orders_last_minute=20), D(100))) == ["order_rate_exceeded"]


def test_stale_tick_boundary_applies_to_market_orders_only():
    e = engine({"stale_tick_seconds": "2"})
    market = order(order_type="market")
    assert e.check(market, view(), D(100), {"FUT": NOW - 2}, NOW).action is None
    assert codes(e.check(market, view(), D(100), {"FUT": NOW - 2.001}, NOW)) == ["stale_tick"]
    assert codes(e.check(market, view(), D(100), {}, NOW)) == ["stale_tick"]
    assert e.check(order(), view(), D(100), {"FUT": NOW - 60}, NOW).action is None


def test_days_to_expiry_window_boundary_in_the_exchange_time_zone():
    ins = {"FUT": {"expiry": "2024-05-03"}}
    e = engine({"min_days_to_expiry": 2, "max_days_to_expiry": 30}, instruments=ins, exchange_timezone="Asia/Kolkata")
    assert e.check(order(), view(), D(100), now=NOW).action is None  # 2024-05-01 in Kolkata: 2 days left
    late = NOW + 11 * 3600  # 2024-05-01T19:00Z = 2024-05-02 00:30 in Kolkata: 1 day left
    assert codes(e.check(order(), view(), D(100), now=late)) == ["expiry_window"]
    far = engine({"max_days_to_expiry": 1}, instruments=ins)
    assert codes(far.check(order(), view(day="2024-05-01"), D(100))) == ["expiry_window"]
    assert far.check(order(), view(day="2024-05-02"), D(100)).action is None


def test_daily_counters_roll_over_at_exchange_midnight():
    e = engine(exchange_timezone="Asia/Kolkata")
    midnight = dt.datetime(2024, 5, 2, tzinfo=e.zone).timestamp()
    assert e.trading_day(midnight - 0.001) == "2024-05-01" and e.trading_day(midnight) == "2024-05-02"
    with pytest.raises(RiskConfigError, match="exchange_timezone"):
        _parse("exchange_timezone: Mars/Olympus", "risk.yaml")


def test_a_stored_state_overrides_the_config_and_halted_passes_nothing_new():
    e = engine()
    assert codes(e.check(order(), view(state="HALTED"), D(100))) == ["trading_halted"]
    short = Position("a", "FUT", quantity=D(-50))
    assert e.check(order(quantity="50"), view(short, state="REDUCING"), D(100)).action is None
    assert codes(e.check(order(quantity="75"), view(short, state="REDUCING"), D(100))) == ["reducing_only"]


@pytest.mark.parametrize("action, verb", [("shadow_deny", "would deny"), ("shadow_escalate", "would escalate")])
def test_shadow_rules_are_logged_not_enforced(caplog, action, verb):
    e = engine({"max_order_quantity": "10"}, rules={"max_order_quantity": action})
    d = e.check(order(quantity="25"), view(), D(100))
    assert d.action is None and [b.code for _, b in d.shadow] == ["max_order_quantity_exceeded"]
    assert verb in caplog.text


def test_reference_data_from_a_csv_file(tmp_path):
    (tmp_path / "instruments.csv").write_text(
        "symbol,expiry,lot_size,tick_size,price_decimals,multiplier\n"
        "NIFTY-FUT,2030-01-31,25,0.05,2,\n"
        "ES-FUT,,1,0.25,2,50\n"
    )
    (tmp_path / "risk.yaml").write_text(
        "instruments_file: instruments.csv\ninstruments:\n  ES-FUT: {limits: {max_position: '5'}}\n"
        + "limits:\n" + "".join(f"  {name}: {{value: null, reason: test}}\n" for name in LIMIT_NAMES)
    )
    config = load_risk_config(tmp_path / "risk.yaml")
    nifty, es = config.instruments["NIFTY-FUT"], config.instruments["ES-FUT"]
    assert (nifty.lot_size, nifty.tick_size, nifty.expiry) == (D(25), D("0.05"), dt.date(2030, 1, 31))
    assert (es.multiplier, es.tick_size, es.limits.max_position) == (D(50), D("0.25"), D(5))
    (tmp_path / "instruments.csv").write_text("symbol,lot_size\nX,1.5\n")
    with pytest.raises(RiskConfigError, match="lot_size"):
        load_risk_config(tmp_path / "risk.yaml")
