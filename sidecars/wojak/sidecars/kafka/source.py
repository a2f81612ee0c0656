"""Kafka as a ``Source``: one topic, a consumer group, manual commits, a dead-letter topic.

Consumption. The sidecar joins ``group_id`` and consumes ``topic`` (aiokafka,
``enable_auto_commit=False``). Records are fetched in offset order into per-partition state;
at most ``prefetch`` fetched records may be unsettled at once (past it every partition is
paused: ``getmany`` still runs, so the consumer never looks idle to the group).

Order. The documented producer contract is "key = account", so one account's orders are in
one partition, in the order they were produced. Within a partition several records are in
flight at once, but only one per *lane*: the lane is the order's ``account`` (read from the
body; the record key when the body names none). A record is handed to the runner only when
every earlier record of its lane in that partition is settled, so the orders of one account
reach the engine in their order.

Commits. Per partition the committed offset is the lowest offset not yet settled (or, with
nothing unsettled, the next to fetch): a commit never passes a record whose verdict has not
been acted on. "Settled" means: acked after the engine's verdict; its result confirmed on the
results topic first (``ack_and_publish``); or its dead letter confirmed (``acks=all``,
idempotent producer). Commits run every ``commit_interval`` seconds, on a revoke and at stop
(that one retried until ``max(close_timeout, settle_timeout)`` is spent: a rebalance under way
refuses a commit); a crash replays at most the unsettled suffix, which the engine answers
``duplicate``.

Settlement of one record:

* ``ack``          -> settled (the next commit moves past it).
* ``requeue(d)``   -> (a ``retry`` verdict, a result that was not published, or the drain's
  give-back) the record is retried *in place*: its partition is paused (nothing more of it is
  handed out, and fetching stops), the record is held ``d`` seconds (the runner's capped
  exponential backoff) and handed to the runner again before anything after it; the partition
  resumes once it is settled. Other partitions go on. There is no attempt limit: a ``retry`` is
  temporary by definition and waits, however long; only what can never succeed is dead-lettered.
* ``dead_letter``  -> a copy is produced to ``dead_letter_topic`` (key, body and the publisher's
  headers kept) with headers ``x-wojak-reason`` (the reason code), ``x-wojak-detail`` (JSON,
  at most 4 KiB), ``x-wojak-topic``, ``x-wojak-partition`` and ``x-wojak-offset``; the record is
  settled only once the broker confirmed the copy. A copy larger than ``DEAD_LETTER_MAX_BYTES``
  drops the publisher's headers (named in ``x-wojak-headers-dropped``), then the body (its
  size and sha256 in ``x-wojak-body-omitted``: the original stays at its coordinates). A crash
  between the confirm and the commit dead-letters it again (at least once in the DLT).
* ``give_up``      -> (a record whose settlements failed ``WOJAK_SIDECAR_SETTLE_ATTEMPTS`` times
  for a reason of its own, e.g. a dead letter the dead-letter topic refuses as too large) a
  minimal dead letter: reason ``unsettleable``, ``x-wojak-original-reason``, the coordinates,
  the body's size and sha256, no body and none of the publisher's headers. So a poison record
  never holds its partition forever.

A settlement the broker could not take is redelivered in place (the partition paused, a capped
backoff) and reported to the runner as ``SettleFailed``. Only failures that are the record's
own (the broker refused it as too large or invalid) count toward giving it up; an unreachable
broker, a timeout or a leader change is the broker's and is never counted: those records wait,
as everything else does, until the broker is back.

Rebalances. On revoke (``ConsumerRebalanceListener.on_partitions_revoked``) the revoked
partitions hand out nothing more, held retries end at once (not redelivered), records in flight
get up to ``drain_seconds`` to settle, the settled prefix is committed, and the partitions are
forgotten; a record still in flight after that is left to the new owner (its late settlement
is ignored here). On assign, consumption resumes from the committed offsets. SIGTERM does the
same for every partition (the runner drains; ``__aexit__`` commits, then leaves the group).

The hand-out (order per lane, holds, redeliveries, the settled prefix) is the kit's
``OrderedPartitions`` (``wojak.sidecars._core.ordered``); this module keeps the fetching, the
commits, the rebalances and the produces.

Coordinates are ``(topic, partition, offset)``: an order without ``client_order_id`` gets one
derived from them (``derive_client_order_id``), the same on every redelivery.

Readiness: the producer's client fetches the cluster metadata every second (bounded); while
that fails (the broker is down or unreachable) ``/readyz`` is false. The consumer and the
producer reconnect by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import sys
import time
from typing import Any, AsyncIterator, Hashable, Iterable

import orjson
from aiokafka import errors as kafka_errors
from aiokafka.abc import ConsumerRebalanceListener

from wojak.engine.protocol import SocketDirError
from wojak.sidecars._core.metrics import SidecarMetrics
from wojak.sidecars._core.ordered import (
    OrderedMessage,
    OrderedPartition,
    OrderedPartitions,
    OrderedRecord,
    write_position_at_stop,
)
from wojak.sidecars._core.serve import serve_sidecar
from wojak.sidecars._core.source import BrokerSource, SettleFailed, SourceMessage
from wojak.sidecars.kafka.config import KafkaSidecarSettings, check_transport

log = logging.getLogger(__name__)

REASON_HEADER = "x-wojak-reason"
DETAIL_HEADER = "x-wojak-detail"
TOPIC_HEADER = "x-wojak-topic"
PARTITION_HEADER = "x-wojak-partition"
OFFSET_HEADER = "x-wojak-offset"
ORIGINAL_REASON_HEADER = "x-wojak-original-reason"
BODY_OMITTED_HEADER = "x-wojak-body-omitted"
DROPPED_HEADER = "x-wojak-headers-dropped"
VERDICT_HEADER = "x-wojak-verdict"
DUPLICATE_HEADER = "x-wojak-duplicate"
_OWN_HEADERS = frozenset(
    {
        REASON_HEADER,
        DETAIL_HEADER,
        TOPIC_HEADER,
        PARTITION_HEADER,
        OFFSET_HEADER,
        ORIGINAL_REASON_HEADER,
        BODY_OMITTED_HEADER,
        DROPPED_HEADER,
    }
)
MAX_DETAIL_BYTES = 4096
# a dead letter stays below the producer's max_request_size and the broker's default
# message.max.bytes (1 MiB): past it the publisher's headers, then the body, are left out
DEAD_LETTER_MAX_BYTES = 1_000_000
PRODUCE_PATIENCE = 300.0  # seconds a dead letter or result waits in the producer for an unreachable broker
METADATA_BACKOFF = 0.5  # seconds between metadata updates after one failed (the broker is away)
_RECORD_OVERHEAD = 128  # a record's own framing, and its share of the batch header
_NAMES_SHOWN = 16


# -- pure helpers -------------------------------------------------------------------------


def lane_of(value: bytes | None, key: bytes | None, max_body_bytes: int) -> Hashable:
    """The ordering lane of a record: its order's account (the body's ``account``), else the
    record key, else one lane for everything unkeyed and unreadable."""
    if value is not None and len(value) <= max_body_bytes:
        try:
            data = orjson.loads(value)
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            account = data.get("account")
            if isinstance(account, str):
                return ("account", account)
    if key is not None:
        return ("key", bytes(key))
    return ("none",)


def _detail(detail: Any, limit: int = MAX_DETAIL_BYTES) -> bytes:
    raw = orjson.dumps(detail, default=str, option=orjson.OPT_NON_STR_KEYS)
    if len(raw) > limit:
        return raw[: max(limit - 16, 0)].decode("utf-8", "ignore").encode() + b"...(truncated)"
    return raw


def _size(value: bytes | None, key: bytes | None, headers: Iterable[tuple[str, bytes]]) -> int:
    return _RECORD_OVERHEAD + len(value or b"") + len(key or b"") + sum(len(k.encode()) + len(v) + 8 for k, v in headers)


def dead_letter_record(
    record: Any,
    reason: str,
    detail: Any,
    *,
    limit: int = DEAD_LETTER_MAX_BYTES,
    minimal: bool = False,
    original_reason: str | None = None,
) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """(value, key, headers) of the dead letter of ``record`` (an aiokafka ``ConsumerRecord``).

    Kept always: the key, the reason, the source coordinates. Then the detail, the publisher's
    headers (smallest first) and the body while they fit in ``limit``; what does not fit is
    named (``x-wojak-headers-dropped``) or described (``x-wojak-body-omitted``). ``minimal``
    (a give-up) leaves out the publisher's headers and the body."""
    value: bytes | None = record.value
    key: bytes | None = record.key
    own = [
        (REASON_HEADER, str(reason)[:255].encode()),
        (TOPIC_HEADER, str(record.topic).encode()),
        (PARTITION_HEADER, str(record.partition).encode()),
        (OFFSET_HEADER, str(record.offset).encode()),
    ]
    if original_reason:
        own.append((ORIGINAL_REASON_HEADER, original_reason[:255].encode()))
    own.append((DETAIL_HEADER, _detail(detail)))
    publisher = [(str(k), bytes(v or b"")) for k, v in (record.headers or ()) if str(k) not in _OWN_HEADERS]
    kept: list[tuple[str, bytes]] = []
    dropped: list[tuple[str, int]] = []
    budget = limit - _size(None, key, own) - 256  # room kept for the notes below
    body = 0 if value is None else len(value)
    if not minimal and body <= budget:
        budget -= body
    else:
        value_note = {"bytes": body, "sha256": hashlib.sha256(value or b"").hexdigest()}
        own.append((BODY_OMITTED_HEADER, orjson.dumps(value_note)))
        value = None
    for name, data in sorted(publisher, key=lambda h: len(h[0]) + len(h[1])):
        need = len(name.encode()) + len(data) + 8
        if minimal or need > budget:
            dropped.append((name, need))
            continue
        budget -= need
        kept.append((name, data))
    if dropped:
        note = {"count": len(dropped), "bytes": sum(n for _, n in dropped), "names": [n for n, _ in dropped[:_NAMES_SHOWN]]}
        own.append((DROPPED_HEADER, orjson.dumps(note)[:1024]))
    return value, key, kept + own


