"""The sidecar behaviour contract, written once: every broker sidecar runs these tests, in memory
(``MemoryBroker``, on every change) and against its real broker.

A broker's test class subclasses ``SidecarContract`` and provides the broker hooks
(``make_source``, ``publish``, ``dead_letters``, ``dead_letter_count``, ``pending_count``, and
``sidecar_env`` for its ``wojak sidecar <cli_name>`` process, or ``launch`` for a sidecar run
another way), each against a queue/topic of its own. The suite provides an ``engine_factory``
fixture: ``engine_factory(**env)`` starts a REAL engine process (an ``EngineUnderTest``: sandbox venue with a ledger, whose
``executions()`` count how often each order reached the venue). The tests run the real
``Runner`` against it and the broker:

* ack on success; a duplicate redelivery executes once and is acked;
* ``invalid`` and bad JSON are dead-lettered with their reason and never reach the venue;
* ``conflict`` is dead-lettered with reason ``conflict``;
* ``retry`` (no engine) requeues, and the message is processed once the engine is up;
* stop drains: in-flight messages finish, the rest is requeued, nothing stays unacked, and
  the in-flight gauge is back at zero;
* a message without ``client_order_id`` derives the same id on redelivery;
* the sidecar process exits cleanly on SIGTERM and loses nothing;
* the stream (:mod:`.stream`): thousands of orders, duplicates and poison, ``kill -9``
  mid-stream: every valid order executes exactly once, every poison message is dead-lettered
  with its reason.
"""

from __future__ import annotations

import abc
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Protocol

import pytest

from wojak.engine.protocol import MessageType, Principal, derive_client_order_id
from wojak.engine.protocol.client import EngineClient
from wojak.sidecars._core.metrics import SidecarMetrics
from wojak.sidecars._core.runner import Runner
from wojak.sidecars._core.serve import serve_sidecar, sidecar_principal
from wojak.sidecars._core.settings import BrokerSidecarSettings, RunnerConfig
from wojak.sidecars._core.source import Source, SourceMessage
from wojak.sidecars.testing.memory import DeadLetter

# The contract engine's risk limits: the demo file's (the engine's default_risk.yaml), but with
# order rates no sidecar reaches. The contract is about delivery; at full speed a sidecar on an
# idle machine passes the demo's 500 orders/s per account, and an order denied for its rate is
# acked, not executed, which a delivery test would count as lost.
CONTRACT_RISK_CONFIG = """\
trading_state: ACTIVE
exchange_timezone: Asia/Kolkata
halt_on_daily_loss: true
limits:
  max_order_quantity: "1800"
  max_order_notional: "50000000"
  max_position: "9000"
  price_band_percent: "5"
  max_gross_exposure: "1000000000"
  max_daily_loss: "5000000"
  max_orders_per_second: 1000000
  max_orders_per_minute: 60000000
  stale_tick_seconds: "5"
  min_days_to_expiry: 1
  max_days_to_expiry: 400
  max_tick_jump_percent: "10"
  tick_jump_seconds: "60"
rules:
  trading_state: deny
  allowed_instruments: deny
  max_order_quantity: deny
  max_order_notional: escalate
  max_position: escalate
  price_band: deny
  max_gross_exposure: escalate
  max_daily_loss: deny
  order_rate: deny
  stale_tick: deny
  expiry_window: deny
accounts: {}
instruments:
  NIFTY-FUT:
    price_decimals: 2
  BANKNIFTY-FUT:
    price_decimals: 2
  NIFTY-24000-CE:
    price_decimals: 2
  NIFTY-24000-PE:
    price_decimals: 2
  ES-FUT:
    multiplier: "50"
    price_decimals: 2
    limits:
      max_order_quantity: "100"
      max_position: "500"
"""


