"""Settings of the Pub/Sub sidecar: ``WOJAK_SIDECAR_PUBSUB_*`` for the subscription; the settings
every broker sidecar shares come from the kit's ``BrokerSidecarSettings``.

Credentials come only from the environment or the workload's identity (Application Default
Credentials: GKE workload identity, ``GOOGLE_APPLICATION_CREDENTIALS``); ``PUBSUB_EMULATOR_HOST``
points the client at an emulator (plain text: loopback only).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from wojak.engine.protocol import require_secure
from wojak.errors import ConfigError
from wojak.sidecars._core.settings import BrokerSidecarSettings, RunnerConfig

_ID = r"^[A-Za-z][A-Za-z0-9._~%+-]{2,254}$"
_PROJECT = r"^[a-z][a-z0-9-]{4,61}[a-z0-9]$|^[A-Za-z0-9:._-]{1,100}$"


class PubSubSidecarSettings(BrokerSidecarSettings):
    model_config = SettingsConfigDict(env_prefix="WOJAK_SIDECAR_PUBSUB_", extra="ignore", frozen=True)

    project: str = Field(default="", pattern=r"^$|" + _PROJECT)  # required
    subscription: str = Field(default="", pattern=r"^$|" + _ID)  # required: the subscription's id
    dead_letter_topic: str = Field(default="", pattern=r"^$|" + _ID)  # required: the topic's id
    max_messages: int = Field(default=64, ge=1, le=10_000)  # flow control: messages leased and unsettled
    max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)  # flow control: their bytes
    # each lease extension, seconds; also the streaming pull's ack deadline: a message Pub/Sub sent on a
    # stream that closed before the client read it (a stop, a crash) comes back after this long
    lease_extension: int = Field(default=10, ge=10, le=600)

    def to_config(self) -> PubSubSidecarConfig:
        for name in ("project", "subscription", "dead_letter_topic"):
            if not getattr(self, name):
                raise ConfigError(f"WOJAK_SIDECAR_PUBSUB_{name.upper()} is not set")
        concurrency = min(self.concurrency or self.max_messages, self.max_messages)
        return PubSubSidecarConfig(
            project=self.project,
            subscription=self.subscription,
            dead_letter_topic=self.dead_letter_topic,
            max_messages=self.max_messages,
            max_bytes=self.max_bytes,
            lease_extension=self.lease_extension,
            max_body_bytes=self.max_body_bytes,
            settle_timeout=self.settle_timeout,
            runner=self.runner_config(concurrency),
        )


@dataclass(frozen=True)
class PubSubSidecarConfig:
    project: str
    subscription: str
    dead_letter_topic: str
    max_messages: int = 64
    max_bytes: int = 64 * 1024 * 1024
    lease_extension: int = 10
    max_body_bytes: int = 65536
    settle_timeout: float = 10.0
    runner: RunnerConfig | None = None

    def __post_init__(self) -> None:
        emulator = os.environ.get("PUBSUB_EMULATOR_HOST")
        if emulator:
            require_secure(f"http://{emulator}", "PUBSUB_EMULATOR_HOST")  # the emulator speaks plain text

    @property
    def subscription_path(self) -> str:
        return f"projects/{self.project}/subscriptions/{self.subscription}"

    @property
    def dead_letter_topic_path(self) -> str:
        return f"projects/{self.project}/topics/{self.dead_letter_topic}"

    def __repr__(self) -> str:
        return (
            f"PubSubSidecarConfig(subscription={self.subscription_path!r}, dead_letters={self.dead_letter_topic_path!r}, "
            f"max_messages={self.max_messages})"
        )
