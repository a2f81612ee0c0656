"""The sidecar contract against Kinesis and DynamoDB on the AWS emulator (moto_server:
scripts/services up aws) and a real engine, the `wojak sidecar kinesis` process for the SIGTERM
test and the stream scenario (10,000 orders by default: WOJAK_TEST_KINESIS_STREAM_ORDERS)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.sidecars.kinesis._broker import KinesisStream
from wojak.sidecars.kinesis import KinesisSource
from wojak.sidecars.testing.contract import ACCOUNTS, SidecarContract
from wojak.sidecars.testing.memory import DeadLetter

pytestmark = pytest.mark.aws


class TestKinesis(SidecarContract):
    source_name = "kinesis"
    cli_name = "kinesis"
    stream_orders = 10_000
    ordered_ticks = True  # one key (a tick's symbol) in one partition/shard, in order
    # a killed sidecar dead-letters again what it dead-lettered past its last checkpoint: at most
    # what it had read and not checkpointed (the prefetch, 1,000)
    stream_in_flight = 1000

    @pytest.fixture(autouse=True)
    def broker(self, aws_service):
        self.kinesis = KinesisStream(aws_service)
        yield self.kinesis
        self.kinesis.close()

    def make_source(self) -> KinesisSource:
        return KinesisSource(self.kinesis.settings())

    async def publish(self, body: bytes, *, message_id: str | None = None) -> None:
        await self.kinesis.publish(body, message_id)

    async def publish_many(self, bodies: list[tuple[bytes, str | None]]) -> None:
        await self.kinesis.publish_many(bodies)

    def coordinates_for(self, message_id: str, body: bytes) -> tuple[Any, ...]:
        return self.kinesis.ids[message_id]

    async def dead_letters(self) -> list[DeadLetter]:
        return await self.kinesis.dead_letters()

    async def dead_letter_count(self) -> int:
        return await self.kinesis.dead_letter_count()

    async def pending_count(self) -> int:
        return await self.kinesis.pending()

    pending_counts_unsettled = True  # records past the checkpoint: one held or in flight is behind it

    def sidecar_env(self) -> dict[str, str]:
        return {**self.kinesis.env(), "WOJAK_SIDECAR_ACCOUNTS": ACCOUNTS}