class EngineUnderTest(Protocol):
    """A real engine process the contract runs against (the suite's ``engine_factory`` makes one)."""

    socket: Path
    data_dir: Path

    def start(self) -> Any: ...

    def kill(self) -> None: ...

    def request(self, kind: MessageType, body: dict[str, Any], deadline: float = 5.0) -> dict[str, Any]: ...

    def executions(self) -> dict[str, int]:
        """client_order_id -> how many times it reached the venue."""

    def execution_count(self) -> int:
        """How many distinct orders reached the venue (cheap to poll)."""

    def stored_orders(self) -> set[str]:
        """The client_order_ids the engine's store holds."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


TICK = {"symbol": "NIFTY-FUT", "bid": "24000", "ask": "24001", "last": "24000"}
# WOJAK_SIDECAR_ACCOUNTS of every contract sidecar: the accounts its orders use (acct-1, acct-0..7)
ACCOUNTS = "acct-*"


def order(client_order_id: str | None = None, *, account: str = "acct-1", quantity: str = "1", **extra: Any) -> dict:
    body = {
        "account": account,
        "symbol": "NIFTY-FUT",
        "side": "buy",
        "quantity": quantity,
        "order_type": "limit",
        "limit_price": "24000",
        **extra,
    }
    if client_order_id is not None:
        body["client_order_id"] = client_order_id
    return body


def dumps(body: Any) -> bytes:
    return json.dumps(body).encode()


def ledger(engine: EngineUnderTest) -> dict[str, int]:
    """client_order_id -> how many times it reached the venue."""
    return engine.executions()


def stored_orders(engine: EngineUnderTest) -> set[str]:
    return engine.stored_orders()


async def eventually(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


class Recorder(Source):
    """Wraps the source under test: records every message handed to the runner, and can
    swallow acks (a sidecar that crashed after the engine replied but before acking)."""

    def __init__(self, inner: Source, *, lose_acks: bool = False) -> None:
        self.inner = inner
        self.name = inner.name
        self.lose_acks = lose_acks
        self.seen: list[SourceMessage] = []

    async def __aenter__(self) -> "Recorder":
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.inner.__aexit__(*exc)

    async def messages(self) -> AsyncIterator[SourceMessage]:
        async for message in self.inner.messages():
            if self.lose_acks:

                async def lost() -> None:
                    return None

                message._ack = lost  # type: ignore[method-assign]
            self.seen.append(message)
            yield message

    async def stop_consuming(self) -> None:
        await self.inner.stop_consuming()

    def is_ready(self) -> bool:
        return self.inner.is_ready()

    async def publish_result(self, message: SourceMessage, reply: dict[str, Any]) -> None:
        await self.inner.publish_result(message, reply)

    def settled(self, how: str | None = None) -> list[SourceMessage]:
        return [m for m in self.seen if m.settled is not None and (how is None or m.settled == how)]


class SlowClient:
    """The real engine client, but every submit first waits ``delay`` (a slow engine)."""

    def __init__(self, client: EngineClient, delay: float) -> None:
        self.client = client
        self.delay = delay
        self.started = 0
        self.finished = 0

    async def submit_order(self, order: dict[str, Any], principal: Principal, deadline: float | None = None) -> dict[str, Any]:
        self.started += 1
        await asyncio.sleep(self.delay)
        reply = await self.client.submit_order(order, principal, deadline)
        self.finished += 1
        return reply


class Sidecar:
    """A Runner over a recorded source and a real engine client, in this event loop."""

    def __init__(
        self,
        source: Source,
        engine: EngineUnderTest,
        *,
        lose_acks: bool = False,
        delay: float = 0.0,
        concurrency: int = 16,
        drain_seconds: float = 10.0,
        engine_deadline: float = 1.0,
        accounts: tuple[str, ...] = (ACCOUNTS,),
        settle_timeout: float = 10.0,
        settle_attempts: int = 5,
        backoff_base: float = 0.05,
        carries: str = "orders",
    ) -> None:
        self.source = Recorder(source, lose_acks=lose_acks)
        self.client = EngineClient(str(engine.socket), deadline=engine_deadline)
        self.slow = SlowClient(self.client, delay) if delay else None
        self.metrics = SidecarMetrics(source.name)
        self.runner = Runner(
            self.source,
            self.slow or self.client,  # type: ignore[arg-type]
            self.metrics,
            concurrency=concurrency,
            drain_seconds=drain_seconds,
            backoff_base=backoff_base,
            backoff_max=max(0.5, backoff_base),
            # what serve_sidecar builds from WOJAK_SIDECAR_ACCOUNTS and WOJAK_SIDECAR_CARRIES
            principal=sidecar_principal(source.name, RunnerConfig(engine_socket="", accounts=accounts, carries=carries)),
            settle_timeout=settle_timeout,
            settle_attempts=settle_attempts,
            carries=carries,
        )
        self.stop_event = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def slow_client(self) -> SlowClient:
        """The slow client of a sidecar made with ``delay``."""
        assert self.slow is not None, "made without delay"
        return self.slow

    async def __aenter__(self) -> "Sidecar":
        self.client.connect()
        await self.source.__aenter__()
        self.task = asyncio.create_task(self.runner.run(self.stop_event))
        return self

    async def stop(self, timeout: float = 30.0) -> float:
        """Stop (as on SIGTERM), wait for the drain, close the source; seconds it took."""
        started = time.monotonic()
        if self.task is not None and not self.task.done():
            self.stop_event.set()
            await asyncio.wait_for(self.task, timeout)
        took = time.monotonic() - started
        if self.task is not None:
            self.task.result()
            self.task = None
            await self.source.__aexit__(None, None, None)
            await self.client.close()
        return took

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def verdicts(self, verdict: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "wojak_sidecar_messages_total", {"source": self.source.name, "verdict": verdict}
        )
        return value or 0.0

    def settlements(self, how: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "wojak_sidecar_settlements_total", {"source": self.source.name, "settlement": how}
        )
        return value or 0.0

    def inflight(self) -> float:
        """The wojak_sidecar_inflight gauge: messages being handled now."""
        return self.metrics.registry.get_sample_value("wojak_sidecar_inflight", {"source": self.source.name}) or 0.0


class SidecarHandle(abc.ABC):
    """A running sidecar as a whole (engine client, runner, health server, signals), however it
    was started: a ``wojak sidecar <broker>`` process, or in this event loop for the in-memory
    broker."""

    @abc.abstractmethod
    def alive(self) -> bool: ...

    @abc.abstractmethod
    async def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM (drain, then exit); the exit status."""

    @abc.abstractmethod
    async def kill(self) -> int:
        """``kill -9``: gone at once, nothing drained; the exit status."""

    def log_tail(self) -> str:
        return ""


