"""Who may do what, in the engine itself: principals, account scopes, ids per account, ticks risk can trust.

These run the order path in process on a real SQLite store and the sandbox venue with a
ledger; tests/engine/test_trust_processes.py repeats the findings against engine processes.
"""

from __future__ import annotations

import random
import sqlite3
from decimal import Decimal

import pytest

from tests._risk import risk_config
from wojak.engine.protocol import ALL_SCOPES, MessageType, Principal, Scope
from wojak.engine.risk import RiskEngine
from wojak.engine.risk._config import _parse
from wojak.engine.service import OrderService
from wojak.engine.store import SQLiteStore
from wojak.engine.venue import InProcessSandboxVenue
from wojak.engine.venue.sandbox import SandboxConfig

CONFIG = risk_config({"max_order_quantity": "1000", "price_band_percent": "5", "max_tick_jump_percent": "10", "tick_jump_seconds": "60"}, """
instruments:
  NIFTY-FUT: {price_decimals: 2}
  BANKNIFTY-FUT: {price_decimals: 2}
""")
TICK = {"symbol": "NIFTY-FUT", "bid": "24000", "ask": "24001", "last": "24000.5"}
DESK_A = Principal.of("desk-a-algo", ["desk-a", "desk-a-*"], [Scope.ORDERS_WRITE, Scope.ORDERS_READ])
DESK_B = Principal.of("desk-b-algo", ["desk-b"], [Scope.ORDERS_WRITE, Scope.ORDERS_READ])
FEED = Principal.of("md-feed", [], [Scope.TICKS_WRITE])
OPS = Principal.of("ops", ["*"], ALL_SCOPES)


def order(coid: str, account: str, **kw: str) -> dict:
    return {"client_order_id": coid, "account": account, "symbol": "NIFTY-FUT", "side": "buy", "quantity": "10",
            "order_type": "limit", "limit_price": "24001", **kw}  # fmt: skip


def config(text: str = CONFIG) -> RiskEngine:
    return RiskEngine(_parse(text, "test config"))


@pytest.fixture
def ledger(tmp_path):
    return tmp_path / "ledger.sqlite"


@pytest.fixture
def service(tmp_path, ledger):
    venue = InProcessSandboxVenue(SandboxConfig(fill_probability=Decimal(1), ledger=str(ledger)))
    return OrderService(SQLiteStore(tmp_path / "store.sqlite"), venue, config())


async def call(service: OrderService, kind: MessageType, body: dict, who: Principal | None) -> dict:
    if who is not None:
        body = {**body, "principal": who.to_wire()}
    [reply] = await service.handle_batch([(kind, body)])
    return reply


async def submit(service, o, who):
    return await call(service, MessageType.SUBMIT_ORDER, {"order": o}, who)


async def tick(service, t, who=FEED):
    return await call(service, MessageType.TICK, {"tick": t}, who)


def submissions(ledger) -> dict[tuple[str, str], int]:
    with sqlite3.connect(ledger) as db:
        return {(a, c): n for a, c, n in db.execute("SELECT account, client_order_id, submissions FROM executions")}


# -- principals and accounts ------------------------------------------------------------------


async def test_a_request_without_a_principal_never_reaches_risk_or_the_venue(service, ledger):
    await tick(service, TICK)
    for body in ({}, {"principal": "root"}, {"principal": {"name": "x", "accounts": "*", "scopes": []}},
                 {"principal": {"name": "x", "accounts": ["*"], "scopes": ["root"]}}):  # fmt: skip
        [reply] = await service.handle_batch([(MessageType.SUBMIT_ORDER, {"order": order("np-1", "desk-a"), **body})])
        assert reply["verdict"] == "forbidden" and reply["reason"] == "principal_missing", body
    assert await service.store.get_order("desk-a", "np-1") is None
    assert submissions(ledger) == {}


