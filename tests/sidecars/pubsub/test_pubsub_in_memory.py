"""The sidecar contract against the Pub/Sub source with an in-memory Pub/Sub
(tests/sidecars/pubsub/_memory.py: only the two clients are swapped), the stream scenario
included: 10,000 orders by default (WOJAK_TEST_PUBSUB_STREAM_ORDERS), in process, ``kill -9`` =
the clients gone mid-stream (what they held comes back when its leases lapse)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.sidecars.pubsub._memory import MemoryPublisherClient, MemoryPubSub, MemorySubscriberClient
from wojak.sidecars.pubsub import PubSubSidecarSettings, PubSubSource
from wojak.sidecars.pubsub.source import DETAIL_ATTRIBUTE, REASON_ATTRIBUTE
from wojak.sidecars.testing.contract import (
    EngineUnderTest,
    InProcessSidecar,
    Sidecar,
    SidecarContract,
    dumps,
    eventually,
    ledger,
    order,
)
from wojak.sidecars.testing.memory import DeadLetter

PROJECT = "memory"


class TestPubSubInMemory(SidecarContract):
    source_name = "pubsub"
    stream_orders = 10_000
    stream_in_flight = 256  # the stream's flow control (128), twice for safety

    @pytest.fixture(autouse=True)
    def broker(self) -> MemoryPubSub:
        self.memory = MemoryPubSub()
        name = f"memory-{uuid.uuid4().hex[:12]}"
        self.name = name
        self.topic = f"projects/{PROJECT}/topics/{name}"
        self.dlq_topic = f"projects/{PROJECT}/topics/{name}-dlq"
        self.subscription = f"projects/{PROJECT}/subscriptions/{name}"
        self.dlq_subscription = f"projects/{PROJECT}/subscriptions/{name}-dlq"
        for topic, subscription in ((self.topic, self.subscription), (self.dlq_topic, self.dlq_subscription)):
            self.memory.create_topic(topic)
            self.memory.create_subscription(subscription, topic, ack_deadline=4)
        self.publisher = MemoryPublisherClient(self.memory)
        self.ids: dict[str, str] = {}
        return self.memory

    def config(self, **kw: Any) -> PubSubSidecarSettings:
        settings: dict[str, Any] = dict(
            project=PROJECT, subscription=self.name, dead_letter_topic=f"{self.name}-dlq", max_messages=32
        )
        settings.update(kw)
        return PubSubSidecarSettings(**settings)

    def make_source(self, **kw: Any) -> PubSubSource:
        subscriber = MemorySubscriberClient(self.memory)
        publisher = MemoryPublisherClient(self.memory, subscriber)
        source = PubSubSource(self.config(**kw), clients=lambda: (subscriber, publisher))
        source.crash = subscriber.crash  # type: ignore[attr-defined]
        return source

    async def publish(self, body: bytes, *, message_id: str | None = None) -> None:
        sent = self.publisher.publish(self.topic, body).result()
        if message_id:
            self.ids.setdefault(message_id, sent)

    def coordinates_for(self, message_id: str, body: bytes) -> tuple[Any, ...]:
        return (self.name, self.ids[message_id])

    async def dead_letters(self) -> list[DeadLetter]:
        letters = []
        for m in self.memory.drain(self.dlq_subscription):
            detail = m.attributes.get(DETAIL_ATTRIBUTE)
            letters.append(DeadLetter(m.attributes.get(REASON_ATTRIBUTE, ""), json.loads(detail) if detail else None, m.data))
        return letters

    async def dead_letter_count(self) -> int:
        return self.memory.counts(self.dlq_subscription)

    async def pending_count(self) -> int:
        return self.memory.counts(self.subscription)

    pending_counts_unsettled = True  # every message not acked, leased or not

    async def launch(self, engine: EngineUnderTest, env: dict[str, str], name: str) -> InProcessSidecar:
        source = self.make_source(max_messages=128)
        return InProcessSidecar(source, {**env, "WOJAK_SIDECAR_CONCURRENCY": "64"}, source.crash)  # type: ignore[attr-defined]

    async def test_a_message_whose_lease_lapsed_while_held_is_not_handed_out_twice(self, engine):
        """The lease management stalls (leases of 4 s lapse) while the engine takes 6 s: Pub/Sub
        delivers the message again to the same sidecar, which keeps the held one (now settled with
        the new ack id) instead of sending the copy to the engine; the ack takes."""
        await self.publish(dumps(order("lapsed-1")))
        subscriber = MemorySubscriberClient(self.memory)
        subscriber.extend_leases = False
        publisher = MemoryPublisherClient(self.memory, subscriber)
        source = PubSubSource(self.config(), clients=lambda: (subscriber, publisher))
        async with Sidecar(source, engine, delay=6, engine_deadline=10) as sc:
            await eventually(lambda: sc.source.settled("ack"), 30, "the ack")
        assert source.redeliveries_held >= 1, "the lease lapsed and the message came back while held"
        assert sc.slow_client.started == 1 and sc.verdicts("duplicate") == 0, "the copy never reached the engine"
        assert len(sc.source.seen) == 1
        assert ledger(engine) == {"lapsed-1": 1}
        assert await self.pending_count() == 0, "the ack with the new ack id took"
