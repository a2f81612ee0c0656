"""The broker-sidecar loop: source messages in, engine verdicts out, each message settled once.

``Runner`` turns every message of a ``Source`` into one engine request and settles the
message by the verdict table (``settlement_for``): ack only after the engine's reply,
dead-letter what can never succeed (with a reason code), requeue ``retry`` with a capped
exponential backoff. On stop it drains: no new messages, in-flight ones finish within
``drain_seconds``, whatever is still unsettled is requeued (exactly once).

``serve_sidecar`` wires a source to the engine client, the runner, the health server
(/healthz /readyz /metrics) and SIGTERM/SIGINT: every broker sidecar's entry point uses it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import random
import signal
import time
from dataclasses import dataclass
from typing import Any, Awaitable

import orjson
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from wojak.engine.protocol import (
    Principal,
    PrincipalError,
    Scope,
    Settlement,
    Verdict,
    default_socket_path,
    derive_client_order_id,
    settlement_for,
    validate_order,
)
from wojak._runtime import run
from wojak.sidecars._core.client import EngineClient
from wojak.sidecars._core.health import Readiness, add_health_routes
from wojak.sidecars._core.metrics import SidecarMetrics
from wojak.sidecars._core.source import Source, SourceMessage

log = logging.getLogger(__name__)

INVALID_JSON = "invalid_json"
_MAX_DETAIL = 2048  # characters of error text carried into a dead letter


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
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.source = source
        self.client = client
        self.metrics = metrics
        self.concurrency = concurrency
        self.drain_seconds = drain_seconds
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.readiness = readiness
        # Whoever can publish to the broker acts as this principal: only the accounts the
        # sidecar's settings allow (WOJAK_SIDECAR_ACCOUNTS). None permits nothing (fail closed).
        self.principal = principal or Principal.of(f"sidecar:{source.name}", (), ())
        self.draining = False
        self._attempts = _Attempts()
        self._inflight: dict[asyncio.Task[None], SourceMessage] = {}
        name = source.name
        self._count_verdict = lambda verdict: metrics.messages.labels(name, verdict).inc()
        self._count_settlement = lambda how: metrics.settlements.labels(name, how).inc()
        self._observe_engine = metrics.engine_seconds.labels(name).observe
        self._inflight_gauge = metrics.inflight.labels(name)

    # -- settlement ------------------------------------------------------------------

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Capped exponential backoff with jitter; the engine's ``retry_after`` is a floor."""
        delay = min(self.backoff_max, self.backoff_base * (2 ** min(attempt - 1, 30)))
        delay *= random.uniform(0.8, 1.0)
        if retry_after:
            delay = max(delay, min(float(retry_after), self.backoff_max))
        return delay

    async def _ack(self, message: SourceMessage) -> None:
        self._attempts.forget(message.coordinates)
        await message.ack()
        self._count_settlement("ack")

    async def _dead_letter(self, message: SourceMessage, reason: str, detail: Any) -> None:
        self._attempts.forget(message.coordinates)
        log.warning("dead-lettering message %s: %s", message.coordinates, reason)
        await message.dead_letter(reason, detail)
        self._count_settlement("dead_letter")

    async def _requeue(self, message: SourceMessage, retry_after: float | None = None) -> None:
        delay = self.backoff(self._attempts.bump(message.coordinates), retry_after)
        await message.requeue(delay)
        self._count_settlement("requeue")

    # -- one message -----------------------------------------------------------------

    async def handle(self, message: SourceMessage) -> None:
        """Settle ``message`` exactly once; never raises (except cancellation)."""
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
        try:
            data = _decode(message.body)
        except ValueError as exc:
            self._count_verdict(INVALID_JSON)
            await self._dead_letter(message, INVALID_JSON, {"error": f"body is not valid JSON: {exc}"})
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
        if settlement is Settlement.ACK:
            await self._ack(message)
        elif settlement is Settlement.ACK_AND_PUBLISH:
            await self.source.publish_result(message, reply)  # raises -> not acked -> requeued
            self._count_settlement("publish")
            await self._ack(message)
        elif settlement is Settlement.DEAD_LETTER:
            detail = {k: reply[k] for k in ("client_order_id", "reason", "errors", "order") if reply.get(k) is not None}
            await self._dead_letter(message, verdict, detail)
        else:
            if verdict != Verdict.RETRY.value:
                log.error("engine answered unknown verdict %r for %s; requeueing", verdict, message.coordinates)
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
                await self._give_back(message)
                continue
            task = asyncio.create_task(self.handle(message), name=f"wojak-message-{message.coordinates!r:.60}")
            self._inflight[task] = message

            def done(t: asyncio.Task[None]) -> None:
                self._inflight.pop(t, None)
                slots.release()

            task.add_done_callback(done)

    async def _give_back(self, message: SourceMessage) -> None:
        if message.settled is not None:
            return
        try:
            await message.requeue(0)
            self._count_settlement("requeue")
        except Exception:
            log.exception("requeueing message %s at shutdown failed; the broker will redeliver it", message.coordinates)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set (or the source ends), then drain."""
        slots = asyncio.Semaphore(self.concurrency)
        pump = asyncio.create_task(self._pump(stop, slots), name="wojak-runner-pump")
        stopped = asyncio.create_task(stop.wait(), name="wojak-runner-stop")
        try:
            await asyncio.wait({pump, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            self.draining = True
            if self.readiness is not None:
                self.readiness.draining = True
            stop.set()
            try:
                await self.source.stop_consuming()
            except Exception:
                log.exception("stopping the consumer failed")
            if not pump.done():
                pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                try:
                    await pump
                except Exception:
                    log.exception("the source's message iterator failed")
            await self._drain()

    async def _drain(self) -> None:
        tasks = dict(self._inflight)
        if tasks:
            log.info("draining %d in-flight message(s) for up to %.1fs", len(tasks), self.drain_seconds)
            _, pending = await asyncio.wait(tasks, timeout=self.drain_seconds)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
                log.warning("%d message(s) did not finish within the drain window; requeueing them", len(pending))
            for task in pending:
                await self._give_back(tasks[task])


# -- serving ------------------------------------------------------------------------


@dataclass(frozen=True)
class RunnerConfig:
    """What every broker sidecar needs besides its broker settings."""

    engine_socket: str
    engine_deadline: float = 5.0
    engine_window: int = 1024
    concurrency: int = 64
    drain_seconds: float = 20.0
    backoff_base: float = 0.25
    backoff_max: float = 30.0
    health_host: str = "127.0.0.1"
    health_port: int | None = 8081  # None: no health server
    accounts: tuple[str, ...] = ()  # account patterns this source may trade (WOJAK_SIDECAR_ACCOUNTS)


ACCOUNTS_ENV = "WOJAK_SIDECAR_ACCOUNTS"


def parse_accounts(value: str | None) -> tuple[str, ...]:
    """``WOJAK_SIDECAR_ACCOUNTS``: comma-separated account patterns (fnmatch ``*`` and ``?``), e.g.
    ``desk-1,desk-2-*``. Required: a broker sidecar trades only the accounts it names."""
    patterns = tuple(p.strip() for p in (value or "").split(",") if p.strip())
    if not patterns:
        raise ValueError(f"{ACCOUNTS_ENV} is not set: name the accounts this sidecar may trade, comma-separated "
                         "patterns such as desk-1,desk-2-* (anyone who can publish to the broker trades as them)")  # fmt: skip
    try:
        Principal.of("sidecar", patterns, ())
    except PrincipalError as exc:
        raise ValueError(f"{ACCOUNTS_ENV}: {str(exc).removeprefix('principal sidecar: ')}") from None
    return patterns


class BrokerSidecarSettings(BaseSettings):
    """The settings every broker sidecar shares (``WOJAK_SIDECAR_*`` and ``WOJAK_ENGINE_SOCKET``);
    a broker's settings class subclasses it with its own ``env_prefix`` and fields."""

    model_config = SettingsConfigDict(extra="ignore")

    engine_socket: str = Field(default_factory=default_socket_path, validation_alias="WOJAK_ENGINE_SOCKET")
    engine_deadline: float = Field(default=5.0, gt=0, validation_alias="WOJAK_SIDECAR_ENGINE_DEADLINE")
    engine_window: int = Field(default=1024, ge=1, validation_alias="WOJAK_SIDECAR_ENGINE_WINDOW")
    concurrency: int | None = Field(default=None, ge=1, le=10_000, validation_alias="WOJAK_SIDECAR_CONCURRENCY")
    drain_seconds: float = Field(default=20.0, ge=0, validation_alias="WOJAK_SIDECAR_DRAIN_SECONDS")
    backoff_max: float = Field(default=30.0, gt=0, le=600, validation_alias="WOJAK_SIDECAR_BACKOFF_MAX")
    health_host: str = Field(default="127.0.0.1", validation_alias="WOJAK_SIDECAR_HEALTH_HOST")
    health_port: int = Field(default=8081, ge=0, le=65535, validation_alias="WOJAK_SIDECAR_HEALTH_PORT")
    # required (checked in runner_config, so the refusal is one line naming it)
    accounts: str | None = Field(default=None, validation_alias=ACCOUNTS_ENV)
    # a larger message is dead-lettered ``body_too_large`` without being parsed
    max_body_bytes: int = Field(default=65536, ge=1024, le=64 * 1024 * 1024, validation_alias="WOJAK_SIDECAR_MAX_BODY_BYTES")

    def runner_config(self, concurrency: int) -> RunnerConfig:
        """The shared part as a ``RunnerConfig``; ``concurrency`` is the broker's own bound."""
        return RunnerConfig(
            engine_socket=self.engine_socket, engine_deadline=self.engine_deadline, engine_window=self.engine_window,
            concurrency=concurrency, drain_seconds=self.drain_seconds, backoff_max=self.backoff_max,
            health_host=self.health_host, health_port=self.health_port or None, accounts=parse_accounts(self.accounts),
        )  # fmt: skip


