"""The risk rules: each returns a breach or None; the configured action decides the verdict.

Per-instrument and per-account limits are merged once, when the configuration is loaded
(``_Spec``, ``_AccountSpec``), so a check is a handful of attribute reads and Decimal
comparisons. Account-wide rules read the store's ``AccountView`` (all the account's
positions with their reservations, today's realised P&L, the order-rate window and the
stored trading-state override), which ``decide`` receives inside the store's atomic admit,
so several engine replicas enforce one limit together.

``check`` has two paths with one meaning. The fast path (``_fast.passes``, beside this module)
only asks "does any rule breach?", inline, skipping rules whose limits are unset and valuing
gross exposure and daily loss in one pass over the account's positions (only if either limit
is set); almost every order passes there. Anything else (a breach of any rule, shadow ones
included, an unknown symbol, a non-ACTIVE trading state) goes through the rule functions
below, each seeing one ``_Context``, which build the ``Decision`` with every breach in rule
order. ``tests/engine/risk/test_fast_path.py`` checks the two agree.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable, Iterable, Mapping
from zoneinfo import ZoneInfo

from wojak.engine.domain import AccountView, Order, Position
from wojak.engine.risk._config import Action, Instrument, Limits, RiskConfig, TradingState
from wojak.engine.risk._decision import ONE, PASSED, ZERO, Breach, Decision
from wojak.engine.risk._fast import passes

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Spec:
    """One instrument's merged limits and reference data (account limits applied at check time)."""

    instrument: Instrument | None
    limits: Limits
    multiplier: Decimal
    lot_size: Decimal
    tick_size: Decimal | None
    expiry: dt.date | None
    # the limits again, flattened for the fast path (None = unset)
    max_order_quantity: Decimal | None = None
    max_order_notional: Decimal | None = None
    max_position: Decimal | None = None
    price_band_percent: Decimal | None = None
    stale_tick_seconds: Decimal | float | None = None  # a float when that is exactly the limit
    expiry_window: bool = False  # an expiry and a days-to-expiry limit: checked
    expiry_fast: bool = True  # the window fits the date range (else the rule decides)
    first_day: dt.date | None = None  # the expiry window as trading days (None = unbounded)
    last_day: dt.date | None = None
    big_multiplier: Decimal | None = None  # the multiplier, None if it is 1

    def __post_init__(self) -> None:
        lim = self.limits
        self.max_order_quantity, self.max_order_notional = lim.max_order_quantity, lim.max_order_notional
        self.max_position, self.price_band_percent = lim.max_position, lim.price_band_percent
        stale = lim.stale_tick_seconds
        # a float age compares with a Decimal exactly; with a float only if it is the same number
        self.stale_tick_seconds = float(stale) if stale is not None and Decimal(float(stale)) == stale else stale
        lo, hi = lim.min_days_to_expiry, lim.max_days_to_expiry
        self.expiry_window = self.expiry is not None and (lo is not None or hi is not None)
        if self.expiry_window:
            assert self.expiry is not None
            # days = (expiry - today).days; lo <= days <= hi  <=>  expiry - hi <= today <= expiry - lo
            self.first_day = _days_before(self.expiry, hi)
            self.last_day = _days_before(self.expiry, lo)
            self.expiry_fast = lo is None or self.last_day is not None
        self.big_multiplier = None if self.multiplier == ONE else self.multiplier


def _days_before(day: dt.date, n: int | None) -> dt.date | None:
    if n is None:
        return None
    try:
        return day - dt.timedelta(days=n)
    except OverflowError:  # before year 1: no trading day is that early
        return None


@dataclass(slots=True)
class _AccountSpec:
    """An account's limits (the account section merged over the defaults), flattened."""

    limits: Limits
    max_gross_exposure: Decimal | None = None
    max_daily_loss: Decimal | None = None
    max_orders_per_second: int | None = None
    max_orders_per_minute: int | None = None

    def __post_init__(self) -> None:
        lim = self.limits
        self.max_gross_exposure, self.max_daily_loss = lim.max_gross_exposure, lim.max_daily_loss
        self.max_orders_per_second, self.max_orders_per_minute = lim.max_orders_per_second, lim.max_orders_per_minute


