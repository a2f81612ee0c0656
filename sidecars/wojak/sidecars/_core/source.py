"""The source-message contract every broker sidecar implements.

A message is settled exactly once: ``ack``, ``requeue``, ``dead_letter`` or ``give_up``. A
second settlement raises ``AlreadySettled`` instead of acting twice on the broker.

A settlement the broker did not take (an error, or no answer within the source's settle
timeout) raises ``SettleFailed``: the message stays the broker's, which redelivers it (the
engine answers the redelivery ``duplicate`` if it had already decided). The runner counts
these per message and, after too many, calls ``give_up`` instead of handling it again.
"""

from __future__ import annotations

import abc
from typing import Any, AsyncIterator


class AlreadySettled(RuntimeError):
    pass


class SettleFailed(RuntimeError):
    """The broker did not take a settlement (error or timeout); it will redeliver the message."""


class SourceMessage(abc.ABC):
    """One broker message. ``coordinates`` identify it at the source (queue + message id,
    topic + partition + offset, ...) and derive a ``client_order_id`` when it has none."""

    def __init__(self, body: bytes, coordinates: tuple[Any, ...], attributes: dict[str, Any] | None = None) -> None:
        self.body = body
        self.coordinates = coordinates
        self.attributes = attributes or {}
        self.settled: str | None = None
        # Set by a source that refuses the message itself (e.g. a body over the size cap): the
        # runner dead-letters it with this (reason, detail), never parsing it or sending it on.
        self.refusal: tuple[str, dict[str, Any]] | None = None

    def _settle(self, how: str) -> None:
        if self.settled is not None:
            raise AlreadySettled(f"message {self.coordinates} was already settled ({self.settled}); refusing to {how}")
        self.settled = how

    async def ack(self) -> None:
        self._settle("ack")
        await self._ack()

    async def requeue(self, delay: float) -> None:
        self._settle("requeue")
        await self._requeue(delay)

    async def dead_letter(self, reason: str, detail: Any = None) -> None:
        self._settle("dead_letter")
        await self._dead_letter(reason, detail)

    async def give_up(self, reason: str, detail: Any = None) -> None:
        """The last resort for a message whose settlements kept failing: take it off the queue
        without losing it (the runner has already logged it). By default a dead letter; a
        source overrides it with something that needs less of the broker."""
        self._settle("give_up")
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
