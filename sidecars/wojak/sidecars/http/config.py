"""Settings of the HTTP sidecar (``WOJAK_SIDECAR_*``; keys from ``WOJAK_API_KEYS_FILE`` or ``WOJAK_API_KEYS``)."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from wojak.engine.protocol import default_socket_path
from wojak.errors import ConfigError


class HttpSidecarSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WOJAK_SIDECAR_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    engine_socket: str = Field(default_factory=default_socket_path, validation_alias="WOJAK_ENGINE_SOCKET")
    api_keys: str = Field(default="", validation_alias="WOJAK_API_KEYS")
    api_keys_file: str = Field(default="", validation_alias="WOJAK_API_KEYS_FILE")
    api_keys_reload_seconds: float = Field(default=1.0, gt=0, validation_alias="WOJAK_API_KEYS_RELOAD_SECONDS")
    dev: str = Field(default="", validation_alias="WOJAK_DEV")
    max_body_bytes: int = Field(default=64 * 1024, ge=256)
    engine_deadline: float = Field(default=5.0, gt=0)
    engine_window: int = Field(default=1024, ge=1)
    engine_batch: int = Field(default=64, ge=1, le=256)  # orders sent to the engine in one request, at most
    engine_linger_ms: float = Field(default=0.0, ge=0, le=50)
    # Connection limits (the HTTP server itself; see server.py).
    max_header_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    max_headers: int = Field(default=100, ge=8, le=10_000)
    header_timeout: float = Field(default=10.0, gt=0)
    body_timeout: float = Field(default=10.0, gt=0)
    keepalive_timeout: float = Field(default=5.0, gt=0)
    max_connections: int = Field(default=1000, ge=1)

    @field_validator("api_keys")
    @classmethod
    def _keys_long_enough(cls, value: str) -> str:
        for key in filter(None, (k.strip() for k in value.split(","))):
            if len(key) < 16:
                raise ValueError("each key in WOJAK_API_KEYS must be at least 16 characters")
        return value

    def to_config(self) -> "HttpSidecarConfig":
        keys = tuple(k.strip() for k in self.api_keys.split(",") if k.strip())
        keys_file = self.api_keys_file.strip() or None
        if keys and keys_file:
            raise ConfigError(
                "WOJAK_API_KEYS_FILE and WOJAK_API_KEYS are both set: use WOJAK_API_KEYS_FILE (scoped keys)"
                " or WOJAK_API_KEYS (development: one key with every account and scope), not both"
            )
        if not keys and not keys_file:
            raise ConfigError(
                "WOJAK_API_KEYS is empty and WOJAK_API_KEYS_FILE is not set: the HTTP intake needs at least one"
                " API key (a keys file from `wojak keys new`, or WOJAK_API_KEYS for development)"
            )
        if keys_file:
            from wojak.sidecars._core.keys import load_keys_file

            load_keys_file(keys_file)  # refuse to start on a bad file (KeysFileError: a ConfigError)
        return HttpSidecarConfig(
            host=self.host,
            port=self.port,
            engine_socket=self.engine_socket,
            api_keys=keys,
            api_keys_file=keys_file,
            api_keys_reload_seconds=self.api_keys_reload_seconds,
            dev=self.dev.strip().lower() in ("1", "true", "yes"),
            max_body_bytes=self.max_body_bytes,
            engine_deadline=self.engine_deadline,
            engine_window=self.engine_window,
            engine_batch=self.engine_batch,
            engine_linger=self.engine_linger_ms / 1000,
            max_header_bytes=self.max_header_bytes,
            max_headers=self.max_headers,
            header_timeout=self.header_timeout,
            body_timeout=self.body_timeout,
            keepalive_timeout=self.keepalive_timeout,
            max_connections=self.max_connections,
        )


@dataclass(frozen=True)
class HttpSidecarConfig:
    engine_socket: str
    api_keys: tuple[str, ...] = ()  # WOJAK_API_KEYS: the development principal "dev" (every account, every scope)
    api_keys_file: str | None = None  # WOJAK_API_KEYS_FILE: scoped principals, reloaded when it changes
    api_keys_reload_seconds: float = 1.0
    dev: bool = False  # WOJAK_DEV=1 (set by `wojak dev`): no warning about WOJAK_API_KEYS
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 64 * 1024
    engine_deadline: float = 5.0
    engine_window: int = 1024
    engine_batch: int = 64  # orders sent to the engine in one request, at most
    engine_linger: float = 0.0  # seconds an order may wait for others to join its request
    max_header_bytes: int = 16 * 1024  # request line + headers; past it 431
    max_headers: int = 100  # header lines; past it 431
    header_timeout: float = 10.0  # seconds from a request's first byte (or the connection) to its last header; 408
    body_timeout: float = 10.0  # seconds from the last header to the last body byte; 408, or the connection closed
    keepalive_timeout: float = 5.0  # an idle keep-alive connection is closed after this
    max_connections: int = 1000  # open connections; past it new ones get 503
