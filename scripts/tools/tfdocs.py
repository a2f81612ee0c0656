#!/usr/bin/env python3
"""Generate terraform-docs style input/output tables into README.md files.

A small stand-in for terraform-docs (a Go binary this build environment cannot
download): it parses each Terraform directory with python-hcl2 and writes the
Requirements, Providers, Modules, Resources, Inputs and Outputs tables between
``<!-- BEGIN_TF_DOCS -->`` and ``<!-- END_TF_DOCS -->`` in that directory's
README.md.

Usage::

    python scripts/tools/tfdocs.py            # rewrite every README under terraform/
    python scripts/tools/tfdocs.py --check    # exit 1 if any README is stale
    python scripts/tools/tfdocs.py DIR...     # only these directories
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import hcl2
from hcl2 import SerializationOptions

BEGIN = "<!-- BEGIN_TF_DOCS -->"
END = "<!-- END_TF_DOCS -->"
REPO_ROOT = Path(__file__).resolve().parents[2]
TERRAFORM_ROOT = REPO_ROOT / "terraform"

_OPTIONS = SerializationOptions(strip_string_quotes=True, with_comments=False)


def parse_file(path: Path) -> dict:
    """Parse one .tf file into python-hcl2's dict form, string quotes stripped."""
    with path.open(encoding="utf-8") as handle:
        return hcl2.load(handle, serialization_options=_OPTIONS)


def parse_dir(directory: Path) -> dict[str, list]:
    """Merge the top-level blocks of every .tf file of one directory."""
    merged: dict[str, list] = {}
    for path in sorted(directory.glob("*.tf")):
        for key, blocks in parse_file(path).items():
            merged.setdefault(key, []).extend(blocks if isinstance(blocks, list) else [blocks])
    return merged


def terraform_dirs(root: Path = TERRAFORM_ROOT) -> list[Path]:
    """Every module and environment root (a directory holding .tf files)."""
    return sorted({p.parent for p in root.rglob("*.tf") if ".terraform" not in p.parts})


def _expr(value) -> str:
    """Render an hcl2 value as HCL-ish text for a table cell."""
    if isinstance(value, str):
        if value.startswith("${") and value.endswith("}"):
            return value[2:-1]
        return value
    return json.dumps(_clean(value), sort_keys=True)


def _clean(value):
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _default(value) -> str:
    if value is None:
        return "`null`"
    if isinstance(value, str) and not value.startswith("${"):
        return f'`"{value}"`'
    return f"`{_expr(value)}`"


def _cell(text: str) -> str:
    text = " ".join(str(text).split())
    return text.replace("|", "\\|")


def _blocks(parsed: dict, kind: str) -> list[tuple[str, dict]]:
    out = []
    for block in parsed.get(kind, []):
        for name, body in block.items():
            if not name.startswith("__"):
                out.append((name, body))
    return out


def _requirements(parsed: dict) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    reqs: list[tuple[str, str]] = []
    providers: list[tuple[str, str]] = []
    for block in parsed.get("terraform", []):
        if "required_version" in block:
            reqs.append(("terraform", block["required_version"]))
        for rp in block.get("required_providers", []):
            for name, spec in rp.items():
                if name.startswith("__"):
                    continue
                version = spec.get("version", "n/a") if isinstance(spec, dict) else spec
                reqs.append((name, version))
                providers.append((name, spec.get("source", "") if isinstance(spec, dict) else ""))
    return reqs, providers


def render(directory: Path) -> str:
    """The generated markdown for one directory (without the markers)."""
    parsed = parse_dir(directory)
    reqs, providers = _requirements(parsed)
    lines: list[str] = []

    lines += ["## Requirements", "", "| Name | Version |", "|------|---------|"]
    lines += [f"| {n} | {_cell(v)} |" for n, v in reqs]

    lines += ["", "## Providers", "", "| Name | Source |", "|------|--------|"]
    lines += [f"| {n} | {_cell(s)} |" for n, s in providers]

    modules = _blocks(parsed, "module")
    lines += ["", "## Modules", ""]
    if modules:
        lines += ["| Name | Source |", "|------|--------|"]
        lines += [f"| {n} | {_cell(b.get('source', ''))} |" for n, b in sorted(modules)]
    else:
        lines.append("No modules.")

    resources = []
    for kind, label in (("resource", "resource"), ("data", "data source")):
        for block in parsed.get(kind, []):
            for rtype, named in block.items():
                if rtype.startswith("__"):
                    continue
                for rname in named:
                    if not rname.startswith("__"):
                        resources.append((f"{rtype}.{rname}", label))
    lines += ["", "## Resources", ""]
    if resources:
        lines += ["| Name | Type |", "|------|------|"]
        lines += [f"| {n} | {t} |" for n, t in sorted(resources)]
    else:
        lines.append("No resources.")

    variables = sorted(_blocks(parsed, "variable"))
    lines += ["", "## Inputs", ""]
    if variables:
        lines += [
            "| Name | Description | Type | Default | Required |",
            "|------|-------------|------|---------|:--------:|",
        ]
        for name, body in variables:
            required = "default" not in body
            default = "n/a" if required else _default(body["default"])
            vtype = _expr(body.get("type", "any"))
            lines.append(
                f"| {name} | {_cell(body.get('description', ''))} | `{_cell(vtype)}` "
                f"| {_cell(default)} | {'yes' if required else 'no'} |"
            )
    else:
        lines.append("No inputs.")

    outputs = sorted(_blocks(parsed, "output"))
    lines += ["", "## Outputs", ""]
    if outputs:
        lines += ["| Name | Description |", "|------|-------------|"]
        lines += [f"| {n} | {_cell(b.get('description', ''))} |" for n, b in outputs]
    else:
        lines.append("No outputs.")

    return "\n".join(lines) + "\n"


def inject(readme_text: str, generated: str) -> str:
    """Replace what is between the markers (append the block if absent)."""
    block = f"{BEGIN}\n{generated}{END}"
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.DOTALL)
    if pattern.search(readme_text):
        return pattern.sub(lambda _m: block, readme_text, count=1)
    sep = "" if readme_text.endswith("\n") or not readme_text else "\n"
    return f"{readme_text}{sep}\n{block}\n"


def update(directory: Path, check: bool) -> bool:
    """Update (or, with check, just compare) one README. True if up to date."""
    readme = directory / "README.md"
    current = readme.read_text(encoding="utf-8") if readme.exists() else ""
    wanted = inject(current, render(directory))
    if wanted == current:
        return True
    if not check:
        readme.write_text(wanted, encoding="utf-8")
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*", type=Path, help="Terraform directories (default: all)")
    parser.add_argument("--check", action="store_true", help="fail instead of rewriting stale docs")
    args = parser.parse_args(argv)

    dirs = [d.resolve() for d in args.dirs] or terraform_dirs()
    stale = [d for d in dirs if not update(d, args.check)]
    for d in stale:
        verb = "stale" if args.check else "updated"
        print(f"{verb}: {d.relative_to(REPO_ROOT) if d.is_relative_to(REPO_ROOT) else d}/README.md")
    if args.check and stale:
        print("run: python scripts/tools/tfdocs.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
