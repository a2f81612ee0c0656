"""Shared fixtures: real engine and sidecar processes on a private IPC socket."""

from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import is_hypothesis_test, seed, settings

from tests._processes import EngineProcess, HttpSidecarProcess

# Property tests in CI explore: `.ci/run` sets WOJAK_HYPOTHESIS_SEED from the commit, so each
# commit runs other examples, and prints it. A red run is replayed with the same seed:
#   WOJAK_HYPOTHESIS_PROFILE=ci WOJAK_HYPOTHESIS_SEED=<seed> scripts/test tests/...
# (no example database in CI: the seed alone decides the examples).
settings.register_profile("ci", derandomize=False, database=None, deadline=None)
settings.load_profile(os.environ.get("WOJAK_HYPOTHESIS_PROFILE", "default"))
_SEED_TEXT = os.environ.get("WOJAK_HYPOTHESIS_SEED", "").strip()
HYPOTHESIS_SEED: int | None = int(_SEED_TEXT) if _SEED_TEXT else None


def _replay_line() -> str:
    return (f"hypothesis: profile {settings.get_current_profile_name()}, seed {HYPOTHESIS_SEED} (replay: WOJAK_HYPOTHESIS_PROFILE="
            f"{settings.get_current_profile_name()} WOJAK_HYPOTHESIS_SEED={HYPOTHESIS_SEED} scripts/test TESTS)")


def pytest_report_header(config: pytest.Config) -> str | None:
    return _replay_line() if HYPOTHESIS_SEED is not None else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every property test runs with WOJAK_HYPOTHESIS_SEED, when it is set."""
    if HYPOTHESIS_SEED is None:
        return
    for item in items:
        test = getattr(item, "obj", None)
        test = getattr(test, "__func__", test)
        if test is not None and is_hypothesis_test(test):
            seed(HYPOTHESIS_SEED)(test)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if HYPOTHESIS_SEED is not None:  # also under -q, where the header is not shown
        terminalreporter.write_line(_replay_line())

pytest_plugins = ["tests._services", "tests._kube"]


@pytest.fixture
def engine_factory(tmp_path_factory: pytest.TempPathFactory):
    """Start real `wojak engine` processes; every one is killed at teardown."""
    started: list[EngineProcess] = []

    def start(data_dir=None, **env: str) -> EngineProcess:
        proc = EngineProcess(data_dir or tmp_path_factory.mktemp("engine"), env)
        proc.start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
        shutil.rmtree(proc.socket_base, ignore_errors=True)


@pytest.fixture
def engine(engine_factory) -> EngineProcess:
    return engine_factory()


@pytest.fixture
def http_sidecar(engine: EngineProcess):
    proc = HttpSidecarProcess(engine)
    proc.start()
    yield proc
    proc.stop()
