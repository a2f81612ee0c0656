"""``RiskEngine.check`` decides most orders on a fast path (``_passes``) and the rest through
the rule functions (``_check_rules``). Over many random configurations, accounts and orders
(limits set or unset, each near its boundary, shadow rules, stored states, unknown symbols,
market orders, stale ticks, expiries): whenever the fast path answers, the rules answer the
same, and it answers for every order the rules pass cleanly on an ACTIVE account."""

from __future__ import annotations

import datetime as dt
import random
import time
from decimal import Decimal

import pytest

from wojak.engine.domain import Order, Position
from wojak.engine.protocol import validate_order
from wojak.engine.risk import AccountView, RiskConfig, RiskEngine, TradingState

D = Decimal
SYMBOLS = ["A", "B", "C"]
NOW = 1_714_550_400.0


def maybe(rng: random.Random, value):
    return value if rng.random() < 0.6 else None


def random_engine(rng: random.Random) -> RiskEngine:
    density = rng.choice([0.15, 0.4, 0.8])  # how many limits are set

    def limits():
        out = {
            "max_order_quantity": maybe(rng, str(rng.randint(5, 40))),
            "max_order_notional": maybe(rng, str(rng.randint(500, 8000))),
            "max_position": maybe(rng, str(rng.randint(10, 80))),
            "price_band_percent": maybe(rng, rng.choice(["1", "2.5", "5"])),
            "max_gross_exposure": maybe(rng, str(rng.randint(2000, 20000))),
            "max_daily_loss": maybe(rng, str(rng.randint(50, 2000))),
            "max_orders_per_second": maybe(rng, rng.randint(1, 5)),
            "max_orders_per_minute": maybe(rng, rng.randint(3, 20)),
            "stale_tick_seconds": maybe(rng, rng.choice(["0.5", "2", "5"])),
            "min_days_to_expiry": maybe(rng, rng.choice([0, 2, 10, 10**6])),
            "max_days_to_expiry": maybe(rng, rng.choice([0, 5, 30, 10**6])),
        }
        return {k: v for k, v in out.items() if v is not None and rng.random() < density}

    actions = ["deny", "escalate", "shadow_deny", "shadow_escalate"]
    instruments = {
        s: {"multiplier": rng.choice(["1", "1.0", "2", "10"]),
            **({"expiry": str(dt.date(2024, 5, 1) + dt.timedelta(days=rng.randint(-3, 40)))} if rng.random() < 0.5 else {}),
            "limits": limits() if rng.random() < 0.5 else {}}
        for s in SYMBOLS
    }  # fmt: skip
    return RiskEngine(RiskConfig.model_validate({
        "trading_state": rng.choice(["ACTIVE"] * 18 + ["REDUCING", "HALTED"]),
        "limits": limits(),
        "rules": {r: rng.choice(actions) for r in ("max_order_quantity", "max_position", "max_daily_loss",
                                                   "max_gross_exposure", "price_band") if rng.random() < 0.3},
        "accounts": {"x": {"limits": limits(), "trading_state": rng.choice(["ACTIVE"] * 9 + ["REDUCING"])}},
        "instruments": instruments,
    }))  # fmt: skip


def random_case(rng: random.Random, n: int, clock: float | None):
    prices = {s: D(rng.randint(90, 110)) for s in SYMBOLS if rng.random() < 0.85}
    if clock is None:  # check reads the clock itself: ages well away from every limit
        clock, ages = time.time(), [0, 60]
    else:
        ages = [0, 0.4, 0.5, 1, 2, 2.0001, 6]
    tick_at = {s: clock - rng.choice(ages) for s in SYMBOLS if rng.random() < 0.85}
    account = rng.choice(["x", "y"])
    positions = {}
    for s in rng.sample(SYMBOLS, rng.randint(0, 3)):
        positions[s] = Position(account, s, D(rng.randint(-30, 30)), D(rng.randint(85, 115)), D(0),
                                D(rng.randint(0, 10)), D(rng.randint(0, 10)), D(rng.choice([0, 0, 5, 37])))  # fmt: skip
    view = AccountView(account, positions, day=rng.choice(["2024-05-01", "2024-05-20", ""]),
                       realised_today=D(rng.randint(-500, 200)), orders_last_second=rng.randint(0, 4),
                       orders_last_minute=rng.randint(4, 20), state=rng.choice([None] * 18 + ["REDUCING", "HALTED"]))  # fmt: skip
    symbol = rng.choice(SYMBOLS + ["ZZZ"] * (rng.random() < 0.05))
    market = rng.random() < 0.25
    raw = {"client_order_id": f"o{n}", "account": account, "symbol": symbol, "side": rng.choice(["buy", "sell"]),
           "quantity": str(rng.randint(1, 40)), "order_type": "market" if market else "limit"}  # fmt: skip
    if not market:
        raw["limit_price"] = str(D(rng.randint(9000, 11000)) / 100)
    wire, errors = validate_order(raw)
    assert not errors, errors
    return Order.from_wire(wire), view, prices, tick_at


def clone(view: AccountView) -> AccountView:
    return AccountView(view.account, {s: Position(p.account, p.symbol, p.quantity, p.average_price, p.realised_pnl,
                                                  p.pending_buy, p.pending_sell, p.pending_loss)
                                      for s, p in view.positions.items()},
                       view.day, view.realised_today, view.orders_last_second, view.orders_last_minute, view.state,
                       view.halt, view.now)  # fmt: skip


@pytest.mark.parametrize("seed", range(20))
def test_the_fast_path_agrees_with_the_rules(seed):
    rng = random.Random(seed)
    fast_answers = 0
    for n in range(300):
        if n % 50 == 0:
            engine = random_engine(rng)
        now = NOW if rng.random() < 0.9 else None
        order, view, prices, tick_at = random_case(rng, n, now)
        decision = engine.check(order, clone(view), prices, tick_at, now)
        # the same through the rules alone (check has set the engine's day from the view)
        ruled = engine._check_rules(order, clone(view), prices, tick_at, time.time() if now is None else now)
        if now is None:  # check read the clock itself: stale-tick details name another age
            assert (decision.action, [b.code for b in decision.breaches], decision.halt is None, decision.loss_per_unit) == (
                ruled.action, [b.code for b in ruled.breaches], ruled.halt is None, ruled.loss_per_unit)  # fmt: skip
        else:
            assert decision == ruled, (order, view, prices, tick_at)
        fast = engine._passes(order, clone(view), prices, tick_at, now)
        if fast is not None:
            fast_answers += 1
            assert fast == ruled
        elif order.symbol in engine.config.instruments and engine.trading_state(order.account, view.state) is TradingState.ACTIVE:
            assert ruled.breaches or ruled.shadow, "the fast path gave up on an order the rules pass cleanly"
    assert fast_answers > 0
