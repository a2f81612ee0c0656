"""The sidecar contract against SQS on the AWS emulator (moto_server: scripts/services up aws)
and a real engine, with the `wojak sidecar sqs` process for the SIGTERM test and the stream
scenario (1,000 orders by default: WOJAK_TEST_SQS_STREAM_ORDERS; test_sqs_in_memory.py runs 10,000)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.sidecars.sqs._broker import SqsQueues
from wojak.sidecars.sqs import SqsSource
from wojak.sidecars.testing.contract import ACCOUNTS, SidecarContract
from wojak.sidecars.testing.memory import DeadLetter

pytestmark = pytest.mark.aws


class TestSqs(SidecarContract):
    source_name = "sqs"
    cli_name = "sqs"
    # moto: 1,000 by default (its cost per message grows with the queue's depth; at 10,000 deep the
    # stream would take hours); the in-memory SQS runs 10,000 (WOJAK_TEST_SQS_STREAM_ORDERS sets both)
    stream_orders = 1_000
    # moto spends time in proportion to the queue's depth on every message it hands out (~16 msg/s at
    # 1,000 deep on this machine): the SIGTERM test drains 300 (the in-memory SQS runs the 10,000 stream)
    sigterm_orders = 300
    stream_in_flight = 128  # a killed sidecar held at most its concurrency (64) and a batch; twice for safety

    @pytest.fixture(autouse=True)
    def broker(self, aws_service):
        self.sqs = SqsQueues(aws_service)
        yield self.sqs
        self.sqs.close()

    def make_source(self) -> SqsSource:
        return SqsSource(self.sqs.config())

    async def publish(self, body: bytes, *, message_id: str | None = None) -> None:
        await self.sqs.publish(body, message_id)

    async def publish_many(self, bodies: list[tuple[bytes, str | None]]) -> None:
        await self.sqs.publish_many(bodies)

    def coordinates_for(self, message_id: str, body: bytes) -> tuple[Any, ...]:
        return (self.sqs.name, self.sqs.ids[message_id])

    async def dead_letters(self) -> list[DeadLetter]:
        return await self.sqs.dead_letters()

    async def dead_letter_count(self) -> int:
        return await self.sqs.dead_letter_count()

    async def pending_count(self) -> int:
        return await self.sqs.pending()

    pending_counts_unsettled = True  # visible, in flight and requeued (a visibility timeout) alike

    def stream_env(self) -> dict[str, str]:
        return {"WOJAK_SIDECAR_CONCURRENCY": "64", "WOJAK_SIDECAR_SQS_RECEIVERS": "3"}

    def sidecar_env(self) -> dict[str, str]:
        return {**self.sqs.env(), "WOJAK_SIDECAR_ACCOUNTS": ACCOUNTS}
