"""The RabbitMQ source sidecar (aio-pika; ``pip install 'wojak[rabbitmq]'``).

Orders are consumed from one queue with manual acks; poison messages go to a dead-letter
exchange with the reason in ``x-wojak-reason``; ``rejected``/``denied`` results go to the
message's ``reply_to`` (or the configured reply exchange).
"""

try:
    import aio_pika as _aio_pika  # noqa: F401  (the SDK is imported only in this package)
except ImportError as exc:  # pragma: no cover
    raise ImportError("the RabbitMQ sidecar needs aio-pika: pip install 'wojak[rabbitmq]'") from exc

from wojak.sidecars.rabbitmq.config import RabbitMQSidecarSettings
from wojak.sidecars.rabbitmq.source import RabbitMQMessage, RabbitMQSource, serve

# What `wojak sidecar rabbitmq` runs (every broker package names the same three: docs/sidecar-kit.md)
TITLE = "RabbitMQ"
Settings = RabbitMQSidecarSettings

__all__ = ["TITLE", "RabbitMQMessage", "RabbitMQSidecarSettings", "RabbitMQSource", "Settings", "serve"]
