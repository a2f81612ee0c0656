"""RabbitMQ intake limits on a real broker and a real engine (issue 8): body size cap,
reply_to allow-list, the account rule from WOJAK_SIDECAR_ACCOUNTS in a real sidecar
process, and the engine socket check before anything is sent."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests._processes import EngineProcess, free_port
from tests.sidecars.rabbitmq.test_rabbitmq import RabbitMQBroker
from wojak.engine.protocol import MessageType
from wojak.sidecars.rabbitmq import RabbitMQSource
from wojak.sidecars.testing.contract import TICK, Sidecar, dumps, eventually, ledger, order, stored_orders

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
def engine(engine_factory) -> EngineProcess:
    proc = engine_factory(WOJAK_SANDBOX_FILL_PROBABILITY="1")
    assert proc.request(MessageType.TICK, {"tick": TICK})["verdict"] == "ok"
    return proc


def sidecar_env(engine: EngineProcess, rabbit: RabbitMQBroker, **extra: str) -> dict[str, str]:
    c = rabbit.config
    env = {k: v for k, v in os.environ.items() if not k.startswith("WOJAK_SIDECAR")}
    env.update({
        "WOJAK_ENGINE_SOCKET": str(engine.socket), "WOJAK_LOG_LEVEL": "WARNING",
        "WOJAK_SIDECAR_RABBITMQ_URL": c.url.get_secret_value(), "WOJAK_SIDECAR_RABBITMQ_QUEUE": c.queue,
        "WOJAK_SIDECAR_RABBITMQ_DEAD_LETTER_EXCHANGE": c.dead_letter_exchange,
        "WOJAK_SIDECAR_RABBITMQ_DEAD_LETTER_QUEUE": c.dead_letter_queue,
        "WOJAK_SIDECAR_HEALTH_PORT": str(free_port()), **extra,
    })  # fmt: skip
    return env


async def test_a_body_over_the_cap_is_dead_lettered_unparsed(engine, rabbit):
    big = dumps(order("big-1", tag="x" * 70_000))  # valid JSON, but 70 KB > 64 KiB
    await rabbit.publish(big, "m-big")
    await rabbit.publish(dumps(order("small-1")), "m-small")
    async with Sidecar(RabbitMQSource(rabbit.config), engine) as sc:
        await eventually(lambda: sc.source.settled("ack"), what="the small order")
        letters = await eventually(rabbit.dead_letters, what="the DLQ")
    assert [(dl.reason, dl.detail) for dl in letters] == [("body_too_large", {"bytes": len(big), "limit": 65536})]
    assert letters[0].body == big, "the dead letter keeps the body as it came"
    # handed to the runner already refused (so its settlement is bounded and counted like any
    # other), dead-lettered from the refusal: never parsed, never sent to the engine
    assert [(m.coordinates, m.refusal is not None, m.settled) for m in sc.source.seen] == [
        ((rabbit.config.queue, "m-big"), True, "dead_letter"), ((rabbit.config.queue, "m-small"), False, "ack")]
    assert sc.verdicts("body_too_large") == 1 and sc.settlements("dead_letter") == 1
    assert ledger(engine) == {"small-1": 1} and stored_orders(engine) == {"small-1"}
    assert await rabbit.pending() == 0


async def test_results_go_to_reply_to_only_for_allowed_queues(engine, rabbit):
    allowed, other = f"{rabbit.config.queue}.results", f"{rabbit.config.queue}.elsewhere"
    queues = {name: await rabbit.channel.declare_queue(name, auto_delete=True) for name in (allowed, other)}
    config = rabbit.config.model_copy(update={"reply_to_allowed": allowed})
    # 30000 is 25% off the last tick (24000): denied (price_band_exceeded) -> ack and publish the result
    await rabbit.publish(dumps(order("band-ok", limit_price="30000")), "m-1", reply_to=allowed, correlation_id="c-1")
    await rabbit.publish(dumps(order("band-no", limit_price="30000")), "m-2", reply_to=other, correlation_id="c-2")
    source = RabbitMQSource(config)
    async with Sidecar(source, engine) as sc:
        await eventually(lambda: len(sc.source.settled("ack")) == 2, what="both acked")
    assert sc.verdicts("denied") == 2 and sc.settlements("publish") == 2
    result = await eventually(lambda: queues[allowed].get(no_ack=True, fail=False), what="the allowed result")
    assert json.loads(result.body)["client_order_id"] == "band-ok" and result.correlation_id == "c-1"
    await asyncio.sleep(0.3)
    assert await queues[other].get(no_ack=True, fail=False) is None, "never published to a queue not allowed"
    assert source.reply_to_refused == 1
    assert await rabbit.pending() == 0 and await rabbit.dead_letters() == []


async def test_a_sidecar_process_dead_letters_accounts_it_was_not_given(engine, rabbit):
    await rabbit.publish(dumps(order("mine-1", account="desk-1")), "m-1")
    await rabbit.publish(dumps(order("mine-2", account="desk-2-algo")), "m-2")
    await rabbit.publish(dumps(order("not-mine", account="desk-3")), "m-3")
    log = engine.data_dir / "sidecar-accounts.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "wojak", "sidecar", "rabbitmq"], stdout=out, stderr=subprocess.STDOUT,
                                env=sidecar_env(engine, rabbit, WOJAK_SIDECAR_ACCOUNTS="desk-1,desk-2-*"))  # fmt: skip
    try:
        await eventually(lambda: proc.poll() is not None or len(ledger(engine)) == 2, 30, "two executions")
        letters = await eventually(rabbit.dead_letters, 30, "the DLQ")
        await eventually(lambda: rabbit_empty(rabbit), 10, "an empty queue")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert [dl.reason for dl in letters] == ["account_not_permitted"]
    assert json.loads(letters[0].body)["client_order_id"] == "not-mine"
    assert ledger(engine) == {"mine-1": 1, "mine-2": 1}
    assert stored_orders(engine) == {"mine-1", "mine-2"}, "the engine never saw the other account's order"


async def rabbit_empty(rabbit: RabbitMQBroker) -> bool:
    return await rabbit.pending() == 0


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to chown a directory to another user")
async def test_a_sidecar_process_refuses_another_users_listener(engine, rabbit):
    from tests.sidecars._core.test_engine_socket import NOBODY, FakeRouter

    base = Path(tempfile.mkdtemp(prefix="wojak-rq-", dir="/tmp"))
    run = base / "run"
    run.mkdir(mode=0o700)
    router = FakeRouter(run / "engine.sock")  # another user's "engine": answers filled to anything
    os.chown(run / "engine.sock", NOBODY, NOBODY)
    os.chown(run, NOBODY, NOBODY)
    await rabbit.publish(dumps(order("o-1", account="desk-1")), "m-1")
    try:
        env = sidecar_env(engine, rabbit, WOJAK_SIDECAR_ACCOUNTS="desk-1", WOJAK_ENGINE_SOCKET=str(run / "engine.sock"))
        proc = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "wojak", "sidecar", "rabbitmq"],
                                       env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    finally:
        router.close()
        shutil.rmtree(base, ignore_errors=True)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"belongs to uid {NOBODY}" in proc.stderr and "WOJAK_ENGINE_SOCKET" in proc.stderr
    assert router.received == 0
    assert await rabbit.pending() == 1, "the order stays in the queue, unconsumed"

