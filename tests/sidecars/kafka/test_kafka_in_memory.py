"""The sidecar contract against the Kafka source on an in-memory Kafka (tests/sidecars/kafka/_memory.py)
and a real engine: the source's own logic (lanes, in-place retries, commits of the settled prefix,
revoke/assign) without a broker, the SIGTERM drain and the stream with kill -9 included (the
sidecar runs in this event loop: InProcessSidecar)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.sidecars.kafka._broker import KafkaBroker
from tests.sidecars.kafka._memory import MemoryKafka
from wojak.sidecars.kafka import KafkaSidecarSettings, KafkaSource
from wojak.sidecars.kafka.source import DETAIL_HEADER, REASON_HEADER
from wojak.sidecars.testing.contract import EngineUnderTest, InProcessSidecar, SidecarContract
from wojak.sidecars.testing.memory import DeadLetter


class TestKafkaInMemory(SidecarContract):
    source_name = "kafka"
    stream_orders = 2_000  # WOJAK_TEST_KAFKA_STREAM_ORDERS sets the real broker's
    stream_in_flight = 512

    @pytest.fixture(autouse=True)
    def broker(self):
        prefix = f"mem.{uuid.uuid4().hex[:8]}"
        self.memory = MemoryKafka()
        self.config = KafkaSidecarSettings(topic=f"{prefix}.orders", group_id=f"{prefix}.group",
                                         dead_letter_topic=f"{prefix}.dlt", results_topic=f"{prefix}.results")  # fmt: skip
        self.memory.create_topic(self.config.topic, 4)
        self.dead_seen = 0
        self.coordinates: dict[str, tuple[str, int, int]] = {}
        return self.memory

    def make_source(self) -> KafkaSource:
        return KafkaSource(self.config, clients=self.memory.clients(self.config))

    async def publish(self, body: bytes, *, message_id: str | None = None) -> None:
        headers = [("message_id", message_id.encode())] if message_id else None
        r = self.memory.append(self.config.topic, body, KafkaBroker.account_key(body), headers)
        if message_id:
            self.coordinates.setdefault(message_id, (r.topic, r.partition, r.offset))

    def coordinates_for(self, message_id: str, body: bytes) -> tuple[Any, ...]:
        return self.coordinates[message_id]

    async def dead_letters(self) -> list[DeadLetter]:
        records = self.memory.records(self.config.dead_letter_topic)[self.dead_seen :]
        self.dead_seen += len(records)
        out = []
        for r in records:
            headers = dict(r.headers)
            detail = headers.get(DETAIL_HEADER)
            out.append(DeadLetter(headers[REASON_HEADER].decode(), json.loads(detail) if detail else None, r.value or b""))
        return out

    async def dead_letter_count(self) -> int:
        return len(self.memory.records(self.config.dead_letter_topic)) - self.dead_seen

    async def pending_count(self) -> int:
        return self.memory.lag(self.config.group_id, self.config.topic)

    pending_counts_unsettled = True  # the lag: a record held or in flight is behind the committed offset

    async def launch(self, engine: EngineUnderTest, env: dict[str, str], name: str) -> InProcessSidecar:
        source = self.make_source()

        def crash() -> None:  # kill -9: the consumer is gone from the group, nothing it does afterwards counts
            for client in (source._consumer, source._producer):
                if client is not None:
                    client.crash()

        return InProcessSidecar(source, env, crash)
