"""Dead letters always fit in one frame, and a message that cannot be settled does not block
the queue (issue 9, finding 1), against the real RabbitMQ and a real engine.

A publisher may send headers up to RabbitMQ's frame limit (frame_max, 128 KiB). The sidecar's
dead-letter copy adds x-wojak-* headers; over the limit, the broker closes the whole connection
(FRAME_ERROR frame_too_large), every unacked message returns, this one is redelivered and the
cycle repeats: before the fix, 63 of 1,000 valid orders behind such a message executed in 45 s.
Now the copy is held to the negotiated frame_max (publisher headers dropped largest first and
named in x-wojak-headers-dropped; the reason always kept), and a message whose settlements keep
failing for any other reason is given up after WOJAK_SIDECAR_SETTLE_ATTEMPTS.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from types import SimpleNamespace

import aio_pika
import pytest

from tests._processes import EngineProcess, free_port
from tests.sidecars.rabbitmq.test_rabbitmq import RabbitMQBroker
from wojak.engine.protocol import MessageType
from wojak.sidecars.rabbitmq import RabbitMQSidecarSettings, RabbitMQSource
from wojak.sidecars.rabbitmq.source import (
    DETAIL_HEADER,
    DROPPED_HEADER,
    FRAME_OVERHEAD,
    MAX_DETAIL_BYTES,
    QUEUE_HEADER,
    REASON_HEADER,
    _properties_size,
    dead_letter_message,
)  # fmt: skip
from wojak.sidecars.testing.contract import ACCOUNTS, TICK, Sidecar, dumps, eventually, ledger, order, stored_orders

FRAME_MAX = 131072  # RabbitMQ's default, which the test broker uses


def incoming(headers: dict | None, body: bytes = b"{not json", **props) -> SimpleNamespace:
    """What dead_letter_message reads of an incoming message."""
    base = dict(content_type=None, content_encoding=None, correlation_id=None, message_id="m-1", reply_to=None,
                timestamp=None, type=None, app_id=None)  # fmt: skip
    return SimpleNamespace(body=body, headers=headers, **{**base, **props})


def near_limit_headers(frame_max: int = FRAME_MAX, **small) -> dict:
    """Publisher headers that put a message's content header a few bytes under the frame limit."""
    headers = {"x-trace": "trace-1", "x-small": 7, **small, "x-big": ""}
    probe = aio_pika.Message(b"{not json", headers=headers, message_id="poison-big")
    room = frame_max - FRAME_OVERHEAD - 24 - _properties_size(probe)
    headers["x-big"] = "y" * room
    assert frame_max - FRAME_OVERHEAD - 32 < _properties_size(aio_pika.Message(b"{not json", headers=headers,
                                                                              message_id="poison-big")) <= frame_max - FRAME_OVERHEAD  # fmt: skip
    return headers


# -- the copy's budget (no broker) ------------------------------------------------------


def test_a_copy_of_headers_just_under_the_frame_limit_fits_and_names_what_it_dropped():
    headers = near_limit_headers()
    copy = dead_letter_message(incoming(headers), "invalid_json", {"error": "e" * 10_000}, "q.orders", FRAME_MAX)
    assert _properties_size(copy) <= FRAME_MAX - FRAME_OVERHEAD
    h = copy.headers
    assert h[REASON_HEADER] == "invalid_json" and h[QUEUE_HEADER] == "q.orders"
    assert "x-big" not in h and h["x-trace"] == "trace-1" and h["x-small"] == 7, "only the header that did not fit goes"
    note = json.loads(h[DROPPED_HEADER])
    assert note["count"] == 1 and note["names"] == ["x-big"] and note["bytes"] > 130_000
    assert len(h[DETAIL_HEADER].encode()) <= MAX_DETAIL_BYTES and h[DETAIL_HEADER].endswith("...(truncated)")
    assert copy.body == b"{not json" and copy.message_id == "m-1"


def test_many_small_headers_are_kept_as_far_as_they_fit():
    headers = {f"x-h-{i:05d}": "v" * 20 for i in range(6000)}  # 35 bytes each encoded: 210 KB in 6,000 entries
    copy = dead_letter_message(incoming(headers), "conflict", {"client_order_id": "c-1"}, "q", FRAME_MAX)
    assert _properties_size(copy) <= FRAME_MAX - FRAME_OVERHEAD
    kept = [k for k in copy.headers if k.startswith("x-h-")]
    note = json.loads(copy.headers[DROPPED_HEADER])
    assert len(kept) + note["count"] == 6000 and len(kept) > 3700 and len(note["names"]) == 16
    assert json.loads(copy.headers[DETAIL_HEADER]) == {"client_order_id": "c-1"}, "the detail fits, whole"


