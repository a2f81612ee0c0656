"""Shared fixtures: real engine and sidecar processes on a private IPC socket."""

from __future__ import annotations

import pytest

from tests._processes import EngineProcess, HttpSidecarProcess

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


@pytest.fixture
def engine(engine_factory) -> EngineProcess:
    return engine_factory()


@pytest.fixture
def http_sidecar(engine: EngineProcess):
    proc = HttpSidecarProcess(engine)
    proc.start()
    yield proc
    proc.stop()
