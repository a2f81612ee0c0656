"""A test's own Kafka topics (orders, dead letters, results) and group on a real broker: create,
produce, read the dead letters and results, the group's lag (what is not committed yet)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from wojak.sidecars.kafka import KafkaSidecarSettings
from wojak.sidecars.kafka.source import DETAIL_HEADER, REASON_HEADER


class DeadLetterRecord:
    def __init__(self, record: Any) -> None:
        self.record = record
        self.headers = {k: v for k, v in (record.headers or ())}
        self.reason = self.headers.get(REASON_HEADER, b"").decode()
        detail = self.headers.get(DETAIL_HEADER)
        self.detail = json.loads(detail) if detail else None
        self.body = record.value if record.value is not None else b""


class KafkaBroker:
    """Publisher/inspector on one test's topics: ``<prefix>.orders`` (``partitions``), ``.dlt``, ``.results``."""

    def __init__(self, bootstrap: str, prefix: str | None = None, partitions: int = 4,
                 topic_configs: dict[str, dict[str, str]] | None = None) -> None:  # fmt: skip
        prefix = prefix or f"wojak-test.{uuid.uuid4().hex[:12]}"
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.topic_configs = topic_configs or {}
        self.config = KafkaSidecarSettings(
            bootstrap_servers=bootstrap, topic=f"{prefix}.orders", group_id=f"{prefix}.group",
            dead_letter_topic=f"{prefix}.dlt", results_topic=f"{prefix}.results",
        )  # fmt: skip
        self.producer: AIOKafkaProducer | None = None
        self._positions: dict[str, dict[int, int]] = {}

    @property
    def topics(self) -> list[str]:
        c = self.config
        return [c.topic, c.dead_letter_topic, c.results_topic or ""]

    async def open(self) -> "KafkaBroker":
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            c = self.config
            await admin.create_topics([
                NewTopic(c.topic, self.partitions, 1, topic_configs=self.topic_configs.get("orders")),
                NewTopic(c.dead_letter_topic, 1, 1, topic_configs=self.topic_configs.get("dlt")),
                NewTopic(c.results_topic or "", 1, 1),
            ])  # fmt: skip
        finally:
            await admin.close()
        await self.open_producer()
        return self

    async def open_producer(self) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True,
                                         linger_ms=5)  # fmt: skip
        await self.producer.start()

    async def close_producer(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    async def close(self) -> None:
        await self.close_producer()
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.delete_topics(self.topics)
        except Exception:
            pass
        finally:
            await admin.close()

    @staticmethod
    def account_key(body: bytes) -> bytes | None:
        """The producer contract: key = the order's account (a tick's: its symbol)."""
        try:
            data = json.loads(body)
        except ValueError:
            return None
        for field in ("account", "symbol"):
            value = data.get(field) if isinstance(data, dict) else None
            if isinstance(value, str):
                return value.encode()
        return None

    async def publish(self, body: bytes, *, key: bytes | None = None, headers: list[tuple[str, bytes]] | None = None,
                      partition: int | None = None) -> Any:  # fmt: skip
        assert self.producer is not None
        return await self.producer.send_and_wait(self.config.topic, value=body, key=key or self.account_key(body),
                                                 headers=headers, partition=partition)  # fmt: skip

    async def publish_many(self, bodies: list[bytes], chunk: int = 1000, keys: list[bytes | None] | None = None,
                           partition_of: Callable[[bytes], int] | None = None) -> list[tuple[str, int, int]]:  # fmt: skip
        """Produce ``bodies`` in order (key: the account; partition: the key's hash, or
        ``partition_of(body)``); their coordinates (topic, partition, offset)."""
        assert self.producer is not None
        out: list[tuple[str, int, int]] = []
        for start in range(0, len(bodies), chunk):
            futures = [await self.producer.send(self.config.topic, value=b,
                                                key=(keys[start + i] if keys else self.account_key(b)),
                                                partition=partition_of(b) if partition_of else None)
                       for i, b in enumerate(bodies[start : start + chunk])]  # fmt: skip
            out.extend((m.topic, m.partition, m.offset) for m in await asyncio.gather(*futures))
        return out

    async def read_new(self, topic: str) -> list[Any]:
        """Records of ``topic`` after what an earlier call returned (no group: assign + seek)."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()
        try:
            count = self.partitions if topic == self.config.topic else 1
            tps = [TopicPartition(topic, p) for p in range(count)]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            seen = self._positions.setdefault(topic, {})
            out: list[Any] = []
            for tp in tps:
                start = seen.get(tp.partition, 0)
                if ends[tp] <= start:
                    continue
                consumer.seek(tp, start)
                while (await consumer.position(tp)) < ends[tp]:
                    batch = await consumer.getmany(tp, timeout_ms=1000)
                    out.extend(batch.get(tp, []))
                seen[tp.partition] = ends[tp]
            return out
        finally:
            await consumer.stop()

    async def dead_letter_count(self) -> int:
        """Dead letters after what ``dead_letter_records`` returned (the topic's end offset: read nothing)."""
        topic = self.config.dead_letter_topic
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            ends = await consumer.end_offsets([TopicPartition(topic, 0)])
        finally:
            await consumer.stop()
        return sum(ends.values()) - self._positions.get(topic, {}).get(0, 0)

    async def dead_letter_records(self) -> list[DeadLetterRecord]:
        return [DeadLetterRecord(r) for r in await self.read_new(self.config.dead_letter_topic)]

    async def results(self) -> list[Any]:
        return await self.read_new(self.config.results_topic or "")

    async def committed(self) -> dict[int, int]:
        """The group's committed offset per partition (-1: none)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(self.config.group_id)
        finally:
            await admin.close()
        got = {tp.partition: om.offset for tp, om in offsets.items() if tp.topic == self.config.topic}
        return {p: got.get(p, -1) for p in range(self.partitions)}

    async def ends(self) -> dict[int, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(self.config.topic, p) for p in range(self.partitions)]
            return {tp.partition: o for tp, o in (await consumer.end_offsets(tps)).items()}
        finally:
            await consumer.stop()

    async def lag(self) -> int:
        """Records not yet committed by the group (the "queue" of the contract)."""
        committed, ends = await self.committed(), await self.ends()
        return sum(ends[p] - max(committed[p], 0) for p in ends)
