"""Settings of the BROKER sidecar: ``WOJAK_SIDECAR_TEMPLATE_*`` (``_<BROKER>_``) for the broker; the settings every
broker sidecar shares (``WOJAK_SIDECAR_ACCOUNTS``, concurrency, drain, backoff, health port, body
cap, settle timeout and attempts, ``WOJAK_ENGINE_SOCKET``) come from the kit's
``BrokerSidecarSettings``: declare none of them again.

Credentials come only from the environment. A plain-text endpoint is refused off loopback
(``require_secure``).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from wojak.engine.protocol import require_secure
from wojak.sidecars._core.settings import BrokerSidecarSettings, RunnerConfig

_NAME = r"^[A-Za-z0-9._:-]{1,200}$"


class TemplateSidecarSettings(BrokerSidecarSettings):
    model_config = SettingsConfigDict(env_prefix="WOJAK_SIDECAR_TEMPLATE_", extra="ignore", frozen=True)

    url: SecretStr = SecretStr("broker://127.0.0.1:0000/")  # TODO(broker): the local broker's default
    queue: str = Field(default="wojak.orders", pattern=_NAME)  # TODO(broker): queue / topic / stream
    prefetch: int = Field(default=64, ge=1, le=10_000)  # what the broker hands out before an ack
    dead_letter_queue: str = Field(default="wojak.orders.dlq", pattern=_NAME)

    def to_config(self) -> TemplateSidecarConfig:
        return TemplateSidecarConfig(
            url=self.url.get_secret_value(), queue=self.queue, prefetch=self.prefetch,
            dead_letter_queue=self.dead_letter_queue, max_body_bytes=self.max_body_bytes,
            settle_timeout=self.settle_timeout,
            # never more in flight than the broker hands out: every message in flight is unsettled
            runner=self.runner_config(min(self.concurrency or self.prefetch, self.prefetch)),
        )  # fmt: skip


@dataclass(frozen=True)
class TemplateSidecarConfig:
    url: str
    queue: str = "wojak.orders"
    prefetch: int = 64
    dead_letter_queue: str = "wojak.orders.dlq"
    max_body_bytes: int = 65536
    settle_timeout: float = 10.0
    runner: RunnerConfig | None = None

    def __post_init__(self) -> None:
        require_secure(self.url, "WOJAK_SIDECAR_TEMPLATE_URL")

    def __repr__(self) -> str:  # never print credentials
        return f"TemplateSidecarConfig(queue={self.queue!r}, prefetch={self.prefetch})"
