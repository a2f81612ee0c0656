"""SQS in memory: a client with boto3's method names and shapes (the calls the SQS sidecar and
its tests make) over queues with SQS's semantics: a received message is invisible for its
visibility timeout and comes back when that lapses; a receipt handle is good until the message
is received again; ``ChangeMessageVisibility`` extends or ends a lease; FIFO queues hand out no
message of a group while another of it is in flight. ``crash`` is the client's ``kill -9``: its
every call fails from then on, and what it held comes back when the leases lapse.

It lets the SQS source's own code (only the client is swapped) run the contract and the
10,000-order stream in memory, where moto spends time in proportion to a queue's depth on
every message it hands out."""

from __future__ import annotations

import collections
import itertools
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any


class ClientGone(ConnectionError):
    pass


@dataclass
class _Message:
    id: str
    body: str
    attributes: dict[str, Any]
    group: str | None
    sent: float
    receipt: str | None = None
    visible_at: float = 0.0
    receive_count: int = 0


@dataclass
class _Queue:
    name: str
    fifo: bool
    ready: collections.OrderedDict[str, _Message] = field(default_factory=collections.OrderedDict)
    inflight: dict[str, _Message] = field(default_factory=dict)
    dedup: dict[str, float] = field(default_factory=dict)


class MemorySqs:
    """The queues, shared by every client."""

    def __init__(self) -> None:
        self.queues: dict[str, _Queue] = {}
        self.lock = threading.Condition()
        self._receipts = itertools.count(1)

    def create_queue(self, name: str) -> str:
        with self.lock:
            self.queues.setdefault(name, _Queue(name, name.endswith(".fifo")))
        return f"https://sqs.us-east-1.amazonaws.com/000000000000/{name}"

    def queue(self, url: str) -> _Queue:
        return self.queues[url.rsplit("/", 1)[-1]]

    def _expire(self, q: _Queue, now: float) -> None:
        lapsed = [m for m in q.inflight.values() if m.visible_at <= now]
        for m in lapsed:
            del q.inflight[m.id]
            m.receipt = None
            q.ready[m.id] = m
            if q.fifo:  # keep the group's order: lapsed ones go back where they were sent
                q.ready = collections.OrderedDict(sorted(q.ready.items(), key=lambda kv: kv[1].sent))

    def counts(self, url: str) -> tuple[int, int]:
        with self.lock:
            q = self.queue(url)
            self._expire(q, time.monotonic())
            return len(q.ready), len(q.inflight)


