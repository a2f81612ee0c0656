"""The store contract: written once, run against every store implementation."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import random
import time
import uuid
from decimal import Decimal
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

from wojak.engine.domain import Order, OrderEvent, OrderState
from wojak.engine.protocol import validate_order
from wojak.engine.store import TICK_APPLIED, Execution, SQLiteStore, open_store


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


def order(coid="c1", quantity="10", side="buy", account="acct", symbol="SYM", price="100", principal=None) -> Order:
    wire, errors = validate_order({"client_order_id": coid, "account": account, "symbol": symbol, "side": side,
                                   "quantity": quantity, "order_type": "limit", "limit_price": price})  # fmt: skip
    assert not errors
    o = Order.from_wire(wire)
    o.principal = principal
    return o


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
    stored = await store.get_order("acct", "c1")
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
    assert (await store.get_order("acct", "deny")).state is OrderState.DENIED
    assert (await store.get_order("acct", "esc")).state is OrderState.ESCALATED
    assert await store.pending_orders() == []
    assert (await store.get_position("acct", "SYM")).pending_buy == 0
    outbox = await store.undelivered_escalations()
    assert [e["client_order_id"] for e in outbox] == ["esc"] and outbox[0]["payload"]["why"] == "max_position_exceeded"
    assert outbox[0]["key"] == "esc:acct/esc"
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
    stored = await store.get_order("acct", "c1")
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


@pytest.mark.parametrize("side", ["buy", "sell"])
async def test_partial_fills_of_a_fractional_order_release_exactly_what_they_fill(make_store, side):
    """A reservation below one unit is released by what each partial fill fills, down to exactly
    nothing once partial fills have filled the whole order (before any closing outcome)."""
    store = make_store()
    [(o, _)] = await store.admit([order(quantity="1", side=side)], approve)
    pending = "pending_buy" if side == "buy" else "pending_sell"
    await store.record([fill(o, "0.4", "100", OrderState.PENDING, OrderEvent.PARTIALLY_FILLED)])
    assert getattr(await store.get_position("acct", "SYM"), pending) == Decimal("0.6")
    await store.record([fill(o, "1", "100", OrderState.PARTIALLY_FILLED, OrderEvent.PARTIALLY_FILLED)])
    position = await store.get_position("acct", "SYM")
    assert getattr(position, pending) == 0 and abs(position.quantity) == 1


async def test_a_rejection_releases_the_reservation_without_a_trade(make_store):
    store = make_store()
    [(o, _)] = await store.admit([order()], approve)
    o.apply(OrderEvent.REJECTED)
    o.reason = "sandbox_rejected"
    await store.record([Execution(o, OrderState.PENDING, Decimal(0), None, Decimal(10))])
    stored = await store.get_order("acct", "c1")
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
    assert await store.get_order("acct", "missing") is None
    assert await store.get_order("x", "c0") is None  # c0 is acct's


def apply_all(stored, tick, now):
    return TICK_APPLIED


async def test_ticks_round_trip(make_store):
    store = make_store()
    assert await store.apply_ticks([{"symbol": "SYM", "bid": "99.5", "ask": "100.5", "last": "100"}], apply_all) == ["applied"]
    await store.apply_ticks([{"symbol": "SYM", "bid": "100", "ask": "101", "last": "100.75"}], apply_all)
    ticks = await store.load_ticks()
    assert ticks["SYM"]["last"] == "100.75" and Decimal(ticks["SYM"]["bid"]) == Decimal(100)
    assert ticks["SYM"]["sequence"] is None and ticks["SYM"]["exchange_time"] is None


async def test_state_survives_reopening(make_store):
    store = make_store()
    [(o, _)] = await store.admit([order()], approve)
    await store.record([fill(o, "10")])
    await store.close()
    again = make_store()
    assert (await again.get_order("acct", "c1")).state is OrderState.FILLED
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
    await store.set_account_state("acct", None, actor="ops")
    assert await store.get_account_state("acct") is None
    await store.admit([order("c")], lambda o, v: states.append(v.state) or approve(o, v))
    assert states[-1] is None
    await store.set_account_state("acct", "REDUCING", "operator")
    assert (await store.get_account_state("acct"))["state"] == "REDUCING"
    # every change is in the audit log, the risk halt included, newest first
    assert [(e["kind"], e["actor"], e["subject"], e["detail"]["state"], e["detail"]["reason"])
            for e in await store.list_audit()] == [
        ("account_state", "unknown", "acct", "REDUCING", "operator"),
        ("account_state", "ops", "acct", "configured", ""),
        ("account_state", "engine:risk", "acct", "HALTED", "max_daily_loss_exceeded"),
    ]  # fmt: skip
    assert (await store.list_audit())[-1]["detail"]["order"] == "acct/a"


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


# -- client_order_id is unique per account: (account, client_order_id) names an order ----


async def test_the_same_coid_in_two_accounts_is_two_independent_orders(make_store):
    store = make_store()
    results = await store.admit([order("c1", account="a1", principal="alice"),
                                 order("c1", account="a2", quantity="3", side="sell", principal="bob")], approve)  # fmt: skip
    assert [existed for _, existed in results] == [False, False]  # other content, other account: no conflict
    [(o1, _), (o2, _)] = results
    await store.record([fill(o1, "10", "101")])

    first, second = await store.get_order("a1", "c1"), await store.get_order("a2", "c1")
    assert (first.account, first.state, first.filled_quantity, first.principal) == ("a1", OrderState.FILLED, 10, "alice")
    assert (second.account, second.state, second.quantity, second.principal) == ("a2", OrderState.PENDING, 3, "bob")
    assert second.filled_quantity == 0 and second.average_price is None
    assert await store.get_order("a3", "c1") is None
    assert [o.key for o in await store.pending_orders()] == ["a2/c1"]
    assert (await store.get_position("a1", "SYM")).quantity == Decimal(10)
    position = await store.get_position("a2", "SYM")
    assert position.quantity == 0 and position.pending_sell == Decimal(3)

    # a resend is the same order of its own account only
    [(again, existed)] = await make_store().admit([order("c1", account="a2", quantity="3", side="sell")], approve)
    assert existed and again.key == "a2/c1" and again.state is OrderState.PENDING

    assert [o.key for o in await store.list_orders(account="a1")] == ["a1/c1"]
    assert [o.key for o in await store.list_orders(account="a2")] == ["a2/c1"]
    assert sorted(o.key for o in await store.list_orders()) == ["a1/c1", "a2/c1"]
    assert sorted(o.key for o in await store.list_orders(patterns=["a*"])) == ["a1/c1", "a2/c1"]
    assert [o.key for o in await store.list_orders(patterns=["?2"])] == ["a2/c1"]
    assert [o.key for o in await store.list_orders(patterns=["b*", "a1"])] == ["a1/c1"]
    assert [o.key for o in await store.list_orders(account="a1", patterns=["a2"])] == []
    assert await store.list_orders(patterns=[]) == []  # no pattern: no account
    assert await store.list_orders(patterns=["a"]) == []  # a pattern matches the whole name

    # trades: separate per order, named by the account-qualified key
    await store.record([fill(o2, "3", "99")])
    trades = await store.list_trades()
    assert sorted((t.account, t.client_order_id, t.quantity) for t in trades) == [("a1", "c1", 10), ("a2", "c1", 3)]
    assert len({t.trade_id for t in trades}) == 2 and all(t.trade_id.startswith(f"{t.account}/c1#") for t in trades)
    assert [(t.account, t.price) for t in await store.list_trades(account="a1")] == [("a1", Decimal(101))]
    assert [(t.account, t.price) for t in await store.list_trades(client_order_id="c1", account="a2")] == [("a2", Decimal(99))]
    assert len(await store.list_trades(client_order_id="c1")) == 2
    assert await store.list_trades(client_order_id="c1", account="a3") == []
    assert (await store.get_position("a2", "SYM")).quantity == Decimal(-3)
    assert (await store.get_position("a1", "SYM")).quantity == Decimal(10)


async def test_escalations_of_the_same_coid_in_two_accounts_are_separate_outbox_entries(make_store):
    store = make_store()

    def escalate(o, view):
        o.apply(OrderEvent.ESCALATED)
        return {"account": o.account}

    await store.admit([order("e1", account="a1"), order("e1", account="a2")], escalate)
    outbox = await store.undelivered_escalations()
    assert sorted((e["key"], e["client_order_id"], e["payload"]["account"]) for e in outbox) == [
        ("esc:a1/e1", "e1", "a1"), ("esc:a2/e1", "e1", "a2")]  # fmt: skip
    await store.mark_escalations_delivered(["esc:a1/e1"])
    assert [e["key"] for e in await make_store().undelivered_escalations()] == ["esc:a2/e1"]
    await store.mark_escalations_delivered(["esc:a2/e1"])
    assert await store.undelivered_escalations() == []


async def test_list_orders_pages_with_before_return_every_order_once_in_order(make_store):
    store = make_store()
    accounts = ["a1", "a2", "b1"]
    # a batch admits at one instant on some stores: ties broken by account, then client_order_id
    await store.admit([order(f"c{i}", account=accounts[i % 3]) for i in range(7)], approve)
    await store.admit([order("c1", account="b1"), order("z", account="a1")], approve)  # c1 again, in b1: another order
    await store.admit([order(f"d{i}", account=accounts[i % 3]) for i in range(5)], approve)
    everything = await store.list_orders(limit=1000)
    assert len(everything) == 14 == len({o.key for o in everything})
    triples = [(o.created_at, o.account, o.client_order_id) for o in everything]
    assert triples == sorted(triples, reverse=True)

    for patterns, size in ((None, 3), (None, 1), (["a*"], 2), (["b1", "a2"], 4)):
        expected = [o.key for o in everything if patterns is None or any(fnmatchcase(o.account, p) for p in patterns)]
        pages, before = [], None
        while True:
            page = await store.list_orders(limit=size, patterns=patterns, before=before)
            if not page:
                break
            assert len(page) <= size
            pages.extend(o.key for o in page)
            last = page[-1]
            before = (last.created_at, last.account, last.client_order_id)
        assert pages == expected, patterns
    # one account's pages
    last = everything[4]
    older = await store.list_orders(limit=1000, account="a1", before=(last.created_at, last.account, last.client_order_id))
    assert [o.key for o in older] == [o.key for o in everything[5:] if o.account == "a1"]


# -- ticks: judged in the store, versioned, read back by every replica --------------------


def by_sequence(stored, tick, now):
    """A judge: a sequence at or below the stored one is stale; anything else applies."""
    if stored is not None and tick.get("sequence") is not None and stored.get("sequence") is not None:
        if tick["sequence"] <= stored["sequence"]:
            return "stale"
    return TICK_APPLIED


def tick(symbol="SYM", last="100", sequence=None, exchange_time=None):
    t = {"symbol": symbol, "bid": str(Decimal(last) - 1), "ask": str(Decimal(last) + 1), "last": last}
    if sequence is not None:
        t["sequence"] = sequence
    if exchange_time is not None:
        t["exchange_time"] = exchange_time
    return t


async def test_apply_ticks_judges_each_tick_and_versions_the_applied_ones(make_store):
    store = make_store()
    assert await store.ticks_since(-1) in ((-1, []), (0, []))  # nothing yet
    seen = []

    def judge(stored, t, now):
        seen.append((None if stored is None else stored["last"], t["last"]))
        return by_sequence(stored, t, now)

    outcomes = await store.apply_ticks([tick("SYM", "100", 5, "2026-11-30T09:15:00.125Z"), tick("SYM", "101", 4),
                                        tick("OTHER", "50", 1), tick("SYM", "102", 6)], judge)  # fmt: skip
    assert outcomes == ["applied", "stale", "applied", "applied"]
    # each tick is judged against the last one applied before it (this batch's included)
    assert [s for s in seen if s[1] != "50"] == [(None, "100"), ("100", "101"), ("100", "102")]
    newest, ticks = await store.ticks_since(-1)
    assert sorted((t["symbol"], t["last"], t["sequence"]) for t in ticks) == [("OTHER", "50", 1), ("SYM", "102", 6)]
    versions = [t["version"] for t in ticks]  # ascending: the order they were applied in
    assert versions == sorted(set(versions)) and newest >= versions[-1] > 0
    version_of = {t["symbol"]: t["version"] for t in ticks}
    assert all(t["received_at"] > 0 for t in ticks)
    assert await store.ticks_since(newest) == (newest, [])  # nothing since

    stored = (await store.load_ticks())["SYM"]
    assert stored["exchange_time"] is None and stored["sequence"] == 6  # the whole tick is the applied one's
    assert await store.apply_ticks([tick("SYM", "90", 6)], by_sequence) == ["stale"]
    assert await store.ticks_since(newest) == (newest, [])  # a stale tick changes nothing
    assert await store.apply_ticks([tick("SYM", "103", 7, "2026-11-30T09:15:01Z")], by_sequence) == ["applied"]
    later, ticks = await make_store().ticks_since(newest)  # another replica reads the same
    assert [(t["symbol"], t["last"], t["exchange_time"]) for t in ticks] == [("SYM", "103", "2026-11-30T09:15:01Z")]
    assert ticks[0]["version"] > versions[-1] and later > newest
    assert (await store.load_ticks())["OTHER"]["version"] == version_of["OTHER"]  # untouched


async def test_a_tick_is_stored_as_the_judge_left_it(make_store):
    store = make_store()

    def judge(stored, t, now):  # e.g. the engine stamps the trading day and its start-of-day price
        t["day"], t["sod_price"] = "2026-11-30", stored["last"] if stored else t["last"]
        return TICK_APPLIED

    await store.apply_ticks([tick("SYM", "100", 1)], judge)
    await store.apply_ticks([tick("SYM", "101", 2)], judge)
    stored = (await make_store().load_ticks())["SYM"]
    assert (stored["last"], stored["day"], stored["sod_price"], stored["sequence"]) == ("101", "2026-11-30", "100", 2)
    stored = (await store.load_ticks())["SYM"]
    assert set(stored) >= {"symbol", "bid", "ask", "last", "received_at", "sequence", "exchange_time", "version"}


async def test_versions_increase_store_wide_across_symbols_and_handles(make_store):
    a, b = make_store(), make_store()
    versions = []
    for i in range(6):
        store = (a, b)[i % 2]
        await store.apply_ticks([tick(f"S{i % 3}", str(100 + i))], apply_all)
        versions.append((await store.load_ticks())[f"S{i % 3}"]["version"])
    assert versions == sorted(set(versions))


async def test_concurrent_appliers_of_one_symbol_never_regress_its_sequence(make_store):
    replicas = [make_store(), make_store()]
    sequences = list(range(1, 61))
    random.Random(7).shuffle(sequences)  # a redundant feed: the same sequences, out of order, from two sides
    observed = []
    done = asyncio.Event()

    async def feed(store, chunk):
        for n in chunk:
            [outcome] = await store.apply_ticks([tick("SYM", str(100 + n), n)], by_sequence)
            assert outcome in ("applied", "stale")

    async def watch(store):
        version = -1
        while not done.is_set():
            version, ticks = await store.ticks_since(version)
            observed.extend(t["sequence"] for t in ticks)
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch(make_store()))
    await asyncio.gather(*(feed(replicas[i % 2], sequences[i::4]) for i in range(4)))
    done.set()
    await watcher
    final = (await replicas[0].load_ticks())["SYM"]
    assert final["sequence"] == 60 and final["last"] == "160"
    observed.append(final["sequence"])
    assert observed == sorted(observed)  # what replicas read never goes back


# -- the audit log -------------------------------------------------------------------


async def test_the_audit_log_lists_newest_first_and_keeps_every_entry(make_store):
    store = make_store()
    assert await store.list_audit() == []
    for i in range(5):
        await store.append_audit("login", f"user{i}", "sidecar", {"n": i, "amount": Decimal("1.5")})
    entries = await make_store().list_audit()
    assert [e["detail"]["n"] for e in entries] == [4, 3, 2, 1, 0]
    assert entries[0] == {"at": entries[0]["at"], "kind": "login", "actor": "user4", "subject": "sidecar",
                          "detail": {"n": 4, "amount": "1.5"}}  # fmt: skip
    assert [e["detail"]["n"] for e in await store.list_audit(2)] == [4, 3]
    assert entries[0]["at"] >= entries[-1]["at"] > 0


async def test_account_state_changes_are_audited_and_a_resume_keeps_the_history(make_store):
    store = make_store()
    await store.set_account_state("desk-1", "HALTED", "runaway strategy", actor="ops:ann")
    await store.set_account_state("desk-2", "REDUCING", "", actor="ops:bob")
    await store.set_account_state("desk-1", None, "all clear", actor="ops:ann")  # resume: the configuration decides
    assert await store.get_account_state("desk-1") is None
    assert [s["account"] for s in await store.list_account_states()] == ["desk-2"]
    assert [(e["actor"], e["subject"], e["detail"]) for e in await store.list_audit()] == [
        ("ops:ann", "desk-1", {"state": "configured", "reason": "all clear"}),
        ("ops:bob", "desk-2", {"state": "REDUCING", "reason": ""}),
        ("ops:ann", "desk-1", {"state": "HALTED", "reason": "runaway strategy"}),
    ]  # fmt: skip
    assert {e["kind"] for e in await store.list_audit()} == {"account_state"}


# -- the execution lease, escalations raised outside admit, venue anomalies ------------------


async def test_admit_leases_pending_orders_and_respects_another_owners_live_lease(make_store):
    one, two = make_store(), make_store()
    started = time.time()
    [(record, existed)] = await one.admit([order("c1")], approve, lease=("e1", 30))
    assert not existed and record.lease_owner == "e1" and record.lease_until >= started + 30
    stored = await two.get_order("acct", "c1")
    assert (stored.lease_owner, stored.lease_until) == ("e1", record.lease_until)

    [(seen, existed)] = await two.admit([order("c1")], approve, lease=("e2", 30))  # e1's lease is live: it stays
    assert existed and (seen.lease_owner, seen.lease_until) == ("e1", record.lease_until)
    [(again, _)] = await one.admit([order("c1")], approve, lease=("e1", 60))  # its owner renews it
    assert again.lease_owner == "e1" and again.lease_until > record.lease_until
    [(plain, _)] = await two.admit([order("c1")], approve)  # no lease asked: returned as stored
    assert plain.lease_owner == "e1"

    [(short, _)] = await one.admit([order("c2")], approve, lease=("e1", 0))  # expires at once
    [(taken, existed)] = await two.admit([order("c2")], approve, lease=("e2", 30))
    assert existed and short.lease_owner == "e1" and taken.lease_owner == "e2"
    assert (await one.get_order("acct", "c2")).lease_owner == "e2"

    def deny(o, view):
        o.apply(OrderEvent.DENIED)

    [(denied, _)] = await one.admit([order("c3")], deny, lease=("e1", 30))  # only pending orders are leased
    assert denied.lease_owner is None and (await two.get_order("acct", "c3")).lease_owner is None
    # a recorded outcome keeps the stored lease (the caller's copy does not matter)
    record.lease_owner = None
    await two.record([fill(record, "10")])
    assert (await one.get_order("acct", "c1")).lease_owner == "e1"


async def test_an_escalation_raised_outside_admit_is_in_the_outbox_once(make_store):
    store = make_store()
    await store.raise_escalation("anomaly:acct/c1", "c1", {"kind": "venue_anomaly", "problem": "overfill"})
    await make_store().raise_escalation("anomaly:acct/c1", "c1", {"kind": "venue_anomaly", "problem": "again"})
    [entry] = await store.undelivered_escalations()
    assert (entry["key"], entry["client_order_id"], entry["payload"]) == (
        "anomaly:acct/c1", "c1", {"kind": "venue_anomaly", "problem": "overfill"})  # fmt: skip
    await store.mark_escalations_delivered(["anomaly:acct/c1"])
    assert await store.undelivered_escalations() == []
    await store.raise_escalation("anomaly:acct/c1", "c1", {"kind": "venue_anomaly"})  # delivered already: once
    assert await store.undelivered_escalations() == []


async def test_a_venue_anomaly_is_never_booked_and_holds_its_reservation(make_store):
    store = make_store()
    [(o, _)] = await store.admit([order("c1", quantity="10")], approve_reserving("2"))
    await store.record([fill(o, "4", "100", OrderState.PENDING, OrderEvent.PARTIALLY_FILLED)])
    o.apply(OrderEvent.VENUE_ANOMALY_DETECTED)
    o.reason = "venue_anomaly: filled more than the quantity"
    anomaly = Execution(o, OrderState.PARTIALLY_FILLED, Decimal(0), None, Decimal(0))
    await store.record([anomaly])
    assert anomaly.applied
    stored = await store.get_order("acct", "c1")
    assert stored.state is OrderState.VENUE_ANOMALY and stored.filled_quantity == Decimal(4)
    for handle in (store, make_store()):
        assert await handle.pending_orders() == []  # (on some stores the recovery scan: it must not release it)
        position = await handle.get_position("acct", "SYM")
        assert (position.quantity, position.pending_buy, position.pending_loss) == (4, 6, 12)
    assert len(await store.list_trades(client_order_id="c1")) == 1


async def test_realised_pnl_is_rounded_to_the_quantum_and_the_day_start_is_remembered(make_store):
    store = make_store()
    [(buy, _)] = await store.admit([order("b", quantity="3", price="100.001")], approve)
    ex = fill(buy, "3", "100.001")
    ex.day, ex.pnl_quantum = "2026-11-30", Decimal("0.01")
    await store.record([ex])
    position = await store.get_position("acct", "SYM")
    assert (position.sod_day, position.sod_quantity) == ("2026-11-30", 0)  # flat as the day began
    [(sell, _)] = await store.admit([order("s", quantity="3", side="sell", price="100.0077")], approve)
    ex = fill(sell, "3", "100.0077")
    ex.day, ex.pnl_quantum = "2026-12-01", Decimal("0.01")
    await store.record([ex])
    position = await make_store().get_position("acct", "SYM")
    assert position.realised_pnl == Decimal("0.02")  # 3 x 0.0067 = 0.0201, to the cent
    assert (position.sod_day, position.sod_quantity, position.sod_average) == ("2026-12-01", 3, Decimal("100.001"))
    assert await store.daily_realised("acct", "2026-12-01") == Decimal("0.02")


# -- reconciliation: open orders, leases taken by the loop, pending orders released ----------


def expire(o: Order) -> Execution:
    """What reconciliation records for a ``pending`` order the venue never saw."""
    o.apply(OrderEvent.EXPIRED)
    o.reason = "expired: never reached the venue"
    left = o.quantity - o.filled_quantity
    return Execution(o, OrderState.PENDING, Decimal(0), None, left if o.side.value == "buy" else -left)


async def test_open_orders_pages_oldest_first_through_open_states_only(make_store):
    store = make_store()
    accounts = ["a1", "a2", "b1"]
    # a batch admits at one instant on some stores: ties broken by account, then client_order_id
    first = [o for o, _ in await store.admit([order(f"c{i}", quantity="10", account=accounts[i % 3])
                                              for i in range(9)], approve)]  # fmt: skip
    later = [o for o, _ in await store.admit([order("c1", account="b1"), order("z", account="a1")], approve)]
    denied = order("d", account="a2")
    await store.admit([denied], lambda o, view: o.apply(OrderEvent.DENIED))
    c = {o.key: o for o in first + later}
    c["b1/c2"].apply(OrderEvent.ACCEPTED)  # resting at the venue: open
    await store.record([
        fill(c["a1/c0"], "10"),  # filled: closed
        fill(c["a2/c1"], "4", event=OrderEvent.PARTIALLY_FILLED),  # still open
        Execution(c["b1/c2"], OrderState.PENDING, Decimal(0), None, Decimal(0)),
        expire(c["a1/c3"]),  # expired: final
    ])  # fmt: skip
    o = c["a2/c4"]
    o.apply(OrderEvent.VENUE_ANOMALY_DETECTED)  # holds its reservation, but the venue may not change it
    await store.record([Execution(o, OrderState.PENDING, Decimal(0), None, Decimal(0))])
    o = c["b1/c5"]
    o.apply(OrderEvent.REJECTED)
    await store.record([Execution(o, OrderState.PENDING, Decimal(0), None, Decimal(10))])

    closed = {"a1/c0", "a1/c3", "a2/c4", "b1/c5", "a2/d"}
    everything = await store.list_orders(limit=1000)
    expected = sorted(((o.created_at, o.account, o.client_order_id) for o in everything if o.key not in closed))
    assert len(expected) == 7
    got = await store.open_orders()
    assert [(o.created_at, o.account, o.client_order_id) for o in got] == expected
    states = {o.key: o.state for o in got}
    assert states["a2/c1"] is OrderState.PARTIALLY_FILLED and got[[o.key for o in got].index("a2/c1")].filled_quantity == 4
    assert states["b1/c2"] is OrderState.ACCEPTED and states["b1/c1"] is OrderState.PENDING

    for size in (1, 2, 4, 7, 100):
        pages, after = [], None
        while True:
            page = await make_store().open_orders(size, after)
            assert len(page) <= size
            pages.extend((o.created_at, o.account, o.client_order_id) for o in page)
            if len(page) < size:
                break
            after = pages[-1]
        assert pages == expected, size
    assert await store.open_orders(10, expected[-1]) == []
    assert [(o.account, o.client_order_id) for o in await store.open_orders(10, expected[-2])] == [expected[-1][1:]]


async def test_take_leases_holds_against_another_loop_or_a_pending_orders_live_lease(make_store):
    store, other = make_store(), make_store()
    [(p, _)] = await store.admit([order("p")], approve, lease=("e1", 60))  # the order path is at the venue
    [(a, _)] = await store.admit([order("a")], approve, lease=("e1", 60))
    a.apply(OrderEvent.ACCEPTED)
    await store.record([Execution(a, OrderState.PENDING, Decimal(0), None, Decimal(0))])
    [p, a] = sorted(await store.open_orders(), key=lambda o: o.client_order_id != "p")
    assert (p.state, a.state) == (OrderState.PENDING, OrderState.ACCEPTED)
    assert p.lease_owner == a.lease_owner == "e1"

    # pending under the order path's live lease: held; accepted: that lease ended with pending
    started = time.time()
    taken = await other.take_leases([p, a], "e2:reconcile", 30)
    assert [(o.key, o.lease_owner) for o in taken] == [("acct/a", "e2:reconcile")]
    assert taken[0].state is OrderState.ACCEPTED and taken[0].lease_until >= started + 30
    stored = await store.get_order("acct", "a")
    assert (stored.lease_owner, stored.lease_until) == ("e2:reconcile", taken[0].lease_until)
    assert await store.take_leases([a], "e3:reconcile", 30) == []  # another loop's live lease
    renewed = await other.take_leases([a, a], "e2:reconcile", 60)  # its own: renewed (once)
    assert len(renewed) == 1 and renewed[0].lease_until > taken[0].lease_until
    await other.take_leases([a], "e2:reconcile", 0)  # handed back
    assert [o.lease_owner for o in await store.take_leases([a], "e3:reconcile", 30)] == ["e3:reconcile"]

    # a pending order whose lease expired is free; the order path then answers the loop's lease
    [(q, _)] = await store.admit([order("q")], approve, lease=("e1", 0))
    [q] = await other.take_leases([q], "e2:reconcile", 30)
    assert q.lease_owner == "e2:reconcile"
    [(seen, existed)] = await store.admit([order("q")], approve, lease=("e1", 60))
    assert existed and seen.lease_owner == "e2:reconcile"  # the order path must not submit it
    await other.take_leases([q], "e2:reconcile", 0)
    [(seen, _)] = await store.admit([order("q")], approve, lease=("e1", 60))
    assert seen.lease_owner == "e1"

    # a stale read (the store moved past it) or an unknown order is never taken
    stale = dataclasses.replace(a, filled_quantity=Decimal(1))
    assert await store.take_leases([stale], "e4:reconcile", 30) == []
    moved = dataclasses.replace(a, state=OrderState.PENDING)
    assert await store.take_leases([moved], "e4:reconcile", 0) == []
    assert await store.take_leases([order("nobody")], "e4:reconcile", 30) == []
    assert (await store.get_order("acct", "a")).lease_owner == "e3:reconcile"


async def test_an_expired_order_releases_its_reservation_and_is_no_longer_open(make_store):
    store = make_store()
    [(o, _)] = await store.admit([order("gone", quantity="10")], approve_reserving("2"))
    [(kept, _)] = await store.admit([order("kept", quantity="3")], approve_reserving("1"))
    position = await store.get_position("acct", "SYM")
    assert (position.pending_buy, position.pending_loss) == (13, 23)
    ex = expire(o)
    await store.record([ex])
    assert ex.applied
    again = expire(dataclasses.replace(o, state=OrderState.PENDING))
    await store.record([again])  # a replay (another replica's loop): releases nothing
    assert not again.applied
    stored = await store.get_order("acct", "gone")
    assert stored.state is OrderState.EXPIRED and stored.reason == "expired: never reached the venue"
    for handle in (store, make_store()):
        assert [x.client_order_id for x in await handle.pending_orders()] == ["kept"]  # (the recovery scan, on some)
        assert [x.client_order_id for x in await handle.open_orders()] == ["kept"]
        position = await handle.get_position("acct", "SYM")
        assert (position.quantity, position.pending_buy, position.pending_loss) == (0, 3, 3)
    assert await store.list_trades(client_order_id="gone") == []
    # an outcome for the order as it was before (a racing order path): compare-and-set, nothing booked
    late = fill(dataclasses.replace(stored, state=OrderState.PENDING, reason=None), "10")
    await make_store().record([late])
    assert not late.applied and (await store.get_order("acct", "gone")).state is OrderState.EXPIRED
    position = await store.get_position("acct", "SYM")
    assert (position.quantity, position.pending_buy, position.pending_loss) == (0, 3, 3)
    assert kept.state is OrderState.PENDING


async def test_the_readiness_probe_writes_a_heartbeat(make_store):
    store = make_store()
    await store.probe()  # raises StoreUnavailable when the store refuses writes (see tests/engine/test_disk_full.py)
    await store.probe()


# -- every read gives back what was written, field for field -------------------------------


def wire_order(coid: str, **fields) -> Order:
    wire, errors = validate_order({"client_order_id": coid, "account": "acct", "symbol": "SYM", "side": "buy",
                                   "quantity": "10", "order_type": "market", **fields})  # fmt: skip
    assert not errors
    return Order.from_wire(wire)


async def test_an_order_reads_back_field_for_field_from_every_read(make_store):
    store = make_store()
    limit = wire_order("lim", order_type="limit", limit_price="101.25", time_in_force="ioc", tag="desk-7", side="sell")
    limit.principal = "alice"
    market = wire_order("mkt")  # no limit price, no tag, time_in_force "day"
    results = await store.admit([limit, market], approve, lease=("e1", 30))
    results += await store.admit([wire_order("free")], approve)  # no lease asked: none held
    admitted = {o.client_order_id: dataclasses.asdict(o) for o, _ in results}
    assert (admitted["free"]["lease_owner"], admitted["free"]["lease_until"]) == (None, 0.0)
    assert admitted["mkt"]["limit_price"] is None and admitted["mkt"]["tag"] is None
    assert admitted["lim"]["fingerprint"] != admitted["mkt"]["fingerprint"]

    def fields(orders):
        return {o.client_order_id: dataclasses.asdict(o) for o in orders}

    other = make_store()
    for handle in (store, other):
        assert fields([await handle.get_order("acct", coid) for coid in admitted]) == admitted
        assert fields(await handle.list_orders()) == admitted
        assert fields(await handle.pending_orders()) == admitted
        assert fields(await handle.open_orders()) == admitted

    # an outcome: its state, fill, average price, venue id and reason read back as recorded
    [(lim, _)] = await store.admit([wire_order("lim")], approve)  # the stored record (a resend)
    ex = fill(lim, "4", "101.5", OrderState.PENDING, OrderEvent.PARTIALLY_FILLED)
    lim.venue_order_id, lim.reason = "v-77", "part"
    await store.record([ex])
    assert ex.applied and lim.updated_at >= lim.created_at
    recorded = dataclasses.asdict(lim)
    for handle in (store, make_store()):
        got = dataclasses.asdict(await handle.get_order("acct", "lim"))
        assert got == recorded
        assert (got["average_price"], got["filled_quantity"], got["venue_order_id"], got["reason"]) == (
            Decimal("101.5"), Decimal(4), "v-77", "part")  # fmt: skip
        assert fields(await handle.open_orders())["lim"] == recorded


async def test_a_tick_reads_back_field_for_field(make_store):
    store = make_store()
    written = {"symbol": "SYM", "bid": "99.5", "ask": "100.5", "last": "100", "sequence": 9,
               "exchange_time": "2026-11-30T09:15:00.125Z", "day": "2026-11-30", "sod_price": "98.75"}  # fmt: skip
    before = time.time()
    assert await store.apply_ticks([dict(written)], apply_all) == ["applied"]
    after = time.time()
    for handle in (store, make_store()):
        stored = (await handle.load_ticks())["SYM"]
        assert before <= stored["received_at"] <= after and stored["version"] > 0
        assert stored == {**written, "received_at": stored["received_at"], "version": stored["version"]}
        newest, ticks = await handle.ticks_since(-1)
        assert ticks == [stored] and newest == stored["version"]


async def test_a_trade_reads_back_field_for_field_newest_first(make_store):
    store = make_store()
    [(o, _)] = await store.admit([order("c1", side="sell")], approve)
    o.venue_order_id = "v-1"
    before = time.time()
    await store.record([fill(o, "4", "100.5", OrderState.PENDING, OrderEvent.PARTIALLY_FILLED)])
    await store.record([fill(o, "10", "101", OrderState.PARTIALLY_FILLED, OrderEvent.FILLED)])
    after = time.time()
    for handle in (store, make_store()):
        trades = await handle.list_trades()
        # a trade's id is unique per fill and names its order (how it numbers fills is the store's)
        ids = [t.trade_id for t in trades]
        assert len(set(ids)) == 2 and all(i.startswith("acct/c1#") for i in ids)
        assert [t.to_wire() for t in trades] == [
            {"trade_id": ids[0], "client_order_id": "c1", "account": "acct", "symbol": "SYM", "side": "sell",
             "quantity": "6", "price": "101", "venue_order_id": "v-1", "executed_at": trades[0].executed_at},
            {"trade_id": ids[1], "client_order_id": "c1", "account": "acct", "symbol": "SYM", "side": "sell",
             "quantity": "4", "price": "100.5", "venue_order_id": "v-1", "executed_at": trades[1].executed_at},
        ]  # fmt: skip
        assert after >= trades[0].executed_at >= trades[1].executed_at >= before
        assert [t.trade_id for t in await handle.list_trades(limit=1)] == ids[:1]  # the newest
        assert [t.trade_id for t in await handle.list_trades(1, "c1", "acct")] == ids[:1]


async def test_a_cursor_naming_no_order_still_pages_by_its_position(make_store):
    """A cursor comes back from the client: one whose account or id no order could have (too long,
    a slash, a newline, empty) is still only a position to page from, never a lookup that fails."""
    store = make_store()
    for i in range(3):
        await store.admit([order(f"c{i}")], approve)
    mid = (await store.list_orders())[1]  # c1
    for account, coid in (("acct", "x" * 400), ("acct/evil", "c1"), ("acct", "c1\nc0"), ("", ""), ("a" * 300, "c1")):
        page = await store.list_orders(10, before=(mid.created_at, account, coid))
        assert [o.client_order_id for o in page] == [
            o.client_order_id for o in await store.list_orders(-1) if (o.created_at, o.account, o.client_order_id) < (mid.created_at, account, coid)
        ], (account, coid)


async def test_a_cursor_naming_an_order_that_is_not_stored_pages_by_its_position(make_store):
    """A cursor whose account and id could be an order's but name none stored here (another
    store's, a typo) is a position like any other."""
    store = make_store()
    for i in range(3):
        await store.admit([order(f"c{i}")], approve)
    mid = (await store.list_orders())[1]  # c1
    for account, coid in (("acct", "c1-gone"), ("nobody", "c1"), ("acct", "c0")):
        bound = (mid.created_at, account, coid)
        page = await store.list_orders(10, before=bound)
        assert [o.client_order_id for o in page] == [
            o.client_order_id for o in await store.list_orders(-1) if (o.created_at, o.account, o.client_order_id) < bound
        ], (account, coid)


