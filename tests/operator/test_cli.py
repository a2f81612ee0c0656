"""`wojak-operator`: the installed command, and its refusal without a namespace to watch."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def operator_command() -> str:
    return shutil.which("wojak-operator") or str(Path(sys.executable).parent / "wojak-operator")


def test_the_operator_command_is_installed_and_describes_itself():
    result = subprocess.run([operator_command(), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "RiskPolicy" in result.stdout and "--namespace" in result.stdout and "--all-namespaces" in result.stdout


def test_the_operator_refuses_to_start_without_knowing_where_to_watch():
    result = subprocess.run([operator_command()], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "one of the arguments -n/--namespace -A/--all-namespaces is required" in result.stderr
