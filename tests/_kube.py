"""pytest plugin: a real Kubernetes control plane on loopback (see scripts/kube).

Register it from tests/conftest.py with ``pytest_plugins = ["tests._kube"]``.

* ``kube_bin`` (session): the directory holding helm, kubectl, etcd, kube-* and kwok; builds them
  once (cached under ~/.cache/wojak/kube-<versions>/). Enough for ``helm lint``/``template``.
* ``kube`` (session): etcd + kube-apiserver + controller-manager + scheduler + kwok with one
  fake node, started by ``scripts/kube up`` unless ``KUBECONFIG`` already points at one that
  ``scripts/kube env`` reports; stopped at the end of the session if this session started it
  (``WOJAK_TEST_SERVICES_KEEP=1`` keeps it). ``KUBECONFIG`` is set in ``os.environ`` before any
  test imports ``kubernetes`` (its config loader reads it once).

A control plane that cannot come up FAILS the tests that need it: it never skips.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "kube"
CHART = REPO / "charts" / "wojak"
TIMEOUT = float(os.environ.get("WOJAK_TEST_KUBE_TIMEOUT", "3600"))  # a cold build is ~15 min on two busy cores


def _script(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


@dataclass(frozen=True)
class Kube:
    bin: Path
    kubeconfig: str

    def kubectl(self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{shlex.join(cmd)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def helm(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return helm(self.bin, *args, f"--kubeconfig={self.kubeconfig}", check=check, timeout=timeout)

    def namespace(self, prefix: str, restricted: bool = True) -> str:
        """A fresh namespace; ``restricted``: Pod Security "restricted" enforced, as the Terraform module labels it."""
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        labels = {"app.kubernetes.io/part-of": "wojak"}
        if restricted:
            labels |= {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}
        self.kubectl("apply", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}))
        deadline = time.monotonic() + 60  # the controller-manager creates its default ServiceAccount
        while self.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode != 0:
            assert time.monotonic() < deadline, f"namespace {name} got no default ServiceAccount"
            time.sleep(0.3)
        return name


def helm(bindir: Path, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    cmd = [str(bindir / "helm"), *args]
    env = {**os.environ, "HELM_CACHE_HOME": "/tmp/wojak-test-helm/cache", "HELM_CONFIG_HOME": "/tmp/wojak-test-helm/config",
           "HELM_DATA_HOME": "/tmp/wojak-test-helm/data"}  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"{shlex.join(cmd)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def _exports(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line.startswith("export ") and "=" in line:
            key, value = line[len("export "):].split("=", 1)
            if key != "PATH":
                out[key] = shlex.split(value)[0]
    return out


@pytest.fixture(scope="session")
def kube_bin() -> Path:
    given = os.environ.get("WOJAK_KUBE_BIN")  # `scripts/kube env` exports it
    if given and (Path(given) / "helm").is_file():
        return Path(given)
    result = _script("bin")
    if result.returncode != 0:
        pytest.fail(f"scripts/kube could not build the control plane:\n{result.stderr[-4000:]}", pytrace=False)
    return Path(result.stdout.strip())


@pytest.fixture(scope="session")
def kube(kube_bin: Path):
    started = False
    env = _script("env", timeout=60)
    if env.returncode != 0:
        up = _script("up")
        if up.returncode != 0:
            pytest.fail(f"scripts/kube up failed:\n{up.stderr[-4000:]}", pytrace=False)
        started = True
        env = _script("env", timeout=60)
    exports = _exports(env.stdout)
    os.environ["KUBECONFIG"] = exports["KUBECONFIG"]  # before anything imports `kubernetes`
    try:
        yield Kube(bin=kube_bin, kubeconfig=exports["KUBECONFIG"])
    finally:
        if started and not os.environ.get("WOJAK_TEST_SERVICES_KEEP"):
            _script("down", timeout=120)
