"""The kit's ordered partitions (``wojak.sidecars._core.ordered``), the rules Kafka and Kinesis
share, in process: order per lane within a partition, a held partition hands out nothing else
(other partitions go on), the watermark never passes an unsettled record, a dead letter the
broker did not confirm is redelivered after a capped backoff that grows with each failure, and a
send that outlasted the settle timeout is awaited again, never sent twice.

The hand-out is observed through the iterator the runner reads (``messages()``): a marker record
on a partition of its own is added last, and everything handed out before it is what the rules
let out. Waits (holds, backoffs) go through a recorder standing in for the kit's ``wait_any``:
the test releases them, so nothing here depends on the clock.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import pytest

from wojak.engine.protocol import Settlement
from wojak.sidecars._core import ordered
from wojak.sidecars._core.ordered import OrderedMessage, OrderedPartition, OrderedPartitions, OrderedRecord
from wojak.sidecars._core.settings import BrokerSidecarSettings
from wojak.sidecars._core.source import BrokerSource, SettleFailed


class Waits:
    """Stands in for ``wait_any``: records each delay; a wait ends when the test releases it or
    one of the kit's events (stopping, the partition's wake) is set."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.pending: list[asyncio.Event] = []

    async def __call__(self, delay: float, *events: asyncio.Event) -> None:
        self.delays.append(delay)
        release = asyncio.Event()
        self.pending.append(release)
        waits = [asyncio.ensure_future(e.wait()) for e in (release, *events)]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def release_all(self) -> None:
        for _ in range(5):  # a redelivery's timer starts its wait
            await asyncio.sleep(0)
        for event in self.pending:
            event.set()
        self.pending = []
        for _ in range(5):  # the released holds hand their records out again
            await asyncio.sleep(0)


class Msg(OrderedMessage):
    def __init__(self, harness: "Harness", rec: OrderedRecord) -> None:
        self.harness = harness
        super().__init__(harness.order, rec, rec.item, (rec.partition.key, rec.position), {"lane": rec.lane})

    async def _send_dead_letter(self, reason: str, detail: Any, *, minimal: bool) -> None:
        h = self.harness
        h.dead_letter_attempts.append((self.coordinates, reason, detail, minimal, self._rec.last_reason))
        await self._order.settle_by_send(
            self,
            reason,
            lambda: self._order.send_once(self._rec, "give_up" if minimal else "dead_letter", h.send),
            counts=lambda exc: isinstance(exc, ValueError),
            why=lambda exc: type(exc).__name__,
        )


class Harness:
    def __init__(self, *, settle_timeout: float = 5.0, max_body_bytes: int | None = None) -> None:
        self.stopping = asyncio.Event()
        self.hold_changes: list[Any] = []
        self.settled = 0
        self.dead_letter_attempts: list[tuple[Any, str, Any, bool, str | None]] = []
        self.sent: list[int] = []
        self.send: Callable[[], Awaitable[Any]] = self._send_ok
        self.order: OrderedPartitions[OrderedPartition] = OrderedPartitions(
            "test",
            lambda rec: Msg(self, rec),
            self.stopping,
            backoff_base=0.5,
            backoff_max=2.0,
            settle_timeout=settle_timeout,
            max_body_bytes=max_body_bytes,
            on_hold_change=lambda p: self.hold_changes.append((p.key, p.retrying)),
            on_settled=self._on_settled,
        )
        self.out = self.order.messages()
        self.marker = self.partition("marker")
        self._markers = 0

    def _on_settled(self) -> None:
        self.settled += 1

    async def _send_ok(self) -> str:
        self.sent.append(1)
        return "confirmed"

    def partition(self, key: str) -> OrderedPartition:
        p = OrderedPartition(key)
        self.order.partitions[key] = p
        return p

    def add(self, p: OrderedPartition, position: int, lane: str, body: bytes = b"{}") -> OrderedRecord:
        rec = OrderedRecord(p, body, position, lane)
        self.order.add(p, rec)
        return rec

    async def handed_out(self) -> list[Msg]:
        """Everything the rules hand out now (the marker added last shows where that ends)."""
        self._markers += 1
        self.add(self.marker, self._markers, f"marker-{self._markers}")
        out: list[Msg] = []
        while True:
            message = await self.out.__anext__()
            assert isinstance(message, Msg)
            if message._rec.partition is self.marker:
                await message.ack()
                return out
            out.append(message)