@dataclass(slots=True)
class _Context:
    order: Order
    spec: _Spec
    limits: Limits  # instrument limits
    account_limits: Limits  # account-level limits (exposure, loss, rate)
    view: "AccountView"
    position: Position
    last_price: Decimal | None
    prices: Mapping[str, Decimal]
    tick_at: float | None
    now: float
    today: dt.date
    trading_state: TradingState
    engine: "RiskEngine"


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
    return Breach(
        "trading_state", "reducing_only", f"account is REDUCING and {ctx.order.side.value} does not shrink position {held}"
    )


def _allowed_instruments(ctx: _Context) -> Breach | None:
    if ctx.spec.instrument is None:
        return Breach("allowed_instruments", "unknown_symbol", f"{ctx.order.symbol} is not an allowed instrument")
    return None


def _max_order_quantity(ctx: _Context) -> Breach | None:
    limit = ctx.limits.max_order_quantity
    if limit is not None and ctx.order.quantity > limit:
        return Breach("max_order_quantity", "max_order_quantity_exceeded", f"quantity {ctx.order.quantity} > {limit}")
    return None


def _max_order_notional(ctx: _Context) -> Breach | None:
    limit = ctx.limits.max_order_notional
    if limit is None:
        return None
    price = ctx.order.limit_price if ctx.order.limit_price is not None else ctx.last_price
    if price is None:
        return Breach("max_order_notional", "no_reference_price", f"no tick for {ctx.order.symbol} to value a market order")
    notional = ctx.order.quantity * price * ctx.spec.multiplier
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


def gross_exposure(
    view: AccountView,
    prices: Mapping[str, Decimal],
    engine: "RiskEngine",
    order: Order | None = None,
    order_price: Decimal | None = None,
) -> Decimal:
    """Sum over the account's symbols of |worst-case position incl. reservations (and the
    order)| x last price x multiplier. A symbol without a tick is valued at its average price
    (the order's own symbol at its limit price)."""
    total = ZERO
    multipliers = engine.multipliers
    own = order.symbol if order is not None else None
    signed = order.signed_quantity if order is not None else ZERO
    for symbol, p in view.positions.items():
        long = p.quantity + p.pending_buy
        short = p.quantity - p.pending_sell
        if symbol == own:
            if signed > 0:
                long += signed
            else:
                short += signed
        size = long if long >= -short else -short  # = max(|long|, |short|), since long >= short
        if not size:
            continue
        price = prices.get(symbol)
        if price is None:
            price = order_price if symbol == own and order_price is not None else p.average_price
        total += size * price * multipliers.get(symbol, ONE)
    return total


def _max_gross_exposure(ctx: _Context) -> Breach | None:
    limit = ctx.account_limits.max_gross_exposure
    if limit is None:
        return None
    order = ctx.order
    if order.symbol not in ctx.view.positions:
        ctx.view.position(order.symbol)
    price = order.limit_price if ctx.last_price is None else ctx.last_price
    if price is None:
        return Breach("max_gross_exposure", "no_reference_price", f"no tick for {order.symbol} to value the exposure")
    exposure = gross_exposure(ctx.view, ctx.prices, ctx.engine, order, price)
    if exposure > limit:
        return Breach("max_gross_exposure", "max_gross_exposure_exceeded", f"gross exposure could reach {exposure} > {limit}")
    return None


def daily_loss(view: AccountView, prices: Mapping[str, Decimal], engine: "RiskEngine") -> Decimal:
    """Today's loss (positive = losing): -(realised today + open positions marked to the last
    tick) + the loss reserved by orders in flight (``pending_loss``, on any replica)."""
    pnl = view.realised_today
    multipliers = engine.multipliers
    sod_prices, day = view.sod_prices, view.day
    for symbol, p in view.positions.items():
        if p.pending_loss:
            pnl -= p.pending_loss
        m = multipliers.get(symbol, ONE)
        if p.quantity:
            last = prices.get(symbol)
            if last is not None:
                pnl += (last - p.average_price) * p.quantity * m
        # what was held as the day began counts from the start-of-day price, not from its cost
        pnl -= p.start_of_day_mark(sod_prices.get(symbol), day) * m
    return -pnl


