"""RabbitMQ as a ``Source``: one queue, manual acks, a dead-letter exchange with reasons.

Topology (declared unless ``declare_topology`` is off)::

    queue  (durable, x-dead-letter-exchange=DLX, x-dead-letter-routing-key=DLQ)
    DLX    (direct, durable) --DLQ--> DLQ (durable)

Settlement of one broker message:

* ``ack``          -> ``basic.ack``.
* ``requeue(d)``   -> the message is held (unacked, so the broker still owns it) for ``d``
  seconds, then ``basic.nack(requeue=True)``. Holding rather than republishing to a delay
  queue keeps the message in one place (a crash while it is held returns it to the queue),
  needs no extra topology or plugin, and holds a prefetch slot while the engine is sick,
  which is the back-pressure wanted then. The delay is capped (``backoff_max``) far below
  RabbitMQ's consumer timeout (30 min), and a stopping sidecar nacks held messages at once.
* ``dead_letter``  -> a copy (same body and properties) is published with publisher
  confirms to the DLX with ``x-wojak-reason`` (the reason code: ``invalid``,
  ``invalid_json``, ``conflict``, ...) and ``x-wojak-detail`` (JSON, truncated), then the
  original is acked. ``basic.reject(requeue=False)`` would dead-letter through the queue's
  DLX too, but cannot carry the reason. A crash between the confirm and the ack dead-letters
  the message twice (at-least-once in the DLQ), never zero times; if the DLX refuses the
  copy, the message is nacked back to the queue rather than lost.

Intake limits: a message larger than ``max_body_bytes`` (``WOJAK_SIDECAR_MAX_BODY_BYTES``) is
dead-lettered ``body_too_large`` without being parsed or sent to the engine. A result goes
to the message's ``reply_to`` only if that queue is in ``reply_to_allowed``
(``WOJAK_SIDECAR_RABBITMQ_REPLY_TO_ALLOWED``): a publisher cannot make the sidecar write to
any queue it names. Otherwise it is not published there (logged and counted in
``wojak_sidecar_reply_to_refused_total``; it still goes to the reply exchange if one is
configured), and the message is settled by its verdict all the same.

Coordinates are ``(queue, message_id)``, or ``(queue, "sha256:<hash of the body>")`` when the
publisher set no ``message_id``: stable across redeliveries (a delivery tag is not), so an
order without ``client_order_id`` derives the same id every time it is delivered. The cost of
the body hash: two distinct publications with identical bodies and neither a message id nor a
``client_order_id`` are one order. Publishers should set one of them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any, AsyncIterator, Awaitable

import sys

import aio_pika
import orjson
from aio_pika.abc import AbstractIncomingMessage
from prometheus_client import Counter

from wojak.engine.protocol import SocketDirError, default_socket_path
from wojak.sidecars._core.metrics import SidecarMetrics
from wojak.sidecars._core.runner import RunnerConfig, serve_sidecar
from wojak.sidecars._core.source import Source, SourceMessage
from wojak.sidecars.rabbitmq.config import RabbitMQSidecarConfig

log = logging.getLogger(__name__)

REASON_HEADER = "x-wojak-reason"
BODY_TOO_LARGE = "body_too_large"
DETAIL_HEADER = "x-wojak-detail"
MAX_DETAIL_BYTES = 4096
_JSON = "application/json"


def coordinates_for(queue: str, message_id: str | None, body: bytes) -> tuple[str, str]:
    """Stable across redeliveries: the publisher's message id, else a hash of the body."""
    if message_id:
        return (queue, str(message_id))
    return (queue, "sha256:" + hashlib.sha256(body).hexdigest())


def _detail(detail: Any) -> str:
    raw = orjson.dumps(detail, default=str, option=orjson.OPT_NON_STR_KEYS)
    if len(raw) > MAX_DETAIL_BYTES:
        raw = raw[: MAX_DETAIL_BYTES - 16]
        return raw.decode("utf-8", "ignore") + "...(truncated)"
    return raw.decode()


