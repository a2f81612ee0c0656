"""A Couchbase outage under load: the cluster stopped for 8 s while the engine admits, executes
and records a stream of orders, then resumed.

The test runs a Couchbase mock of its own (tests/sidecars/_own_service.py: `scripts/services up
couchbase` on a free port; the shared one is never touched) and a real `wojak engine` on it, with
the in-process sandbox venue (its ledger counts what reached the venue). A client sends one order
every 15 ms and resends each one answered ``retry`` until it is final, as a sidecar does, except
one order in ten, sent once by a client that gives up. Two seconds in, the mock is stopped
(``kill -STOP``: it keeps its data and every call hangs, as a cluster behind a partition does),
so the outage lands between admits and records: orders admitted and not yet executed, executed
and not yet recorded, recorded and not yet applied to the tradebook and the position. While it
lasts the engine stays up, answers ``retry`` and reports itself not ready, naming the store.
After ``kill -CONT`` it carries on by itself. At the end every order reached the venue at most
once (every resent one exactly once, and final); every order the venue executed is filled in
the store with its trade, including the ones never sent again (the engine's recovery scan after
the store came back applies what the outage cut short; reconciliation looks up and books an
order left pending, once its execution lease lapsed and it is old enough, or releases it if the
venue never saw it); nothing is left pending, and the positions add up with nothing reserved.

Run with one engine and with two replicas on the same store and venue (a resend reaches either
at random). A resend answered ``duplicate`` may find its order ``expired``: left pending by the
outage and never seen by the venue, reconciliation released it once it was 5 s old.

Found by this test: an outcome whose order doc was written but whose trade and position update
the outage cut short was answered ``duplicate`` on resend and never applied until the engine
restarted (the tradebook missed the trade, the position the fill).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from decimal import Decimal

import pytest

from tests._processes import TRADER
from tests.sidecars._own_service import OwnService
from wojak.engine.protocol import MessageType
from wojak.engine.protocol.client import EngineClient

pytestmark = [pytest.mark.couchbase, pytest.mark.slow]

ORDERS, SPACING, OUTAGE_AT, OUTAGE = 300, 0.015, 2.0, 8.0
TICK = {"symbol": "NIFTY-FUT", "bid": "24000", "ask": "24001", "last": "24000"}


def order(i: int) -> dict:
    return {"client_order_id": f"out-{i}", "account": f"acct-{i % 10}", "symbol": "NIFTY-FUT",
            "side": "buy" if i % 3 else "sell", "quantity": "1", "order_type": "limit", "limit_price": "24001"}  # fmt: skip


@pytest.fixture
def own_couchbase(tmp_path):
    service = OwnService("couchbase", tmp_path).up()
    try:
        yield service
    finally:
        service.down()


@pytest.mark.parametrize("replicas", [1, 2])
def test_couchbase_stopped_for_8s_mid_stream_loses_nothing_and_executes_nothing_twice(
    engine_factory, own_couchbase, tmp_path, replicas
):
    from wojak.engine.store._couchbase import CouchbaseStore

    url = own_couchbase.exports["WOJAK_TEST_COUCHBASE_URL"]
    user, password = (
        own_couchbase.exports["WOJAK_TEST_COUCHBASE_USERNAME"],
        own_couchbase.exports["WOJAK_TEST_COUCHBASE_PASSWORD"],
    )
    bucket = own_couchbase.exports["WOJAK_TEST_COUCHBASE_BUCKET"]
    prefix = f"outage-{uuid.uuid4().hex[:8]}::"
    host = url.split("://", 1)[1]
    shared = tmp_path / "shared"  # with two replicas: one store, one venue (the sandbox's ledger file)
    shared.mkdir()
    env = dict(
        WOJAK_STORE=f"couchbase://{host}?bucket={bucket}&prefix={prefix}&kv_timeout=1&connect_timeout=5",
        WOJAK_COUCHBASE_USERNAME=user,
        WOJAK_COUCHBASE_PASSWORD=password,
        WOJAK_SANDBOX_FILL_PROBABILITY="1",
        WOJAK_SANDBOX_LATENCY_MS="5",
        # an order no client sends again is settled by reconciliation once its lease lapses and it
        # is this old (300 s and 60 s by default; short here so the test sees it)
        WOJAK_ENGINE_LEASE_SECONDS="3",
        WOJAK_ENGINE_PENDING_RELEASE_SECONDS="5",
        WOJAK_ENGINE_RECONCILE_SECONDS="1",
    )
    engines = [engine_factory(shared, **env) for _ in range(replicas)]
    engine = engines[0]
    assert engine.request(MessageType.TICK, {"tick": TICK})["verdict"] == "ok"
    rng = random.Random(5)
    verdicts: dict[str, list[str]] = {}
    states: dict[str, str] = {}  # the order's state in its last reply
    during: list[dict] = []

    async def stream() -> None:
        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(EngineClient(str(e.socket), deadline=20)) for e in engines]

            async def send(i: int) -> None:
                await asyncio.sleep(i * SPACING)
                o = order(i)
                seen = verdicts.setdefault(o["client_order_id"], [])
                while True:
                    reply = await rng.choice(clients).submit_order(dict(o), TRADER)  # a resend may reach either
                    seen.append(reply["verdict"])
                    states[o["client_order_id"]] = (reply.get("order") or {}).get("state", reply["verdict"])
                    if reply["verdict"] != "retry" or i % 10 == 0:  # one in ten gives up
                        return
                    await asyncio.sleep(min(float(reply.get("retry_after") or 0.1), 0.5))

            async def outage() -> None:
                await asyncio.sleep(OUTAGE_AT)
                own_couchbase.stop()
                try:
                    await asyncio.sleep(OUTAGE - 2)
                    during.extend(await asyncio.gather(*(c.request(MessageType.PING, {}, 5) for c in clients)))
                    await asyncio.sleep(2)
                finally:
                    own_couchbase.resume()

            await asyncio.gather(outage(), *(send(i) for i in range(ORDERS)))

    started = time.monotonic()
    asyncio.run(asyncio.wait_for(stream(), 180))
    took = time.monotonic() - started

    # the outage was seen: the engine answered retry and said its store was the reason
    assert sum(v.count("retry") for v in verdicts.values()) > 0
    assert len(during) == replicas and all(p["verdict"] == "ok" and p["ready"] is False for p in during), during
    assert all(p["store"]["ok"] is False for p in during), during
    assert all(e.proc is not None and e.proc.poll() is None for e in engines)  # never went down
    resent = {coid: v for coid, v in verdicts.items() if int(coid.split("-")[1]) % 10}
    assert len(verdicts) == ORDERS
    assert all(v[-1] in ("filled", "duplicate") for v in resent.values()), {
        c: v for c, v in resent.items() if v[-1] not in ("filled", "duplicate")
    }
    executions = engine.executions()
    assert set(executions.values()) == {1}, {c: n for c, n in executions.items() if n != 1}
    # a resent order is filled, or was released by reconciliation (expired) because the venue never
    # saw it: left pending by the outage, its resends answered retry until it was 5 s old
    assert {states[c] for c in resent} <= {"filled", "expired"}, {c: states[c] for c in resent}
    assert {c for c in resent if states[c] == "filled"} <= set(executions)
    assert not {c for c in resent if states[c] == "expired"} & set(executions)
    signed = {order(i)["client_order_id"]: (1 if i % 3 else -1) for i in range(ORDERS)}

    async def books() -> tuple[list, list, list]:
        store = CouchbaseStore(url, user, password, bucket, prefix=prefix)
        try:
            return await store.list_orders(limit=ORDERS + 10), await store.list_trades(limit=-1), await store.list_positions()
        finally:
            await store.close()

    def consistent() -> tuple[bool, str]:
        orders, trades, positions = asyncio.run(books())
        state = {o.client_order_id: o.state.value for o in orders}
        pending = [c for c, st in state.items() if st == "pending"]
        problems = {
            "executed but not filled": sorted(c for c in executions if state.get(c) != "filled"),
            "trades not of executed orders, or missing": sorted(set(t.client_order_id for t in trades) ^ set(executions)),
            "trades": len(trades) - len(executions),
            "position": sum((p.quantity for p in positions), Decimal(0)) - sum(signed[c] for c in executions),
            "still pending": pending,
            "reserved": [p for p in positions if p.pending_buy or p.pending_sell],
        }
        return not any(problems.values()), str(problems)

    deadline = time.monotonic() + 40  # the next store probe (every 2 s), reconciliation (every 1 s, after 5 s)
    ok, problems = consistent()
    while not ok and time.monotonic() < deadline:
        time.sleep(0.5)
        ok, problems = consistent()
    assert ok, problems
    retried = sum("retry" in v for v in verdicts.values())
    print(
        f"{replicas} replica(s), {ORDERS} orders, Couchbase stopped {OUTAGE:g}s at {OUTAGE_AT:g}s: done in {took:.1f}s; {retried} answered"
        f" retry at least once; {len(executions)} executed, {ORDERS - len(executions)} never reached the venue"
    )
