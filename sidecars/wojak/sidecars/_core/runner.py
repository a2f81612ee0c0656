"""The broker-sidecar loop: source messages in, engine verdicts out, each message settled once.

``Runner`` turns every message of a ``Source`` into one engine request and settles the
message by the verdict table (``settlement_for``): ack only after the engine's reply,
dead-letter what can never succeed (with a reason code), requeue ``retry`` with a capped
exponential backoff. On stop it drains: no new messages, in-flight ones finish within
``drain_seconds``, whatever is still unsettled is requeued (exactly once), and the drain,
give-backs included, never outlasts ``drain_seconds``.

Every settlement has a deadline (``settle_timeout``): one the broker does not take in time, or
refuses, counts as failed; the broker still owns the message and redelivers it (the engine
answers a redelivered order ``duplicate``, so that is safe), and the in-flight gauge goes down
all the same. Failures are counted per message (by coordinates). A message whose settlements
failed ``settle_attempts`` times is not handled again on its next delivery: it is logged
(coordinates, the failures, the body's sha256 and the body, bounded), counted
(``wojak_sidecar_messages_total{verdict="unsettleable"}``) and handed to ``give_up``, so one
message the broker will not settle cannot hold the queue.

A ``duplicate`` whose original outcome publishes a result (``rejected``, ``denied``,
``venue_anomaly``) publishes it again before the ack: the first publication may be the one
that failed and got the message requeued. Results carry the ``client_order_id`` and the
state, so a consumer that sees one twice can tell.

``serve_sidecar`` (:mod:`.serve`) runs it in a sidecar process.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import logging
import random
import time
from typing import Any, Awaitable

import orjson

from wojak.engine.protocol import (
    Principal,
    Scope,
    Settlement,
    Verdict,
    derive_client_order_id,
    settlement_for,
    validate_order,
    validate_tick,
)
from wojak.engine.protocol.client import EngineClient
from wojak.sidecars._core.health import Readiness
from wojak.sidecars._core.metrics import SidecarMetrics
from wojak.sidecars._core.settings import ORDERS, TICKS
from wojak.sidecars._core.source import SettleFailed, Source, SourceMessage, capped_backoff

log = logging.getLogger(__name__)

INVALID_JSON = "invalid_json"
UNSETTLEABLE = "unsettleable"  # the reason a message is given up with, and its verdict label
_MAX_DETAIL = 2048  # characters of error text carried into a dead letter
_MAX_LOGGED_BODY = 65536  # bytes of a given-up message's body written to the log


def _decode(body: bytes) -> Any:
    """JSON -> Python; raises ValueError with a short reason."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        first = str(exc)
    try:  # orjson refuses integers past 64 bits; the stdlib parses them so validation can name the field
        return json.loads(body)
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise ValueError(first[:_MAX_DETAIL]) from None


class _Attempts:
    """Requeue attempts per message (by coordinates), bounded: drives the exponential backoff."""

    def __init__(self, size: int = 65536) -> None:
        self.size = size
        self._counts: collections.OrderedDict[tuple[Any, ...], int] = collections.OrderedDict()

    def bump(self, key: tuple[Any, ...]) -> int:
        n = self._counts.pop(key, 0) + 1
        self._counts[key] = n
        if len(self._counts) > self.size:
            self._counts.popitem(last=False)
        return n

    def forget(self, key: tuple[Any, ...]) -> None:
        self._counts.pop(key, None)


class _SettleFailures:
    """Failed settlements per message (by coordinates) and the last one's description; bounded."""

    def __init__(self, size: int = 65536) -> None:
        self.size = size
        self._failures: collections.OrderedDict[tuple[Any, ...], tuple[int, str]] = collections.OrderedDict()

    def failed(self, key: tuple[Any, ...], what: str) -> int:
        n = self._failures.pop(key, (0, ""))[0] + 1
        self._failures[key] = (n, what)
        if len(self._failures) > self.size:
            self._failures.popitem(last=False)
        return n

    def get(self, key: tuple[Any, ...]) -> int:
        return self._failures.get(key, (0, ""))[0]

    def last(self, key: tuple[Any, ...]) -> str:
        return self._failures.get(key, (0, ""))[1]

    def forget(self, key: tuple[Any, ...]) -> None:
        self._failures.pop(key, None)


