"""Errors of the routing core.

Hierarchy::

    RoutingError            an input the core cannot apply (the adapter dead-letters it)
    ├── PolicyError         the routing policy is invalid (fails at start, names the field)
    ├── UnknownAgent        an agent event for an agent that is not logged in
    ├── UnknownContact      a contact event for a contact the core does not know (it never
    │                       arrived, or it has closed)
    ├── UnknownOffer        an answer naming an offer never made for that contact
    ├── StaleOffer          an answer to an offer that is no longer open (it timed out,
    │                       was rejected, withdrawn or already accepted)
    ├── UnknownQueue        a contact for a queue the policy does not define
    ├── UnknownSkill        a contact requires a skill no queue of the policy configures
    ├── StalePolicy         a policy version not newer than the one the domain applied
    └── InvalidTransition   an event that contradicts the contact's or agent's state

    ForbiddenTransition     not an input error: the core tried a status change its table
                            (``states.py``) forbids, a bug; the consume loop fails rather
                            than dead-letter the event that exposed it

Every input the core cannot act on is an error, so its producer is told (the adapter
answers it with an ``EventRejected`` and dead-letters it), even one that merely raced
(an accept that arrived after its offer timed out). Only repeats that change nothing and
need no answer are ignored: a second arrival of a contact being routed, a second login of
a logged-in agent.
"""

from __future__ import annotations

__all__ = [
    "ForbiddenTransition",
    "InvalidTransition",
    "PolicyError",
    "RoutingError",
    "StaleOffer",
    "StalePolicy",
    "UnknownAgent",
    "UnknownContact",
    "UnknownOffer",
    "UnknownQueue",
    "UnknownSkill",
]


class RoutingError(Exception):
    """Base: ``reason`` is a short human-readable cause."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PolicyError(RoutingError):
    """The policy is invalid; ``reason`` starts with the field path."""


class UnknownAgent(RoutingError):
    """No agent with this id is known."""


class UnknownContact(RoutingError):
    """No contact with this id is routing (never arrived, or already closed)."""


class UnknownOffer(RoutingError):
    """The offer id names no offer ever made for the contact."""


class StaleOffer(RoutingError):
    """The offer was made but is no longer open; ``reason`` says what became of it."""


class UnknownQueue(RoutingError):
    """No queue with this name is configured."""


class UnknownSkill(RoutingError):
    """A contact requires a skill that no queue of the policy configures."""


class StalePolicy(RoutingError):
    """A policy version not newer than the domain's applied one (a replay, or out of order)."""


class InvalidTransition(RoutingError):
    """The event is not allowed in the current state."""


class ForbiddenTransition(RuntimeError):
    """The core tried a status change that ``states.py`` does not allow: a bug."""