def _counts(exc: BaseException) -> bool:
    """Whether a failed produce is the record's own fault (the broker refused the record as too
    large or invalid: it will never be taken), which counts toward giving the record up. Anything
    else (unreachable, timeouts, leader changes, authorization) is the broker's: it waits."""
    return isinstance(exc, _RECORD_AT_FAULT)


_RECORD_AT_FAULT: tuple[type[BaseException], ...] = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordTooLargeError,
    kafka_errors.RecordListTooLargeError,
    *(
        e
        for e in (getattr(kafka_errors, "InvalidRecordError", None), getattr(kafka_errors, "CorruptRecordException", None))
        if isinstance(e, type)
    ),
)


# Errors after which an idempotent producer cannot go on (aiokafka does not reset its producer id
# when a batch it had numbered expires, e.g. during a broker outage: every later batch to that
# partition is then OUT_OF_ORDER_SEQUENCE_NUMBER): the producer is replaced by a new one.
_PRODUCER_FATAL: tuple[type[BaseException], ...] = tuple(
    e
    for e in (
        getattr(kafka_errors, n, None)
        for n in (
            "OutOfOrderSequenceNumber",
            "InvalidProducerEpoch",
            "ProducerFenced",
            "UnknownProducerId",
            "InvalidProducerIdMapping",
            "ProducerClosed",
        )
    )
    if isinstance(e, type)
)


