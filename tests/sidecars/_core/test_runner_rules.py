"""The Runner's rules that the verdict-table tests (test_runner.py) do not reach: what it refuses
to be built with, its defaults, the principal it acts as without one, what it counts, what it
publishes, that every broker call is bounded, that a message's backoff starts over once it is
settled, and the drain's edges. In process, with the fakes of test_runner.py."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest

from tests.sidecars._core.test_runner import FakeClient, FakeMessage, FakeSource, make, order, run_until, settled, verdict
from wojak.sidecars._core.health import Readiness
from wojak.sidecars._core.metrics import SidecarMetrics
from wojak.sidecars._core.runner import Runner
from wojak.sidecars._core.settings import RunnerConfig


def sample(metrics: SidecarMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"source": "fake", **labels})


def build(**kw: Any) -> Runner:
    return Runner(FakeSource([]), FakeClient(verdict("filled")), SidecarMetrics("fake"), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"concurrency": 0}, "concurrency must be at least 1"),
        ({"settle_timeout": 0}, "settle_timeout must be positive"),
        ({"settle_timeout": -1}, "settle_timeout must be positive"),
        ({"settle_attempts": 0}, "settle_attempts at least 1"),
        ({"settle_timeout": 0, "settle_attempts": 0}, "settle_timeout must be positive"),
    ],
)
def test_a_runner_that_could_not_work_is_refused_by_name(kw, words):
    with pytest.raises(ValueError, match=words):
        build(**kw)


def test_the_smallest_workable_runner_is_built():
    runner = build(concurrency=1, settle_timeout=0.001, settle_attempts=1)
    assert (runner.concurrency, runner.settle_timeout, runner.settle_attempts) == (1, 0.001, 1)


def test_a_runner_built_without_settings_has_the_settings_defaults():
    defaults = {f.name: f.default for f in dataclasses.fields(RunnerConfig)}
    runner = build()
    for name in ("concurrency", "drain_seconds", "backoff_base", "backoff_max", "settle_timeout", "settle_attempts"):
        assert getattr(runner, name) == defaults[name], name
    assert runner.draining is False and runner.readiness is None


async def test_without_a_principal_the_runner_acts_for_no_account_and_sends_nothing():
    runner, source, client, metrics = make([order()], verdict("filled"), principal=None)
    await run_until(runner, source, settled(source))
    [(action, (reason, detail))] = source.all[0].actions
    assert (action, reason) == ("dead_letter", "scope_missing") and client.orders == []
    assert detail == {"client_order_id": "o-1", "detail": "principal sidecar:fake lacks the orders:write scope"}


async def test_each_message_is_counted_timed_and_the_in_flight_gauge_follows_it():
    release = asyncio.Event()

    async def held(o: dict[str, Any]) -> dict[str, Any]:
        await release.wait()
        return {"verdict": {"f": "filled", "r": "rejected", "c": "conflict"}[o["client_order_id"]],
                "client_order_id": o["client_order_id"]}  # fmt: skip

    runner, source, client, metrics = make([order("f"), order("r"), order("c")], held)
    started = time.perf_counter()
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    while client.active < 3:
        await asyncio.sleep(0.005)
    assert sample(metrics, "wojak_sidecar_inflight") == 3
    release.set()
    while not settled(source)():
        await asyncio.sleep(0.005)
    stop.set()
    await asyncio.wait_for(task, 5)
    took = time.perf_counter() - started
    assert sample(metrics, "wojak_sidecar_inflight") == 0
    for v in ("filled", "rejected", "conflict"):
        assert sample(metrics, "wojak_sidecar_messages_total", verdict=v) == 1
    counts = {
        how: sample(metrics, "wojak_sidecar_settlements_total", settlement=how) for how in ("ack", "publish", "dead_letter")
    }
    assert counts == {"ack": 2, "publish": 1, "dead_letter": 1}
    assert sample(metrics, "wojak_sidecar_engine_seconds_count") == 3
    assert 0 < sample(metrics, "wojak_sidecar_engine_seconds_sum") <= 3 * took  # each round trip, in seconds


class RecordingSource(FakeSource):
    """Publishes (message, result) pairs; ``publish_hangs``: the broker never answers a publish."""

    def __init__(self, bodies: list[bytes]) -> None:
        super().__init__(bodies)
        self.pairs: list[tuple[Any, dict[str, Any]]] = []
        self.publish_hangs = False

    async def publish_result(self, message: Any, reply: dict[str, Any]) -> None:
        if self.publish_hangs:
            await asyncio.sleep(3600)
        self.pairs.append((message, reply))


def recording(bodies: list[bytes], answer: Any, **kw: Any) -> tuple[Runner, RecordingSource, FakeClient, SidecarMetrics]:
    runner, _, client, metrics = make([], answer, **kw)
    source = RecordingSource(bodies)
    runner.source = source
    return runner, source, client, metrics


async def test_the_published_result_is_the_engines_reply_for_that_message():
    reply = {"verdict": "rejected", "client_order_id": "o-1", "reason": "sandbox_rejected", "order": {"state": "rejected"}}
    runner, source, client, _ = recording([order(), order("o-2")], lambda o: dict(reply) if o["client_order_id"] == "o-1"
                                          else {"verdict": "filled"})  # fmt: skip
    await run_until(runner, source, settled(source))
    [(message, result)] = source.pairs
    assert message is source.all[0] and result == reply
    assert [a for a, _ in source.all[0].actions] == ["ack"]


async def test_a_publication_the_broker_never_answers_is_abandoned_and_the_message_requeued():
    runner, source, client, metrics = recording([order()], verdict("denied"), settle_timeout=0.02)
    source.publish_hangs = True
    await run_until(runner, source, settled(source))
    assert [a for a, _ in source.all[0].actions] == ["requeue"] and source.pairs == []
    assert sample(metrics, "wojak_sidecar_settlements_total", settlement="publish") is None


@pytest.mark.parametrize("engine_verdict, call", [("conflict", "dead_letter"), ("retry", "requeue"), ("filled", "ack")])
async def test_every_settlement_the_broker_never_answers_ends_within_its_deadline(engine_verdict, call):
    runner, source, client, metrics = make([], verdict(engine_verdict), settle_timeout=0.02, backoff_base=0.001)
    hung = source.add(order(), ("q", "m"), hang=frozenset({call}))
    fine = source.add(order("o-2"), ("q", "m-2"))
    await run_until(runner, source, lambda: fine.settled is not None and not runner._inflight)
    assert hung.actions == [] and sample(metrics, "wojak_sidecar_settlements_total", settlement="failed") == 1
    assert sample(metrics, "wojak_sidecar_inflight") == 0


async def test_a_give_up_the_broker_never_answers_ends_within_its_deadline():
    runner, source, client, metrics = make([], verdict("conflict"), settle_timeout=0.02, settle_attempts=1, concurrency=1)
    first = source.add(order(), ("q", "m"), fail=frozenset({"dead_letter"}))
    again = source.add(order(), ("q", "m"), hang=frozenset({"give_up"}))  # its redelivery: given up, never answered
    fine = source.add(order("o-2"), ("q", "m-2"))
    await run_until(runner, source, lambda: fine.settled is not None and not runner._inflight)
    assert (first.actions, again.actions) == ([], [])
    assert sample(metrics, "wojak_sidecar_settlements_total", settlement="failed") == 2
    assert sample(metrics, "wojak_sidecar_messages_total", verdict="unsettleable") == 1


@pytest.mark.parametrize("settles_as", ["filled", "conflict"])
async def test_a_messages_backoff_starts_over_once_it_is_settled(settles_as):
    answers = ["retry", "retry", "retry", settles_as, "retry"]
    runner, source, client, _ = make([], lambda o: {"verdict": answers.pop(0), "client_order_id": "o-1"},
                                     backoff_base=1.0, backoff_max=100.0, concurrency=1)  # fmt: skip
    deliveries = [source.add(order(), ("q", "m")) for _ in answers]  # the broker redelivers the same message
    await run_until(runner, source, settled(source))
    delays = [m.actions[0][1] for m in deliveries if m.actions[0][0] == "requeue"]
    assert len(delays) == 4
    assert 0.8 <= delays[0] <= 1 and 1.6 <= delays[1] <= 2 and 3.2 <= delays[2] <= 4
    assert 0.8 <= delays[3] <= 1, "settled in between: its next requeue backs off from the start"


async def test_a_duplicate_whose_order_is_not_a_map_is_acked_and_publishes_nothing():
    runner, source, client, _ = make([order()], verdict("duplicate", order="rejected"))
    await run_until(runner, source, settled(source))
    assert [a for a, _ in source.all[0].actions] == ["ack"] and source.published == []


async def test_draining_is_set_when_stop_is_and_readiness_says_so():
    runner, source, client, _ = make([order()], verdict("filled"), readiness=None)
    readiness = Readiness(client)  # type: ignore[arg-type]
    runner2, source2, client2, _ = make([order()], verdict("filled"), readiness=readiness)
    assert runner2.readiness is readiness and not runner2.draining and not readiness.draining
    await run_until(runner2, source2, settled(source2))
    assert runner2.draining is True and readiness.draining is True


async def test_in_flight_messages_finish_during_a_short_drain_window():
    release = asyncio.Event()

    async def slow(o: dict[str, Any]) -> dict[str, Any]:
        await release.wait()
        return {"verdict": "filled"}

    runner, source, client, _ = make([order("a"), order("b")], slow, drain_seconds=2.0)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    while client.active < 2:
        await asyncio.sleep(0.005)
    stop.set()
    await asyncio.sleep(0.2)  # well inside the window, past what a give-back reserve could take from it
    release.set()
    await asyncio.wait_for(task, 5)
    assert [m.actions for m in source.all] == [[("ack", None)]] * 2, "finished, not given back"


async def test_a_broker_call_that_ignores_cancellation_does_not_hold_the_drain(caplog):
    freed = asyncio.Event()
    caplog.set_level("WARNING", logger="wojak.sidecars._core.runner")

    class Deaf(FakeMessage):
        async def _ack(self) -> None:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:  # a client library that swallows the cancellation
                await freed.wait()

    runner, source, client, _ = make([], verdict("filled"), drain_seconds=0.3, settle_timeout=5)
    deaf = Deaf(order(), ("q", "deaf"))
    source.all.append(deaf)
    source.queue.put_nowait(deaf)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    while not client.orders:
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)
    started = asyncio.get_running_loop().time()
    stop.set()
    try:
        await asyncio.wait_for(asyncio.shield(task), 3)
        took = asyncio.get_running_loop().time() - started
        assert took < 0.3 + 0.6, f"the drain took {took:.2f}s with a 0.3 s window"
        assert deaf.actions == []  # the ack never landed: closing the connection returns the message
        assert runner_log(caplog)[-1] == ("WARNING", "1 message(s) still waiting on the broker at the end of the drain"
                                                     " window; closing the connection returns them to the queue")  # fmt: skip
    finally:
        freed.set()
        await asyncio.wait_for(task, 5)
        for _ in range(10):
            await asyncio.sleep(0)


async def test_a_message_that_arrives_while_stopping_is_given_back_untouched():
    class Late(FakeSource):
        async def stop_consuming(self) -> None:
            self.stopped = True
            self.add(order("late"), ("q", "late"))  # delivered after the consumer was told to stop
            self.add(order("later"), ("q", "later"))
            self.queue.put_nowait(None)

    runner, _, client, metrics = make([], verdict("filled"))
    source = Late([])
    runner.source = source
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert [m.actions for m in source.all] == [[("requeue", 0)]] * 2 and client.orders == []  # each one given back
    assert sample(metrics, "wojak_sidecar_settlements_total", settlement="requeue") == 2


async def test_a_body_that_is_not_json_is_dead_lettered_with_the_parsers_reason():
    runner, source, client, _ = make([b'{"account": "a",', b"\xff\xfe{}"], verdict("filled"))
    await run_until(runner, source, settled(source))
    for message in source.all:
        [(action, (reason, detail))] = message.actions
        assert (action, reason) == ("dead_letter", "invalid_json")
        assert detail["error"].startswith("body is not valid JSON: ") and "line 1 column" in detail["error"]
    assert client.orders == []


async def test_a_message_that_is_not_utf8_is_still_given_up_with_its_bytes_in_the_log(caplog):
    runner, source, client, metrics = make([], verdict("filled"), settle_attempts=1, concurrency=1)
    body = b'{"quantity": "\xff\xfe"}'
    source.add(body, ("q", "bin"), fail=frozenset({"dead_letter"}))  # not UTF-8: invalid JSON, dead letter refused
    again = source.add(body, ("q", "bin"))
    caplog.set_level("ERROR")
    await run_until(runner, source, lambda: again.settled is not None)
    assert [a for a, _ in again.actions] == ["give_up"]
    (line,) = [r.getMessage() for r in caplog.records if "giving up" in r.getMessage()]
    assert "\\\\xff\\\\xfe" in line and f"bytes={len(body)}" in line


@pytest.mark.parametrize("answer, publish_fails", [("filled", False), ("retry", False), ("rejected", True), ("conflict", False)])
async def test_settling_a_message_logs_no_error(caplog, answer, publish_fails):
    runner, source, client, _ = make([order()], verdict(answer), backoff_base=0.001)
    source.publish_fails = publish_fails
    caplog.set_level("ERROR")
    await run_until(runner, source, settled(source))
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []


def test_the_per_message_counts_are_bounded_and_forget_the_oldest():
    from wojak.sidecars._core.runner import _Attempts, _SettleFailures

    attempts = _Attempts(size=2)
    assert [attempts.bump(k) for k in ("a", "a", "b")] == [1, 2, 1]
    assert attempts.bump("c") == 1  # a third key: the oldest (a) goes
    assert attempts.bump("a") == 1 and attempts.bump("c") == 2
    attempts.forget("nobody")  # forgetting what is not there is fine
    failures = _SettleFailures(size=2)
    assert [failures.failed(k, f"{k} failed") for k in ("a", "a", "b")] == [1, 2, 1]
    assert failures.failed("c", "c failed") == 1  # the oldest (a) goes
    assert (failures.get("a"), failures.get("b"), failures.get("c"), failures.last("c")) == (0, 1, 1, "c failed")


async def test_a_stop_consuming_that_hangs_takes_no_more_than_the_drain_window(caplog):
    stop = asyncio.Event()
    caplog.set_level("WARNING", logger="wojak.sidecars._core.runner")
    runner2, source2, _, _ = make([order()], verdict("filled"), drain_seconds=0.2, settle_timeout=5)
    source2.stop_hangs = True
    task = asyncio.create_task(runner2.run(stop))
    while not settled(source2)():
        await asyncio.sleep(0.005)
    started = asyncio.get_running_loop().time()
    stop.set()
    await asyncio.wait_for(task, 5)
    took = asyncio.get_running_loop().time() - started
    assert took < 0.2 + 0.6, f"stopping took {took:.2f}s with a 0.2 s drain window"
    assert runner_log(caplog) == [("WARNING", "stopping the consumer took longer than 5.0s; draining anyway")]


@pytest.mark.parametrize("counts", [True, False])
async def test_a_settlement_that_failed_does_not_restart_the_messages_backoff(counts):
    from wojak.sidecars._core.source import SettleFailed

    class Refusing(FakeMessage):
        async def _ack(self) -> None:  # the broker refuses the ack (its fault, or the message's)
            raise SettleFailed("ack refused", counts=counts)

    answers = ["retry", "retry", "filled", "retry"]
    runner, source, client, _ = make([], lambda o: {"verdict": answers.pop(0), "client_order_id": "o-1"},
                                     backoff_base=1.0, backoff_max=100.0, concurrency=1)  # fmt: skip
    deliveries = [source.add(order(), ("q", "m")) for _ in range(2)]
    refused = Refusing(order(), ("q", "m"))
    source.all.append(refused)
    source.queue.put_nowait(refused)
    deliveries.append(source.add(order(), ("q", "m")))
    await run_until(runner, source, lambda: all(m.settled is not None for m in source.all))
    delays = [m.actions[0][1] for m in deliveries]
    assert refused.actions == [] and 0.8 <= delays[0] <= 1 and 1.6 <= delays[1] <= 2
    assert 3.2 <= delays[2] <= 4, "the ack failed: the message was not settled, its backoff goes on"


# -- what the operator reads: the log lines of a settlement, a give-up, an unknown verdict, a drain --


def runner_log(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "wojak.sidecars._core.runner"]


@pytest.mark.parametrize("size", [100, 65536, 65537])
async def test_a_given_up_message_is_logged_whole_up_to_64_KiB_with_its_hash_size_and_attributes(caplog, size):
    """A message taken off the queue unhandled leaves one ERROR record: its coordinates, how many
    settlements failed and the last one's words, then the whole message (sha256, size, attributes,
    and the body, cut after 65,536 bytes and marked so)."""
    import hashlib
    import json
    from decimal import Decimal

    runner, source, client, metrics = make([], verdict("filled"), settle_attempts=1, concurrency=1)
    body = b'{"note": "' + b"x" * (size - 12) + b'",'  # not JSON: dead-lettered, and that is refused
    assert len(body) == size
    attributes = {"reply_to": "r", "priority": Decimal("1.5")}
    source.add(body, ("q", "g"), fail=frozenset({"dead_letter"})).attributes = attributes
    again = source.add(body, ("q", "g"))
    again.attributes = attributes
    caplog.set_level("INFO", logger="wojak.sidecars._core.runner")
    await run_until(runner, source, lambda: again.settled is not None)
    assert [a for a, _ in again.actions] == ["give_up"]
    shown = body[:65536].decode()
    assert runner_log(caplog) == [
        ("WARNING", "dead-lettering message ('q', 'g'): invalid_json"),
        ("WARNING", "settling message ('q', 'g') failed (dead_letter: dead_letter refused); the broker will redeliver"
                    " it (1 of 1 before it is given up)"),
        ("ERROR", "giving up message ('q', 'g') after 1 failed settlements (last: dead_letter: dead_letter refused); the"
                  " source takes it off the queue without handling it again."
                  f" sha256={hashlib.sha256(body).hexdigest()} bytes={size}"
                  ' attributes={"reply_to":"r","priority":"1.5"}'
                  f" body{'' if size <= 65536 else '[:65536]'}={json.dumps(shown)}"),
    ]  # fmt: skip


async def test_a_broker_failure_that_does_not_count_is_logged_as_such(caplog):
    from wojak.sidecars._core.source import SettleFailed

    runner, source, client, _ = make([order()], verdict("filled"), settle_attempts=3, concurrency=1)
    message = source.all[0]

    async def unreachable() -> None:
        raise SettleFailed("broker unreachable " + "z" * 400, counts=False)

    message._ack = unreachable  # type: ignore[method-assign]
    caplog.set_level("WARNING", logger="wojak.sidecars._core.runner")
    await run_until(runner, source, lambda: bool(runner_log(caplog)))
    assert runner_log(caplog) == [
        ("WARNING", f"settling message ('q', 'm-0') failed ({('ack: broker unreachable ' + 'z' * 400)[:300]}); the broker"
                    " will redeliver it (not counted toward giving it up)")]  # fmt: skip


async def test_a_failed_publication_and_an_unknown_verdict_are_logged_naming_the_message(caplog):
    runner, source, client, _ = make([order("p-1")], verdict("rejected"), backoff_base=0.001, concurrency=1)
    source.publish_fails = True
    caplog.set_level("WARNING", logger="wojak.sidecars._core.runner")
    await run_until(runner, source, settled(source))
    assert runner_log(caplog) == [
        ("WARNING", "publishing the rejected result of ('q', 'm-0') failed (reply exchange unreachable); requeueing it:"
                    " its redelivery publishes it")]  # fmt: skip
    caplog.clear()
    runner, source, client, _ = make([order("u-1")], verdict("weird"), backoff_base=0.001, concurrency=1)
    await run_until(runner, source, settled(source))
    assert runner_log(caplog) == [("ERROR", "engine answered unknown verdict 'weird' for ('q', 'm-0'); requeueing")]


async def test_a_drain_says_how_many_messages_it_waits_for_and_how_many_it_gives_back(caplog):
    import re

    release = asyncio.Event()

    async def held(o: dict[str, Any]) -> dict[str, Any]:
        await release.wait()
        return {"verdict": "filled", "client_order_id": o["client_order_id"]}

    runner, source, client, _ = make([order("d-1"), order("d-2")], held, drain_seconds=1.0)
    caplog.set_level("INFO", logger="wojak.sidecars._core.runner")
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    while client.active < 2:
        await asyncio.sleep(0.005)
    stop.set()
    await asyncio.wait_for(task, 5)
    lines = runner_log(caplog)
    assert [level for level, _ in lines] == ["INFO", "WARNING"]
    # the window left when the drain began: 1 s less what stopping took
    assert re.fullmatch(r"draining 2 in-flight message\(s\) for up to (0\.\d|1\.0)s", lines[0][1]), lines[0][1]
    assert lines[1][1] == "2 message(s) did not finish within the drain window; requeueing them"
    assert [m.actions for m in source.all] == [[("requeue", 0)]] * 2
    release.set()


def test_a_refused_runner_says_why_in_full():
    with pytest.raises(ValueError) as refused:
        build(concurrency=0)
    assert str(refused.value) == "concurrency must be at least 1"
    with pytest.raises(ValueError) as refused:
        build(settle_attempts=0)
    assert str(refused.value) == "settle_timeout must be positive and settle_attempts at least 1"


async def test_a_failed_settlement_is_described_by_its_kind_and_the_brokers_words_cut_at_300(caplog):
    """What a failed settlement is recorded as (the log, and the give-up record's last_failure):
    no answer within its deadline, the exception's words (300 characters at most, the kind
    included), or its type when it has no words."""
    from wojak.sidecars._core.source import SettleFailed

    errors = iter([SettleFailed("w" * 400), SettleFailed()])

    class Refusing(FakeMessage):
        async def _ack(self) -> None:
            raise next(errors)

    runner, source, client, _ = make([], verdict("filled"), settle_attempts=10, concurrency=1, settle_timeout=0.1)
    hanging = source.add(order("h-1"), ("q", "hang"), hang=frozenset({"ack"}))
    for coid in ("w-1", "w-2"):
        refusing = Refusing(order(coid), ("q", coid))
        source.all.append(refusing)
        source.queue.put_nowait(refusing)
    caplog.set_level("WARNING", logger="wojak.sidecars._core.runner")
    await run_until(runner, source, lambda: len(runner_log(caplog)) == 3)
    described = {line.split(" failed (")[0]: line.split(" failed (", 1)[1].rsplit("); the broker", 1)[0]
                 for _, line in runner_log(caplog)}  # fmt: skip
    assert described == {"settling message ('q', 'hang')": "ack: no answer within 0.3s",
                         "settling message ('q', 'w-1')": ("ack: " + "w" * 400)[:300],
                         "settling message ('q', 'w-2')": "ack: SettleFailed"}  # fmt: skip
    assert runner._settle_failures.last(("q", "w-1")) == ("ack: " + "w" * 400)[:300]
    assert hanging.actions == []


# -- a source that carries ticks (WOJAK_SIDECAR_CARRIES=ticks) ------------------------------------


class TickClient:
    """The engine's side of a tick: answers from ``answer(tick)``; records what was sent."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.ticks: list[tuple[dict[str, Any], Any]] = []

    async def tick(self, tick: dict[str, Any], principal: Any) -> dict[str, Any]:
        self.ticks.append((tick, principal))
        return self.answer(tick)


