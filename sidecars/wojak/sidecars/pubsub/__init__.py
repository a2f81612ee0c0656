"""The Google Pub/Sub source sidecar (google-cloud-pubsub; ``pip install 'wojak[pubsub]'``).

Orders arrive on one subscription by streaming pull, with flow control; each is acked after
the engine's verdict; a ``retry`` sets its ack deadline to the backoff delay; poison messages
are published to a dead-letter topic with the reason as attributes (confirmed), then acked.
Ordering keys are respected.
"""

try:
    from google.cloud import pubsub_v1 as _pubsub_v1  # noqa: F401  (the SDK is imported only in this package)
except ImportError as exc:  # pragma: no cover
    raise ImportError("the Pub/Sub sidecar needs google-cloud-pubsub: pip install 'wojak[pubsub]'") from exc

from wojak.sidecars.pubsub.config import PubSubSidecarSettings
from wojak.sidecars.pubsub.source import PubSubMessage, PubSubSource, serve

# What `wojak sidecar pubsub` runs (every broker package names the same three: docs/sidecar-kit.md)
TITLE = "Pub/Sub"
Settings = PubSubSidecarSettings

__all__ = ["TITLE", "PubSubMessage", "PubSubSidecarSettings", "PubSubSource", "Settings", "serve"]
