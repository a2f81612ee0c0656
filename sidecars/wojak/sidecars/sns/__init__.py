"""The SNS source sidecar (boto3; ``pip install 'wojak[sns]'``), through SQS.

Orders published to an SNS topic are read from an SQS queue subscribed to it (the SQS sidecar's
leases, settlements and dead letters), unwrapped from the SNS envelope (or raw message delivery);
a missing ``client_order_id`` is derived from (topic, SNS MessageId).
"""

try:
    import boto3 as _boto3  # noqa: F401  (the SDK is imported only in the AWS sidecars' packages)
except ImportError as exc:  # pragma: no cover
    raise ImportError("the SNS sidecar needs boto3: pip install 'wojak[sns]'") from exc

from wojak.sidecars.sns.config import SnsSidecarSettings
from wojak.sidecars.sns.source import SnsMessage, SnsSource, serve

# What `wojak sidecar sns` runs (every broker package names the same three: docs/sidecar-kit.md)
TITLE = "SNS"
Settings = SnsSidecarSettings

__all__ = ["TITLE", "Settings", "SnsMessage", "SnsSidecarSettings", "SnsSource", "serve"]
