"""Shared fixtures: real engine and sidecar processes on a private IPC socket."""

from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import settings

from tests._processes import EngineProcess, HttpSidecarProcess

# CI runs the same examples every time (`.ci/run` sets the profile): a red run must be reproducible.
settings.register_profile("ci", derandomize=True, database=None, deadline=None)
settings.load_profile(os.environ.get("WOJAK_HYPOTHESIS_PROFILE", "default"))

pytest_plugins = ["tests._services"]


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