@pytest.mark.parametrize("frame_max", [4096, 8192, FRAME_MAX])
def test_with_a_small_frame_max_the_detail_is_cut_and_the_reason_kept(frame_max):
    headers = {"x-a": "a" * 3000, "x-b": "b" * 3000}
    long_reason = "account_not_permitted"
    copy = dead_letter_message(incoming(headers, correlation_id="c" * 255, reply_to="r" * 255), long_reason,
                               {"detail": "d" * 50_000}, "q" * 200, frame_max)  # fmt: skip
    assert _properties_size(copy) <= frame_max - FRAME_OVERHEAD
    assert copy.headers[REASON_HEADER] == long_reason
    if frame_max == 4096:
        assert "x-a" not in copy.headers and "x-b" not in copy.headers
        assert len(copy.headers.get(DETAIL_HEADER, "")) < MAX_DETAIL_BYTES


def test_headers_pamqp_cannot_encode_again_are_kept_as_byte_arrays():
    # pamqp decodes a long string that is not UTF-8 as bytes, and cannot encode bytes: the old
    # copy failed to publish (TypeError) on every delivery
    headers = {"x-raw": b"\xff\xfe raw", "x-nested": {"inner": [b"\xff", "ok"]}, "x-fine": "fine"}
    copy = dead_letter_message(incoming(headers), "invalid", {}, "q", FRAME_MAX)
    assert copy.headers["x-raw"] == bytearray(b"\xff\xfe raw") and copy.headers["x-fine"] == "fine"
    assert DROPPED_HEADER not in copy.headers
    _properties_size(copy)  # encodes


def test_a_minimal_copy_keeps_none_of_the_publishers_headers():
    copy = dead_letter_message(incoming({"x-a": 1, "x-b": "2"}), "unsettleable", {"settle_failures": 5}, "q",
                               FRAME_MAX, publisher_headers=False)  # fmt: skip
    assert set(copy.headers) == {REASON_HEADER, QUEUE_HEADER, DETAIL_HEADER, DROPPED_HEADER}
    assert json.loads(copy.headers[DROPPED_HEADER])["names"] == ["x-a", "x-b"]


# -- against the real broker and engine -------------------------------------------------


@pytest.fixture
def engine(engine_factory) -> EngineProcess:
    proc = engine_factory(WOJAK_SANDBOX_FILL_PROBABILITY="1")
    assert proc.request(MessageType.TICK, {"tick": TICK})["verdict"] == "ok"
    return proc


async def take_all(channel, queue: str) -> list:
    q = await channel.declare_queue(queue, passive=True)
    out = []
    while (message := await q.get(no_ack=True, fail=False)) is not None:
        out.append(message)
    return out


@pytest.mark.rabbitmq
async def test_an_oversized_header_message_is_dead_lettered_once_and_1000_orders_behind_it_execute(engine, rabbit):
    total = 1000
    headers = near_limit_headers()
    await rabbit.publish(b"{not json", "poison-big", headers=headers)  # at the head of the queue
    await asyncio.gather(*(rabbit.publish(dumps(order(f"ok-{i}", account=f"acct-{i % 8}")), f"ok-{i}")
                           for i in range(total)))  # fmt: skip
    c = rabbit.config
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("WOJAK_SIDECAR")},
           "WOJAK_ENGINE_SOCKET": str(engine.socket), "WOJAK_LOG_LEVEL": "WARNING", "WOJAK_SIDECAR_ACCOUNTS": ACCOUNTS,
           "WOJAK_SIDECAR_RABBITMQ_URL": c.url.get_secret_value(), "WOJAK_SIDECAR_RABBITMQ_QUEUE": c.queue,
           "WOJAK_SIDECAR_RABBITMQ_DEAD_LETTER_EXCHANGE": c.dead_letter_exchange,
           "WOJAK_SIDECAR_RABBITMQ_DEAD_LETTER_QUEUE": c.dead_letter_queue,
           "WOJAK_SIDECAR_HEALTH_PORT": str(free_port())}  # fmt: skip
    log = engine.data_dir / "sidecar-oversized.log"
    started = time.monotonic()
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "wojak", "sidecar", "rabbitmq"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip
    try:
        await eventually(lambda: proc.poll() is not None or len(ledger(engine)) >= total, 90, f"{total} executions")
        took = time.monotonic() - started
        assert proc.poll() is None, log.read_text()[-3000:]
        await eventually(lambda: rabbit_empty(rabbit), 15, "an empty queue")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "frame_too_large" not in text and "FRAME_ERROR" not in text, text[-3000:]
    assert ledger(engine) == {f"ok-{i}": 1 for i in range(total)}
    letters = await take_all(rabbit.channel, c.dead_letter_queue)
    assert len(letters) == 1, "dead-lettered once: never redelivered by a closed connection"
    (dl,) = letters
    assert dl.body == b"{not json" and dl.message_id == "poison-big"
    assert dl.headers[REASON_HEADER] == "invalid_json" and dl.headers["x-trace"] == "trace-1"
    assert json.loads(dl.headers[DROPPED_HEADER])["names"] == ["x-big"]
    print(f"\n{total} orders behind a message with {len(headers['x-big']):,} bytes of headers: all executed in "
          f"{took:.1f}s from the sidecar's start; the message dead-lettered once (x-big dropped and named)")


