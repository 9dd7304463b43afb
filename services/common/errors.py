"""Errors of the shared runtime.

Hierarchy::

    SwitchboardError                 base of everything the services raise on purpose
    ├── ConfigError                  bad configuration; fail at start, name the field
    ├── DecodeError                  a record is not a valid envelope (dead-lettered)
    └── RejectedEvent                a valid envelope the service cannot apply (dead-lettered)

None of these is ``retriable``: trying the same record again cannot help, so the consume
loop dead-letters it (``DecodeError``, ``RejectedEvent``) or refuses to start
(``ConfigError``). Kafka's own errors while committing are aiokafka's; the loop retries
those :func:`services.common.kafka.transient` calls transient and stops on the rest.
"""

from __future__ import annotations

__all__ = ["ConfigError", "DecodeError", "RejectedEvent", "SwitchboardError"]


class SwitchboardError(Exception):
    """Base class; ``reason`` is a short, human-readable cause."""

    retriable: bool = False

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConfigError(SwitchboardError):
    """Configuration is invalid; the message names the field, e.g. ``kafka.bootstrap_servers``."""


class DecodeError(SwitchboardError):
    """The bytes are not an envelope: bad protobuf, bad JSON, no payload, missing event id."""


class RejectedEvent(SwitchboardError):
    """The envelope decoded but cannot be applied: unknown agent, unknown skill, bad transition."""
