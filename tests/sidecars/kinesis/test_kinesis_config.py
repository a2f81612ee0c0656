"""The Kinesis sidecar's settings: WOJAK_SIDECAR_KINESIS_* on the kit's shared ones, frozen,
plain-text endpoints refused off loopback, exactly one dead-letter destination."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from wojak.errors import ConfigError
from wojak.sidecars.kinesis import KinesisSidecarSettings

QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders-dlq"


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    for name in ("WOJAK_SIDECAR_ACCOUNTS", "WOJAK_SIDECAR_CARRIES", "WOJAK_ALLOW_INSECURE_TRANSPORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WOJAK_SIDECAR_ACCOUNTS", "desk-*")


def test_the_settings_are_the_configuration(monkeypatch):
    monkeypatch.setenv("WOJAK_SIDECAR_KINESIS_STREAM", "orders")
    monkeypatch.setenv("WOJAK_SIDECAR_KINESIS_DEAD_LETTER_QUEUE_URL", QUEUE)
    monkeypatch.setenv("WOJAK_SIDECAR_KINESIS_PREFETCH", "300")
    monkeypatch.setenv("WOJAK_SIDECAR_KINESIS_LEASE_SECONDS", "6")
    settings = KinesisSidecarSettings()
    assert settings.to_config() is settings
    assert (settings.stream, settings.lease_seconds, settings.runner.concurrency) == ("orders", 6.0, 256)
    assert settings.runner.accounts == ("desk-*",)
    assert KinesisSidecarSettings(WOJAK_SIDECAR_CONCURRENCY="1000").runner.concurrency == 300, "bounded by the prefetch"
    with pytest.raises(ValidationError):
        settings.stream = "other"  # type: ignore[misc]
    assert KinesisSidecarSettings().worker_id != KinesisSidecarSettings().worker_id, "each replica its own name"


def test_exactly_one_dead_letter_destination_and_the_accounts_are_required(monkeypatch):
    with pytest.raises(ConfigError, match="DEAD_LETTER_QUEUE_URL"):
        KinesisSidecarSettings().to_config()
    monkeypatch.setenv("WOJAK_SIDECAR_KINESIS_DEAD_LETTER_QUEUE_URL", QUEUE)
    monkeypatch.setenv("WOJAK_SIDECAR_KINESIS_DEAD_LETTER_STREAM", "orders-dlq")
    with pytest.raises(ConfigError, match="one of"):
        KinesisSidecarSettings().to_config()
    monkeypatch.delenv("WOJAK_SIDECAR_KINESIS_DEAD_LETTER_QUEUE_URL")
    monkeypatch.setenv("WOJAK_SIDECAR_KINESIS_DEAD_LETTER_STREAM", "wojak-orders")
    with pytest.raises(ConfigError, match="must differ"):
        KinesisSidecarSettings().to_config()
    monkeypatch.setenv("WOJAK_SIDECAR_KINESIS_DEAD_LETTER_STREAM", "orders-dlq")
    assert KinesisSidecarSettings().to_config().results_stream == "", "no results stream unless one is set"
    monkeypatch.setenv("WOJAK_SIDECAR_KINESIS_RESULTS_STREAM", "wojak-orders")
    with pytest.raises(ConfigError, match="RESULTS_STREAM must differ"):
        KinesisSidecarSettings().to_config()
    monkeypatch.setenv("WOJAK_SIDECAR_KINESIS_RESULTS_STREAM", "orders-results")
    assert KinesisSidecarSettings().to_config().results_stream == "orders-results"
    monkeypatch.delenv("WOJAK_SIDECAR_ACCOUNTS")
    with pytest.raises(ConfigError, match="WOJAK_SIDECAR_ACCOUNTS is not set"):
        KinesisSidecarSettings().to_config()
    monkeypatch.setenv("WOJAK_SIDECAR_CARRIES", "ticks")
    assert KinesisSidecarSettings().to_config().runner.accounts == (), "a ticks source trades nothing"


@pytest.mark.parametrize("setting, value", [("ENDPOINT", "http://kinesis.example.com:4566"),
                                            ("DEAD_LETTER_QUEUE_URL", "http://sqs.example.com/123456789012/dlq")])
def test_plain_text_is_refused_off_loopback(monkeypatch, setting, value):
    monkeypatch.setenv(f"WOJAK_SIDECAR_KINESIS_{setting}", value)
    with pytest.raises(ValidationError, match=f"WOJAK_SIDECAR_KINESIS_{setting}"):
        KinesisSidecarSettings()
    monkeypatch.setenv(f"WOJAK_SIDECAR_KINESIS_{setting}", value.replace("http://", "https://"))
    KinesisSidecarSettings()
    monkeypatch.setenv(f"WOJAK_SIDECAR_KINESIS_{setting}", value.replace("kinesis.example.com", "127.0.0.1").replace("sqs.example.com", "127.0.0.1"))
    KinesisSidecarSettings()


@pytest.mark.parametrize("name, value", [("STREAM", "bad name"), ("LEASE_SECONDS", "0"), ("BATCH_SIZE", "20000"),
                                         ("INITIAL_POSITION", "AT_TIMESTAMP"), ("DEAD_LETTER_QUEUE_URL", "not-a-url")])
def test_a_bad_value_is_refused_naming_the_field(monkeypatch, name, value):
    monkeypatch.setenv(f"WOJAK_SIDECAR_KINESIS_{name}", value)
    with pytest.raises(ValidationError, match=name.lower()):
        KinesisSidecarSettings()
