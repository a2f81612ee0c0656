"""The HTTP intake's routes, in process: each engine verdict mapped to its status and body,
what the intake refuses before the engine (validation, scope, account, query, media type,
credentials in the query string), and what it sends the engine. The engine is a scripted
client (answers chosen per test); tests/sidecars/http/test_http_end_to_end.py does the same
against real processes."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest

from wojak.engine.protocol import Principal
from wojak.sidecars.http import create_app
from wojak.sidecars.http.config import HttpSidecarSettings

KEYS = {"trader": "wjk_trader-key-0123456789abcdef", "desk1": "wjk_desk1-key-0123456789abcdef",
        "reader": "wjk_reader-key-0123456789abcdef", "feed": "wjk_feed-key-0123456789abcdefgh"}  # fmt: skip
ENTRIES = {"trader": (["*"], ["orders:write", "orders:read", "ticks:write"]),
           "desk1": (["desk-1"], ["orders:write", "orders:read"]),
           "reader": (["*"], ["orders:read"]),
           "feed": ([], ["ticks:write"])}  # fmt: skip
ORDER = {"client_order_id": "r-1", "account": "desk-1", "symbol": "NIFTY-FUT", "side": "buy", "quantity": "5",
         "order_type": "limit", "limit_price": "24000"}  # fmt: skip
TICK = {"symbol": "NIFTY-FUT", "bid": "24000", "ask": "24001", "last": "24000.5"}
STORED = {**ORDER, "state": "filled", "filled_quantity": "5"}


class ScriptedEngine:
    """The engine client: each call is recorded and answered with ``answers[kind]``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], str]] = []
        self.answers: dict[str, dict[str, Any]] = {}

    def connect(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def _answer(self, kind: str, principal: Principal, *args: Any) -> dict[str, Any]:
        self.calls.append((kind, args, principal.name))
        return self.answers[kind]

    async def submit_order(self, order, principal, deadline=None):
        return await self._answer("submit", principal, order)

    async def get_order(self, account, client_order_id, principal):
        return await self._answer("get", principal, account, client_order_id)

    async def cancel_order(self, account, client_order_id, principal):
        return await self._answer("cancel", principal, account, client_order_id)

    async def list_orders(self, principal, account=None, limit=100, cursor=None):
        return await self._answer("list", principal, account, limit, cursor)

    async def tick(self, tick, principal):
        return await self._answer("tick", principal, tick)

    async def audit(self, event, actor, detail):
        return {"verdict": "ok"}


@pytest.fixture
def engine():
    return ScriptedEngine()


@pytest.fixture
async def api(tmp_path, monkeypatch, engine):
    lines = ["principals:"]
    for name, (accounts, scopes) in ENTRIES.items():
        digest = hashlib.sha256(KEYS[name].encode()).hexdigest()
        lines += [f"  - name: {name}", f'    key_sha256: "{digest}"', f"    accounts: {accounts}", f"    scopes: [{', '.join(scopes)}]"]
    (tmp_path / "keys.yaml").write_text("\n".join(lines) + "\n")
    monkeypatch.delenv("WOJAK_API_KEYS", raising=False)
    monkeypatch.setenv("WOJAK_API_KEYS_FILE", str(tmp_path / "keys.yaml"))
    app = create_app(HttpSidecarSettings().to_config(), client=engine)  # type: ignore[arg-type]

    def client(who: str = "trader") -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://wojak",
                                 headers={"Authorization": f"Bearer {KEYS[who]}"})  # fmt: skip

    yield client


async def post(api, path: str, body: Any, who: str = "trader", **headers: str) -> httpx.Response:
    async with api(who) as c:
        return await c.post(path, json=body, headers=headers)


async def get(api, path: str, who: str = "trader") -> httpx.Response:
    async with api(who) as c:
        return await c.get(path)


async def delete(api, path: str, who: str = "trader") -> httpx.Response:
    async with api(who) as c:
        return await c.delete(path)


# -- POST /v1/orders: verdicts ----------------------------------------------------------------


@pytest.mark.parametrize("verdict", ["filled", "partially_filled", "accepted", "rejected", "denied", "escalated",
                                     "duplicate", "venue_anomaly"])  # fmt: skip
async def test_order_outcomes_are_200_with_the_order(api, engine, verdict):
    engine.answers["submit"] = {"verdict": verdict, "client_order_id": "r-1", "order": STORED}
    r = await post(api, "/v1/orders", ORDER)
    assert r.status_code == 200
    assert r.json() == {"client_order_id": "r-1", "verdict": verdict, "order": STORED}
    [(kind, (sent,), who)] = engine.calls
    assert kind == "submit" and who == "trader"
    assert sent == {**ORDER, "time_in_force": "day", "tag": None}  # validated and canonical


