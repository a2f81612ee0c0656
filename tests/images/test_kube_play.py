"""The pod, as Kubernetes YAML, run by `podman kube play` with the images built here.

The engine is an ordinary container beside the source sidecar: podman 4.3's kube play waits
forever for a native sidecar (an init container with restartPolicy: Always) to exit, so this is
the rendering a chart gives for runtimes without native sidecars. Both containers run under the
restricted pod security profile (non-root numeric user, read-only root filesystem, no privilege
escalation, every capability dropped, seccomp RuntimeDefault) and share an emptyDir for the
engine's socket; the risk file comes from a ConfigMap volume. The pod uses the host's network
(`kube play --network host`) so the sidecars reach the shared RabbitMQ on 127.0.0.1 and the
test reaches the HTTP intake on loopback.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests._kube import CHART, helm
from tests._processes import free_port
from tests.charts._values import values_for
from tests.images.conftest import (
    CAPS_SCRIPT,
    TAG,
    TICK_SCRIPT,
    UID,
    assert_each_executed_or_denied_once,
    podman,
    rabbit_empty,
    verdicts,
)
from tests.images.test_helm_test import for_podman
from tests.images.test_images import KEY, STREAM, STREAM_LATENCY_MS, _http, _ready, _wait
from wojak.sidecars.testing.contract import ACCOUNTS, CONTRACT_RISK_CONFIG, TICK, dumps, eventually, order

pytestmark = pytest.mark.slow

RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}


def pod_yaml(
    name: str, engine_image: str, sidecar_image: str, sidecar_env: dict[str, str], risk: str, engine_env: dict[str, str] | None = None
) -> str:
    """A ConfigMap with the risk file and the pod: the engine as an ordinary container. The
    volumes are named after the pod: podman 4.3 makes an emptyDir a named volume of the volume's
    name, which every pod with an emptyDir of that name would share (and a later pod reuse)."""
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-risk"}, "data": {"risk.yaml": risk}}
    run, data = f"{name}-run", f"{name}-data"
    mounts = [{"name": run, "mountPath": "/run/wojak"}]
    engine = {
        "name": "engine",
        "image": engine_image,
        "env": [
            {"name": "WOJAK_ENGINE_RISK_CONFIG", "value": "/etc/wojak/risk/risk.yaml"},
            {"name": "WOJAK_VENUE", "value": "sandbox:?ledger=/var/lib/wojak/sandbox.sqlite"},
            {"name": "WOJAK_SANDBOX_FILL_PROBABILITY", "value": "1"},  # every order fills (default: 9 in 10)
            *({"name": k, "value": v} for k, v in (engine_env or {}).items()),
        ],
        "securityContext": RESTRICTED,
        "volumeMounts": [*mounts, {"name": data, "mountPath": "/var/lib/wojak"},
                         {"name": "risk", "mountPath": "/etc/wojak/risk", "readOnly": True}],  # fmt: skip
        "livenessProbe": {"exec": {"command": ["/opt/wojak/bin/wojak-engine", "ping"]}, "periodSeconds": 10},
    }
    sidecar = {
        "name": "sidecar",
        "image": sidecar_image,
        "env": [{"name": k, "value": v} for k, v in sidecar_env.items()],
        "securityContext": RESTRICTED,
        "volumeMounts": mounts,
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "wojak"}},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
                                "seccompProfile": {"type": "RuntimeDefault"}},  # fmt: skip
            "terminationGracePeriodSeconds": 60,
            "restartPolicy": "Never",
            "containers": [engine, sidecar],
            "volumes": [{"name": run, "emptyDir": {}}, {"name": data, "emptyDir": {}},
                        {"name": "risk", "configMap": {"name": f"{name}-risk"}}],  # fmt: skip
        },
    }
    return yaml.safe_dump_all([configmap, pod], sort_keys=False)


class PlayedPod:
    """A pod under kube play: ``name`` the pod's, ``source`` its sidecar container's name, and the
    named volumes podman made for it (removed by ``down``)."""

    def __init__(self, tmp_path: Path, name: str, text: str, source: str = "sidecar", volumes: list[str] | None = None) -> None:
        self.name = name
        self.source = source
        self.volumes = [f"{name}-{v}" for v in ("risk", "run", "data")] if volumes is None else volumes
        self.file = tmp_path / f"{name}.yaml"
        self.file.write_text(text)

    def play(self) -> None:
        podman("kube", "play", "--network", "host", str(self.file), timeout=300)

    def container(self, which: str) -> str:
        return f"{self.name}-{which}"

    def exec(self, which: str, *argv: str) -> Any:
        return podman("exec", self.container(which), *argv, check=False, timeout=60)

    def logs(self, which: str) -> str:
        result = podman("logs", self.container(which), check=False)
        return result.stdout + result.stderr

    def state(self, which: str) -> dict[str, Any]:
        return json.loads(podman("inspect", "--format", "{{json .State}}", self.container(which)).stdout)

    def wait_engine(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while (answer := self.exec("engine", "/opt/wojak/bin/wojak-engine", "ping", "--timeout", "1")).returncode != 0:
            assert self.state("engine")["Running"], self.logs("engine")[-3000:]
            assert time.monotonic() < deadline, answer.stderr + self.logs("engine")[-3000:]
            time.sleep(0.5)

    def executions(self) -> dict[str, int]:
        script = ("import json, os, sqlite3\np = '/var/lib/wojak/sandbox.sqlite'\n"
                  "rows = sqlite3.connect(p).execute('SELECT client_order_id, submissions FROM executions').fetchall() "
                  "if os.path.exists(p) else []\nprint(json.dumps(dict(rows)))")  # fmt: skip
        result = self.exec("engine", "/opt/wojak/bin/python3", "-c", script)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def engine_orders(self, limit: int = 5000) -> dict[str, dict[str, Any]]:
        """client_order_id -> the order as the engine's store holds it (`wojak-engine orders --json`)."""
        result = self.exec("engine", "/opt/wojak/bin/wojak-engine", "orders", "--json", "--limit", str(limit))
        assert result.returncode == 0, result.stderr
        return {o["client_order_id"]: o for o in json.loads(result.stdout)}

    def stored_states(self) -> dict[str, int]:
        """How many orders the engine's store holds in each state."""
        return dict(Counter(o["state"] for o in self.engine_orders().values()))

    def risk_file(self) -> Path:
        """The ConfigMap volume's risk.yaml on the host (where a ConfigMap update lands)."""
        mounts = json.loads(podman("inspect", "--format", "{{json .Mounts}}", self.container("engine")).stdout)
        (risk,) = [m for m in mounts if m["Destination"] == "/etc/wojak/risk"]
        return Path(risk["Source"]) / "risk.yaml"

    def stop(self) -> dict[str, int]:
        """SIGTERM to the pod (podman pod stop): each container's exit code."""
        podman("pod", "stop", "-t", "60", self.name, timeout=120)
        return {which: int(self.state(which)["ExitCode"]) for which in ("engine", self.source)}

    def down(self) -> None:
        podman("kube", "down", str(self.file), check=False, timeout=120)
        podman("pod", "rm", "-f", self.name, check=False)
        for volume in self.volumes:  # the ConfigMaps' and the emptyDirs' named volumes
            podman("volume", "rm", "-f", volume, check=False)


