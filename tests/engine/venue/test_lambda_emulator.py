"""A real engine process with ``WOJAK_VENUE=lambda://...`` executing through the Lambda runtime
emulator, which runs wojak's own sandbox handler (scripts/services up lambda)."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import sysconfig

import pytest

from tests._processes import TRADER, EngineProcess, free_port
from tests._services import REPO, SCRIPT
from wojak.engine.protocol import MessageType
from wojak.engine.protocol.client import EngineClient

pytestmark = [getattr(pytest.mark, "lambda"), pytest.mark.slow]

CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}
TICK = {"symbol": "NIFTY-FUT", "bid": "24000", "ask": "24001", "last": "24000"}


def order(i: int) -> dict:
    return {"client_order_id": f"lambda-emu-{i}", "account": f"acct-{i % 4}", "symbol": "NIFTY-FUT",
            "side": "buy", "quantity": "1", "order_type": "limit", "limit_price": "24000"}  # fmt: skip


async def submit_all(engine: EngineProcess, orders: list[dict], deadline: float = 20.0) -> list[dict]:
    async with EngineClient(str(engine.socket), deadline=deadline) as client:
        return await asyncio.gather(*[client.submit_order(dict(o), TRADER) for o in orders])


def emulator_outcomes(lambda_service, orders: list[dict]) -> dict[str, str]:
    """What the handler in the emulator says about these orders (its stateless lookup)."""
    client = lambda_service.client()
    event = {"action": "lookup", "orders": [{**o, "time_in_force": "day"} for o in orders]}
    response = client.invoke(FunctionName=lambda_service.function_name, Payload=json.dumps(event).encode())
    assert "FunctionError" not in response, response["Payload"].read()
    reports = json.loads(response["Payload"].read())["reports"]
    return {r["client_order_id"]: r["status"] for r in reports}


def test_engine_executes_through_the_lambda_runtime_emulator(lambda_service, tmp_path):
    url = f"lambda://{lambda_service.function_name}?endpoint={lambda_service.endpoint_url}&region=us-east-1&timeout=20&batch=8"
    engine = EngineProcess(tmp_path, {"WOJAK_VENUE": url, **CREDS})
    engine.start()
    try:
        assert engine.request(MessageType.TICK, {"tick": TICK})["verdict"] == "ok"
        batch = [order(i) for i in range(40)]
        first = asyncio.run(submit_all(engine, batch))
        verdicts = {r["client_order_id"]: r["verdict"] for r in first}
        assert set(verdicts.values()) == {"filled", "rejected"}, verdicts  # the sandbox's default 90% fill
        assert verdicts == emulator_outcomes(lambda_service, batch)
        for r in first:
            if r["verdict"] == "filled":
                assert r["order"]["filled_quantity"] == "1" and r["order"]["venue_order_id"].startswith("SBX-")
            else:
                assert r["reason"] == "sandbox_rejected"

        again = asyncio.run(submit_all(engine, batch))
        assert {r["verdict"] for r in again} == {"duplicate"}
        assert {r["client_order_id"]: r["order"]["state"] for r in again} == verdicts
        assert engine.ping()
    finally:
        engine.kill()
    assert "Traceback" not in engine.log.read_text()


# -- a timeout after the handler executed, through an emulator of this test's own -----------


class OwnEmulator:
    """`scripts/services up lambda` on a free port with its own state dir and handler env
    (the session emulator's env is fixed when it starts), stopped at the end."""

    def __init__(self, tmp_path, **handler_env: str) -> None:
        self.port = free_port()
        # the handler imports wojak's dependencies (msgpack, ...): give the runtime this
        # interpreter's packages, whatever interpreter scripts/services runs awslambdaric with
        site = sysconfig.get_paths()["purelib"]
        path = os.pathsep.join(p for p in (site, os.environ.get("PYTHONPATH", "")) if p)
        self.env = {**os.environ, "WOJAK_SERVICES_STATE": str(tmp_path / "services"),
                    "WOJAK_SERVICES_LAMBDA_PORT": str(self.port), "PYTHONPATH": path, **handler_env}  # fmt: skip
        for k in ("WOJAK_TEST_LAMBDA_ENDPOINT", "WOJAK_TEST_LAMBDA_FUNCTION"):
            self.env.pop(k, None)
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def _script(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(SCRIPT), *args, "lambda"], env=self.env, cwd=REPO,
                              capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)  # fmt: skip

    def __enter__(self) -> "OwnEmulator":
        proc = self._script("up")
        assert proc.returncode == 0 and f"127.0.0.1:{self.port}" in proc.stdout, proc.stderr[-3000:]
        return self

    def __exit__(self, *exc: object) -> None:
        self._script("down")


def ledger(path) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT client_order_id, submissions FROM executions"))


