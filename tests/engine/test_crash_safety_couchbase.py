"""kill -9 of a real engine on the Couchbase store between any two steps of the order path,
then restart and resend: no order executes twice, none is lost, and the tradebook and the
position hold each fill once. (tests/engine/test_crash_safety.py does the same on SQLite; the
crashes inside the Couchbase store's own writes are tests/engine/store/test_couchbase_store.py's.)"""

from __future__ import annotations

import asyncio
from collections import Counter
from decimal import Decimal

import pytest

from tests.engine.test_crash_safety import TICK, ledger, order, submit_all
from tests.engine.test_replicas import STORES
from wojak.engine._faults import POINTS
from wojak.engine.protocol import MessageType

pytestmark = [pytest.mark.couchbase, pytest.mark.slow]


@pytest.mark.parametrize("point", POINTS)
def test_kill_between_steps_on_couchbase_then_resend_executes_exactly_once(engine_factory, tmp_path, request, point):
    from wojak.engine.store._couchbase import CouchbaseStore

    store_env, _ = STORES["couchbase"](request, tmp_path)
    engine = engine_factory(tmp_path, WOJAK_SANDBOX_FILL_PROBABILITY="1", **store_env)
    engine.request(MessageType.TICK, {"tick": TICK})
    engine.kill()
    batch = [order(i) for i in range(20)]
    engine.start(wait=True, WOJAK_ENGINE_CRASH_AT=point, WOJAK_TEST_FAULTS="1")
    first = asyncio.run(submit_all(engine, batch, deadline=3.0))
    assert engine.wait_exit(15) == -9, f"the engine should have killed itself at {point}"
    assert {r["verdict"] for r in first} <= ({"filled", "retry"} if point == "replied" else {"retry"})

    engine.start()
    again = asyncio.run(submit_all(engine, batch, deadline=10.0))
    assert {r["verdict"] for r in again} <= {"filled", "duplicate"}, again
    third = asyncio.run(submit_all(engine, batch))
    assert {r["verdict"] for r in third} == {"duplicate"} and all(r["order"]["state"] == "filled" for r in third)

    ids = {o["client_order_id"] for o in batch}
    assert ledger(engine) == {i: 1 for i in ids}, "each order reached the venue exactly once"
    service = request.getfixturevalue("couchbase_service")
    prefix = store_env["WOJAK_STORE"].split("prefix=", 1)[1]

    async def books():
        store = CouchbaseStore(service.url, service.username, service.password, service.bucket, prefix=prefix)
        try:
            return await store.list_trades(limit=-1), await store.get_position("acct", "NIFTY-FUT")
        finally:
            await store.close()

    trades, position = asyncio.run(books())
    assert Counter(t.client_order_id for t in trades) == {i: 1 for i in ids}, "one tradebook entry per order"
    assert (position.quantity, position.pending_buy, position.pending_sell) == (Decimal(20), 0, 0)
