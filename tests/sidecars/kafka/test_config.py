"""Kafka sidecar settings: env prefix, defaults, bounds, SASL/TLS, plain text refused off
loopback (as amqp://), credentials never printed; the pure pieces of the source (lanes, the
dead letter's shape within its size)."""

from __future__ import annotations

import hashlib
import json
import os
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from wojak.errors import ConfigError
from wojak.sidecars.kafka import KafkaSidecarSettings
from wojak.sidecars.kafka.source import dead_letter_record, lane_of


@pytest.fixture(autouse=True)
def accounts(monkeypatch):
    """A broker sidecar needs WOJAK_SIDECAR_ACCOUNTS; nothing else is inherited from the outer environment."""
    for name in [k for k in os.environ if k.startswith("WOJAK_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("WOJAK_SIDECAR_ACCOUNTS", "desk-1,desk-2-*")


def test_defaults_and_env(monkeypatch):
    config = KafkaSidecarSettings().to_config()
    assert config.servers == ("127.0.0.1:9092",) and config.security_protocol == "PLAINTEXT"
    assert (config.topic, config.group_id, config.dead_letter_topic, config.results_topic) == (
        "wojak.orders", "wojak-sidecar", "wojak.orders.dlt", "wojak.orders.results")
    assert config.prefetch == 256 and config.runner is not None and config.runner.concurrency == 256
    assert config.runner.accounts == ("desk-1", "desk-2-*") and config.auto_offset_reset == "earliest"
    for name, value in {"BOOTSTRAP_SERVERS": "k1.internal:9093,k2.internal:9093", "TOPIC": "orders.eu",
                        "GROUP_ID": "eu-sidecars", "DEAD_LETTER_TOPIC": "orders.eu.dlt", "RESULTS_TOPIC": "",
                        "PREFETCH": "64", "SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "SCRAM-SHA-512",
                        "SASL_USERNAME": "desk", "SASL_PASSWORD": "s3cret-pass"}.items():  # fmt: skip
        monkeypatch.setenv(f"WOJAK_SIDECAR_KAFKA_{name}", value)
    monkeypatch.setenv("WOJAK_SIDECAR_CONCURRENCY", "100")
    settings = KafkaSidecarSettings()
    config = settings.to_config()
    assert config.servers == ("k1.internal:9093", "k2.internal:9093") and config.topic == "orders.eu"
    assert config.results_topic == "", "an empty results topic publishes no results"
    assert config.runner.concurrency == 64, "never more in flight than fetched"
    assert config.sasl_password is not None and config.sasl_password.get_secret_value() == "s3cret-pass"
    assert (config.sasl_mechanism, config.sasl_username) == ("SCRAM-SHA-512", "desk")
    assert "s3cret-pass" not in repr(config) and "s3cret-pass" not in repr(settings) and "s3cret-pass" not in str(settings)
    assert config.ssl_context() is not None


@pytest.mark.parametrize("servers", ["kafka.example.com:9092", "10.1.2.3:9092", "127.0.0.1:9092,kafka.internal:9092"])
@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
def test_plain_text_off_loopback_is_refused_unless_allowed(monkeypatch, servers, protocol):
    monkeypatch.setenv("WOJAK_SIDECAR_KAFKA_BOOTSTRAP_SERVERS", servers)
    monkeypatch.setenv("WOJAK_SIDECAR_KAFKA_SECURITY_PROTOCOL", protocol)
    monkeypatch.setenv("WOJAK_SIDECAR_KAFKA_SASL_USERNAME", "u")
    monkeypatch.setenv("WOJAK_SIDECAR_KAFKA_SASL_PASSWORD", "pw-secret")
    with pytest.raises(ConfigError, match=f"WOJAK_SIDECAR_KAFKA_BOOTSTRAP_SERVERS: {protocol} to .* plain text off "
                                          "loopback; set WOJAK_SIDECAR_KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL") as err:  # fmt: skip
        KafkaSidecarSettings().to_config()
    assert "WOJAK_ALLOW_INSECURE_TRANSPORT=1" in str(err.value) and "pw-secret" not in str(err.value)
    for tls in ("SSL", "SASL_SSL"):
        monkeypatch.setenv("WOJAK_SIDECAR_KAFKA_SECURITY_PROTOCOL", tls)
        assert KafkaSidecarSettings().to_config().security_protocol == tls
    monkeypatch.setenv("WOJAK_SIDECAR_KAFKA_SECURITY_PROTOCOL", protocol)
    monkeypatch.setenv("WOJAK_ALLOW_INSECURE_TRANSPORT", "1")
    assert KafkaSidecarSettings().to_config().security_protocol == protocol


def test_loopback_plain_text_is_fine():
    for servers in ("localhost:9092", "127.0.0.2:9092,[::1]:9092"):
        assert KafkaSidecarSettings(bootstrap_servers=servers).to_config().servers == tuple(servers.split(","))


@pytest.mark.parametrize("name,value", [("BOOTSTRAP_SERVERS", ""), ("BOOTSTRAP_SERVERS", "kafka:9092/path"),
                                        ("TOPIC", "orders with spaces"), ("TOPIC", "x" * 250), ("PREFETCH", "0"),
                                        ("SECURITY_PROTOCOL", "TLS"), ("SASL_MECHANISM", "GSSAPI"),
                                        ("AUTO_OFFSET_RESET", "none"), ("COMMIT_INTERVAL", "0")])  # fmt: skip
def test_bad_settings_are_refused_naming_them(monkeypatch, name, value):
    monkeypatch.setenv(f"WOJAK_SIDECAR_KAFKA_{name}", value)
    with pytest.raises(ValidationError, match=name.lower()):
        KafkaSidecarSettings()


def test_sasl_needs_its_credentials_and_topics_must_differ(monkeypatch):
    monkeypatch.setenv("WOJAK_SIDECAR_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ConfigError, match="needs WOJAK_SIDECAR_KAFKA_SASL_USERNAME and WOJAK_SIDECAR_KAFKA_SASL_PASSWORD"):
        KafkaSidecarSettings().to_config()
    monkeypatch.setenv("WOJAK_SIDECAR_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("WOJAK_SIDECAR_KAFKA_DEAD_LETTER_TOPIC", "wojak.orders")
    with pytest.raises(ConfigError, match="must differ from WOJAK_SIDECAR_KAFKA_TOPIC"):
        KafkaSidecarSettings().to_config()


def test_accounts_are_required(monkeypatch):
    monkeypatch.delenv("WOJAK_SIDECAR_ACCOUNTS")
    with pytest.raises(ConfigError, match="WOJAK_SIDECAR_ACCOUNTS is not set"):
        KafkaSidecarSettings().to_config()


def test_the_lane_is_the_orders_account_else_the_key():
    assert lane_of(b'{"account": "desk-1", "x": 1}', b"other", 65536) == ("account", "desk-1")
    assert lane_of(b'{"client_order_id": "a"}', b"desk-2", 65536) == ("key", b"desk-2")
    assert lane_of(b"{not json", b"desk-2", 65536) == ("key", b"desk-2")
    assert lane_of(b'{"account": "desk-1"}' + b" " * 100, b"k", 64) == ("key", b"k"), "an oversized body is not parsed"
    assert lane_of(b"[1]", None, 65536) == lane_of(None, None, 65536) == ("none",)


def record(value: bytes | None, headers=(), key=b"desk-1"):
    return SimpleNamespace(topic="orders", partition=3, offset=42, key=key, value=value, headers=list(headers))


def test_a_dead_letter_keeps_body_key_and_headers_and_names_its_source():
    value, key, headers = dead_letter_record(record(b"{bad", [("trace", b"t-1"), ("x-wojak-reason", b"forged")]),
                                             "invalid_json", {"error": "nope"})  # fmt: skip
    h = dict(headers)
    assert value == b"{bad" and key == b"desk-1" and h["trace"] == b"t-1"
    assert (h["x-wojak-reason"], h["x-wojak-topic"], h["x-wojak-partition"], h["x-wojak-offset"]) == (
        b"invalid_json", b"orders", b"3", b"42"), "ours replace a publisher's header of the same name"
    assert json.loads(h["x-wojak-detail"]) == {"error": "nope"} and [k for k, _ in headers].count("x-wojak-reason") == 1


def test_a_dead_letter_stays_within_its_size_headers_dropped_first_then_the_body():
    big_headers = [(f"h{i}", b"v" * 3000) for i in range(5)]
    value, _, headers = dead_letter_record(record(b"b" * 5000, big_headers), "invalid", {"d": "x" * 10000}, limit=12000)
    h = dict(headers)
    assert value == b"b" * 5000 and len(h["x-wojak-detail"]) <= 4096
    dropped = json.loads(h["x-wojak-headers-dropped"])
    assert dropped["count"] >= 1 and sum(1 for k, _ in headers if k.startswith("h")) + dropped["count"] == 5
    assert sum(len(k) + len(v) for k, v in headers) + len(value) <= 12000
    body = b"B" * 20000
    value, _, headers = dead_letter_record(record(body), "body_too_large", {}, limit=12000)
    assert value is None
    assert json.loads(dict(headers)["x-wojak-body-omitted"]) == {"bytes": 20000, "sha256": hashlib.sha256(body).hexdigest()}


def test_a_minimal_dead_letter_has_no_body_and_no_publisher_headers_but_the_original_reason():
    value, key, headers = dead_letter_record(record(b"{}", [("trace", b"t")]), "unsettleable", {"settle_failures": 5},
                                             minimal=True, original_reason="invalid")  # fmt: skip
    h = dict(headers)
    assert value is None and key == b"desk-1" and "trace" not in h
    assert h["x-wojak-reason"] == b"unsettleable" and h["x-wojak-original-reason"] == b"invalid"
    assert json.loads(h["x-wojak-headers-dropped"])["names"] == ["trace"]
