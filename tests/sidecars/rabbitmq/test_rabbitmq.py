"""The sidecar contract (wojak.sidecars.testing) against a real RabbitMQ (scripts/services up
rabbitmq) and a real engine, with the `wojak sidecar rabbitmq` process for the SIGTERM test and
the stream scenario (10,000 orders by default: WOJAK_TEST_RABBITMQ_STREAM_ORDERS)."""

from __future__ import annotations

import asyncio
import json
import uuid

import aio_pika
import pytest

from wojak.sidecars.rabbitmq import RabbitMQSidecarSettings, RabbitMQSource
from wojak.sidecars.rabbitmq.source import DETAIL_HEADER, REASON_HEADER, coordinates_for, declare_topology
from wojak.sidecars.testing.contract import ACCOUNTS, DeadLetter, SidecarContract

pytestmark = pytest.mark.rabbitmq


class RabbitMQBroker:
    """A publisher/inspector on one test's own queue, DLX and DLQ."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.config = RabbitMQSidecarSettings(
            url=url, queue=f"{prefix}.orders", prefetch=64,
            dead_letter_exchange=f"{prefix}.dlx", dead_letter_queue=f"{prefix}.dlq",
        )  # fmt: skip
        self.connection: aio_pika.abc.AbstractConnection | None = None

    async def open(self) -> "RabbitMQBroker":
        self.connection = await aio_pika.connect(self.url)
        self.channel = await self.connection.channel(publisher_confirms=True)
        self.queue, self.dlx, _ = await declare_topology(self.channel, self.config)
        self.dlq = await self.channel.get_queue(self.config.dead_letter_queue)
        return self

    async def close(self) -> None:
        if self.connection is not None:
            for name in (self.config.queue, self.config.dead_letter_queue):
                await self.channel.queue_delete(name)
            await self.channel.exchange_delete(self.config.dead_letter_exchange)
            await self.connection.close()

    async def publish(self, body: bytes, message_id: str | None = None, **props) -> None:
        message = aio_pika.Message(body, message_id=message_id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, **props)
        await self.channel.default_exchange.publish(message, routing_key=self.config.queue)

    async def pending(self) -> int:
        # re-declare (same arguments) for a fresh count: a robust channel caches passive declares
        return (await self.queue.declare()).message_count or 0

    async def dead_letter_count(self) -> int:
        """The DLQ's ready messages (a declare's count): no one else consumes it, so that is all of them."""
        return (await self.dlq.declare()).message_count or 0

    async def dead_letters(self) -> list[DeadLetter]:
        out = []
        while (message := await self.dlq.get(no_ack=True, fail=False)) is not None:
            headers = message.headers or {}
            reason = headers.get(REASON_HEADER)
            detail = headers.get(DETAIL_HEADER)
            out.append(DeadLetter(
                reason.decode() if isinstance(reason, bytes) else reason,
                json.loads(detail) if detail is not None else None,
                message.body,
            ))  # fmt: skip
        return out


class TestRabbitMQ(SidecarContract):
    source_name = "rabbitmq"
    cli_name = "rabbitmq"
    stream_orders = 10_000
    stream_in_flight = 128  # the stream's prefetch: what a killed sidecar held unacked

    @pytest.fixture(autouse=True)
    async def broker(self, rabbitmq_service):
        self.rabbit = await RabbitMQBroker(rabbitmq_service.url, f"wojak-test.{uuid.uuid4().hex[:12]}").open()
        yield self.rabbit
        await self.rabbit.close()

    def make_source(self) -> RabbitMQSource:
        return RabbitMQSource(self.rabbit.config)

    async def publish(self, body: bytes, *, message_id: str | None = None) -> None:
        await self.rabbit.publish(body, message_id)

    async def publish_many(self, bodies: list[tuple[bytes, str | None]]) -> None:
        for chunk in range(0, len(bodies), 250):  # publisher confirms, 250 outstanding at a time
            await asyncio.gather(*(self.rabbit.publish(b, m) for b, m in bodies[chunk : chunk + 250]))

    async def dead_letters(self) -> list[DeadLetter]:
        return await self.rabbit.dead_letters()

    async def dead_letter_count(self) -> int:
        return await self.rabbit.dead_letter_count()

    async def pending_count(self) -> int:  # ready only: a requeue held by the sidecar through its backoff is out of sight
        return await self.rabbit.pending()

    def coordinates_for(self, message_id: str, body: bytes) -> tuple[str, str]:
        return coordinates_for(self.rabbit.config.queue, message_id, body)

    def stream_env(self) -> dict[str, str]:
        return {"WOJAK_SIDECAR_RABBITMQ_PREFETCH": str(self.stream_in_flight)}

    def sidecar_env(self) -> dict[str, str]:
        c = self.rabbit.config
        return {
            "WOJAK_SIDECAR_RABBITMQ_URL": c.url.get_secret_value(),
            "WOJAK_SIDECAR_RABBITMQ_QUEUE": c.queue,
            "WOJAK_SIDECAR_RABBITMQ_DEAD_LETTER_EXCHANGE": c.dead_letter_exchange,
            "WOJAK_SIDECAR_RABBITMQ_DEAD_LETTER_QUEUE": c.dead_letter_queue,
            "WOJAK_SIDECAR_RABBITMQ_PREFETCH": "32",
            "WOJAK_SIDECAR_ACCOUNTS": ACCOUNTS,
        }
