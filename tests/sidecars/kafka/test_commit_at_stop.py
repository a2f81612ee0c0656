"""The commit at stop is retried: a commit the group refuses once (a rebalance under way) does
not leave the settled records uncommitted, to be replayed by the next owner.

The contract's ``test_stop_drains_in_flight_and_requeues_the_rest`` once ended with the group's
lag above zero on a loaded machine: the final commit of the settled prefix was tried once.
"""

from __future__ import annotations

import uuid

import pytest

from tests.sidecars.kafka._memory import MemoryKafka
from wojak.engine.protocol import MessageType
from wojak.sidecars.kafka import KafkaSidecarSettings, KafkaSource
from wojak.sidecars.testing.contract import TICK, Sidecar, dumps, eventually, ledger, order

ORDERS = 10


@pytest.fixture
def engine(engine_factory):
    proc = engine_factory(WOJAK_SANDBOX_FILL_PROBABILITY="1")
    assert proc.request(MessageType.TICK, {"tick": TICK})["verdict"] == "ok"
    return proc


@pytest.mark.parametrize("failures", [1, 3])
async def test_in_memory_a_commit_at_stop_that_fails_is_retried_and_lands(engine, failures):
    memory = MemoryKafka()
    prefix = f"mem.{uuid.uuid4().hex[:8]}"
    config = KafkaSidecarSettings(topic=f"{prefix}.orders", group_id=f"{prefix}.group", dead_letter_topic=f"{prefix}.dlt",
                                  results_topic=f"{prefix}.results", commit_interval=60)  # fmt: skip  # only the stop commits
    memory.create_topic(config.topic, 2)
    for i in range(ORDERS):
        account = f"acct-{i % 2}"
        memory.append(config.topic, dumps(order(f"stop-{i}", account=account)), account.encode())
    source = KafkaSource(config, clients=memory.clients(config))
    async with Sidecar(source, engine) as sc:
        await eventually(lambda: len(sc.source.settled("ack")) == ORDERS, 30, f"{ORDERS} acks")
        assert memory.lag(config.group_id, config.topic) == ORDERS, "nothing committed before the stop"
        memory.fail_commits = failures
    assert memory.fail_commits == 0, "the commits at stop were refused"
    assert ledger(engine) == {f"stop-{i}": 1 for i in range(ORDERS)}
    assert memory.lag(config.group_id, config.topic) == 0, f"the commit at stop lands after {failures} refusal(s)"
    assert source.commits == 1
