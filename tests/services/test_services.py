"""Smoke tests: each service brought up by scripts/services answers a real client.

Client packages: aio-pika (RabbitMQ; a raw AMQP handshake is used if it is missing),
aiokafka (Kafka), boto3 (SQS/SNS/Kinesis and Lambda), couchbase 4.x (Couchbase);
the Pub/Sub emulator is driven through its REST API with the standard library.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import struct
import time
import urllib.request
import uuid
from urllib.parse import urlparse

import pytest


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# --------------------------------------------------------------------------- RabbitMQ

@pytest.mark.rabbitmq
def test_rabbitmq_publish_and_get(rabbitmq_service):
    try:
        import aio_pika
    except ImportError:  # no client installed: prove the AMQP 0-9-1 handshake at least
        u = urlparse(rabbitmq_service.url)
        with socket.create_connection((u.hostname, u.port or 5672), timeout=10) as s:
            s.sendall(b"AMQP\x00\x00\x09\x01")
            ftype, _ch, size = struct.unpack(">BHI", s.recv(7))
            assert ftype == 1 and size > 4
            assert s.recv(4) == struct.pack(">HH", 10, 10)  # Connection.Start
        return

    async def roundtrip() -> bytes:
        conn = await aio_pika.connect_robust(rabbitmq_service.url, timeout=15)
        async with conn:
            ch = await conn.channel()
            q = await ch.declare_queue(_uid("smoke"), auto_delete=True)
            await ch.default_exchange.publish(aio_pika.Message(b"hello wojak"), routing_key=q.name)
            for _ in range(50):
                msg = await q.get(fail=False)
                if msg is not None:
                    await msg.ack()
                    return msg.body
                await asyncio.sleep(0.1)
            raise AssertionError("message never arrived")

    assert asyncio.run(roundtrip()) == b"hello wojak"


# --------------------------------------------------------------------------- Kafka

@pytest.mark.kafka
def test_kafka_produce_and_consume(kafka_service):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = _uid("smoke")

    async def roundtrip():
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_service.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=kafka_service.bootstrap, acks="all")
        await producer.start()
        try:
            md = await producer.send_and_wait(topic, b"fill", key=b"order-1")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_service.bootstrap, group_id=_uid("g"),
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            rec = await asyncio.wait_for(consumer.getone(), timeout=30)
            await consumer.commit()
        finally:
            await consumer.stop()
        return md, rec

    md, rec = asyncio.run(roundtrip())
    assert md.offset == 0
    assert (rec.key, rec.value) == (b"order-1", b"fill")


# --------------------------------------------------------------------------- Pub/Sub emulator

def _rest(method: str, url: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        text = r.read().decode()
    return json.loads(text) if text.strip() else {}


@pytest.mark.pubsub
def test_pubsub_publish_and_pull(pubsub_service):
    base = pubsub_service.base_url
    topic, sub = _uid("orders"), _uid("orders-sub")
    _rest("PUT", f"{base}/topics/{topic}", {})
    _rest("PUT", f"{base}/subscriptions/{sub}",
          {"topic": f"projects/{pubsub_service.project}/topics/{topic}", "ackDeadlineSeconds": 10})
    published = _rest("POST", f"{base}/topics/{topic}:publish",
                      {"messages": [{"data": base64.b64encode(b"fill").decode(), "attributes": {"k": "v"}}]})
    assert len(published["messageIds"]) == 1
    got = []
    deadline = time.monotonic() + 30
    while not got and time.monotonic() < deadline:
        got = _rest("POST", f"{base}/subscriptions/{sub}:pull", {"maxMessages": 1}).get("receivedMessages", [])
    assert got, "no message pulled"
    msg = got[0]["message"]
    assert base64.b64decode(msg["data"]) == b"fill" and msg["attributes"] == {"k": "v"}
    _rest("POST", f"{base}/subscriptions/{sub}:acknowledge", {"ackIds": [got[0]["ackId"]]})


# --------------------------------------------------------------------------- AWS (moto)

@pytest.mark.aws
def test_aws_sqs_sns_kinesis(aws_service):
    sqs, sns, kinesis = aws_service.client("sqs"), aws_service.client("sns"), aws_service.client("kinesis")

    # SQS send/receive
    q = sqs.create_queue(QueueName=_uid("orders"))["QueueUrl"]
    sqs.send_message(QueueUrl=q, MessageBody="fill")
    msgs = sqs.receive_message(QueueUrl=q, MaxNumberOfMessages=1, WaitTimeSeconds=1).get("Messages", [])
    assert [m["Body"] for m in msgs] == ["fill"]
    sqs.delete_message(QueueUrl=q, ReceiptHandle=msgs[0]["ReceiptHandle"])

    # SNS -> SQS (raw delivery)
    topic_arn = sns.create_topic(Name=_uid("fills"))["TopicArn"]
    q2 = sqs.create_queue(QueueName=_uid("fills-q"))["QueueUrl"]
    q2_arn = sqs.get_queue_attributes(QueueUrl=q2, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=q2_arn, Attributes={"RawMessageDelivery": "true"})
    sns.publish(TopicArn=topic_arn, Message="via-sns")
    msgs = sqs.receive_message(QueueUrl=q2, MaxNumberOfMessages=1, WaitTimeSeconds=2).get("Messages", [])
    assert [m["Body"] for m in msgs] == ["via-sns"]

    # Kinesis put/get
    stream = _uid("ticks")
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    put = kinesis.put_record(StreamName=stream, Data=b"tick", PartitionKey="BTC")
    it = kinesis.get_shard_iterator(StreamName=stream, ShardId=put["ShardId"],
                                    ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = kinesis.get_records(ShardIterator=it)["Records"]
    assert [r["Data"] for r in records] == [b"tick"]


# --------------------------------------------------------------------------- Couchbase (gocaves)

@pytest.mark.couchbase
def test_couchbase_kv_subdoc_counter(couchbase_service):
    from datetime import timedelta

    import couchbase.subdocument as SD
    from couchbase.auth import PasswordAuthenticator
    from couchbase.cluster import Cluster
    from couchbase.diagnostics import ServiceType
    from couchbase.options import ClusterOptions, DeltaValue, IncrementOptions, SignedInt64, WaitUntilReadyOptions

    cluster = Cluster.connect(couchbase_service.url, ClusterOptions(
        PasswordAuthenticator(couchbase_service.username, couchbase_service.password)))
    try:
        bucket = cluster.bucket(couchbase_service.bucket)
        cluster.wait_until_ready(timedelta(seconds=30), WaitUntilReadyOptions(service_types=[ServiceType.KeyValue]))
        coll = bucket.default_collection()
        key = _uid("order")
        coll.upsert(key, {"status": "new", "fill": {"qty": "1"}})
        assert coll.get(key).content_as[dict] == {"status": "new", "fill": {"qty": "1"}}
        assert coll.lookup_in(key, [SD.get("fill.qty")]).content_as[str](0) == "1"
        coll.mutate_in(key, [SD.upsert("status", "filled")])
        assert coll.get(key).content_as[dict]["status"] == "filled"
        ctr = _uid("seq")
        assert coll.binary().increment(ctr, IncrementOptions(initial=SignedInt64(10))).content == 10
        assert coll.binary().increment(ctr, IncrementOptions(delta=DeltaValue(5))).content == 15
    finally:
        cluster.close()


# --------------------------------------------------------------------------- Lambda (sandbox handler)

# `lambda` is a keyword, so the marker is spelled with getattr
@getattr(pytest.mark, "lambda")
def test_lambda_invoke_sandbox_handler(lambda_service):
    client = lambda_service.client()
    coid = _uid("coid")
    event = {"action": "execute", "orders": [{
        "client_order_id": coid, "symbol": "BTC-USD", "side": "buy", "quantity": "1",
        "order_type": "limit", "limit_price": "100"}]}
    resp = client.invoke(FunctionName=lambda_service.function_name, Payload=json.dumps(event).encode())
    assert resp["StatusCode"] == 200
    payload = json.loads(resp["Payload"].read())
    assert "FunctionError" not in resp, payload
    assert isinstance(payload, dict), payload
    reports = payload["reports"]
    assert len(reports) == 1 and reports[0]["client_order_id"] == coid
    assert reports[0]["status"] in ("filled", "partially_filled", "accepted", "rejected")
    # the sandbox is deterministic: the same order gives the same answer
    again = json.loads(client.invoke(FunctionName=lambda_service.function_name,
                                     Payload=json.dumps(event).encode())["Payload"].read())
    assert again["reports"][0]["status"] == reports[0]["status"]


# --------------------------------------------------------------------------- the plugin itself

@pytest.mark.aws
def test_marker_alone_brings_the_service_up():
    """A test that only carries a service marker gets the fixture, and so the env vars."""
    import os

    endpoint = os.environ["WOJAK_TEST_AWS_ENDPOINT"]
    with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=10) as r:
        assert r.status == 200