async def test_a_reason_is_passed_on(api, engine):
    engine.answers["submit"] = {"verdict": "denied", "client_order_id": "r-1", "order": STORED, "reason": "price_band_exceeded"}
    assert (await post(api, "/v1/orders", ORDER)).json()["reason"] == "price_band_exceeded"


async def test_conflict_is_409_with_the_stored_order(api, engine):
    engine.answers["submit"] = {"verdict": "conflict", "client_order_id": "r-1", "order": STORED, "reason": "different content"}
    r = await post(api, "/v1/orders", ORDER)
    assert r.status_code == 409
    assert r.json() == {"client_order_id": "r-1", "verdict": "conflict", "order": STORED, "reason": "different content",
                        "detail": "different content"}  # fmt: skip


@pytest.mark.parametrize("after, header", [(None, "1"), (0.2, "1"), (1, "1"), (2.5, "3"), (7, "7")])
async def test_retry_is_503_with_retry_after_in_whole_seconds(api, engine, after, header):
    engine.answers["submit"] = {"verdict": "retry", "reason": "overloaded", **({"retry_after": after} if after else {})}
    r = await post(api, "/v1/orders", ORDER)
    assert r.status_code == 503 and r.headers["retry-after"] == header
    assert r.json() == {"verdict": "retry", "reason": "overloaded"}


async def test_invalid_from_the_engine_is_422_naming_the_field(api, engine):
    engine.answers["submit"] = {"verdict": "invalid", "errors": [
        {"field": "limit_price", "reason": "NIFTY-FUT allows at most 2 decimal places", "code": "decimal_max_places"}]}
    r = await post(api, "/v1/orders", ORDER)
    assert r.status_code == 422
    assert r.json() == {"detail": [{"type": "decimal_max_places", "loc": ["body", "limit_price"],
                                    "msg": "NIFTY-FUT allows at most 2 decimal places"}]}  # fmt: skip


async def test_forbidden_from_the_engine_is_403(api, engine):
    engine.answers["submit"] = {"verdict": "forbidden", "reason": "account_not_permitted", "detail": "no", "client_order_id": "r-1"}
    r = await post(api, "/v1/orders", ORDER)
    assert r.status_code == 403
    assert r.json() == {"verdict": "forbidden", "reason": "account_not_permitted", "detail": "no", "client_order_id": "r-1"}


# -- POST /v1/orders: refused before the engine ----------------------------------------------


async def test_an_invalid_order_is_422_echoing_small_inputs_and_never_reaches_the_engine(api, engine):
    r = await post(api, "/v1/orders", {**ORDER, "quantity": 1.5, "side": "long", "tag": "x" * 200, "extra": [1, 2]})
    assert r.status_code == 422
    detail = {d["loc"][-1]: d for d in r.json()["detail"]}
    assert detail["quantity"] == {"type": "float_not_allowed", "loc": ["body", "quantity"], "input": "1.5",
                                  "msg": 'floats lose precision: send the decimal as a string such as "10.5"'}  # fmt: skip
    assert detail["side"]["input"] == "long" and detail["side"]["type"] == "enum"
    assert detail["tag"]["input"] == repr("x" * 200)[:128]  # long inputs are cut
    assert detail["extra"]["input"] == "[1, 2]" and detail["extra"]["type"] == "extra_forbidden"
    assert engine.calls == []


async def test_a_body_that_is_not_an_object_is_422(api, engine):
    r = await post(api, "/v1/orders", [ORDER])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body"]
    assert engine.calls == []


async def test_the_idempotency_key_header_supplies_or_must_match_the_id(api, engine):
    engine.answers["submit"] = {"verdict": "filled", "client_order_id": "idem-1", "order": STORED}
    body = {k: v for k, v in ORDER.items() if k != "client_order_id"}
    assert (await post(api, "/v1/orders", body, **{"Idempotency-Key": "idem-1"})).status_code == 200
    assert engine.calls[0][1][0]["client_order_id"] == "idem-1"
    r = await post(api, "/v1/orders", ORDER, **{"Idempotency-Key": "other"})
    assert r.status_code == 422
    assert r.json()["detail"] == [{"type": "idempotency_key_mismatch", "loc": ["body", "client_order_id"], "input": "r-1",
                                   "msg": "differs from the Idempotency-Key header"}]  # fmt: skip
    assert len(engine.calls) == 1


async def test_an_order_for_an_account_the_key_may_not_act_for_is_403_before_the_engine(api, engine):
    r = await post(api, "/v1/orders", {**ORDER, "account": "desk-2"}, who="desk1")
    assert r.status_code == 403
    assert r.json() == {"verdict": "forbidden", "reason": "account_not_permitted", "client_order_id": "r-1",
                        "detail": "principal desk1 may not act for account desk-2"}  # fmt: skip
    assert engine.calls == []