def tick_body(symbol: str = "NIFTY-FUT", **kw: Any) -> bytes:
    import json

    return json.dumps({"symbol": symbol, "bid": "100.5", "ask": "101", "last": "100.75", **kw}).encode()


def tick_runner(bodies: list[bytes], answer: Any, principal: Any = "ticks") -> tuple[Runner, FakeSource, TickClient, Any]:
    from wojak.engine.protocol import Principal, Scope

    if principal == "ticks":
        principal = Principal.of("sidecar:fake", (), [Scope.TICKS_WRITE])
    source, client, metrics = FakeSource(bodies), TickClient(answer), SidecarMetrics("fake")
    runner = Runner(source, client, metrics, carries="ticks", principal=principal, backoff_base=0.001, backoff_max=0.002)  # type: ignore[arg-type]
    return runner, source, client, metrics


@pytest.mark.parametrize("status", ["applied", "duplicate", "stale", "suspect"])
async def test_a_tick_is_sent_under_its_principal_acked_and_counted_by_what_the_engine_did(status):
    runner, source, client, metrics = tick_runner([tick_body(sequence=7)], lambda t: {"verdict": "ok", "status": status})
    await run_until(runner, source, settled(source))
    [(tick, principal)] = client.ticks
    assert tick == {"symbol": "NIFTY-FUT", "bid": "100.5", "ask": "101", "last": "100.75", "sequence": 7}
    assert principal is runner.principal and principal.name == "sidecar:fake"
    assert source.all[0].actions == [("ack", None)]
    assert sample(metrics, "wojak_sidecar_messages_total", verdict=f"tick_{status}") == 1
    assert sample(metrics, "wojak_sidecar_engine_seconds_count") == 1
    assert sample(metrics, "wojak_sidecar_settlements_total", settlement="ack") == 1