def _why(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return f"no answer within {timeout:.1f}s"
    return (f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)[:300]


# -- per-partition state ------------------------------------------------------------------


class _Partition(OrderedPartition):
    """A partition's ordered records (the kit's) and what Kafka adds: the fetch position and the
    last commit."""

    def __init__(self, tp: Any) -> None:
        super().__init__(tp)
        self.tp = tp
        self.position: int | None = None  # the offset after the last fetched record
        self.committed: int | None = None  # what this process last committed

    def committable(self) -> int | None:
        """The lowest unsettled offset; with nothing unsettled, the next to fetch."""
        first = self.first_unsettled()
        return first.position if first is not None else self.position


class KafkaMessage(OrderedMessage):
    def __init__(self, source: "KafkaSource", rec: OrderedRecord) -> None:
        self._source = source
        r = rec.item
        super().__init__(
            source._order,
            rec,
            r.value if r.value is not None else b"",
            (r.topic, r.partition, r.offset),
            {"key": r.key, "timestamp": r.timestamp, "headers": [(k, v) for k, v in (r.headers or ())]},
        )

    @property
    def record(self) -> Any:
        return self._rec.item

    async def _send_dead_letter(self, reason: str, detail: Any, *, minimal: bool) -> None:
        await self._source._produce_dead_letter(self, reason, detail, minimal=minimal)


class _Listener(ConsumerRebalanceListener):
    """The revoke and assign hooks (aiokafka awaits them inside the rebalance)."""

    def __init__(self, source: "KafkaSource") -> None:
        self.source = source

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.source._revoke(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.source._assign(set(assigned))


class _MetadataBackoff:
    """aiokafka's producer sender and fetcher ask for a metadata update and wait for it in a loop;
    with the broker down each update fails at once (connection refused), so they spin: thousands
    of connection attempts (and log lines) a second, a core burnt for the whole outage. This
    wraps the client's ``force_metadata_update``: within ``backoff`` seconds of a failed update
    the next one waits out the rest of that time first."""

    def __init__(self, client: Any, backoff: float) -> None:
        self.original = client.force_metadata_update
        self.backoff = backoff
        self.failed_at: float | None = None
        client.force_metadata_update = self

    def __call__(self) -> Any:
        loop = asyncio.get_running_loop()
        if self.failed_at is not None and (left := self.backoff - (loop.time() - self.failed_at)) > 0:
            return asyncio.ensure_future(asyncio.sleep(left, result=False))
        future = self.original()
        future.add_done_callback(self._done)
        return future

    def _done(self, future: asyncio.Future[Any]) -> None:
        ok = not future.cancelled() and future.exception() is None and bool(future.result())
        self.failed_at = None if ok else asyncio.get_running_loop().time()


class _RateLimited(logging.Filter):
    """At most one line per ``every`` seconds for each of aiokafka's messages while the broker is
    away (the rest are counted, and the count is shown with the next line let through)."""

    def __init__(self, every: float = 10.0) -> None:
        super().__init__()
        self.every = every
        self.seen: dict[tuple[str, Any], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.msg)
        now = time.monotonic()
        last, skipped = self.seen.get(key, (0.0, 0))
        if now - last < self.every:
            self.seen[key] = (last, skipped + 1)
            return False
        self.seen[key] = (now, 0)
        if skipped:
            record.msg = f"{record.msg} ({skipped} more like it in the last {now - last:.0f}s)"
        return True


def quiet_aiokafka_logs(every: float = 10.0) -> None:
    """aiokafka logs every failed connection attempt; while the broker is down that is many a second."""
    for name in (
        "aiokafka",
        "aiokafka.conn",
        "aiokafka.client",
        "aiokafka.producer.sender",
        "aiokafka.consumer.group_coordinator",
        "aiokafka.consumer.fetcher",
    ):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RateLimited) for f in logger.filters):
            logger.addFilter(_RateLimited(every))


