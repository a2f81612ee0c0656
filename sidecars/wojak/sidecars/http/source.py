"""The HTTP intake: FastAPI routes over the engine client.

Responses: 200 with ``{client_order_id, verdict, order}`` for every verdict but
``invalid`` (422, FastAPI-style ``detail`` naming each field), ``forbidden`` (403),
``conflict`` (409) and ``retry`` (503 with ``Retry-After``). Auth: ``Authorization: Bearer
<key>`` or ``X-API-Key``, never a key in the query string; each key stands for a principal
(``WOJAK_API_KEYS_FILE``) whose scopes and accounts are checked here and again in the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from typing import Any, AsyncIterator, Sequence
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import Counter

from wojak.engine.protocol import (
    ACCOUNT_NOT_PERMITTED,
    ID_PATTERN,
    FieldError,
    Principal,
    Scope,
    Verdict,
    forbidden,
    validate_order,
    validate_tick,
)
from wojak.engine.protocol.client import EngineClient
from wojak.sidecars._core.health import Readiness, add_health_routes
from wojak.sidecars._core.keys import AuditTrail, KeyRing, KeysFileWatcher, dev_keyring, load_keys_file
from wojak.sidecars._core.metrics import SidecarMetrics
from wojak.sidecars.http import docs
from wojak.sidecars.http.config import HttpSidecarSettings
from wojak.sidecars.http.intake import BodyError, check_media_type, dumps, parse_json_body, printable

log = logging.getLogger(__name__)

AUDIT_ACTOR = "sidecar:http"
_OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"})
_OPEN_PREFIX = "/docs/"
# Query parameter names that carry a credential; any value that is a valid key is refused too.
_QUERY_CREDENTIALS = frozenset(
    {
        "api_key",
        "apikey",
        "api-key",
        "x-api-key",
        "key",
        "token",
        "access_token",
        "auth",
        "authorization",
        "bearer",
        "password",
        "secret",
    }
)
_JSON = "application/json"
_ID = re.compile(ID_PATTERN)
_CURSOR = re.compile(r"[\x21-\x7e]{1,512}")  # the engine's opaque cursor: printable ASCII, no spaces
_DIGITS = re.compile(r"[0-9]{1,4}")  # ASCII digits only (int() would also take "+5", " 5" or Arabic-Indic digits)
MAX_LIST_LIMIT = 500
DEFAULT_LIST_LIMIT = 100
_UNAUTHORISED = (
    "missing or wrong API key: send Authorization: Bearer <key> or X-API-Key"
    " (keys come from WOJAK_API_KEYS_FILE, or WOJAK_API_KEYS in development)"
)
_BEARER = [(b"www-authenticate", b"Bearer")]


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(payload), status_code=status, media_type=_JSON, headers=headers)


def _detail(kind: str, loc: list[str], msg: str, status: int = 422) -> Response:
    return _json({"detail": [{"type": kind, "loc": loc, "msg": msg}]}, status)


def _unprocessable(errors: list[FieldError], data: Any = None, where: str = "body") -> Response:
    detail = []
    for e in errors:
        item: dict[str, Any] = {"type": e.code, "loc": [where] if e.field == "body" else [where, e.field], "msg": e.reason}
        if isinstance(data, dict) and e.field in data:
            value = data[e.field]
            small = isinstance(value, (str, bool)) or (isinstance(value, int) and -(2**63) <= value < 2**63)
            item["input"] = value if small and len(str(value)) <= 128 else repr(value)[:128]
        detail.append(item)
    return _json({"detail": detail}, 422)


def _forbidden(reason: str, detail: str, client_order_id: str | None = None) -> Response:
    return _json(forbidden(reason, detail, client_order_id), 403)


def _from_engine(reply: dict[str, Any], where: str = "body") -> Response:
    """The HTTP answer to an engine reply; ``where`` is what an ``invalid`` reply's fields are in."""
    verdict = reply.get("verdict")
    if verdict == Verdict.RETRY.value:
        after = float(reply.get("retry_after") or 1.0)
        return _json({"verdict": verdict, "reason": reply.get("reason")}, 503, {"Retry-After": str(max(1, math.ceil(after)))})
    if verdict == Verdict.INVALID.value:
        errors = [FieldError(e["field"], e["reason"], e["code"]) for e in reply.get("errors", [])]
        return _unprocessable(errors, where=where)
    if verdict == Verdict.FORBIDDEN.value:
        return _forbidden(str(reply.get("reason")), str(reply.get("detail")), reply.get("client_order_id"))
    payload = {"client_order_id": reply.get("client_order_id"), "verdict": verdict, "order": reply.get("order")}
    if reply.get("reason"):
        payload["reason"] = reply["reason"]
    if verdict == Verdict.CONFLICT.value:
        return _json({**payload, "detail": reply.get("reason")}, 409)
    return _json(payload)


