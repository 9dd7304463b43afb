"""The Prometheus metrics the services agreed to export: one list for every consumer of them.

The launcher's live summary, the Grafana dashboard and the alert rules may only name
metrics from here; ``tests/unit/ops`` checks that, and the service authors check their
exports against it. Histograms are listed by base name (``_bucket``, ``_sum`` and
``_count`` series follow from it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["AGREED_METRICS", "HISTOGRAM_SUFFIXES", "MetricName", "base_metric_name", "is_agreed"]

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


@dataclass(frozen=True, slots=True)
class MetricName:
    """One agreed metric: who exports it, what type it is, which labels it carries."""

    name: str
    kind: Literal["counter", "gauge", "histogram"]
    labels: tuple[str, ...]
    #: "runtime" means every service (router, escalation, notifier) exports it.
    exporter: Literal["runtime", "router", "escalation", "notifier"]


_LIST = (
    # Shared runtime: every service.
    MetricName("switchboard_events_consumed_total", "counter", ("topic", "payload"), "runtime"),
    MetricName("switchboard_events_dead_lettered_total", "counter", ("topic", "error"), "runtime"),
    MetricName("switchboard_consumer_lag", "gauge", ("topic", "partition"), "runtime"),
    MetricName("switchboard_loop_last_progress_timestamp_seconds", "gauge", (), "runtime"),
    MetricName("switchboard_handle_seconds", "histogram", (), "runtime"),
    MetricName("switchboard_partitions_fenced_total", "counter", (), "runtime"),
    MetricName("switchboard_partitions_owned", "gauge", (), "runtime"),
    MetricName("switchboard_partitions_catching_up", "gauge", (), "runtime"),
    # Router.
    MetricName("switchboard_router_restore_problems_total", "counter", (), "router"),
    MetricName(
        "switchboard_router_contacts_arrived_total",
        "counter",
        ("domain", "queue", "channel"),
        "router",
    ),
    MetricName("switchboard_router_contacts_waiting", "gauge", ("domain", "queue"), "router"),
    MetricName("switchboard_router_longest_wait_seconds", "gauge", ("domain", "queue"), "router"),
    MetricName(
        "switchboard_router_contacts_abandoned_total", "counter", ("domain", "queue"), "router"
    ),
    MetricName(
        "switchboard_router_contacts_answered_total",
        "counter",
        ("domain", "queue", "within_sl"),
        "router",
    ),
    MetricName("switchboard_router_wait_seconds", "histogram", ("domain", "queue"), "router"),
    MetricName("switchboard_router_service_level", "gauge", ("domain", "queue"), "router"),
    MetricName("switchboard_router_agents", "gauge", ("domain", "state"), "router"),
    MetricName("switchboard_router_occupancy", "gauge", ("domain",), "router"),
    MetricName("switchboard_router_offers_total", "counter", ("domain", "outcome"), "router"),
    MetricName("switchboard_router_decision_seconds", "histogram", (), "router"),
    # Escalation.
    MetricName("switchboard_escalation_restore_problems_total", "counter", (), "escalation"),
    MetricName("switchboard_escalation_raised_total", "counter", ("reason", "tier"), "escalation"),
    MetricName("switchboard_escalation_open", "gauge", ("tier",), "escalation"),
    MetricName("switchboard_escalation_time_to_ack_seconds", "histogram", (), "escalation"),
    MetricName("switchboard_escalation_reescalated_total", "counter", ("from_tier",), "escalation"),
    MetricName("switchboard_escalation_resolved_total", "counter", ("code",), "escalation"),
    # Notifier.
    MetricName(
        "switchboard_notifier_notifications_total",
        "counter",
        ("kind", "channel", "outcome"),
        "notifier",
    ),
    MetricName("switchboard_notifier_delivery_seconds", "histogram", (), "notifier"),
    MetricName("switchboard_notifier_retries_total", "counter", (), "notifier"),
    MetricName("switchboard_notifier_coalesced_total", "counter", (), "notifier"),
    MetricName("switchboard_notifier_dead_lettered_total", "counter", (), "notifier"),
    MetricName("switchboard_notifier_circuit_state", "gauge", ("gateway",), "notifier"),
)

#: Agreed metrics by name.
AGREED_METRICS: dict[str, MetricName] = {metric.name: metric for metric in _LIST}


def base_metric_name(series: str) -> str:
    """``x_bucket`` -> ``x`` when ``x`` is an agreed histogram; other names unchanged."""
    for suffix in HISTOGRAM_SUFFIXES:
        base = series.removesuffix(suffix)
        metric = AGREED_METRICS.get(base)
        if base != series and metric is not None and metric.kind == "histogram":
            return base
    return series


def is_agreed(series: str) -> bool:
    """Whether a series name (including histogram suffixes) belongs to an agreed metric."""
    return base_metric_name(series) in AGREED_METRICS
