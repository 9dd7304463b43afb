"""Prometheus metrics of the shared runtime, and the metrics HTTP endpoint.

Metrics are an injected object (``RuntimeMetrics.create(registry)``), never module
globals, so every test can use a fresh ``CollectorRegistry``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["LATENCY_BUCKETS", "BoundedLabel", "RuntimeMetrics", "serve_metrics"]

#: Seconds, sized for work that takes fractions of a millisecond to a few seconds.
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)


@dataclass
class BoundedLabel:
    """Label values that come from people (a resolution code a manager typed): the first
    ``limit`` distinct values are kept, every later one is counted as ``other``, so a
    series per typo cannot grow without bound."""

    limit: int = 50
    _known: set[str] = field(default_factory=set)

    def __call__(self, value: str) -> str:
        if value in self._known:
            return value
        if len(self._known) < self.limit and len(value) <= 64:
            self._known.add(value)
            return value
        return "other"


@dataclass(frozen=True)
class RuntimeMetrics:
    """What the consume loop counts: inputs, dead letters, duplicates, batches, lag, liveness."""

    consumed: Counter
    dead_lettered: Counter
    duplicates: Counter
    produced: Counter
    batch_seconds: Histogram
    handle_seconds: Histogram
    commit_seconds: Histogram
    consumer_lag: Gauge
    last_progress: Gauge
    loop_running: Gauge
    transactions_aborted: Counter
    fenced: Counter
    partitions_owned: Gauge
    partitions_catching_up: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> RuntimeMetrics:
        return cls(
            consumed=Counter(
                "switchboard_events_consumed_total",
                "Input records read, by topic and payload type.",
                ["topic", "payload"],
                registry=registry,
            ),
            dead_lettered=Counter(
                "switchboard_events_dead_lettered_total",
                "Records sent to a dead-letter topic, by source topic and error kind.",
                ["topic", "error"],
                registry=registry,
            ),
            duplicates=Counter(
                "switchboard_events_duplicate_total",
                "Records skipped because their event_id was already applied.",
                ["topic"],
                registry=registry,
            ),
            produced=Counter(
                "switchboard_records_produced_total",
                "Records written, by topic.",
                ["topic"],
                registry=registry,
            ),
            batch_seconds=Histogram(
                "switchboard_batch_seconds",
                "Time to handle one polled batch and commit its transaction.",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            handle_seconds=Histogram(
                "switchboard_handle_seconds",
                "Time the service's handler spent on one record (decision latency).",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            commit_seconds=Histogram(
                "switchboard_commit_seconds",
                "Time to write one cycle's outputs and offsets as a Kafka transaction.",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            consumer_lag=Gauge(
                "switchboard_consumer_lag",
                "Records behind the end of each assigned partition.",
                ["topic", "partition"],
                registry=registry,
            ),
            last_progress=Gauge(
                "switchboard_loop_last_progress_timestamp_seconds",
                "When the consume loop last completed a poll; stale means a stuck loop.",
                registry=registry,
            ),
            loop_running=Gauge(
                "switchboard_loop_running",
                "1 while the consume loop is running.",
                registry=registry,
            ),
            transactions_aborted=Counter(
                "switchboard_transactions_aborted_total",
                "Batches whose transaction was aborted and retried.",
                registry=registry,
            ),
            fenced=Counter(
                "switchboard_partitions_fenced_total",
                "Partitions this instance lost because another instance took over its "
                "transactional id (after a stall); their uncommitted work was dropped.",
                registry=registry,
            ),
            partitions_owned=Gauge(
                "switchboard_partitions_owned",
                "Input partition numbers (tasks: each with its domains) this instance owns.",
                registry=registry,
            ),
            partitions_catching_up=Gauge(
                "switchboard_partitions_catching_up",
                "Owned partitions still reading their backlog; their timers wait until caught up.",
                registry=registry,
            ),
        )


def serve_metrics(host: str, port: int, registry: CollectorRegistry) -> tuple[Any, int]:
    """Start the /metrics HTTP endpoint in a thread; returns (server, bound port)."""
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server, int(server.server_port)
