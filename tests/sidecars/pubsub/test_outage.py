"""A Pub/Sub outage under load: the emulator stopped for 20 s while the sidecar consumes.

The test runs a Pub/Sub emulator of its own (tests/sidecars/_own_service.py: `scripts/services up
pubsub` on a free port; the shared one is never touched), publishes 3,000 orders and 20 invalid
ones, starts a real `wojak sidecar pubsub`, and stops the emulator (``kill -STOP``: it keeps its
state, every call hangs) while messages are in flight. During the outage `/readyz` turns 503;
after ``kill -CONT`` the sidecar carries on by itself (no restart), `/readyz` is 200 again, and
1,000 more orders published after the outage are consumed too. Every order executes exactly once,
every invalid one is dead-lettered with its reason, nothing is left on the subscription, and a
SIGTERM at the end exits 0 within the drain time.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from tests.sidecars._own_service import OwnService
from tests.sidecars._probes import engine_with_a_slow_venue, ready, readyz
from tests.sidecars.pubsub.test_pubsub import PubSubTopic
from wojak.sidecars.testing.contract import ACCOUNTS, ProcessSidecar, dumps, eventually, free_port, order

pytestmark = [pytest.mark.pubsub, pytest.mark.slow]

OUTAGE = float(os.environ.get("WOJAK_TEST_PUBSUB_OUTAGE_SECONDS", "20"))
BEFORE, AFTER, INVALID, ACCOUNT_COUNT = 3000, 1000, 20, 64


@pytest.fixture
def own_pubsub(tmp_path, monkeypatch):
    service = OwnService("pubsub", tmp_path).up()
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", service.exports["PUBSUB_EMULATOR_HOST"])
    try:
        yield service
    finally:
        service.down()


@pytest.fixture
def engine(engine_factory):
    return engine_with_a_slow_venue(engine_factory)  # the stream is still running when the emulator stops


async def test_pubsub_stopped_for_20s_under_load(engine, own_pubsub):
    topic = PubSubTopic("test")
    try:
        valid = [dumps(order(f"out-{i}", account=f"acct-{i % ACCOUNT_COUNT}")) for i in range(BEFORE + AFTER)]
        invalid = [dumps(order(f"bad-{k}", account=f"acct-{k}", quantity="0")) for k in range(INVALID)]
        await topic.publish_many([(b, None) for b in valid[:2000] + invalid + valid[2000:BEFORE]])
        port = free_port()
        env = {
            **topic.env(),
            "PUBSUB_EMULATOR_HOST": own_pubsub.exports["PUBSUB_EMULATOR_HOST"],
            "WOJAK_SIDECAR_ACCOUNTS": ACCOUNTS,
            "WOJAK_ENGINE_SOCKET": str(engine.socket),
            "WOJAK_SIDECAR_HEALTH_PORT": str(port),
            "WOJAK_SIDECAR_PUBSUB_MAX_MESSAGES": "128",
            "WOJAK_SIDECAR_SETTLE_TIMEOUT": "3",
            "WOJAK_SIDECAR_DRAIN_SECONDS": "10",
            "WOJAK_LOG_LEVEL": "INFO",
        }
        sidecar = ProcessSidecar("pubsub", env, engine.data_dir / "sidecar-outage.log")
        samples: list[tuple[float, int]] = []
        try:
            await eventually(lambda: ready(port), 60, "/readyz 200")
            await eventually(lambda: engine.execution_count() >= 1000, 120, "1,000 executions")
            at_stop = engine.execution_count()
            own_pubsub.stop()  # the emulator goes away under load
            stopped = time.monotonic()
            while time.monotonic() - stopped < OUTAGE:
                samples.append((round(time.monotonic() - stopped, 1), (await readyz(port))[0]))
                assert sidecar.alive(), sidecar.log_tail()
                await asyncio.sleep(1.0)
            during = engine.execution_count()
            own_pubsub.resume()
            back = time.monotonic()
            await eventually(lambda: ready(port), 60, "/readyz 200 again, without a restart")
            ready_again = time.monotonic() - back
            await topic.publish_many([(b, None) for b in valid[BEFORE:]])
            await eventually(lambda: engine.execution_count() >= BEFORE + AFTER, 300, "every order executed")
            letters = await eventually(lambda: _letters(topic, INVALID), 60, "every invalid order dead-lettered")
            await eventually(lambda: _pending_is_zero(topic), 60, "nothing left on the subscription")
            took = time.monotonic()
            code = await sidecar.terminate(30)
            took = time.monotonic() - took
        finally:
            if sidecar.alive():
                await sidecar.kill()
        unready = [t for t, status in samples if status != 200]
        print(
            f"\nPub/Sub stopped {OUTAGE:.0f} s after {at_stop} executions ({during} when it came back); /readyz not 200 "
            f"from {unready[0] if unready else None} s ({len(unready)} of {len(samples)} samples); ready again "
            f"{ready_again:.1f} s after; {engine.execution_count()} executed; {len(letters)} dead letters; SIGTERM exit "
            f"{code} in {took:.1f} s"
        )
        assert unready and samples[-1][1] != 200, f"/readyz during the outage: {samples}"
        assert code == 0, sidecar.log_tail()
        executed = engine.executions()
        assert executed == {f"out-{i}": 1 for i in range(BEFORE + AFTER)}, "every order once, none twice"
        assert {bytes(dl.body) for dl in letters} == set(invalid) and {dl.reason for dl in letters} == {"invalid"}
    finally:
        topic.close()



async def _pending_is_zero(topic: PubSubTopic) -> bool:
    return await topic.pending() == 0


_taken: dict[int, list] = {}


async def _letters(topic: PubSubTopic, at_least: int) -> list:
    """The dead letters taken so far (a dead letter whose ack Pub/Sub did not take during the outage
    is published again when the message comes back: at least once, never zero times)."""
    got = _taken.setdefault(id(topic), [])
    got.extend(await topic.dead_letters())
    return got if len({bytes(dl.body) for dl in got}) >= at_least else []
