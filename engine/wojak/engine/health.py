"""Is the order path usable? The store accepting writes and the venue answering.

Readiness goes through the order path, not a bare echo: every batch reports whether the
store took its writes, and a probe loop writes a heartbeat to the store and asks the venue
about a probe order, each with a deadline, so a hung Couchbase or Lambda turns readiness
false even when no orders arrive. A state change is logged once, with counts; failures in
between are only counted (a full disk must not become a traceback per request).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

from wojak.engine.store import StoreUnavailable
from wojak.engine.venue import VenueError

log = logging.getLogger(__name__)

PROBE_ORDER = {
    "client_order_id": "wojak-readiness-probe",
    "account": "wojak-probe",
    "symbol": "PROBE",
    "side": "buy",
    "quantity": "1",
    "order_type": "limit",
    "limit_price": "1",
    "time_in_force": "ioc",
}


class _Part:
    def __init__(self, name: str) -> None:
        self.name = name
        self.ok = True
        self.since = time.time()
        self.failures = 0  # since it last turned bad
        self.reason = ""

    def failed(self, reason: str) -> None:
        self.failures += 1
        self.reason = reason[:300]
        if self.ok:
            self.ok, self.since = False, time.time()
            log.error("%s refuses the order path: %s (readiness false until it recovers)", self.name, self.reason)

    def succeeded(self) -> None:
        if not self.ok:
            log.warning("%s recovered after %d failure(s) in %.1fs", self.name, self.failures, time.time() - self.since)
            self.ok, self.since, self.failures, self.reason = True, time.time(), 0, ""

    def describe(self) -> dict[str, Any]:
        return {"ok": self.ok, "since": self.since, "failures": self.failures, "reason": self.reason or None}


class EngineHealth:
    def __init__(
        self,
        store: Any,
        venue: Any,
        metrics: Any = None,
        interval: float = 2.0,
        timeout: float = 3.0,
        recover: Callable[[], Awaitable[Any]] | None = None,
        recover_timeout: float = 60.0,
    ) -> None:
        """``recover``: run once the store answers again after it failed (and again at each probe
        until it succeeds): a write a failure cut short may have left an outcome recorded whose
        effects were not applied, and the order it belongs to may never be sent again."""
        self.store, self.venue, self.metrics = store, venue, metrics
        self.interval, self.timeout = interval, timeout
        self.recover, self.recover_timeout = recover, recover_timeout
        self.recovery_owed = False
        self.store_part, self.venue_part = _Part("store"), _Part("venue")

    # the order path reports here
    def store_failed(self, exc: BaseException) -> None:
        self.store_part.failed(str(exc))
        self.recovery_owed = True
        self._gauge()

    def store_succeeded(self) -> None:
        self.store_part.succeeded()
        self._gauge()

    def ready(self) -> bool:
        return self.store_part.ok and self.venue_part.ok

    def describe(self) -> dict[str, Any]:
        return {"ready": self.ready(), "store": self.store_part.describe(), "venue": self.venue_part.describe()}

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.ready.set(1 if self.ready() else 0)

    async def probe_once(self) -> bool:
        probe = getattr(self.store, "probe", None)
        try:
            if probe is not None:
                await asyncio.wait_for(probe(), self.timeout)
            self.store_part.succeeded()
        except (StoreUnavailable, TimeoutError, OSError) as exc:
            self.store_part.failed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            self.recovery_owed = True
        if self.store_part.ok and self.recovery_owed and self.recover is not None:
            await self._recover()
        try:
            await asyncio.wait_for(self.venue.lookup([dict(PROBE_ORDER)]), self.timeout)
            self.venue_part.succeeded()
        except (VenueError, TimeoutError, OSError) as exc:
            self.venue_part.failed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        self._gauge()
        return self.ready()

    async def _recover(self) -> None:
        assert self.recover is not None
        try:
            await asyncio.wait_for(self.recover(), self.recover_timeout)
        except (StoreUnavailable, TimeoutError, OSError) as exc:
            log.warning("the recovery scan after the store came back failed (%s); trying again at the next probe", exc)
            return
        self.recovery_owed = False
        log.info("recovery scan done after the store came back")

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.probe_once()
            except Exception:  # noqa: BLE001 - a probe must never take the engine down
                log.exception("readiness probe failed")
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except TimeoutError:
                pass
