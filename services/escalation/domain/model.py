"""Inputs, escalations and changes of the escalation core, mirroring the protos 1:1.

Enums carry the protobuf numbers (``Tier(pb.tier)`` and ``pb.tier = tier.value`` map them)
and nothing more: no order or arithmetic is read from them (the tier chain and severity
steps are declared in the policy). What a ``*_UNSPECIFIED`` zero becomes is the adapter's
decision (``adapters/mapping.py``). Times are epoch seconds (float),
``None`` where the proto leaves a timestamp unset; durations are seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Self

__all__ = [
    "CommandResult",
    "ContactAbandoned",
    "ContactArrived",
    "ContactAssigned",
    "ContactClosed",
    "ContactEnded",
    "ContactHeld",
    "ContactPaused",
    "ContactReopened",
    "ContactRequeued",
    "ContactResumed",
    "ContactTransferred",
    "ContactUnroutable",
    "Customer",
    "CustomerErased",
    "Disposition",
    "Escalation",
    "EscalationChange",
    "EscalationChangeKind",
    "EscalationNote",
    "EscalationReason",
    "EscalationStatus",
    "Input",
    "ManagerRequested",
    "PauseReason",
    "Priority",
    "Severity",
    "SurveyResult",
    "Tier",
    "escalation_id",
]


class _Slugged(IntEnum):
    """An enum also spelled in config and JSON as its lower-case name."""

    @property
    def slug(self) -> str:
        return self.name.lower()

    @classmethod
    def from_slug(cls, slug: str) -> Self:
        return cls[slug.upper()]


class EscalationReason(_Slugged):
    """Same numbers as ``switchboard.v1.EscalationReason``; the slug names the trigger."""

    WAIT_THRESHOLD = 1
    UNROUTABLE = 2
    PAUSE_OVERRUN = 3
    UNRESOLVED = 4
    REOPENED = 5
    REPEAT_CONTACT = 6
    MANAGER_REQUESTED = 7
    LOW_SATISFACTION = 8


class Tier(_Slugged):
    """Same numbers as ``switchboard.v1.Tier``; the order escalations climb is the policy's
    ``TIER_CHAIN``."""

    SUPERVISOR = 1
    MANAGER = 2
    HEAD_OF_SERVICE = 3


class EscalationStatus(_Slugged):
    """Same numbers as ``switchboard.v1.EscalationStatus``."""

    OPEN = 1
    ACKNOWLEDGED = 2
    RESOLVED = 3


class Severity(_Slugged):
    """Same numbers as ``switchboard.v1.Severity``; the policy orders them for the VIP step."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4


class EscalationChangeKind(_Slugged):
    """Same numbers as ``switchboard.v1.EscalationChangeKind`` (SNAPSHOT_COMPLETE is gRPC's)."""

    RAISED = 1
    UPDATED = 2
    ACKNOWLEDGED = 3
    RE_ESCALATED = 4
    NOTE_ADDED = 5
    RESOLVED = 6


class Priority(_Slugged):
    """Same numbers as ``switchboard.v1.Priority`` (map UNSPECIFIED to NORMAL)."""

    NORMAL = 1
    VIP = 2
    CALLBACK = 3


class Disposition(_Slugged):
    """Same numbers as ``switchboard.v1.Disposition``."""

    RESOLVED = 1
    UNRESOLVED = 2
    NO_REPLY = 3
    DUPLICATE = 4
    CALLBACK_SCHEDULED = 5


class PauseReason(_Slugged):
    """Same numbers as ``switchboard.v1.PauseReason``; AWAITING_CUSTOMER stops the SLA clock."""

    CHECKING_INFORMATION = 1
    WAITING_FOR_SPECIALIST = 2
    AWAITING_CUSTOMER = 3
    WAITING_FOR_THIRD_PARTY = 4
    TECHNICAL_ISSUE = 5


@dataclass(frozen=True, slots=True)
class Customer:
    """``switchboard.v1.Customer``; ``customer_id`` drives repeat-contact detection."""

    customer_id: str = ""
    name: str = ""
    phone: str = ""
    email: str = ""
    language: str = ""


# --- inputs: the events the core consumes -------------------------------------------


@dataclass(frozen=True, slots=True)
class ContactArrived:
    """A contact entered a queue; ``reopened`` marks a reopened ticket coming back."""

    contact_id: str
    queue: str
    customer: Customer = Customer()
    priority: Priority = Priority.NORMAL
    reopened: bool = False


@dataclass(frozen=True, slots=True)
class ContactHeld:
    """A call was put on hold; ``expected_duration`` is what the customer was promised."""

    contact_id: str
    reason: PauseReason
    expected_duration: float = 0.0
    agent_id: str = ""


@dataclass(frozen=True, slots=True)
class ContactPaused:
    """Work on a chat or ticket paused; AWAITING_CUSTOMER stops the SLA clock."""

    contact_id: str
    reason: PauseReason
    expected_duration: float = 0.0
    agent_id: str = ""


