"""The checkpoint written at stop is retried (the kit's ``write_position_at_stop``, as Kafka's
commit at stop): a lease-table write refused once or three times at stop does not leave the
settled records behind the checkpoint, to be read again by the next owner."""

from __future__ import annotations

import pytest

from tests.sidecars._probes import engine_with_a_tick
from tests.sidecars.kinesis._broker import KinesisStream
from wojak.sidecars.kinesis import KinesisSource
from wojak.sidecars.testing.contract import Sidecar, dumps, eventually, ledger, order

pytestmark = pytest.mark.aws

ORDERS = 6


@pytest.fixture
def engine(engine_factory):
    return engine_with_a_tick(engine_factory)


@pytest.fixture
def stream(aws_service):
    s = KinesisStream(aws_service, shards=1)
    yield s
    s.close()


@pytest.mark.parametrize("refusals", [1, 3])
async def test_a_checkpoint_at_stop_the_table_refuses_is_retried_and_lands(engine, stream, refusals):
    for i in range(ORDERS):
        await stream.publish(dumps(order(f"ckpt-{i}")))
    source = KinesisSource(stream.settings(checkpoint_interval=60))  # only the stop checkpoints
    async with Sidecar(source, engine) as sc:
        await eventually(lambda: sc.settlements("ack") == ORDERS, 30, f"{ORDERS} acks")
        assert await stream.pending() == ORDERS, "nothing checkpointed before the stop"
        table, refused = source._table, []
        real_checkpoint = table.checkpoint

        def refusing(*args):
            if len(refused) < refusals:
                refused.append(args)
                raise ConnectionError("the lease table is away")
            return real_checkpoint(*args)

        table.checkpoint = refusing
    assert len(refused) == refusals, "the checkpoints at stop were refused"
    assert ledger(engine) == {f"ckpt-{i}": 1 for i in range(ORDERS)}
    assert await stream.pending() == 0, f"the checkpoint at stop lands after {refusals} refusal(s)"
