"""The sidecar contract against the Google Pub/Sub emulator (scripts/services up pubsub) and a
real engine, with the `wojak sidecar pubsub` process for the SIGTERM test and the stream scenario
(10,000 orders by default: WOJAK_TEST_PUBSUB_STREAM_ORDERS); ordering keys across a requeue."""

from __future__ import annotations

import asyncio
import collections
import json
import uuid
from typing import Any

import pytest
from google.cloud import pubsub_v1

from wojak.engine.protocol import MessageType
from wojak.sidecars.pubsub import PubSubSidecarSettings, PubSubSource
from wojak.sidecars.pubsub.source import DETAIL_ATTRIBUTE, REASON_ATTRIBUTE
from wojak.sidecars.testing.contract import ACCOUNTS, TICK, Sidecar, SidecarContract, dumps, eventually, ledger, order
from wojak.sidecars.testing.memory import DeadLetter

pytestmark = pytest.mark.pubsub


class PubSubTopic:
    """A topic, its subscription, a dead-letter topic and a subscription to read it, on the emulator."""

    def __init__(self, project: str, *, ordering: bool = False, exactly_once: bool = False) -> None:
        self.project = project
        prefix = f"wojak-test-{uuid.uuid4().hex[:12]}"
        self.publisher = pubsub_v1.PublisherClient(publisher_options=pubsub_v1.types.PublisherOptions(
            enable_message_ordering=ordering))
        self.subscriber = pubsub_v1.SubscriberClient()
        self.topic = self.publisher.topic_path(project, prefix)
        self.dlq_topic = self.publisher.topic_path(project, f"{prefix}-dlq")
        self.subscription = self.subscriber.subscription_path(project, prefix)
        self.dlq_subscription = self.subscriber.subscription_path(project, f"{prefix}-dlq")
        self.publisher.create_topic(name=self.topic)
        self.publisher.create_topic(name=self.dlq_topic)
        self.subscriber.create_subscription(request={"name": self.subscription, "topic": self.topic, "ack_deadline_seconds": 10,
                                                     "enable_message_ordering": ordering})
        self.subscriber.create_subscription(request={"name": self.dlq_subscription, "topic": self.dlq_topic,
                                                     "ack_deadline_seconds": 10})
        self.ids: dict[str, str] = {}

    def config(self, **kw: Any) -> PubSubSidecarSettings:
        settings: dict[str, Any] = dict(project=self.project, subscription=self.subscription.rsplit("/", 1)[-1],
                                        dead_letter_topic=self.dlq_topic.rsplit("/", 1)[-1], max_messages=32)
        settings.update(kw)
        return PubSubSidecarSettings(**settings)

    def env(self) -> dict[str, str]:
        c = self.config()
        return {"WOJAK_SIDECAR_PUBSUB_PROJECT": c.project, "WOJAK_SIDECAR_PUBSUB_SUBSCRIPTION": c.subscription,
                "WOJAK_SIDECAR_PUBSUB_DEAD_LETTER_TOPIC": c.dead_letter_topic}

    def close(self) -> None:
        for call in (lambda: self.subscriber.delete_subscription(subscription=self.subscription),
                     lambda: self.subscriber.delete_subscription(subscription=self.dlq_subscription),
                     lambda: self.publisher.delete_topic(topic=self.topic),
                     lambda: self.publisher.delete_topic(topic=self.dlq_topic)):
            try:
                call()
            except Exception:
                pass
        self.subscriber.close()

    async def publish_many(self, bodies: list[tuple[bytes, str | None]], ordering_key: str = "") -> None:
        futures = [self.publisher.publish(self.topic, body, ordering_key=ordering_key) for body, _ in bodies]
        ids = await asyncio.to_thread(lambda: [f.result(timeout=60) for f in futures])
        for (_, mid), sent in zip(bodies, ids):
            if mid:
                self.ids.setdefault(mid, sent)

    def _pull_all(self, subscription: str) -> list[Any]:
        from google.api_core import exceptions

        out: list[Any] = []
        while True:  # the emulator answers an empty pull only at its deadline
            try:
                response = self.subscriber.pull(request={"subscription": subscription, "max_messages": 1000}, timeout=2)
            except exceptions.DeadlineExceeded:
                return out
            if not response.received_messages:
                return out
            out.extend(response.received_messages)

    def _count(self, subscription: str) -> int:
        """The messages ``subscription`` hands out now, pulled and given back at once (not acked)."""
        got = self._pull_all(subscription)
        for i in range(0, len(got), 500):
            self.subscriber.modify_ack_deadline(request={"subscription": subscription, "ack_deadline_seconds": 0,
                                                         "ack_ids": [m.ack_id for m in got[i:i + 500]]})
        return len(got)

    async def pending(self) -> int:
        return await asyncio.to_thread(self._count, self.subscription)

    async def dead_letter_count(self) -> int:
        """The dead letters not yet taken: no one else reads the dead-letter subscription, so a pull sees them all."""
        return await asyncio.to_thread(self._count, self.dlq_subscription)

    async def dead_letters(self) -> list[DeadLetter]:
        def take() -> list[DeadLetter]:
            got = self._pull_all(self.dlq_subscription)
            for i in range(0, len(got), 500):
                self.subscriber.acknowledge(request={"subscription": self.dlq_subscription,
                                                     "ack_ids": [m.ack_id for m in got[i:i + 500]]})
            letters = []
            for m in got:
                attributes = dict(m.message.attributes)
                detail = attributes.get(DETAIL_ATTRIBUTE)
                letters.append(DeadLetter(attributes.get(REASON_ATTRIBUTE, ""), json.loads(detail) if detail else None,
                                          bytes(m.message.data)))
            return letters

        return await asyncio.to_thread(take)


