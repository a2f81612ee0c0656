"""A Kafka outage under load: the broker stopped for 20 s while the sidecar consumes.

The test starts a Kafka of its own (`scripts/services up kafka` with its own state directory
and ports, as tests/engine/venue/test_lambda_emulator.py's OwnEmulator does for the Lambda
emulator; the shared broker is never touched), produces 3,000 orders and 20 invalid ones,
starts a real `wojak sidecar kafka`, and stops the broker (`scripts/services down kafka`: its
data stays) while records are in flight. During the outage `/readyz` is 503 naming the source;
after `up` again the sidecar reconnects by itself (no restart), `/readyz` is 200, and 1,000
more orders produced after the outage are consumed too. Every order executes exactly once,
every invalid one is dead-lettered with its own reason (a dead letter the broker could not take
during the outage waited: it was never given up), and the group's commits reach the end.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from tests.sidecars._own_service import OwnService
from tests.sidecars._probes import engine_with_a_slow_venue, ready, readyz
from tests.sidecars.kafka._broker import KafkaBroker
from tests.sidecars.kafka.test_kafka_stream import sidecar_env
from wojak.sidecars.testing.contract import ProcessSidecar, dumps, eventually, free_port, ledger, order

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

OUTAGE = float(os.environ.get("WOJAK_TEST_KAFKA_OUTAGE_SECONDS", "20"))
BEFORE, AFTER, INVALID, ACCOUNT_COUNT = 3000, 1000, 20, 64


@pytest.fixture
def own_kafka(tmp_path):
    # its data survives `down`, so `up` again is the same broker restarted
    kafka = OwnService("kafka", tmp_path, more_ports=("CONTROLLER",)).up()
    try:
        yield kafka
    finally:
        kafka.down()


@pytest.fixture
def engine(engine_factory):
    return engine_with_a_slow_venue(engine_factory)  # the stream is still running when the broker stops


async def test_kafka_stopped_for_20s_under_load(engine, own_kafka):
    kafka = await KafkaBroker(own_kafka.exports["WOJAK_TEST_KAFKA_BOOTSTRAP"], partitions=4).open()
    valid = [dumps(order(f"out-{i}", account=f"acct-{i % ACCOUNT_COUNT}")) for i in range(BEFORE + AFTER)]
    invalid = [dumps(order(f"bad-{k}", account=f"acct-{k}", quantity="0")) for k in range(INVALID)]
    # the invalid ones sit where the sidecar is when the broker stops, and their accounts' orders behind them
    first = valid[:2000] + invalid + valid[2000:BEFORE]
    await kafka.publish_many(first)
    port = free_port()
    sidecar = ProcessSidecar("kafka", sidecar_env(engine, kafka, WOJAK_SIDECAR_HEALTH_PORT=str(port), WOJAK_LOG_LEVEL="INFO",
                                                  WOJAK_SIDECAR_SETTLE_TIMEOUT="3"),
                             engine.data_dir / "sidecar-outage.log")  # fmt: skip
    samples: list[tuple[float, int, bool | None]] = []
    try:
        await eventually(lambda: ready(port), 60, "/readyz 200")
        await eventually(lambda: engine.execution_count() >= 1900, 120, "1,900 executions")
        at_stop = engine.execution_count()
        stopped = time.monotonic()
        await kafka.close_producer()
        await asyncio.to_thread(own_kafka.down)  # the broker goes away under load
        down_at = time.monotonic()
        cpu_at_down = cpu_seconds(sidecar.proc.pid)
        while time.monotonic() - down_at < OUTAGE:
            status, body = await readyz(port)
            samples.append((time.monotonic() - stopped, status, body.get("source")))
            assert sidecar.alive(), sidecar.log_tail()
            await asyncio.sleep(1.0)
        during = engine.execution_count()
        outage_cpu = cpu_seconds(sidecar.proc.pid) - cpu_at_down
        await asyncio.to_thread(own_kafka.up)  # the same broker (its data kept) back
        back_at = time.monotonic()
        await eventually(lambda: ready(port), 120, "/readyz 200 again, without a restart")
        ready_again = time.monotonic() - back_at
        await kafka.open_producer()
        await kafka.publish_many(valid[BEFORE:])
        await eventually(lambda: engine.execution_count() >= BEFORE + AFTER, 180, f"{BEFORE + AFTER} executions")
        ends = await kafka.ends()

        async def committed_to_the_end() -> bool:
            return await kafka.committed() == ends

        await eventually(committed_to_the_end, 60, "the commit at the end of every partition")
        assert await sidecar.terminate(30) == 0, sidecar.log_tail()
        executions = ledger(engine)
        assert set(executions) == {f"out-{i}" for i in range(BEFORE + AFTER)}, "nothing lost"
        assert set(executions.values()) == {1}, "nothing twice"
        letters = await kafka.dead_letter_records()
        assert {(dl.reason, dl.body) for dl in letters} == {("invalid", b) for b in invalid}, \
            "every invalid order dead-lettered with its own reason: none given up while the broker was away"
        # at least once: a record dead-lettered during the outage whose commit the broker never took (the
        # group dropped the member meanwhile) is dead-lettered again by its next delivery
        assert INVALID <= len(letters) <= 2 * INVALID
    finally:
        if sidecar.alive():
            await sidecar.kill()
        await kafka.close()
    down = [s for s in samples if s[0] > 2.0]  # after the broker's own shutdown (a few seconds)
    assert down and all(status == 503 and source is False for _, status, source in down), samples
    log = (engine.data_dir / "sidecar-outage.log").read_text()
    assert "Kafka is not answering" in log and "Kafka answers again" in log
    # the client does not spin while the broker is away (aiokafka alone retries metadata in a busy loop)
    assert outage_cpu < OUTAGE * 0.25, f"{outage_cpu:.1f} CPU seconds in the {OUTAGE:.0f}s outage"
    assert len(log.splitlines()) < 2000, f"{len(log.splitlines())} log lines"
    print(f"\nbroker stopped at {at_stop} executed ({during} at the end of the {OUTAGE:.0f}s outage); /readyz 503 "
          f"throughout it ({len(down)} samples); 200 again {ready_again:.1f}s after the broker's start returned; "
          f"{BEFORE + AFTER} orders executed once, {INVALID} dead letters, committed to the end; the sidecar used "
          f"{outage_cpu:.2f} CPU seconds during the outage and logged {len(log.splitlines())} lines in all")  # fmt: skip


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