@pytest.fixture
def played(images, tmp_path):
    pods: list[PlayedPod] = []

    def make(sidecar: str, env: dict[str, str], risk: str | None = None, engine_env: dict[str, str] | None = None) -> PlayedPod:
        from wojak.engine.risk import demo_risk_config_path

        name = f"wojak-kp-{uuid.uuid4().hex[:8]}"
        risk = Path(demo_risk_config_path()).read_text() if risk is None else risk
        text = pod_yaml(name, images.engine, images.sidecars[sidecar], env, risk, engine_env)
        pod = PlayedPod(tmp_path, name, text)
        pods.append(pod)
        pod.play()
        return pod

    yield make
    for pod in pods:
        pod.down()


def test_the_pod_yaml_is_restricted_and_has_no_native_sidecar(images):
    docs = list(yaml.safe_load_all(pod_yaml("p", images.engine, images.sidecars["http"], {}, "x: 1\n")))
    spec = docs[1]["spec"]
    assert "initContainers" not in spec
    assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    for container in spec["containers"]:
        assert container["securityContext"] == RESTRICTED
    # podman names an emptyDir's volume after it: a pod's own names keep two pods' stores apart
    assert all(v["name"].startswith("p-") for v in spec["volumes"] if "emptyDir" in v)


def test_kube_play_an_order_to_the_http_source_is_filled_and_a_configmap_risk_change_reaches_the_engine(played):
    port, health = free_port(), free_port()
    pod = played("http", {"WOJAK_API_KEYS": KEY, "WOJAK_DEV": "1", "WOJAK_SIDECAR_HOST": "127.0.0.1",
                          "WOJAK_SIDECAR_PORT": str(port), "WOJAK_SIDECAR_HEALTH_HOST": "127.0.0.1",
                          "WOJAK_SIDECAR_HEALTH_PORT": str(health)})  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    _wait(lambda: _ready(f"{base}/readyz"), 120, "the pod's HTTP source /readyz", lambda: pod.state("sidecar")["Running"])
    assert pod.state("engine")["Running"]
    for which in ("engine", "sidecar"):
        inspected = json.loads(podman("inspect", "--format", "{{json .HostConfig}}", pod.container(which)).stdout)
        assert inspected["ReadonlyRootfs"], which
        caps = pod.exec(which, "/opt/wojak/bin/python3", "-c", CAPS_SCRIPT)
        assert caps.stdout.split() == ["0000000000000000"] * 3, caps.stdout + caps.stderr
        written = pod.exec(which, "/opt/wojak/bin/python3", "-c", "open('/opt/wojak/x', 'w')")
        assert written.returncode != 0 and "Read-only file system" in written.stderr, written.stderr
        uid = pod.exec(which, "/opt/wojak/bin/python3", "-c", "import os; print(os.getuid(), os.getgid())")
        assert uid.stdout.split() == [str(UID), str(UID)], uid.stdout + uid.stderr

    assert _http("POST", f"{base}/v1/ticks", TICK)[0] == 200
    status, reply = _http("POST", f"{base}/v1/orders", order("kp-1", account="desk-1"))
    assert status == 200 and reply["verdict"] == "filled", reply
    assert pod.executions() == {"kp-1": 1}

    # the ConfigMap changes (its volume's file replaced, as the kubelet swaps it): HALTED reaches the engine
    risk = pod.risk_file()
    staged = risk.with_name(".risk.yaml.new")
    staged.write_text(risk.read_text().replace("trading_state: ACTIVE", "trading_state: HALTED", 1))
    os.replace(staged, risk)
    tries: list[dict[str, Any]] = []

    def denied() -> bool:
        status, reply = _http("POST", f"{base}/v1/orders", order(f"kp-h-{len(tries)}", account="desk-1"))
        tries.append(reply)
        return status == 200 and reply["verdict"] == "denied" and "trading_halted" in str(reply.get("reason"))

    _wait(denied, 30, "the engine to deny orders once the ConfigMap says HALTED")

    # SIGTERM to the pod: both containers stop cleanly
    assert pod.stop() == {"engine": 0, "sidecar": 0}, pod.logs("engine")[-2000:] + pod.logs("sidecar")[-2000:]
    assert "Traceback" not in pod.logs("engine") + pod.logs("sidecar")


