"""The sidecar contract against the SQS source with an in-memory SQS (tests/sidecars/sqs/_memory.py:
only the boto3 client is swapped), the stream scenario included: 10,000 orders by default
(WOJAK_TEST_SQS_STREAM_ORDERS), in process, ``kill -9`` = the client gone mid-stream (what it
held comes back when its leases lapse)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.sidecars.sqs._broker import body_of, message_body
from tests.sidecars.sqs._memory import MemorySqs, MemorySqsClient
from wojak.sidecars.sqs import SqsSidecarSettings, SqsSource
from wojak.sidecars.sqs.source import DETAIL_ATTRIBUTE, REASON_ATTRIBUTE
from wojak.sidecars.testing.contract import EngineUnderTest, InProcessSidecar, SidecarContract
from wojak.sidecars.testing.memory import DeadLetter


class TestSqsInMemory(SidecarContract):
    source_name = "sqs"
    stream_orders = 10_000
    stream_in_flight = 128  # the stream's concurrency (64) and a batch held ahead, twice for safety

    @pytest.fixture(autouse=True)
    def broker(self) -> MemorySqs:
        self.memory = MemorySqs()
        name = f"memory-{uuid.uuid4().hex[:12]}"
        self.url = self.memory.create_queue(name)
        self.dlq_url = self.memory.create_queue(f"{name}-dlq")
        self.name = name
        self.client = MemorySqsClient(self.memory)
        self.ids: dict[str, str] = {}
        return self.memory

    def config(self, **kw: Any) -> SqsSidecarSettings:
        settings: dict[str, Any] = dict(queue_url=self.url, dead_letter_queue_url=self.dlq_url, region="us-east-1",
                                        wait_time=1, visibility=4, max_held=26)
        settings.update(kw)
        config = SqsSidecarSettings(**settings)
        config.check_queues()
        return config

    def make_source(self, **kw: Any) -> SqsSource:
        client = MemorySqsClient(self.memory)
        source = SqsSource(self.config(**kw), client_factory=lambda: client)
        source.crash = client.crash  # type: ignore[attr-defined]
        return source

    async def publish(self, body: bytes, *, message_id: str | None = None) -> None:
        text, attributes = message_body(body)
        sqs_id = self.client.send_message(self.url, text, attributes)["MessageId"]
        if message_id:
            self.ids.setdefault(message_id, sqs_id)

    async def publish_many(self, bodies: list[tuple[bytes, str | None]]) -> None:
        for body, message_id in bodies:
            await self.publish(body, message_id=message_id)

    def coordinates_for(self, message_id: str, body: bytes) -> tuple[Any, ...]:
        return (self.name, self.ids[message_id])

    async def dead_letters(self) -> list[DeadLetter]:
        letters = []
        while (got := self.client.receive_message(self.dlq_url, 10, 0, 30, MessageAttributeNames=["All"]).get("Messages")):
            for m in got:
                attributes = m.get("MessageAttributes") or {}
                detail = attributes.get(DETAIL_ATTRIBUTE, {}).get("StringValue")
                letters.append(DeadLetter(attributes.get(REASON_ATTRIBUTE, {}).get("StringValue"),
                                          json.loads(detail) if detail else None, body_of(m)))
            self.client.delete_message_batch(self.dlq_url, [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                            for i, m in enumerate(got)])
        return letters

    async def dead_letter_count(self) -> int:
        return sum(self.memory.counts(self.dlq_url))

    async def pending_count(self) -> int:
        return sum(self.memory.counts(self.url))

    pending_counts_unsettled = True  # visible, in flight and requeued (a visibility timeout) alike

    async def launch(self, engine: EngineUnderTest, env: dict[str, str], name: str) -> InProcessSidecar:
        source = self.make_source(max_held=74, receivers=3)
        return InProcessSidecar(source, {**env, "WOJAK_SIDECAR_CONCURRENCY": "64"}, source.crash)  # type: ignore[attr-defined]
