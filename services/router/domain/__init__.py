"""The pure routing core: no I/O, no asyncio, no Kafka; decisions in microseconds."""

from services.router.domain.core import AgentView, ContactView, QueueStats, RoutingCore
from services.router.domain.errors import (
    InvalidTransition,
    PolicyError,
    RoutingError,
    StaleOffer,
    StalePolicy,
    UnknownAgent,
    UnknownContact,
    UnknownOffer,
    UnknownQueue,
    UnknownSkill,
)
from services.router.domain.policy import (
    QueuePolicy,
    RelaxationStep,
    RoutingPolicy,
    Strategy,
    policy_from_document,
)

__all__ = [
    "AgentView",
    "ContactView",
    "InvalidTransition",
    "PolicyError",
    "QueuePolicy",
    "QueueStats",
    "RelaxationStep",
    "RoutingCore",
    "RoutingError",
    "RoutingPolicy",
    "StaleOffer",
    "StalePolicy",
    "Strategy",
    "UnknownAgent",
    "UnknownContact",
    "UnknownOffer",
    "UnknownQueue",
    "UnknownSkill",
    "policy_from_document",
]
