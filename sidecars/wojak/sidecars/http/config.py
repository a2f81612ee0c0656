"""Settings of the HTTP sidecar (``WOJAK_SIDECAR_*``; keys from ``WOJAK_API_KEYS_FILE`` or ``WOJAK_API_KEYS``)."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from wojak.engine.protocol import default_socket_path
from wojak.errors import ConfigError


class HttpSidecarSettings(BaseSettings):
    """The HTTP sidecar's settings, read once at start; frozen, they are its configuration."""

    # populate_by_name: code (tests, `wojak dev`) passes fields by name; the environment uses the aliases
    model_config = SettingsConfigDict(env_prefix="WOJAK_SIDECAR_", extra="ignore", frozen=True, populate_by_name=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    engine_socket: str = Field(default_factory=default_socket_path, validation_alias="WOJAK_ENGINE_SOCKET")
    # WOJAK_API_KEYS (comma-separated): the development principal "dev" (every account, every scope)
    api_keys: Annotated[tuple[str, ...], NoDecode] = Field(default=(), validation_alias="WOJAK_API_KEYS")
    # WOJAK_API_KEYS_FILE: scoped principals, reloaded when it changes
    api_keys_file: str | None = Field(default=None, validation_alias="WOJAK_API_KEYS_FILE")
    api_keys_reload_seconds: float = Field(default=1.0, gt=0, validation_alias="WOJAK_API_KEYS_RELOAD_SECONDS")
    # WOJAK_DEV=1 (set by `wojak dev`): no warning about WOJAK_API_KEYS
    dev: bool = Field(default=False, validation_alias="WOJAK_DEV")
    max_body_bytes: int = Field(default=64 * 1024, ge=256)
    engine_deadline: float = Field(default=5.0, gt=0)
    engine_window: int = Field(default=1024, ge=1)
    engine_batch: int = Field(default=64, ge=1, le=256)  # orders sent to the engine in one request, at most
    engine_linger_ms: float = Field(default=0.0, ge=0, le=50)
    # Connection limits (the HTTP server itself; see server.py).
    max_header_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)  # request line + headers; past it 431
    max_headers: int = Field(default=100, ge=8, le=10_000)  # header lines; past it 431
    # seconds from a request's first byte (or the connection) to its last header; 408
    header_timeout: float = Field(default=10.0, gt=0)
    # seconds from the last header to the last body byte; 408, or the connection closed
    body_timeout: float = Field(default=10.0, gt=0)
    keepalive_timeout: float = Field(default=5.0, gt=0)  # an idle keep-alive connection is closed after this
    max_connections: int = Field(default=1000, ge=1)  # open connections; past it new ones get 503

    @field_validator("api_keys", mode="before")
    @classmethod
    def _keys(cls, value: object) -> object:
        if isinstance(value, str):
            value = tuple(k.strip() for k in value.split(",") if k.strip())
        for key in value if isinstance(value, (tuple, list)) else ():
            if isinstance(key, str) and len(key) < 16:
                raise ValueError("each key in WOJAK_API_KEYS must be at least 16 characters")
        return value

    @field_validator("api_keys_file", mode="before")
    @classmethod
    def _file(cls, value: object) -> object:
        return (value.strip() or None) if isinstance(value, str) else value

    @field_validator("dev", mode="before")
    @classmethod
    def _dev(cls, value: object) -> object:
        return value.strip().lower() in ("1", "true", "yes") if isinstance(value, str) else value

    def to_config(self) -> Self:
        """What `wojak sidecar http` serves with: these settings, once the keys are usable (one
        line naming the setting otherwise)."""
        if self.api_keys and self.api_keys_file:
            raise ConfigError(
                "WOJAK_API_KEYS_FILE and WOJAK_API_KEYS are both set: use WOJAK_API_KEYS_FILE (scoped keys)"
                " or WOJAK_API_KEYS (development: one key with every account and scope), not both"
            )
        if not self.api_keys and not self.api_keys_file:
            raise ConfigError(
                "WOJAK_API_KEYS is empty and WOJAK_API_KEYS_FILE is not set: the HTTP intake needs at least one"
                " API key (a keys file from `wojak keys new`, or WOJAK_API_KEYS for development)"
            )
        if self.api_keys_file:
            from wojak.sidecars._core.keys import load_keys_file

            load_keys_file(self.api_keys_file)  # refuse to start on a bad file (KeysFileError: a ConfigError)
        return self
