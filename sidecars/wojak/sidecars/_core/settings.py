"""The settings every broker sidecar shares (``WOJAK_SIDECAR_*``, ``WOJAK_ENGINE_SOCKET``); a
broker's settings class subclasses ``BrokerSidecarSettings`` with its own prefix and fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from wojak.engine.protocol import Principal, PrincipalError, default_socket_path
from wojak.errors import ConfigError


@dataclass(frozen=True)
class RunnerConfig:
    """What every broker sidecar needs besides its broker settings."""

    engine_socket: str
    engine_deadline: float = 5.0
    engine_window: int = 1024
    engine_batch: int = 64  # orders sent to the engine in one request, at most
    engine_linger: float = 0.0  # seconds an order may wait for others to join its request
    concurrency: int = 64
    drain_seconds: float = 20.0
    backoff_base: float = 0.25
    backoff_max: float = 30.0
    health_host: str = "127.0.0.1"
    health_port: int | None = 8081  # None: no health server
    accounts: tuple[str, ...] = ()  # account patterns this source may trade (WOJAK_SIDECAR_ACCOUNTS)
    settle_timeout: float = 10.0  # seconds one broker settlement (ack, nack, dead letter's publish) may take
    settle_attempts: int = 5  # failed settlements of one message before it is given up
    carries: str = "orders"  # what the source's messages are: ORDERS or TICKS (WOJAK_SIDECAR_CARRIES)


ACCOUNTS_ENV = "WOJAK_SIDECAR_ACCOUNTS"
CARRIES_ENV = "WOJAK_SIDECAR_CARRIES"
# What a source carries: orders (each sent to the engine under orders:write for the accounts of
# WOJAK_SIDECAR_ACCOUNTS), or market data ticks (sent under ticks:write; the engine's tick rules
# drop a repeated or older sequence, so redundant collectors may publish the same ticks).
ORDERS = "orders"
TICKS = "ticks"


def parse_accounts(value: str | None) -> tuple[str, ...]:
    """``WOJAK_SIDECAR_ACCOUNTS``: comma-separated account patterns (fnmatch ``*`` and ``?``), e.g.
    ``desk-1,desk-2-*``. Required: a broker sidecar trades only the accounts it names."""
    patterns = tuple(p.strip() for p in (value or "").split(",") if p.strip())
    if not patterns:
        raise ConfigError(
            f"{ACCOUNTS_ENV} is not set: name the accounts this sidecar may trade, comma-separated "
            "patterns such as desk-1,desk-2-* (anyone who can publish to the broker trades as them)"
        )
    try:
        Principal.of("sidecar", patterns, ())
    except PrincipalError as exc:
        raise ConfigError(f"{ACCOUNTS_ENV}: {str(exc).removeprefix('principal sidecar: ')}") from None
    return patterns


class BrokerSidecarSettings(BaseSettings):
    """The settings every broker sidecar shares (``WOJAK_SIDECAR_*`` and ``WOJAK_ENGINE_SOCKET``);
    a broker's settings class subclasses it with its own ``env_prefix`` and fields."""

    # populate_by_name: code (tests, the testing kit) passes fields by name; the environment uses the aliases
    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    engine_socket: str = Field(default_factory=default_socket_path, validation_alias="WOJAK_ENGINE_SOCKET")
    engine_deadline: float = Field(default=5.0, gt=0, validation_alias="WOJAK_SIDECAR_ENGINE_DEADLINE")
    engine_window: int = Field(default=1024, ge=1, validation_alias="WOJAK_SIDECAR_ENGINE_WINDOW")
    # orders handled in the same turn of the loop (or within the linger) go to the engine as one request
    engine_batch: int = Field(default=64, ge=1, le=256, validation_alias="WOJAK_SIDECAR_ENGINE_BATCH")
    engine_linger_ms: float = Field(default=0.0, ge=0, le=50, validation_alias="WOJAK_SIDECAR_ENGINE_LINGER_MS")
    concurrency: int | None = Field(default=None, ge=1, le=10_000, validation_alias="WOJAK_SIDECAR_CONCURRENCY")
    drain_seconds: float = Field(default=20.0, ge=0, validation_alias="WOJAK_SIDECAR_DRAIN_SECONDS")
    # a `retry` is requeued after backoff_base * 2**(attempt - 1) seconds (jittered), at most backoff_max
    backoff_base: float = Field(default=0.25, gt=0, le=60, validation_alias="WOJAK_SIDECAR_BACKOFF_BASE")
    backoff_max: float = Field(default=30.0, gt=0, le=600, validation_alias="WOJAK_SIDECAR_BACKOFF_MAX")
    health_host: str = Field(default="127.0.0.1", validation_alias="WOJAK_SIDECAR_HEALTH_HOST")
    health_port: int = Field(default=8081, ge=0, le=65535, validation_alias="WOJAK_SIDECAR_HEALTH_PORT")
    # required (checked in runner_config, so the refusal is one line naming it)
    accounts: str | None = Field(default=None, validation_alias=ACCOUNTS_ENV)
    # a larger message is dead-lettered ``body_too_large`` without being parsed
    max_body_bytes: int = Field(default=65536, ge=1024, le=64 * 1024 * 1024, validation_alias="WOJAK_SIDECAR_MAX_BODY_BYTES")
    # every broker settlement is bounded; a message whose settlements failed this often is given up
    settle_timeout: float = Field(default=10.0, gt=0, le=300, validation_alias="WOJAK_SIDECAR_SETTLE_TIMEOUT")
    settle_attempts: int = Field(default=5, ge=1, le=1000, validation_alias="WOJAK_SIDECAR_SETTLE_ATTEMPTS")
    carries: Literal["orders", "ticks"] = Field(default="orders", validation_alias=CARRIES_ENV)

    def runner_config(self, concurrency: int) -> RunnerConfig:
        """The shared part as a ``RunnerConfig``; ``concurrency`` is the broker's own bound."""
        return RunnerConfig(
            engine_socket=self.engine_socket,
            engine_deadline=self.engine_deadline,
            engine_window=self.engine_window,
            engine_batch=self.engine_batch,
            engine_linger=self.engine_linger_ms / 1000,
            concurrency=concurrency,
            drain_seconds=self.drain_seconds,
            backoff_base=self.backoff_base,
            backoff_max=self.backoff_max,
            health_host=self.health_host,
            health_port=self.health_port or None,
            # a ticks source trades nothing: its principal has no account
            accounts=parse_accounts(self.accounts) if self.carries == ORDERS else (),
            settle_timeout=self.settle_timeout,
            settle_attempts=self.settle_attempts,
            carries=self.carries,
        )


__all__ = ["ACCOUNTS_ENV", "CARRIES_ENV", "ORDERS", "TICKS", "BrokerSidecarSettings", "RunnerConfig", "parse_accounts"]
