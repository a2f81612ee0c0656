"""The SQS source sidecar (boto3; ``pip install 'wojak[sqs]'``).

Orders are long-polled from one SQS queue (standard or FIFO) in batches; each message's
visibility is extended while the sidecar holds it (a heartbeat), so it is never handed to
anyone else meanwhile. Acks are ``DeleteMessageBatch``; a ``retry`` sets the message's
visibility to its backoff; poison messages are sent to the dead-letter queue with the reason
code and detail as message attributes (``wojak-reason``, ``wojak-detail``), then deleted. There is
no reply path: results are the engine's (and the audit log's).
"""

try:
    import boto3 as _boto3  # noqa: F401  (the SDK is imported only in this package)
except ImportError as exc:  # pragma: no cover
    raise ImportError("the SQS sidecar needs boto3: pip install 'wojak[sqs]'") from exc

from wojak.sidecars.sqs.config import SqsSidecarSettings
from wojak.sidecars.sqs.source import SqsMessage, SqsSource, serve

# What `wojak sidecar sqs` runs (every broker package names the same three: docs/sidecar-kit.md)
TITLE = "SQS"
Settings = SqsSidecarSettings

__all__ = ["TITLE", "Settings", "SqsMessage", "SqsSidecarSettings", "SqsSource", "serve"]
