"""The SQS escalation sink (boto3, imported lazily); ``wojak.engine.escalation`` exports it with
the webhook sink."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any, Mapping

from wojak.engine.protocol import require_secure
from wojak.errors import WojakError


class SinkError(WojakError, RuntimeError):
    """The sink did not acknowledge: the escalation stays in the outbox."""


def body(key: str, payload: dict[str, Any]) -> bytes:
    """The delivered document: ``{"key": outbox key, "escalation": payload}``, canonical JSON."""
    return json.dumps({"key": key, "escalation": payload}, sort_keys=True, separators=(",", ":"), default=str).encode()


class SqsSink:
    """SQS ``SendMessage``; the idempotency key goes in a message attribute (and, on a FIFO
    queue, is the deduplication id)."""

    def __init__(
        self, queue: str, endpoint_url: str | None = None, region: str | None = None, env: Mapping[str, str] | None = None
    ) -> None:
        # an http:// endpoint or queue URL off loopback is refused (https://, or WOJAK_ALLOW_INSECURE_TRANSPORT=1)
        if endpoint_url:
            require_secure(endpoint_url, "WOJAK_ENGINE_ESCALATION_SINK endpoint", env)
        if queue.startswith(("http://", "https://")):
            require_secure(queue, "WOJAK_ENGINE_ESCALATION_SINK queue URL", env)
        try:
            import boto3  # noqa: F401 - lazily: only this sink needs it
        except ImportError as exc:
            raise ImportError("the SQS escalation sink needs boto3: pip install 'wojak[lambda]'") from exc
        self.queue, self.endpoint_url, self.region = queue, endpoint_url, region
        self._client: Any = None
        self._queue_url: str | None = queue if queue.startswith(("http://", "https://")) else None

    def __repr__(self) -> str:
        return f"SqsSink({self.queue!r})"

    def _send(self, key: str, payload: dict[str, Any]) -> None:
        import boto3
        import botocore.config
        import botocore.exceptions

        try:
            if self._client is None:
                config = botocore.config.Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2})
                self._client = boto3.client("sqs", endpoint_url=self.endpoint_url, region_name=self.region, config=config)
            if self._queue_url is None:
                self._queue_url = self._client.get_queue_url(QueueName=self.queue)["QueueUrl"]
            extra: dict[str, Any] = {}
            if self._queue_url.endswith(".fifo"):
                extra = {"MessageGroupId": "escalations", "MessageDeduplicationId": hashlib.sha256(key.encode()).hexdigest()}
            self._client.send_message(
                QueueUrl=self._queue_url,
                MessageBody=body(key, payload).decode(),
                MessageAttributes={"idempotency_key": {"DataType": "String", "StringValue": key}},
                **extra,
            )
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise SinkError(f"sqs {self.queue}: {exc}") from None

    async def deliver(self, key: str, payload: dict[str, Any]) -> None:
        await asyncio.to_thread(self._send, key, payload)

    async def close(self) -> None:
        return None
