"""Property-based: whatever JSON arrives, the HTTP intake answers 200/409/422 with a named
field, never a 500, and only valid orders reach the (real) engine."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests._processes import API_KEY
from wojak.engine.protocol import ORDER_FIELDS, validate_order
from wojak.sidecars._core.client import EngineClient
from wojak.sidecars.http import HttpSidecarConfig, create_app

scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
    | st.sampled_from(["NaN", "Infinity", "-1", "0", "1.5", "24000.05", "1e3", "buy", "sell", "limit", "market", "day"])
)  # fmt: skip
values = st.recursive(scalars, lambda c: st.lists(c, max_size=2) | st.dictionaries(st.text(max_size=5), c, max_size=2), max_leaves=4)
base = {"account": "desk-1", "symbol": "NIFTY-FUT", "side": "buy", "quantity": "1", "order_type": "limit", "limit_price": "24000"}
coids = st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True)
valid_orders = st.builds(lambda coid, side, qty: {**base, "client_order_id": coid, "side": side, "quantity": str(qty)},
                         coids, st.sampled_from(["buy", "sell"]), st.integers(1, 50))  # fmt: skip
bodies = st.one_of(
    valid_orders,
    st.dictionaries(st.sampled_from([*ORDER_FIELDS, "price", "x"]), values, max_size=10),
    st.builds(lambda k, v, coid: {**base, "client_order_id": coid, k: v},
              st.sampled_from([*ORDER_FIELDS, "zzz"]), values, coids),
    values,
)  # fmt: skip


def test_any_json_body_gets_a_clear_answer(engine):
    loop = asyncio.new_event_loop()
    client = EngineClient(str(engine.socket))
    config = HttpSidecarConfig(engine_socket=str(engine.socket), api_keys=(API_KEY,))
    app = create_app(config, client)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://wojak",
                             headers={"X-API-Key": API_KEY})  # fmt: skip

    async def setup():
        client.connect()
        r = await http.post("/v1/ticks", json={"symbol": "NIFTY-FUT", "bid": "23999", "ask": "24001", "last": "24000"})
        assert r.status_code == 200

    loop.run_until_complete(setup())
    valid_ids: set[str] = set()

    @settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(bodies)
    def check(body):
        raw = json.dumps(body).encode()
        r = loop.run_until_complete(http.post("/v1/orders", content=raw, headers={"Content-Type": "application/json"}))
        assert r.status_code in (200, 409, 422), (r.status_code, r.text)
        payload = r.json()
        order, errors = validate_order(body)
        if r.status_code == 422:
            assert payload["detail"] and all(d["loc"][0] == "body" and d["msg"] for d in payload["detail"])
        else:
            assert order is not None, "only a valid order may get past validation"
            valid_ids.add(order["client_order_id"])
            assert payload["verdict"] in ("filled", "rejected", "denied", "escalated", "duplicate", "conflict")

    try:
        check()
    finally:
        loop.run_until_complete(http.aclose())
        loop.run_until_complete(client.close())
        loop.close()
    with sqlite3.connect(engine.store_path) as db:
        stored = {r[0] for r in db.execute("SELECT client_order_id FROM orders")}
    assert valid_ids, "some generated orders should have been valid"
    assert stored <= valid_ids  # nothing invalid was ever stored
