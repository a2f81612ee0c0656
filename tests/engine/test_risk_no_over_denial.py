"""Property: an order within every limit is never denied, escalated or shadow-flagged.

tests/engine/test_risk_properties.py shows no sequence of orders exceeds a limit (upper
bounds); a check that refused every order would pass it. This is the other half: the
account, the prices and the order are drawn first, every quantity a rule looks at is
computed here independently (order size, notional, worst-case position, distance from the
last tick, gross exposure, today's loss, order rate, tick age), and each limit is then set
at that value plus a slack that is often zero (exactly at the limit), or left unset. The
order must pass, on ``check`` and on the rule path (``_check_rules``) alike.
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from wojak.engine.domain import Order, Position
from wojak.engine.protocol import validate_order
from wojak.engine.risk import AccountView, RiskConfig, RiskEngine

D = Decimal
MULTIPLIERS = {"A": D(1), "B": D(2), "C": D(10)}
NOW = 1_714_550_400.0
DAY = "2024-05-01"

prices = st.integers(100, 10_000).map(lambda cents: D(cents) / 100)  # 1.00 .. 100.00
slack = st.one_of(st.just(D(0)), st.just(D(0)), st.integers(1, 500).map(D), st.none())  # None: the limit is unset


@st.composite
def positions(draw):
    out = {}
    for symbol in draw(st.lists(st.sampled_from(sorted(MULTIPLIERS)), unique=True, max_size=3)):
        out[symbol] = Position(
            "acct", symbol, quantity=D(draw(st.integers(-60, 60))), average_price=draw(prices),
            pending_buy=D(draw(st.integers(0, 20))), pending_sell=D(draw(st.integers(0, 20))),
            pending_loss=D(draw(st.integers(0, 50))),
        )  # fmt: skip
    return out


@st.composite
def scenarios(draw):
    symbol = draw(st.sampled_from(sorted(MULTIPLIERS)))
    side = draw(st.sampled_from(["buy", "sell"]))
    quantity = D(draw(st.integers(1, 50)))
    market = draw(st.booleans())
    last = {s: draw(prices) for s in MULTIPLIERS}
    limit_price = None if market else draw(prices)
    held = draw(positions())
    realised = D(draw(st.integers(-2000, 2000)))
    per_second, per_minute = draw(st.integers(0, 10)), draw(st.integers(0, 100))
    age = D(draw(st.integers(0, 40))) / 8  # binary fractions: NOW - age is exact in a float
    return symbol, side, quantity, limit_price, last, held, realised, per_second, per_minute, age, draw


def measures(symbol, side, quantity, limit_price, last, held, realised, per_second, per_minute, age) -> dict:
    """What each rule compares with its limit, computed without the risk engine."""
    m = MULTIPLIERS[symbol]
    price = limit_price if limit_price is not None else last[symbol]
    signed = quantity if side == "buy" else -quantity
    own = held.get(symbol, Position("acct", symbol))
    long, short = own.quantity + own.pending_buy, own.quantity - own.pending_sell
    if signed > 0:
        long += signed
    else:
        short += signed
    exposure = D(0)
    for s in set(held) | {symbol}:
        p = held.get(s, Position("acct", s))
        lo, sh = p.quantity + p.pending_buy, p.quantity - p.pending_sell
        if s == symbol:
            lo, sh = (lo + signed, sh) if signed > 0 else (lo, sh + signed)
        exposure += max(abs(lo), abs(sh)) * last[s] * MULTIPLIERS[s]
    pnl = realised
    for s, p in held.items():
        pnl -= p.pending_loss
        pnl += (last[s] - p.average_price) * p.quantity * MULTIPLIERS[s]
    loss = -pnl
    if limit_price is not None and (limit_price - last[symbol]) * signed > 0:
        loss += (limit_price - last[symbol]) * signed * m
    out = {
        "max_order_quantity": quantity,
        "max_order_notional": quantity * price * m,
        "max_position": max(abs(long), abs(short)),
        "max_gross_exposure": exposure,
        "max_daily_loss": loss,
        "max_orders_per_second": per_second + 1,
        "max_orders_per_minute": per_minute + 1,
    }
    if limit_price is None:
        out["stale_tick_seconds"] = age
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(scenarios())
def test_an_order_within_every_limit_is_never_denied(scenario):
    symbol, side, quantity, limit_price, last, held, realised, per_second, per_minute, age, draw = scenario
    measured = measures(symbol, side, quantity, limit_price, last, held, realised, per_second, per_minute, age)
    limits: dict[str, str | int] = {}
    for name, value in measured.items():
        extra = draw(slack)
        if extra is None or value + extra <= 0:  # limits are > 0: a non-positive measure leaves it unset
            continue
        limit = value + extra
        limits[name] = int(limit) if name.startswith("max_orders_per") else str(limit)
    if limit_price is not None and draw(st.booleans()):
        # the smallest whole or half percent the price is within
        distance = abs(limit_price - last[symbol]) * 100 / last[symbol]
        band = max(D(1), (distance * 2).to_integral_value(rounding="ROUND_CEILING") / 2)
        assume(abs(limit_price - last[symbol]) * 100 <= band * last[symbol])
        limits["price_band_percent"] = str(band)
    config = RiskConfig.model_validate({
        "limits": limits,
        "rules": {"max_order_notional": "deny", "max_position": "deny", "max_gross_exposure": "deny"},
        "instruments": {s: {"multiplier": str(m), "price_decimals": 2} for s, m in MULTIPLIERS.items()},
    })  # fmt: skip
    raw = {"client_order_id": "p-1", "account": "acct", "symbol": symbol, "side": side, "quantity": str(quantity),
           "order_type": "market" if limit_price is None else "limit"}  # fmt: skip
    if limit_price is not None:
        raw["limit_price"] = str(limit_price)
    wire, errors = validate_order(raw)
    assert not errors, errors
    order = Order.from_wire(wire)

    def view() -> AccountView:
        copies = {s: Position(p.account, p.symbol, quantity=p.quantity, average_price=p.average_price,
                              pending_buy=p.pending_buy, pending_sell=p.pending_sell, pending_loss=p.pending_loss)
                  for s, p in held.items()}  # fmt: skip
        return AccountView("acct", copies, day=DAY, realised_today=realised, orders_last_second=per_second,
                           orders_last_minute=per_minute)  # fmt: skip

    tick_at = {s: NOW - float(age) for s in MULTIPLIERS}
    engine = RiskEngine(config)
    decision = engine.check(order, view(), dict(last), tick_at, NOW)
    assert decision.action is None and not decision.breaches and not decision.shadow, (limits, decision)
    slow = engine._check_rules(order, view(), dict(last), tick_at, NOW)
    assert slow.action is None and not slow.breaches and not slow.shadow, (limits, slow)
