"""Make tests/services runnable on its own: register the services plugin unless
tests/conftest.py already did (``pytest_plugins = ["tests._services"]``)."""

import sys
from pathlib import Path


def pytest_configure(config):
    if config.pluginmanager.has_plugin("tests._services"):
        return
    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:
        sys.path.insert(0, root)
    config.pluginmanager.import_plugin("tests._services")
