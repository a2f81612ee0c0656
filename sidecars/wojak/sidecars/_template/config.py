"""Settings of the BROKER sidecar: ``WOJAK_SIDECAR_TEMPLATE_*`` (``_<BROKER>_``) for the broker;
the settings every broker sidecar shares (``WOJAK_SIDECAR_ACCOUNTS``, concurrency, drain,
backoff, health port, body cap, settle timeout and attempts, ``WOJAK_ENGINE_SOCKET``) come from
the kit's ``BrokerSidecarSettings``: declare none of them again.

Declared once: the settings object (frozen) is the configuration the source and ``serve`` read;
no dataclass repeats its fields. Credentials come only from the environment; a plain-text
endpoint is refused off loopback (``require_secure``).
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator
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

    @model_validator(mode="after")
    def _secure(self) -> Self:
        require_secure(self.url.get_secret_value(), "WOJAK_SIDECAR_TEMPLATE_URL")
        return self

    @property
    def runner(self) -> RunnerConfig:
        # never more in flight than the broker hands out: every message in flight is unsettled
        return self.runner_config(min(self.concurrency or self.prefetch, self.prefetch))

    def to_config(self) -> TemplateSidecarSettings:
        """What `wojak sidecar <broker>` hands ``serve``: these settings, once the shared ones are
        complete (``WOJAK_SIDECAR_ACCOUNTS`` is required: refused here, in one line)."""
        _ = self.runner
        return self

    def __repr__(self) -> str:  # never print credentials
        return f"TemplateSidecarSettings(queue={self.queue!r}, prefetch={self.prefetch})"
