"""What the contract cannot see about Pub/Sub (on the emulator): a lease never lapses while the
engine is slower than the ack deadline (the library's lease management), acks on an exactly-once
subscription are confirmed and a failed one counts as not acked, and the dead letter carries its
reason, its coordinates and the publisher's attributes."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud.pubsub_v1.subscriber.exceptions import AcknowledgeError, AcknowledgeStatus

from tests.sidecars.pubsub.test_pubsub import PubSubTopic
from wojak.engine.protocol import MessageType
from wojak.sidecars.pubsub import PubSubSource
from wojak.sidecars.pubsub.source import (
    DETAIL_ATTRIBUTE,
    MESSAGE_ID_ATTRIBUTE,
    REASON_ATTRIBUTE,
    SUBSCRIPTION_ATTRIBUTE,
    PubSubMessage,
)
from wojak.sidecars.testing.contract import TICK, Sidecar, dumps, eventually, ledger, order

pytestmark = pytest.mark.pubsub

ACK_DEADLINE = 10  # the subscription's (Pub/Sub's smallest)


def filling_engine(engine_factory, **env):
    engine = engine_factory(WOJAK_SANDBOX_FILL_PROBABILITY="1", **env)
    assert engine.request(MessageType.TICK, {"tick": TICK})["verdict"] == "ok"
    return engine


@pytest.fixture
def engine(engine_factory):
    return filling_engine(engine_factory)


@pytest.fixture
def slow_engine(engine_factory):
    return filling_engine(engine_factory, WOJAK_SANDBOX_LATENCY_MS=str(int(ACK_DEADLINE * 1.6 * 1000)))


@pytest.fixture
def topic(pubsub_emulator):
    t = PubSubTopic(pubsub_emulator.project)
    yield t
    t.close()


def _pull_once(topic: PubSubTopic) -> list[Any]:
    """What another consumer of the subscription would get now (given back at once)."""
    try:
        response = topic.subscriber.pull(request={"subscription": topic.subscription, "max_messages": 100}, timeout=1)
    except exceptions.DeadlineExceeded:  # the emulator answers an empty pull only at its deadline
        return []
    got = list(response.received_messages)
    if got:
        topic.subscriber.modify_ack_deadline(
            request={"subscription": topic.subscription, "ack_ids": [m.ack_id for m in got], "ack_deadline_seconds": 0}
        )
    return got


async def test_a_venue_slower_than_the_ack_deadline_never_lets_a_lease_lapse(slow_engine, topic):
    """Venue latency 16 s, ack deadline 10 s: the library keeps extending each lease while the engine
    works; no other consumer gets any of the messages meanwhile, none is delivered twice, and the
    engine never answers a duplicate that a lapsed lease would cause."""
    engine = slow_engine
    n = 8
    await topic.publish_many([(dumps(order(f"slow-{i}", account=f"acct-{i}")), None) for i in range(n)])
    source = PubSubSource(topic.config())
    seen_by_another = 0
    async with Sidecar(source, engine, engine_deadline=60, concurrency=n) as sc:
        await eventually(lambda: len(sc.source.seen) >= n, 30, "every message received")
        while len(sc.source.settled("ack")) < n:
            seen_by_another += len(await asyncio.to_thread(_pull_once, topic))
            await asyncio.sleep(0.5)
            assert sc.task is not None and not sc.task.done()
    ids = [m.message_id for m in sc.source.seen]  # type: ignore[attr-defined]
    print(
        f"\n{n} orders, venue {ACK_DEADLINE * 1.6:.0f} s, ack deadline {ACK_DEADLINE} s: {len(sc.source.seen)} deliveries, "
        f"{seen_by_another} seen by another consumer, {sc.verdicts('duplicate'):.0f} duplicates"
    )
    assert len(sc.source.seen) == n, f"each message delivered once ({ids})"
    assert ledger(engine) == {f"slow-{i}": 1 for i in range(n)}
    assert sc.verdicts("filled") == n and sc.verdicts("duplicate") == 0, "no redelivery reached the engine"
    assert seen_by_another == 0
    assert await topic.pending() == 0
    assert await topic.dead_letters() == []


@pytest.fixture
def exactly_once(pubsub_emulator):
    t = PubSubTopic(pubsub_emulator.project, exactly_once=True)
    yield t
    t.close()


async def test_exactly_once_acks_are_confirmed_and_a_failed_one_is_not_acked(engine, exactly_once):
    """On an exactly-once subscription the ack is ``ack_with_response`` and its answer is awaited. The
    first order's lease is made to lapse after the engine's verdict (Pub/Sub delivers it again), and
    its ack is answered INVALID_ACK_ID, as Pub/Sub answers an ack whose lease lapsed. (That answer is
    injected at the SDK's future: this emulator accepted such stale acks in these sequences.) The
    sidecar counts that ack as not acked; the copy reaches the engine, which answers ``duplicate``,
    and the copy's ack is confirmed by the emulator. The second order's ack is confirmed at once."""
    topic = exactly_once
    await topic.publish_many([(dumps(order("eo-1")), None), (dumps(order("eo-2", account="acct-2")), None)])
    lapsed: list[str] = []
    deliveries: list[str] = []

    def lapse(message: PubSubMessage) -> None:
        message.received.drop()
        topic.subscriber.modify_ack_deadline(
            request={"subscription": topic.subscription, "ack_ids": [message.received.ack_id], "ack_deadline_seconds": 0}
        )

    def refused() -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        future.set_exception(AcknowledgeError(AcknowledgeStatus.INVALID_ACK_ID, None))
        return future

    class LapsingSource(PubSubSource):
        async def messages(self):
            async for message in super().messages():
                coid = json.loads(message.body)["client_order_id"]
                deliveries.append(coid)
                if coid == "eo-1" and not lapsed:
                    acking = message._ack

                    async def lapse_then_ack(message: Any = message, acking: Any = acking) -> None:
                        lapsed.append(message.message_id)
                        self._settling(message)  # let go of it first: what Pub/Sub sends now is a new delivery
                        await asyncio.to_thread(lapse, message)
                        await eventually(lambda: deliveries.count("eo-1") == 2, 30, "Pub/Sub to deliver it again")
                        message.received.ack_with_response = refused
                        await acking()

                    message._ack = lapse_then_ack  # type: ignore[method-assign]
                yield message

    source = LapsingSource(topic.config())
    async with Sidecar(source, engine) as sc:  # a failed ack counts toward giving up only after 5
        await eventually(lambda: sc.settlements("ack") == 2 and sc.settlements("failed") == 1, 60, "two acks, one refused")
        await eventually(lambda: sc.verdicts("duplicate") == 1, 30, "the copy answered duplicate")
    assert lapsed, "the lease was made to lapse"
    assert ledger(engine) == {"eo-1": 1, "eo-2": 1}
    assert deliveries.count("eo-1") == 2 and deliveries.count("eo-2") == 1
    assert await topic.pending() == 0, "the copy's ack took: nothing left"
    assert await topic.dead_letters() == []


async def test_the_dead_letter_carries_the_reason_coordinates_and_the_publishers_attributes(engine, topic):
    attributes = {f"attr-{i}": f"v{i}" for i in range(3)}
    future = topic.publisher.publish(topic.topic, dumps(order("bad-1", quantity="0")), **attributes)
    message_id = await asyncio.to_thread(future.result, 30)
    async with Sidecar(PubSubSource(topic.config()), engine) as sc:
        await eventually(lambda: sc.source.settled("dead_letter"), what="the dead letter")

    def take() -> list[Any]:
        got: list[Any] = []
        while not got:
            got = topic._pull_all(topic.dlq_subscription)
        topic.subscriber.acknowledge(request={"subscription": topic.dlq_subscription, "ack_ids": [m.ack_id for m in got]})
        return got

    [letter] = await asyncio.wait_for(asyncio.to_thread(take), 30)
    got = dict(letter.message.attributes)
    assert got[REASON_ATTRIBUTE] == "invalid"
    assert [e["field"] for e in json.loads(got[DETAIL_ATTRIBUTE])["errors"]] == ["quantity"]
    assert got[SUBSCRIPTION_ATTRIBUTE] == topic.subscription.rsplit("/", 1)[-1]
    assert got[MESSAGE_ID_ATTRIBUTE] == message_id
    assert {k: got[k] for k in attributes} == attributes
    assert json.loads(letter.message.data)["client_order_id"] == "bad-1"
    assert await topic.pending() == 0 and ledger(engine) == {}
