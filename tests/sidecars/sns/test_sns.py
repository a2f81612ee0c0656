"""The sidecar contract against SNS through SQS on the AWS emulator (moto_server): a topic, a
queue subscribed to it (the SNS envelope), the `wojak sidecar sns` process for the SIGTERM test
and the stream (1,000 orders by default, as SQS on moto: WOJAK_TEST_SNS_STREAM_ORDERS); raw
message delivery and a notification from another topic."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from typing import Any

import pytest

from tests.sidecars.sqs._broker import SqsQueues, message_body
from wojak.engine.protocol import MessageType, derive_client_order_id
from wojak.sidecars.sns import SnsSidecarSettings, SnsSource
from wojak.sidecars.sqs.source import DETAIL_ATTRIBUTE, ENCODING_ATTRIBUTE, REASON_ATTRIBUTE
from wojak.sidecars.testing.contract import ACCOUNTS, TICK, Sidecar, SidecarContract, dumps, eventually, ledger, order
from wojak.sidecars.testing.memory import DeadLetter

pytestmark = pytest.mark.aws


class SnsTopic:
    """A topic and an SQS queue (with its DLQ) subscribed to it."""

    def __init__(self, aws: Any, *, raw: bool = False) -> None:
        self.aws = aws
        self.queues = SqsQueues(aws)
        self.sns = aws.client("sns")
        self.topic_arn = self.sns.create_topic(Name=f"wojak-test-{uuid.uuid4().hex[:12]}")["TopicArn"]
        queue_arn = self.queues.client.get_queue_attributes(QueueUrl=self.queues.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=queue_arn,
                           Attributes={"RawMessageDelivery": "true" if raw else "false"})
        self.raw = raw
        self.ids: dict[str, str] = {}

    def config(self, **kw: Any) -> SnsSidecarSettings:
        q = self.queues
        settings: dict[str, Any] = dict(queue_url=q.url, dead_letter_queue_url=q.dlq_url, endpoint=self.aws.endpoint_url,
                                        region=self.aws.region, wait_time=1, visibility=10, max_held=26,
                                        topic_arn=self.topic_arn, raw_delivery=self.raw)
        settings.update(kw)
        config = SnsSidecarSettings(**settings)
        config.check_queues()
        return config

    def env(self) -> dict[str, str]:
        return {k.replace("_SQS_", "_SNS_"): v for k, v in self.queues.env().items()} | {
            "WOJAK_SIDECAR_SNS_TOPIC_ARN": self.topic_arn, "WOJAK_SIDECAR_SNS_RAW_DELIVERY": str(self.raw).lower()}

    def close(self) -> None:
        try:
            self.sns.delete_topic(TopicArn=self.topic_arn)
        except Exception:
            pass
        self.queues.close()

    @staticmethod
    def _attributes(body: bytes) -> tuple[str, dict[str, Any]]:
        text, attributes = message_body(body)
        return text, {k: {"DataType": v["DataType"], "StringValue": v["StringValue"]} for k, v in attributes.items()}

    async def publish(self, body: bytes, message_id: str | None = None) -> None:
        text, attributes = self._attributes(body)
        sns_id = (await asyncio.to_thread(self.sns.publish, TopicArn=self.topic_arn, Message=text,
                                          MessageAttributes=attributes))["MessageId"]
        if message_id:
            self.ids.setdefault(message_id, sns_id)

    async def publish_many(self, bodies: list[tuple[bytes, str | None]]) -> None:
        lanes = asyncio.Semaphore(4)

        async def send(chunk: list[tuple[bytes, str | None]]) -> None:
            entries = []
            for i, (body, _) in enumerate(chunk):
                text, attributes = self._attributes(body)
                entries.append({"Id": str(i), "Message": text, **({"MessageAttributes": attributes} if attributes else {})})
            async with lanes:
                response = await asyncio.to_thread(self.sns.publish_batch, TopicArn=self.topic_arn, PublishBatchRequestEntries=entries)
            assert not response.get("Failed"), response["Failed"]
            by_id = {s["Id"]: s["MessageId"] for s in response["Successful"]}
            for i, (_, mid) in enumerate(chunk):
                if mid:
                    self.ids.setdefault(mid, by_id[str(i)])

        await asyncio.gather(*(send(bodies[i : i + 10]) for i in range(0, len(bodies), 10)))

    async def dead_letters(self) -> list[DeadLetter]:
        """The DLQ's letters, each body unwrapped from its envelope (the dead letter keeps the envelope)."""
        letters = []
        for m in await self.queues.take(self.queues.dlq_url):
            attributes = m.get("MessageAttributes") or {}
            detail = attributes.get(DETAIL_ATTRIBUTE, {}).get("StringValue")
            envelope = json.loads(m["Body"])
            encoding = (envelope.get("MessageAttributes") or {}).get(ENCODING_ATTRIBUTE, {}).get("Value")
            body = base64.b64decode(envelope["Message"]) if encoding == "base64" else envelope["Message"].encode()
            letters.append(DeadLetter(attributes.get(REASON_ATTRIBUTE, {}).get("StringValue"),
                                      json.loads(detail) if detail else None, body))
        return letters


