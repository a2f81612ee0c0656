"""The store contract: written once, run against every store implementation."""

from __future__ import annotations

import hashlib
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from wojak.engine.domain import Order, OrderEvent, OrderState, Position
from wojak.engine.protocol import validate_order
from wojak.engine.store import Execution, SQLiteStore, open_store


def sqlite_store(path: Path, request):
    return SQLiteStore(path / "contract.sqlite")


_RUN = uuid.uuid4().hex[:8]  # a kept-running mock never shows this run an earlier run's documents


def couchbase_store(path: Path, request):
    """A handle on the mock's bucket, under a key prefix unique to this test (same for every handle)."""
    from wojak.engine.store._couchbase import CouchbaseStore

    service = request.getfixturevalue("couchbase_service")
    prefix = f"{_RUN}-{hashlib.blake2b(str(path).encode(), digest_size=6).hexdigest()}::"
    return CouchbaseStore(service.url, service.username, service.password, service.bucket, prefix=prefix)


BACKENDS = {"sqlite": sqlite_store, "couchbase": couchbase_store}
MARKS = {"couchbase": [pytest.mark.couchbase]}


@pytest.fixture(params=[pytest.param(name, marks=MARKS.get(name, [])) for name in sorted(BACKENDS)])
async def make_store(request, tmp_path):
    """make_store() opens a store; calling it again opens another handle on the same data."""
    opened = []

    def make():
        store = BACKENDS[request.param](tmp_path, request)
        opened.append(store)
        return store

    yield make
    for store in opened:
        try:
            await store.close()
        except Exception:
            pass


def order(coid="c1", quantity="10", side="buy", account="acct", symbol="SYM", price="100") -> Order:
    wire, errors = validate_order({"client_order_id": coid, "account": account, "symbol": symbol, "side": side,
                                   "quantity": quantity, "order_type": "limit", "limit_price": price})  # fmt: skip
    assert not errors
    return Order.from_wire(wire)


def approve(o: Order, view):
    o.apply(OrderEvent.SUBMITTED)
    return None


def fill(o: Order, quantity: str, price: str = "100", expected=OrderState.PENDING, event=OrderEvent.FILLED) -> Execution:
    previous = o.filled_quantity
    o.apply(event)
    o.filled_quantity = Decimal(quantity)
    o.average_price = Decimal(price)
    fill_qty = Decimal(quantity) - previous
    closed = o.state in (OrderState.FILLED, OrderState.REJECTED, OrderState.CANCELED)
    sign = 1 if o.side.value == "buy" else -1
    release = (o.quantity - previous if closed else fill_qty) * sign
    return Execution(o, expected, fill_qty, Decimal(price), release)


async def test_admit_creates_pending_with_a_reservation(make_store):
    store = make_store()
    [(record, existed)] = await store.admit([order()], approve)
    assert not existed and record.state is OrderState.PENDING
    stored = await store.get_order("c1")
    assert stored.state is OrderState.PENDING and stored.quantity == Decimal(10)
    position = await store.get_position("acct", "SYM")
    assert position.pending_buy == Decimal(10) and position.quantity == 0
    assert [o.client_order_id for o in await store.pending_orders()] == ["c1"]


async def test_admit_returns_existing_records_untouched(make_store):
    store = make_store()
    await store.admit([order()], approve)
    calls = []
    [(record, existed)] = await store.admit([order(quantity="99")], lambda o, p: calls.append(o))
    assert existed and calls == [] and record.quantity == Decimal(10)
    assert (await store.get_position("acct", "SYM")).pending_buy == Decimal(10)


async def test_duplicates_within_one_batch_share_the_first_record(make_store):
    store = make_store()
    results = await store.admit([order(), order(), order(quantity="3")], approve)
    assert [existed for _, existed in results] == [False, True, True]
    assert results[1][0] is results[0][0] or results[1][0].fingerprint == results[0][0].fingerprint
    assert (await store.get_position("acct", "SYM")).pending_buy == Decimal(10)


