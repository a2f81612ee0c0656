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

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from wojak.engine.protocol import is_loopback
from wojak.errors import ConfigError
from wojak.sidecars._core.settings import RunnerConfig
from wojak.sidecars.sqs.config import SqsSidecarConfig, SqsSidecarSettings, queue_name

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

    def config_fields(self) -> dict[str, Any]:
        return {**super().config_fields(), "topic_arn": self.topic_arn, "raw_delivery": self.raw_delivery}

    def to_config(self) -> SnsSidecarConfig | SnsPushConfig:  # type: ignore[override]
        if self.mode == "sqs":
            return SnsSidecarConfig(**self.config_fields())
        if not self.dead_letter_queue_url:
            raise ConfigError("WOJAK_SIDECAR_SNS_DEAD_LETTER_QUEUE_URL is not set (push mode: dead letters go to an SQS queue)")
        concurrency = self.concurrency or 64
        return SnsPushConfig(
            topic_arn=self.topic_arn or "",
            dead_letter_queue_url=self.dead_letter_queue_url,
            region=self.region,
            endpoint=self.endpoint,
            host=self.push_host,
            port=self.push_port,
            path=self.push_path,
            tls_cert_file=self.tls_cert_file,
            tls_key_file=self.tls_key_file,
            max_body_bytes=self.max_body_bytes,
            settle_timeout=self.settle_timeout,
            runner=self.runner_config(concurrency),
        )


@dataclass(frozen=True)
class SnsSidecarConfig(SqsSidecarConfig):
    topic_arn: str | None = None
    raw_delivery: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.raw_delivery and not self.topic_arn:
            raise ConfigError(
                f"{self.settings_prefix}TOPIC_ARN is required with raw message delivery (the SQS messages "
                "do not name their topic)"
            )

    def __repr__(self) -> str:
        return f"SnsSidecarConfig(topic={self.topic_arn!r}, raw={self.raw_delivery}, via {SqsSidecarConfig.__repr__(self)})"


@dataclass(frozen=True)
class SnsPushConfig:
    """The push endpoint: the sidecar as the topic's HTTPS subscription."""

    topic_arn: str
    dead_letter_queue_url: str
    region: str | None = None
    endpoint: str | None = None  # SQS's, for the dead letters
    host: str = "127.0.0.1"
    port: int = 8443
    path: str = "/sns"
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    max_body_bytes: int = 65536
    settle_timeout: float = 10.0
    backlog: int = 256  # notifications waiting for the engine; past it 503 (SNS retries)
    certificate_cache: int = 16  # signing certificates kept (by URL)
    runner: RunnerConfig | None = None

    def __post_init__(self) -> None:
        import re

        from wojak.engine.protocol import require_secure

        if not re.fullmatch(_ARN, self.topic_arn or ""):
            raise ConfigError("WOJAK_SIDECAR_SNS_TOPIC_ARN is required in push mode (only its notifications are taken)")
        queue_name(self.dead_letter_queue_url)
        for setting, url in (("ENDPOINT", self.endpoint), ("DEAD_LETTER_QUEUE_URL", self.dead_letter_queue_url)):
            if url:
                require_secure(url, "WOJAK_SIDECAR_SNS_" + setting)
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ConfigError("WOJAK_SIDECAR_SNS_TLS_CERT_FILE and _TLS_KEY_FILE go together")
        if not self.tls_cert_file and not is_loopback(self.host):
            raise ConfigError(
                "the SNS push endpoint off loopback needs TLS: set WOJAK_SIDECAR_SNS_TLS_CERT_FILE and "
                "_TLS_KEY_FILE (SNS delivers to an https:// endpoint)"
            )

    @property
    def queue(self) -> str:  # where dead letters say they came from
        return self.topic_arn.rsplit(":", 1)[-1]

    def __repr__(self) -> str:
        scheme = "https" if self.tls_cert_file else "http"
        return f"SnsPushConfig(topic={self.topic_arn!r}, endpoint={scheme}://{self.host}:{self.port}{self.path})"
