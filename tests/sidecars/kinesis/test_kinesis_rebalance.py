"""Two `wojak sidecar kinesis` replicas sharing one stream (4 shards) through the lease table
on moto, under load: 8,000 orders (64 accounts, 400 of them published twice). A and B split the
shards (B takes its share from A); A is killed with `kill -9` mid-stream; once A's leases have
not been renewed for the lease time, B takes them over and reads on from A's checkpoints.
Nothing is lost, nothing executes twice, one account's orders execute in the order published,
and every checkpoint ends at its shard's last record.

WOJAK_TEST_KINESIS_REBALANCE_ORDERS sets the number of orders."""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import time

import pytest

from tests.sidecars._probes import engine_with_a_slow_venue, metric_total
from tests.sidecars.kinesis._broker import KinesisStream
from wojak.sidecars.testing.contract import ACCOUNTS, ProcessSidecar, dumps, eventually, free_port, ledger, order

pytestmark = [pytest.mark.aws, pytest.mark.slow]

ORDERS = int(os.environ.get("WOJAK_TEST_KINESIS_REBALANCE_ORDERS", "8000"))  # enough that the replicas share the shards mid-stream on a fast machine
ACCOUNT_COUNT, SHARDS, LEASE_SECONDS = 64, 4, 3


@pytest.fixture
def stream(aws_service):
    s = KinesisStream(aws_service, shards=SHARDS)
    yield s
    s.close()


@pytest.fixture
def engine(engine_factory):
    return engine_with_a_slow_venue(engine_factory)  # the stream lasts long enough for the kill to land mid-stream


def execution_order(engine) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    with sqlite3.connect(engine.ledger_path) as db:
        for account, coid in db.execute("SELECT account, client_order_id FROM executions ORDER BY rowid"):
            out.setdefault(account, []).append(coid)
    return out


class Replica:
    def __init__(self, engine, stream: KinesisStream, name: str) -> None:
        self.name = name
        self.port = free_port()
        env = {**stream.env(), "WOJAK_ENGINE_SOCKET": str(engine.socket), "WOJAK_SIDECAR_ACCOUNTS": ACCOUNTS,
               "WOJAK_SIDECAR_HEALTH_PORT": str(self.port), "WOJAK_LOG_LEVEL": "INFO",
               "WOJAK_SIDECAR_KINESIS_LEASE_SECONDS": str(LEASE_SECONDS), "WOJAK_SIDECAR_KINESIS_WORKER_ID": f"replica-{name}"}
        self.handle = ProcessSidecar("kinesis", env, engine.data_dir / f"replica-{name}.log")

    def metric(self, name: str, **labels: str) -> float:
        return metric_total(self.port, name, **labels)

    async def acks(self) -> float:
        return await asyncio.to_thread(self.metric, "wojak_sidecar_settlements_total", settlement="ack")

    async def leases(self, kind: str) -> float:
        return await asyncio.to_thread(self.metric, "wojak_sidecar_kinesis_leases_total", kind=kind)


async def test_two_replicas_share_the_shards_and_one_takes_over_after_the_other_is_killed(engine, stream):
    rng = random.Random(11)
    bodies = [dumps(order(f"rb-{i}", account=f"acct-{i % ACCOUNT_COUNT}")) for i in range(ORDERS)]
    twice = set(rng.sample(range(ORDERS), ORDERS // 10))
    await stream.publish_many([(b, None) for i, b in enumerate(bodies) for b in ([b, b] if i in twice else [b])])
    produced: dict[str, list[str]] = {}
    for i in range(ORDERS):
        produced.setdefault(f"acct-{i % ACCOUNT_COUNT}", []).append(f"rb-{i}")

    started = time.monotonic()
    a, b = Replica(engine, stream, "a"), Replica(engine, stream, "b")
    try:
        await eventually(lambda: _both_busy(a, b), 60, "both replicas acking")

        def owners() -> dict[str | None, int]:
            counts: dict[str | None, int] = {}
            for lease in stream.leases().values():
                counts[lease.owner] = counts.get(lease.owner, 0) + 1
            return counts

        await eventually(lambda: owners() == {"replica-a": 2, "replica-b": 2}, 30, "two shards each")
        shared = time.monotonic() - started
        assert engine.execution_count() < ORDERS * 0.6, "the stream was mid-way when the replicas shared it"
        await a.handle.kill()  # kill -9 mid-stream
        killed = time.monotonic()
        at_kill = engine.execution_count()
        await eventually(lambda: owners() == {"replica-b": 4}, 30, "B holding A's leases")
        took_over = time.monotonic() - killed
        assert await b.leases("expired") == 2, "taken over only once expired (A never released them)"
        await eventually(lambda: engine.execution_count() >= ORDERS, 180, f"{ORDERS} executions")
        await eventually(lambda: _pending_is(stream, 0), 30, "every checkpoint at its shard's last record")
        finish = time.monotonic() - started
        assert await b.handle.terminate(30) == 0, b.handle.log_tail()
    finally:
        for r in (a, b):
            if r.handle.alive():
                await r.handle.kill()

    executions = ledger(engine)
    assert set(executions) == {f"rb-{i}" for i in range(ORDERS)}, "nothing lost"
    assert set(executions.values()) == {1}, "nothing executed twice"
    assert execution_order(engine) == produced, "one account's orders executed in the order published"
    assert await stream.dead_letters() == []
    assert all(lease.owner is None for lease in stream.leases().values()), "B released its leases on SIGTERM"
    print(f"\n{ORDERS + len(twice)} records ({ORDERS} orders, {len(twice)} twice) on {SHARDS} shards; shared 2+2 after "
          f"{shared:.1f}s; kill -9 of A at {at_kill} executed; B held all 4 leases {took_over:.1f}s later (lease time "
          f"{LEASE_SECONDS}s); all executed once, in order, checkpointed to the end after {finish:.1f}s")


async def _both_busy(a: Replica, b: Replica) -> bool:
    return await a.acks() >= 20 and await b.acks() >= 20


async def _pending_is(stream: KinesisStream, n: int) -> bool:
    return await stream.pending() == n
