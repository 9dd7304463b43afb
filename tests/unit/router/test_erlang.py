"""Erlang A (M/M/n+M): checked against closed forms it must reduce to, against identities
it must satisfy, and against the simulator driving the real routing core.

Published Erlang A tables could not be retrieved for this test; the exact cross-checks
are instead: Erlang C as patience grows without bound; the case patience = handle time,
where the number in system is exactly Poisson (the chain is that of M/M/infinity);
abandonment = mean wait / mean patience (Little's law on the queue); and the
hypoexponential distribution functions against their partial-fraction formula where
that is still stable.
"""

from __future__ import annotations

import math
import statistics

import pytest

from services.router.erlang import _mixture_cdf, erlang_a
from services.router.simulate import (
    QueueLoad,
    Staffing,
    erlang_c,
    erlang_c_asa,
    erlang_c_service_level,
    simulate,
)

AHT = 180.0


def poisson(mean: float, k: int) -> float:
    return math.exp(-mean + k * math.log(mean) - math.lgamma(k + 1))


@pytest.mark.parametrize(("agents", "erlangs"), [(1, 0.5), (10, 7.0), (50, 45.0), (300, 290.0)])
def test_without_patience_it_is_erlang_c(agents: int, erlangs: float) -> None:
    rate = erlangs / AHT
    exact = erlang_a(agents, rate, AHT, math.inf, 20)
    assert exact.p_wait == pytest.approx(erlang_c(agents, erlangs), rel=1e-9)
    assert exact.service_level == pytest.approx(
        erlang_c_service_level(agents, rate, AHT, 20), abs=1e-9
    )
    assert exact.router_service_level == pytest.approx(exact.service_level, abs=1e-12)
    assert exact.asa_s == pytest.approx(erlang_c_asa(agents, rate, AHT), rel=1e-9)
    assert exact.p_abandon == pytest.approx(0, abs=1e-12)
    # and a very patient crowd converges to it
    patient = erlang_a(agents, rate, AHT, 1e9, 20)
    assert patient.service_level == pytest.approx(exact.service_level, abs=1e-5)
    assert patient.asa_s == pytest.approx(exact.asa_s, rel=1e-4)


@pytest.mark.parametrize(("agents", "erlangs"), [(1, 0.7), (10, 12.0), (40, 38.0), (100, 130.0)])
def test_patience_equal_to_handle_time_gives_a_poisson_system(agents: int, erlangs: float) -> None:
    """With theta = mu every contact in the system leaves at the same rate, served or not:
    the number in system is Poisson(erlangs), whatever the number of agents."""
    exact = erlang_a(agents, erlangs / AHT, AHT, AHT, 20)
    ks = range(int(erlangs * 3 + 60))
    assert exact.p_wait == pytest.approx(sum(poisson(erlangs, k) for k in ks if k >= agents))
    queue = sum((k - agents) * poisson(erlangs, k) for k in ks if k > agents)
    assert exact.p_abandon == pytest.approx(queue / erlangs, rel=1e-9)


@pytest.mark.parametrize(
    ("agents", "load", "patience"), [(10, 0.9, 120), (50, 1.1, 300), (200, 1.3, 30)]
)
def test_abandonment_is_mean_wait_over_mean_patience(
    agents: int, load: float, patience: float
) -> None:
    """Abandonment counted per customer (P(patience < wait)) equals theta E[W] (queue)."""
    exact = erlang_a(agents, agents * load / AHT, AHT, patience, 20)
    assert exact.p_abandon == pytest.approx(exact.mean_wait_s / patience, rel=1e-9)
    assert 0 < exact.service_level < exact.router_service_level < 1
    assert exact.occupancy == pytest.approx(load * (1 - exact.p_abandon), rel=1e-9)


def hypoexponential_cdf(rates: list[float], t: float) -> float:
    """Partial fractions (fine for a few distinct rates)."""
    survival = 0.0
    for i, r in enumerate(rates):
        coefficient = math.prod(q / (q - r) for j, q in enumerate(rates) if j != i)
        survival += coefficient * math.exp(-r * t)
    return 1 - survival


