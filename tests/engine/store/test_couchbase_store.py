"""Couchbase-specific store tests: replicas racing on one limit, crashes between writes,
ambiguous writes, and the ``couchbase://`` URL. The contract suite covers the rest."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
import types
import uuid
from datetime import timedelta
from decimal import Decimal
from unittest import mock
from urllib.parse import urlparse

import pytest

from tests.engine.store.test_store_contract import apply_all, approve, by_sequence, fill, order, tick
from wojak.engine.domain import Order, OrderEvent, OrderState
from wojak.engine.store import Execution, StoreUnavailable, open_store
from wojak.engine.store._couchbase import CouchbaseStore, from_url, resolve_ambiguous
from wojak.engine.store._couchbase_kv import AMBIGUOUS_ATTEMPTS, CAS_ATTEMPTS, backoff
from wojak.errors import ConfigError


@pytest.fixture
async def handles(request):
    """``handles(n)``: n independent stores ("replicas") on one fresh key prefix."""
    service = request.getfixturevalue("couchbase_service")
    prefix = f"cbt-{uuid.uuid4().hex[:12]}::"
    opened: list[CouchbaseStore] = []

    def make(n: int = 1, **kw) -> list[CouchbaseStore]:
        stores = [CouchbaseStore(service.url, service.username, service.password, service.bucket, prefix=prefix, **kw)
                  for _ in range(n)]  # fmt: skip
        opened.extend(stores)
        return stores

    yield make
    for store in opened:
        await store.close()


def hold_tick_versions(store: CouchbaseStore) -> tuple[asyncio.Event, asyncio.Event]:
    """``store`` stops before taking a tick's version (its tick written, not yet published):
    ``paused`` is set when it gets there, and it goes on once ``resume`` is set."""
    paused, resume = asyncio.Event(), asyncio.Event()
    real_next_seq = store._next_seq

    async def slow_next_seq(key="idx::seq"):
        if key == "ticks::version" and not resume.is_set():
            paused.set()
            await resume.wait()
        return await real_next_seq(key)

    store._next_seq = slow_next_seq  # type: ignore[method-assign]
    return paused, resume


class Crash(Exception):
    """Stands for the process dying between two writes."""


def limit_decide(limit: Decimal):
    def decide(o: Order, view):
        if view.position(o.symbol).worst_case(o.signed_quantity) > limit:
            o.apply(OrderEvent.DENIED)
            o.reason = "max_position"
        else:
            o.apply(OrderEvent.SUBMITTED)
        return None

    return decide


@pytest.mark.couchbase
async def test_two_replicas_admitting_concurrently_never_exceed_the_limit(handles):
    a, b = handles(2)
    limit = Decimal(30)
    decide = limit_decide(limit)

    async def one(store, i):
        return (await store.admit([order(f"r{i}", quantity="1")], decide))[0][0]

    results = await asyncio.gather(*(one(a if i % 2 else b, i) for i in range(100)))
    admitted = [o for o in results if o.state is OrderState.PENDING]
    assert len(admitted) == 30 and sum(o.state is OrderState.DENIED for o in results) == 70
    position = await a.get_position("acct", "SYM")
    assert position.pending_buy == limit and position.quantity == 0

    # fills from both replicas at once, racing further admits: still within the limit
    fills = [store.record([fill(o, "1")]) for store, o in zip([a, b] * 15, admitted[:10])]
    more = [one(b if i % 2 else a, i) for i in range(100, 120)]
    extra = await asyncio.gather(*fills, *more)
    assert all(o.state is OrderState.DENIED for o in extra[10:])
    position = await b.get_position("acct", "SYM")
    assert position.quantity == Decimal(10) and position.pending_buy == Decimal(20)
    assert position.quantity + position.pending_buy <= limit
    assert len(await a.list_trades(limit=1000)) == 10
    assert len(await b.pending_orders()) == 20


@pytest.mark.couchbase
async def test_the_same_order_from_two_replicas_is_admitted_and_reserved_once(handles):
    a, b = handles(2)
    results = await asyncio.gather(*(s.admit([order("same")], approve) for s in (a, b, a, b)))
    assert sorted(existed for [(_, existed)] in results) == [False, True, True, True]
    assert (await a.get_position("acct", "SYM")).pending_buy == Decimal(10)


@pytest.mark.couchbase
async def test_a_crash_between_reservation_and_order_insert_does_not_double_reserve(handles, monkeypatch):
    [crashing] = handles(1)
    real_insert = CouchbaseStore._insert

    async def insert(self, key, doc):
        if key.startswith("order::"):
            raise Crash
        return await real_insert(self, key, doc)

    monkeypatch.setattr(CouchbaseStore, "_insert", insert)
    with pytest.raises(Crash):
        await crashing.admit([order("c1")], approve)
    monkeypatch.undo()
    [again] = handles(1)
    assert (await again.get_position("acct", "SYM")).pending_buy == Decimal(10)  # conservative meanwhile
    seen = []
    [(record, existed)] = await again.admit(
        [order("c1")], lambda o, v: seen.append(v.position(o.symbol).pending_buy) or approve(o, v)
    )
    assert not existed and record.state is OrderState.PENDING
    assert seen == [0]  # decide does not count the crashed attempt's reservation of the same order
    assert (await again.get_position("acct", "SYM")).pending_buy == Decimal(10)


@pytest.mark.couchbase
async def test_a_denied_retry_after_a_crash_releases_the_stale_reservation(handles, monkeypatch):
    [crashing] = handles(1)
    real_insert = CouchbaseStore._insert

    async def insert(self, key, doc):
        if key.startswith("order::"):
            raise Crash
        return await real_insert(self, key, doc)

    monkeypatch.setattr(CouchbaseStore, "_insert", insert)
    with pytest.raises(Crash):
        await crashing.admit([order("c1")], approve)
    monkeypatch.undo()
    [again] = handles(1)
    [(record, _)] = await again.admit([order("c1")], limit_decide(Decimal(5)))
    assert record.state is OrderState.DENIED
    assert (await again.get_position("acct", "SYM")).pending_buy == 0
    assert await again.pending_orders() == []


@pytest.mark.couchbase
async def test_orphan_reservations_are_dropped_by_the_recovery_scan_once_old(handles, monkeypatch):
    [crashing] = handles(1)
    real_insert = CouchbaseStore._insert

    async def insert(self, key, doc):
        if key.startswith("order::"):
            raise Crash
        return await real_insert(self, key, doc)

    monkeypatch.setattr(CouchbaseStore, "_insert", insert)
    with pytest.raises(Crash):
        await crashing.admit([order("gone")], approve)
    monkeypatch.undo()
    [young] = handles(1)
    assert await young.pending_orders() == []
    assert (await young.get_position("acct", "SYM")).pending_buy == Decimal(10)  # may still be in flight
    [old] = handles(1, orphan_after=0.0)
    await asyncio.sleep(0.01)
    assert await old.pending_orders() == []
    assert (await old.get_position("acct", "SYM")).pending_buy == 0


@pytest.mark.couchbase
@pytest.mark.parametrize("crash_in", ["trade", "position", "clear"])
async def test_a_crash_after_the_order_commit_is_rolled_forward_exactly_once(handles, monkeypatch, crash_in):
    [store] = handles(1)
    [(o, _)] = await store.admit([order()], approve)
    real_insert, real_cas_loop = CouchbaseStore._insert, CouchbaseStore._cas_loop

    async def insert(self, key, doc):
        if crash_in == "trade" and key.startswith("trade::"):
            raise Crash
        return await real_insert(self, key, doc)

    async def cas_loop(self, key, change):
        await real_cas_loop(self, key, change)
        if (crash_in == "position" and key.startswith("pos::")) or (crash_in == "clear" and key.startswith("order::")):
            raise Crash  # the write landed; the process died right after

    monkeypatch.setattr(CouchbaseStore, "_insert", insert)
    monkeypatch.setattr(CouchbaseStore, "_cas_loop", cas_loop)
    execution = fill(o, "10", "101")
    with pytest.raises(Crash):
        await store.record([execution])
    monkeypatch.undo()

    [restarted] = handles(1)
    assert (await restarted.get_order("acct", "c1")).state is OrderState.FILLED  # committed
    assert await restarted.pending_orders() == []  # the recovery scan rolls the effect forward
    for _ in range(2):  # a replayed outcome is refused, and applies nothing twice
        replay = Execution(o, OrderState.PENDING, Decimal(10), Decimal(101), Decimal(10))
        await restarted.record([replay])
        assert not replay.applied
        assert await restarted.pending_orders() == []
    position = await restarted.get_position("acct", "SYM")
    assert position.quantity == Decimal(10) and position.pending_buy == 0 and position.average_price == Decimal(101)
    trades = await restarted.list_trades()
    assert [(t.trade_id, t.quantity) for t in trades] == [("acct/c1#1", Decimal(10))]


@pytest.mark.couchbase
async def test_a_crash_after_the_position_write_before_the_outcome_is_cleared_applies_the_fill_once(handles, monkeypatch):
    """The roll-forward writes the position, then clears ``fx`` from the order: a crash between the
    two leaves an outcome that looks unapplied on the order but is applied on the position (its
    marker carries the outcome's version). Rolled forward again, it must change nothing."""
    [store] = handles(1)
    [(o, _)] = await store.admit([order()], approve)
    real_put = CouchbaseStore._put

    async def put(self, key, doc, cas):
        written = await real_put(self, key, doc, cas)
        if key.startswith("pos::"):
            raise Crash  # the position write landed; the process died right after
        return written

    monkeypatch.setattr(CouchbaseStore, "_put", put)
    with pytest.raises(Crash):
        await store.record([fill(o, "10", "101")])
    monkeypatch.undo()

    [restarted] = handles(1)
    assert (await restarted.get_order("acct", "c1")).state is OrderState.FILLED
    assert await restarted.pending_orders() == []  # the recovery scan finds fx and rolls it forward again
    position = await restarted.get_position("acct", "SYM")
    assert position.quantity == Decimal(10) and position.average_price == Decimal(101) and position.pending_buy == 0
    assert [(t.trade_id, t.quantity) for t in await restarted.list_trades()] == [("acct/c1#1", Decimal(10))]
    assert await restarted.open_orders(10) == []  # finished: the filled order is no longer open


@pytest.mark.couchbase
async def test_the_next_outcome_of_an_order_whose_partial_fill_crashed_before_its_clear_is_recorded(handles, monkeypatch):
    """A partial fill's roll-forward wrote the position and died before clearing ``fx``: found
    again (already applied on the position), it must still be cleared, or the order's next
    outcome can never be committed over it."""
    [store] = handles(1)
    [(o, _)] = await store.admit([order()], approve)
    real_put = CouchbaseStore._put

    async def put(self, key, doc, cas):
        written = await real_put(self, key, doc, cas)
        if key.startswith("pos::"):
            raise Crash  # the position write landed; the process died right after
        return written

    monkeypatch.setattr(CouchbaseStore, "_put", put)
    with pytest.raises(Crash):
        await store.record([fill(o, "4", "100", OrderState.PENDING, OrderEvent.PARTIALLY_FILLED)])
    monkeypatch.undo()

    [restarted] = handles(1)
    assert await restarted.pending_orders() == []
    done = fill(o, "10", "101", OrderState.PARTIALLY_FILLED, OrderEvent.FILLED)
    await asyncio.wait_for(restarted.record([done]), 60)
    assert done.applied
    position = await restarted.get_position("acct", "SYM")
    assert position.quantity == Decimal(10) and position.pending_buy == 0
    assert sorted(t.quantity for t in await restarted.list_trades(client_order_id="c1")) == [Decimal(4), Decimal(6)]


@pytest.mark.couchbase
async def test_a_stale_roll_forward_of_an_earlier_outcome_never_clears_the_orders_newer_one(handles, monkeypatch):
    """A writer that read an outcome (``fx``) and stalled rolls it forward after it was applied and
    the order's next outcome committed: it must leave that newer outcome on the order, or the
    newer one's effects (the last fill) are never applied."""
    [store] = handles(1)
    [(o, _)] = await store.admit([order()], approve)
    okey = store._order_key("acct/c1")

    async def crash(self, doc):
        raise Crash  # the outcome is committed on the order doc; the process died before its effects

    monkeypatch.setattr(CouchbaseStore, "_roll_forward", crash)
    with pytest.raises(Crash):
        await store.record([fill(o, "4", "100", OrderState.PENDING, OrderEvent.PARTIALLY_FILLED)])
    stale = await store._get_doc(okey)  # what the stalled writer read: the first outcome
    monkeypatch.undo()
    [restarted] = handles(1)
    assert await restarted.pending_orders() == []  # the first outcome applied and cleared
    monkeypatch.setattr(CouchbaseStore, "_roll_forward", crash)
    with pytest.raises(Crash):
        await restarted.record([fill(o, "10", "101", OrderState.PARTIALLY_FILLED, OrderEvent.FILLED)])
    monkeypatch.undo()

    await store._roll_forward(stale)  # the stalled writer comes back
    assert await restarted.pending_orders() == []  # the second outcome is still there to finish
    position = await restarted.get_position("acct", "SYM")
    assert position.quantity == Decimal(10) and position.pending_buy == 0


@pytest.mark.couchbase
@pytest.mark.parametrize("filled", ["4", "10"])
async def test_a_resend_that_finds_its_order_admitted_and_filled_meanwhile_answers_that_order(handles, filled):
    """Replica B looks for the order (absent), then stalls; replica A admits the same order and
    records a fill (partial or whole). B goes on: the position's marker for the order says an
    outcome is recorded, so B answers A's order as it stands and changes no reservation: the
    part still open stays reserved once, the filled part not at all."""
    a, b = handles(2)
    stalled, go_on = asyncio.Event(), asyncio.Event()
    real_next_seq = b._next_seq

    async def next_seq(key="idx::seq"):
        if key == "idx::seq" and not go_on.is_set():
            stalled.set()
            await go_on.wait()
        return await real_next_seq(key)

    b._next_seq = next_seq  # type: ignore[method-assign]
    resend = asyncio.create_task(b.admit([order()], approve))
    await asyncio.wait_for(stalled.wait(), 30)
    [(o, _)] = await a.admit([order()], approve)
    event = OrderEvent.FILLED if filled == "10" else OrderEvent.PARTIALLY_FILLED
    await a.record([fill(o, filled, "101", OrderState.PENDING, event)])
    go_on.set()
    [(answered, existed)] = await asyncio.wait_for(resend, 30)
    assert existed and answered.state is o.state and answered.filled_quantity == Decimal(filled)
    position = await a.get_position("acct", "SYM")
    assert position.quantity == Decimal(filled) and position.pending_buy == Decimal(10) - Decimal(filled)
    if filled == "4":  # and the rest still fills once
        done = fill(o, "10", "101", OrderState.PARTIALLY_FILLED, OrderEvent.FILLED)
        await b.record([done])
        position = await a.get_position("acct", "SYM")
        assert done.applied and position.quantity == Decimal(10) and position.pending_buy == 0


@pytest.mark.couchbase
async def test_the_next_record_of_an_order_rolls_its_earlier_outcome_forward_first(handles, monkeypatch):
    [store] = handles(1)
    [(o, _)] = await store.admit([order()], approve)

    async def roll_forward(self, doc):
        raise Crash

    monkeypatch.setattr(CouchbaseStore, "_roll_forward", roll_forward)
    with pytest.raises(Crash):
        await store.record([fill(o, "4", "100", OrderState.PENDING, OrderEvent.PARTIALLY_FILLED)])
    monkeypatch.undo()
    second = fill(o, "10", "102", OrderState.PARTIALLY_FILLED, OrderEvent.FILLED)
    await store.record([second])
    assert second.applied
    position = await store.get_position("acct", "SYM")
    assert position.quantity == Decimal(10) and position.pending_buy == 0
    assert sorted((t.trade_id, t.quantity) for t in await store.list_trades(client_order_id="c1")) == [
        ("acct/c1#1", Decimal(4)), ("acct/c1#2", Decimal(6))]  # fmt: skip


@pytest.mark.couchbase
@pytest.mark.parametrize("cut_in", ["trade", "position", "clear"])
async def test_a_resend_finishes_an_outcome_a_store_failure_cut_short_before_it_is_answered(handles, monkeypatch, cut_in):
    """The store fails after an outcome's commit (the order doc says filled) and before all its
    effects landed; the batch is answered ``retry``. The resend that follows is admitted as the
    existing order, and by the time admit returns, the trade is listed and the position holds the
    fill, with no recovery scan in between. (Before, the resend was answered ``duplicate`` and the
    effects waited for the engine's next start: found by tests/engine/test_store_outage.py.)"""
    [store] = handles(1)
    [(o, _)] = await store.admit([order()], approve)
    real_insert, real_put, real_cas_loop = CouchbaseStore._insert, CouchbaseStore._put, CouchbaseStore._cas_loop

    async def insert(self, key, doc):
        if cut_in == "trade" and key.startswith("trade::"):
            raise StoreUnavailable("couchbase: the node went away")
        return await real_insert(self, key, doc)

    async def put(self, key, doc, cas):
        if cut_in == "position" and key.startswith("pos::"):
            raise StoreUnavailable("couchbase: the node went away")
        return await real_put(self, key, doc, cas)

    async def cas_loop(self, key, change):
        await real_cas_loop(self, key, change)
        if cut_in == "clear" and key.startswith("order::"):
            raise StoreUnavailable("couchbase: the node went away")  # the write landed, its answer did not

    monkeypatch.setattr(CouchbaseStore, "_insert", insert)
    monkeypatch.setattr(CouchbaseStore, "_put", put)
    monkeypatch.setattr(CouchbaseStore, "_cas_loop", cas_loop)
    with pytest.raises(StoreUnavailable):
        await store.record([fill(o, "10", "101")])
    monkeypatch.undo()
    assert (await store.get_order("acct", "c1")).state is OrderState.FILLED  # committed

    [(found, existed)] = await store.admit([order()], approve)  # the resend
    assert existed and found.state is OrderState.FILLED
    position = await store.get_position("acct", "SYM")
    assert position.quantity == Decimal(10) and position.pending_buy == 0 and position.average_price == Decimal(101)
    assert [(t.trade_id, t.quantity) for t in await store.list_trades()] == [("acct/c1#1", Decimal(10))]
    assert "fx" not in await store._get_doc(store._order_key("acct/c1"))


@pytest.mark.couchbase
@pytest.mark.parametrize("late", ["other", "writer"])
async def test_an_outcome_rolled_forward_by_two_writers_at_once_is_applied_once(handles, late):
    """The race behind a position counted twice (two replicas, lanes on): a record commits a
    closing outcome (``fx`` on the order doc) and rolls it forward; meanwhile another writer's
    record of the same order (a replica that took over the order's lapsed lease, the
    reconciliation loop, a cancel, a replica's start-up scan) reads the doc, sees the ``fx``
    and rolls it forward too. The ``late`` one reaches the position only after the other has
    applied the fill, cleared ``fx`` and dropped the closed order's reservation marker (the
    marker that said the fill was applied)."""
    writer, other = handles(2)
    [(o, _)] = await writer.admit([order()], approve)
    stale = dataclasses.replace(o)  # the other writer's copy, read while the order was pending
    committed, seen = asyncio.Event(), asyncio.Event()
    done = {"writer": asyncio.Event(), "other": asyncio.Event()}
    real = CouchbaseStore._roll_forward

    def rolls(store: CouchbaseStore, name: str):
        async def roll_forward(doc):
            committed.set()
            if name == "writer":
                await seen.wait()  # the other writer has read the order doc with this outcome on it
            else:
                seen.set()
            if name == late:
                await done["writer" if late == "other" else "other"].wait()
            await real(store, doc)
            done[name].set()

        return roll_forward

    writer._roll_forward = rolls(writer, "writer")  # type: ignore[method-assign]
    other._roll_forward = rolls(other, "other")  # type: ignore[method-assign]
    first, replay = fill(o, "10", "101"), fill(stale, "10", "101")

    async def rewrite() -> None:
        await committed.wait()
        await other.record([replay])

    await asyncio.wait_for(asyncio.gather(writer.record([first]), rewrite()), 30)
    assert first.applied and not replay.applied
    for store in (writer, other):
        assert await store.pending_orders() == []
        position = await store.get_position("acct", "SYM")
        assert (position.quantity, position.pending_buy) == (Decimal(10), Decimal(0))
    assert [(t.trade_id, t.quantity) for t in await writer.list_trades()] == [("acct/c1#1", Decimal(10))]


@pytest.mark.couchbase
async def test_an_escalation_counts_only_once_its_order_is_recorded(handles, monkeypatch):
    [store] = handles(1)

    def escalate(o, p):
        o.apply(OrderEvent.ESCALATED)
        return {"why": "limit"}

    real_insert = CouchbaseStore._insert

    async def insert(self, key, doc):
        if key.startswith("order::"):
            raise Crash
        return await real_insert(self, key, doc)

    monkeypatch.setattr(CouchbaseStore, "_insert", insert)
    with pytest.raises(Crash):
        await store.admit([order("e1")], escalate)
    monkeypatch.undo()
    assert await store.undelivered_escalations() == []  # outbox written, order not: not yet
    await store.admit([order("e1")], escalate)
    [esc] = await store.undelivered_escalations()
    assert esc["key"] == "esc:acct/e1" and esc["payload"] == {"why": "limit"}


# -- ticks: a version is taken only after the tick is written ------------------------


@pytest.mark.couchbase
async def test_ticks_since_is_one_counter_read_when_nothing_changed(handles, monkeypatch):
    writer, reader = handles(2)
    await writer.apply_ticks([tick("S1", "100"), tick("S2", "200")], apply_all)
    newest, ticks = await reader.ticks_since(-1)
    assert [t["symbol"] for t in ticks] == ["S1", "S2"] and newest == ticks[-1]["version"]
    reads = []
    real_get = CouchbaseStore._get

    async def get(self, key):
        reads.append(key)
        return await real_get(self, key)

    async def counter(self, key):
        reads.append(key)
        return 0 if key != "ticks::version" else newest

    monkeypatch.setattr(CouchbaseStore, "_get", get)
    monkeypatch.setattr(CouchbaseStore, "_counter", counter)
    assert await reader.ticks_since(newest) == (newest, [])
    assert reads == ["ticks::version"]


@pytest.mark.couchbase
async def test_a_reader_never_skips_a_tick_whose_version_comes_after_a_newer_one(handles):
    """Writer A has written its tick but not yet taken its version when writer B's tick (another
    symbol) is versioned and a replica reads: the reader sees A's tick then, and never loses it."""
    a, b, reader = handles(3)
    paused, resume = hold_tick_versions(a)
    writing = asyncio.create_task(a.apply_ticks([tick("S1", "101")], apply_all))
    await paused.wait()  # S1 written (provisional), its version not taken yet
    await b.apply_ticks([tick("S2", "202")], apply_all)
    newest, ticks = await reader.ticks_since(-1)
    assert sorted((t["symbol"], t["last"]) for t in ticks) == [("S1", "101"), ("S2", "202")]
    resume.set()
    assert await writing == ["applied"]  # its own publication lost to the reader's: one version, one tick
    seen = {t["symbol"]: t["last"] for t in ticks}
    for _ in range(3):
        newest, more = await reader.ticks_since(newest)
        seen.update((t["symbol"], t["last"]) for t in more)
    assert seen == {"S1": "101", "S2": "202"} and await reader.ticks_since(newest) == (newest, [])
    loaded = await b.load_ticks()
    assert {s: t["last"] for s, t in loaded.items()} == seen and loaded["S1"]["version"] != loaded["S2"]["version"]


@pytest.mark.couchbase
async def test_a_tick_left_unpublished_by_a_crash_is_published_by_a_reader_or_a_resend(handles, monkeypatch):
    [crashing] = handles(1)

    async def finalize(self, key, doc=None, cas=0):
        raise Crash

    monkeypatch.setattr(CouchbaseStore, "_finalize_tick", finalize)
    with pytest.raises(Crash):
        await crashing.apply_ticks([tick("S1", "100", 7)], by_sequence)
    monkeypatch.undo()

    # a reader whose version is already current does not look (one counter read): not yet seen ...
    [reader] = handles(1)
    assert await reader.ticks_since(0) == (0, [])
    # ... but the resend (judged a duplicate: its sequence is stored) publishes it once it is old enough
    [restarted] = handles(1)
    await restarted._c()  # connected (with the real KV timeout) before ...
    restarted.kv_timeout = 0.0  # ... "old enough" (the KV timeout: a live writer publishes within it) is now
    await asyncio.sleep(0.01)
    assert await restarted.apply_ticks([tick("S1", "100", 7)], by_sequence) == ["stale"]
    newest, ticks = await reader.ticks_since(0)
    assert [(t["symbol"], t["sequence"]) for t in ticks] == [("S1", 7)] and newest >= ticks[0]["version"] > 0

    # a reader that looks (the counter moved) publishes a provisional tick itself
    monkeypatch.setattr(CouchbaseStore, "_finalize_tick", finalize)
    with pytest.raises(Crash):
        await crashing.apply_ticks([tick("S2", "50", 1)], by_sequence)
    monkeypatch.undo()
    await restarted.apply_ticks([tick("S3", "10")], apply_all)  # moves the counter
    newest, ticks = await reader.ticks_since(newest)
    assert sorted(t["symbol"] for t in ticks) == ["S2", "S3"]
    assert (await reader.load_ticks())["S2"]["last"] == "50"


@pytest.mark.couchbase
async def test_two_replicas_applying_many_symbols_agree_on_every_last_tick(handles):
    a, b = handles(2)
    batches = [[tick(f"S{j}", str(100 + i), i) for j in range(5)] for i in range(1, 21)]
    await asyncio.gather(*(store.apply_ticks(batch, by_sequence) for store, batch in zip([a, b] * 10, batches)))
    for store in (a, b):
        loaded = await store.load_ticks()
        assert {s: (t["sequence"], t["last"]) for s, t in loaded.items()} == {f"S{j}": (20, "120") for j in range(5)}
    versions = sorted(t["version"] for t in (await a.load_ticks()).values())
    assert len(set(versions)) == 5


# -- the audit log --------------------------------------------------------------------


@pytest.mark.couchbase
async def test_an_audit_number_whose_entry_never_landed_is_skipped(handles, monkeypatch):
    [store] = handles(1)
    for i in range(3):
        await store.append_audit("event", "a", "", {"n": i})
    real_insert = CouchbaseStore._insert

    async def insert(self, key, doc):
        if key.startswith("audit::"):
            raise Crash  # the number is taken, the entry never written
        return await real_insert(self, key, doc)

    monkeypatch.setattr(CouchbaseStore, "_insert", insert)
    for _ in range(12):
        with pytest.raises(Crash):
            await store.append_audit("event", "a", "", {"n": "lost"})
    monkeypatch.undo()
    await store.append_audit("event", "a", "", {"n": 3})
    assert [e["detail"]["n"] for e in await store.list_audit(3)] == [3, 2, 1]
    assert [e["detail"]["n"] for e in await store.list_audit()] == [3, 2, 1, 0]


# -- orders keyed by account ---------------------------------------------------------


@pytest.mark.couchbase
async def test_list_orders_reads_only_the_orders_of_the_accounts_asked_for(handles, monkeypatch):
    [store] = handles(1)
    await store.admit([order("c1", account="a1"), order("c1", account="b1"), order("c2", account="a2")], approve)
    read = []
    real_get_many = CouchbaseStore._get_many

    async def get_many(self, keys):
        read.extend(keys)
        return await real_get_many(self, keys)

    monkeypatch.setattr(CouchbaseStore, "_get_many", get_many)
    assert sorted(o.key for o in await store.list_orders(patterns=["a*"])) == ["a1/c1", "a2/c2"]
    assert sorted(read) == ["order::a1/c1", "order::a2/c2"]
    read.clear()
    assert [o.key for o in await store.list_orders(account="b1")] == ["b1/c1"] and read == ["order::b1/c1"]


@pytest.mark.couchbase
async def test_the_recovery_scan_refuses_entries_of_orders_keyed_by_coid_alone(handles):
    [store] = handles(1)
    await store._map_put("idx::open", "c1", {"c": "c1", "p": "pos::acct::SYM", "t": time.time()})  # an earlier version's
    with pytest.raises(RuntimeError, match="client_order_id alone"):
        await store.pending_orders()


# -- reconciliation: idx::open, leases by CAS -----------------------------------------


@pytest.mark.couchbase
async def test_idx_open_drops_expired_orders_and_keeps_venue_anomalies(handles):
    [store] = handles(1)
    [(gone, _), (odd, _), (rest, _)] = await store.admit([order("gone"), order("odd"), order("rest")], approve)
    gone.apply(OrderEvent.EXPIRED)
    odd.apply(OrderEvent.VENUE_ANOMALY_DETECTED)
    rest.apply(OrderEvent.ACCEPTED)
    await store.record([Execution(gone, OrderState.PENDING, Decimal(0), None, Decimal(10)),
                        Execution(odd, OrderState.PENDING, Decimal(0), None, Decimal(0)),
                        Execution(rest, OrderState.PENDING, Decimal(0), None, Decimal(0))])  # fmt: skip
    # expired is final: out of the index at once; the anomaly keeps its entry (and its reservation)
    assert sorted(e["k"] for e in await store._map_values("idx::open")) == ["acct/odd", "acct/rest"]
    position = await store.get_position("acct", "SYM")
    assert position.pending_buy == 20
    [again] = handles(1)
    assert await again.pending_orders() == []  # the recovery scan keeps both entries
    assert sorted(e["k"] for e in await again._map_values("idx::open")) == ["acct/odd", "acct/rest"]
    assert [o.key for o in await again.open_orders()] == ["acct/rest"]
    assert (await again.get_position("acct", "SYM")).pending_buy == 20


@pytest.mark.couchbase
async def test_open_orders_skips_index_entries_whose_order_never_landed(handles, monkeypatch):
    [crashing] = handles(1)
    await crashing.admit([order("first")], approve)
    real_insert = CouchbaseStore._insert

    async def insert(self, key, doc):
        if key.startswith("order::"):
            raise Crash
        return await real_insert(self, key, doc)

    monkeypatch.setattr(CouchbaseStore, "_insert", insert)
    with pytest.raises(Crash):
        await crashing.admit([order("crashed")], approve)
    monkeypatch.undo()
    [store] = handles(1)
    assert "acct/crashed" in {e["k"] for e in await store._map_values("idx::open")}
    assert [o.key for o in await store.open_orders()] == ["acct/first"]
    assert await store.take_leases([order("crashed")], "e1:reconcile", 30) == []


@pytest.mark.couchbase
async def test_loops_racing_for_the_same_leases_take_each_order_once(handles):
    stores = handles(4)
    admitted = [o for o, _ in await stores[0].admit([order(f"r{i}", quantity="1") for i in range(40)], approve)]
    for o in admitted:
        o.apply(OrderEvent.ACCEPTED)
    await stores[0].record([Execution(o, OrderState.PENDING, Decimal(0), None, Decimal(0)) for o in admitted])
    page = await stores[1].open_orders()
    assert len(page) == 40
    taken = await asyncio.gather(*(s.take_leases(page, f"e{i}:reconcile", 30) for i, s in enumerate(stores)))
    owners = {o.key: f"e{i}:reconcile" for i, got in enumerate(taken) for o in got}
    assert sum(len(got) for got in taken) == 40 == len(owners)  # each order leased by exactly one loop
    for o in await stores[2].open_orders():
        assert o.lease_owner == owners[o.key]
    # a record racing a lease keeps the lease (it copies the stored one) and the lease never undoes the record
    o = admitted[0]
    assert page[0].key == o.key
    await stores[0].take_leases([page[0]], owners[o.key], 0)  # handed back: free for e9
    filled = fill(o, "1", "100", OrderState.ACCEPTED)
    results = await asyncio.gather(stores[3].record([filled]), stores[2].take_leases([page[0]], "e9:reconcile", 30))
    stored = await stores[0].get_order("acct", o.client_order_id)
    assert filled.applied and stored.state is OrderState.FILLED
    assert stored.lease_owner in (owners[o.key], "e9:reconcile") and len(results[1]) <= 1
    assert len(await stores[0].list_trades(client_order_id=o.client_order_id)) == 1


# -- ambiguous writes, with a fake collection -----------------------------------------


class FakeResult:
    def __init__(self, value, cas):
        self.content_as = {dict: value}
        self.cas = cas


class FakeMutation:
    def __init__(self, cas):
        self.cas = cas


class FakeCollection:
    """Dict-backed KV; the first ``ambiguous`` writes time out ambiguously, after landing or not."""

    def __init__(self, ambiguous: int, lands: bool):
        import couchbase.exceptions as exc

        self.exc = exc
        self.docs: dict[str, tuple[dict, int]] = {}
        self.ambiguous, self.lands, self.writes = ambiguous, lands, 0

    def _write(self, key, value):
        self.writes += 1
        landed = not self.ambiguous or self.lands
        if landed:
            self.docs[key] = (dict(value), self.docs.get(key, ({}, 0))[1] + 1)
        if self.ambiguous:
            self.ambiguous -= 1
            raise self.exc.AmbiguousTimeoutException(message="ambiguous")
        return FakeMutation(self.docs[key][1])

    async def get(self, key):
        if key not in self.docs:
            raise self.exc.DocumentNotFoundException(message=key)
        value, cas = self.docs[key]
        return FakeResult(dict(value), cas)

    async def insert(self, key, value):
        if key in self.docs:
            raise self.exc.DocumentExistsException(message=key)
        return self._write(key, value)

    async def replace(self, key, value, options):
        if key not in self.docs:
            raise self.exc.DocumentNotFoundException(message=key)
        if self.docs[key][1] != options["cas"]:
            raise self.exc.CasMismatchException(message=key)
        return self._write(key, value)


def fake_store(coll: FakeCollection) -> CouchbaseStore:
    store = CouchbaseStore("couchbase://fake", "u", "p", "b")
    store._coll = coll
    return store


async def test_resolve_ambiguous_reads_the_document_back():
    docs = {"mine": {"_w": "t1"}, "theirs": {"_w": "t2"}}

    async def get(key):
        return docs.get(key)

    assert await resolve_ambiguous(get, "mine", "t1") == "applied"
    assert await resolve_ambiguous(get, "theirs", "t1") == "other"
    assert await resolve_ambiguous(get, "missing", "t1") == "absent"


@pytest.mark.parametrize("lands", [True, False])
async def test_an_ambiguous_insert_is_looked_up_never_blindly_rewritten(lands):
    coll = FakeCollection(ambiguous=1, lands=lands)
    store = fake_store(coll)
    assert await store._insert("k", {"a": 1}) is True
    assert coll.writes == (1 if lands else 2)  # landed: no second write; not landed: one retry
    assert coll.docs["k"][0]["a"] == 1
    # the CAS it reports is the one the landed write left (a follow-up CAS write relies on it)
    assert await store._insert_cas("k2", {"b": 2}) == coll.docs["k2"][1]


@pytest.mark.parametrize("lands", [True, False])
async def test_an_ambiguous_write_reports_the_cas_it_left(lands):
    coll = FakeCollection(ambiguous=1, lands=lands)
    store = fake_store(coll)
    cas = await store._insert_cas("k", {"a": 1})
    assert cas == coll.docs["k"][1]
    coll.ambiguous = 1
    new = await store._replace_cas("k", {"a": 2}, cas)
    assert new == coll.docs["k"][1] and new != cas and coll.docs["k"][0]["a"] == 2
    assert await store._replace_cas("k", {"a": 3}, cas) is None  # a stale CAS loses


class LateLanding(FakeCollection):
    """An insert that times out ambiguously and lands only later: after the read-back that
    followed it found nothing, before the retry."""

    def __init__(self):
        super().__init__(ambiguous=0, lands=True)
        self.in_flight: tuple[str, dict] | None = None

    async def insert(self, key, value):
        if self.in_flight is not None:  # the first attempt lands now: the retry finds it
            self.docs[key] = (dict(self.in_flight[1]), 41)
            self.in_flight = None
        elif not self.writes:
            self.writes += 1
            self.in_flight = (key, dict(value))
            raise self.exc.AmbiguousTimeoutException(message="ambiguous")
        return await super().insert(key, value)


async def test_an_ambiguous_insert_that_lands_late_is_found_as_ours_with_its_cas():
    """The retry of an ambiguous insert is refused (the document exists) because the first
    attempt landed after all: that is our write (it carries our token), so the insert created
    the document, and the CAS reported is the document's (a follow-up CAS write relies on it)."""
    coll = LateLanding()
    assert await fake_store(coll)._insert_cas("k", {"a": 1}) == 41
    assert coll.docs["k"][0]["a"] == 1
    assert await fake_store(LateLanding())._insert("k", {"a": 1}) is True


async def test_an_ambiguous_insert_that_did_not_land_where_another_writer_created_the_doc_lost():
    """Our insert times out without landing while another writer creates the document: the read-
    back finds their write, not ours, so ours did not create it (False / None), never their CAS."""
    coll = FakeCollection(ambiguous=1, lands=False)
    real_get = coll.get

    async def get(key):  # their insert landed while ours was in doubt
        coll.docs.setdefault(key, ({"_w": "someone-else"}, 7))
        return await real_get(key)

    coll.get = get
    assert await fake_store(coll)._insert_cas("k", {"a": 1}) is None
    assert coll.docs["k"] == ({"_w": "someone-else"}, 7) and coll.writes == 1


async def test_an_ambiguous_insert_that_lost_to_another_writer_reports_existing():
    coll = FakeCollection(ambiguous=0, lands=True)
    coll.docs["k"] = ({"_w": "someone-else"}, 1)
    assert await fake_store(coll)._insert("k", {"a": 1}) is False


@pytest.mark.parametrize("lands", [True, False])
async def test_an_ambiguous_cas_replace_is_looked_up(lands):
    coll = FakeCollection(ambiguous=1, lands=lands)
    coll.docs["k"] = ({"v": 0}, 7)
    store = fake_store(coll)
    assert await store._replace("k", {"v": 1}, 7) is True
    assert coll.writes == (1 if lands else 2) and coll.docs["k"][0]["v"] == 1


async def test_an_ambiguous_replace_after_another_writer_changed_the_doc_is_a_lost_race():
    coll = FakeCollection(ambiguous=1, lands=False)
    coll.docs["k"] = ({"v": 0}, 7)
    store = fake_store(coll)
    real_get = coll.get

    async def get(key):  # another writer moved the doc while our write was in doubt
        coll.docs["k"] = ({"v": "theirs"}, 8)
        return await real_get(key)

    coll.get = get
    assert await store._replace("k", {"v": 1}, 7) is False
    assert coll.docs["k"][0]["v"] == "theirs"


async def test_writes_that_stay_ambiguous_become_store_unavailable():
    store = fake_store(FakeCollection(ambiguous=100, lands=False))
    with pytest.raises(StoreUnavailable):
        await store._insert("k", {"a": 1})


class FakeSubdocCollection(FakeCollection):
    """Also sub-document writes and the counter's increment; the first ``ambiguous`` calls time
    out ambiguously (without landing)."""

    def __init__(self, ambiguous: int):
        super().__init__(ambiguous, lands=False)
        self.calls: list[str] = []
        self.counter = 0

    def _call(self, key):
        self.calls.append(key)
        if self.ambiguous:
            self.ambiguous -= 1
            raise self.exc.AmbiguousTimeoutException(message="ambiguous")

    async def mutate_in(self, key, specs, options=None):
        self._call(key)
        return FakeMutation(1)

    def binary(self):
        return self

    async def increment(self, key, options):
        self._call(key)
        self.counter += 1
        return types.SimpleNamespace(content=self.counter)


class SubdocServer(FakeCollection):
    """Sub-document writes as Couchbase Server does them: a path whose parent (or, for an array
    operation, whose array) is missing is refused (PathNotFound) unless the spec asks for it to
    be created (``create_parents``). CouchbaseMock, the test services' server, creates it
    whatever the spec says, so it cannot show this rule (docs/testing.md, fourth pass)."""

    def __init__(self):
        super().__init__(ambiguous=0, lands=True)

    async def mutate_in(self, key, specs, options=None):
        from couchbase.subdocument import StoreSemantics, SubDocOp

        if key not in self.docs and (options or {}).get("store_semantics") != StoreSemantics.UPSERT:
            raise self.exc.DocumentNotFoundException(message=key)
        doc = dict(self.docs.get(key, ({}, 0))[0])
        for op, path, create_parents, _xattr, _macros, *value in specs:
            *parents, leaf = path.split(".")
            node = doc
            for name in parents:
                if name not in node:
                    if not create_parents:
                        raise self.exc.PathNotFoundException(message=f"{key}: {path}")
                    node[name] = {}
                node = node[name]
            if op == SubDocOp.DICT_UPSERT:
                node[leaf] = value[0]
            elif op == SubDocOp.ARRAY_ADD_UNIQUE:
                if leaf not in node and not create_parents:
                    raise self.exc.PathNotFoundException(message=f"{key}: {path}")
                if value[0] in node.setdefault(leaf, []):
                    raise self.exc.PathExistsException(message=f"{key}: {path}")
                node[leaf].append(value[0])
            elif op == SubDocOp.REMOVE:
                if leaf not in node:
                    raise self.exc.PathNotFoundException(message=f"{key}: {path}")
                del node[leaf]
            else:
                raise AssertionError(f"sub-document operation {op} not modelled")
        self.docs[key] = (doc, self.docs.get(key, ({}, 0))[1] + 1)
        return FakeMutation(self.docs[key][1])


async def test_an_index_entry_for_an_index_document_not_written_yet_creates_it_on_a_strict_server():
    """The first entry of an index (the first order, position, account, open order of a store)
    goes to a document that does not exist yet: the update creates the document and its array or
    map, and what was added reads back; adding an entry again keeps one."""
    store = fake_store(SubdocServer())
    await store._index_add("idx::positions", "a/S1")
    await store._index_add("idx::positions", "a/S2")
    await store._index_add("idx::positions", "a/S1")
    assert await store._index_list("idx::positions") == ["a/S1", "a/S2"]
    await store._map_put("idx::open", "a/c.1", {"k": "a/c.1"})
    await store._map_put("idx::open", "a/c2", {"k": "a/c2"})
    assert await store._map_values("idx::open") == [{"k": "a/c.1"}, {"k": "a/c2"}]
    await store._map_remove("idx::open", "a/c.1")
    await store._map_remove("idx::open", "a/c.1")  # already gone: nothing to do
    await store._map_remove("idx::never", "a/c2")
    assert await store._map_values("idx::open") == [{"k": "a/c2"}]


async def test_an_ambiguous_index_update_or_increment_is_done_again_until_it_is_not():
    """Sub-document index updates are idempotent and an increment may skip a number: an
    ambiguous one is simply done again, up to AMBIGUOUS_ATTEMPTS times, then StoreUnavailable
    naming the key."""
    calls = {
        "_map_remove": lambda s: s._map_remove("idx::open", "a/c1"),
        "_map_put": lambda s: s._map_put("idx::open", "a/c1", {"k": "a/c1"}),
        "_index_add": lambda s: s._index_add("idx::orders", "a/c1"),
        "_next_seq": lambda s: s._next_seq("audit::seq"),
    }
    for name, call in calls.items():
        coll = FakeSubdocCollection(ambiguous=AMBIGUOUS_ATTEMPTS - 1)
        result = await call(fake_store(coll))
        assert len(coll.calls) == AMBIGUOUS_ATTEMPTS and coll.ambiguous == 0, name
        assert result == (1 if name == "_next_seq" else None), name
        coll = FakeSubdocCollection(ambiguous=AMBIGUOUS_ATTEMPTS)
        with pytest.raises(StoreUnavailable, match=r"'(idx::open|idx::orders|audit::seq)' stayed ambiguous"):
            await call(fake_store(coll))
        assert len(coll.calls) == AMBIGUOUS_ATTEMPTS, name
    inserting, replacing = FakeCollection(ambiguous=100, lands=False), FakeCollection(ambiguous=100, lands=False)
    replacing.docs["k"] = ({"a": 0}, 1)
    with pytest.raises(StoreUnavailable, match=r"insert of 'k' stayed ambiguous"):
        await fake_store(inserting)._insert("k", {"a": 1})
    with pytest.raises(StoreUnavailable, match=r"replace of 'k' stayed ambiguous"):
        await fake_store(replacing)._replace("k", {"a": 1}, 1)
    assert inserting.writes == replacing.writes == AMBIGUOUS_ATTEMPTS


async def test_a_lost_cas_round_is_retried_at_once_twice_then_after_a_growing_pause_of_at_most_50_ms():
    """The pacing of a contended read-modify-write (``backoff``, between CAS rounds): the first
    two retries go at once; later ones pause at random (replicas racing on one document spread
    out) up to 1 ms per round lost, never more than 50 ms (a contended order is not held up)."""
    paused: dict[int, list[float]] = {}

    async def sleep(delay: float) -> None:
        paused.setdefault(attempt, []).append(delay)

    with mock.patch("asyncio.sleep", sleep):
        for attempt in [0, 1, 2, 3, 10, 49, 50, 51, 1000, CAS_ATTEMPTS - 1]:
            for _ in range(200):
                await backoff(attempt)
    assert paused[0] == paused[1] == [0] * 200
    for attempt, delays in paused.items():
        bound = min(0.05, 0.001 * attempt) if attempt >= 2 else 0
        assert all(0 <= d <= bound for d in delays), (attempt, max(delays), bound)
        if attempt >= 2:  # spread over the whole range, not a fixed or vanishing pause
            assert max(delays) > bound * 0.8 and min(delays) < bound * 0.2, (attempt, min(delays), max(delays))


# -- connection and URLs ----------------------------------------------------------------


async def test_an_unreachable_cluster_is_store_unavailable_within_the_timeout():
    store = CouchbaseStore("couchbase://127.0.0.1:1", "u", "p", "default", connect_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="cannot connect"):
        await store.get_order("a", "x")
    assert time.monotonic() - started < 10
    await store.close()


def test_open_store_couchbase_urls(monkeypatch):
    monkeypatch.delenv("WOJAK_COUCHBASE_USERNAME", raising=False)
    monkeypatch.delenv("WOJAK_COUCHBASE_PASSWORD", raising=False)
    with pytest.raises(ValueError, match="WOJAK_COUCHBASE_USERNAME and WOJAK_COUCHBASE_PASSWORD"):
        open_store("couchbase://h?bucket=b")
    monkeypatch.setenv("WOJAK_COUCHBASE_USERNAME", "u")
    monkeypatch.setenv("WOJAK_COUCHBASE_PASSWORD", "p")
    store = open_store("couchbase://h1,h2:11210?bucket=b&scope=s&collection=c&prefix=t1::&network=external")
    assert isinstance(store, CouchbaseStore)
    assert (store.connstr, store.bucket_name, store.scope_name, store.collection_name, store.prefix) == (
        "couchbase://h1,h2:11210?network=external", "b", "s", "c", "t1::")  # fmt: skip
    for bad in ("couchbase://h", "couchbase://?bucket=b"):
        with pytest.raises(ValueError, match="WOJAK_STORE"):
            open_store(bad)


def test_a_couchbase_url_s_defaults_timeouts_and_sdk_options(monkeypatch):
    """What a couchbase:// URL leaves out gets the defaults (no prefix, 10 s to connect, 2.5 s per
    KV call); the timeouts are read from the URL; every other option is the SDK's, passed on in
    order; a timeout that is not a number is refused naming both settings."""
    monkeypatch.setenv("WOJAK_COUCHBASE_USERNAME", "u")
    monkeypatch.setenv("WOJAK_COUCHBASE_PASSWORD", "p")
    store = open_store("couchbase://h?bucket=b")
    assert (store.connstr, store.prefix, store.scope_name, store.collection_name) == ("couchbase://h", "", None, None)
    assert (store.connect_timeout, store.kv_timeout) == (10.0, 2.5)
    store = open_store("couchbase://h?bucket=b&connect_timeout=3&kv_timeout=0.5&network=external&tls_verify=none")
    assert store.connstr == "couchbase://h?network=external&tls_verify=none"
    assert (store.connect_timeout, store.kv_timeout) == (3.0, 0.5)
    for bad in ("connect_timeout=soon", "kv_timeout=1s"):
        with pytest.raises(ConfigError) as refused:
            open_store(f"couchbase://h?bucket=b&{bad}")
        assert str(refused.value) == "WOJAK_STORE: connect_timeout and kv_timeout are seconds (numbers)"


def test_a_missing_sdk_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "acouchbase.cluster", None)
    with pytest.raises(ImportError, match=r"pip install 'wojak\[couchbase\]'"):
        from_url(urlparse("couchbase://h?bucket=b"), {"bucket": "b"}, "u", "p")


