"""Settings of the RabbitMQ sidecar: ``WOJAK_SIDECAR_RABBITMQ_*`` for the broker, the shared
``WOJAK_SIDECAR_*`` names for the engine, concurrency, drain and health port.

Credentials come only from the environment (the URL); the default is the local broker's
``guest`` account, which RabbitMQ accepts only on loopback.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from wojak.engine.protocol import default_socket_path
from wojak.sidecars._core.runner import RunnerConfig

_NAME = r"^[A-Za-z0-9._:-]{1,200}$"


class RabbitMQSidecarSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WOJAK_SIDECAR_RABBITMQ_", extra="ignore")

    url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    queue: str = Field(default="wojak.orders", pattern=_NAME)
    prefetch: int = Field(default=64, ge=1, le=10_000)
    dead_letter_exchange: str = Field(default="wojak.orders.dlx", pattern=_NAME)
    dead_letter_queue: str = Field(default="wojak.orders.dlq", pattern=_NAME)
    reply_exchange: str | None = Field(default=None, pattern=_NAME)
    declare_topology: bool = True
    # shared by every broker sidecar
    engine_socket: str = Field(default_factory=default_socket_path, validation_alias="WOJAK_ENGINE_SOCKET")
    engine_deadline: float = Field(default=5.0, gt=0, validation_alias="WOJAK_SIDECAR_ENGINE_DEADLINE")
    engine_window: int = Field(default=1024, ge=1, validation_alias="WOJAK_SIDECAR_ENGINE_WINDOW")
    concurrency: int | None = Field(default=None, ge=1, le=10_000, validation_alias="WOJAK_SIDECAR_CONCURRENCY")
    drain_seconds: float = Field(default=20.0, ge=0, validation_alias="WOJAK_SIDECAR_DRAIN_SECONDS")
    backoff_max: float = Field(default=30.0, gt=0, le=600, validation_alias="WOJAK_SIDECAR_BACKOFF_MAX")
    health_host: str = Field(default="127.0.0.1", validation_alias="WOJAK_SIDECAR_HEALTH_HOST")
    health_port: int = Field(default=8081, ge=0, le=65535, validation_alias="WOJAK_SIDECAR_HEALTH_PORT")

    @field_validator("url")
    @classmethod
    def _amqp(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("amqp://", "amqps://")):
            raise ValueError("must be an amqp:// or amqps:// URL")
        return value

    def to_config(self) -> "RabbitMQSidecarConfig":
        return RabbitMQSidecarConfig(
            url=self.url.get_secret_value(), queue=self.queue, prefetch=self.prefetch,
            dead_letter_exchange=self.dead_letter_exchange, dead_letter_queue=self.dead_letter_queue,
            reply_exchange=self.reply_exchange, declare_topology=self.declare_topology,
            runner=RunnerConfig(
                engine_socket=self.engine_socket, engine_deadline=self.engine_deadline, engine_window=self.engine_window,
                # never more in flight than the broker hands out: every message in flight is unacked
                concurrency=min(self.concurrency or self.prefetch, self.prefetch),
                drain_seconds=self.drain_seconds, backoff_max=self.backoff_max,
                health_host=self.health_host, health_port=self.health_port or None,
            ),
        )  # fmt: skip


@dataclass(frozen=True)
class RabbitMQSidecarConfig:
    url: str = "amqp://guest:guest@127.0.0.1:5672/"
    queue: str = "wojak.orders"
    prefetch: int = 64
    dead_letter_exchange: str = "wojak.orders.dlx"
    dead_letter_queue: str = "wojak.orders.dlq"
    reply_exchange: str | None = None
    declare_topology: bool = True
    reconnect_interval: float = 1.0
    runner: RunnerConfig | None = None

    def __repr__(self) -> str:  # never print the credentials in the URL
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        where = f"{parts.scheme}://{parts.hostname}:{parts.port or 5672}{parts.path}"
        return f"RabbitMQSidecarConfig(url={where!r}, queue={self.queue!r}, prefetch={self.prefetch})"
