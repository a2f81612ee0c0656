"""Chart values for each source type: the least a user must give (credentials only as Secret names)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from wojak.engine.risk import demo_risk_config_path

SOURCE_TYPES = ("http", "rabbitmq", "kafka", "sqs", "sns", "pubsub", "kinesis")
QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/wojak-orders"
DLQ = "https://sqs.eu-west-1.amazonaws.com/123456789012/wojak-orders-dlq"


def risk_config() -> dict[str, Any]:
    """A whole risk file (the demo one): the chart refuses to render without one."""
    return yaml.safe_load(Path(demo_risk_config_path()).read_text())


SOURCES: dict[str, dict[str, Any]] = {
    "http": {"http": {"apiKeysSecret": "wojak-api-keys"}},
    "rabbitmq": {"accounts": ["desk-1", "desk-2-*"], "rabbitmq": {"urlSecret": {"name": "wojak-rabbitmq", "key": "url"}}},
    "kafka": {"accounts": ["desk-1"], "kafka": {"bootstrapServers": "kafka-0.kafka:9093,kafka-1.kafka:9093",
                                                "saslPasswordSecret": {"name": "wojak-kafka", "key": "password"},
                                                "securityProtocol": "SASL_SSL", "saslUsername": "wojak"}},
    "sqs": {"accounts": ["desk-1"], "sqs": {"queueUrl": QUEUE, "deadLetterQueueUrl": DLQ, "region": "eu-west-1"}},
    "sns": {"accounts": ["desk-1"], "sns": {"topicArn": "arn:aws:sns:eu-west-1:123456789012:wojak-orders",
                                            "queueUrl": QUEUE, "deadLetterQueueUrl": DLQ, "region": "eu-west-1"}},
    "pubsub": {"accounts": ["desk-1"], "pubsub": {"project": "wojak-test", "subscription": "projects/wojak-test/subscriptions/orders",
                                                  "deadLetterTopic": "orders-dead-letters"}},
    "kinesis": {"accounts": ["desk-1"], "kinesis": {"streamName": "wojak-orders", "region": "eu-west-1", "deadLetterQueueUrl": DLQ}},
}  # fmt: skip


def values_for(source_type: str, **extra: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"risk": {"config": risk_config()}, "source": {"type": source_type, **copy.deepcopy(SOURCES[source_type])}}
    for key, value in extra.items():
        values[key] = value
    return values


def write_values(directory: Path, values: dict[str, Any], name: str = "values") -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(json.dumps(values))  # JSON is YAML
    return path
