"""charts/wojak rendered offline: `helm lint` clean, every source type's manifests valid against
the Kubernetes 1.37 schemas (kubernetes-validate --strict), the values schema refusing what a user
misspells, the pod spec as the design has it (one engine + one source, the engine a native
sidecar, restricted securityContext everywhere) and the environment names the code really reads."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests._kube import CHART, helm
from tests.charts._values import SOURCE_TYPES, values_for, write_values

RELEASE = "wojak"


def render(kube_bin: Path, tmp_path: Path, values: dict[str, Any], *args: str, check: bool = True):
    path = write_values(tmp_path, values)
    return helm(kube_bin, "template", RELEASE, str(CHART), "--namespace", "trading", "-f", str(path), *args, check=check)


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def kubernetes_validate(path: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("kubernetes-validate") or str(Path(sys.executable).parent / "kubernetes-validate")
    return subprocess.run([exe, "--strict", "-k", "1.37.0", str(path)], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("source_type", SOURCE_TYPES)
def test_helm_lint_is_clean_in_strict_mode(kube_bin, tmp_path, source_type):
    path = write_values(tmp_path, values_for(source_type))
    result = helm(kube_bin, "lint", "--strict", str(CHART), "-f", str(path), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


@pytest.mark.parametrize("source_type", SOURCE_TYPES)
def test_every_source_type_renders_manifests_valid_for_kubernetes_1_37(kube_bin, tmp_path, source_type):
    values = values_for(source_type, operator={"enabled": True}, autoscaling={"hpa": {"enabled": True}})
    rendered = render(kube_bin, tmp_path, values).stdout
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(rendered)
    result = kubernetes_validate(manifest)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    docs = documents(rendered)
    kinds = sorted({d["kind"] for d in docs})
    expected = {"ConfigMap", "CustomResourceDefinition", "Deployment", "HorizontalPodAutoscaler", "NetworkPolicy",
                "PodDisruptionBudget", "Role", "RoleBinding", "ServiceAccount"}  # fmt: skip
    assert expected <= set(kinds), kinds
    # a Service only for the HTTP intake
    assert bool(by_kind(docs, "Service")) == (source_type == "http"), kinds


@pytest.mark.parametrize("source_type", SOURCE_TYPES)
def test_the_pod_is_one_engine_as_a_native_sidecar_and_one_source_sharing_the_socket_volume(kube_bin, tmp_path, source_type):
    docs = documents(render(kube_bin, tmp_path, values_for(source_type)).stdout)
    [deployment] = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "wojak"]
    pod = deployment["spec"]["template"]["spec"]
    [engine] = pod["initContainers"]
    [source] = pod["containers"]
    assert engine["name"] == "engine" and engine["restartPolicy"] == "Always"
    assert engine["command"] == ["wojak-engine"]
    assert source["command"] == ["wojak-sidecar", source_type]
    assert source["image"].endswith(f"wojak-sidecar-{source_type}:0.1.0")
    socket_env = {c["name"]: {e["name"]: e.get("value") for e in c["env"]}["WOJAK_ENGINE_SOCKET"] for c in (engine, source)}
    # the engine's private subdirectory of the shared emptyDir
    assert set(socket_env.values()) == {"/run/wojak/engine/engine.sock"}
    for container in (engine, source):
        mount = next(m for m in container["volumeMounts"] if m["name"] == "socket")
        assert mount["mountPath"] == "/run/wojak"
    assert next(v for v in pod["volumes"] if v["name"] == "socket")["emptyDir"]
    # probes: the engine over its socket, the source on /healthz and /readyz
    assert engine["livenessProbe"]["exec"]["command"][:2] == ["wojak-engine", "ping"]
    assert engine["startupProbe"]["exec"]["command"][:2] == ["wojak-engine", "ping"]
    assert source["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert source["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # the grace period covers the drain
    drain = float({e["name"]: e.get("value") for e in source["env"]}.get("WOJAK_SIDECAR_DRAIN_SECONDS", 0) or 0)
    assert pod["terminationGracePeriodSeconds"] > drain + 10
    # the risk file is the mounted ConfigMap (a directory mount: ConfigMap updates reach it)
    risk_mount = next(m for m in engine["volumeMounts"] if m["name"] == "risk")
    assert "subPath" not in risk_mount
    assert {e["name"]: e.get("value") for e in engine["env"]}["WOJAK_ENGINE_RISK_CONFIG"] == risk_mount["mountPath"] + "/risk.yaml"


@pytest.mark.parametrize("source_type", SOURCE_TYPES)
def test_every_container_meets_the_restricted_pod_security_profile(kube_bin, tmp_path, source_type):
    values = values_for(source_type, operator={"enabled": True})
    docs = documents(render(kube_bin, tmp_path, values).stdout)
    docs += documents(render(kube_bin, tmp_path, values, "--show-only", "templates/tests/test-engine.yaml").stdout)
    pods = [d["spec"]["template"]["spec"] for d in by_kind(docs, "Deployment")] + [d["spec"] for d in by_kind(docs, "Pod")]
    assert len(pods) >= 3
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
        for container in pod.get("initContainers", []) + pod["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, container["name"]
            assert sc["readOnlyRootFilesystem"] is True, container["name"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0, container["name"]
            assert sc["capabilities"] == {"drop": ["ALL"]}, container["name"]
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, container["name"]
        for volume in pod.get("volumes", []):
            assert "hostPath" not in volume


def test_the_engine_renders_as_an_ordinary_container_for_runtimes_without_native_sidecars(kube_bin, tmp_path):
    values = values_for("rabbitmq", engine={"nativeSidecar": False})
    docs = documents(render(kube_bin, tmp_path, values).stdout)
    pod = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    assert [c["name"] for c in pod["containers"]] == ["engine", "source"]
    assert "restartPolicy" not in pod["containers"][0]


@pytest.mark.parametrize(("drain", "delay"), [(20, 25), (41.5, 47), (0, 5)])
def test_an_ordinary_container_engine_outlasts_the_source_drain_before_its_own_sigterm(kube_bin, tmp_path, drain, delay):
    """Both containers of a pod get SIGTERM at once; the engine's preStop waits out the source's
    drain (plus 5 s), so the messages in flight still get the engine's answer, and the engine
    still stops inside the grace period."""
    values = values_for("rabbitmq", engine={"nativeSidecar": False}, terminationGracePeriodSeconds=90)
    values["source"]["drainSeconds"] = drain
    pod = by_kind(documents(render(kube_bin, tmp_path, values).stdout), "Deployment")[0]["spec"]["template"]["spec"]
    engine, source = pod["containers"]
    env = {e["name"]: e.get("value") for e in source["env"]}
    assert float(env.get("WOJAK_SIDECAR_DRAIN_SECONDS", "20")) == drain
    command = engine["lifecycle"]["preStop"]["exec"]["command"]
    assert command == ["/opt/wojak/bin/python3", "-c", f"import time; time.sleep({delay})"]
    assert drain < delay < pod["terminationGracePeriodSeconds"]
    assert "lifecycle" not in source  # the source drains on SIGTERM at once
    # as a native sidecar the kubelet itself stops the engine after the source: no delay there
    values["engine"]["nativeSidecar"] = True
    pod = by_kind(documents(render(kube_bin, tmp_path, values).stdout), "Deployment")[0]["spec"]["template"]["spec"]
    assert "lifecycle" not in pod["initContainers"][0]


@pytest.mark.parametrize("source_type", [t for t in SOURCE_TYPES if t != "http"])
def test_a_broker_source_carries_orders_by_default_or_ticks_without_accounts(kube_bin, tmp_path, source_type):
    def source_env(values: dict[str, Any]) -> dict[str, Any]:
        pod = by_kind(documents(render(kube_bin, tmp_path, values).stdout), "Deployment")[0]["spec"]["template"]["spec"]
        return {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}

    orders = source_env(values_for(source_type))
    assert orders["WOJAK_SIDECAR_CARRIES"] == "orders" and orders["WOJAK_SIDECAR_ACCOUNTS"]
    values = values_for(source_type)
    values["source"]["carries"] = "ticks"
    del values["source"]["accounts"]
    ticks = source_env(values)
    assert ticks["WOJAK_SIDECAR_CARRIES"] == "ticks" and "WOJAK_SIDECAR_ACCOUNTS" not in ticks
    # the settings the sidecar builds from that environment: a ticks source with no account
    from wojak.sidecars._core.settings import BrokerSidecarSettings

    config = BrokerSidecarSettings.model_validate(ticks).runner_config(8)
    assert config.carries == "ticks" and config.accounts == ()
    assert BrokerSidecarSettings.model_validate(orders).runner_config(8).accounts == tuple(orders["WOJAK_SIDECAR_ACCOUNTS"].split(","))


def test_carries_is_refused_when_misspelt_with_accounts_on_a_ticks_source_or_on_the_http_source(kube_bin, tmp_path):
    values = values_for("kafka")
    values["source"]["carries"] = "tick"
    result = render(kube_bin, tmp_path, values, check=False)
    assert result.returncode != 0 and "carries" in result.stderr and "orders" in result.stderr, result.stderr
    values["source"]["carries"] = "ticks"  # with accounts still set
    result = render(kube_bin, tmp_path, values, check=False)
    assert result.returncode != 0 and "source.accounts: a source with carries: ticks trades no account" in result.stderr
    values = values_for("http")
    values["source"]["carries"] = "ticks"
    result = render(kube_bin, tmp_path, values, check=False)
    assert result.returncode != 0 and "carries: ticks is for a broker source" in result.stderr, result.stderr


def test_the_operator_runs_the_operator_image_not_the_engine_image(kube_bin, tmp_path):
    """The engine image holds no kopf (Dockerfile.engine's default lock): the operator Deployment
    runs the image built with LOCK=operator, with the release's tag unless its own is set."""
    docs = documents(render(kube_bin, tmp_path, values_for("http", operator={"enabled": True})).stdout)
    deployments = {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in by_kind(docs, "Deployment")}
    [operator] = deployments["wojak-operator"]["containers"]
    engine = deployments["wojak"]["initContainers"][0]
    assert operator["image"] == "ghcr.io/wojak/wojak-operator:0.1.0"
    assert engine["image"] == "ghcr.io/wojak/wojak-engine:0.1.0"
    assert operator["command"][0] == "wojak-operator"
    values = values_for("http", image={"tag": "1.2.3"}, operator={"enabled": True, "image": {"repository": "registry.example/op"}})
    docs = documents(render(kube_bin, tmp_path, values).stdout)
    [operator] = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "wojak-operator"][0]["spec"]["template"]["spec"]["containers"]
    assert operator["image"] == "registry.example/op:1.2.3"
    values["operator"]["image"] = {"repository": ""}
    result = render(kube_bin, tmp_path, values, check=False)
    assert result.returncode != 0 and "repository" in result.stderr, result.stderr


