"""An SQS outage under load, for the SQS sidecar and the SNS one reading SQS: the AWS emulator
stopped for 20 s while the sidecar consumes.

The test runs an AWS emulator of its own (tests/sidecars/_own_service.py: `scripts/services up
aws` on a free port; the shared one is never touched), publishes orders and invalid ones (to the
queue, or to the topic the queue is subscribed to), starts a real `wojak sidecar sqs|sns`, and
stops the emulator (``kill -STOP``: it keeps its state, every call hangs) while messages are in
flight. During the outage `/readyz` turns 503; after ``kill -CONT`` the sidecar carries on by
itself, `/readyz` is 200 again, and orders published after the outage are consumed too. Every
order executes exactly once, every invalid one is dead-lettered with its reason, nothing is
left in the queue, and a SIGTERM at the end exits 0 within the drain time. (moto spends time in
proportion to a queue's depth on every message, so the counts are small: 300 + 100.)
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest

from tests.sidecars._own_service import OwnService
from tests.sidecars._probes import engine_with_a_slow_venue, ready, readyz
from tests.sidecars.sns.test_sns import SnsTopic
from tests.sidecars.sqs._broker import SqsQueues
from wojak.sidecars.testing.contract import ACCOUNTS, ProcessSidecar, dumps, eventually, free_port, order

pytestmark = [pytest.mark.aws, pytest.mark.slow]

OUTAGE = float(os.environ.get("WOJAK_TEST_SQS_OUTAGE_SECONDS", "20"))
BEFORE, AFTER, INVALID, ACCOUNT_COUNT = 300, 100, 10, 32


class _Aws:
    """What SqsQueues and SnsTopic use of the suite's AWS service, for the test's own emulator."""

    region = "us-east-1"
    access_key_id = "testing"
    secret_access_key = "testing"

    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url = endpoint_url

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )


@pytest.fixture
def own_aws(tmp_path):
    service = OwnService("aws", tmp_path).up()
    try:
        yield service
    finally:
        service.down()


@pytest.fixture
def engine(engine_factory):
    return engine_with_a_slow_venue(engine_factory)  # the stream is still running when the emulator stops



@pytest.mark.parametrize("broker", ["sqs", "sns"])
async def test_aws_emulator_stopped_for_20s_under_load(engine, own_aws, broker):
    aws = _Aws(own_aws.exports["WOJAK_TEST_AWS_ENDPOINT"])
    target: Any = SnsTopic(aws) if broker == "sns" else SqsQueues(aws)
    queues: SqsQueues = target.queues if broker == "sns" else target
    try:
        valid = [dumps(order(f"out-{i}", account=f"acct-{i % ACCOUNT_COUNT}")) for i in range(BEFORE + AFTER)]
        invalid = [dumps(order(f"bad-{k}", account=f"acct-{k}", quantity="0")) for k in range(INVALID)]
        await target.publish_many([(b, None) for b in valid[:200] + invalid + valid[200:BEFORE]])
        port = free_port()
        env = {
            **target.env(),
            "WOJAK_SIDECAR_ACCOUNTS": ACCOUNTS,
            "WOJAK_ENGINE_SOCKET": str(engine.socket),
            "WOJAK_SIDECAR_HEALTH_PORT": str(port),
            "WOJAK_SIDECAR_SETTLE_TIMEOUT": "3",
            "WOJAK_SIDECAR_DRAIN_SECONDS": "10",
            "WOJAK_LOG_LEVEL": "INFO",
        }
        sidecar = ProcessSidecar(broker, env, engine.data_dir / f"sidecar-outage-{broker}.log")
        samples: list[tuple[float, int]] = []
        try:
            await eventually(lambda: ready(port), 60, "/readyz 200")
            await eventually(lambda: engine.execution_count() >= 100, 120, "100 executions")
            at_stop = engine.execution_count()
            own_aws.stop()  # the emulator goes away under load
            stopped = time.monotonic()
            while time.monotonic() - stopped < OUTAGE:
                samples.append((round(time.monotonic() - stopped, 1), (await readyz(port))[0]))
                assert sidecar.alive(), sidecar.log_tail()
                await asyncio.sleep(1.0)
            during = engine.execution_count()
            own_aws.resume()
            back = time.monotonic()
            await eventually(lambda: ready(port), 90, "/readyz 200 again, without a restart")
            ready_again = time.monotonic() - back
            await target.publish_many([(b, None) for b in valid[BEFORE:]])
            await eventually(lambda: engine.execution_count() >= BEFORE + AFTER, 300, "every order executed")
            letters: list[Any] = []

            async def all_letters() -> bool:
                letters.extend(await target.dead_letters())
                return len({bytes(dl.body) for dl in letters}) >= INVALID

            await eventually(all_letters, 120, "every invalid order dead-lettered")
            await eventually(lambda: _pending_is_zero(queues), 120, "nothing left in the queue")
            took = time.monotonic()
            code = await sidecar.terminate(30)
            took = time.monotonic() - took
        finally:
            if sidecar.alive():
                await sidecar.kill()
        unready = [t for t, status in samples if status != 200]
        print(
            f"\n{broker}: the AWS emulator stopped {OUTAGE:.0f} s after {at_stop} executions ({during} when it came back); "
            f"/readyz not 200 from {unready[0] if unready else None} s ({len(unready)} of {len(samples)} samples); ready "
            f"again {ready_again:.1f} s after; {engine.execution_count()} executed; {len(letters)} dead letters; SIGTERM "
            f"exit {code} in {took:.1f} s"
        )
        assert unready and samples[-1][1] != 200, f"/readyz during the outage: {samples}"
        assert code == 0, sidecar.log_tail()
        assert engine.executions() == {f"out-{i}": 1 for i in range(BEFORE + AFTER)}, "every order once, none twice"
        assert {bytes(dl.body) for dl in letters} == set(invalid) and {dl.reason for dl in letters} == {"invalid"}
    finally:
        target.close()


async def _pending_is_zero(queues: SqsQueues) -> bool:
    return await queues.pending() == 0
