"""The HTTP intake's rules at their edges, in process (ASGI, no sockets), that the route tests do
not pin: the exact shape of every refusal made before a route (status, JSON body, length,
``WWW-Authenticate``, ``Connection: close`` only where the body was not read), the query
string's rules (a parameter given twice, blank values, undecodable bytes, credentials), the
account a query acts for, how much of a bad input a 422 echoes, methods a route does not have,
the raw ASGI body messages, and the app's lifespan (engine connection, audit trail, keys file
reloaded while serving, drain)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import httpx
import pytest

from tests.sidecars.http.test_http_routes_in_process import KEYS, ORDER, ScriptedEngine, get, post
from wojak.engine.protocol import ID_PATTERN
from wojak.sidecars.http import create_app
from wojak.sidecars.http.config import HttpSidecarSettings

UNAUTHORISED = {
    "detail": "missing or wrong API key: send Authorization: Bearer <key> or X-API-Key"
    " (keys come from WOJAK_API_KEYS_FILE, or WOJAK_API_KEYS in development)"
}
TOO_LARGE = {"detail": "body larger than 65536 bytes (setting WOJAK_SIDECAR_MAX_BODY_BYTES)"}
FILLED = {"verdict": "filled", "client_order_id": "r-1", "order": {"state": "filled"}}


def app_of(tmp_path, monkeypatch, engine, dev_keys: str | None = None):
    """The app as ``wojak sidecar http`` builds it: the keys file of test_http_routes_in_process, or dev keys."""
    for name in ("WOJAK_API_KEYS", "WOJAK_API_KEYS_FILE", "WOJAK_SIDECAR_MAX_BODY_BYTES"):
        monkeypatch.delenv(name, raising=False)
    if dev_keys is not None:
        monkeypatch.setenv("WOJAK_API_KEYS", dev_keys)
        monkeypatch.setenv("WOJAK_DEV", "1")
    else:
        lines = ["principals:"]
        for name, (accounts, scopes) in {"trader": (["*"], ["orders:write", "orders:read", "ticks:write"]),
                                         "desk1": (["desk-1"], ["orders:write", "orders:read"]),
                                         "reader": (["*"], ["orders:read"]),
                                         "feed": ([], ["ticks:write"])}.items():  # fmt: skip
            digest = hashlib.sha256(KEYS[name].encode()).hexdigest()
            lines += [f"  - name: {name}", f'    key_sha256: "{digest}"', f"    accounts: {accounts}",
                      f"    scopes: [{', '.join(scopes)}]"]  # fmt: skip
        (tmp_path / "keys.yaml").write_text("\n".join(lines) + "\n")
        monkeypatch.setenv("WOJAK_API_KEYS_FILE", str(tmp_path / "keys.yaml"))
    return create_app(HttpSidecarSettings().to_config(), client=engine)  # type: ignore[arg-type]


async def raw(app: Any, *, method: str = "POST", path: str = "/v1/orders", query: bytes = b"",
              headers: list[tuple[bytes, bytes]] = (), messages: list[dict[str, Any]] | None = None,
              scope_type: str = "http") -> tuple[int, dict[bytes, bytes], bytes]:  # fmt: skip
    """One request as the ASGI server hands it over: ``messages`` are the body's receive() messages."""
    scope = {"type": scope_type, "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": query, "root_path": "", "headers": list(headers),
             "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8080)}  # fmt: skip
    pending = list(messages if messages is not None else [{"type": "http.request", "body": b"", "more_body": False}])

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        await asyncio.sleep(5)
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), 10)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


def auth(who: str = "trader") -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {KEYS[who]}".encode())]


JSON_TYPE = [(b"content-type", b"application/json")]


# -- refusals before any route: their exact shape ---------------------------------------------


