"""Rebalances under load: `wojak sidecar kafka` replicas in one consumer group.

8,000 orders (64 accounts, 8 to a partition, 800 of them produced twice). Replicas A and B split
the partitions; A is killed with `kill -9` mid-stream and B takes over A's partitions once the
group drops A (its session timeout); replica C then joins (B revokes half of its partitions
with records in flight: they settle, B commits, C resumes from there) and B is stopped with
SIGTERM (it drains, commits and leaves; C takes everything). Nothing is lost, nothing executes
twice, one account's orders execute in the order produced, and the group's committed position
ends at the end of every partition.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time

import pytest

from tests.sidecars._probes import engine_with_a_slow_venue, metric_total
from tests.sidecars.kafka._broker import KafkaBroker
from tests.sidecars.kafka.test_kafka_stream import execution_order, sidecar_env
from wojak.sidecars.testing.contract import ProcessSidecar, dumps, eventually, free_port, ledger, order

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ORDERS = int(os.environ.get("WOJAK_TEST_KAFKA_REBALANCE_ORDERS", "8000"))
ACCOUNT_COUNT, PARTITIONS = 64, 8


@pytest.fixture
async def kafka(kafka_service):
    broker = await KafkaBroker(kafka_service.bootstrap, partitions=PARTITIONS).open()
    yield broker
    await broker.close()


@pytest.fixture
def engine(engine_factory):
    return engine_with_a_slow_venue(engine_factory)  # the stream lasts long enough for every phase to meet records


class Replica:
    def __init__(self, engine, kafka: KafkaBroker, name: str) -> None:
        self.name = name
        self.port = free_port()
        env = sidecar_env(engine, kafka, WOJAK_SIDECAR_HEALTH_PORT=str(self.port), WOJAK_LOG_LEVEL="INFO",
                          WOJAK_SIDECAR_KAFKA_SESSION_TIMEOUT_MS="6000", WOJAK_SIDECAR_KAFKA_HEARTBEAT_INTERVAL_MS="2000",
                          WOJAK_SIDECAR_KAFKA_CLIENT_ID=f"replica-{name}")  # fmt: skip
        self.handle = ProcessSidecar("kafka", env, engine.data_dir / f"replica-{name}.log")

    def metric(self, name: str, **labels: str) -> float:
        return metric_total(self.port, name, **labels)

    async def assigned(self) -> float:
        return await asyncio.to_thread(self.metric, "wojak_sidecar_kafka_rebalances_total", kind="assigned")

    async def acks(self) -> float:
        return await asyncio.to_thread(self.metric, "wojak_sidecar_settlements_total", settlement="ack")

    def log(self) -> str:
        return self.handle.log_tail()


async def test_replicas_kill_9_join_and_sigterm_under_load(engine, kafka):
    rng = random.Random(7)
    bodies = [dumps(order(f"rb-{i}", account=f"acct-{i % ACCOUNT_COUNT}")) for i in range(ORDERS)]
    twice = set(rng.sample(range(ORDERS), ORDERS // 10))
    stream = [b for i, b in enumerate(bodies) for b in ([b, b] if i in twice else [b])]
    # account n in partition n % 8 (the producer contract holds: one account, one partition), so
    # every partition has work until the end and the replica that joins gets some
    await kafka.publish_many(stream, partition_of=lambda body: int(json.loads(body)["account"][5:]) % PARTITIONS)
    ends = await kafka.ends()
    produced: dict[str, list[str]] = {}
    for i in range(ORDERS):
        produced.setdefault(f"acct-{i % ACCOUNT_COUNT}", []).append(f"rb-{i}")

    def done_at(share: float) -> bool:
        return engine.execution_count() >= ORDERS * share

    started = time.monotonic()
    a, b = Replica(engine, kafka, "a"), Replica(engine, kafka, "b")
    c = None
    try:
        # A and B split the partitions: both ack records
        await eventually(lambda: _both_busy(a, b), 60, "both replicas acking")
        assert not done_at(0.5), "the stream was not half done when the replicas shared it"
        await a.handle.kill()  # kill -9 mid-stream
        at_kill = engine.execution_count()
        b_assigned = await b.assigned()
        await eventually(lambda: _more(b.assigned, b_assigned + PARTITIONS // 2), 30, "B assigned A's partitions")
        took_over = time.monotonic() - started
        await eventually(lambda: done_at(0.5), 120, "half the stream")
        c = Replica(engine, kafka, "c")  # a replica joins: B revokes half, with records in flight
        await eventually(lambda: _more(c.acks, 1), 60, "C acking")
        assert not done_at(0.95), "C joined mid-stream"
        at_join = engine.execution_count()
        assert await b.handle.terminate(30) == 0, b.log()  # SIGTERM: drain, commit, leave
        at_term = engine.execution_count()
        await eventually(lambda: engine.execution_count() >= ORDERS, 180, f"{ORDERS} executions")

        async def committed_to_the_end() -> bool:
            return await kafka.committed() == ends

        await eventually(committed_to_the_end, 30, "the commit at the end of every partition")
        finish = time.monotonic() - started
        assert await c.handle.terminate(30) == 0, c.log()
    finally:
        for r in (a, b, c):
            if r is not None and r.handle.alive():
                await r.handle.kill()

    executions = ledger(engine)
    assert set(executions) == {f"rb-{i}" for i in range(ORDERS)}, "nothing lost"
    assert set(executions.values()) == {1}, "nothing executed twice"
    assert execution_order(engine) == produced, "one account's orders executed in the order produced"
    assert await kafka.lag() == 0 and await kafka.dead_letter_records() == []
    b_log = (engine.data_dir / "replica-b.log").read_text()
    assert "revoked" in b_log and "assigned" in b_log, b_log[-3000:]
    print(f"\n{len(stream)} messages ({ORDERS} orders, {len(twice)} twice); kill -9 of A at {at_kill} executed, B "
          f"took over {took_over:.1f}s after the start; C joined at {at_join}; SIGTERM of B at {at_term}; all "
          f"executed once, in order, committed to the end after {finish:.1f}s")  # fmt: skip


async def _both_busy(a: Replica, b: Replica) -> bool:
    return await a.acks() >= 20 and await b.acks() >= 20


async def _more(metric, at_least: float) -> bool:
    return await metric() >= at_least

