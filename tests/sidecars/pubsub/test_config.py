"""The Pub/Sub sidecar's settings: the required ones refused by name, frozen, the emulator only on
loopback, the concurrency bounded by the flow control."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from wojak.errors import ConfigError
from wojak.sidecars.pubsub import PubSubSidecarSettings

REQUIRED: dict[str, Any] = {"project": "test", "subscription": "orders", "dead_letter_topic": "orders-dlq", "accounts": "acct-*"}


@pytest.mark.parametrize("missing", ["project", "subscription", "dead_letter_topic"])
def test_a_missing_required_setting_is_refused_by_name(missing, monkeypatch):
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    settings = PubSubSidecarSettings(**{**REQUIRED, missing: ""})
    with pytest.raises(ConfigError, match=f"WOJAK_SIDECAR_PUBSUB_{missing.upper()} is not set"):
        settings.to_config()


def test_accounts_are_required(monkeypatch):
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("WOJAK_SIDECAR_ACCOUNTS", raising=False)
    settings = PubSubSidecarSettings(**{k: v for k, v in REQUIRED.items() if k != "accounts"})
    with pytest.raises(ConfigError, match="WOJAK_SIDECAR_ACCOUNTS"):
        settings.to_config()


def test_read_from_the_environment_and_frozen(monkeypatch):
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    for name, value in {"PROJECT": "desk-prod", "SUBSCRIPTION": "orders-sub", "DEAD_LETTER_TOPIC": "orders-dlt",
                        "MAX_MESSAGES": "16", "LEASE_EXTENSION": "30"}.items():  # fmt: skip
        monkeypatch.setenv(f"WOJAK_SIDECAR_PUBSUB_{name}", value)
    monkeypatch.setenv("WOJAK_SIDECAR_ACCOUNTS", "acct-*")
    monkeypatch.setenv("WOJAK_SIDECAR_CONCURRENCY", "64")
    config = PubSubSidecarSettings().to_config()
    assert config.subscription_path == "projects/desk-prod/subscriptions/orders-sub"
    assert config.dead_letter_topic_path == "projects/desk-prod/topics/orders-dlt"
    assert config.lease_extension == 30
    assert config.runner.concurrency == 16, "never more in flight than the flow control leases"
    with pytest.raises(pydantic.ValidationError):
        config.max_messages = 1


@pytest.mark.parametrize("name, value", [("lease_extension", 5), ("max_messages", 0), ("subscription", "1bad")])
def test_out_of_range_values_are_refused(name, value, monkeypatch):
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    with pytest.raises(pydantic.ValidationError, match=name):
        PubSubSidecarSettings(**{**REQUIRED, name: value})


def test_an_emulator_off_loopback_is_refused(monkeypatch):
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "pubsub.example.com:8085")
    with pytest.raises((ConfigError, pydantic.ValidationError), match="PUBSUB_EMULATOR_HOST"):
        PubSubSidecarSettings(**REQUIRED)
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:8085")
    assert PubSubSidecarSettings(**REQUIRED).to_config().project == "test"
