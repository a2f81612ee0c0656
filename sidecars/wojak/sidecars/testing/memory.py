"""A broker in memory, with a broker's semantics, and its ``Source``: what the contract suite and
the stream scenario run against on every change, before each broker runs them for real.

``MemoryBroker`` is one queue with a dead-letter queue and a result list. A delivered message
stays the broker's until it is acked, dead-lettered or requeued; when its consumer goes (closes,
or crashes: ``MemorySource.crash``, the in-memory ``kill -9``), whatever it held unsettled goes
back to the head of the queue, marked redelivered, as RabbitMQ does with unacked messages.
After a crash the consumer's settlements fail (``SettleFailed``: the connection is gone).

``MemorySource`` is written the way a broker's source is (docs/sidecar-kit.md): a
``BrokerSource`` whose coordinates are ``(queue, message id)`` (a hash of the body when the
publisher set none), which refuses an oversized body unparsed, and whose requeue holds the
message for its backoff (a pause that resumes at once when the sidecar stops).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import itertools
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from wojak.sidecars._core.source import BrokerSource, SettleFailed, SourceMessage

BODY_TOO_LARGE = "body_too_large"


@dataclass
class DeadLetter:
    """A dead-lettered message as a broker's DLQ holds it: the reason code, its detail, the body."""

    reason: str
    detail: Any
    body: bytes


@dataclass
class Envelope:
    body: bytes
    message_id: str | None
    tag: int
    redelivered: bool = False
    deliveries: int = 0
    attributes: dict[str, Any] = field(default_factory=dict)


class MemoryBroker:
    """One queue, its dead-letter queue and the published results."""

    def __init__(self, queue: str = "memory.orders") -> None:
        self.queue = queue
        self._ready: collections.deque[Envelope] = collections.deque()
        self._tags = itertools.count(1)
        self._changed = asyncio.Condition()
        self.dead: list[DeadLetter] = []
        self.results: list[dict[str, Any]] = []
        self.consumers: set[MemorySource] = set()

    # -- what a publisher and an operator see ------------------------------------------

    async def publish(self, body: bytes, message_id: str | None = None, **attributes: Any) -> None:
        self._ready.append(Envelope(body, message_id, next(self._tags), attributes=attributes))
        await self._notify()

    def pending(self) -> int:
        """Messages waiting in the queue (not held by a consumer)."""
        return len(self._ready)

    def unacked(self) -> int:
        return sum(len(c.held) for c in self.consumers)

    def take_dead_letters(self) -> list[DeadLetter]:
        letters, self.dead = self.dead, []
        return letters

    # -- what a consumer does ----------------------------------------------------------

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _next(self, consumer: MemorySource) -> Envelope | None:
        async with self._changed:
            while not self._ready and consumer.consuming:
                await self._changed.wait()
            if not consumer.consuming:
                return None
            envelope = self._ready.popleft()
        envelope.deliveries += 1
        consumer.held[envelope.tag] = envelope
        return envelope

    async def _return(self, envelopes: list[Envelope]) -> None:
        """Back to the head of the queue, in their order, marked redelivered."""
        for envelope in reversed(envelopes):
            envelope.redelivered = True
            self._ready.appendleft(envelope)
        await self._notify()


class MemoryMessage(SourceMessage):
    def __init__(self, source: MemorySource, envelope: Envelope) -> None:
        self._source = source
        self.envelope = envelope
        body = envelope.body
        mid = envelope.message_id or "sha256:" + hashlib.sha256(body).hexdigest()
        super().__init__(
            body,
            (source.broker.queue, mid),
            {
                "message_id": envelope.message_id,
                "redelivered": envelope.redelivered,
                "deliveries": envelope.deliveries,
                **envelope.attributes,
            },
        )

    async def _ack(self) -> None:
        await self._source.settle_call(self._source._remove(self.envelope), "ack", self.coordinates)

    async def _requeue(self, delay: float) -> None:
        try:
            if delay > 0:
                await self._source.pause(delay)
        finally:  # also when cancelled mid-delay: the message goes back now, never stays held
            await self._source.settle_call(self._source._requeue(self.envelope), "nack", self.coordinates)

    async def _dead_letter(self, reason: str, detail: Any) -> None:
        source = self._source
        await source.settle_call(
            source._remove(self.envelope, DeadLetter(reason, detail, self.body)), "dead letter", self.coordinates
        )


class MemorySource(BrokerSource):
    name = "memory"

    def __init__(self, broker: MemoryBroker, *, settle_timeout: float = 10.0, max_body_bytes: int = 65536) -> None:
        super().__init__(settle_timeout)
        self.broker = broker
        self.max_body_bytes = max_body_bytes
        self.held: dict[int, Envelope] = {}  # delivered, not yet settled
        self.open = False
        self.crashed = False

    @property
    def consuming(self) -> bool:
        return self.open and not self.stopping and not self.crashed

    async def __aenter__(self) -> MemorySource:
        self.open = True
        self.broker.consumers.add(self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_consuming()
        await self._close()

    async def _close(self) -> None:
        """The connection goes: everything held returns to the queue."""
        self.open = False
        held, self.held = list(self.held.values()), {}
        self.broker.consumers.discard(self)
        await self.broker._return(held)

    async def crash(self) -> None:
        """``kill -9``: the connection drops at once; no settlement of this consumer lands."""
        self.crashed = True
        self.begin_stopping()
        await self._close()

    async def messages(self) -> AsyncIterator[SourceMessage]:
        while (envelope := await self.broker._next(self)) is not None:
            message = MemoryMessage(self, envelope)
            if len(envelope.body) > self.max_body_bytes:  # refused: never parsed, never sent to the engine
                message.refusal = (BODY_TOO_LARGE, {"bytes": len(envelope.body), "limit": self.max_body_bytes})
            yield message

    async def stop_consuming(self) -> None:
        if self.begin_stopping():
            await self.broker._notify()  # the iterator ends

    def is_ready(self) -> bool:
        return self.consuming

    async def publish_result(self, message: SourceMessage, reply: dict[str, Any]) -> None:
        self._check_connected()
        self.broker.results.append(reply)

    def _check_connected(self) -> None:
        if self.crashed or not self.open:
            raise SettleFailed("the connection is gone")

    async def _remove(self, envelope: Envelope, dead: DeadLetter | None = None) -> None:
        self._check_connected()
        if self.held.pop(envelope.tag, None) is not None and dead is not None:
            self.broker.dead.append(dead)

    async def _requeue(self, envelope: Envelope) -> None:
        self._check_connected()
        if self.held.pop(envelope.tag, None) is not None:
            await self.broker._return([envelope])
