"""What a user installs, checked in fresh virtualenvs with pip, as a user installs wojak.

* ``pip install .``: what ``wojak dev`` runs (the engine and the HTTP sidecar); ``wojak dev``
  starts both, says ready, and stops on Ctrl-C. No broker SDK comes along.
* The engine image's recipe (Dockerfile.engine): ``pip install --require-hashes --no-deps -r
  requirements/engine.lock`` then the wojak wheel with ``--no-deps``. No FastAPI, uvicorn,
  Starlette or orjson, no broker SDK; ``wojak-engine`` (and ``wojak engine``) runs an engine
  that answers ``ping``; the HTTP sidecar refuses in one line naming its extra.

Needs PyPI (or a pip cache/index holding the dependencies and hatchling).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

import pytest

from tests._processes import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
HTTP_STACK = {"fastapi", "starlette", "uvicorn", "orjson", "httptools", "swagger-ui-bundle-v2", "websockets"}
BROKER_SDKS = {"aio-pika", "aiormq", "aiokafka", "boto3", "google-cloud-pubsub", "couchbase"}
BASE = {"pyzmq", "msgpack", "pydantic", "pydantic-settings"}


class Venv:
    def __init__(self, path: Path) -> None:
        venv.create(path, with_pip=True)
        self.path = path
        self.bin = path / "bin"
        # nothing of the test run's own environment: not its virtualenv, not its source roots
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME") and not k.startswith("WOJAK_")}  # fmt: skip
        self.env["PATH"] = f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"

    def pip_install(self, *requirements: str) -> None:
        result = self.run(str(self.bin / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                          *requirements, timeout=900)  # fmt: skip
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    def installed(self) -> set[str]:
        result = self.run(str(self.bin / "python"), "-m", "pip", "list", "--format=json", "--disable-pip-version-check")
        return {d["name"].lower().replace("_", "-") for d in json.loads(result.stdout)}

    def run(self, *argv: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, env={**self.env, **env}, capture_output=True, text=True, timeout=timeout,
                              cwd=self.path.parent)  # fmt: skip


def _ping(v: Venv, command: list[str], sock: Path) -> subprocess.CompletedProcess[str]:
    return v.run(*command, "ping", "--socket", f"ipc://{sock}", "--timeout", "1")


def test_pip_install_dot_runs_wojak_dev_in_a_fresh_virtualenv(tmp_path):
    v = Venv(tmp_path / "venv")
    v.pip_install(str(ROOT))
    installed = v.installed()
    assert BASE | {"pyyaml", "prometheus-client"} | (HTTP_STACK - {"websockets", "httptools"}) <= installed, sorted(installed)
    assert not installed & BROKER_SDKS, sorted(installed & BROKER_SDKS)
    port = free_port()
    dev = subprocess.Popen([str(v.bin / "wojak"), "dev", "--port", str(port), "--data-dir", str(tmp_path / "dev")],
                           env=v.env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and (line := dev.stdout.readline()):  # type: ignore[union-attr]
            lines.append(line)
            if "Ctrl-C stops everything" in line:
                break
        assert any("[3/3] ready" in line for line in lines), "".join(lines)
    finally:
        dev.send_signal(signal.SIGINT)
        out, _ = dev.communicate(timeout=60)
    assert dev.returncode == 0, "".join(lines) + out
    assert "Traceback" not in out, out


def test_the_engine_images_recipe_installs_no_http_stack_and_runs_the_engine(tmp_path):
    v = Venv(tmp_path / "venv")
    v.pip_install("--require-hashes", "--no-deps", "-r", str(ROOT / "requirements" / "engine.lock"))
    v.pip_install("--no-deps", str(ROOT))
    engine_set = v.installed()
    assert BASE | {"pyyaml", "prometheus-client", "couchbase", "boto3"} <= engine_set, sorted(engine_set)
    assert not engine_set & HTTP_STACK, f"the engine's install holds {sorted(engine_set & HTTP_STACK)}"
    assert not engine_set & (BROKER_SDKS - {"boto3", "couchbase"}), sorted(engine_set & BROKER_SDKS)
    check = v.run(str(v.bin / "python"), "-m", "pip", "check", "--disable-pip-version-check")
    assert "fastapi" in check.stdout, "pip sees the base metadata's HTTP stack missing: the lock, not the metadata, decides"
    # AF_UNIX paths are short: the socket lives in a short temporary directory of its own
    run_dir = Path(tempfile.mkdtemp(prefix="wojak-install-", dir="/tmp"))
    sock = run_dir / "run" / "engine.sock"
    env = {"WOJAK_ENGINE_SOCKET": str(sock), "WOJAK_STORE": f"sqlite:///{tmp_path / 'wojak.sqlite'}",
           "WOJAK_VENUE": f"sandbox:?ledger={tmp_path / 'sandbox.sqlite'}", "WOJAK_LOG_LEVEL": "WARNING"}  # fmt: skip
    refused = v.run(str(v.bin / "wojak-engine"), **env)
    assert refused.returncode == 2 and "WOJAK_ENGINE_RISK_CONFIG is not set" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    risk = v.run(str(v.bin / "python"), "-c", "from wojak.engine.risk import demo_risk_config_path as p; print(p())")
    assert risk.returncode == 0, risk.stderr
    env["WOJAK_ENGINE_RISK_CONFIG"] = risk.stdout.strip()
    with open(tmp_path / "engine.log", "wb") as log:
        engine = subprocess.Popen([str(v.bin / "wojak-engine")], env={**v.env, **env}, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while (answer := _ping(v, [str(v.bin / "wojak-engine")], sock)).returncode != 0:
            assert engine.poll() is None, (tmp_path / "engine.log").read_text()[-3000:]
            assert time.monotonic() < deadline, answer.stderr
            time.sleep(0.2)
        assert "engine ok" in answer.stdout
        assert "engine ok" in _ping(v, [str(v.bin / "wojak"), "engine"], sock).stdout  # the umbrella command too
        modules = v.run(str(v.bin / "python"), "-c", "import sys, wojak.engine.app, wojak.engine.cli; "
                        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'uvicorn', 'starlette')))")
        assert modules.returncode == 0 and modules.stdout.strip() == "[]", modules.stdout + modules.stderr
        http = v.run(str(v.bin / "wojak"), "sidecar", "http", **env)
        assert http.returncode == 2 and "pip install '.[http]'" in http.stderr and "Traceback" not in http.stderr, http.stderr
    finally:
        engine.send_signal(signal.SIGTERM)
        try:
            engine.wait(30)
        except subprocess.TimeoutExpired:  # pragma: no cover
            engine.kill()
            engine.wait()
    assert engine.returncode == 0, (tmp_path / "engine.log").read_text()[-3000:]


def test_the_project_is_one_wojak_namespace_with_no_bare_top_level_module():
    """Both source roots hold only ``wojak/``: an install adds no ``engine`` or ``sidecars`` module."""
    for root in (ROOT / "engine", ROOT / "sidecars"):
        assert sorted(p.name for p in root.iterdir() if p.name != "__pycache__") == ["wojak"], root
        assert not (root / "wojak" / "__init__.py").exists(), "wojak is a namespace package (PEP 420)"
    probe = subprocess.run([sys.executable, "-c", "import importlib.util as u, wojak; "
                            "print(u.find_spec('engine'), u.find_spec('sidecars'), list(wojak.__path__))"],
                           cwd="/", capture_output=True, text=True, timeout=60)  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.startswith("None None "), probe.stdout


def test_the_top_level_is_the_cards():
    """docs/architecture.md, "The repository": the source roots, the two images, one pyproject."""
    for name in ("engine", "sidecars", "terraform", "tests", "docs"):
        assert (ROOT / name).is_dir(), name
    for name in ("Dockerfile.engine", "Dockerfile.sidecar", "pyproject.toml", "README.md"):
        assert (ROOT / name).is_file(), name
    assert not (ROOT / "wojak").exists(), "the code lives in the source roots"


def test_each_image_installs_its_lock_and_runs_its_own_command():
    import re

    from wojak.sidecars.cli import BROKERS

    engine = (ROOT / "Dockerfile.engine").read_text()
    assert "ARG LOCK=engine" in engine and "requirements/${LOCK}.lock" in engine
    assert 'ENTRYPOINT ["/opt/wojak/bin/wojak-engine"]' in engine
    compiled_from = (ROOT / "requirements" / "engine.in").read_text().splitlines()[0]
    assert compiled_from.endswith("extras engine, couchbase, lambda; do not edit"), compiled_from
    sidecar = (ROOT / "Dockerfile.sidecar").read_text()
    assert "requirements/sidecar-${BROKER}.lock" in sidecar and 'ENTRYPOINT ["/opt/wojak/bin/wojak-sidecar"]' in sidecar
    assert "WOJAK_SIDECAR_BROKER=${BROKER}" in sidecar
    default = re.search(r"ARG BROKER=(\w+)", sidecar).group(1)  # type: ignore[union-attr]
    assert default in BROKERS
    for broker in ["http", *BROKERS]:
        assert (ROOT / "requirements" / f"sidecar-{broker}.lock").is_file(), f"every sidecar has its lock: {broker}"


def test_wojak_sidecar_without_a_command_runs_the_images_broker():
    """The sidecar image has no CMD: `wojak-sidecar` alone runs WOJAK_SIDECAR_BROKER's sidecar."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WOJAK_")}
    probe = [sys.executable, "-c", "import sys; from wojak.sidecars.cli import main; sys.exit(main([]))"]
    named = subprocess.run(probe, env={**env, "WOJAK_SIDECAR_BROKER": "no-such-broker"}, capture_output=True, text=True, timeout=60)
    assert named.returncode == 2 and "invalid choice: 'no-such-broker'" in named.stderr, named.stderr
    unnamed = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=60)
    assert unnamed.returncode == 2 and "required: source" in unnamed.stderr, unnamed.stderr
    # `wojak-sidecar rabbitmq` itself (the image's command) reaches the broker's settings: one line
    broker = [sys.executable, "-c", "import sys; from wojak.sidecars.cli import main; sys.exit(main(['rabbitmq']))"]
    refused = subprocess.run(broker, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "RabbitMQ sidecar settings" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr, refused.stderr
