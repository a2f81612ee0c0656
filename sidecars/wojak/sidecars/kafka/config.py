"""Settings of the Kafka sidecar: ``WOJAK_SIDECAR_KAFKA_*`` for the broker, the shared
``WOJAK_SIDECAR_*`` names for the engine, concurrency, drain, backoff and health port.

Credentials come only from the environment (``WOJAK_SIDECAR_KAFKA_SASL_PASSWORD``, the TLS key
file's path) and are never printed. A plain-text bootstrap (``PLAINTEXT`` or ``SASL_PLAINTEXT``)
is refused off loopback, as ``amqp://`` is for RabbitMQ (``require_secure``): use ``SSL`` or
``SASL_SSL`` (or ``WOJAK_ALLOW_INSECURE_TRANSPORT=1``). ``WOJAK_SIDECAR_ACCOUNTS`` is required:
whoever can produce to the topic trades as those accounts.
"""

from __future__ import annotations

import re
from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from wojak.engine.protocol import InsecureTransportError, require_secure
from wojak.errors import ConfigError
from wojak.sidecars._core.settings import BrokerSidecarSettings, RunnerConfig

# Kafka's legal topic names (and a group id we can print in one line)
_TOPIC = r"^[A-Za-z0-9._-]{1,249}$"
_GROUP = r"^[A-Za-z0-9._:-]{1,200}$"
_SERVER = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(:[0-9]{1,5})?$")
BOOTSTRAP_ENV = "WOJAK_SIDECAR_KAFKA_BOOTSTRAP_SERVERS"
PLAIN_PROTOCOLS = frozenset({"PLAINTEXT", "SASL_PLAINTEXT"})
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def parse_bootstrap(value: str) -> tuple[str, ...]:
    """``host:port,host:port`` -> the servers; raises ConfigError naming a bad entry."""
    servers = tuple(s.strip() for s in value.split(",") if s.strip())
    if not servers:
        raise ConfigError("no bootstrap server: give host:port[,host:port...]")
    for server in servers:
        if not _SERVER.match(server):
            raise ConfigError(f"bootstrap server {server[:80]!r} is not host:port")
    return servers


def check_transport(servers: tuple[str, ...], security_protocol: str) -> None:
    """A plain-text protocol is accepted only when every server is loopback (or
    ``WOJAK_ALLOW_INSECURE_TRANSPORT=1``): ``require_secure`` decides, as for amqp://."""
    if security_protocol not in PLAIN_PROTOCOLS:
        return
    try:  # each server judged as the plain-text URL it is (one host each: urlsplit refuses "h:1,[::1]:2")
        for server in servers:
            require_secure("http://" + server, BOOTSTRAP_ENV)
    except InsecureTransportError:
        hosts = ",".join(servers)
        raise InsecureTransportError(
            f"{BOOTSTRAP_ENV}: {security_protocol} to {hosts} is plain text off loopback; set "
            "WOJAK_SIDECAR_KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL (or WOJAK_ALLOW_INSECURE_TRANSPORT=1 "
            "to accept an unencrypted connection)"
        ) from None


class KafkaSidecarSettings(BrokerSidecarSettings):
    model_config = SettingsConfigDict(env_prefix="WOJAK_SIDECAR_KAFKA_", extra="ignore", frozen=True)

    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = Field(default="wojak.orders", pattern=_TOPIC)
    group_id: str = Field(default="wojak-sidecar", pattern=_GROUP)
    dead_letter_topic: str = Field(default="wojak.orders.dlt", pattern=_TOPIC)
    # "" publishes no results
    results_topic: str = Field(default="wojak.orders.results", pattern=r"^$|" + _TOPIC)
    client_id: str = Field(default="wojak-sidecar", pattern=_GROUP)
    # messages fetched and not yet settled, over all partitions (the consumer pauses past it)
    prefetch: int = Field(default=256, ge=1, le=100_000)
    commit_interval: float = Field(default=0.2, gt=0, le=60)
    session_timeout_ms: int = Field(default=10_000, ge=1000, le=600_000)
    heartbeat_interval_ms: int = Field(default=3000, ge=100, le=200_000)
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "PLAIN"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_key_password: SecretStr | None = None
    # seconds stopping the consumer and the producer may take
    close_timeout: float = Field(default=5.0, gt=0, le=300)
    # the settings every broker sidecar shares (WOJAK_SIDECAR_ACCOUNTS, ...) come from BrokerSidecarSettings

    @field_validator("bootstrap_servers")
    @classmethod
    def _servers(cls, value: str) -> str:
        parse_bootstrap(value)
        return value

    @property
    def servers(self) -> tuple[str, ...]:
        return parse_bootstrap(self.bootstrap_servers)

    @property
    def runner(self) -> RunnerConfig:
        # never more in flight than fetched: every message in flight is one the commit waits for
        return self.runner_config(min(self.concurrency or self.prefetch, self.prefetch))

    def to_config(self) -> Self:
        """What `wojak sidecar kafka` hands ``serve``: these settings, once the checks across
        fields hold (each refusal one line naming the setting; ``WOJAK_SIDECAR_ACCOUNTS`` is
        required). Raised here, not in a validator, so they stay ``ConfigError``s."""
        check_transport(self.servers, self.security_protocol)
        if self.security_protocol.startswith("SASL_") and (not self.sasl_username or self.sasl_password is None):
            raise ConfigError(
                f"WOJAK_SIDECAR_KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs "
                "WOJAK_SIDECAR_KAFKA_SASL_USERNAME and WOJAK_SIDECAR_KAFKA_SASL_PASSWORD"
            )
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ConfigError("WOJAK_SIDECAR_KAFKA_HEARTBEAT_INTERVAL_MS must be at most a third of _SESSION_TIMEOUT_MS")
        if self.dead_letter_topic == self.topic or self.results_topic == self.topic:
            raise ConfigError("the dead-letter and results topics must differ from WOJAK_SIDECAR_KAFKA_TOPIC")
        _ = self.runner
        return self

    def __repr__(self) -> str:  # never the password
        return (
            f"KafkaSidecarSettings(bootstrap_servers={self.bootstrap_servers!r}, "
            f"security_protocol={self.security_protocol!r}, topic={self.topic!r}, group_id={self.group_id!r}, "
            f"dead_letter_topic={self.dead_letter_topic!r}, results_topic={self.results_topic!r}, "
            f"prefetch={self.prefetch})"
        )

    def ssl_context(self) -> object | None:
        """The TLS context for ``SSL`` / ``SASL_SSL`` (system CAs unless ``ssl_cafile``)."""
        if self.security_protocol not in ("SSL", "SASL_SSL"):
            return None
        import ssl

        context = ssl.create_default_context(cafile=self.ssl_cafile)
        if self.ssl_certfile:
            password = self.ssl_key_password.get_secret_value() if self.ssl_key_password else None
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile, password)
        return context
