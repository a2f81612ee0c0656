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
from wojak.sidecars._core.source import SettleFailed


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
        super().__init__(harness.order, rec, rec.item, (rec.partition.key, rec.position))

    async def _send_dead_letter(self, reason: str, detail: Any, *, minimal: bool) -> None:
        h = self.harness
        h.dead_letter_attempts.append((self.coordinates, reason, minimal))
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
        self.dead_letter_attempts: list[tuple[Any, str, bool]] = []
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
    h.add(p, 0, "a")
    h.add(p, 1, "b")
    h.add(p, 2, "b")
    h.add(p, 3, "c")
    h.add(other, 0, "a")
    a0, b1, c3, q0 = await h.handed_out()
    requeue = asyncio.create_task(a0.requeue(1.0))
    await asyncio.sleep(0)
    assert waits.delays == [1.0] and h.hold_changes == [("p0", 1)]
    await b1.ack()  # its lane's next record would go out, but the partition is held
    await c3.ack()
    h.add(p, 4, "d")  # a new lane too
    h.add(other, 1, "a")
    await q0.ack()
    assert where(await h.handed_out()) == [("p1", 1)]  # the other partition goes on
    await waits.release_all()
    await requeue
    assert a0.settled is Settlement.REQUEUE
    again = await h.handed_out()
    assert where(again) == [("p0", 0)]  # the held record first, alone
    await again[0].ack()  # settled: the partition resumes, its parked heads go out in order
    assert h.hold_changes == [("p0", 1), ("p0", 0)]
    assert where(await h.handed_out()) == [("p0", 2), ("p0", 4)]


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
    for _ in range(5):
        with pytest.raises(SettleFailed) as failed:
            await message.dead_letter("invalid")
        failures.append(failed.value.counts)
        if b1.settled is None:
            await b1.ack()
        assert await h.handed_out() == []  # held: nothing of p0 goes out during the backoff
        await waits.release_all()
        (message,) = await h.handed_out()  # then the same record again, ahead of the rest
        assert message.coordinates == ("p0", 0)
    assert waits.delays == [0.5, 1.0, 2.0, 2.0, 2.0]  # base * 2**(n-1), capped at backoff_max
    assert failures == [False] * 5  # the broker's failure: never counted toward giving it up
    h.send = _failing(ValueError("too large"))
    with pytest.raises(SettleFailed) as failed:
        await message.dead_letter("invalid")
    assert failed.value.counts  # the record's own failure counts
    await waits.release_all()
    (message,) = await h.handed_out()
    h.send = h._send_ok
    await message.give_up("unsettleable")
    assert h.dead_letter_attempts[-1] == (("p0", 0), "unsettleable", True)
    assert p.settled_upto == 1 and p.retrying == 0 and h.hold_changes[-1] == ("p0", 0)


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
    for position, lane in enumerate("abc"):
        h.add(p, position, lane)
    a0, b1, c2 = await h.handed_out()
    requeue = asyncio.create_task(a0.requeue(30.0))
    await asyncio.sleep(0)
    h.order.close(p)
    await requeue  # woken by the close, not by its delay
    assert p.busy()  # b1 and c2 are still in flight: a revoke's drain waits for them
    await b1.ack()  # closed but still held (draining): it counts
    assert p.unsettled == 2 and p.first_unsettled().position == 0  # a0 was not settled by its requeue
    h.add(p, 3, "d")
    assert await h.handed_out() == []  # nothing more of a closed partition, not even a0 again
    h.order.forget(p)
    assert "p0" not in h.order.partitions and h.order.unsettled == 0
    settled = h.settled
    await c2.ack()  # a late settlement of a forgotten partition is ignored
    assert h.settled == settled and h.order.unsettled == 0 and p.settled_upto is None


async def test_stop_ends_the_hand_out_and_leaves_what_was_ready_unsettled(waits):
    h = Harness()
    p = h.partition("p0")
    h.add(p, 0, "a")
    (a0,) = await h.handed_out()
    h.add(p, 1, "b")
    requeue = asyncio.create_task(a0.requeue(30.0))
    await asyncio.sleep(0)
    h.stopping.set()
    h.order.stop()
    await requeue  # woken by the stop
    assert [m async for m in h.out] == []
    assert p.unsettled == 2 and p.settled_upto is None


async def test_a_body_over_the_limit_is_handed_out_refused():
    h = Harness(max_body_bytes=8)
    p = h.partition("p0")
    h.add(p, 0, "a", b"x" * 9)
    h.add(p, 1, "b", b"x" * 8)
    big, small = await h.handed_out()
    assert big.refusal == (ordered.BODY_TOO_LARGE, {"bytes": 9, "limit": 8}) and small.refusal is None
