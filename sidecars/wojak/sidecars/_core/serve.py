"""``serve_sidecar``: every broker sidecar's entry point. It wires a source to the engine client,
the runner, the health server (/healthz /readyz /metrics) and SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from wojak.engine.protocol import Principal, Scope
from wojak.engine.protocol.client import EngineClient
from wojak.sidecars._core.health import HealthServer, Readiness, create_health_app
from wojak.sidecars._core.metrics import SidecarMetrics
from wojak.sidecars._core.runner import Runner
from wojak.sidecars._core.settings import TICKS, RunnerConfig
from wojak.sidecars._core.source import Source

log = logging.getLogger(__name__)


def sidecar_principal(name: str, config: RunnerConfig) -> Principal:
    """Whoever can publish to the broker acts as this: ``ticks:write`` for a ticks source (no
    account), else ``orders:write`` for the accounts of ``WOJAK_SIDECAR_ACCOUNTS``."""
    if config.carries == TICKS:
        return Principal.of(f"sidecar:{name}", (), [Scope.TICKS_WRITE])
    return Principal.of(f"sidecar:{name}", config.accounts, [Scope.ORDERS_WRITE])


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
    client = EngineClient(
        config.engine_socket,
        deadline=config.engine_deadline,
        window=config.engine_window,
        max_batch=config.engine_batch,
        linger=config.engine_linger,
    )
    client.connect()
    readiness = Readiness(client, source.is_ready)
    health: HealthServer | None = None
    try:
        if config.health_port is not None:
            health = HealthServer(
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
                source,
                client,
                metrics,
                concurrency=config.concurrency,
                drain_seconds=config.drain_seconds,
                backoff_base=config.backoff_base,
                backoff_max=config.backoff_max,
                readiness=readiness,
                principal=sidecar_principal(source.name, config),
                settle_timeout=config.settle_timeout,
                settle_attempts=config.settle_attempts,
                carries=config.carries,
            )
            log.info("%s sidecar consuming %s (concurrency %d)", source.name, config.carries, config.concurrency)
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


__all__ = ["serve_sidecar", "sidecar_principal"]
