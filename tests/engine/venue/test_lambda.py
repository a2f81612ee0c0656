"""LambdaVenue: its URL, and the faults the Lambda runtime emulator cannot produce.

The venue's behaviour (round trip, a timeout after the function executed: never resent,
never executed twice, also through a real engine process and its restart; function errors;
batch split and bounded concurrency) is tested through the runtime emulator running wojak's
sandbox handler, in tests/engine/venue/test_lambda_emulator.py. The local stand-in of the
invoke API (``_fake_lambda.py``) is kept only where the emulator cannot make the fault:
the invoke API answering HTTP 429 or 500 (the emulator's API answers 200 for anything the
function returns), and invocations that overlap *inside* the function (the emulator runs
one invocation at a time, like one execution environment, so only the stand-in can show the
venue's invocations actually run together)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from tests.engine.venue._fake_lambda import FakeLambda
from wojak.engine.app import open_venue
from wojak.engine.venue import LambdaVenue, LambdaVenueConfig, VenueError

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


# An HTTP error from the invoke API itself (throttling, a service fault): the emulator's API
# cannot answer one. A refused connection needs no server at all. (A function error goes
# through the emulator: test_lambda_emulator.py.)
@pytest.mark.parametrize("failure", ["http_500", "http_429", "refused"])
async def test_failures_are_venue_errors_and_are_not_retried(fake, failure):
    endpoint = fake.endpoint
    if failure.startswith("http_"):
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


# The emulator serves one invocation at a time: only the stand-in can hold three inside the
# function at once and so show they overlap there (the split and the bound are also checked
# through the emulator, client-side).
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
