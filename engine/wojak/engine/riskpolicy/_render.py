"""RiskPolicy spec -> the engine's risk file, validated by the engine's own loader."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import yaml

from wojak.engine.risk import RiskConfigError, parse_risk_config
from wojak.errors import ConfigError

GROUP = "wojak.io"
VERSION = "v1alpha1"
PLURAL = "riskpolicies"
RISK_KEY = "risk.yaml"  # the key the chart mounts as WOJAK_ENGINE_RISK_CONFIG

# spec keys that are the operator's own, not the risk file's
_OPERATOR_KEYS = ("config_map", "unlimited")


class PolicyRejected(ConfigError):
    """The policy is not a risk file the engine would load; the message is the validator's."""


@dataclass(frozen=True)
class RenderedPolicy:
    text: str  # the risk file
    sha256: str


def config_map_name(name: str, spec: dict[str, Any]) -> str:
    return str(spec.get("config_map") or f"{name}-risk")


def _risk_document(spec: dict[str, Any]) -> dict[str, Any]:
    doc = {k: v for k, v in spec.items() if k not in _OPERATOR_KEYS}
    unlimited = spec.get("unlimited") or {}
    if unlimited:
        limits = dict(doc.get("limits") or {})
        both = sorted(set(limits) & set(unlimited))
        if both:
            raise PolicyRejected(f"limits.{both[0]} is both set and listed under unlimited: choose one")
        for limit, reason in unlimited.items():
            limits[limit] = {"value": None, "reason": reason}
        doc["limits"] = limits
    return doc


def render_policy(namespace: str, name: str, spec: dict[str, Any]) -> RenderedPolicy:
    """The risk file for a policy, or ``PolicyRejected`` with the engine validator's reason."""
    doc = _risk_document(dict(spec or {}))
    body = yaml.safe_dump(doc, sort_keys=True, default_flow_style=False)
    text = f"# rendered by the wojak RiskPolicy operator from RiskPolicy {namespace}/{name}\n{body}"
    try:
        parse_risk_config(text, f"RiskPolicy {namespace}/{name}")
    except RiskConfigError as exc:
        raise PolicyRejected(str(exc)) from None
    return RenderedPolicy(text=text, sha256=hashlib.sha256(text.encode()).hexdigest())