@pytest.mark.couchbase
async def test_two_replicas_taking_one_lapsed_lease_at_once_get_it_once(handles):
    """An order whose execution lease lapsed is taken over with a CAS on the order doc: when two
    replicas read it at the same moment and both write their lease, one write lands and the
    other replica sees the winner's live lease (else both would submit the order)."""
    first, b, c = handles(3)
    [(o, _)] = await first.admit([order("lapsed")], approve, lease=("first", 0.05))
    assert o.state is OrderState.PENDING and o.lease_owner == "first"
    await asyncio.sleep(0.2)  # the lease lapses
    arrived, both_read = 0, asyncio.Event()

    def gated(store: CouchbaseStore):
        real = store._replace

        async def replace(key, doc, cas):  # both replicas have read the doc before either writes
            nonlocal arrived
            arrived += 1
            if arrived == 2:
                both_read.set()
            await asyncio.wait_for(both_read.wait(), 10)
            return await real(key, doc, cas)

        return replace

    b._replace = gated(b)  # type: ignore[method-assign]
    c._replace = gated(c)  # type: ignore[method-assign]
    (got_b, existed_b), (got_c, existed_c) = [
        r[0]
        for r in await asyncio.gather(
            b.admit([order("lapsed")], approve, lease=("b", 60)), c.admit([order("lapsed")], approve, lease=("c", 60))
        )  # fmt: skip
    ]
    assert existed_b and existed_c
    assert {got_b.lease_owner, got_c.lease_owner} in ({"b"}, {"c"}), "one lease, the same one seen by both"
    [stored] = [p for p in await first.pending_orders() if p.client_order_id == "lapsed"]
    assert stored.lease_owner == got_b.lease_owner


