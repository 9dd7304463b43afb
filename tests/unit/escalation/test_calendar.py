"""Business-hours calendars: only opening time counts towards an SLA threshold."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from services.escalation.domain import ALWAYS_OPEN, BusinessCalendar, EscalationPolicy
from tests.unit.escalation.scenario import BASE, HOUR, MIN, merged

WARSAW = ZoneInfo("Europe/Warsaw")


def warsaw(year: int, month: int, day: int, hour: int, minute: int) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=WARSAW).timestamp()


def office() -> BusinessCalendar:
    policy = EscalationPolicy.from_dict(
        merged(
            BASE,
            {
                "calendars": {
                    "warsaw": {
                        "timezone": "Europe/Warsaw",
                        "hours": dict.fromkeys(("mon", "tue", "wed", "thu", "fri"), "08:00-18:00"),
                        "holidays": ["2025-01-06"],
                    }
                }
            },
        )
    )
    return policy.calendars["warsaw"]


def test_always_open_counts_wall_time() -> None:
    assert ALWAYS_OPEN.open_seconds(100.0, 400.0) == 300.0
    assert ALWAYS_OPEN.instant_after(100.0, 50.0) == 150.0


def test_a_span_over_closing_time_and_a_holiday_counts_only_open_time() -> None:
    """Friday 17:00 to Tuesday 09:00, Monday a holiday: one hour Friday, one hour Tuesday."""
    calendar = office()
    start, end = warsaw(2025, 1, 3, 17, 0), warsaw(2025, 1, 7, 9, 0)
    assert calendar.open_seconds(start, end) == pytest.approx(2 * HOUR)
    assert calendar.instant_after(start, 90 * MIN) == pytest.approx(warsaw(2025, 1, 7, 8, 30))


def test_time_entirely_outside_opening_hours_counts_nothing() -> None:
    calendar = office()
    assert calendar.open_seconds(warsaw(2025, 1, 4, 9, 0), warsaw(2025, 1, 5, 17, 0)) == 0
    assert not calendar.is_open(warsaw(2025, 1, 4, 12, 0))
    assert calendar.is_open(warsaw(2025, 1, 7, 12, 0))


def test_daylight_saving_day_keeps_local_opening_hours() -> None:
    """On 31 March 2025 Warsaw is on summer time: 08:00 local is 06:00 UTC, not 07:00."""
    calendar = office()
    assert calendar.instant_after(warsaw(2025, 3, 30, 12, 0), MIN) == warsaw(2025, 3, 31, 8, 1)
    assert calendar.open_seconds(warsaw(2025, 3, 28, 0, 0), warsaw(2025, 4, 1, 0, 0)) == 20 * HOUR