async def test_two_desks_cannot_trade_read_cancel_or_list_each_others_orders(service, ledger):
    await tick(service, TICK)
    assert (await submit(service, order("a-1", "desk-a"), DESK_A))["verdict"] == "filled"
    assert (await submit(service, order("b-1", "desk-b"), DESK_B))["verdict"] == "filled"

    # B trading, reading or cancelling A's account: forbidden, whether the order exists or not
    for coid in ("a-1", "never-placed"):
        refused = await submit(service, order(coid, "desk-a"), DESK_B)
        assert refused == {"verdict": "forbidden", "reason": "account_not_permitted", "client_order_id": coid,
                           "detail": "principal desk-b-algo may not act for account desk-a"}  # fmt: skip
        for kind in (MessageType.GET_ORDER, MessageType.CANCEL_ORDER):
            got = await call(service, kind, {"account": "desk-a", "client_order_id": coid}, DESK_B)
            assert got["verdict"] == "forbidden" and got["reason"] == "account_not_permitted"
            assert "order" not in got
    listed = await call(service, MessageType.LIST_ORDERS, {}, DESK_B)
    assert [o["client_order_id"] for o in listed["orders"]] == ["b-1"]
    named = await call(service, MessageType.LIST_ORDERS, {"account": "desk-a"}, DESK_B)
    assert named["verdict"] == "forbidden" and "orders" not in named
    # a pattern of A's principal covers its sub-accounts, and nothing else
    assert (await submit(service, order("a-2", "desk-a-hedge"), DESK_A))["verdict"] == "filled"
    assert (await submit(service, order("a-3", "desk-ab"), DESK_A))["reason"] == "account_not_permitted"
    listed = await call(service, MessageType.LIST_ORDERS, {}, DESK_A)
    assert sorted(o["client_order_id"] for o in listed["orders"]) == ["a-1", "a-2"]
    assert submissions(ledger) == {("desk-a", "a-1"): 1, ("desk-b", "b-1"): 1, ("desk-a-hedge", "a-2"): 1}


async def test_a_scope_is_needed_for_each_kind_of_request(service):
    await tick(service, TICK)
    reader = Principal.of("reader", ["desk-a"], [Scope.ORDERS_READ])
    assert (await submit(service, order("r-1", "desk-a"), reader))["reason"] == "scope_missing"
    assert (await tick(service, TICK, DESK_A))["reason"] == "scope_missing"  # an orders key cannot move prices
    assert (await submit(service, order("r-2", "desk-a"), FEED))["reason"] == "scope_missing"
    assert (await call(service, MessageType.LIST_ORDERS, {}, FEED))["reason"] == "scope_missing"
    writer_only = Principal.of("writer", ["desk-a"], [Scope.ORDERS_WRITE])
    assert (await submit(service, order("w-1", "desk-a"), writer_only))["verdict"] == "filled"
    got = await call(service, MessageType.GET_ORDER, {"account": "desk-a", "client_order_id": "w-1"}, writer_only)
    assert got["reason"] == "scope_missing"


async def test_the_same_client_order_id_in_two_accounts_is_two_orders(service, ledger):
    await tick(service, TICK)
    a = await submit(service, order("same-1", "desk-a"), OPS)
    b = await submit(service, order("same-1", "desk-b", quantity="20"), OPS)  # other content: not a conflict
    assert a["verdict"] == b["verdict"] == "filled"
    assert a["order"]["account"] == "desk-a" and b["order"]["account"] == "desk-b"
    assert submissions(ledger) == {("desk-a", "same-1"): 1, ("desk-b", "same-1"): 1}
    assert (await service.store.get_position("desk-a", "NIFTY-FUT")).quantity == 10
    assert (await service.store.get_position("desk-b", "NIFTY-FUT")).quantity == 20
    # a conflict is only ever within one account, and shows that account's own order
    conflict = await submit(service, order("same-1", "desk-b", quantity="30"), DESK_B)
    assert conflict["verdict"] == "conflict" and conflict["order"]["account"] == "desk-b"
    dup = await submit(service, order("same-1", "desk-a"), DESK_A)
    assert dup["verdict"] == "duplicate" and dup["order"]["quantity"] == "10"
    stored = await service.store.get_order("desk-a", "same-1")
    assert stored.principal == "ops"  # who sent it is kept on the order


