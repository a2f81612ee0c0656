"""Fast unit tests of the Runner with an in-memory Source and a scripted engine client.

The same behaviour runs against the in-memory broker, real brokers and a real engine in
wojak.sidecars.testing (the contract suite);
these pin the details (verdict table, backoff, drain, failures) without any process.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator, Callable

import pytest

from wojak.engine.protocol import ALL_SCOPES, Principal, Verdict, derive_client_order_id
from wojak.sidecars._core.health import Readiness
from wojak.sidecars._core.metrics import SidecarMetrics
from wojak.sidecars._core.runner import Runner
from wojak.sidecars._core.source import AlreadySettled, SettleFailed, Source, SourceMessage


def order(coid: str | None = "o-1", **kw: Any) -> bytes:
    body = {"account": "a", "symbol": "NIFTY-FUT", "side": "buy", "quantity": "1", "order_type": "market", **kw}
    if coid is not None:
        body["client_order_id"] = coid
    return json.dumps(body).encode()


class FakeMessage(SourceMessage):
    """Records its settlement; ``fail`` names settlements the "broker" refuses (SettleFailed),
    ``hang`` those it never answers."""

    def __init__(self, body: bytes, coordinates: tuple[Any, ...], *, fail: frozenset[str] = frozenset(),
                 hang: frozenset[str] = frozenset()) -> None:  # fmt: skip
        super().__init__(body, coordinates)
        self.actions: list[tuple[str, Any]] = []
        self.fail, self.hang = fail, hang

    async def _broker(self, how: str, arg: Any) -> None:
        if how in self.hang:
            await asyncio.sleep(3600)
        if how in self.fail:
            raise SettleFailed(f"{how} refused")
        self.actions.append((how, arg))

    async def _ack(self) -> None:
        await self._broker("ack", None)

    async def _requeue(self, delay: float) -> None:
        await self._broker("requeue", delay)

    async def _dead_letter(self, reason: str, detail: Any) -> None:
        await self._broker("dead_letter", (reason, detail))

    async def _give_up(self, reason: str, detail: Any) -> None:
        await self._broker("give_up", (reason, detail))


class FakeSource(Source):
    name = "fake"

    def __init__(self, bodies: list[bytes]) -> None:
        self.queue: asyncio.Queue[FakeMessage | None] = asyncio.Queue()
        self.all: list[FakeMessage] = []
        self.published: list[dict[str, Any]] = []
        self.publish_fails = False
        self.stopped = False
        for i, body in enumerate(bodies):
            self.add(body, ("q", f"m-{i}"))

    def add(self, body: bytes, coordinates: tuple[Any, ...], **kw: Any) -> FakeMessage:
        message = FakeMessage(body, coordinates, **kw)
        self.all.append(message)
        self.queue.put_nowait(message)
        return message

    async def messages(self) -> AsyncIterator[SourceMessage]:  # type: ignore[override]
        while (message := await self.queue.get()) is not None:
            yield message

    async def stop_consuming(self) -> None:
        self.stopped = True
        self.queue.put_nowait(None)
        if getattr(self, "stop_hangs", False):  # a broker that never answers the consumer's cancel
            await asyncio.sleep(3600)

    async def publish_result(self, message: SourceMessage, reply: dict[str, Any]) -> None:
        if self.publish_fails:
            raise ConnectionError("reply exchange unreachable")
        self.published.append(reply)


class FakeClient:
    def __init__(self, answer: Callable[[dict[str, Any]], Any]) -> None:
        self.answer = answer
        self.orders: list[dict[str, Any]] = []
        self.active = 0
        self.max_active = 0

    async def submit_order(self, order: dict[str, Any], principal: Principal,
                           deadline: float | None = None) -> dict[str, Any]:  # fmt: skip
        self.orders.append(order)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            result = self.answer(order)
            if asyncio.iscoroutine(result):
                result = await result
            return result
        finally:
            self.active -= 1


def verdict(v: str, **extra: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda o: {"verdict": v, "client_order_id": o["client_order_id"], **extra}


async def run_until(runner: Runner, source: FakeSource, done: Callable[[], bool], timeout: float = 5.0) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    deadline = asyncio.get_running_loop().time() + timeout
    while not done():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)
    stop.set()
    await asyncio.wait_for(task, timeout)


def make(bodies: list[bytes], answer: Any, **kw: Any) -> tuple[Runner, FakeSource, FakeClient, SidecarMetrics]:
    source, client, metrics = FakeSource(bodies), FakeClient(answer), SidecarMetrics("fake")
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("principal", Principal.of("test", ["*"], ALL_SCOPES))  # every account: these pin the settlement
    return Runner(source, client, metrics, **kw), source, client, metrics  # type: ignore[arg-type]


def settled(source: FakeSource) -> Callable[[], bool]:
    return lambda: all(m.settled is not None for m in source.all)


@pytest.mark.parametrize(
    ("engine_verdict", "action", "published"),
    [
        ("filled", "ack", False), ("partially_filled", "ack", False), ("accepted", "ack", False),
        ("escalated", "ack", False), ("duplicate", "ack", False), ("rejected", "ack", True),
        ("denied", "ack", True), ("conflict", "dead_letter", False), ("retry", "requeue", False),
        ("something-new", "requeue", False),
    ],
)  # fmt: skip
async def test_verdict_table(engine_verdict, action, published):
    runner, source, client, metrics = make([order()], verdict(engine_verdict, retry_after=0.5))
    await run_until(runner, source, settled(source))
    (message,) = source.all
    assert [a for a, _ in message.actions] == [action]
    assert bool(source.published) is published
    assert metrics.registry.get_sample_value("wojak_sidecar_messages_total", {"source": "fake", "verdict": engine_verdict}) == 1
    if action == "dead_letter":
        reason, detail = message.actions[0][1]
        assert reason == engine_verdict and detail["client_order_id"] == "o-1"
    if engine_verdict == "retry":
        assert message.actions[0][1] >= 0.5, "retry_after is a floor on the backoff"


async def test_invalid_and_bad_json_are_dead_lettered_without_calling_the_engine():
    runner, source, client, _ = make([order(quantity="-1"), b"{nope", b"[1, 2]", order(quantity=1.5)], verdict("filled"))
    await run_until(runner, source, settled(source))
    reasons = [m.actions[0][1][0] for m in source.all]
    assert reasons == ["invalid", "invalid_json", "invalid", "invalid"]
    assert source.all[0].actions[0][1][1]["errors"][0]["field"] == "quantity"
    assert client.orders == []


async def test_missing_client_order_id_is_derived_from_the_coordinates():
    runner, source, client, _ = make([order(None), order(None)], verdict("filled"))
    source.all[1].coordinates = source.all[0].coordinates  # a redelivery of the same message
    await run_until(runner, source, settled(source))
    expected = derive_client_order_id("fake", "q", "m-0")
    assert [o["client_order_id"] for o in client.orders] == [expected, expected]


async def test_backoff_grows_exponentially_and_is_capped():
    runner, *_ = make([], verdict("retry"), backoff_base=0.1, backoff_max=2.0)
    delays = [runner.backoff(n) for n in range(1, 10)]
    assert 0.08 <= delays[0] <= 0.1 and 0.16 <= delays[1] <= 0.2 and 0.32 <= delays[2] <= 0.4
    assert all(d <= 2.0 for d in delays) and delays[-1] >= 1.6
    assert runner.backoff(1, retry_after=1.5) >= 1.5
    assert runner.backoff(1, retry_after=999) == 2.0  # the cap bounds the engine's hint too


async def test_repeated_retries_back_off_further():
    runner, source, client, _ = make([], verdict("retry"), backoff_base=0.01, backoff_max=1.0)
    messages = [source.add(order(), ("q", "same")) for _ in range(4)]  # the broker redelivers it 4 times
    await run_until(runner, source, settled(source))
    delays = [m.actions[0][1] for m in messages]
    assert delays == sorted(delays) and delays[-1] > 4 * delays[0]


async def test_an_exception_requeues_and_the_runner_keeps_going():
    def answer(o: dict[str, Any]) -> dict[str, Any]:
        if o["client_order_id"] == "boom":
            raise RuntimeError("engine client bug")
        return {"verdict": "filled"}

    runner, source, client, _ = make([order("boom"), order("fine")], answer)
    await run_until(runner, source, settled(source))
    assert [m.actions[0][0] for m in source.all] == ["requeue", "ack"]


async def test_failed_result_publication_requeues_instead_of_acking():
    runner, source, client, _ = make([order()], verdict("rejected"))
    source.publish_fails = True
    await run_until(runner, source, settled(source))
    assert [a for a, _ in source.all[0].actions] == ["requeue"]


async def test_concurrency_is_bounded():
    async def slow(o: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.01)
        return {"verdict": "filled"}

    runner, source, client, _ = make([order(f"o-{i}") for i in range(40)], slow, concurrency=5)
    await run_until(runner, source, settled(source))
    assert client.max_active == 5 and len(client.orders) == 40


async def test_stop_finishes_in_flight_within_the_drain_window():
    release = asyncio.Event()

    async def held(o: dict[str, Any]) -> dict[str, Any]:
        await release.wait()
        return {"verdict": "filled"}

    runner, source, client, _ = make([order(f"o-{i}") for i in range(10)], held, concurrency=3, drain_seconds=5)
    readiness = Readiness(client)  # type: ignore[arg-type]
    runner.readiness = readiness
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    while client.active < 3:
        await asyncio.sleep(0.005)
    stop.set()
    await asyncio.sleep(0.05)
    assert readiness.draining and source.stopped and not task.done()
    release.set()
    await asyncio.wait_for(task, 5)
    handled = [m for m in source.all if m.settled]
    assert [m.settled for m in handled] == ["ack"] * 3, "in-flight finished; the rest were never taken"
    assert len(client.orders) == 3


async def test_drain_timeout_requeues_each_unsettled_message_exactly_once():
    async def never(o: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    runner, source, client, metrics = make([order(f"o-{i}") for i in range(4)], never, concurrency=4, drain_seconds=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    while client.active < 4:
        await asyncio.sleep(0.005)
    stop.set()
    await asyncio.wait_for(task, 2)
    assert [m.actions for m in source.all] == [[("requeue", 0)]] * 4
    assert metrics.registry.get_sample_value("wojak_sidecar_settlements_total", {"source": "fake", "settlement": "requeue"}) == 4


async def test_a_message_settles_once():
    message = FakeMessage(b"", ("q", 1))
    await message.ack()
    with pytest.raises(AlreadySettled):
        await message.requeue(0)
    assert message.actions == [("ack", None)]


def test_verdicts_cover_the_table():
    assert {v.value for v in Verdict} >= {"filled", "rejected", "conflict", "retry"}


# -- bounded settlements, give-up, duplicates (issue 9) -----------------------------------


def sample(metrics: SidecarMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, {"source": "fake", **labels}) or 0.0


async def test_a_settlement_the_broker_never_answers_times_out_and_the_in_flight_gauge_comes_down():
    runner, source, client, metrics = make([], verdict("filled"), settle_timeout=0.05)
    stuck = [source.add(order(f"o-{i}"), ("q", f"h-{i}"), hang=frozenset({"ack"})) for i in range(3)]
    fine = source.add(order("o-ok"), ("q", "ok"))
    await run_until(runner, source, lambda: all(m.settled for m in source.all) and not runner._inflight)
    assert [m.actions for m in stuck] == [[]] * 3 and fine.actions == [("ack", None)]
    assert sample(metrics, "wojak_sidecar_settlements_total", settlement="failed") == 3
    assert sample(metrics, "wojak_sidecar_settlements_total", settlement="ack") == 1
    assert sample(metrics, "wojak_sidecar_inflight") == 0


async def test_a_message_whose_settlements_keep_failing_is_given_up_without_being_handled_again(caplog):
    def answer(o: dict[str, Any]) -> dict[str, Any]:  # c-1 conflicts (dead letter); the order behind it fills
        return {"verdict": "conflict" if o["client_order_id"] == "c-1" else "filled", "client_order_id": o["client_order_id"]}

    runner, source, client, metrics = make([], answer, settle_attempts=3, concurrency=1)
    refused = frozenset({"dead_letter"})
    # the broker redelivers the same message (same coordinates) each time its settlement fails
    deliveries = [source.add(order("c-1", tag="t"), ("q", "m-c"), fail=refused) for _ in range(3)]
    last = source.add(order("c-1", tag="t"), ("q", "m-c"), fail=refused)
    after = source.add(order("o-2"), ("q", "m-2"))
    caplog.set_level("ERROR")
    await run_until(runner, source, settled(source))
    assert [m.actions for m in deliveries] == [[]] * 3
    assert [a for a, _ in last.actions] == ["give_up"] and last.actions[0][1][0] == "unsettleable"
    assert last.actions[0][1][1]["settle_failures"] == 3 and "dead_letter" in last.actions[0][1][1]["last_failure"]
    assert [o["client_order_id"] for o in client.orders] == ["c-1"] * 3 + ["o-2"], "the 4th delivery never reached the engine"
    assert after.actions == [("ack", None)]
    assert sample(metrics, "wojak_sidecar_messages_total", verdict="unsettleable") == 1
    assert sample(metrics, "wojak_sidecar_settlements_total", settlement="give_up") == 1
    (line,) = [r.getMessage() for r in caplog.records if "giving up" in r.getMessage()]
    assert "('q', 'm-c')" in line and "after 3 failed settlements" in line and "sha256=" in line and '\\"c-1\\"' in line


async def test_a_successful_settlement_clears_the_failure_count():
    runner, source, client, _ = make([], verdict("filled"), settle_attempts=2, concurrency=1)
    first = source.add(order("o-1"), ("q", "m"), fail=frozenset({"ack"}))
    second = source.add(order("o-1"), ("q", "m"))  # redelivered: acked now
    third = source.add(order("o-1"), ("q", "m"), fail=frozenset({"ack"}))  # a later failure starts over
    fourth = source.add(order("o-1"), ("q", "m"))
    await run_until(runner, source, settled(source))
    assert (first.actions, second.actions, third.actions, fourth.actions) == ([], [("ack", None)], [], [("ack", None)])


async def test_the_drain_ends_within_its_window_even_when_giving_back_hangs():
    async def never(o: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    runner, source, client, metrics = make([], never, concurrency=4, drain_seconds=0.5, settle_timeout=5)
    for i in range(4):
        source.add(order(f"o-{i}"), ("q", f"m-{i}"), hang=frozenset({"requeue"}))
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    while client.active < 4:
        await asyncio.sleep(0.005)
    started = asyncio.get_running_loop().time()
    stop.set()
    await asyncio.wait_for(task, 3)
    took = asyncio.get_running_loop().time() - started
    assert took < 0.5 + 0.1, f"the drain took {took:.2f}s with a 0.5 s window"
    assert all(m.settled == "requeue" for m in source.all), "each given back once (the broker never answered)"
    assert sample(metrics, "wojak_sidecar_inflight") == 0


async def test_a_stop_consuming_that_hangs_does_not_hold_the_drain():
    runner, source, client, _ = make([order()], verdict("filled"), drain_seconds=0.3, settle_timeout=5)
    source.stop_hangs = True
    started = asyncio.get_running_loop().time()
    await run_until(runner, source, settled(source))
    assert asyncio.get_running_loop().time() - started < 1.5


@pytest.mark.parametrize(("state", "publishes"), [("rejected", True), ("denied", True), ("venue_anomaly", True),
                                                  ("filled", False), ("escalated", False), ("canceled", False)])
async def test_a_duplicate_publishes_the_result_its_original_outcome_publishes(state, publishes):
    answer = verdict("duplicate", reason="r", order={"client_order_id": "o-1", "state": state})
    runner, source, client, metrics = make([order()], answer)
    await run_until(runner, source, settled(source))
    assert [a for a, _ in source.all[0].actions] == ["ack"]
    if publishes:
        (result,) = source.published
        assert result["verdict"] == state and result["duplicate"] is True and result["client_order_id"] == "o-1"
    else:
        assert source.published == []


async def test_a_duplicate_whose_result_cannot_be_published_is_requeued_not_acked():
    answer = verdict("duplicate", order={"client_order_id": "o-1", "state": "denied"})
    runner, source, client, _ = make([order()], answer)
    source.publish_fails = True
    await run_until(runner, source, settled(source))
    assert [a for a, _ in source.all[0].actions] == ["requeue"]


async def test_a_message_the_source_refused_is_dead_lettered_unparsed_and_never_sent():
    runner, source, client, metrics = make([], verdict("filled"))
    refused = source.add(b"\x00" * 100, ("q", "big"))
    refused.refusal = ("body_too_large", {"bytes": 100, "limit": 10})
    await run_until(runner, source, settled(source))
    assert refused.actions == [("dead_letter", ("body_too_large", {"bytes": 100, "limit": 10}))]
    assert client.orders == []
    assert sample(metrics, "wojak_sidecar_messages_total", verdict="body_too_large") == 1
