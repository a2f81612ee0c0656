"""Escalation delivery: the outbox (written by ``store.admit``) drained to a sink, at least once.

An escalated order is final and never executed by the engine; its escalation waits in the
store's outbox until a sink acknowledges it, and only then is it marked delivered, so a
crash mid-delivery re-sends (the receiver dedups by the idempotency key, the outbox key).
"""

from wojak.engine.escalation._delivery import EscalationDelivery
from wojak.engine.escalation._sinks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    EscalationSink,
    SinkError,
    SqsSink,
    WebhookSink,
    open_sink,
    sign,
    verify,
)

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "EscalationDelivery",
    "EscalationSink",
    "SinkError",
    "SqsSink",
    "WebhookSink",
    "open_sink",
    "sign",
    "verify",
]
