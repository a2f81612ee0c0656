"""The Kinesis source sidecar (boto3; ``pip install 'wojak[kinesis]'``).

Orders are read from the shards of one stream. Replicas share the shards through a lease table
in DynamoDB kept the way the Kinesis Client Library keeps it (lease key = shard id, owner,
counter, checkpoint, parent shard ids; conditional writes on the counter); a shard's checkpoint
is the last sequence number whose record and every earlier one are settled. ``retry`` is retried
in place (the shard's order kept); poison records go to a dead-letter SQS queue (or stream) with
the reason; a parent shard is finished before its children are read.
"""

try:
    import boto3 as _boto3  # noqa: F401  (the SDK is imported only in this package)
except ImportError as exc:  # pragma: no cover
    raise ImportError("the Kinesis sidecar needs boto3: pip install 'wojak[kinesis]'") from exc

from wojak.sidecars.kinesis.config import KinesisSidecarSettings
from wojak.sidecars.kinesis.source import KinesisMessage, KinesisSource, serve

# What `wojak sidecar kinesis` runs (every broker package names the same three: docs/sidecar-kit.md)
TITLE = "Kinesis"
Settings = KinesisSidecarSettings

__all__ = ["TITLE", "KinesisMessage", "KinesisSidecarSettings", "KinesisSource", "Settings", "serve"]