@pytest.mark.parametrize("t", [0.5, 3.0, 20.0])
def test_the_waiting_time_mixture_matches_partial_fractions(t: float) -> None:
    base, step = 0.3, 0.07
    weights = [0.4, 0.3, 0.2, 0.1]
    expected = sum(
        w * hypoexponential_cdf([base + m * step for m in range(j + 1)], t)
        for j, w in enumerate(weights)
    )
    assert _mixture_cdf(weights, base, step, t) == pytest.approx(expected, abs=1e-12)


def test_service_level_limits_and_monotonicity() -> None:
    rate = 20 * 0.95 / AHT
    at_zero = erlang_a(20, rate, AHT, 120, 0)
    assert at_zero.service_level == pytest.approx(1 - at_zero.p_wait, abs=1e-12)
    forever = erlang_a(20, rate, AHT, 120, 100_000)
    assert forever.service_level == pytest.approx(1 - forever.p_abandon, abs=1e-9)
    levels = [erlang_a(n, rate, AHT, 120, 20).router_service_level for n in range(15, 30)]
    assert levels == sorted(levels)


def test_bad_inputs_are_refused_with_the_field() -> None:
    with pytest.raises(ValueError, match="agents"):
        erlang_a(0, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="rate"):
        erlang_a(1, 0, 1, 1, 1)
    with pytest.raises(ValueError, match="patience"):
        erlang_a(1, 1, 1, 0, 1)
    with pytest.raises(ValueError, match="load"):
        erlang_a(5, 5 / AHT, AHT, math.inf, 20)  # Erlang C at full load


# ------------------------------------------------------------- against the simulated core


def test_the_simulator_draws_exponential_patience() -> None:
    """Nobody to answer: every contact hangs up, and the share hanging up after t
    seconds is P(patience > t) = exp(-t / mean) for exponential patience."""
    mean = 100.0
    for threshold in (50.0, 200.0):
        load = QueueLoad("q", "s", 0.5, AHT, patience_s=mean, service_level_s=threshold)
        report = simulate([load], [], hours=10, seed=3).queues["q"]
        assert report.answered == 0
        assert report.abandoned > 0.99 * report.offered > 15_000  # a few still waiting at the end
        late = report.abandoned_late / report.abandoned
        assert late == pytest.approx(math.exp(-threshold / mean), abs=0.015)


def compare(
    agents: int, load: float, patience: float, hours: float, seeds: int
) -> dict[str, float]:
    rate = agents * load / AHT
    exact = erlang_a(agents, rate, AHT, patience, 20)
    demand = QueueLoad("q", "s", rate, AHT, patience_s=patience)
    staff = [Staffing(agents, (("s", 5),))]
    reports = [
        simulate([demand], staff, hours=hours, seed=seed).queues["q"]
        for seed in range(1, seeds + 1)
    ]
    return {
        "sl": statistics.fmean(r.all_arrivals_service_level for r in reports) - exact.service_level,
        "router_sl": statistics.fmean(r.router_service_level for r in reports)
        - exact.router_service_level,
        "abandon": statistics.fmean(r.abandonment for r in reports) - exact.p_abandon,
    }


def test_the_simulated_router_agrees_with_erlang_a() -> None:
    """10 agents at load 0.9, patience 120 s, AHT 180 s: 6 runs of 40 h, ~43,000
    contacts; the standard error of the mean SL is about 0.6 points (measured over
    the seeds), of abandonment 0.2, so 2 points is more than 3 standard errors."""
    gaps = compare(10, 0.9, 120, hours=40, seeds=6)
    for name, gap in gaps.items():
        assert abs(gap) < 0.02, (name, gap)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("agents", "load", "patience", "hours"),
    [(20, 0.8, 60, 60), (25, 1.0, 180, 50), (40, 1.0, 60, 30), (50, 1.1, 300, 40)],
)
def test_the_simulated_router_agrees_with_erlang_a_across_regimes(
    agents: int, load: float, patience: float, hours: float
) -> None:
    """Around and above full load the simulated figures vary more (a run of 8 h at
    n=50, load 1.1 has a standard deviation of 4 points): 8 runs of 30-60 h (50,000-
    110,000 contacts) bring the standard error of the mean SL to 0.4-0.8 points."""
    gaps = compare(agents, load, patience, hours=hours, seeds=8)
    for name, gap in gaps.items():
        assert abs(gap) < 0.02, (name, gap)
