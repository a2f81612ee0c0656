"""A real engine process with ``WOJAK_VENUE=lambda://...`` executing through the Lambda runtime
emulator, which runs wojak's own sandbox handler (scripts/services up lambda)."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests._processes import EngineProcess
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
        return await asyncio.gather(*[client.submit_order(dict(o)) for o in orders])


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
