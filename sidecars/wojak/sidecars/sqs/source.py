"""SQS as a ``Source``: long-polled batches, leases kept alive by a heartbeat, settled by receipt.

Receiving: ``receivers`` long polls (``ReceiveMessage``, up to ``batch_size`` messages, waiting up
to ``wait_time`` seconds, each message leased for ``visibility`` seconds). Never more than
``max_held`` messages are held unsettled (the runner's concurrency and one batch ahead): a
receiver asks only for the room left.

The lease (heartbeat): from the moment a message is received until it is settled (with the
engine, or waiting in the sidecar's buffer or behind its FIFO group), its visibility is
extended (``ChangeMessageVisibilityBatch``, another ``visibility`` seconds) once half of its
lease has gone, so a slow engine or venue never lets a lease lapse and SQS never hands the
message to anyone else meanwhile. The extension stops when the message is settled. An
extension SQS refuses (the lease had already lapsed) is logged and counted
(``wojak_sidecar_sqs_leases_lost_total``); if the same ``MessageId`` comes back to this sidecar
while it still holds it, the new receipt replaces the old one and the message is not handed to
the engine a second time.

Settlement of one message:

* ``ack``          -> ``DeleteMessageBatch`` (acks within a few milliseconds go in one call; each
  entry's own result decides its settlement).
* ``requeue(d)``   -> ``ChangeMessageVisibility`` to ``d`` (whole seconds, rounded up): SQS holds
  the message out of sight for its backoff and hands it out again then, to this sidecar or any
  other (a crash during the backoff loses nothing); the heartbeat no longer extends it.
* ``dead_letter``  -> ``SendMessage`` to the dead-letter queue (the same body and the publisher's
  message attributes, plus ``wojak-reason``, ``wojak-detail`` (JSON), ``wojak-queue``,
  ``wojak-message-id``), confirmed (SQS answers with the copy's MessageId), then
  ``DeleteMessage``. A crash between the two dead-letters it twice, never zero times; on FIFO
  queues the copy's deduplication id is the original's MessageId, so a second copy within SQS's
  five-minute window is dropped. If the copy is not taken, the message is made visible again
  after a second (``SettleFailed``); after ``WOJAK_SIDECAR_SETTLE_ATTEMPTS`` failures the runner
  gives it up, and if even that dead letter is refused the queue's redrive policy
  (``maxReceiveCount``, the safety net) moves it to the DLQ.

FIFO queues (``.fifo``): SQS returns several messages of one ``MessageGroupId`` in one batch;
the sidecar hands out one message per group at a time (in order) and the next one only when
it is acked or dead-lettered. A requeued message takes the rest of its group back with it
(visible at once, but SQS delivers none of them before it: the group waits for its head).

Coordinates are ``(queue name, MessageId)``: a message without ``client_order_id`` gets one
derived from them (the same on every redelivery).

Bodies: SQS carries text; the body's UTF-8 bytes are the order. A producer that must send
other bytes sets the message attribute ``wojak-body-encoding`` to ``base64`` and sends the
body base64-encoded; one that does not decode is dead-lettered ``invalid_body_encoding``. A
body over ``max_body_bytes`` is dead-lettered ``body_too_large`` without being parsed.

boto3 is synchronous: every call runs on a thread pool of the source's own (a long poll holds
a thread for up to ``wait_time`` seconds), so the event loop never blocks on SQS.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import concurrent.futures
import functools
import logging
import math
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

import orjson
from prometheus_client import Counter

from wojak.sidecars._core.metrics import SidecarMetrics
from wojak.sidecars._core.serve import serve_sidecar
from wojak.sidecars._core.source import BrokerSource, SettleFailed, SourceMessage, capped_backoff
from wojak.sidecars.sqs.config import MAX_BATCH, SqsSidecarSettings

log = logging.getLogger(__name__)

BODY_TOO_LARGE = "body_too_large"
INVALID_BODY_ENCODING = "invalid_body_encoding"
REASON_ATTRIBUTE = "wojak-reason"
DETAIL_ATTRIBUTE = "wojak-detail"
QUEUE_ATTRIBUTE = "wojak-queue"
MESSAGE_ID_ATTRIBUTE = "wojak-message-id"
DROPPED_ATTRIBUTE = "wojak-attributes-dropped"
ENCODING_ATTRIBUTE = "wojak-body-encoding"
_OWN = frozenset({REASON_ATTRIBUTE, DETAIL_ATTRIBUTE, QUEUE_ATTRIBUTE, MESSAGE_ID_ATTRIBUTE, DROPPED_ATTRIBUTE})
MAX_ATTRIBUTES = 10  # SQS's limit per message
READ_MARGIN = 10  # seconds a long poll may run past its wait time: the read timeout, and then SQS counts as not answering
MAX_DETAIL_BYTES = 4096
DEFAULT_MAX_MESSAGE_BYTES = 262144
_ACK_LINGER = 0.005  # seconds an ack waits for others to share its DeleteMessageBatch


def coordinates_for(queue: str, message_id: str) -> tuple[str, str]:
    """Stable across redeliveries: SQS keeps a message's MessageId for its whole life."""
    return (queue, str(message_id))


