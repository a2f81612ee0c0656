"""The delivery loop against the SQLite outbox, signatures, and the SQS sink (moto)."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

import pytest

from tests._processes import free_port
from tests.engine.escalation._receiver import SECRET, Receiver
from tests.engine.store.test_store_contract import order
from wojak.engine.domain import OrderEvent
from wojak.engine.escalation import EscalationDelivery, SinkError, SqsSink, WebhookSink, open_sink, sign, verify
from wojak.engine.store import SQLiteStore


def escalate(o, view):
    o.apply(OrderEvent.ESCALATED)
    return {"key": f"esc:{o.key}", "why": "max_position_exceeded"}


async def outbox(tmp_path, n=3) -> SQLiteStore:
    store = SQLiteStore(tmp_path / "s.sqlite")
    await store.admit([order(f"e{i}") for i in range(n)], escalate)
    return store


def test_signature_covers_timestamp_and_body_and_rejects_replays():
    body = b'{"key":"esc:x"}'
    headers = {"X-Wojak-Timestamp": "1000", "X-Wojak-Signature": sign(b"s", "1000", body)}
    assert verify(b"s", headers, body, now=1000)
    assert not verify(b"s", headers, body + b" ", now=1000)
    assert not verify(b"other", headers, body, now=1000)
    assert not verify(b"s", {**headers, "X-Wojak-Timestamp": "1001"}, body, now=1000)
    assert not verify(b"s", headers, body, now=1000 + 301)  # a replay, too late


def test_open_sink_urls_and_the_secret_comes_from_the_environment():
    assert isinstance(open_sink("http://127.0.0.1:1/x", {"WOJAK_ESCALATION_WEBHOOK_SECRET": "s"}), WebhookSink)
    with pytest.raises(ValueError, match="WOJAK_ESCALATION_WEBHOOK_SECRET"):
        open_sink("http://127.0.0.1:1/x", {})
    with pytest.raises(ValueError, match="ESCALATION_SINK"):
        open_sink("ftp://x", {})


async def test_sink_down_keeps_the_outbox_then_delivers_each_once_with_valid_signatures(tmp_path):
    store = await outbox(tmp_path)
    port = free_port()
    receiver = Receiver(port)
    delivery = EscalationDelivery(store, WebhookSink(receiver.url, SECRET.encode(), timeout=2))
    with pytest.raises(SinkError):
        await delivery.run_once()
    assert len(await store.undelivered_escalations()) == 3
    receiver.start()
    try:
        assert await delivery.run_once() == 3
        assert await store.undelivered_escalations() == []
        assert await delivery.run_once() == 0
    finally:
        receiver.stop()
    assert sorted(receiver.keys) == ["esc:acct/e0", "esc:acct/e1", "esc:acct/e2"] and len(receiver.bodies) == 3
    assert receiver.bad_signatures == 0
    assert receiver.keys["esc:acct/e1"]["escalation"]["why"] == "max_position_exceeded"
    await store.close()


async def test_the_loop_retries_until_the_sink_is_back(tmp_path):
    store = await outbox(tmp_path, 2)
    port = free_port()
    receiver = Receiver(port)
    delivery = EscalationDelivery(store, WebhookSink(receiver.url, SECRET.encode(), timeout=1), interval=0.05, max_backoff=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(delivery.run(stop))
    await asyncio.sleep(0.3)
    assert len(await store.undelivered_escalations()) == 2
    receiver.start()
    try:
        deadline = time.monotonic() + 10
        while await store.undelivered_escalations() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
        receiver.stop()
    assert await store.undelivered_escalations() == []
    assert sorted(receiver.keys) == ["esc:acct/e0", "esc:acct/e1"]
    await store.close()


@pytest.mark.aws
async def test_sqs_sink_delivers_with_the_idempotency_key(tmp_path, aws_service):
    sqs = aws_service.client("sqs")
    name = f"wojak-escalations-{int(time.time() * 1000)}"
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    import os

    os.environ.setdefault("AWS_ACCESS_KEY_ID", aws_service.access_key_id)
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", aws_service.secret_access_key)
    store = await outbox(tmp_path, 2)
    sink = open_sink(f"sqs://{name}?endpoint={aws_service.endpoint_url}&region={aws_service.region}", os.environ)
    assert isinstance(sink, SqsSink)
    assert await EscalationDelivery(store, sink).run_once() == 2
    got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=1)
    messages = got.get("Messages", [])
    assert sorted(m["MessageAttributes"]["idempotency_key"]["StringValue"] for m in messages) == ["esc:acct/e0", "esc:acct/e1"]
    assert json.loads(messages[0]["Body"])["escalation"]["why"] == "max_position_exceeded"
    assert await store.undelivered_escalations() == []
    down = SqsSink("does-not-exist", "http://127.0.0.1:1", "us-east-1")
    with pytest.raises(SinkError):
        await down.deliver("esc:x", {"d": str(Decimal(1))})
    await store.close()
