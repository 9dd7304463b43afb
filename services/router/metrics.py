"""The router's Prometheus metrics: what an operations lead reads per queue and per agent.

Every per-queue and per-agent series carries ``domain``: the routing domain (tenant) when
it has its own label, else "other" (:mod:`services.router.metric_labels` bounds the set).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.common.metrics import LATENCY_BUCKETS

__all__ = ["RouterMetrics"]

#: Seconds waited in queue: service-level thresholds live between 10 s and a few minutes.
WAIT_BUCKETS = (1, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200, 3600)


@dataclass(frozen=True)
class RouterMetrics:
    """Counters and gauges the adapter updates from the core's decisions and views."""

    arrived: Counter
    waiting: Gauge
    longest_wait: Gauge
    abandoned: Counter
    answered: Counter
    wait_seconds: Histogram
    service_level: Gauge
    agents: Gauge
    occupancy: Gauge
    offers: Counter
    decision_seconds: Histogram
    restore_problems: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> RouterMetrics:
        return cls(
            arrived=Counter(
                "switchboard_router_contacts_arrived_total",
                "Contacts that entered a queue.",
                ["domain", "queue", "channel"],
                registry=registry,
            ),
            waiting=Gauge(
                "switchboard_router_contacts_waiting",
                "Contacts waiting (not yet assigned), per queue.",
                ["domain", "queue"],
                registry=registry,
            ),
            longest_wait=Gauge(
                "switchboard_router_longest_wait_seconds",
                "Longest current wait, per queue.",
                ["domain", "queue"],
                registry=registry,
            ),
            abandoned=Counter(
                "switchboard_router_contacts_abandoned_total",
                "Contacts whose customer gave up before being answered.",
                ["domain", "queue"],
                registry=registry,
            ),
            answered=Counter(
                "switchboard_router_contacts_answered_total",
                "Contacts assigned to an agent, by whether within the service-level threshold.",
                ["domain", "queue", "within_sl"],
                registry=registry,
            ),
            wait_seconds=Histogram(
                "switchboard_router_wait_seconds",
                "Time from arrival to assignment (speed of answer).",
                ["domain", "queue"],
                buckets=WAIT_BUCKETS,
                registry=registry,
            ),
            service_level=Gauge(
                "switchboard_router_service_level",
                "Answered within the threshold / (answered + abandoned after it), since the "
                "counters began (0-1; NaN while the queue handled no one). "
                "services.router.domain.read_model.service_level computes it.",
                ["domain", "queue"],
                registry=registry,
            ),
            agents=Gauge(
                "switchboard_router_agents",
                "Logged-in agents by state.",
                ["domain", "state"],
                registry=registry,
            ),
            occupancy=Gauge(
                "switchboard_router_occupancy",
                "Share of logged-in, not-away agents handling or reserved for a contact (0-1).",
                ["domain"],
                registry=registry,
            ),
            offers=Counter(
                "switchboard_router_offers_total",
                "Offer outcomes: made, accepted, rejected, timed_out, withdrawn.",
                ["domain", "outcome"],
                registry=registry,
            ),
            decision_seconds=Histogram(
                "switchboard_router_decision_seconds",
                "Time the routing core takes to apply one event.",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            restore_problems=Counter(
                "switchboard_router_restore_problems_total",
                "Stored contacts a restore could not place because their queue is no longer "
                "configured (each reported unroutable; see the warning log).",
                registry=registry,
            ),
        )