class ProcessSidecar(SidecarHandle):
    """``python -m wojak sidecar <cli_name>`` with ``env``, its output in ``log``."""

    def __init__(self, cli_name: str, env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "wojak", "sidecar", cli_name],
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def alive(self) -> bool:
        return self.proc.poll() is None

    async def terminate(self, timeout: float = 30.0) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(self.proc.wait, timeout)
        finally:
            if self.alive():
                self.proc.kill()
                self.proc.wait()

    async def kill(self) -> int:
        if self.alive():
            self.proc.kill()
        return await asyncio.to_thread(self.proc.wait, 10)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


class InProcessSidecar(SidecarHandle):
    """``serve_sidecar`` on ``source`` in this event loop, set up from ``env`` as a process would
    be (the shared ``WOJAK_SIDECAR_*`` settings, ``WOJAK_ENGINE_SOCKET``). ``kill`` first calls
    ``crash`` (the broker connection drops: nothing the source held is settled afterwards, and
    the broker redelivers it), then cancels the sidecar without waiting for its drain."""

    def __init__(self, source: Source, env: dict[str, str], crash: Callable[[], Any]) -> None:
        settings = BrokerSidecarSettings(**env)  # type: ignore[arg-type]  # by the variables' names
        config = settings.runner_config(settings.concurrency or 64)
        self.crash = crash
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(
            serve_sidecar(source, config, stop=self.stop, install_signal_handlers=False), name=f"wojak-{source.name}-sidecar"
        )

    def alive(self) -> bool:
        return not self.task.done()

    async def terminate(self, timeout: float = 30.0) -> int:
        self.stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout)
        except Exception:
            return 1
        return 0

    async def kill(self) -> int:
        result = self.crash()
        if asyncio.iscoroutine(result):
            await result
        self.task.cancel()
        await asyncio.wait({self.task}, timeout=30)
        return -signal.SIGKILL

    def log_tail(self) -> str:
        if self.task.done() and not self.task.cancelled() and self.task.exception() is not None:
            return repr(self.task.exception())
        return ""