class AIOKafkaClients:
    """The consumer and producer the source runs on: aiokafka's, configured from the sidecar's
    settings. Tests substitute an in-memory broker with the same calls."""

    def __init__(self, config: KafkaSidecarSettings) -> None:
        self.config = config

    def _common(self) -> dict[str, Any]:
        c = self.config
        check_transport(c.servers, c.security_protocol)  # however the settings were made
        common: dict[str, Any] = {
            "bootstrap_servers": list(c.servers),
            "client_id": c.client_id,
            "security_protocol": c.security_protocol,
            "request_timeout_ms": max(1000, int(c.settle_timeout * 1000)),
        }
        context = c.ssl_context()
        if context is not None:
            common["ssl_context"] = context
        if c.security_protocol.startswith("SASL_"):
            common.update(
                sasl_mechanism=c.sasl_mechanism,
                sasl_plain_username=c.sasl_username,
                sasl_plain_password=c.sasl_password.get_secret_value() if c.sasl_password else None,
            )
        return common

    def consumer(self) -> Any:
        from aiokafka import AIOKafkaConsumer

        c = self.config
        # the group waits this long for a member's revoke (our drain, then the commit)
        rebalance_ms = max(c.session_timeout_ms, int((c.drain_seconds + 2 * c.settle_timeout) * 1000))
        # a JoinGroup request is answered only once every member has rejoined (after its revoke): the
        # consumer's requests may take that long (the sidecar's own waits on it stay settle_timeout)
        common = {**self._common(), "request_timeout_ms": max(40_000, rebalance_ms + 5000)}
        consumer = AIOKafkaConsumer(
            group_id=c.group_id,
            enable_auto_commit=False,
            auto_offset_reset=c.auto_offset_reset,
            session_timeout_ms=c.session_timeout_ms,
            heartbeat_interval_ms=c.heartbeat_interval_ms,
            rebalance_timeout_ms=rebalance_ms,
            max_partition_fetch_bytes=max(1024 * 1024, c.max_body_bytes * 2),
            isolation_level="read_committed",
            **common,
        )
        _MetadataBackoff(consumer._client, METADATA_BACKOFF)
        return consumer

    def producer(self) -> Any:
        from aiokafka import AIOKafkaProducer

        # request_timeout_ms is also how long a batch may wait in the producer for the broker: past it
        # the batch expires, and with it the idempotent producer's sequence (see _PRODUCER_FATAL). Ours
        # waits out an outage of PRODUCE_PATIENCE; the sidecar's own waits stay settle_timeout.
        common = {**self._common(), "request_timeout_ms": int(PRODUCE_PATIENCE * 1000)}
        producer = AIOKafkaProducer(
            acks="all", enable_idempotence=True, linger_ms=2, max_request_size=DEAD_LETTER_MAX_BYTES + 48 * 1024, **common
        )
        _MetadataBackoff(producer.client, METADATA_BACKOFF)
        return producer

    async def probe(self, producer: Any) -> None:
        """Raises unless the cluster answers a metadata request."""
        await producer.client.fetch_all_metadata()

    @staticmethod
    def offset(offset: int) -> Any:
        from aiokafka.structs import OffsetAndMetadata

        return OffsetAndMetadata(offset, "")