async def test_an_invalid_tick_is_dead_lettered_naming_its_fields_and_never_sent():
    runner, source, client, metrics = tick_runner([b'{"symbol": "NIFTY-FUT", "bid": "x", "ask": "1", "last": "1"}', b"[1]"],
                                                  lambda t: {"verdict": "ok", "status": "applied"})  # fmt: skip
    await run_until(runner, source, settled(source))
    assert client.ticks == []
    [(action, (reason, detail))] = source.all[0].actions
    assert (action, reason) == ("dead_letter", "invalid")
    assert [e["field"] for e in detail["errors"]] == ["bid"] and list(detail) == ["errors"]
    [(action, (reason, detail))] = source.all[1].actions
    assert (action, reason, detail["errors"][0]["code"]) == ("dead_letter", "invalid", "model_type")
    assert sample(metrics, "wojak_sidecar_messages_total", verdict="invalid") == 2


async def test_a_tick_from_a_principal_without_ticks_write_is_dead_lettered_unsent():
    from wojak.engine.protocol import ALL_SCOPES, Principal, Scope

    orders_only = Principal.of("sidecar:fake", ["*"], [s for s in ALL_SCOPES if s != Scope.TICKS_WRITE.value])
    runner, source, client, metrics = tick_runner([tick_body()], lambda t: {"verdict": "ok"}, principal=orders_only)
    await run_until(runner, source, settled(source))
    assert client.ticks == []
    [(action, (reason, detail))] = source.all[0].actions
    assert (action, reason) == ("dead_letter", "scope_missing")
    assert detail == {"symbol": "NIFTY-FUT", "detail": "principal sidecar:fake lacks the ticks:write scope"}
    assert sample(metrics, "wojak_sidecar_messages_total", verdict="forbidden") == 1