def where(messages: list[Msg]) -> list[tuple[Any, Any]]:
    return [m.coordinates for m in messages]


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> Waits:
    recorder = Waits()
    monkeypatch.setattr(ordered, "wait_any", recorder)
    return recorder


async def test_one_lane_is_handed_out_in_order_and_lanes_go_together():
    h = Harness()
    p = h.partition("p0")
    for position, lane in enumerate(["a", "a", "b", "a", "b"]):
        h.add(p, position, lane)
    first = await h.handed_out()
    assert where(first) == [("p0", 0), ("p0", 2)]  # the head of each lane; a's 1 and 3 wait for 0
    await first[1].ack()  # b's head settled: b's next goes out, a's still waits
    assert where(await h.handed_out()) == [("p0", 4)]
    await first[0].ack()
    second = await h.handed_out()
    assert where(second) == [("p0", 1)]
    await second[0].ack()
    assert where(await h.handed_out()) == [("p0", 3)]


async def test_a_held_partition_hands_out_nothing_else_until_its_record_is_settled(waits):
    h = Harness()
    p, other = h.partition("p0"), h.partition("p1")
    for position, lane in enumerate(["a", "b", "b", "c", "a"]):
        h.add(p, position, lane)
    h.add(other, 0, "a")
    a0, b1, c3, q0 = await h.handed_out()
    await b1.ack()  # b2 is queued before the hold begins
    requeue = asyncio.create_task(a0.requeue(1.0))
    await asyncio.sleep(0)
    assert waits.delays == [1.0] and h.hold_changes == [("p0", 1)]
    assert p.busy()  # the hold is a settlement under way: a revoke's drain waits for it
    await c3.ack()
    h.add(p, 5, "d")  # a new lane too
    await q0.ack()
    h.add(other, 1, "a")
    assert where(await h.handed_out()) == [("p1", 1)]  # b2 and d5 parked; the other partition goes on
    h.add(other, 2, "b")  # queued before the hold ends
    await waits.release_all()
    await requeue
    assert a0.settled is Settlement.REQUEUE and a0 not in p.dispatched
    again = await h.handed_out()
    assert where(again) == [("p0", 0), ("p1", 2)]  # the held record goes out first, alone of its partition
    await again[1].ack()
    await again[0].ack()  # settled: the partition resumes
    assert h.hold_changes == [("p0", 1), ("p0", 0)]
    # the parked heads, and a0's successor in its lane
    assert sorted(where(await h.handed_out())) == [("p0", 2), ("p0", 4), ("p0", 5)]


async def test_two_held_records_hold_their_partition_until_both_are_settled(waits):
    h = Harness()
    p = h.partition("p0")
    for position, lane in enumerate("abc"):
        h.add(p, position, lane)
    a0, b1, c2 = await h.handed_out()
    holds = [asyncio.create_task(a0.requeue(1.0)), asyncio.create_task(b1.requeue(1.0))]
    await asyncio.sleep(0)
    h.add(p, 3, "d")
    await c2.ack()
    await waits.release_all()
    await asyncio.gather(*holds)
    again = await h.handed_out()
    assert sorted(where(again)) == [("p0", 0), ("p0", 1)]
    await again[0].ack()
    assert await h.handed_out() == []  # the other one still holds the partition
    await again[1].ack()
    assert where(await h.handed_out()) == [("p0", 3)]


