"""Errors of the simulator.

Hierarchy::

    SwitchboardError          (services.common.errors)
    └── ScenarioError         a scenario file is missing a field or has a bad value
"""

from __future__ import annotations

from services.common.errors import SwitchboardError

__all__ = ["ScenarioError"]


class ScenarioError(SwitchboardError):
    """The scenario is invalid; the message names the file and the field."""
