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
  copy (or cannot route it: it is published ``mandatory``), the message is nacked back to the
  queue rather than lost, and the settlement counts as failed.

  The copy always fits in one AMQP frame: a publisher may send headers up to the frame limit
  (``frame_max``, 128 KiB by default), and a copy over it makes the broker close the whole
  connection (``FRAME_ERROR frame_too_large``), which returns every unacked message and
  redelivers this one forever. So the copy's properties are held to the negotiated
  ``frame_max``: ``x-wojak-reason`` is always kept; the publisher's headers are copied
  largest-last, and those that do not fit (or cannot be re-encoded) are dropped and named in
  ``x-wojak-headers-dropped`` (JSON: count, bytes, the first names); if the reason, the queue
  and the note alone leave too little room, ``x-wojak-detail`` is cut shorter.
* ``give_up``      -> (the runner calls it for a message whose settlements failed
  ``WOJAK_SIDECAR_SETTLE_ATTEMPTS`` times, after logging it with its body) a minimal copy to the
  DLX (reason ``unsettleable``, none of the publisher's headers, the settle failures as the
  detail) then ack; if even that is not published, ``basic.reject(requeue=False)``: the queue's
  own dead-letter exchange (``x-dead-letter-exchange``, which the declared topology sets)
  takes the original. A queue without one drops it: the sidecar's log line is then the copy.

Every broker call that settles a message (ack, nack, reject, the dead letter's publish and
confirm) is bounded by ``settle_timeout`` (``WOJAK_SIDECAR_SETTLE_TIMEOUT``); a timeout or
error raises ``SettleFailed`` (the broker redelivers the message). aiormq waits for an ack's
frame to be written, and a frame still queued when the connection drops is never written nor
failed: without the bound such a wait never ends.

Dead letters and results are published on a channel of their own (publisher confirms,
unroutable publications raise); messages are consumed and settled on another, so a
publication the broker refuses with a channel error (a deleted exchange) does not close the
consumer's channel and return every message in flight.

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
import struct
from typing import Any, AsyncIterator

import aio_pika
import orjson
from aio_pika.abc import AbstractIncomingMessage
from pamqp import encode as _amqp_encode
from pamqp.header import ContentHeader
from prometheus_client import Counter

from wojak.sidecars._core.metrics import SidecarMetrics
from wojak.sidecars._core.serve import serve_sidecar
from wojak.sidecars._core.source import BrokerSource, SettleFailed, SourceMessage
from wojak.sidecars.rabbitmq.config import RabbitMQSidecarSettings, check_url

log = logging.getLogger(__name__)

REASON_HEADER = "x-wojak-reason"
BODY_TOO_LARGE = "body_too_large"
DETAIL_HEADER = "x-wojak-detail"
QUEUE_HEADER = "x-wojak-queue"
DROPPED_HEADER = "x-wojak-headers-dropped"
DUPLICATE_HEADER = "x-wojak-duplicate"
_OWN_HEADERS = frozenset({REASON_HEADER, DETAIL_HEADER, QUEUE_HEADER, DROPPED_HEADER})
MAX_DETAIL_BYTES = 4096
DEFAULT_FRAME_MAX = 131072  # RabbitMQ's default; used when the connection's is unknown (or 0: no limit)
FRAME_OVERHEAD = 8  # type, channel, size, frame end: a frame's payload is at most frame_max - 8
_FRAME_MARGIN = 64
_NAMES_SHOWN = 16  # dropped headers named in x-wojak-headers-dropped
_JSON = "application/json"
_CONNECT_ERRORS = (OSError, aio_pika.exceptions.AMQPException, asyncio.TimeoutError)


def coordinates_for(queue: str, message_id: str | None, body: bytes) -> tuple[str, str]:
    """Stable across redeliveries: the publisher's message id, else a hash of the body."""
    if message_id:
        return (queue, str(message_id))
    return (queue, "sha256:" + hashlib.sha256(body).hexdigest())


