"""The RiskPolicy operator's image (Dockerfile.engine built with LOCK=operator) runs the chart's
operator container against the real API server of scripts/kube, with the chart's least-privilege
RBAC: a token of the operator's ServiceAccount (the chart's Role, RoleBinding and ClusterRole
applied in a restricted namespace), the command the chart renders, the restricted flags. A
RiskPolicy becomes the ConfigMap the engines read (Accepted); a policy the engine's validator
refuses is Rejected and the ConfigMap stays as it was. The engine's own image holds no kopf.

What differs from a cluster: the container reaches the API server on 127.0.0.1 (host network)
through a kubeconfig holding that token, instead of the in-cluster service account mount (the
pods of scripts/kube's kwok node do not run), and the liveness port is a free one."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
import yaml

from tests._kube import CHART, Kube, helm
from tests._processes import free_port
from tests.images.conftest import TAG, UID, podman, run_flags
from tests.operator.test_riskpolicy import apply_policy, condition, config_map_text, crd, demo_spec, wait_status  # noqa: F401
from wojak.engine.risk import parse_risk_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def operator_image(images) -> str:
    return images.operator


def test_the_engine_image_has_no_kopf_and_the_operator_image_runs_wojak_operator(images, operator_image):
    engine = podman("run", "--rm", *run_flags(), "--entrypoint", "/opt/wojak/bin/python3", images.engine, "-c", "import kopf", check=False)
    assert engine.returncode != 0 and "No module named 'kopf'" in engine.stderr, engine.stderr
    operator = podman("run", "--rm", *run_flags(), "--entrypoint", "/opt/wojak/bin/wojak-operator", operator_image, "--help")
    assert "RiskPolicy" in operator.stdout


def test_the_operator_image_turns_a_policy_into_the_configmap_with_the_charts_rbac(kube: Kube, crd, operator_image, tmp_path):  # noqa: F811
    namespace = kube.namespace("wojak-opimg")
    release = "wojak"
    values = tmp_path / "values.json"
    values.write_text(json.dumps({"operator": {"enabled": True, "installCRD": False,
                                               "image": {"repository": "localhost/wojak-operator", "tag": TAG}},
                                  "risk": {"existingConfigMap": "desk-risk"}, "source": {"http": {"apiKeysSecret": "keys"}}}))  # fmt: skip
    rendered = helm(kube.bin, "template", release, str(CHART), "--namespace", namespace, "-f", str(values),
                    "--show-only", "templates/operator.yaml").stdout  # fmt: skip
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == operator_image
    rbac = [d for d in docs if d["kind"] != "Deployment"]
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(rbac))
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    token = kube.kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()

    # the operator's kubeconfig: that token, the API server's CA, readable by the container's user only
    admin = json.loads(Path(kube.kubeconfig).read_text())
    cluster = admin["clusters"][0]["cluster"]
    config_dir = Path(tempfile.mkdtemp(prefix="wojak-opimg-", dir="/tmp"))
    (config_dir / "ca.crt").write_bytes(Path(cluster["certificate-authority"]).read_bytes())
    (config_dir / "config").write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "operator",
        "clusters": [{"name": "api", "cluster": {"server": cluster["server"], "certificate-authority": "/kube/ca.crt"}}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "api", "user": "operator", "namespace": namespace}}],
    }))  # fmt: skip
    for path in (config_dir, config_dir / "ca.crt", config_dir / "config"):
        os.chown(path, UID, UID)
        path.chmod(0o500 if path.is_dir() else 0o400)

    command = list(container["command"])
    assert command[:3] == ["wojak-operator", "--namespace", namespace]
    liveness = command.index("--liveness") + 1
    command[liveness] = command[liveness].replace("0.0.0.0:8082", f"127.0.0.1:{free_port()}")
    name = f"wojak-opimg-{uuid.uuid4().hex[:8]}"
    podman("run", "-d", "--name", name, *run_flags(network="host"), "-v", f"{config_dir}:/kube:ro", "-e", "KUBECONFIG=/kube/config",
           "--entrypoint", f"/opt/wojak/bin/{command[0]}", operator_image, *command[1:])  # fmt: skip

    def logs() -> str:
        result = podman("logs", name, check=False)
        return result.stdout[-3000:] + result.stderr[-3000:]

    try:
        apply_policy(kube, namespace, "desk", demo_spec())
        try:
            policy = wait_status(kube, namespace, "desk", "Accepted", timeout=120)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- operator\n{logs()}") from None
        assert condition(policy, "Accepted")["status"] == "True"
        accepted = config_map_text(kube, namespace, "desk-risk")
        assert parse_risk_config(accepted, "configmap").limits.max_order_quantity is not None

        bad = demo_spec()
        del bad["limits"]["max_position"]
        apply_policy(kube, namespace, "desk", bad)
        policy = wait_status(kube, namespace, "desk", "Rejected", generation=2, timeout=120)
        assert "limits: missing max_position" in condition(policy, "Rejected")["message"]
        assert config_map_text(kube, namespace, "desk-risk") == accepted
        assert json.loads(podman("inspect", "--format", "{{json .State}}", name).stdout)["Running"], logs()
        # least privilege: the operator's token may not read Secrets; it serves at once (with the
        # namespaces' list it needs: without it kopf retries that list for a minute first)
        denied = kube.kubectl("auth", "can-i", "get", "secrets", "-n", namespace,
                              f"--as=system:serviceaccount:{namespace}:{account}", check=False)  # fmt: skip
        assert denied.stdout.strip() == "no", denied.stdout
        everything = podman("logs", name, check=False)
        assert "Not enough permissions" not in everything.stdout + everything.stderr, logs()
    finally:
        podman("rm", "-f", "-t", "5", name, check=False)
        kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        cluster_scoped = [d for d in rbac if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
        kube.kubectl("delete", "-f", "-", "--ignore-not-found", input=yaml.safe_dump_all(cluster_scoped), check=False)
        shutil.rmtree(config_dir, ignore_errors=True)
