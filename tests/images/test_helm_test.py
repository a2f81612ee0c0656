"""`helm test` run for real: the chart's own manifests (rendered by helm, the engine as an ordinary
container) under `podman kube play` with the images built here, then the chart's HTTP test pod
(templates/tests/test-http-order.yaml) against that release: it waits for /readyz, sends a tick
and one order with an API key the release's keys file admits, and must exit 0.

podman 4.3's kube play is not a cluster, so the rendered YAML is changed where it cannot run it,
each change named in ``for_podman`` and none touching a container's image, command, environment
(but for the Secret values, which podman cannot reference), security context or probes:

* Secret volumes become ConfigMap volumes with the same items (kube play panics on a secret
  volume), and a ``secretKeyRef`` becomes its value;
* the test pod reaches the intake at 127.0.0.1 instead of the Service's name (no Service, no
  cluster DNS; the pods share the host's network, so the ports are dropped: kube play refuses
  port mappings on the host network);
* emptyDir volumes get the release's name in front (podman makes an emptyDir a named volume of
  the volume's name, shared by every pod with an emptyDir so named);
* the checkov annotations go (kube play refuses annotation values over 63 characters).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
import yaml

from tests._kube import CHART, helm
from tests._processes import free_port
from tests.charts._values import values_for
from tests.images.conftest import TAG, podman, run_flags
from tests.images.test_images import _ready, _wait

pytestmark = pytest.mark.slow


def for_podman(docs: list[dict[str, Any]], release: str) -> tuple[list[dict[str, Any]], dict[str, dict[str, str]]]:
    """The release's ConfigMaps and Deployment as kube play can run them (see the module's
    docstring), and the Secrets' values by name."""
    secrets = {d["metadata"]["name"]: dict(d["stringData"]) for d in docs if d["kind"] == "Secret"}
    played: list[dict[str, Any]] = []
    for doc in docs:
        if doc["kind"] == "ConfigMap" or doc["kind"] == "Deployment":
            played.append(doc)
        if doc["kind"] != "Deployment":
            continue
        spec = doc["spec"]["template"]["spec"]
        renamed = {}
        for volume in spec["volumes"]:
            if "secret" in volume:
                secret = volume.pop("secret")
                name = secret["secretName"]
                played.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": secrets[name]})
                volume["configMap"] = {"name": name, "items": secret.get("items", [])}
            if "emptyDir" in volume:
                renamed[volume["name"]] = volume["name"] = f"{release}-{volume['name']}"
        for container in spec["containers"]:
            container.pop("ports", None)
            for mount in container.get("volumeMounts", []):
                mount["name"] = renamed.get(mount["name"], mount["name"])
            _secret_refs_as_values(container, secrets)
    return played, secrets


def _secret_refs_as_values(container: dict[str, Any], secrets: dict[str, dict[str, str]]) -> None:
    for env in container.get("env", []):
        ref = env.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            del env["valueFrom"]
            env["value"] = secrets[ref["name"]][ref["key"]]


def helm_test_pod_for_podman(pod: dict[str, Any], secrets: dict[str, dict[str, str]], service: str, port: int) -> dict[str, Any]:
    pod["metadata"]["annotations"] = {k: v for k, v in pod["metadata"]["annotations"].items() if not k.startswith("checkov.io/")}
    for container in pod["spec"]["containers"]:
        _secret_refs_as_values(container, secrets)
        for env in container.get("env", []):
            if env["name"] == "WOJAK_URL":
                assert env["value"] == f"http://{service}:{port}", env
                env["value"] = f"http://127.0.0.1:{port}"
    return pod


