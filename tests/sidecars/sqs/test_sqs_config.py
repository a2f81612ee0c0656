"""The SQS sidecar's settings and its dead letter's attributes (no SQS needed)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from wojak.errors import ConfigError
from wojak.sidecars.sqs import SqsSidecarSettings
from wojak.sidecars.sqs.source import (
    DETAIL_ATTRIBUTE,
    DROPPED_ATTRIBUTE,
    ENCODING_ATTRIBUTE,
    MAX_ATTRIBUTES,
    REASON_ATTRIBUTE,
    dead_letter_attributes,
)

Q = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders"
DLQ = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders-dlq"


def settings(monkeypatch, **env: str) -> SqsSidecarSettings:
    for k, v in {"WOJAK_SIDECAR_ACCOUNTS": "desk-*", **env}.items():
        monkeypatch.setenv(k, v)
    return SqsSidecarSettings()


def test_settings_make_a_config(monkeypatch):
    config = settings(monkeypatch, WOJAK_SIDECAR_SQS_QUEUE_URL=Q, WOJAK_SIDECAR_SQS_DEAD_LETTER_QUEUE_URL=DLQ,
                      WOJAK_SIDECAR_SQS_BATCH_SIZE="5", WOJAK_SIDECAR_SQS_VISIBILITY="60",
                      WOJAK_SIDECAR_CONCURRENCY="16").to_config()
    assert (config.queue, config.batch_size, config.visibility, config.fifo) == ("orders", 5, 60, False)
    assert config.runner is not None and config.runner.concurrency == 16 and config.held_limit == 21
    assert "orders" in repr(config)


def test_the_queue_urls_are_required(monkeypatch):
    with pytest.raises(ConfigError, match="WOJAK_SIDECAR_SQS_QUEUE_URL"):
        settings(monkeypatch).to_config()
    with pytest.raises(ConfigError, match="DEAD_LETTER_QUEUE_URL"):
        settings(monkeypatch, WOJAK_SIDECAR_SQS_QUEUE_URL=Q).to_config()


@pytest.mark.parametrize(("name", "value"), [("BATCH_SIZE", "11"), ("WAIT_TIME", "21"), ("VISIBILITY", "1"),
                                             ("QUEUE_URL", "https://example.com/not a queue")])
def test_out_of_range_settings_are_refused(monkeypatch, name, value):
    with pytest.raises(ValidationError):
        settings(monkeypatch, **{f"WOJAK_SIDECAR_SQS_{name}": value})


def test_plain_http_only_on_loopback(monkeypatch):
    monkeypatch.delenv("WOJAK_ALLOW_INSECURE_TRANSPORT", raising=False)
    SqsSidecarSettings(queue_url=Q, dead_letter_queue_url=DLQ, endpoint="http://127.0.0.1:5000").check_queues()
    with pytest.raises(ConfigError, match="WOJAK_SIDECAR_SQS_ENDPOINT"):
        SqsSidecarSettings(queue_url=Q, dead_letter_queue_url=DLQ, endpoint="http://sqs.internal:80").check_queues()
    with pytest.raises(ConfigError, match="QUEUE_URL"):
        SqsSidecarSettings(queue_url="http://sqs.eu-west-1.amazonaws.com/1/orders", dead_letter_queue_url=DLQ).check_queues()


def test_a_fifo_queue_needs_a_fifo_dead_letter_queue():
    with pytest.raises(ConfigError, match="FIFO"):
        SqsSidecarSettings(queue_url=Q + ".fifo", dead_letter_queue_url=DLQ).check_queues()
    config = SqsSidecarSettings(queue_url=Q + ".fifo", dead_letter_queue_url=DLQ + ".fifo")
    config.check_queues()
    assert config.fifo


def _attr(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def test_the_dead_letter_keeps_the_reason_and_at_most_ten_attributes_the_body_encoding_first():
    theirs = {f"a{i:02d}": _attr("x" * (i + 1)) for i in range(12)}
    theirs[ENCODING_ATTRIBUTE] = _attr("base64")
    got = dead_letter_attributes(theirs, "invalid", {"errors": ["..."]}, "orders", "mid-1", 100)
    assert len(got) <= MAX_ATTRIBUTES
    assert got[REASON_ATTRIBUTE]["StringValue"] == "invalid" and ENCODING_ATTRIBUTE in got
    assert '"count":' in got[DROPPED_ATTRIBUTE]["StringValue"] and DETAIL_ATTRIBUTE in got


def test_the_detail_gives_way_to_a_large_body():
    got = dead_letter_attributes({}, "invalid", {"errors": ["e" * 10_000]}, "orders", "mid-1", 262144 - 2000)
    assert got[REASON_ATTRIBUTE]["StringValue"] == "invalid"
    assert len(got.get(DETAIL_ATTRIBUTE, {}).get("StringValue", "")) < 2000
