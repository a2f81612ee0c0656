"""The engine stalls under load behind the HTTP sidecar: ``kill -STOP`` for 5 s, then resumed.

Requests under way when the engine stops, and those that arrive while it is stopped, are answered
503 with ``Retry-After`` once the sidecar's engine deadline passes (none hangs), and ``/readyz``
turns 503; after ``kill -CONT`` clients that resend get their orders executed, and a resend of an
order the stopped engine had already taken is answered from it. Every order reaches the venue
once, and neither process logs a traceback."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time

import httpx
import pytest

from tests._processes import API_KEY, HttpSidecarProcess

pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {API_KEY}"}
TICK = {"symbol": "NIFTY-FUT", "bid": "24000", "ask": "24001", "last": "24000"}
ORDERS, SPACING, STALL_AT, STALL = 150, 0.02, 1.0, 5.0


def order(i: int) -> dict:
    return {"client_order_id": f"stall-{i}", "account": f"desk-{i % 8}", "symbol": "NIFTY-FUT", "side": "buy",
            "quantity": "1", "order_type": "limit", "limit_price": "24001"}  # fmt: skip


def test_an_engine_stopped_for_5s_gets_503s_with_retry_after_and_every_order_executes_once(engine_factory):
    engine = engine_factory(None, WOJAK_SANDBOX_FILL_PROBABILITY="1")
    sidecar = HttpSidecarProcess(engine, WOJAK_SIDECAR_ENGINE_DEADLINE="2").start()
    statuses: dict[str, list[int]] = {}
    readyz: list[int] = []
    try:
        with httpx.Client(base_url=sidecar.url, headers=AUTH, timeout=10) as api:
            assert api.post("/v1/ticks", json=TICK).status_code == 200

        async def stream() -> None:
            async with httpx.AsyncClient(base_url=sidecar.url, headers=AUTH, timeout=30) as api:

                async def send(i: int) -> None:
                    await asyncio.sleep(i * SPACING)
                    seen = statuses.setdefault(f"stall-{i}", [])
                    while True:
                        r = await api.post("/v1/orders", json=order(i))
                        seen.append(r.status_code)
                        if r.status_code != 503:
                            return
                        assert r.headers["Retry-After"].isdigit() and r.json()["verdict"] == "retry", r.text
                        await asyncio.sleep(0.2)  # sooner than Retry-After: a client in a hurry

                async def stall() -> None:
                    await asyncio.sleep(STALL_AT)
                    os.kill(engine.pid, signal.SIGSTOP)
                    try:
                        await asyncio.sleep(STALL - 1.5)
                        readyz.append((await api.get("/readyz")).status_code)
                        await asyncio.sleep(1.5)
                    finally:
                        os.kill(engine.pid, signal.SIGCONT)

                await asyncio.gather(stall(), *(send(i) for i in range(ORDERS)))

        started = time.monotonic()
        asyncio.run(asyncio.wait_for(stream(), 120))
        took = time.monotonic() - started
    finally:
        sidecar.stop()
    assert readyz == [503]
    assert sum(s.count(503) for s in statuses.values()) > 0  # the stall was felt
    assert {s[-1] for s in statuses.values()} == {200}, {c: s for c, s in statuses.items() if s[-1] != 200}
    with sqlite3.connect(engine.ledger_path) as db:
        executed = dict(db.execute("SELECT client_order_id, submissions FROM executions"))
    assert executed == {f"stall-{i}": 1 for i in range(ORDERS)}
    assert "Traceback" not in sidecar.log.read_text() and "Traceback" not in engine.log.read_text()
    print(f"{ORDERS} orders, engine stopped {STALL:g}s: done in {took:.1f}s;"
          f" {sum(503 in s for s in statuses.values())} answered 503 at least once")  # fmt: skip
