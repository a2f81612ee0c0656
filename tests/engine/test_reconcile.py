"""Reconciliation (wojak.engine.reconcile) against real parts: the in-process sandbox with a
ledger file, a real store (SQLite, and the Couchbase mock for the tests that need only a store),
and one real engine process killed after admitting an order.

- resting orders the sandbox fills later are booked at each fill's own price;
- DAY orders still open after their exchange trading day are cancelled, reservation released;
- a `pending` order a crash stranded, which the venue never saw, is released after the
  configured age (state `expired`) and a resend is answered `duplicate`, never executed.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from decimal import Decimal

import pytest

from tests._processes import TRADER
from tests._risk import risk_config
from wojak.engine._metrics import EngineMetrics
from wojak.engine.protocol import MessageType
from wojak.engine.reconcile import Reconciler
from wojak.engine.risk import RiskEngine
from wojak.engine.risk._config import _parse
from wojak.engine.service import OrderService
from wojak.engine.store import SQLiteStore
from wojak.engine.venue import InProcessSandboxVenue, VenueError
from wojak.engine.venue.sandbox import SandboxConfig

CONFIG = risk_config({"max_order_quantity": "1000", "max_position": "100000"}, """
exchange_timezone: Asia/Kolkata
instruments: {FUT: {price_decimals: 2}, FUT2: {price_decimals: 2}}
""")
DAY = 86400.0


def tick(symbol: str, last: str = "100") -> dict:
    p = Decimal(last)
    return {"symbol": symbol, "bid": str(p - 1), "ask": str(p + 1), "last": last}


def order(coid: str, side: str = "buy", qty: str = "20", price: str = "100", symbol: str = "FUT",
          tif: str = "gtc", account: str = "desk") -> dict:  # fmt: skip
    return {"client_order_id": coid, "account": account, "symbol": symbol, "side": side, "quantity": qty,
            "order_type": "limit", "limit_price": price, "time_in_force": tif}  # fmt: skip


async def send(service: OrderService, kind: MessageType, body: dict) -> dict:
    [reply] = await service.handle_batch([(kind, {**body, "principal": TRADER.to_wire()})])
    return reply


@pytest.fixture(params=["sqlite", pytest.param("couchbase", marks=pytest.mark.couchbase)])
async def store(request, tmp_path):
    """A fresh store of each kind (on Couchbase, a key prefix of its own in the mock's bucket)."""
    if request.param == "sqlite":
        opened = SQLiteStore(tmp_path / "store.sqlite")
    else:
        from wojak.engine.store._couchbase import CouchbaseStore

        service = request.getfixturevalue("couchbase_service")
        opened = CouchbaseStore(service.url, service.username, service.password, service.bucket,
                                prefix=f"rec-{uuid.uuid4().hex[:12]}::")  # fmt: skip
    yield opened
    await opened.close()


async def make_service(tmp_path, store, later_fill: str | None = None, **kw) -> OrderService:
    venue = InProcessSandboxVenue(SandboxConfig(
        fill_probability=Decimal(0), accept_probability=Decimal(1), ledger=str(tmp_path / "ledger.sqlite"),
        later_fill_seconds=None if later_fill is None else Decimal(later_fill),
    ))  # fmt: skip
    service = OrderService(store, venue, RiskEngine(_parse(CONFIG, "test")), **kw)
    for symbol in ("FUT", "FUT2"):
        assert (await send(service, MessageType.TICK, {"tick": tick(symbol)}))["status"] == "applied"
    return service


async def trades(service: OrderService, coid: str) -> list[tuple[Decimal, Decimal]]:
    """The order's trades through the store API: by quantity, then in the order they were booked."""
    found = await service.store.list_trades(limit=1000, client_order_id=coid, account="desk")
    return [(t.quantity, t.price) for t in sorted(reversed(found), key=lambda t: (t.quantity, t.executed_at))]


async def age(service: OrderService, coid: str, seconds: float) -> None:
    """Move an order's creation back in time (as if it had been placed ``seconds`` earlier)."""
    store = service.store
    if isinstance(store, SQLiteStore):
        store._db.execute("UPDATE orders SET created_at = created_at - ? WHERE client_order_id=?", (seconds, coid))
    else:
        await store._cas_loop(store._order_key(f"desk/{coid}"), lambda d: {**d, "created_at": d["created_at"] - seconds})


def sample(metrics: EngineMetrics, name: str) -> float:
    return metrics.registry.get_sample_value(name) or 0.0


async def test_resting_orders_filled_later_are_booked_at_their_own_prices(tmp_path, store):
    service = await make_service(tmp_path, store, later_fill="0")
    metrics = EngineMetrics()
    reconciler = Reconciler(service, metrics)
    # the sandbox's later fills are a pure function of (seed, order, filled so far): for these
    # two orders, a buy of 20 limit 102 fills 10@100 then 10@101; a sell of 20 limit 100, 10@100 then 10@103
    buy = await send(service, MessageType.SUBMIT_ORDER, {"order": order("rest-buy-3", price="102")})
    sell = await send(service, MessageType.SUBMIT_ORDER, {"order": order("rest-sell-1", "sell", symbol="FUT2")})
    assert buy["verdict"] == sell["verdict"] == "accepted"
    assert (await service.store.get_position("desk", "FUT")).pending_buy == 20

    assert (await reconciler.run_once())["fills"] == 2
    got = await service.store.get_order("desk", "rest-buy-3")
    assert got is not None and got.state.value == "partially_filled" and got.filled_quantity == 10
    long = await service.store.get_position("desk", "FUT")
    assert (long.quantity, long.average_price, long.pending_buy) == (10, 100, 10)

    assert (await reconciler.run_once())["fills"] == 2
    assert (await reconciler.run_once())["fills"] == 0  # nothing open any more: nothing booked twice
    assert await trades(service, "rest-buy-3") == [(10, 100), (10, 101)]
    assert await trades(service, "rest-sell-1") == [(10, 100), (10, 103)]
    long = await service.store.get_position("desk", "FUT")
    short = await service.store.get_position("desk", "FUT2")
    assert (long.quantity, long.average_price, long.pending_buy, long.pending_sell) == (20, Decimal("100.5"), 0, 0)
    assert (short.quantity, short.average_price, short.pending_buy, short.pending_sell) == (-20, Decimal("101.5"), 0, 0)
    assert sample(metrics, "wojak_engine_reconciled_fills_total") == 4
    for coid in ("rest-buy-3", "rest-sell-1"):
        stored = await service.store.get_order("desk", coid)
        assert stored is not None and stored.state.value == "filled" and stored.filled_quantity == 20
    # a resend is the stored outcome; the venue saw each order once
    again = await send(service, MessageType.SUBMIT_ORDER, {"order": order("rest-buy-3", price="102")})
    assert again["verdict"] == "duplicate" and again["order"]["state"] == "filled"
    assert service.venue.sandbox.submissions() == {"rest-buy-3": 1, "rest-sell-1": 1}


async def test_day_orders_expire_at_the_end_of_the_exchange_day_and_release_their_reservation(tmp_path, store):
    service = await make_service(tmp_path, store)
    metrics = EngineMetrics()
    for coid, qty, tif in (("day-old", "5", "day"), ("gtc-old", "7", "gtc"), ("day-today", "3", "day")):
        reply = await send(service, MessageType.SUBMIT_ORDER, {"order": order(coid, qty=qty, tif=tif)})
        assert reply["verdict"] == "accepted"
    await age(service, "day-old", DAY)
    await age(service, "gtc-old", DAY)
    assert (await service.store.get_position("desk", "FUT")).pending_buy == 15

    counts = await Reconciler(service, metrics).run_once()
    assert counts["day_expired"] == 1
    states = {c: (await service.store.get_order("desk", c)).state.value for c in ("day-old", "gtc-old", "day-today")}
    assert states == {"day-old": "canceled", "gtc-old": "accepted", "day-today": "accepted"}
    assert (await service.store.get_position("desk", "FUT")).pending_buy == 10
    assert sample(metrics, "wojak_engine_day_orders_expired_total") == 1
    ledger = service.venue.sandbox.handle({"action": "lookup", "orders": [order("day-old", qty="5", tif="day")]})
    assert ledger["reports"][0]["status"] == "canceled"  # cancelled at the venue, not only in the book

    # the clock at the same moment tomorrow: today's DAY order is past its day too; GTC never expires
    tomorrow = Reconciler(service, metrics, clock=lambda: time.time() + DAY)
    assert (await tomorrow.run_once())["day_expired"] == 1
    assert (await service.store.get_order("desk", "day-today")).state.value == "canceled"
    assert (await service.store.get_order("desk", "gtc-old")).state.value == "accepted"
    position = await service.store.get_position("desk", "FUT")
    assert (position.quantity, position.pending_buy) == (0, 7)
    assert (await tomorrow.run_once())["day_expired"] == 0


class _Unreachable:
    """A venue that fails every ``execute``: ``before`` (never reaching the sandbox) or after the
    sandbox executed (the answer lost). Lookups and cancels reach the sandbox."""

    def __init__(self, venue: InProcessSandboxVenue, executed: bool) -> None:
        self.venue, self.executed = venue, executed

    async def execute(self, orders):
        if self.executed:
            await self.venue.execute(orders)
        raise VenueError("timed out")

    def __getattr__(self, name):
        return getattr(self.venue, name)


async def test_a_stranded_pending_order_is_released_after_its_age_and_never_executes(tmp_path, store):
    service = await make_service(tmp_path, store, lease_seconds=0.05)
    sandbox_venue = service.venue
    metrics = EngineMetrics()
    store = service.store
    # one the venue never saw, one it executed (the answer was lost): both stay pending
    service.venue = _Unreachable(sandbox_venue, executed=False)
    assert (await send(service, MessageType.SUBMIT_ORDER, {"order": order("lost", qty="4")}))["verdict"] == "retry"
    service.venue = _Unreachable(sandbox_venue, executed=True)
    sandbox_venue.sandbox = type(sandbox_venue.sandbox)(SandboxConfig(fill_probability=Decimal(1),
                                                                      ledger=str(tmp_path / "ledger.sqlite")))  # fmt: skip
    assert (await send(service, MessageType.SUBMIT_ORDER, {"order": order("answer-lost", qty="6")}))["verdict"] == "retry"
    # one under another engine's live lease (a replica at the venue right now)
    other = OrderService(store, _Unreachable(sandbox_venue, executed=False), service.risk, lease_seconds=60)
    await other._refresh_prices()
    assert (await send(other, MessageType.SUBMIT_ORDER, {"order": order("in-flight", qty="2")}))["verdict"] == "retry"
    service.venue = sandbox_venue
    await asyncio.sleep(0.06)  # service's leases lapse
    assert (await store.get_position("desk", "FUT")).pending_buy == 12

    # younger than the release age: left alone
    reconciler = Reconciler(service, metrics, pending_release_seconds=300)
    assert not await reconciler.run_once()
    assert {o.client_order_id for o in await store.pending_orders()} == {"lost", "answer-lost", "in-flight"}

    # five minutes later
    later = Reconciler(service, metrics, pending_release_seconds=300, clock=lambda: time.time() + 301)
    counts = await later.run_once()
    assert counts["released"] == 1
    lost = await store.get_order("desk", "lost")
    assert lost.state.value == "expired" and "never reached the venue" in lost.reason
    assert (await store.get_order("desk", "answer-lost")).state.value == "filled"  # the venue knew it: booked
    assert (await store.get_order("desk", "in-flight")).state.value == "pending"  # another engine's live lease
    position = await store.get_position("desk", "FUT")
    assert (position.quantity, position.pending_buy) == (6, 2)
    assert sample(metrics, "wojak_engine_pending_released_total") == 1
    assert [e["kind"] for e in await store.list_audit() if e["subject"] == "desk/lost"] == ["order_expired"]

    # a resend: the final state, never executed
    again = await send(service, MessageType.SUBMIT_ORDER, {"order": order("lost", qty="4")})
    assert again["verdict"] == "duplicate" and again["order"]["state"] == "expired"
    assert ("desk", "lost") not in sandbox_venue.sandbox.submissions_by_order()
    assert (await store.get_position("desk", "FUT")).pending_buy == 2


async def test_the_order_path_does_not_submit_an_order_the_loop_holds(tmp_path, store):
    service = await make_service(tmp_path, store, lease_seconds=0.05)
    venue = service.venue
    service.venue = _Unreachable(venue, executed=False)
    assert (await send(service, MessageType.SUBMIT_ORDER, {"order": order("held", qty="1")}))["verdict"] == "retry"
    service.venue = venue
    await asyncio.sleep(0.06)
    reconciler = Reconciler(service)
    [pending] = await service.store.pending_orders()
    assert await service.store.take_leases([pending], reconciler.owner, 60)  # the loop is at the venue with it
    reply = await send(service, MessageType.SUBMIT_ORDER, {"order": order("held", qty="1")})
    assert reply["verdict"] == "retry" and reply["reason"] == "order_in_flight"
    assert venue.sandbox.submissions() == {}
    await service.store.take_leases([pending], reconciler.owner, 0)  # handed back: the resend goes ahead
    assert (await send(service, MessageType.SUBMIT_ORDER, {"order": order("held", qty="1")}))["verdict"] == "accepted"


async def test_open_orders_pages_oldest_first_and_only_open_states(tmp_path):
    # SQLite: its open_orders reads through a partial index (the contract suite pages both stores)
    service = await make_service(tmp_path, SQLiteStore(tmp_path / "store.sqlite"))
    for i in range(5):
        await send(service, MessageType.SUBMIT_ORDER, {"order": order(f"o-{i}", qty="1")})
    service.store._db.execute("UPDATE orders SET state='filled' WHERE client_order_id='o-2'")
    first = await service.store.open_orders(2)
    assert [o.client_order_id for o in first] == ["o-0", "o-1"]
    last = first[-1]
    rest = await service.store.open_orders(10, (last.created_at, last.account, last.client_order_id))
    assert [o.client_order_id for o in rest] == ["o-3", "o-4"]
    plan = " ".join(r[3] for r in service.store._db.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM orders WHERE state IN ('pending', 'accepted', 'partially_filled')"))
    assert "orders_open" in plan


async def test_two_engines_reconciling_one_store_book_each_later_fill_once(tmp_path, store):
    service = await make_service(tmp_path, store, later_fill="0")
    other = OrderService(service.store, service.venue, service.risk)
    for i in range(6):
        reply = await send(service, MessageType.SUBMIT_ORDER, {"order": order(f"r-{i}", qty="8", price="101")})
        assert reply["verdict"] == "accepted"
    a, b = Reconciler(service), Reconciler(other)
    assert a.owner != b.owner
    for _ in range(6):
        first, second = await asyncio.gather(a.run_once(), b.run_once())
        # while one loop holds the orders' leases, the other leaves them alone
        third, fourth = await asyncio.gather(b.run_once(), a.run_once())
        assert not second and not third
    ledger = {r[0]: r[1] for r in service.venue.sandbox._db.execute("SELECT client_order_id, report FROM executions")}
    position = await service.store.get_position("desk", "FUT")
    fills = {i: await trades(service, f"r-{i}") for i in range(6)}
    booked = sum((q for i in range(6) for q, _ in fills[i]), Decimal(0))
    assert booked == position.quantity == sum(Decimal(json.loads(r)["filled_quantity"]) for r in ledger.values())
    assert booked == 48 and position.pending_buy == 0  # everything filled in steps, each booked once
    for i in range(6):
        stored = await service.store.get_order("desk", f"r-{i}")
        assert sum(q for q, _ in fills[i]) == stored.filled_quantity
        if fills[i]:  # each fill at its own price; together they make the stored average
            assert sum(q * p for q, p in fills[i]) / stored.filled_quantity == stored.average_price


async def test_take_leases_holds_against_other_loops_and_stale_reads_only(tmp_path, store):
    service = await make_service(tmp_path, store)
    await send(service, MessageType.SUBMIT_ORDER, {"order": order("l-1", qty="1")})
    [accepted] = await service.store.open_orders()
    assert accepted.lease_owner == service.engine_id  # the order path's lease: it ended with pending
    assert await service.store.take_leases([accepted], "e1:reconcile", 60)
    assert not await service.store.take_leases([accepted], "e2:reconcile", 60)  # another loop holds it
    assert await service.store.take_leases([accepted], "e1:reconcile", 60)  # its own: renewed
    await service.store.take_leases([accepted], "e1:reconcile", 0)
    assert await service.store.take_leases([accepted], "e2:reconcile", 60)  # handed back: free
    accepted.filled_quantity = Decimal(1)  # a read the store has moved past
    assert not await service.store.take_leases([accepted], "e2:reconcile", 60)


class _Lying:
    """A venue whose lookups answer ``reports`` instead of the sandbox."""

    def __init__(self, venue, reports):
        self.venue, self.reports = venue, reports

    async def lookup(self, orders):
        from wojak.engine.venue import VenueReport

        return [VenueReport.from_dict({"client_order_id": o["client_order_id"], **self.reports[o["client_order_id"]]})
                for o in orders]  # fmt: skip

    def __getattr__(self, name):
        return getattr(self.venue, name)


async def test_later_reports_are_checked_like_on_the_order_path(tmp_path, store):
    service = await make_service(tmp_path, store)
    for coid in ("beyond", "odd"):
        assert (await send(service, MessageType.SUBMIT_ORDER, {"order": order(coid, qty="2")}))["verdict"] == "accepted"
    service.venue = _Lying(service.venue, {
        "beyond": {"status": "filled", "filled_quantity": "2", "average_price": "100.05"},  # above the buy limit
        "odd": {"status": "rejected"},  # accepted -> rejected: no such transition
    })  # fmt: skip
    await Reconciler(service).run_once()
    beyond = await service.store.get_order("desk", "beyond")
    assert beyond.state.value == "venue_anomaly" and "beyond the buy limit" in beyond.reason
    assert await trades(service, "beyond") == []
    assert (await service.store.get_order("desk", "odd")).state.value == "accepted"  # left as it is, logged
    position = await service.store.get_position("desk", "FUT")
    assert (position.quantity, position.pending_buy) == (0, 4)  # nothing booked, the reservations held
    assert (await service.store.get_account_state("desk"))["state"] == "REDUCING"


# -- a real engine process ---------------------------------------------------------------

NIFTY = {"symbol": "NIFTY-FUT", "bid": "24000", "ask": "24001", "last": "24000"}
STRANDED = {"client_order_id": "stranded-1", "account": "acct", "symbol": "NIFTY-FUT", "side": "buy",
            "quantity": "3", "order_type": "limit", "limit_price": "24000"}  # fmt: skip


def _store_row(engine, sql: str, *args):
    with sqlite3.connect(engine.store_path) as db:
        return db.execute(sql, args).fetchone()


@pytest.mark.slow
def test_an_engine_killed_after_admitting_releases_the_stranded_order_after_restart(engine_factory):
    settings = {"WOJAK_SANDBOX_FILL_PROBABILITY": "1", "WOJAK_ENGINE_LEASE_SECONDS": "1",
                "WOJAK_ENGINE_RECONCILE_SECONDS": "0.2", "WOJAK_ENGINE_PENDING_RELEASE_SECONDS": "2"}  # fmt: skip
    engine = engine_factory(**settings)
    engine.request(MessageType.TICK, {"tick": NIFTY})
    engine.kill()
    engine.start(WOJAK_TEST_FAULTS="1", WOJAK_ENGINE_CRASH_AT="admitted")
    assert engine.request(MessageType.SUBMIT_ORDER, {"order": STRANDED}, deadline=2.0)["verdict"] == "retry"
    assert engine.wait_exit(10) == -9
    assert _store_row(engine, "SELECT state FROM orders WHERE client_order_id='stranded-1'") == ("pending",)
    assert _store_row(engine, "SELECT pending_buy FROM positions WHERE account='acct'") == ("3",)

    engine.start()  # without the fault: the order stays pending (the venue never saw it) until its age
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        got = engine.request(MessageType.GET_ORDER, {"account": "acct", "client_order_id": "stranded-1"})
        if got["order"]["state"] != "pending":
            break
        time.sleep(0.1)
    assert got["order"]["state"] == "expired"
    assert _store_row(engine, "SELECT quantity, pending_buy FROM positions WHERE account='acct'") == ("0", "0")

    again = engine.request(MessageType.SUBMIT_ORDER, {"order": STRANDED})
    assert again["verdict"] == "duplicate" and again["order"]["state"] == "expired"
    with sqlite3.connect(engine.ledger_path) as db:
        submissions = db.execute("SELECT count(*) FROM executions WHERE client_order_id='stranded-1'").fetchone()[0]
    assert submissions == 0, "the released order never reached the venue"
    text = engine.request(MessageType.METRICS, {})["text"]
    assert "wojak_engine_pending_released_total 1.0" in text
