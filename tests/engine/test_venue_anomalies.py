"""The venue is not trusted: a report that fails its checks is never booked, and touches no other order."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests._processes import TRADER
from tests._risk import risk_config
from wojak.engine.protocol import MessageType
from wojak.engine.risk import RiskEngine
from wojak.engine.risk._config import _parse
from wojak.engine.service import OrderService
from wojak.engine.store import SQLiteStore
from wojak.engine.venue import VenueReport

CONFIG = risk_config({"max_order_quantity": "1000", "price_band_percent": "5"}, """
instruments: {NIFTY-FUT: {price_decimals: 2}}
""")
TICK = {"symbol": "NIFTY-FUT", "bid": "24000", "ask": "24001", "last": "24000"}


class ScriptedVenue:
    """Fills every order at its limit unless ``bad`` names a raw report for its client_order_id."""

    def __init__(self, bad: dict[str, dict[str, Any]]) -> None:
        self.bad = bad
        self.executed: list[str] = []

    async def execute(self, orders: list[dict[str, Any]]) -> list[VenueReport]:
        out = []
        for o in orders:
            self.executed.append(o["client_order_id"])
            raw = self.bad.get(o["client_order_id"]) or {
                "status": "filled", "filled_quantity": o["quantity"], "average_price": o["limit_price"]}  # fmt: skip
            out.append(VenueReport.from_dict({"client_order_id": o["client_order_id"], **raw}))
        return out

    async def lookup(self, orders):  # pragma: no cover - not reached here
        raise AssertionError("no lookups expected")

    async def cancel(self, orders):  # pragma: no cover
        raise AssertionError("no cancels expected")

    async def close(self) -> None:
        return None


def order(i: int, side: str = "buy", qty: str = "50", price: str = "24000") -> dict:
    return {"client_order_id": f"v-{i}", "account": "desk-1", "symbol": "NIFTY-FUT", "side": side,
            "quantity": qty, "order_type": "limit", "limit_price": price}  # fmt: skip


BAD_REPORTS = {
    "overfilled": {"status": "filled", "filled_quantity": "1000000", "average_price": "24000"},
    "beyond the buy limit": {"status": "filled", "filled_quantity": "50", "average_price": "99999"},
    "NaN price": {"status": "filled", "filled_quantity": "50", "average_price": "NaN"},
    "null price": {"status": "filled", "filled_quantity": "50", "average_price": None},
    "float price": {"status": "filled", "filled_quantity": "50", "average_price": 24000.1},
    "negative quantity": {"status": "partially_filled", "filled_quantity": "-5", "average_price": "24000"},
    "infinite quantity": {"status": "filled", "filled_quantity": "Infinity", "average_price": "24000"},
    "filled short": {"status": "filled", "filled_quantity": "20", "average_price": "24000"},
    "rejected with a fill": {"status": "rejected", "filled_quantity": "10", "average_price": "24000"},
    "unknown status": {"status": "exploded", "filled_quantity": "0"},
    "text quantity": {"status": "filled", "filled_quantity": "fifty", "average_price": "24000"},
}


async def service_with(tmp_path, bad) -> OrderService:
    service = OrderService(SQLiteStore(tmp_path / "s.sqlite"), ScriptedVenue(bad), RiskEngine(_parse(CONFIG, "test")))
    await service.handle_batch([(MessageType.TICK, {"tick": TICK, "principal": TRADER.to_wire()})])
    return service


@pytest.mark.parametrize("case", sorted(BAD_REPORTS))
async def test_a_bad_report_among_99_good_ones_books_only_the_good_ones(tmp_path, case):
    service = await service_with(tmp_path, {"v-42": BAD_REPORTS[case]})
    batch = [(MessageType.SUBMIT_ORDER, {"order": order(i, qty="1"), "principal": TRADER.to_wire()}) for i in range(99)]
    batch.insert(42, (MessageType.SUBMIT_ORDER, {"order": order(42), "principal": TRADER.to_wire()}))
    batch[43] = (MessageType.SUBMIT_ORDER, {"order": order(99, qty="1"), "principal": TRADER.to_wire()})
    replies = await service.handle_batch(batch)
    verdicts = [r["verdict"] for r in replies]
    assert verdicts.count("filled") == 99 and verdicts[42] == "venue_anomaly", verdicts
    assert replies[42]["reason"].startswith("venue_anomaly: ")
    store = service.store
    position = await store.get_position("desk-1", "NIFTY-FUT")
    assert position.quantity == 99  # only the good fills, each of 1
    assert position.average_price == Decimal(24000)
    assert position.pending_buy == 50  # the anomalous order's reservation is held until people decide
    assert len(await store.list_trades(1000)) == 99
    stored = await store.get_order("desk-1", "v-42")
    assert stored.state.value == "venue_anomaly" and stored.filled_quantity == 0
    assert (await store.get_account_state("desk-1"))["state"] == "REDUCING"
    outbox = await store.undelivered_escalations()
    assert [e["key"] for e in outbox] == ["anomaly:desk-1/v-42"]
    # the engine keeps serving: a later batch of the same account is checked as REDUCING, others trade on
    [later] = await service.handle_batch([(MessageType.SUBMIT_ORDER, {"order": {**order(500), "account": "desk-2"},
                                                                     "principal": TRADER.to_wire()})])  # fmt: skip
    assert later["verdict"] == "filled"


async def test_a_sell_filled_below_its_limit_is_an_anomaly(tmp_path):
    service = await service_with(tmp_path, {"v-1": {"status": "filled", "filled_quantity": "50", "average_price": "23900"}})
    await service.handle_batch([(MessageType.SUBMIT_ORDER, {"order": order(0, "buy"), "principal": TRADER.to_wire()})])
    [reply] = await service.handle_batch(
        [(MessageType.SUBMIT_ORDER, {"order": order(1, "sell"), "principal": TRADER.to_wire()})]
    )
    assert reply["verdict"] == "venue_anomaly" and "beyond the sell limit" in reply["reason"]


def test_a_report_of_decimals_parses_them_exactly_and_keeps_floats_as_a_problem():
    exact = VenueReport.from_dict({"client_order_id": "x", "status": "filled", "filled_quantity": "50",
                                   "average_price": Decimal("24000.1")})  # fmt: skip
    assert exact.average_price == Decimal("24000.1") and exact.problem is None
    floated = VenueReport.from_dict({"client_order_id": "x", "status": "filled", "filled_quantity": 50,
                                     "average_price": 24000.1})  # fmt: skip
    assert floated.problem and "float" in floated.problem
    with pytest.raises(ValueError):
        VenueReport.from_dict({"status": "filled"})


def test_a_later_fill_is_priced_from_the_cumulative_quantities_and_averages():
    from wojak.engine.venue._checks import fill_price

    assert fill_price(Decimal(10), Decimal(100), Decimal(0), None) == 100
    assert fill_price(Decimal(20), Decimal(101), Decimal(10), Decimal(100)) == 102  # not 101, the new average
    assert fill_price(Decimal(30), Decimal("101.5"), Decimal(20), Decimal(101)) == Decimal("102.5")