@pytest.mark.couchbase
async def test_a_tick_published_late_never_replaces_a_newer_tick_of_its_symbol(handles):
    """Writer A has written its tick (provisional) but not yet published it when writer B writes a
    newer tick of the same symbol and publishes it: A's late publication is a CAS on the doc it
    wrote, so it finds B's tick there and leaves it (else the older price would come back)."""
    a, b = handles(2)
    paused, resume = hold_tick_versions(a)
    writing = asyncio.create_task(a.apply_ticks([tick("S1", "101")], apply_all))
    await paused.wait()  # A's tick written, its version not taken yet
    assert await b.apply_ticks([tick("S1", "102")], apply_all) == ["applied"]
    resume.set()
    assert await asyncio.wait_for(writing, 30) == ["applied"]
    loaded = (await b.load_ticks())["S1"]
    assert loaded["last"] == "102", loaded
    newest, ticks = await b.ticks_since(-1)
    assert [(t["symbol"], str(t["last"])) for t in ticks] == [("S1", "102")]


@pytest.mark.couchbase
async def test_an_account_waiting_on_couchbase_does_not_hold_up_the_other_accounts_of_its_batch(handles):
    """A batch's accounts are admitted and recorded concurrently, each account's orders in turn:
    the slow account's first read is held until every order of the other account was decided
    (admit) and recorded. Done one order after another, the batch would wait forever on it."""
    [store] = handles()
    others_done, decided = asyncio.Event(), []
    real_get = store._get

    async def get(key):
        if "order::slow/" in key:
            await others_done.wait()
        return await real_get(key)

    store._get = get  # type: ignore[method-assign]

    def decide(o, view):
        decided.append(o.client_order_id)
        if o.account == "fast" and sum(c.startswith("f") for c in decided) == 3:
            others_done.set()
        return approve(o, view)

    batch = [order("s1", account="slow"), order("f1", account="fast"), order("s2", account="slow"),
             order("f2", account="fast"), order("f3", account="fast")]  # fmt: skip
    results = await asyncio.wait_for(store.admit(batch, decide), 30)
    assert [o.client_order_id for o, _ in results] == ["s1", "f1", "s2", "f2", "f3"]  # answers in the order given
    assert decided == ["f1", "f2", "f3", "s1", "s2"]  # the fast account first; each account's orders in turn
    others_done.clear()
    executions = [fill(o, "10") for o, _ in results]
    real_record_one, recorded = store._record_one, []

    async def record_one(ex):
        applied = await real_record_one(ex)
        recorded.append(ex.order.client_order_id)
        if recorded == ["f1", "f2", "f3"]:
            others_done.set()
        return applied

    store._record_one = record_one  # type: ignore[method-assign]
    await asyncio.wait_for(store.record(executions), 30)
    assert all(ex.applied for ex in executions) and recorded == ["f1", "f2", "f3", "s1", "s2"]
    assert (await store.get_position("slow", "SYM")).quantity == 20 and (await store.get_position("fast", "SYM")).quantity == 30


