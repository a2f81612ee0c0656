"""RabbitMQ sidecar settings: env prefix, bounds, credentials never printed; coordinates."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from wojak.sidecars.rabbitmq import RabbitMQSidecarSettings
from wojak.sidecars.rabbitmq.source import coordinates_for


def test_defaults_and_env(monkeypatch):
    config = RabbitMQSidecarSettings().to_config()
    assert config.url == "amqp://guest:guest@127.0.0.1:5672/" and config.prefetch == 64
    assert config.runner is not None and config.runner.health_port == 8081 and config.runner.concurrency == 64
    monkeypatch.setenv("WOJAK_SIDECAR_RABBITMQ_URL", "amqps://desk:s3cret-pass@mq.internal:5671/prod")
    monkeypatch.setenv("WOJAK_SIDECAR_RABBITMQ_QUEUE", "orders.eu")
    monkeypatch.setenv("WOJAK_SIDECAR_RABBITMQ_PREFETCH", "16")
    monkeypatch.setenv("WOJAK_SIDECAR_CONCURRENCY", "100")
    monkeypatch.setenv("WOJAK_ENGINE_SOCKET", "/run/wojak/engine/engine.sock")
    config = RabbitMQSidecarSettings().to_config()
    assert config.queue == "orders.eu" and config.runner.engine_socket == "/run/wojak/engine/engine.sock"
    assert config.runner.concurrency == 16, "never more in flight than the prefetch window"
    assert "s3cret-pass" not in repr(config) and "s3cret-pass" not in repr(RabbitMQSidecarSettings())


@pytest.mark.parametrize(("name", "value"), [("PREFETCH", "0"), ("PREFETCH", "100000"), ("URL", "http://x/"), ("QUEUE", "a b")])
def test_bad_settings_are_refused(monkeypatch, name, value):
    monkeypatch.setenv(f"WOJAK_SIDECAR_RABBITMQ_{name}", value)
    with pytest.raises(ValidationError):
        RabbitMQSidecarSettings()


def _env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("WOJAK_")}, **extra}


def test_cli_reports_bad_settings():
    proc = subprocess.run([sys.executable, "-m", "wojak", "sidecar", "rabbitmq"], capture_output=True, text=True,
                          env=_env(WOJAK_SIDECAR_RABBITMQ_PREFETCH="0"), timeout=60)  # fmt: skip
    assert proc.returncode == 2 and "RabbitMQ sidecar settings" in proc.stderr


def test_coordinates_are_stable_across_redeliveries():
    assert coordinates_for("q", "m-1", b"x") == coordinates_for("q", "m-1", b"y") == ("q", "m-1")
    assert coordinates_for("q", None, b"body") == coordinates_for("q", "", b"body")
    assert coordinates_for("q", None, b"body") != coordinates_for("q", None, b"other")
