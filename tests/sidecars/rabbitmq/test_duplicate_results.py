"""A result whose publication failed is published on the redelivery (issue 9, finding 3),
against the real RabbitMQ and a real engine.

A ``denied`` order's result could not be published (the reply exchange was gone: the broker
refuses the publication with a channel error), so the message was requeued, not acked. Its
redelivery is answered ``duplicate``; before the fix a duplicate was only acked and the result
was never published. Now a duplicate whose original outcome publishes a result (``rejected``,
``denied``, ``venue_anomaly``) publishes it, with the original verdict, before the ack.
"""

from __future__ import annotations

import json
import uuid

import aio_pika
import pytest

from tests._processes import EngineProcess
from tests.sidecars.rabbitmq.test_rabbitmq import RabbitMQBroker
from wojak.engine.protocol import MessageType
from wojak.sidecars.rabbitmq import RabbitMQSource
from wojak.sidecars.rabbitmq.source import DUPLICATE_HEADER
from wojak.sidecars.testing.contract import TICK, Sidecar, dumps, eventually, ledger, order

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
async def rabbit(rabbitmq_service):
    broker = await RabbitMQBroker(rabbitmq_service.url, f"wojak-test.{uuid.uuid4().hex[:12]}").open()
    yield broker
    await broker.channel.exchange_delete(f"{broker.config.queue}.results")
    await broker.close()


@pytest.fixture
def engine(engine_factory) -> EngineProcess:
    proc = engine_factory(WOJAK_SANDBOX_FILL_PROBABILITY="1")
    assert proc.request(MessageType.TICK, {"tick": TICK})["verdict"] == "ok"
    return proc


async def results_queue(rabbit: RabbitMQBroker, exchange: str) -> aio_pika.abc.AbstractQueue:
    x = await rabbit.channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await rabbit.channel.declare_queue(f"{exchange}.q", auto_delete=True)
    await queue.bind(x, routing_key="#")
    return queue


async def test_a_denied_result_that_could_not_be_published_is_published_for_its_duplicate(engine, rabbit):
    exchange = f"{rabbit.config.queue}.results"
    config = rabbit.config.model_copy(update={"reply_exchange": exchange})
    # 30000 is 25% off the last tick (24000): denied (price_band_exceeded): ack and publish the result
    body = dumps(order("band-1", limit_price="30000"))
    # the first requeue holds the message ~1 s: time to put the reply exchange back
    async with Sidecar(RabbitMQSource(config), engine, backoff_base=1.0) as sc:
        await eventually(sc.source.is_ready, 10, "the sidecar consuming")
        await rabbit.channel.exchange_delete(exchange)  # the reply path is gone
        await rabbit.publish(body, "m-band", correlation_id="corr-1")
        # settled "requeue" as the hold begins (the nack comes after it)
        await eventually(lambda: [m.settled for m in sc.source.seen] == ["requeue"], 15, "the failed publication's requeue")
        assert sc.verdicts("denied") == 1 and sc.settlements("publish") == 0 and sc.settlements("ack") == 0
        results = await results_queue(rabbit, exchange)  # the reply path is back
        await eventually(lambda: sc.settlements("ack") == 1, 15, "the redelivery acked")
        result = await eventually(lambda: results.get(no_ack=True, fail=False), 5, "the result")
    assert sc.verdicts("duplicate") == 1, "the redelivery was answered duplicate"
    assert sc.settlements("publish") == 1
    payload = json.loads(result.body)
    assert payload["client_order_id"] == "band-1" and payload["verdict"] == "denied"
    assert payload["order"]["state"] == "denied" and payload["duplicate"] is True
    assert "price_band_exceeded" in json.dumps(payload["reason"])
    assert result.routing_key == "denied", "routed by the original verdict, where consumers of denied results listen"
    assert result.headers[DUPLICATE_HEADER] == "true" and result.correlation_id == "corr-1"
    assert await results.get(no_ack=True, fail=False) is None, "published once"
    assert ledger(engine) == {}, "a denied order never reaches the venue"
    assert await rabbit.pending() == 0 and await rabbit.dead_letters() == []


async def test_a_duplicate_of_a_filled_order_publishes_nothing(engine, rabbit):
    exchange = f"{rabbit.config.queue}.results"
    config = rabbit.config.model_copy(update={"reply_exchange": exchange})
    body = dumps(order("fill-1"))
    async with Sidecar(RabbitMQSource(config), engine, concurrency=1) as sc:
        await eventually(sc.source.is_ready, 10, "the sidecar consuming")
        results = await results_queue(rabbit, exchange)
        await rabbit.publish(body, "m-1")
        await rabbit.publish(body, "m-1")  # the publisher sent it twice
        await eventually(lambda: sc.settlements("ack") == 2, 15, "both acked")
    assert sc.verdicts("filled") == 1 and sc.verdicts("duplicate") == 1 and sc.settlements("publish") == 0
    assert await results.get(no_ack=True, fail=False) is None
    assert ledger(engine) == {"fill-1": 1}
