"""Shared helpers for the Terraform static checks.

Nothing here reaches the network: the Terraform code is parsed with
python-hcl2, formatted with the local terraform binary (no providers needed)
and scanned with checkov from its own cached virtualenv.
"""

from __future__ import annotations

import os
import shutil
import sys
from functools import lru_cache
from pathlib import Path

import hcl2
import pytest
from hcl2 import SerializationOptions

REPO_ROOT = Path(__file__).resolve().parents[2]
TERRAFORM_ROOT = REPO_ROOT / "terraform"
MODULES_ROOT = TERRAFORM_ROOT / "modules"
ENVIRONMENTS_ROOT = TERRAFORM_ROOT / "environments"
TOOLS = REPO_ROOT / "scripts" / "tools"

ENVIRONMENTS = ("aws", "gcp", "azure", "multi-cloud")
MODULES = (
    "aws-eks-spot",
    "aws-wojak-services",
    "gcp-gke-spot",
    "gcp-wojak-pubsub",
    "azure-aks-spot",
    "couchbase",
    "wojak-release",
    "aws-stack",
    "gcp-stack",
    "xdcr-topology",
)

OPTIONS = SerializationOptions(strip_string_quotes=True, with_comments=True)

sys.path.insert(0, str(TOOLS))


@lru_cache(maxsize=None)
def parse_file(path: Path) -> dict:
    with path.open(encoding="utf-8") as handle:
        return hcl2.load(handle, serialization_options=OPTIONS)


def parse_dir(directory: Path) -> dict[str, list]:
    merged: dict[str, list] = {}
    for path in sorted(directory.glob("*.tf")):
        for key, blocks in parse_file(path).items():
            merged.setdefault(key, []).extend(blocks)
    return merged


def terraform_dirs() -> list[Path]:
    return sorted({p.parent for p in TERRAFORM_ROOT.rglob("*.tf") if ".terraform" not in p.parts})


def named_blocks(parsed: dict, kind: str) -> list[tuple[str, dict]]:
    """[(name, body)] of variable/output/module blocks."""
    out = []
    for block in parsed.get(kind, []):
        out += [(n, b) for n, b in block.items() if not n.startswith("__")]
    return out


def resources(parsed: dict, rtype: str, kind: str = "resource") -> list[tuple[str, dict]]:
    """[(name, body)] of every resource (or data source) of one type."""
    out = []
    for block in parsed.get(kind, []):
        for name, body in block.get(rtype, {}).items():
            if not name.startswith("__"):
                out.append((name, body))
    return out


def all_resources(kind: str = "resource") -> list[tuple[Path, str, str, dict]]:
    """(dir, type, name, body) of every resource in the tree."""
    out = []
    for directory in terraform_dirs():
        for block in parse_dir(directory).get(kind, []):
            for rtype, named in block.items():
                if rtype.startswith("__"):
                    continue
                for name, body in named.items():
                    if not name.startswith("__"):
                        out.append((directory, rtype, name, body))
    return out


def first(body: dict, key: str) -> dict:
    """The first nested block `key` of a block body (hcl2 keeps blocks as lists)."""
    value = body.get(key)
    assert value, f"missing block {key!r}"
    return value[0] if isinstance(value, list) else value


def terraform_binary() -> str:
    """Locate terraform: $TERRAFORM, then PATH, then the usual install path."""
    candidates = [os.environ.get("TERRAFORM"), shutil.which("terraform"), "/usr/local/bin/terraform"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        "terraform binary not found (set $TERRAFORM or put terraform on PATH); "
        "the fmt check must not be skipped"
    )
    raise AssertionError  # unreachable
