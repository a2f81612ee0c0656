"""The engine's Prometheus metrics. The engine has no port: a sidecar fetches this text
over the protocol (``metrics`` message) and serves it with its own on ``/metrics``."""

from __future__ import annotations

from collections import Counter as Tally
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class EngineMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.verdicts = Counter("wojak_engine_replies", "Replies by verdict", ["verdict"], registry=r)
        self.batch_size = Histogram(
            "wojak_engine_batch_size",
            "Requests per processed batch",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=r,
        )
        self.batch_seconds = Histogram(
            "wojak_engine_batch_seconds",
            "Time to process one batch (validate to reply)",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
            registry=r,
        )
        self.inflight = Gauge("wojak_engine_inflight", "Requests received and not yet answered", registry=r)
        self.undeliverable = Counter(
            "wojak_engine_undeliverable_replies", "Replies whose requester had gone (it resends)", registry=r
        )
        self.protocol_errors = Counter("wojak_engine_protocol_errors", "Malformed frames received", registry=r)
        self.risk_reloads = Counter(
            "wojak_engine_risk_config_reloads", "Risk config reloads by result (applied | rejected)", ["result"], registry=r
        )
        self.risk_shadow = Counter(
            "wojak_engine_risk_shadow_breaches", "Breaches of rules in shadow mode (not enforced)", ["rule", "action"], registry=r
        )
        self.account_halts = Counter("wojak_engine_account_halts", "Accounts moved to HALTED by a daily-loss breach", registry=r)
        self.escalations_delivered = Counter(
            "wojak_engine_escalations_delivered", "Escalations the sink acknowledged", registry=r
        )
        self.escalation_failures = Counter(
            "wojak_engine_escalation_failures", "Escalation delivery attempts that failed (retried)", registry=r
        )
        self.escalations_pending = Gauge("wojak_engine_escalations_pending", "Escalations waiting in the outbox", registry=r)
        self.ready = Gauge("wojak_engine_ready", "1 while the store accepts writes and the venue answers", registry=r)
        self.ready.set(1)
        self.ticks = Counter(
            "wojak_engine_ticks", "Ticks by outcome (applied | stale | duplicate | suspect)", ["outcome"], registry=r
        )
        self.venue_anomalies = Counter(
            "wojak_engine_venue_anomalies", "Venue reports that failed their checks (never booked)", registry=r
        )
        self.tick_gaps = Counter("wojak_engine_tick_gaps", "Sequence numbers skipped between applied ticks", registry=r)
        self.forbidden = Counter(
            "wojak_engine_forbidden", "Requests refused for their principal, by reason code", ["reason"], registry=r
        )
        self.reconciled_fills = Counter(
            "wojak_engine_reconciled_fills", "Later fills of resting orders booked by reconciliation", registry=r
        )
        self.day_orders_expired = Counter(
            "wojak_engine_day_orders_expired", "DAY orders cancelled at the end of their exchange trading day", registry=r
        )
        self.leases_lapsed = Counter(
            "wojak_engine_leases_lapsed",
            "Pending orders not submitted because their execution lease lapsed mid-batch and another holder had it",
            registry=r,
        )
        self.pending_released = Counter(
            "wojak_engine_pending_released", "Stranded pending orders the venue never saw, expired and released", registry=r
        )

    def observe_batch(self, replies: list[dict[str, Any] | None], seconds: float) -> None:
        self.batch_size.observe(len(replies))
        self.batch_seconds.observe(seconds)
        for verdict, n in Tally(r["verdict"] for r in replies if r).items():
            self.verdicts.labels(verdict).inc(n)

    def observe_shadow(self, shadow: Any) -> None:
        for action, breach in shadow:
            self.risk_shadow.labels(breach.rule, action.value).inc()

    def exposition(self) -> str:
        return generate_latest(self.registry).decode()
