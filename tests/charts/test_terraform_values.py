"""The values the Terraform release module (terraform/modules/wojak-release) passes are values the
chart accepts and renders into manifests valid for Kubernetes 1.37, for what each cloud's stack
passes: AWS (sqs, sns, kinesis; IRSA), GCP (pubsub; workload identity), Azure (http; workload
identity labels and the spot taint).

The module's values are an HCL expression; ``module_values`` builds the same object from sample
inputs, and ``test_module_values_keys_are_the_ones_mirrored_here`` fails when main.tf writes a key
this mirror does not (so the mirror cannot silently drift from the module)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests._kube import CHART, REPO, helm
from tests.charts._values import write_values
from tests.charts.test_render import documents, kubernetes_validate

MODULE = REPO / "terraform" / "modules" / "wojak-release" / "main.tf"
QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/wojak-orders"
DLQ = "https://sqs.eu-west-1.amazonaws.com/123456789012/wojak-orders-dlq"
SPOT = {"wojak.io/capacity": "spot", "wojak.io/pool": "spot"}

# what the stacks pass as source_values (terraform/modules/aws-stack, gcp-stack; environments/azure)
STACKS: dict[str, dict[str, Any]] = {
    "aws-sqs": {"type": "sqs", "values": {"sqs": {"queueUrl": QUEUE, "deadLetterQueueUrl": DLQ, "region": "eu-west-1"}},
                "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/wojak"}},
    "aws-sns": {"type": "sns", "values": {"sns": {"topicArn": "arn:aws:sns:eu-west-1:123456789012:wojak-orders",
                                                  "queueUrl": QUEUE, "deadLetterQueueUrl": DLQ, "region": "eu-west-1"}},
                "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/wojak"}},
    "aws-kinesis": {"type": "kinesis", "values": {"kinesis": {"streamName": "wojak-orders", "deadLetterQueueUrl": DLQ, "region": "eu-west-1",
                                                              "leaseTable": "wojak-kinesis-leases", "createLeaseTable": False}},
                    "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/wojak"}},
    "gcp-pubsub": {"type": "pubsub", "values": {"pubsub": {"subscription": "projects/wojak-prod/subscriptions/wojak-orders",
                                                           "deadLetterTopic": "projects/wojak-prod/topics/wojak-orders-dlq",
                                                           "project": "wojak-prod"}},
                   "annotations": {"iam.gke.io/gcp-service-account": "wojak@wojak-prod.iam.gserviceaccount.com"}},
    "azure-http": {"type": "http", "values": {"http": {"apiKeysSecret": "wojak-api-keys"}},
                   "annotations": {"azure.workload.identity/client-id": "00000000-0000-0000-0000-000000000000"},
                   "pod_labels": {"azure.workload.identity/use": "true"},
                   "tolerations": [{"key": "kubernetes.azure.com/scalesetpriority", "operator": "Equal", "value": "spot",
                                    "effect": "NoSchedule"}]},
}  # fmt: skip


def module_values(stack: dict[str, Any], store_url: str, risk_config: Any = None) -> dict[str, Any]:
    """local.values of terraform/modules/wojak-release/main.tf for these inputs."""
    return {
        "replicaCount": 2,
        "serviceAccount": {"create": True, "name": "wojak", "annotations": stack["annotations"]},
        "podLabels": stack.get("pod_labels", {}),
        "nodeSelector": SPOT,
        "tolerations": stack.get("tolerations", []),
        "source": {"type": stack["type"], "accounts": ["desk-1"], **stack["values"]},
        "engine": {
            "store": store_url,
            "storeCredentials": {"secretName": "wojak-store", "usernameKey": "username", "passwordKey": "password"},
            "venue": "lambda://wojak-sandbox?region=eu-west-1",
            "allowInsecureTransport": store_url.startswith("couchbase://"),
            "cluster": "eu-1",
        },
        "image": {"tag": "0.1.0"},
        "risk": {"config": risk_config} if risk_config is not None else {"existingConfigMap": "wojak-risk"},
    }


def test_module_values_keys_are_the_ones_mirrored_here():
    text = MODULE.read_text()
    block = text[text.index("values = merge(") : text.index('resource "kubernetes_namespace_v1"')]
    written = set(re.findall(r"^\s*([A-Za-z][A-Za-z]*)\s+=", block, re.M)) | set(re.findall(r"\{\s*([A-Za-z]+)\s+=", block))
    mirrored: set[str] = set()

    def keys(value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                mirrored.add(k)
                if k not in ("annotations", "nodeSelector", "podLabels", "sqs", "sns", "kinesis", "pubsub", "http"):
                    keys(v)

    keys(module_values(STACKS["aws-sqs"], "couchbase://x?bucket=b", risk_config={"x": 1}))
    keys(module_values(STACKS["aws-sqs"], "couchbase://x?bucket=b"))
    hcl_only = {"values", "for", "k", "v", "if", "type"}  # the local's own name, for-expression names
    assert written - hcl_only - mirrored == set(), f"main.tf writes keys the mirror lacks: {sorted(written - hcl_only - mirrored)}"


@pytest.mark.parametrize("stack", sorted(STACKS))
@pytest.mark.parametrize("store_url", ["couchbase://wojak-cb-srv.couchbase.svc?bucket=wojak&scope=eu_1&collection=orders",
                                       "couchbases://wojak-cb-srv.couchbase.svc?bucket=wojak"], ids=["couchbase", "couchbases"])
def test_the_chart_accepts_and_renders_what_the_release_module_passes(kube_bin, tmp_path, stack, store_url):
    values = write_values(tmp_path, module_values(STACKS[stack], store_url))
    rendered = helm(kube_bin, "template", "wojak", str(CHART), "--namespace", "wojak", "-f", str(values)).stdout
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(rendered)
    result = kubernetes_validate(manifest)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    docs = documents(rendered)
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    [engine] = pod["initContainers"]
    env = {e["name"]: e.get("value") for e in engine["env"]}
    assert env["WOJAK_STORE"] == store_url and env["WOJAK_ENGINE_CLUSTER"] == "eu-1"
    # the engine refuses plain couchbase:// off loopback unless told: the module tells it for the
    # in-cluster Couchbase, and only then
    assert ("WOJAK_ALLOW_INSECURE_TRANSPORT" in env) == store_url.startswith("couchbase://")
    assert pod["nodeSelector"] == SPOT
    for toleration in STACKS[stack].get("tolerations", []):
        assert toleration in pod["tolerations"]
    [sa] = [d for d in docs if d["kind"] == "ServiceAccount"]
    assert sa["metadata"]["annotations"] == STACKS[stack]["annotations"]
    assert engine["image"].endswith(":0.1.0")


def test_the_engine_would_start_with_the_store_url_and_settings_the_module_renders(kube_bin, tmp_path, monkeypatch):
    """The known loose end: a plain couchbase:// URL off loopback is refused by the engine's
    transport check unless WOJAK_ALLOW_INSECURE_TRANSPORT is set, as the module now sets it."""
    from wojak.engine.protocol import InsecureTransportError, require_secure

    url = "couchbase://wojak-cb-srv.couchbase.svc?bucket=wojak"
    rendered = helm(kube_bin, "template", "wojak", str(CHART), "-f",
                    str(write_values(tmp_path, module_values(STACKS["aws-sqs"], url)))).stdout  # fmt: skip
    [deployment] = [d for d in documents(rendered) if d["kind"] == "Deployment"]
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["initContainers"][0]["env"]}
    with pytest.raises(InsecureTransportError):
        require_secure(env["WOJAK_STORE"], "WOJAK_STORE", env={})
    require_secure(env["WOJAK_STORE"], "WOJAK_STORE", env={k: v for k, v in env.items() if v is not None})


def test_the_module_labels_its_namespace_to_enforce_the_restricted_profile():
    text = MODULE.read_text()
    namespace = text[text.index('resource "kubernetes_namespace_v1"') : text.index('resource "kubernetes_secret_v1"')]
    assert re.search(r'"pod-security.kubernetes.io/enforce"\s*=\s*"restricted"', namespace)


def test_the_demo_risk_file_passes_through_the_module_as_risk_config(kube_bin, tmp_path):
    from wojak.engine.risk import demo_risk_config_path, parse_risk_config

    risk = yaml.safe_load(Path(demo_risk_config_path()).read_text())
    values = write_values(tmp_path, module_values(STACKS["gcp-pubsub"], "couchbases://cb?bucket=wojak", risk_config=risk))
    rendered = helm(kube_bin, "template", "wojak", str(CHART), "-f", str(values)).stdout
    [cm] = [d for d in documents(rendered) if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "wojak-risk"]
    config = parse_risk_config(cm["data"]["risk.yaml"], "rendered")
    assert config.exchange_timezone == "Asia/Kolkata"


def test_spot_affinity_and_tolerations_match_the_labels_and_taints_the_cluster_modules_set(kube_bin, tmp_path):
    import hcl2

    modules = REPO / "terraform" / "modules"
    def local(module: str, name: str) -> dict[str, str]:  # python-hcl2 keeps the quotes of keys and strings
        raw = hcl2.loads((modules / module / "main.tf").read_text())["locals"][0][name]
        return {k.strip('"'): str(v).strip('"') for k, v in raw.items()}

    labels = [local(m, "spot_labels") for m in ("aws-eks-spot", "gcp-gke-spot", "azure-aks-spot")]
    aks_taint = local("azure-aks-spot", "spot_taint")
    values = write_values(tmp_path, module_values(STACKS["aws-sqs"], "couchbases://cb?bucket=wojak") | {"nodeSelector": {}})
    docs = documents(helm(kube_bin, "template", "wojak", str(CHART), "-f", str(values)).stdout)
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    [term] = pod["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    [expression] = term["preference"]["matchExpressions"]
    for cloud in labels:  # every cloud's spot pool carries the label the chart prefers
        assert cloud[expression["key"]] in expression["values"], cloud
    assert {"key": aks_taint["key"], "operator": "Equal", "value": aks_taint["value"], "effect": aks_taint["effect"]} in pod["tolerations"]
