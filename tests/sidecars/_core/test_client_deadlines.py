"""The engine client against real engine processes: no stall after an engine dies, no work behind a caller's back."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time

from tests._processes import TRADER
from wojak.engine.protocol import MessageType
from wojak.engine.protocol.client import EngineClient

TICK = {"symbol": "NIFTY-FUT", "bid": "24000", "ask": "24001", "last": "24000"}


def order(i: int) -> dict:
    return {"client_order_id": f"dl-{i}", "account": "desk-1", "symbol": "NIFTY-FUT", "side": "buy", "quantity": "1",
            "order_type": "limit", "limit_price": "24001"}  # fmt: skip


def test_requests_in_flight_when_the_engine_dies_are_answered_retry_at_once(engine_factory):
    engine = engine_factory(WOJAK_SANDBOX_LATENCY_MS="3000")  # every batch sits at the venue for 3 s
    engine.request(MessageType.TICK, {"tick": TICK})

    async def run() -> tuple[list[dict], float]:
        async with EngineClient(str(engine.socket), deadline=30) as client:
            sent = [asyncio.create_task(client.submit_order(order(i), TRADER)) for i in range(20)]
            await asyncio.sleep(0.5)
            killed = time.monotonic()
            engine.proc.send_signal(signal.SIGKILL)
            replies = await asyncio.gather(*sent)
            return replies, time.monotonic() - killed

    replies, waited = asyncio.run(run())
    assert {(r["verdict"], r["reason"]) for r in replies} == {("retry", "engine_disconnected")}
    assert waited < 2.0, f"callers waited {waited:.1f}s for a dead engine (deadline 30 s)"


def test_the_engine_does_not_execute_a_request_its_caller_gave_up_on(engine_factory):
    engine = engine_factory(WOJAK_SANDBOX_LATENCY_MS="1500")
    engine.request(MessageType.TICK, {"tick": TICK})

    async def run() -> list[dict]:
        async with EngineClient(str(engine.socket), deadline=5) as first_client, \
                EngineClient(str(engine.socket), deadline=0.5) as client:  # fmt: skip
            # the first order holds the engine at the venue for 1.5 s; the others wait behind it
            # longer than their callers' 0.5 s deadline, so by the time they come up they are void
            first = asyncio.create_task(first_client.submit_order(order(0), TRADER))
            await asyncio.sleep(0.2)
            late = await asyncio.gather(*(client.submit_order(order(i), TRADER) for i in range(1, 10)))
            return [await first, *late]

    first, *late = asyncio.run(run())
    assert first["verdict"] in ("filled", "rejected")
    assert all(r["verdict"] == "retry" for r in late)
    time.sleep(2.0)  # whatever the engine still had queued has been answered by now
    with sqlite3.connect(engine.store_path) as db:
        stored = [r[0] for r in db.execute("SELECT client_order_id FROM orders")]
    with sqlite3.connect(engine.ledger_path) as db:
        executed = [r[0] for r in db.execute("SELECT client_order_id FROM executions")]
    assert stored == executed == ["dl-0"], (stored, executed)
    text = engine.request(MessageType.METRICS, {})["text"]
    assert 'wojak_engine_replies_total{verdict="retry"}' in text
