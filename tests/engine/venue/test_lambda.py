"""LambdaVenue against a local stand-in of the Lambda invoke API (no emulator needed):
the URL, the timeout-after-execution path (no blind resend, no double execution, also
through a real engine process), function/HTTP errors, batching and bounded concurrency."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import time

import pytest

from tests._processes import EngineProcess
from tests.engine.venue._fake_lambda import FakeLambda
from wojak.engine.app import open_venue
from wojak.engine.protocol import MessageType
from wojak.engine.venue import LambdaVenue, LambdaVenueConfig, VenueError, VenueStatus


CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}


@pytest.fixture(autouse=True)
def _credentials(monkeypatch):
    for k, v in CREDS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)


@pytest.fixture
def fake(tmp_path):
    with FakeLambda(tmp_path / "ledger.sqlite", fill_probability=1) as f:
        yield f


def orders(n, prefix="o"):
    return [{"client_order_id": f"{prefix}{i}", "account": f"a{i % 3}", "symbol": "S", "side": "buy",
             "quantity": "2", "order_type": "limit", "limit_price": "100", "time_in_force": "day"}
            for i in range(n)]  # fmt: skip


def venue(endpoint, **opts) -> LambdaVenue:
    query = "&".join(f"{k}={v}" for k, v in {"endpoint": endpoint, "region": "us-east-1", **opts}.items())
    return open_venue(f"lambda://wojak-sandbox?{query}")


# -- the URL ----------------------------------------------------------------------------


def test_url_options():
    c = LambdaVenueConfig.from_url("lambda://fn?endpoint=http://127.0.0.1:9000&region=eu-west-1&timeout=2.5"
                                   "&batch=50&concurrency=4")  # fmt: skip
    assert (c.function, c.endpoint, c.region, c.timeout, c.batch, c.concurrency) == (
        "fn", "http://127.0.0.1:9000", "eu-west-1", 2.5, 50, 4)
    arn = "arn:aws:lambda:us-east-1:123456789012:function:wojak-sandbox:live"
    assert LambdaVenueConfig.from_url(f"lambda://{arn}").function == arn
    assert LambdaVenueConfig.from_url("lambda://fn").endpoint is None


@pytest.mark.parametrize("url, words", [
    ("lambda://", "function name is missing"),
    ("lambda://fn?timeout=0", "timeout"),
    ("lambda://fn?timeout=abc", "could not convert"),
    ("lambda://fn?timeout=nan", "timeout"),
    ("lambda://fn?batch=0", "batch"),
    ("lambda://fn?endpoint=localhost:9000", "http"),
    ("lambda://fn?colour=blue", "unknown option"),
    ("lambda://fn?aws_secret_access_key=x", "never the URL"),
    ("lambda://AKIA:secret@fn", "never go in the URL"),
    ("lambdas://fn", "unsupported venue"),
])  # fmt: skip
def test_bad_urls_name_wojak_venue(url, words):
    with pytest.raises(ValueError) as info:
        open_venue(url)
    assert "WOJAK_VENUE=" in str(info.value) and words in str(info.value)


def test_missing_region_is_a_clear_error(monkeypatch, tmp_path):
    for k in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(ValueError, match="WOJAK_VENUE=.*region"):
        open_venue("lambda://fn?endpoint=http://127.0.0.1:1")


# -- the venue --------------------------------------------------------------------------


async def test_execute_lookup_cancel_round_trip(fake):
    v = venue(fake.endpoint)
    try:
        assert [r.status for r in await v.lookup(orders(2))] == [VenueStatus.NOT_FOUND] * 2
        reports = await v.execute(orders(3))
        assert [r.client_order_id for r in reports] == ["o0", "o1", "o2"]
        assert {r.status for r in reports} == {VenueStatus.FILLED}
        assert reports[0].filled_quantity == 2 and reports[0].average_price == 100
        assert await v.lookup(orders(3)) == reports
        assert [r.status for r in await v.cancel(orders(1))] == [VenueStatus.FILLED]  # nothing open to cancel
        assert await v.execute([]) == []
    finally:
        await v.close()
    assert {name for name, _ in fake.requests} == {"wojak-sandbox"}
    assert fake.actions() == ["lookup", "execute", "lookup", "cancel"]


async def test_a_timeout_after_execution_is_unknown_never_resent(fake):
    fake.delay_after_execute = 3.0
    fake.delays_left = 1
    v = venue(fake.endpoint, timeout=0.5)
    try:
        started = time.monotonic()
        with pytest.raises(VenueError, match="ReadTimeout"):
            await v.execute(orders(1))
        assert time.monotonic() - started < 2.5
        assert fake.actions() == ["execute"], "botocore must not retry an execute"
        assert fake.submissions() == {"o0": 1}  # the venue did execute it
        [found] = await v.lookup(orders(1))  # what the service does on resend / at startup
        assert found.status is VenueStatus.FILLED
    finally:
        await v.close()
    assert fake.submissions() == {"o0": 1}


@pytest.mark.parametrize("failure", ["function_error", "http_500", "http_429", "refused"])
async def test_failures_are_venue_errors_and_are_not_retried(fake, failure):
    endpoint = fake.endpoint
    if failure == "function_error":
        fake.function_error = "Unhandled"
    elif failure.startswith("http_"):
        fake.http_status = int(failure[5:])
    else:
        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    v = venue(endpoint, timeout=2)
    try:
        with pytest.raises(VenueError):
            await v.execute(orders(2))
    finally:
        await v.close()
    assert len(fake.requests) == (0 if failure == "refused" else 1)
    assert fake.submissions() == {}


async def test_an_error_answer_is_a_venue_error(fake):
    v = venue(fake.endpoint)
    try:
        with pytest.raises(VenueError, match="unknown action"):
            await v._call("explode", orders(1))
    finally:
        await v.close()


async def test_batches_are_split_into_concurrent_bounded_invocations(fake):
    fake.gate = 3  # each invocation waits until three are in flight: proves they overlap
    fake.hold = 0.2
    v = venue(fake.endpoint, batch=10, concurrency=3)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    t = asyncio.create_task(ticker())
    try:
        reports = await v.execute(orders(85))  # 9 invocations, at most 3 at a time
    finally:
        t.cancel()
        await v.close()
    assert [r.client_order_id for r in reports] == [o["client_order_id"] for o in orders(85)]
    assert len(fake.requests) == 9
    assert sorted(len(e["orders"]) for _, e in fake.requests) == [5] + [10] * 8
    assert fake.max_inflight == 3, "invocations run concurrently, bounded by `concurrency`"
    assert ticks >= 10, "the event loop kept running while boto3 waited"
    assert fake.submissions() == {o["client_order_id"]: 1 for o in orders(85)}


async def test_closed_venue_refuses(fake):
    v = venue(fake.endpoint)
    await v.close()
    await v.close()
    with pytest.raises(VenueError, match="closed"):
        await v.execute(orders(1))


# -- a real engine process --------------------------------------------------------------


TICK = {"symbol": "NIFTY-FUT", "bid": "24000", "ask": "24001", "last": "24000"}


def engine_order(i: int) -> dict:
    return {"client_order_id": f"lt-{i}", "account": "acct", "symbol": "NIFTY-FUT", "side": "buy",
            "quantity": "1", "order_type": "limit", "limit_price": "24000"}  # fmt: skip


def store_state(engine: EngineProcess, coid: str) -> str:
    with sqlite3.connect(engine.store_path) as db:
        return db.execute("SELECT state FROM orders WHERE client_order_id=?", (coid,)).fetchone()[0]


@pytest.mark.slow
def test_engine_timeout_after_execution_stays_pending_then_resend_records_it_once(tmp_path):
    with FakeLambda(tmp_path / "ledger.sqlite", fill_probability=1) as fake:
        fake.delay_after_execute = 4.0
        fake.delays_left = 1
        url = f"lambda://wojak-sandbox?endpoint={fake.endpoint}&region=us-east-1&timeout=1"
        engine = EngineProcess(tmp_path / "engine", {"WOJAK_VENUE": url, **CREDS})
        engine.data_dir.mkdir()
        engine.start()
        try:
            assert engine.request(MessageType.TICK, {"tick": TICK})["verdict"] == "ok"
            first = engine.request(MessageType.SUBMIT_ORDER, {"order": engine_order(1)}, deadline=8)
            assert first["verdict"] == "retry" and first["reason"] == "venue_unavailable"
            assert fake.submissions() == {"lt-1": 1}  # executed at the venue, the answer was lost
            got = engine.request(MessageType.GET_ORDER, {"account": "acct", "client_order_id": "lt-1"})
            assert got["order"]["state"] == "pending"

            again = engine.request(MessageType.SUBMIT_ORDER, {"order": engine_order(1)}, deadline=8)
            assert again["verdict"] == "filled"
            assert fake.actions() == ["execute", "lookup"], "the resend looked it up; it did not resubmit"
            third = engine.request(MessageType.SUBMIT_ORDER, {"order": engine_order(1)})
            assert third["verdict"] == "duplicate" and third["order"]["state"] == "filled"
            assert store_state(engine, "lt-1") == "filled"
            assert fake.submissions() == {"lt-1": 1}, "no double execution"
        finally:
            engine.kill()


@pytest.mark.slow
def test_engine_restart_resolves_orders_left_pending_by_a_lambda_timeout(tmp_path):
    with FakeLambda(tmp_path / "ledger.sqlite", fill_probability=1) as fake:
        fake.delay_after_execute = 4.0
        fake.delays_left = 1
        url = f"lambda://wojak-sandbox?endpoint={fake.endpoint}&region=us-east-1&timeout=1"
        engine = EngineProcess(tmp_path / "engine", {"WOJAK_VENUE": url, **CREDS})
        engine.data_dir.mkdir()
        engine.start()
        try:
            engine.request(MessageType.TICK, {"tick": TICK})
            batch = {"order": engine_order(2)}
            assert engine.request(MessageType.SUBMIT_ORDER, batch, deadline=8)["verdict"] == "retry"
            engine.kill()
            engine.start()  # startup looks up what the earlier run left pending
            assert store_state(engine, "lt-2") == "filled"
            assert engine.request(MessageType.SUBMIT_ORDER, batch)["verdict"] == "duplicate"
            assert fake.actions() == ["execute", "lookup"]
            assert fake.submissions() == {"lt-2": 1}
        finally:
            engine.kill()
