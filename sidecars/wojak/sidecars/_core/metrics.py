"""Sidecar metrics, served with the engine's own (fetched over the protocol) on /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class SidecarMetrics:
    def __init__(self, source: str) -> None:
        self.source = source
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages = Counter("wojak_sidecar_messages", "Source messages by engine verdict", ["source", "verdict"], registry=r)
        self.settlements = Counter(
            "wojak_sidecar_settlements", "Broker settlements by kind", ["source", "settlement"], registry=r
        )
        self.engine_seconds = Histogram(
            "wojak_sidecar_engine_seconds",
            "Engine round trip seen by the sidecar",
            ["source"],
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5),
            registry=r,
        )
        self.inflight = Gauge("wojak_sidecar_inflight", "Messages being handled", ["source"], registry=r)
        self.ready = Gauge("wojak_sidecar_ready", "1 when the engine and the broker are reachable", ["source"], registry=r)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
