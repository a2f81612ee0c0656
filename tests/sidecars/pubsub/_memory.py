"""Pub/Sub in memory: a subscriber and a publisher client with google-cloud-pubsub's method
names and shapes (the calls the Pub/Sub sidecar makes) over subscriptions with Pub/Sub's
semantics: a message handed to a streaming pull is leased for the ack deadline and comes back
when the lease lapses; the stream's lease management extends the leases of the messages it
handed out until each is acked, nacked or dropped; an ack id is good until the message is
delivered again (on an exactly-once subscription a stale ack fails, as Pub/Sub's does); flow
control bounds the messages a stream holds; an ordering key has one message out at a time.
``crash`` is the subscriber client's ``kill -9``: its calls fail from then on, its lease
management stops, and what it held comes back when the leases lapse.

It lets the Pub/Sub source's own code (only the clients are swapped) run the contract and the
10,000-order stream in memory."""

from __future__ import annotations

import concurrent.futures
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable


class ClientGone(ConnectionError):
    pass


class AckRefused(Exception):
    """What ``ack_with_response`` raises for a stale ack id on an exactly-once subscription."""


@dataclass
class _Message:
    id: str
    data: bytes
    attributes: dict[str, str]
    ordering_key: str
    visible_at: float = 0.0
    ack_id: str | None = None
    stream: Any = None  # the stream whose lease management holds it


@dataclass
class _Subscription:
    topic: str
    ack_deadline: float
    exactly_once: bool = False
    messages: dict[str, _Message] = field(default_factory=dict)  # id -> message, in publication order


class MemoryPubSub:
    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.topics: dict[str, list[str]] = {}
        self.subscriptions: dict[str, _Subscription] = {}
        self._ids = itertools.count(1)
        self._ack_ids = itertools.count(1)

    def create_topic(self, name: str) -> None:
        with self.lock:
            self.topics.setdefault(name, [])

    def create_subscription(self, name: str, topic: str, ack_deadline: float = 10, exactly_once: bool = False) -> None:
        with self.lock:
            self.subscriptions[name] = _Subscription(topic, ack_deadline, exactly_once)
            self.topics[topic].append(name)

    def publish(self, topic: str, data: bytes, attributes: dict[str, str], ordering_key: str = "") -> str:
        with self.lock:
            message_id = str(next(self._ids))
            for name in self.topics[topic]:
                self.subscriptions[name].messages[message_id] = _Message(message_id, data, dict(attributes), ordering_key)
            self.lock.notify_all()
            return message_id

    def _lapse(self, sub: _Subscription, now: float) -> None:
        for m in sub.messages.values():
            if m.ack_id is not None and m.visible_at <= now:
                m.ack_id, m.stream = None, None

    def take(self, subscription: str, limit: int, stream: Any = None, lease: float | None = None) -> list[_Message]:
        """Lease up to ``limit`` deliverable messages (one per ordering key out at a time)."""
        now = time.monotonic()
        sub = self.subscriptions[subscription]
        self._lapse(sub, now)
        busy = {m.ordering_key for m in sub.messages.values() if m.ack_id is not None and m.ordering_key}
        out: list[_Message] = []
        for m in sub.messages.values():
            if len(out) >= limit:
                break
            if m.ack_id is not None or (m.ordering_key and m.ordering_key in busy):
                continue
            if m.ordering_key:
                busy.add(m.ordering_key)
            m.ack_id = f"{subscription}:{next(self._ack_ids)}"
            m.visible_at = now + (lease or sub.ack_deadline)
            m.stream = stream
            out.append(m)
        return out

    def _find(self, subscription: str, ack_id: str) -> _Message | None:
        for m in self.subscriptions[subscription].messages.values():
            if m.ack_id == ack_id:
                return m
        return None

    def ack(self, subscription: str, ack_id: str) -> bool:
        with self.lock:
            sub = self.subscriptions[subscription]
            self._lapse(sub, time.monotonic())
            m = self._find(subscription, ack_id)
            if m is None:
                return False
            del sub.messages[m.id]
            self.lock.notify_all()
            return True

    def modify(self, subscription: str, ack_ids: list[str], seconds: float) -> None:
        with self.lock:
            now = time.monotonic()
            self._lapse(self.subscriptions[subscription], now)
            for ack_id in ack_ids:
                m = self._find(subscription, ack_id)
                if m is not None:
                    m.visible_at = now + seconds
                    if seconds <= 0:
                        m.ack_id, m.stream = None, None
            self.lock.notify_all()

    def counts(self, subscription: str) -> int:
        with self.lock:
            return len(self.subscriptions[subscription].messages)

    def drain(self, subscription: str) -> list[_Message]:
        """Every message of ``subscription`` now (acked: a reader of the dead-letter topic)."""
        with self.lock:
            sub = self.subscriptions[subscription]
            out = list(sub.messages.values())
            sub.messages.clear()
            return out


