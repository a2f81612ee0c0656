"""`wojak dev` as a newcomer meets it, with real processes: a busy port is one clear line before
any banner, Ctrl-C stops the sidecar then the engine without a traceback, a killed engine is
restarted, the data directory and key file are private, and `wojak engine ping` finds it."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests._processes import free_port
from tests.test_cli import ENV_WITHOUT_WOJAK

ORDER = {"account": "desk-1", "symbol": "NIFTY-FUT", "side": "buy", "quantity": "50", "order_type": "limit", "limit_price": "24001"}
TICK = {"symbol": "NIFTY-FUT", "bid": "24000", "ask": "24001", "last": "24000"}


class Dev:
    """A `wojak dev` subprocess whose combined output is collected by a thread (never blocks the test)."""

    def __init__(self, cwd: Path, port: int, *extra: str, env: dict[str, str] | None = None) -> None:
        self.cwd, self.port = cwd, port
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wojak", "dev", "--port", str(port), *extra], cwd=cwd, env=env or ENV_WITHOUT_WOJAK,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if time.monotonic() > deadline or (self.proc.poll() is not None and not self._reader.is_alive()):
                raise AssertionError(f"no {text!r} from wojak dev:\n{self.output}")
            time.sleep(0.05)

    def ready(self) -> "Dev":
        self.wait_for("Ctrl-C stops everything")
        return self

    @property
    def key(self) -> str:
        return re.search(r"API key:\s+(\S+)", self.output).group(1)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def post(self, path: str, body: dict) -> httpx.Response:
        return httpx.post(self.base + path, headers={"Authorization": f"Bearer {self.key}"}, json=body, timeout=10)

    def children(self) -> list[int]:
        text = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        return [int(p) for p in text.split()]

    def interrupt(self, timeout: float = 60) -> int:
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def wojak(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wojak", *args], cwd=cwd, env=ENV_WITHOUT_WOJAK,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def engine_pid(cwd: Path) -> int:
    ping = wojak("engine", "ping", cwd=cwd)
    assert ping.returncode == 0, ping.stderr
    return int(re.search(r"pid (\d+)", ping.stdout).group(1))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/status").exists() and "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()


def test_a_busy_port_is_one_clear_line_before_any_banner(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = wojak("dev", "--port", str(port), cwd=tmp_path)
    assert result.returncode != 0
    assert result.stdout == ""  # no banner, no "[1/3]", no "ready"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(port) in lines[0] and "--port" in lines[0] and "Traceback" not in lines[0]


def test_ctrl_c_stops_the_sidecar_then_the_engine_without_a_traceback(tmp_path):
    dev = Dev(tmp_path, free_port())
    try:
        dev.ready()
        assert dev.post("/v1/ticks", TICK).status_code == 200
        assert dev.post("/v1/orders", {**ORDER, "client_order_id": "c-1"}).json()["verdict"] in ("filled", "rejected")
        children = dev.children()
        assert len(children) == 2
        code = dev.interrupt()
    finally:
        dev.kill()
    out = dev.output
    assert code == 0, out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
    assert out.index("HTTP sidecar stopped") < out.index("engine stopped") < out.index("\nstopped")
    assert not any(alive(pid) for pid in children)


def test_a_killed_engine_is_restarted_and_orders_work_again(tmp_path):
    dev = Dev(tmp_path, free_port())
    try:
        dev.ready()
        assert dev.post("/v1/ticks", TICK).status_code == 200
        first = engine_pid(tmp_path)
        os.kill(first, signal.SIGKILL)
        dev.wait_for("engine was killed by SIGKILL")
        dev.wait_for("engine is back")
        assert "restart 1" in dev.output
        second = engine_pid(tmp_path)
        assert second != first
        deadline = time.monotonic() + 30  # the sidecar reconnects to the new engine by itself
        while True:
            reply = dev.post("/v1/orders", {**ORDER, "client_order_id": "after-kill"})
            if reply.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert reply.status_code == 200 and reply.json()["verdict"] in ("filled", "rejected"), reply.text

        (sidecar,) = [pid for pid in dev.children() if pid != second]  # the sidecar too
        os.kill(sidecar, signal.SIGKILL)
        dev.wait_for("HTTP sidecar was killed by SIGKILL")
        dev.wait_for("HTTP sidecar is back")
        again = dev.post("/v1/orders", {**ORDER, "client_order_id": "after-kill"})
        assert again.status_code == 200 and again.json()["verdict"] == "duplicate", again.text
        assert dev.proc.poll() is None  # `wojak dev` itself never restarted
        code = dev.interrupt()
    finally:
        dev.kill()
    assert code == 0
    assert "Traceback" not in dev.output, dev.output
    assert "restarts: engine 1, HTTP sidecar 1" in dev.output


def test_data_dir_is_0700_the_key_file_0600_and_the_engine_gets_the_demo_risk_config(tmp_path):
    data = tmp_path / ".wojak"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    (data / "api-key").write_text("wjk_an-existing-key-0123456789\n")
    os.chmod(data / "api-key", 0o644)
    dev = Dev(tmp_path, free_port())
    try:
        dev.ready()
        assert dev.key == "wjk_an-existing-key-0123456789"
        assert oct(data.stat().st_mode & 0o777) == "0o700"
        assert oct((data / "api-key").stat().st_mode & 0o777) == "0o600"
        assert "demo risk limits" in dev.output and "WOJAK_ENGINE_RISK_CONFIG" in dev.output
        environ = dict(
            item.split("=", 1) for item in Path(f"/proc/{engine_pid(tmp_path)}/environ").read_text().split("\0") if "=" in item
        )
        assert environ["WOJAK_DEV"] == "1"
        assert Path(environ["WOJAK_ENGINE_RISK_CONFIG"]).name == "default_risk.yaml"
        assert Path(environ["WOJAK_ENGINE_RISK_CONFIG"]).is_file()
        dev.interrupt()
    finally:
        dev.kill()


def test_engine_ping_finds_a_running_dev_and_takes_an_ipc_url(tmp_path):
    from wojak.engine.cli import dev_socket_path as _dev_socket

    nowhere = wojak("engine", "ping", "--timeout", "0.3", cwd=tmp_path)
    assert nowhere.returncode == 1
    assert "--socket" in nowhere.stderr and str(tmp_path / ".wojak" / "run" / "engine.sock") in nowhere.stderr

    dev = Dev(tmp_path, free_port())
    try:
        dev.ready()
        found = wojak("engine", "ping", cwd=tmp_path)
        assert found.returncode == 0 and "engine ok" in found.stdout, found.stderr
        sock = _dev_socket((tmp_path / ".wojak").resolve())
        by_url = wojak("engine", "ping", "--socket", f"ipc://{sock}", cwd="/")
        assert by_url.returncode == 0 and f"ipc://{sock}" in by_url.stdout, by_url.stderr
        by_path = wojak("engine", "ping", "--socket", str(sock), cwd="/")
        assert by_path.returncode == 0, by_path.stderr
        elsewhere = wojak("engine", "ping", "--data-dir", str(tmp_path / ".wojak"), cwd="/")
        assert elsewhere.returncode == 0, elsewhere.stderr
        dev.interrupt()
    finally:
        dev.kill()


def test_dev_with_a_keys_file_uses_it_instead_of_the_development_key(tmp_path):
    """`WOJAK_API_KEYS_FILE` and `WOJAK_API_KEYS` together are refused by the sidecar: dev sets only the file."""
    made = wojak("keys", "new", "--name", "algo-1", "--accounts", "desk-1", "--scopes", "orders:write", "orders:read",
                 "ticks:write", "--json", cwd=tmp_path)  # fmt: skip
    out = json.loads(made.stdout)
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps({"principals": [out["entry"]]}))
    dev = Dev(tmp_path, free_port(), env={**ENV_WITHOUT_WOJAK, "WOJAK_API_KEYS_FILE": str(keys_file)})
    try:
        dev.ready()
        assert f"from {keys_file}" in dev.output and not (tmp_path / ".wojak" / "api-key").exists()
        sidecar = [pid for pid in dev.children() if pid != engine_pid(tmp_path)][0]
        environ = Path(f"/proc/{sidecar}/environ").read_text().split("\0")
        assert f"WOJAK_API_KEYS_FILE={keys_file}" in environ
        assert not any(item.startswith("WOJAK_API_KEYS=") for item in environ)
        auth = {"Authorization": f"Bearer {out['key']}"}
        assert httpx.get(dev.base + "/v1/orders/none?account=desk-1", headers=auth).status_code != 401
        assert httpx.get(dev.base + "/v1/orders/none?account=desk-1", headers={"Authorization": "Bearer wjk_not-a-key-at-all"}).status_code == 401
        assert dev.interrupt() == 0
    finally:
        dev.kill()
