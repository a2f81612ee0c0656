"""The Kinesis sidecar's results stream (WOJAK_SIDECAR_KINESIS_RESULTS_STREAM), against Kinesis on
the AWS emulator and a real engine: the verdict of an ``ack_and_publish`` (here ``denied``) is put
on the results stream, with the record's coordinates and partition key, before the record is acked;
a verdict nothing publishes (``filled``) puts nothing; a put the stream refuses requeues the record,
and its redelivery (answered ``duplicate``) publishes the same outcome once the stream is there."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from tests.sidecars._probes import engine_with_a_tick
from tests.sidecars.kinesis._broker import KinesisStream
from wojak.sidecars.kinesis import KinesisSource
from wojak.sidecars.testing.contract import Sidecar, dumps, eventually, ledger, order

pytestmark = pytest.mark.aws

# 30000 is 25% off the last tick (24000): denied (price_band_exceeded): acked and its result published
DENIED = dumps(order("band-1", limit_price="30000"))
FILLED = dumps(order("fill-1"))


@pytest.fixture
def engine(engine_factory):
    return engine_with_a_tick(engine_factory)


@pytest.fixture
def stream(aws_service):
    s = KinesisStream(aws_service, shards=2)
    s.results = f"{s.stream}-results"
    yield s
    try:
        s.kinesis.delete_stream(StreamName=s.results, EnforceConsumerDeletion=True)
    except Exception:
        pass
    s.close()


def create_results_stream(stream: KinesisStream) -> None:
    stream.kinesis.create_stream(StreamName=stream.results, ShardCount=1)
    while stream.kinesis.describe_stream_summary(StreamName=stream.results)["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE":
        time.sleep(0.05)


def results(stream: KinesisStream) -> list[dict[str, Any]]:
    shard = stream.kinesis.list_shards(StreamName=stream.results)["Shards"][0]["ShardId"]
    iterator = stream.kinesis.get_shard_iterator(StreamName=stream.results, ShardId=shard,
                                                 ShardIteratorType="TRIM_HORIZON")["ShardIterator"]  # fmt: skip
    return stream.kinesis.get_records(ShardIterator=iterator, Limit=100)["Records"]


async def test_a_denied_verdict_is_put_on_the_results_stream_before_the_ack(engine, stream):
    await asyncio.to_thread(create_results_stream, stream)
    denied_at = await stream.publish(DENIED)
    await stream.publish(FILLED)
    async with Sidecar(KinesisSource(stream.settings(results_stream=stream.results)), engine) as sc:
        await eventually(lambda: sc.settlements("ack") == 2, 30, "both acked")
    assert sc.verdicts("denied") == 1 and sc.verdicts("filled") == 1 and sc.settlements("publish") == 1
    (record,) = await asyncio.to_thread(results, stream)  # the filled order publishes nothing
    payload = json.loads(record["Data"])
    assert payload["client_order_id"] == "band-1" and payload["verdict"] == "denied"
    assert payload["order"]["state"] == "denied" and "price_band_exceeded" in json.dumps(payload["reason"])
    assert (payload["stream"], payload["shard"], payload["sequence_number"]) == denied_at
    assert "duplicate" not in payload
    assert record["PartitionKey"] == "acct-1", "the record's partition key: one account's results in order"
    assert ledger(engine) == {"fill-1": 1}, "a denied order never reaches the venue"
    assert await stream.pending() == 0 and await stream.dead_letters() == []


async def test_a_result_the_stream_refuses_requeues_the_record_and_its_redelivery_publishes_it(engine, stream):
    published_at = await stream.publish(DENIED)
    # the results stream does not exist yet: the put is refused, the record requeued (held ~1 s)
    async with Sidecar(KinesisSource(stream.settings(results_stream=stream.results)), engine, backoff_base=1.0) as sc:
        await eventually(lambda: sc.settlements("requeue") >= 1, 30, "the failed publication's requeue")
        assert sc.verdicts("denied") == 1 and sc.settlements("ack") == 0
        await asyncio.to_thread(create_results_stream, stream)
        await eventually(lambda: sc.settlements("ack") == 1, 60, "the redelivery acked")
    assert sc.verdicts("duplicate") >= 1, "the redelivery was answered duplicate"
    records = await asyncio.to_thread(results, stream)
    assert len(records) == 1, "published once the stream was there"
    payload = json.loads(records[0]["Data"])
    assert payload["client_order_id"] == "band-1" and payload["verdict"] == "denied" and payload["duplicate"] is True
    assert (payload["stream"], payload["shard"], payload["sequence_number"]) == published_at
    assert ledger(engine) == {}
    assert await stream.pending() == 0 and await stream.dead_letters() == []
