"""The sidecar kit: what every broker sidecar shares.

* :mod:`.source`: the source-message contract (``Source``, ``SourceMessage``, each message
  settled once) and ``BrokerSource``, the base of a broker's source (bounded settling calls,
  the connect-with-backoff loop, pausing a held message until the sidecar stops);
* :mod:`.ordered`: ``OrderedPartitions``, a partitioned stream's hand-out (order per lane, a
  held partition hands out nothing else, the commit watermark behind every unsettled record,
  redelivery with backoff) for a broker that commits a position (Kafka, Kinesis);
* :mod:`.settings`: ``BrokerSidecarSettings``, the settings every broker sidecar shares;
* :mod:`.runner`: the loop (verdict -> settlement, backoff, drain, give-up);
* :mod:`.health`: /healthz, /readyz, /metrics and their server; :mod:`.metrics`;
* :mod:`.serve`: ``serve_sidecar``, a broker sidecar's entry point.

:mod:`wojak.sidecars.testing` holds the in-memory broker, the contract suite and the stream
scenario every broker runs; docs/sidecar-kit.md says how to add a broker.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AlreadySettled": "source",
    "BrokerSource": "source",
    "SettleFailed": "source",
    "Source": "source",
    "SourceMessage": "source",
    "OrderedMessage": "ordered",
    "OrderedPartition": "ordered",
    "OrderedPartitions": "ordered",
    "OrderedRecord": "ordered",
    "BrokerSidecarSettings": "settings",
    "RunnerConfig": "settings",
    "Runner": "runner",
    "SidecarMetrics": "metrics",
    "serve_sidecar": "serve",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    # Imported when asked for: the health server pulls in FastAPI and uvicorn.
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