def _max_daily_loss(ctx: _Context) -> Breach | None:
    limit = ctx.account_limits.max_daily_loss
    if limit is None:
        return None
    loss = daily_loss(ctx.view, ctx.prices, ctx.engine)
    order, last = ctx.order, ctx.last_price
    if order.limit_price is not None and last is not None:
        # a fill at a price worse than the last tick is marked as a loss the moment it fills
        worse = (order.limit_price - last) * order.signed_quantity
        if worse > 0:
            loss += worse * ctx.spec.multiplier
    if loss > limit:
        return Breach("max_daily_loss", "max_daily_loss_exceeded", f"loss today {loss} > {limit}")
    return None


def _order_rate(ctx: _Context) -> Breach | None:
    limits = ctx.account_limits
    per_second, per_minute = limits.max_orders_per_second, limits.max_orders_per_minute
    if per_second is not None and ctx.view.orders_last_second + 1 > per_second:
        return Breach("order_rate", "order_rate_exceeded", f"more than {per_second} orders in a second")
    if per_minute is not None and ctx.view.orders_last_minute + 1 > per_minute:
        return Breach("order_rate", "order_rate_exceeded", f"more than {per_minute} orders in a minute")
    return None


def _stale_tick(ctx: _Context) -> Breach | None:
    limit = ctx.limits.stale_tick_seconds
    if limit is None or ctx.order.limit_price is not None:
        return None
    if ctx.tick_at is None:
        return Breach("stale_tick", "stale_tick", f"no tick for {ctx.order.symbol} to price a market order")
    age = ctx.now - ctx.tick_at
    if age > limit:
        return Breach("stale_tick", "stale_tick", f"last tick for {ctx.order.symbol} is {age:.3f}s old > {limit}s")
    return None


def _expiry_window(ctx: _Context) -> Breach | None:
    lo, hi, expiry = ctx.limits.min_days_to_expiry, ctx.limits.max_days_to_expiry, ctx.spec.expiry
    if expiry is None or (lo is None and hi is None):
        return None
    days = (expiry - ctx.today).days
    if lo is not None and days < lo:
        return Breach("expiry_window", "expiry_window", f"{ctx.order.symbol} expires in {days} day(s) < {lo}")
    if hi is not None and days > hi:
        return Breach("expiry_window", "expiry_window", f"{ctx.order.symbol} expires in {days} day(s) > {hi}")
    return None


RULES: tuple[tuple[str, Rule], ...] = (
    ("trading_state", _trading_state),
    ("allowed_instruments", _allowed_instruments),
    ("max_order_quantity", _max_order_quantity),
    ("max_order_notional", _max_order_notional),
    ("max_position", _max_position),
    ("price_band", _price_band),
    ("max_gross_exposure", _max_gross_exposure),
    ("max_daily_loss", _max_daily_loss),
    ("order_rate", _order_rate),
    ("stale_tick", _stale_tick),
    ("expiry_window", _expiry_window),
)


def _merge(base: Limits, override: Limits) -> Limits:
    return Limits(**{k: v if v is not None else getattr(base, k) for k, v in override.model_dump().items()})


_RANK = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}
_STATES = {s.value: s for s in TradingState}
_NO_VIEW_DAY = ""


