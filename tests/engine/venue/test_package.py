"""`wojak sandbox package`: a deterministic zip whose handler imports and runs in isolation."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import wojak.engine
from wojak.engine.venue.package import HANDLER, PackageError, build_package, check_package, handler_files

SOURCE = Path(wojak.engine.__file__).resolve().parent.parent  # the engine's part of the wojak namespace

RUN_HANDLER = r"""
import json, sys
sys.path[:] = [sys.argv[1]] + [p for p in sys.path if "site-packages" not in p and "dist-packages" not in p]
module, _, name = sys.argv[2].rpartition(".")
handler = getattr(__import__(module, fromlist=[name]), name)
orders = [{"client_order_id": f"z{i}", "symbol": "S", "side": "buy", "quantity": "3", "order_type": "limit",
           "limit_price": "10", "time_in_force": "day"} for i in range(50)]
out = {"execute": handler({"action": "execute", "orders": orders}, None),
       "lookup": handler({"action": "lookup", "orders": orders[:1]}, None),
       "modules": sorted(m for m in sys.modules if m.split(".")[0] == "wojak"),
       "files": sorted({m.__file__ for m in list(sys.modules.values())
                        if m.__name__.split(".")[0] == "wojak" and getattr(m, "__file__", None)})}
print(json.dumps(out))
"""


def test_the_zip_holds_the_handler_and_runs_it_in_isolation(tmp_path):
    pkg = build_package(tmp_path / "dist" / "wojak-sandbox.zip")
    with zipfile.ZipFile(pkg.path) as zf:
        names = zf.namelist()
        assert zf.testzip() is None
    assert names == sorted(names) == list(pkg.files)
    assert "wojak/engine/venue/sandbox.py" in names and "wojak/engine/__init__.py" in names
    assert "wojak/__init__.py" not in names  # wojak is a namespace package, in the zip as installed
    assert all(n.startswith("wojak/") and n.endswith(".py") for n in names)
    # only what the handler needs: no store, service, sidecars, CLI
    assert not any(n.startswith(("wojak/sidecars/", "wojak/engine/store/")) or n in ("wojak/cli.py",
                   "wojak/engine/app.py", "wojak/engine/service.py") for n in names)  # fmt: skip
    assert pkg.size == pkg.path.stat().st_size
    assert pkg.sha256 == hashlib.sha256(pkg.path.read_bytes()).hexdigest()

    task = tmp_path / "task"
    with zipfile.ZipFile(pkg.path) as zf:
        zf.extractall(task)
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", RUN_HANDLER, str(task), HANDLER], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    statuses = [r["status"] for r in out["execute"]["reports"]]
    assert len(statuses) == 50 and set(statuses) == {"filled", "rejected"}
    assert out["lookup"]["reports"][0] == out["execute"]["reports"][0]  # stateless: the pure outcome
    assert out["files"] and all(f.startswith(str(task)) for f in out["files"]), "imported only from the zip"
    assert "wojak.engine.venue.sandbox" in out["modules"]


def test_the_zip_is_deterministic(tmp_path):
    a = build_package(tmp_path / "a.zip", check=False)
    b = build_package(tmp_path / "b" / "b.zip", check=False)
    assert a.path.read_bytes() == b.path.read_bytes() and a.sha256 == b.sha256
    with zipfile.ZipFile(a.path) as zf:
        for info in zf.infolist():
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.external_attr >> 16 == 0o100644
            assert info.compress_type == zipfile.ZIP_STORED


def test_a_third_party_import_in_the_handler_path_fails_the_build(tmp_path):
    source = tmp_path / "src" / "wojak"
    shutil.copytree(SOURCE, source, ignore=shutil.ignore_patterns("__pycache__"))
    init = source / "engine" / "venue" / "__init__.py"
    init.write_text("import pydantic  # a third-party dependency at import time\n" + init.read_text())
    with pytest.raises(PackageError, match="pydantic"):
        handler_files(source)
    with pytest.raises(PackageError):
        build_package(tmp_path / "bad.zip", source=source)
    assert not (tmp_path / "bad.zip").exists()


def test_check_package_rejects_a_zip_without_the_handler(tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("wojak/__init__.py", "")
    with pytest.raises(PackageError):
        check_package(bad)


def test_cli_prints_path_size_and_sha256(tmp_path):
    out = tmp_path / "dist" / "wojak-sandbox.zip"
    proc = subprocess.run([sys.executable, "-m", "wojak", "sandbox", "package", "--output", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    assert str(out) in proc.stdout and f"{len(data)} bytes" in proc.stdout
    assert hashlib.sha256(data).hexdigest() in proc.stdout