def chart_pod(images, kube_bin, tmp_path: Path, values: dict[str, Any], secrets: dict[str, dict[str, str]]) -> PlayedPod:
    """The chart's Deployment, rendered by helm with ``values`` (the engine as an ordinary
    container, the images built here), as kube play runs it (``for_podman``), with ``secrets``
    standing for the Secrets the user creates beside the release."""
    release = f"wojak-{uuid.uuid4().hex[:8]}"
    values = {**values, "replicaCount": 1, "engine": {**values.get("engine", {}), "nativeSidecar": False},
              "image": {"engine": {"repository": images.engine.rsplit(":", 1)[0]},
                        "sidecar": {"repository": "localhost/wojak-sidecar"}, "tag": TAG, "pullPolicy": "Never"}}  # fmt: skip
    (tmp_path / "values.json").write_text(json.dumps(values))
    rendered = helm(kube_bin, "template", release, str(CHART), "--namespace", "trading", "-f", str(tmp_path / "values.json"))
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    docs += [{"kind": "Secret", "metadata": {"name": name}, "stringData": data} for name, data in secrets.items()]
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    assert [c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]] == ["engine", "source"]
    played, _ = for_podman(docs, release)
    volumes = [d["metadata"]["name"] for d in played if d["kind"] == "ConfigMap"]
    volumes += [v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"] if "emptyDir" in v]
    # kube play's name for the Deployment's pod
    return PlayedPod(tmp_path, f"{release}-pod-0", yaml.safe_dump_all(played), source="source", volumes=volumes)


@pytest.mark.rabbitmq
async def test_kube_play_of_the_chart_executes_and_acks_rabbitmq_messages_and_a_pod_sigterm_drains(images, kube_bin, tmp_path, rabbit):
    """The chart's own pod (helm template, rabbitmq source, the engine as an ordinary container)."""
    c = rabbit.config
    values = values_for("rabbitmq", risk={"config": yaml.safe_load(CONTRACT_RISK_CONFIG)})
    # the contract's risk limits (order rates no sidecar reaches): this test is about delivery; a
    # venue round trip of STREAM_LATENCY_MS keeps the stream going for seconds, so the SIGTERM lands mid-stream
    values["engine"] = {"venue": "sandbox:?ledger=/var/lib/wojak/sandbox.sqlite",
                        "extraEnv": [{"name": "WOJAK_SANDBOX_FILL_PROBABILITY", "value": "1"},
                                     {"name": "WOJAK_SANDBOX_LATENCY_MS", "value": STREAM_LATENCY_MS}]}  # fmt: skip
    values["source"].update(accounts=ACCOUNTS.split(","), healthPort=free_port())
    values["source"]["rabbitmq"].update(queue=c.queue, prefetch=16, deadLetterExchange=c.dead_letter_exchange,
                                        deadLetterQueue=c.dead_letter_queue, urlSecret={"name": "rabbitmq-url", "key": "url"})  # fmt: skip
    pod = chart_pod(images, kube_bin, tmp_path, values, {"rabbitmq-url": {"url": rabbit.url}})
    try:
        await asyncio.to_thread(pod.play)
        await asyncio.to_thread(pod.wait_engine)
        sent = await asyncio.to_thread(pod.exec, pod.source, "/opt/wojak/bin/python3", "-c", TICK_SCRIPT)
        assert sent.returncode == 0 and json.loads(sent.stdout)["verdict"] == "ok", sent.stdout + sent.stderr

        ids = [f"kp-r-{i}" for i in range(STREAM)]
        await asyncio.gather(*(rabbit.publish(dumps(order(i)), i) for i in ids))
        await eventually(lambda: len(pod.executions()) > 20, 120, "the stream to start")

        # SIGTERM to the pod mid-stream: both containers drain and exit 0; what was not taken stays queued
        codes = await asyncio.to_thread(pod.stop)
        assert codes == {"engine": 0, "source": 0}, pod.logs("source")[-2000:] + pod.logs("engine")[-2000:]
        assert await rabbit.pending() > 0, "stopped mid-stream (else it proves nothing about the drain)"

        # the pod again, on the same volumes: every message gets one verdict (executed once or denied once) and is acked
        await asyncio.to_thread(podman, "pod", "start", pod.name)
        await asyncio.to_thread(pod.wait_engine)
        try:
            await eventually(lambda: len(verdicts(ids, pod.engine_orders())) == STREAM, 180, "every message's verdict")
            await eventually(lambda: rabbit_empty(rabbit), 30, "every message acked")
        except AssertionError as exc:  # say where the rest are: queued, dead-lettered, or held by a process
            letters = await rabbit.dead_letters()
            raise AssertionError(f"{exc}: {len(pod.executions())} executed, the store holds {pod.stored_states()}, "
                                 f"{await rabbit.pending()} ready in the queue, "
                                 f"{len(letters)} dead-lettered {[d.reason for d in letters][:5]}\n--- source\n"
                                 f"{pod.logs('source')[-4000:]}\n--- engine\n{pod.logs('engine')[-3000:]}") from None  # fmt: skip
        denied = assert_each_executed_or_denied_once(ids, pod.engine_orders(), pod.executions())
        print(f"kube play of the chart, RabbitMQ drain: {STREAM - len(denied)} executed, {len(denied)} denied {Counter(denied.values())}")
        assert not denied, f"denied under limits no order here reaches: {Counter(denied.values())}"
        assert await rabbit.dead_letters() == []
        codes = await asyncio.to_thread(pod.stop)
        assert codes == {"engine": 0, "source": 0}, pod.logs("source")[-2000:]
    finally:
        await asyncio.to_thread(pod.down)
