"""Inputs and decisions of the routing core: plain frozen dataclasses, mirroring the protos.

Inputs are named as the events they are (``ContactArrived``); decisions in the past tense
(``OfferMade``). Times are epoch seconds (float); durations are seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "AgentLoggedIn",
    "AgentLoggedOut",
    "AgentSkillsChanged",
    "AgentState",
    "AgentStateChanged",
    "AgentStatusChanged",
    "Channel",
    "ContactAbandoned",
    "ContactArrived",
    "ContactAssigned",
    "ContactClosed",
    "ContactEnded",
    "ContactRequeued",
    "ContactTransferred",
    "ContactUnroutable",
    "CustomerErased",
    "Decision",
    "Input",
    "OfferAccepted",
    "OfferMade",
    "OfferRejected",
    "OfferTimedOut",
    "Priority",
    "QueuePositionUpdated",
    "RequeueReason",
    "SkillRequirement",
]


class Channel(IntEnum):
    """Same numbers as ``switchboard.v1.Channel``."""

    VOICE = 1
    CHAT = 2
    EMAIL = 3
    SMS = 4
    SOCIAL = 5


class Priority(IntEnum):
    """Same numbers as ``switchboard.v1.Priority``."""

    NORMAL = 1
    VIP = 2
    CALLBACK = 3


class AgentState(IntEnum):
    """Same numbers as ``switchboard.v1.AgentState``."""

    AVAILABLE = 1
    AWAY = 2
    LOGGED_OUT = 3
    BUSY = 4
    WRAP_UP = 5
    RESERVED = 6


class RequeueReason(IntEnum):
    """Same numbers as ``switchboard.v1.RequeueReason``."""

    REJECTED = 1
    TIMED_OUT = 2
    AGENT_UNAVAILABLE = 3
    TRANSFERRED = 4
    POLICY_CHANGED = 5


@dataclass(frozen=True, slots=True)
class SkillRequirement:
    skill: str
    min_proficiency: int = 1


# ---------------------------------------------------------------- inputs: contacts


@dataclass(frozen=True, slots=True)
class ContactArrived:
    contact_id: str
    queue: str
    channel: Channel
    required_skills: tuple[SkillRequirement, ...] = ()
    optional_skills: tuple[SkillRequirement, ...] = ()
    language: str = ""
    priority: Priority = Priority.NORMAL
    preferred_agent_id: str = ""
    customer_id: str = ""
    customer_name: str = ""


@dataclass(frozen=True, slots=True)
class ContactAbandoned:
    contact_id: str


@dataclass(frozen=True, slots=True)
class ContactEnded:
    contact_id: str
    agent_id: str = ""


@dataclass(frozen=True, slots=True)
class ContactTransferred:
    contact_id: str
    to_queue: str = ""
    to_agent_id: str = ""


# ---------------------------------------------------------------- inputs: agents


@dataclass(frozen=True, slots=True)
class AgentLoggedIn:
    agent_id: str
    team: str = ""
    skills: tuple[tuple[str, int], ...] = ()
    languages: tuple[str, ...] = ()
    capacity: tuple[tuple[Channel, int], ...] = ()


@dataclass(frozen=True, slots=True)
class AgentLoggedOut:
    agent_id: str


@dataclass(frozen=True, slots=True)
class AgentStateChanged:
    agent_id: str
    state: AgentState
    reason: str = ""


@dataclass(frozen=True, slots=True)
class AgentSkillsChanged:
    agent_id: str
    skills: tuple[tuple[str, int], ...] = ()
    languages: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OfferAccepted:
    agent_id: str
    contact_id: str
    offer_id: str


@dataclass(frozen=True, slots=True)
class OfferRejected:
    agent_id: str
    contact_id: str
    offer_id: str


@dataclass(frozen=True, slots=True)
class CustomerErased:
    """Erase this customer's personal data (a data subject's request)."""

    customer_id: str


Input = (
    ContactArrived
    | CustomerErased
    | ContactAbandoned
    | ContactEnded
    | ContactTransferred
    | AgentLoggedIn
    | AgentLoggedOut
    | AgentStateChanged
    | AgentSkillsChanged
    | OfferAccepted
    | OfferRejected
)

# ---------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True)
class OfferMade:
    offer_id: str
    contact_id: str
    agent_id: str
    queue: str
    channel: Channel
    expires_at: float
    waited: float
    attempt: int
    relaxation_step: int


@dataclass(frozen=True, slots=True)
class ContactAssigned:
    offer_id: str
    contact_id: str
    agent_id: str
    queue: str
    waited: float
    within_service_level: bool


@dataclass(frozen=True, slots=True)
class OfferTimedOut:
    offer_id: str
    contact_id: str
    agent_id: str


@dataclass(frozen=True, slots=True)
class ContactRequeued:
    contact_id: str
    queue: str
    reason: RequeueReason
    agent_id: str = ""


@dataclass(frozen=True, slots=True)
class QueuePositionUpdated:
    contact_id: str
    queue: str
    position: int
    #: ``None``: no logged-in agent could take the contact now, so there is no estimate.
    estimated_wait: float | None
    waited: float


@dataclass(frozen=True, slots=True)
class ContactUnroutable:
    contact_id: str
    queue: str
    reason: str


@dataclass(frozen=True, slots=True)
class ContactClosed:
    contact_id: str
    queue: str
    abandoned: bool
    waited: float


@dataclass(frozen=True, slots=True)
class AgentStatusChanged:
    agent_id: str
    state: AgentState
    reason: str = ""
    team: str = ""


Decision = (
    OfferMade
    | ContactAssigned
    | OfferTimedOut
    | ContactRequeued
    | QueuePositionUpdated
    | ContactUnroutable
    | ContactClosed
    | AgentStatusChanged
)
