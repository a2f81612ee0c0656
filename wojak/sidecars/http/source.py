"""The HTTP intake: FastAPI routes over the engine client.

Responses: 200 with ``{client_order_id, verdict, order}`` for every verdict but
``invalid`` (422, FastAPI-style ``detail`` naming each field), ``conflict`` (409) and
``retry`` (503 with ``Retry-After``). Auth: ``Authorization: Bearer <key>`` or
``X-API-Key``; never a key in the query string.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import math
import time
from typing import Any, AsyncIterator

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from wojak.engine.protocol import FieldError, Verdict, validate_order, validate_tick
from wojak.sidecars._core.client import EngineClient
from wojak.sidecars._core.health import Readiness, add_health_routes
from wojak.sidecars._core.metrics import SidecarMetrics
from wojak.sidecars.http.config import HttpSidecarConfig

log = logging.getLogger(__name__)

_OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_QUERY_CREDENTIALS = (b"api_key", b"apikey", b"api-key", b"token", b"access_token", b"key")
_JSON = "application/json"
_ORDER_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["account", "symbol", "side", "quantity", "order_type"],
    "properties": {
        "client_order_id": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$",
                            "description": "Idempotency key; or send the Idempotency-Key header"},
        "account": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"},
        "symbol": {"type": "string", "pattern": "^[A-Za-z0-9._:&/-]{1,64}$"},
        "side": {"type": "string", "enum": ["buy", "sell"]},
        "quantity": {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?$", "example": "50"},
        "order_type": {"type": "string", "enum": ["market", "limit"]},
        "limit_price": {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?$", "example": "24000.50"},
        "time_in_force": {"type": "string", "enum": ["day", "ioc", "gtc"], "default": "day"},
        "tag": {"type": "string", "maxLength": 128},
    },
}  # fmt: skip
_TICK_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["symbol", "bid", "ask", "last"],
    "properties": {k: {"type": "string"} for k in ("symbol", "bid", "ask", "last")},
}


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=_JSON, headers=headers)


def _unprocessable(errors: list[FieldError], data: Any = None) -> Response:
    detail = []
    for e in errors:
        item: dict[str, Any] = {"type": e.code, "loc": ["body"] if e.field == "body" else ["body", e.field], "msg": e.reason}
        if isinstance(data, dict) and e.field in data:
            value = data[e.field]
            small = isinstance(value, (str, bool)) or (isinstance(value, int) and -(2**63) <= value < 2**63)
            item["input"] = value if small and len(str(value)) <= 128 else repr(value)[:128]
        detail.append(item)
    return _json({"detail": detail}, 422)


def _parse(body: bytes) -> tuple[Any, Response | None]:
    try:
        data = orjson.loads(body)
        # orjson reads integers past 64 bits as floats; re-read such bodies exactly so a
        # huge integer is reported as too large, not as a float
        if not (isinstance(data, dict) and any(type(v) is float for v in data.values())):
            return data, None
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body), None
    except (ValueError, RecursionError) as exc:
        return None, _json({"detail": [{"type": "json_invalid", "loc": ["body"], "msg": f"invalid JSON: {exc}"}]}, 422)


def _from_engine(reply: dict[str, Any]) -> Response:
    verdict = reply.get("verdict")
    if verdict == Verdict.RETRY.value:
        after = float(reply.get("retry_after") or 1.0)
        return _json({"verdict": verdict, "reason": reply.get("reason")}, 503, {"Retry-After": str(max(1, math.ceil(after)))})
    if verdict == Verdict.INVALID.value:
        errors = [FieldError(e["field"], e["reason"], e["code"]) for e in reply.get("errors", [])]
        return _unprocessable(errors)
    payload = {"client_order_id": reply.get("client_order_id"), "verdict": verdict, "order": reply.get("order")}
    if reply.get("reason"):
        payload["reason"] = reply["reason"]
    if verdict == Verdict.CONFLICT.value:
        return _json({**payload, "detail": reply.get("reason")}, 409)
    return _json(payload)


class _Guard:
    """Pure ASGI: API key check and body limit before any route code runs."""

    def __init__(self, app: Any, keys: tuple[str, ...], max_body: int) -> None:
        self.app = app
        self.keys = tuple(k.encode() for k in keys)
        self.max_body = max_body

    async def _reject(self, send: Any, status: int, message: str, headers: list[tuple[bytes, bytes]] = []) -> None:
        body = orjson.dumps({"detail": message})
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})

    def _authorised(self, headers: list[tuple[bytes, bytes]]) -> bool:
        presented = None
        for name, value in headers:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                presented = value[7:].strip()
            elif name == b"x-api-key":
                presented = value.strip()
        if not presented:
            return False
        ok = False
        for key in self.keys:  # compare with every key: constant time, no early exit
            ok |= hmac.compare_digest(presented, key)
        return ok

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in _OPEN_PATHS:
            return await self.app(scope, receive, send)
        query = scope.get("query_string", b"").lower()
        if query and any(p + b"=" in query for p in _QUERY_CREDENTIALS):
            return await self._reject(send, 401, "credentials in the query string are not accepted: use the Authorization or X-API-Key header", [(b"www-authenticate", b"Bearer")])
        headers = scope["headers"]
        if not self._authorised(headers):
            return await self._reject(send, 401, "missing or wrong API key: send Authorization: Bearer <key> or X-API-Key (keys come from WOJAK_API_KEYS)", [(b"www-authenticate", b"Bearer")])
        for name, value in headers:
            if name == b"content-length":
                try:
                    if int(value) > self.max_body:
                        return await self._reject(send, 413, f"body larger than {self.max_body} bytes (setting WOJAK_SIDECAR_MAX_BODY_BYTES)")
                except ValueError:
                    return await self._reject(send, 400, "bad Content-Length")
                return await self.app(scope, receive, send)
        # No Content-Length (chunked): read up to the limit, then replay to the app.
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_body:
                return await self._reject(send, 413, f"body larger than {self.max_body} bytes (setting WOJAK_SIDECAR_MAX_BODY_BYTES)")
        replay = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        delivered = False

        async def replay_receive() -> Any:
            nonlocal delivered
            if not delivered:
                delivered = True
                return replay
            return await receive()

        return await self.app(scope, replay_receive, send)


def create_app(config: HttpSidecarConfig, client: EngineClient | None = None) -> FastAPI:
    client = client or EngineClient(config.engine_socket, deadline=config.engine_deadline, window=config.engine_window)
    metrics = SidecarMetrics("http")
    readiness = Readiness(client)
    observe_engine = metrics.engine_seconds.labels("http").observe
    by_verdict: dict[str, Any] = {}  # labelled children, looked up once per verdict

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client.connect()
        try:
            yield
        finally:
            readiness.draining = True
            await client.close()

    app = FastAPI(
        title="wojak HTTP intake", version="1", lifespan=lifespan,
        description="Submit orders and ticks to the wojak engine. Decimals are strings.",
    )  # fmt: skip
    add_health_routes(app, readiness, metrics)

    async def engine(call: Any) -> dict[str, Any]:
        started = time.perf_counter()
        reply = await call
        observe_engine(time.perf_counter() - started)
        verdict = reply.get("verdict", "unknown")
        counter = by_verdict.get(verdict)
        if counter is None:
            counter = by_verdict[verdict] = metrics.messages.labels("http", verdict)
        counter.inc()
        return reply

    @app.post(
        "/v1/orders",
        openapi_extra={"requestBody": {"required": True, "content": {_JSON: {"schema": _ORDER_SCHEMA}}}},
        responses={200: {"description": "The engine's verdict"}, 409: {"description": "client_order_id reused with different content"},
                   422: {"description": "Validation error naming each field"}, 503: {"description": "Retry later (Retry-After)"}},
    )  # fmt: skip
    async def submit_order(request: Request) -> Response:
        data, error = _parse(await request.body())
        if error is not None:
            return error
        key = request.headers.get("idempotency-key")
        if key is not None and isinstance(data, dict):
            if data.get("client_order_id") is None:
                data["client_order_id"] = key
            elif data["client_order_id"] != key:
                return _unprocessable([FieldError("client_order_id", "differs from the Idempotency-Key header", "idempotency_key_mismatch")], data)
        order, errors = validate_order(data)
        if order is None:
            return _unprocessable(errors, data)
        return _from_engine(await engine(client.submit_order(order)))

    @app.get("/v1/orders/{client_order_id}")
    async def get_order(client_order_id: str) -> Response:
        reply = await client.get_order(client_order_id)
        if reply.get("verdict") == Verdict.NOT_FOUND.value:
            return _json({"detail": f"order {client_order_id} not found"}, 404)
        if reply.get("verdict") == Verdict.OK.value:
            return _json(reply["order"])
        return _from_engine(reply)

    @app.delete("/v1/orders/{client_order_id}")
    async def cancel_order(client_order_id: str) -> Response:
        reply = await client.cancel_order(client_order_id)
        if reply.get("verdict") == Verdict.NOT_FOUND.value:
            return _json({"detail": f"order {client_order_id} not found"}, 404)
        if reply.get("verdict") == Verdict.OK.value:
            return _json({"client_order_id": client_order_id, "verdict": "canceled", "order": reply["order"]})
        if reply.get("verdict") == Verdict.REJECTED.value:
            return _json({"client_order_id": client_order_id, "detail": reply.get("reason"), "order": reply.get("order")}, 409)
        return _from_engine(reply)

    @app.post("/v1/ticks", openapi_extra={"requestBody": {"required": True, "content": {_JSON: {"schema": _TICK_SCHEMA}}}})
    async def post_tick(request: Request) -> Response:
        data, error = _parse(await request.body())
        if error is not None:
            return error
        tick, errors = validate_tick(data)
        if tick is None:
            return _unprocessable(errors, data)
        reply = await client.tick(tick)
        if reply.get("verdict") == Verdict.OK.value:
            return _json({"symbol": tick["symbol"], "verdict": "ok"})
        return _from_engine(reply)

    app.add_middleware(_Guard, keys=config.api_keys, max_body=config.max_body_bytes)
    app.state.client = client
    app.state.metrics = metrics
    return app


async def serve(config: HttpSidecarConfig) -> None:
    import uvicorn

    app = create_app(config)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=config.host, port=config.port, log_level="warning", access_log=False,
            http="httptools", loop="none", lifespan="on", timeout_graceful_shutdown=25,
        )
    )  # fmt: skip
    await server.serve()
