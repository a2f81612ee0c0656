"""Google Pub/Sub as a ``Source``: streaming pull with flow control, settled after the verdict.

Receiving: ``SubscriberClient.subscribe`` (streaming pull) with ``FlowControl(max_messages,
max_bytes)``: the library leases at most that many messages and keeps extending their ack
deadlines (its lease management) until each is settled here; none waits long enough to be
delivered elsewhere.

Settlement of one message:

* ``ack``          -> ``ack_with_response`` (confirmed where the subscription has exactly-once
  delivery; otherwise Pub/Sub's at-least-once ack).
* ``requeue(d)``   -> ``modify_ack_deadline`` to ``d`` (whole seconds, at most 600), then the
  message leaves the library's lease management: Pub/Sub redelivers it when the deadline lapses.
* ``dead_letter``  -> published to the dead-letter topic (the same data and attributes, plus
  ``wojak-reason``, ``wojak-detail`` (JSON, at most 1 KiB: Pub/Sub's limit for a value),
  ``wojak-subscription``, ``wojak-message-id``), the publish confirmed (its message id), then
  acked. A crash between the two dead-letters it twice, never zero times; if the publish fails,
  the message comes back after a second (``SettleFailed``).

Ordering keys (a subscription with message ordering): the library hands out one message of a
key at a time, the next once the previous is settled. A requeued message's key is held: later
messages of the key that arrive before it comes back are given back (their deadline set to the
same delay) without reaching the engine, so the order survives a ``retry``.

Coordinates are ``(subscription id, message_id)``: a message without ``client_order_id`` gets one
derived from them, the same on every redelivery.

Stopping: no new message is handed out; the ones that arrive meanwhile wait (leased). When the
source closes, after the drain has settled what was in flight, the streaming pull is cancelled
(the library's lease extensions stop), then those and anything still unsettled are given back
(ack deadline 0). Messages Pub/Sub had sent on the stream but the library never read come back
when the stream's ack deadline (``lease_extension``) lapses.

Readiness: the library retries a broken stream by itself, its future pending meanwhile, so
``is_ready`` also needs Pub/Sub to answer a unary call (every ``PROBE_INTERVAL``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import math
import time
from typing import Any, AsyncIterator, Callable

import orjson

from wojak.sidecars._core.metrics import SidecarMetrics
from wojak.sidecars._core.serve import serve_sidecar
from wojak.sidecars._core.source import BrokerSource, SettleFailed, SourceMessage
from wojak.sidecars.pubsub.config import PubSubSidecarSettings

log = logging.getLogger(__name__)

BODY_TOO_LARGE = "body_too_large"
REASON_ATTRIBUTE = "wojak-reason"
DETAIL_ATTRIBUTE = "wojak-detail"
SUBSCRIPTION_ATTRIBUTE = "wojak-subscription"
MESSAGE_ID_ATTRIBUTE = "wojak-message-id"
MAX_ATTRIBUTE_VALUE = 1024  # bytes: Pub/Sub's limit for an attribute's value
MAX_DEADLINE = 600
PROBE_INTERVAL = 2.0  # seconds between reachability checks (readiness)
PROBE_TIMEOUT = 5.0


def _outcome(pull: Any) -> str:
    try:
        error = pull.exception(timeout=0)
    except BaseException as e:  # cancelled
        return type(e).__name__
    return repr(error)[:200] if error else "closed"


def coordinates_for(subscription: str, message_id: str) -> tuple[str, str]:
    """Stable across redeliveries: Pub/Sub keeps a message's id."""
    return (subscription, str(message_id))


def _detail(detail: Any, limit: int = MAX_ATTRIBUTE_VALUE) -> str:
    raw = orjson.dumps(detail, default=str, option=orjson.OPT_NON_STR_KEYS)
    if len(raw) > limit:
        return raw[: max(limit - 16, 0)].decode("utf-8", "ignore") + "...(truncated)"
    return raw.decode()


