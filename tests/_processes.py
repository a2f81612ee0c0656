"""Real processes for tests: the engine and the HTTP sidecar, as `wojak dev` runs them."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from wojak.engine.protocol import ALL_SCOPES, MessageType, Principal
from wojak.engine.protocol.client import EngineClient
from wojak.engine.risk import demo_risk_config_path

API_KEY = "test-key-0123456789abcdef"
# What a sidecar that authenticated a fully trusted client sends: every scope, every account.
# Tests of the principal rules use narrower principals of their own.
TRADER = Principal.of("test-trader", ["*"], ALL_SCOPES)
_PRINCIPAL_KINDS = frozenset({MessageType.SUBMIT_ORDER, MessageType.CANCEL_ORDER, MessageType.GET_ORDER,
                              MessageType.LIST_ORDERS, MessageType.TICK})  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def engine_request(socket_path: Path, kind: MessageType, body: dict[str, Any], deadline: float = 5.0) -> dict[str, Any]:
    """One request; order, query and tick requests without a ``principal`` are sent as ``TRADER``."""
    if kind in _PRINCIPAL_KINDS and "principal" not in body:
        body = {**body, "principal": TRADER.to_wire()}
    async with EngineClient(str(socket_path)) as client:
        return await client.request(kind, body, deadline)


class EngineProcess:
    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir = Path(data_dir)
        # A short, unique socket path (AF_UNIX paths are limited to 107 bytes).
        self.socket_base = Path(tempfile.mkdtemp(prefix="wojak-test-", dir="/tmp"))
        self.socket = self.socket_base / "run" / "engine.sock"
        self.store_path = self.data_dir / "wojak.sqlite"
        self.ledger_path = self.data_dir / "sandbox.sqlite"
        self.env = {
            **os.environ,
            "WOJAK_ENGINE_SOCKET": str(self.socket),
            "WOJAK_STORE": f"sqlite:///{self.store_path}",
            "WOJAK_VENUE": f"sandbox:?ledger={self.ledger_path}",
            "WOJAK_LOG_LEVEL": "WARNING",
            "WOJAK_ENGINE_RISK_CONFIG": demo_risk_config_path(),  # the engine needs one; the demo file by default
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.data_dir / "engine.log"

    def start(self, wait: bool = True, **env: str) -> "EngineProcess":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "wojak", "engine"], env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT
            )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"engine exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            if self.ping():
                return
            time.sleep(0.05)
        raise RuntimeError(f"engine not ready after {timeout}s:\n{self.log.read_text()[-3000:]}")

    def executions(self) -> dict[str, int]:
        """client_order_id -> how many times it reached the venue (the sandbox's ledger)."""
        return dict(self._ledger("SELECT client_order_id, submissions FROM executions"))

    def execution_count(self) -> int:
        """How many distinct orders reached the venue (a count: cheap to poll, unlike ``executions``)."""
        rows = self._ledger("SELECT count(*) FROM executions")
        return rows[0][0] if rows else 0

    def _ledger(self, query: str) -> list[tuple[Any, ...]]:
        if not self.ledger_path.exists():
            return []
        with sqlite3.connect(self.ledger_path) as db:
            try:
                return db.execute(query).fetchall()
            except sqlite3.OperationalError:  # no execution yet: no table yet
                return []

    def stored_orders(self) -> set[str]:
        """The client_order_ids in the engine's store."""
        if not self.store_path.exists():
            return set()
        with sqlite3.connect(self.store_path) as db:
            try:
                return {row[0] for row in db.execute("SELECT client_order_id FROM orders")}
            except sqlite3.OperationalError:
                return set()

    def ping(self) -> bool:
        reply = asyncio.run(engine_request(self.socket, MessageType.PING, {}, 0.3))
        return reply.get("verdict") == "ok"

    def request(self, kind: MessageType, body: dict[str, Any], deadline: float = 5.0) -> dict[str, Any]:
        return asyncio.run(engine_request(self.socket, kind, body, deadline))

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def terminate(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def wait_exit(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)


class HttpSidecarProcess:
    def __init__(self, engine: EngineProcess, **env: str) -> None:
        self.engine = engine
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "WOJAK_ENGINE_SOCKET": str(engine.socket),
            "WOJAK_API_KEYS": API_KEY,
            "WOJAK_SIDECAR_PORT": str(self.port),
            "WOJAK_LOG_LEVEL": "WARNING",
            **env,
        }
        self.log = engine.data_dir / f"sidecar-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "HttpSidecarProcess":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "wojak", "sidecar", "http"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sidecar exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sidecar not up")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
