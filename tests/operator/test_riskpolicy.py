"""The RiskPolicy operator (wojak.engine.riskpolicy): the CRD from the chart installs on a real API
server; the operator (kopf, against that API server) turns a policy into the ConfigMap the engines
read and marks it Accepted; a policy the engine's validator refuses is Rejected with the
validator's reason and the ConfigMap keeps the last accepted file; HALTED reaches the ConfigMap."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests._kube import CHART, Kube, helm
from wojak.engine.risk import demo_risk_config_path, parse_risk_config
from wojak.engine.riskpolicy import PolicyRejected, render_policy

# -- the rendering, without a cluster ------------------------------------------------------------


def demo_spec() -> dict[str, Any]:
    """The demo risk file as a RiskPolicy spec: every limit a quoted string, as the CRD types them."""
    spec = yaml.safe_load(Path(demo_risk_config_path()).read_text())
    spec["limits"] = {k: str(v) for k, v in spec["limits"].items()}
    for instrument in spec["instruments"].values():
        instrument["limits"] = {k: str(v) for k, v in instrument.get("limits", {}).items()}
    return spec


def test_a_policy_renders_to_the_risk_file_the_engine_loads():
    rendered = render_policy("trading", "desk", demo_spec())
    config = parse_risk_config(rendered.text, "rendered")
    assert str(config.limits.max_order_quantity) == "1800"
    assert config.limits.max_orders_per_second == 500
    assert config.instruments["ES-FUT"].limits.max_position is not None
    assert len(rendered.sha256) == 64


def test_an_unlimited_limit_needs_and_keeps_its_reason():
    spec = demo_spec()
    del spec["limits"]["max_daily_loss"]
    spec["unlimited"] = {"max_daily_loss": "the desk runs a separate loss monitor"}
    config = parse_risk_config(render_policy("trading", "desk", spec).text, "rendered")
    assert config.limits.max_daily_loss is None
    assert config.unlimited == {"max_daily_loss": "the desk runs a separate loss monitor"}
    spec["limits"]["max_daily_loss"] = "100"
    with pytest.raises(PolicyRejected, match="limits.max_daily_loss is both set and listed under unlimited"):
        render_policy("trading", "desk", spec)


def test_a_policy_missing_a_limit_is_rejected_with_the_validators_reason():
    spec = demo_spec()
    del spec["limits"]["max_position"]
    with pytest.raises(PolicyRejected, match=r"RiskPolicy trading/desk: limits: missing max_position: name each"):
        render_policy("trading", "desk", spec)


def test_a_policy_naming_another_file_is_rejected():
    spec = demo_spec()
    spec["instruments_file"] = "instruments.csv"
    with pytest.raises(PolicyRejected, match="instruments_file: give the instruments inline"):
        render_policy("trading", "desk", spec)


# -- against the API server ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crd(kube: Kube):
    rendered = helm(kube.bin, "template", "wojak", str(CHART), "--show-only", "templates/operator-crd.yaml",
                    "--set", "operator.enabled=true", "--set", "risk.existingConfigMap=x", "--set", "source.http.apiKeysSecret=x").stdout  # fmt: skip
    kube.kubectl("apply", "--server-side", "-f", "-", input=rendered)
    kube.kubectl("wait", "--for=condition=Established", "crd/riskpolicies.wojak.io", "--timeout=60s")
    yield
    # a chart release installs its own copy: leave none behind for it to collide with
    kube.kubectl("delete", "crd", "riskpolicies.wojak.io", "--wait=true", "--timeout=60s")


@pytest.fixture
def operator(kube: Kube, crd, tmp_path):
    """The operator as `wojak-operator` runs it (its handlers, standalone, one namespace), in-process."""
    from kopf.testing import KopfRunner

    namespace = kube.namespace("wojak-riskpolicy")
    runner = KopfRunner(["run", "--standalone", "--namespace", namespace, "-m", "wojak.engine.riskpolicy._handlers"], timeout=60)
    with runner:
        yield namespace
    kube.kubectl("delete", "namespace", namespace, "--wait=false")
    assert runner.exception is None, runner.exception
    assert runner.exit_code == 0, runner.output[-3000:]


def apply_policy(kube: Kube, namespace: str, name: str, spec: dict[str, Any]) -> None:
    body = {"apiVersion": "wojak.io/v1alpha1", "kind": "RiskPolicy", "metadata": {"name": name, "namespace": namespace}, "spec": spec}
    kube.kubectl("apply", "--server-side", "--force-conflicts", "--validate=strict", "-f", "-", input=json.dumps(body))


def wait_status(kube: Kube, namespace: str, name: str, phase: str, generation: int | None = None, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        policy = kube.json("get", "riskpolicy", name, "-n", namespace)
        status = policy.get("status", {})
        done = status.get("phase") == phase and status.get("observedGeneration") == policy["metadata"]["generation"]
        if done and (generation is None or policy["metadata"]["generation"] >= generation):
            return policy
        assert time.monotonic() < deadline, f"RiskPolicy {name} never reached {phase}: {json.dumps(status)[:2000]}"
        time.sleep(0.3)


def config_map_text(kube: Kube, namespace: str, name: str) -> str:
    return kube.json("get", "configmap", name, "-n", namespace)["data"]["risk.yaml"]


def condition(policy: dict, kind: str) -> dict:
    return next(c for c in policy["status"]["conditions"] if c["type"] == kind)




@pytest.mark.slow
def test_the_crd_refuses_a_float_limit_and_an_unknown_action(kube, crd):
    namespace = kube.namespace("wojak-crd")
    spec = demo_spec()
    spec["limits"]["max_order_quantity"] = 1800.5
    body = {"apiVersion": "wojak.io/v1alpha1", "kind": "RiskPolicy", "metadata": {"name": "floaty", "namespace": namespace}, "spec": spec}
    result = kube.kubectl("apply", "-f", "-", input=json.dumps(body), check=False)
    assert result.returncode != 0 and "spec.limits.max_order_quantity" in result.stderr and "string" in result.stderr, result.stderr
    spec = demo_spec()
    spec["rules"]["max_position"] = "ignore"
    body["spec"] = spec
    result = kube.kubectl("apply", "-f", "-", input=json.dumps(body), check=False)
    assert result.returncode != 0 and "spec.rules.max_position" in result.stderr and "escalate" in result.stderr, result.stderr
    kube.kubectl("delete", "namespace", namespace, "--wait=false")


@pytest.mark.slow
def test_a_policy_becomes_the_configmap_and_a_refused_change_leaves_it_as_it_was(kube, operator):
    namespace = operator
    apply_policy(kube, namespace, "desk", demo_spec())
    policy = wait_status(kube, namespace, "desk", "Accepted")
    assert condition(policy, "Accepted")["status"] == "True" and condition(policy, "Rejected")["status"] == "False"
    assert policy["status"]["configMap"] == "desk-risk"
    accepted = config_map_text(kube, namespace, "desk-risk")
    assert parse_risk_config(accepted, "configmap").limits.max_order_quantity is not None
    cm = kube.json("get", "configmap", "desk-risk", "-n", namespace)
    assert cm["metadata"]["ownerReferences"][0]["kind"] == "RiskPolicy"

    # a change the engine's validator refuses: Rejected with its reason, the ConfigMap untouched
    bad = demo_spec()
    bad["exchange_timezone"] = "Mars/Olympus_Mons"
    apply_policy(kube, namespace, "desk", bad)
    policy = wait_status(kube, namespace, "desk", "Rejected", generation=2)
    rejected = condition(policy, "Rejected")
    assert rejected["status"] == "True" and rejected["reason"] == "ValidationFailed"
    assert "exchange_timezone: unknown time zone 'Mars/Olympus_Mons'" in rejected["message"], rejected
    assert condition(policy, "Accepted")["status"] == "False"
    assert config_map_text(kube, namespace, "desk-risk") == accepted

    # a missing limit: the validator names it
    bad = demo_spec()
    del bad["limits"]["max_daily_loss"]
    apply_policy(kube, namespace, "desk", bad)
    policy = wait_status(kube, namespace, "desk", "Rejected", generation=3)
    assert "limits: missing max_daily_loss" in condition(policy, "Rejected")["message"]
    assert config_map_text(kube, namespace, "desk-risk") == accepted

    # the kill switch: HALTED reaches the ConfigMap every engine of the release reads
    halted = demo_spec()
    halted["trading_state"] = "HALTED"
    apply_policy(kube, namespace, "desk", halted)
    wait_status(kube, namespace, "desk", "Accepted", generation=4)
    text = config_map_text(kube, namespace, "desk-risk")
    assert parse_risk_config(text, "configmap").trading_state.value == "HALTED"


@pytest.mark.slow
def test_a_policy_never_overwrites_a_configmap_it_does_not_own(kube, operator):
    namespace = operator
    kube.kubectl("create", "configmap", "chart-risk", "-n", namespace, "--from-literal=risk.yaml=kept: true")
    spec = copy.deepcopy(demo_spec())
    spec["config_map"] = "chart-risk"
    apply_policy(kube, namespace, "intruder", spec)
    policy = wait_status(kube, namespace, "intruder", "Rejected")
    assert condition(policy, "Rejected")["reason"] == "ConfigMapNotOwned"
    assert config_map_text(kube, namespace, "chart-risk") == "kept: true"
