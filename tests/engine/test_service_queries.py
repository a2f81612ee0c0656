"""The order path's queries in process: get_order, cancel of a resting order, bad queries."""

from __future__ import annotations

from decimal import Decimal

from tests._processes import TRADER
from wojak.engine.protocol import MessageType
from wojak.engine.risk import RiskEngine, default_risk_config
from wojak.engine.service import OrderService
from wojak.engine.store import SQLiteStore
from wojak.engine.venue import InProcessSandboxVenue
from wojak.engine.venue.sandbox import SandboxConfig

TICK = {"symbol": "NIFTY-FUT", "bid": "23999", "ask": "24001", "last": "24000"}
ORDER = {"client_order_id": "rest-1", "account": "a", "symbol": "NIFTY-FUT", "side": "buy", "quantity": "3",
         "order_type": "limit", "limit_price": "24000"}  # fmt: skip


async def test_a_resting_order_can_be_cancelled_once_and_its_reservation_is_released(tmp_path):
    venue = InProcessSandboxVenue(SandboxConfig(fill_probability=Decimal(0), accept_probability=Decimal(1),
                                                ledger=str(tmp_path / "ledger.sqlite")))  # fmt: skip
    service = OrderService(SQLiteStore(tmp_path / "store.sqlite"), venue, RiskEngine(default_risk_config()))
    who = TRADER.to_wire()
    await service.handle_batch([(MessageType.TICK, {"tick": TICK, "principal": who})])
    [placed] = await service.handle_batch([(MessageType.SUBMIT_ORDER, {"order": ORDER, "principal": who})])
    assert placed["verdict"] == "accepted"
    assert (await service.store.get_position("a", "NIFTY-FUT")).pending_buy == Decimal(3)

    cancel, got, missing, bad = await service.handle_batch([
        (MessageType.CANCEL_ORDER, {"account": "a", "client_order_id": "rest-1", "principal": who}),
        (MessageType.GET_ORDER, {"account": "a", "client_order_id": "rest-1", "principal": who}),
        (MessageType.GET_ORDER, {"account": "a", "client_order_id": "nope", "principal": who}),
        (MessageType.CANCEL_ORDER, {"account": "a", "client_order_id": 5, "principal": who}),
    ])  # fmt: skip
    assert cancel["verdict"] == "ok" and cancel["order"]["state"] == "canceled"
    assert got["order"]["state"] == "canceled"
    assert missing == {"verdict": "not_found", "client_order_id": "nope"}
    assert bad["verdict"] == "invalid" and bad["errors"][0]["field"] == "client_order_id"
    position = await service.store.get_position("a", "NIFTY-FUT")
    assert position.pending_buy == 0 and position.quantity == 0

    [again] = await service.handle_batch([(MessageType.CANCEL_ORDER, {"account": "a", "client_order_id": "rest-1", "principal": who})])
    assert again["verdict"] == "rejected" and again["reason"].startswith("not_open")
