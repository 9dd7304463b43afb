"""Errors of the routing core.

Hierarchy::

    RoutingError            an input the core cannot apply (the adapter dead-letters it)
    ├── PolicyError         the routing policy is invalid (fails at start, names the field)
    ├── UnknownAgent        an agent event for an agent that never logged in
    ├── UnknownQueue        a contact for a queue the policy does not define
    ├── UnknownSkill        a contact requires a skill no queue of the policy configures
    └── InvalidTransition   an event that contradicts the contact's or agent's state

    ForbiddenTransition     not an input error: the core tried a status change its table
                            (``states.py``) forbids, a bug; the consume loop fails rather
                            than dead-letter the event that exposed it

Inputs that are merely late or repeated (a second arrival of a known contact, an answer
to an offer that already timed out) are not errors: the core ignores them and returns no
decisions, as a real platform must when events race.
"""

from __future__ import annotations

__all__ = [
    "ForbiddenTransition",
    "InvalidTransition",
    "PolicyError",
    "RoutingError",
    "UnknownAgent",
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


class UnknownQueue(RoutingError):
    """No queue with this name is configured."""


class UnknownSkill(RoutingError):
    """A contact requires a skill that no queue of the policy configures."""


class InvalidTransition(RoutingError):
    """The event is not allowed in the current state."""


class ForbiddenTransition(RuntimeError):
    """The core tried a status change that ``states.py`` does not allow: a bug."""
