"""BROKER as a ``Source``: the SDK calls and nothing else; the kit does the rest.

What the kit already does (do not write it again): the verdict -> settlement table, the
backoff, the drain on SIGTERM, the give-up of a message whose settlements keep failing, the
principal check, derived client_order_ids, metrics and /healthz /readyz /metrics, signals
(``Runner``, ``serve_sidecar``); bounded settling calls (``settle_call``), reconnecting with
backoff (``connect_with_backoff``) and pauses that resume when the sidecar stops (``pause``)
(``BrokerSource``).

What a broker writes, in this file:

* coordinates stable across redeliveries (``coordinates_for``): they derive the
  client_order_id of a message that has none;
* ``messages()``: yield one ``TemplateMessage`` per delivery; refuse a body over
  ``max_body_bytes`` unparsed (``message.refusal``);
* the four settlements: ``_ack``; ``_requeue(delay)`` (hold it ``pause(delay)``, then give it
  back); ``_dead_letter(reason, detail)`` (the reason where a consumer of the DLQ sees it; if
  the dead letter is not taken, give the message back and raise ``SettleFailed``);
  ``_give_up`` only if the broker has something cheaper than a dead letter;
* ``stop_consuming`` (``begin_stopping``; give back what was delivered but not handed out),
  ``__aexit__`` (close: the broker redelivers whatever is unsettled), ``is_ready``,
  ``publish_result`` (if the broker has a reply path).
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any, AsyncIterator

from wojak.sidecars._core.metrics import SidecarMetrics
from wojak.sidecars._core.serve import serve_sidecar
from wojak.sidecars._core.source import BrokerSource, SourceMessage
from wojak.sidecars._template.config import TemplateSidecarSettings

BODY_TOO_LARGE = "body_too_large"


def coordinates_for(queue: str, message_id: str | None, body: bytes) -> tuple[str, str]:
    """Stable across redeliveries: the publisher's message id, else a hash of the body."""
    return (queue, str(message_id) if message_id else "sha256:" + hashlib.sha256(body).hexdigest())


class TemplateMessage(SourceMessage):
    def __init__(self, source: TemplateSource, delivery: Any, body: bytes, message_id: str | None) -> None:
        self._source = source
        self.delivery = delivery  # the SDK's handle on it (a delivery tag, a receipt, an offset)
        super().__init__(body, coordinates_for(source.config.queue, message_id, body), {"message_id": message_id})

    async def _ack(self) -> None:
        await self._source.settle_call(self._source._sdk_ack(self.delivery), "ack", self.coordinates)

    async def _requeue(self, delay: float) -> None:
        try:
            if delay > 0:
                await self._source.pause(delay)
        finally:  # also when cancelled mid-delay: it goes back now, never stays held
            await self._source.settle_call(self._source._sdk_requeue(self.delivery), "requeue", self.coordinates)

    async def _dead_letter(self, reason: str, detail: Any) -> None:
        source = self._source
        await source.settle_call(
            source._sdk_dead_letter(self.delivery, self.body, reason, detail), "dead letter", self.coordinates
        )
        await source.settle_call(source._sdk_ack(self.delivery), "ack", self.coordinates)


class TemplateSource(BrokerSource):
    name = "template"  # the CLI name: part of every derived client_order_id, so never renamed later

    def __init__(self, config: TemplateSidecarSettings, metrics: SidecarMetrics | None = None) -> None:
        super().__init__(config.settle_timeout)
        self.config = config
        self.metrics = metrics
        self._client: Any = None
        self._deliveries: asyncio.Queue[Any] = asyncio.Queue()

    async def __aenter__(self) -> TemplateSource:
        self._client = await self.connect_with_backoff(self._sdk_connect, "BROKER", (OSError, asyncio.TimeoutError))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_consuming()
        if self._client is not None:
            await self._sdk_close()  # the broker redelivers whatever is unsettled
            self._client = None

    async def messages(self) -> AsyncIterator[SourceMessage]:
        while (delivery := await self._deliveries.get()) is not None:
            body, message_id = self._sdk_body(delivery)
            message = TemplateMessage(self, delivery, body, message_id)
            if len(body) > self.config.max_body_bytes:  # refused: never parsed, never sent to the engine
                message.refusal = (BODY_TOO_LARGE, {"bytes": len(body), "limit": self.config.max_body_bytes})
            yield message

    async def stop_consuming(self) -> None:
        if self.begin_stopping():
            self._deliveries.put_nowait(None)  # the iterator ends; TODO(broker): stop the SDK's consumer

    def is_ready(self) -> bool:
        return self._client is not None and not self.stopping

    # -- the SDK: TODO(broker) -----------------------------------------------------------

    async def _sdk_connect(self) -> Any:
        raise NotImplementedError("connect, then start consuming into self._deliveries")

    async def _sdk_close(self) -> None:
        raise NotImplementedError

    def _sdk_body(self, delivery: Any) -> tuple[bytes, str | None]:
        raise NotImplementedError("the body and the publisher's message id")

    async def _sdk_ack(self, delivery: Any) -> None:
        raise NotImplementedError

    async def _sdk_requeue(self, delivery: Any) -> None:
        raise NotImplementedError

    async def _sdk_dead_letter(self, delivery: Any, body: bytes, reason: str, detail: Any) -> None:
        raise NotImplementedError("publish a copy with the reason (and confirm it)")


async def serve(config: TemplateSidecarSettings, *, stop: asyncio.Event | None = None) -> None:
    """The BROKER sidecar until SIGTERM/SIGINT (or ``stop``): consume, drain, exit."""
    metrics = SidecarMetrics(TemplateSource.name)
    await serve_sidecar(TemplateSource(config, metrics), config.runner, stop=stop, metrics=metrics)
