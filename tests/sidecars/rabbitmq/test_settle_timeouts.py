"""Every settlement is bounded (issue 9, finding 2), against the real RabbitMQ and a real engine.

The sidecar reaches the broker through a proxy (tests/sidecars/rabbitmq/_proxy.py) that can
cut its connection (as the broker did, closing it again and again) or stall it: the broker's
deliveries still arrive, but nothing the sidecar sends gets through, so its socket buffers fill
and its writes block, as over a wedged network path. aiormq waits for each ack's frame to be
written, and a frame still queued when the connection drops is never written nor failed:
unbounded, those waits never end. Here they time out
(``settle_timeout``), count as failed, the broker redelivers the messages once the connection
is back, the engine answers the executed ones ``duplicate``, and every order executes once.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from pydantic import SecretStr

from tests._processes import EngineProcess
from tests.sidecars.rabbitmq._proxy import StallableProxy
from tests.sidecars.rabbitmq.test_rabbitmq import RabbitMQBroker
from wojak.engine.protocol import MessageType
from wojak.sidecars.rabbitmq import RabbitMQSource
from wojak.sidecars.testing.contract import TICK, Sidecar, dumps, eventually, ledger, order

pytestmark = pytest.mark.rabbitmq

SETTLE = 1.0
POISON_BYTES = 60_000  # a dead letter's copy this large fills the stalled socket's buffers quickly


@pytest.fixture
async def proxy(rabbitmq_service):
    p = await StallableProxy(rabbitmq_service.url).start()
    yield p
    await p.close()


@pytest.fixture
def engine(engine_factory) -> EngineProcess:
    proc = engine_factory(WOJAK_SANDBOX_FILL_PROBABILITY="1")
    assert proc.request(MessageType.TICK, {"tick": TICK})["verdict"] == "ok"
    return proc


def poison(k: int) -> bytes:
    return b'{"client_order_id": "poison-%d", "pad": "' % k + b"p" * POISON_BYTES  # not JSON: dead-lettered


async def publish_mix(rabbit: RabbitMQBroker, valid: int, bad: int) -> None:
    bodies = [(dumps(order(f"st-{i}", account=f"acct-{i % 8}")), f"st-{i}") for i in range(valid)]
    bodies += [(poison(k), f"poison-{k}") for k in range(bad)]
    bodies.sort(key=lambda b: hash(b[1]) % 97)  # interleaved
    await asyncio.gather(*(rabbit.publish(b, m) for b, m in bodies))


def through(proxy: StallableProxy, rabbit: RabbitMQBroker, **kw) -> RabbitMQSource:
    changes = {"url": SecretStr(proxy.proxied_url), "settle_timeout": SETTLE, "close_timeout": 1.0, "reconnect_interval": 0.2, **kw}
    return RabbitMQSource(rabbit.config.model_copy(update=changes))


async def test_a_stalled_connection_never_leaks_in_flight_messages_and_loses_nothing(engine, rabbit, proxy):
    valid, bad = 200, 40
    sc = Sidecar(through(proxy, rabbit, prefetch=64), engine, concurrency=64, settle_timeout=SETTLE, drain_seconds=5)
    async with sc:
        await eventually(sc.source.is_ready, 10, "the sidecar consuming through the proxy")
        proxy.stall()  # from here the broker hears nothing from the sidecar
        await publish_mix(rabbit, valid, bad)
        await eventually(lambda: len(sc.source.seen) >= 64, 20, "a prefetch window of deliveries")
        await eventually(lambda: sc.settlements("failed") > 0, 20, "a settlement to time out")
        # every message handed over finishes: its settlement failed in bounded time
        await eventually(lambda: sc.inflight() == 0 and all(m.settled for m in sc.source.seen), 4 * SETTLE + 10,
                         "the in-flight gauge back at 0 with the broker still stalled")  # fmt: skip
        stalled = {"delivered": len(sc.source.seen), "failed": sc.settlements("failed"), "held_up": proxy.held_up}
        assert stalled["held_up"] > 0, "the stall held the sidecar's writes"
        # the connection drops; the broker returns every unacked message; the sidecar reconnects
        proxy.cut()
        proxy.resume()
        started = time.monotonic()
        await eventually(lambda: len(ledger(engine)) >= valid, 60, f"{valid} executions")
        await eventually(lambda: settled_out(rabbit, sc, bad), 30, "an empty queue, every dead letter, nothing in flight")
        recovered = time.monotonic() - started
    assert ledger(engine) == {f"st-{i}": 1 for i in range(valid)}, "every order executed exactly once"
    letters = await rabbit.dead_letters()
    assert {dl.reason for dl in letters} == {"invalid_json"}
    assert {dl.body for dl in letters} == {poison(k) for k in range(bad)}, "every poison message dead-lettered"
    assert sc.verdicts("duplicate") >= 1, "orders executed while stalled came back as duplicates, acked once"
    print(f"\nstalled: {stalled['delivered']} delivered, {stalled['failed']:.0f} settlements timed out "
          f"({SETTLE}s each), in-flight back to 0 while stalled; after the cut: {valid} orders executed once and "
          f"{bad} dead letters in {recovered:.1f}s ({len(letters)} in the DLQ), "
          f"{sc.verdicts('duplicate'):.0f} duplicates acked")  # fmt: skip


async def test_connection_drops_while_acks_flow_leak_nothing_and_shutdown_does_not_wait(engine, rabbit, proxy):
    """The reported leak: the broker closed the connection again and again while acks were
    flowing; the acks queued at each close never completed, the in-flight gauge climbed (1 to
    54) and shutdown waited out the drain window. On the code before the fix this scenario
    leaves the gauge at about 33 with nothing left to do and a 3 s stop; here it is 0 and the
    stop immediate."""
    total, cuts, drain = 3000, 10, 3.0
    for chunk in range(0, total, 500):
        await asyncio.gather(*(rabbit.publish(dumps(order(f"c-{i}", account=f"acct-{i % 8}")), f"c-{i}")
                               for i in range(chunk, min(total, chunk + 500))))  # fmt: skip
    sc = Sidecar(through(proxy, rabbit, prefetch=64), engine, concurrency=64, settle_timeout=SETTLE, drain_seconds=drain)
    async with sc:
        started = time.monotonic()
        for _ in range(cuts):  # the connection drops mid-stream, every 0.4 s
            await asyncio.sleep(0.4)
            proxy.cut()
        await eventually(lambda: len(ledger(engine)) >= total, 60, f"{total} executions")
        await eventually(lambda: settled_out(rabbit, sc, 0), 4 * SETTLE + 10, "an empty queue and nothing in flight")
        took = time.monotonic() - started
        assert sc.settlements("failed") > 0, "settlements failed at the cuts (the scenario happened)"
        stopped = time.monotonic()
        await sc.stop()
        stop_took = time.monotonic() - stopped
    assert sc.inflight() == 0
    assert stop_took < 1.0, f"stop took {stop_took:.2f}s with nothing in flight"
    assert ledger(engine) == {f"c-{i}": 1 for i in range(total)}, "every order executed exactly once"
    assert await rabbit.dead_letters() == []
    print(f"\n{cuts} connection drops while consuming {total} orders: all executed once in {took:.1f}s, "
          f"{sc.settlements('failed'):.0f} settlements failed or timed out and were redelivered "
          f"({sc.verdicts('duplicate'):.0f} duplicates acked); in-flight gauge 0; stop {stop_took:.2f}s")


async def test_shutdown_with_a_stalled_broker_ends_within_the_drain_window(engine, rabbit, proxy):
    drain = 3.0
    sc = Sidecar(through(proxy, rabbit, prefetch=32), engine, concurrency=32, settle_timeout=SETTLE,
                 drain_seconds=drain, delay=0.5)  # fmt: skip
    await sc.__aenter__()
    try:
        await eventually(sc.source.is_ready, 10, "the sidecar consuming through the proxy")
        proxy.stall()
        await publish_mix(rabbit, 100, 20)
        await eventually(lambda: len(sc.source.seen) >= 32, 20, "a prefetch window of deliveries")
        assert sc.inflight() > 0
        started = time.monotonic()
        # stop (SIGTERM) while the broker hears nothing: in-flight messages cannot be settled,
        # and giving them back cannot be either
        await asyncio.wait_for(sc.stop(), drain + 10)
        took = time.monotonic() - started
    finally:
        proxy.cut()
        proxy.resume()
    # the drain window, then at most close_timeout (1 s here) for the connection's close
    assert took < drain + 1.0 + 0.5, f"shutdown took {took:.2f}s with a {drain}s drain window"
    assert sc.inflight() == 0
    # nothing lost: the broker returned every unacked message; a new sidecar finishes the stream
    async with Sidecar(RabbitMQSource(rabbit.config), engine) as again:
        await eventually(lambda: len(ledger(engine)) >= 100, 60, "100 executions")
        await eventually(lambda: settled_out(rabbit, again, 20), 30, "an empty queue, every dead letter, nothing in flight")
    assert ledger(engine) == {f"st-{i}": 1 for i in range(100)}
    assert {dl.body for dl in await rabbit.dead_letters()} == {poison(k) for k in range(20)}
    print(f"\nshutdown with the broker stalled: {took:.2f}s (drain window {drain}s, close timeout 1s); "
          f"{again.verdicts('duplicate'):.0f} duplicates acked by the next sidecar")


async def dead_letter_count(rabbit: RabbitMQBroker) -> int:
    return (await rabbit.channel.declare_queue(rabbit.config.dead_letter_queue, passive=True)).declaration_result.message_count


async def settled_out(rabbit: RabbitMQBroker, sc: Sidecar, dead: int) -> bool:
    """Nothing ready in the queue, nothing being handled, and (at least) ``dead`` dead letters."""
    return sc.inflight() == 0 and await rabbit.pending() == 0 and await dead_letter_count(rabbit) >= dead
