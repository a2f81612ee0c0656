"""Settings of the SQS sidecar: ``WOJAK_SIDECAR_SQS_*`` for the queue; the settings every broker
sidecar shares (``WOJAK_SIDECAR_ACCOUNTS``, concurrency, drain, backoff, health port, body cap,
settle timeout and attempts, ``WOJAK_ENGINE_SOCKET``) come from the kit's ``BrokerSidecarSettings``.

Credentials come only from the environment or the workload's identity (boto3's default chain:
``AWS_*`` variables, web identity / IRSA, the instance or task role); none is a setting here.
A plain-text endpoint (``http://``) is refused off loopback (``require_secure``).
"""

from __future__ import annotations

import re
from typing import Self
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
    # received and not yet settled at most; default: the runner's concurrency and one batch ahead
    max_held: int | None = Field(default=None, ge=1, le=100_000)
    close_timeout: float = Field(default=5.0, gt=0, le=300)  # seconds the shutdown waits for a long poll in progress

    @field_validator("queue_url", "dead_letter_queue_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value:
            queue_name(value)
        return value

    @property
    def settings_prefix(self) -> str:
        """What the messages about settings name (the SNS sidecar reads SQS under its own prefix)."""
        return str(self.model_config.get("env_prefix", "WOJAK_SIDECAR_SQS_"))

    @property
    def held_limit(self) -> int:
        """Received and not yet settled at most: the runner's concurrency and one batch ahead."""
        return self.max_held or (self.concurrency or 64) + self.batch_size

    @property
    def runner(self) -> RunnerConfig:
        return self.runner_config(self.concurrency or 64)

    @property
    def queue(self) -> str:
        return queue_name(self.queue_url)

    @property
    def fifo(self) -> bool:
        return self.queue.endswith(".fifo")

    def check_queues(self) -> None:
        """The checks across settings, each a ``ConfigError`` naming its setting (raised here, not
        in a validator, so they stay one line)."""
        prefix = self.settings_prefix
        for name, value in (("QUEUE_URL", self.queue_url), ("DEAD_LETTER_QUEUE_URL", self.dead_letter_queue_url)):
            if not value:
                raise ConfigError(f"{prefix}{name} is not set")
        if self.fifo != self.dead_letter_queue_url.endswith(".fifo"):
            raise ConfigError(
                f"{prefix}DEAD_LETTER_QUEUE_URL: a FIFO queue needs a FIFO dead-letter queue, a standard queue a standard one"
            )
        for setting, url in (
            ("ENDPOINT", self.endpoint),
            ("QUEUE_URL", self.queue_url),
            ("DEAD_LETTER_QUEUE_URL", self.dead_letter_queue_url),
        ):
            if url:
                require_secure(url, prefix + setting)  # http:// only on loopback

    def to_config(self) -> Self:
        """What `wojak sidecar sqs` hands ``serve``: these settings, once the checks across them hold
        and the shared ones are complete (``WOJAK_SIDECAR_ACCOUNTS`` is required)."""
        self.check_queues()
        _ = self.runner
        return self

    def __repr__(self) -> str:
        dead = queue_name(self.dead_letter_queue_url) if self.dead_letter_queue_url else None
        queue = self.queue if self.queue_url else None
        return (
            f"{type(self).__name__}(queue={queue!r}, dead_letters={dead!r}, "
            f"batch={self.batch_size}, wait={self.wait_time}s, visibility={self.visibility}s)"
        )
