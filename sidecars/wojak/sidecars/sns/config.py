"""Settings of the SNS sidecar. SNS is read through SQS: a queue subscribed to the topic, so the
SQS sidecar's settings, under ``WOJAK_SIDECAR_SNS_*`` (``_QUEUE_URL``, ``_DEAD_LETTER_QUEUE_URL``,
``_REGION``, ``_ENDPOINT``, ``_BATCH_SIZE``, ``_WAIT_TIME``, ``_VISIBILITY``, ``_RECEIVERS``), and:

* ``_TOPIC_ARN``: the topic. With the SNS envelope (the default), a notification from another
  topic is dead-lettered ``unexpected_topic``; with raw message delivery, whose SQS messages do
  not name their topic, it is what a missing ``client_order_id`` is derived from (required then);
* ``_RAW_DELIVERY``: ``true`` when the subscription has ``RawMessageDelivery`` (the SQS body is
  the order); otherwise every body must be an SNS ``Notification`` envelope (else
  ``invalid_envelope``).

Or the push endpoint (``_MODE=push``): the sidecar is the topic's HTTPS subscription endpoint
(``_PUSH_HOST``, ``_PUSH_PORT``, ``_PUSH_PATH``; TLS from ``_TLS_CERT_FILE`` / ``_TLS_KEY_FILE``, which
are required off loopback), verifies every message's signature and answers only after the
engine's verdict; ``_TOPIC_ARN`` is then required, and dead letters still go to
``_DEAD_LETTER_QUEUE_URL`` (an SQS queue).

Credentials come only from the environment or the workload's identity (boto3's default chain).
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from wojak.engine.protocol import is_loopback
from wojak.errors import ConfigError
from wojak.sidecars.sqs.config import SqsSidecarSettings

_ARN = r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$"


class SnsSidecarSettings(SqsSidecarSettings):
    model_config = SettingsConfigDict(env_prefix="WOJAK_SIDECAR_SNS_", extra="ignore", frozen=True)

    topic_arn: str | None = Field(default=None, pattern=_ARN)
    raw_delivery: bool = False
    mode: Literal["sqs", "push"] = "sqs"
    push_host: str = "127.0.0.1"
    push_port: int = Field(default=8443, ge=0, le=65535)
    push_path: str = Field(default="/sns", pattern=r"^/[A-Za-z0-9._~/-]{0,200}$")
    tls_cert_file: str | None = None
    tls_key_file: str | None = None

    backlog: int = Field(default=256, ge=1, le=100_000)  # push: notifications waiting for the engine; past it 503
    certificate_cache: int = Field(default=16, ge=1, le=1000)  # push: signing certificates kept (by URL)

    @property
    def queue(self) -> str:
        """Where dead letters say they came from: the queue read, or in push mode the topic."""
        return self.topic_arn.rsplit(":", 1)[-1] if self.mode == "push" and self.topic_arn else super().queue

    def to_config(self) -> Self:
        if self.mode == "sqs":
            self.check_queues()
            if self.raw_delivery and not self.topic_arn:
                raise ConfigError(
                    f"{self.settings_prefix}TOPIC_ARN is required with raw message delivery (the SQS messages "
                    "do not name their topic)"
                )
        else:
            self.check_push()
        _ = self.runner
        return self

    def check_push(self) -> None:
        from wojak.engine.protocol import require_secure

        if not self.dead_letter_queue_url:
            raise ConfigError("WOJAK_SIDECAR_SNS_DEAD_LETTER_QUEUE_URL is not set (push mode: dead letters go to an SQS queue)")
        if not self.topic_arn:
            raise ConfigError("WOJAK_SIDECAR_SNS_TOPIC_ARN is required in push mode (only its notifications are taken)")
        for setting, url in (("ENDPOINT", self.endpoint), ("DEAD_LETTER_QUEUE_URL", self.dead_letter_queue_url)):
            if url:
                require_secure(url, "WOJAK_SIDECAR_SNS_" + setting)
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ConfigError("WOJAK_SIDECAR_SNS_TLS_CERT_FILE and _TLS_KEY_FILE go together")
        if not self.tls_cert_file and not is_loopback(self.push_host):
            raise ConfigError(
                "the SNS push endpoint off loopback needs TLS: set WOJAK_SIDECAR_SNS_TLS_CERT_FILE and "
                "_TLS_KEY_FILE (SNS delivers to an https:// endpoint)"
            )

    def __repr__(self) -> str:
        if self.mode == "push":
            scheme = "https" if self.tls_cert_file else "http"
            where = f"{scheme}://{self.push_host}:{self.push_port}{self.push_path}"
            return f"SnsSidecarSettings(topic={self.topic_arn!r}, endpoint={where})"
        return f"SnsSidecarSettings(topic={self.topic_arn!r}, raw={self.raw_delivery}, via {super().__repr__()})"