async def test_every_list_keeps_to_its_limit_and_its_order(make_store):
    store = make_store()
    for i in range(4):
        await store.admit([order(f"c{i}")], approve)
        await store.append_audit("note", "ops", f"s{i}", {"i": i})
        await store.raise_escalation(f"k{i}", f"c{i}", {"i": i})
    assert [o.client_order_id for o in await store.list_orders(limit=2)] == ["c3", "c2"]
    last = (await store.list_orders(limit=2))[-1]
    before = (last.created_at, last.account, last.client_order_id)
    assert [o.client_order_id for o in await store.list_orders(2, before=before)] == ["c1", "c0"]
    assert [o.client_order_id for o in await store.open_orders(3)] == ["c0", "c1", "c2"]
    assert [e["subject"] for e in await store.list_audit(3)] == ["s3", "s2", "s1"]
    assert [e["key"] for e in await store.undelivered_escalations(2)] == ["k0", "k1"]  # oldest first
    assert [e["key"] for e in await store.undelivered_escalations()] == ["k0", "k1", "k2", "k3"]
    await store.mark_escalations_delivered(["k0", "k2"])
    assert [e["key"] for e in await make_store().undelivered_escalations(1)] == ["k1"]


async def test_a_limit_of_zero_lists_no_order_or_trade_and_a_negative_one_lists_them_all(make_store):
    store = make_store()
    for i in range(3):
        [(o, _)] = await store.admit([order(f"c{i}")], approve)
        await store.record([fill(o, "10")])
    assert await store.list_orders(limit=0) == [] and await store.list_trades(limit=0) == []
    assert await store.list_trades(limit=0, account="acct") == []
    assert [o.client_order_id for o in await store.list_orders(limit=-1)] == ["c2", "c1", "c0"]
    assert [t.client_order_id for t in await store.list_trades(limit=-1)] == ["c2", "c1", "c0"]


