"""The escalation service's Prometheus metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.common.metrics import BoundedLabel

__all__ = ["EscalationMetrics"]

ACK_BUCKETS = (10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 86400)


@dataclass(frozen=True)
class EscalationMetrics:
    raised: Counter
    open: Gauge
    time_to_ack: Histogram
    reescalated: Counter
    resolved: Counter
    restore_problems: Counter
    view_escalations: Gauge
    view_refused: Counter
    commands: Counter
    commands_waiting: Gauge
    #: Resolution codes are typed by managers: at most 50 distinct label values.
    resolution_code: BoundedLabel = field(default_factory=BoundedLabel)

    @classmethod
    def create(cls, registry: CollectorRegistry) -> EscalationMetrics:
        return cls(
            raised=Counter(
                "switchboard_escalation_raised_total",
                "Escalations raised, by reason and tier.",
                ["reason", "tier"],
                registry=registry,
            ),
            open=Gauge(
                "switchboard_escalation_open",
                "Open or acknowledged escalations by tier.",
                ["tier"],
                registry=registry,
            ),
            time_to_ack=Histogram(
                "switchboard_escalation_time_to_ack_seconds",
                "From raise to acknowledgement.",
                buckets=ACK_BUCKETS,
                registry=registry,
            ),
            reescalated=Counter(
                "switchboard_escalation_reescalated_total",
                "Escalations moved one tier up, by the tier that missed it.",
                ["from_tier"],
                registry=registry,
            ),
            resolved=Counter(
                "switchboard_escalation_resolved_total",
                "Escalations resolved, by resolution code (the first 50 codes; later ones "
                "count as 'other').",
                ["code"],
                registry=registry,
            ),
            restore_problems=Counter(
                "switchboard_escalation_restore_problems_total",
                "Stored records a restore left out or re-homed because the policy no longer "
                "covers them (see the service's warning log for each).",
                registry=registry,
            ),
            view_escalations=Gauge(
                "switchboard_escalation_view_escalations",
                "Escalations (every domain's) in this instance's read view.",
                registry=registry,
            ),
            view_refused=Counter(
                "switchboard_escalation_view_refused_total",
                "Records of the escalations topic the read view left out: 'full' "
                "(view.max_escalations reached: calls fail until it is raised) or "
                "'unreadable'.",
                ["why"],
                registry=registry,
            ),
            commands=Counter(
                "switchboard_escalation_commands_total",
                "Acknowledge, AddNote and Resolve calls this instance sent to the domain's "
                "owner, by outcome (the owner's answer, 'timeout' or 'unavailable').",
                ["outcome"],
                registry=registry,
            ),
            commands_waiting=Gauge(
                "switchboard_escalation_commands_waiting",
                "Commands this instance sent that wait for the owner's answer.",
                registry=registry,
            ),
        )
