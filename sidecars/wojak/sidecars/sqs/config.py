"""Settings of the SQS sidecar: ``WOJAK_SIDECAR_SQS_*`` for the queue; the settings every broker
sidecar shares (``WOJAK_SIDECAR_ACCOUNTS``, concurrency, drain, backoff, health port, body cap,
settle timeout and attempts, ``WOJAK_ENGINE_SOCKET``) come from the kit's ``BrokerSidecarSettings``.

Credentials come only from the environment or the workload's identity (boto3's default chain:
``AWS_*`` variables, web identity / IRSA, the instance or task role); none is a setting here.
A plain-text endpoint (``http://``) is refused off loopback (``require_secure``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from wojak.engine.protocol import require_secure
from wojak.errors import ConfigError
from wojak.sidecars._core.settings import BrokerSidecarSettings, RunnerConfig

_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$|^[A-Za-z0-9_-]{1,75}\.fifo$")
_REGION = r"^[a-z0-9-]{1,32}$"
MAX_BATCH = 10  # what one ReceiveMessage / DeleteMessageBatch / ChangeMessageVisibilityBatch takes
MAX_WAIT = 20  # SQS's longest long poll
MAX_VISIBILITY = 43200  # 12 hours


def queue_name(url: str) -> str:
    """The queue's name: the last path segment of its URL (``.../123456789012/orders.fifo``)."""
    name = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    if not _QUEUE_NAME.fullmatch(name):
        raise ConfigError(f"{url[:200]!r} is not an SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>)")
    return name


class SqsSidecarSettings(BrokerSidecarSettings):
    model_config = SettingsConfigDict(env_prefix="WOJAK_SIDECAR_SQS_", extra="ignore", frozen=True)

    queue_url: str = ""  # required
    dead_letter_queue_url: str = ""  # required: where poison messages go, with their reason
    region: str | None = Field(default=None, pattern=_REGION)  # else AWS_REGION / AWS_DEFAULT_REGION
    endpoint: str | None = None  # e.g. a VPC endpoint or a local emulator; http:// only on loopback
    batch_size: int = Field(default=10, ge=1, le=MAX_BATCH)  # messages per ReceiveMessage
    wait_time: int = Field(default=10, ge=0, le=MAX_WAIT)  # long-poll seconds
    visibility: int = Field(default=30, ge=2, le=MAX_VISIBILITY)  # each lease (and each extension), seconds
    receivers: int = Field(default=2, ge=1, le=16)  # concurrent long polls

    @field_validator("queue_url", "dead_letter_queue_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value:
            queue_name(value)
        return value

    def config_fields(self) -> dict[str, Any]:
        """What the config is made of (the SNS sidecar, which reads SQS, makes its own from it)."""
        prefix = self.model_config.get("env_prefix", "WOJAK_SIDECAR_SQS_")
        for name, value in (("QUEUE_URL", self.queue_url), ("DEAD_LETTER_QUEUE_URL", self.dead_letter_queue_url)):
            if not value:
                raise ConfigError(f"{prefix}{name} is not set")
        concurrency = self.concurrency or 64
        return dict(
            queue_url=self.queue_url,
            dead_letter_queue_url=self.dead_letter_queue_url,
            region=self.region,
            endpoint=self.endpoint,
            batch_size=self.batch_size,
            wait_time=self.wait_time,
            visibility=self.visibility,
            receivers=self.receivers,
            max_body_bytes=self.max_body_bytes,
            settle_timeout=self.settle_timeout,
            max_held=concurrency + self.batch_size,
            runner=self.runner_config(concurrency),
            settings_prefix=prefix,
        )

    def to_config(self) -> SqsSidecarConfig:
        return SqsSidecarConfig(**self.config_fields())


@dataclass(frozen=True)
class SqsSidecarConfig:
    queue_url: str
    dead_letter_queue_url: str
    region: str | None = None
    endpoint: str | None = None
    batch_size: int = 10
    wait_time: int = 10
    visibility: int = 30
    receivers: int = 2
    max_body_bytes: int = 65536
    settle_timeout: float = 10.0
    max_held: int = 74  # received and not yet settled (the runner's concurrency and one batch ahead)
    close_timeout: float = 5.0  # seconds the shutdown waits for a long poll in progress
    runner: RunnerConfig | None = None
    settings_prefix: str = "WOJAK_SIDECAR_SQS_"  # what the messages about settings name

    def __post_init__(self) -> None:
        queue_name(self.queue_url)
        queue_name(self.dead_letter_queue_url)
        if self.fifo != self.dead_letter_queue_url.endswith(".fifo"):
            raise ConfigError(
                f"{self.settings_prefix}DEAD_LETTER_QUEUE_URL: a FIFO queue needs a FIFO dead-letter queue, "
                "a standard queue a standard one"
            )
        if not 1 <= self.batch_size <= MAX_BATCH or not 0 <= self.wait_time <= MAX_WAIT:
            raise ConfigError(f"batch size 1..{MAX_BATCH}, wait time 0..{MAX_WAIT}s")
        if not 2 <= self.visibility <= MAX_VISIBILITY:
            raise ConfigError(f"visibility 2..{MAX_VISIBILITY}s")
        for setting, url in (
            ("ENDPOINT", self.endpoint),
            ("QUEUE_URL", self.queue_url),
            ("DEAD_LETTER_QUEUE_URL", self.dead_letter_queue_url),
        ):
            if url:
                require_secure(url, self.settings_prefix + setting)  # http:// only on loopback

    @property
    def queue(self) -> str:
        return queue_name(self.queue_url)

    @property
    def fifo(self) -> bool:
        return self.queue.endswith(".fifo")

    def __repr__(self) -> str:
        return (
            f"SqsSidecarConfig(queue={self.queue!r}, dead_letters={queue_name(self.dead_letter_queue_url)!r}, "
            f"batch={self.batch_size}, wait={self.wait_time}s, visibility={self.visibility}s)"
        )