async def test_a_limit_of_zero_lists_no_open_order_and_a_negative_one_lists_them_all(make_store):
    store = make_store()
    for i in range(3):
        await store.admit([order(f"c{i}")], approve)
    assert await store.open_orders(0) == []
    assert [o.client_order_id for o in await store.open_orders(-1)] == ["c0", "c1", "c2"]


async def test_positions_read_back_field_for_field_per_account(make_store):
    store = make_store()
    [(a, _)] = await store.admit([order("a", account="a1", symbol="S1", quantity="5")], approve)
    ex = fill(a, "5", "100.25")
    ex.day = "2026-11-30"
    await store.record([ex])
    await store.admit([order("b", account="a1", symbol="S2", side="sell", quantity="3")], approve_reserving("1.5"))
    await store.admit([order("c", account="a2", symbol="S1", quantity="2")], approve)
    for handle in (store, make_store()):
        everything = {(p.account, p.symbol): p for p in await handle.list_positions()}
        assert sorted(everything) == [("a1", "S1"), ("a1", "S2"), ("a2", "S1")]
        assert sorted(p.symbol for p in await handle.list_positions("a1")) == ["S1", "S2"]
        assert [(p.account, p.symbol) for p in await handle.list_positions("a2")] == [("a2", "S1")]
        for (account, symbol), p in everything.items():
            assert await handle.get_position(account, symbol) == p
        s1 = everything[("a1", "S1")]
        assert (s1.quantity, s1.average_price, s1.pending_buy, s1.sod_day, s1.sod_quantity) == (5, Decimal("100.25"), 0,
                                                                                               "2026-11-30", 0)  # fmt: skip
        s2 = everything[("a1", "S2")]
        assert (s2.quantity, s2.pending_sell, s2.pending_buy, s2.pending_loss) == (0, 3, 0, Decimal("4.5"))
        assert (everything[("a2", "S1")].pending_buy, everything[("a2", "S1")].realised_pnl) == (2, 0)
    assert await store.get_position("a3", "S1") == type(s1)("a3", "S1")  # never traded: flat