class TestSns(SidecarContract):
    source_name = "sns"
    cli_name = "sns"
    stream_orders = 1_000  # moto, as for SQS (tests/sidecars/sqs/test_sqs.py)
    sigterm_orders = 300
    stream_in_flight = 128

    @pytest.fixture(autouse=True)
    def broker(self, aws_service):
        self.topic = SnsTopic(aws_service)
        yield self.topic
        self.topic.close()

    def make_source(self) -> SnsSource:
        return SnsSource(self.topic.config())

    async def publish(self, body: bytes, *, message_id: str | None = None) -> None:
        await self.topic.publish(body, message_id)

    async def publish_many(self, bodies: list[tuple[bytes, str | None]]) -> None:
        await self.topic.publish_many(bodies)

    def coordinates_for(self, message_id: str, body: bytes) -> tuple[Any, ...]:
        return (self.topic.topic_arn, self.topic.ids[message_id])

    async def dead_letters(self) -> list[DeadLetter]:
        return await self.topic.dead_letters()

    async def dead_letter_count(self) -> int:
        return sum((await self.topic.queues.counts(self.topic.queues.dlq_url)).values())

    async def pending_count(self) -> int:
        return await self.topic.queues.pending()

    pending_counts_unsettled = True  # the queue's visible, in flight and requeued (a visibility timeout) alike

    def stream_env(self) -> dict[str, str]:
        return {"WOJAK_SIDECAR_CONCURRENCY": "64", "WOJAK_SIDECAR_SNS_RECEIVERS": "3"}

    def sidecar_env(self) -> dict[str, str]:
        return {**self.topic.env(), "WOJAK_SIDECAR_ACCOUNTS": ACCOUNTS}


@pytest.fixture
def raw_topic(aws_service):
    topic = SnsTopic(aws_service, raw=True)
    yield topic
    topic.close()


@pytest.fixture
def engine(engine_factory):
    proc = engine_factory(WOJAK_SANDBOX_FILL_PROBABILITY="1")
    assert proc.request(MessageType.TICK, {"tick": TICK})["verdict"] == "ok"
    return proc


async def test_raw_message_delivery_is_the_order_itself(engine, raw_topic):
    await raw_topic.publish(dumps(order("raw-1")))
    await raw_topic.publish(dumps(order()))  # derived from (topic, the SQS MessageId)
    async with Sidecar(SnsSource(raw_topic.config()), engine) as sc:
        await eventually(lambda: len(sc.source.settled("ack")) == 2, what="both acked")
    [derived] = [m for m in sc.source.seen if b"client_order_id" not in m.body]
    assert derived.coordinates[0] == raw_topic.topic_arn
    assert ledger(engine) == {"raw-1": 1, derive_client_order_id("sns", *derived.coordinates): 1}
    assert await raw_topic.queues.pending() == 0


async def test_a_notification_from_another_topic_or_no_envelope_is_dead_lettered(engine, aws_service):
    topic = SnsTopic(aws_service)
    try:
        other = "arn:aws:sns:us-east-1:123456789012:somebody-else"
        await topic.publish(dumps(order("elsewhere-1")))
        await asyncio.to_thread(topic.queues.client.send_message, QueueUrl=topic.queues.url, MessageBody=dumps(order("bare-1")).decode())
        async with Sidecar(SnsSource(topic.config(topic_arn=other)), engine) as sc:
            await eventually(lambda: len(sc.source.settled("dead_letter")) == 2, what="two dead letters")
        letters = await topic.queues.take(topic.queues.dlq_url)
        assert sorted(m["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"] for m in letters) == ["invalid_envelope", "unexpected_topic"]
        assert ledger(engine) == {}
    finally:
        topic.close()
