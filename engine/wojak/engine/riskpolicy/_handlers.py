"""The kopf handlers: every create, update and resume of a RiskPolicy renders, validates and
writes its ConfigMap, and reports the outcome in the policy's status conditions."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import kopf
import kubernetes

from wojak.engine.riskpolicy._render import GROUP, PLURAL, RISK_KEY, VERSION, PolicyRejected, config_map_name, render_policy

log = logging.getLogger(__name__)

POLICY_LABEL = "wojak.io/risk-policy"  # on the ConfigMaps the operator owns: the policy's name
SHA_ANNOTATION = "wojak.io/risk-sha256"


@kopf.on.startup()
def _configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # keep kopf's bookkeeping in annotations, out of the policy's status (conditions only there)
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.level = logging.INFO
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _conditions(accepted: bool, reason: str, message: str, generation: int | None) -> list[dict[str, Any]]:
    now = _now()
    return [
        {
            "type": "Accepted",
            "status": "True" if accepted else "False",
            "reason": reason,
            "message": message,
            "lastTransitionTime": now,
            "observedGeneration": generation,
        },
        {
            "type": "Rejected",
            "status": "False" if accepted else "True",
            "reason": reason,
            "message": message,
            "lastTransitionTime": now,
            "observedGeneration": generation,
        },
    ]


class _NotOurs(Exception):
    pass


def _config_map(
    namespace: str, name: str, owner: dict[str, Any], text: str, sha256: str, resource_version: str | None = None
) -> kubernetes.client.V1ConfigMap:
    policy = owner["metadata"]["name"]
    return kubernetes.client.V1ConfigMap(
        metadata=kubernetes.client.V1ObjectMeta(
            name=name,
            namespace=namespace,
            labels={POLICY_LABEL: policy, "app.kubernetes.io/managed-by": "wojak-operator"},
            annotations={SHA_ANNOTATION: sha256},
            resource_version=resource_version,  # a replace applies only over what was read
            owner_references=[
                kubernetes.client.V1OwnerReference(
                    api_version=f"{GROUP}/{VERSION}",
                    kind="RiskPolicy",
                    name=policy,
                    uid=owner["metadata"]["uid"],
                    controller=True,
                    block_owner_deletion=False,
                )
            ],
        ),
        data={RISK_KEY: text},
    )


def _write_config_map(namespace: str, name: str, owner: dict[str, Any], text: str, sha256: str) -> None:
    """Create or replace the ConfigMap; one that another party keeps (no label of this policy) is refused."""
    api = kubernetes.client.CoreV1Api()
    try:
        current = api.read_namespaced_config_map(name, namespace)
    except kubernetes.client.ApiException as exc:
        if exc.status != 404:
            raise
        api.create_namespaced_config_map(namespace, _config_map(namespace, name, owner, text, sha256))
        return
    current_meta = current.metadata or kubernetes.client.V1ObjectMeta()
    policy = owner["metadata"]["name"]
    if (current_meta.labels or {}).get(POLICY_LABEL) != policy:
        raise _NotOurs(f"ConfigMap {namespace}/{name} exists and is not this policy's (no {POLICY_LABEL}={policy} label)")
    body = _config_map(namespace, name, owner, text, sha256, current_meta.resource_version)
    api.replace_namespaced_config_map(name, namespace, body)


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def reconcile(
    spec: kopf.Spec, name: str, namespace: str | None, meta: kopf.Meta, body: kopf.Body, patch: kopf.Patch, **_: Any
) -> None:
    assert namespace is not None  # RiskPolicy is a namespaced resource
    generation = meta.get("generation")
    target = config_map_name(name, dict(spec))
    try:
        rendered = render_policy(namespace, name, dict(spec))
    except PolicyRejected as exc:
        # the ConfigMap keeps the last accepted file: the engines keep the limits in force
        log.warning("RiskPolicy %s/%s rejected, ConfigMap %s unchanged: %s", namespace, name, target, exc)
        patch.status["phase"] = "Rejected"
        patch.status["conditions"] = _conditions(False, "ValidationFailed", str(exc), generation)
        patch.status["observedGeneration"] = generation
        return
    try:
        _write_config_map(namespace, target, dict(body), rendered.text, rendered.sha256)
    except _NotOurs as exc:
        patch.status["phase"] = "Rejected"
        patch.status["conditions"] = _conditions(False, "ConfigMapNotOwned", str(exc), generation)
        patch.status["observedGeneration"] = generation
        return
    log.info("RiskPolicy %s/%s accepted: ConfigMap %s (sha256 %s)", namespace, name, target, rendered.sha256[:12])
    patch.status["phase"] = "Accepted"
    patch.status["configMap"] = target
    patch.status["sha256"] = rendered.sha256
    patch.status["observedGeneration"] = generation
    message = f"ConfigMap {target} written (sha256 {rendered.sha256[:12]})"
    patch.status["conditions"] = _conditions(True, "Valid", message, generation)
