"""The live operations summary: what an operations lead reads, from the services' /metrics.

Pure: :func:`summarize` turns parsed samples into an :class:`OpsSummary`, :func:`render`
turns that into lines. Label values are normalised (``TIER_MANAGER`` and ``manager`` read
the same) so the summary does not depend on how a service spells an enum.

One row per queue and ``domain`` label (the router labels its busiest tenants, the rest
are "other"); a domain label with no agents and no queue activity is left out, and the
DOMAIN column shows only when more than one is left. The numbers are the router's, not
recomputed: the service level is the router's gauge (the core's
:func:`~services.router.domain.read_model.service_level`; its input, the late abandons,
is not exported), and abandonment is the core's
:func:`~services.router.domain.read_model.abandonment` of the exported counters.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from services.router.domain.read_model import abandonment

__all__ = [
    "OpsSummary",
    "QueueRow",
    "Sample",
    "ServiceHealth",
    "parse_metrics_text",
    "render",
    "summarize",
]

_PREFIXES = ("agent_state_", "tier_", "delivery_outcome_", "outcome_")
_AGENT_ORDER = ("available", "reserved", "busy", "wrap_up", "away", "logged_out")
_TIER_ORDER = ("supervisor", "manager", "head_of_service")
_FAILED_OUTCOMES = ("dead_lettered", "rejected", "failed")


@dataclass(frozen=True, slots=True)
class Sample:
    """One scraped sample: series name, labels, value."""

    name: str
    labels: Mapping[str, str]
    value: float


def parse_metrics_text(text: str) -> list[Sample]:
    """Parse the Prometheus text format with the client library's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    return [
        Sample(s.name, dict(s.labels), float(s.value))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def _norm(value: str) -> str:
    value = value.strip().lower().replace("-", "_")
    for prefix in _PREFIXES:
        if value.startswith(prefix):
            return value[len(prefix) :]
    return value


@dataclass
class QueueRow:
    """One queue's line (of one ``domain`` label; "" from a router without the label)."""

    queue: str
    domain: str = ""
    waiting: float = 0.0
    longest_wait: float = 0.0
    service_level: float | None = None
    answered: float = 0.0
    abandoned: float = 0.0
    arrived: float = 0.0

    @property
    def abandonment(self) -> float | None:
        """Abandoned / (answered + abandoned): the share of leavers who hung up."""
        return abandonment(self.abandoned, self.answered)

    @property
    def idle(self) -> bool:
        """Nothing arrived, waits, was answered or abandoned, and no service level."""
        counts = (self.waiting, self.arrived, self.answered, self.abandoned)
        return not any(counts) and self.service_level is None


@dataclass(frozen=True, slots=True)
class ServiceHealth:
    """Whether a service's metrics answered, and its consumer lag and dead letters."""

    name: str
    up: bool
    lag: float = 0.0
    dead_letters: float = 0.0
    error: str = ""


@dataclass
class OpsSummary:
    """Everything on the live screen."""

    queues: list[QueueRow] = field(default_factory=list)
    agents: dict[str, float] = field(default_factory=dict)
    #: Occupancy per ``domain`` label; see :attr:`occupancy`.
    occupancies: dict[str, float] = field(default_factory=dict)
    escalations_open: dict[str, float] = field(default_factory=dict)
    escalations_raised: float = 0.0
    notifications: dict[str, float] = field(default_factory=dict)
    services: list[ServiceHealth] = field(default_factory=list)

    @property
    def domains(self) -> list[str]:
        """The domain labels the queue rows show."""
        return sorted({q.domain for q in self.queues})

    @property
    def occupancy_shown(self) -> dict[str, float]:
        """Occupancy of the domain labels the rows show (all of them if none matches):
        shares of different teams are not averaged into one."""
        shown = {d: v for d, v in self.occupancies.items() if d in self.domains}
        return shown or dict(self.occupancies)

    @property
    def occupancy(self) -> float | None:
        """The occupancy, when one domain label is shown (else see :attr:`occupancy_shown`)."""
        shown = self.occupancy_shown
        return next(iter(shown.values())) if len(shown) == 1 else None

    @property
    def notifications_sent(self) -> float:
        return self.notifications.get("delivered", 0.0)

    @property
    def notifications_failed(self) -> float:
        return sum(self.notifications.get(o, 0.0) for o in _FAILED_OUTCOMES)


def _by_name(samples: Iterable[Sample]) -> dict[str, list[Sample]]:
    grouped: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        grouped[sample.name].append(sample)
    return grouped


