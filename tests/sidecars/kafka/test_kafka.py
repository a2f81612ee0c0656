"""The sidecar contract against a real Kafka (scripts/services up kafka) and a real engine,
the stream scenario included (10,000 orders by default: WOJAK_TEST_KAFKA_STREAM_ORDERS)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.sidecars.kafka._broker import KafkaBroker
from wojak.sidecars.kafka import KafkaSource
from wojak.sidecars.testing.contract import ACCOUNTS, SidecarContract
from wojak.sidecars.testing.memory import DeadLetter

pytestmark = pytest.mark.kafka


class TestKafka(SidecarContract):
    source_name = "kafka"
    cli_name = "kafka"
    stream_orders = 10_000
    ordered_ticks = True  # one key (a tick's symbol) in one partition/shard, in order
    # a killed sidecar dead-letters again what it dead-lettered past its last commit: at most what
    # it had fetched and not committed (the prefetch, 256, plus one commit interval's worth)
    stream_in_flight = 512

    @pytest.fixture(autouse=True)
    async def broker(self, kafka_service):
        self.kafka = await KafkaBroker(kafka_service.bootstrap).open()
        self.coordinates: dict[str, tuple[str, int, int]] = {}
        yield self.kafka
        await self.kafka.close()

    def make_source(self) -> KafkaSource:
        return KafkaSource(self.kafka.config)

    async def publish(self, body: bytes, *, message_id: str | None = None) -> None:
        headers = [("message_id", message_id.encode())] if message_id else None
        meta = await self.kafka.publish(body, headers=headers)
        if message_id:
            self.coordinates.setdefault(message_id, (meta.topic, meta.partition, meta.offset))

    async def publish_many(self, bodies: list[tuple[bytes, str | None]]) -> None:
        where = await self.kafka.publish_many([b for b, _ in bodies])
        for (_, mid), coordinates in zip(bodies, where):
            if mid:
                self.coordinates.setdefault(mid, coordinates)

    def coordinates_for(self, message_id: str, body: bytes) -> tuple[Any, ...]:
        return self.coordinates[message_id]

    async def dead_letters(self) -> list[DeadLetter]:
        return [DeadLetter(dl.reason, dl.detail, dl.body) for dl in await self.kafka.dead_letter_records()]

    async def dead_letter_count(self) -> int:
        return await self.kafka.dead_letter_count()

    async def pending_count(self) -> int:
        return await self.kafka.lag()

    pending_counts_unsettled = True  # the lag: a record held or in flight is behind the committed offset

    def sidecar_env(self) -> dict[str, str]:
        c = self.kafka.config
        return {
            "WOJAK_SIDECAR_KAFKA_BOOTSTRAP_SERVERS": c.bootstrap_servers,
            "WOJAK_SIDECAR_KAFKA_TOPIC": c.topic,
            "WOJAK_SIDECAR_KAFKA_GROUP_ID": c.group_id,
            "WOJAK_SIDECAR_KAFKA_DEAD_LETTER_TOPIC": c.dead_letter_topic,
            "WOJAK_SIDECAR_KAFKA_RESULTS_TOPIC": c.results_topic or "",
            "WOJAK_SIDECAR_ACCOUNTS": ACCOUNTS,
        }
