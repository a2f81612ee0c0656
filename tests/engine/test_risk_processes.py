"""Risk with real engine processes: escalations through a signed webhook (down, back, kill -9
mid-delivery), hot reload of the risk config, and two replicas sharing one SQLite store."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from decimal import Decimal

import pytest

from tests._processes import TRADER, free_port
from tests._risk import risk_config
from tests.engine.escalation._receiver import SECRET, Receiver
from wojak.engine.protocol import MessageType
from wojak.engine.protocol.client import EngineClient

TICK = {"symbol": "FUT", "bid": "999", "ask": "1001", "last": "1000"}


def write_config(path, body: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(body)
    tmp.replace(path)  # atomically, as a ConfigMap update swaps it


CONFIG = risk_config({"max_order_quantity": "10", "price_band_percent": "5"}, """
rules: {max_order_quantity: escalate}
instruments: {FUT: {}}
""")


def order(i, quantity="1", account="acct", price="1000") -> dict:
    return {"client_order_id": f"o-{i}", "account": account, "symbol": "FUT", "side": "buy",
            "quantity": quantity, "order_type": "limit", "limit_price": price}  # fmt: skip


async def submit_all(engine, orders, deadline=5.0):
    async with EngineClient(str(engine.socket), deadline=deadline) as client:
        return await asyncio.gather(*[client.submit_order(dict(o), TRADER) for o in orders])


def executed(engine) -> set[str]:
    try:
        with sqlite3.connect(engine.ledger_path) as db:
            return {r[0] for r in db.execute("SELECT client_order_id FROM executions")}
    except sqlite3.OperationalError:
        return set()


def outbox(store_path) -> dict[str, float | None]:
    with sqlite3.connect(store_path) as db:
        return dict(db.execute("SELECT key, delivered_at FROM escalations"))


def wait_for(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def escalating_engine(engine_factory, tmp_path, port):
    config = tmp_path / "risk.yaml"
    write_config(config, CONFIG)
    return engine_factory(
        WOJAK_ENGINE_RISK_CONFIG=str(config), WOJAK_ENGINE_ESCALATION_SINK=f"http://127.0.0.1:{port}/escalations",
        WOJAK_ESCALATION_WEBHOOK_SECRET=SECRET, WOJAK_SANDBOX_FILL_PROBABILITY="1",
    )  # fmt: skip


@pytest.mark.slow
def test_sink_down_nothing_escalated_executes_and_each_arrives_once_when_it_is_back(engine_factory, tmp_path):
    port = free_port()
    engine = escalating_engine(engine_factory, tmp_path, port)
    engine.request(MessageType.TICK, {"tick": TICK})
    replies = asyncio.run(submit_all(engine, [order(i, quantity="11") for i in range(5)] + [order("ok")]))
    assert [r["verdict"] for r in replies] == ["escalated"] * 5 + ["filled"]
    assert all(r["reason"] == "max_order_quantity_exceeded" for r in replies[:5])
    time.sleep(1.0)  # the delivery loop keeps failing meanwhile
    keys = {f"esc:acct/o-{i}" for i in range(5)}  # outbox keys name the account: ids are per account
    assert outbox(engine.store_path) == {k: None for k in keys}
    assert executed(engine) == {"o-ok"}, "nothing that needed escalation was executed"
    receiver = Receiver(port).start()
    try:
        wait_for(lambda: all(outbox(engine.store_path).values()), what="the outbox to drain")
        # a resend of an escalated order is a duplicate: it is not escalated (or executed) again
        again = asyncio.run(submit_all(engine, [order(0, quantity="11")]))
        assert again[0]["verdict"] == "duplicate"
        time.sleep(0.5)
    finally:
        receiver.stop()
    assert set(receiver.keys) == keys and len(receiver.bodies) == len(keys)
    assert receiver.bad_signatures == 0
    assert executed(engine) == {"o-ok"}


@pytest.mark.slow
def test_kill_9_in_the_middle_of_delivery_loses_no_escalation(engine_factory, tmp_path):
    port = free_port()
    receiver = Receiver(port, hold_first=True).start()
    try:
        engine = escalating_engine(engine_factory, tmp_path, port)
        engine.request(MessageType.TICK, {"tick": TICK})
        replies = asyncio.run(submit_all(engine, [order(i, quantity="11") for i in range(3)]))
        assert {r["verdict"] for r in replies} == {"escalated"}
        assert receiver.got_first.wait(20), "the first delivery should be in flight"
        engine.kill()  # mid-delivery: the sink has the request but never acknowledged it
        receiver.release.set()
        assert not any(outbox(engine.store_path).values())
        engine.start()
        wait_for(lambda: all(outbox(engine.store_path).values()), what="the outbox to drain after restart")
    finally:
        receiver.stop()
    assert set(receiver.keys) == {f"esc:acct/o-{i}" for i in range(3)}
    assert receiver.bad_signatures == 0


@pytest.mark.slow
def test_hot_reload_to_halted_denies_the_next_order_and_a_bad_config_keeps_the_old_limits(engine_factory, tmp_path):
    config = tmp_path / "risk.yaml"
    write_config(config, CONFIG)
    engine = engine_factory(WOJAK_ENGINE_RISK_CONFIG=str(config), WOJAK_ENGINE_RISK_RELOAD_SECONDS="0.1",
                            WOJAK_SANDBOX_FILL_PROBABILITY="1", WOJAK_LOG_LEVEL="INFO")  # fmt: skip
    engine.request(MessageType.TICK, {"tick": TICK})
    assert engine.request(MessageType.SUBMIT_ORDER, {"order": order(1)})["verdict"] == "filled"

    def metric(name: str) -> str:
        text = engine.request(MessageType.METRICS, {})["text"]
        return "".join(line for line in text.splitlines() if line.startswith(name))

    # malformed: rejected, the old limits stay (max_order_quantity 10 still escalates 11)
    write_config(config, CONFIG.replace('"10"', "10.5") + "trading_state: HALTED\n")
    wait_for(lambda: 'result="rejected"} 1.0' in metric("wojak_engine_risk_config_reloads_total"), what="the rejection")
    assert engine.request(MessageType.SUBMIT_ORDER, {"order": order(2)})["verdict"] == "filled"
    assert engine.request(MessageType.SUBMIT_ORDER, {"order": order(3, quantity="11")})["verdict"] == "escalated"
    assert "floats lose precision" in engine.log.read_text()

    write_config(config, CONFIG + "trading_state: HALTED\n")
    wait_for(lambda: 'result="applied"} 1.0' in metric("wojak_engine_risk_config_reloads_total"), what="the reload")
    reply = engine.request(MessageType.SUBMIT_ORDER, {"order": order(4)})
    assert reply["verdict"] == "denied" and reply["reason"] == "trading_halted"
    assert engine.proc.poll() is None  # no restart


@pytest.mark.slow
def test_two_replicas_fed_concurrently_on_one_sqlite_store_never_pass_the_position_or_daily_loss_limit(
    engine_factory, tmp_path
):
    """Two engine processes share one store and are fed at once, interleaved, from the first
    order. Every buy fills (fill probability 1) at its limit, so the allowances are exact
    counts: FUT (last 1000, limit 1000) one-lot buys up to max_position 50; ES (last 990,
    limit 1000) one-lot buys are each marked at a loss of 10 the moment they fill, so
    max_daily_loss 100 allows exactly 10, however the two replicas' admits and fills interleave
    (an admitted order's loss is reserved in the store until its fill is recorded)."""
    config = tmp_path / "risk.yaml"
    write_config(config, risk_config({"max_position": "50", "max_daily_loss": "100", "price_band_percent": "5"}, """
rules: {max_position: deny}
instruments: {FUT: {}, ES: {}}
"""))
    store = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    env = dict(WOJAK_ENGINE_RISK_CONFIG=str(config), WOJAK_STORE=store, WOJAK_SANDBOX_FILL_PROBABILITY="1")
    a, b = engine_factory(**env), engine_factory(**env)
    for engine in (a, b):
        engine.request(MessageType.TICK, {"tick": TICK})
        engine.request(MessageType.TICK, {"tick": {**TICK, "symbol": "ES", "bid": "989", "ask": "991", "last": "990"}})

    pos = [order(f"p{i}", account="pos") for i in range(80)]
    loss = [{**order(f"l{i}", account="loss"), "symbol": "ES"} for i in range(30)]
    mixed = [o for pair in zip(pos, loss + [None] * 50) for o in pair if o is not None]

    async def both():
        return await asyncio.gather(submit_all(a, mixed[0::2], deadline=30), submit_all(b, mixed[1::2], deadline=30))

    replies = {r["client_order_id"]: r for part in asyncio.run(both()) for r in part}
    assert len(replies) == 110 and {r["verdict"] for r in replies.values()} <= {"filled", "denied"}
    filled = {coid for coid, r in replies.items() if r["verdict"] == "filled"}
    assert len({c for c in filled if c.startswith("o-p")}) == 50
    assert len({c for c in filled if c.startswith("o-l")}) == 10
    assert {replies[c]["reason"] for c in replies if c.startswith("o-p") and c not in filled} == {"max_position_exceeded"}
    loss_codes = {code for c in replies if c.startswith("o-l") and c not in filled for code in replies[c]["reason"].split(",")}
    assert loss_codes <= {"max_daily_loss_exceeded", "trading_halted"} and "max_daily_loss_exceeded" in loss_codes
    with sqlite3.connect(tmp_path / "shared.sqlite") as db:
        rows = {r[0]: r[1:] for r in db.execute(
            "SELECT account, symbol, quantity, average_price, pending_buy, pending_sell, pending_loss FROM positions")}  # fmt: skip
        state = db.execute("SELECT state FROM account_state WHERE account='loss'").fetchone()
    assert rows["pos"] == ("FUT", "50", "1000", "0", "0", "0")
    symbol, qty, avg, pending_buy, _, pending_loss = rows["loss"]
    assert symbol == "ES" and Decimal(pending_buy) == 0 and Decimal(pending_loss) == 0
    assert Decimal(qty) == 10 and (Decimal(avg) - 990) * Decimal(qty) == 100  # marked to the last tick: at the limit
    assert state == ("HALTED",)
    later = a.request(MessageType.SUBMIT_ORDER, {"order": {**order("after", account="loss", price="990"), "symbol": "ES"}})
    assert later["verdict"] == "denied" and later["reason"] == "trading_halted"
