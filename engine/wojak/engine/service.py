"""The order path (DESIGN.md steps 1-7), run one batch at a time.

1. validate -> ``invalid`` (never reaches risk or the venue)
2-4. ``store.admit``: create the record if absent; a new order is risk-checked inside the
   store's transaction and saved as ``pending`` (with a position reservation), ``denied``
   or ``escalated`` (with an outbox entry). An existing final record answers
   ``duplicate`` (or ``conflict``); an existing ``pending`` one (an earlier crash) is
   looked up at the venue before anything else.
5. execute at the venue, ``client_order_id`` as the idempotency key
6. ``store.record``: order state, tradebook, position
7. reply

Each step is safe to crash after: the batch's commits are the only durable effects, and
a resend finds either nothing, a ``pending`` record (look up, then finish) or a final one.
An account is in at most one running batch (the server's lanes), so its orders are
serialised; batches of other accounts run meanwhile.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import secrets
import socket
import time
from decimal import Decimal
from typing import Any, Callable, Iterator, Mapping

from wojak.engine._faults import crash_point
from wojak.engine.domain import FINAL_STATES, OPEN_STATES, Order, OrderEvent, OrderState
from wojak.engine.protocol import (
    PRINCIPAL_MISSING,
    FieldError,
    MessageType,
    Principal,
    PrincipalError,
    Scope,
    Verdict,
    forbidden,
    validate_order,
    validate_tick,
)
from wojak.engine.risk import Action, RiskEngine
from wojak.engine.store import TICK_APPLIED, AccountView, Execution, Store, StoreUnavailable
from wojak.engine.venue import Venue, VenueError, VenueReport, VenueStatus, check_report, fill_price

log = logging.getLogger(__name__)

_EVENT_FOR_STATUS = {
    VenueStatus.FILLED: OrderEvent.FILLED,
    VenueStatus.PARTIALLY_FILLED: OrderEvent.PARTIALLY_FILLED,
    VenueStatus.ACCEPTED: OrderEvent.ACCEPTED,
    VenueStatus.REJECTED: OrderEvent.REJECTED,
    VenueStatus.CANCELED: OrderEvent.CANCELED,
}
_VERDICT_FOR_STATE = {
    OrderState.FILLED: Verdict.FILLED,
    OrderState.PARTIALLY_FILLED: Verdict.PARTIALLY_FILLED,
    OrderState.ACCEPTED: Verdict.ACCEPTED,
    OrderState.REJECTED: Verdict.REJECTED,
    OrderState.CANCELED: Verdict.REJECTED,
    OrderState.DENIED: Verdict.DENIED,
    OrderState.ESCALATED: Verdict.ESCALATED,
    OrderState.VENUE_ANOMALY: Verdict.VENUE_ANOMALY,
    OrderState.EXPIRED: Verdict.REJECTED,  # released unexecuted by reconciliation
}
_CLOSED = frozenset(FINAL_STATES - OPEN_STATES)

Reply = dict[str, Any]


def _invalid(errors: list[FieldError]) -> Reply:
    return {"verdict": Verdict.INVALID.value, "errors": [e.as_dict() for e in errors]}


def _retry(reason: str, retry_after: float = 1.0) -> Reply:
    return {"verdict": Verdict.RETRY.value, "reason": reason, "retry_after": retry_after}


def _outcome(order: Order, verdict: Verdict | None = None) -> Reply:
    verdict = verdict or _VERDICT_FOR_STATE[order.state]
    return {
        "verdict": verdict.value,
        "client_order_id": order.client_order_id,
        "reason": order.reason,
        "order": order.to_wire(),
    }


class OrderService:
    def __init__(
        self,
        store: Store,
        venue: Venue,
        risk: RiskEngine,
        metrics: Any = None,
        *,
        engine_id: str | None = None,
        lease_seconds: float = 60.0,
        cluster: str | None = None,
    ) -> None:
        # The execution lease: only the engine holding a pending order's live lease may submit
        # it, so two replicas answering resends of one order never both reach the venue. It must
        # outlast the venue's own timeout (checked at start-up).
        # Stable across restarts of one engine (its host and socket: two live engines never share
        # both), so a restarted engine resumes its own leases at once instead of waiting them out.
        self.engine_id = engine_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.lease_seconds = lease_seconds
        self.cluster = cluster  # this engine's cluster (WOJAK_ENGINE_CLUSTER), for account homes
        self.store = store
        self.venue = venue
        self.health: Any = None  # an EngineHealth, told whether each batch's store writes went through
        self.risk = risk
        self.metrics = metrics
        # The last applied tick of each symbol, as the store holds it: refreshed before every
        # batch of orders (only what changed since ``_tick_version``), so every replica's risk
        # reads the same prices.
        self.last_prices: dict[str, Decimal] = {}
        self.tick_at: dict[str, float] = {}  # when each symbol's last tick was applied (wall clock)
        # the start-of-day price: the last price of the trading day before ``tick_day`` (carried
        # by the tick itself), or the last price if no tick has arrived yet today
        self.tick_day: dict[str, str] = {}
        self.tick_sod: dict[str, Decimal] = {}
        self.sod_prices = _StartOfDayPrices(self)
        self._tick_version = -1
        # Accounts whose last venue call was slow (far slower than the venue usually answers):
        # the server's lanes run each of them in a batch of its own, so a slow account's venue
        # call does not take the accounts that happened to share its batch along with it.
        self.slow_accounts: set[str] = set()
        self._venue_typical = 0.0  # seconds, a moving average of venue calls

    async def _refresh_prices(self) -> None:
        version, ticks = await self.store.ticks_since(self._tick_version)
        if version <= self._tick_version:  # another lane's refresh got there first, with as new or newer
            return
        for tick in ticks:
            symbol = tick["symbol"]
            self.last_prices[symbol] = Decimal(tick["last"])
            self.tick_at[symbol] = float(tick.get("received_at") or 0)
            self.tick_day[symbol] = tick.get("day") or ""
            self.tick_sod[symbol] = Decimal(tick.get("sod_price") or tick["last"])
        self._tick_version = version

    async def start(self) -> None:
        """Load the last ticks and resolve orders an earlier crash left ``pending``."""
        await self._refresh_prices()
        now = time.time()
        # another replica's live lease: that engine is resolving it
        pending = [
            o for o in await self.store.pending_orders() if o.lease_owner in (None, self.engine_id) or o.lease_until <= now
        ]
        if pending:
            log.info("resolving %d pending order(s) left by an earlier run", len(pending))
            try:
                reports = await self.venue.lookup([self._venue_order(o) for o in pending])
            except VenueError as exc:
                log.warning("venue unreachable while resolving pending orders (%s); resends will retry", exc)
                return
            found = [(o, r) for o, r in zip(pending, reports) if r.status is not VenueStatus.NOT_FOUND]
            await self._record(found)

    # -- the batch --------------------------------------------------------------------

    async def handle_batch(self, requests: list[tuple[MessageType, dict[str, Any]]]) -> list[Reply]:
        started = time.perf_counter()
        replies: list[Reply | None] = [None] * len(requests)
        orders: list[tuple[int, Order]] = []
        ticks: list[tuple[int, dict[str, Any]]] = []
        now = time.time()
        known: tuple[Any, Principal] | None = None  # the last principal read, by its wire form (one sender, one principal)
        for i, (kind, body) in enumerate(requests):
            expires_at = body.get("expires_at")
            if isinstance(expires_at, (int, float)) and expires_at < now and kind is not MessageType.AUDIT:
                # the sidecar has already answered this one retry: doing it now would act behind its back
                replies[i] = _retry("deadline_passed", 0.05)
                continue
            if kind is MessageType.AUDIT:
                replies[i] = await self._audit(body)
                continue
            raw = body.get("principal")
            if known is not None and raw == known[0]:
                principal = known[1]
            else:
                try:
                    principal = Principal.from_wire(raw)
                except PrincipalError as exc:
                    replies[i] = self._forbidden(PRINCIPAL_MISSING, f"a request must carry a valid principal: {exc}")
                    continue
                known = (raw, principal)
            if kind is MessageType.SUBMIT_ORDER:
                order, errors = validate_order(body.get("order"))
                if order is None:
                    replies[i] = _invalid(errors)
                    continue
                refusal = principal.refusal(Scope.ORDERS_WRITE, order["account"]) or self._not_home(order["account"])
                if refusal is not None:
                    replies[i] = self._forbidden(*refusal, order["client_order_id"])
                    continue
                domain = Order.from_wire(order)
                domain.principal = principal.name
                precision = self.risk.precision_errors(domain)
                if precision:
                    replies[i] = _invalid([FieldError(f, r, c) for f, r, c in precision])
                    continue
                orders.append((i, domain))
            elif kind is MessageType.TICK:
                refusal = principal.refusal(Scope.TICKS_WRITE)
                if refusal is not None:
                    replies[i] = self._forbidden(*refusal)
                    continue
                tick, errors = validate_tick(body.get("tick"))
                if tick is None:
                    replies[i] = _invalid(errors)
                elif self.risk.instrument(tick["symbol"]) is None:
                    replies[i] = _invalid(
                        [FieldError("symbol", "is not an instrument of the risk configuration", "unknown_symbol")]
                    )
                else:
                    ticks.append((i, tick))
            elif kind is MessageType.GET_ORDER:
                replies[i] = await self._get_order(body, principal)
            elif kind is MessageType.CANCEL_ORDER:
                replies[i] = await self._cancel(body, principal)
            elif kind is MessageType.LIST_ORDERS:
                replies[i] = await self._list_orders(body, principal)
            else:
                replies[i] = _invalid([FieldError("message_type", f"{kind.value.decode()} is not batched", "unsupported")])
        crash_point("validated")
        try:
            if ticks:
                outcomes = await self.store.apply_ticks([t for _, t in ticks], self._judge_tick)
                for (i, tick), outcome in zip(ticks, outcomes):
                    replies[i] = {"verdict": Verdict.OK.value, "symbol": tick["symbol"], "status": outcome}
                    if self.metrics is not None:
                        self.metrics.ticks.labels(outcome).inc()
            if orders:
                await self._refresh_prices()
                for i, reply in await self._process_orders(orders):
                    replies[i] = reply
        except StoreUnavailable as exc:
            if self.health is not None:
                self.health.store_failed(exc)  # logs the change once, then counts
            else:
                log.warning("store unavailable: %s", exc)
            for i, _ in orders:
                replies[i] = _retry("store_unavailable")
            for i, _ in ticks:
                replies[i] = _retry("store_unavailable")
        if self.metrics is not None:
            self.metrics.observe_batch(replies, time.perf_counter() - started)
        return replies  # type: ignore[return-value]

    def _not_home(self, account: str) -> tuple[str, str] | None:
        """One writer per account across clouds: an account homed on another cluster is refused
        before anything is written here (a write here would race its home over XDCR)."""
        if self.cluster is None and not self.risk.has_homes:
            return None
        home = self.risk.home(account)
        if home is None:
            return "account_home_unknown", f"account {account} has no home cluster in the risk config (home_cluster)"
        if home != self.cluster:
            return "account_homed_elsewhere", f"account {account} is traded on cluster {home}, not on {self.cluster}"
        return None

    def _forbidden(self, code: str, detail: str, client_order_id: str | None = None) -> Reply:
        if self.metrics is not None:
            self.metrics.forbidden.labels(code).inc()
        return forbidden(code, detail, client_order_id)

    def _judge_tick(self, stored: dict[str, Any] | None, tick: dict[str, Any], now: float) -> str:
        """Decide, inside the store's transaction, what a tick does to its symbol's last price.

        ``stale`` / ``duplicate``: an older or repeated sequence (a redundant feed), ignored.
        ``suspect``: implausible (last far outside its own quote, or a jump larger than
        ``max_tick_jump_percent`` within ``tick_jump_seconds`` of the last applied tick), held
        out of risk. ``applied``: the new last price every replica reads."""
        sequence = tick.get("sequence")
        if stored is not None and sequence is not None and stored.get("sequence") is not None:
            previous = int(stored["sequence"])
            if sequence == previous:
                return "duplicate"
            if sequence < previous:
                return "stale"
            if sequence > previous + 1 and self.metrics is not None:
                self.metrics.tick_gaps.inc(sequence - previous - 1)
                log.info("tick gap on %s: sequence %d after %d", tick["symbol"], sequence, previous)
        day = self.risk.trading_day(now)
        if stored is None:
            tick["day"], tick["sod_price"] = day, tick["last"]  # nothing older: the day starts here
        elif stored.get("day") == day:
            tick["day"], tick["sod_price"] = day, stored.get("sod_price") or stored["last"]
        else:  # the first tick of a new trading day: the last one of the day before is its start
            tick["day"], tick["sod_price"] = day, stored["last"]
        jump, window = self.risk.tick_limits(tick["symbol"])
        if jump is not None:
            last, bid, ask = Decimal(tick["last"]), Decimal(tick["bid"]), Decimal(tick["ask"])
            slack = jump / 100
            if last < bid * (1 - slack) or last > ask * (1 + slack):
                log.warning("suspect tick on %s: last %s outside its quote %s/%s", tick["symbol"], last, bid, ask)
                return "suspect"
            if stored is not None and (window is None or now - float(stored["received_at"]) <= window):
                before = Decimal(stored["last"])
                if abs(last - before) * 100 > jump * before:
                    log.warning("suspect tick on %s: %s -> %s moves more than %s%%", tick["symbol"], before, last, jump)
                    return "suspect"
        return TICK_APPLIED

    async def _audit(self, body: dict[str, Any]) -> Reply:
        event, actor, detail = body.get("event"), body.get("actor"), body.get("detail")
        if not (
            isinstance(event, str)
            and _NAME.fullmatch(event)
            and isinstance(actor, str)
            and _NAME.fullmatch(actor)
            and isinstance(detail, dict)
            and len(str(detail)) <= 4096
        ):
            return _invalid([FieldError("audit", "needs event and actor names and a small detail map", "audit")])
        try:
            await self.store.append_audit(event, actor, "", detail)
        except StoreUnavailable:
            return _retry("store_unavailable")
        return {"verdict": Verdict.OK.value}

    async def _process_orders(self, orders: list[tuple[int, Order]]) -> list[tuple[int, Reply]]:
        admitted = await self.store.admit(
            [o for _, o in orders], self._decide, self.risk.trading_day(), lease=(self.engine_id, self.lease_seconds)
        )
        crash_point("admitted")
        new_ids = {o.key for (o, existed) in admitted if not existed}
        to_execute: list[Order] = []
        to_lookup: list[Order] = []
        followers: list[tuple[int, Order, Order]] = []  # (index, request, leader record)
        awaiting: list[tuple[int, Order]] = []  # (index, record): answered from the venue phase's outcome
        out: list[tuple[int, Reply]] = []
        seen: set[str] = set()
        for (i, request), (record, existed) in zip(orders, admitted):
            coid = request.client_order_id
            key = request.key
            if existed and record.fingerprint != request.fingerprint:
                out.append(
                    (
                        i,
                        {
                            "verdict": Verdict.CONFLICT.value,
                            "client_order_id": coid,
                            "reason": "client_order_id was used for an order with different content",
                            "order": record.to_wire(),
                        },
                    )
                )
            elif existed and (key in new_ids or key in seen):
                followers.append((i, request, record))
            elif existed and record.state in FINAL_STATES:
                out.append((i, _outcome(record, Verdict.DUPLICATE)))
            elif existed and record.state is OrderState.PENDING and record.lease_owner not in (None, self.engine_id):
                # another engine holds its live lease and may be at the venue right now
                out.append((i, _retry("order_in_flight", max(0.05, min(record.lease_until - time.time(), 5.0)))))
            elif record.state is OrderState.PENDING:
                (to_lookup if existed else to_execute).append(record)
                seen.add(key)
                awaiting.append((i, record))
            else:  # a new order that risk denied or escalated
                out.append((i, _outcome(record)))
        lapsed: set[str] = set()
        if to_execute or to_lookup:
            lapsed = await self._venue_phase(to_execute, to_lookup)
        for i, record in awaiting:
            if record.state is not OrderState.PENDING:
                out.append((i, _outcome(record)))
            else:  # left to the lease's new holder, or the venue did not answer
                out.append((i, _retry("order_in_flight", 0.05) if record.key in lapsed else _retry("venue_unavailable")))
        for i, _request, leader in followers:
            if leader.state is OrderState.PENDING:
                out.append((i, _retry("venue_unavailable")))
            else:
                out.append((i, _outcome(leader, Verdict.DUPLICATE)))
        return out

    def _decide(self, order: Order, view: AccountView) -> dict[str, Any] | None:
        view.sod_prices = self.sod_prices
        decision = self.risk.check(order, view, self.last_prices, self.tick_at, view.now or None)
        if decision.shadow and self.metrics is not None:
            self.metrics.observe_shadow(decision.shadow)
        if decision.halt is not None and view.state != "HALTED":
            view.halt = decision.halt
            log.error("account %s HALTED: %s (stored; reset it to trade again)", order.account, decision.halt)
            if self.metrics is not None:
                self.metrics.account_halts.inc()
        if decision.action is None:
            order.apply(OrderEvent.SUBMITTED)
            view.loss_per_unit = decision.loss_per_unit  # reserved with the position until recorded
            return None
        order.reason = decision.reason
        if decision.action is Action.DENY:
            order.apply(OrderEvent.DENIED)
            return None
        order.apply(OrderEvent.ESCALATED)
        position = view.position(order.symbol)
        return {
            "key": f"esc:{order.key}",
            "order": order.to_wire(),
            "breaches": [{"rule": b.rule, "code": b.code, "detail": b.detail} for b in decision.breaches],
            "position": {
                "quantity": str(position.quantity),
                "pending_buy": str(position.pending_buy),
                "pending_sell": str(position.pending_sell),
                "pending_loss": str(position.pending_loss),
            },
        }

    def _venue_order(self, order: Order) -> dict[str, Any]:
        wire = {
            "client_order_id": order.client_order_id,
            "account": order.account,
            "symbol": order.symbol,
            "side": order.side.value,
            "quantity": str(order.quantity),
            "order_type": order.order_type,
            "limit_price": None if order.limit_price is None else str(order.limit_price),
            "time_in_force": order.time_in_force,
        }
        last = self.last_prices.get(order.symbol)
        if last is not None:
            wire["reference_price"] = str(last)
        return wire

    async def _hold_leases(self, orders: list[Order], lapsed: set[str]) -> list[Order]:
        """The orders whose execution lease this engine still holds for long enough to reach the
        venue: a lease with less than half its length left is renewed first (``take_leases``: only
        if the order is unchanged and the lease still ours or free). A batch can outlast a lease
        (a large one on a contended store, a loaded machine); once it lapses another replica may
        take the order over, so this engine must not submit it (nor book a lookup of it): those
        are added to ``lapsed``."""
        now = time.time()
        short = [o for o in orders if o.lease_owner != self.engine_id or o.lease_until - now < self.lease_seconds / 2]
        if not short:
            return orders
        renewed = {o.key: o.lease_until for o in await self.store.take_leases(short, self.engine_id, self.lease_seconds)}
        lost = {o.key for o in short} - renewed.keys()
        lapsed |= lost
        held = []
        for order in orders:
            until = renewed.get(order.key)
            if until is not None:
                order.lease_owner, order.lease_until = self.engine_id, until
            elif order.key in lost:
                log.warning("lease on %s lapsed before the venue and was taken over: left to its holder", order.key)
                if self.metrics is not None:
                    self.metrics.leases_lapsed.inc()
                continue
            held.append(order)
        return held

    async def _venue_phase(self, to_execute: list[Order], to_lookup: list[Order]) -> set[str]:
        """Look up, execute and record; returns the keys of orders left to another lease holder."""
        resolved: list[tuple[Order, VenueReport]] = []
        lapsed: set[str] = set()
        to_lookup = await self._hold_leases(to_lookup, lapsed) if to_lookup else to_lookup
        if to_lookup:
            try:
                reports = await self.venue.lookup([self._venue_order(o) for o in to_lookup])
            except VenueError as exc:
                log.warning("venue lookup failed: %s", exc)
                reports = []
            for order, report in zip(to_lookup, reports):
                if report.status is VenueStatus.NOT_FOUND:
                    to_execute.append(order)  # never reached the venue: safe to submit now
                else:
                    resolved.append((order, report))
        to_execute = await self._hold_leases(to_execute, lapsed) if to_execute else to_execute
        if to_execute:
            try:
                suspended = _Suspended()  # a call that never waits holds up no other lane, however long
                started = time.perf_counter()
                try:
                    reports = await self.venue.execute([self._venue_order(o) for o in to_execute])
                finally:
                    waited = suspended.cancel()
                    self._note_venue_time(to_execute, time.perf_counter() - started if waited else 0.0)
                resolved.extend(zip(to_execute, reports))
            except VenueError as exc:  # outcome unknown: stays pending, looked up on resend
                log.warning("venue execute failed: %s", exc)
                if exc.partial:  # the parts that did answer are booked now
                    resolved.extend((o, r) for o, r in zip(to_execute, exc.partial) if r is not None)
        crash_point("executed")
        if resolved:
            await self._record(resolved)
        crash_point("recorded")
        return lapsed

    def _note_venue_time(self, orders: list[Order], seconds: float) -> None:
        """Mark the accounts of a slow venue call that waited (over 20 ms and 5x the usual), clear
        those of a normal one. A batch of one slow account alone that turns fast clears it again."""
        slow = seconds > max(_SLOW_VENUE_FLOOR, 5 * self._venue_typical)
        self._venue_typical += (seconds - self._venue_typical) * 0.05
        accounts = {o.account for o in orders}
        if slow:
            self.slow_accounts |= accounts
        elif self.slow_accounts:
            self.slow_accounts -= accounts

    async def _record(self, resolved: list[tuple[Order, VenueReport]]) -> None:
        executions = []
        anomalies: list[tuple[Order, str]] = []
        day = self.risk.trading_day()
        for order, report in resolved:
            if report.client_order_id != order.client_order_id:
                problem: str | None = f"report for {report.client_order_id!r}"
            else:
                problem = check_report(order, report, order.filled_quantity, order.average_price)
            expected = order.state
            previous_fill, previous_average = order.filled_quantity, order.average_price
            if problem is not None:
                # never booked: no fill, the reservation stays held, people decide
                order.apply(OrderEvent.VENUE_ANOMALY_DETECTED)
                order.reason = f"venue_anomaly: {problem}"[:512]
                anomalies.append((order, problem))
                executions.append(
                    Execution(order, expected, Decimal(0), None, Decimal(0), self.risk.multiplier(order.symbol), day)
                )
                continue
            event = _EVENT_FOR_STATUS.get(report.status)
            if event is None:
                log.error("venue answered %s for %s; left pending", report.status, order.client_order_id)
                continue
            order.apply(event)
            order.venue_order_id = report.venue_order_id or order.venue_order_id
            order.reason = report.reason
            fill = report.filled_quantity - previous_fill
            price = None
            if fill > 0:
                order.filled_quantity = report.filled_quantity
                order.average_price = report.average_price
                # the new fill at its own price, not the cumulative average
                price = fill_price(report.filled_quantity, report.average_price, previous_fill, previous_average)  # type: ignore[arg-type]
            sign = 1 if order.side.value == "buy" else -1
            release = (max(fill, Decimal(0)) if order.state not in _CLOSED else order.quantity - previous_fill) * sign
            executions.append(
                Execution(
                    order,
                    expected,
                    max(fill, Decimal(0)),
                    price,
                    release,
                    self.risk.multiplier(order.symbol),
                    day,
                    pnl_quantum=self.risk.pnl_quantum(order.symbol),
                )
            )
        if executions:
            await self.store.record(executions)
        for order, problem in anomalies:
            await self._venue_anomaly(order, problem)

    async def reconcile(
        self, orders: list[Order], cancel: bool = False, book: Callable[[Order, VenueReport], bool] = lambda order, report: True
    ) -> list[VenueReport]:
        """The reconciliation loop's venue step (``wojak.engine.reconcile``): look up (or cancel) open
        orders at the venue and book the reports ``book`` selects through ``_record`` (the same
        checks, own-price fills and releases as the order path). Every report, in order; raises
        ``VenueError``."""
        wire = [self._venue_order(o) for o in orders]
        reports = await (self.venue.cancel(wire) if cancel else self.venue.lookup(wire))
        await self._record([(o, r) for o, r in zip(orders, reports) if book(o, r)])
        return reports

    async def _venue_anomaly(self, order: Order, problem: str) -> None:
        """A report that failed its checks: the account may only reduce until people look, and
        the external risk system hears of it (through the outbox, like any escalation)."""
        log.error("VENUE ANOMALY on %s: %s; account %s set REDUCING", order.key, problem, order.account)
        if self.metrics is not None:
            self.metrics.venue_anomalies.inc()
        stored = await self.store.get_account_state(order.account)
        if stored is None or stored.get("state") not in ("HALTED", "REDUCING"):
            await self.store.set_account_state(
                order.account, "REDUCING", f"venue_anomaly on {order.client_order_id}", actor=f"engine:{self.engine_id}"
            )
        await self.store.raise_escalation(
            f"anomaly:{order.key}",
            order.client_order_id,
            {
                "kind": "venue_anomaly",
                "order": order.to_wire(),
                "problem": problem,
            },
        )

    # -- queries ----------------------------------------------------------------------

    async def _find(self, body: dict[str, Any], principal: Principal, scope: Scope) -> tuple[Order | None, Reply | None]:
        """The order a query names (account + client_order_id), or the reply that says why there is none."""
        coid, account = body.get("client_order_id"), body.get("account")
        errors = [
            FieldError(f, "must be a string", "string_type")
            for f, v in (("account", account), ("client_order_id", coid))
            if not isinstance(v, str)
        ]
        if errors:
            return None, _invalid(errors)
        refusal = principal.refusal(scope, account)
        if refusal is not None:
            return None, self._forbidden(*refusal, coid)
        assert isinstance(account, str) and isinstance(coid, str)  # checked above
        order = await self.store.get_order(account, coid)
        if order is None:
            return None, {"verdict": Verdict.NOT_FOUND.value, "client_order_id": coid}
        return order, None

    async def _get_order(self, body: dict[str, Any], principal: Principal) -> Reply:
        order, reply = await self._find(body, principal, Scope.ORDERS_READ)
        if order is None:
            return reply  # type: ignore[return-value]
        return {"verdict": Verdict.OK.value, "client_order_id": order.client_order_id, "order": order.to_wire()}

    async def _list_orders(self, body: dict[str, Any], principal: Principal) -> Reply:
        """The principal's orders, newest first, ``limit`` (1-500) per page; ``cursor`` continues."""
        account, limit, cursor = body.get("account"), body.get("limit", 100), body.get("cursor")
        if account is not None and not isinstance(account, str):
            return _invalid([FieldError("account", "must be a string", "string_type")])
        if type(limit) is not int or not 1 <= limit <= _MAX_PAGE:
            return _invalid([FieldError("limit", f"must be an integer from 1 to {_MAX_PAGE}", "int_type")])
        before = None
        if cursor is not None:
            before = _decode_cursor(cursor)
            if before is None:
                return _invalid([FieldError("cursor", "is not a cursor this engine issued", "cursor")])
        refusal = principal.refusal(Scope.ORDERS_READ, account)
        if refusal is not None:
            return self._forbidden(*refusal)
        try:
            found = await self.store.list_orders(limit, account, principal.accounts, before)
        except StoreUnavailable:
            return _retry("store_unavailable")
        last = found[-1] if len(found) == limit else None
        return {
            "verdict": Verdict.OK.value,
            "orders": [o.to_wire() for o in found],
            "next_cursor": None if last is None else _encode_cursor(last),
        }

    async def _cancel(self, body: dict[str, Any], principal: Principal) -> Reply:
        order, reply = await self._find(body, principal, Scope.ORDERS_WRITE)
        if order is None:
            return reply  # type: ignore[return-value]
        coid = order.client_order_id
        if order.state not in (OrderState.ACCEPTED, OrderState.PARTIALLY_FILLED):
            return {
                "verdict": Verdict.REJECTED.value,
                "client_order_id": coid,
                "reason": f"not_open: order is {order.state.value}",
                "order": order.to_wire(),
            }
        try:
            reports = await self.venue.cancel([self._venue_order(order)])
        except VenueError:
            return _retry("venue_unavailable")
        await self._record([(order, reports[0])])
        return {"verdict": Verdict.OK.value, "client_order_id": coid, "order": order.to_wire()}


