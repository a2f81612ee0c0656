"""/readyz of a real `wojak sidecar rabbitmq` follows its engine's order path (issue 9, finding 4).

The engine's ping carries ``ready``: its store takes writes and its venue answers
(wojak/engine/health.py). The sidecar's /readyz uses it (wojak/sidecars/_core/health.py).
Here the engine's SQLite store is on a 16 MiB tmpfs (mounted by the test: the suite runs as
root, as CI does) that the test fills: /readyz turns 503 naming the store, and 200 again once
room is made, without a restart of either process. Orders published meanwhile are not lost:
each executes exactly once after the recovery.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from tests._processes import free_port
from tests.engine.test_disk_full import fill, small_disk  # noqa: F401  (a fixture: the tmpfs)
from tests.sidecars._probes import readyz
from tests.sidecars.rabbitmq.test_rabbitmq import RabbitMQBroker
from wojak.engine.protocol import MessageType
from wojak.sidecars.testing.contract import ACCOUNTS, TICK, _get, dumps, eventually, ledger, order

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
def engine(engine_factory, small_disk):  # noqa: F811
    """A real engine whose SQLite store is on the test's tmpfs."""
    proc = engine_factory(WOJAK_STORE=f"sqlite:///{small_disk}/wojak.sqlite", WOJAK_SANDBOX_FILL_PROBABILITY="1")
    assert proc.request(MessageType.TICK, {"tick": TICK})["verdict"] == "ok"
    return proc


async def test_readyz_turns_503_while_the_engines_store_refuses_writes_and_back(engine, small_disk, rabbit):  # noqa: F811
    port = free_port()
    c = rabbit.config
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("WOJAK_SIDECAR")},
           "WOJAK_ENGINE_SOCKET": str(engine.socket), "WOJAK_LOG_LEVEL": "WARNING", "WOJAK_SIDECAR_ACCOUNTS": ACCOUNTS,
           "WOJAK_SIDECAR_RABBITMQ_URL": c.url.get_secret_value(), "WOJAK_SIDECAR_RABBITMQ_QUEUE": c.queue,
           "WOJAK_SIDECAR_RABBITMQ_DEAD_LETTER_EXCHANGE": c.dead_letter_exchange,
           "WOJAK_SIDECAR_RABBITMQ_DEAD_LETTER_QUEUE": c.dead_letter_queue,
           "WOJAK_SIDECAR_HEALTH_PORT": str(port), "WOJAK_SIDECAR_BACKOFF_MAX": "1"}  # fmt: skip
    log = engine.data_dir / "sidecar-readiness.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "wojak", "sidecar", "rabbitmq"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip
    filler = None
    try:
        await eventually(lambda: proc.poll() is not None or _is(readyz(port), 200), 30, "/readyz 200")
        assert proc.poll() is None, log.read_text()[-3000:]
        await rabbit.publish(dumps(order("before-1")), "m-before")
        await eventually(lambda: ledger(engine) == {"before-1": 1}, 15, "the first order")

        filler = fill(small_disk)  # the store's disk is full
        full_at = time.monotonic()
        status, body = await eventually(lambda: _when(readyz(port), 503), 20, "/readyz 503")
        turned_503 = time.monotonic() - full_at
        assert body["ready"] is False and body["engine"] is False and body["source"] is True
        store = body["engine_detail"]["store"]
        assert store["ok"] is False and "full" in store["reason"], body
        metrics = (await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics"))[1]
        assert 'wojak_sidecar_ready{source="rabbitmq"} 0.0' in metrics
        for i in range(10):  # orders arriving meanwhile: answered retry (requeued) or stored if the WAL has room
            await rabbit.publish(dumps(order(f"during-{i}", account=f"acct-{i % 8}")), f"m-during-{i}")
        await asyncio.sleep(2)
        assert (await readyz(port))[0] == 503, "still not ready while the disk is full"

        filler.unlink()  # room again
        freed_at = time.monotonic()
        status, body = await eventually(lambda: _when(readyz(port), 200), 20, "/readyz 200 again")
        turned_200 = time.monotonic() - freed_at
        assert body["ready"] is True and body["engine_detail"]["store"]["ok"] is True
        await eventually(lambda: len(ledger(engine)) == 11, 30, "every order executed")
        await eventually(lambda: rabbit_empty(rabbit), 15, "an empty queue")
        assert proc.poll() is None, "the sidecar was not restarted"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        if filler is not None and filler.exists():
            filler.unlink()
    assert ledger(engine) == {"before-1": 1, **{f"during-{i}": 1 for i in range(10)}}, "executed exactly once"
    assert await rabbit.dead_letters() == []
    print(f"\n/readyz: 503 {turned_503:.1f}s after the store's disk filled (reason: {store['reason'][:80]}...), "
          f"200 {turned_200:.1f}s after room was made; the 10 orders published meanwhile executed once each")


async def _when(answer, status: int):
    got = await answer
    return got if got[0] == status else None


async def _is(answer, status: int) -> bool:
    return (await answer)[0] == status


async def rabbit_empty(rabbit: RabbitMQBroker) -> bool:
    return await rabbit.pending() == 0