@pytest.mark.rabbitmq
async def test_a_message_whose_dead_letter_cannot_be_published_is_given_up_to_the_queues_own_dlx(engine, rabbitmq_service, caplog):
    """The sidecar's DLX routes nowhere (its DLQ is not bound): every dead letter is returned
    (mandatory), so its settlement fails and the broker redelivers it. After 3 attempts
    (WOJAK_SIDECAR_SETTLE_ATTEMPTS=3) the sidecar logs it with its body, counts it, and, the
    minimal copy failing too, rejects it: the queue's own x-dead-letter-exchange (here another
    exchange, as an operator's topology may have it) keeps it. Orders behind it go through."""
    prefix = f"wojak-test.{uuid.uuid4().hex[:12]}"
    names = SimpleNamespace(queue=f"{prefix}.orders", dlx=f"{prefix}.dlx", dlq=f"{prefix}.dlq",
                            parking_x=f"{prefix}.parking", parking_q=f"{prefix}.parked")  # fmt: skip
    connection = await aio_pika.connect(rabbitmq_service.url)
    channel = await connection.channel()
    try:
        await channel.declare_exchange(names.dlx, aio_pika.ExchangeType.DIRECT, durable=True)  # nothing bound
        parking = await channel.declare_exchange(names.parking_x, aio_pika.ExchangeType.FANOUT, durable=True)
        parked = await channel.declare_queue(names.parking_q, durable=True)
        await parked.bind(parking)
        await channel.declare_queue(names.queue, durable=True, arguments={"x-dead-letter-exchange": names.parking_x})
        config = RabbitMQSidecarSettings(url=rabbitmq_service.url, queue=names.queue, dead_letter_exchange=names.dlx,
                                       dead_letter_queue=names.dlq, declare_topology=False)  # fmt: skip
        publish = lambda body, mid, **kw: channel.default_exchange.publish(  # noqa: E731
            aio_pika.Message(body, message_id=mid, **kw), routing_key=names.queue)
        await publish(dumps(order("bad-1", quantity="0")), "m-bad", headers={"x-trace": "t-9"})
        for i in range(20):
            await publish(dumps(order(f"after-{i}")), f"m-{i}")
        started = time.monotonic()
        caplog.set_level("ERROR", logger="wojak.sidecars._core.runner")
        async with Sidecar(RabbitMQSource(config), engine, settle_attempts=3, settle_timeout=2.0) as sc:
            await eventually(lambda: len(ledger(engine)) == 20, 30, "the orders behind it")
            orders_done = time.monotonic() - started
            parked_messages = await eventually(lambda: take_all(channel, names.parking_q), 30, "the parked message")
            given_up = time.monotonic() - started
            await eventually(lambda: sc.inflight() == 0, 10, "nothing in flight")
        assert (await channel.declare_queue(names.queue, passive=True)).declaration_result.message_count == 0
    finally:
        for q in (names.queue, names.parking_q):
            await channel.queue_delete(q)
        for x in (names.dlx, names.parking_x):
            await channel.exchange_delete(x)
        await connection.close()
    (kept,) = parked_messages
    assert kept.body == dumps(order("bad-1", quantity="0")) and kept.message_id == "m-bad"
    assert kept.headers["x-trace"] == "t-9" and kept.headers["x-death"][0]["reason"] == "rejected"
    assert sc.verdicts("invalid") == 3 and sc.verdicts("unsettleable") == 1 and sc.settlements("give_up") == 1
    assert sc.settlements("failed") == 3
    assert ledger(engine) == {f"after-{i}": 1 for i in range(20)} and "bad-1" not in stored_orders(engine)
    (line,) = [r.getMessage() for r in caplog.records if "giving up message" in r.getMessage()]
    assert "after 3 failed settlements" in line and '\\"bad-1\\"' in line and "sha256=" in line, line
    print(f"\nthe unpublishable dead letter: 20 orders behind it executed in {orders_done:.1f}s; the message given "
          f"up after 3 failed settlements and kept by the queue's own DLX in {given_up:.1f}s")


async def rabbit_empty(rabbit: RabbitMQBroker) -> bool:
    return await rabbit.pending() == 0
