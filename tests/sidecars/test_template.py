"""Every broker sidecar is the template's folder filled in (docs/sidecar-kit.md): the same file
names, the same three names for the CLI (TITLE, Settings, serve), its settings on the kit's
shared base with a prefix of its own, its source a BrokerSource; and `wojak sidecar` lists it."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from wojak.sidecars._core.settings import BrokerSidecarSettings
from wojak.sidecars._core.source import BrokerSource
from wojak.sidecars.cli import BROKERS

SIDECARS = Path(__file__).resolve().parents[2] / "sidecars" / "wojak" / "sidecars"
KIT = {"_core", "_template", "testing", "http", "__pycache__"}  # http: request/response, not a broker queue


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != "__pycache__")


def test_the_template_is_three_files():
    assert files(SIDECARS / "_template") == ["__init__.py", "config.py", "source.py"]


def test_every_broker_folder_is_in_the_cli_and_the_cli_names_only_broker_folders():
    folders = {p.name for p in SIDECARS.iterdir() if p.is_dir() and p.name not in KIT}
    assert folders == set(BROKERS)


@pytest.mark.parametrize("broker", ["_template", *BROKERS])
def test_a_broker_folder_has_the_templates_file_names_and_names(broker):
    assert files(SIDECARS / broker) == files(SIDECARS / "_template")
    package = importlib.import_module(f"wojak.sidecars.{broker}")
    assert isinstance(package.TITLE, str) and callable(package.serve)
    settings = package.Settings
    assert issubclass(settings, BrokerSidecarSettings) and settings is not BrokerSidecarSettings
    prefix = settings.model_config["env_prefix"]
    assert prefix.startswith("WOJAK_SIDECAR_") and prefix != "WOJAK_SIDECAR_", prefix
    assert settings.model_config.get("frozen") is True
    source = importlib.import_module(f"wojak.sidecars.{broker}.source")
    sources = [v for v in vars(source).values() if isinstance(v, type) and issubclass(v, BrokerSource) and v is not BrokerSource]
    assert len(sources) == 1 and sources[0].name == broker.strip("_"), sources


def test_the_templates_settings_are_its_configuration_declared_once(monkeypatch):
    """A new broker copies settings that are the configuration (frozen), with no dataclass
    repeating them; the shared ones are required and refused in one line."""
    from pydantic import ValidationError

    from wojak.errors import ConfigError
    from wojak.sidecars._template import Settings

    monkeypatch.setenv("WOJAK_SIDECAR_TEMPLATE_URL", "broker://user:s3cret@127.0.0.1:1234/")
    monkeypatch.setenv("WOJAK_SIDECAR_TEMPLATE_PREFETCH", "16")
    monkeypatch.setenv("WOJAK_SIDECAR_CONCURRENCY", "64")
    with pytest.raises(ConfigError, match="WOJAK_SIDECAR_ACCOUNTS is not set"):
        Settings().to_config()
    monkeypatch.setenv("WOJAK_SIDECAR_ACCOUNTS", "desk-*")
    settings = Settings()
    assert settings.to_config() is settings
    assert settings.runner.concurrency == 16 and settings.runner.accounts == ("desk-*",)  # bounded by the prefetch
    assert "s3cret" not in repr(settings)
    with pytest.raises(ValidationError):
        settings.queue = "other"  # type: ignore[misc]
    monkeypatch.setenv("WOJAK_SIDECAR_TEMPLATE_URL", "http://user:s3cret@broker.example.com:1234/")  # plain text off loopback
    with pytest.raises(ValidationError, match="WOJAK_SIDECAR_TEMPLATE_URL"):
        Settings()
