"""Fixtures the RabbitMQ tests share."""

from __future__ import annotations

import uuid

import pytest

from tests.sidecars.rabbitmq.test_rabbitmq import RabbitMQBroker


@pytest.fixture
async def rabbit(rabbitmq_service):
    """A queue of this test's own (with its dead-letter queue) on the real broker."""
    broker = await RabbitMQBroker(rabbitmq_service.url, f"wojak-test.{uuid.uuid4().hex[:12]}").open()
    yield broker
    await broker.close()
