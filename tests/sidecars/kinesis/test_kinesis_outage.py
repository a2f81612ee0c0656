"""An AWS outage under load: the emulator serving the stream, the lease table and the DLQ is
stopped for 20 s while the sidecar consumes.

The test starts a moto server of its own (`scripts/services up aws` with its own state directory
and port; the shared one is never touched) and stops its process with SIGSTOP (moto keeps its
streams and tables in memory only: a restart would lose them, a stopped process keeps them and
answers nothing). 3,000 orders and 20 invalid ones are published; a real `wojak sidecar kinesis`
consumes them; during the outage `/readyz` is 503 naming the source; after SIGCONT the sidecar
goes on by itself (no restart), `/readyz` is 200, 1,000 more orders published after the outage
are consumed too. Every order executes exactly once, every invalid one is dead-lettered with its
reason (at least once: one dead-lettered while its shard's lease lapsed may be dead-lettered again
by the lease's next holder), and every checkpoint ends at its shard's last record.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time

import pytest

from tests.sidecars._own_service import OwnService
from tests.sidecars._probes import engine_with_a_slow_venue, ready, readyz
from tests.sidecars.kinesis._broker import KinesisStream
from wojak.sidecars.testing.contract import ACCOUNTS, ProcessSidecar, dumps, eventually, free_port, ledger, order

pytestmark = [pytest.mark.aws, pytest.mark.slow]

OUTAGE = float(os.environ.get("WOJAK_TEST_KINESIS_OUTAGE_SECONDS", "20"))
BEFORE, AFTER, INVALID, ACCOUNT_COUNT = 3000, 1000, 20, 64


@pytest.fixture
def own_moto(tmp_path, aws_service):
    moto = OwnService("aws", tmp_path).up()
    try:
        yield moto
    finally:
        moto.down()


@pytest.fixture
def engine(engine_factory):
    return engine_with_a_slow_venue(engine_factory)  # the stream is still running when the emulator stops


async def test_the_emulator_stopped_for_20s_under_load(engine, own_moto, aws_service):
    aws = dataclasses.replace(aws_service, endpoint_url=own_moto.exports["WOJAK_TEST_AWS_ENDPOINT"])
    stream = KinesisStream(aws, shards=4)
    valid = [dumps(order(f"out-{i}", account=f"acct-{i % ACCOUNT_COUNT}")) for i in range(BEFORE + AFTER)]
    invalid = [dumps(order(f"bad-{k}", account=f"acct-{k}", quantity="0")) for k in range(INVALID)]
    await stream.publish_many([(b, None) for b in valid[:1500] + invalid + valid[1500:BEFORE]])
    port = free_port()
    env = {**stream.env(), "WOJAK_ENGINE_SOCKET": str(engine.socket), "WOJAK_SIDECAR_ACCOUNTS": ACCOUNTS,
           "WOJAK_SIDECAR_HEALTH_PORT": str(port), "WOJAK_LOG_LEVEL": "INFO", "WOJAK_SIDECAR_SETTLE_TIMEOUT": "3"}
    sidecar = ProcessSidecar("kinesis", env, engine.data_dir / "sidecar-outage.log")
    samples: list[tuple[float, int, bool | None]] = []
    try:
        await eventually(lambda: ready(port), 60, "/readyz 200")
        await eventually(lambda: engine.execution_count() >= 1000, 120, "1,000 executions")
        at_stop = engine.execution_count()
        own_moto.stop()  # the emulator stops answering under load
        stopped = time.monotonic()
        while time.monotonic() - stopped < OUTAGE:
            status, body = await readyz(port)
            samples.append((time.monotonic() - stopped, status, body.get("source")))
            assert sidecar.alive(), sidecar.log_tail()
            await asyncio.sleep(1.0)
        during = engine.execution_count()
        own_moto.resume()
        back_at = time.monotonic()
        await eventually(lambda: ready(port), 120, "/readyz 200 again, without a restart")
        ready_again = time.monotonic() - back_at
        await stream.publish_many([(b, None) for b in valid[BEFORE:]])
        await eventually(lambda: engine.execution_count() >= BEFORE + AFTER, 180, f"{BEFORE + AFTER} executions")
        await eventually(lambda: _pending_is(stream, 0), 60, "every checkpoint at its shard's last record")
        assert await sidecar.terminate(30) == 0, sidecar.log_tail()
        executions = ledger(engine)
        assert set(executions) == {f"out-{i}" for i in range(BEFORE + AFTER)}, "nothing lost"
        assert set(executions.values()) == {1}, "nothing twice"
        letters = await stream.dead_letters()
        assert {(dl.reason, dl.body) for dl in letters} == {("invalid", b) for b in invalid}, \
            "every invalid order dead-lettered with its own reason: none given up while the emulator was away"
        assert INVALID <= len(letters) <= 2 * INVALID
    finally:
        own_moto.resume()
        if sidecar.alive():
            await sidecar.kill()
        stream.close()
    down = [s for s in samples if s[0] > 7.0]  # the probe gives a call 5 s
    assert down and all(status == 503 and source is False for _, status, source in down), samples
    log = (engine.data_dir / "sidecar-outage.log").read_text()
    assert "is not answering" in log and "answers again" in log
    assert len(log.splitlines()) < 2000, f"{len(log.splitlines())} log lines"
    print(f"\nemulator stopped at {at_stop} executed ({during} at the end of the {OUTAGE:.0f}s outage); /readyz 503 from "
          f"{min(s[0] for s in samples if s[1] == 503):.1f}s on ({len(down)} samples after 7s); 200 again {ready_again:.1f}s "
          f"after SIGCONT; {BEFORE + AFTER} orders executed once, {len(letters)} dead letters for {INVALID} invalid; "
          f"checkpointed to the end")


async def _pending_is(stream: KinesisStream, n: int) -> bool:
    return await stream.pending() == n