class MemoryReceived:
    """A message as the library hands it to the callback."""

    def __init__(self, stream: _Stream, m: _Message) -> None:
        self._stream, self._m = stream, m
        self.message_id = m.id
        self.ack_id = m.ack_id or ""
        self.data = m.data
        self.attributes = dict(m.attributes)
        self.ordering_key = m.ordering_key
        self.delivery_attempt = None

    def _done(self) -> None:
        self._stream.release(self.ack_id)

    def ack_with_response(self) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            self._stream.client.check()
            ok = self._stream.broker.ack(self._stream.subscription, self.ack_id)
            self._done()
        except Exception as e:
            future.set_exception(e)
            return future
        exactly_once = self._stream.broker.subscriptions[self._stream.subscription].exactly_once
        if not ok and exactly_once:
            future.set_exception(AckRefused("INVALID_ACK_ID"))
        else:
            future.set_result("SUCCESS")
        return future

    def ack(self) -> None:
        self.ack_with_response()

    def nack(self) -> None:
        self._done()
        self._stream.broker.modify(self._stream.subscription, [self.ack_id], 0)

    def drop(self) -> None:
        self._done()


class _Stream:
    """One streaming pull: hands out messages within flow control, extends the leases it holds."""

    def __init__(self, client: MemorySubscriberClient, subscription: str, callback: Callable[[Any], None], limit: int) -> None:
        self.client, self.broker, self.subscription, self.callback = client, client.broker, subscription, callback
        self.limit = limit
        self.held: set[str] = set()
        self.lease = max(1.0, self.broker.subscriptions[subscription].ack_deadline)
        self.stopped = threading.Event()
        self.future: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.thread = threading.Thread(target=self._run, name="memory-pubsub-stream", daemon=True)
        self.thread.start()

    def release(self, ack_id: str) -> None:
        with self.broker.lock:
            self.held.discard(ack_id)
            self.broker.lock.notify_all()

    def _run(self) -> None:
        extended = time.monotonic()
        while not self.stopped.is_set() and not self.client.crashed:
            with self.broker.lock:
                now = time.monotonic()
                if now - extended > self.lease / 3 and self.client.extend_leases:  # lease management
                    extended = now
                    for m in self.broker.subscriptions[self.subscription].messages.values():
                        if m.ack_id in self.held and m.stream is self:
                            m.visible_at = now + self.lease
                room = self.limit - len(self.held)
                got = self.broker.take(self.subscription, room, self) if room > 0 else []
                for m in got:
                    self.held.add(m.ack_id or "")
                if not got:
                    self.broker.lock.wait(0.05)
            for m in got:
                self.callback(MemoryReceived(self, m))
        if not self.future.done():
            self.future.set_result(None)

    # the StreamingPullFuture's surface
    def cancel(self) -> bool:
        self.stopped.set()
        return True

    def result(self, timeout: float | None = None) -> None:
        self.thread.join(timeout)
        return self.future.result(timeout)

    def done(self) -> bool:
        return self.future.done() or self.stopped.is_set()


class MemorySubscriberClient:
    def __init__(self, broker: MemoryPubSub) -> None:
        self.broker = broker
        self.crashed = False
        self.extend_leases = True  # False: a stalled client (its leases lapse)

    def check(self) -> None:
        if self.crashed:
            raise ClientGone("the subscriber client is gone (kill -9)")

    def crash(self) -> None:
        self.crashed = True

    def get_subscription(self, subscription: str, timeout: float | None = None) -> Any:
        self.check()
        if subscription not in self.broker.subscriptions:
            raise LookupError(subscription)
        return self.broker.subscriptions[subscription]

    def subscribe(self, subscription: str, callback: Callable[[Any], None], flow_control: Any = None) -> _Stream:
        self.check()
        return _Stream(self, subscription, callback, getattr(flow_control, "max_messages", 1000))

    def modify_ack_deadline(self, request: dict[str, Any], timeout: float | None = None) -> None:
        self.check()
        self.broker.modify(request["subscription"], list(request["ack_ids"]), request["ack_deadline_seconds"])

    def close(self) -> None:
        pass


class MemoryPublisherClient:
    def __init__(self, broker: MemoryPubSub, subscriber: MemorySubscriberClient | None = None) -> None:
        self.broker = broker
        self.subscriber = subscriber  # its crash is the whole sidecar's

    def get_topic(self, topic: str, timeout: float | None = None) -> Any:
        if topic not in self.broker.topics:
            raise LookupError(topic)
        return topic

    def publish(self, topic: str, data: bytes, ordering_key: str = "", **attributes: str) -> concurrent.futures.Future[str]:
        future: concurrent.futures.Future[str] = concurrent.futures.Future()
        try:
            if self.subscriber is not None:
                self.subscriber.check()
            future.set_result(self.broker.publish(topic, data, attributes, ordering_key))
        except Exception as e:
            future.set_exception(e)
        return future

    def stop(self) -> None:
        pass
