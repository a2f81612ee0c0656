"""`helm install --wait` of charts/wojak for each source type on a real kube-apiserver + etcd
(+ controller-manager, scheduler and a kwok fake node), into a namespace that enforces Pod Security
"restricted" as the Terraform release module labels it; `helm uninstall` leaves nothing behind.

kwok marks the scheduled pods Running without running containers (the images need not exist):
what this proves is what the API server admits and the controllers make of the chart. The
images running as a pod are proven with podman (tests/images)."""

from __future__ import annotations

import json
import time

import pytest

from tests._kube import CHART, Kube
from tests.charts._values import SOURCE_TYPES, values_for, write_values

pytestmark = pytest.mark.slow

# Records the cluster keeps about what happened, not objects of the release
NOT_RELEASE_OBJECTS = {"events", "events.events.k8s.io"}


def namespaced_objects(kube: Kube, namespace: str) -> set[str]:
    """Every object in the namespace, of every namespaced kind the API server lists."""
    kinds = kube.kubectl("api-resources", "--namespaced=true", "--verbs=list", "-o", "name").stdout.split()
    kinds = [k for k in kinds if k not in NOT_RELEASE_OBJECTS]
    assert {"pods", "deployments.apps", "configmaps", "secrets", "serviceaccounts", "networkpolicies.networking.k8s.io",
            "poddisruptionbudgets.policy", "roles.rbac.authorization.k8s.io"} <= set(kinds)  # fmt: skip
    items = kube.json("get", ",".join(kinds), "-n", namespace, "--ignore-not-found")["items"]
    return {f"{item['kind']}/{item['metadata']['name']}" for item in items}


def user_secrets(kube: Kube, namespace: str, source_type: str) -> None:
    """The Secrets a user creates before installing (the chart only names them)."""
    values = values_for(source_type)["source"]
    names = {values.get("http", {}).get("apiKeysSecret"), values.get("rabbitmq", {}).get("urlSecret", {}).get("name"),
             values.get("kafka", {}).get("saslPasswordSecret", {}).get("name")} - {None}  # fmt: skip
    for name in names:
        kube.kubectl("create", "secret", "generic", name, "-n", namespace, "--from-literal=keys.yaml=principals: []",
                     "--from-literal=url=amqps://wojak:secret@rabbitmq:5671/", "--from-literal=password=secret")  # fmt: skip


def test_the_namespace_refuses_a_pod_the_restricted_profile_forbids(kube):
    """The enforcement the installs below pass is real: a privileged pod is refused."""
    namespace = kube.namespace("wojak-pss")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "privileged"},
           "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}]}}  # fmt: skip
    result = kube.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(pod), check=False)
    assert result.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in result.stderr and "privileged" in result.stderr, result.stderr
    kube.kubectl("delete", "namespace", namespace, "--wait=false")


# http last: its release installs the RiskPolicy CRD and its uninstall deletes it; after a CRD
# deletion, on two busy cores, the controller-manager was seen to stop updating ReplicaSet status
# (its caches waiting on the removed resource's informer), which stalls later `--wait`s.
INSTALL_ORDER = tuple(t for t in SOURCE_TYPES if t != "http") + ("http",)


@pytest.mark.parametrize("source_type", INSTALL_ORDER)
def test_helm_install_waits_for_running_pods_and_uninstall_leaves_nothing_behind(kube, tmp_path, source_type):
    namespace = kube.namespace(f"wojak-{source_type}")
    user_secrets(kube, namespace, source_type)
    before = namespaced_objects(kube, namespace)
    values = write_values(tmp_path, values_for(source_type, operator={"enabled": True, "installCRD": source_type == "http"}))
    install = kube.helm("install", "wojak", str(CHART), "-n", namespace, "-f", str(values), "--wait", "--timeout", "240s")
    assert "STATUS: deployed" in install.stdout, install.stdout
    assert f"the {source_type} source" in install.stdout  # NOTES.txt

    pods = kube.json("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/instance=wojak,app.kubernetes.io/component=engine")["items"]
    assert len(pods) == 2, [p["metadata"]["name"] for p in pods]
    for pod in pods:
        assert pod["status"]["phase"] == "Running", pod["status"]
        assert pod["spec"]["nodeName"] == "kwok-node-0"
        assert [c["name"] for c in pod["spec"]["initContainers"]] == ["engine"]
    # the Deployment's own status follows its pods later (ReplicaSet, then Deployment controller;
    # a sync the ReplicaSet controller dropped is picked up by scripts/kube's 30-60 s resync)
    deadline = time.monotonic() + 180
    while (ready := kube.json("get", "deployment", "wojak", "-n", namespace)["status"].get("readyReplicas")) != 2:
        assert time.monotonic() < deadline, f"the Deployment reports {ready} ready replicas, not 2"
        time.sleep(0.5)
    installed = namespaced_objects(kube, namespace) - before
    kinds = {name.split("/")[0] for name in installed}
    assert {"Deployment", "ReplicaSet", "Pod", "ConfigMap", "ServiceAccount", "NetworkPolicy", "PodDisruptionBudget",
            "Role", "RoleBinding", "Secret"} <= kinds, sorted(installed)  # fmt: skip
    assert ("Service" in kinds) == (source_type == "http"), sorted(installed)

    # the `helm test` pods are admitted too (kwok would not run them to completion: checked by a
    # server-side dry run in the same restricted namespace)
    tests = kube.helm("template", "wojak", str(CHART), "-n", namespace, "-f", str(values), "--show-only", "templates/tests/test-engine.yaml",
                      *(["--show-only", "templates/tests/test-http-order.yaml"] if source_type == "http" else [])).stdout  # fmt: skip
    admitted = kube.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=tests)
    assert admitted.stdout.count("created (server dry run)") == (2 if source_type == "http" else 1), admitted.stdout
    assert "Warning" not in admitted.stderr, admitted.stderr  # the namespace also warns on "restricted"

    kube.helm("uninstall", "wojak", "-n", namespace, "--wait", "--timeout", "120s")
    deadline = time.monotonic() + 120  # pods terminate, the garbage collector removes the ReplicaSets
    while (left := namespaced_objects(kube, namespace)) != before and time.monotonic() < deadline:
        time.sleep(1)
    assert left == before, f"left behind: {sorted(left - before)}; gone: {sorted(before - left)}"
    if source_type == "http":
        assert kube.kubectl("get", "crd", "riskpolicies.wojak.io", check=False).returncode != 0  # it was this release's
    kube.kubectl("delete", "namespace", namespace, "--wait=false")