class SidecarContract(abc.ABC):
    """Subclass per broker; implement the hooks. Every test gets a fresh queue and engine."""

    source_name: str = "source"
    cli_name: str = ""  # `wojak sidecar <cli_name>`

    # -- broker hooks ----------------------------------------------------------------

    @abc.abstractmethod
    def make_source(self) -> Source:
        """A new (not yet entered) source on this test's queue."""

    @abc.abstractmethod
    async def publish(self, body: bytes, *, message_id: str | None = None) -> None:
        """Put one message on this test's queue."""

    async def publish_many(self, bodies: list[tuple[bytes, str | None]]) -> None:
        for body, message_id in bodies:
            await self.publish(body, message_id=message_id)

    @abc.abstractmethod
    async def dead_letters(self) -> list[DeadLetter]:
        """Take every message now in this test's dead-letter queue."""

    @abc.abstractmethod
    async def dead_letter_count(self) -> int:
        """Messages now in this test's dead-letter queue and not yet taken by ``dead_letters``,
        counted without taking them (the stream waits on it while a sidecar runs)."""

    @abc.abstractmethod
    async def pending_count(self) -> int:
        """Messages waiting in the queue (none may be held by a live consumer when asked)."""

    # Whether ``pending_count`` also counts, while a sidecar runs, every message it holds or
    # requeued out of sight (a Kafka or Kinesis position behind it, an SQS visibility timeout):
    # then the stream ends once every message is settled. Otherwise (a requeue is held by the
    # sidecar or leased away) it ends once that has held for longer than the requeue backoff.
    pending_counts_unsettled: bool = False

    def sidecar_env(self) -> dict[str, str]:
        """Environment for `wojak sidecar <cli_name>` on this test's queue (with
        ``WOJAK_SIDECAR_ACCOUNTS``: the contract adds ``ACCOUNTS`` if it is missing)."""
        raise NotImplementedError

    async def launch(self, engine: EngineUnderTest, env: dict[str, str], name: str) -> SidecarHandle:
        """Start the whole sidecar on this test's queue with ``env`` (the shared ``WOJAK_SIDECAR_*``
        settings) added to ``sidecar_env()``: by default the ``wojak sidecar <cli_name>`` process."""
        return ProcessSidecar(self.cli_name, {**self.sidecar_env(), **env}, engine.data_dir / f"sidecar-{name}.log")

    # The stream scenario (.stream): how many valid orders (WOJAK_TEST_<SOURCE>_STREAM_ORDERS), the
    # settings of the sidecars it starts, and at most how many messages a killed one held unsettled
    # (a poison message it had dead-lettered but not acked is dead-lettered again).
    stream_orders: int = 2000
    # orders in the queue when the sidecar process gets SIGTERM (an emulator whose every call
    # costs time in proportion to the queue's depth may ask for fewer)
    sigterm_orders: int = 1000
    stream_in_flight: int = 128

    def stream_env(self) -> dict[str, str]:
        """Settings of the stream's sidecars besides the shared ones (e.g. a larger prefetch)."""
        return {}

    def coordinates_for(self, message_id: str, body: bytes) -> tuple[Any, ...]:
        """A published message's coordinates (what a missing client_order_id is derived from);
        asked once it is published (Kafka's depend on where the broker put it)."""
        raise NotImplementedError

    # -- fixtures --------------------------------------------------------------------

    @pytest.fixture
    def engine(self, engine_factory, tmp_path) -> EngineUnderTest:  # every order fills: outcomes are deterministic
        risk = tmp_path / "contract-risk.yaml"
        risk.write_text(CONTRACT_RISK_CONFIG)
        proc = engine_factory(WOJAK_SANDBOX_FILL_PROBABILITY="1", WOJAK_ENGINE_RISK_CONFIG=str(risk))
        assert proc.request(MessageType.TICK, {"tick": TICK})["verdict"] == "ok"
        return proc

    def sidecar(self, engine: EngineUnderTest, **kw: Any) -> Sidecar:
        return Sidecar(self.make_source(), engine, **kw)

    async def settle_all(self, engine: EngineUnderTest, expected: int, timeout: float = 30.0) -> None:
        await eventually(lambda: sum(ledger(engine).values()) >= expected, timeout, f"{expected} executions")

    # -- the contract ----------------------------------------------------------------

    async def test_ack_on_success(self, engine):
        await self.publish(dumps(order("ok-1")))
        async with self.sidecar(engine) as sc:
            await eventually(lambda: sc.source.settled("ack"), what="the ack")
        assert [m.settled for m in sc.source.seen] == ["ack"]
        assert sc.verdicts("filled") == 1
        assert ledger(engine) == {"ok-1": 1}
        assert await self.pending_count() == 0
        assert await self.dead_letters() == []

    async def test_redelivery_after_lost_ack_executes_once(self, engine):
        await self.publish(dumps(order("dup-1")))
        async with self.sidecar(engine, lose_acks=True) as sc:  # executes, then "crashes" before the ack
            await eventually(lambda: sc.source.settled("ack"), what="the (lost) ack")
        assert ledger(engine) == {"dup-1": 1}
        await eventually(lambda: self.pending_count(), what="the broker to redeliver the unacked message")
        async with self.sidecar(engine) as sc:
            await eventually(lambda: sc.source.settled("ack"), what="the redelivery's ack")
        assert sc.verdicts("duplicate") == 1
        assert ledger(engine) == {"dup-1": 1}, "the redelivered order reached the venue once"
        assert await self.pending_count() == 0

    async def test_published_twice_executes_once(self, engine):
        body = dumps(order("twice-1"))
        await self.publish(body)
        await self.publish(body)
        async with self.sidecar(engine, concurrency=1) as sc:
            await eventually(lambda: len(sc.source.settled("ack")) == 2, what="two acks")
        assert sc.verdicts("filled") == 1 and sc.verdicts("duplicate") == 1
        assert ledger(engine) == {"twice-1": 1}
        assert await self.pending_count() == 0

    async def test_invalid_is_dead_lettered_and_never_reaches_the_venue(self, engine):
        await self.publish(dumps(order("bad-1", quantity="-5")))
        await self.publish(dumps({**order("bad-2"), "quantity": 1.5}))
        async with self.sidecar(engine) as sc:
            await eventually(lambda: len(sc.source.settled("dead_letter")) == 2, what="two dead letters")
        letters = await eventually(self.dead_letters, what="the DLQ")
        assert sorted(dl.reason for dl in letters) == ["invalid", "invalid"]
        fields = sorted(e["field"] for dl in letters for e in dl.detail["errors"])
        assert fields == ["quantity", "quantity"]
        assert sorted(json.loads(dl.body)["client_order_id"] for dl in letters) == ["bad-1", "bad-2"]
        assert ledger(engine) == {} and stored_orders(engine) == set(), "invalid orders never reach the engine"
        assert await self.pending_count() == 0

    async def test_an_order_for_an_account_not_permitted_is_dead_lettered_and_never_reaches_the_engine(self, engine):
        await self.publish(dumps(order("theirs-1", account="other-desk")))
        await self.publish(dumps(order("ours-1", account="acct-1")))
        async with self.sidecar(engine) as sc:  # WOJAK_SIDECAR_ACCOUNTS=acct-*
            await eventually(lambda: len(sc.source.settled()) == 2, what="both settled")
        letters = await eventually(self.dead_letters, what="the DLQ")
        assert [dl.reason for dl in letters] == ["account_not_permitted"]
        assert json.loads(letters[0].body)["client_order_id"] == "theirs-1"
        assert sc.verdicts("forbidden") == 1
        assert ledger(engine) == {"ours-1": 1} and stored_orders(engine) == {"ours-1"}, "never sent to the engine"
        assert await self.pending_count() == 0

    async def test_bad_json_is_dead_lettered(self, engine):
        await self.publish(b"{not json")
        await self.publish(b"\xff\xfe")
        async with self.sidecar(engine) as sc:
            await eventually(lambda: len(sc.source.settled("dead_letter")) == 2, what="two dead letters")
        letters = await eventually(self.dead_letters, what="the DLQ")
        assert [dl.reason for dl in letters] == ["invalid_json", "invalid_json"]
        assert sorted(dl.body for dl in letters) == sorted([b"{not json", b"\xff\xfe"])
        assert ledger(engine) == {}
        assert await self.pending_count() == 0

    async def test_conflict_is_dead_lettered(self, engine):
        await self.publish(dumps(order("same-1", quantity="1")))
        async with self.sidecar(engine) as sc:
            await eventually(lambda: sc.source.settled("ack"), what="the first order")
            await self.publish(dumps(order("same-1", quantity="2")))
            await eventually(lambda: sc.source.settled("dead_letter"), what="the conflict")
        letters = await eventually(self.dead_letters, what="the DLQ")
        assert [dl.reason for dl in letters] == ["conflict"]
        assert json.loads(letters[0].body)["quantity"] == "2"
        assert ledger(engine) == {"same-1": 1}
        assert await self.pending_count() == 0

    async def test_retry_requeues_until_the_engine_is_up(self, engine):
        engine.kill()  # no engine: every submit is answered locally with `retry`
        await self.publish(dumps(order("late-1")))
        async with self.sidecar(engine, engine_deadline=0.3) as sc:
            await eventually(lambda: sc.verdicts("retry") >= 2, what="two retries")
            assert all(m.settled in ("requeue", None) for m in sc.source.seen)
            assert ledger(engine) == {}
            await asyncio.to_thread(engine.start)
            await eventually(lambda: sc.source.settled("ack"), timeout=20, what="the ack after the engine came up")
        assert sc.settlements("requeue") >= 2
        assert ledger(engine) == {"late-1": 1}, "requeued, never lost, executed once"
        assert await self.pending_count() == 0
        assert await self.dead_letters() == []

    async def test_stop_drains_in_flight_and_requeues_the_rest(self, engine):
        total = 24
        await self.publish_many([(dumps(order(f"drain-{i}")), None) for i in range(total)])
        sc = self.sidecar(engine, delay=0.4, concurrency=4, drain_seconds=10)
        async with sc:
            await eventually(lambda: sc.slow_client.started >= 4, what="4 messages in flight")
            took = await sc.stop()
        assert took < 5
        assert sc.slow_client.finished == sc.slow_client.started >= 4, "in-flight messages finished"
        assert sc.inflight() == 0
        assert all(m.settled is not None for m in sc.source.seen), "nothing left unsettled"
        executed = ledger(engine)
        assert set(executed.values()) == {1} and len(executed) == sc.slow_client.finished
        assert len(sc.source.settled("ack")) == len(executed)
        await eventually(lambda: self._pending_is(total - len(executed)), what="the rest back in the queue")
        async with self.sidecar(engine) as again:
            await self.settle_all(engine, total)
        assert ledger(engine) == {f"drain-{i}": 1 for i in range(total)}
        assert again.verdicts("duplicate") == 0
        assert await self.pending_count() == 0

    async def test_drain_window_exceeded_requeues_each_message_once(self, engine):
        # three accounts: one account's orders may be kept in sequence (Kafka); these must be in flight together
        await self.publish_many([(dumps(order(f"slow-{i}", account=f"acct-{i}")), None) for i in range(3)])
        sc = self.sidecar(engine, delay=30, concurrency=3, drain_seconds=0.3)
        async with sc:
            await eventually(lambda: sc.slow_client.started == 3, what="3 messages in flight")
            took = await sc.stop()
        assert took < 3
        assert [m.settled for m in sc.source.seen] == ["requeue"] * 3
        assert sc.inflight() == 0, "cancelled in the drain, and counted out"
        assert sc.settlements("requeue") == 3, "each unsettled message requeued exactly once"
        assert ledger(engine) == {}
        await eventually(lambda: self._pending_is(3), what="all 3 back in the queue")
        async with self.sidecar(engine):
            await self.settle_all(engine, 3)
        assert ledger(engine) == {f"slow-{i}": 1 for i in range(3)}

    async def test_derived_client_order_id_is_stable_across_redelivery(self, engine):
        await self.publish(dumps(order()), message_id="msg-1")
        async with self.sidecar(engine, lose_acks=True) as first:
            await eventually(lambda: first.source.settled("ack"), what="the (lost) ack")
        await eventually(lambda: self.pending_count(), what="the redelivery")
        async with self.sidecar(engine) as second:
            await eventually(lambda: second.source.settled("ack"), what="the redelivery's ack")
        assert second.verdicts("duplicate") == 1
        assert first.source.seen[0].coordinates == second.source.seen[0].coordinates
        derived = derive_client_order_id(self.source_name, *first.source.seen[0].coordinates)
        assert ledger(engine) == {derived: 1}

    async def test_sigterm_drains_the_sidecar_process(self, engine):
        total = self.sigterm_orders
        await self.publish_many([(dumps(order(f"term-{i}", account=f"acct-{i % 8}")), None) for i in range(total)])
        port = free_port()
        env = {
            "WOJAK_SIDECAR_ACCOUNTS": ACCOUNTS,
            "WOJAK_ENGINE_SOCKET": str(engine.socket),
            "WOJAK_SIDECAR_HEALTH_PORT": str(port),
            "WOJAK_SIDECAR_DRAIN_SECONDS": "10",
            "WOJAK_LOG_LEVEL": "WARNING",
        }
        sidecar = await self.launch(engine, env, "sigterm")
        try:
            await eventually(lambda: not sidecar.alive() or len(ledger(engine)) >= 20, 30, "20 executions")
            assert sidecar.alive(), sidecar.log_tail()
            ready = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/readyz")
            assert ready[0] == 200 and ready[1]["ready"] is True, ready
            metrics = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
            assert "wojak_sidecar_messages_total" in metrics[1]
            code = await sidecar.terminate(20)
        finally:
            if sidecar.alive():
                await sidecar.kill()
        assert code == 0, sidecar.log_tail()
        executed = ledger(engine)
        assert set(executed.values()) <= {1}
        await eventually(lambda: self._pending_is(total - len(executed)), what="unprocessed messages back in the queue")
        print(f"\nSIGTERM after {len(executed)} of {total} executed; exit {code}; the rest requeued")
        async with self.sidecar(engine):
            await self.settle_all(engine, total)
        assert ledger(engine) == {f"term-{i}": 1 for i in range(total)}
        assert await self.pending_count() == 0
        assert await self.dead_letters() == []

    # whether the broker keeps one key's messages in order (a Kafka partition, a Kinesis shard): then
    # every tick of the ticks test is applied exactly once in sequence, none is stale
    ordered_ticks: bool = False

    async def test_ticks_from_two_redundant_collectors_are_used_once(self, engine):
        """WOJAK_SIDECAR_CARRIES=ticks: two collectors publish the same ticks (a gap in one symbol's
        sequence, and one crossed quote); the engine's tick rules use each sequence once."""
        symbols, last = ("NIFTY-FUT", "BANKNIFTY-FUT"), 30
        unique = [tick(symbol, seq) for seq in range(1, last + 1) for symbol in symbols if (symbol, seq) != (symbols[0], 20)]
        crossed = dumps({**json.loads(tick(symbols[1], last + 1)), "bid": "24100", "ask": "24000"})
        stream = [body for t in unique for body in (t, t)] + [crossed]  # collector A's copy, then B's
        await self.publish_many([(body, None) for body in stream])
        async with self.sidecar(engine, carries="ticks", concurrency=8) as sc:
            await eventually(lambda: len(sc.source.settled()) == len(stream), 60, f"{len(stream)} ticks settled")
        applied, repeated = sc.verdicts("tick_applied"), sc.verdicts("tick_duplicate") + sc.verdicts("tick_stale")
        assert applied + repeated == 2 * len(unique) and sc.verdicts("tick_suspect") == 0
        assert applied <= len(unique), "no sequence of a symbol applied twice"
        if self.ordered_ticks:
            assert applied == len(unique) and sc.verdicts("tick_duplicate") == len(unique), "each tick used once, in order"
        assert sc.verdicts("filled") == 0 and ledger(engine) == {}, "ticks are never orders"
        (letter,) = await self.dead_letters()
        assert letter.reason == "invalid" and [e["field"] for e in letter.detail["errors"]] == ["bid"]
        assert _last_ticks(engine) == {s: (last, f"{24000 + last}.5") for s in symbols}, (
            "the newest tick of each symbol is the price"
        )
        assert await self.pending_count() == 0

    @pytest.mark.slow
    async def test_stream_duplicates_poison_and_kill_9(self, engine):
        from wojak.sidecars.testing.stream import run_stream

        await run_stream(self, engine)

    async def _pending_is(self, n: int) -> bool:
        return await self.pending_count() == n


def tick(symbol: str, sequence: int) -> bytes:
    """A collector's tick (the engine's wire form): ``sequence`` orders a symbol's ticks."""
    price = f"{24000 + sequence}.50"
    return dumps(
        {"symbol": symbol, "bid": f"{24000 + sequence}", "ask": f"{24001 + sequence}", "last": price, "sequence": sequence}
    )


def _last_ticks(engine: EngineUnderTest) -> dict[str, tuple[int, str]]:
    """symbol -> (sequence, last) of the tick the engine's store holds for it (ticks with a sequence)."""
    import sqlite3

    with sqlite3.connect(getattr(engine, "store_path", engine.data_dir / "wojak.sqlite")) as db:
        rows = db.execute("SELECT symbol, sequence, last FROM ticks WHERE sequence IS NOT NULL").fetchall()
    return {symbol: (sequence, str(last)) for symbol, sequence, last in rows}


def _get(url: str) -> tuple[int, Any]:
    """GET ``url``: (status, the JSON body, or the text when it is not JSON)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            body = r.read().decode()
            status = r.status
    except urllib.error.HTTPError as e:
        body, status = e.read().decode(), e.code
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body