async def test_decide_sees_earlier_reservations_in_the_batch(make_store):
    store = make_store()
    seen = []

    def decide(o, view):
        seen.append(view.position(o.symbol).worst_case(o.signed_quantity))
        o.apply(OrderEvent.SUBMITTED)

    await store.admit([order("a"), order("b"), order("c", side="sell", quantity="4")], decide)
    assert seen == [Decimal(10), Decimal(20), Decimal(20)]


async def test_denied_and_escalated_are_final_and_escalations_reach_the_outbox(make_store):
    store = make_store()

    def decide(o, view):
        if o.client_order_id == "deny":
            o.apply(OrderEvent.DENIED)
            return None
        o.apply(OrderEvent.ESCALATED)
        return {"key": f"esc:{o.client_order_id}", "why": "max_position_exceeded"}

    await store.admit([order("deny"), order("esc")], decide)
    assert (await store.get_order("deny")).state is OrderState.DENIED
    assert (await store.get_order("esc")).state is OrderState.ESCALATED
    assert await store.pending_orders() == []
    assert (await store.get_position("acct", "SYM")).pending_buy == 0
    outbox = await store.undelivered_escalations()
    assert [e["client_order_id"] for e in outbox] == ["esc"] and outbox[0]["payload"]["why"] == "max_position_exceeded"
    await store.mark_escalations_delivered([outbox[0]["key"]])
    assert await store.undelivered_escalations() == []


async def test_record_fills_once_even_if_recorded_twice(make_store):
    store = make_store()
    [(o, _)] = await store.admit([order()], approve)
    first = fill(o, "10", "101")
    await store.record([first])
    assert first.applied
    again = Execution(o, OrderState.PENDING, Decimal(10), Decimal(101), Decimal(10))  # a replay of the same outcome
    await store.record([again])
    assert not again.applied  # compare-and-set: the record is no longer pending
    stored = await store.get_order("c1")
    assert stored.state is OrderState.FILLED and stored.filled_quantity == Decimal(10) and stored.average_price == Decimal(101)
    trades = await store.list_trades(client_order_id="c1")
    assert len(trades) == 1 and trades[0].quantity == Decimal(10) and trades[0].price == Decimal(101)
    position = await store.get_position("acct", "SYM")
    assert position.quantity == Decimal(10) and position.pending_buy == 0 and position.average_price == Decimal(101)


async def test_partial_fills_then_fill(make_store):
    store = make_store()
    [(o, _)] = await store.admit([order(side="sell")], approve)
    await store.record([fill(o, "4", "100", OrderState.PENDING, OrderEvent.PARTIALLY_FILLED)])
    position = await store.get_position("acct", "SYM")
    assert position.quantity == Decimal(-4) and position.pending_sell == Decimal(6)
    await store.record([fill(o, "10", "100", OrderState.PARTIALLY_FILLED, OrderEvent.FILLED)])
    position = await store.get_position("acct", "SYM")
    assert position.quantity == Decimal(-10) and position.pending_sell == 0
    assert sorted(t.quantity for t in await store.list_trades(client_order_id="c1")) == [Decimal(4), Decimal(6)]


async def test_a_rejection_releases_the_reservation_without_a_trade(make_store):
    store = make_store()
    [(o, _)] = await store.admit([order()], approve)
    o.apply(OrderEvent.REJECTED)
    o.reason = "sandbox_rejected"
    await store.record([Execution(o, OrderState.PENDING, Decimal(0), None, Decimal(10))])
    stored = await store.get_order("c1")
    assert stored.state is OrderState.REJECTED and stored.reason == "sandbox_rejected"
    assert await store.list_trades() == []
    assert (await store.get_position("acct", "SYM")).pending_buy == 0


async def test_realised_pnl_is_kept(make_store):
    store = make_store()
    [(buy, _)] = await store.admit([order("b", price="100")], approve)
    await store.record([fill(buy, "10", "100")])
    [(sell, _)] = await store.admit([order("s", side="sell", price="110")], approve)
    await store.record([fill(sell, "10", "110")])
    position = await store.get_position("acct", "SYM")
    assert position.quantity == 0 and position.realised_pnl == Decimal(100)
    assert [p.symbol for p in await store.list_positions("acct")] == ["SYM"]


