"""Ordered partitions: the hand-out and settlement rules of a partitioned stream (Kafka
partitions, Kinesis shards), written once.

A stream consumer cannot ack one record: it commits a position. ``OrderedPartitions`` keeps,
for every partition the source holds, the records read and not yet settled, and hands them to
the runner by these rules:

* **Order per lane.** Records are added in the partition's order. A record belongs to a *lane*
  (the order's account, or the record's key): it is handed out only once every earlier record
  of its lane in that partition is settled. Lanes of one partition are in flight together.
* **A held partition hands out nothing else.** A ``requeue`` (``retry``) or a settlement the
  broker did not take holds its record: the record waits its backoff and is then handed out
  again ahead of everything else, while the rest of its partition is *parked* (not handed out)
  until it is settled. Other partitions go on. Nothing is dropped after a number of attempts.
* **The watermark never passes an unsettled record.** ``first_unsettled()`` is the lowest
  record not yet settled, ``settled_upto`` the position of the last record with it and every
  earlier one settled: whatever the broker commits (Kafka: the next offset; Kinesis: the
  checkpoint) comes from these, so a crash replays at most the unsettled suffix.
* **Redelivery backoff.** A dead letter the broker did not confirm is handed out again after
  ``capped_backoff(failures, base, max)``, its partition held meanwhile; a send that outlasted
  the settle timeout stays pending and the next attempt waits for it instead of sending a
  second copy (``send_once``).
* **Closing.** A closed partition (revoked, its lease lost) hands out nothing more and its held
  records wake at once; a forgotten one ignores late settlements (the next owner reads them
  again and the engine answers ``duplicate``).

The source supplies the broker's part: how a record becomes a message (``make_message``), what
a hold or a resume means for fetching (``on_hold_change``), what a settlement frees
(``on_settled``), and the dead-letter call itself.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from typing import Any, AsyncIterator, Awaitable, Callable, Generic, Hashable, TypeVar

from wojak.sidecars._core.settings import BrokerSidecarSettings
from wojak.sidecars._core.source import BrokerSource, SettleFailed, SourceMessage, capped_backoff, wait_any

log = logging.getLogger(__name__)

BODY_TOO_LARGE = "body_too_large"

WAITING, READY, INFLIGHT, PARKED, DONE = "waiting", "ready", "inflight", "parked", "done"

T = TypeVar("T")


class OrderedRecord:
    """One record read from a partition: the broker's ``item``, its ``position`` (offset,
    sequence number) and its ``lane``."""

    __slots__ = ("partition", "item", "position", "lane", "state", "retrying", "failures", "last_reason", "sends")

    def __init__(self, partition: "OrderedPartition", item: Any, position: Any, lane: Hashable) -> None:
        self.partition = partition
        self.item = item
        self.position = position
        self.lane = lane
        self.state = WAITING  # waiting | ready | inflight | parked | done
        self.retrying = False  # held or redelivered: its partition hands out nothing else
        self.failures = 0  # settlements the broker did not take (drives the redelivery backoff)
        self.last_reason: str | None = None  # the reason of its last dead letter attempt
        # a dead letter / result still on its way (one that outlasted the settle timeout may yet
        # arrive): the next attempt waits for it instead of sending another copy
        self.sends: dict[str, asyncio.Future[Any]] = {}


class OrderedPartition:
    """The records of one partition not yet behind the watermark, its lanes and its holds."""

    def __init__(self, key: Hashable) -> None:
        self.key = key
        self.records: collections.deque[OrderedRecord] = collections.deque()  # read order; settled prefix popped
        self.lanes: dict[Hashable, collections.deque[OrderedRecord]] = {}
        self.dispatched: set[OrderedMessage] = set()  # handed out, settlement not finished
        self.retrying = 0  # records held: while > 0 nothing else is handed out
        self.unsettled = 0
        self.settled_upto: Any = None  # the last position with it and every earlier record settled
        self.closed = False  # revoked / lease lost: nothing more is handed out
        self.wake = asyncio.Event()  # set when closed: held records end their wait at once
        self.timers: set[asyncio.Task[None]] = set()

    def first_unsettled(self) -> OrderedRecord | None:
        return self.records[0] if self.records else None

    def busy(self) -> bool:
        """A record handed out whose settlement has not finished."""
        return any(m.settled is None or m._busy for m in self.dispatched)


class OrderedMessage(SourceMessage):
    """A message of an ordered partition: ``ack`` settles it, ``requeue`` holds it in place,
    ``dead_letter`` / ``give_up`` call the source's ``_send_dead_letter``."""

    def __init__(
        self,
        order: "OrderedPartitions[Any]",
        rec: OrderedRecord,
        body: bytes,
        coordinates: tuple[Any, ...],
        attributes: dict[str, Any] | None = None,
    ) -> None:
        self._order = order
        self._rec = rec
        self._busy = False  # a settlement under way (a revoke's drain waits for it)
        super().__init__(body, coordinates, attributes)

    async def _ack(self) -> None:
        self._order.finish(self)

    async def _requeue(self, delay: float) -> None:
        self._busy = True
        try:
            await self._order.retry_in_place(self, delay)
        finally:
            self._busy = False

    async def _dead_letter(self, reason: str, detail: Any) -> None:
        self._rec.last_reason = reason
        await self._send_dead_letter(reason, detail, minimal=False)

    async def _give_up(self, reason: str, detail: Any) -> None:
        await self._send_dead_letter(reason, detail, minimal=True)

    async def _send_dead_letter(self, reason: str, detail: Any, *, minimal: bool) -> None:
        raise NotImplementedError


