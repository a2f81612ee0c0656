"""A poison record that keeps failing never holds its partition forever; a broker that is away
never gets a record given up.

One partition, one account: the records behind the poison one wait for it (the account's order).

* Its dead letter is refused by the broker every time (the dead-letter topic's
  ``max.message.bytes`` is smaller than the copy: ``MESSAGE_TOO_LARGE``, the record's own
  fault). After ``WOJAK_SIDECAR_SETTLE_ATTEMPTS`` refusals it is given up: a minimal dead letter
  (reason ``unsettleable``, ``x-wojak-original-reason: invalid``, the coordinates, the body's
  size and sha256, no body) that the topic takes, and the partition moves on: every order behind
  it executes, in order, and the commit reaches the end.
* The broker is down while dead letters are produced (in memory): those failures are the
  broker's, never counted, so the record waits (retried in place) however many times it fails,
  and is dead-lettered with its own reason once the broker is back.
"""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest
from aiokafka import errors

from tests.sidecars.kafka._broker import KafkaBroker
from tests.sidecars.kafka._memory import MemoryKafka
from wojak.engine.protocol import MessageType
from wojak.sidecars.kafka import KafkaSidecarSettings, KafkaSource
from wojak.sidecars.kafka.source import BODY_OMITTED_HEADER, ORIGINAL_REASON_HEADER
from wojak.sidecars.testing.contract import TICK, Sidecar, dumps, eventually, ledger, order

DLT_MAX = 2048  # bytes the dead-letter topic takes per record
POISON = dumps(order("poison-1", quantity="0", tag="p" * 120) | {"note": "n" * 4000})  # invalid, ~4.3 KB


@pytest.fixture
def engine(engine_factory):
    proc = engine_factory(WOJAK_SANDBOX_FILL_PROBABILITY="1")
    assert proc.request(MessageType.TICK, {"tick": TICK})["verdict"] == "ok"
    return proc


def stream() -> list[bytes]:
    before = [dumps(order(f"before-{i}")) for i in range(5)]
    after = [dumps(order(f"after-{i}")) for i in range(5)]
    return before + [POISON] + after


def executed_in_order(engine) -> list[str]:
    import sqlite3

    with sqlite3.connect(engine.ledger_path) as db:
        return [row[0] for row in db.execute("SELECT client_order_id FROM executions ORDER BY rowid")]


EXPECTED = [f"before-{i}" for i in range(5)] + [f"after-{i}" for i in range(5)]


@pytest.mark.kafka
async def test_a_dead_letter_the_topic_always_refuses_is_given_up_and_the_partition_moves_on(engine, kafka_service):
    kafka = await KafkaBroker(kafka_service.bootstrap, partitions=1,
                              topic_configs={"dlt": {"max.message.bytes": str(DLT_MAX)}}).open()  # fmt: skip
    try:
        await kafka.publish_many(stream())
        async with Sidecar(KafkaSource(kafka.config), engine, settle_attempts=3) as sc:
            await eventually(lambda: len(ledger(engine)) == 10, 60, "every order behind the poison one")

            async def committed_to_the_end() -> bool:
                return await kafka.lag() == 0

            await eventually(committed_to_the_end, 30, "the commit at the end of the partition")
        assert executed_in_order(engine) == EXPECTED and set(ledger(engine).values()) == {1}
        assert sc.settlements("failed") == 3 and sc.verdicts("unsettleable") == 1
        assert [m.settled for m in sc.source.seen if m.body == POISON] == ["dead_letter"] * 3 + ["give_up"]
        letters = await kafka.dead_letter_records()
        assert len(letters) == 1, [dl.headers for dl in letters]
        (dl,) = letters
        assert dl.reason == "unsettleable" and dl.headers[ORIGINAL_REASON_HEADER] == b"invalid"
        assert dl.record.value is None and dl.record.key == b"acct-1"
        assert json.loads(dl.headers[BODY_OMITTED_HEADER]) == {"bytes": len(POISON), "sha256": hashlib.sha256(POISON).hexdigest()}
        assert (dl.headers["x-wojak-topic"], dl.headers["x-wojak-partition"], dl.headers["x-wojak-offset"]) == (
            kafka.config.topic.encode(), b"0", b"5")
        assert dl.detail["settle_failures"] == 3 and "MessageSizeTooLarge" in dl.detail["last_failure"]
    finally:
        await kafka.close()