def _detail(detail: Any, limit: int = MAX_DETAIL_BYTES) -> str:
    raw = orjson.dumps(detail, default=str, option=orjson.OPT_NON_STR_KEYS)
    if len(raw) > limit:
        raw = raw[: max(limit - 16, 0)]
        return raw.decode("utf-8", "ignore") + "...(truncated)"
    return raw.decode()


def _encodable(value: Any) -> Any:
    """A header value as pamqp can encode it again: it decodes a long string that is not UTF-8
    as ``bytes``, which it cannot encode; as a byte array it keeps the same bytes."""
    if isinstance(value, bytes):
        return bytearray(value)
    if isinstance(value, dict):
        return {k: _encodable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encodable(v) for v in value]
    return value


def _entry_size(key: str, value: Any) -> int:
    """Bytes one header adds to the encoded table (a table is 4 bytes plus its entries)."""
    return len(_amqp_encode.field_table({key: value})) - 4


def _properties_size(message: aio_pika.Message) -> int:
    """The content-header frame's payload for ``message``: what must fit in frame_max - 8."""
    return len(ContentHeader(0, len(message.body), message.properties).marshal())


def dead_letter_message(
    incoming: Any, reason: str, detail: Any, queue: str, frame_max: int | None = None, *, publisher_headers: bool = True
) -> aio_pika.Message:
    """The dead-letter copy of ``incoming``, its properties within one frame of ``frame_max``.

    Kept always: the body, the other properties, ``x-wojak-reason`` and ``x-wojak-queue``. Then
    ``x-wojak-detail`` (at most MAX_DETAIL_BYTES) and as many of the publisher's headers as fit,
    smallest first; the rest are dropped and named in ``x-wojak-headers-dropped``. With no
    publisher header left and still too large, the detail is cut to fit (or left out)."""
    limit = (frame_max or DEFAULT_FRAME_MAX) - FRAME_OVERHEAD - _FRAME_MARGIN

    def build(headers: dict[str, Any] | None) -> aio_pika.Message:
        return aio_pika.Message(
            incoming.body,
            headers=headers,
            content_type=incoming.content_type,
            content_encoding=incoming.content_encoding,
            correlation_id=incoming.correlation_id,
            message_id=incoming.message_id,
            reply_to=incoming.reply_to,
            timestamp=incoming.timestamp,
            type=incoming.type,
            app_id=incoming.app_id,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )

    own = {REASON_HEADER: str(reason)[:255], QUEUE_HEADER: queue}
    kept: dict[str, tuple[Any, int]] = {}
    dropped: list[tuple[str, int]] = []  # (name, encoded bytes; 0 when it could not be encoded)
    for key, value in (incoming.headers or {}).items():
        key = str(key)
        if key in _OWN_HEADERS:
            continue  # ours replace the publisher's
        if not publisher_headers:
            dropped.append((key, 0))
            continue
        value = _encodable(value)
        try:
            kept[key] = (value, _entry_size(key, value))
        except (TypeError, ValueError, struct.error, OverflowError):
            dropped.append((key, 0))
    base = _properties_size(build(None)) + 4  # every other property, and the table's length
    fixed = base + sum(_entry_size(k, v) for k, v in own.items())
    detail_text = _detail(detail)
    kept_bytes = sum(b for _, b in kept.values())
    dropped_bytes = sum(b for _, b in dropped)

    def note() -> dict[str, str]:
        if not dropped:
            return {}
        names = [name[:64] for name, _ in dropped[:_NAMES_SHOWN]]
        return {DROPPED_HEADER: orjson.dumps({"count": len(dropped), "bytes": dropped_bytes, "names": names}).decode()}

    def size() -> int:
        extra = {**note(), **({DETAIL_HEADER: detail_text} if detail_text else {})}
        return fixed + kept_bytes + sum(_entry_size(k, v) for k, v in extra.items())

    by_size = sorted(kept, key=lambda k: kept[k][1])  # the largest go first
    while kept and size() > limit:
        name = by_size.pop()
        _, nbytes = kept.pop(name)
        dropped.append((name, nbytes))
        kept_bytes -= nbytes
        dropped_bytes += nbytes
    if size() > limit:  # the detail takes what room is left, or goes
        room = limit - (size() - _entry_size(DETAIL_HEADER, detail_text))
        room -= _entry_size(DETAIL_HEADER, "")
        detail_text = _detail(detail, room) if room >= 64 else ""
    headers = {**{k: v for k, (v, _) in kept.items()}, **own, **note()}
    if detail_text:
        headers[DETAIL_HEADER] = detail_text
    message = build(headers)
    if _properties_size(message) > limit + _FRAME_MARGIN:  # not expected: the sums above are exact
        message = build({REASON_HEADER: own[REASON_HEADER]})
    return message