P = TypeVar("P", bound=OrderedPartition)


class OrderedPartitions(Generic[P]):
    """The partitions a source holds and the one queue their records are handed out from."""

    def __init__(
        self,
        name: str,
        make_message: Callable[[OrderedRecord], OrderedMessage],
        stopping: asyncio.Event,
        *,
        backoff_base: float,
        backoff_max: float,
        settle_timeout: float,
        max_body_bytes: int | None = None,
        on_hold_change: Callable[[Any], None] | None = None,
        on_settled: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.partitions: dict[Hashable, P] = {}
        self.unsettled = 0  # read and not settled, over every partition held
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.settle_timeout = settle_timeout
        self.max_body_bytes = max_body_bytes
        self._make_message = make_message
        self._stopping = stopping
        self._on_hold_change = on_hold_change
        self._on_settled = on_settled
        self._ready: collections.deque[OrderedMessage] = collections.deque()
        self._ready_event = asyncio.Event()

    @classmethod
    def for_source(
        cls,
        source: BrokerSource,
        settings: BrokerSidecarSettings,
        make_message: Callable[[OrderedRecord], OrderedMessage],
        *,
        on_hold_change: Callable[[Any], None] | None = None,
        on_settled: Callable[[], None] | None = None,
    ) -> "OrderedPartitions[P]":
        """The ordered partitions of ``source`` (its name, its stop), with the backoff, settle
        timeout and body limit of the shared sidecar settings."""
        return cls(
            source.name,
            make_message,
            source._stopping,
            backoff_base=settings.backoff_base,
            backoff_max=settings.backoff_max,
            settle_timeout=settings.settle_timeout,
            max_body_bytes=settings.max_body_bytes,
            on_hold_change=on_hold_change,
            on_settled=on_settled,
        )

    # -- partitions --------------------------------------------------------------------

    def held(self, p: OrderedPartition) -> bool:
        """``p`` is still this source's (not forgotten); it may be closed and draining."""
        return self.partitions.get(p.key) is p

    def current(self, message: OrderedMessage) -> bool:
        """Its partition is held, open, and the source is not stopping."""
        p = message._rec.partition
        return not p.closed and self.held(p) and not self._stopping.is_set()

    def close(self, p: OrderedPartition) -> None:
        """Hand out nothing more of ``p``; its held records stop waiting (not redelivered)."""
        p.closed = True
        p.wake.set()
        for timer in list(p.timers):
            timer.cancel()

    def forget(self, p: OrderedPartition) -> None:
        """``p`` is no longer this source's: a late settlement of its records is ignored."""
        if self.held(p):
            del self.partitions[p.key]
        self.unsettled -= p.unsettled
        p.unsettled = 0

    def stop(self) -> None:
        """The source stops: held records wake, nothing more is handed out, ``messages`` ends.
        What was ready is handed to nobody: unsettled, so the watermark stays below it."""
        for p in self.partitions.values():
            p.wake.set()
        self._ready.clear()
        self._ready_event.set()

    # -- records -----------------------------------------------------------------------

    def add(self, p: OrderedPartition, rec: OrderedRecord) -> None:
        """``rec``, the next record of ``p`` in order: handed out at once if its lane is free."""
        p.records.append(rec)
        p.unsettled += 1
        self.unsettled += 1
        lane = p.lanes.get(rec.lane)
        if lane is None:
            p.lanes[rec.lane] = collections.deque((rec,))
            self.offer(rec)
        else:
            lane.append(rec)

    def offer(self, rec: OrderedRecord, *, first: bool = False) -> None:
        """Hand ``rec`` (the head of its lane) out, unless its partition is held for another."""
        p = rec.partition
        if p.closed or self._stopping.is_set():
            return
        if p.retrying and not rec.retrying:
            rec.state = PARKED
            return
        rec.state = READY
        message = self._make_message(rec)
        size, limit = len(message.body), self.max_body_bytes
        if limit is not None and size > limit:  # refused: never parsed, never sent to the engine
            log.warning("message %s is %d bytes (> %d): %s", message.coordinates, size, limit, BODY_TOO_LARGE)
            message.refusal = (BODY_TOO_LARGE, {"bytes": size, "limit": limit})
        if first:
            self._ready.appendleft(message)
        else:
            self._ready.append(message)
        self._ready_event.set()

    async def messages(self) -> AsyncIterator[SourceMessage]:
        """The records handed out, in order, until ``stop``."""
        while True:
            while not self._ready:
                if self._stopping.is_set():
                    return
                self._ready_event.clear()
                await self._ready_event.wait()
            if self._stopping.is_set():
                return
            message = self._ready.popleft()
            rec = message._rec
            p = rec.partition
            if p.closed or not self.held(p) or rec.state != READY:
                continue  # closed meanwhile: the next owner has it
            if p.retrying and not rec.retrying:
                rec.state = PARKED  # held for a retry: handed out when it is settled
                continue
            rec.state = INFLIGHT
            p.dispatched.add(message)
            yield message

    def finish(self, message: OrderedMessage) -> None:
        """``message``'s record is settled: the watermark may move past it; its lane goes on."""
        rec = message._rec
        p = rec.partition
        p.dispatched.discard(message)
        if not self.held(p) or rec.state == DONE:
            return  # forgotten: the next owner settles it again (a duplicate)
        rec.state = DONE
        p.unsettled -= 1
        self.unsettled -= 1
        while p.records and p.records[0].state == DONE:
            p.settled_upto = p.records.popleft().position
        lane = p.lanes.get(rec.lane)
        if lane is not None:
            with contextlib.suppress(ValueError):
                lane.remove(rec)  # the head, always
            if not lane:
                del p.lanes[rec.lane]
        if rec.retrying:
            rec.retrying = False
            p.retrying -= 1
            if p.retrying == 0:
                self._resume(p)
        elif lane:
            self.offer(lane[0])
        if self._on_settled is not None:
            self._on_settled()

    def _resume(self, p: OrderedPartition) -> None:
        """``p``'s holds are over: hand out its parked lane heads."""
        if p.closed:
            return
        for lane in p.lanes.values():
            head = lane[0]
            if head.state in (PARKED, WAITING):
                self.offer(head)
        if self._on_hold_change is not None:
            self._on_hold_change(p)

    def _hold(self, rec: OrderedRecord) -> None:
        if not rec.retrying:
            rec.retrying = True
            rec.partition.retrying += 1
            if self._on_hold_change is not None:
                self._on_hold_change(rec.partition)

    async def _wait(self, p: OrderedPartition, delay: float) -> None:
        await wait_any(delay, self._stopping, p.wake)

    async def retry_in_place(self, message: OrderedMessage, delay: float) -> None:
        """``requeue``: hold the record ``delay`` seconds with its partition handing out nothing
        else, then hand it out again first. Stopping or closed, it is left unsettled (the
        watermark stays below it; whoever reads the partition next gets it again)."""
        rec = message._rec
        p = rec.partition
        try:
            if not self.current(message):
                return
            self._hold(rec)
            await self._wait(p, delay)
        finally:
            p.dispatched.discard(message)
        if self.current(message) and rec.state != DONE:
            self.offer(rec, first=True)

    def redeliver_later(self, message: OrderedMessage) -> None:
        """A settlement the broker did not take: the record is handed out again after a capped
        backoff (longer with each failure), its partition held meanwhile (order kept)."""
        rec = message._rec
        p = rec.partition
        p.dispatched.discard(message)
        if not self.current(message) or rec.state == DONE:
            return
        self._hold(rec)
        rec.failures += 1
        delay = capped_backoff(rec.failures, self.backoff_base, self.backoff_max)

        async def later() -> None:
            await self._wait(p, delay)
            if self.current(message) and rec.state != DONE:
                self.offer(rec, first=True)

        timer = asyncio.create_task(later(), name=f"wojak-{self.name}-redeliver-{message.coordinates}")
        p.timers.add(timer)
        timer.add_done_callback(p.timers.discard)

    # -- sends that settle -------------------------------------------------------------

    async def send_once(self, rec: OrderedRecord, what: str, send: Callable[[], Awaitable[T]]) -> T:
        """``rec``'s pending ``what`` send, or a new one, awaited within the settle timeout. One
        that did not answer in time stays pending (it may still arrive): the next attempt waits
        for it rather than sending a second copy."""
        pending = rec.sends.get(what)
        if pending is None or (pending.done() and (pending.cancelled() or pending.exception() is not None)):
            pending = asyncio.ensure_future(send())
            pending.add_done_callback(_retrieve)
            rec.sends[what] = pending
        result: T = await asyncio.wait_for(asyncio.shield(pending), self.settle_timeout)
        rec.sends.pop(what, None)
        return result

    async def settle_by_send(
        self,
        message: OrderedMessage,
        reason: str,
        send: Callable[[], Awaitable[Any]],
        *,
        counts: Callable[[BaseException], bool],
        why: Callable[[BaseException], str],
    ) -> None:
        """Settle ``message`` by a dead letter ``send()`` the broker must confirm: settled once
        confirmed; otherwise redelivered in place after a backoff and ``SettleFailed`` raised
        (``counts(exc)``: whether the failure is the record's own, toward giving it up)."""
        message._busy = True
        try:
            await send()
        except Exception as exc:
            counted = counts(exc)
            log.warning(
                "dead-lettering %s (%s) failed (%s); it is retried in place%s",
                message.coordinates,
                reason,
                why(exc),
                "" if counted else " (the broker's failure: not counted toward giving it up)",
            )
            self.redeliver_later(message)
            raise SettleFailed(f"the dead letter was not confirmed ({why(exc)})", counts=counted) from None
        else:
            self.finish(message)
        finally:
            message._busy = False


STOP_WRITE_PAUSE = 0.1  # seconds between attempts of the position written at stop


async def write_position_at_stop(
    attempt: Callable[[float], Awaitable[bool]], budget: float, per_attempt: float, what: str
) -> bool:
    """The settled position written at stop (a Kafka commit, a Kinesis checkpoint): what it does not
    cover the next owner replays, so an attempt refused (a rebalance under way, a slow coordinator
    or table) is made again every ``STOP_WRITE_PAUSE`` until ``budget`` seconds are spent.
    ``attempt(timeout)`` is True once written (or nothing was left to write). Says how it went."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    attempts = 0
    while True:
        attempts += 1
        if await attempt(max(0.001, min(per_attempt, deadline - loop.time()))):
            if attempts > 1:
                log.warning("%s at stop landed at attempt %d", what, attempts)
            return True
        if deadline - loop.time() <= STOP_WRITE_PAUSE:
            log.warning(
                "%s at stop failed %d time(s) within %.1fs; whoever reads these records next replays from the "
                "last one written (the engine answers the replays duplicate)",
                what,
                attempts,
                budget,
            )
            return False
        await asyncio.sleep(STOP_WRITE_PAUSE)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Marks a send's failure as seen (whoever awaits it next reports it)."""
    if not future.cancelled():
        future.exception()


__all__ = ["OrderedMessage", "OrderedPartition", "OrderedPartitions", "OrderedRecord"]
