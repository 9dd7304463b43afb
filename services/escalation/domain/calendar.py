"""Business-hours calendars: the clock SLA thresholds are measured on.

A queue's calendar has weekly opening hours in a time zone and holidays (local dates).
Time outside them does not count towards a service-level threshold, so a ticket that
arrives on Friday evening is not "late" on Monday morning. Local times are resolved with
``zoneinfo``, so daylight-saving days are as long as they really are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = ["ALWAYS_OPEN", "BusinessCalendar"]

_MINUTES_PER_DAY = 24 * 60
#: Searching further ahead than this for opening hours means there are none.
_MAX_DAYS_AHEAD = 3 * 366


@dataclass(frozen=True, slots=True)
class BusinessCalendar:
    """Opening hours per weekday (Monday first) as minute ranges ``(start, end)``, end <= 1440."""

    name: str
    zone: ZoneInfo
    weekly: tuple[tuple[tuple[int, int], ...], ...]
    holidays: frozenset[date] = frozenset()
    always_open: bool = False

    def open_seconds(self, start: float, end: float) -> float:
        """Seconds of opening time between two instants (0 if ``end <= start``)."""
        if end <= start:
            return 0.0
        if self.always_open:
            return end - start
        total = 0.0
        day = self._local_date(start) - timedelta(days=1)
        last = self._local_date(end)
        while day <= last:
            for open_at, close_at in self._intervals(day):
                total += max(0.0, min(close_at, end) - max(open_at, start))
            day += timedelta(days=1)
        return total

    def instant_after(self, start: float, seconds: float) -> float:
        """When ``seconds`` of opening time will have passed since ``start`` (inf: never)."""
        if seconds <= 0:
            return start
        if self.always_open:
            return start + seconds
        day = self._local_date(start) - timedelta(days=1)
        for _ in range(_MAX_DAYS_AHEAD):
            for open_at, close_at in self._intervals(day):
                begin = max(open_at, start)
                if close_at <= begin:
                    continue
                if seconds <= close_at - begin:
                    return begin + seconds
                seconds -= close_at - begin
            day += timedelta(days=1)
        return math.inf

    def is_open(self, at: float) -> bool:
        """Whether ``at`` falls in opening hours."""
        if self.always_open:
            return True
        day = self._local_date(at)
        return any(a <= at < b for a, b in self._intervals(day))

    def _local_date(self, at: float) -> date:
        return datetime.fromtimestamp(at, self.zone).date()

    def _intervals(self, day: date) -> list[tuple[float, float]]:
        if day in self.holidays:
            return []
        midnight = datetime(day.year, day.month, day.day, tzinfo=self.zone)
        return [
            (
                (midnight + timedelta(minutes=start)).timestamp(),
                (midnight + timedelta(minutes=end)).timestamp(),
            )
            for start, end in self.weekly[day.weekday()]
        ]


ALWAYS_OPEN = BusinessCalendar(
    name="always",
    zone=ZoneInfo("UTC"),
    weekly=(((0, _MINUTES_PER_DAY),),) * 7,
    always_open=True,
)
