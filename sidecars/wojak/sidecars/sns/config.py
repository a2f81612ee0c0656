"""Settings of the SNS sidecar. SNS is read through SQS: a queue subscribed to the topic, so the
SQS sidecar's settings, under ``WOJAK_SIDECAR_SNS_*`` (``_QUEUE_URL``, ``_DEAD_LETTER_QUEUE_URL``,
``_REGION``, ``_ENDPOINT``, ``_BATCH_SIZE``, ``_WAIT_TIME``, ``_VISIBILITY``, ``_RECEIVERS``), and:

* ``_TOPIC_ARN``: the topic. With the SNS envelope (the default), a notification from another
  topic is dead-lettered ``unexpected_topic``; with raw message delivery, whose SQS messages do
  not name their topic, it is what a missing ``client_order_id`` is derived from (required then);
* ``_RAW_DELIVERY``: ``true`` when the subscription has ``RawMessageDelivery`` (the SQS body is
  the order); otherwise every body must be an SNS ``Notification`` envelope (else
  ``invalid_envelope``).

Credentials come only from the environment or the workload's identity (boto3's default chain).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from wojak.errors import ConfigError
from wojak.sidecars.sqs.config import SqsSidecarConfig, SqsSidecarSettings

_ARN = r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$"


class SnsSidecarSettings(SqsSidecarSettings):
    model_config = SettingsConfigDict(env_prefix="WOJAK_SIDECAR_SNS_", extra="ignore", frozen=True)

    topic_arn: str | None = Field(default=None, pattern=_ARN)
    raw_delivery: bool = False

    def config_fields(self) -> dict[str, Any]:
        return {**super().config_fields(), "topic_arn": self.topic_arn, "raw_delivery": self.raw_delivery}

    def to_config(self) -> SnsSidecarConfig:
        return SnsSidecarConfig(**self.config_fields())


@dataclass(frozen=True)
class SnsSidecarConfig(SqsSidecarConfig):
    topic_arn: str | None = None
    raw_delivery: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.raw_delivery and not self.topic_arn:
            raise ConfigError(f"{self.settings_prefix}TOPIC_ARN is required with raw message delivery (the SQS messages "
                              "do not name their topic)")  # fmt: skip

    def __repr__(self) -> str:
        return f"SnsSidecarConfig(topic={self.topic_arn!r}, raw={self.raw_delivery}, via {SqsSidecarConfig.__repr__(self)})"