@pytest.mark.couchbase
async def test_a_store_failure_in_one_account_fails_the_batch_at_once_and_stops_the_other_accounts(handles):
    """One account's store error is raised as it came (the batch is answered ``retry``), and the
    other accounts' work still under way is cancelled rather than left running behind the answer."""
    [store] = handles()
    real_get, never, cancelled = store._get, asyncio.Event(), []

    async def get(key):
        if "order::broken/" in key:
            raise StoreUnavailable("couchbase: the node went away")
        if "order::held/" in key:
            try:
                await never.wait()
            except asyncio.CancelledError:
                cancelled.append(key)
                raise
        return await real_get(key)

    store._get = get  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailable, match="the node went away"):
        await asyncio.wait_for(store.admit([order("h1", account="held"), order("b1", account="broken")], approve), 30)
    assert cancelled == ["order::held/h1"]
    store._get = real_get  # type: ignore[method-assign]
    assert await store.get_order("held", "h1") is None and await store.get_order("broken", "b1") is None


@pytest.mark.couchbase
async def test_the_other_accounts_work_has_ended_when_one_accounts_failure_is_answered(handles):
    """The batch is answered ``retry`` only once the other accounts' cancelled work has ended
    (here: finished its cleanup), so no write of this attempt still runs behind that answer,
    racing the retry it asks for."""
    [store] = handles()
    real_get, never, ended = store._get, asyncio.Event(), []

    async def get(key):
        if "order::broken/" in key:
            raise StoreUnavailable("couchbase: the node went away")
        if "order::held/" in key:
            try:
                await never.wait()
            except asyncio.CancelledError:
                for _ in range(3):  # unwinding takes a few turns of the loop
                    await asyncio.sleep(0)
                ended.append(key)
                raise
        return await real_get(key)

    store._get = get  # type: ignore[method-assign]
    async with asyncio.timeout(30):
        with pytest.raises(StoreUnavailable, match="the node went away"):
            await store.admit([order("h1", account="held"), order("b1", account="broken")], approve)
        assert ended == ["order::held/h1"], "answered while the held account's work was still unwinding"