def _required_scope(method: str, path: str) -> Scope | None:
    """The scope a route needs; None for paths that are not routes (FastAPI answers 404/405)."""
    if path == "/v1/orders":
        return Scope.ORDERS_WRITE if method == "POST" else Scope.ORDERS_READ if method == "GET" else None
    if path.startswith("/v1/orders/"):
        return Scope.ORDERS_READ if method == "GET" else Scope.ORDERS_WRITE if method == "DELETE" else None
    if path == "/v1/ticks":
        return Scope.TICKS_WRITE if method == "POST" else None
    return None


class _Keys:
    """The key ring in use; the keys-file watcher swaps it."""

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring


class _Guard:
    """Pure ASGI, before any route: credentials, principal, scope, body size, media type, body."""

    def __init__(self, app: Any, keys: _Keys, max_body: int, refused: Any) -> None:
        self.app = app
        self.keys = keys
        self.max_body = max_body
        self.refused = refused  # Counter child by reason

    async def _reject(
        self, send: Any, status: int, payload: Any, headers: Sequence[tuple[bytes, bytes]] = (), close: bool = False
    ) -> None:
        self.refused(str(status))
        body = dumps(payload if not isinstance(payload, str) else {"detail": payload})
        extra = [(b"connection", b"close")] if close else []
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *headers,
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _query_credentials(self, query: bytes) -> str | None:
        """Why the query string is refused (it carries a credential), or None."""
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True, errors="replace"):
            if name.strip().lower() in _QUERY_CREDENTIALS:
                return (
                    f"credentials in the query string ({name[:32]}) are not accepted: use the Authorization or X-API-Key header"
                )
            if 16 <= len(value) <= 1024:
                principal = self.keys.ring.lookup(value.strip())
                if principal is not None:
                    log.warning("principal %s's API key was sent in a query string (refused): rotate that key", principal.name)
                    return "credentials in the query string are not accepted: use the Authorization or X-API-Key header"
        return None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path in _OPEN_PATHS or path.startswith(_OPEN_PREFIX):
            return await self.app(scope, receive, send)
        query = scope.get("query_string", b"")
        if query:
            why = self._query_credentials(query)
            if why is not None:
                return await self._reject(send, 401, why, _BEARER)
        presented: list[bytes] = []
        content_length = content_type = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                presented.append(value[7:].strip() if value[:7].lower() == b"bearer " else b"")
            elif name == b"x-api-key":
                presented.append(value.strip())
            elif name == b"content-length":
                content_length = value
            elif name == b"content-type":
                content_type = value
        if not presented or not presented[0] or any(p != presented[0] for p in presented):
            return await self._reject(send, 401, _UNAUTHORISED, _BEARER)  # none, not a bearer, or two different keys
        principal = self.keys.ring.lookup(presented[0])
        if principal is None:
            return await self._reject(send, 401, _UNAUTHORISED, _BEARER)
        scope["wojak.principal"] = principal
        method = scope["method"]
        needed = _required_scope(method, path)
        if needed is not None:
            refusal = principal.refusal(needed)
            if refusal is not None:
                return await self._reject(send, 403, forbidden(*refusal))
        if method != "POST":
            return await self.app(scope, receive, send)
        if content_length is not None:
            try:
                declared = int(content_length) if content_length.isdigit() else -1
            except ValueError:
                declared = -1
            if declared < 0:
                return await self._reject(send, 400, "bad Content-Length", close=True)
            if declared > self.max_body:
                return await self._reject(
                    send, 413, f"body larger than {self.max_body} bytes (setting WOJAK_SIDECAR_MAX_BODY_BYTES)", close=True
                )
        # Read the whole body (bounded), then hand it to the route.
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away (or the body timeout closed the connection)
            chunk = message.get("body", b"")
            if chunk:
                chunks.append(chunk)
                size += len(chunk)
                if size > self.max_body:
                    return await self._reject(
                        send, 413, f"body larger than {self.max_body} bytes (setting WOJAK_SIDECAR_MAX_BODY_BYTES)", close=True
                    )
            more = message.get("more_body", False)
        why = check_media_type(content_type)
        if why is not None:
            return await self._reject(send, 415, why)
        scope["wojak.body"] = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return await self.app(scope, receive, send)


def _query(request: Request) -> tuple[dict[str, str], Response | None]:
    """The query parameters (each at most once), or the 422 naming one given twice."""
    raw = request.scope.get("query_string", b"")
    if not raw:
        return {}, None
    params: dict[str, str] = {}
    for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True, errors="replace"):
        if name in params:
            return params, _detail("duplicate_parameter", ["query", printable(name)[:64]], "is given more than once")
        params[name] = value
    return params, None