async def test_realised_pnl_of_a_day_adds_up_over_fills_and_stays_per_account(make_store):
    store = make_store()
    day = "2026-11-30"

    async def round_trip(coid: str, account: str, buy: str, sell: str) -> None:
        [(b, _)] = await store.admit([order(f"{coid}b", account=account)], approve, day)
        ex = fill(b, "10", buy)
        ex.day = day
        await store.record([ex])
        [(s, _)] = await store.admit([order(f"{coid}s", account=account, side="sell")], approve, day)
        ex = fill(s, "10", sell)
        ex.day = day
        await store.record([ex])

    await round_trip("x", "acct", "100", "103")  # +30
    await round_trip("y", "acct", "100", "99")  # -10
    await round_trip("z", "other", "100", "90")  # -100, another account
    assert await store.daily_realised("acct", day) == Decimal(20)
    assert await make_store().daily_realised("other", day) == Decimal(-100)
    seen = []
    await store.admit([order("n", account="acct")], lambda o, v: seen.append(v.realised_today) or approve(o, v), day)
    assert seen == [Decimal(20)]


async def test_one_record_batch_applies_each_outcome_against_the_state_the_one_before_it_left(make_store):
    store = make_store()
    [(o, _), (stale, _)] = await store.admit([order("c1"), order("c2")], approve)
    done = fill(stale, "10", "100")
    await store.record([done])
    replay = Execution(stale, OrderState.PENDING, Decimal(10), Decimal(100), Decimal(10))  # not applicable any more
    partial = fill(o, "4", "100", OrderState.PENDING, OrderEvent.PARTIALLY_FILLED)
    later = dataclasses.replace(o)  # the order as the next outcome finds it
    rest = fill(later, "10", "103", OrderState.PARTIALLY_FILLED, OrderEvent.FILLED)  # expects what `partial` left
    await store.record([replay, partial, rest])  # a lost compare-and-set does not stop the batch
    assert (replay.applied, partial.applied, rest.applied) == (False, True, True)
    stored = await store.get_order("acct", "c1")
    assert stored.state is OrderState.FILLED and stored.filled_quantity == 10
    assert sorted(t.quantity for t in await store.list_trades(client_order_id="c1")) == [Decimal(4), Decimal(6)]


