"""What the router shows of its state: queue statistics, agents and contacts.

The rules behind the numbers live here once; adapters (RouterAdmin, the Prometheus
gauges) only render them. In particular :func:`service_level` is the one place that
turns counts into a service level, so summing counts across domains and calling it is
rendering, not a second rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from services.router.domain.model import AgentState, Channel
from services.router.domain.records import AgentRecord, ContactRecord, QueueCounts
from services.router.domain.states import ContactStatus

__all__ = [
    "AgentView",
    "ContactView",
    "QueueStats",
    "agent_view",
    "queue_stats",
    "service_level",
]


def service_level(answered_within: int, answered: int, abandoned_late: int) -> float | None:
    """Answered within the threshold / (answered + abandoned after the threshold).

    Customers who hung up after the threshold were failed by the queue, so they count
    against it; short abandons (before the threshold) do not. While the queue has
    answered no one and failed no one it has no service level: ``None``, never a false
    100 % (the exported gauge shows NaN, so the "below target" alert stays quiet).
    """
    handled = answered + abandoned_late
    return answered_within / handled if handled else None


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue of one domain, now. Counts are cumulative since the counters began."""

    queue: str
    waiting: int
    offered: int
    longest_wait: float
    service_level: float | None
    answered: int
    answered_within: int
    abandoned: int
    abandoned_late: int
    arrived: int
    estimated_wait: float
    staffed_agents: int


@dataclass(frozen=True, slots=True)
class AgentView:
    agent_id: str
    team: str
    state: AgentState
    reason: str
    skills: tuple[tuple[str, int], ...]
    languages: tuple[str, ...]
    #: Contacts in hand (offered or assigned) per channel that has any.
    active: tuple[tuple[Channel, int], ...]
    #: The agent's limit per channel.
    capacity: tuple[tuple[Channel, int], ...]
    handled: int
    occupancy: float


@dataclass(frozen=True, slots=True)
class ContactView:
    contact_id: str
    queue: str
    status: ContactStatus
    position: int
    estimated_wait: float
    agent_id: str
    waited: float
    channel: Channel


def queue_stats(
    queue: str,
    counts: QueueCounts,
    waiting: Iterable[ContactRecord],
    ringing: Iterable[ContactRecord],
    now: float,
    estimated_wait: float,
    staffed_agents: int,
) -> QueueStats:
    """``ringing``: contacts with an offer out. The customer still waits for a voice, so
    they count in the longest wait (a call ringing for 5 minutes showed 0 s)."""
    enqueued = [c.enqueued_at for c in waiting]
    offered = [c.enqueued_at for c in ringing]
    return QueueStats(
        queue=queue,
        waiting=len(enqueued),
        offered=len(offered),
        longest_wait=max((now - t for t in (*enqueued, *offered)), default=0.0),
        service_level=service_level(counts.answered_within, counts.answered, counts.abandoned_late),
        answered=counts.answered,
        answered_within=counts.answered_within,
        abandoned=counts.abandoned,
        abandoned_late=counts.abandoned_late,
        arrived=counts.arrived,
        estimated_wait=estimated_wait,
        staffed_agents=staffed_agents,
    )


def agent_view(agent: AgentRecord) -> AgentView:
    per_channel: dict[int, int] = {}
    for ch in agent.active.values():
        per_channel[ch] = per_channel.get(ch, 0) + 1
    return AgentView(
        agent_id=agent.agent_id,
        team=agent.team,
        state=agent.effective_state(),
        reason=agent.reason,
        skills=tuple(sorted(agent.skills.items())),
        languages=agent.languages,
        active=tuple((Channel(ch), n) for ch, n in sorted(per_channel.items())),
        capacity=tuple((Channel(ch), n) for ch, n in sorted(agent.capacity.items())),
        handled=agent.handled,
        occupancy=agent.occupancy(),
    )
