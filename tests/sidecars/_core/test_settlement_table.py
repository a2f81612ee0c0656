"""Every row of the verdict table through the runner: what the broker message gets.

tests/sidecars/_core/test_runner.py checks the order outcomes; this adds the rows it
does not name (forbidden, venue_anomaly, invalid, ok, not_found) and checks each against
the protocol's own table, so a row changed in one place and not the other shows here.
"""

from __future__ import annotations

import pytest

from tests._processes import TRADER
from tests.engine.protocol.test_verdict_table import TABLE
from tests.sidecars._core import test_runner
from tests.sidecars._core.test_runner import order, run_until, settled, verdict
from wojak.engine.protocol import Settlement


def make(bodies, answer):
    """The runner of test_runner.py, acting as a principal that may submit orders for any account."""
    return test_runner.make(bodies, answer, principal=TRADER)

ACTION = {Settlement.ACK: "ack", Settlement.ACK_AND_PUBLISH: "ack", Settlement.DEAD_LETTER: "dead_letter",
          Settlement.REQUEUE: "requeue"}  # fmt: skip


@pytest.mark.parametrize("engine_verdict", sorted(TABLE))
async def test_each_engine_verdict_settles_the_message_as_the_table_says(engine_verdict):
    runner, source, client, metrics = make([order()], verdict(engine_verdict, reason="r", retry_after=0.5))
    await run_until(runner, source, settled(source))
    (message,) = source.all
    expected = TABLE[engine_verdict]
    assert [a for a, _ in message.actions] == [ACTION[expected]], engine_verdict
    assert bool(source.published) is (expected is Settlement.ACK_AND_PUBLISH)
    if expected is Settlement.DEAD_LETTER:
        [(_, (reason, detail))] = message.actions
        assert reason == engine_verdict and detail["client_order_id"] == "o-1" and detail["reason"] == "r"
    if expected is Settlement.REQUEUE:
        [(_, delay)] = message.actions
        assert delay > 0


async def test_not_found_from_the_engine_is_dead_lettered_and_never_acknowledged():
    runner, source, client, metrics = make([order()], verdict("not_found"))
    await run_until(runner, source, settled(source))
    (message,) = source.all
    assert [a for a, _ in message.actions] == ["dead_letter"]
    assert metrics.registry.get_sample_value(
        "wojak_sidecar_settlements_total", {"source": "fake", "settlement": "ack"}) in (None, 0.0)  # fmt: skip