async def test_each_refusal_before_a_route_is_json_of_its_length_and_closes_only_an_unread_body(tmp_path, monkeypatch):
    engine = ScriptedEngine()
    app = app_of(tmp_path, monkeypatch, engine)
    body = json.dumps(ORDER).encode()
    cases = {
        "no key": (dict(headers=JSON_TYPE), 401, UNAUTHORISED, True, False),
        "a wrong key": (dict(headers=[(b"x-api-key", b"wjk_nobody-0123456789abcdef"), *JSON_TYPE]), 401, UNAUTHORISED, True, False),
        "a scope missing": (dict(headers=auth("feed") + JSON_TYPE), 403, None, False, False),
        "a declared length over the limit": (dict(headers=auth() + JSON_TYPE + [(b"content-length", b"65537")]), 413, TOO_LARGE,
                                             False, True),
        "a chunked body over the limit": (dict(headers=auth() + JSON_TYPE, messages=[
            {"type": "http.request", "body": b" " * 40000, "more_body": True},
            {"type": "http.request", "body": b" " * 40000, "more_body": False}]), 413, TOO_LARGE, False, True),
        "a malformed length": (dict(headers=auth() + JSON_TYPE + [(b"content-length", b"12a")]), 400,
                               {"detail": "bad Content-Length"}, False, True),
        "a media type that is not JSON": (dict(headers=auth() + [(b"content-type", b"text/plain"),
                                                                 (b"content-length", str(len(body)).encode())],
                                               messages=[{"type": "http.request", "body": body}]), 415,
                                          {"detail": "Content-Type 'text/plain' is not supported: send application/json (UTF-8)"},
                                          False, False),
    }  # fmt: skip
    for what, (request, status, payload, bearer, close) in cases.items():
        got, headers, content = await raw(app, **request)
        assert got == status, what
        assert headers[b"content-type"] == b"application/json" and int(headers[b"content-length"]) == len(content), what
        if payload is not None:
            assert json.loads(content) == payload, what
        else:
            assert json.loads(content)["reason"] == "scope_missing", what
        assert (headers.get(b"www-authenticate") == b"Bearer") is bearer, what
        assert (headers.get(b"connection") == b"close") is close, what
    assert engine.calls == []
    counted = {s: app.state.metrics.registry.get_sample_value("wojak_sidecar_http_refused_total", {"reason": s})
               for s in ("400", "401", "403", "413", "415")}  # fmt: skip
    assert counted == {"400": 1, "401": 2, "403": 1, "413": 2, "415": 1}


@pytest.mark.parametrize("length", [b"0", b"9" * 5000])
async def test_a_length_of_zero_is_read_and_one_int_cannot_parse_is_malformed(tmp_path, monkeypatch, length):
    engine = ScriptedEngine()
    app = app_of(tmp_path, monkeypatch, engine)
    status, headers, content = await raw(app, headers=auth() + JSON_TYPE + [(b"content-length", length)])
    if length == b"0":  # an empty body is read, and is not JSON: the route says so
        assert status == 422 and json.loads(content)["detail"][0]["type"] == "json_invalid"
    else:  # more digits than int() takes: as malformed as any other
        assert (status, json.loads(content), headers[b"connection"]) == (400, {"detail": "bad Content-Length"}, b"close")


async def test_body_messages_without_a_body_or_more_body_key_are_read_as_empty_and_last(tmp_path, monkeypatch):
    engine = ScriptedEngine()
    engine.answers["submit"] = FILLED
    app = app_of(tmp_path, monkeypatch, engine)
    body = json.dumps(ORDER).encode()
    messages = [
        {"type": "http.request", "more_body": True},  # no body key: an empty chunk
        {"type": "http.request", "body": body[:10], "more_body": True},
        {"type": "http.request", "body": body[10:]},
    ]  # no more_body key: the last one
    status, _, content = await raw(app, headers=auth() + JSON_TYPE, messages=messages)
    assert status == 200 and json.loads(content)["verdict"] == "filled"
    [(_, (sent,), _)] = engine.calls
    assert sent["client_order_id"] == ORDER["client_order_id"] and sent["quantity"] == ORDER["quantity"]


async def test_a_client_that_goes_away_mid_body_gets_no_answer_and_nothing_is_sent(tmp_path, monkeypatch):
    engine = ScriptedEngine()
    app = app_of(tmp_path, monkeypatch, engine)
    sent: list[dict[str, Any]] = []
    pending = [{"type": "http.request", "body": b'{"a"', "more_body": True}, {"type": "http.disconnect"}]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/orders", "raw_path": b"/v1/orders", "query_string": b"", "root_path": "",
             "headers": auth() + JSON_TYPE, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2)}  # fmt: skip

    async def receive() -> dict[str, Any]:
        return pending.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), 5)
    assert sent == [] and engine.calls == []


@pytest.mark.parametrize("path", ["/healthz", "/metrics", "/openapi.json", "/docs"])
async def test_open_paths_are_served_without_a_key(tmp_path, monkeypatch, path):
    app = app_of(tmp_path, monkeypatch, AuditingEngine())
    status, headers, content = await raw(app, method="GET", path=path, messages=[{"type": "http.request"}])
    assert status == 200 and content


