"""The background delivery loop: outbox -> sink, marked delivered only after the ack."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from wojak.engine.escalation._sinks import EscalationSink, SinkError
from wojak.engine.store import StoreUnavailable

log = logging.getLogger(__name__)


class EscalationDelivery:
    def __init__(
        self,
        store: Any,
        sink: EscalationSink | None,
        metrics: Any = None,
        interval: float = 0.5,
        max_backoff: float = 5.0,
        batch: int = 100,
    ) -> None:
        self.store, self.sink, self.metrics = store, sink, metrics
        self.interval, self.max_backoff, self.batch = interval, max_backoff, batch
        self._warned = False

    async def run_once(self) -> int:
        """Deliver what is in the outbox now, oldest first; returns how many were acknowledged.
        Stops at the first failure (the sink is down: keep the order, retry later)."""
        pending = await self.store.undelivered_escalations(self.batch)
        if self.metrics is not None:
            self.metrics.escalations_pending.set(len(pending))
        if not pending:
            return 0
        if self.sink is None:
            if not self._warned:
                log.warning(
                    "%d escalation(s) wait in the outbox and no sink is configured (WOJAK_ENGINE_ESCALATION_SINK)", len(pending)
                )
                self._warned = True
            return 0
        delivered = 0
        for entry in pending:
            await self.sink.deliver(entry["key"], entry["payload"])  # raises SinkError: stays in the outbox
            await self.store.mark_escalations_delivered([entry["key"]])
            delivered += 1
            if self.metrics is not None:
                self.metrics.escalations_delivered.inc()
        return delivered

    async def run(self, stop: asyncio.Event) -> None:
        backoff = self.interval
        while not stop.is_set():
            try:
                delivered = await self.run_once()
                backoff = self.interval
                if delivered:
                    continue  # more may be waiting
            except SinkError as exc:
                if self.metrics is not None:
                    self.metrics.escalation_failures.inc()
                log.warning("escalation sink unavailable (%s); retrying in %.1fs", exc, backoff)
                backoff = min(backoff * 2, self.max_backoff)
            except StoreUnavailable as exc:  # an outage: one line per attempt, spaced by the backoff
                log.warning("escalation delivery: the store is unavailable (%s); retrying in %.1fs", exc, backoff)
                backoff = min(backoff * 2, self.max_backoff)
            except Exception:  # noqa: BLE001 - never die
                log.exception("escalation delivery failed; retrying")
                backoff = min(backoff * 2, self.max_backoff)
            try:
                await asyncio.wait_for(stop.wait(), backoff)
            except TimeoutError:
                pass
