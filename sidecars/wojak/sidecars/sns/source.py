"""SNS as a ``Source``, through SQS: the SQS source (``wojak.sidecars.sqs``: long polls, leases,
settlements, dead letters, FIFO groups) on a queue subscribed to the topic, with each message
unwrapped first.

* The SNS envelope (the default): the SQS body is a ``Notification`` (``Type``, ``MessageId``,
  ``TopicArn``, ``Message``, ``MessageAttributes``); the order is ``Message``, its encoding the
  envelope's ``wojak-body-encoding`` attribute, and its coordinates ``(TopicArn, MessageId)``:
  the SNS message id, the same if SNS delivers it to the queue twice, so a missing
  ``client_order_id`` is derived the same way both times. A body that is not an envelope is
  dead-lettered ``invalid_envelope``, a notification from another topic than
  ``WOJAK_SIDECAR_SNS_TOPIC_ARN`` ``unexpected_topic``.
* Raw message delivery: the SQS body is the order; coordinates ``(topic ARN, SQS MessageId)``
  (SNS's own id is not delivered: a producer that may publish twice sets ``client_order_id``).

A dead letter carries the SQS body as it came (the whole envelope), with the reason.

The queue's policy decides who may deliver to it (SNS, from this topic): messages are not
signature-checked on this path; the push endpoint (HTTPS subscription) is.

SNS builds on the SQS sidecar on purpose: the one exception to brokers-are-independent
(pyproject.toml).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from wojak.engine.protocol import default_socket_path
from wojak.sidecars._core.metrics import SidecarMetrics
from wojak.sidecars._core.serve import serve_sidecar
from wojak.sidecars._core.settings import RunnerConfig
from wojak.sidecars.sns.config import SnsSidecarConfig
from wojak.sidecars.sqs import source as sqs

INVALID_ENVELOPE = "invalid_envelope"
UNEXPECTED_TOPIC = "unexpected_topic"


def coordinates_for(topic_arn: str, message_id: str) -> tuple[str, str]:
    """Stable across redeliveries: SNS's message id (the SQS one with raw delivery)."""
    return (topic_arn, str(message_id))


class SnsMessage(sqs.SqsMessage):
    def unwrap(self, source: sqs.SqsSource) -> tuple[str, str | None, tuple[str, str], tuple[str, dict[str, Any]] | None]:
        config = source.config
        assert isinstance(config, SnsSidecarConfig)
        if config.raw_delivery:
            text, encoding, _, _ = super().unwrap(source)
            return text, encoding, coordinates_for(config.topic_arn or config.queue, self.message_id), None
        fallback = coordinates_for(config.topic_arn or config.queue, self.message_id)
        try:
            envelope = orjson.loads(self.text)
        except orjson.JSONDecodeError:
            envelope = None
        if (not isinstance(envelope, dict) or envelope.get("Type") != "Notification"
                or not isinstance(envelope.get("Message"), str) or not envelope.get("MessageId")
                or not isinstance(envelope.get("TopicArn"), str)):  # fmt: skip
            refusal = (INVALID_ENVELOPE, {"error": "not an SNS Notification envelope (raw message delivery? set "
                                                   "WOJAK_SIDECAR_SNS_RAW_DELIVERY=true)"})  # fmt: skip
            return self.text, None, fallback, refusal
        topic, message_id = envelope["TopicArn"], str(envelope["MessageId"])
        coordinates = coordinates_for(topic, message_id)
        if config.topic_arn and topic != config.topic_arn:
            return (
                envelope["Message"],
                None,
                coordinates,
                (UNEXPECTED_TOPIC, {"topic": topic[:256], "expected": config.topic_arn}),
            )
        attributes = envelope.get("MessageAttributes") or {}
        encoding = attributes.get(sqs.ENCODING_ATTRIBUTE, {}).get("Value") if isinstance(attributes, dict) else None
        return envelope["Message"], encoding, coordinates, None


class SnsSource(sqs.SqsSource):
    name = "sns"  # the CLI name: part of every derived client_order_id, so never renamed later
    message_class = SnsMessage

    def __init__(self, config: SnsSidecarConfig, metrics: SidecarMetrics | None = None, client_factory: Any = None) -> None:
        super().__init__(config, metrics, client_factory)


async def serve(config: SnsSidecarConfig, *, stop: asyncio.Event | None = None) -> None:
    """The SNS sidecar (through SQS) until SIGTERM/SIGINT (or ``stop``): consume, drain, exit."""
    metrics = SidecarMetrics(SnsSource.name)
    runner = config.runner or RunnerConfig(engine_socket=default_socket_path())
    await serve_sidecar(SnsSource(config, metrics), runner, stop=stop, metrics=metrics)
