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
from wojak.engine.protocol import Principal, Scope, Settlement


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


# -- what is settled before the engine, and what a settlement carries ----------------------------


class RecordingClient(test_runner.FakeClient):
    """test_runner's client, also recording the principal each order was sent as."""

    def __init__(self, answer):
        super().__init__(answer)
        self.principals: list = []

    async def submit_order(self, order, *args, **kw):
        self.principals.append(args[0] if args else kw.get("principal"))
        return await super().submit_order(order, *args, **kw)


def runner_with(bodies, answer, principal=TRADER):
    source, client, metrics = test_runner.FakeSource(bodies), RecordingClient(answer), test_runner.SidecarMetrics("fake")
    return test_runner.Runner(source, client, metrics, principal=principal, backoff_base=0.01), source, client, metrics


def verdicts_counted(metrics) -> dict[str, float]:
    return {s.labels["verdict"]: s.value for m in metrics.registry.collect() for s in m.samples
            if s.name == "wojak_sidecar_messages_total"}  # fmt: skip


async def test_an_order_for_an_account_the_sidecar_may_not_trade_is_dead_lettered_before_the_engine():
    desk = Principal.of("sidecar:fake", ["desk-1"], [Scope.ORDERS_WRITE])
    runner, source, client, metrics = runner_with([order()], verdict("filled"), principal=desk)
    await run_until(runner, source, settled(source))
    [message] = source.all
    assert message.actions == [("dead_letter", ("account_not_permitted", {
        "client_order_id": "o-1", "detail": "principal sidecar:fake may not act for account a"}))]  # fmt: skip
    assert client.orders == [] and verdicts_counted(metrics) == {"forbidden": 1.0}


async def test_the_engine_gets_the_sidecars_principal():
    runner, source, client, metrics = runner_with([order()], verdict("filled"))
    await run_until(runner, source, settled(source))
    assert client.principals == [TRADER] and verdicts_counted(metrics) == {"filled": 1.0}


async def test_bad_json_and_invalid_orders_are_dead_lettered_with_the_reason():
    runner, source, client, metrics = runner_with([b"{not json", test_runner.order(quantity="-1")], verdict("filled"))
    await run_until(runner, source, settled(source))
    bad_json, invalid = source.all
    [(action, (reason, detail))] = bad_json.actions
    assert (action, reason) == ("dead_letter", "invalid_json") and detail["error"].startswith("body is not valid JSON: ")
    [(action, (reason, detail))] = invalid.actions
    assert (action, reason) == ("dead_letter", "invalid")
    assert detail == {"errors": [{"field": "quantity", "reason": "must be greater than 0", "code": "greater_than"}]}
    assert client.orders == [] and verdicts_counted(metrics) == {"invalid_json": 1.0, "invalid": 1.0}


async def test_a_dead_letter_carries_what_the_engine_said():
    reply = {"verdict": "conflict", "client_order_id": "o-1", "reason": "different content", "order": {"state": "filled"},
             "errors": [{"field": "x"}], "other": "not carried"}  # fmt: skip
    runner, source, client, metrics = runner_with([order()], lambda o: reply)
    await run_until(runner, source, settled(source))
    [(_, (reason, detail))] = source.all[0].actions
    assert reason == "conflict"
    assert detail == {"client_order_id": "o-1", "reason": "different content", "errors": [{"field": "x"}], "order": {"state": "filled"}}


async def test_a_reply_without_a_verdict_is_requeued_and_counted_unknown(caplog):
    runner, source, client, metrics = runner_with([order()], lambda o: {"client_order_id": "o-1"})
    await run_until(runner, source, settled(source))
    [(action, delay)] = source.all[0].actions
    assert action == "requeue" and delay > 0
    assert verdicts_counted(metrics) == {"unknown": 1.0}
    assert "engine answered unknown verdict 'unknown'" in caplog.text


async def test_a_duplicate_of_a_rejected_order_publishes_its_result_again():
    # the first answer's publication may be what failed (and requeued the message): publish it on the duplicate
    reply = {"verdict": "duplicate", "client_order_id": "o-1", "order": {"state": "rejected"}}
    runner, source, client, metrics = runner_with([order()], lambda o: reply)
    await run_until(runner, source, settled(source))
    assert [a for a, _ in source.all[0].actions] == ["ack"]
    assert source.published == [{**reply, "verdict": "rejected", "duplicate": True}]
    runner, source, client, metrics = runner_with([order()], lambda o: {**reply, "order": {"state": "filled"}})
    await run_until(runner, source, settled(source))
    assert [a for a, _ in source.all[0].actions] == ["ack"] and source.published == []


async def test_a_result_that_cannot_be_published_is_requeued_not_acked():
    runner, source, client, metrics = runner_with([order()], verdict("rejected"))
    source.publish_fails = True
    await run_until(runner, source, settled(source))
    assert [a for a, _ in source.all[0].actions] == ["requeue"]