async def test_a_tick_the_engine_refuses_is_dead_lettered_with_what_it_said():
    def refuse(tick: dict[str, Any]) -> dict[str, Any]:
        if tick["symbol"] == "BAD":
            return {"verdict": "invalid", "errors": [{"loc": ["bid"]}], "reason": None, "detail": "bid above ask"}
        return {"verdict": "forbidden", "reason": "scope_missing"}

    runner, source, client, metrics = tick_runner([tick_body("BAD"), tick_body("NOPE")], refuse)
    await run_until(runner, source, settled(source))
    assert source.all[0].actions == [("dead_letter", ("invalid", {"symbol": "BAD", "errors": [{"loc": ["bid"]}],
                                                                   "detail": "bid above ask"}))]  # fmt: skip
    assert source.all[1].actions == [("dead_letter", ("forbidden", {"symbol": "NOPE", "reason": "scope_missing"}))]
    assert sample(metrics, "wojak_sidecar_messages_total", verdict="invalid") == 1
    assert sample(metrics, "wojak_sidecar_messages_total", verdict="forbidden") == 1


async def test_a_tick_the_engine_cannot_take_now_is_requeued_and_an_unknown_verdict_is_logged(caplog):
    answers = iter([{"verdict": "retry", "retry_after": 0.002}, {"verdict": "weird"}, {"verdict": "ok", "status": "applied"}])
    runner, source, client, metrics = tick_runner([tick_body()], lambda t: next(answers))
    message = source.all[0]

    async def requeue(delay: float) -> None:  # the broker redelivers at once
        message.actions.append(("requeue", delay))
        message.settled = None
        source.queue.put_nowait(message)

    message._requeue = requeue  # type: ignore[method-assign]
    caplog.set_level("ERROR", logger="wojak.sidecars._core.runner")
    await run_until(runner, source, lambda: message.actions[-1:] == [("ack", None)])
    assert [a for a, _ in message.actions] == ["requeue", "requeue", "ack"]
    assert message.actions[0][1] == 0.002  # the engine's retry_after is the floor (backoff_max caps it)
    assert runner_log(caplog) == [("ERROR", "engine answered unknown verdict 'weird' for tick ('q', 'm-0'); requeueing")]
    assert sample(metrics, "wojak_sidecar_messages_total", verdict="retry") == 1
    assert sample(metrics, "wojak_sidecar_messages_total", verdict="weird") == 1


