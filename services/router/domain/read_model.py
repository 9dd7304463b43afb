"""What the router shows of its state: queue statistics, agents and contacts.

The rules behind the numbers live here once; everything else renders them:

- :func:`service_level` is the one definition of a service level: answered within the
  queue's threshold / (answered + abandoned after the threshold), ``None`` while that
  denominator is 0. The core counts (``QueueCounts``; an abandon is late when the
  customer waited longer than ``service_level_s``), :func:`queue_stats` applies it for
  RouterAdmin, the router's ``switchboard_router_service_level`` gauge applies it to the
  counts summed over the domains sharing a ``domain`` label, the launcher's summary shows
  that gauge, and ``simulate`` applies it to its post-warm-up counts.
- :func:`abandonment` (abandoned / (answered + abandoned)) is used by the summary and
  ``simulate``; the alert and the dashboard write the same ratio in PromQL.
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
    "abandonment",
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


def abandonment(abandoned: float, answered: float) -> float | None:
    """Abandoned / (answered + abandoned): the share of the customers who left the queue
    (answered or hung up) that hung up, early or late; ``None`` while nobody left it.
    Contacts still waiting are in neither count. The alert and the dashboard compute the
    same ratio in PromQL from the exported counters (over 15 minutes)."""
    left = answered + abandoned
    return abandoned / left if left > 0 else None


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
    #: For a new arrival; ``None`` when no logged-in agent could take one.
    estimated_wait: float | None
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
    #: When waiting; ``None`` when no logged-in agent could take it now (no estimate).
    estimated_wait: float | None
    agent_id: str
    waited: float
    channel: Channel


def queue_stats(
    queue: str,
    counts: QueueCounts,
    waiting: Iterable[ContactRecord],
    ringing: Iterable[ContactRecord],
    now: float,
    estimated_wait: float | None,
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