async def test_the_watermark_never_passes_an_unsettled_record(waits):
    h = Harness()
    p = h.partition("p0")
    for position in range(6):
        h.add(p, position, f"lane-{position}")
    ms = {m._rec.position: m for m in await h.handed_out()}
    assert sorted(ms) == list(range(6))
    assert p.first_unsettled() is not None and p.first_unsettled().position == 0 and p.settled_upto is None
    await ms[1].ack()
    await ms[2].dead_letter("invalid", {"field": "qty"})
    assert p.first_unsettled().position == 0 and p.settled_upto is None  # 0 is not settled
    await ms[0].ack()
    assert p.first_unsettled().position == 3 and p.settled_upto == 2
    requeue = asyncio.create_task(ms[3].requeue(0.5))
    await asyncio.sleep(0)
    h.send = _failing(ConnectionError("broker away"))
    with pytest.raises(SettleFailed):
        await ms[4].dead_letter("invalid")  # not confirmed: stays unsettled
    await ms[5].ack()
    assert p.first_unsettled().position == 3 and p.settled_upto == 2  # the held record and the failed one
    assert p.unsettled == 2 and h.order.unsettled == 2
    await waits.release_all()
    await requeue
    h.send = h._send_ok
    again = await h.handed_out()
    assert sorted(m._rec.position for m in again) == [3, 4]
    for m in sorted(again, key=lambda m: m._rec.position, reverse=True):
        if m._rec.position == 4:
            await m.dead_letter("invalid")
        else:
            assert p.settled_upto == 2
            await m.ack()
    assert p.first_unsettled() is None and p.settled_upto == 5 and p.unsettled == 0 and h.order.unsettled == 0


def _failing(exc: BaseException) -> Callable[[], Awaitable[Any]]:
    async def send() -> Any:
        raise exc

    return send


async def test_an_unconfirmed_dead_letter_is_redelivered_in_place_after_a_growing_capped_backoff(waits):
    h = Harness()
    p = h.partition("p0")
    h.add(p, 0, "a")
    h.add(p, 1, "b")
    failures: list[bool] = []
    h.send = _failing(ConnectionError("broker away"))
    message, b1 = await h.handed_out()
    other = h.partition("p1")
    for attempt in range(5):
        with pytest.raises(SettleFailed, match="the dead letter was not confirmed \\(ConnectionError\\)") as failed:
            await message.dead_letter("invalid")
        failures.append(failed.value.counts)
        assert message not in p.dispatched and len(p.timers) == 1
        if b1.settled is None:
            await b1.ack()
        assert await h.handed_out() == []  # held: nothing of p0 goes out during the backoff
        h.add(other, attempt, f"lane-{attempt}")  # queued during the backoff
        await waits.release_all()
        message, queued = await h.handed_out()  # then the same record again, ahead of the rest
        assert message.coordinates == ("p0", 0) and queued.coordinates == ("p1", attempt)
        await queued.ack()
    assert waits.delays == [0.5, 1.0, 2.0, 2.0, 2.0]  # base * 2**(n-1), capped at backoff_max
    assert failures == [False] * 5  # the broker's failure: never counted toward giving it up
    h.send = _failing(ValueError("too large"))
    with pytest.raises(SettleFailed) as failed:
        await message.dead_letter("invalid", {"bytes": 2_000_000})
    assert h.dead_letter_attempts[-1] == (("p0", 0), "invalid", {"bytes": 2_000_000}, False, "invalid")
    assert failed.value.counts  # the record's own failure counts
    await waits.release_all()
    (message,) = await h.handed_out()
    h.send = h._send_ok
    await message.give_up("unsettleable", {"failures": 6})
    # the give-up is minimal and knows the reason its dead letters were for
    assert h.dead_letter_attempts[0] == (("p0", 0), "invalid", None, False, "invalid")
    assert h.dead_letter_attempts[-1] == (("p0", 0), "unsettleable", {"failures": 6}, True, "invalid")
    assert p.settled_upto == 1 and p.retrying == 0 and h.hold_changes[-1] == ("p0", 0)
    assert not p.dispatched and not p.timers  # every redelivery's timer done and forgotten


