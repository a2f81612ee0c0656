"""Settings of the RabbitMQ sidecar: ``WOJAK_SIDECAR_RABBITMQ_*`` for the broker, the shared
``WOJAK_SIDECAR_*`` names for the engine, concurrency, drain and health port.

Credentials come only from the environment (the URL); the default is the local broker's
``guest`` account, which RabbitMQ accepts only on loopback. ``amqp://`` (plain text) is
refused off loopback: use ``amqps://`` (or ``WOJAK_ALLOW_INSECURE_TRANSPORT=1``).
``WOJAK_SIDECAR_ACCOUNTS`` is required: whoever can publish to the queue trades as those accounts.
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from wojak.engine.protocol import require_secure
from wojak.sidecars._core.settings import BrokerSidecarSettings, RunnerConfig

_NAME = r"^[A-Za-z0-9._:-]{1,200}$"
_REPLY_TO_ENV = "WOJAK_SIDECAR_RABBITMQ_REPLY_TO_ALLOWED"


def check_url(url: str) -> None:
    """amqp:// only on loopback, else amqps:// (or WOJAK_ALLOW_INSECURE_TRANSPORT=1)."""
    require_secure(url, "WOJAK_SIDECAR_RABBITMQ_URL")


class RabbitMQSidecarSettings(BrokerSidecarSettings):
    model_config = SettingsConfigDict(env_prefix="WOJAK_SIDECAR_RABBITMQ_", extra="ignore", frozen=True)

    url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    queue: str = Field(default="wojak.orders", pattern=_NAME)
    prefetch: int = Field(default=64, ge=1, le=10_000)
    dead_letter_exchange: str = Field(default="wojak.orders.dlx", pattern=_NAME)
    dead_letter_queue: str = Field(default="wojak.orders.dlq", pattern=_NAME)
    reply_exchange: str | None = Field(default=None, pattern=_NAME)
    # the only queues a message's reply_to may name for its result (comma-separated; none by default)
    reply_to_allowed: str = Field(default="", validation_alias=_REPLY_TO_ENV)
    declare_topology: bool = True
    reconnect_interval: float = Field(default=1.0, gt=0, le=300)  # seconds between reconnect attempts
    close_timeout: float = Field(default=5.0, gt=0, le=300)  # seconds closing the connection may take at shutdown
    # the settings every broker sidecar shares (WOJAK_SIDECAR_ACCOUNTS, ...) come from BrokerSidecarSettings

    @field_validator("url")
    @classmethod
    def _amqp(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("amqp://", "amqps://")):
            raise ValueError("must be an amqp:// or amqps:// URL")
        return value

    @field_validator("reply_to_allowed")
    @classmethod
    def _queue_names(cls, value: str) -> str:
        import re

        for name in (n.strip() for n in value.split(",") if n.strip()):
            if not re.fullmatch(_NAME, name):
                raise ValueError(f"queue name {name[:64]!r} must match {_NAME}")
        return value

    @property
    def reply_queues(self) -> tuple[str, ...]:
        """The queues a message's reply_to may name for its result (none by default)."""
        return tuple(n.strip() for n in self.reply_to_allowed.split(",") if n.strip())

    @property
    def runner(self) -> RunnerConfig:
        # never more in flight than the broker hands out: every message in flight is unacked
        return self.runner_config(min(self.concurrency or self.prefetch, self.prefetch))

    def to_config(self) -> Self:
        """What `wojak sidecar rabbitmq` hands ``serve``: these settings, once the shared ones are
        complete and the URL is safe to use (each refused here, in one line naming the setting)."""
        check_url(self.url.get_secret_value())
        _ = self.runner
        return self

    def __repr__(self) -> str:  # never print the credentials in the URL
        from urllib.parse import urlsplit

        parts = urlsplit(self.url.get_secret_value())
        where = f"{parts.scheme}://{parts.hostname}:{parts.port or 5672}{parts.path}"
        return f"RabbitMQSidecarSettings(url={where!r}, queue={self.queue!r}, prefetch={self.prefetch})"
