"""The fast path of ``RiskEngine.check``, beside the rules it mirrors (``_checks``).

It only asks "does any rule breach?", inline: rules whose limits are unset are skipped, gross
exposure and daily loss are valued in one pass over the account's positions (only if either
limit is set); almost every order passes here. Anything else (a breach of any rule, shadow ones
included, an unknown symbol, a non-ACTIVE trading state) is None, and the rule functions build
the ``Decision``. Every test here is a rule's test, read from the flattened limits
(``_Spec``, ``_AccountSpec``); ``tests/engine/risk/test_fast_path.py`` and
``test_rule_boundaries.py`` check the two paths agree.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import TYPE_CHECKING, Mapping

from wojak.engine.domain import AccountView, Order, Side
from wojak.engine.risk._config import TradingState
from wojak.engine.risk._decision import HUNDRED, PASSED, ZERO, Decision

if TYPE_CHECKING:
    from wojak.engine.risk._checks import RiskEngine

_BUY = Side.BUY


def passes(
    engine: RiskEngine,
    order: Order,
    view: AccountView,
    prices: Mapping[str, Decimal],
    tick_at: Mapping[str, float] | None,
    now: float | None,
) -> Decision | None:
    """The fast path: the passing ``Decision`` if no rule (shadow ones included) breaches,
    else None (``_check_rules`` then builds the decision). Same tests as the rules."""
    symbol = order.symbol
    spec = engine._specs.get(symbol)
    if spec is None:
        return None  # unknown symbol
    if view.state is not None or not engine._all_active:
        if engine.trading_state(order.account, view.state) is not TradingState.ACTIVE:
            return None
    positions = view.positions
    position = positions.get(symbol)
    if position is None:
        position = view.position(symbol)
    quantity = order.quantity
    price = order.limit_price
    buy = order.side is _BUY
    last = prices.get(symbol)
    multiplier = spec.big_multiplier

    limit = spec.max_order_quantity
    if limit is not None and quantity > limit:
        return None
    limit = spec.max_order_notional
    if limit is not None:
        ref = price if price is not None else last
        if ref is None:
            return None
        notional = quantity * ref
        if multiplier is not None:
            notional *= multiplier
        if notional > limit:
            return None
    limit = spec.max_position
    if limit is not None:
        if buy:
            worst = position.quantity + position.pending_buy + quantity
            short = position.quantity - position.pending_sell
        else:
            worst = position.quantity + position.pending_buy
            short = position.quantity - position.pending_sell - quantity
        if worst < -short:
            worst = -short
        if worst > limit:
            return None
    band = spec.price_band_percent
    if band is not None and price is not None:
        if last is None or abs(price - last) * HUNDRED > band * last:
            return None
    if price is None:
        stale = spec.stale_tick_seconds
        if stale is not None:
            at = None if tick_at is None else tick_at.get(symbol)
            if at is None or (time.time() if now is None else now) - at > stale:
                return None
    if spec.expiry_window:
        today = engine._today
        if not spec.expiry_fast:
            return None
        if (spec.first_day is not None and today < spec.first_day) or (spec.last_day is not None and today > spec.last_day):
            return None

    # the loss a fill of this order is marked at at once (limit worse than the last tick)
    per_unit = ZERO
    if price is not None and last is not None:
        worse = price - last if buy else last - price
        if worse > ZERO:
            per_unit = worse if multiplier is None else worse * multiplier

    acct = engine._accounts.get(order.account) or engine._default_account
    per_second, per_minute = acct.max_orders_per_second, acct.max_orders_per_minute
    if per_second is not None and view.orders_last_second + 1 > per_second:
        return None
    if per_minute is not None and view.orders_last_minute + 1 > per_minute:
        return None
    max_exposure, max_loss = acct.max_gross_exposure, acct.max_daily_loss
    if max_exposure is not None or max_loss is not None:
        if max_exposure is not None and last is None and price is None:
            return None  # no price to value the order's own symbol
        own_price = price if last is None else last
        exposure = ZERO
        pnl = view.realised_today
        sod_prices = view.sod_prices
        big = engine._big_multipliers
        for sym, p in positions.items():
            held = p.quantity
            m = big.get(sym)
            mark = prices.get(sym)
            if max_exposure is not None:
                # max(|long|, |short|) of the worst cases, as in gross_exposure()
                pending = p.pending_buy
                long = held + pending if pending else held
                pending = p.pending_sell
                short = held - pending if pending else held
                if sym == symbol:
                    if buy:
                        long += quantity
                    else:
                        short -= quantity
                if short >= ZERO:
                    size = long
                elif long <= ZERO:
                    size = -short
                else:
                    size = long if long >= -short else -short
                if size:
                    # own_price is set here: no price for the order's own symbol returned above
                    value = size * (mark if mark is not None else own_price if sym == symbol else p.average_price)  # type: ignore[operator]
                    exposure += value if m is None else value * m
            if max_loss is not None:
                pending = p.pending_loss
                if pending:
                    pnl -= pending
                if held and mark is not None:
                    marked = (mark - p.average_price) * held
                    pnl += marked if m is None else marked * m
                sod = p.start_of_day_mark(sod_prices.get(sym), view.day)
                if sod:
                    pnl -= sod if m is None else sod * m
        if max_exposure is not None and exposure > max_exposure:
            return None
        if max_loss is not None and (-pnl + per_unit * quantity if per_unit else -pnl) > max_loss:
            return None
    if per_unit:
        return Decision(None, loss_per_unit=per_unit)
    return PASSED
