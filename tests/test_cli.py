"""`wojak dev` as a user runs it: no configuration, prints a key and URL, Ctrl-C stops it cleanly,
and a restart keeps the data. Plus the `orders` / `trades` reports, `accounts` and `audit`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import httpx

from tests._processes import free_port

ENV_WITHOUT_WOJAK = {k: v for k, v in os.environ.items() if not k.startswith("WOJAK_")}


def start_dev(cwd, port):
    proc = subprocess.Popen(
        [sys.executable, "-m", "wojak", "dev", "--port", str(port)], cwd=cwd, env=ENV_WITHOUT_WOJAK,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Ctrl-C stops everything" in line:
            return proc, "".join(lines)
    proc.kill()
    raise AssertionError("wojak dev did not become ready:\n" + "".join(lines))


def stop_dev(proc):
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    return proc.returncode, out


def test_wojak_dev_runs_with_no_configuration_and_keeps_data(tmp_path):
    port = free_port()
    proc, banner = start_dev(tmp_path, port)
    try:
        key = re.search(r"API key:\s+(\S+)", banner).group(1)
        assert f"http://127.0.0.1:{port}/v1/orders" in banner and "curl" in banner
        auth = {"Authorization": f"Bearer {key}"}
        base = f"http://127.0.0.1:{port}"
        assert httpx.post(base + "/v1/ticks", headers=auth, json={"symbol": "NIFTY-FUT", "bid": "24000", "ask": "24001", "last": "24000"}).status_code == 200
        order = {"client_order_id": "dev-1", "account": "desk-1", "symbol": "NIFTY-FUT", "side": "buy",
                 "quantity": "50", "order_type": "limit", "limit_price": "24001"}  # fmt: skip
        first = httpx.post(base + "/v1/orders", headers=auth, json=order).json()
        assert first["verdict"] in ("filled", "rejected"), first
    finally:
        code, out = stop_dev(proc)
    assert code == 0, out
    assert "stopped" in out
    assert (tmp_path / ".wojak" / "wojak.sqlite").exists()
    assert oct((tmp_path / ".wojak" / "api-key").stat().st_mode & 0o777) == "0o600"

    proc, banner = start_dev(tmp_path, port)  # a restart keeps the data and the key
    try:
        assert key in banner
        again = httpx.post(base + "/v1/orders", headers=auth, json=order).json()
        assert again["verdict"] == "duplicate" and again["order"]["state"] == first["verdict"]
    finally:
        stop_dev(proc)

    report = subprocess.run([sys.executable, "-m", "wojak", "orders", "--json"], cwd=tmp_path, env=ENV_WITHOUT_WOJAK,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert report.returncode == 0, report.stderr
    assert [o["client_order_id"] for o in json.loads(report.stdout)] == ["dev-1"]
    table = subprocess.run([sys.executable, "-m", "wojak", "trades"], cwd=tmp_path, env=ENV_WITHOUT_WOJAK,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert table.returncode == 0
    if first["verdict"] == "filled":
        assert "dev-1#50" in table.stdout and "TRADE_ID" in table.stdout


def test_reports_without_a_store_explain_what_to_do(tmp_path):
    result = subprocess.run([sys.executable, "-m", "wojak", "orders"], cwd=tmp_path, env=ENV_WITHOUT_WOJAK,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2 and "wojak dev" in result.stderr


def test_bad_settings_name_the_setting(tmp_path):
    from wojak.engine.risk import demo_risk_config_path

    env = {**ENV_WITHOUT_WOJAK, "WOJAK_STORE": "redis://nowhere", "WOJAK_ENGINE_SOCKET": str(tmp_path / "r" / "e.sock"),
           "WOJAK_ENGINE_RISK_CONFIG": demo_risk_config_path()}  # the engine refuses to start without one
    result = subprocess.run([sys.executable, "-m", "wojak", "engine"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "WOJAK_STORE" in result.stderr
    env = {**ENV_WITHOUT_WOJAK, "WOJAK_API_KEYS": "short"}
    result = subprocess.run([sys.executable, "-m", "wojak", "sidecar", "http"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "WOJAK_API_KEYS" in result.stderr
    env = {**ENV_WITHOUT_WOJAK}
    result = subprocess.run([sys.executable, "-m", "wojak", "sidecar", "http"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "WOJAK_API_KEYS" in result.stderr


def test_accounts_halt_and_resume_take_effect_without_a_restart(engine):
    from wojak.engine.protocol import MessageType

    store = f"sqlite:///{engine.store_path}"
    engine.request(MessageType.TICK, {"tick": {"symbol": "NIFTY-FUT", "bid": "24000", "ask": "24001", "last": "24000"}})

    def order(coid):
        return engine.request(MessageType.SUBMIT_ORDER, {"order": {
            "client_order_id": coid, "account": "desk-9", "symbol": "NIFTY-FUT", "side": "buy", "quantity": "1",
            "order_type": "limit", "limit_price": "24000"}})  # fmt: skip

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "wojak", "accounts", *args, "--store", store, "--json"],
                              env=ENV_WITHOUT_WOJAK, capture_output=True, text=True, timeout=60)  # fmt: skip

    halted = cli("halt", "desk-9", "--reason", "desk review")
    assert halted.returncode == 0, halted.stderr
    denied = order("acct-1")
    assert denied["verdict"] == "denied" and "trading_halted" in denied["reason"]
    listed = json.loads(cli("list").stdout)
    assert [(a["account"], a["state"], a["reason"]) for a in listed] == [("desk-9", "HALTED", "desk review")]
    assert cli("resume", "desk-9").returncode == 0
    assert order("acct-2")["verdict"] in ("filled", "rejected")
    assert json.loads(cli("list").stdout) == []


def test_audit_lists_a_halt_and_a_resume_with_their_actor(tmp_path):
    import asyncio
    import getpass

    from wojak.engine.store import open_store

    store_url = f"sqlite:///{tmp_path / 'wojak.sqlite'}"
    asyncio.run(open_store(store_url).close())  # an empty store, as `wojak dev` leaves one

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "wojak", *args, "--store", store_url], env=ENV_WITHOUT_WOJAK,
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    assert cli("accounts", "halt", "desk-9", "--reason", "desk review").returncode == 0
    assert cli("accounts", "resume", "desk-9").returncode == 0
    assert json.loads(cli("accounts", "list", "--json").stdout) == []  # the override is gone...

    entries = json.loads(cli("audit", "--json").stdout)  # ...its history is not
    actor = f"cli:{getpass.getuser()}"
    assert [(e["kind"], e["actor"], e["subject"]) for e in entries] == [("account_state", actor, "desk-9")] * 2
    resumed, halted = entries  # newest first
    assert halted["detail"]["state"] == "HALTED" and halted["detail"]["reason"] == "desk review"
    assert resumed["detail"]["state"] != "HALTED" and resumed["at"] >= halted["at"]

    table = cli("audit")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["TIME", "KIND", "ACTOR", "SUBJECT", "DETAIL"]
    assert len(lines) == 3 and all(actor in line and "desk-9" in line for line in lines[1:])
    assert 'reason="desk review"' in lines[2] and "HALTED" in lines[2]
    assert len(json.loads(cli("audit", "--json", "--limit", "1").stdout)) == 1
