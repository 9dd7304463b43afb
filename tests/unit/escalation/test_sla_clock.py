"""The SLA stopwatch: business seconds banked across stops, counted on the calendar given."""

from __future__ import annotations

from services.escalation.domain import ALWAYS_OPEN
from services.escalation.domain.sla_clock import SlaStopwatch
from tests.unit.escalation.scenario import HOUR, MIN
from tests.unit.escalation.test_calendar import office, warsaw


def test_stopping_banks_the_business_time_since_the_start() -> None:
    clock = SlaStopwatch()
    clock.start(100.0)
    clock.stop(400.0, ALWAYS_OPEN)
    assert (clock.banked_s, clock.since, clock.running) == (300.0, None, False)


def test_a_second_start_or_stop_changes_nothing() -> None:
    clock = SlaStopwatch()
    clock.start(100.0)
    clock.start(200.0)  # already running: keeps counting from 100
    clock.stop(400.0, ALWAYS_OPEN)
    clock.stop(900.0, ALWAYS_OPEN)  # already stopped: banks nothing more
    assert clock.banked_s == 300.0


def test_stops_bank_only_opening_hours_of_the_calendar_given() -> None:
    """Tuesday 17:30 to Wednesday 08:30 in Warsaw: 30 min before closing, 30 after opening."""
    clock = SlaStopwatch()
    clock.start(warsaw(2025, 1, 7, 17, 30))
    clock.stop(warsaw(2025, 1, 8, 8, 30), office())
    assert clock.banked_s == 60 * MIN


def test_the_threshold_is_reached_after_the_banked_time_is_used_up() -> None:
    clock = SlaStopwatch(banked_s=200.0)
    assert clock.reaches(300.0, ALWAYS_OPEN) is None  # stopped: never
    clock.start(1000.0)
    assert clock.reaches(300.0, ALWAYS_OPEN) == 1100.0


def test_the_threshold_follows_opening_hours() -> None:
    clock = SlaStopwatch(banked_s=30 * MIN)
    clock.start(warsaw(2025, 1, 7, 17, 30))  # 30 min left today, then Wednesday 08:00
    assert clock.reaches(HOUR + 30 * MIN, office()) == warsaw(2025, 1, 8, 8, 30)


def test_reset_forgets_the_banked_time_and_stops() -> None:
    clock = SlaStopwatch(banked_s=99.0, since=5.0)
    clock.reset()
    assert clock == SlaStopwatch()
