"""/healthz, /readyz and /metrics for every sidecar: the routes (the HTTP sidecar adds them to
its own app) and, for a broker sidecar, a server of their own (uvicorn, in the sidecar's loop)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Callable

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from wojak.engine.protocol import MessageType, Verdict
from wojak.engine.protocol.client import EngineClient
from wojak.sidecars._core.metrics import SidecarMetrics

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class Readiness:
    """The engine's readiness (a cached ping: it answers, and its store takes writes and its
    venue answers) plus the source's own readiness."""

    def __init__(self, client: EngineClient, source_ready: Callable[[], bool] = lambda: True, ttl: float = 1.0) -> None:
        self.client = client
        self.source_ready = source_ready
        self.ttl = ttl
        self._engine_ok = False
        self._checked = 0.0
        self.draining = False
        self.engine_detail: dict[str, object] = {}

    async def engine_ok(self) -> bool:
        now = time.monotonic()
        if now - self._checked > self.ttl:
            reply = await self.client.request(MessageType.PING, {}, 0.5)
            self._engine_ok = reply.get("verdict") == Verdict.OK.value and reply.get("ready", True) is True
            self.engine_detail = {k: reply.get(k) for k in ("store", "venue") if k in reply} or {"reason": reply.get("reason")}
            self._checked = time.monotonic()
        return self._engine_ok

    async def check(self) -> dict[str, bool]:
        return {"engine": await self.engine_ok(), "source": self.source_ready(), "draining": self.draining}


def add_health_routes(app: FastAPI, readiness: Readiness, metrics: SidecarMetrics) -> None:
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        checks = await readiness.check()
        ready = checks["engine"] and checks["source"] and not checks["draining"]
        metrics.ready.labels(metrics.source).set(1 if ready else 0)
        return JSONResponse(
            {"ready": ready, **checks, "engine_detail": readiness.engine_detail}, status_code=200 if ready else 503
        )

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        engine = await readiness.client.metrics_text() or "# engine unreachable\n"
        return Response(metrics.exposition() + engine.encode(), media_type=PROMETHEUS_TEXT)


def create_health_app(readiness: Readiness, metrics: SidecarMetrics, title: str) -> Any:
    from fastapi import FastAPI

    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)
    add_health_routes(app, readiness, metrics)
    return app


class HealthServer:
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