@pytest.mark.parametrize("who, method, path", [
    ("reader", "POST", "/v1/orders"), ("feed", "POST", "/v1/orders"), ("feed", "GET", "/v1/orders"),
    ("feed", "GET", "/v1/orders/r-1?account=desk-1"), ("reader", "DELETE", "/v1/orders/r-1?account=desk-1"),
    ("desk1", "POST", "/v1/ticks"), ("reader", "POST", "/v1/ticks"),
])  # fmt: skip
async def test_each_route_needs_its_scope(api, engine, who, method, path):
    async with api(who) as c:
        r = await c.request(method, path, json=ORDER if path == "/v1/orders" else TICK)
    assert r.status_code == 403 and r.json()["reason"] == "scope_missing"
    assert r.json()["detail"].startswith(f"principal {who} lacks the ")
    assert engine.calls == []


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/json; charset=latin-1",
                                          "application/json; boundary=x", "application/jsonx"])  # fmt: skip
async def test_only_json_in_utf8_is_read(api, engine, content_type):
    headers = {"Authorization": f"Bearer {KEYS['trader']}"}
    if content_type:
        headers["Content-Type"] = content_type
    async with api() as c:
        r = await c.post("/v1/orders", content=b'{"a": 1}', headers=headers)
    assert r.status_code == 415
    assert engine.calls == []


@pytest.mark.parametrize("content_type", ["application/json", "Application/JSON; charset=UTF-8", 'application/json; charset="utf8"'])
async def test_json_media_types_accepted(api, engine, content_type):
    engine.answers["submit"] = {"verdict": "filled", "client_order_id": "r-1", "order": STORED}
    async with api() as c:
        r = await c.post("/v1/orders", content=httpx.Request("POST", "/", json=ORDER).content,
                         headers={"Content-Type": content_type})  # fmt: skip
    assert r.status_code == 200


@pytest.mark.parametrize("query", ["api_key=x", "token=abc", "X-API-Key=1", "authorization=Bearer%20x"])
async def test_credentials_in_the_query_string_are_refused(api, engine, query):
    r = await get(api, f"/v1/orders?{query}")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert engine.calls == []


async def test_a_valid_key_in_any_query_parameter_is_refused(api, engine):
    r = await get(api, f"/v1/orders?cursor={KEYS['reader']}")
    assert r.status_code == 401 and "query string" in r.json()["detail"]
    assert engine.calls == []


# -- GET and DELETE /v1/orders/{id} ----------------------------------------------------------


async def test_get_order(api, engine):
    engine.answers["get"] = {"verdict": "ok", "order": STORED}
    r = await get(api, "/v1/orders/r-1?account=desk-1")
    assert r.status_code == 200 and r.json() == STORED
    assert engine.calls == [("get", ("desk-1", "r-1"), "trader")]
    engine.answers["get"] = {"verdict": "not_found"}
    r = await get(api, "/v1/orders/r-2?account=desk-1")
    assert r.status_code == 404 and r.json() == {"detail": "order r-2 not found in account desk-1"}
    engine.answers["get"] = {"verdict": "retry", "reason": "store_unavailable"}
    assert (await get(api, "/v1/orders/r-1?account=desk-1")).status_code == 503


async def test_a_single_account_key_may_leave_the_account_out(api, engine):
    engine.answers["get"] = {"verdict": "ok", "order": STORED}
    assert (await get(api, "/v1/orders/r-1", who="desk1")).status_code == 200
    assert engine.calls == [("get", ("desk-1", "r-1"), "desk1")]
    r = await get(api, "/v1/orders/r-1")  # the trader's key has many accounts
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "account"]
    assert r.json()["detail"][0]["type"] == "missing"


@pytest.mark.parametrize("path, loc, kind", [
    ("/v1/orders/r%201?account=desk-1", ["path", "client_order_id"], "string_pattern_mismatch"),
    ("/v1/orders/" + "x" * 65 + "?account=desk-1", ["path", "client_order_id"], "string_pattern_mismatch"),
    ("/v1/orders/r-1?account=desk%201", ["query", "account"], "string_pattern_mismatch"),
    ("/v1/orders/r-1?account=desk-1&account=desk-2", ["query", "account"], "duplicate_parameter"),
])  # fmt: skip
async def test_bad_ids_and_queries_are_422(api, engine, path, loc, kind):
    r = await get(api, path)
    assert r.status_code == 422
    [item] = r.json()["detail"]
    assert item["loc"] == loc and item["type"] == kind
    assert engine.calls == []


async def test_reading_another_account_is_403_before_the_engine(api, engine):
    r = await get(api, "/v1/orders/r-1?account=desk-2", who="desk1")
    assert r.status_code == 403 and r.json()["reason"] == "account_not_permitted"
    assert engine.calls == []


