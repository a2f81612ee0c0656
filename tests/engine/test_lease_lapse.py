"""A batch that outlasts its orders' execution lease (two replicas on one store, in process).

With lanes on, a Couchbase batch holds each of its orders ``pending`` for the whole batch
(every order admitted, then one venue call, then every order recorded): about 30 s for the
two-replica test on this machine, against a 60 s lease. Once the lease lapses, a resend to
the other replica takes the order over. Then neither may the first replica submit it again,
nor may two records of it count its fill twice (the position once read 1003 for 1000 orders).

The interleaving is forced: replica A's batch waits, right where the test says, until A's
lease has lapsed and replica B has handled a resend of the same order. Both stores run it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from decimal import Decimal
from typing import Any

import pytest

from tests._processes import TRADER
from tests.engine.store.test_store_contract import make_store  # noqa: F401  (the fixture: both stores)
from wojak.engine.protocol import MessageType
from wojak.engine.risk import RiskEngine, default_risk_config
from wojak.engine.service import OrderService
from wojak.engine.venue import InProcessSandboxVenue
from wojak.engine.venue.sandbox import SandboxConfig

TICK = {"symbol": "NIFTY-FUT", "bid": "23999", "ask": "24001", "last": "24000"}
ORDER = {"client_order_id": "lapse-1", "account": "acct-1", "symbol": "NIFTY-FUT", "side": "buy", "quantity": "1",
         "order_type": "limit", "limit_price": "24000"}  # fmt: skip
SHORT_LEASE = 0.5  # replica A's lease: the test waits it out


def submit() -> list[tuple[MessageType, dict[str, Any]]]:
    return [(MessageType.SUBMIT_ORDER, {"order": dict(ORDER), "principal": TRADER.to_wire()})]


class _HeldVenue(InProcessSandboxVenue):
    """The sandbox on a shared ledger; with ``hold`` set, an execute waits for it once submitted."""

    def __init__(self, ledger: str) -> None:
        super().__init__(SandboxConfig(fill_probability=Decimal(1), ledger=ledger))
        self.hold: Any = None

    async def execute(self, orders: list[dict[str, Any]]) -> Any:
        reports = await super().execute(orders)
        if self.hold is not None:
            await self.hold()
        return reports


@pytest.mark.parametrize("lapses", ["before_the_venue", "after_the_venue"])
async def test_an_order_taken_over_after_its_lease_lapsed_is_submitted_and_counted_once(make_store, tmp_path, lapses):  # noqa: F811
    ledger = str(tmp_path / "ledger.sqlite")
    store_a, store_b = make_store(), make_store()
    venue_a, venue_b = _HeldVenue(ledger), _HeldVenue(ledger)
    a = OrderService(store_a, venue_a, RiskEngine(default_risk_config()), engine_id="replica-a", lease_seconds=SHORT_LEASE)
    b = OrderService(store_b, venue_b, RiskEngine(default_risk_config()), engine_id="replica-b", lease_seconds=30)
    [ticked] = await a.handle_batch([(MessageType.TICK, {"tick": TICK, "principal": TRADER.to_wire()})])
    assert ticked["verdict"] == "ok"
    held, taken_over = asyncio.Event(), asyncio.Event()

    async def until_lapsed_and_taken_over() -> None:
        venue_a.hold = None
        while True:  # the condition is the lease's own expiry: wait for the store to show it passed
            stored = await store_a.get_order("acct-1", "lapse-1")
            if stored is not None and stored.lease_owner == "replica-a" and stored.lease_until < time.time():
                break
            await asyncio.sleep(0.05)
        held.set()
        await taken_over.wait()

    if lapses == "before_the_venue":  # A admitted it, then its batch stalled (admitting the rest, say)
        admit = store_a.admit

        async def stalled_admit(*args: Any, **kwargs: Any) -> Any:
            admitted = await admit(*args, **kwargs)
            store_a.admit = admit  # type: ignore[method-assign]  (once)
            await until_lapsed_and_taken_over()
            return admitted

        store_a.admit = stalled_admit  # type: ignore[method-assign]
    else:  # A submitted it, then its batch stalled before recording it (recording the rest, say)
        venue_a.hold = until_lapsed_and_taken_over  # (once: it clears itself below)

    first = asyncio.create_task(a.handle_batch(submit()))
    await asyncio.wait_for(held.wait(), 20)
    [resend] = await asyncio.wait_for(b.handle_batch(submit()), 20)  # B takes the lapsed lease over
    taken_over.set()
    [original] = await asyncio.wait_for(first, 20)

    with sqlite3.connect(ledger) as db:
        assert db.execute("SELECT client_order_id, submissions FROM executions").fetchall() == [("lapse-1", 1)]
    assert resend["verdict"] == "filled"
    if lapses == "before_the_venue":  # A left it to B: it answers retry, and a resend finds it done
        assert (original["verdict"], original["reason"]) == ("retry", "order_in_flight")
        [again] = await a.handle_batch(submit())
        assert again["verdict"] == "duplicate" and again["order"]["state"] == "filled"
    else:
        assert original["verdict"] == "filled"
    for store in (store_a, store_b):
        position = await store.get_position("acct-1", "NIFTY-FUT")
        assert (position.quantity, position.pending_buy) == (Decimal(1), Decimal(0))
        assert [t.quantity for t in await store.list_trades(account="acct-1")] == [Decimal(1)]
        assert await store.pending_orders() == []
