"""Each risk rule at its boundary, on every path that decides it.

``RiskEngine.check`` answers most orders on its fast path (``_passes``) and sends the rest
to the rule functions (``_check_rules``). A boundary test through ``check`` alone can pass
at exactly the limit on the fast path and never reach the rule, so each boundary here is
checked four ways:

* ``rule``: the rule function itself, with the context ``_check_rules`` builds;
* ``rules``: ``RiskEngine._check_rules`` (the slow path, fast path bypassed);
* ``fast``: ``RiskEngine._passes`` alone (a Decision at the limit, None one step past it);
* ``check``: the public ``check`` (fast path on).

Exactly at the limit passes; one step past it (one unit of quantity, one tick of price,
one order, a millisecond, a day) breaches with the rule's code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable

import pytest

from tests.engine.risk.test_checks import order
from wojak.engine.domain import Order, Position
from wojak.engine.risk import AccountView, Action, RiskConfig, RiskEngine
from wojak.engine.risk._checks import RULES, _Context

D = Decimal
NOW = 1_714_550_400.0  # 2024-05-01T08:00:00Z
DAY = "2024-05-01"
RULE = dict(RULES)
ALL_DENY = {name: "deny" for name, _ in RULES}
INSTRUMENTS = {"FUT": {"price_decimals": 2}, "OPT": {"multiplier": "10", "price_decimals": 2},
               "EXP": {"expiry": "2024-05-31", "price_decimals": 2}}  # fmt: skip


@dataclass
class Side:
    """One side of a boundary: the order and what the engine knows when it arrives."""

    order: dict[str, Any]
    positions: tuple[Callable[[], Position], ...] = ()  # made anew for each decision
    prices: dict[str, Decimal] = field(default_factory=lambda: {"FUT": D(100), "OPT": D(100), "EXP": D(100)})
    tick_at: dict[str, float] | None = None
    view: dict[str, Any] = field(default_factory=dict)

    def build(self) -> tuple[Order, AccountView]:
        fields = {"day": DAY, **self.view}
        positions = [make() for make in self.positions]
        return order(**self.order), AccountView("a", {p.symbol: p for p in positions}, **fields)


@dataclass
class Case:
    rule: str
    code: str
    limits: dict[str, Any]
    at: Side
    over: Side
    fast: bool = True  # the fast path passes the "at" side (not for a REDUCING account: it never does)
    config: dict[str, Any] = field(default_factory=dict)


def pos(symbol="FUT", **kw) -> Callable[[], Position]:
    return lambda: Position("a", symbol, **{k: D(v) for k, v in kw.items()})


CASES = [
    Case("max_order_quantity", "max_order_quantity_exceeded", {"max_order_quantity": "100"},
         Side({"quantity": "100"}), Side({"quantity": "101"})),
    Case("max_order_notional", "max_order_notional_exceeded", {"max_order_notional": "10000"},
         Side({"quantity": "100", "limit_price": "100"}), Side({"quantity": "100", "limit_price": "100.01"})),
    Case("max_order_notional", "max_order_notional_exceeded", {"max_order_notional": "10000"},  # times the multiplier
         Side({"symbol": "OPT", "quantity": "10", "limit_price": "100"}),
         Side({"symbol": "OPT", "quantity": "10", "limit_price": "100.01"})),
    Case("max_order_notional", "max_order_notional_exceeded", {"max_order_notional": "10000"},  # market: the last price
         Side({"quantity": "100", "order_type": "market"}),
         Side({"quantity": "100", "order_type": "market"}, prices={"FUT": D("100.01")})),
    Case("max_position", "max_position_exceeded", {"max_position": "300"},
         Side({"quantity": "50"}, (pos(quantity=200, pending_buy=50),)),
         Side({"quantity": "51"}, (pos(quantity=200, pending_buy=50),))),
    Case("max_position", "max_position_exceeded", {"max_position": "300"},  # short side
         Side({"side": "sell", "quantity": "50"}, (pos(quantity=-200, pending_sell=50),)),
         Side({"side": "sell", "quantity": "51"}, (pos(quantity=-200, pending_sell=50),))),
    Case("price_band", "price_band_exceeded", {"price_band_percent": "5"},
         Side({"limit_price": "105"}), Side({"limit_price": "105.01"})),
    Case("price_band", "price_band_exceeded", {"price_band_percent": "5"},  # below the last price
         Side({"side": "sell", "limit_price": "95"}), Side({"side": "sell", "limit_price": "94.99"})),
    Case("max_gross_exposure", "max_gross_exposure_exceeded", {"max_gross_exposure": "10000"},
         Side({"quantity": "50"}, (pos("OPT", quantity=5),)), Side({"quantity": "51"}, (pos("OPT", quantity=5),))),
    Case("max_gross_exposure", "max_gross_exposure_exceeded", {"max_gross_exposure": "10000"},  # short, reserved
         Side({"side": "sell", "quantity": "40"}, (pos(quantity=-50, pending_sell=10),)),
         Side({"side": "sell", "quantity": "41"}, (pos(quantity=-50, pending_sell=10),))),
    Case("max_daily_loss", "max_daily_loss_exceeded", {"max_daily_loss": "1000"},
         Side({"limit_price": "50"}, (pos(quantity=10, average_price=100),), {"FUT": D(50)}, view={"realised_today": D(-500)}),
         Side({"limit_price": "49.99"}, (pos(quantity=10, average_price=100),), {"FUT": D("49.99")},
              view={"realised_today": D(-500)})),
    Case("max_daily_loss", "max_daily_loss_exceeded", {"max_daily_loss": "1000"},  # a buy above the last tick
         Side({"quantity": "10", "limit_price": "200"}, prices={"FUT": D(100)}),
         Side({"quantity": "10", "limit_price": "200.01"}, prices={"FUT": D(100)})),
    Case("order_rate", "order_rate_exceeded", {"max_orders_per_second": 5},
         Side({}, view={"orders_last_second": 4}), Side({}, view={"orders_last_second": 5})),
    Case("order_rate", "order_rate_exceeded", {"max_orders_per_minute": 20},
         Side({}, view={"orders_last_minute": 19}), Side({}, view={"orders_last_minute": 20})),
    Case("stale_tick", "stale_tick", {"stale_tick_seconds": "2"},
         Side({"order_type": "market"}, tick_at={"FUT": NOW - 2}), Side({"order_type": "market"}, tick_at={"FUT": NOW - 2.001})),
    Case("expiry_window", "expiry_window", {"min_days_to_expiry": 2},  # 2024-05-31
         Side({"symbol": "EXP"}, view={"day": "2024-05-29"}), Side({"symbol": "EXP"}, view={"day": "2024-05-30"})),
    Case("expiry_window", "expiry_window", {"max_days_to_expiry": 30},
         Side({"symbol": "EXP"}, view={"day": "2024-05-01"}), Side({"symbol": "EXP"}, view={"day": "2024-04-30"})),
    Case("trading_state", "reducing_only", {},
         Side({"quantity": "40"}, (pos(quantity=-50, pending_buy=10),), view={"state": "REDUCING"}),
         Side({"quantity": "41"}, (pos(quantity=-50, pending_buy=10),), view={"state": "REDUCING"}), fast=False),
    Case("allowed_instruments", "unknown_symbol", {},
         Side({"symbol": "FUT"}), Side({"symbol": "NOPE"})),
]
IDS = [f"{c.rule}-{i}" for i, c in enumerate(CASES)]
# what the breach says, case by case (it reaches logs, escalations and the order's reason detail)
DETAILS = ['quantity 101 > 100', 'notional 10001.00 > 10000', 'notional 10001.00 > 10000', 'notional 10001.00 > 10000', 'position could reach 301 > 300', 'position could reach 301 > 300', 'limit 105.01 is over 5% from last 100', 'limit 94.99 is over 5% from last 100', 'gross exposure could reach 10100 > 10000', 'gross exposure could reach 10100 > 10000', 'loss today 1000.10 > 1000', 'loss today 1000.10 > 1000', 'more than 5 orders in a second', 'more than 20 orders in a minute', 'last tick for FUT is 2.001s old > 2s', 'EXP expires in 1 day(s) < 2', 'EXP expires in 31 day(s) > 30', 'account is REDUCING and buy does not shrink position -50', 'NOPE is not an allowed instrument']



def engine(case: Case) -> RiskEngine:
    return RiskEngine(RiskConfig.model_validate({"limits": case.limits, "rules": ALL_DENY, "instruments": INSTRUMENTS,
                                                 **case.config}))  # fmt: skip


def prime(e: RiskEngine, view: AccountView) -> None:
    """What ``check`` does before either path: the trading day from the view."""
    e.check(order(quantity="1"), AccountView("a", {}, day=view.day), {"FUT": D(100)}, None, NOW)


def context(e: RiskEngine, o: Order, view: AccountView, side: Side) -> _Context:
    spec = e._specs.get(o.symbol) or e._unknown
    return _Context(o, spec, spec.limits, e._account_limits.get(o.account, e.config.limits), view, view.position(o.symbol),
                    side.prices.get(o.symbol), side.prices, (side.tick_at or {}).get(o.symbol), NOW, e._today,
                    e.trading_state(o.account, view.state), e)  # fmt: skip


def decide(path: str, e: RiskEngine, rule: str, side: Side):
    """(passed, [(code, detail)]) on ``path``; for ``fast``, None (it only says pass or not)."""
    o, view = side.build()
    prime(e, view)
    if path == "rule":
        breach = RULE[rule](context(e, o, view, side))
        return breach is None, [] if breach is None else [(breach.code, breach.detail)]
    if path == "rules":
        d = e._check_rules(o, view, side.prices, side.tick_at, NOW)
        return d.action is None, [(b.code, b.detail) for b in d.breaches]
    if path == "fast":
        d = e._passes(o, view, side.prices, side.tick_at, NOW)
        return d is not None and d.action is None, None
    d = e.check(o, view, side.prices, side.tick_at, NOW)
    return d.action is None, [(b.code, b.detail) for b in d.breaches]


# every path for every rule, except the fast path for a REDUCING account: it never passes one
# (the rules decide it), so there is no "at the limit passes" to show there
PATHS = [pytest.param(case, path, id=f"{name}-{path}") for case, name in zip(CASES, IDS)
         for path in ("rule", "rules", "fast", "check") if path != "fast" or case.fast]  # fmt: skip


@pytest.mark.parametrize("case, path", PATHS)
def test_exactly_at_the_limit_passes_and_one_step_past_breaches(case, path):
    e = engine(case)
    passed, codes = decide(path, e, case.rule, case.at)
    assert passed, (case.rule, "at the limit", codes)
    assert codes in (None, [])
    passed, codes = decide(path, e, case.rule, case.over)
    assert not passed, (case.rule, "one step past the limit")
    if codes is not None:
        assert codes == [(case.code, DETAILS[CASES.index(case)])]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_past_the_limit_the_configured_action_decides(case):
    for action, expected in (("deny", Action.DENY), ("escalate", Action.ESCALATE)):
        e = RiskEngine(RiskConfig.model_validate({"limits": case.limits, "instruments": INSTRUMENTS,
                                                  "rules": {**ALL_DENY, case.rule: action}}))  # fmt: skip
        o, view = case.over.build()
        d = e.check(o, view, case.over.prices, case.over.tick_at, NOW)
        assert d.action is expected and [b.code for b in d.breaches] == [case.code]
        assert [b.rule for b in d.breaches] == [case.rule] and d.reason == case.code
    e = RiskEngine(RiskConfig.model_validate({"limits": case.limits, "instruments": INSTRUMENTS,
                                              "rules": {**ALL_DENY, case.rule: "shadow_deny"}}))  # fmt: skip
    o, view = case.over.build()
    d = e.check(o, view, case.over.prices, case.over.tick_at, NOW)
    assert d.action is None and [b.code for _, b in d.shadow] == [case.code]


def test_every_rule_has_a_boundary_here():
    assert {c.rule for c in CASES} == set(RULE)


def test_unset_limits_are_not_checked():
    e = RiskEngine(RiskConfig.model_validate({"limits": {}, "rules": ALL_DENY, "instruments": INSTRUMENTS}))
    huge = order(quantity="1000000000", limit_price="1000")
    view = AccountView("a", {"FUT": Position("a", "FUT", quantity=D(10**9))}, day=DAY, orders_last_second=10**6,
                       orders_last_minute=10**6, realised_today=D(-10**12))  # fmt: skip
    assert e.check(huge, view, {"FUT": D(1)}, None, NOW).action is None
    assert e._check_rules(huge, view, {"FUT": D(1)}, None, NOW).action is None


# -- breaches that are not about a number: no price to judge by, a stopped account ------------


def rules_and_check(limits: dict, side: Side, **config) -> list[tuple[str, str, str]]:
    """(rule, code, detail) of every breach, the same on the rule path and through check."""
    e = RiskEngine(RiskConfig.model_validate({"limits": limits, "rules": ALL_DENY, "instruments": INSTRUMENTS, **config}))
    o, view = side.build()
    prime(e, view)
    slow = [(b.rule, b.code, b.detail) for b in e._check_rules(o, view, side.prices, side.tick_at, NOW).breaches]
    o, view = side.build()
    fast = [(b.rule, b.code, b.detail) for b in e.check(o, view, side.prices, side.tick_at, NOW).breaches]
    assert slow == fast
    return slow


NO_PRICES: dict[str, Decimal] = {}


def test_no_price_to_judge_by_is_a_breach_naming_the_rule():
    market = Side({"order_type": "market"}, prices=NO_PRICES, tick_at={"FUT": NOW})
    assert rules_and_check({"max_order_notional": "10"}, market) == [
        ("max_order_notional", "no_reference_price", "no tick for FUT to value a market order")]
    assert rules_and_check({"max_gross_exposure": "10"}, market) == [
        ("max_gross_exposure", "no_reference_price", "no tick for FUT to value the exposure")]
    assert rules_and_check({"price_band_percent": "5"}, Side({}, prices=NO_PRICES)) == [
        ("price_band", "no_reference_price", "no tick for FUT to check the price band")]
    assert rules_and_check({"stale_tick_seconds": "5"}, Side({"order_type": "market"}, tick_at={})) == [
        ("stale_tick", "stale_tick", "no tick for FUT to price a market order")]
    # a limit order without a tick is valued at its own limit price: no breach
    assert rules_and_check({"max_order_notional": "1000", "max_gross_exposure": "1000"}, Side({}, prices=NO_PRICES)) == []


def test_a_halted_account_passes_nothing_and_says_so():
    assert rules_and_check({}, Side({}, view={"state": "HALTED"})) == [("trading_state", "trading_halted", "trading is HALTED")]


@pytest.mark.parametrize("held, pending, side, quantity, passes", [
    (50, {"pending_sell": 10}, "sell", "40", True), (50, {"pending_sell": 10}, "sell", "41", False),
    (50, {"pending_buy": 10}, "sell", "50", True),  # reservations the other way do not count
    (-50, {"pending_buy": 10}, "buy", "40", True), (-50, {"pending_buy": 10}, "buy", "41", False),
    (50, {}, "buy", "1", False), (-50, {}, "sell", "1", False), (0, {}, "sell", "1", False), (0, {}, "buy", "1", False),
])  # fmt: skip
def test_a_reducing_account_may_only_shrink_its_position(held, pending, side, quantity, passes):
    position = pos(quantity=held, **pending)
    found = rules_and_check({}, Side({"side": side, "quantity": quantity}, (position,), view={"state": "REDUCING"}))
    if passes:
        assert found == []
    else:
        assert found == [("trading_state", "reducing_only",
                          f"account is REDUCING and {side} does not shrink position {held}")]  # fmt: skip


def test_a_sell_below_the_last_tick_counts_the_loss_it_is_marked_at():
    # selling 10 at 80 when the last tick is 100: 200 lost the moment it fills
    assert rules_and_check({"max_daily_loss": "200"}, Side({"side": "sell", "limit_price": "80"})) == []
    assert rules_and_check({"max_daily_loss": "200"}, Side({"side": "sell", "limit_price": "79.99"})) == [
        ("max_daily_loss", "max_daily_loss_exceeded", "loss today 200.10 > 200")]
    # selling above the last tick is no loss
    assert rules_and_check({"max_daily_loss": "1"}, Side({"side": "sell", "limit_price": "101"})) == []


def test_a_ticks_age_is_judged_at_the_time_check_is_given_on_both_paths():
    """``check(..., now)`` judges a tick's age at ``now``, on the fast path too, not at the wall
    clock: a tick fresh by the wall clock but stale at ``now`` is a breach, and one fresh at a
    past ``now`` (stale by the wall clock) passes."""
    e = RiskEngine(RiskConfig.model_validate({"limits": {"stale_tick_seconds": "2"}, "rules": ALL_DENY,
                                              "instruments": INSTRUMENTS}))  # fmt: skip
    wall = time.time()
    later = wall + 3600  # an hour ahead of the wall clock
    o, view = Side({"order_type": "market"}).build()
    d = e.check(o, view, {"FUT": D(100)}, {"FUT": wall}, later)
    assert d.action is Action.DENY and [b.code for b in d.breaches] == ["stale_tick"]
    assert e._passes(o, view, {"FUT": D(100)}, {"FUT": wall}, later) is None
    o, view = Side({"order_type": "market"}).build()
    assert e.check(o, view, {"FUT": D(100)}, {"FUT": NOW - 1}, NOW).action is None
    assert e._passes(o, view, {"FUT": D(100)}, {"FUT": NOW - 1}, NOW) is not None
