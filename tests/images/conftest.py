"""The images, built once per session with podman (scripts/images build), and a way to run them
the way a pod does: non-root, read-only root filesystem, no capabilities, no new privileges,
the engine's socket on a volume the two containers share.

The build is slow cold (several minutes: base image, wheelhouse, layers) and quick warm
(podman's layer cache); a missing podman is installed by the script, and a build that fails
fails every test here (never a skip).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "images"
TAG = os.environ.get("WOJAK_TEST_IMAGE_TAG", "test")
BROKERS = ("http", "rabbitmq")
# and the RiskPolicy operator's image (Dockerfile.engine with LOCK=operator), in the same build
BUILT = (*BROKERS, "operator")
UID = 10001
BUILD_TIMEOUT = float(os.environ.get("WOJAK_TEST_IMAGES_TIMEOUT", "3600"))


def podman(*args: str, timeout: float = 120, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, input=input)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


@dataclass(frozen=True)
class Images:
    engine: str
    sidecars: dict[str, str]
    operator: str
    build_log: str


@pytest.fixture(scope="session")
def images() -> Images:
    """`scripts/images build http rabbitmq operator` once per session; CONTAINERS_CONF for every podman call."""
    env = {**os.environ, "WOJAK_IMAGE_TAG": TAG}
    conf = subprocess.run([str(SCRIPT), "env"], capture_output=True, text=True, env=env, timeout=60)
    assert conf.returncode == 0, conf.stderr
    os.environ["CONTAINERS_CONF"] = conf.stdout.strip().split("=", 1)[1]
    try:
        built = subprocess.run([str(SCRIPT), "build", *BUILT], capture_output=True, text=True, env=env, timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"scripts/images build did not finish in {BUILD_TIMEOUT:.0f}s: {exc.stderr!r:.3000}", pytrace=False)
    if built.returncode != 0:
        pytest.fail(f"scripts/images build failed (exit {built.returncode}):\n{built.stderr[-5000:]}", pytrace=False)
    return Images(
        engine=f"localhost/wojak-engine:{TAG}",
        sidecars={b: f"localhost/wojak-sidecar-{b}:{TAG}" for b in BROKERS},
        operator=f"localhost/wojak-operator:{TAG}",
        build_log=built.stderr,
    )


def run_flags(*, network: str = "none") -> list[str]:
    """What the restricted pod security profile asks of a container, as podman flags."""
    return [
        "--user", f"{UID}:{UID}", "--read-only", "--read-only-tmpfs=false", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", "--network", network,
    ]  # fmt: skip


@dataclass
class Pod:
    """Two containers' shared directories on the host: the socket volume (/run/wojak), the
    engine's data (/var/lib/wojak: its SQLite store and the sandbox's ledger) and its risk file
    (/etc/wojak, read-only, reloaded when it changes)."""

    root: Path
    names: list[str] = field(default_factory=list)
    prefix: str = field(default_factory=lambda: f"wojak-test-{uuid.uuid4().hex[:8]}")

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def risk_dir(self) -> Path:
        return self.root / "risk"

    def write_risk(self, text: str) -> None:
        staged = self.risk_dir / ".risk.yaml.new"
        staged.write_text(text)
        staged.chmod(0o644)
        os.replace(staged, self.risk_dir / "risk.yaml")  # as a ConfigMap update: a new file, renamed in

    def start_engine(self, image: str, *extra: str, risk: bool = True, name: str = "engine") -> str:
        # the sandbox fills every order (by default it rejects a tenth, chosen by client_order_id)
        env = ["-e", "WOJAK_VENUE=sandbox:?ledger=/var/lib/wojak/sandbox.sqlite", "-e", "WOJAK_SANDBOX_FILL_PROBABILITY=1",
               "-e", "WOJAK_LOG_LEVEL=INFO"]
        if risk:
            env += ["-e", "WOJAK_ENGINE_RISK_CONFIG=/etc/wojak/risk.yaml"]
        return self.start(name, image, *env, *self.engine_mounts(), *extra)

    def engine_mounts(self) -> list[str]:
        return ["-v", f"{self.run_dir}:/run/wojak", "-v", f"{self.data_dir}:/var/lib/wojak", "-v", f"{self.risk_dir}:/etc/wojak:ro"]

    def start(self, name: str, image: str, *args: str, network: str = "none", command: tuple[str, ...] = ()) -> str:
        full = f"{self.prefix}-{name}"
        podman("rm", "-f", "-t", "0", full, check=False)
        podman("run", "-d", "--name", full, *run_flags(network=network), *args, image, *command)
        self.names.append(full)
        return full

    def exec(self, name: str, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return podman("exec", f"{self.prefix}-{name}", *argv, timeout=timeout, check=False)

    def logs(self, name: str) -> str:
        result = podman("logs", f"{self.prefix}-{name}", check=False)
        return result.stdout + result.stderr

    def state(self, name: str) -> dict[str, Any]:
        return json.loads(podman("inspect", "--format", "{{json .State}}", f"{self.prefix}-{name}").stdout)

    def running(self, name: str) -> bool:
        return bool(self.state(name).get("Running"))

    def stop(self, name: str, timeout: int = 60) -> int:
        """SIGTERM (podman stop), wait up to ``timeout`` s, and return the exit code."""
        podman("stop", "-t", str(timeout), f"{self.prefix}-{name}", timeout=timeout + 30)
        return int(self.state(name)["ExitCode"])

    def wait_engine(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            answer = self.exec("engine", "/opt/wojak/bin/wojak-engine", "ping", "--timeout", "1")
            if answer.returncode == 0 and "engine ok" in answer.stdout:
                return
            assert self.running("engine"), self.logs("engine")[-3000:]
            assert time.monotonic() < deadline, f"the engine did not answer ping: {answer.stderr}\n{self.logs('engine')[-3000:]}"
            time.sleep(0.5)

    def engine_orders(self, limit: int = 1000) -> dict[str, dict[str, Any]]:
        """client_order_id -> the order as the engine's store holds it (`wojak-engine orders --json`)."""
        result = self.exec("engine", "/opt/wojak/bin/wojak-engine", "orders", "--json", "--limit", str(limit))
        assert result.returncode == 0, result.stderr
        return {o["client_order_id"]: o for o in json.loads(result.stdout)}

    def executions(self) -> dict[str, int]:
        """client_order_id -> how many times it reached the sandbox venue (its ledger, read in the container)."""
        script = ("import json, os, sqlite3\np = '/var/lib/wojak/sandbox.sqlite'\n"
                  "rows = sqlite3.connect(p).execute('SELECT client_order_id, submissions FROM executions').fetchall() "
                  "if os.path.exists(p) else []\nprint(json.dumps(dict(rows)))")  # fmt: skip
        result = self.exec("engine", "/opt/wojak/bin/python3", "-c", script)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def cleanup(self) -> None:
        for name in reversed(self.names):
            podman("rm", "-f", "-t", "0", name, check=False)


