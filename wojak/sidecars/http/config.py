"""Settings of the HTTP sidecar (``WOJAK_SIDECAR_*``, keys from ``WOJAK_API_KEYS``)."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from wojak.engine.protocol import default_socket_path


class HttpSidecarSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WOJAK_SIDECAR_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    engine_socket: str = Field(default_factory=default_socket_path, validation_alias="WOJAK_ENGINE_SOCKET")
    api_keys: str = Field(default="", validation_alias="WOJAK_API_KEYS")
    max_body_bytes: int = Field(default=64 * 1024, ge=256)
    engine_deadline: float = Field(default=5.0, gt=0)
    engine_window: int = Field(default=1024, ge=1)

    @field_validator("api_keys")
    @classmethod
    def _keys_long_enough(cls, value: str) -> str:
        for key in filter(None, (k.strip() for k in value.split(","))):
            if len(key) < 16:
                raise ValueError("each key in WOJAK_API_KEYS must be at least 16 characters")
        return value

    def to_config(self) -> "HttpSidecarConfig":
        keys = tuple(k.strip() for k in self.api_keys.split(",") if k.strip())
        if not keys:
            raise ValueError("WOJAK_API_KEYS is empty: the HTTP intake needs at least one API key")
        return HttpSidecarConfig(
            host=self.host, port=self.port, engine_socket=self.engine_socket, api_keys=keys,
            max_body_bytes=self.max_body_bytes, engine_deadline=self.engine_deadline, engine_window=self.engine_window,
        )  # fmt: skip


@dataclass(frozen=True)
class HttpSidecarConfig:
    engine_socket: str
    api_keys: tuple[str, ...]
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 64 * 1024
    engine_deadline: float = 5.0
    engine_window: int = 1024