class _Suspended:
    """Whether the caller's coroutine waited since this was made: a callback scheduled now runs
    only once the running step ends, so ``cancel()`` is True exactly when it yielded since."""

    __slots__ = ("_handle", "_ran")

    def __init__(self) -> None:
        self._ran = False
        self._handle = asyncio.get_running_loop().call_soon(self._mark)

    def _mark(self) -> None:
        self._ran = True

    def cancel(self) -> bool:
        self._handle.cancel()
        return self._ran


class _StartOfDayPrices(Mapping[str, Decimal]):
    """Each symbol's start-of-day price, looked up only for the symbols risk asks about."""

    def __init__(self, service: "OrderService") -> None:
        self._service = service

    def __getitem__(self, symbol: str) -> Decimal:
        s = self._service
        last = s.last_prices[symbol]
        return s.tick_sod.get(symbol, last) if s.tick_day.get(symbol) == s.risk.trading_day() else last

    def __iter__(self) -> Iterator[str]:
        return iter(self._service.last_prices)

    def __len__(self) -> int:
        return len(self._service.last_prices)


_MAX_PAGE = 500
_SLOW_VENUE_FLOOR = 0.02  # seconds: a venue call faster than this is never slow
_NAME = re.compile(r"[A-Za-z0-9._:@-]{1,64}")


def _encode_cursor(order: Order) -> str:
    raw = json.dumps([repr(order.created_at), order.account, order.client_order_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: Any) -> tuple[float, str, str] | None:
    if not isinstance(cursor, str) or len(cursor) > 512:
        return None
    try:
        at, account, coid = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return float(at), str(account), str(coid)
    except (ValueError, TypeError):
        return None
