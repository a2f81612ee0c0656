"""The static checks, part of the suite: ruff (lint everywhere; the formatter over the product
code, engine/ and sidecars/) and mypy over the product code and the sidecar kit, all configured
in pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def tool(name: str) -> str:
    return shutil.which(name) or str(Path(sys.executable).parent / name)


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_lints_clean():
    result = run(tool("ruff"), "check", "--no-cache", "engine", "sidecars", "tests", "bench")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]


def test_the_product_code_is_as_the_formatter_writes_it():
    result = run(tool("ruff"), "format", "--check", "--no-cache", "engine", "sidecars")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]


def test_mypy_finds_no_type_errors():
    result = run(tool("mypy"), "--no-incremental")
    assert result.returncode == 0 and "Success" in result.stdout, result.stdout[-5000:] + result.stderr[-2000:]


def test_every_package_of_the_product_says_it_is_typed():
    for package in (ROOT / "engine/wojak/engine", ROOT / "sidecars/wojak/sidecars"):
        assert (package / "py.typed").exists(), package
