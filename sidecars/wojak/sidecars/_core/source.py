"""The source-message contract every broker sidecar implements.

A message is settled exactly once: ``ack``, ``requeue``, ``dead_letter`` or ``give_up``
(``SourceMessage.settled`` says which: a ``Settlement``). A second settlement raises
``AlreadySettled`` instead of acting twice on the broker.

A settlement the broker did not take (an error, or no answer within the source's settle
timeout) raises ``SettleFailed``: the message stays the broker's, which redelivers it (the
engine answers the redelivery ``duplicate`` if it had already decided). The runner counts
these per message and, after too many, calls ``give_up`` instead of handling it again.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

from wojak.engine.protocol import Settlement
from wojak.errors import WojakError

log = logging.getLogger(__name__)
T = TypeVar("T")


def capped_backoff(attempt: int, base: float, cap: float) -> float:
    """``base * 2**(attempt - 1)`` seconds, at most ``cap``: every retry delay of the kit and the
    brokers (attempt 1 waits ``base``)."""
    return min(cap, base * (2 ** min(max(attempt, 1) - 1, 30)))


async def wait_any(delay: float, *events: asyncio.Event) -> None:
    """Sleep ``delay`` seconds, or less once any of ``events`` is set."""
    if delay <= 0 or any(e.is_set() for e in events):
        return
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


class AlreadySettled(WojakError, RuntimeError):
    pass


class SettleFailed(WojakError, RuntimeError):
    """The broker did not take a settlement (error or timeout); it will redeliver the message.

    ``counts=False`` says the failure is the broker's, not the message's (unreachable, a
    timeout, a leader change): the runner does not count it toward giving the message up, which
    then waits for the broker like every other message. A source whose messages block the ones
    behind them (Kafka: a partition) raises that for whatever giving up would not cure."""

    def __init__(self, *args: object, counts: bool = True) -> None:
        super().__init__(*args)
        self.counts = counts


class SourceMessage(abc.ABC):
    """One broker message. ``coordinates`` identify it at the source (queue + message id,
    topic + partition + offset, ...) and derive a ``client_order_id`` when it has none."""

    def __init__(self, body: bytes, coordinates: tuple[Any, ...], attributes: dict[str, Any] | None = None) -> None:
        self.body = body
        self.coordinates = coordinates
        self.attributes = attributes or {}
        self.settled: Settlement | None = None
        # Set by a source that refuses the message itself (e.g. a body over the size cap): the
        # runner dead-letters it with this (reason, detail), never parsing it or sending it on.
        self.refusal: tuple[str, dict[str, Any]] | None = None

    def _settle(self, how: Settlement) -> None:
        if self.settled is not None:
            raise AlreadySettled(
                f"message {self.coordinates} was already settled ({self.settled.value}); refusing to {how.value}"
            )
        self.settled = how

    async def ack(self) -> None:
        self._settle(Settlement.ACK)
        await self._ack()

    async def requeue(self, delay: float) -> None:
        self._settle(Settlement.REQUEUE)
        await self._requeue(delay)

    async def dead_letter(self, reason: str, detail: Any = None) -> None:
        self._settle(Settlement.DEAD_LETTER)
        await self._dead_letter(reason, detail)

    async def give_up(self, reason: str, detail: Any = None) -> None:
        """The last resort for a message whose settlements kept failing: take it off the queue
        without losing it (the runner has already logged it). By default a dead letter; a
        source overrides it with something that needs less of the broker."""
        self._settle(Settlement.GIVE_UP)
        await self._give_up(reason, detail)

    async def _give_up(self, reason: str, detail: Any) -> None:
        await self._dead_letter(reason, detail)

    @abc.abstractmethod
    async def _ack(self) -> None: ...

    @abc.abstractmethod
    async def _requeue(self, delay: float) -> None: ...

    @abc.abstractmethod
    async def _dead_letter(self, reason: str, detail: Any) -> None: ...


class Source(abc.ABC):
    """A broker connection: an async context manager that yields ``SourceMessage``s."""

    name: str = "source"

    async def __aenter__(self) -> "Source":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    @abc.abstractmethod
    def messages(self) -> AsyncIterator[SourceMessage]:
        """Consume until ``stop_consuming``; the iterator then ends."""

    @abc.abstractmethod
    async def stop_consuming(self) -> None: ...

    def is_ready(self) -> bool:
        """True while connected to the broker (readiness)."""
        return True

    async def publish_result(self, message: SourceMessage, reply: dict[str, Any]) -> None:
        """Publish a verdict for ``ack_and_publish`` verdicts; sources without a reply path ignore it."""
        return None


class BrokerSource(Source):
    """The base of a broker's ``Source``: what every broker needs besides its SDK calls.

    * ``settle_call``: one settling broker call (ack, nack, a dead letter's publish) bounded by
      ``settle_timeout``; a timeout or an error raises ``SettleFailed`` (the broker still owns
      the message and redelivers it). ``quietly`` is the same where nobody counts a failure.
    * ``connect_with_backoff``: connect until it works (capped exponential backoff), or until
      the sidecar stops (then ``None``).
    * ``pause(delay)``: hold a message (a requeue's backoff) for ``delay`` seconds; every pause
      resumes at once when the sidecar starts stopping (``begin_stopping``), so a drain never
      waits for a backoff.
    """

    def __init__(self, settle_timeout: float = 10.0) -> None:
        self.settle_timeout = settle_timeout
        self._stopping = asyncio.Event()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def begin_stopping(self) -> bool:
        """Mark the source stopping (every ``pause`` resumes); False if it already was."""
        if self._stopping.is_set():
            return False
        self._stopping.set()
        return True

    async def pause(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or less if the sidecar starts stopping."""
        await wait_any(delay, self._stopping)

    async def settle_call(self, call: Awaitable[Any], what: str, where: Any) -> None:
        """One settling broker call within ``settle_timeout``; ``SettleFailed`` otherwise (the
        channel closed under us, or the frame never went out). The broker returns the message
        to the queue (at the latest when the connection goes) and redelivers it; idempotency
        makes the redelivery a duplicate."""
        try:
            await asyncio.wait_for(call, self.settle_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            why = (
                f"no answer within {self.settle_timeout:.1f}s"
                if isinstance(exc, asyncio.TimeoutError)
                else (str(exc)[:200] or type(exc).__name__)
            )
            log.warning("%s of %s failed (%s); the broker will redeliver it", what, where, why)
            raise SettleFailed(f"{what} failed ({why})") from None

    async def quietly(self, call: Awaitable[Any], what: str, where: Any) -> None:
        """``settle_call`` where nobody counts the failure (giving back at shutdown): logged only."""
        try:
            await self.settle_call(call, what, where)
        except SettleFailed:
            pass

    async def connect_with_backoff(
        self,
        connect: Callable[[], Awaitable[T]],
        what: str,
        retry_on: tuple[type[BaseException], ...] = (OSError, asyncio.TimeoutError),
        first: float = 0.5,
        cap: float = 10.0,
    ) -> T | None:
        """``await connect()`` until it succeeds, waiting ``first`` seconds after the first failure
        and twice as long after each next one (at most ``cap``); ``None`` once the sidecar stops."""
        delay = first
        while not self.stopping:
            try:
                return await connect()
            except retry_on as exc:
                log.warning("%s not reachable (%s); retrying in %.1fs", what, exc.__class__.__name__, delay)
                await self.pause(delay)
                delay = min(delay * 2, cap)
        return None
