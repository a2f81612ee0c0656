"""RiskEngine details the boundary tests do not reach: reference data lookups, trading-state
ranks, shadow counting and logging, decisions that carry shadow breaches and a halt, the
fast path's worst cases with reservations, start-of-day marks with a multiplier, one-lot
exposure, positions without a tick, and market orders without tick times."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest

from tests.engine.risk.test_checks import order
from wojak.engine.domain import Position
from wojak.engine.risk import AccountView, Action, RiskConfig, RiskEngine, TradingState

D = Decimal
NOW = 1_714_550_400.0
DAY = "2024-05-01"
INSTRUMENTS = {"FUT": {"price_decimals": 2}, "OPT": {"multiplier": "10", "price_decimals": 2, "currency_decimals": 0}}


def engine(limits=None, rules=None, **more) -> RiskEngine:
    return RiskEngine(RiskConfig.model_validate({"limits": limits or {}, "rules": rules or {}, "instruments": INSTRUMENTS,
                                                 **more}))  # fmt: skip


def view(*positions: Position, **fields) -> AccountView:
    return AccountView("a", {p.symbol: p for p in positions}, **{"day": DAY, **fields})


def both(e: RiskEngine, o, v_factory, prices, tick_at=None):
    """The decision through check and through the rules alone (they must agree)."""
    d = e.check(o, v_factory(), prices, tick_at, NOW)
    slow = e._check_rules(o, v_factory(), prices, tick_at, NOW)
    assert (d.action, d.breaches) == (slow.action, slow.breaches)
    return d


def test_reference_data_lookups():
    e = engine(limits={"max_tick_jump_percent": "10", "tick_jump_seconds": "60"},
               instruments={**INSTRUMENTS, "JMP": {"limits": {"max_tick_jump_percent": "2", "tick_jump_seconds": "5"}}})
    assert e.multiplier("OPT") == 10 and e.multiplier("FUT") == 1 and e.multiplier("NOPE") == 1
    assert e.pnl_quantum("FUT") == D("0.01") and e.pnl_quantum("OPT") == D(1) and e.pnl_quantum("NOPE") is None
    assert e.tick_limits("FUT") == (D(10), D(60))
    assert e.tick_limits("JMP") == (D(2), D(5))
    assert e.tick_limits("NOPE") == (D(10), D(60))  # an unknown symbol: the defaults
    assert engine().tick_limits("FUT") == (None, None)


def test_homes():
    e = engine(home_cluster="eu", accounts={"a": {"home": "us"}, "b": {}})
    assert (e.home("a"), e.home("b"), e.home("zz")) == ("us", "eu", "eu")
    assert engine().home("a") is None


@pytest.mark.parametrize("glob, account, stored, expected", [
    ("ACTIVE", None, None, "ACTIVE"), ("REDUCING", None, None, "REDUCING"), ("ACTIVE", "HALTED", None, "HALTED"),
    ("HALTED", "REDUCING", None, "HALTED"), ("REDUCING", "ACTIVE", None, "REDUCING"),
    ("ACTIVE", None, "REDUCING", "REDUCING"), ("HALTED", None, "ACTIVE", "HALTED"),  # a stored state only tightens
    ("ACTIVE", None, "BOGUS", "HALTED"),  # an unknown stored state fails closed
])  # fmt: skip
def test_the_strictest_trading_state_wins(glob, account, stored, expected):
    accounts = {"a": {"trading_state": account}} if account else {}
    assert engine(trading_state=glob, accounts=accounts).trading_state("a", stored) is TradingState(expected)


def test_shadow_breaches_are_counted_and_logged_and_do_not_stop_later_rules(caplog):
    e = engine({"max_order_quantity": "10", "price_band_percent": "5"},
               {"max_order_quantity": "shadow_escalate", "price_band": "deny"})
    assert e.shadow_breaches == 0
    with caplog.at_level(logging.WARNING, logger="wojak.engine.risk._checks"):
        d = e.check(order(client_order_id="sh-1", quantity="25", limit_price="200"), view(), {"FUT": D(100)}, None, NOW)
    # the shadow breach comes first in rule order: the deny after it still counts
    assert d.action is Action.DENY and [b.code for b in d.breaches] == ["price_band_exceeded"]
    assert [(a, b.code) for a, b in d.shadow] == [(Action.SHADOW_ESCALATE, "max_order_quantity_exceeded")]
    assert e.shadow_breaches == 1
    assert caplog.messages == ["risk shadow: would escalate sh-1 (max_order_quantity_exceeded: quantity 25 > 10) "
                               "[rule max_order_quantity]"]  # fmt: skip
    e.check(order(quantity="25"), view(), {"FUT": D(100)}, None, NOW)
    assert e.shadow_breaches == 2


def test_an_escalation_carries_shadow_breaches_and_the_halt():
    e = engine({"max_daily_loss": "100", "max_order_quantity": "10"},
               {"max_daily_loss": "escalate", "max_order_quantity": "shadow_deny"})
    long = Position("a", "FUT", quantity=D(10), average_price=D(100))
    d = e.check(order(quantity="25", limit_price="50"), view(long), {"FUT": D(50)}, None, NOW)
    assert d.action is Action.ESCALATE and [b.code for b in d.breaches] == ["max_daily_loss_exceeded"]
    assert d.halt == "loss today 500 > 100"
    assert [b.code for _, b in d.shadow] == ["max_order_quantity_exceeded"]
    denied = engine({"max_order_quantity": "10", "price_band_percent": "1"}, {"price_band": "shadow_deny"})
    d = denied.check(order(quantity="25", limit_price="200"), view(), {"FUT": D(100)}, None, NOW)
    assert d.action is Action.DENY and [b.code for _, b in d.shadow] == ["price_band_exceeded"] and d.halt is None


@pytest.mark.parametrize("held, pending, side, quantity, breach", [
    (-100, {"pending_sell": 20}, "buy", "10", True),    # worst is the short side, with its reservation
    (100, {"pending_buy": 20}, "sell", "10", True),     # worst is the long side, with its reservation
    (-100, {"pending_sell": 0}, "buy", "10", False),
])  # fmt: skip
def test_the_worst_case_counts_reservations_on_the_other_side(held, pending, side, quantity, breach):
    e = engine({"max_position": "110"}, {"max_position": "deny"})
    d = both(e, order(side=side, quantity=quantity), lambda: view(Position("a", "FUT", quantity=D(held), **{k: D(v) for k, v in pending.items()})),
             {"FUT": D(100)})  # fmt: skip
    assert (d.action is Action.DENY) is breach


def test_a_reducing_account_edge_cases():
    e = engine()
    for held, pending, side, quantity, passes in [(1, {}, "sell", "1", True), (-50, {"pending_buy": 50}, "buy", "1", False),
                                                  (-50, {"pending_buy": 49}, "buy", "1", True)]:  # fmt: skip
        p = Position("a", "FUT", quantity=D(held), **{k: D(v) for k, v in pending.items()})
        d = e.check(order(side=side, quantity=quantity), AccountView("a", {"FUT": p}, day=DAY, state="REDUCING"),
                    {"FUT": D(100)}, None, NOW)  # fmt: skip
        assert (d.action is None) is passes, (held, pending, side, quantity)


def test_start_of_day_marks_count_the_multiplier():
    e = engine({"max_daily_loss": "1"}, {"max_daily_loss": "deny"}, halt_on_daily_loss=False)
    # 5 OPT bought at 100 before today, 90 at the start of the day and now: nothing lost *today*
    held = lambda: view(Position("a", "OPT", quantity=D(5), average_price=D(100)), sod_prices={"OPT": D(90)})  # noqa: E731
    assert both(e, order(symbol="OPT", quantity="1", limit_price="90"), held, {"OPT": D(90)}).action is None
    # bought today at 100 (the snapshot of the day held nothing): 500 lost today
    snap = lambda: view(Position("a", "OPT", quantity=D(5), average_price=D(100), sod_day=DAY), sod_prices={"OPT": D(90)})  # noqa: E731
    d = both(e, order(symbol="OPT", quantity="1", limit_price="90"), snap, {"OPT": D(90)})
    assert d.action is Action.DENY and d.breaches[0].detail == "loss today 500 > 1"


def test_a_limit_just_above_the_last_tick_counts_as_loss():
    e = engine({"max_daily_loss": "5"}, {"max_daily_loss": "deny"})
    assert both(e, order(quantity="10", limit_price="100.5"), view, {"FUT": D(100)}).action is None
    assert both(e, order(quantity="10", limit_price="100.51"), view, {"FUT": D(100)}).action is Action.DENY


def test_gross_exposure_of_a_one_lot_order_and_of_flat_and_untraded_symbols():
    e = engine({"max_gross_exposure": "99"}, {"max_gross_exposure": "deny"})
    assert both(e, order(quantity="1"), view, {"FUT": D(100)}).action is Action.DENY  # one lot at 100 > 99
    e = engine({"max_gross_exposure": "1000"}, {"max_gross_exposure": "deny"})
    # a flat position listed first does not end the sum; OPT has no tick: valued at its average price
    flat_first = lambda: AccountView("a", {"FUT": Position("a", "FUT"), "OPT": Position("a", "OPT", quantity=D(1), average_price=D(60))},  # noqa: E731
                                     day=DAY)  # fmt: skip
    assert both(e, order(quantity="4", limit_price="100"), flat_first, {"FUT": D(100)}).action is None  # 400 + 600
    assert both(e, order(quantity="5", limit_price="100"), flat_first, {"FUT": D(100)}).action is Action.DENY


def test_a_market_order_without_tick_times_is_stale():
    e = engine({"stale_tick_seconds": "5"})
    d = e.check(order(order_type="market"), view(), {"FUT": D(100)}, None, NOW)
    assert [b.code for b in d.breaches] == ["stale_tick"]


def test_a_position_passed_alone_is_a_one_symbol_account():
    e = engine({"max_position": "10"}, {"max_position": "deny"})
    assert e.check(order(quantity="5"), Position("a", "FUT", quantity=D(5)), D(100), None, NOW).action is None
    assert e.check(order(quantity="6"), Position("a", "FUT", quantity=D(5)), D(100), None, NOW).action is Action.DENY


def test_quantity_precision_is_an_invalid_naming_the_field():
    assert [(f, c) for f, _, c in engine().precision_errors(order(quantity="1.5"))] == [("quantity", "decimal_max_places")]
    assert list(engine().precision_errors(order(symbol="NOPE"))) == []


def test_a_small_price_gap_on_one_lot_counts_as_loss():
    e = engine({"max_daily_loss": "0.5"}, {"max_daily_loss": "deny"})
    assert both(e, order(quantity="1", limit_price="100.5"), view, {"FUT": D(100)}).action is None
    assert both(e, order(quantity="1", limit_price="100.51"), view, {"FUT": D(100)}).action is Action.DENY


def test_a_reducing_account_with_fractional_quantities():
    e = RiskEngine(RiskConfig.model_validate({"instruments": {"FRAC": {"quantity_decimals": 1}}}))
    p = lambda: AccountView("a", {"FRAC": Position("a", "FRAC", quantity=D(-5), pending_buy=D("4.6"))}, day=DAY,  # noqa: E731
                            state="REDUCING")  # fmt: skip
    assert e.check(order(symbol="FRAC", quantity="0.4"), p(), {"FRAC": D(100)}, None, NOW).action is None
    assert e.check(order(symbol="FRAC", quantity="0.5"), p(), {"FRAC": D(100)}, None, NOW).action is Action.DENY


def test_a_flat_position_of_another_symbol_does_not_end_the_exposure_sum():
    e = engine({"max_gross_exposure": "1000"}, {"max_gross_exposure": "deny"})
    flat_other = lambda: AccountView("a", {"OPT": Position("a", "OPT"), "FUT": Position("a", "FUT", quantity=D(6), average_price=D(100))},  # noqa: E731
                                     day=DAY)  # fmt: skip
    assert both(e, order(quantity="4"), flat_other, {"FUT": D(100)}).action is None  # 1000
    assert both(e, order(quantity="5"), flat_other, {"FUT": D(100)}).action is Action.DENY


def test_an_untraded_symbol_is_valued_at_its_own_average_on_the_fast_path_too():
    e = engine({"max_gross_exposure": "2000"}, {"max_gross_exposure": "deny"})
    held = lambda: AccountView("a", {"OPT": Position("a", "OPT", quantity=D(1), average_price=D(200))}, day=DAY)  # noqa: E731
    # 4 FUT at 100 + 1 OPT at its average 200 x 10 = 2400 > 2000 (valued at the order's price it would look like 1400)
    assert both(e, order(quantity="4", limit_price="100"), held, {"FUT": D(100)}).action is Action.DENY


def test_a_loss_since_the_start_of_the_day_counts_the_multiplier_on_the_fast_path_too():
    e = engine({"max_daily_loss": "100"}, {"max_daily_loss": "deny"}, halt_on_daily_loss=False)
    # 5 OPT bought at 100 before today, 110 when the day began, 100 now: 5 x 10 x 10 = 500 lost today
    held = lambda: view(Position("a", "OPT", quantity=D(5), average_price=D(100)), sod_prices={"OPT": D(110)})  # noqa: E731
    d = both(e, order(symbol="OPT", quantity="1", limit_price="100"), held, {"OPT": D(100)})
    assert d.action is Action.DENY and d.breaches[0].detail == "loss today 500 > 100"


def test_shadow_deny_is_logged_as_would_deny(caplog):
    e = engine({"max_order_quantity": "10"}, {"max_order_quantity": "shadow_deny"})
    with caplog.at_level(logging.WARNING, logger="wojak.engine.risk._checks"):
        e.check(order(client_order_id="sh-2", quantity="25"), view(), {"FUT": D(100)}, None, NOW)
    assert caplog.messages == ["risk shadow: would deny sh-2 (max_order_quantity_exceeded: quantity 25 > 10) [rule max_order_quantity]"]