class TestPubSub(SidecarContract):
    source_name = "pubsub"
    cli_name = "pubsub"
    stream_orders = 10_000
    stream_in_flight = 256  # a killed sidecar's leased messages (flow control 128), twice for safety

    @pytest.fixture(autouse=True)
    def broker(self, pubsub_emulator):
        self.topic = PubSubTopic(pubsub_emulator.project)
        yield self.topic
        self.topic.close()

    def make_source(self) -> PubSubSource:
        return PubSubSource(self.topic.config())

    async def publish(self, body: bytes, *, message_id: str | None = None) -> None:
        await self.topic.publish_many([(body, message_id)])

    async def publish_many(self, bodies: list[tuple[bytes, str | None]]) -> None:
        await self.topic.publish_many(bodies)

    def coordinates_for(self, message_id: str, body: bytes) -> tuple[Any, ...]:
        return (self.topic.subscription.rsplit("/", 1)[-1], self.topic.ids[message_id])

    async def dead_letters(self) -> list[DeadLetter]:
        return await self.topic.dead_letters()

    async def dead_letter_count(self) -> int:
        return await self.topic.dead_letter_count()

    async def pending_count(self) -> int:  # a pull: a message leased away (a requeue's backoff) is out of sight
        return await self.topic.pending()

    def stream_env(self) -> dict[str, str]:
        return {"WOJAK_SIDECAR_PUBSUB_MAX_MESSAGES": "128"}

    def sidecar_env(self) -> dict[str, str]:
        return {**self.topic.env(), "WOJAK_SIDECAR_ACCOUNTS": ACCOUNTS}


@pytest.fixture
def engine(engine_factory):
    proc = engine_factory(WOJAK_SANDBOX_FILL_PROBABILITY="1")
    assert proc.request(MessageType.TICK, {"tick": TICK})["verdict"] == "ok"
    return proc


class _Tracking:
    """The engine client, recording each account's orders in flight at once, their order, and one retry."""

    def __init__(self, client, delay: float, fail_once: set[str]) -> None:
        self.client, self.delay, self.fail_once = client, delay, fail_once
        self.now: collections.Counter[str] = collections.Counter()
        self.most: collections.Counter[str] = collections.Counter()
        self.sequence: dict[str, list[str]] = collections.defaultdict(list)

    async def submit_order(self, order, principal, deadline=None):
        account = order["account"]
        self.now[account] += 1
        self.most[account] = max(self.most[account], self.now[account])
        self.sequence[account].append(order["client_order_id"])
        try:
            await asyncio.sleep(self.delay)
            if order["client_order_id"] in self.fail_once:
                self.fail_once.discard(order["client_order_id"])
                return {"verdict": "retry", "client_order_id": order["client_order_id"], "retry_after": 1}
            return await self.client.submit_order(order, principal, deadline)
        finally:
            self.now[account] -= 1


async def test_ordering_keys_are_kept_one_at_a_time_in_order_across_a_requeue(engine, pubsub_emulator):
    topic = PubSubTopic(pubsub_emulator.project, ordering=True)
    try:
        n = 6
        for key, account in (("k1", "acct-1"), ("k2", "acct-2")):
            await topic.publish_many([(dumps(order(f"{key}-{i}", account=account)), None) for i in range(n)], ordering_key=key)
        sc = Sidecar(PubSubSource(topic.config()), engine, concurrency=8)
        tracking = _Tracking(sc.client, 0.1, {"k1-2"})
        sc.runner.client = tracking  # type: ignore[assignment]
        async with sc:
            await eventually(lambda: len(ledger(engine)) == 2 * n, 60, "every order")
        assert tracking.most == {"acct-1": 1, "acct-2": 1}, "one message of a key at a time"
        assert [c for c in tracking.sequence["acct-1"] if c != "k1-2"] == [f"k1-{i}" for i in range(n) if i != 2]
        first = tracking.sequence["acct-1"]
        assert first.index("k1-2") < first.index("k1-3") and first.count("k1-2") == 2, first
        assert tracking.sequence["acct-2"] == [f"k2-{i}" for i in range(n)]
        assert set(ledger(engine).values()) == {1}
    finally:
        topic.close()
