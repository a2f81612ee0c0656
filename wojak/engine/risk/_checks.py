"""The risk rules: each returns a breach or None; the configured action decides the verdict."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Callable, Iterable

from wojak.engine.domain import Order, Position, Side
from wojak.engine.risk._config import Action, Instrument, Limits, RiskConfig, TradingState


@dataclass(frozen=True, slots=True)
class Breach:
    rule: str
    code: str  # stable reason code, e.g. "max_order_quantity_exceeded"
    detail: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of the checks: ``action`` None means the order may go to the venue."""

    action: Action | None
    breaches: tuple[Breach, ...] = ()

    @property
    def reason(self) -> str | None:
        return ",".join(b.code for b in self.breaches) or None


PASSED = Decision(None)


@dataclass(frozen=True, slots=True)
class _Context:
    order: Order
    instrument: Instrument | None
    limits: Limits
    position: Position
    last_price: Decimal | None
    trading_state: TradingState


Rule = Callable[[_Context], "Breach | None"]


def _trading_state(ctx: _Context) -> Breach | None:
    state = ctx.trading_state
    if state is TradingState.ACTIVE:
        return None
    if state is TradingState.HALTED:
        return Breach("trading_state", "trading_halted", "trading is HALTED")
    held = ctx.position.quantity
    signed = ctx.order.signed_quantity
    pending_same_way = ctx.position.pending_sell if signed < 0 else ctx.position.pending_buy
    if held != 0 and (held > 0) != (signed > 0) and abs(signed) + pending_same_way <= abs(held):
        return None
    return Breach("trading_state", "reducing_only", f"account is REDUCING and {ctx.order.side.value} does not shrink position {held}")


def _allowed_instruments(ctx: _Context) -> Breach | None:
    if ctx.instrument is None:
        return Breach("allowed_instruments", "unknown_symbol", f"{ctx.order.symbol} is not an allowed instrument")
    return None


def _max_order_quantity(ctx: _Context) -> Breach | None:
    limit = ctx.limits.max_order_quantity
    if limit is not None and ctx.order.quantity > limit:
        return Breach("max_order_quantity", "max_order_quantity_exceeded", f"quantity {ctx.order.quantity} > {limit}")
    return None


def _reference_price(ctx: _Context) -> Decimal | None:
    return ctx.order.limit_price if ctx.order.limit_price is not None else ctx.last_price


def _max_order_notional(ctx: _Context) -> Breach | None:
    limit = ctx.limits.max_order_notional
    if limit is None:
        return None
    price = _reference_price(ctx)
    if price is None:
        return Breach("max_order_notional", "no_reference_price", f"no tick for {ctx.order.symbol} to value a market order")
    multiplier = ctx.instrument.multiplier if ctx.instrument else Decimal(1)
    notional = ctx.order.quantity * price * multiplier
    if notional > limit:
        return Breach("max_order_notional", "max_order_notional_exceeded", f"notional {notional} > {limit}")
    return None


def _max_position(ctx: _Context) -> Breach | None:
    limit = ctx.limits.max_position
    if limit is None:
        return None
    worst = ctx.position.worst_case(ctx.order.signed_quantity)
    if worst > limit:
        return Breach("max_position", "max_position_exceeded", f"position could reach {worst} > {limit}")
    return None


def _price_band(ctx: _Context) -> Breach | None:
    band = ctx.limits.price_band_percent
    if band is None or ctx.order.limit_price is None:
        return None
    last = ctx.last_price
    if last is None:
        return Breach("price_band", "no_reference_price", f"no tick for {ctx.order.symbol} to check the price band")
    if abs(ctx.order.limit_price - last) * 100 > band * last:
        return Breach("price_band", "price_band_exceeded", f"limit {ctx.order.limit_price} is over {band}% from last {last}")
    return None


RULES: tuple[tuple[str, Rule], ...] = (
    ("trading_state", _trading_state),
    ("allowed_instruments", _allowed_instruments),
    ("max_order_quantity", _max_order_quantity),
    ("max_order_notional", _max_order_notional),
    ("max_position", _max_position),
    ("price_band", _price_band),
)


def _merge(base: Limits, override: Limits) -> Limits:
    return Limits(**{k: v if v is not None else getattr(base, k) for k, v in override.model_dump().items()})


class RiskEngine:
    """Evaluates every rule; any ``deny`` breach denies, else any ``escalate`` breach escalates."""

    def __init__(self, config: RiskConfig) -> None:
        self.config = config
        self._limits = {s: _merge(config.limits, i.limits) for s, i in config.instruments.items()}
        self._actions = [(name, rule, getattr(config.rules, name)) for name, rule in RULES]
        self._account_states = {a: c.trading_state for a, c in config.accounts.items()}
        self._rank = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}

    def instrument(self, symbol: str) -> Instrument | None:
        return self.config.instruments.get(symbol)

    def trading_state(self, account: str) -> TradingState:
        glob = self.config.trading_state
        acct = self._account_states.get(account, TradingState.ACTIVE)
        return glob if self._rank[glob] >= self._rank[acct] else acct

    def check(self, order: Order, position: Position, last_price: Decimal | None) -> Decision:
        ctx = _Context(
            order,
            self.config.instruments.get(order.symbol),
            self._limits.get(order.symbol, self.config.limits),
            position,
            last_price,
            self.trading_state(order.account),
        )
        denied: list[Breach] = []
        escalated: list[Breach] = []
        for _name, rule, action in self._actions:
            breach = rule(ctx)
            if breach is not None:
                (denied if action is Action.DENY else escalated).append(breach)
        if denied:
            return Decision(Action.DENY, tuple(denied + escalated))
        if escalated:
            return Decision(Action.ESCALATE, tuple(escalated))
        return PASSED

    def precision_errors(self, order: Order) -> Iterable[tuple[str, str]]:
        """(field, reason) for quantities/prices finer than the instrument allows (an `invalid`)."""
        instrument = self.config.instruments.get(order.symbol)
        if instrument is None:
            return ()
        errors = []
        if -order.quantity.as_tuple().exponent > instrument.quantity_decimals:  # type: ignore[operator]
            errors.append(("quantity", f"{order.symbol} allows at most {instrument.quantity_decimals} decimal places"))
        if order.limit_price is not None and -order.limit_price.as_tuple().exponent > instrument.price_decimals:  # type: ignore[operator]
            errors.append(("limit_price", f"{order.symbol} allows at most {instrument.price_decimals} decimal places"))
        return errors
