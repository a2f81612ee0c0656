"""The RiskPolicy operator: ``RiskPolicy`` resources (the engine's risk file, key for key) become
the ConfigMaps the engines read and hot-reload.

A policy is checked with the engine's own validator (``wojak.engine.risk.parse_risk_config``)
before anything is written: an accepted policy replaces its ConfigMap and is marked
``Accepted``; a refused one is marked ``Rejected`` with the validator's reason and its ConfigMap
keeps the last accepted file, so the engines keep the limits in force. ``trading_state: HALTED``
on a policy reaches every engine that reads its ConfigMap (the kill switch).

``wojak-operator`` (the ``operator`` extra: kopf, kubernetes) runs it; ``render_policy`` is the
pure part, usable without a cluster.
"""

from wojak.engine.riskpolicy._render import GROUP, PLURAL, VERSION, PolicyRejected, RenderedPolicy, config_map_name, render_policy

__all__ = ["GROUP", "PLURAL", "VERSION", "PolicyRejected", "RenderedPolicy", "config_map_name", "render_policy"]
