"""Lanes: one account's venue call that does not return holds up that account only.

In process, on a real ROUTER socket: the engine's server and order path with a venue that
blocks every call carrying the slow account until the test lets it go."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests._processes import TRADER
from wojak.engine.protocol import MessageType
from wojak.engine.protocol.client import EngineClient
from wojak.engine.risk import RiskEngine, default_risk_config
from wojak.engine.service import OrderService
from wojak.engine.store import SQLiteStore
from wojak.engine.transport import EngineServer
from wojak.engine.transport._server import account_of
from wojak.engine.venue import InProcessSandboxVenue
from wojak.engine.venue.sandbox import SandboxConfig

TICK = {"symbol": "NIFTY-FUT", "bid": "23999", "ask": "24001", "last": "24000"}


def _order(coid: str, account: str) -> dict[str, Any]:
    return {"client_order_id": coid, "account": account, "symbol": "NIFTY-FUT", "side": "buy", "quantity": "1",
            "order_type": "limit", "limit_price": "24000"}  # fmt: skip


class _GatedVenue(InProcessSandboxVenue):
    """The sandbox, except that a call carrying ``slow`` waits for ``gate``; records every call."""

    def __init__(self, slow: str) -> None:
        super().__init__(SandboxConfig(fill_probability=Decimal(1)))
        self.slow = slow
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.calls: list[list[str]] = []

    async def execute(self, orders: list[dict[str, Any]]) -> Any:
        self.calls.append([o["client_order_id"] for o in orders])
        if any(o["account"] == self.slow for o in orders):
            self.entered.set()
            await self.gate.wait()
        return await super().execute(orders)


@pytest.fixture
async def engine(tmp_path):
    venue = _GatedVenue("slow")
    service = OrderService(SQLiteStore(tmp_path / "store.sqlite"), venue, RiskEngine(default_risk_config()))
    await service.start()
    socket_dir = Path(tempfile.mkdtemp(prefix="wojak-lanes-", dir="/tmp"))
    server = EngineServer(socket_dir / "engine.sock", service.handle_batch, lambda kind, body: {"verdict": "ok"}, lanes=4,
                          alone=service.slow_accounts)  # fmt: skip
    stop = asyncio.Event()
    serving = asyncio.create_task(server.serve(stop))
    client = EngineClient(str(socket_dir / "engine.sock"), deadline=30.0)
    client.connect()
    assert (await client.tick(TICK, TRADER))["verdict"] == "ok"
    try:
        yield client, venue, service
    finally:
        venue.gate.set()
        stop.set()
        await serving
        await client.close()
        shutil.rmtree(socket_dir)


async def test_other_accounts_complete_while_one_accounts_venue_call_is_blocked(engine):
    client, venue, _ = engine
    first_slow = asyncio.create_task(client.submit_order(_order("s-1", "slow"), TRADER))
    await asyncio.wait_for(venue.entered.wait(), 10)
    second_slow = asyncio.create_task(client.submit_order(_order("s-2", "slow"), TRADER))

    fast = await asyncio.wait_for(
        asyncio.gather(*(client.submit_order(_order(f"f-{i}", f"fast-{i % 3}"), TRADER) for i in range(9))), 10
    )
    assert [r["verdict"] for r in fast] == ["filled"] * 9
    assert not first_slow.done() and not second_slow.done()
    # the slow account's second order waits for its first: it has not reached the venue
    assert not any("s-2" in call for call in venue.calls)

    venue.gate.set()
    assert (await asyncio.wait_for(first_slow, 10))["verdict"] == "filled"
    assert (await asyncio.wait_for(second_slow, 10))["verdict"] == "filled"
    slow_calls = [call for call in venue.calls if {"s-1", "s-2"} & set(call)]
    assert slow_calls == [["s-1"], ["s-2"]]  # in order, one after the other


async def test_a_query_of_the_blocked_account_waits_for_its_order_and_sees_it_done(engine):
    client, venue, _ = engine
    placed = asyncio.create_task(client.submit_order(_order("s-1", "slow"), TRADER))
    await asyncio.wait_for(venue.entered.wait(), 10)
    query = asyncio.create_task(client.get_order("slow", "s-1", TRADER))
    other = await asyncio.wait_for(client.get_order("fast-0", "none", TRADER), 10)
    assert other["verdict"] == "not_found"
    await asyncio.sleep(0.05)
    assert not query.done()  # behind the account's running order, not beside it
    venue.gate.set()
    assert (await asyncio.wait_for(placed, 10))["verdict"] == "filled"
    got = await asyncio.wait_for(query, 10)
    assert got["verdict"] == "ok" and got["order"]["state"] == "filled"


def test_each_request_names_its_lane_account_or_none():
    assert account_of(MessageType.SUBMIT_ORDER, {"order": {"account": "a"}}) == "a"
    assert account_of(MessageType.SUBMIT_ORDER, {"order": ["a"]}) is None
    assert account_of(MessageType.SUBMIT_ORDER, {"order": {"account": 7}}) is None
    assert account_of(MessageType.CANCEL_ORDER, {"account": "b"}) == "b"
    assert account_of(MessageType.GET_ORDER, {"account": "c"}) == "c"
    assert account_of(MessageType.LIST_ORDERS, {}) is None
    assert account_of(MessageType.TICK, {"tick": {"account": "a"}}) is None


def _record_sends(client: EngineClient) -> list[tuple[bytes, int]]:
    """(message type, orders) of every request the client sends from now on."""
    import msgpack

    sent: list[tuple[bytes, int]] = []
    sock = client._sock
    assert sock is not None
    send = sock.send

    def recording(frames: list[bytes], recheck: bool = True) -> None:
        body = msgpack.unpackb(frames[2])
        sent.append((frames[1], len(body.get("orders", [None]))))
        send(frames, recheck)

    sock.send = recording  # type: ignore[method-assign]
    return sent


async def test_orders_submitted_together_go_as_one_request_and_each_gets_its_own_verdict(engine):
    client, venue, _ = engine
    sent = _record_sends(client)
    orders = [_order(f"b-{i}", f"acct-{i % 4}") for i in range(10)]
    orders[3] = {**orders[3], "quantity": "-1"}  # refused alone, the others go on
    orders[7] = {**orders[7], "account": "acct-0", "client_order_id": "b-0", "quantity": "2"}  # b-0's id, other content
    replies = await asyncio.gather(*(client.submit_order(o, TRADER) for o in orders))
    assert sent == [(MessageType.SUBMIT_ORDERS.value, 10)]
    assert [r["verdict"] for r in replies] == ["filled"] * 3 + ["invalid"] + ["filled"] * 3 + ["conflict"] + ["filled"] * 2
    assert replies[3]["errors"][0]["field"] == "quantity"
    assert [r["client_order_id"] for r in replies if r["verdict"] == "filled"] == [
        f"b-{i}" for i in range(10) if i not in (3, 7)
    ]
    assert len(venue.calls) == 1  # one engine batch, one venue call


async def test_a_request_with_a_blocked_account_does_not_hold_back_later_requests(engine):
    client, venue, _ = engine
    sent = _record_sends(client)
    calls = [client.submit_order(_order("s-1", "slow"), TRADER)] + [
        client.submit_order(_order(f"f-{i}", f"fast-{i}"), TRADER) for i in range(4)
    ]
    tasks = [asyncio.create_task(c) for c in calls]
    await asyncio.wait_for(venue.entered.wait(), 10)
    # one request: s-2 (behind s-1) and orders of other accounts, answered part by part
    second = asyncio.create_task(client.submit_order(_order("s-2", "slow"), TRADER))
    late = await asyncio.wait_for(
        asyncio.gather(*(client.submit_order(_order(f"g-{i}", f"other-{i}"), TRADER) for i in range(3))), 10
    )
    assert [r["verdict"] for r in late] == ["filled"] * 3
    assert sent[1] == (MessageType.SUBMIT_ORDERS.value, 4)
    # the orders decided in s-1's engine batch share its venue call; s-2 waits behind s-1
    assert not any(t.done() for t in tasks) and not second.done()
    venue.gate.set()
    assert [r["verdict"] for r in await asyncio.wait_for(asyncio.gather(*tasks), 10)] == ["filled"] * 5
    assert (await asyncio.wait_for(second, 10))["verdict"] == "filled"
    assert sent[0] == (MessageType.SUBMIT_ORDERS.value, 5)


async def test_a_request_too_large_for_the_engine_is_split_before_it_is_sent(engine):
    client, _, _ = engine
    client.max_request_bytes = 2000  # a few orders per request
    sent = _record_sends(client)
    replies = await asyncio.gather(*(client.submit_order(_order(f"z-{i}", f"acct-{i}"), TRADER) for i in range(40)))
    assert [r["verdict"] for r in replies] == ["filled"] * 40
    assert sum(n for _, n in sent) == 40 and len(sent) > 1


async def test_the_engine_refuses_a_malformed_batch_request_naming_the_field(engine):
    client, _, _ = engine
    for orders in ([], "x", [_order(f"m-{i}", "a") for i in range(257)]):
        reply = await client.request(MessageType.SUBMIT_ORDERS, {"orders": orders, "principal": TRADER.to_wire()})
        assert reply["verdict"] == "invalid" and reply["errors"][0]["field"] == "orders"


async def test_an_account_whose_venue_call_was_slow_runs_in_a_batch_of_its_own(engine):
    client, venue, service = engine
    first = [asyncio.create_task(client.submit_order(_order("s-1", "slow"), TRADER)),
             asyncio.create_task(client.submit_order(_order("f-1", "fast"), TRADER))]  # fmt: skip
    await asyncio.wait_for(venue.entered.wait(), 10)
    await asyncio.sleep(0.05)  # the venue call is now slow
    venue.gate.set()
    assert [r["verdict"] for r in await asyncio.wait_for(asyncio.gather(*first), 10)] == ["filled"] * 2
    assert venue.calls == [["s-1", "f-1"]] and service.slow_accounts == {"slow", "fast"}

    replies = await asyncio.wait_for(asyncio.gather(
        client.submit_order(_order("s-2", "slow"), TRADER), client.submit_order(_order("f-2", "fast"), TRADER),
        client.submit_order(_order("o-2", "other"), TRADER)), 10)  # fmt: skip
    assert [r["verdict"] for r in replies] == ["filled"] * 3
    # each marked account alone; the others together; a fast call clears its accounts again
    assert sorted(venue.calls[1:]) == [["f-2"], ["o-2"], ["s-2"]]
    assert service.slow_accounts == set()
