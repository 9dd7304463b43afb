"""The notifier's Prometheus metrics."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.common.metrics import LATENCY_BUCKETS

__all__ = ["NotifierMetrics"]


@dataclass(frozen=True)
class NotifierMetrics:
    notifications: Counter
    delivery_seconds: Histogram
    retries: Counter
    coalesced: Counter
    dead_lettered: Counter
    circuit_state: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> NotifierMetrics:
        return cls(
            notifications=Counter(
                "switchboard_notifier_notifications_total",
                "Notifications by kind, channel and final outcome.",
                ["kind", "channel", "outcome"],
                registry=registry,
            ),
            delivery_seconds=Histogram(
                "switchboard_notifier_delivery_seconds",
                "Accepted gateway calls, from request to reply.",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            retries=Counter(
                "switchboard_notifier_retries_total",
                "Delivery attempts that will be retried.",
                registry=registry,
            ),
            coalesced=Counter(
                "switchboard_notifier_coalesced_total",
                "Held-back position updates replaced by a newer one.",
                registry=registry,
            ),
            dead_lettered=Counter(
                "switchboard_notifier_dead_lettered_total",
                "Notifications dead-lettered when the retry budget ran out.",
                registry=registry,
            ),
            circuit_state=Gauge(
                "switchboard_notifier_circuit_state",
                "Per gateway: 0 closed, 1 half-open, 2 open.",
                ["gateway"],
                registry=registry,
            ),
        )