@pytest.mark.couchbase
async def test_the_order_and_trade_indexes_are_bucketed_so_a_write_never_grows_with_the_orderbook(handles, monkeypatch):
    """Each admit and fill adds its key to an index document of at most INDEX_BUCKET keys (here 4),
    so the document it rewrites stays the same size however many orders were ever stored; listings
    still answer newest first and page through every order once."""
    from wojak.engine.store import _couchbase

    monkeypatch.setattr(_couchbase, "INDEX_BUCKET", 4)
    [store] = handles()
    admitted = []
    for i in range(23):  # six buckets, the last one partly filled
        [(o, _)] = await store.admit([order(f"c{i:02d}", account=f"a{i % 3}")], approve)
        admitted.append(o)
        await store.record([fill(o, "10")])
    coll = await store._c()
    for name in ("idx::orders", "idx::trades"):
        sizes = []
        for n in range(8):
            try:
                sizes.append(len((await coll.get(store._k(f"{name}::{n}"))).content_as[dict]["k"]))
            except Exception:  # noqa: BLE001 - a bucket not (yet) written
                sizes.append(0)
        assert max(sizes) == 4 and sum(sizes) == 23, (name, sizes)
    newest = [o.client_order_id for o in await store.list_orders(limit=5)]
    assert newest == [f"c{i:02d}" for i in range(22, 17, -1)]
    pages, cursor = [], None
    while True:
        page = await store.list_orders(limit=5, before=cursor)
        if not page:
            break
        pages.extend(o.client_order_id for o in page)
        cursor = (page[-1].created_at, page[-1].account, page[-1].client_order_id)
    assert pages == [f"c{i:02d}" for i in range(22, -1, -1)]  # each once, newest first
    assert [o.client_order_id for o in await store.list_orders(limit=3, account="a1")] == ["c22", "c19", "c16"]
    assert [t.client_order_id for t in await store.list_trades(limit=3)] == ["c22", "c21", "c20"]
    assert [t.client_order_id for t in await store.list_trades(limit=2, account="a0")] == ["c21", "c18"]
    assert [t.trade_id for t in await store.list_trades(client_order_id="c05")] == ["a2/c05#1"]
    assert len(await store.list_trades(limit=-1)) == 23 and len(await store.list_orders(limit=-1)) == 23


