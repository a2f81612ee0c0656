"""Build the sandbox broker's AWS Lambda deployment package (``wojak sandbox package``).

The zip holds exactly the ``wojak`` modules that ``wojak.engine.venue.sandbox`` imports
(found by importing it in an isolated interpreter that sees only the standard library
and a copy of the ``wojak`` sources), so the Lambda needs no third-party layer. Handler:
``wojak.engine.venue.sandbox.handler`` (as terraform/modules/aws-wojak-services expects).

The zip is deterministic: sorted entries, fixed timestamps and permissions, stored (not
deflated, so the bytes do not depend on the zlib version). The same sources give the same
bytes, so Terraform's ``source_code_hash`` changes only when the code does. After writing
it, the package is unzipped into a temporary directory and the handler is imported and run
there with ``python -I -S`` and ``sys.path`` = that directory only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from wojak.errors import WojakError

HANDLER_MODULE = "wojak.engine.venue.sandbox"
HANDLER = f"{HANDLER_MODULE}.handler"
DEFAULT_OUTPUT = Path("dist") / "wojak-sandbox.zip"
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold

# Runs in `python -I -S`: no site-packages, no PYTHONPATH, no user site; argv[1] is the
# only extra path. Prints the wojak modules the handler module pulled in.
_DISCOVER = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import importlib
module = importlib.import_module(sys.argv[2])
assert callable(getattr(module, "handler", None)), "no handler"
root = sys.argv[1]
files = sorted(m.__file__[len(root) + 1:] for name, m in list(sys.modules.items())
               if (name == "wojak" or name.startswith("wojak.")) and getattr(m, "__file__", None))
print(json.dumps(files))
"""

# Runs in `python -I -S` with only the unzipped package on sys.path: the handler answers.
_SMOKE = r"""
import json, os, sys
sys.path[:0] = [sys.argv[1]]
os.environ.pop("WOJAK_SANDBOX_LEDGER", None)
from wojak.engine.venue.sandbox import handler
order = {"client_order_id": "package-check", "symbol": "S", "side": "buy", "quantity": "1",
         "order_type": "limit", "limit_price": "1", "time_in_force": "day"}
answer = handler({"action": "execute", "orders": [order]}, None)
assert answer["reports"][0]["status"] in ("filled", "rejected", "partially_filled", "accepted"), answer
bad = sorted(m.__file__ for m in list(sys.modules.values())
             if getattr(m, "__file__", None) and m.__name__.split(".")[0] == "wojak"
             and not m.__file__.startswith(sys.argv[1]))
assert not bad, f"imported from outside the package: {bad}"
print(json.dumps(answer))
"""


class PackageError(WojakError, RuntimeError):
    """The package could not be built or does not work in isolation."""


@dataclass(frozen=True)
class Package:
    path: Path
    size: int
    sha256: str  # hex
    files: tuple[str, ...]

    @property
    def sha256_base64(self) -> str:
        """What Terraform's ``filebase64sha256(path)`` gives (``source_code_hash``)."""
        return base64.b64encode(bytes.fromhex(self.sha256)).decode()


def _wojak_root() -> Path:
    """The engine's ``wojak/`` directory (``wojak`` is a namespace: the engine's part of it)."""
    import wojak.engine

    return Path(wojak.engine.__file__).resolve().parent.parent


def _isolated(script: str, *args: str, cwd: str) -> str:
    env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", script, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        raise PackageError(f"{HANDLER_MODULE} does not import with only the standard library and wojak:\n{proc.stderr[-2000:]}")
    return proc.stdout


def handler_files(source: Path | None = None) -> list[str]:
    """Paths (relative to the directory holding ``wojak/``) of the modules the handler imports."""
    source = Path(source) if source is not None else _wojak_root()
    with tempfile.TemporaryDirectory(prefix="wojak-package-") as tmp:
        stage = Path(tmp) / "src"
        shutil.copytree(source, stage / "wojak", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        out = _isolated(_DISCOVER, str(stage), HANDLER_MODULE, cwd=tmp)
    files = json.loads(out.strip().splitlines()[-1])
    if not files or any(not f.startswith("wojak/") or not f.endswith(".py") for f in files):
        raise PackageError(f"unexpected module files for {HANDLER_MODULE}: {files}")
    return files


def write_zip(output: Path, root: Path, files: list[str]) -> None:
    """Write ``files`` (relative to ``root``) into a deterministic zip at ``output`` (atomically)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for name in sorted(set(files)):
                info = zipfile.ZipInfo(name, date_time=_EPOCH)
                info.external_attr = (0o100644 & 0xFFFF) << 16  # a regular file, rw-r--r--
                info.create_system = 3  # unix, whatever the building machine is
                info.compress_type = zipfile.ZIP_STORED
                zf.writestr(info, (root / name).read_bytes())
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)


def check_package(path: Path) -> dict:
    """Unzip into a temporary directory and run the handler there in isolation."""
    with tempfile.TemporaryDirectory(prefix="wojak-package-check-") as tmp:
        target = Path(tmp) / "task"
        with zipfile.ZipFile(path) as zf:
            zf.extractall(target)
        out = _isolated(_SMOKE, str(target), cwd=tmp)
    return json.loads(out.strip().splitlines()[-1])


def build_package(output: Path | str = DEFAULT_OUTPUT, source: Path | None = None, check: bool = True) -> Package:
    """Build (and by default check) the sandbox Lambda zip; returns its path, size and sha256."""
    output = Path(output)
    source = Path(source) if source is not None else _wojak_root()
    files = handler_files(source)
    write_zip(output, source.parent, files)
    if check:
        check_package(output)
    data = output.read_bytes()
    return Package(output, len(data), hashlib.sha256(data).hexdigest(), tuple(files))
