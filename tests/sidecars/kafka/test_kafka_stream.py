"""10,000 orders through a real `wojak sidecar kafka` process, `kill -9` mid-stream.

1,000 of the orders are produced twice (a publisher retry: redelivered duplicates), every 20th
carries no client_order_id (derived from its topic, partition and offset), and 250 poison
messages are mixed in (bad JSON, invalid orders, conflicts, an account the sidecar may not
trade, bodies over the size cap). After the kill, a second sidecar (same group) finishes the
stream from the committed offsets. Every valid order reaches the venue exactly once, one
account's orders execute in the order they were produced, every poison message is in the
dead-letter topic with its reason, and the group's committed position ends at the end of every
partition.

WOJAK_TEST_KAFKA_STREAM_ORDERS sets the number of valid orders (default 10,000; the duplicates,
the poison, the kill point and the time limits scale with it).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests._processes import EngineProcess, free_port
from tests.sidecars.kafka._broker import KafkaBroker
from wojak.engine.protocol import MessageType, derive_client_order_id
from wojak.sidecars.testing.contract import ACCOUNTS, TICK, dumps, eventually, ledger, order

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

VALID = int(os.environ.get("WOJAK_TEST_KAFKA_STREAM_ORDERS", "10000"))
DUPLICATES = VALID // 10
DERIVED_EVERY = 20
ACCOUNT_COUNT = 64
PARTITIONS = 8
KILL_AT = max(400, VALID // 4)  # executions before the kill -9
POISON = max(25, VALID // 40)  # 250 for 10,000
MAX_BODY = 4096


@pytest.fixture
async def kafka(kafka_service):
    broker = await KafkaBroker(kafka_service.bootstrap, partitions=PARTITIONS).open()
    yield broker
    await broker.close()


@pytest.fixture
def engine(engine_factory) -> EngineProcess:
    proc = engine_factory(WOJAK_SANDBOX_FILL_PROBABILITY="1")
    assert proc.request(MessageType.TICK, {"tick": TICK})["verdict"] == "ok"
    return proc


def sidecar_env(engine: EngineProcess, kafka: KafkaBroker, **extra: str) -> dict[str, str]:
    c = kafka.config
    return {**os.environ, "WOJAK_ENGINE_SOCKET": str(engine.socket), "WOJAK_LOG_LEVEL": "WARNING",
            "WOJAK_SIDECAR_KAFKA_BOOTSTRAP_SERVERS": c.bootstrap_servers,
            "WOJAK_SIDECAR_KAFKA_TOPIC": c.topic, "WOJAK_SIDECAR_KAFKA_GROUP_ID": c.group_id,
            "WOJAK_SIDECAR_KAFKA_DEAD_LETTER_TOPIC": c.dead_letter_topic,
            "WOJAK_SIDECAR_KAFKA_RESULTS_TOPIC": c.results_topic or "",
            "WOJAK_SIDECAR_HEALTH_PORT": str(free_port()), "WOJAK_SIDECAR_ACCOUNTS": ACCOUNTS,
            "WOJAK_SIDECAR_MAX_BODY_BYTES": str(MAX_BODY), **extra}  # fmt: skip


def start_sidecar(engine: EngineProcess, kafka: KafkaBroker, n: int, **extra: str) -> subprocess.Popen[bytes]:
    with open(engine.data_dir / f"sidecar-{n}.log", "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "wojak", "sidecar", "kafka"], env=sidecar_env(engine, kafka, **extra),
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip


def executed(engine: EngineProcess) -> int:
    if not engine.ledger_path.exists():
        return 0
    with sqlite3.connect(engine.ledger_path) as db:
        try:
            return db.execute("SELECT count(*) FROM executions").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def execution_order(engine: EngineProcess) -> dict[str, list[str]]:
    """account -> its client_order_ids in the order the venue executed them."""
    out: dict[str, list[str]] = {}
    with sqlite3.connect(engine.ledger_path) as db:
        for account, coid in db.execute("SELECT account, client_order_id FROM executions ORDER BY rowid"):
            out.setdefault(account, []).append(coid)
    return out


def log_tail(engine: EngineProcess, n: int) -> str:
    return (engine.data_dir / f"sidecar-{n}.log").read_text()[-3000:]


async def test_stream_duplicates_poison_and_kill_9(engine, kafka):
    rng = random.Random(20261130)
    topic = kafka.config.topic

    # (body, expected client_order_id or None for poison, poison reason or None)
    valid: list[tuple[bytes, str | None]] = []
    for i in range(VALID):
        account = f"acct-{i % ACCOUNT_COUNT}"
        if i % DERIVED_EVERY == 0:  # no client_order_id: derived from (topic, partition, offset) once produced
            valid.append((dumps(order(account=account, tag=f"derived-{i}")), None))
        else:
            valid.append((dumps(order(f"k-{i}", account=account)), f"k-{i}"))
    duplicated = rng.sample([i for i, (_, coid) in enumerate(valid) if coid is not None], DUPLICATES)
    poison: list[tuple[str, bytes]] = []
    kinds = ["invalid_json", "invalid", "conflict", "account_not_permitted", "body_too_large"]
    for k in range(POISON):
        kind = kinds[k % len(kinds)]
        account = f"acct-{k % ACCOUNT_COUNT}"
        if kind == "invalid_json":
            body = b'{"client_order_id": "broken-%d", "account": "%s", ' % (k, account.encode())
        elif kind == "invalid":
            body = dumps(order(f"invalid-{k}", account=account, quantity="0"))
        elif kind == "conflict":  # the id of a valid order of the same account, other content
            i = next(i for i in range(k, VALID) if valid[i][1] is not None and i % ACCOUNT_COUNT == k % ACCOUNT_COUNT)
            body = dumps(order(valid[i][1], account=account, quantity="2"))
        elif kind == "account_not_permitted":
            body = dumps(order(f"theirs-{k}", account=f"other-desk-{k % 4}"))
        else:
            body = dumps(order(f"big-{k}", account=account, tag="x" * 100) | {"pad": "y" * MAX_BODY})
        poison.append((kind, body))

    # the stream: every order in its account's order; the poison and the duplicates in between
    stream: list[bytes] = []
    for i, (body, _) in enumerate(valid):
        stream.append(body)
        if i in duplicated:
            stream.append(body)  # the publisher sent it twice
    for kind, body in poison:  # at a random place after the order a conflict copies
        stream.insert(rng.randrange(len(stream) // 2, len(stream)), body)

    started = time.monotonic()
    await kafka.publish_many(stream)
    published = time.monotonic() - started
    ends = await kafka.ends()
    assert sum(ends.values()) == len(stream) == VALID + DUPLICATES + POISON

    first = start_sidecar(engine, kafka, 1)
    try:
        await eventually(lambda: first.poll() is not None or executed(engine) >= KILL_AT, 120, f"{KILL_AT} executions")
        assert first.poll() is None, log_tail(engine, 1)
        first.kill()  # kill -9 mid-stream
        assert first.wait(10) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
    at_kill = executed(engine)
    committed_at_kill = await kafka.committed()

    # the expected ids: the derived ones come from where the broker put each message
    records = await kafka.read_new(topic)
    assert len(records) == len(stream)
    expected: dict[str, str] = {}  # client_order_id -> account
    produced_order: dict[str, list[str]] = {}  # account -> ids in produced (partition) order
    valid_bodies = {body for body, _ in valid}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        if r.value not in valid_bodies:
            continue
        data = json.loads(r.value)
        coid = data.get("client_order_id") or derive_client_order_id("kafka", r.topic, r.partition, r.offset)
        if coid not in expected:
            expected[coid] = data["account"]
            produced_order.setdefault(data["account"], []).append(coid)
    assert len(expected) == VALID
    assert at_kill < VALID, "the kill landed mid-stream"

    started = time.monotonic()
    second = start_sidecar(engine, kafka, 2)
    try:
        # the killed member holds its partitions until its session times out (10 s): then the group rebalances
        await eventually(lambda: second.poll() is not None or executed(engine) > at_kill, 60, "the first execution after the restart")
        resumed = time.monotonic() - started
        await eventually(lambda: second.poll() is not None or executed(engine) >= VALID, 60 + len(stream) / 50,
                         f"{VALID} executions")  # fmt: skip
        assert second.poll() is None, log_tail(engine, 2)

        async def all_committed() -> bool:
            return await kafka.committed() == ends

        await eventually(all_committed, 30, "the committed position at the end of every partition")
        finish = time.monotonic() - started
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, log_tail(engine, 2)
    finally:
        if second.poll() is None:
            second.kill()

    executions = ledger(engine)
    assert set(executions) == set(expected), "every valid order reached the venue, nothing else did"
    assert set(executions.values()) == {1}, "exactly once, despite the duplicates and the kill -9"
    assert execution_order(engine) == produced_order, "one account's orders executed in the order produced"
    assert await kafka.committed() == ends, "the committed position is the end of the stream"
    assert await kafka.lag() == 0

    letters = await kafka.dead_letter_records()
    got = {(dl.reason, dl.body) for dl in letters}
    assert got == set(poison), "every poison message is in the dead-letter topic with its reason"
    for dl in letters:
        assert dl.headers["x-wojak-topic"] == topic.encode()
        assert int(dl.headers["x-wojak-offset"]) < ends[int(dl.headers["x-wojak-partition"])]
    # at least once in the DLT: a kill between the confirm and the commit may dead-letter twice
    assert POISON <= len(letters) <= POISON + 256
    print(f"\n{len(stream)} messages ({VALID} orders, {DUPLICATES} produced twice, {POISON} poison) produced in "
          f"{published:.2f}s; {at_kill} executed before kill -9 (committed then: {sum(committed_at_kill.values())}); "
          f"the rest ({VALID - at_kill}) in {finish:.2f}s after restart, the first after {resumed:.2f}s (the killed "
          f"member's session timeout) ({(VALID - at_kill) / (finish - resumed):.0f} orders/s after that); "
          f"{len(letters)} dead letters")  # fmt: skip