@pytest.mark.couchbase
async def test_a_page_from_a_cursor_reads_the_order_index_from_the_cursors_bucket_not_from_the_newest(handles, monkeypatch):
    """Paging deep into the orderbook costs what the first page costs: a page after a cursor
    reads the index buckets from the cursor order's own (one newer: the clock's slack) down until
    the page is full, and one more; never the newer buckets it would only filter out."""
    from wojak.engine.store import _couchbase

    monkeypatch.setattr(_couchbase, "INDEX_BUCKET", 4)
    [store] = handles()
    admitted = []
    for i in range(23):  # admission numbers 1-23: buckets 0-5
        [(o, _)] = await store.admit([order(f"c{i:02d}")], approve)
        admitted.append(o)
    read, real_index_list = [], store._index_list

    async def index_list(key):
        read.append(key)
        return await real_index_list(key)

    store._index_list = index_list  # type: ignore[method-assign]
    cursor = admitted[5]  # c05: admission number 6, bucket 1
    page = await store.list_orders(limit=2, before=(cursor.created_at, cursor.account, cursor.client_order_id))
    assert [o.client_order_id for o in page] == ["c04", "c03"]
    # the cursor's bucket (1) and one newer, down until the page is full, then one bucket more
    assert read == ["idx::orders::2", "idx::orders::1", "idx::orders::0"], read


