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
Batches run one after another, so orders of one account are serialised.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from decimal import Decimal
from typing import Any

from wojak.engine._faults import crash_point
from wojak.engine.domain import FINAL_STATES, Order, OrderEvent, OrderState
from wojak.engine.domain._orders import OPEN_STATES
from wojak.engine.protocol import FieldError, MessageType, Verdict, validate_order, validate_tick
from wojak.engine.risk import Action, RiskEngine
from wojak.engine.store import AccountView, Execution, Store, StoreUnavailable
from wojak.engine.venue import Venue, VenueError, VenueReport, VenueStatus

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
    def __init__(self, store: Store, venue: Venue, risk: RiskEngine, metrics: Any = None) -> None:
        self.store = store
        self.venue = venue
        self.risk = risk
        self.metrics = metrics
        self.last_prices: dict[str, Decimal] = {}
        self.tick_at: dict[str, float] = {}  # when each symbol's last tick arrived (wall clock)

    async def start(self) -> None:
        """Load the last ticks and resolve orders an earlier crash left ``pending``."""
        for symbol, tick in (await self.store.load_ticks()).items():
            self.last_prices[symbol] = Decimal(tick["last"])
            self.tick_at[symbol] = float(tick.get("received_at") or 0)
        pending = await self.store.pending_orders()
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
        started_wall = time.time()
        replies: list[Reply | None] = [None] * len(requests)
        orders: list[tuple[int, Order]] = []
        ticks: list[dict[str, Any]] = []
        for i, (kind, body) in enumerate(requests):
            if kind is MessageType.SUBMIT_ORDER:
                order, errors = validate_order(body.get("order"))
                if order is None:
                    replies[i] = _invalid(errors)
                    continue
                domain = Order.from_wire(order)
                precision = self.risk.precision_errors(domain)
                if precision:
                    replies[i] = _invalid([FieldError(f, r, c) for f, r, c in precision])
                    continue
                orders.append((i, domain))
            elif kind is MessageType.TICK:
                tick, errors = validate_tick(body.get("tick"))
                if tick is None:
                    replies[i] = _invalid(errors)
                else:
                    ticks.append(tick)
                    self.last_prices[tick["symbol"]] = Decimal(tick["last"])
                    self.tick_at[tick["symbol"]] = started_wall
                    replies[i] = {"verdict": Verdict.OK.value, "symbol": tick["symbol"]}
            elif kind is MessageType.GET_ORDER:
                replies[i] = await self._get_order(body)
            elif kind is MessageType.CANCEL_ORDER:
                replies[i] = await self._cancel(body)
            else:
                replies[i] = _invalid([FieldError("message_type", f"{kind.value.decode()} is not batched", "unsupported")])
        crash_point("validated")
        try:
            if ticks:
                await self.store.put_ticks(ticks)
            if orders:
                for i, reply in await self._process_orders(orders):
                    replies[i] = reply
        except StoreUnavailable as exc:
            log.warning("store unavailable: %s", exc)
            for i, _ in orders:
                replies[i] = _retry("store_unavailable")
            for i, (kind, _) in enumerate(requests):
                if kind is MessageType.TICK and replies[i] and replies[i]["verdict"] == "ok":
                    replies[i] = _retry("store_unavailable")
        if self.metrics is not None:
            self.metrics.observe_batch(replies, time.perf_counter() - started)
        return replies  # type: ignore[return-value]

    async def _process_orders(self, orders: list[tuple[int, Order]]) -> list[tuple[int, Reply]]:
        admitted = await self.store.admit([o for _, o in orders], self._decide, self.risk.trading_day())
        crash_point("admitted")
        new_ids = {o.client_order_id for (o, existed) in admitted if not existed}
        to_execute: list[Order] = []
        to_lookup: list[Order] = []
        followers: list[tuple[int, Order, Order]] = []  # (index, request, leader record)
        out: list[tuple[int, Reply]] = []
        seen: set[str] = set()
        for (i, request), (record, existed) in zip(orders, admitted):
            coid = request.client_order_id
            if existed and record.fingerprint != request.fingerprint:
                out.append((i, {"verdict": Verdict.CONFLICT.value, "client_order_id": coid,
                                "reason": "client_order_id was used for an order with different content",
                                "order": record.to_wire()}))  # fmt: skip
            elif existed and (coid in new_ids or coid in seen):
                followers.append((i, request, record))
            elif existed and record.state in FINAL_STATES:
                out.append((i, _outcome(record, Verdict.DUPLICATE)))
            elif record.state is OrderState.PENDING:
                (to_lookup if existed else to_execute).append(record)
                seen.add(coid)
                out.append((i, {"_await": record}))
            else:  # a new order that risk denied or escalated
                out.append((i, _outcome(record)))
        if to_execute or to_lookup:
            await self._venue_phase(to_execute, to_lookup)
        results: list[tuple[int, Reply]] = []
        for i, reply in out:
            record = reply.get("_await")
            if record is None:
                results.append((i, reply))
            elif record.state is OrderState.PENDING:
                results.append((i, _retry("venue_unavailable")))
            else:
                results.append((i, _outcome(record)))
        for i, _request, leader in followers:
            if leader.state is OrderState.PENDING:
                results.append((i, _retry("venue_unavailable")))
            else:
                results.append((i, _outcome(leader, Verdict.DUPLICATE)))
        return results

    def _decide(self, order: Order, view: AccountView) -> dict[str, Any] | None:
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
            "key": f"esc:{order.client_order_id}",
            "order": order.to_wire(),
            "breaches": [{"rule": b.rule, "code": b.code, "detail": b.detail} for b in decision.breaches],
            "position": {"quantity": str(position.quantity), "pending_buy": str(position.pending_buy),
                         "pending_sell": str(position.pending_sell), "pending_loss": str(position.pending_loss)},
        }  # fmt: skip

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

    async def _venue_phase(self, to_execute: list[Order], to_lookup: list[Order]) -> None:
        resolved: list[tuple[Order, VenueReport]] = []
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
        if to_execute:
            try:
                reports = await self.venue.execute([self._venue_order(o) for o in to_execute])
                resolved.extend(zip(to_execute, reports))
            except VenueError as exc:  # outcome unknown: stays pending, looked up on resend
                log.warning("venue execute failed: %s", exc)
        crash_point("executed")
        if resolved:
            await self._record(resolved)
        crash_point("recorded")

    async def _record(self, resolved: list[tuple[Order, VenueReport]]) -> None:
        executions = []
        day = self.risk.trading_day()
        for order, report in resolved:
            event = _EVENT_FOR_STATUS.get(report.status)
            if event is None:
                log.error("venue answered %s for %s; left pending", report.status, order.client_order_id)
                continue
            expected = order.state
            previous_fill = order.filled_quantity
            order.apply(event)
            order.venue_order_id = report.venue_order_id or order.venue_order_id
            order.reason = report.reason
            fill = report.filled_quantity - previous_fill
            if fill > 0:
                order.filled_quantity = report.filled_quantity
                order.average_price = report.average_price
            sign = 1 if order.side.value == "buy" else -1
            release = (max(fill, Decimal(0)) if order.state not in _CLOSED else order.quantity - previous_fill) * sign
            executions.append(
                Execution(order, expected, max(fill, Decimal(0)), report.average_price, release,
                          self.risk.multiplier(order.symbol), day)
            )  # fmt: skip
        if executions:
            await self.store.record(executions)

    # -- queries ----------------------------------------------------------------------

    async def _find(self, body: dict[str, Any]) -> tuple[Order | None, Reply | None]:
        """The order a query names, or the reply that says why there is none."""
        coid = body.get("client_order_id")
        if not isinstance(coid, str):
            return None, _invalid([FieldError("client_order_id", "must be a string", "string_type")])
        order = await self.store.get_order(coid)
        if order is None:
            return None, {"verdict": Verdict.NOT_FOUND.value, "client_order_id": coid}
        return order, None

    async def _get_order(self, body: dict[str, Any]) -> Reply:
        order, reply = await self._find(body)
        if order is None:
            return reply  # type: ignore[return-value]
        return {"verdict": Verdict.OK.value, "client_order_id": order.client_order_id, "order": order.to_wire()}

    async def _cancel(self, body: dict[str, Any]) -> Reply:
        order, reply = await self._find(body)
        if order is None:
            return reply  # type: ignore[return-value]
        coid = order.client_order_id
        if order.state not in (OrderState.ACCEPTED, OrderState.PARTIALLY_FILLED):
            return {"verdict": Verdict.REJECTED.value, "client_order_id": coid,
                    "reason": f"not_open: order is {order.state.value}", "order": order.to_wire()}  # fmt: skip
        try:
            reports = await self.venue.cancel([self._venue_order(order)])
        except VenueError:
            return _retry("venue_unavailable")
        await self._record([(order, reports[0])])
        return {"verdict": Verdict.OK.value, "client_order_id": coid, "order": order.to_wire()}
