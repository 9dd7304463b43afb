"""What the simulated world says and hears, as plain frozen dataclasses.

Outputs (past tense, what customers, telephony and agent desktops did) mirror the
``contact.events`` and ``agent.events`` payloads; inputs mirror the router's
``routing.decisions``. Only the adapter converts them to and from protobuf, so the core
stays free of generated code.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from services.simulator.scenario import ChannelName

__all__ = [
    "AgentLoggedIn",
    "AgentLoggedOut",
    "AgentPresence",
    "AgentStateChanged",
    "AgentStatusChanged",
    "ContactAbandoned",
    "ContactArrived",
    "ContactAssigned",
    "ContactClosed",
    "ContactEnded",
    "ContactHeld",
    "ContactPaused",
    "ContactRequeued",
    "ContactResumed",
    "ContactUnroutable",
    "Customer",
    "Decision",
    "Disposition",
    "ManagerRequested",
    "OfferAccepted",
    "OfferMade",
    "OfferRejected",
    "OfferTimedOut",
    "PauseReason",
    "Priority",
    "QueuePositionUpdated",
    "SimEvent",
    "SurveyAnswered",
]


class Priority(StrEnum):
    NORMAL = "normal"
    VIP = "vip"
    CALLBACK = "callback"


class PauseReason(StrEnum):
    CHECKING_INFORMATION = "checking_information"
    WAITING_FOR_SPECIALIST = "waiting_for_specialist"
    AWAITING_CUSTOMER = "awaiting_customer"
    WAITING_FOR_THIRD_PARTY = "waiting_for_third_party"
    TECHNICAL_ISSUE = "technical_issue"


class Disposition(StrEnum):
    RESOLVED = "resolved"
    UNRESOLVED = "unresolved"
    NO_REPLY = "no_reply"
    CALLBACK_SCHEDULED = "callback_scheduled"


class AgentPresence(StrEnum):
    AVAILABLE = "available"
    AWAY = "away"
    LOGGED_OUT = "logged_out"
    BUSY = "busy"
    WRAP_UP = "wrap_up"
    RESERVED = "reserved"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Customer:
    customer_id: str
    name: str
    phone: str
    email: str
    language: str


# --- outputs: contact.events -------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactArrived:
    event_id: str
    at: float
    contact_id: str
    queue: str
    channel: ChannelName
    skill: str
    min_proficiency: int
    optional_skill: str
    language: str
    priority: Priority
    preferred_agent_id: str
    customer: Customer
    topic: ClassVar[str] = "contact"


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactAbandoned:
    event_id: str
    at: float
    contact_id: str
    topic: ClassVar[str] = "contact"


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactHeld:
    """A voice customer was put on hold, told why and for how long."""

    event_id: str
    at: float
    contact_id: str
    agent_id: str
    reason: PauseReason
    detail: str
    expected_seconds: float
    topic: ClassVar[str] = "contact"


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactPaused:
    """Work on a chat or ticket was paused, with a reason and a promised duration."""

    event_id: str
    at: float
    contact_id: str
    agent_id: str
    reason: PauseReason
    detail: str
    expected_seconds: float
    topic: ClassVar[str] = "contact"


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactResumed:
    event_id: str
    at: float
    contact_id: str
    agent_id: str
    topic: ClassVar[str] = "contact"


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactEnded:
    event_id: str
    at: float
    contact_id: str
    agent_id: str
    disposition: Disposition
    note: str
    topic: ClassVar[str] = "contact"


@dataclass(frozen=True, slots=True, kw_only=True)
class SurveyAnswered:
    """The customer answered the satisfaction survey (``SurveyResult`` on the wire)."""

    event_id: str
    at: float
    contact_id: str
    customer_id: str
    agent_id: str
    score: int
    comment: str
    topic: ClassVar[str] = "contact"


# --- outputs: agent.events ---------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentLoggedIn:
    event_id: str
    at: float
    agent_id: str
    name: str
    team: str
    skills: tuple[tuple[str, int], ...]
    languages: tuple[str, ...]
    capacity: tuple[tuple[ChannelName, int], ...]
    topic: ClassVar[str] = "agent"


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentLoggedOut:
    event_id: str
    at: float
    agent_id: str
    topic: ClassVar[str] = "agent"


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStateChanged:
    """The agent set themself AVAILABLE or AWAY (with a reason)."""

    event_id: str
    at: float
    agent_id: str
    available: bool
    reason: str
    topic: ClassVar[str] = "agent"


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferAccepted:
    event_id: str
    at: float
    agent_id: str
    contact_id: str
    offer_id: str
    topic: ClassVar[str] = "agent"


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferRejected:
    event_id: str
    at: float
    agent_id: str
    contact_id: str
    offer_id: str
    reason: str
    topic: ClassVar[str] = "agent"


@dataclass(frozen=True, slots=True, kw_only=True)
class ManagerRequested:
    event_id: str
    at: float
    agent_id: str
    contact_id: str
    note: str
    topic: ClassVar[str] = "agent"


SimEvent = (
    ContactArrived
    | ContactAbandoned
    | ContactHeld
    | ContactPaused
    | ContactResumed
    | ContactEnded
    | SurveyAnswered
    | AgentLoggedIn
    | AgentLoggedOut
    | AgentStateChanged
    | OfferAccepted
    | OfferRejected
    | ManagerRequested
)


# --- inputs: routing.decisions -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OfferMade:
    offer_id: str
    contact_id: str
    agent_id: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class ContactAssigned:
    offer_id: str
    contact_id: str
    agent_id: str


@dataclass(frozen=True, slots=True)
class OfferTimedOut:
    offer_id: str
    contact_id: str
    agent_id: str


@dataclass(frozen=True, slots=True)
class ContactRequeued:
    contact_id: str
    agent_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class ContactUnroutable:
    contact_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class ContactClosed:
    contact_id: str
    abandoned: bool


@dataclass(frozen=True, slots=True)
class AgentStatusChanged:
    agent_id: str
    state: AgentPresence
    reason: str


@dataclass(frozen=True, slots=True)
class QueuePositionUpdated:
    contact_id: str
    position: int
    estimated_wait: float


Decision = (
    OfferMade
    | ContactAssigned
    | OfferTimedOut
    | ContactRequeued
    | ContactUnroutable
    | ContactClosed
    | AgentStatusChanged
    | QueuePositionUpdated
)