async def test_cancel_order(api, engine):
    engine.answers["cancel"] = {"verdict": "ok", "order": {**STORED, "state": "canceled"}}
    r = await delete(api, "/v1/orders/r-1?account=desk-1")
    assert r.status_code == 200
    assert r.json() == {"client_order_id": "r-1", "verdict": "canceled", "order": {**STORED, "state": "canceled"}}
    assert engine.calls == [("cancel", ("desk-1", "r-1"), "trader")]
    engine.answers["cancel"] = {"verdict": "rejected", "reason": "order_final", "order": STORED}
    r = await delete(api, "/v1/orders/r-1?account=desk-1")
    assert r.status_code == 409 and r.json() == {"client_order_id": "r-1", "detail": "order_final", "order": STORED}
    engine.answers["cancel"] = {"verdict": "not_found"}
    r = await delete(api, "/v1/orders/r-9?account=desk-1")
    assert r.status_code == 404 and r.json() == {"detail": "order r-9 not found in account desk-1"}


# -- GET /v1/orders --------------------------------------------------------------------------


async def test_list_orders_passes_account_limit_and_cursor(api, engine):
    engine.answers["list"] = {"verdict": "ok", "orders": [STORED], "next_cursor": "c2"}
    r = await get(api, "/v1/orders")
    assert r.status_code == 200 and r.json() == {"orders": [STORED], "next_cursor": "c2"}
    assert engine.calls[-1] == ("list", (None, 100, None), "trader")
    await get(api, "/v1/orders?account=desk-1&limit=500&cursor=abc!~")
    assert engine.calls[-1] == ("list", ("desk-1", 500, "abc!~"), "trader")
    await get(api, "/v1/orders?limit=1&cursor=")
    assert engine.calls[-1] == ("list", (None, 1, None), "trader")
    engine.answers["list"] = {"verdict": "ok"}
    assert (await get(api, "/v1/orders")).json() == {"orders": [], "next_cursor": None}


@pytest.mark.parametrize("query, loc, kind", [
    ("limit=0", ["query", "limit"], "int_range"), ("limit=501", ["query", "limit"], "int_range"),
    ("limit=abc", ["query", "limit"], "int_range"), ("limit=%2B5", ["query", "limit"], "int_range"),
    ("limit=12345", ["query", "limit"], "int_range"), ("limit=-1", ["query", "limit"], "int_range"),
    ("cursor=a%20b", ["query", "cursor"], "string_pattern_mismatch"),
    ("cursor=" + "c" * 513, ["query", "cursor"], "string_pattern_mismatch"),
    ("limit=5&limit=6", ["query", "limit"], "duplicate_parameter"),
])  # fmt: skip
async def test_list_query_limits(api, engine, query, loc, kind):
    r = await get(api, f"/v1/orders?{query}")
    assert r.status_code == 422
    [item] = r.json()["detail"]
    assert (item["loc"], item["type"]) == (loc, kind)
    assert engine.calls == []


async def test_a_cursor_of_512_characters_is_passed_on(api, engine):
    engine.answers["list"] = {"verdict": "ok", "orders": [], "next_cursor": None}
    assert (await get(api, "/v1/orders?cursor=" + "c" * 512)).status_code == 200
    assert engine.calls[-1][1][2] == "c" * 512


async def test_listing_refused_by_the_engine_keeps_its_status(api, engine):
    engine.answers["list"] = {"verdict": "forbidden", "reason": "account_not_permitted", "detail": "no"}
    assert (await get(api, "/v1/orders?account=desk-9")).status_code == 403


# -- POST /v1/ticks ------------------------------------------------------------------------


async def test_ticks(api, engine):
    engine.answers["tick"] = {"verdict": "ok"}
    r = await post(api, "/v1/ticks", TICK, who="feed")
    assert r.status_code == 200 and r.json() == {"symbol": "NIFTY-FUT", "verdict": "ok"}
    assert engine.calls == [("tick", (TICK,), "feed")]
    engine.answers["tick"] = {"verdict": "ok", "status": "suspect"}
    assert (await post(api, "/v1/ticks", TICK, who="feed")).json() == {"symbol": "NIFTY-FUT", "verdict": "ok", "status": "suspect"}
    engine.answers["tick"] = {"verdict": "retry", "reason": "overloaded", "retry_after": 2}
    r = await post(api, "/v1/ticks", TICK, who="feed")
    assert r.status_code == 503 and r.headers["retry-after"] == "2"
    r = await post(api, "/v1/ticks", {**TICK, "bid": "24002"}, who="feed")
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "crossed_quote"
    assert len(engine.calls) == 3