def dead_letter_attributes(
    original: dict[str, str], reason: str, detail: Any, subscription: str, message_id: str
) -> dict[str, str]:
    """The publisher's attributes, ours over theirs (the reason always)."""
    ours = {
        REASON_ATTRIBUTE: str(reason)[:256],
        SUBSCRIPTION_ATTRIBUTE: subscription,
        MESSAGE_ID_ATTRIBUTE: str(message_id),
        DETAIL_ATTRIBUTE: _detail(detail),
    }
    return {**{k: v for k, v in original.items() if k not in ours}, **ours}


class PubSubMessage(SourceMessage):
    def __init__(self, source: PubSubSource, received: Any) -> None:
        self._source = source
        self.received = received
        self.message_id = str(received.message_id)
        self.ordering_key: str = received.ordering_key or ""
        self.message_attributes: dict[str, str] = dict(received.attributes)
        body = bytes(received.data)
        super().__init__(
            body,
            coordinates_for(source.config.subscription, self.message_id),
            {
                "message_id": self.message_id,
                "ordering_key": self.ordering_key,
                "delivery_attempt": received.delivery_attempt,
                "attributes": self.message_attributes,
            },
        )
        if len(body) > source.config.max_body_bytes:
            self.refusal = (BODY_TOO_LARGE, {"bytes": len(body), "limit": source.config.max_body_bytes})

    async def _ack(self) -> None:
        source = self._source
        source._settling(self)
        await source.settle_call(_ack(self.received), "ack", self.coordinates)

    async def _requeue(self, delay: float) -> None:
        source = self._source
        source._settling(self)
        seconds = min(max(0, math.ceil(delay)), MAX_DEADLINE)
        source._hold_key(self, seconds)  # before the drop: the drop hands out the key's next message at once
        await source.settle_call(
            source._run(_deadline_and_drop, self.received, seconds, source.settle_timeout),
            "requeue (modify ack deadline)",
            self.coordinates,
        )

    async def _dead_letter(self, reason: str, detail: Any) -> None:
        source = self._source
        source._settling(self)
        try:
            await source.settle_call(source._publish_dead_letter(self, reason, detail), "dead letter (publish)", self.coordinates)
        except SettleFailed:
            source._hold_key(self, 1)
            await source.quietly(
                source._run(_deadline_and_drop, self.received, 1, source.settle_timeout), "giving back", self.coordinates
            )
            raise
        await source.settle_call(_ack(self.received), "ack", self.coordinates)


async def _ack(received: Any) -> None:
    """``ack_with_response`` only queues the ack for the library's dispatcher (no blocking call, so
    no thread hop); its future is done at once unless the subscription has exactly-once delivery,
    where it is Pub/Sub's answer, awaited (a refusal raises: not acked)."""
    future = received.ack_with_response()
    if not future.done():
        await asyncio.wrap_future(future)
    else:
        future.result()


def _deadline_and_drop(received: Any, seconds: int, timeout: float) -> None:
    """Out of the library's lease management first (it extends leases on its own schedule), then
    the deadline set by a unary call Pub/Sub confirms: redelivered when it lapses (0: now)."""
    received.drop()
    _set_deadline(received._wojak_subscriber, received._wojak_subscription, [received.ack_id], seconds, timeout)


def _set_deadline(subscriber: Any, subscription: str, ack_ids: list[str], seconds: int, timeout: float) -> None:
    for start in range(0, len(ack_ids), 1000):
        subscriber.modify_ack_deadline(
            request={"subscription": subscription, "ack_ids": ack_ids[start : start + 1000], "ack_deadline_seconds": seconds},
            timeout=timeout,
        )


