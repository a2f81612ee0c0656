"""Engine entry: frozen settings from the environment (the configuration itself) -> wired engine."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from pathlib import Path
from typing import Any, Callable, Self
from urllib.parse import parse_qs, urlparse

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from wojak.engine import __version__, _faults
from wojak.engine._metrics import EngineMetrics
from wojak.engine.escalation import EscalationDelivery, open_sink
from wojak.engine.health import EngineHealth
from wojak.engine.protocol import MessageType, Verdict, default_socket_path, require_secure
from wojak.engine.protocol.runtime import run
from wojak.engine.reconcile import Reconciler
from wojak.engine.risk import RiskConfigWatcher, RiskEngine, file_sha256, load_risk_config
from wojak.engine.service import OrderService
from wojak.engine.store import open_store
from wojak.engine.transport import DEFAULT_MAX_FRAME_BYTES, EngineServer
from wojak.engine.venue import InProcessSandboxVenue, LambdaVenue, LambdaVenueConfig
from wojak.engine.venue.sandbox import SandboxConfig
from wojak.errors import ConfigError

log = logging.getLogger(__name__)


class EngineSettings(BaseSettings):
    """Environment settings of the engine (read only at the entry point)."""

    model_config = SettingsConfigDict(env_prefix="WOJAK_ENGINE_", extra="ignore", frozen=True)

    socket: str = Field(default_factory=default_socket_path, description="IPC socket path (its directory becomes 0700)")
    store: str = Field(default="sqlite:///.wojak/wojak.sqlite", validation_alias="WOJAK_STORE")
    venue: str = Field(default="sandbox", validation_alias="WOJAK_VENUE")
    risk_config: str | None = Field(default=None, description="risk YAML/JSON file: required (`wojak dev` passes the demo one)")
    max_inflight: int = Field(default=8192, ge=1)
    max_batch: int = Field(default=512, ge=1)
    lanes: int = Field(default=8, ge=1, le=256, description="batches running at once (an account is in one at a time)")
    max_frame_bytes: int = Field(
        default=DEFAULT_MAX_FRAME_BYTES,
        ge=4096,
        le=64 * 1024 * 1024,
        description="larger inbound frames disconnect their sender (ZMQ_MAXMSGSIZE)",
    )
    lease_seconds: float = Field(default=60.0, gt=0, description="execution lease of a pending order (> the venue timeout)")
    risk_reload_seconds: float = Field(default=1.0, gt=0, description="poll the risk config file this often")
    escalation_sink: str | None = Field(
        default=None, description="http(s)://... webhook (secret in WOJAK_ESCALATION_WEBHOOK_SECRET) or sqs://QUEUE"
    )
    reconcile_seconds: float = Field(default=5.0, gt=0, description="look up open orders at the venue this often")
    pending_release_seconds: float = Field(default=300.0, ge=0, description="release a stranded pending order after")

    @property
    def socket_path(self) -> Path:
        return Path(self.socket.removeprefix("ipc://"))

    def to_config(self) -> Self:
        """These settings, once the fail-closed rule holds: no risk config file, no engine (one line)."""
        if not (self.risk_config or "").strip():
            raise ConfigError(_NO_RISK_CONFIG)
        return self


_NO_RISK_CONFIG = (
    "WOJAK_ENGINE_RISK_CONFIG is not set: the engine needs a risk config file naming every limit "
    "(the engine never falls back to the demo limits; `wojak dev` runs the demo file)"
)


def open_venue(url: str) -> Any:
    """``sandbox`` (in-process; ``sandbox:?ledger=PATH`` to remember executions) or
    ``lambda://FUNCTION?endpoint=URL&region=R&timeout=SECONDS`` (boto3 ``invoke``)."""
    if url.startswith("lambda:"):
        try:
            return LambdaVenue(LambdaVenueConfig.from_url(url))
        except ImportError as exc:
            raise ConfigError(f"WOJAK_VENUE={url!r}: {exc}") from None
        except ValueError as exc:
            raise ConfigError(
                f"WOJAK_VENUE={url!r}: {exc} (use lambda://FUNCTION?endpoint=URL&region=R&timeout=SECONDS)"
            ) from None
    parsed = urlparse(url)
    if parsed.scheme in ("sandbox", "") and parsed.path in ("", "sandbox"):
        options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        env = dict(os.environ)
        if "ledger" in options:
            env["WOJAK_SANDBOX_LEDGER"] = options["ledger"]
        return InProcessSandboxVenue(SandboxConfig.from_env(env))
    raise ConfigError(f"WOJAK_VENUE={url!r}: unsupported venue (use sandbox or lambda://FUNCTION?...)")


