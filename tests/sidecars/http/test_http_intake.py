"""The intake refuses what it should, each with its status, never a 500, never executed.

Real engine + real HTTP sidecar processes (the development key: every account and scope)."""

from __future__ import annotations

import json

import httpx
import orjson
import pytest

from tests._processes import API_KEY
from tests.sidecars.http._keys import TICK, executions, order, stored_orders
from wojak.engine.protocol import ORDER_FIELDS

AUTH = {"Authorization": f"Bearer {API_KEY}"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def api(http_sidecar):
    with httpx.Client(base_url=http_sidecar.url, headers=AUTH, timeout=10) as client:
        assert client.post("/v1/ticks", json=TICK).status_code == 200
        yield client


def _post_raw(api, raw: bytes, headers=JSON, path="/v1/orders") -> httpx.Response:
    r = api.post(path, content=raw, headers=headers)
    assert r.status_code != 500, r.text
    orjson.loads(r.content)  # every answer is strict JSON (no lone surrogate escapes either)
    return r


def _types(r: httpx.Response) -> set[tuple[str, tuple[str, ...]]]:
    return {(d["type"], tuple(d["loc"])) for d in r.json()["detail"]}


def _nothing_happened(api, engine, coid: str) -> None:
    assert stored_orders(engine) == [] and executions(engine) == {}
    assert api.get(f"/v1/orders/{coid}?account=desk-1").status_code == 404


@pytest.mark.parametrize("field, first, second", [("quantity", "50", "75"), ("side", "buy", "sell"),
                                                  ("account", "desk-1", "desk-2"), ("client_order_id", "dup-a", "dup-b")])  # fmt: skip
def test_a_key_given_twice_is_a_422_naming_it(api, engine, field, first, second):
    body = json.dumps({**order("dup-1", "desk-1"), field: first})[:-1] + f', "{field}": "{second}"}}'
    r = _post_raw(api, body.encode())
    assert r.status_code == 422 and ("duplicate_key", ("body", field)) in _types(r), r.text
    assert stored_orders(engine) == [] and executions(engine) == {}


def test_a_duplicate_key_in_a_tick_is_refused_too(api):
    r = _post_raw(api, b'{"symbol":"NIFTY-FUT","bid":"1","ask":"2","last":"1","last":"99999"}', path="/v1/ticks")
    assert r.status_code == 422 and ("duplicate_key", ("body", "last")) in _types(r)


DIGITS = ["\u0665\u0660", "\uff15\uff10", "\U0001d7d3", "+5", "05", "00", "0x32", " 50", "50 ", "5_0", "٥", "50\n"]


@pytest.mark.parametrize("value", DIGITS)
@pytest.mark.parametrize("field", ["quantity", "limit_price"])
def test_only_plain_ascii_decimals(api, engine, field, value):
    r = _post_raw(api, json.dumps(order("digits-1", "desk-1", **{field: value})).encode())
    assert r.status_code == 422 and ("decimal_parsing", ("body", field)) in _types(r), r.text
    _nothing_happened(api, engine, "digits-1")


STRING_FIELDS = [f for f in ORDER_FIELDS if f not in ("quantity", "limit_price")] + ["quantity", "limit_price"]
SURROGATES = ["\ud800", "a\udfffb", "\udc00\ud800", "\ud83d"]  # lone high, lone low, reversed pair, half an emoji


@pytest.mark.parametrize("field", STRING_FIELDS)
def test_a_lone_surrogate_in_any_string_is_a_422_never_a_500(api, engine, field):
    for bad in SURROGATES:
        body = order("sur-1", "desk-1", tag="ok")
        body[field] = bad
        raw = json.dumps(body).encode()  # ensure_ascii: the surrogate travels as a \\udXXX escape
        assert b"\\ud" in raw
        r = _post_raw(api, raw)
        assert r.status_code == 422 and ("string_unicode", ("body", field)) in _types(r), r.text
        # with the Idempotency-Key header supplying the id, too
        r = _post_raw(api, raw, {**JSON, "Idempotency-Key": "sur-1"})
        assert r.status_code == 422
    _nothing_happened(api, engine, "sur-1")


def test_lone_surrogates_anywhere_else_are_422(api, engine):
    raws = [
        b'{"\\ud800": 1}',  # in a key
        b'{"tag": ["\\udc00"]}',  # nested
        b'"\\ud800"',  # the whole body
        b'{"client_order_id":"s-2","account":"desk-1","symbol":"NIFTY-FUT","side":"buy","quantity":"1",'
        b'"order_type":"limit","limit_price":"24000","x\\udfff":"\\ud800"}',  # unknown field named with one
        b'{"tag": "\xed\xa0\x80"}',  # a surrogate encoded as UTF-8 bytes (not valid UTF-8)
    ]
    for raw in raws:
        r = _post_raw(api, raw)
        assert r.status_code == 422, (raw, r.text)
        r = _post_raw(api, raw, path="/v1/ticks")
        assert r.status_code == 422, (raw, r.text)
    ok = _post_raw(api, json.dumps(order("emoji-1", "desk-1", tag="\U0001f600 ok")).encode())  # a real pair is fine
    assert ok.status_code == 200, ok.text


def test_only_utf8_application_json_is_read(api, engine):
    body = json.dumps(order("enc-1", "desk-1"))
    refused = [
        (body.encode("utf-16"), JSON, 415),  # BOM + UTF-16LE
        (body.encode("utf-16-le"), JSON, 415),
        (body.encode("utf-16-be"), JSON, 415),
        (body.encode("utf-32"), JSON, 415),
        (body.encode(), {"Content-Type": "application/json; charset=utf-16"}, 415),
        (body.encode(), {"Content-Type": "text/plain"}, 415),
        (body.encode(), {"Content-Type": "application/x-www-form-urlencoded"}, 415),  # curl -d without -H
        (body.encode(), {"Content-Type": "application/json-patch+json"}, 415),
        (body.encode(), {"Content-Type": "application/json; boundary=x"}, 415),
        (body.encode(), {}, 415),  # no Content-Type at all
        (b"\xef\xbb\xbf" + body.encode(), JSON, 422),  # UTF-8 with a byte-order mark
        (body.encode("latin-1") + b"\xff", JSON, 422),  # not UTF-8
    ]
    for raw, headers, status in refused:
        r = api.post("/v1/orders", content=raw, headers=headers)  # httpx adds no Content-Type of its own here
        assert r.status_code == status, (raw[:20], headers, r.status_code, r.text)
        assert r.status_code != 500
    _nothing_happened(api, engine, "enc-1")
    for content_type in ("application/json", "application/json; charset=utf-8", "Application/JSON;charset=\"UTF-8\""):
        r = api.post("/v1/orders", content=body.encode(), headers={"Content-Type": content_type})
        assert r.status_code == 200, (content_type, r.text)
        assert r.json()["verdict"] in (("filled", "rejected") if content_type == "application/json" else ("duplicate",))


def test_query_parameters_are_refused_only_when_they_carry_credentials(api):
    r = api.post("/v1/orders?monkey=1", json=order("q-1", "desk-1"))
    assert r.status_code == 200 and r.json()["verdict"] in ("filled", "rejected")
    assert api.get("/v1/orders/q-1?account=desk-1&monkey=1&keyboard=2").status_code == 200
    for query in ("api_key=x", "API_KEY=x", "token=abc", "access_token=abc", "key=abc", f"x={API_KEY}"):
        r = api.post(f"/v1/orders?{query}", json=order("q-2", "desk-1"))
        assert r.status_code == 401 and "query string" in r.json()["detail"], query
    assert api.get("/v1/orders/q-2?account=desk-1").status_code == 404


def test_list_orders_pages_newest_first(api):
    ids = [f"page-{i}" for i in range(5)]
    for coid in ids:
        assert api.post("/v1/orders", json=order(coid, "desk-1", quantity="1")).status_code == 200
    seen, cursor = [], None
    while True:
        r = api.get("/v1/orders", params={"account": "desk-1", "limit": 2, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["orders"]) <= 2 and set(page) == {"orders", "next_cursor"}
        seen += [o["client_order_id"] for o in page["orders"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    assert [o["client_order_id"] for o in api.get("/v1/orders").json()["orders"]] == ids[::-1]  # default limit 100


@pytest.mark.parametrize("query, loc", [
    ("limit=0", "limit"), ("limit=501", "limit"), ("limit=%2B5", "limit"), ("limit=-1", "limit"), ("limit=1e2", "limit"),
    ("limit=%D9%A5", "limit"), ("limit=%EF%BC%95", "limit"), ("limit=abc", "limit"), ("limit=5&limit=6", "limit"),
    ("account=desk%201", "account"), ("cursor=%20", "cursor"), ("cursor=bm90LWEtY3Vyc29y", "cursor"),
])  # fmt: skip
def test_list_orders_refuses_bad_parameters(api, query, loc):
    r = api.get(f"/v1/orders?{query}")
    assert r.status_code == 422, (query, r.text)
    assert r.json()["detail"][0]["loc"] == ["query", loc], r.text


def test_order_routes_refuse_a_bad_id_or_account(api):
    assert api.get("/v1/orders/a%20b?account=desk-1").json()["detail"][0]["loc"] == ["path", "client_order_id"]
    assert api.get("/v1/orders/" + "x" * 65 + "?account=desk-1").status_code == 422
    assert api.get("/v1/orders/ok?account=%F0%9F%98%80").json()["detail"][0]["loc"] == ["query", "account"]
    assert api.delete("/v1/orders/ok?account=desk-1&account=desk-2").status_code == 422


def test_ticks_report_the_engines_status_and_unknown_symbols(api):
    r = api.post("/v1/ticks", json={**TICK, "sequence": 10})
    assert r.status_code == 200 and r.json()["verdict"] == "ok" and r.json()["status"] == "applied", r.text
    r = api.post("/v1/ticks", json={**TICK, "sequence": 9})
    assert r.status_code == 200 and r.json()["status"] in ("stale", "duplicate"), r.text
    r = api.post("/v1/ticks", json={**TICK, "symbol": "NOPE-FUT"})
    assert r.status_code == 422 and ("unknown_symbol", ("body", "symbol")) in _types(r), r.text