@pytest.fixture
def pod(images: Images) -> Any:
    # AF_UNIX paths are short: the socket lives under a short directory of /tmp
    root = Path(tempfile.mkdtemp(prefix="wojak-img-", dir="/tmp"))
    p = Pod(root)
    for directory, mode in ((p.run_dir, 0o755), (p.data_dir, 0o700), (p.risk_dir, 0o755)):
        directory.mkdir(mode=mode)
        os.chown(directory, UID, UID)
        directory.chmod(mode)  # mkdir's mode is masked by the umask
    from wojak.engine.risk import demo_risk_config_path

    p.write_risk(Path(demo_risk_config_path()).read_text())
    yield p
    p.cleanup()
    shutil.rmtree(root, ignore_errors=True)


# A tick straight to the engine from inside a sidecar's container (its engine client), as a feed
# principal that may write ticks: the engine prices orders from the last tick.
TICK_SCRIPT = """
import asyncio, json
from wojak.engine.protocol import MessageType, Principal, Scope
from wojak.engine.protocol.client import EngineClient
TICK = {"symbol": "NIFTY-FUT", "bid": "24000", "ask": "24001", "last": "24000"}

async def main():
    principal = Principal.of("image-test-feed", [], [Scope.TICKS_WRITE]).to_wire()
    async with EngineClient("/run/wojak/engine/engine.sock") as client:
        print(json.dumps(await client.request(MessageType.TICK, {"tick": TICK, "principal": principal}, 5.0)))

asyncio.run(main())
"""

# The capability sets of a process in the container: all zero when every capability is dropped.
CAPS_SCRIPT = "print(*[line.split()[1] for line in open('/proc/self/status') if line.startswith(('CapEff', 'CapPrm', 'CapBnd'))])"


def lock_pins(lock: Path) -> dict[str, str]:
    """name -> version of every requirement pinned in a lock file whose marker holds for CPython
    3.11 on Linux (the test images' Python: Debian bookworm's, like this one's)."""
    from packaging.markers import Marker

    pins = {}
    for line in lock.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)\s*(?:;\s*([^\\]+))?", line)
        if match and (not match.group(3) or Marker(match.group(3).strip()).evaluate()):
            pins[match.group(1).lower().replace("_", "-").replace(".", "-")] = match.group(2)
    return pins


def verdicts(ids: list[str], stored: dict[str, dict[str, Any]]) -> dict[str, str]:
    """client_order_id -> the engine's final verdict (filled or denied) for those of ``ids`` that have one."""
    return {i: stored[i]["state"] for i in ids if stored.get(i, {}).get("state") in ("filled", "denied")}


def assert_each_executed_or_denied_once(
    ids: list[str], stored: dict[str, dict[str, Any]], executions: dict[str, int]
) -> dict[str, str]:
    """Every order has exactly one verdict: filled and executed once at the venue, or denied by
    risk (with its reason) and never sent there; no order missing, none executed twice, no
    execution of an order that was not sent. Returns client_order_id -> reason of the denials."""
    final = verdicts(ids, stored)
    missing = sorted(set(ids) - set(final))
    assert not missing, f"{len(missing)} orders without a verdict, e.g. {[stored.get(i) for i in missing[:3]]}"
    filled = {i for i, state in final.items() if state == "filled"}
    denied = {i: str(stored[i].get("reason")) for i, state in final.items() if state == "denied"}
    assert not set(executions) - set(ids), f"executions of orders never sent: {sorted(set(executions) - set(ids))[:5]}"
    twice = {i: n for i, n in executions.items() if n != 1}
    assert not twice, f"executed more than once: {dict(list(twice.items())[:5])}"
    assert set(executions) == filled, (
        f"filled but not executed: {sorted(filled - set(executions))[:5]}; "
        f"executed but not filled: {sorted(set(executions) - filled)[:5]}"
    )
    assert all(denied.values()) and not set(denied) & set(executions), "a denial carries its reason and never executes"
    assert len(filled) + len(denied) == len(ids)
    return denied


async def rabbit_empty(rabbit) -> bool:
    return await rabbit.pending() == 0


@pytest.fixture
async def rabbit(rabbitmq_service):
    """A queue of this test's own (with its dead-letter queue) on the shared RabbitMQ."""
    from tests.sidecars.rabbitmq.test_rabbitmq import RabbitMQBroker

    broker = await RabbitMQBroker(rabbitmq_service.url, f"wojak-img.{uuid.uuid4().hex[:12]}").open()
    yield broker
    await broker.close()
