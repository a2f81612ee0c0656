"""The architecture, enforced: sidecars import only the wire protocol of the engine; the engine
imports no sidecar, no HTTP stack and no broker SDK; brokers do not import each other; the
engine's layers point one way.

The contracts live in pyproject.toml and run here with ``lint-imports`` against the installed
(editable) tree. A contract that silently stopped running (a module import-linter cannot find,
a contract it skips) would pass forever, so these tests also count the contracts that ran and
show, one deliberately forbidden import at a time, that each contract can fail.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE_ROOTS = (ROOT / "engine", ROOT / "sidecars")
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def lint_imports(*args: str) -> subprocess.CompletedProcess[str]:
    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    return subprocess.run([lint, "--no-cache", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_import_contracts_hold_and_every_one_of_them_ran():
    result = lint_imports()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in result.stdout, output[-3000:]
    for contract in CONTRACTS:
        assert f"{contract['name']} KEPT" in result.stdout, f"{contract['name']!r} did not run:\n{output[-3000:]}"


def test_the_graph_the_contracts_check_holds_every_module_of_both_source_roots():
    """The known trap: a source root import-linter cannot see makes its contracts check an empty
    package, and keep. grimp (what import-linter builds its graph with) must find every module."""
    import grimp

    roots = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["root_packages"]
    graph = grimp.build_graph(*roots, cache_dir=None)
    found = {m for m in graph.modules if m.startswith("wojak.")}
    on_disk = set()
    for root in SOURCE_ROOTS:
        for path in (root / "wojak").rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            if len(parts) > 2:  # wojak.cli and wojak.__main__ (the composition root) are not in a root package
                on_disk.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    assert on_disk and found == on_disk, (sorted(on_disk - found), sorted(found - on_disk))


# One forbidden import per contract: (contract id, module written, its text, what the failure names)
PROBES = [
    ("sidecars-never-import-the-engine", "sidecars/wojak/sidecars/{name}.py", "import wojak.engine.store\n",
     "wojak.engine.store"),
    ("sidecars-never-import-the-engine", "sidecars/wojak/sidecars/rabbitmq/{name}.py",
     "from wojak.engine.domain import Order\n", "wojak.engine.domain"),
    ("engine-never-imports-a-sidecar", "engine/wojak/engine/{name}.py", "import fastapi\n", "fastapi"),
    ("engine-never-imports-a-sidecar", "engine/wojak/engine/store/{name}.py", "from wojak.sidecars import cli\n",
     "wojak.sidecars"),
    ("brokers-are-independent", "sidecars/wojak/sidecars/rabbitmq/{name}.py", "import wojak.sidecars.http.intake\n",
     "wojak.sidecars.http"),
    ("engine-layers", "engine/wojak/engine/domain/{name}.py", "import wojak.engine.service\n", "wojak.engine.service"),
    ("production-code-never-imports-the-test-kit", "sidecars/wojak/sidecars/rabbitmq/{name}.py",
     "from wojak.sidecars.testing.memory import MemoryBroker\n", "wojak.sidecars.testing"),
    ("kubernetes-only-in-the-operator", "engine/wojak/engine/risk/{name}.py", "import kubernetes\n", "kubernetes"),
    ("engine-layers", "engine/wojak/engine/riskpolicy/{name}.py", "import wojak.engine.app\n", "wojak.engine.app"),
]  # fmt: skip


@pytest.mark.parametrize(("contract", "where", "text", "named"), PROBES, ids=[f"{p[0]}:{p[3]}" for p in PROBES])
def test_a_forbidden_import_breaks_its_contract(contract, where, text, named):
    assert contract in {c["id"] for c in CONTRACTS}
    name = f"_contract_probe_{uuid.uuid4().hex[:8]}"  # .gitignore'd, in case a run is killed here
    probe = ROOT / where.format(name=name)
    probe.write_text(f'"""A forbidden import written by tests/test_architecture.py; never committed."""\n\n{text}')
    try:
        result = lint_imports("--contract", contract)
    finally:
        probe.unlink()
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-2000:]
    assert "BROKEN" in result.stdout and "0 kept, 1 broken" in result.stdout, result.stdout[-3000:]
    assert name in result.stdout and named in result.stdout, result.stdout[-3000:]


def test_every_broker_is_in_the_contracts_that_name_the_brokers():
    """A new broker folder is covered the day it is added: independent of the others, and kept
    away from the test kit."""
    kit = {"_core", "_template", "testing", "__pycache__"}
    brokers = {f"wojak.sidecars.{p.name}" for p in (ROOT / "sidecars/wojak/sidecars").iterdir() if p.is_dir() and p.name not in kit}
    by_id = {c["id"]: c for c in CONTRACTS}
    assert set(by_id["brokers-are-independent"]["modules"]) == brokers
    assert brokers <= set(by_id["production-code-never-imports-the-test-kit"]["source_modules"])


def test_no_module_imports_another_packages_private_module():
    """``wojak.engine.domain._orders`` is the domain package's own business: another package imports
    what ``wojak.engine.domain`` exports. (Tests may look inside; the code may not.)"""
    import ast

    offences = []
    for root in SOURCE_ROOTS:
        for path in (root / "wojak").rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            package = parts[:-1]  # the importing module's package (for __init__: the package itself)
            for node in ast.walk(ast.parse(path.read_text())):
                names = [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else (
                    [a.name for a in node.names] if isinstance(node, ast.Import) else [])  # fmt: skip
                for name in names:
                    bits = tuple(name.split("."))
                    private = next((i for i, bit in enumerate(bits) if bit.startswith("_") and not bit.startswith("__")), None)
                    # a private module belongs to its package: only modules inside that package import it
                    if private is not None and package[:private] != bits[:private]:
                        offences.append(f"{'.'.join(parts)} imports {name}")
    assert not offences, "\n".join(offences)


def test_broker_sdks_are_imported_only_inside_their_sidecar_package():
    sdks = {"aio_pika": "rabbitmq", "aiokafka": "kafka", "boto3": None, "google.cloud": "pubsub"}
    for path in [p for root in SOURCE_ROOTS for p in (root / "wojak").rglob("*.py")]:
        text = path.read_text()
        for sdk, home in sdks.items():
            if f"import {sdk}" in text or f"from {sdk}" in text:
                rel = path.relative_to(ROOT).as_posix().split("/", 2)[2]  # engine/wojak/X -> X
                allowed = rel.startswith("sidecars/") and home is not None and f"/{home}/" in f"/{rel}"
                # boto3 is also the engine's AWS client: the Lambda venue and the SQS escalation sink
                allowed |= sdk == "boto3" and rel.startswith(("sidecars/", "engine/venue/", "engine/escalation/"))
                assert allowed, f"{rel} imports {sdk}"


def test_every_error_of_the_project_is_a_wojak_error():
    """One root type (wojak.errors.WojakError): a command line catches it and prints one line."""
    import importlib
    import pkgutil

    import wojak.engine
    import wojak.sidecars
    from wojak.errors import WojakError

    skip = ("wojak.sidecars._template", "wojak.sidecars.testing")  # not the product's code
    errors = {}
    for package in (wojak.engine, wojak.sidecars):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.startswith(skip):
                continue
            module = importlib.import_module(info.name)
            for value in vars(module).values():
                if isinstance(value, type) and issubclass(value, Exception) and value.__module__ == info.name:
                    errors[f"{info.name}.{value.__qualname__}"] = value
    assert len(errors) >= 15, sorted(errors)
    # private control flow inside one module (never leaves it) may use a bare Exception
    outside = sorted(n for n, e in errors.items() if not issubclass(e, WojakError) and not e.__name__.startswith("_"))
    assert not outside, outside


def test_every_settings_class_is_frozen():
    """Settings are read once, at the entry point, and never change after."""
    from pydantic_settings import BaseSettings

    from wojak.engine.app import EngineSettings
    from wojak.sidecars._core.settings import BrokerSidecarSettings
    from wojak.sidecars.http.config import HttpSidecarSettings
    from wojak.sidecars.rabbitmq.config import RabbitMQSidecarSettings

    for cls in (EngineSettings, BrokerSidecarSettings, HttpSidecarSettings, RabbitMQSidecarSettings):
        assert issubclass(cls, BaseSettings) and cls.model_config.get("frozen") is True, cls
