"""Business-hours calendars, one format for every service: the clock escalation's SLA
thresholds are measured on, and the hours the notifier tells a customer about.

A calendar has weekly opening hours in a time zone and holidays (local dates). Time
outside them does not count towards a service-level threshold, so a ticket that arrives
on Friday evening is not "late" on Monday morning; a customer who writes on a holiday is
told when work resumes (:meth:`BusinessCalendar.next_open`). Local times are resolved
with ``zoneinfo``, so daylight-saving days are as long as they really are.

The one reading of a calendar table (:func:`parse_calendar`), as both services' policies
write it (escalation's ``[escalation.calendars.<name>]``, the notifier's
``[notification.business_hours]``)::

    timezone = "Europe/Warsaw"          # IANA name
    holidays = ["2026-12-24", "2026-12-25"]
    [hours]                             # days left out are closed
    mon = "08:00-18:00"
    fri = ["08:00-12:00", "13:00-17:00"]

Pure: no I/O, no clock; errors are :class:`CalendarError` naming the field path.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["ALWAYS_OPEN", "DAYS", "BusinessCalendar", "CalendarError", "parse_calendar"]

#: Weekday keys of a calendar's ``hours`` table, Monday first.
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
#: Most holidays one calendar lists (each a date; years of them still fit).
MAX_HOLIDAYS = 1_000

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

    def next_open(self, at: float) -> float | None:
        """``at`` if open then, else when the calendar next opens (None: never)."""
        if self.always_open:
            return at
        day = self._local_date(at) - timedelta(days=1)
        for _ in range(_MAX_DAYS_AHEAD):
            for open_at, close_at in self._intervals(day):
                if close_at > at:
                    return max(open_at, at)
            day += timedelta(days=1)
        return None

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


class CalendarError(Exception):
    """A calendar table that cannot be read; ``reason`` starts with the field path."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_calendar(name: str, raw: object, where: str) -> BusinessCalendar:
    """The calendar a table describes (format above); ``where`` is its field path, e.g.
    ``escalation.calendars.warsaw``, and starts every :class:`CalendarError` reason."""
    if not isinstance(raw, Mapping):
        raise CalendarError(f"{where}: expected a table")
    for key in raw:
        if key not in ("timezone", "hours", "holidays"):
            raise CalendarError(f"{where}.{key}: unknown field")
    tz_name = raw.get("timezone", "")
    if not isinstance(tz_name, str) or not tz_name:
        raise CalendarError(f"{where}.timezone: missing")
    try:
        zone = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CalendarError(f"{where}.timezone: unknown time zone {tz_name!r}") from None
    if "hours" not in raw:
        raise CalendarError(f"{where}.hours: missing")
    hours = raw["hours"]
    if not isinstance(hours, Mapping):
        raise CalendarError(f"{where}.hours: expected a table")
    if not hours:
        raise CalendarError(f"{where}.hours: at least one entry is required")
    for key in hours:
        if key not in DAYS:
            raise CalendarError(f"{where}.hours.{key}: unknown field")
    weekly: list[tuple[tuple[int, int], ...]] = []
    for day in DAYS:
        ranges = []
        for text in _strings(hours.get(day, []), f"{where}.hours.{day}"):
            match = _RANGE.match(text.strip())
            start = end = -1
            if match:
                h1, m1, h2, m2 = (int(g) for g in match.groups())
                if m1 < 60 and m2 < 60:
                    start, end = h1 * 60 + m1, h2 * 60 + m2
            if not 0 <= start < end <= _MINUTES_PER_DAY:
                raise CalendarError(
                    f"{where}.hours.{day}: expected 'HH:MM-HH:MM' in one day, got {text!r}"
                )
            ranges.append((start, end))
        ranges.sort()
        for (_, end1), (start2, _) in itertools.pairwise(ranges):
            if start2 < end1:
                raise CalendarError(f"{where}.hours.{day}: ranges overlap")
        weekly.append(tuple(ranges))
    if not any(weekly):
        raise CalendarError(f"{where}.hours: no opening hours on any day")
    holidays: set[date] = set()
    listed = _strings(raw.get("holidays", []), f"{where}.holidays")
    if len(listed) > MAX_HOLIDAYS:
        raise CalendarError(f"{where}.holidays: {len(listed)} dates, at most {MAX_HOLIDAYS}")
    for text in listed:
        try:
            holidays.add(date.fromisoformat(text))
        except ValueError:
            raise CalendarError(f"{where}.holidays: not a date (YYYY-MM-DD): {text!r}") from None
    return BusinessCalendar(name, zone, tuple(weekly), frozenset(holidays))


def _strings(value: object, where: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CalendarError(f"{where}: expected a list of strings")
    return list(value)