# -- the query string ---------------------------------------------------------------------------


@pytest.mark.parametrize("query", [b"token=", b"TOKEN=x", b"%20api_key%20=x", b"password"])
async def test_a_credential_parameter_is_refused_even_blank_or_in_other_case(api, scripted, query):
    async with api() as c:
        r = await c.get("/v1/orders?" + query.decode())
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["detail"].startswith("credentials in the query string (")
    assert scripted.calls == []


async def test_a_refused_credential_parameter_is_named_and_a_key_in_the_query_is_logged_for_rotation(
    tmp_path, monkeypatch, caplog
):
    """The 401 names the parameter (its first 32 characters); a valid key sent as a query value
    is logged with its principal, so the operator knows which key to rotate (never the key)."""
    app = app_of(tmp_path, monkeypatch, ScriptedEngine())
    name = " " * 30 + "API_KEY"  # a credential's name, padded past what the refusal quotes
    status, _, content = await raw(app, method="GET", query=b"%20" * 30 + b"API_KEY=1")
    assert status == 401 and json.loads(content) == {"detail": f"credentials in the query string ({name[:32]}) are not"
                                                               " accepted: use the Authorization or X-API-Key header"}  # fmt: skip
    caplog.set_level("WARNING", logger="wojak.sidecars.http.source")
    status, _, _ = await raw(app, method="GET", query=b"note=" + KEYS["reader"].encode())
    assert status == 401
    assert [r.getMessage() for r in caplog.records if r.name == "wojak.sidecars.http.source"] == [
        "principal reader's API key was sent in a query string (refused): rotate that key"]
    assert KEYS["reader"] not in caplog.text


@pytest.mark.parametrize("dev, warned", [(False, True), (True, False)])
def test_development_keys_outside_development_are_warned_about(tmp_path, monkeypatch, caplog, dev, warned):
    caplog.set_level("WARNING", logger="wojak.sidecars.http.source")
    monkeypatch.setenv("WOJAK_API_KEYS", "wjk_development-key-0123456789")
    monkeypatch.delenv("WOJAK_API_KEYS_FILE", raising=False)
    monkeypatch.setenv("WOJAK_DEV", "1" if dev else "0")
    create_app(HttpSidecarSettings().to_config(), client=ScriptedEngine())  # type: ignore[arg-type]
    expected = ["WOJAK_API_KEYS is the development form: every key is principal 'dev' with every account and every scope."
                " Use WOJAK_API_KEYS_FILE (wojak keys new) for scoped keys."]  # fmt: skip
    assert [r.getMessage() for r in caplog.records if r.name == "wojak.sidecars.http.source"] == (expected if warned else [])


@pytest.mark.parametrize("length", [16, 1024])
async def test_a_valid_key_of_any_accepted_length_is_refused_in_any_parameter(tmp_path, monkeypatch, length):
    key = ("k" * length)[:length]
    app = app_of(tmp_path, monkeypatch, ScriptedEngine(), dev_keys=f"{key},wjk_header-key-0123456789abcdef")
    status, headers, content = await raw(app, method="GET", query=b"note=" + key.encode(),
                                         headers=[(b"x-api-key", b"wjk_header-key-0123456789abcdef")])  # fmt: skip
    assert status == 401 and json.loads(content) == {
        "detail": "credentials in the query string are not accepted: use the Authorization or X-API-Key header"}  # fmt: skip


async def test_undecodable_query_bytes_are_replaced_not_a_crash(api, scripted):
    scripted.answers["list"] = {"verdict": "ok", "orders": [], "next_cursor": None}
    async with api() as c:
        r = await c.get("/v1/orders?cursor=%ff%fe")
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "cursor"]
        r = await c.get("/v1/orders?note=%ff")  # an unknown parameter, undecodable: ignored
        assert r.status_code == 200
    assert [args for _, args, _ in scripted.calls] == [(None, 100, None)]


async def test_a_parameter_given_twice_is_422_naming_it_even_when_one_is_blank(api, scripted):
    long = "p" * 100
    for query, name in [("account=&account=desk-1", "account"), ("limit=5&limit=5", "limit"), (f"{long}=1&{long}=2", long[:64])]:
        async with api() as c:
            r = await c.get("/v1/orders?" + query)
        assert r.status_code == 422, query
        assert r.json() == {"detail": [{"type": "duplicate_parameter", "loc": ["query", name], "msg": "is given more than once"}]}
    assert scripted.calls == []


