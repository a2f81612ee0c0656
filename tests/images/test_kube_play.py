"""The chart's own pod, rendered by helm, run by `podman kube play` with the images built here.

The engine is an ordinary container beside the source sidecar (`engine.nativeSidecar=false`):
podman 4.3's kube play waits forever for a native sidecar (an init container with
restartPolicy: Always) to exit. The chart's Deployment is changed only where kube play cannot
run it (`for_podman` in test_helm_test.py: Secret volumes and references, ports on the host
network, emptyDir names). Both containers run under the restricted pod security profile
(checked as they run: read-only root, no capabilities, the numeric user) and share an emptyDir
for the engine's socket; the risk file comes from the chart's ConfigMap volume. The pod uses the
host's network (`kube play --network host`) so the source reaches the shared RabbitMQ on
127.0.0.1 and the test reaches the HTTP intake on loopback.
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
    each_message_decided_and_acked,
    podman,
)
from tests.images.test_helm_test import for_podman
from tests.images.test_images import STREAM, STREAM_LATENCY_MS, _http, _ready, _wait
from wojak.sidecars.testing.contract import ACCOUNTS, CONTRACT_RISK_CONFIG, TICK, dumps, eventually, order

pytestmark = pytest.mark.slow

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


def test_kube_play_of_the_chart_fills_an_http_order_and_a_configmap_risk_change_reaches_the_engine(images, kube_bin, tmp_path):
    """The chart's own pod (helm template, http source, the engine as an ordinary container):
    restricted as it runs, an order filled, a ConfigMap change reaching the engine, SIGTERM clean."""
    from wojak.sidecars._core.keys import new_key

    key, entry = new_key("kube-play", ["desk-1"], ["orders:write", "ticks:write"])
    port = free_port()
    values = values_for("http")
    values["engine"] = {"venue": "sandbox:?ledger=/var/lib/wojak/sandbox.sqlite",
                        "extraEnv": [{"name": "WOJAK_SANDBOX_FILL_PROBABILITY", "value": "1"}]}  # fmt: skip
    values["source"]["http"].update({"apiKeysSecret": "api-keys", "port": port, "service": {"type": "ClusterIP", "port": port}})
    pod = chart_pod(images, kube_bin, tmp_path, values, {"api-keys": {"keys.yaml": yaml.safe_dump({"principals": [entry]})}})
    try:
        pod.play()
        base = f"http://127.0.0.1:{port}"
        _wait(lambda: _ready(f"{base}/readyz"), 120, "the pod's HTTP source /readyz", lambda: pod.state(pod.source)["Running"])
        assert pod.state("engine")["Running"]
        for which in ("engine", pod.source):
            inspected = json.loads(podman("inspect", "--format", "{{json .HostConfig}}", pod.container(which)).stdout)
            assert inspected["ReadonlyRootfs"], which
            caps = pod.exec(which, "/opt/wojak/bin/python3", "-c", CAPS_SCRIPT)
            assert caps.stdout.split() == ["0000000000000000"] * 3, caps.stdout + caps.stderr
            written = pod.exec(which, "/opt/wojak/bin/python3", "-c", "open('/opt/wojak/x', 'w')")
            assert written.returncode != 0 and "Read-only file system" in written.stderr, written.stderr
            uid = pod.exec(which, "/opt/wojak/bin/python3", "-c", "import os; print(os.getuid(), os.getgid())")
            assert uid.stdout.split() == [str(UID), str(UID)], uid.stdout + uid.stderr

        assert _http("POST", f"{base}/v1/ticks", TICK, key=key)[0] == 200
        status, reply = _http("POST", f"{base}/v1/orders", order("kp-1", account="desk-1"), key=key)
        assert status == 200 and reply["verdict"] == "filled", reply
        assert pod.executions() == {"kp-1": 1}

        # the ConfigMap changes (its volume's file replaced, as the kubelet swaps it): HALTED reaches the engine
        risk = pod.risk_file()
        staged = risk.with_name(".risk.yaml.new")
        staged.write_text(risk.read_text().replace("trading_state: ACTIVE", "trading_state: HALTED", 1))
        os.replace(staged, risk)
        tries: list[dict[str, Any]] = []

        def denied() -> bool:
            status, reply = _http("POST", f"{base}/v1/orders", order(f"kp-h-{len(tries)}", account="desk-1"), key=key)
            tries.append(reply)
            return status == 200 and reply["verdict"] == "denied" and "trading_halted" in str(reply.get("reason"))

        _wait(denied, 30, "the engine to deny orders once the ConfigMap says HALTED")

        # SIGTERM to the pod: both containers stop cleanly
        assert pod.stop() == {"engine": 0, pod.source: 0}, pod.logs("engine")[-2000:] + pod.logs(pod.source)[-2000:]
        assert "Traceback" not in pod.logs("engine") + pod.logs(pod.source)
    finally:
        pod.down()


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
        logs = lambda: f"--- source\n{pod.logs('source')[-4000:]}\n--- engine\n{pod.logs('engine')[-3000:]}"  # noqa: E731
        await each_message_decided_and_acked(ids, rabbit, pod.engine_orders, pod.executions, logs, 180)
        denied = assert_each_executed_or_denied_once(ids, pod.engine_orders(), pod.executions())
        print(f"kube play of the chart, RabbitMQ drain: {STREAM - len(denied)} executed, {len(denied)} denied {Counter(denied.values())}")
        assert not denied, f"denied under limits no order here reaches: {Counter(denied.values())}"
        assert await rabbit.dead_letters() == []
        codes = await asyncio.to_thread(pod.stop)
        assert codes == {"engine": 0, "source": 0}, pod.logs("source")[-2000:]
    finally:
        await asyncio.to_thread(pod.down)
