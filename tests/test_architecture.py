"""The layers of DESIGN.md, enforced: sidecars see only the protocol; the engine sees no broker SDK."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_hold():
    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    result = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_broker_sdks_are_imported_only_inside_their_sidecar_package():
    sdks = {"aio_pika": "rabbitmq", "aiokafka": "kafka", "boto3": None, "google.cloud": "pubsub"}
    for path in [*(ROOT / "engine" / "wojak").rglob("*.py"), *(ROOT / "sidecars" / "wojak").rglob("*.py")]:
        text = path.read_text()
        for sdk, home in sdks.items():
            if f"import {sdk}" in text or f"from {sdk}" in text:
                rel = path.relative_to(ROOT).as_posix().split("/", 2)[2]  # engine/wojak/X -> X
                allowed = rel.startswith("sidecars/") and home is not None and f"/{home}/" in f"/{rel}"
                allowed |= sdk == "boto3" and (rel.startswith("sidecars/") or rel.startswith("engine/venue/") or rel.startswith("engine/risk/"))
                assert allowed, f"{rel} imports {sdk}"