async def test_lists_newest_first(make_store):
    store = make_store()
    for i in range(3):
        await store.admit([order(f"c{i}", account="x" if i == 1 else "acct")], approve)
    assert [o.client_order_id for o in await store.list_orders()] == ["c2", "c1", "c0"]
    assert [o.client_order_id for o in await store.list_orders(account="x")] == ["c1"]
    assert await store.get_order("missing") is None


async def test_ticks_round_trip(make_store):
    store = make_store()
    await store.put_ticks([{"symbol": "SYM", "bid": "99.5", "ask": "100.5", "last": "100"}])
    await store.put_ticks([{"symbol": "SYM", "bid": "100", "ask": "101", "last": "100.75"}])
    ticks = await store.load_ticks()
    assert ticks["SYM"]["last"] == "100.75" and Decimal(ticks["SYM"]["bid"]) == Decimal(100)


async def test_state_survives_reopening(make_store):
    store = make_store()
    [(o, _)] = await store.admit([order()], approve)
    await store.record([fill(o, "10")])
    await store.close()
    again = make_store()
    assert (await again.get_order("c1")).state is OrderState.FILLED
    assert (await again.get_position("acct", "SYM")).quantity == Decimal(10)


def test_open_store_urls(tmp_path):
    assert isinstance(open_store(f"sqlite:///{tmp_path}/a.sqlite"), SQLiteStore)
    for bad in ("redis://x", "sqlite://", "sqlite:///x.sqlite?synchronous=sometimes"):
        with pytest.raises(ValueError, match="WOJAK_STORE|synchronous"):
            open_store(bad)


# -- the account view risk decides on (limits shared by replicas) ----------------------


async def test_decide_sees_every_position_of_the_account(make_store):
    store = make_store()
    [(a, _)] = await store.admit([order("a", symbol="S1")], approve)
    await store.record([fill(a, "10", "100")])
    await store.admit([order("b", symbol="S2", side="sell", quantity="4"), order("x", account="other", symbol="S3")], approve)
    views = []

    def look(o, view):
        views.append({s: (p.quantity, p.pending_buy, p.pending_sell) for s, p in view.positions.items()})
        return approve(o, view)

    await store.admit([order("c", symbol="S3", quantity="1")], look)
    assert views == [{"S1": (Decimal(10), 0, 0), "S2": (0, 0, Decimal(4)), "S3": (0, 0, 0)}]


async def test_realised_pnl_counts_toward_its_trading_day(make_store):
    store = make_store()
    [(buy, _)] = await store.admit([order("b", price="100")], approve, "2024-05-01")
    ex = fill(buy, "10", "100")
    ex.day = "2024-05-01"
    await store.record([ex])
    [(sell, _)] = await store.admit([order("s", side="sell", price="90")], approve, "2024-05-01")
    ex = fill(sell, "10", "90")
    ex.day = "2024-05-01"
    await store.record([ex])
    assert await store.daily_realised("acct", "2024-05-01") == Decimal(-100)
    assert await store.daily_realised("acct", "2024-05-02") == 0
    seen = []
    await store.admit([order("n1")], lambda o, v: seen.append((v.day, v.realised_today)) or approve(o, v), "2024-05-01")
    await store.admit([order("n2")], lambda o, v: seen.append((v.day, v.realised_today)) or approve(o, v), "2024-05-02")
    assert seen == [("2024-05-01", Decimal(-100)), ("2024-05-02", 0)]  # rolled over: a new day starts at zero


async def test_the_order_rate_is_counted_in_the_store(make_store):
    store = make_store()
    counts = []

    def look(o, view):
        counts.append((view.orders_last_second, view.orders_last_minute))
        if o.client_order_id == "deny":
            o.apply(OrderEvent.DENIED)
            return None
        return approve(o, view)

    await store.admit([order("a"), order("b"), order("deny")], look)
    await make_store().admit([order("c"), order("x", account="other")], look)  # another handle (replica) sees them
    assert [m for _, m in counts] == [0, 1, 2, 2, 0]  # only admitted (pending) orders count
    assert all(s <= m for s, m in counts)


