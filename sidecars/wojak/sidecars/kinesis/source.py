"""Kinesis as a ``Source``: shard leases and checkpoints in DynamoDB, as the KCL keeps them.

Leases. One item per shard in the lease table (``lease_table``, created when missing): ``leaseKey``
(the shard id), ``leaseOwner`` (a replica's ``worker_id``; absent when free), ``leaseCounter``,
``checkpoint`` (``TRIM_HORIZON``, ``LATEST``, a sequence number or ``SHARD_END``),
``ownerSwitchesSinceCheckpoint`` and ``parentShardId`` (a string set). Every write is
conditional on the counter (and, for the owner's own writes, the owner) and increments it, so of
two replicas acting on one lease exactly one wins. Every ``lease_seconds / 3`` a replica:

* renews each lease it holds (a renewal the table refuses means another replica took it: the
  shard is dropped at once; one that cannot reach the table for ``lease_seconds`` is dropped too,
  since another replica may have taken it by then);
* lists the shards (every ``shard_sync_interval``, and when a shard ends) and creates the lease of
  a shard that has none;
* reads the table and takes leases up to its fair share (the shards not finished, divided by the
  replicas holding a live lease, itself included): a free lease, or one whose counter it has seen
  unchanged for ``lease_seconds`` (its owner is gone: clocks are never compared); short of its
  share with nothing free, it takes one lease a round from the replica holding the most.

Order. Records of one shard are handed to the runner in sequence order, one at a time per
partition key (the producer contract: partition key = account), several keys in flight together.
A ``requeue`` (``retry``) is retried in place: its shard hands out nothing else and the record is
held for its backoff, then handed out again before anything after it. Nothing is dropped after a
number of attempts: only what can never succeed is dead-lettered.

Checkpoints. A shard's checkpoint is the last sequence number whose record and every earlier one
are settled (acked after the engine's verdict, or dead-lettered with the copy confirmed); it is
written every ``checkpoint_interval`` (conditional on the lease), when the lease is released at
stop and before a shard end. A crash replays at most the unsettled suffix (the engine answers
``duplicate``).

Dead letters go to ``dead_letter_queue_url`` (SQS: the record's data as the body, base64 with
``wojak-body-encoding=base64`` when it is not text SQS carries; attributes ``wojak-reason``,
``wojak-detail`` (JSON, at most 4 KiB), ``wojak-stream``, ``wojak-shard``,
``wojak-sequence-number``, ``wojak-partition-key``) or to ``dead_letter_stream`` (a JSON envelope
of the same fields and ``body_base64``, the original partition key). A record is settled only once
the copy is confirmed; one whose copy was not taken is retried in place after a capped backoff.
``give_up`` (settlements failed ``WOJAK_SIDECAR_SETTLE_ATTEMPTS`` times for the record's own
reason) sends a minimal copy: reason ``unsettleable``, ``wojak-original-reason``, the body's size
and sha256 instead of the body.

Resharding. A shard whose parents are not finished (their checkpoint ``SHARD_END``) is not leased,
so a parent is read to its end before its children. A shard ends when GetRecords returns no next
iterator (or, closed, returns nothing past its ending sequence number); once every record read
from it is settled its checkpoint becomes ``SHARD_END`` and its lease is released.

Results. With ``results_stream`` set, the verdict of an ``ack_and_publish`` (rejected, denied,
venue_anomaly) is put on that stream before the record is acked: a JSON record of the engine's
answer (``client_order_id``, ``verdict``, ``reason``, ``order``; ``duplicate: true`` when published
again for a redelivery) and the record's ``stream``, ``shard`` and ``sequence_number``, under the
record's partition key (one account's results in order). A put that was not confirmed requeues
the record (retried in place); its redelivery is answered ``duplicate`` and published again.

The hand-out (order per partition key, holds, redeliveries, the settled prefix) is the kit's
``OrderedPartitions`` (``wojak.sidecars._core.ordered``); this module keeps the leases, the
reading and the dead letters.

Coordinates are ``(stream, shard id, sequence number)``: an order without ``client_order_id`` gets
one derived from them, the same on every redelivery. ``/readyz`` is false while the stream or the
lease table does not answer; every call is retried with a capped backoff (no restart needed).

boto3 is synchronous: every call runs on a thread pool of the source's own.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import concurrent.futures
import contextlib
import functools
import hashlib
import logging
import math
import re
import sys
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

import orjson

from wojak.engine.protocol import SocketDirError
from wojak.errors import WojakError
from wojak.sidecars._core.metrics import SidecarMetrics
from wojak.sidecars._core.ordered import (
    OrderedMessage,
    OrderedPartition,
    OrderedPartitions,
    OrderedRecord,
    write_position_at_stop,
)
from wojak.sidecars._core.serve import serve_sidecar
from wojak.sidecars._core.source import BrokerSource, SourceMessage, capped_backoff
from wojak.sidecars.kinesis.config import KinesisSidecarSettings

log = logging.getLogger(__name__)

SHARD_END = "SHARD_END"
REASON_ATTRIBUTE = "wojak-reason"
DETAIL_ATTRIBUTE = "wojak-detail"
STREAM_ATTRIBUTE = "wojak-stream"
SHARD_ATTRIBUTE = "wojak-shard"
SEQUENCE_ATTRIBUTE = "wojak-sequence-number"
PARTITION_KEY_ATTRIBUTE = "wojak-partition-key"
ENCODING_ATTRIBUTE = "wojak-body-encoding"
ORIGINAL_REASON_ATTRIBUTE = "wojak-original-reason"
BODY_OMITTED_ATTRIBUTE = "wojak-body-omitted"
MAX_DETAIL_BYTES = 4096
# what SQS carries as text (anything else goes base64)
_SQS_TEXT = re.compile("^[\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*$")
# a failed call that is the record's own fault (SQS / Kinesis refused its content): counted toward
# giving it up; anything else (unreachable, throttled, a timeout) is the broker's and waits
_RECORD_AT_FAULT = frozenset(
    {"InvalidMessageContents", "InvalidParameterValue", "InvalidAttributeValue", "InvalidAttributeName", "ValidationException"}
)


def coordinates_for(stream: str, shard_id: str, sequence_number: str) -> tuple[str, str, str]:
    """Stable across redeliveries: a record keeps its shard and sequence number for its whole life."""
    return (stream, shard_id, str(sequence_number))


def _seq(value: str | None) -> int:
    """A sequence number (or a checkpoint's keyword) as a number to compare: TRIM_HORIZON/LATEST 0."""
    return int(value) if value and value.isdigit() else 0


def _detail(detail: Any, limit: int = MAX_DETAIL_BYTES) -> str:
    raw = orjson.dumps(detail, default=str, option=orjson.OPT_NON_STR_KEYS)
    if len(raw) > limit:
        return raw[: max(limit - 16, 0)].decode("utf-8", "ignore") + "...(truncated)"
    return raw.decode()


def _why(exc: BaseException) -> str:
    code = _error_code(exc)
    text = f"{code}: {exc}" if code else (f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    return text[:300]


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Marks a lease write's failure as seen (it is reported to whoever still waits for it)."""
    if not future.cancelled():
        future.exception()


def _string(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def sqs_dead_letter(
    body: bytes,
    reason: str,
    detail: Any,
    coordinates: tuple[str, str, str],
    partition_key: str,
    *,
    minimal: bool = False,
    original_reason: str | None = None,
) -> tuple[str, dict[str, dict[str, str]]]:
    """(MessageBody, MessageAttributes) of a dead letter on SQS. ``minimal`` (a give-up) carries the
    body's size and sha256 instead of the body."""
    stream, shard, sequence = coordinates
    attributes = {
        REASON_ATTRIBUTE: _string(str(reason)[:256]),
        DETAIL_ATTRIBUTE: _string(_detail(detail)),
        STREAM_ATTRIBUTE: _string(stream),
        SHARD_ATTRIBUTE: _string(shard),
        SEQUENCE_ATTRIBUTE: _string(sequence),
        PARTITION_KEY_ATTRIBUTE: _string(partition_key[:256] or "-"),
    }
    if original_reason:
        attributes[ORIGINAL_REASON_ATTRIBUTE] = _string(original_reason[:256])
    if minimal:
        note = orjson.dumps({"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}).decode()
        attributes[BODY_OMITTED_ATTRIBUTE] = _string(note)
        return note, attributes
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or not text or not _SQS_TEXT.match(text):
        attributes[ENCODING_ATTRIBUTE] = _string("base64")
        return base64.b64encode(body).decode() or "=", attributes
    return text, attributes


def result_record(reply: dict[str, Any], coordinates: tuple[str, str, str]) -> bytes:
    """The data of a verdict on the results stream: the engine's answer (``client_order_id``,
    ``verdict``, ``reason``, ``order``; ``duplicate`` when published again for a redelivery) and
    the record's coordinates (a Kinesis record has no attributes)."""
    stream, shard, sequence = coordinates
    fields = {k: reply.get(k) for k in ("client_order_id", "verdict", "reason", "order")}
    if reply.get("duplicate"):  # published again for a redelivery: the same outcome as the first
        fields["duplicate"] = True
    fields.update(stream=stream, shard=shard, sequence_number=sequence)
    return orjson.dumps(fields, default=str)


def stream_dead_letter(
    body: bytes,
    reason: str,
    detail: Any,
    coordinates: tuple[str, str, str],
    partition_key: str,
    *,
    minimal: bool = False,
    original_reason: str | None = None,
) -> bytes:
    """The data of a dead letter on a stream: a JSON envelope (a Kinesis record has no attributes)."""
    stream, shard, sequence = coordinates
    envelope: dict[str, Any] = {
        "reason": reason,
        "detail": orjson.loads(_detail(detail)) if len(_detail(detail)) < MAX_DETAIL_BYTES else _detail(detail),
        "stream": stream,
        "shard": shard,
        "sequence_number": sequence,
        "partition_key": partition_key,
    }
    if original_reason:
        envelope["original_reason"] = original_reason
    if minimal:
        envelope["body_omitted"] = {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    else:
        envelope["body_base64"] = base64.b64encode(body).decode()
    return orjson.dumps(envelope)


# -- the lease table ------------------------------------------------------------------------


@dataclass
class Lease:
    """One item of the lease table, as read."""

    key: str
    owner: str | None
    counter: int
    checkpoint: str
    parents: tuple[str, ...] = ()

    @classmethod
    def of(cls, item: dict[str, Any]) -> "Lease":
        return cls(
            key=item["leaseKey"]["S"],
            owner=item.get("leaseOwner", {}).get("S") or None,
            counter=int(item.get("leaseCounter", {}).get("N", "0")),
            checkpoint=item.get("checkpoint", {}).get("S", "TRIM_HORIZON"),
            parents=tuple(sorted(item.get("parentShardId", {}).get("SS", ()))),
        )


class LeaseLost(WojakError):
    """The table refused a conditional write: another replica holds the lease now."""


class LeaseTable:
    """The KCL-style lease table on DynamoDB (synchronous boto3: called on the source's threads)."""

    def __init__(self, client: Any, table: str, worker: str) -> None:
        self.client = client
        self.table = table
        self.worker = worker

    def ensure(self, create: bool, timeout: float = 60.0) -> None:
        try:
            status = self.client.describe_table(TableName=self.table)["Table"]["TableStatus"]
        except self.client.exceptions.ResourceNotFoundException:
            if not create:
                raise
            log.info("creating the lease table %s", self.table)
            with contextlib.suppress(self.client.exceptions.ResourceInUseException):
                self.client.create_table(
                    TableName=self.table,
                    KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
                    AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
                    BillingMode="PAY_PER_REQUEST",
                )
            status = "CREATING"
        deadline = time.monotonic() + timeout
        while status != "ACTIVE":
            if time.monotonic() > deadline:
                raise TimeoutError(f"lease table {self.table} not ACTIVE after {timeout:.0f}s")
            time.sleep(0.5)
            status = self.client.describe_table(TableName=self.table)["Table"]["TableStatus"]

    def scan(self) -> list[Lease]:
        leases: list[Lease] = []
        kwargs: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True}
        while True:
            page = self.client.scan(**kwargs)
            leases.extend(Lease.of(item) for item in page.get("Items", ()))
            if not page.get("LastEvaluatedKey"):
                return leases
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def create(self, shard_id: str, parents: tuple[str, ...], checkpoint: str) -> bool:
        item: dict[str, Any] = {
            "leaseKey": {"S": shard_id},
            "leaseCounter": {"N": "0"},
            "checkpoint": {"S": checkpoint},
            "ownerSwitchesSinceCheckpoint": {"N": "0"},
        }
        if parents:
            item["parentShardId"] = {"SS": list(parents)}
        try:
            self.client.put_item(TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(leaseKey)")
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def _update(self, key: str, counter: int, update: str, condition: str, values: dict[str, Any]) -> int:
        """One conditional write that also increments the counter; the new counter, or LeaseLost."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"leaseKey": {"S": key}},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeValues={":c": {"N": str(counter)}, ":n": {"N": str(counter + 1)}, **values},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            raise LeaseLost(key) from None
        return counter + 1

    def take(self, lease: Lease) -> int:
        """Take ``lease`` as seen (free, expired, or stolen): wins only if nobody wrote it since."""
        return self._update(
            lease.key,
            lease.counter,
            "SET leaseOwner = :me, leaseCounter = :n ADD ownerSwitchesSinceCheckpoint :one",
            "leaseCounter = :c",
            {":me": {"S": self.worker}, ":one": {"N": "1"}},
        )

    def renew(self, key: str, counter: int) -> int:
        return self._update(
            key, counter, "SET leaseCounter = :n", "leaseCounter = :c AND leaseOwner = :me", {":me": {"S": self.worker}}
        )

    def checkpoint(self, key: str, counter: int, checkpoint: str) -> int:
        return self._update(
            key,
            counter,
            "SET leaseCounter = :n, checkpoint = :cp, ownerSwitchesSinceCheckpoint = :zero",
            "leaseCounter = :c AND leaseOwner = :me",
            {":me": {"S": self.worker}, ":cp": {"S": checkpoint}, ":zero": {"N": "0"}},
        )

    def release(self, key: str, counter: int) -> int:
        """Give the lease up (another replica takes it at once, without waiting for it to expire)."""
        return self._update(
            key,
            counter,
            "SET leaseCounter = :n REMOVE leaseOwner",
            "leaseCounter = :c AND leaseOwner = :me",
            {":me": {"S": self.worker}},
        )


# -- per-shard state -----------------------------------------------------------------------


class _Shard(OrderedPartition):
    """A shard's ordered records (the kit's: ``settled_upto`` is the checkpoint to write) and its
    lease."""

    def __init__(self, shard_id: str, counter: int, checkpoint: str) -> None:
        super().__init__(shard_id)
        self.shard_id = shard_id
        self.counter = counter  # the lease's counter as this replica last wrote it
        self.checkpoint = checkpoint  # what the table holds
        self.last_read: str | None = None
        self.ended = False  # read to its end (SHARD_END once everything read is settled)
        self.renewed = time.monotonic()
        self.lock = asyncio.Lock()  # one conditional write at a time (each moves the counter)
        self.task: asyncio.Task[None] | None = None


class KinesisMessage(OrderedMessage):
    def __init__(self, source: "KinesisSource", rec: OrderedRecord) -> None:
        self._source = source
        raw = rec.item
        data = raw.get("Data") or b""
        super().__init__(
            source._order,
            rec,
            bytes(data),
            coordinates_for(source.config.stream, str(rec.partition.key), rec.position),
            {"partition_key": rec.lane, "arrival": str(raw.get("ApproximateArrivalTimestamp", ""))},
        )

    async def _send_dead_letter(self, reason: str, detail: Any, *, minimal: bool) -> None:
        await self._source._send_dead_letter(self, reason, detail, minimal=minimal)


@dataclass
class _Seen:
    counter: int
    since: float  # monotonic time this replica first saw the counter at that value


class KinesisSource(BrokerSource):
    name = "kinesis"  # the CLI name: part of every derived client_order_id, so never renamed later

    def __init__(
        self,
        config: KinesisSidecarSettings,
        metrics: SidecarMetrics | None = None,
        clients: Callable[[KinesisSidecarSettings], tuple[Any, Any, Any]] | None = None,
    ) -> None:
        super().__init__(config.settle_timeout)
        self.config = config
        self._make_clients = clients or make_clients
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="wojak-kinesis")
        self._kinesis: Any = None
        self._dynamodb: Any = None
        self._sqs: Any = None
        self._table: LeaseTable | None = None
        self._order: OrderedPartitions[_Shard] = OrderedPartitions.for_source(
            self, config, lambda rec: KinesisMessage(self, rec), on_settled=self._settled
        )
        self._shards = self._order.partitions
        self._shard_info: dict[str, dict[str, Any]] = {}  # ListShards: shard id -> its description
        self._seen: dict[str, _Seen] = {}
        self._room = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._synced_at = -math.inf
        self._stream_ok = self._table_ok = False
        self._last_warning: dict[str, float] = {}
        # what the lease keeping did (tests, bench; also exported when metrics are given)
        self.counts = collections.Counter[str]()
        self._lease_counter = None
        if metrics is not None:
            from prometheus_client import Counter

            self._lease_counter = Counter(
                "wojak_sidecar_kinesis_leases",
                "Shard leases taken, stolen, lost, released, ended; checkpoints written",
                ["source", "kind"],
                registry=metrics.registry,
            )

    # -- plumbing --------------------------------------------------------------------

    async def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def _count(self, kind: str, n: int = 1) -> None:
        self.counts[kind] += n
        if self._lease_counter is not None:
            self._lease_counter.labels(self.name, kind).inc(n)

    def _warn(self, key: str, message: str, *args: Any) -> None:
        """At most one line per 10 s for each kind of failure (an outage fails every call)."""
        now = time.monotonic()
        if now - self._last_warning.get(key, -math.inf) >= 10.0:
            self._last_warning[key] = now
            log.warning(message, *args)

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> "KinesisSource":
        connected = await self.connect_with_backoff(self._connect, "Kinesis/DynamoDB", (Exception,))
        if connected is None:  # stopped before the stream answered
            return self
        self._stream_ok = self._table_ok = True
        self._room.set()
        self._tasks = [
            asyncio.create_task(self._lease_loop(), name="wojak-kinesis-leases"),
            asyncio.create_task(self._checkpoint_loop(), name="wojak-kinesis-checkpoints"),
            asyncio.create_task(self._probe_loop(), name="wojak-kinesis-probe"),
        ]
        log.info("consuming %r", self.config)
        return self

    async def _connect(self) -> bool:
        c = self.config
        self._kinesis, self._dynamodb, self._sqs = await self._run(self._make_clients, c)
        await self._run(self._kinesis.describe_stream_summary, StreamName=c.stream)
        self._table = LeaseTable(self._dynamodb, c.lease_table, c.worker_id)
        await self._run(self._table.ensure, c.create_lease_table)
        return True

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_consuming()
        tasks = self._tasks + [s.task for s in self._shards.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks = []
        if self._table is not None:  # the settled prefix checkpointed, the leases given up for the others
            await asyncio.gather(*(self._release(s) for s in list(self._shards.values())), return_exceptions=True)
        for shard in list(self._shards.values()):
            self._drop(shard, None)
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def stop_consuming(self) -> None:
        if not self.begin_stopping():
            return
        self._order.stop()  # what was ready stays unsettled, so the checkpoint stays below it
        self._room.set()

    def is_ready(self) -> bool:
        return self._table is not None and self._stream_ok and self._table_ok and not self.stopping

    # -- the runner's side -------------------------------------------------------------

    def messages(self) -> AsyncIterator[SourceMessage]:
        return self._order.messages()

    def _settled(self) -> None:
        if self._order.unsettled < self.config.prefetch:
            self._room.set()

    async def _send_dead_letter(self, message: KinesisMessage, reason: str, detail: Any, *, minimal: bool) -> None:
        c = self.config
        rec = message._rec
        original = rec.last_reason if minimal else None
        coordinates: tuple[str, str, str] = message.coordinates
        lane = str(rec.lane)

        def send() -> Any:
            if c.dead_letter_queue_url:
                body, attributes = sqs_dead_letter(
                    message.body, reason, detail, coordinates, lane, minimal=minimal, original_reason=original
                )
                return self._run(
                    self._sqs.send_message, QueueUrl=c.dead_letter_queue_url, MessageBody=body, MessageAttributes=attributes
                )
            data = stream_dead_letter(message.body, reason, detail, coordinates, lane, minimal=minimal, original_reason=original)
            return self._run(self._kinesis.put_record, StreamName=c.dead_letter_stream, Data=data, PartitionKey=lane or "-")

        async def confirmed() -> None:
            response = await self._order.send_once(rec, "give_up" if minimal else "dead_letter", send)
            if not (response.get("MessageId") or response.get("SequenceNumber")):
                raise RuntimeError("the dead letter was not confirmed")

        await self._order.settle_by_send(
            message,
            reason,
            confirmed,
            counts=lambda exc: _error_code(exc) in _RECORD_AT_FAULT,
            why=lambda exc: "no answer in time" if isinstance(exc, asyncio.TimeoutError) else _why(exc),
        )

    async def publish_result(self, message: SourceMessage, reply: dict[str, Any]) -> None:
        """A verdict of ``ack_and_publish`` to ``results_stream`` (partition key: the record's, so one
        account's results stay in order), confirmed before the record is acked."""
        assert isinstance(message, KinesisMessage)
        stream = self.config.results_stream
        if not stream:
            return
        rec = message._rec
        data = result_record(reply, message.coordinates)
        key = str(rec.lane) or "-"
        response = await self._order.send_once(
            rec, "result", lambda: self._run(self._kinesis.put_record, StreamName=stream, Data=data, PartitionKey=key)
        )
        if not response.get("SequenceNumber"):
            raise RuntimeError("the result was not confirmed")

    # -- reading a shard ---------------------------------------------------------------

    async def _iterator(self, shard: _Shard) -> str | None:
        c = self.config
        after = shard.last_read or (shard.checkpoint if shard.checkpoint.isdigit() else None)
        kwargs: dict[str, Any] = {"StreamName": c.stream, "ShardId": shard.shard_id}
        if after is not None:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=after)
        elif shard.checkpoint == "LATEST":
            kwargs["ShardIteratorType"] = "LATEST"
        else:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        response = await self._run(self._kinesis.get_shard_iterator, **kwargs)
        iterator: str | None = response.get("ShardIterator")
        return iterator

    def _at_end(self, shard: _Shard) -> bool:
        """A closed shard read past its ending sequence number (an emulator may never say SHARD_END)."""
        ending = self._shard_info.get(shard.shard_id, {}).get("SequenceNumberRange", {}).get("EndingSequenceNumber")
        return ending is not None and _seq(shard.last_read or shard.checkpoint) >= _seq(ending)

    async def _consume(self, shard: _Shard) -> None:
        c = self.config
        iterator: str | None = None
        failures = 0
        while not self.stopping and not shard.closed:
            while self._order.unsettled >= c.prefetch and not self.stopping and not shard.closed:
                self._room.clear()
                await self._room.wait()
            if self.stopping or shard.closed:
                return
            try:
                if iterator is None:
                    iterator = await self._iterator(shard)
                    if iterator is None:
                        break
                room = max(1, min(c.batch_size, c.prefetch - self._order.unsettled))
                response = await self._run(self._kinesis.get_records, ShardIterator=iterator, Limit=room)
            except Exception as exc:
                if _error_code(exc) == "ExpiredIteratorException":
                    iterator = None
                    continue
                failures += 1
                self._stream_ok = False
                delay = capped_backoff(failures, 0.5, 10.0)
                self._warn(f"read-{shard.shard_id}", "reading %s failed (%s); again in %.1fs", shard.shard_id, _why(exc), delay)
                iterator = None  # an iterator may have expired meanwhile
                await self.pause(delay)
                continue
            failures = 0
            self._stream_ok = True
            if shard.closed or self.stopping:
                return
            raws = response.get("Records") or []
            for raw in raws:
                if shard.last_read is not None and _seq(raw["SequenceNumber"]) <= _seq(shard.last_read):
                    continue
                sequence = str(raw["SequenceNumber"])
                shard.last_read = sequence
                self._order.add(shard, OrderedRecord(shard, raw, sequence, str(raw.get("PartitionKey", ""))))
            iterator = response.get("NextShardIterator")
            if iterator is None or (not raws and self._at_end(shard)):
                break
            await self.pause(c.min_poll_interval if raws else c.poll_interval)
        else:
            return
        shard.ended = True
        log.info("shard %s read to its end (checkpoint SHARD_END once everything read is settled)", shard.shard_id)
        self._synced_at = -math.inf  # its children: listed on the next round

    # -- leases -------------------------------------------------------------------------

    async def _lease_loop(self) -> None:
        interval = self.config.lease_seconds / 3
        while not self.stopping:
            try:
                await self._lease_round()
                self._table_ok = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._table_ok = False
                self._warn("leases", "lease keeping failed (%s); again in %.1fs", _why(exc), interval)
            self._drop_unrenewed()
            await self.pause(interval)

    def _drop_unrenewed(self) -> None:
        """A lease this replica could not renew for ``lease_seconds`` may be another's by now."""
        now = time.monotonic()
        for shard in list(self._shards.values()):
            if now - shard.renewed > self.config.lease_seconds:
                log.warning(
                    "lease of %s not renewed for %.0fs: dropped (another replica may hold it)",
                    shard.shard_id,
                    now - shard.renewed,
                )
                self._drop(shard, "lost")

    async def _lease_round(self) -> None:
        await asyncio.gather(*(self._renew(s) for s in list(self._shards.values())))
        if time.monotonic() - self._synced_at >= self.config.shard_sync_interval:
            await self._sync_shards()
        assert self._table is not None
        leases = await self._run(self._table.scan)
        await self._take(leases)

    async def _lease_write(self, shard: _Shard, write: Callable[..., int], *args: Any, timeout: float | None = None) -> bool:
        """One conditional write of ``shard``'s lease (``write(shard_id, counter, *args)``), under its
        lock, keeping the new counter even when the caller stops waiting (cancelled at stop, or past
        ``timeout``): the write goes on in its thread, and a counter lost there would make this
        replica's next write look like another replica's (LeaseLost: the shard dropped, its lease
        neither checkpointed nor released at stop). False if the shard was dropped meanwhile."""

        async def locked() -> bool:
            async with shard.lock:
                if shard.closed:
                    return False
                shard.counter = await self._run(write, shard.shard_id, shard.counter, *args)
                return True

        task = asyncio.ensure_future(locked())
        task.add_done_callback(_retrieve)
        return await asyncio.wait_for(asyncio.shield(task), timeout)

    async def _renew(self, shard: _Shard) -> None:
        assert self._table is not None
        try:
            if not await self._lease_write(shard, self._table.renew):
                return
        except LeaseLost:
            log.warning("lease of %s was taken by another replica: dropped", shard.shard_id)
            self._drop(shard, "lost")
            return
        shard.renewed = time.monotonic()

    async def _sync_shards(self) -> None:
        """ListShards; a lease for every shard without one."""
        assert self._table is not None
        shards: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"StreamName": self.config.stream}
        while True:
            page = await self._run(self._kinesis.list_shards, **kwargs)
            shards.extend(page.get("Shards", ()))
            token = page.get("NextToken")
            if not token:
                break
            kwargs = {"NextToken": token}
        self._shard_info = {s["ShardId"]: s for s in shards}
        known = {lease.key for lease in await self._run(self._table.scan)}
        for s in shards:
            if s["ShardId"] in known:
                continue
            parents = tuple(p for p in (s.get("ParentShardId"), s.get("AdjacentParentShardId")) if p)
            # a child starts at its beginning whatever the initial position: its parent's reader goes on there
            start = "TRIM_HORIZON" if parents else self.config.initial_position
            if await self._run(self._table.create, s["ShardId"], parents, start):
                log.info("lease created for shard %s (parents %s)", s["ShardId"], list(parents) or "none")
        self._synced_at = time.monotonic()

    async def _take(self, leases: list[Lease]) -> None:
        if self.stopping:
            return
        assert self._table is not None
        now = time.monotonic()
        by_key = {lease.key: lease for lease in leases}
        expired: set[str] = set()
        for lease in leases:
            seen = self._seen.get(lease.key)
            if seen is None or seen.counter != lease.counter:
                self._seen[lease.key] = _Seen(lease.counter, now)
            elif now - seen.since > self.config.lease_seconds:
                expired.add(lease.key)
        active = [lease for lease in leases if lease.checkpoint != SHARD_END]

        def parents_done(lease: Lease) -> bool:
            # finished, or gone: no lease, or no longer listed (trimmed after the retention period)
            listed = self._shard_info
            return all(
                p not in by_key or by_key[p].checkpoint == SHARD_END or (listed and p not in listed) for p in lease.parents
            )

        live_owners = collections.Counter(
            lease.owner for lease in active if lease.owner and lease.key not in expired and lease.key not in self._shards
        )
        workers = len(set(live_owners) | {self.config.worker_id})
        target = math.ceil(len(active) / workers) if active else 0
        if self.config.max_leases:
            target = min(target, self.config.max_leases)
        held = len(self._shards)
        free = [
            lease
            for lease in active
            if lease.key not in self._shards and parents_done(lease) and (not lease.owner or lease.key in expired)
        ]
        free.sort(key=lambda lease: lease.key)
        for lease in free:
            if held >= target:
                break
            if await self._take_one(lease, "taken" if not lease.owner else "expired"):
                held += 1
        if held < target and not free and live_owners:
            victim, most = live_owners.most_common(1)[0]
            if most > target:  # one a round, from the replica holding the most
                theirs = sorted((lease for lease in active if lease.owner == victim and parents_done(lease)), key=lambda x: x.key)
                if theirs:
                    await self._take_one(theirs[-1], "stolen")

    async def _take_one(self, lease: Lease, how: str) -> bool:
        assert self._table is not None
        try:
            counter = await self._run(self._table.take, lease)
        except LeaseLost:
            return False
        shard = _Shard(lease.key, counter, lease.checkpoint)
        self._shards[lease.key] = shard
        self._count(how)
        log.info("lease of %s %s (from %s, checkpoint %s)", lease.key, how, lease.owner or "nobody", lease.checkpoint)
        shard.task = asyncio.create_task(self._consume(shard), name=f"wojak-kinesis-{lease.key}")
        return True

    def _drop(self, shard: _Shard, kind: str | None) -> None:
        """Forget ``shard`` (its lease is gone, released or ended): nothing more of it is handed out,
        and a late settlement of what is in flight is ignored (the next owner reads it again)."""
        if shard.closed:
            return
        self._order.close(shard)
        if shard.task is not None and shard.task is not asyncio.current_task():
            shard.task.cancel()
        self._order.forget(shard)
        self._room.set()
        if kind:
            self._count(kind)

    async def _release(self, shard: _Shard) -> None:
        """At stop: the settled prefix checkpointed, then the lease given up."""
        assert self._table is not None
        await write_position_at_stop(
            lambda timeout: self._write_checkpoint(shard, timeout),
            self.settle_timeout,
            self.settle_timeout,
            f"the checkpoint of {shard.shard_id}",
        )
        try:
            if await self._lease_write(shard, self._table.release, timeout=self.settle_timeout):
                self._count("released")
        except Exception as exc:
            log.warning(
                "releasing the lease of %s failed (%s); it expires in %.0fs",
                shard.shard_id,
                _why(exc),
                self.config.lease_seconds,
            )

    # -- checkpoints --------------------------------------------------------------------

    async def _checkpoint_loop(self) -> None:
        while not self.stopping:
            await asyncio.sleep(self.config.checkpoint_interval)
            await asyncio.gather(*(self._write_checkpoint(s) for s in list(self._shards.values())))

    async def _write_checkpoint(self, shard: _Shard, timeout: float | None = None) -> bool:
        """The shard's settled prefix checkpointed; False only if the write failed (to be tried again)."""
        assert self._table is not None
        timeout = self.settle_timeout if timeout is None else timeout
        end = shard.ended and not shard.records
        target = SHARD_END if end else shard.settled_upto
        if target is None or target == shard.checkpoint:
            return True
        try:
            if not await self._lease_write(shard, self._table.checkpoint, target, timeout=timeout):
                return True  # the shard was dropped meanwhile: not ours to write
        except LeaseLost:
            log.warning("checkpoint of %s refused: another replica holds its lease now; dropped", shard.shard_id)
            self._drop(shard, "lost")
            return True
        except Exception as exc:
            self._table_ok = False
            self._warn(
                f"checkpoint-{shard.shard_id}",
                "checkpointing %s at %s failed (%s); retrying",
                shard.shard_id,
                target,
                _why(exc) if not isinstance(exc, asyncio.TimeoutError) else f"no answer within {timeout:.1f}s",
            )
            return False
        shard.checkpoint = target
        shard.renewed = time.monotonic()
        self._count("checkpoints")
        if end:
            log.info("shard %s finished (checkpoint SHARD_END): its children may be read", shard.shard_id)
            with contextlib.suppress(Exception):
                await self._lease_write(shard, self._table.release)
            self._drop(shard, "ended")
            self._synced_at = -math.inf
        return True

    # -- readiness ---------------------------------------------------------------------

    async def _probe_loop(self) -> None:
        c = self.config
        while not self.stopping:
            for attr, call, kwargs in (
                ("_stream_ok", self._kinesis.describe_stream_summary, {"StreamName": c.stream}),
                ("_table_ok", self._dynamodb.describe_table, {"TableName": c.lease_table}),
            ):
                try:
                    await asyncio.wait_for(self._run(call, **kwargs), 5.0)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if getattr(self, attr):
                        log.warning(
                            "%s is not answering (%s): not ready",
                            c.stream if attr == "_stream_ok" else c.lease_table,
                            _why(exc) if not isinstance(exc, asyncio.TimeoutError) else "no answer in 5s",
                        )
                    setattr(self, attr, False)
                else:
                    if not getattr(self, attr):
                        log.warning("%s answers again: ready", c.stream if attr == "_stream_ok" else c.lease_table)
                    setattr(self, attr, True)
            await self.pause(1.0)


def make_clients(config: KinesisSidecarSettings) -> tuple[Any, Any, Any]:
    """boto3 clients for Kinesis, DynamoDB and SQS: credentials from boto3's default chain only
    (environment, web identity, instance or task role); short timeouts, so an outage is seen fast
    and every call is retried by the source's own backoff."""
    import boto3
    from botocore.config import Config

    settings = Config(
        region_name=config.region,
        max_pool_connections=40,
        connect_timeout=2,
        read_timeout=5,
        retries={"mode": "standard", "max_attempts": 2},
    )
    # dead letters: one request at a time per record, waited for (a resend while the first may still
    # arrive would be a second copy); the source retries in place
    patient = settings.merge(Config(read_timeout=60, retries={"mode": "standard", "max_attempts": 1}))
    session = boto3.session.Session()
    endpoint = config.endpoint or None
    return (
        session.client("kinesis", endpoint_url=endpoint, config=settings),
        session.client("dynamodb", endpoint_url=endpoint, config=settings),
        session.client("sqs", endpoint_url=endpoint, config=patient),
    )


async def serve(config: KinesisSidecarSettings, *, stop: asyncio.Event | None = None) -> None:
    """The Kinesis sidecar until SIGTERM/SIGINT (or ``stop``): consume, drain, checkpoint, release, exit."""
    metrics = SidecarMetrics(KinesisSource.name)
    try:
        await serve_sidecar(KinesisSource(config, metrics), config.runner, stop=stop, metrics=metrics)
    except SocketDirError as exc:
        print(f"wojak: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


__all__ = [
    "KinesisMessage",
    "KinesisSource",
    "Lease",
    "LeaseTable",
    "coordinates_for",
    "result_record",
    "serve",
    "sqs_dead_letter",
    "stream_dead_letter",
]