def _env_names(pod: dict[str, Any], container: str) -> set[str]:
    [c] = [c for c in pod.get("initContainers", []) + pod["containers"] if c["name"] == container]
    return {e["name"] for e in c["env"]}


def _settings_env_names(cls: Any) -> set[str]:
    prefix = cls.model_config.get("env_prefix", "")
    names = set()
    for field, info in cls.model_fields.items():
        alias = info.validation_alias
        names.add(alias if isinstance(alias, str) else f"{prefix}{field}".upper())
    return names


# The sidecar packages on this branch; kinesis (and pubsub) land from their own branches.
SETTINGS = {
    "http": ("wojak.sidecars.http.config", "HttpSidecarSettings"),
    "rabbitmq": ("wojak.sidecars.rabbitmq.config", "RabbitMQSidecarSettings"),
    "kafka": ("wojak.sidecars.kafka.config", "KafkaSidecarSettings"),
    "sqs": ("wojak.sidecars.sqs.config", "SqsSidecarSettings"),
    "sns": ("wojak.sidecars.sns.config", "SnsSidecarSettings"),
    "pubsub": ("wojak.sidecars.pubsub.config", "PubSubSidecarSettings"),
    "kinesis": ("wojak.sidecars.kinesis.config", "KinesisSidecarSettings"),
}
PRESENT = [t for t, (module, _) in SETTINGS.items() if importlib.util.find_spec(module.rsplit(".", 1)[0]) is not None]