def create_health_app(readiness: Readiness, metrics: SidecarMetrics, title: str) -> Any:
    from fastapi import FastAPI

    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)
    add_health_routes(app, readiness, metrics)
    return app


class _HealthServer:
    """uvicorn serving the health app in this event loop; the sidecar, not uvicorn, owns the signals."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        import uvicorn

        class _Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Any:
                yield

        self.server = _Server(
            uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off", loop="none")
        )
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.server.serve(), name="wojak-health-server")
        while not self.server.started:
            if self.task.done():
                self.task.result()  # raises when the port could not be bound
                raise RuntimeError("the health server exited while starting (is the port taken?)")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self.task is None:
            return
        self.server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self.task), 5)
        except (asyncio.TimeoutError, Exception, SystemExit):
            self.task.cancel()


async def serve_sidecar(
    source: Source,
    config: RunnerConfig,
    *,
    stop: asyncio.Event | None = None,
    metrics: SidecarMetrics | None = None,
    install_signal_handlers: bool = True,
) -> None:
    """Run ``source`` against the engine until SIGTERM/SIGINT (or ``stop``), then drain and exit."""
    stop = stop or asyncio.Event()
    metrics = metrics or SidecarMetrics(source.name)
    loop = asyncio.get_running_loop()
    if install_signal_handlers:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    client = EngineClient(config.engine_socket, deadline=config.engine_deadline, window=config.engine_window)
    client.connect()
    readiness = Readiness(client, source.is_ready)
    health: _HealthServer | None = None
    try:
        if config.health_port is not None:
            health = _HealthServer(
                create_health_app(readiness, metrics, f"wojak {source.name} sidecar"), config.health_host, config.health_port
            )
            await health.start()
            log.info("%s sidecar health on http://%s:%d", source.name, config.health_host, config.health_port)
        entered = asyncio.create_task(source.__aenter__())
        waiting = asyncio.create_task(stop.wait())
        await asyncio.wait({entered, waiting}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if not entered.done():  # stopped before the broker was reachable
            entered.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await entered
            return
        entered.result()
        try:
            runner = Runner(
                source, client, metrics, concurrency=config.concurrency, drain_seconds=config.drain_seconds,
                backoff_base=config.backoff_base, backoff_max=config.backoff_max, readiness=readiness,
                principal=Principal.of(f"sidecar:{source.name}", config.accounts, [Scope.ORDERS_WRITE]),
            )  # fmt: skip
            log.info("%s sidecar consuming (concurrency %d)", source.name, config.concurrency)
            await runner.run(stop)
        finally:
            await source.__aexit__(None, None, None)
        log.info("%s sidecar drained and stopped", source.name)
    finally:
        readiness.draining = True
        if health is not None:
            await health.stop()
        await client.close()
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)


__all__ = [
    "ACCOUNTS_ENV",
    "INVALID_JSON",
    "BrokerSidecarSettings",
    "Runner",
    "RunnerConfig",
    "create_health_app",
    "parse_accounts",
    "run",
    "serve_sidecar",
]