def _account_for(principal: Principal, params: dict[str, str], required: bool) -> tuple[str | None, Response | None]:
    """The ``account`` a query acts on: given, or the principal's one account; or the refusal."""
    account = params.get("account")
    if account is None or account == "":
        if not required:
            return None, None
        single = principal.single_account
        if single is None:
            return None, _detail(
                "missing",
                ["query", "account"],
                "is required: this API key may act for more than one account, so name one (?account=...)",
            )
        return single, None
    if not _ID.fullmatch(account):
        return None, _detail("string_pattern_mismatch", ["query", "account"], f"must match {ID_PATTERN}")
    if not principal.permits(account):
        return None, _forbidden(ACCOUNT_NOT_PERMITTED, f"principal {principal.name} may not act for account {account}")
    return account, None


def create_app(config: HttpSidecarSettings, client: EngineClient | None = None) -> FastAPI:
    client = client or EngineClient(
        config.engine_socket,
        deadline=config.engine_deadline,
        window=config.engine_window,
        max_batch=config.engine_batch,
        linger=config.engine_linger_ms / 1000,
    )
    metrics = SidecarMetrics("http")
    readiness = Readiness(client)
    observe_engine = metrics.engine_seconds.labels("http").observe
    by_verdict: dict[str, Any] = {}  # labelled children, looked up once per verdict
    refused_counter = Counter(
        "wojak_sidecar_http_refused",
        "HTTP requests and connections refused before any route,"
        " by status (401, 403, 408_header, 408_body, 413, 415, 431, 503_connections)",
        ["reason"],
        registry=metrics.registry,
    )
    refused_children: dict[str, Any] = {}

    def count_refusal(reason: str) -> None:
        child = refused_children.get(reason)
        if child is None:
            child = refused_children[reason] = refused_counter.labels(reason)
        child.inc()

    audit = AuditTrail(client, AUDIT_ACTOR)
    watcher: KeysFileWatcher | None = None
    if config.api_keys_file:
        keys = _Keys(load_keys_file(config.api_keys_file))

        def use(ring: KeyRing) -> None:
            keys.ring = ring

        watcher = KeysFileWatcher(config.api_keys_file, keys.ring, use, audit, config.api_keys_reload_seconds)
        watcher.loaded(keys.ring)
    else:
        keys = _Keys(dev_keyring(config.api_keys))
        if not config.dev:
            log.warning(
                "WOJAK_API_KEYS is the development form: every key is principal 'dev' with every account and"
                " every scope. Use WOJAK_API_KEYS_FILE (wojak keys new) for scoped keys."
            )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client.connect()
        tasks = [asyncio.create_task(audit.run(), name="wojak-audit")]
        if watcher is not None:
            tasks.append(asyncio.create_task(watcher.run(), name="wojak-keys-watcher"))
        try:
            yield
        finally:
            readiness.draining = True
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if audit.pending:
                log.warning("audit: %d event(s) not yet recorded by the engine at shutdown", audit.pending)
            await client.close()

    app = FastAPI(
        title="wojak HTTP intake",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description="Submit orders and ticks to the wojak engine, read and cancel orders. Decimals are strings. "
        "Every /v1 route needs an API key (Authorization: Bearer, or X-API-Key) whose principal has the "
        "route's scope and may act for the order's account.",
    )

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

    def body_of(request: Request) -> tuple[Any, Response | None]:
        try:
            return parse_json_body(request.scope.get("wojak.body", b"")), None
        except BodyError as exc:
            return None, _json({"detail": exc.detail}, exc.status)

    @app.post("/v1/orders", openapi_extra=docs.order_post_extra(), responses=docs.ORDER_RESPONSES)
    async def submit_order(request: Request) -> Response:
        principal: Principal = request.scope["wojak.principal"]
        data, error = body_of(request)
        if error is not None:
            return error
        key = request.headers.get("idempotency-key")
        if key is not None and isinstance(data, dict):
            if data.get("client_order_id") is None:
                data["client_order_id"] = key
            elif data["client_order_id"] != key:
                return _unprocessable(
                    [FieldError("client_order_id", "differs from the Idempotency-Key header", "idempotency_key_mismatch")], data
                )
        order, errors = validate_order(data)
        if order is None:
            return _unprocessable(errors, data)
        if not principal.permits(order["account"]):
            return _forbidden(
                ACCOUNT_NOT_PERMITTED,
                f"principal {principal.name} may not act for account {order['account']}",
                order["client_order_id"],
            )
        return _from_engine(await engine(client.submit_order(order, principal)))

    @app.get("/v1/orders", openapi_extra=docs.LIST_EXTRA, responses=docs.LIST_RESPONSES)
    async def list_orders(request: Request) -> Response:
        principal: Principal = request.scope["wojak.principal"]
        params, error = _query(request)
        if error is not None:
            return error
        account, error = _account_for(principal, params, required=False)
        if error is not None:
            return error
        limit_text = params.get("limit", "")
        limit = DEFAULT_LIST_LIMIT
        if limit_text != "":
            if not _DIGITS.fullmatch(limit_text) or not 1 <= int(limit_text) <= MAX_LIST_LIMIT:
                return _detail("int_range", ["query", "limit"], f"must be an integer from 1 to {MAX_LIST_LIMIT}")
            limit = int(limit_text)
        cursor = params.get("cursor") or None
        if cursor is not None and not _CURSOR.fullmatch(cursor):
            return _detail("string_pattern_mismatch", ["query", "cursor"], "must be the next_cursor of a previous page")
        reply = await client.list_orders(principal, account=account, limit=limit, cursor=cursor)
        if reply.get("verdict") == Verdict.OK.value:
            return _json({"orders": reply.get("orders", []), "next_cursor": reply.get("next_cursor")})
        return _from_engine(reply, where="query")

    def _order_query(request: Request, client_order_id: str) -> tuple[str | None, Response | None]:
        principal: Principal = request.scope["wojak.principal"]
        params, error = _query(request)
        if error is not None:
            return None, error
        if not _ID.fullmatch(client_order_id):
            return None, _detail("string_pattern_mismatch", ["path", "client_order_id"], f"must match {ID_PATTERN}")
        return _account_for(principal, params, required=True)

    def _not_found(client_order_id: str, account: str) -> Response:
        return _json({"detail": f"order {client_order_id} not found in account {account}"}, 404)

    @app.get("/v1/orders/{client_order_id}", openapi_extra=docs.ORDER_QUERY_EXTRA, responses=docs.GET_RESPONSES)
    async def get_order(request: Request, client_order_id: str) -> Response:
        account, error = _order_query(request, client_order_id)
        if error is not None:
            return error
        assert account is not None
        reply = await client.get_order(account, client_order_id, request.scope["wojak.principal"])
        if reply.get("verdict") == Verdict.NOT_FOUND.value:
            return _not_found(client_order_id, account)
        if reply.get("verdict") == Verdict.OK.value:
            return _json(reply["order"])
        return _from_engine(reply)

    @app.delete("/v1/orders/{client_order_id}", openapi_extra=docs.ORDER_QUERY_EXTRA, responses=docs.CANCEL_RESPONSES)
    async def cancel_order(request: Request, client_order_id: str) -> Response:
        account, error = _order_query(request, client_order_id)
        if error is not None:
            return error
        assert account is not None
        reply = await client.cancel_order(account, client_order_id, request.scope["wojak.principal"])
        if reply.get("verdict") == Verdict.NOT_FOUND.value:
            return _not_found(client_order_id, account)
        if reply.get("verdict") == Verdict.OK.value:
            return _json({"client_order_id": client_order_id, "verdict": "canceled", "order": reply["order"]})
        if reply.get("verdict") == Verdict.REJECTED.value:
            return _json({"client_order_id": client_order_id, "detail": reply.get("reason"), "order": reply.get("order")}, 409)
        return _from_engine(reply)

    @app.post("/v1/ticks", openapi_extra=docs.tick_post_extra(), responses=docs.TICK_RESPONSES)
    async def post_tick(request: Request) -> Response:
        data, error = body_of(request)
        if error is not None:
            return error
        tick, errors = validate_tick(data)
        if tick is None:
            return _unprocessable(errors, data)
        reply = await client.tick(tick, request.scope["wojak.principal"])
        if reply.get("verdict") == Verdict.OK.value:
            payload = {"symbol": tick["symbol"], "verdict": "ok"}
            if reply.get("status"):
                payload["status"] = reply["status"]
            return _json(payload)
        return _from_engine(reply)

    # after the API routes: routes are matched in order, and POST /v1/orders is the hot path
    add_health_routes(app, readiness, metrics)
    docs.add_docs_routes(app)
    docs.install_openapi(app)
    app.add_middleware(_Guard, keys=keys, max_body=config.max_body_bytes, refused=count_refusal)
    app.state.client = client
    app.state.metrics = metrics
    app.state.keys = keys
    app.state.audit = audit
    app.state.count_refusal = count_refusal
    return app


async def serve(config: HttpSidecarSettings) -> None:
    from wojak.sidecars.http.server import Limits, uvicorn_server

    app = create_app(config)
    limits = Limits(
        max_header_bytes=config.max_header_bytes,
        max_headers=config.max_headers,
        header_timeout=config.header_timeout,
        body_timeout=config.body_timeout,
        max_connections=config.max_connections,
        on_refusal=app.state.count_refusal,
    )
    server = uvicorn_server(app, host=config.host, port=config.port, limits=limits, keepalive_timeout=config.keepalive_timeout)
    await server.serve()