async def test_only_a_positive_fill_with_a_price_is_a_trade_and_a_fraction_is_one(make_store):
    store = make_store()
    [(o, _)] = await store.admit([order("c1", quantity="1")], approve)
    o.apply(OrderEvent.ACCEPTED)
    await store.record([Execution(o, OrderState.PENDING, Decimal(0), Decimal(100), Decimal(0))])  # a price, nothing filled
    assert await store.list_trades() == []
    await store.record([fill(o, "0.5", "100", OrderState.ACCEPTED, OrderEvent.PARTIALLY_FILLED)])
    [trade] = await store.list_trades()
    assert trade.quantity == Decimal("0.5") and (await store.get_position("acct", "SYM")).quantity == Decimal("0.5")


async def test_the_realised_pnl_of_several_fills_in_one_record_batch_adds_up(make_store):
    store = make_store()
    day = "2026-11-30"
    buys = [o for o, _ in await store.admit([order("b1"), order("b2", symbol="S2")], approve, day)]
    await store.record([fill(buys[0], "10", "100"), fill(buys[1], "10", "50")])
    sells = [o for o, _ in await store.admit([order("s1", side="sell"), order("s2", side="sell", symbol="S2")], approve, day)]
    closing = [fill(sells[0], "10", "104"), fill(sells[1], "10", "53")]  # +40 and +30, recorded together
    for ex in closing:
        ex.day = day
    await store.record(closing)
    assert await store.daily_realised("acct", day) == Decimal(70)