class Runner:
    """Consume ``source`` until ``stop`` is set; at most ``concurrency`` messages in flight."""

    def __init__(
        self,
        source: Source,
        client: EngineClient,
        metrics: SidecarMetrics,
        *,
        concurrency: int = 64,
        drain_seconds: float = 20.0,
        backoff_base: float = 0.25,
        backoff_max: float = 30.0,
        readiness: Readiness | None = None,
        principal: Principal | None = None,
        settle_timeout: float = 10.0,
        settle_attempts: int = 5,
        carries: str = ORDERS,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if settle_timeout <= 0 or settle_attempts < 1:
            raise ValueError("settle_timeout must be positive and settle_attempts at least 1")
        if carries not in (ORDERS, TICKS):
            raise ValueError(f"a source carries {ORDERS} or {TICKS}, not {carries!r}")
        self.carries = carries
        self.source = source
        self.client = client
        self.metrics = metrics
        self.concurrency = concurrency
        self.drain_seconds = drain_seconds
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.readiness = readiness
        self.settle_timeout = settle_timeout
        self.settle_attempts = settle_attempts
        # Whoever can publish to the broker acts as this principal: only the accounts the
        # sidecar's settings allow (WOJAK_SIDECAR_ACCOUNTS). None permits nothing (fail closed).
        self.principal = principal or Principal.of(f"sidecar:{source.name}", (), ())
        self.draining = False
        self._attempts = _Attempts()
        self._settle_failures = _SettleFailures()
        self._inflight: dict[asyncio.Task[None], SourceMessage] = {}
        name = source.name
        self._count_verdict = lambda verdict: metrics.messages.labels(name, verdict).inc()
        self._count_settlement = lambda how: metrics.settlements.labels(name, how).inc()
        self._observe_engine = metrics.engine_seconds.labels(name).observe
        self._inflight_gauge = metrics.inflight.labels(name)

    # -- settlement ------------------------------------------------------------------

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Capped exponential backoff with jitter; the engine's ``retry_after`` is a floor."""
        delay = capped_backoff(attempt, self.backoff_base, self.backoff_max)
        delay *= random.uniform(0.8, 1.0)
        if retry_after:
            delay = max(delay, min(float(retry_after), self.backoff_max))
        return delay

    async def _settle(self, message: SourceMessage, how: Settlement, call: Awaitable[None], timeout: float) -> bool:
        """Await one settlement for at most ``timeout``; False (counted, logged) when the broker
        did not take it: it still owns the message and will redeliver it."""
        try:
            await asyncio.wait_for(call, timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the source's SettleFailed, TimeoutError, a broker error
            what = f"{how.value}: " + (
                f"no answer within {timeout:.1f}s" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
            )
            self._count_settlement("failed")
            if isinstance(exc, SettleFailed) and not exc.counts:  # the broker's failure: the message waits
                log.warning(
                    "settling message %s failed (%s); the broker will redeliver it (not counted toward giving it up)",
                    message.coordinates,
                    what[:300],
                )
                return False
            n = self._settle_failures.failed(message.coordinates, what[:300])
            log.warning(
                "settling message %s failed (%s); the broker will redeliver it (%d of %d before it is given up)",
                message.coordinates,
                what[:300],
                n,
                self.settle_attempts,
            )
            return False
        self._settle_failures.forget(message.coordinates)
        self._count_settlement(how.value)
        return True

    def _deadline(self, extra: float = 0.0) -> float:
        """How long one settlement may take: its broker calls (each bounded by the source's own
        timeout), plus ``extra`` (a requeue's backoff)."""
        return extra + 3 * self.settle_timeout

    async def _ack(self, message: SourceMessage) -> None:
        if await self._settle(message, Settlement.ACK, message.ack(), self._deadline()):
            self._attempts.forget(message.coordinates)

    async def _dead_letter(self, message: SourceMessage, reason: str, detail: Any) -> None:
        log.warning("dead-lettering message %s: %s", message.coordinates, reason)
        if await self._settle(message, Settlement.DEAD_LETTER, message.dead_letter(reason, detail), self._deadline(1.0)):
            self._attempts.forget(message.coordinates)

    async def _requeue(self, message: SourceMessage, retry_after: float | None = None) -> None:
        delay = self.backoff(self._attempts.bump(message.coordinates), retry_after)
        await self._settle(message, Settlement.REQUEUE, message.requeue(delay), self._deadline(delay))

    async def _give_up(self, message: SourceMessage, failures: int) -> None:
        """Take a message off the queue whose settlements kept failing, leaving a full record."""
        coordinates = message.coordinates
        last = self._settle_failures.last(coordinates)
        body = message.body
        shown = body[:_MAX_LOGGED_BODY].decode("utf-8", "backslashreplace")
        log.error(
            "giving up message %s after %d failed settlements (last: %s); the source takes it off the queue "
            "without handling it again. sha256=%s bytes=%d attributes=%s body%s=%s",
            coordinates,
            failures,
            last,
            hashlib.sha256(body).hexdigest(),
            len(body),
            orjson.dumps(message.attributes, default=str).decode(),
            "" if len(body) <= _MAX_LOGGED_BODY else f"[:{_MAX_LOGGED_BODY}]",
            orjson.dumps(shown).decode(),
        )
        self._count_verdict(UNSETTLEABLE)
        detail = {"settle_failures": failures, "last_failure": last}
        await self._settle(message, Settlement.GIVE_UP, message.give_up(UNSETTLEABLE, detail), self._deadline(1.0))

    async def _publish(self, message: SourceMessage, result: dict[str, Any]) -> bool:
        """Publish a result; False (logged) when that failed or took too long."""
        try:
            await asyncio.wait_for(self.source.publish_result(message, result), 2 * self.settle_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "publishing the %s result of %s failed (%s); requeueing it: its redelivery publishes it",
                result.get("verdict"),
                message.coordinates,
                str(exc)[:300] or type(exc).__name__,
            )
            return False
        self._count_settlement("publish")
        return True

    # -- one message -----------------------------------------------------------------

    async def handle(self, message: SourceMessage) -> None:
        """Settle ``message`` at most once; never raises (except cancellation); every broker call
        is bounded, so it always ends and the in-flight gauge always comes back down."""
        self._inflight_gauge.inc()
        try:
            await self._handle(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("handling message %s failed", message.coordinates)
            if message.settled is None:
                try:
                    await self._requeue(message)
                except Exception:
                    log.exception("requeueing message %s failed; the broker will redeliver it", message.coordinates)
        finally:
            self._inflight_gauge.dec()

    async def _handle(self, message: SourceMessage) -> None:
        failures = self._settle_failures.get(message.coordinates)
        if failures >= self.settle_attempts:
            await self._give_up(message, failures)
            return
        if message.refusal is not None:  # the source refused it (unparsed): a dead letter, never the engine
            reason, detail = message.refusal
            self._count_verdict(reason)
            await self._dead_letter(message, reason, detail)
            return
        try:
            data = _decode(message.body)
        except ValueError as exc:
            self._count_verdict(INVALID_JSON)
            await self._dead_letter(message, INVALID_JSON, {"error": f"body is not valid JSON: {exc}"})
            return
        if self.carries == TICKS:
            await self._handle_tick(message, data)
            return
        if isinstance(data, dict) and data.get("client_order_id") is None:
            data["client_order_id"] = derive_client_order_id(self.source.name, *message.coordinates)
        order, errors = validate_order(data)
        if order is None:
            self._count_verdict(Verdict.INVALID.value)
            await self._dead_letter(message, Verdict.INVALID.value, {"errors": [e.as_dict() for e in errors]})
            return
        refusal = self.principal.refusal(Scope.ORDERS_WRITE, order["account"])
        if refusal is not None:  # never sent to the engine (which would refuse it too)
            self._count_verdict(Verdict.FORBIDDEN.value)
            await self._dead_letter(message, refusal[0], {"client_order_id": order["client_order_id"], "detail": refusal[1]})
            return
        started = time.perf_counter()
        reply = await self.client.submit_order(order, self.principal)
        self._observe_engine(time.perf_counter() - started)
        verdict = str(reply.get("verdict", "unknown"))
        self._count_verdict(verdict)
        settlement = settlement_for(verdict)
        result = reply
        if verdict == Verdict.DUPLICATE.value:
            # the first answer's result may be the publication that failed (and requeued this)
            state = reply.get("order", {}).get("state") if isinstance(reply.get("order"), dict) else None
            if state and settlement_for(str(state)) is Settlement.ACK_AND_PUBLISH:
                settlement, result = Settlement.ACK_AND_PUBLISH, {**reply, "verdict": str(state), "duplicate": True}
        if settlement is Settlement.ACK:
            await self._ack(message)
        elif settlement is Settlement.ACK_AND_PUBLISH:
            if await self._publish(message, result):
                await self._ack(message)
            else:  # not acked: requeued, and the redelivery (a duplicate) publishes it
                await self._requeue(message)
        elif settlement is Settlement.DEAD_LETTER:
            detail = {k: reply[k] for k in ("client_order_id", "reason", "errors", "order") if reply.get(k) is not None}
            await self._dead_letter(message, verdict, detail)
        else:
            if verdict != Verdict.RETRY.value:
                log.error("engine answered unknown verdict %r for %s; requeueing", verdict, message.coordinates)
            await self._requeue(message, reply.get("retry_after"))

    async def _handle_tick(self, message: SourceMessage, data: Any) -> None:
        """A tick: validated, sent under ``ticks:write``; the engine's tick rules judge it (a repeated
        or older sequence of the symbol is ``duplicate`` / ``stale``: used once, acked all the same).
        Counted by outcome (``tick_applied``, ``tick_duplicate``, ``tick_stale``, ``tick_suspect``)."""
        tick, errors = validate_tick(data)
        if tick is None:
            self._count_verdict(Verdict.INVALID.value)
            await self._dead_letter(message, Verdict.INVALID.value, {"errors": [e.as_dict() for e in errors]})
            return
        refusal = self.principal.refusal(Scope.TICKS_WRITE)
        if refusal is not None:  # never sent to the engine (which would refuse it too)
            self._count_verdict(Verdict.FORBIDDEN.value)
            await self._dead_letter(message, refusal[0], {"symbol": tick["symbol"], "detail": refusal[1]})
            return
        started = time.perf_counter()
        reply = await self.client.tick(tick, self.principal)
        self._observe_engine(time.perf_counter() - started)
        verdict = str(reply.get("verdict", "unknown"))
        self._count_verdict(f"tick_{reply.get('status')}" if verdict == Verdict.OK.value else verdict)
        settlement = settlement_for(verdict)
        if settlement in (Settlement.ACK, Settlement.ACK_AND_PUBLISH):
            await self._ack(message)
        elif settlement is Settlement.DEAD_LETTER:
            detail = {k: reply[k] for k in ("reason", "errors", "detail") if reply.get(k) is not None}
            await self._dead_letter(message, verdict, {"symbol": tick["symbol"], **detail})
        else:
            if verdict != Verdict.RETRY.value:
                log.error("engine answered unknown verdict %r for tick %s; requeueing", verdict, message.coordinates)
            await self._requeue(message, reply.get("retry_after"))

    # -- the loop --------------------------------------------------------------------

    async def _pump(self, stop: asyncio.Event, slots: asyncio.Semaphore) -> None:
        iterator = self.source.messages().__aiter__()
        while True:
            await slots.acquire()
            try:
                message = await iterator.__anext__()
            except StopAsyncIteration:
                slots.release()
                return
            if stop.is_set():  # arrived while stopping: give it back untouched
                slots.release()
                await self._give_back(message, self.settle_timeout)
                continue
            task = asyncio.create_task(self.handle(message), name=f"wojak-message-{message.coordinates!r:.60}")
            self._inflight[task] = message

            def done(t: asyncio.Task[None]) -> None:
                self._inflight.pop(t, None)
                slots.release()

            task.add_done_callback(done)

    async def _give_back(self, message: SourceMessage, timeout: float) -> None:
        """Requeue an unsettled message now; bounded by ``timeout`` (if the broker does not take
        it, closing the connection returns it)."""
        if message.settled is not None:
            return
        await self._settle(message, Settlement.REQUEUE, message.requeue(0), max(timeout, 0.001))

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set (or the source ends), then drain, within ``drain_seconds``."""
        slots = asyncio.Semaphore(self.concurrency)
        pump = asyncio.create_task(self._pump(stop, slots), name="wojak-runner-pump")
        stopped = asyncio.create_task(stop.wait(), name="wojak-runner-stop")
        try:
            await asyncio.wait({pump, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.drain_seconds
            stopped.cancel()
            self.draining = True
            if self.readiness is not None:
                self.readiness.draining = True
            stop.set()
            try:  # bounded: a broker that does not answer must not eat the drain window
                await asyncio.wait_for(self.source.stop_consuming(), max(0.001, min(self.settle_timeout, deadline - loop.time())))
            except asyncio.TimeoutError:
                log.warning("stopping the consumer took longer than %.1fs; draining anyway", self.settle_timeout)
            except Exception:
                log.exception("stopping the consumer failed")
            if not pump.done():
                pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                try:
                    await pump
                except Exception:
                    log.exception("the source's message iterator failed")
            await self._drain(deadline)

    async def _drain(self, deadline: float) -> None:
        """In-flight messages finish until shortly before ``deadline``; the rest are cancelled and
        given back in the time left (part of the window is kept for that)."""
        loop = asyncio.get_running_loop()
        tasks = dict(self._inflight)
        if not tasks:
            return
        left = deadline - loop.time()
        reserve = min(2.0, max(left, 0) / 4)  # kept to give back what did not finish (a healthy broker takes ms)
        log.info("draining %d in-flight message(s) for up to %.1fs", len(tasks), left)
        _, pending = await asyncio.wait(tasks, timeout=max(left - reserve, 0.001))
        if not pending:
            return
        log.warning("%d message(s) did not finish within the drain window; requeueing them", len(pending))
        for task in pending:
            task.cancel()
        _, stuck = await asyncio.wait(pending, timeout=max(deadline - loop.time(), 0.001))
        unsettled = [tasks[t] for t in pending if t not in stuck]
        if unsettled:
            await asyncio.gather(*(self._give_back(m, deadline - loop.time()) for m in unsettled))
        if stuck:  # still awaiting a broker call past the window: the connection's close returns them
            log.warning(
                "%d message(s) still waiting on the broker at the end of the drain window; closing the "
                "connection returns them to the queue",
                len(stuck),
            )


__all__ = ["INVALID_JSON", "UNSETTLEABLE", "Runner"]
