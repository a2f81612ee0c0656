"""The trust findings against real engine processes over the real IPC socket."""

from __future__ import annotations

import sqlite3

from wojak.engine.protocol import MessageType, Principal, Scope

TICK = {"symbol": "NIFTY-FUT", "bid": "24000", "ask": "24001", "last": "24000.5"}
TRADER_A = Principal.of("desk-a", ["desk-a"], [Scope.ORDERS_WRITE, Scope.ORDERS_READ]).to_wire()
FEED = Principal.of("md-feed", [], [Scope.TICKS_WRITE]).to_wire()


def order(coid: str, account: str = "desk-a", price: str = "24001") -> dict:
    return {"client_order_id": coid, "account": account, "symbol": "NIFTY-FUT", "side": "buy", "quantity": "50",
            "order_type": "limit", "limit_price": price}  # fmt: skip


def test_a_tick_posted_to_one_replica_prices_the_next_order_on_another(engine_factory, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    a = engine_factory(shared, WOJAK_SANDBOX_FILL_PROBABILITY="1")
    b = engine_factory(shared, WOJAK_SANDBOX_FILL_PROBABILITY="1")
    # b started before any tick: no price, so a limit order has nothing to check its band against
    first = b.request(MessageType.SUBMIT_ORDER, {"order": order("x-1"), "principal": TRADER_A})
    assert first["verdict"] == "denied" and "no_reference_price" in first["reason"]
    assert a.request(MessageType.TICK, {"tick": TICK, "principal": FEED})["status"] == "applied"
    again = b.request(MessageType.SUBMIT_ORDER, {"order": order("x-2"), "principal": TRADER_A})
    assert again["verdict"] == "filled"  # b read a's tick from the store, without a restart


def test_an_orders_key_cannot_post_the_price_its_own_limit_is_checked_against(engine):
    assert engine.request(MessageType.TICK, {"tick": TICK, "principal": FEED})["status"] == "applied"
    fat = engine.request(MessageType.SUBMIT_ORDER, {"order": order("f-1", price="30000"), "principal": TRADER_A})
    assert fat["verdict"] == "denied" and "price_band_exceeded" in fat["reason"]
    moved = engine.request(MessageType.TICK, {"tick": {**TICK, "bid": "29999", "ask": "30001", "last": "30000"},
                                              "principal": TRADER_A})  # fmt: skip
    assert moved == {"verdict": "forbidden", "reason": "scope_missing", "detail": "principal desk-a lacks the ticks:write scope",
                     "request_id": moved["request_id"]}  # fmt: skip
    again = engine.request(MessageType.SUBMIT_ORDER, {"order": order("f-2", price="30000"), "principal": TRADER_A})
    assert again["verdict"] == "denied"
    for bad in ({**TICK, "symbol": "ZZZ-UNKNOWN"}, {**TICK, "symbol": "../../x"}, {**TICK, "last": "٥٠"}):
        assert engine.request(MessageType.TICK, {"tick": bad, "principal": FEED})["verdict"] == "invalid"
    absurd = {"symbol": "NIFTY-FUT", "bid": "100", "ask": "101", "last": "999999999999"}
    assert engine.request(MessageType.TICK, {"tick": absurd, "principal": FEED})["status"] == "suspect"
    with sqlite3.connect(engine.store_path) as db:
        assert db.execute("SELECT symbol, last FROM ticks").fetchall() == [("NIFTY-FUT", "24000.5")]
    text = engine.request(MessageType.METRICS, {})["text"]
    assert 'wojak_engine_forbidden_total{reason="scope_missing"} 1.0' in text
    assert 'wojak_engine_ticks_total{outcome="suspect"} 1.0' in text


def test_one_desk_cannot_claim_or_read_another_desks_order_ids(engine):
    engine.request(MessageType.TICK, {"tick": TICK, "principal": FEED})
    trader_b = Principal.of("desk-b", ["desk-b"], [Scope.ORDERS_WRITE, Scope.ORDERS_READ]).to_wire()
    mine = engine.request(MessageType.SUBMIT_ORDER, {"order": order("shared-id"), "principal": TRADER_A})
    theirs = engine.request(MessageType.SUBMIT_ORDER, {"order": {**order("shared-id", "desk-b"), "quantity": "25"},
                                                       "principal": trader_b})  # fmt: skip
    assert mine["verdict"] == "filled" and theirs["verdict"] == "filled"  # two orders, no conflict
    assert theirs["order"]["quantity"] == "25" and theirs["order"]["account"] == "desk-b"
    peek = engine.request(MessageType.GET_ORDER, {"account": "desk-a", "client_order_id": "shared-id", "principal": trader_b})
    assert peek["verdict"] == "forbidden" and "order" not in peek
    listed = engine.request(MessageType.LIST_ORDERS, {"principal": trader_b})
    assert [(o["account"], o["quantity"]) for o in listed["orders"]] == [("desk-b", "25")]


def test_an_engine_with_account_homes_but_no_cluster_name_does_not_start(tmp_path):
    import subprocess
    import sys

    from tests._processes import EngineProcess
    from wojak.engine.risk import demo_risk_config_path

    config = tmp_path / "risk.yaml"
    config.write_text(open(demo_risk_config_path()).read() + "\nhome_cluster: aws-eu\n")
    proc = EngineProcess(tmp_path, {"WOJAK_ENGINE_RISK_CONFIG": str(config)})
    done = subprocess.run([sys.executable, "-m", "wojak", "engine"], env=proc.env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "WOJAK_ENGINE_CLUSTER" in done.stderr and "Traceback" not in done.stderr