async def declare_topology(channel: Any, cfg: RabbitMQSidecarConfig) -> tuple[Any, Any, Any]:
    """Declare (idempotently) the queue, its DLX and DLQ, and the reply exchange; return them."""
    dlx = await channel.declare_exchange(cfg.dead_letter_exchange, aio_pika.ExchangeType.DIRECT, durable=True)
    dlq = await channel.declare_queue(cfg.dead_letter_queue, durable=True)
    await dlq.bind(dlx, routing_key=cfg.dead_letter_queue)
    queue = await channel.declare_queue(
        cfg.queue, durable=True,
        arguments={"x-dead-letter-exchange": cfg.dead_letter_exchange, "x-dead-letter-routing-key": cfg.dead_letter_queue},
    )  # fmt: skip
    reply = None
    if cfg.reply_exchange:
        reply = await channel.declare_exchange(cfg.reply_exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    return queue, dlx, reply


class RabbitMQMessage(SourceMessage):
    def __init__(self, source: "RabbitMQSource", incoming: AbstractIncomingMessage,
                 coordinates: tuple[str, str] | None = None) -> None:  # fmt: skip
        self._source = source
        self.incoming = incoming
        super().__init__(
            incoming.body,
            coordinates or coordinates_for(source.config.queue, incoming.message_id, incoming.body),
            {
                "message_id": incoming.message_id,
                "delivery_tag": incoming.delivery_tag,
                "redelivered": incoming.redelivered,
                "reply_to": incoming.reply_to,
                "correlation_id": incoming.correlation_id,
            },
        )

    async def _ack(self) -> None:
        await self._source._broker(self.incoming.ack(), "ack", self.coordinates)

    async def _requeue(self, delay: float) -> None:
        try:
            if delay > 0:
                await self._source._pause(delay)
        finally:  # also when cancelled mid-delay: the message goes back now, never stays held
            await self._source._broker(self.incoming.nack(requeue=True), "nack", self.coordinates)

    async def _dead_letter(self, reason: str, detail: Any) -> None:
        source, incoming = self._source, self.incoming
        headers: dict[str, Any] = dict(incoming.headers or {})
        headers[REASON_HEADER] = reason
        headers[DETAIL_HEADER] = _detail(detail)
        headers["x-wojak-queue"] = source.config.queue
        copy = aio_pika.Message(
            incoming.body, headers=headers, content_type=incoming.content_type,
            content_encoding=incoming.content_encoding, correlation_id=incoming.correlation_id,
            message_id=incoming.message_id, reply_to=incoming.reply_to, timestamp=incoming.timestamp,
            type=incoming.type, app_id=incoming.app_id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )  # fmt: skip
        try:
            await source._dead_letter_exchange().publish(
                copy, routing_key=source.config.dead_letter_queue, mandatory=True, timeout=10
            )
        except Exception:
            log.exception("dead-lettering %s (%s) failed; returning it to the queue", self.coordinates, reason)
            try:
                await source._pause(1.0)
            finally:
                await source._broker(incoming.nack(requeue=True), "nack", self.coordinates)
            return
        await source._broker(incoming.ack(), "ack", self.coordinates)


class RabbitMQSource(Source):
    name = "rabbitmq"

    def __init__(self, config: RabbitMQSidecarConfig, metrics: SidecarMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics
        self.reply_to_refused = 0  # results not published to a reply_to outside reply_to_allowed
        self._reply_to_refused = Counter(
            "wojak_sidecar_reply_to_refused", "Results not published to a reply_to outside "
            "WOJAK_SIDECAR_RABBITMQ_REPLY_TO_ALLOWED", ["source"], registry=metrics.registry,
        ) if metrics is not None else None  # fmt: skip
        self._connection: Any = None
        self._channel: Any = None
        self._queue: Any = None
        self._dlx: Any = None
        self._reply_exchange: Any = None
        self._consumer_tag: str | None = None
        self._buffer: asyncio.Queue[AbstractIncomingMessage | None] = asyncio.Queue()
        self._stopping = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> "RabbitMQSource":
        self._connection = await self._connect()
        channel = await self._connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=self.config.prefetch)
        cfg = self.config
        if cfg.declare_topology:
            self._queue, self._dlx, self._reply_exchange = await declare_topology(channel, cfg)
        else:
            self._dlx = await channel.get_exchange(cfg.dead_letter_exchange, ensure=True)
            self._queue = await channel.get_queue(cfg.queue, ensure=True)
            if cfg.reply_exchange:
                self._reply_exchange = await channel.get_exchange(cfg.reply_exchange, ensure=True)
        self._channel = channel
        self._consumer_tag = await self._queue.consume(self._on_message, no_ack=False)
        log.info("consuming %s (prefetch %d, dead letters to %s)", cfg.queue, cfg.prefetch, cfg.dead_letter_exchange)
        return self

    async def _connect(self) -> Any:
        delay = 0.5
        while True:
            try:
                return await aio_pika.connect_robust(
                    self.config.url, reconnect_interval=self.config.reconnect_interval,
                    client_properties={"connection_name": f"wojak-sidecar:{self.config.queue}"},
                )  # fmt: skip
            except (OSError, aio_pika.exceptions.AMQPException, asyncio.TimeoutError) as exc:
                log.warning("RabbitMQ not reachable (%s); retrying in %.1fs", exc.__class__.__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_consuming()
        if self._connection is not None:
            try:
                await self._connection.close()  # anything still unacked returns to the queue
            except Exception:
                log.exception("closing the RabbitMQ connection failed")
            self._connection = None

    async def _on_message(self, incoming: AbstractIncomingMessage) -> None:
        if self._stopping.is_set():
            await self._broker(incoming.nack(requeue=True), "nack", incoming.delivery_tag)
            return
        self._buffer.put_nowait(incoming)

    async def messages(self) -> AsyncIterator[SourceMessage]:  # type: ignore[override]
        while True:
            incoming = await self._buffer.get()
            if incoming is None:
                return
            if len(incoming.body) > self.config.max_body_bytes:
                await self._too_large(incoming)  # never parsed, never sent to the engine
                continue
            yield RabbitMQMessage(self, incoming)

    async def _too_large(self, incoming: AbstractIncomingMessage) -> None:
        size, limit = len(incoming.body), self.config.max_body_bytes
        # coordinates without hashing the oversized body
        where = (self.config.queue, str(incoming.message_id or f"delivery:{incoming.delivery_tag}"))
        log.warning("dead-lettering message %s: %s (%d bytes > %d)", where, BODY_TOO_LARGE, size, limit)
        await RabbitMQMessage(self, incoming, where).dead_letter(BODY_TOO_LARGE, {"bytes": size, "limit": limit})
        if self.metrics is not None:
            self.metrics.messages.labels(self.name, BODY_TOO_LARGE).inc()
            self.metrics.settlements.labels(self.name, "dead_letter").inc()

    async def stop_consuming(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._queue is not None and self._consumer_tag is not None:
            try:
                await self._queue.cancel(self._consumer_tag, timeout=5)
            except Exception as exc:
                log.warning("cancelling the consumer failed (%s); closing the channel returns its messages", exc)
        while not self._buffer.empty():  # delivered but never handed to the runner: give back
            incoming = self._buffer.get_nowait()
            if incoming is not None:
                await self._broker(incoming.nack(requeue=True), "nack", incoming.delivery_tag)
        self._buffer.put_nowait(None)

    def is_ready(self) -> bool:
        conn = self._connection
        return (
            conn is not None
            and not conn.is_closed
            and conn.connected.is_set()
            and self._consumer_tag is not None
            and not self._stopping.is_set()
        )

    # -- helpers ---------------------------------------------------------------------

    def _dead_letter_exchange(self) -> Any:
        return self._dlx

    async def _pause(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or less if the sidecar starts stopping."""
        try:
            await asyncio.wait_for(self._stopping.wait(), delay)
        except asyncio.TimeoutError:
            pass

    async def _broker(self, call: Awaitable[Any], what: str, where: Any) -> None:
        try:
            await call
        except Exception as exc:
            # The channel closed under us: the broker has already returned the message to
            # the queue and will redeliver it (idempotency makes the redelivery a duplicate).
            log.warning("%s of %s failed (%s); the broker will redeliver it", what, where, exc)

    async def publish_result(self, message: SourceMessage, reply: dict[str, Any]) -> None:
        assert isinstance(message, RabbitMQMessage)
        incoming = message.incoming
        verdict = str(reply.get("verdict"))
        body = orjson.dumps(
            {k: reply.get(k) for k in ("client_order_id", "verdict", "reason", "order")}, default=str
        )
        result = aio_pika.Message(
            body, content_type=_JSON, correlation_id=incoming.correlation_id or incoming.message_id or reply.get("client_order_id"),
            headers={"x-wojak-verdict": verdict}, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )  # fmt: skip
        if incoming.reply_to:
            if incoming.reply_to in self.config.reply_to_allowed:
                await self._channel.default_exchange.publish(result, routing_key=incoming.reply_to, mandatory=False, timeout=10)
                return
            self.reply_to_refused += 1
            if self._reply_to_refused is not None:
                self._reply_to_refused.labels(self.name).inc()
            log.warning("result of %s NOT published to reply_to %r: not in WOJAK_SIDECAR_RABBITMQ_REPLY_TO_ALLOWED",
                        message.coordinates, str(incoming.reply_to)[:200])  # fmt: skip
        if self._reply_exchange is not None:
            await self._reply_exchange.publish(result, routing_key=verdict, mandatory=False, timeout=10)


async def serve(config: RabbitMQSidecarConfig, *, stop: asyncio.Event | None = None) -> None:
    """The RabbitMQ sidecar until SIGTERM/SIGINT (or ``stop``): consume, drain, exit.

    A socket directory that is not this user's (another user's listener, a symlink) is
    refused before anything is sent: one line naming WOJAK_ENGINE_SOCKET, exit 2."""
    runner = config.runner or RunnerConfig(engine_socket=default_socket_path())
    metrics = SidecarMetrics(RabbitMQSource.name)
    try:
        await serve_sidecar(RabbitMQSource(config, metrics), runner, stop=stop, metrics=metrics)
    except SocketDirError as exc:
        print(f"wojak: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