async def test_a_send_that_outlasted_the_settle_timeout_is_awaited_again_not_sent_twice(waits):
    h = Harness(settle_timeout=0.05)
    p = h.partition("p0")
    h.add(p, 0, "a")
    arrived = asyncio.Event()
    calls: list[int] = []

    async def slow_send() -> str:
        calls.append(1)
        await arrived.wait()
        return "confirmed"

    h.send = slow_send
    (message,) = await h.handed_out()
    with pytest.raises(SettleFailed):
        await message.dead_letter("invalid")  # no answer in time
    arrived.set()  # the first copy arrives after all
    await waits.release_all()
    (message,) = await h.handed_out()
    await message.dead_letter("invalid")
    assert calls == [1] and p.settled_upto == 0 and p.first_unsettled() is None


async def test_a_closed_partition_hands_out_nothing_and_its_holds_end_without_redelivery(waits):
    h = Harness()
    p = h.partition("p0")
    for position, lane in enumerate("abcd"):
        h.add(p, position, lane)
    a0, b1, c2, d3 = await h.handed_out()
    requeue = asyncio.create_task(a0.requeue(30.0))
    h.send = _failing(ConnectionError("broker away"))
    with pytest.raises(SettleFailed):
        await d3.dead_letter("invalid")  # its redelivery waits for a backoff
    await asyncio.sleep(0)
    assert len(p.timers) == 1 and h.hold_changes == [("p0", 1), ("p0", 2)]
    h.add(p, 4, "e")  # parked behind the holds
    h.order.close(p)
    await requeue  # woken by the close, not by its delay
    await asyncio.sleep(0)
    assert not p.timers  # the redelivery cancelled
    assert p.busy()  # b1 and c2 are still in flight: a revoke's drain waits for them
    await b1.ack()  # closed but still held (draining): it counts
    assert p.unsettled == 4 and p.first_unsettled().position == 0  # a0 was not settled by its requeue
    late = h.add(p, 5, "f")
    assert late.state == ordered.WAITING  # a closed partition offers nothing
    assert await h.handed_out() == []  # nothing more of a closed partition, not even a0 again
    with pytest.raises(SettleFailed):
        await c2.dead_letter("invalid")  # closed: not redelivered, no hold
    assert h.hold_changes == [("p0", 1), ("p0", 2)] and not p.timers
    h.order.forget(p)
    h.order.forget(p)  # twice: counted once
    assert "p0" not in h.order.partitions and h.order.unsettled == 0 and p.unsettled == 0
    settled = h.settled
    h.send = h._send_ok
    other = Harness()
    q = other.partition("q")
    other.add(q, 0, "a")
    (stray,) = await other.handed_out()
    other.order.forget(q)
    await stray.ack()  # a late settlement of a forgotten partition is ignored
    assert other.order.unsettled == 0 and q.settled_upto is None and h.settled == settled


async def test_a_record_ready_when_its_partition_closes_is_not_handed_out(waits):
    h = Harness()
    p, other = h.partition("p0"), h.partition("p1")
    h.add(p, 0, "a")
    h.add(other, 0, "a")
    h.order.close(p)  # p's record is queued already
    assert where(await h.handed_out()) == [("p1", 0)]  # skipped, and the hand-out goes on


async def test_a_requeue_of_a_closed_or_stopping_partition_does_not_hold_it(waits):
    h = Harness()
    p, other = h.partition("p0"), h.partition("p1")
    h.add(p, 0, "a")
    h.add(other, 0, "a")
    a0, q0 = await h.handed_out()
    h.order.close(p)
    await a0.requeue(30.0)
    h.stopping.set()
    await q0.requeue(30.0)
    assert h.hold_changes == [] and waits.delays == [] and p.retrying == 0 and other.retrying == 0