async def test_a_blank_limit_or_account_is_the_default(api, scripted):
    scripted.answers["list"] = {"verdict": "ok", "orders": [], "next_cursor": None}
    async with api() as c:
        assert (await c.get("/v1/orders?limit=&account=&cursor=")).status_code == 200
    assert [args for _, args, _ in scripted.calls] == [(None, 100, None)]


async def test_the_account_a_query_acts_for(api, scripted):
    scripted.answers["get"] = {"verdict": "ok", "order": {"client_order_id": "r-1"}}
    assert (await get(api, "/v1/orders/r-1?account=", who="desk1")).status_code == 200  # its one account
    r = await get(api, "/v1/orders/r-1?account=", who="trader")
    assert r.status_code == 422 and r.json() == {"detail": [{"type": "missing", "loc": ["query", "account"], "msg":
        "is required: this API key may act for more than one account, so name one (?account=...)"}]}  # fmt: skip
    r = await get(api, "/v1/orders/r-1?account=no%20spaces", who="trader")
    assert r.status_code == 422 and r.json() == {"detail": [{"type": "string_pattern_mismatch", "loc": ["query", "account"],
                                                             "msg": f"must match {ID_PATTERN}"}]}  # fmt: skip
    r = await get(api, "/v1/orders/r-1?account=desk-2", who="desk1")
    assert r.status_code == 403 and r.json()["reason"] == "account_not_permitted"
    assert r.json()["detail"] == "principal desk1 may not act for account desk-2"
    r = await get(api, "/v1/orders/bad%20id?account=desk-1", who="trader")
    assert r.json() == {"detail": [{"type": "string_pattern_mismatch", "loc": ["path", "client_order_id"],
                                    "msg": f"must match {ID_PATTERN}"}]}  # fmt: skip
    assert [args for _, args, _ in scripted.calls] == [("desk-1", "r-1")]


# -- what a 422 echoes of the input, and the engine's invalid ------------------------------------


@pytest.mark.parametrize("value, echoed", [
    (-(2**63), -(2**63)), (2**63 - 1, 2**63 - 1), (2**63, repr(2**63)), (-(2**63) - 1, repr(-(2**63) - 1)),
    ("x" * 128, "x" * 128), ("x" * 129, repr("x" * 129)[:128]), (True, True),
])  # fmt: skip
async def test_a_422_echoes_small_inputs_as_they_are_and_the_rest_as_a_bounded_repr(api, scripted, value, echoed):
    r = await post(api, "/v1/orders", {**ORDER, "quantity": value})
    assert r.status_code == 422
    [item] = [d for d in r.json()["detail"] if d["loc"] == ["body", "quantity"]]
    assert item["input"] == echoed and type(item["input"]) is type(echoed)


async def test_an_engine_invalid_without_errors_is_an_empty_422_and_a_listings_fields_are_in_the_query(api, scripted):
    scripted.answers["submit"] = {"verdict": "invalid"}
    r = await post(api, "/v1/orders", ORDER)
    assert (r.status_code, r.json()) == (422, {"detail": []})
    scripted.answers["list"] = {"verdict": "invalid", "errors": [{"field": "cursor", "reason": "unknown", "code": "bad"}]}
    r = await get(api, "/v1/orders?cursor=abc")
    assert r.json() == {"detail": [{"type": "bad", "loc": ["query", "cursor"], "msg": "unknown"}]}


