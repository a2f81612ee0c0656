"""Several engine replicas on one store: one submission per order, whoever gets the resend.

Before the execution lease, a ``pending`` order found by a second replica while the first
one's venue call was still in flight was looked up (not found yet) and submitted again.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3

from tests._processes import TRADER
from wojak.engine.protocol import MessageType
from wojak.sidecars._core.client import EngineClient

TICK = {"symbol": "NIFTY-FUT", "bid": "24000", "ask": "24001", "last": "24000"}


def order(i: int) -> dict:
    return {"client_order_id": f"rep-{i}", "account": f"acct-{i % 5}", "symbol": "NIFTY-FUT", "side": "buy",
            "quantity": "1", "order_type": "limit", "limit_price": "24001"}  # fmt: skip


def test_two_replicas_with_a_slow_venue_submit_every_order_once(engine_factory, tmp_path):
    data = tmp_path / "shared"
    data.mkdir()
    slow = {"WOJAK_SANDBOX_LATENCY_MS": "200", "WOJAK_SANDBOX_FILL_PROBABILITY": "1"}
    a = engine_factory(data, **slow)
    b = engine_factory(data, **slow)
    assert a.request(MessageType.TICK, {"tick": TICK})["verdict"] == "ok"
    orders = [order(i) for i in range(1000)]
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

    verdicts = asyncio.run(hammer())
    with sqlite3.connect(a.ledger_path) as db:
        submitted = dict(db.execute("SELECT client_order_id, submissions FROM executions"))
    assert len(submitted) == 1000
    assert {n for n in submitted.values()} == {1}, {c: n for c, n in submitted.items() if n != 1}
    in_flight = sum("retry" in v for v in verdicts.values())
    assert all(v & {"filled", "duplicate"} for v in verdicts.values())
    with sqlite3.connect(a.store_path) as db:
        trades = db.execute("SELECT count(*) FROM trades").fetchone()[0]
        quantity = db.execute("SELECT sum(CAST(quantity AS INTEGER)), sum(CAST(pending_buy AS INTEGER)) FROM positions").fetchone()
    assert trades == 1000 and tuple(quantity) == (1000, 0)
    print(f"orders answered retry (order_in_flight) at least once: {in_flight}")