def memory_source(memory: MemoryKafka) -> tuple[KafkaSidecarSettings, KafkaSource]:
    prefix = f"mem.{uuid.uuid4().hex[:8]}"
    config = KafkaSidecarSettings(topic=f"{prefix}.orders", group_id=f"{prefix}.group", dead_letter_topic=f"{prefix}.dlt",
                                results_topic=f"{prefix}.results",
                                backoff_base=0.05, backoff_max=0.5)  # fmt: skip
    memory.create_topic(config.topic, 1)
    for body in stream():
        memory.append(config.topic, body, b"acct-1")
    return config, KafkaSource(config, clients=memory.clients(config))


async def test_in_memory_a_refused_dead_letter_is_given_up_and_the_partition_moves_on(engine):
    memory = MemoryKafka()
    config, source = memory_source(memory)
    memory.refuse[config.dead_letter_topic] = lambda size: errors.MessageSizeTooLargeError() if size > DLT_MAX else None
    async with Sidecar(source, engine, settle_attempts=3) as sc:
        await eventually(lambda: len(ledger(engine)) == 10 and memory.lag(config.group_id, config.topic) == 0, 30,
                         "every order behind the poison one, committed")  # fmt: skip
    assert executed_in_order(engine) == EXPECTED
    (dl,) = memory.records(config.dead_letter_topic)
    headers = dict(dl.headers)
    assert headers["x-wojak-reason"] == b"unsettleable" and headers[ORIGINAL_REASON_HEADER] == b"invalid"
    assert dl.value is None and sc.verdicts("unsettleable") == 1


async def test_in_memory_a_broker_that_is_away_never_gets_a_record_given_up(engine):
    memory = MemoryKafka()
    config, source = memory_source(memory)
    failures = 0

    def away(size: int) -> BaseException | None:  # unreachable for the first 8 dead letters
        nonlocal failures
        failures += 1
        return errors.KafkaConnectionError("broker away") if failures <= 8 else None

    memory.refuse[config.dead_letter_topic] = away
    async with Sidecar(source, engine, settle_attempts=3) as sc:  # 8 failures > 3 attempts: none counted
        await eventually(lambda: len(ledger(engine)) == 10 and memory.lag(config.group_id, config.topic) == 0, 60,
                         "every order behind the poison one, committed")  # fmt: skip
    assert sc.settlements("failed") == 8 and sc.verdicts("unsettleable") == 0
    assert executed_in_order(engine) == EXPECTED, "the orders behind it waited for it: the account's order kept"
    (dl,) = memory.records(config.dead_letter_topic)
    headers = dict(dl.headers)
    assert headers["x-wojak-reason"] == b"invalid" and dl.value == POISON, "dead-lettered with its own reason and body"


async def test_in_memory_a_producer_that_cannot_go_on_is_replaced_and_nothing_is_given_up(engine):
    """An idempotent producer whose sequence broke (a batch expired while the broker was away:
    OUT_OF_ORDER_SEQUENCE_NUMBER on every later produce) is replaced by a new one."""
    memory = MemoryKafka()
    config, source = memory_source(memory)
    producers: list = []
    clients = source.clients
    make = clients.producer

    def producer():
        producers.append(make())
        return producers[-1]

    clients.producer = producer  # type: ignore[method-assign]

    def broken(size: int) -> BaseException | None:  # the first producer's every produce, never the second's
        return errors.OutOfOrderSequenceNumber() if len(producers) == 1 else None

    memory.refuse[config.dead_letter_topic] = broken
    async with Sidecar(source, engine, settle_attempts=3) as sc:
        await eventually(lambda: len(ledger(engine)) == 10 and memory.lag(config.group_id, config.topic) == 0, 30,
                         "every order behind the poison one, committed")  # fmt: skip
    assert len(producers) == 2 and sc.verdicts("unsettleable") == 0
    (dl,) = memory.records(config.dead_letter_topic)
    assert dict(dl.headers)["x-wojak-reason"] == b"invalid" and dl.value == POISON