@pytest.mark.parametrize("source_type", PRESENT)
def test_every_variable_the_source_container_gets_is_a_setting_its_sidecar_reads(kube_bin, tmp_path, source_type):
    module, name = SETTINGS[source_type]
    readable = _settings_env_names(getattr(importlib.import_module(module), name)) | {"WOJAK_LOG_LEVEL"}
    values = values_for(source_type)
    docs = documents(render(kube_bin, tmp_path, values).stdout)
    names = _env_names(by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"], "source")
    assert names - readable == set(), f"the {source_type} sidecar reads none of {sorted(names - readable)}"


def test_every_variable_the_engine_container_gets_is_one_the_engine_reads(kube_bin, tmp_path):
    from wojak.engine.app import EngineSettings

    engine_sources = "\n".join(p.read_text() for p in Path(importlib.import_module("wojak.engine").__file__).parent.rglob("*.py"))
    values = values_for("http", engine={"cluster": "eu-1", "storeCredentials": {"secretName": "cb"}, "allowInsecureTransport": True,
                                        "escalation": {"sink": "https://risk.example/hook", "webhookSecret": {"secretName": "hook"}}})  # fmt: skip
    docs = documents(render(kube_bin, tmp_path, values).stdout)
    names = _env_names(by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"], "engine")
    readable = _settings_env_names(EngineSettings) | {n for n in names if re.search(rf'["\']{n}["\']', engine_sources)}
    assert {"WOJAK_ENGINE_CLUSTER", "WOJAK_COUCHBASE_PASSWORD", "WOJAK_ESCALATION_WEBHOOK_SECRET"} <= names
    assert names - readable == set(), f"the engine reads none of {sorted(names - readable)}"


def test_large_and_fractional_numbers_reach_the_settings_as_plain_numbers(kube_bin, tmp_path):
    values = values_for("pubsub")
    values["source"]["pubsub"]["maxBytes"] = 134217728
    values["source"]["backoffBase"] = 0.5
    docs = documents(render(kube_bin, tmp_path, values).stdout)
    [source] = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in source["env"]}
    assert env["WOJAK_SIDECAR_PUBSUB_MAX_BYTES"] == "134217728"  # not 1.34217728e+08
    assert env["WOJAK_SIDECAR_BACKOFF_BASE"] == "0.5"
    assert env["WOJAK_SIDECAR_PUBSUB_SUBSCRIPTION"] == "orders"  # projects/P/subscriptions/ID -> ID


# -- refusals: what a user gets wrong is named, with the reason ---------------------------------


def test_a_misspelt_key_is_refused_naming_it(kube_bin, tmp_path):
    values = values_for("rabbitmq")
    values["source"]["rabbitmq"]["qeue"] = "orders"
    result = render(kube_bin, tmp_path, values, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr
    assert "/source/rabbitmq" in result.stderr and "'qeue' not allowed" in result.stderr, result.stderr


def test_a_misspelt_top_level_key_is_refused_naming_it(kube_bin, tmp_path):
    values = values_for("http", replicas=3)
    result = render(kube_bin, tmp_path, values, check=False)
    assert result.returncode != 0 and "'replicas' not allowed" in result.stderr, result.stderr


def test_an_unknown_source_type_is_refused_listing_the_seven(kube_bin, tmp_path):
    values = values_for("http")
    values["source"]["type"] = "nats"
    result = render(kube_bin, tmp_path, values, check=False)
    assert result.returncode != 0
    assert "/source/type" in result.stderr, result.stderr
    for known in SOURCE_TYPES:
        assert f"'{known}'" in result.stderr, result.stderr


def test_without_a_risk_config_the_chart_refuses_to_render(kube_bin, tmp_path):
    values = values_for("http")
    del values["risk"]
    result = render(kube_bin, tmp_path, values, check=False)
    assert result.returncode != 0
    assert "risk: set risk.config" in result.stderr and "never runs without limits" in result.stderr, result.stderr


def test_a_broker_source_without_accounts_is_refused_naming_the_value(kube_bin, tmp_path):
    values = values_for("sqs")
    del values["source"]["accounts"]
    result = render(kube_bin, tmp_path, values, check=False)
    assert result.returncode != 0 and "source.accounts" in result.stderr, result.stderr


def test_an_http_source_without_its_keys_secret_is_refused(kube_bin, tmp_path):
    values = values_for("http")
    values["source"]["http"] = {}
    result = render(kube_bin, tmp_path, values, check=False)
    assert result.returncode != 0 and "source.http.apiKeysSecret" in result.stderr, result.stderr


def test_a_grace_period_shorter_than_the_drain_is_refused(kube_bin, tmp_path):
    values = values_for("kafka", terminationGracePeriodSeconds=25)
    result = render(kube_bin, tmp_path, values, check=False)
    assert result.returncode != 0
    assert "terminationGracePeriodSeconds (25) must exceed source.drainSeconds (20)" in result.stderr, result.stderr


def test_a_credential_is_never_a_value(kube_bin, tmp_path):
    """Credentials reach the pod only as secretKeyRef: no literal env value looks like one."""
    for source_type in SOURCE_TYPES:
        values = values_for(source_type, engine={"storeCredentials": {"secretName": "cb"}})
        docs = documents(render(kube_bin, tmp_path, values).stdout)
        for container in by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"]:
            for env in container["env"]:
                if re.search(r"PASSWORD|SECRET|_URL$|API_KEYS$", env["name"]) and "QUEUE_URL" not in env["name"]:
                    assert "valueFrom" in env and "secretKeyRef" in env["valueFrom"], (source_type, env)


KEDA_TRIGGERS = {"http": "prometheus", "rabbitmq": "rabbitmq", "kafka": "kafka", "sqs": "aws-sqs-queue", "sns": "aws-sqs-queue",
                 "pubsub": "gcp-pubsub", "kinesis": "aws-kinesis-stream"}  # fmt: skip


@pytest.mark.parametrize("source_type", SOURCE_TYPES)
def test_keda_scales_each_source_on_its_own_backlog_and_replaces_the_fixed_replica_count(kube_bin, tmp_path, source_type):
    keda = {"keda": {"enabled": True, "prometheusServerAddress": "http://prometheus.monitoring:9090", "triggerAuthentication": "wojak"}}
    docs = documents(render(kube_bin, tmp_path, values_for(source_type, autoscaling=keda)).stdout)
    [scaled] = by_kind(docs, "ScaledObject")
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == KEDA_TRIGGERS[source_type]
    assert trigger["authenticationRef"] == {"name": "wojak"}
    assert all(isinstance(v, str) and v for v in trigger["metadata"].values()), trigger
    assert scaled["spec"]["scaleTargetRef"]["name"] == "wojak"
    assert "replicas" not in by_kind(docs, "Deployment")[0]["spec"]  # the autoscaler owns it
    assert not by_kind(docs, "HorizontalPodAutoscaler")


@pytest.mark.parametrize(("source_type", "kind"), [("http", "ServiceMonitor"), ("rabbitmq", "PodMonitor")])
def test_metrics_are_scraped_through_the_service_or_from_the_pods(kube_bin, tmp_path, source_type, kind):
    values = values_for(source_type, metrics={"serviceMonitor": {"enabled": True}})
    docs = documents(render(kube_bin, tmp_path, values).stdout)
    [monitor] = by_kind(docs, kind)
    endpoints = monitor["spec"].get("endpoints") or monitor["spec"]["podMetricsEndpoints"]
    assert endpoints[0]["path"] == "/metrics"
    [deployment] = by_kind(docs, "Deployment")
    ports = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert endpoints[0]["port"] in ports


def test_the_trading_helm_test_needs_an_explicit_symbol_and_price(kube_bin, tmp_path):
    """With a test key, `helm test` posts a tick and sends a real order: the chart never picks the
    instrument or the price for it (a default would price a real instrument at a made-up figure)."""
    for given in ({}, {"symbol": "TEST-FUT"}, {"price": "100"}, {"symbol": "TEST-FUT", "price": "a lot"}):
        values = values_for("http", tests={"http": {"apiKeySecret": "k", **given}})
        result = render(kube_bin, tmp_path, values, check=False)
        assert result.returncode != 0 and "/tests/http/" in result.stderr, (given, result.stderr)
    values = values_for("http", tests={"http": {"apiKeySecret": "k", "symbol": "TEST-FUT", "price": "100.5"}})
    docs = documents(render(kube_bin, tmp_path, values).stdout)
    [pod] = [d for d in by_kind(docs, "Pod") if d["metadata"]["name"].endswith("-test-http")]
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert (env["WOJAK_TEST_SYMBOL"], env["WOJAK_TEST_PRICE"]) == ("TEST-FUT", "100.5")
    assert render(kube_bin, tmp_path, values_for("http")).returncode == 0, "without a test key nothing is required"


def test_a_kinesis_source_publishes_results_only_to_the_stream_named(kube_bin, tmp_path, monkeypatch):
    from wojak.sidecars.kinesis.config import KinesisSidecarSettings

    def source_env(values: dict[str, Any]) -> dict[str, Any]:
        pod = by_kind(documents(render(kube_bin, tmp_path, values).stdout), "Deployment")[0]["spec"]["template"]["spec"]
        return {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}

    assert "WOJAK_SIDECAR_KINESIS_RESULTS_STREAM" not in source_env(values_for("kinesis")), "none by default"
    values = values_for("kinesis")
    values["source"]["kinesis"]["resultsStream"] = "desk-results"
    env = source_env(values)
    assert env["WOJAK_SIDECAR_KINESIS_RESULTS_STREAM"] == "desk-results"
    for name, value in env.items():  # the container's environment, as the sidecar reads it
        if name.startswith("WOJAK_SIDECAR_KINESIS_") and value is not None:
            monkeypatch.setenv(name, value)
    assert KinesisSidecarSettings().results_stream == "desk-results"
    values["source"]["kinesis"]["resultsStream"] = "not a stream name"
    result = render(kube_bin, tmp_path, values, check=False)
    assert result.returncode != 0 and "/source/kinesis/resultsStream" in result.stderr, result.stderr


@pytest.mark.parametrize("native", [True, False])
def test_extra_env_reaches_its_container_and_never_replaces_what_the_chart_sets(kube_bin, tmp_path, native):
    values = values_for("rabbitmq", engine={"nativeSidecar": native, "extraEnv": [{"name": "WOJAK_SANDBOX_LATENCY_MS", "value": "100"}]})
    values["source"]["extraEnv"] = [{"name": "WOJAK_SIDECAR_ENGINE_LINGER_MS", "value": "2"}]
    pod = by_kind(documents(render(kube_bin, tmp_path, values).stdout), "Deployment")[0]["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"] + pod.get("initContainers", [])}
    engine = {e["name"]: e.get("value") for e in containers["engine"]["env"]}
    source = {e["name"]: e.get("value") for e in containers["source"]["env"]}
    assert engine["WOJAK_SANDBOX_LATENCY_MS"] == "100" and "WOJAK_SANDBOX_LATENCY_MS" not in source
    assert source["WOJAK_SIDECAR_ENGINE_LINGER_MS"] == "2" and "WOJAK_SIDECAR_ENGINE_LINGER_MS" not in engine
    assert engine["WOJAK_ENGINE_RISK_CONFIG"] == "/etc/wojak/risk/risk.yaml", "the chart's own environment is still there"
    for where, name in (("engine", "WOJAK_STORE"), ("engine", "WOJAK_ENGINE_RISK_CONFIG"), ("source", "WOJAK_ENGINE_SOCKET")):
        bad = values_for("rabbitmq", engine={"nativeSidecar": native})
        bad[where]["extraEnv"] = [{"name": name, "value": "elsewhere"}]
        result = render(kube_bin, tmp_path, bad, check=False)
        assert result.returncode != 0 and f"{where}.extraEnv: {name} is set by the chart" in result.stderr, result.stderr
    for where, name in (("engine", "WOJAK_TEST_FAULTS"), ("engine", "WOJAK_ENGINE_CRASH_AT"), ("source", "WOJAK_TEST_ANYTHING")):
        bad = values_for("rabbitmq")
        bad.setdefault(where, {})["extraEnv"] = [{"name": name, "value": "1"}]  # fault injection armed in a deployment
        result = render(kube_bin, tmp_path, bad, check=False)
        assert result.returncode != 0 and f"{where}.extraEnv: {name} is a test-only switch" in result.stderr, result.stderr
    bad = values_for("rabbitmq", engine={"extraEnv": [{"name": "lower-case", "value": "x"}]})
    result = render(kube_bin, tmp_path, bad, check=False)
    assert result.returncode != 0 and "/engine/extraEnv/0/name" in result.stderr, result.stderr
    bad = values_for("rabbitmq")
    bad["source"]["extraEnv"] = [{"name": "WOJAK_SIDECAR_RABBITMQ_PREFETCH", "value": "16"}]  # source.rabbitmq.prefetch's
    result = render(kube_bin, tmp_path, bad, check=False)
    assert result.returncode != 0 and "WOJAK_SIDECAR_RABBITMQ_PREFETCH is set by the chart" in result.stderr, result.stderr
