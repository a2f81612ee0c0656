"""Venue anomalies through the Lambda runtime emulator: wojak's own handler, made to answer what
a broken or hostile venue would, and a real engine that must book none of it."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from decimal import Decimal

import pytest

from tests._processes import TRADER, EngineProcess
from tests.engine.venue.test_lambda_emulator import CREDS, TICK, OwnEmulator
from wojak.engine.protocol import MessageType
from wojak.engine.protocol.client import EngineClient

pytestmark = [getattr(pytest.mark, "lambda"), pytest.mark.slow]

# one bad report per kind the review found, each for its own order
BAD = {
    "bad-overfill": {"status": "filled", "filled_quantity": "1000000", "average_price": "24000"},
    "bad-beyond-limit": {"status": "filled", "filled_quantity": "50", "average_price": "99999"},
    "bad-nan": {"status": "filled", "filled_quantity": "50", "average_price": "NaN"},
    "bad-null-price": {"status": "filled", "filled_quantity": "50", "average_price": None},
    "bad-negative": {"status": "partially_filled", "filled_quantity": "-5", "average_price": "24000"},
}
EXACT = {"num-24000.1": {"status": "filled", "filled_quantity": "50", "average_price": 24000.1}}  # a JSON number


def order(coid: str, account: str = "desk-1") -> dict:
    return {"client_order_id": coid, "account": account, "symbol": "NIFTY-FUT", "side": "buy", "quantity": "50",
            "order_type": "limit", "limit_price": "24001"}  # fmt: skip


def test_bad_reports_among_good_ones_book_only_the_good_ones(lambda_service, tmp_path):
    overrides = json.dumps({**BAD, **EXACT})
    with OwnEmulator(tmp_path, WOJAK_TEST_FAULTS="1", WOJAK_SANDBOX_REPORT_OVERRIDES=overrides,
                     WOJAK_SANDBOX_FILL_PROBABILITY="1") as emu:  # fmt: skip
        url = f"lambda://function?endpoint={emu.endpoint}&region=us-east-1&timeout=20&batch=25"
        engine = EngineProcess(tmp_path / "engine", {"WOJAK_VENUE": url, **CREDS})
        engine.data_dir.mkdir()
        engine.start()
        try:
            assert engine.request(MessageType.TICK, {"tick": TICK})["verdict"] == "ok"
            good = [order(f"good-{i}", "desk-2") for i in range(94)]
            batch = good[:40] + [order(c) for c in BAD] + good[40:] + [order("num-24000.1", "desk-3")]

            async def send() -> list[dict]:
                async with EngineClient(str(engine.socket), deadline=30) as client:
                    return await asyncio.gather(*(client.submit_order(o, TRADER) for o in batch))

            replies = {r["client_order_id"]: r for r in asyncio.run(send())}
            assert {c: replies[c]["verdict"] for c in BAD} == {c: "venue_anomaly" for c in BAD}
            assert all(replies[o["client_order_id"]]["verdict"] == "filled" for o in good)
            exact = replies["num-24000.1"]
            assert exact["verdict"] == "filled" and exact["order"]["average_price"] == "24000.1"  # never via a float
            quantities = {}
            for account in ("desk-1", "desk-2", "desk-3"):
                reply = engine.request(MessageType.LIST_ORDERS, {"account": account, "limit": 500})
                quantities[account] = sum(Decimal(o["filled_quantity"]) for o in reply["orders"])
            assert quantities == {"desk-1": 0, "desk-2": 94 * 50, "desk-3": 50}
            with sqlite3.connect(engine.store_path) as db:
                positions = {a: (q, b) for a, q, b in db.execute("SELECT account, quantity, pending_buy FROM positions")}
            # exact: the good fills only; the anomalous orders' reservations held until people decide
            assert positions == {"desk-1": ("0", "250"), "desk-2": ("4700", "0"), "desk-3": ("50", "0")}
            text = engine.request(MessageType.METRICS, {})["text"]
            assert "wojak_engine_venue_anomalies_total 5.0" in text
        finally:
            engine.kill()
    log = engine.log.read_text()
    assert "Traceback" not in log and "InvalidOperation" not in log