class RiskEngine:
    """Evaluates every rule; any ``deny`` breach denies, else any ``escalate`` breach escalates;
    ``shadow_*`` breaches are only logged ("would deny" / "would escalate")."""

    def __init__(self, config: RiskConfig) -> None:
        self.config = config
        self.zone = ZoneInfo(config.exchange_timezone)
        self._specs: dict[str, _Spec] = {}
        for symbol, ins in config.instruments.items():
            tick = ins.tick_size if ins.tick_size is not None else None
            self._specs[symbol] = _Spec(ins, _merge(config.limits, ins.limits), ins.multiplier, ins.lot_size, tick, ins.expiry)
        self._unknown = _Spec(None, config.limits, ONE, ONE, None, None)
        self.multipliers = {symbol: spec.multiplier for symbol, spec in self._specs.items()}
        self._big_multipliers = {s: m for s, m in self.multipliers.items() if m != ONE}
        self._account_limits = {a: _merge(config.limits, c.limits) for a, c in config.accounts.items()}
        self._accounts = {a: _AccountSpec(lim) for a, lim in self._account_limits.items()}
        self._default_account = _AccountSpec(config.limits)
        self._actions = [(name, rule, getattr(config.rules, name)) for name, rule in RULES]
        self._account_states = {a: c.trading_state for a, c in config.accounts.items()}
        # no configured state restricts anyone: only a stored override can
        self._all_active = config.trading_state is TradingState.ACTIVE and all(
            s is TradingState.ACTIVE for s in self._account_states.values()
        )
        # read for every order (service._not_home): worked out once per config, not per order
        self.has_homes = config.home_cluster is not None or any(a.home for a in config.accounts.values())
        self._day_sec = -1
        self._day = ""
        self._today = dt.date(1970, 1, 1)
        self.shadow_breaches = 0

    # -- reference data ------------------------------------------------------------------

    def instrument(self, symbol: str) -> Instrument | None:
        return self.config.instruments.get(symbol)

    def multiplier(self, symbol: str) -> Decimal:
        return self.multipliers.get(symbol, ONE)

    def home(self, account: str) -> str | None:
        """The cluster that alone may trade ``account`` (None: no homes configured)."""
        acct = self.config.accounts.get(account)
        return (acct.home if acct is not None and acct.home else None) or self.config.home_cluster

    def pnl_quantum(self, symbol: str) -> Decimal | None:
        """The currency unit realised P&L of ``symbol`` is rounded to (None: an unknown symbol)."""
        ins = self.config.instruments.get(symbol)
        return None if ins is None else Decimal(1).scaleb(-ins.currency_decimals)

    def tick_limits(self, symbol: str) -> tuple[Decimal | None, Decimal | None]:
        """``(max_tick_jump_percent, tick_jump_seconds)`` for ``symbol`` (None: unset)."""
        spec = self._specs.get(symbol, self._unknown)
        return (getattr(spec.limits, "max_tick_jump_percent", None), getattr(spec.limits, "tick_jump_seconds", None))

    def trading_day(self, now: float | None = None) -> str:
        """The exchange's calendar day (``exchange_timezone``) at ``now``: daily counters' key."""
        now = time.time() if now is None else now
        sec = int(now)
        if sec != self._day_sec:
            today = dt.datetime.fromtimestamp(now, self.zone).date()
            self._day_sec, self._day, self._today = sec, today.isoformat(), today
        return self._day

    def trading_state(self, account: str, stored: str | None = None) -> TradingState:
        glob = self.config.trading_state
        acct = self._account_states.get(account, TradingState.ACTIVE)
        state = glob if _RANK[glob] >= _RANK[acct] else acct
        if stored is not None:
            over = _STATES.get(stored, TradingState.HALTED)
            if _RANK[over] > _RANK[state]:
                state = over
        return state

    # -- the check -----------------------------------------------------------------------

    def check(
        self,
        order: Order,
        view: AccountView | Position,
        prices: Mapping[str, Decimal] | Decimal | None = None,
        tick_at: Mapping[str, float] | None = None,
        now: float | None = None,
    ) -> Decision:
        """Check ``order`` against the account ``view`` (a bare ``Position`` is accepted, as a
        one-symbol account), the last prices by symbol (or the order symbol's last price) and
        the times those ticks arrived."""
        if isinstance(view, Position):
            view = AccountView(order.account, {order.symbol: view})
        if prices is None:
            prices = {}
        elif isinstance(prices, Decimal):
            prices = {order.symbol: prices}
        day = view.day
        if day:
            if day != self._day:
                self._day, self._today, self._day_sec = day, dt.date.fromisoformat(day), -1
        else:
            if now is None:
                now = time.time()
            self.trading_day(now)
        passed = passes(self, order, view, prices, tick_at, now)
        if passed is not None:
            return passed
        return self._check_rules(order, view, prices, tick_at, time.time() if now is None else now)

    def _passes(
        self,
        order: Order,
        view: AccountView,
        prices: Mapping[str, Decimal],
        tick_at: Mapping[str, float] | None,
        now: float | None,
    ) -> Decision | None:
        """The fast path alone (``check`` calls ``_fast.passes`` itself; tests compare the two paths)."""
        return passes(self, order, view, prices, tick_at, now)

    def _check_rules(
        self, order: Order, view: AccountView, prices: Mapping[str, Decimal], tick_at: Mapping[str, float] | None, now: float
    ) -> Decision:
        """Every rule, each through the ``_Context``: the full ``Decision`` with all breaches."""
        spec = self._specs.get(order.symbol) or self._unknown
        ctx = _Context(
            order,
            spec,
            spec.limits,
            self._account_limits.get(order.account, self.config.limits),
            view,
            view.position(order.symbol),
            prices.get(order.symbol),
            prices,
            (tick_at or {}).get(order.symbol),
            now,
            self._today,
            self.trading_state(order.account, view.state),
            self,
        )
        denied: list[Breach] | None = None
        escalated: list[Breach] | None = None
        shadow: list[tuple[Action, Breach]] | None = None
        halt = None
        for _name, rule, action in self._actions:
            breach = rule(ctx)
            if breach is None:
                continue
            if action is Action.DENY:
                (denied := denied or []).append(breach)
            elif action is Action.ESCALATE:
                (escalated := escalated or []).append(breach)
            else:
                (shadow := shadow or []).append((action, breach))
                continue
            if breach.code == "max_daily_loss_exceeded" and self.config.halt_on_daily_loss:
                halt = breach.detail
        shadowed = tuple(shadow) if shadow else ()
        if shadowed:
            self.shadow_breaches += len(shadowed)
            for action, b in shadowed:
                verb = "would deny" if action is Action.SHADOW_DENY else "would escalate"
                log.warning("risk shadow: %s %s (%s: %s) [rule %s]", verb, order.client_order_id, b.code, b.detail, b.rule)
        if denied:
            return Decision(Action.DENY, tuple(denied + (escalated or [])), shadowed, halt)
        if escalated:
            return Decision(Action.ESCALATE, tuple(escalated), shadowed, halt)
        per_unit = self.loss_per_unit(order, ctx.last_price)
        if per_unit:
            return Decision(None, (), shadowed, None, per_unit)
        return Decision(None, (), shadowed) if shadowed else PASSED

    def loss_per_unit(self, order: Order, last: Decimal | None) -> Decimal:
        """The loss per unit a fill of ``order`` is marked at the moment it fills, at worst:
        for a limit order, how far its limit is worse than the last tick, times the multiplier
        (0 if it is not worse). A market order reserves nothing: it fills at the market,
        which the last tick marks, and the stale-tick rule keeps that tick fresh; so does an
        order without a tick (price band / notional rules refuse those where configured)."""
        price = order.limit_price
        if price is None or last is None:
            return ZERO
        worse = price - last if order.signed_quantity > 0 else last - price
        if worse <= 0:
            return ZERO
        return worse * self.multipliers.get(order.symbol, ONE)

    def precision_errors(self, order: Order) -> Iterable[tuple[str, str, str]]:
        """(field, reason, code) for quantities/prices the instrument does not allow (an `invalid`):
        finer than its precision, not a whole number of lots, off the tick grid."""
        spec = self._specs.get(order.symbol)
        if spec is None:
            return ()
        instrument = spec.instrument
        assert instrument is not None
        errors = []
        if -order.quantity.as_tuple().exponent > instrument.quantity_decimals:  # type: ignore[operator]
            errors.append(
                ("quantity", f"{order.symbol} allows at most {instrument.quantity_decimals} decimal places", "decimal_max_places")
            )
        elif spec.lot_size != ONE and order.quantity % spec.lot_size:
            errors.append(
                (
                    "quantity",
                    f"{order.symbol} trades in lots of {spec.lot_size}: {order.quantity} is not a whole number of lots",
                    "lot_size",
                )
            )
        price = order.limit_price
        if price is not None:
            if -price.as_tuple().exponent > instrument.price_decimals:  # type: ignore[operator]
                errors.append(
                    (
                        "limit_price",
                        f"{order.symbol} allows at most {instrument.price_decimals} decimal places",
                        "decimal_max_places",
                    )
                )
            elif spec.tick_size is not None and price % spec.tick_size:
                errors.append(
                    ("limit_price", f"{order.symbol} has tick size {spec.tick_size}: {price} is off the tick grid", "tick_size")
                )
        return errors