def test_a_timeout_after_the_lambda_executed_leaves_the_order_pending_and_never_executes_it_twice(
    lambda_service, tmp_path
):
    ledger_path = tmp_path / "sandbox-ledger.sqlite"
    with OwnEmulator(tmp_path, WOJAK_SANDBOX_LEDGER=str(ledger_path), WOJAK_SANDBOX_FILL_PROBABILITY="1",
                     WOJAK_SANDBOX_LAMBDA_DELAY_MS="3000") as emu:  # fmt: skip
        url = f"lambda://function?endpoint={emu.endpoint}&region=us-east-1&timeout=1"
        engine = EngineProcess(tmp_path / "engine", {"WOJAK_VENUE": url, **CREDS})
        engine.data_dir.mkdir()
        engine.start()
        try:
            assert engine.request(MessageType.TICK, {"tick": TICK})["verdict"] == "ok"
            body = {"order": order(1000)}
            first = engine.request(MessageType.SUBMIT_ORDER, body, deadline=10)
            assert first["verdict"] == "retry" and first["reason"] == "venue_unavailable", first
            got = engine.request(MessageType.GET_ORDER, {"account": "acct-0", "client_order_id": "lambda-emu-1000"})
            assert got["order"]["state"] == "pending"
            assert ledger(ledger_path) == {"lambda-emu-1000": 1}, "the handler executed it"

            # the emulator runs one invocation at a time: let the slow one finish first
            client = boto3_client(emu.endpoint)
            client.invoke(FunctionName="function", Payload=json.dumps({"action": "lookup", "orders": []}).encode())

            again = engine.request(MessageType.SUBMIT_ORDER, body, deadline=10)
            assert again["verdict"] == "filled", again  # looked up and recorded, not resubmitted
            third = engine.request(MessageType.SUBMIT_ORDER, body)
            assert third["verdict"] == "duplicate" and third["order"]["state"] == "filled"
            assert ledger(ledger_path) == {"lambda-emu-1000": 1}, "no double execution"
        finally:
            engine.kill()


def boto3_client(endpoint: str):
    import boto3
    from botocore.config import Config

    return boto3.client("lambda", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing", config=Config(read_timeout=30, retries={"total_max_attempts": 1}))  # fmt: skip


# -- LambdaVenue's behaviour, through emulators of this module's own -------------------------
#
# Each emulator runs wojak's sandbox handler with a ledger (what it executed, how often).
# `fast` answers at once; `slow` sleeps 3 s after each execute before answering, so a client
# with a 1 s timeout gives up *after* the venue acted. tests/engine/venue/test_lambda.py keeps
# the stand-in only for what this emulator cannot do (HTTP 429/500 answers, invocations that
# overlap inside the function).


@pytest.fixture(scope="module")
def emulators(tmp_path_factory, lambda_service):
    base = tmp_path_factory.mktemp("lambda-emulators")
    fast_ledger, slow_ledger = base / "fast-ledger.sqlite", base / "slow-ledger.sqlite"
    with OwnEmulator(base / "fast", WOJAK_SANDBOX_LEDGER=str(fast_ledger), WOJAK_SANDBOX_FILL_PROBABILITY="1") as fast, \
            OwnEmulator(base / "slow", WOJAK_SANDBOX_LEDGER=str(slow_ledger), WOJAK_SANDBOX_FILL_PROBABILITY="1",
                        WOJAK_SANDBOX_LAMBDA_DELAY_MS="3000") as slow:  # fmt: skip
        yield {"fast": (fast, fast_ledger), "slow": (slow, slow_ledger)}


@pytest.fixture(autouse=True)
def _aws_credentials(monkeypatch):
    for k, v in CREDS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)


def venue_orders(n: int, prefix: str) -> list[dict]:
    return [{"client_order_id": f"{prefix}-{i}", "account": f"a{i % 3}", "symbol": "S", "side": "buy", "quantity": "2",
             "order_type": "limit", "limit_price": "100", "time_in_force": "day"} for i in range(n)]  # fmt: skip


def lambda_venue(endpoint: str, **opts):
    from wojak.engine.app import open_venue

    query = "&".join(f"{k}={v}" for k, v in {"endpoint": endpoint, "region": "us-east-1", **opts}.items())
    return open_venue(f"lambda://function?{query}")


def submitted(ledger_path, prefix: str) -> dict[str, int]:
    return {k: n for k, n in ledger(ledger_path).items() if k.startswith(prefix + "-")} if ledger_path.exists() else {}


def wait_idle(endpoint: str) -> None:
    """The emulator runs one invocation at a time: a lookup returns once the slow one is done."""
    boto3_client(endpoint).invoke(FunctionName="function", Payload=json.dumps({"action": "lookup", "orders": []}).encode())