async def test_the_judge_is_given_the_batchs_time_and_the_tick_is_stamped_with_it(make_store):
    store = make_store()
    seen = []

    def judge(stored, t, now):
        seen.append(now)
        return TICK_APPLIED

    before = time.time()
    await store.apply_ticks([tick("SYM", "100"), tick("OTHER", "50")], judge)
    after = time.time()
    assert len(seen) == 2 and all(before <= now <= after for now in seen)
    assert {t["received_at"] for t in (await store.load_ticks()).values()} <= set(seen)


async def test_decide_sees_the_batchs_time_and_an_escalations_decimals_reach_the_outbox_as_text(make_store):
    store = make_store()
    seen = []

    def escalate(o, view):
        seen.append(view.now)
        o.apply(OrderEvent.ESCALATED)
        return {"why": "max_position_exceeded", "limit": Decimal("12.50")}

    before = time.time()
    [(o, _)] = await store.admit([order("esc")], escalate)
    after = time.time()
    assert len(seen) == 1 and before <= seen[0] <= after and o.created_at == seen[0]
    [entry] = await make_store().undelivered_escalations()
    assert entry["payload"] == {"why": "max_position_exceeded", "limit": "12.50"}


async def test_account_states_and_escalations_read_back_whole(make_store):
    store = make_store()
    before = time.time()
    await store.set_account_state("desk-1", "HALTED", "runaway", actor="ops")
    await store.raise_escalation("k1", "c1", {"why": "anomaly", "amount": Decimal("1.5")})
    after = time.time()
    state = await store.get_account_state("desk-1")
    assert state == {"account": "desk-1", "state": "HALTED", "reason": "runaway", "at": state["at"]}
    assert before <= state["at"] <= after
    assert await make_store().list_account_states() == [state]
    [entry] = await store.undelivered_escalations()
    assert entry == {"key": "k1", "client_order_id": "c1", "payload": {"why": "anomaly", "amount": "1.5"},
                     "created_at": entry["created_at"]}  # fmt: skip
    assert before <= entry["created_at"] <= after


