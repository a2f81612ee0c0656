"""Cost of the risk checks per order: 1,000 instruments, 10,000 accounts, every rule on.

In-process, timeit-style: ``RiskEngine.check`` on pre-built orders and account views,
against a baseline measured in the same run (an empty function with the same arguments).

    python -m bench.risk [--orders 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import random
import time
from decimal import Decimal

from wojak.engine.domain import Order, Position
from wojak.engine.protocol import validate_order
from wojak.engine.risk import AccountView, RiskConfig, RiskEngine

N_INSTRUMENTS, N_ACCOUNTS = 1_000, 10_000


def build(n_orders: int, seed: int = 1):
    rng = random.Random(seed)
    instruments = {f"SYM{i:04d}": {"lot_size": "1", "tick_size": "0.05", "multiplier": str(rng.choice([1, 25, 50])),
                                   "expiry": "2099-12-31", "limits": {"max_position": str(rng.randint(500, 5000))}}
                   for i in range(N_INSTRUMENTS)}  # fmt: skip
    config = RiskConfig.model_validate({
        "limits": {"max_order_quantity": "1000", "max_order_notional": "100000000", "max_position": "5000",
                   "price_band_percent": "5", "max_gross_exposure": "1000000000", "max_daily_loss": "10000000",
                   "max_orders_per_second": 1000, "max_orders_per_minute": 10000, "stale_tick_seconds": "5",
                   "min_days_to_expiry": 0, "max_days_to_expiry": 36500},
        "instruments": instruments,
        "accounts": {f"acct{i}": {"limits": {"max_daily_loss": "5000000"}} for i in range(0, N_ACCOUNTS, 10)},
    })  # fmt: skip
    engine = RiskEngine(config)
    symbols = sorted(instruments)
    prices = {s: Decimal(rng.randint(100, 5000)) for s in symbols}
    now = time.time()
    tick_at = {s: now for s in symbols}
    views = {}
    for i in range(N_ACCOUNTS):
        account = f"acct{i}"
        held = rng.sample(symbols, 3)
        views[account] = AccountView(account, {s: Position(account, s, Decimal(rng.randint(-50, 50)), prices[s],
                                                           Decimal(0), Decimal(rng.randint(0, 5)), Decimal(0))
                                               for s in held}, day=engine.trading_day(now), realised_today=Decimal(-100),
                                     orders_last_second=1, orders_last_minute=10, now=now)  # fmt: skip
    work = []
    for n in range(n_orders):
        account = f"acct{rng.randrange(N_ACCOUNTS)}"
        view = views[account]
        symbol = rng.choice(list(view.positions)) if rng.random() < 0.7 else rng.choice(symbols)
        market = rng.random() < 0.2
        wire, errors = validate_order({"client_order_id": f"o{n}", "account": account, "symbol": symbol,
                                       "side": rng.choice(["buy", "sell"]), "quantity": str(rng.randint(1, 20)),
                                       "order_type": "market" if market else "limit",
                                       **({} if market else {"limit_price": str(prices[symbol])})})  # fmt: skip
        assert not errors, errors
        work.append((Order.from_wire(wire), view))
    return engine, work, prices, tick_at, now


def empty(order, view, prices, tick_at, now):
    return None


def measure(fn, work, prices, tick_at, now, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for order, view in work:
            fn(order, view, prices, tick_at, now)
        best = min(best, time.perf_counter() - t0)
    return best / len(work) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    engine, work, prices, tick_at, now = build(args.orders)
    passed = sum(engine.check(o, v, prices, tick_at, now).action is None for o, v in work)
    baseline = measure(empty, work, prices, tick_at, now, args.repeat)
    check = measure(engine.check, work, prices, tick_at, now, args.repeat)
    print(f"risk checks: {N_INSTRUMENTS} instruments, {N_ACCOUNTS} accounts, {len(work)} orders ({passed} pass), 11 rules")
    print(f"  baseline (empty call): {baseline:6.2f} us/order")
    print(f"  RiskEngine.check:      {check:6.2f} us/order")
    print(f"  risk cost:             {check - baseline:6.2f} us/order (target <= 20)")


if __name__ == "__main__":
    main()