async def test_venue_execute_lookup_cancel_round_trip(emulators):
    from wojak.engine.venue import VenueStatus

    emu, ledger_path = emulators["fast"]
    v = lambda_venue(emu.endpoint, timeout=30)
    try:
        assert [r.status for r in await v.lookup(venue_orders(2, "rt"))] == [VenueStatus.NOT_FOUND] * 2
        reports = await v.execute(venue_orders(3, "rt"))
        assert [r.client_order_id for r in reports] == ["rt-0", "rt-1", "rt-2"]
        assert {r.status for r in reports} == {VenueStatus.FILLED}
        assert reports[0].filled_quantity == 2 and reports[0].average_price == 100
        assert await v.lookup(venue_orders(3, "rt")) == reports
        assert [r.status for r in await v.cancel(venue_orders(1, "rt"))] == [VenueStatus.FILLED]  # nothing open
        assert await v.execute([]) == []
    finally:
        await v.close()
    assert submitted(ledger_path, "rt") == {"rt-0": 1, "rt-1": 1, "rt-2": 1}


async def test_venue_timeout_after_execution_is_unknown_and_never_resent(emulators):
    import time

    from wojak.engine.venue import VenueError, VenueStatus

    emu, ledger_path = emulators["slow"]
    v = lambda_venue(emu.endpoint, timeout=1)
    try:
        started = time.monotonic()
        with pytest.raises(VenueError, match="ReadTimeout"):
            await v.execute(venue_orders(1, "to"))
        assert time.monotonic() - started < 2.5, "gave up at the timeout, did not wait for the answer"
        assert submitted(ledger_path, "to") == {"to-0": 1}, "the handler executed it"
        wait_idle(emu.endpoint)
        assert submitted(ledger_path, "to") == {"to-0": 1}, "botocore did not resend the execute"
        [found] = await v.lookup(venue_orders(1, "to"))  # what the service does on resend / at startup
        assert found.status is VenueStatus.FILLED
    finally:
        await v.close()
    assert submitted(ledger_path, "to") == {"to-0": 1}


async def test_venue_error_answers_and_function_errors_are_venue_errors(emulators):
    from wojak.engine.venue import VenueError

    emu, ledger_path = emulators["fast"]
    v = lambda_venue(emu.endpoint, timeout=30)
    try:
        with pytest.raises(VenueError, match="unknown action"):  # the handler answers an error
            await v._call("explode", venue_orders(1, "err"))
        broken = [{k: v for k, v in o.items() if k != "client_order_id"} for o in venue_orders(1, "err")]
        with pytest.raises(VenueError, match="function error Unhandled"):  # the handler raises
            await v.execute(broken)
    finally:
        await v.close()
    assert submitted(ledger_path, "err") == {}


async def test_venue_batches_are_split_into_bounded_concurrent_invocations(emulators):
    import threading

    emu, ledger_path = emulators["fast"]
    v = lambda_venue(emu.endpoint, timeout=60, batch=10, concurrency=3)
    sizes: list[int] = []
    inflight = peak = 0
    lock = threading.Lock()
    invoke = v._client.invoke

    def counting_invoke(**kw):  # observed on the client side: the emulator serves one at a time
        nonlocal inflight, peak
        with lock:
            inflight += 1
            peak = max(peak, inflight)
            sizes.append(len(json.loads(kw["Payload"])["orders"]))
        try:
            return invoke(**kw)
        finally:
            with lock:
                inflight -= 1

    v._client.invoke = counting_invoke
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    t = asyncio.create_task(ticker())
    batch = venue_orders(85, "bs")
    try:
        reports = await v.execute(batch)  # 9 invocations, at most 3 at a time
    finally:
        t.cancel()
        await v.close()
    assert [r.client_order_id for r in reports] == [o["client_order_id"] for o in batch]
    assert sorted(sizes) == [5] + [10] * 8
    assert peak == 3, "invocations are issued concurrently, bounded by `concurrency`"
    assert ticks >= 5, "the event loop kept running while boto3 waited"
    assert submitted(ledger_path, "bs") == {o["client_order_id"]: 1 for o in batch}


def test_engine_restart_resolves_orders_left_pending_by_a_lambda_timeout(emulators, tmp_path):
    emu, ledger_path = emulators["slow"]
    url = f"lambda://function?endpoint={emu.endpoint}&region=us-east-1&timeout=1"
    engine = EngineProcess(tmp_path / "engine", {"WOJAK_VENUE": url, **CREDS})
    engine.data_dir.mkdir()
    engine.start()
    try:
        engine.request(MessageType.TICK, {"tick": TICK})
        body = {"order": order(2000)}
        assert engine.request(MessageType.SUBMIT_ORDER, body, deadline=10)["verdict"] == "retry"
        engine.kill()
        wait_idle(emu.endpoint)
        engine.start()  # startup looks up what the earlier run left pending
        got = engine.request(MessageType.GET_ORDER, {"account": "acct-0", "client_order_id": "lambda-emu-2000"})
        assert got["order"]["state"] == "filled"
        assert engine.request(MessageType.SUBMIT_ORDER, body)["verdict"] == "duplicate"
        assert ledger(ledger_path)["lambda-emu-2000"] == 1, "no double execution"
    finally:
        engine.kill()
