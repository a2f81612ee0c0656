"""What the contract cannot see about SQS (on moto): a lease never lapses while the engine is
slower than the visibility timeout (the heartbeat), a FIFO group is handed out one message at a
time and in order, the dead letter carries its reason and the publisher's attributes, and a
body in base64 is read as its bytes."""

from __future__ import annotations

import asyncio
import base64
import collections

import pytest

from tests.sidecars.sqs._broker import SqsQueues
from wojak.engine.protocol import MessageType
from wojak.sidecars.sqs import SqsSource
from wojak.sidecars.sqs.source import ENCODING_ATTRIBUTE, MESSAGE_ID_ATTRIBUTE, QUEUE_ATTRIBUTE, REASON_ATTRIBUTE
from wojak.sidecars.testing.contract import TICK, Sidecar, dumps, eventually, ledger, order

pytestmark = pytest.mark.aws


@pytest.fixture
def queues(aws_service):
    q = SqsQueues(aws_service)
    yield q
    q.close()


@pytest.fixture
def fifo(aws_service):
    q = SqsQueues(aws_service, fifo=True)
    yield q
    q.close()


def filling_engine(engine_factory, **env):
    engine = engine_factory(WOJAK_SANDBOX_FILL_PROBABILITY="1", **env)
    assert engine.request(MessageType.TICK, {"tick": TICK})["verdict"] == "ok"
    return engine


@pytest.fixture
def engine(engine_factory):
    return filling_engine(engine_factory)


@pytest.fixture
def slow_engine(engine_factory):
    return filling_engine(engine_factory, WOJAK_SANDBOX_LATENCY_MS="5000")


async def test_a_slow_venue_never_lets_a_lease_lapse(slow_engine, queues):
    """Venue latency 5 s, visibility 2 s: every message is extended (twice or more) while the
    engine works on it; nobody else can receive it meanwhile, and the engine never answers a
    duplicate that a lapsed lease would cause."""
    engine = slow_engine
    n = 8
    await queues.publish_many([(dumps(order(f"slow-{i}", account=f"acct-{i}")), None) for i in range(n)])
    source = SqsSource(queues.config(visibility=2))
    seen_by_another = 0
    async with Sidecar(source, engine, engine_deadline=30, concurrency=n) as sc:
        await eventually(lambda: len(sc.source.seen) == n, what="every message received")
        while len(sc.source.settled("ack")) < n:
            # another consumer on the same queue: it would get any message whose lease lapsed
            got = await asyncio.to_thread(queues.client.receive_message, QueueUrl=queues.url, MaxNumberOfMessages=10,
                                          WaitTimeSeconds=0, VisibilityTimeout=0)
            seen_by_another += len(got.get("Messages") or [])
            await asyncio.sleep(0.25)
    print(f"\n{n} orders, venue 5 s, visibility 2 s: {source.extensions} lease extensions, {source.leases_lost} lost, "
          f"{seen_by_another} seen by another consumer, {sc.verdicts('duplicate'):.0f} duplicates")
    assert ledger(engine) == {f"slow-{i}": 1 for i in range(n)}
    assert sc.verdicts("filled") == n and sc.verdicts("duplicate") == 0, "no redelivery reached the engine"
    assert seen_by_another == 0 and source.leases_lost == 0 and source.redeliveries_held == 0
    assert source.extensions >= 2 * n
    assert await queues.pending() == 0
    assert await queues.dead_letters() == []


class _Tracking:
    """The engine client, but it records how many orders of each account are in flight at once and their order."""

    def __init__(self, client, delay: float) -> None:
        self.client = client
        self.delay = delay
        self.now: collections.Counter[str] = collections.Counter()
        self.most: collections.Counter[str] = collections.Counter()
        self.sequence: dict[str, list[str]] = collections.defaultdict(list)
        self.fail_once: set[str] = set()

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


async def test_a_fifo_group_is_handed_out_one_at_a_time_in_order_even_across_a_requeue(engine, fifo):
    per_group = 6
    for g in ("g1", "g2"):
        account = "acct-1" if g == "g1" else "acct-2"
        await fifo.publish_many([(dumps(order(f"{g}-{i}", account=account)), None) for i in range(per_group)], group=g)
    sc = Sidecar(SqsSource(fifo.config()), engine, concurrency=8)
    tracking = _Tracking(sc.client, 0.1)
    tracking.fail_once.add("g1-2")  # the third of g1 is requeued once: g1-3.. must wait for it
    sc.runner.client = tracking  # type: ignore[assignment]
    async with sc:
        await eventually(lambda: len(ledger(engine)) == 2 * per_group, 60, "every order")
    assert tracking.most == {"acct-1": 1, "acct-2": 1}, "never two messages of one group in flight"
    g1 = [c for c in tracking.sequence["acct-1"]]
    assert g1 == [f"g1-{i}" for i in range(3)] + [f"g1-{i}" for i in range(2, per_group)], g1
    assert tracking.sequence["acct-2"] == [f"g2-{i}" for i in range(per_group)]
    assert set(ledger(engine).values()) == {1}
    assert await fifo.pending() == 0


async def test_the_dead_letter_carries_the_reason_and_the_publishers_attributes(engine, queues):
    attributes = {f"attr-{i}": {"DataType": "String", "StringValue": f"v{i}"} for i in range(3)}
    sqs_id = (await asyncio.to_thread(queues.client.send_message, QueueUrl=queues.url,
                                      MessageBody=dumps(order("bad-1", quantity="0")).decode(),
                                      MessageAttributes=attributes))["MessageId"]
    async with Sidecar(SqsSource(queues.config()), engine) as sc:
        await eventually(lambda: sc.source.settled("dead_letter"), what="the dead letter")
    [letter] = await queues.take(queues.dlq_url)
    got = letter["MessageAttributes"]
    assert got[REASON_ATTRIBUTE]["StringValue"] == "invalid"
    assert got[QUEUE_ATTRIBUTE]["StringValue"] == queues.name and got[MESSAGE_ID_ATTRIBUTE]["StringValue"] == sqs_id
    assert {k: got[k] for k in attributes} == attributes
    assert await queues.pending() == 0 and ledger(engine) == {}


async def test_a_base64_body_is_read_as_its_bytes_and_a_bad_one_is_dead_lettered(engine, queues):
    b64 = {ENCODING_ATTRIBUTE: {"DataType": "String", "StringValue": "base64"}}
    await asyncio.to_thread(queues.client.send_message, QueueUrl=queues.url,
                            MessageBody=base64.b64encode(dumps(order("b64-1"))).decode(), MessageAttributes=b64)
    await asyncio.to_thread(queues.client.send_message, QueueUrl=queues.url, MessageBody="not base64 !", MessageAttributes=b64)
    async with Sidecar(SqsSource(queues.config()), engine) as sc:
        await eventually(lambda: len(sc.source.settled()) == 2, what="both settled")
    assert ledger(engine) == {"b64-1": 1}
    [letter] = await queues.take(queues.dlq_url)  # kept as it came: the text and its encoding attribute
    assert letter["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"] == "invalid_body_encoding"
    assert letter["Body"] == "not base64 !" and letter["MessageAttributes"][ENCODING_ATTRIBUTE] == b64[ENCODING_ATTRIBUTE]
    assert await queues.pending() == 0