async def declare_topology(channel: Any, cfg: RabbitMQSidecarSettings) -> tuple[Any, Any, Any]:
    """Declare (idempotently) the queue, its DLX and DLQ, and the reply exchange; return them."""
    dlx = await channel.declare_exchange(cfg.dead_letter_exchange, aio_pika.ExchangeType.DIRECT, durable=True)
    dlq = await channel.declare_queue(cfg.dead_letter_queue, durable=True)
    await dlq.bind(dlx, routing_key=cfg.dead_letter_queue)
    queue = await channel.declare_queue(
        cfg.queue,
        durable=True,
        arguments={"x-dead-letter-exchange": cfg.dead_letter_exchange, "x-dead-letter-routing-key": cfg.dead_letter_queue},
    )
    reply = None
    if cfg.reply_exchange:
        reply = await channel.declare_exchange(cfg.reply_exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    return queue, dlx, reply


class RabbitMQMessage(SourceMessage):
    def __init__(
        self, source: "RabbitMQSource", incoming: AbstractIncomingMessage, coordinates: tuple[str, str] | None = None
    ) -> None:
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
        await self._source.settle_call(self.incoming.ack(), "ack", self.coordinates)

    async def _requeue(self, delay: float) -> None:
        try:
            if delay > 0:
                await self._source.pause(delay)
        finally:  # also when cancelled mid-delay: the message goes back now, never stays held
            await self._source.settle_call(self.incoming.nack(requeue=True), "nack", self.coordinates)

    async def _dead_letter(self, reason: str, detail: Any) -> None:
        source, incoming = self._source, self.incoming
        copy = dead_letter_message(incoming, reason, detail, source.config.queue, source.frame_max())
        try:
            await source._publish_dead_letter(copy)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "dead-lettering %s (%s) failed (%s); returning it to the queue",
                self.coordinates,
                reason,
                str(exc)[:300] or type(exc).__name__,
            )
            try:
                await source.pause(1.0)
            finally:
                await source.settle_call(incoming.nack(requeue=True), "nack", self.coordinates)
            raise SettleFailed(f"the dead letter was not published ({str(exc)[:200] or type(exc).__name__})") from None
        await source.settle_call(incoming.ack(), "ack", self.coordinates)

    async def _give_up(self, reason: str, detail: Any) -> None:
        source, incoming = self._source, self.incoming
        copy = dead_letter_message(incoming, reason, detail, source.config.queue, source.frame_max(), publisher_headers=False)
        try:
            await source._publish_dead_letter(copy)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error(
                "the minimal dead letter of %s was not published either (%s); rejecting it without requeue: "
                "the queue's own dead-letter exchange takes it (a queue without one drops it; the log has it)",
                self.coordinates,
                str(exc)[:300] or type(exc).__name__,
            )
            await source.settle_call(incoming.reject(requeue=False), "reject", self.coordinates)
            return
        await source.settle_call(incoming.ack(), "ack", self.coordinates)


