"""HTTP sidecar + real engine process over a real IPC socket."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter

import httpx
import pytest

from tests._processes import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}"}
TICK = {"symbol": "NIFTY-FUT", "bid": "24000", "ask": "24001", "last": "24000"}
ORDER = {"client_order_id": "http-1", "account": "desk-1", "symbol": "NIFTY-FUT", "side": "buy",
         "quantity": "50", "order_type": "limit", "limit_price": "24001"}  # fmt: skip


@pytest.fixture
def api(http_sidecar):
    with httpx.Client(base_url=http_sidecar.url, headers=AUTH, timeout=10) as client:
        assert client.post("/v1/ticks", json=TICK).status_code == 200
        yield client


def ledger(engine) -> dict[str, int]:
    with sqlite3.connect(engine.ledger_path) as db:
        return dict(db.execute("SELECT client_order_id, submissions FROM executions"))


def trade_count(engine, coid) -> int:
    with sqlite3.connect(engine.store_path) as db:
        return db.execute("SELECT count(*) FROM trades WHERE client_order_id=?", (coid,)).fetchone()[0]


def test_an_order_is_executed_and_comes_back_filled_or_rejected(api, engine):
    r = api.post("/v1/orders", json=ORDER)
    assert r.status_code == 200
    body = r.json()
    assert body["client_order_id"] == "http-1" and body["verdict"] in ("filled", "rejected")
    assert body["order"]["state"] == body["verdict"]
    assert ledger(engine) == {"http-1": 1}
    got = api.get("/v1/orders/http-1?account=desk-1")
    assert got.status_code == 200 and got.json()["state"] == body["verdict"]


def test_both_outcomes_happen(api):
    verdicts = {api.post("/v1/orders", json={**ORDER, "client_order_id": f"mix-{i}", "quantity": "1"}).json()["verdict"]
                for i in range(60)}  # fmt: skip
    assert verdicts == {"filled", "rejected"}  # sandbox default: 90% filled


def test_same_order_again_is_a_duplicate_with_the_original_outcome(api, engine):
    first = api.post("/v1/orders", json=ORDER).json()
    again = api.post("/v1/orders", json=ORDER)
    assert again.status_code == 200
    assert again.json()["verdict"] == "duplicate"
    assert again.json()["order"] == first["order"]
    assert ledger(engine) == {"http-1": 1}


def test_same_id_different_content_is_a_409(api, engine):
    api.post("/v1/orders", json=ORDER)
    r = api.post("/v1/orders", json={**ORDER, "quantity": "51"})
    assert r.status_code == 409 and r.json()["verdict"] == "conflict"
    assert r.json()["order"]["quantity"] == "50"
    assert ledger(engine) == {"http-1": 1}


def test_idempotency_key_header_supplies_the_id(api):
    body = {k: v for k, v in ORDER.items() if k != "client_order_id"}
    r = api.post("/v1/orders", json=body, headers={"Idempotency-Key": "idem-7"})
    assert r.status_code == 200 and r.json()["client_order_id"] == "idem-7"
    assert api.post("/v1/orders", json=body, headers={"Idempotency-Key": "idem-7"}).json()["verdict"] == "duplicate"
    mismatch = api.post("/v1/orders", json={**ORDER, "client_order_id": "a"}, headers={"Idempotency-Key": "b"})
    assert mismatch.status_code == 422 and mismatch.json()["detail"][0]["loc"] == ["body", "client_order_id"]


def test_200_concurrent_posts_of_one_new_order_execute_once(http_sidecar, engine):
    async def storm():
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=http_sidecar.url, headers=AUTH, timeout=30, limits=limits) as client:
            await client.post("/v1/ticks", json=TICK)
            return await asyncio.gather(*[client.post("/v1/orders", json={**ORDER, "client_order_id": "storm"}) for _ in range(200)])

    responses = asyncio.run(storm())
    assert {r.status_code for r in responses} == {200}, [r.text for r in responses if r.status_code != 200][:3]
    verdicts = Counter(r.json()["verdict"] for r in responses)
    assert verdicts["duplicate"] == 199 and sum(verdicts.values()) == 200
    outcome = (set(verdicts) - {"duplicate"}).pop()
    assert outcome in ("filled", "rejected")
    assert {r.json()["order"]["state"] for r in responses} == {outcome}
    assert ledger(engine) == {"storm": 1}
    assert trade_count(engine, "storm") == (1 if outcome == "filled" else 0)


INVALID = [
    ("quantity", "NaN", "finite_number"),
    ("quantity", "Infinity", "finite_number"),
    ("quantity", "-5", "greater_than"),
    ("quantity", "0", "greater_than"),
    ("quantity", 1.5, "float_not_allowed"),
    ("limit_price", 24001.5, "float_not_allowed"),
    ("quantity", "1.123456789", "decimal_max_places"),
    ("limit_price", "24001.125", "decimal_max_places"),  # NIFTY-FUT prices have 2 decimals (engine check)
    ("quantity", "1.5", "decimal_max_places"),  # whole contracts only (engine check)
    ("quantity", "1" * 40, "too_large"),
    ("quantity", 10**40, "too_large"),
    ("quantity", "1e5", "decimal_parsing"),
    ("side", 5, "enum"),
    ("side", "long", "enum"),
    ("account", ["desk"], "string_type"),
    ("order_type", None, "missing"),
    ("extra_field", "x", "extra_forbidden"),
]


@pytest.mark.parametrize("field, value, code", INVALID)
def test_invalid_input_is_a_422_naming_the_field_and_never_reaches_the_venue(api, engine, field, value, code):
    body = {**ORDER, "client_order_id": f"bad-{field}", field: value}
    if value is None:
        del body[field]
    r = api.post("/v1/orders", content=_dumps(body), headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert {"type": code, "loc": ["body", field]} in [{"type": d["type"], "loc": d["loc"]} for d in detail], detail
    assert all(d["msg"] for d in detail)
    assert ledger(engine) == {}
    assert api.get(f"/v1/orders/bad-{field}?account=desk-1").status_code == 404


def _dumps(body) -> bytes:
    import json

    return json.dumps(body).encode()


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[]", b'"order"', b"null", b'{"quantity": NaN}'])
def test_malformed_bodies_are_422(api, engine, raw):
    r = api.post("/v1/orders", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"]
    assert ledger(engine) == {}


def test_missing_fields_are_all_named(api):
    r = api.post("/v1/orders", json={})
    assert r.status_code == 422
    named = {tuple(d["loc"]) for d in r.json()["detail"]}
    assert {("body", f) for f in ("client_order_id", "account", "symbol", "side", "quantity", "order_type")} <= named


def test_auth_is_required_and_never_taken_from_the_query(http_sidecar):
    url = http_sidecar.url + "/v1/orders"
    assert httpx.post(url, json=ORDER).status_code == 401
    assert httpx.post(url, json=ORDER, headers={"Authorization": "Bearer wrong-key-wrong-key"}).status_code == 401
    assert httpx.post(url, json=ORDER, headers={"X-API-Key": "nope"}).status_code == 401
    assert httpx.post(url + f"?api_key={API_KEY}", json=ORDER).status_code == 401
    r = httpx.post(url + f"?api_key={API_KEY}", json=ORDER, headers=AUTH)
    assert r.status_code == 401 and "query string" in r.json()["detail"]
    assert httpx.get(http_sidecar.url + "/v1/orders/x?account=desk-1", headers={"X-API-Key": API_KEY}).status_code == 404
    assert httpx.get(http_sidecar.url + "/healthz").status_code == 200  # probes need no key


def test_bodies_over_64_kib_are_413(api):
    big = {**ORDER, "tag": "x" * (70 * 1024)}
    assert api.post("/v1/orders", json=big).status_code == 413

    def chunks():
        yield b'{"tag": "'
        for _ in range(80):
            yield b"x" * 1024
        yield b'"}'

    assert api.post("/v1/orders", content=chunks()).status_code == 413


def test_ticks_are_validated(api):
    assert api.post("/v1/ticks", json={**TICK, "last": 24000.0}).status_code == 422
    r = api.post("/v1/ticks", json={**TICK, "bid": "24002"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "bid"]


def test_risk_denial_is_a_200_with_the_reason(api, engine):
    r = api.post("/v1/orders", json={**ORDER, "client_order_id": "fat", "limit_price": "30000"})
    assert r.status_code == 200 and r.json()["verdict"] == "denied" and "price_band_exceeded" in r.json()["reason"]
    r = api.post("/v1/orders", json={**ORDER, "client_order_id": "unknown", "symbol": "NOPE"})
    assert r.json()["verdict"] == "denied" and "unknown_symbol" in r.json()["reason"]
    r = api.post("/v1/orders", json={**ORDER, "client_order_id": "big", "quantity": "1800", "side": "sell"})
    assert r.json()["verdict"] in ("filled", "rejected")
    assert "fat" not in ledger(engine) and "unknown" not in ledger(engine)


def test_engine_down_is_a_503_with_retry_after(api, engine):
    engine.kill()
    r = api.post("/v1/orders", json={**ORDER, "client_order_id": "while-down"})
    assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1
    assert api.get("/readyz").status_code == 503
    engine.start()
    r = api.post("/v1/orders", json={**ORDER, "client_order_id": "while-down"})
    assert r.status_code == 200 and r.json()["verdict"] in ("filled", "rejected")


def test_metrics_include_the_engines(api):
    api.post("/v1/orders", json=ORDER)
    text = api.get("/metrics").text
    assert 'wojak_sidecar_messages_total{source="http",verdict=' in text
    assert "wojak_engine_replies_total" in text and "wojak_engine_batch_size_bucket" in text


def test_openapi_documents_the_order_schema(api):
    spec = api.get("/openapi.json").json()
    schema = spec["paths"]["/v1/orders"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    # a decimal string first; an exact integer is the only other form (never a JSON float)
    quantity = schema["properties"]["quantity"]["oneOf"]
    assert quantity[0]["type"] == "string" and [q["type"] for q in quantity] == ["string", "integer"]
