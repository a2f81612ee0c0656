"""What the contract cannot see about Kinesis: a poison record whose dead letter keeps being
refused never holds its shard forever (on moto), and a parent shard is read to its end
(checkpoint SHARD_END) before its children are read: with records in both (Kinesis in memory,
since moto 5.2 writes into a closed parent; the lease table and the DLQ on moto), and on moto's
own split shard.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3

import pytest

from tests.sidecars.kinesis._broker import KinesisStream
from tests.sidecars.kinesis._memory import MemoryKinesis
from wojak.engine.protocol import MessageType
from wojak.sidecars.kinesis import KinesisSource
from wojak.sidecars.kinesis.source import (
    BODY_OMITTED_ATTRIBUTE,
    ORIGINAL_REASON_ATTRIBUTE,
    REASON_ATTRIBUTE,
    SEQUENCE_ATTRIBUTE,
    SHARD_ATTRIBUTE,
    SHARD_END,
)
from wojak.sidecars.testing.contract import TICK, Sidecar, dumps, eventually, ledger, order

pytestmark = pytest.mark.aws

DLQ_MAX = 1024  # bytes the dead-letter queue takes per message (SQS's smallest MaximumMessageSize)
POISON = dumps(order("poison-1", quantity="0", tag="p" * 120) | {"note": "n" * 4000})  # invalid, ~4.3 KB
EXPECTED = [f"before-{i}" for i in range(5)] + [f"after-{i}" for i in range(5)]


@pytest.fixture
def engine(engine_factory):
    proc = engine_factory(WOJAK_SANDBOX_FILL_PROBABILITY="1")
    assert proc.request(MessageType.TICK, {"tick": TICK})["verdict"] == "ok"
    return proc


def executed_in_order(engine) -> list[str]:
    with sqlite3.connect(engine.ledger_path) as db:
        return [row[0] for row in db.execute("SELECT client_order_id FROM executions ORDER BY rowid")]


async def test_a_dead_letter_the_queue_always_refuses_is_given_up_and_the_shard_moves_on(engine, aws_service):
    stream = KinesisStream(aws_service, shards=1)
    try:
        stream.sqs.set_queue_attributes(QueueUrl=stream.dlq_url, Attributes={"MaximumMessageSize": str(DLQ_MAX)})
        bodies = [dumps(order(f"before-{i}")) for i in range(5)] + [POISON] + [dumps(order(f"after-{i}")) for i in range(5)]
        where = await stream.publish_many([(b, None) for b in bodies])
        async with Sidecar(KinesisSource(stream.settings()), engine, settle_attempts=3) as sc:
            await eventually(lambda: len(ledger(engine)) == 10, 60, "every order behind the poison one")
            await eventually(lambda: _pending_is(stream, 0), 30, "the checkpoint at the end of the shard")
        assert executed_in_order(engine) == EXPECTED, "the account's orders behind the poison one waited for it, in order"
        assert set(ledger(engine).values()) == {1}
        assert sc.settlements("failed") == 3 and sc.verdicts("unsettleable") == 1
        assert [m.settled for m in sc.source.seen if m.body == POISON] == ["dead_letter"] * 3 + ["give_up"]
        (dl,) = await stream.dead_letter_messages()
        attributes = {k: v["StringValue"] for k, v in dl["MessageAttributes"].items()}
        assert attributes[REASON_ATTRIBUTE] == "unsettleable" and attributes[ORIGINAL_REASON_ATTRIBUTE] == "invalid"
        note = {"bytes": len(POISON), "sha256": hashlib.sha256(POISON).hexdigest()}
        assert json.loads(attributes[BODY_OMITTED_ATTRIBUTE]) == note and json.loads(dl["Body"]) == note
        assert (attributes[SHARD_ATTRIBUTE], attributes[SEQUENCE_ATTRIBUTE]) == where[5][1:]
        detail = json.loads(attributes["wojak-detail"])
        assert detail["settle_failures"] == 3 and "InvalidParameterValue" in detail["last_failure"]
    finally:
        stream.close()


async def _pending_is(stream: KinesisStream, n: int) -> bool:
    return await stream.pending() == n


def execution_order(engine) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    with sqlite3.connect(engine.ledger_path) as db:
        for account, coid in db.execute("SELECT account, client_order_id FROM executions ORDER BY rowid"):
            out.setdefault(account, []).append(coid)
    return out


async def test_a_parent_shard_is_finished_before_its_children_are_read(engine, aws_service):
    """Kinesis in memory (real resharding), the lease table and the DLQ on the emulator: 40 orders
    in the parent, a split, 40 more in the children, then the sidecar: every parent record is
    settled and the parent checkpointed SHARD_END before anything of a child is handed out."""
    stream = KinesisStream(aws_service, shards=1)
    memory = MemoryKinesis(stream.stream, shards=1)
    try:
        (parent,) = memory.shards
        for i in range(40):
            memory.put(dumps(order(f"parent-{i}", account=f"acct-{i % 4}")), f"acct-{i % 4}")
        children = memory.split(parent)
        for i in range(40):
            memory.put(dumps(order(f"child-{i}", account=f"acct-{i % 4}")), f"acct-{i % 4}")
        assert all(memory.shards[c].records for c in children), "the four accounts hash to both children"
        source = KinesisSource(stream.settings(), clients=lambda _: (memory.client(), stream.dynamodb, stream.sqs))
        async with Sidecar(source, engine) as sc:
            await eventually(lambda: len(ledger(engine)) == 80, 60, "every record")
            await eventually(lambda: all(stream.leases().get(c) and stream.leases()[c].checkpoint
                                         == memory.shards[c].records[-1]["SequenceNumber"] for c in children),
                             30, "the children checkpointed at their last record")
        leases = stream.leases()
        assert leases[parent].checkpoint == SHARD_END and leases[parent].owner is None
        assert sorted(k for k, lease in leases.items() if lease.parents == (parent,)) == sorted(children)
        assert ledger(engine) == {**{f"parent-{i}": 1 for i in range(40)}, **{f"child-{i}": 1 for i in range(40)}}
        shards = [m.coordinates[1] for m in sc.source.seen]
        assert shards.count(parent) == 40
        assert max(i for i, s in enumerate(shards) if s == parent) < min(i for i, s in enumerate(shards) if s in children), \
            "nothing of a child was handed out before the parent was finished"
        for account, ids in execution_order(engine).items():  # one account: its parent's orders, then its child's
            n = int(account[5:])
            assert ids == [f"parent-{i}" for i in range(40) if i % 4 == n] + [f"child-{i}" for i in range(40) if i % 4 == n]
        assert source.counts["ended"] == 1 and source.counts["taken"] == 3
    finally:
        stream.close()


async def test_on_the_emulator_a_closed_parent_is_read_to_its_end_before_its_children_are_leased(engine, aws_service):
    """moto keeps a split shard's records in the closed parent (and, unlike Kinesis, writes new
    ones there too: so nothing is published after the split). Its GetRecords never ends a shard:
    the sidecar ends it at its EndingSequenceNumber."""
    stream = KinesisStream(aws_service, shards=1)
    try:
        (parent,) = [s["ShardId"] for s in stream.shards()]
        await stream.publish_many([(dumps(order(f"parent-{i}", account=f"acct-{i % 4}")), None) for i in range(40)])
        await asyncio.to_thread(stream.kinesis.split_shard, StreamName=stream.stream, ShardToSplit=parent,
                                NewStartingHashKey=str(2**127))
        await asyncio.to_thread(stream.wait_active)
        source = KinesisSource(stream.settings())
        async with Sidecar(source, engine):
            await eventually(lambda: len(ledger(engine)) == 40, 60, "the parent's records")
            await eventually(lambda: stream.leases().get(parent) and stream.leases()[parent].checkpoint == SHARD_END, 30,
                             "the parent checkpointed SHARD_END")
            await eventually(lambda: source.counts["taken"] == 3, 30, "the children leased after it")
        leases = stream.leases()
        children = [k for k, lease in leases.items() if lease.parents == (parent,)]
        assert len(children) == 2 and set(ledger(engine).values()) == {1} and len(ledger(engine)) == 40
        assert source.counts["ended"] == 1
    finally:
        stream.close()


async def test_a_ticks_sidecar_process_uses_each_tick_of_two_collectors_once(engine, aws_service):
    from tests.sidecars._ticks import run_ticks_process

    stream = KinesisStream(aws_service, shards=2)
    try:
        async def publish(bodies: list[bytes]) -> None:
            await stream.publish_many([(b, None) for b in bodies])

        await run_ticks_process("kinesis", engine, stream.env(), publish, stream.pending)
    finally:
        stream.close()


async def test_dead_letters_to_a_stream_carry_the_reason_and_the_body(engine, aws_service):
    import base64

    stream = KinesisStream(aws_service, shards=1)
    dead = f"{stream.stream}-dlq"
    try:
        await asyncio.to_thread(stream.kinesis.create_stream, StreamName=dead, ShardCount=1)
        bad = dumps(order("bad-1", quantity="0"))
        where = await stream.publish(bad)
        await stream.publish(dumps(order("ok-1")))
        settings = stream.settings(dead_letter_queue_url="", dead_letter_stream=dead)
        async with Sidecar(KinesisSource(settings.to_config()), engine) as sc:
            await eventually(lambda: len(sc.source.settled()) == 2, 30, "both settled")
            await eventually(lambda: _pending_is(stream, 0), 30, "the checkpoint past both")
        shard = stream.kinesis.list_shards(StreamName=dead)["Shards"][0]["ShardId"]
        it = stream.kinesis.get_shard_iterator(StreamName=dead, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        records = stream.kinesis.get_records(ShardIterator=it)["Records"]
        assert len(records) == 1 and records[0]["PartitionKey"] == "acct-1"
        letter = json.loads(records[0]["Data"])
        assert letter["reason"] == "invalid" and [e["field"] for e in letter["detail"]["errors"]] == ["quantity"]
        assert (letter["stream"], letter["shard"], letter["sequence_number"]) == where
        assert base64.b64decode(letter["body_base64"]) == bad and ledger(engine) == {"ok-1": 1}
    finally:
        stream.kinesis.delete_stream(StreamName=dead)
        stream.close()