def test_helm_test_of_the_http_release_passes_against_the_chart_pod_under_kube_play(images, kube_bin, tmp_path):
    from wojak.sidecars._core.keys import new_key

    release = f"wojak-{uuid.uuid4().hex[:8]}"
    port = free_port()
    key, entry = new_key("helm-test", ["desk-1"], ["orders:write", "ticks:write"])
    values = values_for("http", replicaCount=1, engine={"nativeSidecar": False},
                        image={"engine": {"repository": "localhost/wojak-engine"}, "sidecar": {"repository": "localhost/wojak-sidecar"},
                               "tag": TAG, "pullPolicy": "Never"},
                        tests={"http": {"apiKeySecret": f"{release}-test-key", "symbol": "NIFTY-FUT", "price": "24000"}})  # fmt: skip
    values["source"]["http"].update({"apiKeysSecret": f"{release}-keys", "port": port, "service": {"type": "ClusterIP", "port": port}})
    (tmp_path / "values.json").write_text(json.dumps(values))
    rendered = helm(kube_bin, "template", release, str(CHART), "--namespace", "trading", "-f", str(tmp_path / "values.json"))
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    # what the user creates beside the release: the keys file (hashes only) and the test's key
    docs += [
        {"kind": "Secret", "metadata": {"name": f"{release}-keys"}, "stringData": {"keys.yaml": yaml.safe_dump({"principals": [entry]})}},
        {"kind": "Secret", "metadata": {"name": f"{release}-test-key"}, "stringData": {"key": key}},
    ]
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    assert [c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]] == ["engine", "source"]
    [test_pod] = [d for d in docs if d["kind"] == "Pod" and d["metadata"]["annotations"].get("helm.sh/hook") == "test"]
    played, secrets = for_podman(docs, release)
    release_file, test_file = tmp_path / "release.yaml", tmp_path / "test-pod.yaml"
    release_file.write_text(yaml.safe_dump_all(played))
    test_file.write_text(yaml.safe_dump(helm_test_pod_for_podman(test_pod, secrets, release, port)))
    pod = f"{release}-pod-0"  # kube play's name for the Deployment's pod
    test_container = f"{test_pod['metadata']['name']}-{test_pod['spec']['containers'][0]['name']}"

    def logs(container: str) -> str:
        result = podman("logs", container, check=False)
        return result.stdout + result.stderr

    try:
        podman("kube", "play", "--network", "host", str(release_file), timeout=300)
        _wait(lambda: _ready(f"http://127.0.0.1:{port}/readyz"), 120, "the release's /readyz",
              lambda: json.loads(podman("inspect", "--format", "{{json .State}}", f"{pod}-source").stdout)["Running"])  # fmt: skip
        podman("kube", "play", "--network", "host", str(test_file), timeout=300)
        waited = podman("wait", test_container, timeout=400, check=False)
        output = logs(test_container)
        assert waited.stdout.strip() == "0", f"helm test pod exited {waited.stdout.strip()}:\n{output}\n--- engine\n{logs(f'{pod}-engine')[-3000:]}"
        assert "readyz:" in output and "'ready': True" in output, output
        assert "tick: 200" in output and "'status': 'applied'" in output, output
        order = json.loads(podman("exec", f"{pod}-engine", "/opt/wojak/bin/wojak-engine", "orders", "--json").stdout)
        assert [o["client_order_id"].startswith("helm-test-") for o in order] == [True], order
        assert order[0]["state"] in ("filled", "partially_filled", "rejected"), order
    finally:
        for file in (test_file, release_file):
            podman("kube", "down", str(file), check=False, timeout=120)
        podman("rm", "-f", test_container, check=False)
        volumes = [d["metadata"]["name"] for d in played if d["kind"] == "ConfigMap"]
        volumes += [v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"] if "emptyDir" in v]
        for volume in volumes:
            podman("volume", "rm", "-f", volume, check=False)


def test_for_podman_changes_only_what_kube_play_cannot_run(kube_bin, tmp_path):
    """The substitutions, and nothing else: images, commands, env, security contexts and probes
    of the played pod are the chart's."""
    values = values_for("http", engine={"nativeSidecar": False}, tests={"http": {"apiKeySecret": "k", "symbol": "NIFTY-FUT", "price": "24000"}})
    (tmp_path / "values.json").write_text(json.dumps(values))
    rendered = helm(kube_bin, "template", "wojak", str(CHART), "-f", str(tmp_path / "values.json")).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    original = json.loads(json.dumps(docs))
    docs.append({"kind": "Secret", "metadata": {"name": "wojak-api-keys"}, "stringData": {"keys.yaml": "principals: []\n"}})
    played, _ = for_podman(docs, "r1")
    [before] = [d for d in original if d["kind"] == "Deployment"]
    [after] = [d for d in played if d["kind"] == "Deployment"]
    for old, new in zip(before["spec"]["template"]["spec"]["containers"], after["spec"]["template"]["spec"]["containers"], strict=True):
        for field in ("image", "command", "env", "securityContext", "livenessProbe", "readinessProbe", "startupProbe", "lifecycle"):
            assert old.get(field) == new.get(field), field
    assert {v["name"] for v in after["spec"]["template"]["spec"]["volumes"] if "emptyDir" in v} == {"r1-socket", "r1-data", "r1-tmp"}
    [keys] = [d for d in played if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "wojak-api-keys"]
    assert keys["data"] == {"keys.yaml": "principals: []\n"}


def test_the_rendered_prestop_of_an_ordinary_container_engine_runs_in_the_engine_image(images, kube_bin, tmp_path):
    """The delay is a command of the engine image (no shell there): it must exist and wait."""
    values = values_for("rabbitmq", engine={"nativeSidecar": False})
    values["source"]["drainSeconds"] = 0  # the shortest delay: 5 s
    (tmp_path / "values.json").write_text(json.dumps(values))
    rendered = helm(kube_bin, "template", "wojak", str(CHART), "-f", str(tmp_path / "values.json")).stdout
    [deployment] = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment"]
    engine = deployment["spec"]["template"]["spec"]["containers"][0]
    command = engine["lifecycle"]["preStop"]["exec"]["command"]
    started = time.monotonic()
    result = podman("run", "--rm", *run_flags(), "--entrypoint", command[0], images.engine, *command[1:], timeout=60)
    assert result.returncode == 0
    assert time.monotonic() - started >= 5
