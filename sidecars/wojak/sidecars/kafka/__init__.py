"""The Kafka source sidecar (aiokafka; ``pip install 'wojak[kafka]'``).

Orders are consumed from one topic by a consumer group with manual commits (never past a record
whose verdict has not been acted on); one account's orders keep their order; ``retry`` is
retried in place with its partition paused; poison records go to a dead-letter topic with the
reason in ``x-wojak-reason``; ``rejected``/``denied``/``venue_anomaly`` results go to a results
topic.
"""

try:
    import aiokafka as _aiokafka  # noqa: F401  (the SDK is imported only in this package)
except ImportError as exc:  # pragma: no cover
    raise ImportError("the Kafka sidecar needs aiokafka: pip install 'wojak[kafka]'") from exc

from wojak.sidecars.kafka.config import KafkaSidecarSettings
from wojak.sidecars.kafka.source import KafkaMessage, KafkaSource, serve

# What `wojak sidecar kafka` runs (every broker package names the same three: docs/sidecar-kit.md)
TITLE = "Kafka"
Settings = KafkaSidecarSettings

__all__ = ["TITLE", "KafkaMessage", "KafkaSidecarSettings", "KafkaSource", "Settings", "serve"]
