"""Errors of the notifier core.

Hierarchy::

    NotifierError        an input the core cannot apply (dead-lettered by the adapter)
    ├── PolicyError      the notifier policy is invalid (fails at start, names the field)
    ├── UnknownContact   a direct request or lookup for a contact never seen
    └── InvalidInput     a value no message can be worded from (a non-finite duration);
                         refused before the core changes anything

Late events for contacts already closed are not errors: they are ignored.
"""

from __future__ import annotations

__all__ = ["InvalidInput", "NotifierError", "PolicyError", "UnknownContact"]


class NotifierError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PolicyError(NotifierError):
    """The policy is invalid; the reason starts with the field path."""


class UnknownContact(NotifierError):
    """No such contact is known."""


class InvalidInput(NotifierError):
    """A field is out of range; the reason starts with the field name."""