class RabbitMQSource(BrokerSource):
    name = "rabbitmq"

    def __init__(self, config: RabbitMQSidecarSettings, metrics: SidecarMetrics | None = None) -> None:
        super().__init__(config.settle_timeout)
        self.config = config
        self.metrics = metrics
        self.reply_to_refused = 0  # results not published to a reply_to outside reply_to_allowed
        self._reply_to_refused = (
            Counter(
                "wojak_sidecar_reply_to_refused",
                "Results not published to a reply_to outside WOJAK_SIDECAR_RABBITMQ_REPLY_TO_ALLOWED",
                ["source"],
                registry=metrics.registry,
            )
            if metrics is not None
            else None
        )
        self._connection: Any = None
        self._channel: Any = None  # consumes and settles
        self._publish_channel: Any = None  # dead letters and results (confirms; unroutable raises)
        self._queue: Any = None
        self._dlx: Any = None
        self._reply_exchange: Any = None
        self._consumer_tag: str | None = None
        self._buffer: asyncio.Queue[AbstractIncomingMessage | None] = asyncio.Queue()

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> "RabbitMQSource":
        self._connection = await self.connect_with_backoff(self._connect, "RabbitMQ", _CONNECT_ERRORS)
        if self._connection is None:  # stopped before the broker was reachable: nothing to consume
            return self
        # the publishing channel first: after a reconnect it is restored before the consumer's,
        # so redeliveries do not meet a publishing channel that is not back yet
        publish = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        channel = await self._connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=self.config.prefetch)
        cfg = self.config
        if cfg.declare_topology:
            self._queue, _, _ = await declare_topology(channel, cfg)
        else:
            await channel.get_exchange(cfg.dead_letter_exchange, ensure=True)
            self._queue = await channel.get_queue(cfg.queue, ensure=True)
            if cfg.reply_exchange:
                await channel.get_exchange(cfg.reply_exchange, ensure=True)
        self._dlx = await publish.get_exchange(cfg.dead_letter_exchange, ensure=False)
        if cfg.reply_exchange:
            self._reply_exchange = await publish.get_exchange(cfg.reply_exchange, ensure=False)
        self._channel, self._publish_channel = channel, publish
        self._consumer_tag = await self._queue.consume(self._on_message, no_ack=False)
        log.info("consuming %s (prefetch %d, dead letters to %s)", cfg.queue, cfg.prefetch, cfg.dead_letter_exchange)
        return self

    async def _connect(self) -> Any:
        url = self.config.url.get_secret_value()
        check_url(url)  # however the settings were made
        return await aio_pika.connect_robust(
            url,
            reconnect_interval=self.config.reconnect_interval,
            client_properties={"connection_name": f"wojak-sidecar:{self.config.queue}"},
        )

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_consuming()
        if self._connection is not None:
            try:  # anything still unacked returns to the queue; bounded: a broker that does not answer
                await asyncio.wait_for(self._connection.close(), self.config.close_timeout)
            except asyncio.TimeoutError:
                log.warning(
                    "closing the RabbitMQ connection took longer than %.1fs; leaving it (the broker "
                    "returns its unacked messages when the socket goes)",
                    self.config.close_timeout,
                )
            except Exception:
                log.exception("closing the RabbitMQ connection failed")
            self._connection = None

    async def _on_message(self, incoming: AbstractIncomingMessage) -> None:
        if self.stopping:
            await self.quietly(incoming.nack(requeue=True), "nack", incoming.delivery_tag)
            return
        self._buffer.put_nowait(incoming)

    async def messages(self) -> AsyncIterator[SourceMessage]:
        while True:
            incoming = await self._buffer.get()
            if incoming is None:
                return
            if len(incoming.body) > self.config.max_body_bytes:
                yield self._too_large(incoming)  # refused: never parsed, never sent to the engine
                continue
            yield RabbitMQMessage(self, incoming)

    def _too_large(self, incoming: AbstractIncomingMessage) -> RabbitMQMessage:
        size, limit = len(incoming.body), self.config.max_body_bytes
        # stable across redeliveries without hashing the whole oversized body
        mid = incoming.message_id or f"sha256-64k:{hashlib.sha256(incoming.body[:65536]).hexdigest()}:{size}"
        message = RabbitMQMessage(self, incoming, (self.config.queue, str(mid)))
        log.warning("message %s is %d bytes (> %d): %s", message.coordinates, size, limit, BODY_TOO_LARGE)
        message.refusal = (BODY_TOO_LARGE, {"bytes": size, "limit": limit})
        return message

    async def stop_consuming(self) -> None:
        if not self.begin_stopping():
            return
        held = []  # delivered but never handed to the runner: given back
        while not self._buffer.empty():
            incoming = self._buffer.get_nowait()
            if incoming is not None:
                held.append(incoming)
        self._buffer.put_nowait(None)  # the iterator ends
        calls = [self.quietly(m.nack(requeue=True), "nack", m.delivery_tag) for m in held]
        if self._queue is not None and self._consumer_tag is not None:
            calls.append(
                self.quietly(
                    self._queue.cancel(self._consumer_tag, timeout=self.settle_timeout),
                    "cancelling the consumer",
                    self.config.queue,
                )
            )
        await asyncio.gather(*calls)

    def is_ready(self) -> bool:
        conn = self._connection
        return (
            conn is not None
            and not conn.is_closed
            and conn.connected.is_set()
            and self._consumer_tag is not None
            and not self.stopping
        )

    # -- helpers ---------------------------------------------------------------------

    def _dead_letter_exchange(self) -> Any:
        return self._dlx

    def frame_max(self) -> int:
        """The connection's negotiated frame_max (RabbitMQ's default when unknown)."""
        try:
            return int(self._connection.transport.connection.connection_tune.frame_max) or DEFAULT_FRAME_MAX
        except Exception:  # not connected (yet), or another client library layout
            return DEFAULT_FRAME_MAX

    async def _publish_dead_letter(self, copy: aio_pika.Message) -> None:
        """Publish ``copy`` to the DLX: confirmed, routable (mandatory), within settle_timeout
        (which includes waiting for the publishing channel to be back after a reconnect)."""
        await asyncio.wait_for(
            self._publish(self._dead_letter_exchange(), copy, self.config.dead_letter_queue, True), self.settle_timeout
        )

    async def _publish(self, exchange: Any, message: aio_pika.Message, routing_key: str, mandatory: bool) -> None:
        ready = getattr(self._publish_channel, "ready", None)
        if ready is not None:
            await ready()  # a robust channel being restored: wait for it rather than fail at once
        await exchange.publish(message, routing_key=routing_key, mandatory=mandatory, timeout=self.settle_timeout)

    async def publish_result(self, message: SourceMessage, reply: dict[str, Any]) -> None:
        assert isinstance(message, RabbitMQMessage)
        incoming = message.incoming
        verdict = str(reply.get("verdict"))
        fields = {k: reply.get(k) for k in ("client_order_id", "verdict", "reason", "order")}
        headers: dict[str, Any] = {"x-wojak-verdict": verdict}
        if reply.get("duplicate"):  # published again for a redelivery: the same outcome as the first
            fields["duplicate"] = True
            headers[DUPLICATE_HEADER] = "true"
        body = orjson.dumps(fields, default=str)
        result = aio_pika.Message(
            body,
            content_type=_JSON,
            correlation_id=incoming.correlation_id or incoming.message_id or reply.get("client_order_id"),
            headers=headers,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        if incoming.reply_to:
            if incoming.reply_to in self.config.reply_queues:
                await asyncio.wait_for(
                    self._publish(self._publish_channel.default_exchange, result, incoming.reply_to, False), self.settle_timeout
                )
                return
            self.reply_to_refused += 1
            if self._reply_to_refused is not None:
                self._reply_to_refused.labels(self.name).inc()
            log.warning(
                "result of %s NOT published to reply_to %r: not in WOJAK_SIDECAR_RABBITMQ_REPLY_TO_ALLOWED",
                message.coordinates,
                str(incoming.reply_to)[:200],
            )
        if self._reply_exchange is not None:
            await asyncio.wait_for(self._publish(self._reply_exchange, result, verdict, False), self.settle_timeout)


async def serve(config: RabbitMQSidecarSettings, *, stop: asyncio.Event | None = None) -> None:
    """The RabbitMQ sidecar until SIGTERM/SIGINT (or ``stop``): consume, drain, exit."""
    metrics = SidecarMetrics(RabbitMQSource.name)
    runner = config.runner
    await serve_sidecar(RabbitMQSource(config, metrics), runner, stop=stop, metrics=metrics)
