"""Settings of the Kinesis sidecar: ``WOJAK_SIDECAR_KINESIS_*`` for the stream, its lease table,
its dead letters and its results; the settings every broker sidecar shares (``WOJAK_SIDECAR_ACCOUNTS``,
concurrency, drain, backoff, health port, body cap, settle timeout and attempts,
``WOJAK_ENGINE_SOCKET``) come from the kit's ``BrokerSidecarSettings``.

Declared once: the settings object (frozen) is the configuration the source and ``serve`` read.
Credentials come only from boto3's default chain (``AWS_*`` variables, web identity / IRSA, the
instance or task role); none is a setting here. A plain-text endpoint (``http://``) is refused
off loopback (``require_secure``).
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from wojak.engine.protocol import require_secure
from wojak.errors import ConfigError
from wojak.sidecars._core.settings import BrokerSidecarSettings, RunnerConfig

_STREAM = r"^[A-Za-z0-9_.-]{1,128}$"
_TABLE = r"^[A-Za-z0-9_.-]{3,255}$"
_REGION = r"^[a-z0-9-]{1,32}$"
_QUEUE_URL = r"^$|^https?://[^\s]{1,400}/[A-Za-z0-9_-]{1,80}(\.fifo)?$"
MAX_GET_RECORDS = 10_000  # what one GetRecords returns at most


def _worker_id() -> str:
    return f"{socket.gethostname()[:60]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class KinesisSidecarSettings(BrokerSidecarSettings):
    model_config = SettingsConfigDict(env_prefix="WOJAK_SIDECAR_KINESIS_", extra="ignore", frozen=True)

    stream: str = Field(default="wojak-orders", pattern=_STREAM)
    # the lease table (DynamoDB; created when missing): one per stream and consumer application,
    # as the KCL's application name; every replica of one sidecar names the same
    lease_table: str = Field(default="wojak-sidecar-leases", pattern=_TABLE)
    create_lease_table: bool = True
    worker_id: str = Field(default_factory=_worker_id, pattern=r"^[A-Za-z0-9_.:-]{1,200}$")
    # dead letters: one of the two (an SQS queue, with the reason as message attributes; or a stream)
    dead_letter_queue_url: str = Field(default="", pattern=_QUEUE_URL)
    dead_letter_stream: str = Field(default="", pattern=r"^$|" + _STREAM)
    # the verdicts of ack_and_publish (rejected, denied, venue_anomaly), as Kafka's results topic; "": none
    results_stream: str = Field(default="", pattern=r"^$|" + _STREAM)
    region: str | None = Field(default=None, pattern=_REGION)  # else AWS_REGION / AWS_DEFAULT_REGION
    endpoint: str | None = None  # e.g. a VPC endpoint or a local emulator; http:// only on loopback
    # a lease not renewed for this long is taken over by another replica (the KCL's failover time)
    lease_seconds: float = Field(default=10.0, ge=1.0, le=600)
    # where a shard without a checkpoint starts
    initial_position: Literal["TRIM_HORIZON", "LATEST"] = "TRIM_HORIZON"
    batch_size: int = Field(default=1000, ge=1, le=MAX_GET_RECORDS)  # records per GetRecords
    poll_interval: float = Field(default=1.0, ge=0.05, le=60)  # seconds between GetRecords on an idle shard
    # Kinesis allows 5 GetRecords a second per shard (shared by every consumer of the stream)
    min_poll_interval: float = Field(default=0.2, ge=0.0, le=60)
    prefetch: int = Field(default=1000, ge=1, le=100_000)  # records read and not yet settled, over all shards
    checkpoint_interval: float = Field(default=0.5, gt=0, le=60)
    shard_sync_interval: float = Field(default=10.0, ge=0.5, le=3600)  # ListShards: new shards after a reshard
    max_leases: int = Field(default=0, ge=0, le=10_000)  # shards one replica holds at most (0: its fair share)

    @model_validator(mode="after")
    def _secure(self) -> Self:
        if self.endpoint:
            require_secure(self.endpoint, "WOJAK_SIDECAR_KINESIS_ENDPOINT")
        if self.dead_letter_queue_url:
            require_secure(self.dead_letter_queue_url, "WOJAK_SIDECAR_KINESIS_DEAD_LETTER_QUEUE_URL")
        return self

    @property
    def runner(self) -> RunnerConfig:
        # never more in flight than read: every record in flight holds its shard's checkpoint back
        return self.runner_config(min(self.concurrency or 256, self.prefetch))

    def to_config(self) -> KinesisSidecarSettings:
        """What `wojak sidecar kinesis` hands ``serve``: these settings, once complete."""
        if bool(self.dead_letter_queue_url) == bool(self.dead_letter_stream):
            raise ConfigError(
                "set one of WOJAK_SIDECAR_KINESIS_DEAD_LETTER_QUEUE_URL (an SQS queue) and "
                "WOJAK_SIDECAR_KINESIS_DEAD_LETTER_STREAM: where poison records go, with their reason"
            )
        if self.dead_letter_stream == self.stream:
            raise ConfigError("WOJAK_SIDECAR_KINESIS_DEAD_LETTER_STREAM must differ from WOJAK_SIDECAR_KINESIS_STREAM")
        if self.results_stream == self.stream:
            raise ConfigError("WOJAK_SIDECAR_KINESIS_RESULTS_STREAM must differ from WOJAK_SIDECAR_KINESIS_STREAM")
        _ = self.runner  # WOJAK_SIDECAR_ACCOUNTS is required: refused here, in one line
        return self

    def __repr__(self) -> str:
        where = self.dead_letter_queue_url.rsplit("/", 1)[-1] if self.dead_letter_queue_url else self.dead_letter_stream
        return (
            f"KinesisSidecarSettings(stream={self.stream!r}, lease_table={self.lease_table!r}, worker={self.worker_id!r}, "
            f"dead_letters={where!r}, results={self.results_stream or None!r}, lease={self.lease_seconds}s, "
            f"prefetch={self.prefetch})"
        )
