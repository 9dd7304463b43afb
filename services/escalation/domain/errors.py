"""Errors of the escalation core.

Hierarchy::

    EscalationError          base; ``reason`` is a short human-readable cause
    ├── PolicyError          the escalation policy is invalid (fails at start, names the field)
    ├── RejectedInput        an event the core cannot apply (the adapter dead-letters it)
    │   ├── UnknownQueue     a contact in a queue the policy does not define
    │   ├── UnknownContact   an event that would escalate a contact the core never saw
    │   └── InvalidInput     a value out of range (negative duration, score outside 1-5)
    └── CommandError         a manager's command is refused (the gRPC status in brackets)
        ├── NotFound             no such escalation            [NOT_FOUND]
        ├── PermissionDenied     another team's escalation     [PERMISSION_DENIED]
        ├── InvalidTransition    e.g. resolving a resolved one [FAILED_PRECONDITION]
        └── InvalidArgument      empty resolution code or note [INVALID_ARGUMENT]

Inputs that are merely late or repeated (a second arrival of a known contact, a hold
for a contact already forgotten) are not errors: the core returns no changes, as it must
when two topics race. ``retriable`` is False everywhere: trying again cannot help.
"""

from __future__ import annotations

__all__ = [
    "CommandError",
    "EscalationError",
    "InvalidArgument",
    "InvalidInput",
    "InvalidTransition",
    "NotFound",
    "PermissionDenied",
    "PolicyError",
    "RejectedInput",
    "UnknownContact",
    "UnknownQueue",
]


class EscalationError(Exception):
    """Base class; ``reason`` is a short, human-readable cause."""

    retriable: bool = False

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PolicyError(EscalationError):
    """The policy is invalid; ``reason`` starts with the field path, e.g. ``teams.x.supervisor``."""


class RejectedInput(EscalationError):
    """An event that cannot be applied; dead-letter it with ``reason``."""


class UnknownQueue(RejectedInput):
    """The queue is not in the policy, so nobody is responsible for it."""


class UnknownContact(RejectedInput):
    """An event that should escalate a contact the core has no record of (queue unknown)."""


class InvalidInput(RejectedInput):
    """A field is missing or out of range."""


class CommandError(EscalationError):
    """A manager's command was refused; the adapter maps the subclass to a gRPC status."""


class NotFound(CommandError):
    """No escalation with this id is held (never raised, or long closed and forgotten)."""


class PermissionDenied(CommandError):
    """The person is not entitled to the escalation's team."""


class InvalidTransition(CommandError):
    """The command does not fit the escalation's status."""


class InvalidArgument(CommandError):
    """The command's arguments are unusable (empty resolution code, empty note)."""
