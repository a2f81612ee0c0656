"""Risk files for tests: a file names every limit (``LIMIT_NAMES``), so a test states only the
limits it is about and the rest are written as unlimited with a reason."""

from __future__ import annotations

import json

from wojak.engine.risk._config import LIMIT_NAMES


def risk_config(limits: dict[str, str | int], rest: str = "") -> str:
    """YAML: ``limits`` naming every limit (the given values; the others ``{value: null}``), then ``rest``."""
    unknown = set(limits) - set(LIMIT_NAMES)
    assert not unknown, f"not limits: {sorted(unknown)}"
    lines = ["limits:"]
    for name in LIMIT_NAMES:
        if name in limits:
            lines.append(f"  {name}: {json.dumps(limits[name])}")
        else:
            lines.append(f'  {name}: {{value: null, reason: "test"}}')
    return "\n".join(lines) + "\n" + rest
