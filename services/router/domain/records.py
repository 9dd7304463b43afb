"""The routing core's mutable records and their snapshots, as written to the changelog.

A snapshot is a JSON-ready dict; :meth:`snapshot` and :meth:`from_snapshot` are each
other's inverse, and the keys, their order and the stored values (a contact's status as
its word, an agent's state as its proto number) must stay as they are: restore reads
changelogs written by earlier versions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.router.domain.model import AgentState, Channel
from services.router.domain.states import (
    AGENT_TRANSITIONS,
    CONTACT_TRANSITIONS,
    WAITING,
    ContactStatus,
    agent_moves,
    contact_moves,
)

__all__ = ["NOT_SENT", "TOLD_UNKNOWN", "AgentRecord", "ContactRecord", "QueueCounts"]

#: ``ContactRecord.sent_estimate``: no position told yet / the last one told had no estimate.
NOT_SENT = -1.0
TOLD_UNKNOWN = -2.0

_AVAILABLE = AgentState.AVAILABLE
_VOICE = Channel.VOICE


@dataclass
class AgentRecord:
    """A logged-in agent (or one logged out with contacts still in hand)."""

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
    #: Bumped on every change; index entries and timers carry it to detect staleness.
    #: Not snapshotted: a restored core starts every agent at 0 and rebuilds both.
    version: int = 0

    def move_to(self, state: AgentState, reason: str) -> None:
        """Change state as ``states.AGENT_TRANSITIONS`` allows."""
        if state not in AGENT_TRANSITIONS[self.state]:  # the check of ``agent_moves``, inline
            agent_moves(self.state, state)  # raises ForbiddenTransition
        self.state = state
        self.reason = reason

    def channel_count(self, channel: int) -> int:
        return sum(1 for ch in self.active.values() if ch == channel)

    def can_take(self, channel: int, max_total: int) -> bool:
        """Capacity rule: per-channel limits, a total limit, and voice is exclusive."""
        if self.state != _AVAILABLE:
            return False
        limit = self.capacity.get(channel, 0)
        if limit <= 0 or len(self.active) >= max_total:
            return False
        if not self.active:
            return True
        channels = self.active.values()
        if channel == _VOICE:  # voice only on an otherwise free agent
            return False
        if channel != _VOICE and _VOICE in channels:
            return False
        return self.channel_count(channel) < limit

    def eligible_for(
        self, contact: ContactRecord, skills: Mapping[str, int], language: str, max_total: int
    ) -> bool:
        """May take ``contact`` with these (possibly relaxed) requirements right now."""
        if self.agent_id in contact.declined:
            return False  # not straight back to who just declined; a retry timer lifts this
        if language and language not in self.languages:
            return False
        for skill, level in skills.items():
            if self.skills.get(skill, 0) < level:
                return False
        return self.can_take(contact.channel, max_total)

    def occupancy(self) -> float:
        total = sum(self.capacity.values()) or 1
        return len(self.active) / total

    def effective_state(self) -> AgentState:
        """What others see: an AVAILABLE agent with an offer ringing is RESERVED, with
        contacts in hand BUSY."""
        if self.state != _AVAILABLE:
            return self.state
        if self.offers:
            return AgentState.RESERVED
        if self.active:
            return AgentState.BUSY
        return _AVAILABLE

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

    @classmethod
    def from_snapshot(cls, agent_id: str, snap: Mapping[str, Any]) -> AgentRecord:
        return cls(
            agent_id=agent_id,
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


@dataclass
class ContactRecord:
    """A contact from arrival until it closes (then it is deleted)."""

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
    status: ContactStatus = WAITING
    agent: str = ""
    offer_id: str = ""
    offer_expires: float = 0.0
    attempt: int = 0
    step: int = 0
    declined: list[str] = field(default_factory=list)
    unroutable_reported: bool = False
    sent_position: int = 0
    #: The estimate last told: NOT_SENT, or TOLD_UNKNOWN when it said there is none
    #: (values, not a new field, so snapshots stay readable by the previous version).
    sent_estimate: float = NOT_SENT
    assigned_at: float = 0.0
    #: What became of the latest offer once it closed ("it timed out ...", "'a1' rejected
    #: it"), to tell a late answer to it why it was refused.
    offer_outcome: str = ""
    #: The arrival named its own required / optional skills (else they are its queue's,
    #: and a policy changing the queue's skills changes them too).
    own_required: bool = False
    own_optional: bool = False

    def move_to(self, status: ContactStatus) -> None:
        """Change status as ``states.CONTACT_TRANSITIONS`` allows."""
        if status not in CONTACT_TRANSITIONS[self.status]:  # ``contact_moves``, inline
            contact_moves(self.status, status)  # raises ForbiddenTransition
        self.status = status

    def key(self, boost: float) -> tuple[float, int]:
        """Place in line: fixed while the contact waits (see the core's docstring)."""
        return (self.enqueued_at - boost, self.seq)

    def snapshot(self) -> dict[str, Any]:
        snap = {
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
            "status": self.status.value,
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
        if self.offer_outcome:  # only once an offer has closed: older snapshots lack it
            snap["offer_outcome"] = self.offer_outcome
        if self.own_required:  # only when set: older snapshots lack them
            snap["own_required"] = True
        if self.own_optional:
            snap["own_optional"] = True
        return snap

    @classmethod
    def from_snapshot(cls, contact_id: str, snap: Mapping[str, Any]) -> ContactRecord:
        fields = dict(snap)
        fields["status"] = ContactStatus(fields["status"])
        return cls(contact_id=contact_id, **fields)


@dataclass
class QueueCounts:
    """A queue's counters since they began (cumulative: nothing ages out)."""

    answered: int = 0
    answered_within: int = 0
    abandoned: int = 0
    #: Abandoned after the service-level threshold: these count against the queue.
    abandoned_late: int = 0
    arrived: int = 0
    #: Moving average of handle time (seconds), weighted to recent contacts.
    handle_s: float = 0.0

    def snapshot(self) -> dict[str, Any]:
        return {
            "answered": self.answered,
            "answered_within": self.answered_within,
            "abandoned": self.abandoned,
            "abandoned_late": self.abandoned_late,
            "arrived": self.arrived,
            "handle_s": self.handle_s,
        }

    @classmethod
    def from_snapshot(cls, snap: Mapping[str, Any]) -> QueueCounts:
        return cls(**snap)
