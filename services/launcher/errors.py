"""Errors of the launcher.

Hierarchy::

    SwitchboardError          (services.common.errors)
    └── LaunchError           the stack cannot start: a missing module, a child that
                              exited during start, a health check that never passed
"""

from __future__ import annotations

from services.common.errors import SwitchboardError

__all__ = ["LaunchError"]


class LaunchError(SwitchboardError):
    """Starting the stack failed; the message says which part and where its log is."""