class KeyLengthLimit:
    """A collection that refuses a key past 250 bytes, as Couchbase Server does (CouchbaseMock
    1.5.27 and the SDK take a 600-byte one: measured in 8346881)."""

    def __init__(self, coll):
        self.coll = coll

    def __getattr__(self, name):
        return getattr(self.coll, name)

    async def get(self, key, *args, **kwargs):
        if len(key.encode()) > 250:
            import couchbase.exceptions as exc

            raise exc.InvalidArgumentException(message=f"key of {len(key.encode())} bytes")
        return await self.coll.get(key, *args, **kwargs)


@pytest.mark.couchbase
@pytest.mark.parametrize("account, coid", [("acct", "x" * 400), ("a" * 300, "c1"), ("acct/evil", "c1" * 150)])
async def test_a_cursor_no_order_could_have_is_never_looked_up_as_a_key_the_server_refuses(handles, account, coid):
    """A cursor comes back from the client: one whose account or id is not an id (too long, a
    slash) is only a position to page from; looked up, it would be a key past 250 bytes, which a
    real server refuses (here: the collection refuses it as the server does)."""
    [store] = handles()
    for i in range(3):
        await store.admit([order(f"c{i}")], approve)
    store._coll = KeyLengthLimit(await store._c())
    mid = (await store.list_orders())[1]
    bound = (mid.created_at, account, coid)
    page = await store.list_orders(10, before=bound)
    assert [o.client_order_id for o in page] == [
        o.client_order_id for o in await store.list_orders(-1) if (o.created_at, o.account, o.client_order_id) < bound
    ]


@pytest.mark.couchbase
async def test_orders_and_trades_an_earlier_version_indexed_in_one_document_are_still_listed(handles):
    """Before the indexes were bucketed, every key went to one ``idx::orders`` / ``idx::trades``
    document: those are read as the oldest bucket."""
    [store] = handles()
    [(old, _)] = await store.admit([order("old")], approve)
    await store.record([fill(old, "10")])
    coll = await store._c()
    for name in ("idx::orders", "idx::trades"):  # as an earlier version left them: one document each
        key = store._k(f"{name}::0")
        keys = (await coll.get(key)).content_as[dict]["k"]
        await coll.remove(key)
        await coll.upsert(store._k(name), {"k": keys})
    [(new, _)] = await store.admit([order("new")], approve)
    await store.record([fill(new, "10")])
    assert [o.client_order_id for o in await store.list_orders()] == ["new", "old"]
    assert [t.client_order_id for t in await store.list_trades()] == ["new", "old"]
    assert [t.trade_id for t in await store.list_trades(client_order_id="old")] == ["acct/old#1"]


# -- rules a mutation run found untested (docs/testing.md, fourth pass) ------------------


@pytest.mark.couchbase
async def test_a_tick_a_reader_published_keeps_that_version_when_its_writer_comes_back(handles):
    """Writer A's tick is published by a reader while A waits for its version: when A goes on, its
    own publication loses the CAS and finds the tick published; it must not give it a second one."""
    a, reader = handles(2)
    paused, resume = hold_tick_versions(a)
    writing = asyncio.create_task(a.apply_ticks([tick("S1", "101")], apply_all))
    await paused.wait()
    _, [seen] = await reader.ticks_since(-1)
    resume.set()
    assert await asyncio.wait_for(writing, 30) == ["applied"]
    assert (await reader.load_ticks())["S1"]["version"] == seen["version"]
    newest, ticks = await reader.ticks_since(seen["version"])  # (A took a version it did not use)
    assert ticks == []


@pytest.mark.couchbase
async def test_the_judge_never_sees_a_provisional_ticks_bookkeeping(handles):
    """A tick written but not yet published (``p``, the write token ``_w``) is judged as the tick
    the store protocol returns, with the fields of a stored tick only."""
    a, b = handles(2)
    paused, resume = hold_tick_versions(a)
    writing = asyncio.create_task(a.apply_ticks([tick("S1", "101", 1)], by_sequence))
    await paused.wait()
    seen = []

    def judge(stored, t, now):
        seen.append(dict(stored))
        return by_sequence(stored, t, now)

    assert await b.apply_ticks([tick("S1", "102", 2)], judge) == ["applied"]
    resume.set()
    await asyncio.wait_for(writing, 30)
    [stored] = seen
    assert (stored["last"], stored["sequence"]) == ("101", 1)
    assert set(stored) <= {"symbol", "bid", "ask", "last", "received_at", "sequence", "exchange_time", "version", "day",
                           "sod_price"}, stored  # fmt: skip


@pytest.mark.couchbase
async def test_a_symbol_whose_first_tick_never_landed_is_skipped_by_readers(handles, monkeypatch):
    """The index entry of a new symbol is written before its tick: a crash between the two leaves
    an entry without a document, which readers skip."""
    writer, reader = handles(2)
    real_put_cas = CouchbaseStore._put_cas

    async def put_cas(self, key, doc, cas):
        if key.endswith("tick::LOST"):
            raise Crash
        return await real_put_cas(self, key, doc, cas)

    monkeypatch.setattr(CouchbaseStore, "_put_cas", put_cas)
    with pytest.raises(Crash):
        await writer.apply_ticks([tick("LOST", "100")], apply_all)
    monkeypatch.undo()
    assert await reader.ticks_since(-1) == (0, [])
    await writer.apply_ticks([tick("S1", "100")], apply_all)
    newest, ticks = await reader.ticks_since(-1)
    assert [t["symbol"] for t in ticks] == ["S1"] and newest == ticks[0]["version"]


@pytest.mark.couchbase
async def test_a_store_connects_with_the_timeouts_and_credentials_it_was_given(handles):
    """The connect and per-call (KV) timeouts a store is given (from its URL) are the SDK's, not
    the SDK's defaults; a connect timeout of 1 s still connects to a server that answers."""
    [store] = handles(connect_timeout=1.0, kv_timeout=1.5)
    real, seen = store._sdk.Cluster, []

    class Recording:
        @staticmethod
        async def connect(connstr, options):
            seen.append((connstr, dict(options)))
            return await real.connect(connstr, options)

    store._sdk = dataclasses.replace(store._sdk, Cluster=Recording)
    assert await store.get_order("acct", "none") is None
    [(connstr, options)] = seen
    assert connstr == store.connstr
    assert (options.get("connect_timeout"), options.get("kv_timeout")) == (timedelta(seconds=1), timedelta(seconds=1.5))
    assert options["authenticator"]["username"] == store._username


