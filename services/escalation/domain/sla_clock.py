"""The SLA clock of one case: business seconds it has run, across stops and queue moves.

While it runs, time counts on one calendar (the case's queue's). Stopping it banks the
business seconds since it started, so a pause or a transfer loses none and counts none
twice; a restarted clock adds to the banked time. Which states keep it running is the
core's rule (:meth:`EscalationCore._sync_sla_clock`); this module only measures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from services.common.business_hours import BusinessCalendar

__all__ = ["SlaStopwatch"]


@dataclass(slots=True)
class SlaStopwatch:
    """Business seconds banked before ``since``, and when the clock last started."""

    #: Business seconds the clock ran before ``since``.
    banked_s: float = 0.0
    #: When the clock last started; None while stopped.
    since: float | None = None

    @property
    def running(self) -> bool:
        return self.since is not None

    def start(self, now: float) -> None:
        """Start counting at ``now``; a running clock keeps its start."""
        if self.since is None:
            self.since = now

    def stop(self, now: float, calendar: BusinessCalendar) -> None:
        """Bank the business seconds since the start, on ``calendar``; a stopped clock stays."""
        if self.since is not None:
            self.banked_s += calendar.open_seconds(self.since, now)
            self.since = None

    def reset(self) -> None:
        """Back to zero and stopped (a reopened ticket starts a new wait)."""
        self.banked_s, self.since = 0.0, None

    def reaches(self, threshold_s: float, calendar: BusinessCalendar) -> float | None:
        """When the running clock reaches ``threshold_s`` business seconds on ``calendar``.

        None while stopped, or when the calendar never opens long enough.
        """
        if self.since is None:
            return None
        when = calendar.instant_after(self.since, threshold_s - self.banked_s)
        return None if math.isinf(when) else when
