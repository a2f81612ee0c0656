"""10,000 orders through a real `wojak sidecar rabbitmq` process, `kill -9` mid-stream.

A tenth are published twice (a publisher retry), some carry no client_order_id (derived
from the message id), and poison messages are mixed in (bad JSON, invalid, conflicts).
After the kill, a second sidecar finishes the stream. Every valid order reaches the venue
exactly once, every poison message is in the DLQ with its reason, the queue ends empty and
nothing stays unacked.

WOJAK_TEST_RABBITMQ_STREAM_ORDERS sets the number of valid orders (default 10,000; the
duplicates, the kill point and the time limits scale with it).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid

import pytest

from tests._processes import EngineProcess, free_port
from tests.sidecars.contract import ACCOUNTS, TICK, dumps, eventually, ledger, order
from tests.sidecars.rabbitmq.test_rabbitmq import RabbitMQBroker
from wojak.engine.protocol import MessageType, derive_client_order_id

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

VALID = int(os.environ.get("WOJAK_TEST_RABBITMQ_STREAM_ORDERS", "10000"))
DERIVED_EVERY, DUPLICATE_EVERY = 20, 10
KILL_AT = max(400, VALID // 5)  # executions before the kill -9
PREFETCH = 128
BAD_JSON, INVALID, CONFLICTS = max(20, VALID // 100), max(20, VALID // 100), max(10, VALID // 200)


@pytest.fixture
async def rabbit(rabbitmq_service):
    broker = await RabbitMQBroker(rabbitmq_service.url, f"wojak-test.{uuid.uuid4().hex[:12]}").open()
    yield broker
    await broker.close()


def start_sidecar(engine: EngineProcess, rabbit: RabbitMQBroker, n: int) -> subprocess.Popen[bytes]:
    c = rabbit.config
    env = {**os.environ, "WOJAK_ENGINE_SOCKET": str(engine.socket), "WOJAK_LOG_LEVEL": "WARNING",
           "WOJAK_SIDECAR_RABBITMQ_URL": c.url, "WOJAK_SIDECAR_RABBITMQ_QUEUE": c.queue,
           "WOJAK_SIDECAR_RABBITMQ_DEAD_LETTER_EXCHANGE": c.dead_letter_exchange,
           "WOJAK_SIDECAR_RABBITMQ_DEAD_LETTER_QUEUE": c.dead_letter_queue,
           "WOJAK_SIDECAR_RABBITMQ_PREFETCH": str(PREFETCH), "WOJAK_SIDECAR_HEALTH_PORT": str(free_port()),
           "WOJAK_SIDECAR_ACCOUNTS": ACCOUNTS}  # fmt: skip
    with open(engine.data_dir / f"sidecar-{n}.log", "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "wojak", "sidecar", "rabbitmq"], env=env,
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip


@pytest.fixture
def engine(engine_factory) -> EngineProcess:
    proc = engine_factory(WOJAK_SANDBOX_FILL_PROBABILITY="1")
    assert proc.request(MessageType.TICK, {"tick": TICK})["verdict"] == "ok"
    return proc


def executed(engine: EngineProcess) -> int:
    """How many distinct orders reached the venue (a count: cheap to poll, unlike ``ledger``)."""
    if not engine.ledger_path.exists():
        return 0
    with sqlite3.connect(engine.ledger_path) as db:
        try:
            return db.execute("SELECT count(*) FROM executions").fetchone()[0]
        except sqlite3.OperationalError:  # no execution yet: no table yet
            return 0


async def test_stream_duplicates_poison_and_kill_9(engine, rabbit):
    rng = random.Random(20240611)
    queue = rabbit.config.queue

    messages: list[tuple[bytes, str]] = []
    expected: set[str] = set()
    for i in range(VALID):
        mid = f"mid-{i}"
        if i % DERIVED_EVERY == 0:  # no client_order_id: derived from (queue, message id)
            body = dumps(order(account=f"acct-{i % 8}"))
            expected.add(derive_client_order_id("rabbitmq", queue, mid))
        else:
            body = dumps(order(f"big-{i}", account=f"acct-{i % 8}"))
            expected.add(f"big-{i}")
        messages.append((body, mid))
        if i % DUPLICATE_EVERY == 3:
            messages.append((body, mid))  # the publisher sent it twice
    poison: set[tuple[str, bytes]] = set()
    for k in range(BAD_JSON):
        body = b'{"client_order_id": "broken-%d", ' % k
        messages.append((body, f"bad-json-{k}"))
        poison.add(("invalid_json", body))
    for k in range(INVALID):
        body = dumps(order(f"invalid-{k}", quantity="0"))
        messages.append((body, f"invalid-{k}"))
        poison.add(("invalid", body))
    conflict_ids = {f"cf-{k}" for k in range(CONFLICTS)}
    for coid in sorted(conflict_ids):  # same id, different content: one executes, one conflicts
        messages.append((dumps(order(coid, quantity="1")), f"{coid}-a"))
        messages.append((dumps(order(coid, quantity="2")), f"{coid}-b"))
    expected |= conflict_ids
    rng.shuffle(messages)

    started = time.monotonic()
    for chunk in range(0, len(messages), 500):  # publisher confirms, 500 at a time
        await asyncio.gather(*(rabbit.publish(b, m) for b, m in messages[chunk : chunk + 500]))
    published = time.monotonic() - started
    assert await rabbit.pending() == len(messages)

    first = start_sidecar(engine, rabbit, 1)
    try:
        await eventually(lambda: first.poll() is not None or executed(engine) >= KILL_AT, 120, f"{KILL_AT} executions")
        assert first.poll() is None, (engine.data_dir / "sidecar-1.log").read_text()[-3000:]
        first.kill()  # kill -9 mid-stream
        assert first.wait(10) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
    at_kill = executed(engine)
    assert at_kill < len(expected), "the kill landed mid-stream"

    started = time.monotonic()
    second = start_sidecar(engine, rabbit, 2)
    try:
        await eventually(lambda: executed(engine) >= len(expected), 60 + len(messages) / 50, f"{len(expected)} executions")
        await eventually(lambda: rabbit_pending_zero(rabbit), 30, "an empty queue")
        finish = time.monotonic() - started
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, (engine.data_dir / "sidecar-2.log").read_text()[-3000:]
    finally:
        if second.poll() is None:
            second.kill()

    executions = ledger(engine)
    assert set(executions) == expected, "every valid order reached the venue, nothing else did"
    assert set(executions.values()) == {1}, "exactly once, despite duplicates and the kill -9"
    assert await rabbit.pending() == 0, "queue empty and nothing left unacked (the consumers are gone)"

    letters = await rabbit.dead_letters()
    got = {(dl.reason, dl.body) for dl in letters if dl.reason != "conflict"}
    assert got == poison, "every poison message is in the DLQ with its reason"
    conflicts = {json.loads(dl.body)["client_order_id"] for dl in letters if dl.reason == "conflict"}
    assert conflicts == conflict_ids
    # at-least-once in the DLQ: a kill between the DLX publish and the ack may dead-letter twice
    assert len(poison) + CONFLICTS <= len(letters) <= len(poison) + CONFLICTS + PREFETCH
    print(f"\n{len(messages)} messages published in {published:.2f}s; {at_kill} executed before kill -9; "
          f"the rest ({len(expected) - at_kill}) in {finish:.2f}s after restart "
          f"({(len(messages) - at_kill) / finish:.0f} msg/s incl. startup)")  # fmt: skip


async def rabbit_pending_zero(rabbit: RabbitMQBroker) -> bool:
    return await rabbit.pending() == 0