async def test_lists_without_a_limit_return_the_newest_100(make_store):
    store = make_store()
    results = await store.admit([order(f"c{i:03d}", quantity="1") for i in range(101)], approve)
    await store.record([fill(o, "1") for o, _ in results])
    for i in range(101):
        await store.append_audit("note", "ops", f"s{i:03d}", {})
        await store.raise_escalation(f"k{i:03d}", f"c{i:03d}", {})
    assert len(await store.list_orders()) == 100 and len(await store.list_trades()) == 100
    assert [e["subject"] for e in await store.list_audit()][-1] == "s001"  # the oldest one is left out
    assert [e["key"] for e in await store.undelivered_escalations()][-1] == "k099"  # oldest first: the newest is left out


async def test_take_leases_goes_past_orders_it_cannot_take_and_never_takes_a_stale_state(make_store):
    store = make_store()
    [(p, _), (q, _)] = await store.admit([order("p"), order("q")], approve)
    stale = dataclasses.replace(p, state=OrderState.ACCEPTED)  # the store has it pending: this read is stale
    taken = await store.take_leases([order("nobody"), stale, q], "e1:reconcile", 30)
    assert [o.client_order_id for o in taken] == ["q"]
    assert (await store.get_order("acct", "p")).lease_owner is None


async def test_a_halt_set_by_decide_is_seen_by_the_next_order_of_the_same_batch(make_store):
    store = make_store()
    states = {}  # by order: accounts may be decided concurrently, an account's orders in turn

    def decide(o, view):
        states[o.client_order_id] = view.state
        if o.client_order_id == "first":
            view.halt = "max_daily_loss_exceeded"
            o.apply(OrderEvent.DENIED)
            return None
        return approve(o, view)

    await store.admit([order("first"), order("second"), order("third", account="other")], decide)
    assert states == {"first": None, "second": "HALTED", "third": None}  # the account's later orders see it; another account does not


# -- rules a mutation run of the Couchbase store found untested (docs/testing.md, fourth pass) --


async def test_the_realised_pnl_of_a_day_without_fills_is_a_decimal_zero(make_store):
    store = make_store()
    await store.admit([order("c1")], approve)  # an account with a position doc, nothing realised
    for account in ("acct", "nobody"):
        realised = await store.daily_realised(account, "2026-11-30")
        assert isinstance(realised, Decimal) and realised == 0, account


async def test_account_states_are_listed_by_account_whatever_order_they_were_set_in(make_store):
    store = make_store()
    for account in ("desk-3", "desk-1", "desk-2"):
        await store.set_account_state(account, "HALTED", "runaway", actor="ops")
    assert [s["account"] for s in await make_store().list_account_states()] == ["desk-1", "desk-2", "desk-3"]


async def test_setting_an_accounts_state_keeps_its_positions_and_its_order_rate(make_store):
    store = make_store()
    [(a, _)] = await store.admit([order("a", symbol="AAA")], approve)
    [(s, _)] = await store.admit([order("s", symbol="AAA", side="sell")], approve)
    await store.record([fill(a, "10", "100"), fill(s, "10", "104")])
    day = (await store.get_position("acct", "AAA")).sod_day
    assert await store.daily_realised("acct", day) == 40
    await store.set_account_state("acct", "HALTED", "ops", actor="ops")
    await store.set_account_state("acct", None, "resumed", actor="ops")
    assert await store.daily_realised("acct", day) == 40  # the account still lists AAA
    seen = []

    def decide(o, view):
        seen.append((sorted(view.positions), view.realised_today, view.orders_last_minute))
        return approve(o, view)

    await store.admit([order("b", symbol="BBB")], decide, day=day)
    assert seen == [(["AAA", "BBB"], Decimal(40), 2)]  # every position, today's P&L, the two earlier orders


async def test_marking_an_escalation_never_raised_as_delivered_changes_nothing(make_store):
    store = make_store()
    await store.raise_escalation("k1", "c1", {})
    await store.mark_escalations_delivered(["never-raised", "k1"])
    assert await store.undelivered_escalations() == []
    await store.raise_escalation("k2", "c2", {})
    assert [e["key"] for e in await store.undelivered_escalations()] == ["k2"]


async def test_take_leases_takes_every_order_of_a_long_list_once(make_store):
    store = make_store()
    admitted = [o for o, _ in await store.admit([order(f"c{i:03d}", quantity="1") for i in range(70)], approve)]
    taken = await store.take_leases(admitted, "e1:reconcile", 30)  # more than one batch of concurrent takes
    assert sorted(o.client_order_id for o in taken) == [f"c{i:03d}" for i in range(70)]
    assert all(o.lease_owner == "e1:reconcile" for o in taken)


async def test_a_tick_the_judge_refuses_for_a_symbol_never_seen_stores_nothing(make_store):
    store = make_store()
    assert await store.apply_ticks([tick("NEW", "100")], lambda stored, t, now: "stale") == ["stale"]
    assert "NEW" not in await store.load_ticks()
    assert await store.apply_ticks([tick("NEW", "101")], apply_all) == ["applied"]
    assert (await make_store().load_ticks())["NEW"]["last"] == "101"