async def test_a_body_that_cannot_be_parsed_is_answered_with_its_status_and_detail(api, scripted):
    async with api() as c:
        r = await c.post("/v1/orders", content=b"\xff{}", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.headers["content-type"] == "application/json"
    [item] = r.json()["detail"]
    assert item["type"] == "json_invalid" and item["loc"] == ["body"]


# -- methods a route does not have ------------------------------------------------------------------


@pytest.mark.parametrize("method, path, who", [("PUT", "/v1/orders", "feed"), ("GET", "/v1/orders", "reader"),
                                               ("PATCH", "/v1/orders/r-1", "feed"), ("GET", "/v1/ticks", "reader"),
                                               ("PUT", "/v1/ticks", "desk1")])  # fmt: skip
async def test_a_method_a_route_does_not_have_needs_no_scope_and_is_405(api, scripted, method, path, who):
    scripted.answers["list"] = {"verdict": "ok", "orders": [], "next_cursor": None}
    async with api(who) as c:
        r = await c.request(method, path)
    assert r.status_code == (200 if (method, path) == ("GET", "/v1/orders") else 405)


# -- the lifespan: engine connection, audit trail, keys reloaded while serving ----------------------


class AuditingEngine(ScriptedEngine):
    def __init__(self) -> None:
        super().__init__()
        self.connected = self.closed = False
        self.audited: list[tuple[str, str, dict[str, Any]]] = []

    def connect(self) -> None:
        self.connected = True

    async def close(self) -> None:
        self.closed = True

    async def audit(self, event, actor, detail):
        self.audited.append((event, actor, detail))
        return {"verdict": "ok"}

    async def request(self, kind, body, timeout=None):  # the readiness ping
        return {"verdict": "ok", "ready": True}

    async def metrics_text(self):
        return "# the engine's metrics\n"


async def test_the_lifespan_connects_audits_reloads_the_keys_file_and_drains(tmp_path, monkeypatch):
    engine = AuditingEngine()
    engine.answers["list"] = {"verdict": "ok", "orders": [], "next_cursor": None}
    monkeypatch.setenv("WOJAK_API_KEYS_RELOAD_SECONDS", "0.05")
    app = app_of(tmp_path, monkeypatch, engine)
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        outbox.append(message)

    async def wait_for(check, what: str) -> None:
        for _ in range(400):
            if check():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"timed out waiting for {what}")

    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, send))
    await inbox.put({"type": "lifespan.startup"})
    await wait_for(lambda: outbox, "startup")
    assert outbox[0]["type"] == "lifespan.startup.complete" and engine.connected
    await wait_for(lambda: engine.audited, "the first audit event")
    [(event, actor, detail)] = engine.audited
    assert (event, actor, detail["count"]) == ("keys_file_loaded", "sidecar:http", 4)
    assert (await get(api_for(app), "/v1/orders", who="reader")).status_code == 200

    # the keys file changes while serving: the new key gets in, the old one no longer does
    new_key = "wjk_rotated-key-0123456789abcdef"
    (tmp_path / "keys.yaml").write_text("principals:\n  - name: rotated\n"
                                        f'    key_sha256: "{hashlib.sha256(new_key.encode()).hexdigest()}"\n'
                                        '    accounts: ["*"]\n    scopes: [orders:read]\n')  # fmt: skip
    await wait_for(lambda: len(engine.audited) == 2, "the reload")
    assert engine.audited[1][0] == "keys_file_loaded" and engine.audited[1][2]["principals"] == ["rotated"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://wojak") as c:
        assert (await c.get("/v1/orders", headers={"X-API-Key": new_key})).status_code == 200
        assert (await c.get("/v1/orders", headers={"X-API-Key": KEYS["reader"]})).status_code == 401
        assert (await c.get("/readyz")).json()["draining"] is False

    await inbox.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(task, 5)
    assert outbox[-1]["type"] == "lifespan.shutdown.complete" and engine.closed
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://wojak") as c:
        assert (await c.get("/readyz")).json()["draining"] is True


async def _lifespan(app: Any) -> tuple[asyncio.Task[None], asyncio.Queue[dict[str, Any]], list[dict[str, Any]]]:
    """Start ``app``'s lifespan as an ASGI server does; (its task, its inbox, what it sent)."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        outbox.append(message)

    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, send))
    await inbox.put({"type": "lifespan.startup"})
    for _ in range(400):
        if outbox:
            break
        await asyncio.sleep(0.01)
    return task, inbox, outbox


async def test_with_development_keys_the_lifespan_starts_serves_and_stops_without_a_keys_watcher(tmp_path, monkeypatch):
    engine = AuditingEngine()
    engine.answers["list"] = {"verdict": "ok", "orders": [], "next_cursor": None}
    dev_key = "wjk_development-key-0123456789"
    app = app_of(tmp_path, monkeypatch, engine, dev_keys=dev_key)
    task, inbox, outbox = await _lifespan(app)
    assert [m["type"] for m in outbox] == ["lifespan.startup.complete"] and engine.connected
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://wojak") as c:
        assert (await c.get("/v1/orders", headers={"X-API-Key": dev_key})).status_code == 200
    await inbox.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(task, 5)
    assert [m["type"] for m in outbox] == ["lifespan.startup.complete", "lifespan.shutdown.complete"] and engine.closed
    assert engine.audited == []  # no keys file: nothing loaded to audit


async def test_readiness_is_exported_as_the_http_sources_gauge(tmp_path, monkeypatch):
    app = app_of(tmp_path, monkeypatch, AuditingEngine())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://wojak") as c:
        assert (await c.get("/readyz")).json()["ready"] is True
        exposition = (await c.get("/metrics")).text
    assert [line for line in exposition.splitlines() if line.startswith("wojak_sidecar_ready")] == [
        'wojak_sidecar_ready{source="http"} 1.0']


async def test_what_the_intake_publishes_about_itself_reads_as_written(tmp_path, monkeypatch):
    """The OpenAPI description, the refusal counter's help (it lists every reason label), one
    documentation page (/docs, no /redoc), and an engine reply without a verdict counted as
    "unknown"."""
    engine = AuditingEngine()
    engine.answers["submit"] = {"client_order_id": "r-1"}
    app = app_of(tmp_path, monkeypatch, engine)
    async with api_for(app)() as c:
        spec = (await c.get("/openapi.json")).json()
        assert [(await c.get(path)).status_code for path in ("/docs", "/redoc")] == [200, 404]
        await c.post("/v1/orders", json=ORDER)
        exposition = (await c.get("/metrics")).text
    assert spec["info"]["description"] == (
        "Submit orders and ticks to the wojak engine, read and cancel orders. Decimals are strings. Every /v1 route"
        " needs an API key (Authorization: Bearer, or X-API-Key) whose principal has the route's scope and may act for"
        " the order's account.")  # fmt: skip
    assert "# HELP wojak_sidecar_http_refused_total HTTP requests and connections refused before any route, by status" \
        " (401, 403, 408_header, 408_body, 413, 415, 431, 503_connections)" in exposition.splitlines()  # fmt: skip
    registry = app.state.metrics.registry
    assert registry.get_sample_value("wojak_sidecar_messages_total", {"source": "http", "verdict": "unknown"}) == 1


def test_the_keys_file_is_polled_at_the_configured_interval(tmp_path, monkeypatch):
    from wojak.sidecars.http import source

    intervals: list[float] = []

    class Recording(source.KeysFileWatcher):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            intervals.append(self.interval)

    monkeypatch.setattr(source, "KeysFileWatcher", Recording)
    monkeypatch.setenv("WOJAK_API_KEYS_RELOAD_SECONDS", "7.5")
    app_of(tmp_path, monkeypatch, ScriptedEngine())
    assert intervals == [7.5]


@pytest.fixture
def scripted() -> ScriptedEngine:
    return ScriptedEngine()


@pytest.fixture
def api(tmp_path, monkeypatch, scripted):
    return api_for(app_of(tmp_path, monkeypatch, scripted))


def api_for(app: Any):
    def client(who: str = "trader") -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://wojak",
                                 headers={"Authorization": f"Bearer {KEYS[who]}"})  # fmt: skip

    return client


def test_the_app_talks_to_the_configured_engine_socket_with_its_deadline(tmp_path, monkeypatch):
    monkeypatch.setenv("WOJAK_ENGINE_SOCKET", str(tmp_path / "engine.sock"))
    monkeypatch.setenv("WOJAK_SIDECAR_ENGINE_DEADLINE", "2.5")
    monkeypatch.setenv("WOJAK_SIDECAR_ENGINE_WINDOW", "77")
    monkeypatch.setenv("WOJAK_SIDECAR_ENGINE_BATCH", "9")
    monkeypatch.setenv("WOJAK_SIDECAR_ENGINE_LINGER_MS", "4")
    monkeypatch.setenv("WOJAK_API_KEYS", "wjk_dev-key-0123456789abcdef")
    monkeypatch.delenv("WOJAK_API_KEYS_FILE", raising=False)
    config = HttpSidecarSettings().to_config()
    client = create_app(config).state.client
    assert (client.endpoint, client.deadline) == (f"ipc://{tmp_path / 'engine.sock'}", 2.5)
    assert (client.max_batch, client.linger, client._window._value) == (9, 0.004, 77)  # in flight at most: the window


@pytest.mark.parametrize("scheme", ["Basic  ", "Token  ", "bearer", "Bearer"])
async def test_a_key_sent_under_another_scheme_or_without_a_space_is_refused(tmp_path, monkeypatch, scheme):
    app = app_of(tmp_path, monkeypatch, ScriptedEngine())
    status, headers, _ = await raw(app, method="GET", headers=[(b"authorization", f"{scheme}{KEYS['trader']}".encode())],
                                   messages=[{"type": "http.request"}])  # fmt: skip
    assert status == 401 and headers[b"www-authenticate"] == b"Bearer"
