"""Settings of the Pub/Sub sidecar: ``WOJAK_SIDECAR_PUBSUB_*`` for the subscription; the settings
every broker sidecar shares come from the kit's ``BrokerSidecarSettings``.

Declared once: the settings object (frozen) is the configuration the source and ``serve`` read.
Credentials come only from the environment or the workload's identity (Application Default
Credentials: GKE workload identity, ``GOOGLE_APPLICATION_CREDENTIALS``); ``PUBSUB_EMULATOR_HOST``
points the client at an emulator (plain text: loopback only).
"""

from __future__ import annotations

import os
from typing import Self

from pydantic import Field, model_validator
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

    @model_validator(mode="after")
    def _emulator_on_loopback(self) -> Self:
        emulator = os.environ.get("PUBSUB_EMULATOR_HOST")
        if emulator:
            require_secure(f"http://{emulator}", "PUBSUB_EMULATOR_HOST")  # the emulator speaks plain text
        return self

    @property
    def runner(self) -> RunnerConfig:
        # never more in flight than the flow control leases: every message in flight is unsettled
        return self.runner_config(min(self.concurrency or self.max_messages, self.max_messages))

    def to_config(self) -> Self:
        """What `wojak sidecar pubsub` hands ``serve``: these settings, once the required ones are
        set (each refusal one line naming the setting; ``WOJAK_SIDECAR_ACCOUNTS`` is required)."""
        for name in ("project", "subscription", "dead_letter_topic"):
            if not getattr(self, name):
                raise ConfigError(f"WOJAK_SIDECAR_PUBSUB_{name.upper()} is not set")
        _ = self.runner
        return self

    @property
    def subscription_path(self) -> str:
        return f"projects/{self.project}/subscriptions/{self.subscription}"

    @property
    def dead_letter_topic_path(self) -> str:
        return f"projects/{self.project}/topics/{self.dead_letter_topic}"

    def __repr__(self) -> str:
        return (
            f"PubSubSidecarSettings(subscription={self.subscription_path!r}, "
            f"dead_letters={self.dead_letter_topic_path!r}, max_messages={self.max_messages})"
        )