def summarize(
    scrapes: Mapping[str, Sequence[Sample] | None], errors: Mapping[str, str] | None = None
) -> OpsSummary:
    """Build the summary from each service's samples (``None`` = its endpoint did not answer)."""
    errors = errors or {}
    summary = OpsSummary()
    queues: dict[tuple[str, str], QueueRow] = {}

    def row(sample: Sample) -> QueueRow:
        queue, domain = sample.labels.get("queue", "?"), sample.labels.get("domain", "")
        return queues.setdefault((domain, queue), QueueRow(queue, domain))

    agents: dict[str, float] = defaultdict(float)
    tiers: dict[str, float] = defaultdict(float)
    outcomes: dict[str, float] = defaultdict(float)
    staffed: set[str] = set()  # domain labels with agents
    for service, samples in scrapes.items():
        if samples is None:
            summary.services.append(ServiceHealth(service, up=False, error=errors.get(service, "")))
            continue
        grouped = _by_name(samples)
        lag = sum(s.value for s in grouped.get("switchboard_consumer_lag", ()))
        dead = sum(s.value for s in grouped.get("switchboard_events_dead_lettered_total", ()))
        summary.services.append(ServiceHealth(service, up=True, lag=lag, dead_letters=dead))
        for s in grouped.get("switchboard_router_contacts_waiting", ()):
            row(s).waiting = s.value
        for s in grouped.get("switchboard_router_longest_wait_seconds", ()):
            row(s).longest_wait = s.value
        for s in grouped.get("switchboard_router_service_level", ()):
            queue_row = row(s)
            if not math.isnan(s.value):  # NaN: the queue has served no one yet
                queue_row.service_level = s.value
        for s in grouped.get("switchboard_router_contacts_answered_total", ()):
            row(s).answered += s.value
        for s in grouped.get("switchboard_router_contacts_abandoned_total", ()):
            row(s).abandoned += s.value
        for s in grouped.get("switchboard_router_contacts_arrived_total", ()):
            row(s).arrived += s.value
        for s in grouped.get("switchboard_router_agents", ()):
            agents[_norm(s.labels.get("state", "?"))] += s.value
            if s.value > 0:
                staffed.add(s.labels.get("domain", ""))
        for s in grouped.get("switchboard_router_occupancy", ()):
            summary.occupancies[s.labels.get("domain", "")] = s.value
        for s in grouped.get("switchboard_escalation_open", ()):
            tiers[_norm(s.labels.get("tier", "?"))] += s.value
        for s in grouped.get("switchboard_escalation_raised_total", ()):
            summary.escalations_raised += s.value
        for s in grouped.get("switchboard_notifier_notifications_total", ()):
            outcomes[_norm(s.labels.get("outcome", "?"))] += s.value
    # a domain label with agents or any queue activity; if none has, every label
    active = {d for (d, _), q in queues.items() if d in staffed or not q.idle}
    active = active or {d for d, _ in queues}
    summary.queues = sorted(
        (q for (d, _), q in queues.items() if d in active), key=lambda q: (q.domain, q.queue)
    )
    summary.agents = dict(agents)
    summary.escalations_open = dict(tiers)
    summary.notifications = dict(outcomes)
    return summary


def _seconds(value: float) -> str:
    value = max(0.0, value)
    if value < 60:
        return f"{value:.0f}s"
    minutes, seconds = divmod(int(value), 60)
    return f"{minutes}m{seconds:02d}s"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _ordered(values: Mapping[str, float], order: Sequence[str]) -> list[tuple[str, float]]:
    known = [(k, values.get(k, 0.0)) for k in order]
    extra = sorted((k, v) for k, v in values.items() if k not in order)
    return known + extra


def render(
    summary: OpsSummary, *, header: str = "", service_level_target: float = 0.8
) -> list[str]:
    """The summary as text lines (no colour codes: the caller decides how to draw them)."""
    lines = [header] if header else []
    by_domain = len(summary.domains) > 1
    domain_head = f"{'DOMAIN':<14}" if by_domain else ""
    lines.append(
        f"{domain_head}{'QUEUE':<16}{'WAITING':>8}{'LONGEST':>9}{'SERVICE LVL':>13}"
        f"{'ANSWERED':>10}{'ABANDONED':>11}{'ABANDON%':>10}"
    )
    if not summary.queues:
        lines.append("  (no queue metrics yet)")
    for q in summary.queues:
        below = q.service_level is not None and q.service_level < service_level_target
        domain = f"{q.domain[:13]:<14}" if by_domain else ""
        lines.append(
            f"{domain}{q.queue:<16}{q.waiting:>8.0f}{_seconds(q.longest_wait):>9}"
            f"{_percent(q.service_level) + ('!' if below else ' '):>13}"
            f"{q.answered:>10.0f}{q.abandoned:>11.0f}{_percent(q.abandonment):>10}"
        )
    agents = " · ".join(
        f"{k.replace('_', '-')} {v:.0f}" for k, v in _ordered(summary.agents, _AGENT_ORDER)
    )
    shown = summary.occupancy_shown
    if len(shown) > 1:
        occupancy = " · ".join(f"{d} {_percent(v)}" for d, v in sorted(shown.items()))
    else:
        occupancy = _percent(summary.occupancy)
    lines.append(f"Agents: {agents}   occupancy {occupancy}")
    tiers = " · ".join(
        f"{k.replace('_', ' ')} {v:.0f}" for k, v in _ordered(summary.escalations_open, _TIER_ORDER)
    )
    lines.append(f"Escalations open: {tiers}   raised {summary.escalations_raised:.0f}")
    other = " · ".join(
        f"{k.replace('_', ' ')} {v:.0f}"
        for k, v in sorted(summary.notifications.items())
        if k not in ("delivered", *_FAILED_OUTCOMES)
    )
    lines.append(
        f"Notifications: sent {summary.notifications_sent:.0f} · failed "
        f"{summary.notifications_failed:.0f}" + (f" · {other}" if other else "")
    )
    health = []
    for s in summary.services:
        if s.up:
            health.append(f"{s.name} up (lag {s.lag:.0f}, dead letters {s.dead_letters:.0f})")
        else:
            health.append(f"{s.name} DOWN" + (f" ({s.error})" if s.error else ""))
    lines.append("Services: " + (" · ".join(health) or "-"))
    return lines