async def test_stopping_wakes_every_hold_and_ends_the_hand_out_leaving_what_was_ready_unsettled(waits):
    h = Harness()
    p = h.partition("p0")
    h.add(p, 0, "a")
    (a0,) = await h.handed_out()
    h.add(p, 1, "b")
    requeue = asyncio.create_task(a0.requeue(30.0))
    await asyncio.sleep(0)
    h.stopping.set()  # the source stops: its holds end at once
    await requeue
    h.order.stop()
    assert [m async for m in h.out] == []
    assert p.unsettled == 2 and p.settled_upto is None


async def test_a_settlement_under_way_keeps_the_partition_busy_until_it_is_done_or_cancelled(waits):
    h = Harness()
    p = h.partition("p0")
    h.add(p, 0, "a")
    (a0,) = await h.handed_out()
    arrived = asyncio.Event()

    async def slow_send() -> str:
        await arrived.wait()
        return "confirmed"

    h.send = slow_send
    sending = asyncio.create_task(a0.dead_letter("invalid"))
    await asyncio.sleep(0)
    assert p.busy() and a0 in p.dispatched  # a revoke's drain waits for the dead letter
    arrived.set()
    await sending
    assert not p.busy() and not p.dispatched
    h.add(p, 1, "b")
    (b1,) = await h.handed_out()
    requeue = asyncio.create_task(b1.requeue(1.0))
    await asyncio.sleep(0)
    assert p.busy()  # and for a requeue's hold
    await waits.release_all()
    await requeue
    assert not p.busy()
    (b1,) = await h.handed_out()
    arrived.clear()
    sending = asyncio.create_task(b1.dead_letter("invalid"))
    await asyncio.sleep(0)
    sending.cancel()  # the runner's settle deadline
    with pytest.raises(asyncio.CancelledError):
        await sending
    assert b1 in p.dispatched and not p.busy()  # given up waiting: the drain does not wait for it


async def test_each_confirmed_send_is_sent_again_next_time():
    h = Harness()
    p = h.partition("p0")
    rec = h.add(p, 0, "a")
    assert await h.order.send_once(rec, "result", h.send) == "confirmed"
    assert await h.order.send_once(rec, "result", h.send) == "confirmed"
    assert h.sent == [1, 1] and rec.sends == {}


async def test_every_settlement_is_reported_to_the_source():
    h = Harness()
    p = h.partition("p0")
    h.add(p, 0, "a")
    h.add(p, 1, "b")
    a0, b1 = await h.handed_out()
    assert a0.attributes == {"lane": "a"}
    before = h.settled
    await a0.ack()
    await b1.dead_letter("invalid")
    assert h.settled == before + 2 and not p.dispatched


async def test_for_source_takes_the_sources_name_and_stop_and_the_shared_settings():
    class Source(BrokerSource):
        name = "ordered-test"

        def messages(self) -> Any:
            raise NotImplementedError

        async def stop_consuming(self) -> None:
            self.begin_stopping()

    source = Source()
    settings = BrokerSidecarSettings(backoff_base=0.5, backoff_max=7.0, settle_timeout=3.0, max_body_bytes=2048)
    made: list[OrderedRecord] = []
    holds: list[Any] = []
    settles: list[int] = []

    def make(rec: OrderedRecord) -> OrderedMessage:
        made.append(rec)
        return OrderedMessage(order, rec, rec.item, (rec.position,))

    order: OrderedPartitions[OrderedPartition] = OrderedPartitions.for_source(
        source, settings, make, on_hold_change=holds.append, on_settled=lambda: settles.append(1)
    )
    assert (order.name, order.backoff_base, order.backoff_max, order.settle_timeout, order.max_body_bytes) == (
        "ordered-test", 0.5, 7.0, 3.0, 2048,
    )  # fmt: skip
    p = OrderedPartition("p0")
    order.partitions["p0"] = p
    out = order.messages()
    order.add(p, OrderedRecord(p, b"{}", 0, "a"))
    await (await out.__anext__()).ack()
    assert settles == [1]
    rec = OrderedRecord(p, b"x" * 2049, 1, "a")
    order.add(p, rec)
    message = await out.__anext__()
    assert made[-1] is rec and message.refusal is not None
    requeue = asyncio.create_task(message.requeue(30.0))
    await asyncio.sleep(0)
    assert holds == [p]
    await source.stop_consuming()  # the source's stop ends the hold
    await requeue
    order.stop()
    assert [m async for m in out] == []
    assert settles == [1]


