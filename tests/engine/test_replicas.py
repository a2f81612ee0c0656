"""Several engine replicas on one store: one submission per order, whoever gets the resend.

Before the execution lease, a ``pending`` order found by a second replica while the first
one's venue call was still in flight was looked up (not found yet) and submitted again.

Run on both stores: one SQLite file shared by the two processes, and the Couchbase mock (a
key prefix of its own per test; the mock keeps everything in memory).
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
import uuid
from decimal import Decimal

import pytest

from tests._processes import TRADER
from wojak.engine.protocol import MessageType
from wojak.engine.protocol.client import EngineClient

TICK = {"symbol": "NIFTY-FUT", "bid": "24000", "ask": "24001", "last": "24000"}
ORDERS = 1000


def order(i: int) -> dict:
    return {"client_order_id": f"rep-{i}", "account": f"acct-{i % 5}", "symbol": "NIFTY-FUT", "side": "buy",
            "quantity": "1", "order_type": "limit", "limit_price": "24001"}  # fmt: skip


def _sqlite(request, data) -> tuple[dict[str, str], object]:
    def books() -> tuple[int, Decimal, Decimal]:
        with sqlite3.connect(data / "wojak.sqlite") as db:
            trades = db.execute("SELECT count(*) FROM trades").fetchone()[0]
            quantity, pending = db.execute("SELECT sum(CAST(quantity AS INTEGER)), sum(CAST(pending_buy AS INTEGER))"
                                           " FROM positions").fetchone()  # fmt: skip
        return trades, Decimal(quantity), Decimal(pending)

    return {}, books


def _couchbase(request, data) -> tuple[dict[str, str], object]:
    from wojak.engine.store._couchbase import CouchbaseStore

    service = request.getfixturevalue("couchbase_service")
    prefix = f"replicas-{uuid.uuid4().hex[:12]}::"
    host = service.url.split("://", 1)[1]
    env = {"WOJAK_STORE": f"couchbase://{host}?bucket={service.bucket}&prefix={prefix}",
           "WOJAK_COUCHBASE_USERNAME": service.username, "WOJAK_COUCHBASE_PASSWORD": service.password}  # fmt: skip

    def books() -> tuple[int, Decimal, Decimal]:
        async def read() -> tuple[int, Decimal, Decimal]:
            store = CouchbaseStore(service.url, service.username, service.password, service.bucket, prefix=prefix)
            try:
                trades = await store.list_trades(limit=-1)  # the tradebook through the store API
                positions = await store.list_positions()
            finally:
                await store.close()
            return (len(trades), sum((p.quantity for p in positions), Decimal(0)),
                    sum((p.pending_buy for p in positions), Decimal(0)))  # fmt: skip

        return asyncio.run(read())

    return env, books


STORES = {"sqlite": _sqlite, "couchbase": _couchbase}


# Couchbase takes ~15 s here (SQLite ~1 s): on Couchbase every order is ~22 key-value round trips
# (~11 to admit, ~11 to record; ~7 ms per order on the mock uncontended), one order after another
# in a batch, where SQLite commits a whole batch in one transaction. The full 1,000 still fit.
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("couchbase", marks=[pytest.mark.couchbase, pytest.mark.slow])])
def test_two_replicas_with_a_slow_venue_submit_every_order_once(engine_factory, tmp_path, request, backend):
    data = tmp_path / "shared"
    data.mkdir()
    store_env, books = STORES[backend](request, data)
    slow = {"WOJAK_SANDBOX_LATENCY_MS": "200", "WOJAK_SANDBOX_FILL_PROBABILITY": "1", **store_env}
    a = engine_factory(data, **slow)
    b = engine_factory(data, **slow)
    assert a.request(MessageType.TICK, {"tick": TICK})["verdict"] == "ok"
    orders = [order(i) for i in range(ORDERS)]
    rng = random.Random(9)

    async def hammer() -> dict[str, set[str]]:
        verdicts: dict[str, set[str]] = {o["client_order_id"]: set() for o in orders}
        async with EngineClient(str(a.socket), deadline=30) as ca, EngineClient(str(b.socket), deadline=30) as cb:
            async def send(o: dict) -> None:
                # both replicas at once, then resends to either until the order is final
                first = await asyncio.gather(ca.submit_order(dict(o), TRADER), cb.submit_order(dict(o), TRADER))
                replies = list(first)
                while all(r["verdict"] == "retry" for r in replies[-2:]):
                    await asyncio.sleep(0.05)
                    replies.append(await rng.choice((ca, cb)).submit_order(dict(o), TRADER))
                verdicts[o["client_order_id"]].update(r["verdict"] for r in replies)

            await asyncio.gather(*(send(o) for o in orders))
        return verdicts

    started = time.monotonic()
    verdicts = asyncio.run(hammer())
    took = time.monotonic() - started
    with sqlite3.connect(a.ledger_path) as db:  # the venue's ledger (the sandbox's own SQLite file)
        submitted = dict(db.execute("SELECT client_order_id, submissions FROM executions"))
    assert len(submitted) == ORDERS
    assert {n for n in submitted.values()} == {1}, {c: n for c, n in submitted.items() if n != 1}
    in_flight = sum("retry" in v for v in verdicts.values())
    assert all(v & {"filled", "duplicate"} for v in verdicts.values())
    trades, quantity, pending = books()
    assert (trades, quantity, pending) == (ORDERS, ORDERS, 0)
    print(f"{backend}: {ORDERS} orders to both replicas in {took:.1f}s;"
          f" answered retry (order_in_flight) at least once: {in_flight}")