class KafkaSource(BrokerSource):
    name = "kafka"

    def __init__(self, config: KafkaSidecarSettings, metrics: SidecarMetrics | None = None, clients: Any = None) -> None:
        super().__init__(config.settle_timeout)
        self.config = config
        self.clients = clients or AIOKafkaClients(config)
        self._consumer: Any = None
        self._producer: Any = None
        self._order: OrderedPartitions[_Partition] = OrderedPartitions.for_source(
            self,
            config,
            lambda rec: KafkaMessage(self, rec),
            on_hold_change=self._apply_pause,
            on_settled=self._apply_fetch_pause,
        )
        self._partitions = self._order.partitions
        self._fetch_paused = False
        self._tasks: list[asyncio.Task[None]] = []
        self._commit_lock = asyncio.Lock()
        self._replacing: asyncio.Task[None] | None = None
        self._broker_ok = False
        self._last_commit_error = 0.0
        self.commits = 0  # successful commit requests (tests, bench)
        self.rebalances = {"revoked": 0, "assigned": 0}
        self._commit_counter = self._rebalance_counter = None
        if metrics is not None:
            from prometheus_client import Counter

            self._commit_counter = Counter(
                "wojak_sidecar_kafka_commits", "Offset commits by result", ["source", "result"], registry=metrics.registry
            )
            self._rebalance_counter = Counter(
                "wojak_sidecar_kafka_rebalances", "Partitions revoked/assigned", ["source", "kind"], registry=metrics.registry
            )

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> "KafkaSource":
        retry_on = (kafka_errors.KafkaError, OSError, asyncio.TimeoutError)
        self._producer = await self.connect_with_backoff(self._start_producer, "Kafka (producer)", retry_on)
        if self._producer is None:
            return self
        self._consumer = await self.connect_with_backoff(self._start_consumer, "Kafka (consumer)", retry_on)
        if self._consumer is None:
            return self
        self._broker_ok = True
        self._tasks = [
            asyncio.create_task(self._fetch_loop(), name="wojak-kafka-fetch"),
            asyncio.create_task(self._commit_loop(), name="wojak-kafka-commit"),
            asyncio.create_task(self._probe_loop(), name="wojak-kafka-probe"),
        ]
        c = self.config
        log.info(
            "consuming %s as group %s (prefetch %d, dead letters to %s, results to %s)",
            c.topic,
            c.group_id,
            c.prefetch,
            c.dead_letter_topic,
            c.results_topic or "nowhere",
        )
        return self

    async def _start_producer(self) -> Any:
        producer = self.clients.producer()
        try:
            await asyncio.wait_for(producer.start(), max(self.settle_timeout, 5.0))
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), self.config.close_timeout)
            raise
        return producer

    async def _start_consumer(self) -> Any:
        consumer = self.clients.consumer()
        try:
            await asyncio.wait_for(consumer.start(), max(self.settle_timeout, 5.0))
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), self.config.close_timeout)
            raise
        consumer.subscribe([self.config.topic], listener=_Listener(self))
        return consumer

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_consuming()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._replacing is not None:
            self._replacing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._replacing
        for p in self._partitions.values():
            for timer in list(p.timers):
                timer.cancel()
        if self._consumer is not None:
            await self._commit_at_stop()
            try:  # leaves the group: the partitions go to the other members at once
                await asyncio.wait_for(self._consumer.stop(), self.config.close_timeout)
            except Exception as exc:
                log.warning(
                    "stopping the Kafka consumer failed (%s); the group drops it after its session timeout",
                    _why(exc, self.config.close_timeout),
                )
            self._consumer = None
        if self._producer is not None:
            try:
                await asyncio.wait_for(self._producer.stop(), self.config.close_timeout)
            except Exception as exc:
                log.warning("stopping the Kafka producer failed (%s)", _why(exc, self.config.close_timeout))
            self._producer = None
        self._partitions.clear()

    async def stop_consuming(self) -> None:
        if not self.begin_stopping():
            return
        self._order.stop()  # what was ready stays unsettled, so the commit stays below it

    def is_ready(self) -> bool:
        return self._consumer is not None and self._broker_ok and not self.stopping

    # -- the runner's side -------------------------------------------------------------

    def messages(self) -> AsyncIterator[SourceMessage]:
        return self._order.messages()

    async def _produce_dead_letter(self, message: KafkaMessage, reason: str, detail: Any, *, minimal: bool) -> None:
        record = message.record
        original = message._rec.last_reason if minimal else None
        value, key, headers = dead_letter_record(record, reason, detail, minimal=minimal, original_reason=original)
        topic, what = self.config.dead_letter_topic, "give_up" if minimal else "dead_letter"
        await self._order.settle_by_send(
            message,
            reason,
            lambda: self._produce(topic, value, key, headers, message._rec, what),
            counts=_counts,
            why=lambda exc: _why(exc, self.settle_timeout),
        )

    async def _produce(
        self, topic: str, value: bytes | None, key: bytes | None, headers: list[tuple[str, bytes]], rec: OrderedRecord, what: str
    ) -> None:
        """One record, confirmed by the broker (acks=all) within ``settle_timeout``. A produce that
        did not answer in time stays in the producer's queue (it may still be delivered): the
        record's next attempt waits for it rather than producing a second copy."""
        producer = self._producer
        if producer is None:
            raise SettleFailed("not connected to Kafka (the producer is being replaced)", counts=False)
        try:
            await self._order.send_once(rec, what, lambda: producer.send_and_wait(topic, value=value, key=key, headers=headers))
        except _PRODUCER_FATAL as exc:
            self._replace_producer(producer, exc)
            raise

    def _replace_producer(self, producer: Any, exc: BaseException) -> None:
        """Stop ``producer`` and start a new one (a new producer id), once, in the background."""
        if self._producer is not producer or self._replacing is not None or self.stopping:
            return
        log.warning("the Kafka producer cannot go on (%s); replacing it with a new one", _why(exc, 0))
        self._producer = None

        async def replace() -> None:
            try:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(producer.stop(), self.config.close_timeout)
                retry_on = (kafka_errors.KafkaError, OSError, asyncio.TimeoutError)
                self._producer = await self.connect_with_backoff(self._start_producer, "Kafka (producer)", retry_on)
            finally:
                self._replacing = None

        self._replacing = asyncio.create_task(replace(), name="wojak-kafka-producer-replace")

    async def publish_result(self, message: SourceMessage, reply: dict[str, Any]) -> None:
        """A verdict of ``ack_and_publish`` to the results topic (key: the record's, so one account's
        results stay in order), confirmed before the record is acked."""
        assert isinstance(message, KafkaMessage)
        if not self.config.results_topic:
            return
        record = message.record
        fields = {k: reply.get(k) for k in ("client_order_id", "verdict", "reason", "order")}
        headers = [
            (VERDICT_HEADER, str(reply.get("verdict")).encode()),
            (TOPIC_HEADER, str(record.topic).encode()),
            (PARTITION_HEADER, str(record.partition).encode()),
            (OFFSET_HEADER, str(record.offset).encode()),
        ]
        if reply.get("duplicate"):  # published again for a redelivery: the same outcome as the first
            fields["duplicate"] = True
            headers.append((DUPLICATE_HEADER, b"true"))
        await self._produce(
            self.config.results_topic, orjson.dumps(fields, default=str), record.key, headers, message._rec, "result"
        )

    # -- consuming ---------------------------------------------------------------------

    def _assign(self, assigned: set[Any]) -> None:
        for tp in assigned:
            if tp not in self._partitions:
                self._partitions[tp] = _Partition(tp)
            self._apply_pause(self._partitions[tp])
        self.rebalances["assigned"] += len(assigned)
        if self._rebalance_counter is not None:
            self._rebalance_counter.labels(self.name, "assigned").inc(len(assigned))
        log.info("assigned %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned) or "no partitions")

    async def _revoke(self, revoked: set[Any]) -> None:
        """Stop handing out, let in-flight records settle within the drain time, commit, forget."""
        parts = [p for tp in revoked if (p := self._partitions.get(tp)) is not None]
        if not parts:
            return
        for p in parts:
            self._order.close(p)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.drain_seconds
        while any(p.busy() for p in parts) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        late = sum(1 for p in parts for m in p.dispatched if m.settled is None or m._busy)
        await self._commit(parts, final=True)
        for p in parts:
            self._order.forget(p)
        self.rebalances["revoked"] += len(parts)
        if self._rebalance_counter is not None:
            self._rebalance_counter.labels(self.name, "revoked").inc(len(parts))
        log.info(
            "revoked %s%s",
            sorted(f"{p.tp.topic}[{p.tp.partition}]@{p.committed}" for p in parts),
            f"; {late} record(s) still in flight are left to the new owner" if late else "",
        )
        self._apply_fetch_pause()

    def _apply_pause(self, p: _Partition) -> None:
        consumer = self._consumer
        if consumer is None or p.closed:
            return
        try:
            if p.retrying or self._fetch_paused:
                consumer.pause(p.tp)
            else:
                consumer.resume(p.tp)
        except Exception:  # no longer assigned (a rebalance under way): the new assignment decides
            pass

    def _apply_fetch_pause(self) -> None:
        """Past ``prefetch`` unsettled records every partition is paused; below half of it they resume."""
        limit = self.config.prefetch
        unsettled = self._order.unsettled
        paused = unsettled >= limit or (self._fetch_paused and unsettled > limit // 2)
        if paused != self._fetch_paused:
            self._fetch_paused = paused
            for p in self._partitions.values():
                self._apply_pause(p)

    async def _fetch_loop(self) -> None:
        consumer = self._consumer
        max_body = self.config.max_body_bytes
        while not self.stopping:
            room = max(1, self.config.prefetch - self._order.unsettled)
            try:
                batch = await consumer.getmany(timeout_ms=200, max_records=room)
            except kafka_errors.ConsumerStoppedError:
                return
            except (kafka_errors.KafkaError, OSError) as exc:
                log.warning("fetching from Kafka failed (%s); retrying", _why(exc, 0))
                await self.pause(1.0)
                continue
            for tp, records in batch.items():
                p = self._partitions.get(tp)
                if p is None or p.closed:
                    continue
                for record in records:
                    if p.position is not None and record.offset < p.position:
                        continue  # already held (fetched again after a pause)
                    p.position = record.offset + 1
                    self._order.add(p, OrderedRecord(p, record, record.offset, lane_of(record.value, record.key, max_body)))
            self._apply_fetch_pause()

    # -- commits -----------------------------------------------------------------------

    async def _commit_loop(self) -> None:
        while not self.stopping:
            await asyncio.sleep(self.config.commit_interval)
            await self._commit([p for p in self._partitions.values() if not p.closed])

    async def _commit_at_stop(self) -> bool:
        """The settled prefix of every partition still held, committed at stop (retried: see
        ``write_position_at_stop``). The partitions are looked up at each attempt: one revoked
        meanwhile was committed by its revoke and may be another member's now."""
        return await write_position_at_stop(
            lambda timeout: self._commit(list(self._partitions.values()), timeout=timeout),
            max(self.config.close_timeout, self.settle_timeout),
            self.settle_timeout,
            "the commit",
        )

    async def _commit(self, parts: list[_Partition], *, final: bool = False, timeout: float | None = None) -> bool:
        """Commit each partition's lowest unsettled offset where it moved; False if that failed.
        ``final``: no later attempt follows (say so if it fails)."""
        consumer = self._consumer
        if consumer is None:
            return False
        timeout = self.settle_timeout if timeout is None else timeout
        async with self._commit_lock:
            offsets: dict[Any, Any] = {}
            targets: dict[Any, tuple[_Partition, int]] = {}
            for p in parts:
                offset = p.committable()
                if offset is not None and (p.committed is None or offset > p.committed):
                    offsets[p.tp] = self.clients.offset(offset)
                    targets[p.tp] = (p, offset)
            if not offsets:
                return True
            try:
                await asyncio.wait_for(consumer.commit(offsets), timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._count_commit("failed")
                now = time.monotonic()
                if final or now - self._last_commit_error > 5:
                    self._last_commit_error = now
                    log.warning(
                        "committing %s failed (%s); %s",
                        {f"{tp.topic}[{tp.partition}]": o for tp, (_, o) in targets.items()},
                        _why(exc, timeout),
                        "whoever consumes these partitions next replays from the last commit (the engine "
                        "answers the replays duplicate)"
                        if final
                        else "retrying",
                    )
                return False
            for p, offset in targets.values():
                p.committed = offset
            self.commits += 1
            self._count_commit("ok")
            return True

    def _count_commit(self, result: str) -> None:
        if self._commit_counter is not None:
            self._commit_counter.labels(self.name, result).inc()

    # -- readiness ---------------------------------------------------------------------

    async def _probe_loop(self) -> None:
        while not self.stopping:
            try:
                await asyncio.wait_for(self.clients.probe(self._producer), 2.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._broker_ok:
                    log.warning("Kafka is not answering (%s): not ready", _why(exc, 2.0))
                self._broker_ok = False
            else:
                if not self._broker_ok:
                    log.warning("Kafka answers again: ready")
                self._broker_ok = True
            await self.pause(1.0)


async def serve(config: KafkaSidecarSettings, *, stop: asyncio.Event | None = None) -> None:
    """The Kafka sidecar until SIGTERM/SIGINT (or ``stop``): consume, drain, commit, exit.

    A socket directory that is not this user's (another user's listener, a symlink) is
    refused before anything is sent: one line naming WOJAK_ENGINE_SOCKET, exit 2."""
    runner = config.runner
    metrics = SidecarMetrics(KafkaSource.name)
    quiet_aiokafka_logs()
    try:
        await serve_sidecar(KafkaSource(config, metrics), runner, stop=stop, metrics=metrics)
    except SocketDirError as exc:
        print(f"wojak: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


__all__ = ["AIOKafkaClients", "KafkaMessage", "KafkaSource", "dead_letter_record", "lane_of", "serve"]
