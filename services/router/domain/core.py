"""The routing core: one sans-I/O state machine per routing domain.

API::

    core = RoutingCore(policy)
    decisions = core.apply(event, now)      # an input dataclass from ``model``
    decisions = core.tick(now)              # due timers: offers, wrap-up, relaxation, positions
    core.next_deadline()                    # when ``tick`` has work next, or None
    core.take_changes()                     # {"agent:<id>" | "contact:<id>" | ...: snapshot}
    core.snapshot()                         # every entity, as take_changes writes them
    RoutingCore.restore(policy, snapshots)  # an identical core, timers and indexes included
    core.queue_stats(now), core.agent_views(), core.contact_view(contact_id, now)

Indexes (why a decision costs about the same at 100 and 100,000 agents):

- *Ready agents* live in heaps keyed by ``(strategy, channel, language, skill, level)``,
  where ``level`` is the agent's proficiency in that skill. A contact needing ``skill``
  at proficiency >= p looks at the heads of at most ``11 - p`` heaps; the heap order is
  the strategy's key (idle-since, occupancy, last-offer sequence), so the best agent is a
  head. Entries are invalidated lazily by a per-agent version number, never searched.
- *Waiting contacts* live in one sorted list per queue, keyed by
  ``(enqueued_at - priority_boost, seq)``. The key never changes while the contact waits,
  so aging needs no re-sorting: a normal contact that has waited longer than the VIP
  boost simply sorts before a VIP who arrived later, and nobody starves. A freed agent
  scans only the queues it can serve, from the head, and stops at the first contact it
  may take.
- *Timers* are one heap of ``(due, seq, kind, key, version)``; stale ones are skipped.

Invariants (checked by the property tests): an agent never holds more contacts than its
capacity; a contact is never on two offers; a contact offered or assigned meets its
requirements as relaxed at that moment; every contact ends with exactly one
``ContactClosed`` or is still waiting; a rejected or timed-out contact keeps its place.
An input is applied wholly or not at all: every handler checks before it changes
anything, so a :class:`RoutingError` leaves state, timers, indexes and the changelog as
they were (no rollback needed on the hot path).
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.router.domain.errors import InvalidTransition, UnknownAgent, UnknownQueue
from services.router.domain.model import (
    AgentLoggedIn,
    AgentLoggedOut,
    AgentSkillsChanged,
    AgentState,
    AgentStateChanged,
    AgentStatusChanged,
    Channel,
    ContactAbandoned,
    ContactArrived,
    ContactAssigned,
    ContactClosed,
    ContactEnded,
    ContactRequeued,
    ContactTransferred,
    ContactUnroutable,
    Decision,
    Input,
    OfferAccepted,
    OfferMade,
    OfferRejected,
    OfferTimedOut,
    Priority,
    QueuePositionUpdated,
    RequeueReason,
)
from services.router.domain.policy import QueuePolicy, RoutingPolicy, Strategy

__all__ = ["AgentView", "ContactView", "QueueStats", "RoutingCore"]

ANY = "*"  # language or skill wildcard bucket
MISSED_OFFER = "missed offer"
#: An estimate must move by this share (and at least ESTIMATE_MIN_CHANGE_S) to be re-sent.
ESTIMATE_CHANGE_SHARE = 0.2
ESTIMATE_MIN_CHANGE_S = 10.0
#: Weight of the newest handle time in the per-queue moving average.
HANDLE_EWMA_ALPHA = 0.2

_OFFER, _WRAP, _RELAX, _RETRY = "offer", "wrap", "relax", "retry"
#: A ready-agent heap is rebuilt without its stale entries once it holds this many more
#: than twice its live entries: amortised O(1) per push, and never every heap at once.
COMPACT_SLACK = 64
#: How far a freed agent scans one queue's line for a contact it may take.
SCAN_LIMIT = 256


@dataclass
class _Agent:
    agent_id: str
    team: str
    skills: dict[str, int]
    languages: tuple[str, ...]
    capacity: dict[int, int]
    state: AgentState = AgentState.AVAILABLE
    reason: str = ""
    idle_since: float = 0.0
    wrap_until: float = 0.0
    active: dict[str, int] = field(default_factory=dict)  # contact id -> channel
    offers: dict[str, str] = field(default_factory=dict)  # offer id -> contact id
    handled: int = 0
    last_offer_seq: int = 0
    version: int = 0

    def channel_count(self, channel: int) -> int:
        return sum(1 for ch in self.active.values() if ch == channel)

    def can_take(self, channel: int, max_total: int) -> bool:
        """Capacity rule: per-channel limits, a total limit, and voice is exclusive."""
        if self.state != AgentState.AVAILABLE:
            return False
        limit = self.capacity.get(channel, 0)
        if limit <= 0 or len(self.active) >= max_total:
            return False
        if not self.active:
            return True
        channels = self.active.values()
        if channel == Channel.VOICE:  # voice only on an otherwise free agent
            return False
        if channel != Channel.VOICE and Channel.VOICE in channels:
            return False
        return self.channel_count(channel) < limit

    def occupancy(self) -> float:
        total = sum(self.capacity.values()) or 1
        return len(self.active) / total

    def effective_state(self) -> AgentState:
        if self.state != AgentState.AVAILABLE:
            return self.state
        if self.offers:
            return AgentState.RESERVED
        if self.active:
            return AgentState.BUSY
        return AgentState.AVAILABLE

    def snapshot(self) -> dict[str, Any]:
        return {
            "team": self.team,
            "skills": self.skills,
            "languages": list(self.languages),
            "capacity": {str(k): v for k, v in self.capacity.items()},
            "state": int(self.state),
            "reason": self.reason,
            "idle_since": self.idle_since,
            "wrap_until": self.wrap_until,
            "active": self.active,
            "offers": self.offers,
            "handled": self.handled,
            "last_offer_seq": self.last_offer_seq,
        }


@dataclass
class _Contact:
    contact_id: str
    queue: str
    channel: int
    required: dict[str, int]
    optional: dict[str, int]
    language: str
    priority: int
    preferred_agent: str
    customer_id: str
    enqueued_at: float
    seq: int
    status: str = "waiting"  # waiting | offered | assigned
    agent: str = ""
    offer_id: str = ""
    offer_expires: float = 0.0
    attempt: int = 0
    step: int = 0
    declined: list[str] = field(default_factory=list)
    unroutable_reported: bool = False
    sent_position: int = 0
    sent_estimate: float = -1.0
    assigned_at: float = 0.0

    def key(self, boost: float) -> tuple[float, int]:
        return (self.enqueued_at - boost, self.seq)

    def snapshot(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "channel": self.channel,
            "required": self.required,
            "optional": self.optional,
            "language": self.language,
            "priority": self.priority,
            "preferred_agent": self.preferred_agent,
            "customer_id": self.customer_id,
            "enqueued_at": self.enqueued_at,
            "seq": self.seq,
            "status": self.status,
            "agent": self.agent,
            "offer_id": self.offer_id,
            "offer_expires": self.offer_expires,
            "attempt": self.attempt,
            "step": self.step,
            "declined": self.declined,
            "unroutable_reported": self.unroutable_reported,
            "sent_position": self.sent_position,
            "sent_estimate": self.sent_estimate,
            "assigned_at": self.assigned_at,
        }


@dataclass
class _QueueState:
    answered: int = 0
    answered_within: int = 0
    abandoned: int = 0
    abandoned_late: int = 0
    arrived: int = 0
    handle_s: float = 0.0

    @property
    def service_level(self) -> float:
        """Answered within the threshold / (answered + abandoned after the threshold).

        Customers who hung up after the threshold were failed by the queue, so they
        count against it; short abandons (before the threshold) do not. With nothing
        answered or abandoned yet the queue has failed no one: 1.0.
        """
        handled = self.answered + self.abandoned_late
        return self.answered_within / handled if handled else 1.0

    def snapshot(self) -> dict[str, Any]:
        return {
            "answered": self.answered,
            "answered_within": self.answered_within,
            "abandoned": self.abandoned,
            "abandoned_late": self.abandoned_late,
            "arrived": self.arrived,
            "handle_s": self.handle_s,
        }


@dataclass(frozen=True, slots=True)
class QueueStats:
    queue: str
    waiting: int
    offered: int
    longest_wait: float
    service_level: float
    answered: int
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
    active: tuple[tuple[Channel, int], ...]
    handled: int
    occupancy: float


@dataclass(frozen=True, slots=True)
class ContactView:
    contact_id: str
    queue: str
    status: str
    position: int
    estimated_wait: float
    agent_id: str
    waited: float
    channel: Channel


class RoutingCore:
    """Routing state of one domain. Not thread-safe; one writer (the consume loop)."""

    def __init__(self, policy: RoutingPolicy) -> None:
        self.policy = policy
        self._agents: dict[str, _Agent] = {}
        self._contacts: dict[str, _Contact] = {}
        self._queues: dict[str, _QueueState] = {q: _QueueState() for q in policy.queues}
        self._waiting: dict[str, list[tuple[float, int, str]]] = {q: [] for q in policy.queues}
        self._ready: dict[tuple[Strategy, int, str, str, int], list[tuple[Any, ...]]] = {}
        self._timers: list[tuple[float, int, str, str, int]] = []
        self._seq = 0
        self._timer_seq = 0
        self._offer_seq = 0
        self._strategies = {q.strategy for q in policy.queues.values()}
        self._dirty: set[str] = set()
        self._dirty_queues: set[str] = set()
        self._refresh_due: float | None = None
        self._last_refresh = 0.0
        self._compact_at: dict[tuple[Strategy, int, str, str, int], int] = {}
        # anchor skill -> (policy order, queue) of the queues that require it (ANY: none)
        self._queues_by_anchor: dict[str, list[tuple[int, str]]] = {}
        for order, qp in enumerate(policy.queues.values()):
            anchor = min(s for s, _ in qp.skills) if qp.skills else ANY
            self._queues_by_anchor.setdefault(anchor, []).append((order, qp.name))
        # logged-in agents per (language, skill, proficiency): staffing and routability
        self._staff: dict[tuple[str, str, int], int] = {}
        # queue -> queues whose contacts may overflow into it (by step index)
        self._overflow_from: dict[str, list[tuple[str, int]]] = {q: [] for q in policy.queues}
        for qp in policy.queues.values():
            for i, step in enumerate(qp.steps, start=1):
                for target in step.overflow_queues:
                    self._overflow_from[target].append((qp.name, i))

    # ------------------------------------------------------------------ entry points

    def apply(self, event: Input, now: float) -> list[Decision]:
        """Apply one input; returns the decisions it caused (possibly none)."""
        out: list[Decision] = []
        match event:
            case ContactArrived():
                self._arrive(event, now, out)
            case ContactAbandoned():
                self._abandon(event.contact_id, now, out)
            case ContactEnded():
                self._end(event.contact_id, now, out)
            case ContactTransferred():
                self._transfer(event, now, out)
            case AgentLoggedIn():
                self._login(event, now, out)
            case AgentLoggedOut():
                self._logout(event.agent_id, now, out)
            case AgentStateChanged():
                self._state_change(event, now, out)
            case AgentSkillsChanged():
                self._skills_change(event, now, out)
            case OfferAccepted():
                self._accept(event, now, out)
            case OfferRejected():
                self._reject(event, now, out)
        return out

    def tick(self, now: float) -> list[Decision]:
        """Fire every timer due at ``now`` and refresh positions of queues that moved."""
        out: list[Decision] = []
        while self._timers and self._timers[0][0] <= now:
            _due, _seq, kind, key, version = heapq.heappop(self._timers)
            if kind == _OFFER:
                self._offer_timeout(key, version, now, out)
            elif kind == _WRAP:
                self._wrap_end(key, version, now, out)
            elif kind == _RELAX:
                self._relax(key, version, now, out)
            elif kind == _RETRY:
                self._retry(key, version, now, out)
        if self._refresh_due is not None and self._refresh_due <= now:
            self._refresh_due = None
            self._last_refresh = now
            self._refresh_positions(now, out)
        return out

    def next_deadline(self) -> float | None:
        due = self._timers[0][0] if self._timers else None
        if self._refresh_due is not None and (due is None or self._refresh_due < due):
            return self._refresh_due
        return due

    def take_changes(self) -> dict[str, dict[str, Any] | None]:
        """Snapshots of every entity changed since the last call (``None`` = deleted)."""
        changes: dict[str, dict[str, Any] | None] = {}
        for key in self._dirty:
            kind, _, ident = key.partition(":")
            if kind == "agent":
                agent = self._agents.get(ident)
                changes[key] = agent.snapshot() if agent else None
            elif kind == "contact":
                contact = self._contacts.get(ident)
                changes[key] = contact.snapshot() if contact else None
            elif kind == "queue":
                changes[key] = self._queues[ident].snapshot()
            elif kind == "meta":
                changes[key] = {"seq": self._seq, "offer_seq": self._offer_seq}
        self._dirty.clear()
        return changes

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every entity, as :meth:`take_changes` would write them (for checks and tests)."""
        entities: dict[str, dict[str, Any]] = {
            "meta:": {"seq": self._seq, "offer_seq": self._offer_seq}
        }
        entities.update((f"queue:{q}", qs.snapshot()) for q, qs in self._queues.items())
        entities.update((f"agent:{a}", agent.snapshot()) for a, agent in self._agents.items())
        entities.update((f"contact:{c}", ct.snapshot()) for c, ct in self._contacts.items())
        return entities

    @classmethod
    def restore(cls, policy: RoutingPolicy, snapshots: Mapping[str, Any]) -> RoutingCore:
        """Rebuild a core from :meth:`take_changes` snapshots (latest per key)."""
        core = cls(policy)
        for key, snap in snapshots.items():
            kind, _, ident = key.partition(":")
            if snap is None:
                continue
            if kind == "meta":
                core._seq = int(snap["seq"])
                core._offer_seq = int(snap["offer_seq"])
            elif kind == "queue" and ident in core._queues:
                core._queues[ident] = _QueueState(**snap)
            elif kind == "agent":
                core._agents[ident] = _Agent(
                    agent_id=ident,
                    team=snap["team"],
                    skills=dict(snap["skills"]),
                    languages=tuple(snap["languages"]),
                    capacity={int(k): int(v) for k, v in snap["capacity"].items()},
                    state=AgentState(snap["state"]),
                    reason=snap["reason"],
                    idle_since=snap["idle_since"],
                    wrap_until=snap["wrap_until"],
                    active=dict(snap["active"]),
                    offers=dict(snap["offers"]),
                    handled=snap["handled"],
                    last_offer_seq=snap["last_offer_seq"],
                )
            elif kind == "contact" and snap["queue"] in core._queues:
                core._contacts[ident] = _Contact(contact_id=ident, **snap)
        for agent in core._agents.values():
            if agent.state != AgentState.LOGGED_OUT:
                core._count_in(agent, +1)
            if agent.state == AgentState.WRAP_UP:
                core._schedule(agent.wrap_until, _WRAP, agent.agent_id, agent.version)
            core._index_agent(agent)
        for contact in core._contacts.values():
            core._seq = max(core._seq, contact.seq + 1)
            if contact.status == "waiting":
                core._enqueue(contact)
            elif contact.status == "offered":
                core._schedule(contact.offer_expires, _OFFER, contact.contact_id, contact.attempt)
            core._schedule_relaxation(contact)
        core._dirty.clear()
        if any(c.status == "waiting" for c in core._contacts.values()):
            core._dirty_queues.update(core.policy.queues)
            core._refresh_due = 0.0
        return core

    # ------------------------------------------------------------------ views

    def queue_stats(self, now: float) -> list[QueueStats]:
        stats = []
        for name, qs in self._queues.items():
            waiting = [self._contacts[c] for _, _, c in self._waiting[name]]
            offered = sum(
                1 for c in self._contacts.values() if c.queue == name and c.status == "offered"
            )
            longest = max((now - c.enqueued_at for c in waiting), default=0.0)
            stats.append(
                QueueStats(
                    queue=name,
                    waiting=len(waiting),
                    offered=offered,
                    longest_wait=longest,
                    service_level=qs.service_level,
                    answered=qs.answered,
                    abandoned=qs.abandoned,
                    abandoned_late=qs.abandoned_late,
                    arrived=qs.arrived,
                    estimated_wait=self._estimate(name, len(waiting) + 1),
                    staffed_agents=self._staffed(name),
                )
            )
        return stats

    def agent_views(self) -> list[AgentView]:
        views = []
        for agent in self._agents.values():
            per_channel: dict[int, int] = {}
            for ch in agent.active.values():
                per_channel[ch] = per_channel.get(ch, 0) + 1
            views.append(
                AgentView(
                    agent_id=agent.agent_id,
                    team=agent.team,
                    state=agent.effective_state(),
                    reason=agent.reason,
                    skills=tuple(sorted(agent.skills.items())),
                    languages=agent.languages,
                    active=tuple((Channel(ch), n) for ch, n in sorted(per_channel.items())),
                    handled=agent.handled,
                    occupancy=agent.occupancy(),
                )
            )
        return views

    def contact_view(self, contact_id: str, now: float) -> ContactView | None:
        contact = self._contacts.get(contact_id)
        if contact is None:
            return None
        position = self._position(contact) if contact.status == "waiting" else 0
        return ContactView(
            contact_id=contact_id,
            queue=contact.queue,
            status=contact.status,
            position=position,
            estimated_wait=self._estimate(contact.queue, position) if position else 0.0,
            agent_id=contact.agent,
            waited=now - contact.enqueued_at,
            channel=Channel(contact.channel),
        )

    # ------------------------------------------------------------------ contact events

    def _arrive(self, event: ContactArrived, now: float, out: list[Decision]) -> None:
        if event.contact_id in self._contacts:
            return  # a repeated arrival: already routing it
        qp = self.policy.queues.get(event.queue)
        if qp is None:
            raise UnknownQueue(f"queue {event.queue!r} is not configured")
        required = {r.skill: r.min_proficiency for r in event.required_skills} or dict(qp.skills)
        optional = {r.skill: r.min_proficiency for r in event.optional_skills} or dict(
            qp.optional_skills
        )
        contact = _Contact(
            contact_id=event.contact_id,
            queue=event.queue,
            channel=int(event.channel),
            required=required,
            optional=optional,
            language=event.language or qp.language,
            priority=int(event.priority),
            preferred_agent=event.preferred_agent_id,
            customer_id=event.customer_id,
            enqueued_at=now,
            seq=self._next_seq(),
        )
        if contact.preferred_agent and contact.preferred_agent not in self._agents:
            contact.preferred_agent = ""  # not logged in: do not hold the customer for them
        self._contacts[contact.contact_id] = contact
        self._queues[event.queue].arrived += 1
        self._touch_queue(event.queue)
        self._schedule_relaxation(contact)
        self._enqueue(contact)
        self._mark(contact)
        self._check_routable(contact, out)
        self._dispatch_contact(contact, now, out)

    def _abandon(self, contact_id: str, now: float, out: list[Decision]) -> None:
        contact = self._contacts.get(contact_id)
        if contact is None:
            return
        if contact.status == "assigned":
            self._end(contact_id, now, out)  # hung up while talking: handled, not abandoned
            return
        freed = self._agents.get(contact.agent) if contact.status == "offered" else None
        if contact.status == "offered":
            self._withdraw_offer(contact, freed, now, out)
        self._dequeue(contact)
        qs = self._queues[contact.queue]
        qs.abandoned += 1
        qs.abandoned_late += (
            now - contact.enqueued_at > self.policy.queues[contact.queue].service_level_s
        )
        self._touch_queue(contact.queue)
        self._close(contact, now, abandoned=True, out=out)
        if freed is not None:
            self._dispatch_agent(freed, now, out)

    def _end(self, contact_id: str, now: float, out: list[Decision]) -> None:
        contact = self._contacts.get(contact_id)
        if contact is None:
            return
        freed = self._agents.get(contact.agent) if contact.status == "offered" else None
        if contact.status == "offered":
            self._withdraw_offer(contact, freed, now, out)
        if contact.status == "assigned":
            agent = self._agents.get(contact.agent)
            if agent is not None:
                agent.active.pop(contact_id, None)
                agent.handled += 1
                qs = self._queues[contact.queue]
                handle = max(0.0, now - contact.assigned_at)
                qs.handle_s = (
                    handle
                    if qs.handle_s == 0
                    else ((1 - HANDLE_EWMA_ALPHA) * qs.handle_s + HANDLE_EWMA_ALPHA * handle)
                )
                self._mark_queue(contact.queue)
                self._start_wrap_up(agent, self.policy.queues[contact.queue], now, out)
        self._dequeue(contact)
        self._close(contact, now, abandoned=False, out=out)
        if freed is not None:
            self._dispatch_agent(freed, now, out)

    def _transfer(self, event: ContactTransferred, now: float, out: list[Decision]) -> None:
        contact = self._contacts.get(event.contact_id)
        if contact is None:
            return
        target = event.to_queue or contact.queue
        qp = self.policy.queues.get(target)
        if qp is None:
            raise UnknownQueue(f"transfer to unconfigured queue {target!r}")
        previous_agent = contact.agent
        freed = self._agents.get(contact.agent) if contact.status == "offered" else None
        if contact.status == "offered":
            self._withdraw_offer(contact, freed, now, out)
        elif contact.status == "assigned":
            agent = self._agents.get(contact.agent)
            if agent is not None:
                agent.active.pop(contact.contact_id, None)
                agent.handled += 1
                self._start_wrap_up(agent, self.policy.queues[contact.queue], now, out)
        self._dequeue(contact)
        self._touch_queue(contact.queue)
        contact.queue = target
        contact.required = dict(qp.skills)
        contact.optional = dict(qp.optional_skills)
        contact.language = contact.language or qp.language
        contact.status, contact.agent, contact.offer_id = "waiting", "", ""
        contact.step = 0
        contact.preferred_agent = event.to_agent_id if event.to_agent_id in self._agents else ""
        contact.declined = []
        self._enqueue(contact)
        self._touch_queue(target)
        self._schedule_relaxation(contact)
        self._mark(contact)
        out.append(
            ContactRequeued(contact.contact_id, target, RequeueReason.TRANSFERRED, previous_agent)
        )
        self._dispatch_contact(contact, now, out)
        if freed is not None:
            self._dispatch_agent(freed, now, out)

    # ------------------------------------------------------------------ agent events

    def _login(self, event: AgentLoggedIn, now: float, out: list[Decision]) -> None:
        existing = self._agents.get(event.agent_id)
        if existing is not None and existing.state != AgentState.LOGGED_OUT:
            return  # already logged in: a repeated login changes nothing
        capacity = {int(ch): n for ch, n in event.capacity} or {
            int(ch): n for ch, n in self.policy.capacity.items()
        }
        agent = _Agent(
            agent_id=event.agent_id,
            team=event.team,
            skills=dict(event.skills),
            languages=tuple(event.languages),
            capacity=capacity,
            idle_since=now,
        )
        if existing is not None:  # logged out with contacts still in hand
            agent.active = existing.active
            agent.handled = existing.handled
            agent.version = existing.version + 1
        self._agents[agent.agent_id] = agent
        self._count_in(agent, +1)
        self._mark(agent)
        self._status(agent, out)
        self._touch_all_queues()
        self._index_agent(agent)
        self._dispatch_agent(agent, now, out)

    def _logout(self, agent_id: str, now: float, out: list[Decision]) -> None:
        agent = self._agents.get(agent_id)
        if agent is None or agent.state == AgentState.LOGGED_OUT:
            return
        agent.state, agent.reason = AgentState.LOGGED_OUT, ""
        self._count_in(agent, -1)
        self._release_offers(agent, now, out)
        self._bump(agent)
        self._status(agent, out)
        self._touch_all_queues()
        if not agent.active:
            del self._agents[agent_id]
            self._dirty.add(f"agent:{agent_id}")

    def _state_change(self, event: AgentStateChanged, now: float, out: list[Decision]) -> None:
        agent = self._agents.get(event.agent_id)
        if agent is None or agent.state == AgentState.LOGGED_OUT:
            raise UnknownAgent(f"agent {event.agent_id!r} is not logged in")
        if event.state == AgentState.AWAY:
            if agent.state == AgentState.AWAY and agent.reason == event.reason:
                return
            agent.state, agent.reason = AgentState.AWAY, event.reason
            self._release_offers(agent, now, out)
            self._bump(agent)
            self._status(agent, out)
        elif event.state == AgentState.AVAILABLE:
            if agent.state == AgentState.AVAILABLE:
                return
            agent.state, agent.reason = AgentState.AVAILABLE, ""
            agent.idle_since = now
            self._bump(agent)
            self._status(agent, out)
            self._dispatch_agent(agent, now, out)
        elif event.state == AgentState.LOGGED_OUT:
            self._logout(event.agent_id, now, out)
        else:
            raise InvalidTransition(
                f"agents may set AVAILABLE, AWAY or LOGGED_OUT, not {event.state.name}"
            )

    def _skills_change(self, event: AgentSkillsChanged, now: float, out: list[Decision]) -> None:
        agent = self._agents.get(event.agent_id)
        if agent is None or agent.state == AgentState.LOGGED_OUT:
            # logged out with a contact still in hand: not in the staffing counters, so
            # moving it between skills would count an agent nobody can reach
            raise UnknownAgent(f"agent {event.agent_id!r} is not logged in")
        self._count_in(agent, -1)
        agent.skills = dict(event.skills)
        agent.languages = tuple(event.languages)
        self._count_in(agent, +1)
        self._bump(agent)
        self._touch_all_queues()
        self._dispatch_agent(agent, now, out)

    def _accept(self, event: OfferAccepted, now: float, out: list[Decision]) -> None:
        contact = self._contacts.get(event.contact_id)
        if contact is None or contact.offer_id != event.offer_id or contact.status != "offered":
            return  # late answer to an offer that timed out, was withdrawn or closed
        if contact.agent != event.agent_id:
            raise InvalidTransition(
                f"offer {event.offer_id} was made to {contact.agent}, not {event.agent_id}"
            )
        agent = self._agents[contact.agent]
        agent.offers.pop(contact.offer_id, None)
        contact.status = "assigned"
        contact.assigned_at = now
        waited = now - contact.enqueued_at
        qp = self.policy.queues[contact.queue]
        within = waited <= qp.service_level_s
        qs = self._queues[contact.queue]
        qs.answered += 1
        qs.answered_within += within
        self._mark_queue(contact.queue)
        self._mark(contact)
        self._bump(agent)
        out.append(
            ContactAssigned(
                contact.offer_id, contact.contact_id, agent.agent_id, contact.queue, waited, within
            )
        )
        self._status(agent, out)
        self._dispatch_agent(agent, now, out)

    def _reject(self, event: OfferRejected, now: float, out: list[Decision]) -> None:
        contact = self._contacts.get(event.contact_id)
        if contact is None or contact.offer_id != event.offer_id or contact.status != "offered":
            return
        if contact.agent != event.agent_id:
            raise InvalidTransition(
                f"offer {event.offer_id} was made to {contact.agent}, not {event.agent_id}"
            )
        agent = self._agents[contact.agent]
        contact.declined.append(agent.agent_id)
        self._requeue(contact, agent, RequeueReason.REJECTED, now, out)
        self._status(agent, out)
        self._dispatch_contact(contact, now, out)
        self._dispatch_agent(agent, now, out)

    # ------------------------------------------------------------------ timers

    def _offer_timeout(
        self, contact_id: str, attempt: int, now: float, out: list[Decision]
    ) -> None:
        contact = self._contacts.get(contact_id)
        if contact is None or contact.status != "offered" or contact.attempt != attempt:
            return
        agent = self._agents.get(contact.agent)
        out.append(OfferTimedOut(contact.offer_id, contact_id, contact.agent))
        if agent is not None:
            contact.declined.append(agent.agent_id)
            self._requeue(contact, agent, RequeueReason.TIMED_OUT, now, out)
            agent.state, agent.reason = AgentState.AWAY, MISSED_OFFER
            self._release_offers(agent, now, out)
            self._bump(agent)
            self._status(agent, out)
        self._dispatch_contact(contact, now, out)

    def _wrap_end(self, agent_id: str, version: int, now: float, out: list[Decision]) -> None:
        agent = self._agents.get(agent_id)
        if agent is None or agent.state != AgentState.WRAP_UP or agent.version != version:
            return
        agent.state, agent.reason = AgentState.AVAILABLE, ""
        agent.idle_since = now
        self._bump(agent)
        self._status(agent, out)
        self._dispatch_agent(agent, now, out)

    def _retry(self, contact_id: str, attempt: int, now: float, out: list[Decision]) -> None:
        """An offer was declined or missed a while ago: its agent may be tried again."""
        contact = self._contacts.get(contact_id)
        if contact is None or contact.attempt != attempt or not contact.declined:
            return
        contact.declined = []
        self._mark(contact)
        self._dispatch_contact(contact, now, out)

    def _relax(self, contact_id: str, step: int, now: float, out: list[Decision]) -> None:
        contact = self._contacts.get(contact_id)
        if contact is None or contact.step >= step:
            return
        contact.step = step
        contact.declined = []
        self._mark(contact)
        self._schedule_relaxation(contact)
        if contact.status == "waiting":
            self._check_routable(contact, out)
            self._dispatch_contact(contact, now, out)

    # ------------------------------------------------------------------ routing

    def _requirements(self, contact: _Contact) -> tuple[dict[str, int], str, bool]:
        """Skills (with relaxed minimums), language and whether only the preferred agent may
        take it, as relaxed at the contact's current step."""
        qp = self.policy.queues[contact.queue]
        delta = 0
        drop_optional = False
        release = False
        for step in qp.steps[: contact.step]:
            delta += step.min_proficiency_delta
            drop_optional |= step.drop_optional_skills
            release |= step.release_preferred_agent
        skills = {s: max(1, p - delta) for s, p in contact.required.items()}
        if not drop_optional:
            for s, p in contact.optional.items():
                skills[s] = max(skills.get(s, 1), max(1, p - delta))
        preferred_only = bool(contact.preferred_agent) and not release
        return skills, contact.language, preferred_only

    def _queues_open_to(self, contact: _Contact) -> list[str]:
        qp = self.policy.queues[contact.queue]
        queues = [contact.queue]
        for step in qp.steps[: contact.step]:
            queues.extend(step.overflow_queues)
        return queues

    def _eligible(
        self, agent: _Agent, contact: _Contact, skills: Mapping[str, int], language: str
    ) -> bool:
        if agent.agent_id in contact.declined:
            return False  # not straight back to who just declined; a retry timer lifts this
        if language and language not in agent.languages:
            return False
        for skill, level in skills.items():
            if agent.skills.get(skill, 0) < level:
                return False
        return agent.can_take(contact.channel, self.policy.max_total)

    def _best_agent(self, contact: _Contact, now: float) -> _Agent | None:
        skills, language, preferred_only = self._requirements(contact)
        if preferred_only:
            if (
                now - contact.enqueued_at
                >= self.policy.queues[contact.queue].preferred_agent_timeout_s
            ):
                preferred_only = False
            else:
                agent = self._agents.get(contact.preferred_agent)
                if agent is not None and self._eligible(agent, contact, skills, language):
                    return agent
                return None
        best: tuple[Any, ...] | None = None
        best_agent: _Agent | None = None
        for queue in self._queues_open_to(contact):
            qp = self.policy.queues[queue]
            q_skills = dict(skills)
            if queue != contact.queue:  # overflow: the other queue's requirements apply
                q_skills = dict(qp.skills)
            q_language = language if queue == contact.queue else (qp.language or language)
            found = self._search(qp.strategy, contact, q_skills, q_language)
            if found is not None and (best is None or found[0] < best):
                best, best_agent = found[0], found[1]
        return best_agent

    def _search(
        self, strategy: Strategy, contact: _Contact, skills: Mapping[str, int], language: str
    ) -> tuple[tuple[Any, ...], _Agent] | None:
        """Best eligible ready agent for ``contact`` among the heads of the level heaps."""
        if skills:
            primary = min(skills, key=lambda s: (-skills[s], s))
            low = skills[primary]
        else:
            primary, low = ANY, 10
        lang = language or ANY
        best: tuple[tuple[Any, ...], _Agent] | None = None
        levels = range(10, low - 1, -1)
        for level in levels:
            heap = self._ready.get((strategy, contact.channel, lang, primary, level))
            if not heap:
                continue
            found = self._first_eligible(heap, contact, skills, language)
            if found is None:
                continue
            rank = (0 if strategy != Strategy.MOST_PROFICIENT else -level, *found[0])
            if best is None or rank < best[0]:
                best = (rank, found[1])
            if strategy == Strategy.MOST_PROFICIENT:
                break  # higher levels come first and dominate
        return best

    def _first_eligible(
        self,
        heap: list[tuple[Any, ...]],
        contact: _Contact,
        skills: Mapping[str, int],
        language: str,
    ) -> tuple[tuple[Any, ...], _Agent] | None:
        skipped: list[tuple[Any, ...]] = []
        result: tuple[tuple[Any, ...], _Agent] | None = None
        while heap:
            entry = heap[0]
            agent = self._agents.get(entry[-1])
            if (
                agent is None
                or agent.version != entry[-2]
                or not agent.can_take(contact.channel, self.policy.max_total)
            ):
                heapq.heappop(heap)  # stale: the agent changed since this entry was pushed
                continue
            if self._eligible(agent, contact, skills, language):
                result = (entry[:-2], agent)
                break
            skipped.append(heapq.heappop(heap))
        for entry in skipped:
            heapq.heappush(heap, entry)
        return result

    def _dispatch_contact(self, contact: _Contact, now: float, out: list[Decision]) -> None:
        if contact.status != "waiting":
            return
        agent = self._best_agent(contact, now)
        if agent is not None:
            self._offer(contact, agent, now, out)

    def _dispatch_agent(self, agent: _Agent, now: float, out: list[Decision]) -> None:
        """An agent may take more work: offer the best waiting contacts it can serve."""
        while agent.state == AgentState.AVAILABLE:
            contact = self._best_contact(agent, now)
            if contact is None:
                return
            self._offer(contact, agent, now, out)

    def _best_contact(self, agent: _Agent, now: float) -> _Contact | None:
        best: tuple[float, int] | None = None
        best_contact: _Contact | None = None
        for queue, min_step in self._candidate_queues(agent):
            for scanned, (key0, key1, contact_id) in enumerate(self._waiting[queue]):
                if scanned >= SCAN_LIMIT or (best is not None and (key0, key1) >= best):
                    break
                contact = self._contacts[contact_id]
                if contact.step < min_step:
                    continue
                if self._agent_may_take(agent, contact, now):
                    best, best_contact = (key0, key1), contact
                    break
        return best_contact

    def _candidate_queues(self, agent: _Agent) -> list[tuple[str, int]]:
        """Queues (and overflow sources, with the step that opens them) the agent may serve."""
        return [(q, step) for q, step in self._servable_queues(agent) if self._waiting[q]]

    def _servable_queues(self, agent: _Agent) -> list[tuple[str, int]]:
        """Every queue whose skills and language the agent has, in policy order.

        Queues are indexed by one of their skills (the anchor), so this looks only at
        queues anchored on the agent's own skills, not at every queue of the policy.
        """
        found: list[tuple[int, str]] = []
        for anchor in (*agent.skills, ANY):
            for order, name in self._queues_by_anchor.get(anchor, ()):
                qp = self.policy.queues[name]
                if qp.language and qp.language not in agent.languages:
                    continue
                if any(s not in agent.skills for s, _ in qp.skills):
                    continue
                found.append((order, name))
        found.sort()
        servable: list[tuple[str, int]] = []
        for _order, name in found:
            servable.append((name, 0))
            servable.extend(self._overflow_from[name])
        return servable

    def _agent_may_take(self, agent: _Agent, contact: _Contact, now: float) -> bool:
        skills, language, preferred_only = self._requirements(contact)
        if preferred_only and agent.agent_id != contact.preferred_agent:
            waited = now - contact.enqueued_at
            if waited < self.policy.queues[contact.queue].preferred_agent_timeout_s:
                return False
        if self._eligible(agent, contact, skills, language):
            return True
        for queue in self._queues_open_to(contact)[1:]:
            qp = self.policy.queues[queue]
            if self._eligible(agent, contact, dict(qp.skills), qp.language or language):
                return True
        return False

    def _offer(self, contact: _Contact, agent: _Agent, now: float, out: list[Decision]) -> None:
        qp = self.policy.queues[contact.queue]
        self._dequeue(contact)
        contact.attempt += 1
        contact.status = "offered"
        contact.agent = agent.agent_id
        contact.offer_id = f"{contact.contact_id}#{contact.attempt}"
        contact.offer_expires = now + qp.offer_timeout_s
        contact.declined = []
        agent.active[contact.contact_id] = contact.channel
        agent.offers[contact.offer_id] = contact.contact_id
        self._offer_seq += 1
        agent.last_offer_seq = self._offer_seq
        self._dirty.add("meta:")
        self._bump(agent)
        self._mark(contact)
        self._touch_queue(contact.queue)
        self._schedule(contact.offer_expires, _OFFER, contact.contact_id, contact.attempt)
        out.append(
            OfferMade(
                offer_id=contact.offer_id,
                contact_id=contact.contact_id,
                agent_id=agent.agent_id,
                queue=contact.queue,
                channel=Channel(contact.channel),
                expires_at=contact.offer_expires,
                waited=now - contact.enqueued_at,
                attempt=contact.attempt,
                relaxation_step=contact.step,
            )
        )
        self._status(agent, out)

    def _requeue(
        self,
        contact: _Contact,
        agent: _Agent,
        reason: RequeueReason,
        now: float,
        out: list[Decision],
    ) -> None:
        """Back to its original place in line: the sort key never changed."""
        agent.active.pop(contact.contact_id, None)
        agent.offers.pop(contact.offer_id, None)
        contact.status, contact.agent = "waiting", ""
        self._bump(agent)
        self._mark(contact)
        self._enqueue(contact)
        self._touch_queue(contact.queue)
        if reason in (RequeueReason.REJECTED, RequeueReason.TIMED_OUT):
            retry_after = self.policy.queues[contact.queue].offer_timeout_s
            self._schedule(now + retry_after, _RETRY, contact.contact_id, contact.attempt)
        out.append(ContactRequeued(contact.contact_id, contact.queue, reason, agent.agent_id))

    def _withdraw_offer(
        self, contact: _Contact, agent: _Agent | None, now: float, out: list[Decision]
    ) -> None:
        """The contact left while ringing: free the agent without blaming them.

        The caller closes or requeues the contact first and only then lets the agent take
        new work, so the decisions read in an order where capacity is never exceeded.
        """
        if agent is not None:
            agent.active.pop(contact.contact_id, None)
            agent.offers.pop(contact.offer_id, None)
            self._bump(agent)
            self._status(agent, out)
        contact.status, contact.agent = "waiting", ""

    def _release_offers(self, agent: _Agent, now: float, out: list[Decision]) -> None:
        """Withdraw every offer ringing at an agent who went away or logged out."""
        for offer_id, contact_id in list(agent.offers.items()):
            contact = self._contacts.get(contact_id)
            agent.offers.pop(offer_id, None)
            if contact is None or contact.offer_id != offer_id or contact.status != "offered":
                continue
            self._requeue(contact, agent, RequeueReason.AGENT_UNAVAILABLE, now, out)
            self._dispatch_contact(contact, now, out)

    def _start_wrap_up(
        self, agent: _Agent, qp: QueuePolicy, now: float, out: list[Decision]
    ) -> None:
        if agent.state == AgentState.LOGGED_OUT:
            if not agent.active:
                del self._agents[agent.agent_id]
                self._dirty.add(f"agent:{agent.agent_id}")
            return
        if agent.state != AgentState.AVAILABLE:
            self._bump(agent)
            return
        if qp.wrap_up_s > 0:
            agent.state, agent.reason = AgentState.WRAP_UP, "wrap-up"
            agent.wrap_until = now + qp.wrap_up_s
            self._bump(agent)
            self._schedule(agent.wrap_until, _WRAP, agent.agent_id, agent.version)
            self._status(agent, out)
        else:
            agent.idle_since = now
            self._bump(agent)
            self._status(agent, out)
            self._dispatch_agent(agent, now, out)

    def _close(
        self, contact: _Contact, now: float, *, abandoned: bool, out: list[Decision]
    ) -> None:
        del self._contacts[contact.contact_id]
        self._dirty.add(f"contact:{contact.contact_id}")
        out.append(
            ContactClosed(
                contact.contact_id,
                contact.queue,
                abandoned,
                (contact.assigned_at or now) - contact.enqueued_at,
            )
        )

    def _check_routable(self, contact: _Contact, out: list[Decision]) -> None:
        """Say once if no logged-in agent could take the contact even fully relaxed."""
        if contact.unroutable_reported:
            return
        qp = self.policy.queues[contact.queue]
        saved_step = contact.step
        contact.step = len(qp.steps)
        skills, language, _ = self._requirements(contact)
        contact.step = saved_step
        lang = language or ANY
        if all(self._count_staff(lang, s, lvl) > 0 for s, lvl in skills.items()):
            return  # each skill is covered (combinations are checked when offering)
        for queue in self._queues_open_to(contact)[1:]:
            oq = self.policy.queues[queue]
            if all(self._count_staff(oq.language or ANY, s, 1) > 0 for s, _ in oq.skills):
                return
        needs = ", ".join(f"{s}>={p}" for s, p in sorted(skills.items())) or "any skill"
        contact.unroutable_reported = True
        self._mark(contact)
        out.append(
            ContactUnroutable(
                contact.contact_id,
                contact.queue,
                f"no logged-in agent speaks {language or 'any language'} with {needs}",
            )
        )

    # ------------------------------------------------------------------ positions, estimates

    def _position(self, contact: _Contact) -> int:
        lst = self._waiting[contact.queue]
        key = contact.key(self.policy.boost(Priority(contact.priority)))
        return bisect_left(lst, (key[0], key[1], "")) + 1

    def _staffed(self, queue: str) -> int:
        qp = self.policy.queues[queue]
        skill = qp.skills[0][0] if qp.skills else ANY
        return self._count_staff(qp.language or ANY, skill, 1)

    def _count_staff(self, language: str, skill: str, level: int) -> int:
        return sum(self._staff.get((language, skill, q), 0) for q in range(max(1, level), 11))

    def _count_in(self, agent: _Agent, delta: int) -> None:
        """Add (1) or remove (-1) a logged-in agent from the staffing counters."""
        for lang in (*agent.languages, ANY):
            for skill, level in (*agent.skills.items(), (ANY, 10)):
                key = (lang, skill, max(1, min(10, level)))
                self._staff[key] = self._staff.get(key, 0) + delta

    def _estimate(self, queue: str, position: int) -> float:
        """Erlang-style rule of thumb: position x average handle time / staffed agents."""
        handle = self._queues[queue].handle_s or self.policy.default_handle_s
        staffed = self._staffed(queue)
        if staffed == 0:
            return float(position) * handle
        return position * handle / staffed

    def _refresh_positions(self, now: float, out: list[Decision]) -> None:
        queues, self._dirty_queues = self._dirty_queues, set()
        for queue in queues:
            lst = self._waiting.get(queue, [])
            if not lst:
                continue
            handle = self._queues[queue].handle_s or self.policy.default_handle_s
            staffed = self._staffed(queue)
            for index, (_, _, contact_id) in enumerate(lst, start=1):
                contact = self._contacts[contact_id]
                estimate = index * handle / max(1, staffed)
                moved = abs(estimate - contact.sent_estimate)
                if contact.sent_position == index and (
                    moved
                    < max(ESTIMATE_MIN_CHANGE_S, ESTIMATE_CHANGE_SHARE * contact.sent_estimate)
                ):
                    continue
                contact.sent_position, contact.sent_estimate = index, estimate
                self._mark(contact)
                out.append(
                    QueuePositionUpdated(
                        contact_id, queue, index, estimate, now - contact.enqueued_at
                    )
                )

    # ------------------------------------------------------------------ bookkeeping

    def _next_seq(self) -> int:
        self._seq += 1
        self._dirty.add("meta:")
        return self._seq

    def _enqueue(self, contact: _Contact) -> None:
        key = contact.key(self.policy.boost(Priority(contact.priority)))
        lst = self._waiting[contact.queue]
        entry = (key[0], key[1], contact.contact_id)
        i = bisect_left(lst, entry)
        if i == len(lst) or lst[i] != entry:
            insort(lst, entry)

    def _dequeue(self, contact: _Contact) -> None:
        key = contact.key(self.policy.boost(Priority(contact.priority)))
        lst = self._waiting[contact.queue]
        entry = (key[0], key[1], contact.contact_id)
        i = bisect_left(lst, entry)
        if i < len(lst) and lst[i] == entry:
            del lst[i]

    def _schedule(self, due: float, kind: str, key: str, version: int) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (due, self._timer_seq, kind, key, version))

    def _schedule_relaxation(self, contact: _Contact) -> None:
        steps = self.policy.queues[contact.queue].steps
        if contact.step < len(steps):
            due = contact.enqueued_at + steps[contact.step].after_s
            self._schedule(due, _RELAX, contact.contact_id, contact.step + 1)

    def _touch_queue(self, queue: str) -> None:
        self._dirty_queues.add(queue)
        if self._refresh_due is None:  # positions are refreshed in batches, not per event
            self._refresh_due = self._last_refresh + self.policy.position_refresh_s

    def _touch_all_queues(self) -> None:
        for queue in self.policy.queues:
            if self._waiting[queue]:
                self._touch_queue(queue)

    def _mark(self, entity: _Agent | _Contact) -> None:
        prefix = "agent" if isinstance(entity, _Agent) else "contact"
        ident = entity.agent_id if isinstance(entity, _Agent) else entity.contact_id
        self._dirty.add(f"{prefix}:{ident}")

    def _mark_queue(self, queue: str) -> None:
        self._dirty.add(f"queue:{queue}")

    def _bump(self, agent: _Agent) -> None:
        """The agent changed: invalidate its index entries and push fresh ones if ready."""
        agent.version += 1
        self._mark(agent)
        self._index_agent(agent)

    def _index_agent(self, agent: _Agent) -> None:
        if agent.state != AgentState.AVAILABLE:
            return
        langs = (*agent.languages, ANY)
        skills = (*agent.skills.items(), (ANY, 10))
        for strategy in self._strategies:
            key = self._strategy_key(strategy, agent)
            entry = (*key, agent.version, agent.agent_id)
            for channel, limit in agent.capacity.items():
                if limit <= 0 or not agent.can_take(channel, self.policy.max_total):
                    continue
                for lang in langs:
                    for skill, level in skills:
                        bucket = (strategy, channel, lang, skill, level)
                        heap = self._ready.setdefault(bucket, [])
                        heapq.heappush(heap, entry)
                        if len(heap) > self._compact_at.get(bucket, COMPACT_SLACK):
                            self._compact(bucket, heap)

    def index_entries(self) -> int:
        """Entries in the ready-agent index, live and stale (memory must track the agents)."""
        return sum(len(heap) for heap in self._ready.values())

    def _compact(self, bucket: tuple[Strategy, int, str, str, int], heap: list[Any]) -> None:
        """Drop one heap's stale entries so memory stays proportional to the agents."""
        heap[:] = [
            e for e in heap if (a := self._agents.get(e[-1])) is not None and a.version == e[-2]
        ]
        heapq.heapify(heap)
        self._compact_at[bucket] = 2 * len(heap) + COMPACT_SLACK

    @staticmethod
    def _strategy_key(strategy: Strategy, agent: _Agent) -> tuple[Any, ...]:
        if strategy == Strategy.LEAST_OCCUPIED:
            return (agent.occupancy(), agent.idle_since, agent.agent_id)
        if strategy == Strategy.ROUND_ROBIN:
            return (agent.last_offer_seq, agent.agent_id)
        return (agent.idle_since, agent.agent_id)

    def _status(self, agent: _Agent, out: list[Decision]) -> None:
        out.append(
            AgentStatusChanged(agent.agent_id, agent.effective_state(), agent.reason, agent.team)
        )

    # ------------------------------------------------------------------ for tests

    def waiting_ids(self, queue: str) -> list[str]:
        """Contact ids waiting in ``queue``, in line order."""
        return [c for _, _, c in self._waiting[queue]]

    def contacts(self) -> Iterable[str]:
        return self._contacts.keys()