class MemorySqsClient:
    """What boto3's SQS client offers, as far as the sidecar and the tests use it."""

    def __init__(self, sqs: MemorySqs) -> None:
        self.sqs = sqs
        self.gone = False

    def crash(self) -> None:
        self.gone = True
        with self.sqs.lock:
            self.sqs.lock.notify_all()

    def _check(self) -> None:
        if self.gone:
            raise ClientGone("the sidecar is gone")

    # -- queues ------------------------------------------------------------------------

    def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str]) -> dict[str, Any]:
        self._check()
        visible, inflight = self.sqs.counts(QueueUrl)
        return {"Attributes": {"ApproximateNumberOfMessages": str(visible), "ApproximateNumberOfMessagesNotVisible": str(inflight),
                               "ApproximateNumberOfMessagesDelayed": "0", "MaximumMessageSize": "262144",
                               "RedrivePolicy": '{"maxReceiveCount": "1000"}'}}

    # -- publishing --------------------------------------------------------------------

    def send_message(self, QueueUrl: str, MessageBody: str, MessageAttributes: dict[str, Any] | None = None,
                     MessageGroupId: str | None = None, MessageDeduplicationId: str | None = None) -> dict[str, Any]:
        self._check()
        with self.sqs.lock:
            q = self.sqs.queue(QueueUrl)
            now = time.monotonic()
            if q.fifo:
                assert MessageGroupId, "a FIFO queue needs a MessageGroupId"
                key = MessageDeduplicationId or ""
                if key and q.dedup.get(key, -1e9) > now - 300:
                    return {"MessageId": str(uuid.uuid4())}  # deduplicated: accepted, not added
                q.dedup[key] = now
            m = _Message(str(uuid.uuid4()), MessageBody, dict(MessageAttributes or {}), MessageGroupId, now)
            q.ready[m.id] = m
            self.sqs.lock.notify_all()
            return {"MessageId": m.id}

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        ok = []
        for e in Entries:
            sent = self.send_message(QueueUrl, e["MessageBody"], e.get("MessageAttributes"), e.get("MessageGroupId"),
                                     e.get("MessageDeduplicationId"))
            ok.append({"Id": e["Id"], "MessageId": sent["MessageId"]})
        return {"Successful": ok, "Failed": []}

    # -- consuming ---------------------------------------------------------------------

    def receive_message(self, QueueUrl: str, MaxNumberOfMessages: int = 1, WaitTimeSeconds: int = 0,
                        VisibilityTimeout: int = 30, **_: Any) -> dict[str, Any]:
        self._check()
        deadline = time.monotonic() + WaitTimeSeconds
        with self.sqs.lock:
            q = self.sqs.queue(QueueUrl)
            while True:
                now = time.monotonic()
                self.sqs._expire(q, now)
                taken = self._take(q, MaxNumberOfMessages, now + VisibilityTimeout)
                if taken or now >= deadline or self.gone:
                    break
                self.sqs.lock.wait(min(0.1, deadline - now))
            self._check()
            return {"Messages": [self._shape(m) for m in taken]} if taken else {}

    def _take(self, q: _Queue, n: int, visible_at: float) -> list[_Message]:
        busy = {m.group for m in q.inflight.values()} if q.fifo else set()
        taken = []
        for m in list(q.ready.values()):
            if len(taken) >= n:
                break
            if q.fifo and m.group in busy:
                continue
            del q.ready[m.id]
            m.receipt = f"{m.id}#{next(self.sqs._receipts)}"
            m.visible_at = visible_at
            m.receive_count += 1
            q.inflight[m.id] = m
            taken.append(m)
        return taken

    @staticmethod
    def _shape(m: _Message) -> dict[str, Any]:
        attributes = {"ApproximateReceiveCount": str(m.receive_count)}
        if m.group is not None:
            attributes["MessageGroupId"] = m.group
        out: dict[str, Any] = {"MessageId": m.id, "ReceiptHandle": m.receipt, "Body": m.body, "Attributes": attributes}
        if m.attributes:
            out["MessageAttributes"] = dict(m.attributes)
        return out

    def _held(self, q: _Queue, receipt: str) -> _Message | None:
        m = q.inflight.get(receipt.split("#", 1)[0])
        return m if m is not None and m.receipt == receipt else None

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self._check()
        ok, failed = [], []
        with self.sqs.lock:
            q = self.sqs.queue(QueueUrl)
            self.sqs._expire(q, time.monotonic())
            for e in Entries:
                m = self._held(q, e["ReceiptHandle"])
                if m is None:
                    failed.append({"Id": e["Id"], "SenderFault": True, "Code": "ReceiptHandleIsInvalid", "Message": "gone"})
                    continue
                del q.inflight[m.id]
                ok.append({"Id": e["Id"]})
            self.sqs.lock.notify_all()
        return {"Successful": ok, "Failed": failed}

    def delete_message(self, QueueUrl: str, ReceiptHandle: str) -> dict[str, Any]:
        result = self.delete_message_batch(QueueUrl, [{"Id": "0", "ReceiptHandle": ReceiptHandle}])
        if result["Failed"]:
            raise ValueError("ReceiptHandleIsInvalid")
        return {}

    def change_message_visibility_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self._check()
        ok, failed = [], []
        with self.sqs.lock:
            q = self.sqs.queue(QueueUrl)
            now = time.monotonic()
            self.sqs._expire(q, now)
            for e in Entries:
                m = self._held(q, e["ReceiptHandle"])
                if m is None:
                    failed.append({"Id": e["Id"], "SenderFault": True, "Code": "ReceiptHandleIsInvalid", "Message": "gone"})
                    continue
                m.visible_at = now + int(e["VisibilityTimeout"])
                ok.append({"Id": e["Id"]})
            self.sqs._expire(q, now)
            self.sqs.lock.notify_all()
        return {"Successful": ok, "Failed": failed}
