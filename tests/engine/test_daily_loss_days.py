"""Today's loss is measured from the start of today, not from what a carried position cost."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from tests._processes import TRADER
from tests._risk import risk_config
from wojak.engine.protocol import MessageType
from wojak.engine.risk import AccountView, RiskEngine, daily_loss
from wojak.engine.risk._config import _parse
from wojak.engine.service import OrderService
from wojak.engine.store import SQLiteStore
from wojak.engine.venue import InProcessSandboxVenue
from wojak.engine.venue.sandbox import SandboxConfig

CONFIG = risk_config({"max_order_quantity": "1000", "max_daily_loss": "4000"}, """
exchange_timezone: UTC
instruments: {FUT: {price_decimals: 2}}
""")


def tick(last: str) -> dict:
    p = Decimal(last)
    return {"symbol": "FUT", "bid": str(p - 1), "ask": str(p + 1), "last": last}


def order(coid: str, side: str = "buy", qty: str = "1", price: str = "151") -> dict:
    return {"client_order_id": coid, "account": "desk", "symbol": "FUT", "side": side, "quantity": qty,
            "order_type": "limit", "limit_price": price}  # fmt: skip


async def send(service, kind, body):
    [reply] = await service.handle_batch([(kind, {**body, "principal": TRADER.to_wire()})])
    return reply


async def carried_position(tmp_path) -> OrderService:
    """Long 100 @ 100 bought two days ago; yesterday's last price 200; today's first tick 150."""
    store = SQLiteStore(tmp_path / "s.sqlite")
    venue = InProcessSandboxVenue(SandboxConfig(fill_probability=Decimal(1)))
    service = OrderService(store, venue, RiskEngine(_parse(CONFIG, "test")))
    today = dt.datetime.now(dt.timezone.utc).date()
    yesterday, before = (today - dt.timedelta(days=1)).isoformat(), (today - dt.timedelta(days=2)).isoformat()
    store._db.execute("INSERT INTO positions VALUES ('desk','FUT','100','100','0','0','0','0',?,'0','0')", (before,))
    store._db.execute("INSERT INTO ticks VALUES ('FUT','199','201','200',?,NULL,NULL,1,?,'180')",
                      (dt.datetime.combine(today, dt.time()).timestamp() - 60, yesterday))  # fmt: skip
    assert (await send(service, MessageType.TICK, {"tick": tick("150")}))["status"] == "applied"
    return service


async def test_a_carried_long_marked_down_from_yesterdays_close_is_todays_loss(tmp_path):
    service = await carried_position(tmp_path)
    stored = (await service.store.load_ticks())["FUT"]
    assert stored["sod_price"] == "200" and stored["day"] == dt.datetime.now(dt.timezone.utc).date().isoformat()
    # measured from cost (100) the position shows a gain of 5,000; from today's start (200), a loss of 5,000
    reply = await send(service, MessageType.SUBMIT_ORDER, {"order": order("b-1")})
    assert reply["verdict"] == "denied" and "max_daily_loss_exceeded" in reply["reason"]


async def test_selling_the_carried_position_today_realises_todays_loss_not_the_gain_since_cost(tmp_path):
    service = await carried_position(tmp_path)
    service.risk = RiskEngine(_parse(CONFIG.replace('"4000"', '"6000"'), "test"))
    sold = await send(service, MessageType.SUBMIT_ORDER, {"order": order("s-1", "sell", "100", "150")})
    assert sold["verdict"] == "filled"
    position = await service.store.get_position("desk", "FUT")
    assert position.quantity == 0 and position.realised_pnl == 5000  # +5,000 since cost ...
    assert position.sod_quantity == 100 and position.sod_average == 100  # snapshot at the day's first change
    day = service.risk.trading_day()
    view = AccountView("desk", {"FUT": position}, day=day, realised_today=Decimal(5000), sod_prices=service.sod_prices)
    assert daily_loss(view, service.last_prices, service.risk) == 5000  # ... and -5,000 today
    # a further buy at 151 adds 1 of loss against the last tick: 5,001 <= 6,000 passes, 6,001 would not
    assert (await send(service, MessageType.SUBMIT_ORDER, {"order": order("b-2")}))["verdict"] == "filled"