class _Clock:
    """A stand-in for a store module's ``time``: ``time()`` is ``now``."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    """Every store's clock, stopped at 5,000 s (each store reads ``time.time()`` of its module)."""
    from wojak.engine.store import _couchbase, _sqlite

    stopped = _Clock(5_000.0)
    for module in (_sqlite, _couchbase):
        monkeypatch.setattr(module, "time", stopped)
    return stopped


async def test_a_lease_is_free_from_the_instant_it_ends_on_both_paths(make_store, clock):
    store = make_store()
    [(o, _)] = await store.admit([order("c1")], approve, lease=("e1", 10))
    clock.now = 5_009.999
    [(held, _)] = await store.admit([order("c1")], approve, lease=("e2", 10))
    assert held.lease_owner == "e1"
    clock.now = 5_010.0  # lease_until: ended
    [(taken, _)] = await store.admit([order("c1")], approve, lease=("e2", 10))
    assert (taken.lease_owner, taken.lease_until) == ("e2", 5_020.0)
    clock.now = 5_019.999
    assert await store.take_leases([taken], "e3:reconcile", 5) == []  # a pending order's live lease
    clock.now = 5_020.0
    [mine] = await store.take_leases([taken], "e3:reconcile", 5)
    assert (mine.lease_owner, mine.lease_until) == ("e3:reconcile", 5_025.0)


async def test_orders_admitted_at_one_instant_page_by_account_then_client_order_id(make_store, clock):
    store = make_store()
    # the account and the client_order_id sort apart: a bound mixing them up pages wrongly
    await store.admit([order("z", account="a1"), order("a", account="b1"), order("m", account="a2")], approve)
    expected = [(5_000.0, "a1", "z"), (5_000.0, "a2", "m"), (5_000.0, "b1", "a")]
    assert [(o.created_at, o.account, o.client_order_id) for o in await store.open_orders()] == expected
    assert [(o.account, o.client_order_id) for o in await store.open_orders(10, expected[0])] == [("a2", "m"), ("b1", "a")]
    assert [(o.account, o.client_order_id) for o in await store.open_orders(10, expected[1])] == [("b1", "a")]
    newest = [(o.created_at, o.account, o.client_order_id) for o in await store.list_orders()]
    assert newest == expected[::-1]
    assert [(o.account, o.client_order_id) for o in await store.list_orders(before=expected[2])] == [("a2", "m"), ("a1", "z")]
    assert [(o.account, o.client_order_id) for o in await store.list_orders(before=expected[1])] == [("a1", "z")]


async def test_a_new_store_lists_nothing_and_reads_nothing(make_store):
    store = make_store()
    assert await store.pending_orders() == [] and await store.open_orders() == []
    assert await store.undelivered_escalations() == [] and await store.list_account_states() == []
    assert await store.list_orders() == [] and await store.list_trades() == [] and await store.list_positions() == []
    assert await store.list_audit() == [] and await store.load_ticks() == {}
    assert await store.get_order("acct", "c1") is None and await store.get_account_state("acct") is None
    assert await store.take_leases([order("c1")], "e1:reconcile", 30) == []


async def test_a_halt_set_by_decide_reads_back_whole_with_the_time_it_was_set(make_store):
    store = make_store()

    def halt(o, view):
        o.apply(OrderEvent.DENIED)
        view.halt = "max_daily_loss_exceeded"

    before = time.time()
    await store.admit([order("a")], halt)
    after = time.time()
    stored = await make_store().get_account_state("acct")
    assert stored == {"account": "acct", "state": "HALTED", "reason": "max_daily_loss_exceeded", "at": stored["at"]}
    assert before <= stored["at"] <= after
    assert await store.list_account_states() == [stored]


async def test_ids_with_every_character_an_id_may_hold_work_throughout(make_store):
    """ID_PATTERN allows `.`, `:`, `-` and `_` in accounts and client_order_ids: a store that
    builds document keys or paths from them must escape them (a `.` is a path separator)."""
    store = make_store()
    account = "desk.1:a-b_c"

    def decide(o, view):
        o.apply(OrderEvent.ESCALATED if o.client_order_id.startswith("e") else OrderEvent.SUBMITTED)
        return {"why": "review"} if o.client_order_id.startswith("e") else None

    admitted = await store.admit([order("o.1:x-y_z", account=account), order("o.2", account=account),
                                  order("e.1", account=account)], decide)  # fmt: skip
    [first, second, _] = [o for o, _ in admitted]
    assert sorted(o.client_order_id for o in await make_store().pending_orders()) == ["o.1:x-y_z", "o.2"]
    assert sorted(o.client_order_id for o in await store.open_orders()) == ["o.1:x-y_z", "o.2"]
    assert (await store.get_position(account, "SYM")).pending_buy == 20
    await store.record([fill(first, "10"), fill(second, "4", event=OrderEvent.PARTIALLY_FILLED)])
    assert [o.client_order_id for o in await make_store().pending_orders()] == []
    assert [o.client_order_id for o in await store.open_orders()] == ["o.2"]
    position = await store.get_position(account, "SYM")
    assert (position.quantity, position.pending_buy) == (14, 6)
    trades = await store.list_trades(client_order_id="o.1:x-y_z", account=account)
    assert [(t.account, t.client_order_id, t.quantity) for t in trades] == [(account, "o.1:x-y_z", 10)]
    [esc] = await store.undelivered_escalations()
    assert (esc["key"], esc["client_order_id"]) == (f"esc:{account}/e.1", "e.1")
    await store.mark_escalations_delivered([esc["key"]])
    assert await make_store().undelivered_escalations() == []


async def test_escalations_under_distinct_keys_are_distinct_entries_whatever_they_hold(make_store):
    store = make_store()
    keys = ["a.b", "a%2Eb", "a%252Eb", "a[0]", "a%5B0%5D", "a`b"]
    for i, key in enumerate(keys):
        await store.raise_escalation(key, f"c{i}", {"n": i})
    listed = await make_store().undelivered_escalations()
    assert sorted((e["key"], e["payload"]["n"]) for e in listed) == sorted((k, i) for i, k in enumerate(keys))
    await store.mark_escalations_delivered(["a.b"])
    assert sorted(e["key"] for e in await store.undelivered_escalations()) == sorted(keys[1:])


async def test_a_position_holding_only_a_reservation_has_no_day_start_yet(make_store):
    store = make_store()
    await store.admit([order("c1")], approve)
    position = await make_store().get_position("acct", "SYM")
    assert (position.sod_day, position.sod_quantity, position.sod_average) == ("", 0, 0)
    assert [(p.symbol, p.sod_day) for p in await store.list_positions("acct")] == [("SYM", "")]


async def test_positions_of_accounts_and_symbols_that_share_a_colon_stay_apart(make_store):
    """`:` may end an account and begin a symbol: (a, :x) and (a:, x) are two positions."""
    store = make_store()
    await store.admit([order("c1", account="a", symbol=":x", quantity="10"), order("c2", account="a:", symbol="x",
                                                                                   quantity="3")], approve)  # fmt: skip
    assert (await make_store().get_position("a", ":x")).pending_buy == 10
    assert (await store.get_position("a:", "x")).pending_buy == 3
