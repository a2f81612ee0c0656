"""An SQS queue of one test's own (and its dead-letter queue) on moto: a publisher and an
inspector, with boto3 (synchronous: every call runs on a thread)."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from typing import Any

from wojak.sidecars.sqs import SqsSidecarSettings
from wojak.sidecars.sqs.source import DETAIL_ATTRIBUTE, ENCODING_ATTRIBUTE, REASON_ATTRIBUTE
from wojak.sidecars.testing.memory import DeadLetter


def message_body(body: bytes) -> tuple[str, dict[str, Any]]:
    """What a producer sends: the UTF-8 text, or base64 with ``wojak-body-encoding`` for other bytes."""
    try:
        return body.decode("utf-8"), {}
    except UnicodeDecodeError:
        return base64.b64encode(body).decode(), {ENCODING_ATTRIBUTE: {"DataType": "String", "StringValue": "base64"}}


def body_of(message: dict[str, Any]) -> bytes:
    encoding = (message.get("MessageAttributes") or {}).get(ENCODING_ATTRIBUTE, {}).get("StringValue")
    text = message.get("Body") or ""
    return base64.b64decode(text) if encoding == "base64" else text.encode()


class SqsQueues:
    """One test's queue and DLQ (a redrive policy as the safety net), on the AWS emulator."""

    def __init__(self, aws: Any, *, fifo: bool = False, max_receive_count: int = 1000) -> None:
        self.aws = aws
        self.client = aws.client("sqs")
        suffix = ".fifo" if fifo else ""
        prefix = f"wojak-test-{uuid.uuid4().hex[:12]}"
        self.fifo = fifo
        fifo_attrs = {"FifoQueue": "true"} if fifo else {}
        self.dlq_url = self.client.create_queue(QueueName=f"{prefix}-dlq{suffix}", Attributes=fifo_attrs)["QueueUrl"]
        dlq_arn = self.client.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)})
        self.url = self.client.create_queue(QueueName=f"{prefix}{suffix}",
                                            Attributes={**fifo_attrs, "RedrivePolicy": redrive})["QueueUrl"]
        self.name = self.url.rsplit("/", 1)[-1]
        self.ids: dict[str, str] = {}  # the publisher's message_id -> the SqsMessageId SQS gave it (first publication)

    def config(self, **kw: Any) -> SqsSidecarSettings:
        settings: dict[str, Any] = dict(queue_url=self.url, dead_letter_queue_url=self.dlq_url, endpoint=self.aws.endpoint_url,
                                        region=self.aws.region, wait_time=1, visibility=10, max_held=26)
        settings.update(kw)
        config = SqsSidecarSettings(**settings)
        config.check_queues()
        return config

    def env(self) -> dict[str, str]:
        return {"WOJAK_SIDECAR_SQS_QUEUE_URL": self.url, "WOJAK_SIDECAR_SQS_DEAD_LETTER_QUEUE_URL": self.dlq_url,
                "WOJAK_SIDECAR_SQS_ENDPOINT": self.aws.endpoint_url, "WOJAK_SIDECAR_SQS_REGION": self.aws.region,
                "WOJAK_SIDECAR_SQS_WAIT_TIME": "1", "WOJAK_SIDECAR_SQS_VISIBILITY": "10",
                "AWS_ACCESS_KEY_ID": self.aws.access_key_id, "AWS_SECRET_ACCESS_KEY": self.aws.secret_access_key}

    def close(self) -> None:
        for url in (self.url, self.dlq_url):
            try:
                self.client.delete_queue(QueueUrl=url)
            except Exception:
                pass

    def _entry(self, body: bytes, message_id: str | None, group: str | None) -> dict[str, Any]:
        text, attributes = message_body(body)
        entry: dict[str, Any] = {"MessageBody": text}
        if attributes:
            entry["MessageAttributes"] = attributes
        if self.fifo:
            entry["MessageGroupId"] = group or "g"
            entry["MessageDeduplicationId"] = uuid.uuid4().hex
        return entry

    async def publish(self, body: bytes, message_id: str | None = None, group: str | None = None) -> str:
        entry = self._entry(body, message_id, group)
        sqs_id = (await asyncio.to_thread(self.client.send_message, QueueUrl=self.url, **entry))["MessageId"]
        if message_id:
            self.ids.setdefault(message_id, sqs_id)
        return sqs_id

    async def publish_many(self, bodies: list[tuple[bytes, str | None]], group: str | None = None) -> None:
        chunks = [bodies[i : i + 10] for i in range(0, len(bodies), 10)]
        lanes = asyncio.Semaphore(4)

        async def send(chunk: list[tuple[bytes, str | None]]) -> None:
            entries = [{**self._entry(b, m, group), "Id": str(i)} for i, (b, m) in enumerate(chunk)]
            async with lanes:
                response = await asyncio.to_thread(self.client.send_message_batch, QueueUrl=self.url, Entries=entries)
            assert not response.get("Failed"), response["Failed"]
            by_id = {s["Id"]: s["MessageId"] for s in response["Successful"]}
            for i, (_, mid) in enumerate(chunk):
                if mid:
                    self.ids.setdefault(mid, by_id[str(i)])

        if self.fifo:  # FIFO: the order of the batches is the order of the group
            for chunk in chunks:
                await send(chunk)
        else:
            await asyncio.gather(*(send(c) for c in chunks))

    async def counts(self, url: str | None = None) -> dict[str, int]:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"]
        attributes = (await asyncio.to_thread(self.client.get_queue_attributes, QueueUrl=url or self.url,
                                              AttributeNames=names))["Attributes"]
        return {n: int(attributes.get(n, 0)) for n in names}

    async def pending(self) -> int:
        return sum((await self.counts()).values())

    async def dead_letter_count(self) -> int:
        """Messages in the dead-letter queue, received or not (its attributes: nothing received)."""
        return sum((await self.counts(self.dlq_url)).values())

    async def take(self, url: str) -> list[dict[str, Any]]:
        """Every message now in ``url`` (received and deleted)."""
        out: list[dict[str, Any]] = []
        while True:
            response = await asyncio.to_thread(self.client.receive_message, QueueUrl=url, MaxNumberOfMessages=10,
                                               WaitTimeSeconds=0, MessageAttributeNames=["All"],
                                               MessageSystemAttributeNames=["All"])
            messages = response.get("Messages") or []
            if not messages:
                return out
            out.extend(messages)
            await asyncio.to_thread(self.client.delete_message_batch, QueueUrl=url,
                                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])

    async def dead_letters(self) -> list[DeadLetter]:
        letters = []
        for m in await self.take(self.dlq_url):
            attributes = m.get("MessageAttributes") or {}
            reason = attributes.get(REASON_ATTRIBUTE, {}).get("StringValue")
            detail = attributes.get(DETAIL_ATTRIBUTE, {}).get("StringValue")
            letters.append(DeadLetter(reason, json.loads(detail) if detail else None, body_of(m)))
        return letters