async def test_list_orders_pages_with_a_cursor_and_refuses_a_forged_one(service):
    await tick(service, TICK)
    for i in range(7):
        await submit(service, order(f"p-{i}", "desk-a"), DESK_A)
    seen, cursor = [], None
    while True:
        body = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = await call(service, MessageType.LIST_ORDERS, body, DESK_A)
        seen += [o["client_order_id"] for o in page["orders"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"p-{i}" for i in reversed(range(7))]
    for bad in ({"cursor": "!!"}, {"limit": 0}, {"limit": 501}, {"limit": "5"}, {"account": 5}):
        assert (await call(service, MessageType.LIST_ORDERS, bad, DESK_A))["verdict"] == "invalid", bad


# -- ticks risk can trust -------------------------------------------------------------------


async def test_an_orders_key_cannot_move_the_price_band_it_is_checked_against(service):
    await tick(service, TICK)
    far = order("fat-1", "desk-a", limit_price="30000")
    assert (await submit(service, far, DESK_A))["reason"] == "price_band_exceeded"
    moved = await tick(service, {"symbol": "NIFTY-FUT", "bid": "29999", "ask": "30001", "last": "30000"}, DESK_A)
    assert moved["verdict"] == "forbidden" and moved["reason"] == "scope_missing"
    assert service.last_prices["NIFTY-FUT"] == Decimal("24000.5")
    assert (await submit(service, {**far, "client_order_id": "fat-2"}, DESK_A))["reason"] == "price_band_exceeded"


@pytest.mark.parametrize(
    "bad, field, code",
    [
        ({**TICK, "symbol": "ZZZ-UNKNOWN"}, "symbol", "unknown_symbol"),
        ({**TICK, "symbol": "../../x"}, "symbol", "unknown_symbol"),
        ({**TICK, "symbol": "NIFTY FUT"}, "symbol", "string_pattern_mismatch"),
        ({**TICK, "last": "٥٠"}, "last", "decimal_parsing"),
        ({**TICK, "bid": "２４０００"}, "bid", "decimal_parsing"),
        ({**TICK, "last": "+24000"}, "last", "decimal_parsing"),
        ({**TICK, "sequence": -1}, "sequence", "int_type"),
        ({**TICK, "sequence": 1.5}, "sequence", "int_type"),
        ({**TICK, "exchange_time": "yesterday"}, "exchange_time", "datetime_parsing"),
    ],
)
async def test_a_tick_that_is_not_a_price_of_a_configured_instrument_is_refused(service, bad, field, code):
    reply = await tick(service, bad)
    assert reply["verdict"] == "invalid"
    assert (field, code) in {(e["field"], e["code"]) for e in reply["errors"]}
    assert await service.store.load_ticks() == {}


async def test_implausible_ticks_are_held_as_suspect_and_never_priced(service):
    absurd = {"symbol": "NIFTY-FUT", "bid": "100", "ask": "101", "last": "999999999999"}
    assert (await tick(service, absurd))["status"] == "suspect"
    assert await service.store.load_ticks() == {}
    assert (await tick(service, TICK))["status"] == "applied"
    jump = {"symbol": "NIFTY-FUT", "bid": "29999", "ask": "30001", "last": "30000"}  # +25% within the window
    assert (await tick(service, jump))["status"] == "suspect"
    assert (await service.store.load_ticks())["NIFTY-FUT"]["last"] == "24000.5"
    small = {"symbol": "NIFTY-FUT", "bid": "24500", "ask": "24501", "last": "24500"}  # +2%
    assert (await tick(service, small))["status"] == "applied"
    text = service.metrics  # no metrics object here: the counters are checked in the process test
    assert text is None


async def test_a_jump_after_the_window_is_applied(tmp_path):
    store = SQLiteStore(tmp_path / "s.sqlite")
    service = OrderService(store, InProcessSandboxVenue(SandboxConfig()), config(CONFIG.replace('"60"', '"0.001"')))
    assert (await tick(service, TICK))["status"] == "applied"
    import asyncio

    await asyncio.sleep(0.01)
    jump = {"symbol": "NIFTY-FUT", "bid": "29999", "ask": "30001", "last": "30000"}
    assert (await tick(service, jump))["status"] == "applied"


async def test_two_redundant_feeds_use_each_tick_once_and_count_the_gaps(service):
    rng = random.Random(8)
    missing = set(rng.sample(range(2, 1000), 40))  # gaps in the feed itself
    sequences = [s for s in range(1, 1001) if s not in missing]

    def feed(seq: int) -> dict:
        price = Decimal(24000) + Decimal(seq % 50) / 4
        return {"symbol": "NIFTY-FUT", "bid": str(price - 1), "ask": str(price + 1), "last": str(price), "sequence": seq}

    def jitter(items: list[int]) -> list[int]:  # each feed delivers slightly out of order
        out = list(items)
        for i in range(0, len(out) - 3, 3):
            if rng.random() < 0.3:
                out[i], out[i + 2] = out[i + 2], out[i]
        return out

    a, b = jitter(sequences), jitter(sequences)
    applied, outcomes = [], {"applied": 0, "duplicate": 0, "stale": 0, "suspect": 0}
    ia = ib = 0
    while ia < len(a) or ib < len(b):
        take_a = ib >= len(b) or (ia < len(a) and rng.random() < 0.5)
        seq = a[ia] if take_a else b[ib]
        ia, ib = (ia + 1, ib) if take_a else (ia, ib + 1)
        reply = await tick(service, feed(seq))
        outcomes[reply["status"]] += 1
        if reply["status"] == "applied":
            applied.append(seq)
    assert sum(outcomes.values()) == 2 * len(sequences)
    assert outcomes["suspect"] == 0
    assert applied == sorted(set(applied)), "each tick used at most once, never an older one after a newer"
    assert applied[-1] == 1000
    assert outcomes["duplicate"] >= len(sequences) - len(applied) - outcomes["stale"]
    stored = (await service.store.load_ticks())["NIFTY-FUT"]
    assert stored["sequence"] == 1000 and stored["last"] == feed(1000)["last"]


async def test_every_replica_prices_with_the_tick_another_replica_stored(tmp_path, ledger):
    path = tmp_path / "shared.sqlite"
    venue = InProcessSandboxVenue(SandboxConfig(fill_probability=Decimal(1), ledger=str(ledger)))
    first = OrderService(SQLiteStore(path), venue, config())
    second = OrderService(SQLiteStore(path), venue, config())
    await first.start()
    await second.start()
    await tick(first, TICK)
    assert (await submit(second, order("r-1", "desk-a"), DESK_A))["verdict"] == "filled"  # second saw first's tick
    moved = {"symbol": "NIFTY-FUT", "bid": "25000", "ask": "25001", "last": "25000"}  # +4.2%: applied
    assert (await tick(second, moved))["status"] == "applied"
    far = order("r-2", "desk-a", limit_price="26200")  # within 5% of 25000, not of 24000.5
    assert (await submit(first, far, DESK_A))["verdict"] == "filled"


async def test_a_market_order_on_a_stale_tick_is_denied(tmp_path):
    text = CONFIG.replace('stale_tick_seconds: {value: null, reason: "test"}', 'stale_tick_seconds: "5"')
    store = SQLiteStore(tmp_path / "s.sqlite")
    service = OrderService(store, InProcessSandboxVenue(SandboxConfig(fill_probability=Decimal(1))), config(text))
    await tick(service, TICK)
    store._db.execute("UPDATE ticks SET received_at = received_at - 121, version = version + 1")
    market = {**order("m-1", "desk-a"), "order_type": "market"}
    del market["limit_price"]
    reply = await submit(service, market, DESK_A)
    assert reply["verdict"] == "denied" and "stale_tick" in reply["reason"]


async def test_a_sidecar_audit_event_is_appended(service):
    [ok] = await service.handle_batch([(MessageType.AUDIT, {"event": "keys_file_loaded", "actor": "sidecar:http",
                                                            "detail": {"sha256": "ab" * 32}})])  # fmt: skip
    assert ok["verdict"] == "ok"
    [bad] = await service.handle_batch([(MessageType.AUDIT, {"event": "x y", "actor": "a", "detail": {}})])
    assert bad["verdict"] == "invalid"
    [entry] = await service.store.list_audit(10)
    assert entry["kind"] == "keys_file_loaded" and entry["actor"] == "sidecar:http"


async def test_an_engine_refuses_to_write_an_account_homed_on_another_cluster(tmp_path, ledger):
    text = CONFIG + "home_cluster: aws-eu\naccounts:\n  desk-gcp: {home: gcp-asia}\n"
    venue = InProcessSandboxVenue(SandboxConfig(fill_probability=Decimal(1), ledger=str(ledger)))
    store = SQLiteStore(tmp_path / "eu.sqlite")
    eu = OrderService(store, venue, config(text), cluster="aws-eu")
    await tick(eu, TICK)
    assert (await submit(eu, order("h-1", "desk-a"), OPS))["verdict"] == "filled"  # homed here by default
    refused = await submit(eu, order("h-2", "desk-gcp"), OPS)
    assert refused["verdict"] == "forbidden" and refused["reason"] == "account_homed_elsewhere"
    assert "gcp-asia" in refused["detail"]
    assert await store.get_order("desk-gcp", "h-2") is None  # nothing written here
    assert submissions(ledger) == {("desk-a", "h-1"): 1}
    asia = OrderService(SQLiteStore(tmp_path / "asia.sqlite"), venue, config(text), cluster="gcp-asia")
    await tick(asia, TICK)
    assert (await submit(asia, order("h-3", "desk-gcp"), OPS))["verdict"] == "filled"
    assert (await submit(asia, order("h-4", "desk-a"), OPS))["reason"] == "account_homed_elsewhere"
    unnamed = OrderService(SQLiteStore(tmp_path / "x.sqlite"), venue, config(CONFIG + "accounts: {desk-gcp: {home: gcp-asia}}\n"),
                           cluster="aws-eu")  # fmt: skip
    await tick(unnamed, TICK)
    assert (await submit(unnamed, order("h-5", "desk-a"), OPS))["reason"] == "account_home_unknown"  # fail closed
