"""The what-if simulator drives the real routing core; in the single-skill FIFO case
with exponential handle times and no abandonment it must agree with Erlang C."""

from __future__ import annotations

import math
import statistics

import pytest

from services.router.domain.read_model import service_level
from services.router.simulate import (
    QueueLoad,
    Staffing,
    erlang_c,
    erlang_c_asa,
    erlang_c_service_level,
    simulate,
)

AGENTS, AHT, THRESHOLD = 10, 120.0, 20.0


def level(value: float | None) -> float:
    assert value is not None
    return value


RATE = 7.0 / AHT  # 7 Erlangs on 10 agents: 70 % occupancy
LOAD = QueueLoad("billing-en", "billing", RATE, AHT, service_level_s=THRESHOLD)
STAFF = [Staffing(AGENTS, (("billing", 5),), ("en",))]


def mmc_wait_probability(c: int, a: float) -> float:
    """P(wait) from the M/M/c stationary distribution summed directly (independent of
    the recurrence used by ``erlang_c``)."""
    below = sum(a**k / math.factorial(k) for k in range(c))
    at_or_above = a**c / math.factorial(c) * c / (c - a)
    return at_or_above / (below + at_or_above)


@pytest.mark.parametrize(("c", "a"), [(1, 0.5), (2, 1.0), (10, 7.0), (25, 20.0), (60, 55.0)])
def test_erlang_c_matches_the_stationary_distribution(c: int, a: float) -> None:
    assert erlang_c(c, a) == pytest.approx(mmc_wait_probability(c, a), rel=1e-9)


def test_erlang_c_textbook_values() -> None:
    # M/M/1: P(wait) = rho; ASA = rho / (mu - lambda)
    assert erlang_c(1, 0.5) == pytest.approx(0.5)
    assert erlang_c_asa(1, 0.5 / 100, 100) == pytest.approx(100.0)
    assert erlang_c(5, 5.0) == 1.0  # overloaded: everyone waits
    assert erlang_c_service_level(10, RATE, AHT, 0) == pytest.approx(1 - erlang_c(10, 7.0))


def test_the_simulated_router_agrees_with_erlang_c() -> None:
    """Tolerance: over 3 independent 120-hour runs (~25,000 contacts each) the standard
    error of the mean SL is about 0.5 points and of ASA about 4 %; we allow ~4 standard
    errors (2 points SL, 15 % ASA) so the test fails on a real bias, not on noise."""
    runs = [simulate([LOAD], STAFF, hours=120, seed=seed) for seed in (11, 12, 13)]
    sl = statistics.mean(level(r.queues["billing-en"].service_level) for r in runs)
    asa = statistics.mean(r.queues["billing-en"].asa_s for r in runs)
    assert sl == pytest.approx(erlang_c_service_level(AGENTS, RATE, AHT, THRESHOLD), abs=0.02)
    assert asa == pytest.approx(erlang_c_asa(AGENTS, RATE, AHT), rel=0.15)
    occupancy = statistics.mean(r.occupancy for r in runs)
    assert occupancy == pytest.approx(0.7, abs=0.02)


def test_same_seed_same_day_and_more_agents_never_hurt() -> None:
    first = simulate([LOAD], STAFF, hours=10, seed=5)
    again = simulate([LOAD], STAFF, hours=10, seed=5)
    assert first.queues == again.queues
    more = simulate([LOAD], [Staffing(AGENTS + 3, (("billing", 5),), ("en",))], hours=10, seed=5)
    assert level(more.queues["billing-en"].service_level) >= level(
        first.queues["billing-en"].service_level
    )


def test_impatient_customers_abandon_and_count_against_the_service_level() -> None:
    impatient = QueueLoad("billing-en", "billing", 12 / AHT, AHT, patience_s=30)
    result = simulate([impatient], STAFF, hours=10, seed=3)
    report = result.queues["billing-en"]
    assert 0 < report.abandoned_late < report.abandoned  # some hung up before 20 s
    assert report.answered + report.abandoned <= report.offered
    # the router's rule: only abandons after the threshold count against the queue
    assert report.service_level == service_level(
        report.answered_within, report.answered, report.abandoned_late
    )
    assert level(report.service_level) < 1
    assert report.abandonment == report.abandoned / (report.answered + report.abandoned)


def test_a_queue_that_handled_no_one_has_no_service_level_in_the_simulation_either() -> None:
    polish = QueueLoad("billing-pl", "billing", RATE, AHT, language="pl")
    report = simulate([polish], STAFF, hours=1, seed=1).queues["billing-pl"]
    assert report.offered > 0
    assert (report.service_level, report.abandonment) == (None, None)  # not 100 %


def test_agents_without_the_language_do_not_take_the_queue() -> None:
    polish = QueueLoad("billing-pl", "billing", RATE, AHT, language="pl")
    result = simulate([polish], STAFF, hours=2, seed=1)  # English speakers only
    assert result.queues["billing-pl"].answered == 0
