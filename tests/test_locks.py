"""The images' locks (requirements/*.lock) match pyproject.toml, without the network.

scripts/lock expands each image's extras into requirements/NAME.in and compiles it with hashes
into NAME.lock, recording the .in's sha256. A dependency added to an extra (or a changed
specifier) without running scripts/lock makes the .in differ, and these tests fail naming it.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
import shutil
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def _load_lock_script(root: Path = ROOT):
    loader = importlib.machinery.SourceFileLoader("_wojak_lock", str(root / "scripts" / "lock"))
    spec = importlib.util.spec_from_loader("_wojak_lock", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _pins(lock: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of every pin of a lock."""
    pins: dict[str, tuple[str, list[str]]] = {}
    name = None
    for line in lock.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)", line)
        if match:
            name = canonicalize_name(match.group(1))
            pins[name] = (match.group(2), [])
        for digest in re.findall(r"--hash=sha256:([0-9a-f]{64})", line):
            assert name is not None
            pins[name][1].append(digest)
    return pins


def test_every_lock_is_compiled_from_the_current_extras():
    problems = _load_lock_script().stale()
    assert problems == [], "\n".join(problems) + "\nrun scripts/lock"


def test_every_requirement_of_an_image_is_pinned_in_its_lock_with_hashes():
    lock_script = _load_lock_script()
    for name, text in lock_script.inputs().items():
        pins = _pins(ROOT / "requirements" / f"{name}.lock")
        assert pins and all(hashes for _, hashes in pins.values()), f"{name}.lock: a pin without --hash"
        for line in text.splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            requirement = Requirement(line)
            key = canonicalize_name(requirement.name)
            assert key in pins, f"{name}.lock lacks {requirement.name} (run scripts/lock)"
            assert requirement.specifier.contains(pins[key][0], prereleases=True), (name, line, pins[key][0])
            if key == "uvicorn" and "standard" in requirement.extras:  # the extra's packages came along too
                assert {"httptools", "websockets", "uvloop"} <= set(pins), (name, line)


def test_the_engine_lock_holds_no_http_stack_and_each_sidecar_lock_no_engine_driver():
    engine = _pins(ROOT / "requirements" / "engine.lock")
    assert not set(engine) & {"fastapi", "starlette", "uvicorn", "orjson", "aio-pika", "aiokafka"}, sorted(engine)
    for lock in (ROOT / "requirements").glob("sidecar-*.lock"):
        assert "couchbase" not in _pins(lock), lock.name


def test_the_base_install_is_what_wojak_dev_runs_protocol_engine_and_http():
    """`pip install . && wojak dev`: the base dependencies are the protocol's, the engine's and
    the HTTP sidecar's (the extras the locks come from), nothing more and nothing missing."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lock_script = _load_lock_script()
    wanted = set(lock_script._expand(["engine", "http"], project["optional-dependencies"]))
    base = set(project["dependencies"])

    def names(requirements):
        return {canonicalize_name(Requirement(r).name) for r in requirements}

    assert names(base) == names(wanted), (sorted(names(base) ^ names(wanted)))
    uvicorn = next(Requirement(r) for r in base if Requirement(r).name == "uvicorn")
    assert uvicorn.extras == {"standard"}


def test_the_check_fails_when_an_extra_gains_a_dependency(tmp_path):
    """The staleness check can fail: a copy of the project whose engine extra gains a package."""
    for part in ("pyproject.toml", "requirements", "scripts/lock"):
        source = ROOT / part
        target = tmp_path / part
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
    copy = _load_lock_script(tmp_path)
    copy.REPO, copy.OUT = tmp_path, tmp_path / "requirements"
    assert copy.stale() == []
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('engine = [\n  "wojak[protocol]",', 'engine = [\n  "wojak[protocol]",\n  "rich>=13",', 1))
    problems = copy.stale()
    assert "requirements/engine.in differs from pyproject.toml" in problems, problems
    assert "requirements/engine.lock was not compiled from the current engine.in" in problems, problems


@pytest.mark.parametrize("dockerfile, lock", [("Dockerfile.engine", "${LOCK}.lock"), ("Dockerfile.sidecar", "sidecar-${BROKER}.lock")])
def test_the_dockerfiles_install_the_lock_with_hashes_and_the_wheel_without_dependencies(dockerfile, lock):
    text = (ROOT / dockerfile).read_text()
    assert f"requirements/{lock}" in text
    assert "--require-hashes --no-deps --only-binary=:all: -r" in text
    assert re.search(r"pip install --no-index --no-deps /wheels/wojak/wojak-\*\.whl", text)
    assert "FROM scratch" in text and "USER 10001:10001" in text
    assert re.search(r"^ARG BASE_IMAGE=python:3\.12-slim-bookworm$", text, re.M)
    assert not re.search(r"pip install[^\n]*'?\.\[", text), "an image never installs pyproject's extras"