def _detail(detail: Any, limit: int = MAX_DETAIL_BYTES) -> str:
    raw = orjson.dumps(detail, default=str, option=orjson.OPT_NON_STR_KEYS)
    if len(raw) > limit:
        return raw[: max(limit - 16, 0)].decode("utf-8", "ignore") + "...(truncated)"
    return raw.decode()


def _attribute_size(name: str, value: dict[str, Any]) -> int:
    data = value.get("StringValue")
    size = len(data.encode()) if isinstance(data, str) else len(value.get("BinaryValue") or b"")
    return len(name.encode()) + len(str(value.get("DataType", "")).encode()) + size


def _string(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def dead_letter_attributes(
    original: dict[str, dict[str, Any]],
    reason: str,
    detail: Any,
    queue: str,
    message_id: str,
    body_bytes: int,
    max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    publisher_attributes: bool = True,
) -> dict[str, dict[str, Any]]:
    """The dead letter's message attributes: ours (the reason always), then as many of the
    publisher's as fit in SQS's ten and in ``max_bytes`` with the body (the body encoding
    first: without it the body cannot be read); the rest are named in ``wojak-attributes-dropped``."""
    own = {
        REASON_ATTRIBUTE: _string(str(reason)[:256]),
        QUEUE_ATTRIBUTE: _string(queue),
        MESSAGE_ID_ATTRIBUTE: _string(str(message_id)),
    }
    theirs = [(k, v) for k, v in (original or {}).items() if k not in _OWN and publisher_attributes]
    theirs.sort(key=lambda kv: (kv[0] != ENCODING_ATTRIBUTE, _attribute_size(*kv)))
    dropped = [k for k in (original or {}) if k not in _OWN and not publisher_attributes]
    detail_text = _detail(detail)
    room = max_bytes - body_bytes - 256  # a margin for what SQS counts that we do not
    used = sum(_attribute_size(k, v) for k, v in own.items()) + _attribute_size(DETAIL_ATTRIBUTE, _string(detail_text))
    slots = MAX_ATTRIBUTES - len(own) - 2  # the detail and, maybe, the dropped note
    kept: dict[str, dict[str, Any]] = {}
    for name, value in theirs:
        size = _attribute_size(name, value)
        if len(kept) < slots and used + size + 300 <= room:  # 300: the dropped note, should it be needed
            kept[name] = value
            used += size
        else:
            dropped.append(name)
    if dropped:
        note = orjson.dumps({"count": len(dropped), "names": [d[:64] for d in dropped[:8]]}).decode()
        own[DROPPED_ATTRIBUTE] = _string(note)
        used += _attribute_size(DROPPED_ATTRIBUTE, own[DROPPED_ATTRIBUTE])
    if used > room:  # the detail gives way
        spare = room - (used - len(detail_text.encode()))
        detail_text = _detail(detail, spare) if spare >= 64 else ""
    if detail_text:
        own[DETAIL_ATTRIBUTE] = _string(detail_text)
    return {**kept, **own}


@dataclass
class _Lease:
    """A received message that is not settled yet: its newest receipt and when its lease ends."""

    receipt: str
    expires: float  # loop time
    group: str | None
    message: SqsMessage | None = None
    extending: bool = False


class SqsMessage(SourceMessage):
    def __init__(self, source: SqsSource, raw: dict[str, Any]) -> None:
        self._source = source
        self.raw = raw
        self.message_id = str(raw["MessageId"])
        system = raw.get("Attributes") or {}
        self.group: str | None = system.get("MessageGroupId")
        self.message_attributes: dict[str, dict[str, Any]] = raw.get("MessageAttributes") or {}
        self.text = raw.get("Body") or ""  # what a dead letter carries: the SQS body as it came
        payload, encoding, coordinates, refusal = self.unwrap(source)
        if refusal is not None:
            body = payload.encode("utf-8", "surrogateescape")
        elif encoding is None:
            body = payload.encode("utf-8", "surrogateescape")
        elif encoding == "base64":
            try:
                body = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                body = payload.encode("utf-8", "surrogateescape")
                refusal = (INVALID_BODY_ENCODING, {"error": "the body is not valid base64", ENCODING_ATTRIBUTE: encoding})
        else:
            body = payload.encode("utf-8", "surrogateescape")
            refusal = (INVALID_BODY_ENCODING, {"error": f"unknown {ENCODING_ATTRIBUTE} {encoding[:32]!r} (base64 or none)"})
        super().__init__(
            body,
            coordinates,
            {
                "message_id": self.message_id,
                "group": self.group,
                "receive_count": int(system.get("ApproximateReceiveCount", 0) or 0),
            },
        )
        if refusal is None and len(body) > source.config.max_body_bytes:
            refusal = (BODY_TOO_LARGE, {"bytes": len(body), "limit": source.config.max_body_bytes})
        self.refusal = refusal

    def unwrap(self, source: SqsSource) -> tuple[str, str | None, tuple[str, str], tuple[str, dict[str, Any]] | None]:
        """(the order's text, its encoding, the coordinates, a refusal): SQS carries the order as it is."""
        encoding = (self.message_attributes.get(ENCODING_ATTRIBUTE) or {}).get("StringValue")
        return self.text, encoding, coordinates_for(source.config.queue, self.message_id), None

    async def _ack(self) -> None:
        receipt = self._source._settling(self)
        await self._source.settle_call(self._source._delete(receipt), "ack (DeleteMessageBatch)", self.coordinates)
        self._source._next_in_group(self)

    async def _requeue(self, delay: float) -> None:
        source = self._source
        receipt = source._settling(self)
        seconds = min(max(0, math.ceil(delay)), source.config.visibility)
        try:
            await source.settle_call(
                source._change_visibility(receipt, seconds), "requeue (ChangeMessageVisibility)", self.coordinates
            )
        finally:
            await source._release_group(self)

    async def _dead_letter(self, reason: str, detail: Any) -> None:
        await self._send_dead_letter(reason, detail, publisher_attributes=True)

    async def _give_up(self, reason: str, detail: Any) -> None:
        # the minimal copy; should SQS refuse even that, the queue's redrive policy takes it
        await self._send_dead_letter(reason, detail, publisher_attributes=False)

    async def _send_dead_letter(self, reason: str, detail: Any, *, publisher_attributes: bool) -> None:
        source = self._source
        receipt = source._settling(self)
        try:
            await source.settle_call(
                source._send_dead_letter(self, reason, detail, publisher_attributes),
                "dead letter (SendMessage)",
                self.coordinates,
            )
        except SettleFailed:
            # not taken: visible again in a second (the runner counts the failure; redelivered, it is tried again)
            await source.quietly(source._change_visibility(receipt, 1), "making it visible again", self.coordinates)
            await source._release_group(self)
            raise
        await source.settle_call(source._delete(receipt), "delete after the dead letter", self.coordinates)
        source._next_in_group(self)


class _Batcher:
    """Entries that arrive within ``linger`` seconds go to SQS in one batch call (at most ten);
    each caller gets its own entry's outcome."""

    def __init__(
        self, call: Callable[[list[dict[str, Any]]], dict[str, Any]], run: Callable[..., Any], linger: float = _ACK_LINGER
    ) -> None:
        self.call = call
        self.run = run
        self.linger = linger
        self._pending: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, entry: dict[str, Any]) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((entry, future))
        if len(self._pending) >= MAX_BATCH:
            self._flush_now()
        elif self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_later())
        await future

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.linger)
        self._flusher = None
        self._flush_now()

    def _flush_now(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            asyncio.create_task(self._send(batch))

    async def _send(self, batch: list[tuple[dict[str, Any], asyncio.Future[None]]]) -> None:
        entries = [{**entry, "Id": str(i)} for i, (entry, _) in enumerate(batch)]
        try:
            response = await self.run(self.call, entries)
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(SettleFailed(str(exc)[:200] or type(exc).__name__))
            return
        failed = {f["Id"]: f for f in response.get("Failed", [])}
        for i, (_, future) in enumerate(batch):
            if future.done():
                continue
            if str(i) in failed:
                f = failed[str(i)]
                future.set_exception(SettleFailed(f"{f.get('Code')}: {str(f.get('Message'))[:200]}"))
            else:
                future.set_result(None)


@dataclass
class _Group:
    active: bool = False
    waiting: collections.deque[SqsMessage] = field(default_factory=collections.deque)


class SqsSource(BrokerSource):
    name = "sqs"  # the CLI name: part of every derived client_order_id, so never renamed later
    message_class: type[SqsMessage] = SqsMessage

    def __init__(
        self, config: SqsSidecarSettings, metrics: SidecarMetrics | None = None, client_factory: Callable[[], Any] | None = None
    ) -> None:
        super().__init__(config.settle_timeout)
        self.config = config
        self.metrics = metrics
        self._client_factory = client_factory or functools.partial(make_client, config)
        self._client: Any = None
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=config.receivers + 8, thread_name_prefix="wojak-sqs")
        self._buffer: asyncio.Queue[SqsMessage | None] = asyncio.Queue()
        self._leases: dict[str, _Lease] = {}  # MessageId -> lease, while unsettled
        self._reserved = 0  # room asked for by receives in progress
        self._room = asyncio.Event()
        self._groups: dict[str, _Group] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._receivers: list[asyncio.Task[None]] = []
        self._receiving_ok = False
        self._receives: dict[int, float] = {}  # receives in progress: id -> when each started
        self._max_message_bytes = DEFAULT_MAX_MESSAGE_BYTES
        self._deletes: _Batcher | None = None
        self._visibility: _Batcher | None = None
        # what the lease keeping did (also exported when metrics are given)
        self.extensions = 0
        self.leases_lost = 0
        self.redeliveries_held = 0
        self._extensions_metric = self._lost_metric = None
        if metrics is not None:
            self._extensions_metric = Counter(
                "wojak_sidecar_sqs_lease_extensions",
                "Visibility extensions of held messages",
                ["source"],
                registry=metrics.registry,
            ).labels(self.name)
            self._lost_metric = Counter(
                "wojak_sidecar_sqs_leases_lost",
                "Leases that lapsed before the message was settled",
                ["source"],
                registry=metrics.registry,
            ).labels(self.name)

    # -- plumbing --------------------------------------------------------------------

    async def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> SqsSource:
        self._client = await self.connect_with_backoff(self._connect, "SQS", (Exception,))
        if self._client is None:  # stopped before SQS answered
            return self
        client, url = self._client, self.config.queue_url
        self._deletes = _Batcher(lambda entries: client.delete_message_batch(QueueUrl=url, Entries=entries), self._run)
        self._visibility = _Batcher(
            lambda entries: client.change_message_visibility_batch(QueueUrl=url, Entries=entries), self._run, linger=0.0
        )
        self._room.set()
        self._receivers = [
            asyncio.create_task(self._receive_loop(), name=f"wojak-sqs-receive-{i}") for i in range(self.config.receivers)
        ]
        self._tasks = [asyncio.create_task(self._heartbeat(), name="wojak-sqs-heartbeat")]
        log.info("consuming %r", self.config)
        return self

    async def _connect(self) -> Any:
        client = await self._run(self._client_factory)
        attributes = (await self._run(client.get_queue_attributes, QueueUrl=self.config.queue_url, AttributeNames=["All"]))[
            "Attributes"
        ]
        dlq = (
            await self._run(
                client.get_queue_attributes, QueueUrl=self.config.dead_letter_queue_url, AttributeNames=["MaximumMessageSize"]
            )
        )["Attributes"]
        self._max_message_bytes = int(dlq.get("MaximumMessageSize", DEFAULT_MAX_MESSAGE_BYTES))
        if not attributes.get("RedrivePolicy"):
            log.warning(
                "queue %s has no redrive policy: a message whose dead letter SQS keeps refusing stays in the "
                "queue (set one with maxReceiveCount as the safety net)",
                self.config.queue,
            )
        return client

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_consuming()
        if self._receivers:  # a long poll in progress: what it returns is given back
            _, late = await asyncio.wait(self._receivers, timeout=self.config.close_timeout)
            for task in late:
                task.cancel()
            if late:
                log.warning(
                    "a long poll outlasted %.1fs at shutdown; what it receives comes back after its visibility timeout",
                    self.config.close_timeout,
                )
            self._receivers = []
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._client is not None and self._leases:  # unsettled (a lost ack, a settlement in the air): visible now
            await self._give_back(list(self._leases))
        self._client = None
        self._pool.shutdown(wait=False, cancel_futures=False)

    async def stop_consuming(self) -> None:
        if not self.begin_stopping():
            return
        self._room.set()
        held: list[str] = []
        while not self._buffer.empty():  # received, never handed to the runner: given back
            message = self._buffer.get_nowait()
            if message is not None:
                held.append(message.message_id)
        for group in self._groups.values():
            held.extend(m.message_id for m in group.waiting)
            group.waiting.clear()
        self._buffer.put_nowait(None)  # the iterator ends
        if held and self._client is not None:
            await self._give_back(held)

    def is_ready(self) -> bool:
        return self._client is not None and self._receiving_ok and not self._receive_overdue() and not self.stopping

    def _receive_overdue(self) -> bool:
        """A long poll unanswered well past its wait time: SQS is not answering (a hung endpoint
        fails a receive only after the read timeout and the client's retries, ~30 s)."""
        if not self._receives:
            return False
        return self._now() - min(self._receives.values()) > self.config.wait_time + READ_MARGIN

    async def messages(self) -> AsyncIterator[SourceMessage]:
        while (message := await self._buffer.get()) is not None:
            yield message

    # -- receiving -------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        cfg, failures = self.config, 0
        while not self.stopping:
            room = cfg.held_limit - len(self._leases) - self._reserved
            if room <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            want = min(cfg.batch_size, room)
            self._reserved += want
            key = id(asyncio.current_task())
            self._receives[key] = self._now()
            try:
                response = await self._run(
                    self._client.receive_message,
                    QueueUrl=cfg.queue_url,
                    MaxNumberOfMessages=want,
                    WaitTimeSeconds=cfg.wait_time,
                    VisibilityTimeout=cfg.visibility,
                    MessageSystemAttributeNames=["All"],
                    MessageAttributeNames=["All"],
                )
            except Exception as exc:
                self._receiving_ok = False
                failures += 1
                delay = capped_backoff(failures, 0.5, 10.0)
                log.warning(
                    "ReceiveMessage on %s failed (%s); again in %.1fs", cfg.queue, str(exc)[:200] or type(exc).__name__, delay
                )
                await self.pause(delay)
                continue
            finally:
                self._reserved -= want
                self._receives.pop(key, None)
            failures, self._receiving_ok = 0, True
            self._accept(response.get("Messages") or [], self._now())

    def _accept(self, raws: list[dict[str, Any]], received: float) -> None:
        expires = received + self.config.visibility
        late: list[str] = []
        for raw in raws:
            mid, receipt = str(raw["MessageId"]), raw["ReceiptHandle"]
            lease = self._leases.get(mid)
            if lease is not None:  # its lease lapsed and SQS gave it back to us: keep one, with the new receipt
                lease.receipt, lease.expires = receipt, expires
                self.redeliveries_held += 1
                log.warning("message %s came back while still held (its lease had lapsed); not handed out again", mid)
                continue
            message = self.message_class(self, raw)
            self._leases[mid] = _Lease(receipt, expires, message.group, message)
            if self.stopping:
                late.append(mid)
                continue
            if self.config.fifo and message.group is not None:
                group = self._groups.setdefault(message.group, _Group())
                if group.active:
                    group.waiting.append(message)
                    continue
                group.active = True
            self._buffer.put_nowait(message)
        if late:
            asyncio.create_task(self._give_back(late))

    # -- the lease (heartbeat) -------------------------------------------------------

    async def _heartbeat(self) -> None:
        visibility = self.config.visibility
        tick = max(0.25, min(5.0, visibility / 6))
        while True:
            await asyncio.sleep(tick)
            now = self._now()
            due = [
                (mid, lease)
                for mid, lease in self._leases.items()
                if not lease.extending and lease.expires - now < visibility / 2
            ]
            for start in range(0, len(due), MAX_BATCH):
                asyncio.create_task(self._extend(due[start : start + MAX_BATCH]))

    async def _extend(self, leases: list[tuple[str, _Lease]]) -> None:
        visibility = self.config.visibility
        for _, lease in leases:
            lease.extending = True
        sent = self._now()
        entries = [
            {"Id": str(i), "ReceiptHandle": lease.receipt, "VisibilityTimeout": visibility} for i, (_, lease) in enumerate(leases)
        ]
        try:
            response = await self._run(
                self._client.change_message_visibility_batch, QueueUrl=self.config.queue_url, Entries=entries
            )
        except Exception as exc:
            log.warning("extending %d lease(s) failed (%s); trying again", len(leases), str(exc)[:200] or type(exc).__name__)
            response = None
        failed = {f["Id"]: f for f in (response or {}).get("Failed", [])}
        for i, (mid, lease) in enumerate(leases):
            lease.extending = False
            if response is None or self._leases.get(mid) is not lease:
                continue  # settled meanwhile, or to be tried again on the next tick
            if str(i) in failed:
                if lease.receipt != entries[i]["ReceiptHandle"]:
                    continue  # a newer receipt arrived meanwhile: the next tick extends that one
                self.leases_lost += 1
                if self._lost_metric is not None:
                    self._lost_metric.inc()
                log.warning(
                    "the lease of message %s could not be extended (%s): SQS may hand it out again (the engine "
                    "answers that duplicate)",
                    mid,
                    failed[str(i)].get("Code"),
                )
                lease.expires = sent + visibility  # do not hammer it
                continue
            lease.expires = sent + visibility
            self.extensions += 1
            if self._extensions_metric is not None:
                self._extensions_metric.inc()

    # -- settling --------------------------------------------------------------------

    def _settling(self, message: SqsMessage) -> str:
        """The message leaves the lease table (no more extensions); its newest receipt."""
        lease = self._leases.pop(message.message_id, None)
        self._room.set()
        if lease is None:
            raise SettleFailed("the message is no longer held")
        return lease.receipt

    async def _delete(self, receipt: str) -> None:
        assert self._deletes is not None
        await self._deletes.submit({"ReceiptHandle": receipt})

    async def _change_visibility(self, receipt: str, seconds: int) -> None:
        assert self._visibility is not None
        await self._visibility.submit({"ReceiptHandle": receipt, "VisibilityTimeout": seconds})

    async def _give_back(self, message_ids: list[str]) -> None:
        """Visible again now (not settled by the runner: never handed out, or unsettled at close)."""
        receipts = []
        for mid in message_ids:
            lease = self._leases.pop(mid, None)
            if lease is not None:
                receipts.append(lease.receipt)
        self._room.set()
        await asyncio.gather(*(self.quietly(self._change_visibility(r, 0), "giving back", self.config.queue) for r in receipts))

    def _next_in_group(self, message: SqsMessage) -> None:
        """Acked or dead-lettered: the next message of its FIFO group may go to the engine."""
        if not self.config.fifo or message.group is None:
            return
        group = self._groups.get(message.group)
        if group is None:
            return
        if group.waiting and not self.stopping:
            self._buffer.put_nowait(group.waiting.popleft())
        else:
            del self._groups[message.group]

    async def _release_group(self, message: SqsMessage) -> None:
        """Requeued (or not dead-lettered): the rest of its FIFO group goes back with it, in order."""
        if not self.config.fifo or message.group is None:
            return
        group = self._groups.pop(message.group, None)
        if group is not None and group.waiting:
            await self._give_back([m.message_id for m in group.waiting])

    async def _send_dead_letter(self, message: SqsMessage, reason: str, detail: Any, publisher_attributes: bool) -> None:
        cfg = self.config
        attributes = dead_letter_attributes(
            message.message_attributes,
            reason,
            detail,
            cfg.queue,
            message.message_id,
            len(message.text.encode("utf-8", "surrogateescape")),
            self._max_message_bytes,
            publisher_attributes,
        )
        kwargs: dict[str, Any] = {
            "QueueUrl": cfg.dead_letter_queue_url,
            "MessageBody": message.text or " ",
            "MessageAttributes": attributes,
        }
        if cfg.fifo:
            kwargs["MessageGroupId"] = message.group or "wojak-dead-letters"
            kwargs["MessageDeduplicationId"] = message.message_id
        response = await self._run(self._client.send_message, **kwargs)
        if not response.get("MessageId"):
            raise SettleFailed("SQS did not confirm the dead letter")


def make_client(config: SqsSidecarSettings) -> Any:
    """A boto3 SQS client: credentials from boto3's default chain only (environment, web
    identity, instance or task role); connections for every receiver and the settling calls."""
    import boto3
    from botocore.config import Config

    settings = Config(
        region_name=config.region,
        max_pool_connections=config.receivers + 8,
        connect_timeout=5,
        read_timeout=config.wait_time + READ_MARGIN,
        retries={"mode": "standard", "max_attempts": 3},
    )
    return boto3.session.Session().client("sqs", endpoint_url=config.endpoint or None, config=settings)


async def serve(config: SqsSidecarSettings, *, stop: asyncio.Event | None = None) -> None:
    """The SQS sidecar until SIGTERM/SIGINT (or ``stop``): consume, drain, exit."""
    metrics = SidecarMetrics(SqsSource.name)
    runner = config.runner
    await serve_sidecar(SqsSource(config, metrics), runner, stop=stop, metrics=metrics)
