"""Reconciliation: a background loop that asks the venue about orders it may still change.

Every ``interval`` seconds (``WOJAK_ENGINE_RECONCILE_SECONDS``) the loop pages through the
store's open orders (``open_orders``: ``accepted``, ``partially_filled``, ``pending``) and:

- looks up ``accepted`` and ``partially_filled`` orders, and ``pending`` ones older than
  ``pending_release_seconds`` (``WOJAK_ENGINE_PENDING_RELEASE_SECONDS``) whose execution lease
  has expired (an engine that crashed after admitting them). What changed is booked through
  the order path's own ``_record`` (``OrderService.reconcile``): every report is checked, a
  later fill is booked at its own price (derived from the cumulative quantity and average),
  a close releases the rest of the reservation; a report that fails its checks is a venue
  anomaly, as on the order path.
- releases a stranded ``pending`` order the venue answers ``not_found`` for: it moves to
  ``expired`` (final: a resend is answered ``duplicate`` and never executed) and its
  reservation is released in the same ``store.record``.
- cancels at the venue a ``day`` order still open after its exchange trading day (the
  day it was created on, in the risk configuration's ``exchange_timezone``) and books the
  answer (``canceled``, reservation released; or a fill that raced the cancel).

The loop works only on orders it holds a lease on (``store.take_leases``, owner
``<engine id>:reconcile``): replicas never book one report twice, and the order path (another
owner) answers a resend of an order being released ``retry`` instead of submitting it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from decimal import Decimal
from typing import Any, Callable

from wojak.engine.domain import TRANSITIONS, Order, OrderEvent, OrderState
from wojak.engine.store import Execution, StoreUnavailable
from wojak.engine.venue import VenueError, VenueReport, VenueStatus, check_report

log = logging.getLogger(__name__)

_EVENTS = {
    VenueStatus.FILLED: OrderEvent.FILLED,
    VenueStatus.PARTIALLY_FILLED: OrderEvent.PARTIALLY_FILLED,
    VenueStatus.ACCEPTED: OrderEvent.ACCEPTED,
    VenueStatus.REJECTED: OrderEvent.REJECTED,
    VenueStatus.CANCELED: OrderEvent.CANCELED,
}
_RESTING = (OrderState.ACCEPTED, OrderState.PARTIALLY_FILLED)


class Reconciler:
    def __init__(
        self,
        service: Any,
        metrics: Any = None,
        *,
        interval: float = 5.0,
        pending_release_seconds: float = 300.0,
        batch: int = 500,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.metrics = metrics
        self.interval = interval
        self.pending_release_seconds = pending_release_seconds
        self.batch = batch
        self.clock = clock  # decides ages and trading days (tests drive it)
        self.owner = f"{service.engine_id}:reconcile"
        self._warned: set[str] = set()

    async def run(self, stop: asyncio.Event) -> None:
        store = self.service.store
        if not (hasattr(store, "open_orders") and hasattr(store, "take_leases")):
            log.warning(
                "the store %s cannot list open orders yet: no reconciliation (resting orders are not"
                " followed, DAY orders do not expire, stranded pending orders are not released)",
                type(store).__name__,
            )
            return
        while not stop.is_set():
            try:
                await self.run_once()
            except StoreUnavailable as exc:  # an outage: one line per pass, not a traceback (readiness says it too)
                log.warning("reconciliation: the store is unavailable (%s); retrying in %.1fs", exc, self.interval)
            except Exception:  # noqa: BLE001 - never die
                log.exception("reconciliation failed; retrying in %.1fs", self.interval)
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except TimeoutError:
                pass

    async def run_once(self) -> Counter[str]:
        """One pass over every open order; counts ``fills``, ``day_expired``, ``released``."""
        counts: Counter[str] = Counter()
        now = self.clock()
        after: tuple[float, str, str] | None = None
        while True:
            page = await self.service.store.open_orders(self.batch, after)
            if page:
                last = page[-1]
                after = (last.created_at, last.account, last.client_order_id)
                await self._reconcile(page, now, counts)
            if len(page) < self.batch:
                return counts

    async def _reconcile(self, page: list[Order], now: float, counts: Counter[str]) -> None:
        service, store = self.service, self.service.store
        due = [
            o
            for o in page
            if o.state is not OrderState.PENDING or (now - o.created_at >= self.pending_release_seconds and o.lease_until <= now)
        ]
        if not due:
            return
        orders = await store.take_leases(due, self.owner, service.lease_seconds)
        if not orders:
            return
        before = {o.key: o.filled_quantity for o in orders}
        try:
            reports = await service.reconcile(orders, book=self._books)
        except VenueError as exc:
            log.warning("reconciliation: venue lookup of %d order(s) failed (%s); retrying", len(orders), exc)
            await store.take_leases(orders, self.owner, 0)  # hand back: a resend may go ahead
            return
        self._count_fills(orders, before, counts)
        stranded = [o for o, r in zip(orders, reports) if o.state is OrderState.PENDING and r.status is VenueStatus.NOT_FOUND]
        if stranded:
            await self._release(stranded, now, counts)
        today = service.risk.trading_day(now)
        past = [
            o
            for o in orders
            if o.time_in_force == "day" and o.state in _RESTING and service.risk.trading_day(o.created_at) < today
        ]
        if past:
            before = {o.key: o.filled_quantity for o in past}
            try:
                await service.reconcile(past, cancel=True, book=self._books)
            except VenueError as exc:
                log.warning("reconciliation: venue cancel of %d expired DAY order(s) failed (%s); retrying", len(past), exc)
                return
            self._count_fills(past, before, counts)
            expired = [o for o in past if o.state is OrderState.CANCELED]
            if expired:
                counts["day_expired"] += len(expired)
                if self.metrics is not None:
                    self.metrics.day_orders_expired.inc(len(expired))
                log.info(
                    "reconciliation: %d DAY order(s) past their trading day cancelled: %s",
                    len(expired),
                    ", ".join(o.key for o in expired[:20]),
                )

    def _books(self, order: Order, report: VenueReport) -> bool:
        """Whether ``report`` changes ``order`` (to be booked through the order path's ``_record``)."""
        if report.status is VenueStatus.NOT_FOUND and order.state is OrderState.PENDING:
            return False  # never reached the venue: released by ``_release``, never booked
        if report.client_order_id != order.client_order_id or check_report(
            order, report, order.filled_quantity, order.average_price
        ):
            return True  # booked as a venue anomaly, like on the order path
        if report.status.value == order.state.value and report.filled_quantity == order.filled_quantity:
            return False  # nothing new
        event = _EVENTS.get(report.status)
        if event is None or (order.state, event) not in TRANSITIONS:
            if order.key not in self._warned:
                self._warned.add(order.key)
                log.error(
                    "reconciliation: the venue reports %s for %s, which is %s: no such transition; left as it is",
                    report.status.value,
                    order.key,
                    order.state.value,
                )
            return False
        return True

    def _count_fills(self, orders: list[Order], before: dict[str, Decimal], counts: Counter[str]) -> None:
        fills = sum(1 for o in orders if o.filled_quantity > before[o.key])
        if fills:
            counts["fills"] += fills
            if self.metrics is not None:
                self.metrics.reconciled_fills.inc(fills)

    async def _release(self, stranded: list[Order], now: float, counts: Counter[str]) -> None:
        """Expire pending orders the venue never saw and release their reservations (one record)."""
        risk = self.service.risk
        day = risk.trading_day()
        executions = []
        for order in stranded:
            order.apply(OrderEvent.EXPIRED)
            order.reason = f"expired: pending {now - order.created_at:.0f}s and never reached the venue; reservation released"
            left = order.quantity - order.filled_quantity
            executions.append(
                Execution(
                    order,
                    OrderState.PENDING,
                    Decimal(0),
                    None,
                    left if order.side.value == "buy" else -left,
                    risk.multiplier(order.symbol),
                    day,
                )
            )
        await self.service.store.record(executions)
        released = [ex.order for ex in executions if ex.applied]
        if not released:
            return
        counts["released"] += len(released)
        if self.metrics is not None:
            self.metrics.pending_released.inc(len(released))
        for order in released:
            log.warning(
                "reconciliation: released %s: pending since %.0fs, the venue never saw it", order.key, now - order.created_at
            )
            await self.service.store.append_audit(
                "order_expired",
                self.owner,
                order.key,
                {
                    "reason": order.reason,
                    "quantity": str(order.quantity),
                    "symbol": order.symbol,
                },
            )