async def run_engine(config: EngineSettings, ready: Callable[[], None] | None = None) -> None:
    _faults.configure(os.environ)  # armed only with WOJAK_TEST_FAULTS=1
    if not config.risk_config:
        raise ConfigError(_NO_RISK_CONFIG)
    risk = RiskEngine(load_risk_config(config.risk_config))
    sink = open_sink(config.escalation_sink, os.environ) if config.escalation_sink else None
    require_secure(config.store, "WOJAK_STORE")  # couchbase:// off loopback: couchbases://
    store = open_store(config.store)
    venue = open_venue(config.venue)
    metrics = EngineMetrics()
    venue_timeout = getattr(getattr(venue, "config", None), "timeout", None)
    if venue_timeout is not None and config.lease_seconds <= 2 * float(venue_timeout):
        raise ConfigError(
            f"WOJAK_ENGINE_LEASE_SECONDS={config.lease_seconds:g} must exceed twice the venue timeout "
            f"({float(venue_timeout):g}s): a lease that lapses mid-call lets another replica submit again"
        )
    engine_id = os.environ.get("WOJAK_ENGINE_ID") or f"{socket.gethostname()}:{config.socket_path}"
    cluster = os.environ.get("WOJAK_ENGINE_CLUSTER") or None
    if risk.has_homes and cluster is None:
        raise ConfigError("the risk config assigns accounts home clusters: set WOJAK_ENGINE_CLUSTER to this cluster's name")
    service = OrderService(store, venue, risk, metrics, engine_id=engine_id, lease_seconds=config.lease_seconds, cluster=cluster)
    background: list[asyncio.Task[None]] = []
    await service.start()
    actor = f"engine:{socket.gethostname()}:{os.getpid()}"

    def audit(kind: str, detail: dict[str, Any]) -> None:
        async def append() -> None:
            try:
                await store.append_audit(kind, actor, detail.get("path", ""), detail)
            except Exception as exc:  # the audit must not stop the engine; the log still has it
                log.error("could not append %s to the audit log: %s", kind, exc)

        background.append(asyncio.create_task(append()))

    for state in await store.list_account_states():
        log.warning("account %s is %s (stored: %s); reset it to trade again", state["account"], state["state"], state["reason"])

    def use_risk(engine: RiskEngine) -> None:
        service.risk = engine

    stop = asyncio.Event()
    if config.risk_config:
        audit(
            "risk_config_loaded",
            {
                "path": config.risk_config,
                "sha256": file_sha256(config.risk_config),
                "trading_state": risk.config.trading_state.value,
                "at_start": True,
            },
        )
        watcher = RiskConfigWatcher(config.risk_config, use_risk, metrics, config.risk_reload_seconds, audit)
        background.append(asyncio.create_task(watcher.run(stop)))
    background.append(asyncio.create_task(EscalationDelivery(store, sink, metrics).run(stop)))
    # after a store outage: the store's recovery scan (pending_orders) applies the effects of
    # outcomes whose writes the outage cut short, whether or not their orders are sent again
    health = EngineHealth(store, venue, metrics, recover=store.pending_orders)
    service.health = health
    background.append(asyncio.create_task(health.run(stop)))
    reconciler = Reconciler(
        service, metrics, interval=config.reconcile_seconds, pending_release_seconds=config.pending_release_seconds
    )
    background.append(asyncio.create_task(reconciler.run(stop)))

    def handle_now(kind: MessageType, body: dict[str, Any]) -> dict[str, Any]:
        if kind is MessageType.PING:
            # liveness is this answer; readiness is ``ready``: the order path's store and venue
            return {"verdict": Verdict.OK.value, "pid": os.getpid(), "version": __version__, **health.describe()}
        return {"verdict": Verdict.OK.value, "text": metrics.exposition()}

    server = EngineServer(
        config.socket_path,
        service.handle_batch,
        handle_now,
        max_inflight=config.max_inflight,
        max_batch=config.max_batch,
        lanes=config.lanes,
        alone=service.slow_accounts,
        metrics=metrics,
        max_frame_bytes=config.max_frame_bytes,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.serve(stop, ready)
    finally:
        stop.set()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        if sink is not None:
            await sink.close()
        await venue.close()
        await store.close()


def main(config: EngineSettings) -> None:
    run(run_engine(config))