async def test_a_halt_set_by_decide_is_stored_and_seen_until_reset(make_store):
    store = make_store()
    states = []

    def halt(o, view):
        states.append(view.state)
        o.apply(OrderEvent.DENIED)
        view.halt = "max_daily_loss_exceeded"
        return None

    await store.admit([order("a")], halt)
    stored = await store.get_account_state("acct")
    assert stored["state"] == "HALTED" and stored["reason"] == "max_daily_loss_exceeded"
    await store.admit([order("b")], lambda o, v: states.append(v.state) or approve(o, v))
    assert states == [None, "HALTED"]
    assert [s["account"] for s in await store.list_account_states()] == ["acct"]
    await store.set_account_state("acct", None)
    assert await store.get_account_state("acct") is None
    await store.admit([order("c")], lambda o, v: states.append(v.state) or approve(o, v))
    assert states[-1] is None
    await store.set_account_state("acct", "REDUCING", "operator")
    assert (await store.get_account_state("acct"))["state"] == "REDUCING"


# -- the daily-loss reservation of orders in flight -------------------------------------


def approve_reserving(per_unit: str):
    """A decide that passes the order and reserves ``per_unit`` of immediate loss per unit."""

    def decide(o: Order, view):
        o.apply(OrderEvent.SUBMITTED)
        view.loss_per_unit = Decimal(per_unit)
        return None

    return decide


async def test_pending_loss_is_reserved_at_admit_and_released_at_record_once(make_store):
    store = make_store()
    [(o, _)] = await store.admit([order("c1", quantity="10")], approve_reserving("2.5"))
    [(plain, _)] = await store.admit([order("c2", quantity="3", side="sell")], approve)  # reserves no loss
    assert (await store.get_position("acct", "SYM")).pending_loss == Decimal(25)
    # another handle (a replica) deciding on the account sees it; a denied order reserves nothing
    seen = []

    def deny(o, view):
        seen.append(view.position(o.symbol).pending_loss)
        view.loss_per_unit = Decimal(100)
        o.apply(OrderEvent.DENIED)

    await make_store().admit([order("c3")], deny)
    assert seen == [Decimal(25)]
    assert (await store.get_position("acct", "SYM")).pending_loss == Decimal(25)

    # a partial fill releases its share; a replay of it (the same outcome again) releases nothing
    partial = fill(o, "4", "100", OrderState.PENDING, OrderEvent.PARTIALLY_FILLED)
    await store.record([partial])
    assert partial.applied and (await store.get_position("acct", "SYM")).pending_loss == Decimal(15)
    replay = Execution(o, OrderState.PENDING, Decimal(4), Decimal(100), Decimal(4))
    await make_store().record([replay])
    assert not replay.applied
    assert (await store.get_position("acct", "SYM")).pending_loss == Decimal(15)

    # the fill closes the order: the rest is released, once
    done = fill(o, "10", "100", OrderState.PARTIALLY_FILLED, OrderEvent.FILLED)
    await store.record([done])
    again = Execution(o, OrderState.PARTIALLY_FILLED, Decimal(6), Decimal(100), Decimal(6))
    await store.record([again])
    assert done.applied and not again.applied
    position = await store.get_position("acct", "SYM")
    assert position.pending_loss == 0 and position.pending_buy == 0 and position.quantity == Decimal(10)
    assert position.pending_sell == Decimal(3)  # the other order's reservation is untouched

    # a rejection releases the whole reservation
    [(r, _)] = await store.admit([order("c4", quantity="2")], approve_reserving("7"))
    assert (await store.get_position("acct", "SYM")).pending_loss == Decimal(14)
    r.apply(OrderEvent.REJECTED)
    await store.record([Execution(r, OrderState.PENDING, Decimal(0), None, Decimal(2))])
    await store.record([Execution(r, OrderState.PENDING, Decimal(0), None, Decimal(2))])  # replayed
    assert (await store.get_position("acct", "SYM")).pending_loss == 0
    assert [p.pending_loss for p in await make_store().list_positions("acct")] == [0]
