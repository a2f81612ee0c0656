"""RabbitMQ sidecar settings: env prefix, bounds, credentials never printed; coordinates."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from wojak.sidecars.rabbitmq import RabbitMQSidecarSettings
from wojak.sidecars.rabbitmq.source import coordinates_for


@pytest.fixture(autouse=True)
def accounts(monkeypatch):
    """A broker sidecar needs WOJAK_SIDECAR_ACCOUNTS; nothing else is inherited from the outer environment."""
    for name in [k for k in os.environ if k.startswith("WOJAK_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("WOJAK_SIDECAR_ACCOUNTS", "desk-1,desk-2-*")


def test_defaults_and_env(monkeypatch):
    config = RabbitMQSidecarSettings().to_config()
    assert config.runner is not None and config.runner.accounts == ("desk-1", "desk-2-*")
    assert config.max_body_bytes == 65536 and config.reply_queues == ()
    assert config.url.get_secret_value() == "amqp://guest:guest@127.0.0.1:5672/" and config.prefetch == 64
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
    monkeypatch.setenv("WOJAK_SIDECAR_MAX_BODY_BYTES", "4096")
    monkeypatch.setenv("WOJAK_SIDECAR_RABBITMQ_REPLY_TO_ALLOWED", "results.a, results.b")
    config = RabbitMQSidecarSettings().to_config()
    assert config.max_body_bytes == 4096 and config.reply_queues == ("results.a", "results.b")


def test_settle_timeout_and_attempts(monkeypatch):
    config = RabbitMQSidecarSettings().to_config()
    assert config.settle_timeout == 10.0 and config.runner.settle_timeout == 10.0 and config.runner.settle_attempts == 5
    monkeypatch.setenv("WOJAK_SIDECAR_SETTLE_TIMEOUT", "2.5")
    monkeypatch.setenv("WOJAK_SIDECAR_SETTLE_ATTEMPTS", "3")
    config = RabbitMQSidecarSettings().to_config()
    assert config.settle_timeout == 2.5 and config.runner.settle_timeout == 2.5 and config.runner.settle_attempts == 3
    for name, value in (("SETTLE_TIMEOUT", "0"), ("SETTLE_TIMEOUT", "301"), ("SETTLE_ATTEMPTS", "0")):
        monkeypatch.setenv(f"WOJAK_SIDECAR_{name}", value)
        with pytest.raises(ValidationError):
            RabbitMQSidecarSettings()
        monkeypatch.delenv(f"WOJAK_SIDECAR_{name}")


def test_accounts_are_required_and_checked(monkeypatch):
    monkeypatch.delenv("WOJAK_SIDECAR_ACCOUNTS")
    with pytest.raises(ValueError, match="WOJAK_SIDECAR_ACCOUNTS is not set"):
        RabbitMQSidecarSettings().to_config()
    monkeypatch.setenv("WOJAK_SIDECAR_ACCOUNTS", " , ")
    with pytest.raises(ValueError, match="WOJAK_SIDECAR_ACCOUNTS is not set"):
        RabbitMQSidecarSettings().to_config()
    monkeypatch.setenv("WOJAK_SIDECAR_ACCOUNTS", "desk 1")
    with pytest.raises(ValueError, match="WOJAK_SIDECAR_ACCOUNTS: account pattern 'desk 1'"):
        RabbitMQSidecarSettings().to_config()


@pytest.mark.parametrize("url", ["amqp://u:pw@mq.example.com:5672/", "amqp://u:pw@10.1.2.3/", "amqp://mq.internal/"])
def test_plain_amqp_off_loopback_is_refused_unless_allowed(monkeypatch, url):
    monkeypatch.setenv("WOJAK_SIDECAR_RABBITMQ_URL", url)
    with pytest.raises(ValueError, match="WOJAK_SIDECAR_RABBITMQ_URL: amqp:// .* use amqps://") as err:
        RabbitMQSidecarSettings().to_config()
    assert "WOJAK_ALLOW_INSECURE_TRANSPORT=1" in str(err.value) and "pw" not in str(err.value)
    monkeypatch.setenv("WOJAK_ALLOW_INSECURE_TRANSPORT", "1")
    assert RabbitMQSidecarSettings().to_config().url.get_secret_value() == url


@pytest.mark.parametrize("url", ["amqps://u:pw@mq.example.com:5671/", "amqp://guest:guest@localhost/", "amqp://[::1]/"])
def test_tls_or_loopback_amqp_is_accepted(monkeypatch, url):
    monkeypatch.setenv("WOJAK_SIDECAR_RABBITMQ_URL", url)
    assert RabbitMQSidecarSettings().to_config().url.get_secret_value() == url


@pytest.mark.parametrize(("name", "value"), [("PREFETCH", "0"), ("PREFETCH", "100000"), ("URL", "http://x/"), ("QUEUE", "a b"),
                                             ("REPLY_TO_ALLOWED", "ok,not ok")])
def test_bad_settings_are_refused(monkeypatch, name, value):
    monkeypatch.setenv(f"WOJAK_SIDECAR_RABBITMQ_{name}", value)
    with pytest.raises(ValidationError):
        RabbitMQSidecarSettings()


def _env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("WOJAK_")}, **extra}


def test_cli_reports_bad_settings():
    proc = subprocess.run([sys.executable, "-m", "wojak", "sidecar", "rabbitmq"], capture_output=True, text=True,
                          env=_env(WOJAK_SIDECAR_RABBITMQ_PREFETCH="0", WOJAK_SIDECAR_ACCOUNTS="desk-1"), timeout=60)  # fmt: skip
    assert proc.returncode == 2 and "RabbitMQ sidecar settings" in proc.stderr


def test_cli_refuses_to_start_without_accounts_in_one_line():
    proc = subprocess.run([sys.executable, "-m", "wojak", "sidecar", "rabbitmq"], capture_output=True, text=True,
                          env=_env(), timeout=60)  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "WOJAK_SIDECAR_ACCOUNTS is not set" in lines[0], proc.stderr


def test_coordinates_are_stable_across_redeliveries():
    assert coordinates_for("q", "m-1", b"x") == coordinates_for("q", "m-1", b"y") == ("q", "m-1")
    assert coordinates_for("q", None, b"body") == coordinates_for("q", "", b"body")
    assert coordinates_for("q", None, b"body") != coordinates_for("q", None, b"other")