class PubSubSource(BrokerSource):
    name = "pubsub"  # the CLI name: part of every derived client_order_id, so never renamed later

    def __init__(
        self,
        config: PubSubSidecarSettings,
        metrics: SidecarMetrics | None = None,
        clients: Callable[[], tuple[Any, Any]] | None = None,
    ) -> None:
        super().__init__(config.settle_timeout)
        self.config = config
        self.metrics = metrics
        self._clients = clients or make_clients
        self._subscriber: Any = None
        self._publisher: Any = None
        self._pull: Any = None  # the StreamingPullFuture
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="wojak-pubsub")
        self._deliveries: asyncio.Queue[Any] = asyncio.Queue()
        self._waiting: list[Any] = []  # arrived while stopping: given back at close
        self._held: dict[str, PubSubMessage] = {}  # handed out, not settled
        self.redeliveries_held = 0  # deliveries of a message already held (its lease had lapsed): not handed out
        self._blocked: dict[str, tuple[str, float, int]] = {}  # ordering key -> (requeued message id, until, delay)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reachable = False
        self._watch: asyncio.Task[None] | None = None

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args))

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> PubSubSource:
        self._loop = asyncio.get_running_loop()
        clients = await self.connect_with_backoff(self._connect, "Pub/Sub", (Exception,))
        if clients is None:
            return self
        self._subscriber, self._publisher = clients
        self._subscribe()
        self._reachable = True
        self._watch = asyncio.create_task(self._watch_broker(), name="wojak-pubsub-watch")
        log.info("consuming %r", self.config)
        return self

    def _subscribe(self) -> None:
        from google.cloud.pubsub_v1.types import FlowControl

        flow = FlowControl(
            max_messages=self.config.max_messages,
            max_bytes=self.config.max_bytes,
            max_duration_per_lease_extension=self.config.lease_extension,
        )
        self._pull = self._subscriber.subscribe(self.config.subscription_path, callback=self._on_message, flow_control=flow)

    async def _watch_broker(self) -> None:
        """Readiness and recovery. The library retries a broken stream by itself and its future stays
        pending meanwhile, so reachability is asked of Pub/Sub (a unary call with a short deadline)
        every ``PROBE_INTERVAL``; a stream the library gave up (its future done) is opened again."""
        path = self.config.subscription_path
        while not self.stopping:
            try:
                call = functools.partial(self._subscriber.get_subscription, subscription=path, timeout=PROBE_TIMEOUT)
                await asyncio.wait_for(self._run(call), PROBE_TIMEOUT + 1)
            except Exception as exc:
                if self._reachable:
                    log.warning("Pub/Sub is not answering (%s): not ready", str(exc)[:200] or type(exc).__name__)
                self._reachable = False
            else:
                if not self._reachable:
                    log.warning("Pub/Sub answers again: ready")
                self._reachable = True
                if self._pull is not None and self._pull.done() and not self.stopping:
                    log.warning("the streaming pull ended (%s); opening it again", _outcome(self._pull))
                    self._subscribe()
            await self.pause(PROBE_INTERVAL)

    async def _connect(self) -> tuple[Any, Any]:
        subscriber, publisher = await self._run(self._clients)
        await self._run(functools.partial(subscriber.get_subscription, subscription=self.config.subscription_path, timeout=10))
        await self._run(functools.partial(publisher.get_topic, topic=self.config.dead_letter_topic_path, timeout=10))
        return subscriber, publisher

    def _on_message(self, received: Any) -> None:  # the library's thread
        received._wojak_subscriber = self._subscriber  # what giving it back (a unary modack) needs
        received._wojak_subscription = self.config.subscription_path
        loop = self._loop
        if loop is None or loop.is_closed():
            received.nack()
            return
        loop.call_soon_threadsafe(self._deliveries.put_nowait, received)

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_consuming()
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
            self._watch = None
        if self._pull is not None:  # first the stream (and the library's lease extensions) stop
            self._pull.cancel()
            try:
                await asyncio.wait_for(self._run(self._pull.result), self.settle_timeout)
            except BaseException as e:  # cancelled, or the stream's last error: closing anyway
                if isinstance(e, KeyboardInterrupt):
                    raise
            self._pull = None
        give_back = list(self._waiting) + [m.received for m in self._held.values()]
        self._waiting, self._held = [], {}
        while not self._deliveries.empty():
            item = self._deliveries.get_nowait()
            if item is not None:
                give_back.append(item)
        if give_back and self._subscriber is not None:  # then what was not settled: redelivered now
            ack_ids = [m.ack_id for m in give_back]
            await self.quietly(
                self._run(_set_deadline, self._subscriber, self.config.subscription_path, ack_ids, 0, self.settle_timeout),
                "giving back",
                self.config.subscription,
            )
        for client, close in ((self._subscriber, "close"), (self._publisher, "stop")):
            if client is not None:
                try:
                    await asyncio.wait_for(self._run(getattr(client, close)), self.settle_timeout)
                except Exception:
                    log.warning("closing the Pub/Sub %s client failed", close)
        self._subscriber = self._publisher = None
        self._pool.shutdown(wait=False)

    async def stop_consuming(self) -> None:
        if self.begin_stopping():
            self._deliveries.put_nowait(None)  # the iterator ends; what arrives from now on waits for the close

    def is_ready(self) -> bool:
        return self._pull is not None and not self._pull.done() and self._reachable and not self.stopping

    async def messages(self) -> AsyncIterator[SourceMessage]:
        while True:
            received = await self._deliveries.get()
            if received is None or self.stopping:
                if received is not None:
                    self._waiting.append(received)
                return
            key = received.ordering_key or ""
            held = self._held.get(str(received.message_id))
            if held is not None and not key:
                # its lease lapsed while the engine has it (a stall, an outage) and Pub/Sub delivered it
                # again: not handed out twice; the held one settles with the new ack id (the old is stale)
                held.received.drop()
                held.received = received
                self.redeliveries_held += 1
                log.warning("message %s came back while still held (its lease had lapsed); not handed out again", held.message_id)
                continue
            blocked = self._blocked.get(key) if key else None
            if blocked is not None:
                head, until, delay = blocked
                if received.message_id == head or time.monotonic() > until:
                    del self._blocked[key]
                else:  # behind a requeued message of its key: back with it, in order
                    asyncio.create_task(
                        self.quietly(
                            self._run(_deadline_and_drop, received, delay, self.settle_timeout),
                            "giving back (ordering key held)",
                            received.message_id,
                        )
                    )
                    continue
            message = PubSubMessage(self, received)
            self._held[message.message_id] = message
            yield message
        # after the iterator: arrivals are kept for the close (see stop_consuming)

    # -- settling --------------------------------------------------------------------

    def _settling(self, message: PubSubMessage) -> None:
        self._held.pop(message.message_id, None)

    def _hold_key(self, message: PubSubMessage, delay: int) -> None:
        if message.ordering_key:
            self._blocked[message.ordering_key] = (message.message_id, time.monotonic() + delay + 60, delay)

    async def _publish_dead_letter(self, message: PubSubMessage, reason: str, detail: Any) -> None:
        attributes = dead_letter_attributes(
            message.message_attributes, reason, detail, self.config.subscription, message.message_id
        )
        publisher, topic, timeout = self._publisher, self.config.dead_letter_topic_path, self.settle_timeout

        def publish() -> str:
            result: str = publisher.publish(topic, message.body, **attributes).result(timeout=timeout)
            return result

        if not await self._run(publish):
            raise SettleFailed("Pub/Sub did not confirm the dead letter")


def make_clients() -> tuple[Any, Any]:
    """Subscriber and publisher: credentials from Application Default Credentials only (or
    ``PUBSUB_EMULATOR_HOST``); dead letters are published at once (no batching delay)."""
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient(batch_settings=pubsub_v1.types.BatchSettings(max_latency=0.001))
    return pubsub_v1.SubscriberClient(), publisher


async def serve(config: PubSubSidecarSettings, *, stop: asyncio.Event | None = None) -> None:
    """The Pub/Sub sidecar until SIGTERM/SIGINT (or ``stop``): consume, drain, exit."""
    runner = config.runner
    metrics = SidecarMetrics(PubSubSource.name)
    await serve_sidecar(PubSubSource(config, metrics), runner, stop=stop, metrics=metrics)
