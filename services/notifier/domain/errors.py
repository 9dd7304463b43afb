"""Errors of the notifier core.

Hierarchy::

    NotifierError        the base; the Kafka handler dead-letters an event that raises it
    ├── PolicyError      the notifier policy is invalid (fails at start, names the field)
    └── InvalidInput     a value no message can be worded from (a non-finite duration);
                         refused before the core changes anything

Events for contacts never seen or already closed are not errors: they are ignored. A
direct request for a contact never seen uses the request's channel and customer.
"""

from __future__ import annotations

__all__ = ["InvalidInput", "NotifierError", "PolicyError"]


class NotifierError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PolicyError(NotifierError):
    """The policy is invalid; the reason starts with the field path."""


class InvalidInput(NotifierError):
    """A field is out of range; the reason starts with the field name."""
