"""A real engine process with ``WOJAK_VENUE=lambda://...`` executing through the Lambda runtime
emulator, which runs wojak's own sandbox handler (scripts/services up lambda)."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys

import pytest

from tests._processes import TRADER, EngineProcess, free_port
from tests._services import REPO, SCRIPT
from wojak.engine.protocol import MessageType
from wojak.sidecars._core.client import EngineClient

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
    url = f"lambda://{lambda_service.function_name}?endpoint={lambda_service.endpoint_url}&region=us-east-1&timeout=30&batch=8"
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
        self.env = {**os.environ, "WOJAK_SERVICES_STATE": str(tmp_path / "services"),
                    "WOJAK_SERVICES_LAMBDA_PORT": str(self.port), **handler_env}  # fmt: skip
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