def test_a_runner_for_anything_but_orders_or_ticks_is_refused_naming_both():
    with pytest.raises(ValueError) as refused:
        build(carries="quotes")
    assert str(refused.value) == "a source carries orders or ticks, not 'quotes'"


async def test_a_message_whose_handling_fails_is_logged_with_the_error_and_requeued(caplog):
    """handle() never raises: a failure is logged with its error and the message requeued; if
    even that fails (here: the backoff), that is logged too and the broker redelivers it."""

    def broken(o: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("client bug")

    runner, source, client, _ = make([order("b-1"), order("b-2")], broken, concurrency=1)
    delays = iter([0.01])

    def backoff(attempt: int, retry_after: float | None = None) -> float:
        try:
            return next(delays)
        except StopIteration:
            raise ValueError("no backoff left") from None

    runner.backoff = backoff  # type: ignore[method-assign]
    caplog.set_level("ERROR", logger="wojak.sidecars._core.runner")
    await run_until(runner, source, lambda: len(runner_log(caplog)) == 3)
    assert runner_log(caplog) == [("ERROR", "handling message ('q', 'm-0') failed"),
                                  ("ERROR", "handling message ('q', 'm-1') failed"),
                                  ("ERROR", "requeueing message ('q', 'm-1') failed; the broker will redeliver it")]  # fmt: skip
    errors = [str(r.exc_info[1]) for r in caplog.records if r.name == "wojak.sidecars._core.runner" and r.exc_info]
    assert errors == ["client bug", "client bug", "no backoff left"]
    assert source.all[0].actions == [("requeue", 0.01)] and source.all[1].actions == []


@pytest.mark.parametrize("broken", ["stop_consuming", "messages"])
async def test_a_source_that_fails_while_stopping_or_consuming_is_logged_and_the_runner_ends(caplog, broken):
    class Broken(FakeSource):
        async def stop_consuming(self) -> None:
            await super().stop_consuming()
            if broken == "stop_consuming":
                raise ConnectionError("cancel refused")

        async def messages(self):  # type: ignore[override]
            async for message in super().messages():
                yield message
            if broken == "messages":
                raise ConnectionError("consumer lost")

    source = Broken([order()])
    runner = Runner(source, FakeClient(verdict("filled")), SidecarMetrics("fake"),  # type: ignore[arg-type]
                    principal=make([], None)[0].principal)  # fmt: skip
    caplog.set_level("ERROR", logger="wojak.sidecars._core.runner")
    await run_until(runner, source, settled(source))
    expected = {"stop_consuming": ("stopping the consumer failed", "cancel refused"),
                "messages": ("the source's message iterator failed", "consumer lost")}[broken]  # fmt: skip
    assert [(r.getMessage(), str(r.exc_info[1])) for r in caplog.records if r.name == "wojak.sidecars._core.runner"] == [
        expected]


async def test_a_tick_reply_without_a_verdict_is_an_unknown_verdict_and_its_round_trip_is_timed(caplog):
    answers = iter([{}, {"verdict": "ok", "status": "applied"}])
    runner, source, client, metrics = tick_runner([tick_body()], lambda t: next(answers))
    message = source.all[0]

    async def requeue(delay: float) -> None:
        message.actions.append(("requeue", delay))
        message.settled = None
        source.queue.put_nowait(message)

    message._requeue = requeue  # type: ignore[method-assign]
    caplog.set_level("ERROR", logger="wojak.sidecars._core.runner")
    await run_until(runner, source, lambda: message.actions[-1:] == [("ack", None)])
    assert runner_log(caplog) == [("ERROR", "engine answered unknown verdict 'unknown' for tick ('q', 'm-0'); requeueing")]
    assert sample(metrics, "wojak_sidecar_messages_total", verdict="unknown") == 1
    assert sample(metrics, "wojak_sidecar_engine_seconds_count") == 2
    assert 0 <= sample(metrics, "wojak_sidecar_engine_seconds_sum") < 60  # a duration, not a clock reading
