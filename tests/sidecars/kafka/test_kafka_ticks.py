"""`wojak sidecar kafka` carrying ticks (WOJAK_SIDECAR_CARRIES=ticks) on the real broker: two
redundant collectors publish the same ticks into one topic (key: the symbol), the engine uses
each once."""

from __future__ import annotations

import pytest

from tests.sidecars._ticks import run_ticks_process
from tests.sidecars.kafka._broker import KafkaBroker
from tests.sidecars.kafka.test_kafka_stream import sidecar_env
from wojak.engine.protocol import MessageType
from wojak.sidecars.testing.contract import TICK

pytestmark = pytest.mark.kafka


@pytest.fixture
def engine(engine_factory):
    proc = engine_factory(WOJAK_SANDBOX_FILL_PROBABILITY="1")
    assert proc.request(MessageType.TICK, {"tick": TICK})["verdict"] == "ok"
    return proc


async def test_a_ticks_sidecar_process_uses_each_tick_of_two_collectors_once(engine, kafka_service):
    kafka = await KafkaBroker(kafka_service.bootstrap, partitions=3).open()
    try:
        async def publish(bodies: list[bytes]) -> None:
            await kafka.publish_many(bodies)

        await run_ticks_process("kafka", engine, sidecar_env(engine, kafka), publish, kafka.lag)
    finally:
        await kafka.close()
