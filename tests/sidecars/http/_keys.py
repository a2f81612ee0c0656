"""Keys files and sidecars that use them, for the HTTP tests."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable

import yaml

from tests._processes import EngineProcess, HttpSidecarProcess

TICK = {"symbol": "NIFTY-FUT", "bid": "24000", "ask": "24001", "last": "24000"}


def order(coid: str, account: str, **fields: Any) -> dict[str, Any]:
    return {"client_order_id": coid, "account": account, "symbol": "NIFTY-FUT", "side": "buy", "quantity": "50",
            "order_type": "limit", "limit_price": "24001", **fields}  # fmt: skip


def key_for(name: str) -> str:
    """A deterministic test key per principal name (the file stores only its sha256)."""
    return f"wjk_test_{name}_" + hashlib.sha256(name.encode()).hexdigest()[:24]


def entry(name: str, accounts: list[str] | None, scopes: list[str], key: str | None = None) -> dict[str, Any]:
    e: dict[str, Any] = {"name": name, "key_sha256": hashlib.sha256((key or key_for(name)).encode()).hexdigest()}
    if accounts is not None:
        e["accounts"] = accounts
    e["scopes"] = scopes
    return e


def write_keys(path: Path, entries: list[dict[str, Any]], *, as_json: bool = False) -> None:
    text = json.dumps({"principals": entries}) if as_json else yaml.safe_dump({"principals": entries}, sort_keys=False)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)  # atomic, as an operator's tool (or a ConfigMap) would


def auth(name_or_key: str) -> dict[str, str]:
    key = name_or_key if name_or_key.startswith("wjk_") else key_for(name_or_key)
    return {"Authorization": f"Bearer {key}"}


def start_sidecar(engine: EngineProcess, keys_file: Path, **env: str) -> HttpSidecarProcess:
    proc = HttpSidecarProcess(engine, WOJAK_API_KEYS="", WOJAK_API_KEYS_FILE=str(keys_file),
                              WOJAK_API_KEYS_RELOAD_SECONDS="0.2", **env)  # fmt: skip
    return proc.start()


def stored_orders(engine: EngineProcess) -> list[tuple[str, str, str]]:
    """(account, client_order_id, quantity) of every stored order."""
    with sqlite3.connect(engine.store_path) as db:
        return sorted(db.execute("SELECT account, client_order_id, quantity FROM orders").fetchall())


def executions(engine: EngineProcess) -> dict[tuple[str, str], int]:
    """(account, client_order_id) -> submissions at the sandbox venue."""
    with sqlite3.connect(engine.ledger_path) as db:
        return {(a, c): n for a, c, n in db.execute("SELECT account, client_order_id, submissions FROM executions")}


def audit_rows(engine: EngineProcess, kind_prefix: str = "keys_file") -> list[dict[str, Any]]:
    with sqlite3.connect(engine.store_path) as db:
        rows = db.execute("SELECT kind, actor, detail FROM audit WHERE kind LIKE ? ORDER BY id", (kind_prefix + "%",)).fetchall()
    return [{"kind": k, "actor": a, "detail": json.loads(d)} for k, a, d in rows]


def wait_for(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.05)
