"""A venue outage under load: the Lambda runtime emulator stopped for 6 s while a real engine
executes a stream of orders through it, then resumed.

The emulator is this test's own (`scripts/services up lambda` on a free port, running wojak's
sandbox handler with a ledger of what it executed and how often). It is stopped with ``kill
-STOP``, so invocations under way when it stops hang past the venue's 1 s timeout: the engine
cannot know whether those orders executed. A client sends one order every 15 ms and resends
each one answered ``retry`` until it is final, except one in ten, sent once by a client that
gives up. While the outage lasts the engine stays up, answers ``retry`` and reports the venue
not ready. At the end no order reached the venue twice; every order the venue executed is
filled in the engine's store (a resend looks an order of unknown outcome up before anything
else; reconciliation settles the ones no client sent again, once their execution lease lapsed
and they are 5 s old, and releases those the venue never saw); nothing is left pending, and the
positions add up with nothing reserved.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
from decimal import Decimal

import pytest

from tests._processes import TRADER, EngineProcess
from tests.engine.venue.test_lambda_emulator import CREDS, TICK, OwnEmulator, ledger
from wojak.engine.protocol import MessageType
from wojak.engine.protocol.client import EngineClient

pytestmark = [getattr(pytest.mark, "lambda"), pytest.mark.slow]

ORDERS, SPACING, OUTAGE_AT, OUTAGE = 200, 0.015, 1.5, 6.0


def order(i: int) -> dict:
    return {"client_order_id": f"vout-{i}", "account": f"acct-{i % 10}", "symbol": "NIFTY-FUT",
            "side": "buy" if i % 3 else "sell", "quantity": "1", "order_type": "limit", "limit_price": "24001"}  # fmt: skip


def _signal(emulator: OwnEmulator, sig: signal.Signals) -> None:
    record = json.loads((emulator.env_state / "lambda" / "pid.json").read_text())
    os.killpg(int(record["pgid"]), sig)


def test_the_venue_stopped_for_6s_mid_stream_executes_nothing_twice_and_loses_nothing(lambda_service, tmp_path):
    ledger_path = tmp_path / "venue-ledger.sqlite"
    with OwnEmulator(tmp_path, WOJAK_SANDBOX_LEDGER=str(ledger_path), WOJAK_SANDBOX_FILL_PROBABILITY="1") as emulator:
        emulator.env_state = tmp_path / "services"
        url = f"lambda://function?endpoint={emulator.endpoint}&region=us-east-1&timeout=1&batch=8"
        engine = EngineProcess(tmp_path / "engine", {
            "WOJAK_VENUE": url, **CREDS,
            # an order no client sends again is settled by reconciliation once its lease lapses and it
            # is this old (60 s and 300 s by default; short here so the test sees it)
            "WOJAK_ENGINE_LEASE_SECONDS": "3", "WOJAK_ENGINE_PENDING_RELEASE_SECONDS": "5",
            "WOJAK_ENGINE_RECONCILE_SECONDS": "1",
        })  # fmt: skip
        engine.data_dir.mkdir()
        engine.start()
        try:
            assert engine.request(MessageType.TICK, {"tick": TICK})["verdict"] == "ok"
            verdicts: dict[str, list[str]] = {}
            during: list[dict] = []

            async def stream() -> None:
                async with EngineClient(str(engine.socket), deadline=20) as client:

                    async def send(i: int) -> None:
                        await asyncio.sleep(i * SPACING)
                        o = order(i)
                        seen = verdicts.setdefault(o["client_order_id"], [])
                        while True:
                            reply = await client.submit_order(dict(o), TRADER)
                            seen.append(reply["verdict"])
                            if reply["verdict"] != "retry" or i % 10 == 0:  # one in ten gives up
                                return
                            await asyncio.sleep(min(float(reply.get("retry_after") or 0.1), 0.5))

                    async def outage() -> None:
                        await asyncio.sleep(OUTAGE_AT)
                        _signal(emulator, signal.SIGSTOP)
                        try:
                            await asyncio.sleep(OUTAGE - 2)
                            during.append(await client.request(MessageType.PING, {}, 5))
                            await asyncio.sleep(2)
                        finally:
                            _signal(emulator, signal.SIGCONT)

                    await asyncio.gather(outage(), *(send(i) for i in range(ORDERS)))

            started = time.monotonic()
            asyncio.run(asyncio.wait_for(stream(), 180))
            took = time.monotonic() - started

            assert sum(v.count("retry") for v in verdicts.values()) > 0
            assert during and during[0]["ready"] is False and during[0]["venue"]["ok"] is False, during
            assert engine.proc is not None and engine.proc.poll() is None
            executed = ledger(ledger_path)
            assert set(executed.values()) <= {1}, {c: n for c, n in executed.items() if n != 1}
            signed = {order(i)["client_order_id"]: (1 if i % 3 else -1) for i in range(ORDERS)}

            def books() -> tuple[bool, str]:
                with sqlite3.connect(engine.store_path) as db:
                    state = dict(db.execute("SELECT client_order_id, state FROM orders"))
                    trades = [r[0] for r in db.execute("SELECT client_order_id FROM trades")]
                    quantity, reserved = db.execute(
                        "SELECT sum(CAST(quantity AS INTEGER)), sum(CAST(pending_buy AS INTEGER) + CAST(pending_sell AS INTEGER))"
                        " FROM positions"
                    ).fetchone()
                problems = {
                    "executed but not filled": sorted(c for c in executed if state.get(c) != "filled"),
                    "filled but never executed": sorted(c for c, st in state.items() if st == "filled" and c not in executed),
                    "trades": sorted(set(trades) ^ set(executed)) or len(trades) - len(executed),
                    "not final": sorted(c for c in signed if state.get(c) not in ("filled", "expired")),
                    "position": Decimal(quantity or 0) - sum(signed[c] for c in executed),
                    "reserved": reserved,
                }
                return not any(problems.values()), str(problems)

            deadline = time.monotonic() + 40  # reconciliation: every 1 s, once an order is 5 s old
            ok, problems = books()
            while not ok and time.monotonic() < deadline:
                time.sleep(0.5)
                ok, problems = books()
            assert ok, problems
            assert "Traceback" not in engine.log.read_text()  # failures are answered and logged, never crash a task
            retried = sum("retry" in v for v in verdicts.values())
            print(f"{ORDERS} orders, the venue stopped {OUTAGE:g}s at {OUTAGE_AT:g}s: done in {took:.1f}s;"
                  f" {retried} answered retry at least once; {len(executed)} executed")  # fmt: skip
        finally:
            engine.kill()