@pytest.mark.couchbase
@pytest.mark.parametrize(
    "scope, collection, used",
    [
        (None, None, [("default collection",)]),
        (None, "orders", [("scope", "_default"), ("collection", "orders")]),
        ("desk", None, [("scope", "desk"), ("collection", "_default")]),
        ("desk", "orders", [("scope", "desk"), ("collection", "orders")]),
    ],
)
async def test_a_store_given_a_scope_or_a_collection_uses_it_and_the_default_for_the_other(handles, scope, collection, used):
    """``?scope=`` / ``?collection=``: the store's documents go to that collection, in the
    ``_default`` scope or collection when only one is named; neither named: the bucket's default
    collection. CouchbaseMock has no collections but the default one (a named one is
    UnsupportedOperation), so the names asked for are recorded and the default one serves them."""
    [store] = handles(scope=scope, collection=collection)
    real, asked = store._sdk.Cluster, []

    class Scope:
        def __init__(self, bucket):
            self.bucket = bucket

        def collection(self, name):
            asked.append(("collection", name))
            return self.bucket.default_collection()

    class Bucket:
        def __init__(self, bucket):
            self.real = bucket

        async def on_connect(self):
            return await self.real.on_connect()

        def scope(self, name):
            asked.append(("scope", name))
            return Scope(self.real)

        def default_collection(self):
            asked.append(("default collection",))
            return self.real.default_collection()

    class Cluster:
        def __init__(self, cluster):
            self.real = cluster

        def bucket(self, name):
            return Bucket(self.real.bucket(name))

        async def close(self):
            await self.real.close()

    class Recording:
        @staticmethod
        async def connect(connstr, options):
            return Cluster(await real.connect(connstr, options))

    store._sdk = dataclasses.replace(store._sdk, Cluster=Recording)
    await store.set_account_state("acct", "halted", "a reason")
    assert (await store.get_account_state("acct"))["state"] == "halted"
    assert asked == used


async def test_a_connect_that_hangs_is_cut_at_its_timeout_and_says_it_got_no_answer():
    """A connect the SDK never ends (its own timeout not honoured) is cut one second past the
    store's connect timeout: StoreUnavailable naming the server, the bucket and the wait."""

    class Hanging:
        @staticmethod
        async def connect(connstr, options):
            await asyncio.Event().wait()

    store = CouchbaseStore("couchbase://h", "u", "p", "orders", connect_timeout=0.2)
    store._sdk = dataclasses.replace(store._sdk, Cluster=Hanging)
    with pytest.raises(StoreUnavailable) as refused:
        await asyncio.wait_for(store.get_order("acct", "c1"), 30)
    assert str(refused.value) == "couchbase couchbase://h bucket 'orders': cannot connect (TimeoutError: no answer within 0.2s)"


@pytest.mark.couchbase
async def test_a_store_whose_bucket_is_missing_is_unavailable_naming_it_and_closes_the_connection_it_made(couchbase_service):
    """The cluster answers but has no such bucket: StoreUnavailable naming the bucket, and the
    connection made to the cluster is closed, not left open behind the failure."""
    service = couchbase_service
    store = CouchbaseStore(service.url, service.username, service.password, "no-such-bucket")
    real, closed = store._sdk.Cluster, []

    class Cluster:
        def __init__(self, cluster):
            self.real = cluster

        def bucket(self, name):
            return self.real.bucket(name)

        async def close(self):
            closed.append(True)
            await self.real.close()

    class Recording:
        @staticmethod
        async def connect(connstr, options):
            return Cluster(await real.connect(connstr, options))

    store._sdk = dataclasses.replace(store._sdk, Cluster=Recording)
    with pytest.raises(StoreUnavailable, match=r"bucket 'no-such-bucket': cannot connect \(BucketNotFoundException"):
        await store.get_order("acct", "c1")
    assert closed == [True]


@pytest.mark.couchbase
async def test_close_closes_the_connection_and_the_next_call_connects_again(handles):
    [store] = handles(1)
    await store.probe()
    coll = store._coll
    await store.close()
    with pytest.raises(RuntimeError, match="closed cluster"):  # the SDK's words for a closed connection
        await coll.get(store._k("anything"))
    await store.probe()  # a new connection
    assert store._coll is not None and store._coll is not coll


@pytest.mark.couchbase
async def test_an_earlier_layouts_order_index_entry_never_breaks_listing_an_orders_trades(handles):
    """An earlier version indexed orders by client_order_id alone (no ``<account>/``): such an
    entry is taken as a bare client_order_id, never split as an order key."""
    [store] = handles(1)
    await store._index_add("idx::orders", "old-c1")
    [(o, _)] = await store.admit([order("c1")], approve)
    await store.record([fill(o, "10")])
    assert [t.trade_id for t in await store.list_trades(client_order_id="c1")] == ["acct/c1#1"]
    assert await store.list_trades(client_order_id="old-c1") == []


@pytest.mark.couchbase
async def test_the_recovery_scan_goes_past_a_dangling_entry_and_prunes_what_is_closed_or_orphaned(handles, monkeypatch):
    """``pending_orders`` reads every ``idx::open`` entry: one whose order doc never landed (an
    admit cut short, still young) is skipped, not the end of the scan; an old one is dropped; a
    closed order's entry is dropped, also when its outcome's effects were cut short (applied
    first); a pending order's entry stays."""
    [store] = handles(1)
    pkey = store._pos_key("acct", "SYM")
    young = {"k": "acct/ghost", "c": "ghost", "p": pkey, "t": time.time()}
    await store._map_put("idx::open", "acct/ghost", young)  # first in the index
    await store._map_put("idx::open", "acct/old", {"k": "acct/old", "c": "old", "p": pkey, "t": time.time() - 10**6})
    [(pending, _)] = await store.admit([order("p1")], approve)
    [(cut, _)] = await store.admit([order("cut")], approve)
    real_insert = CouchbaseStore._insert

    async def insert(self, key, doc):
        if key.startswith("trade::"):
            raise StoreUnavailable("couchbase: the node went away")
        return await real_insert(self, key, doc)

    monkeypatch.setattr(CouchbaseStore, "_insert", insert)
    with pytest.raises(StoreUnavailable):
        await store.record([fill(cut, "10", "101")])  # committed filled, effects cut short
    monkeypatch.undo()
    [(closed, _)] = await store.admit([order("closed")], approve)
    await store.record([fill(closed, "10", "101")])
    await store._map_put("idx::open", "acct/closed", {"k": "acct/closed", "c": "closed", "p": pkey, "t": time.time()})

    assert [o.client_order_id for o in await store.pending_orders()] == ["p1"]
    assert sorted(e["k"] for e in await store._open_entries()) == ["acct/ghost", "acct/p1"]
    assert sorted(t.client_order_id for t in await store.list_trades()) == ["closed", "cut"]
    position = await store.get_position("acct", "SYM")
    assert position.quantity == Decimal(20) and position.pending_buy == Decimal(10)  # p1's reservation only


@pytest.mark.couchbase
async def test_pending_orders_of_one_instant_come_back_in_admission_order(handles, monkeypatch):
    """Ties on ``created_at`` are broken by the admission number, not by where the index keeps
    the entries (here an entry rewritten after the others)."""
    from wojak.engine.store import _couchbase

    [store] = handles(1)
    monkeypatch.setattr(_couchbase.time, "time", lambda: 1_800_000_000.0)
    for coid in ("b", "a", "c"):
        await store.admit([order(coid, account=f"acct-{coid}")], approve)
    entry = next(e for e in await store._open_entries() if e["k"] == "acct-b/b")
    await store._map_remove("idx::open", "acct-b/b")
    await store._map_put("idx::open", "acct-b/b", entry)  # now last in the index
    assert [o.client_order_id for o in await store.pending_orders()] == ["b", "a", "c"]


@pytest.mark.couchbase
async def test_the_audit_log_pages_past_holes_without_skipping_an_entry(handles):
    """Numbers taken for audit entries that never landed (holes) are skipped, and every entry
    is read: here the second read of the page starts right below the first."""
    [store] = handles(1)
    for _ in range(2):
        await store._next_seq("audit::seq")  # holes 1, 2
    await store.append_audit("test", "me", "first", {})  # 3
    for _ in range(10):
        await store._next_seq("audit::seq")  # holes 4..13
    await store.append_audit("test", "me", "second", {})  # 14
    assert [e["subject"] for e in await store.list_audit(limit=3)] == ["second", "first"]


@pytest.mark.couchbase
async def test_the_outbox_goes_past_entries_not_committed_and_prunes_delivered_and_lost_ones(handles):
    """``undelivered_escalations`` reads every ``idx::esc`` entry: one whose order was never
    written (an admit cut short) is skipped and kept, not the end of the read; one already
    delivered, and one whose order was recorded without escalating (an attempt that lost), are
    dropped from the index and not listed; what is left undelivered is listed."""
    [store] = handles(1)

    async def entry(key: str, order_key: str | None, delivered: float | None = None) -> None:
        await store._map_put("idx::esc", key, {"k": key, "o": order_key} if order_key else {"k": key})
        await store._upsert_if_absent(f"esc::{key}", {"key": key, "client_order_id": key, "payload": {}, "created_at": time.time(),
                                                      "delivered_at": delivered})  # fmt: skip

    await entry("esc:acct/ghost", "acct/ghost")  # its order never landed
    await store.admit([order("won")], approve)  # recorded pending, not escalated
    await entry("esc:acct/won", "acct/won")
    await entry("anomaly:done", None, delivered=time.time())
    await store.raise_escalation("anomaly:open", "open", {"why": "test"})
    assert [e["key"] for e in await store.undelivered_escalations()] == ["anomaly:open"]
    assert sorted(e["k"] for e in await store._map_values("idx::esc")) == ["anomaly:open", "esc:acct/ghost"]