async def test_a_body_over_the_limit_is_handed_out_refused():
    h = Harness(max_body_bytes=8)
    p = h.partition("p0")
    h.add(p, 0, "a", b"x" * 9)
    h.add(p, 1, "b", b"x" * 8)
    big, small = await h.handed_out()
    assert big.refusal == (ordered.BODY_TOO_LARGE, {"bytes": 9, "limit": 8}) and small.refusal is None


# -- the position written at stop (a Kafka commit, a Kinesis checkpoint) ------------------------


class Attempts:
    """Stands in for the source's write at stop: refuses the first ``refusals`` attempts, then
    writes; records the timeout each attempt was given."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.timeouts: list[float] = []

    async def __call__(self, timeout: float) -> bool:
        self.timeouts.append(timeout)
        return len(self.timeouts) > self.refusals


@pytest.mark.parametrize("refusals", [1, 3])
async def test_a_position_write_refused_at_stop_is_made_again_until_it_lands(monkeypatch, caplog, refusals):
    monkeypatch.setattr(ordered, "STOP_WRITE_PAUSE", 0.001)
    attempt = Attempts(refusals=refusals)
    with caplog.at_level("WARNING", logger=ordered.__name__):
        assert await ordered.write_position_at_stop(attempt, budget=60.0, per_attempt=5.0, what="the commit") is True
    assert attempt.timeouts == [5.0] * (refusals + 1), "each attempt gets its own per-attempt timeout while the budget lasts"
    assert [r.getMessage() for r in caplog.records] == [f"the commit at stop landed at attempt {refusals + 1}"]


async def test_a_position_write_that_lands_at_once_is_one_attempt_and_says_nothing(caplog):
    attempt = Attempts(refusals=0)
    with caplog.at_level("WARNING", logger=ordered.__name__):
        assert await ordered.write_position_at_stop(attempt, budget=60.0, per_attempt=5.0, what="the commit") is True
    assert attempt.timeouts == [5.0] and caplog.records == []


async def test_a_position_write_refused_until_its_budget_is_spent_gives_up_and_says_so(monkeypatch, caplog):
    monkeypatch.setattr(ordered, "STOP_WRITE_PAUSE", 0.01)
    attempt = Attempts(refusals=10**9)
    with caplog.at_level("WARNING", logger=ordered.__name__):
        assert await ordered.write_position_at_stop(attempt, budget=0.2, per_attempt=5.0, what="the checkpoint") is False
    # made again, a pause apart (not in a tight loop), each given no more than the budget left
    assert 2 <= len(attempt.timeouts) <= 21, attempt.timeouts
    assert all(0 < t <= 0.2 for t in attempt.timeouts), attempt.timeouts
    assert attempt.timeouts == sorted(attempt.timeouts, reverse=True), "the budget left only shrinks"
    [record] = caplog.records
    assert record.getMessage().startswith(f"the checkpoint at stop failed {len(attempt.timeouts)} time(s) within 0.2s")


async def test_a_position_write_with_no_budget_left_is_tried_once_with_a_millisecond(monkeypatch):
    monkeypatch.setattr(ordered, "STOP_WRITE_PAUSE", 0.01)
    attempt = Attempts(refusals=1)
    assert await ordered.write_position_at_stop(attempt, budget=0.0, per_attempt=5.0, what="the commit") is False
    assert attempt.timeouts == [0.001], "one attempt, never with a timeout of 0 or less"