@dataclass(frozen=True, slots=True)
class ContactResumed:
    """A hold or pause ended (the agent is back, or the customer replied)."""

    contact_id: str
    agent_id: str = ""


@dataclass(frozen=True, slots=True)
class ContactTransferred:
    """Moved to another queue (empty ``to_queue`` keeps the queue)."""

    contact_id: str
    to_queue: str = ""


@dataclass(frozen=True, slots=True)
class ContactEnded:
    """Handling finished with a disposition."""

    contact_id: str
    disposition: Disposition
    note: str = ""
    agent_id: str = ""


@dataclass(frozen=True, slots=True)
class ContactReopened:
    """A closed ticket was reopened by the customer."""

    contact_id: str


@dataclass(frozen=True, slots=True)
class ContactAbandoned:
    """The customer gave up."""

    contact_id: str


@dataclass(frozen=True, slots=True)
class SurveyResult:
    """The satisfaction survey: 1 (very unhappy) to 5 (very happy)."""

    contact_id: str
    score: int
    customer_id: str = ""
    comment: str = ""


@dataclass(frozen=True, slots=True)
class ManagerRequested:
    """The customer asked the agent for a manager (an agent event)."""

    contact_id: str
    note: str = ""
    agent_id: str = ""


@dataclass(frozen=True, slots=True)
class ContactAssigned:
    """Router: an agent took the contact; the queue-wait clock stops."""

    contact_id: str
    queue: str = ""
    agent_id: str = ""


@dataclass(frozen=True, slots=True)
class ContactRequeued:
    """Router: the contact went back into line; the queue-wait clock runs again."""

    contact_id: str
    queue: str = ""


@dataclass(frozen=True, slots=True)
class ContactUnroutable:
    """Router: no logged-in agent could ever take the contact."""

    contact_id: str
    queue: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ContactClosed:
    """Router: the contact left routing (handled, abandoned or transferred out)."""

    contact_id: str
    queue: str = ""
    abandoned: bool = False


@dataclass(frozen=True, slots=True)
class CustomerErased:
    """Erase this customer's personal data (a data subject's request)."""

    customer_id: str


Input = (
    ContactArrived
    | CustomerErased
    | ContactHeld
    | ContactPaused
    | ContactResumed
    | ContactTransferred
    | ContactEnded
    | ContactReopened
    | ContactAbandoned
    | SurveyResult
    | ManagerRequested
    | ContactAssigned
    | ContactRequeued
    | ContactUnroutable
    | ContactClosed
)


# --- outputs --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EscalationNote:
    """``switchboard.v1.EscalationNote``."""

    author: str
    text: str
    at: float


@dataclass(frozen=True, slots=True)
class Escalation:
    """``switchboard.v1.Escalation``: the full state, the value of the compacted topic.

    ``version`` is a hybrid logical clock: ``max(previous + 1, milliseconds of the change)``,
    so "keep the highest" stays right even if an id is reused after its case was forgotten.
    """

    escalation_id: str
    contact_id: str
    domain: str
    queue: str
    team: str
    reason: EscalationReason
    severity: Severity
    tier: Tier
    assignee: str
    status: EscalationStatus
    raised_at: float
    ack_deadline: float | None
    acknowledged_at: float | None = None
    acknowledged_by: str = ""
    resolved_at: float | None = None
    resolution_code: str = ""
    resolved_by: str = ""
    summary: str = ""
    customer: Customer = Customer()
    notes: tuple[EscalationNote, ...] = ()
    previous_tiers: tuple[Tier, ...] = ()
    version: int = 1
    priority: Priority = Priority.NORMAL

    @property
    def is_open(self) -> bool:
        """Open or acknowledged: someone still has to act."""
        return self.status is not EscalationStatus.RESOLVED

    @property
    def time_to_acknowledge(self) -> float | None:
        """Seconds from raise to acknowledgement (the metric's observation), if acknowledged."""
        if self.acknowledged_at is None:
            return None
        return self.acknowledged_at - self.raised_at


@dataclass(frozen=True, slots=True)
class EscalationChange:
    """``switchboard.v1.EscalationRecord``: what happened, and the state after it."""

    kind: EscalationChangeKind
    escalation: Escalation


@dataclass(frozen=True, slots=True)
class CommandResult:
    """A manager command's outcome: the escalation now (the gRPC reply) and what to publish.

    ``changes`` may also hold deadline changes that fell due before the command ran;
    an idempotent repeat (acknowledging an acknowledged escalation) publishes nothing new.
    """

    escalation: Escalation
    changes: tuple[EscalationChange, ...]


def escalation_id(domain: str, contact_id: str, reason: EscalationReason) -> str:
    """Deterministic id, so a restart or a replay can never raise the same case twice."""
    return f"{domain}/{contact_id}/{reason.slug}"
