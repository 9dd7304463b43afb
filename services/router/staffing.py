"""Staffing answers: the fewest agents that meet a service-level target. Pure.

:func:`fewest_agents` searches by simulation with the real routing core
(:func:`services.router.simulate.simulate`, one queue, identical agents, the same seeds
for every head count so the counts are compared on the same customers) and gives the
Erlang C and Erlang A answers beside it. The target is judged by the router's own rule
(:func:`services.router.domain.read_model.service_level`): answered within the
threshold / (answered + abandoned after the threshold).

The search starts at the Erlang A answer (Erlang C without patience) and walks down
while the target is still met, or up until it is: with the simulation agreeing with
Erlang A (tests/unit/router/test_erlang.py) that is a few runs.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from services.router.erlang import ErlangA, erlang_a
from services.router.simulate import QueueLoad, Staffing, erlang_c_service_level, simulate

__all__ = [
    "MAX_TRIALS",
    "StaffingAnswer",
    "Trial",
    "erlang_answer",
    "fewest_agents",
    "parse_target",
]

#: Most head counts one search simulates.
MAX_TRIALS = 60


@dataclass(frozen=True, slots=True)
class Trial:
    """One head count, simulated: means over the seeds."""

    agents: int
    service_level: float  # the router's rule
    all_arrivals_service_level: float  # answered within / every arrival
    abandonment: float
    asa_s: float
    occupancy: float
    erlang_a: ErlangA | None
    erlang_c_service_level: float | None

    def meets(self, target: float) -> bool:
        return self.service_level >= target


@dataclass(frozen=True, slots=True)
class StaffingAnswer:
    target: float
    threshold_s: float
    #: Fewest agents meeting the target in simulation (None: not within ``max_agents``).
    agents: int | None
    #: Every head count simulated, by number of agents.
    trials: tuple[Trial, ...]
    erlang_a_agents: int | None
    erlang_c_agents: int | None


def parse_target(text: str) -> tuple[float, float]:
    """``80/20`` -> (0.8, 20.0): percent answered within seconds."""
    percent, sep, seconds = text.partition("/")
    try:
        share, threshold = float(percent) / 100, float(seconds)
    except ValueError:
        raise ValueError(f"--target: expected PERCENT/SECONDS like 80/20, got {text!r}") from None
    if not sep or not 0 < share <= 1 or not (0 <= threshold < 86_400):
        raise ValueError(f"--target: expected PERCENT/SECONDS like 80/20, got {text!r}")
    return share, threshold


def _erlang_a(load: QueueLoad, agents: int) -> ErlangA | None:
    patience = load.patience_s if load.patience_s > 0 else math.inf
    try:
        return erlang_a(agents, load.rate_per_s, load.aht_s, patience, load.service_level_s)
    except ValueError:
        return None  # Erlang C at or above the agents' capacity


def _erlang_c(load: QueueLoad, agents: int) -> float | None:
    if load.rate_per_s * load.aht_s >= agents:
        return None
    return erlang_c_service_level(agents, load.rate_per_s, load.aht_s, load.service_level_s)


def erlang_answer(load: QueueLoad, target: float, *, patience: bool, max_agents: int) -> int | None:
    """Fewest agents meeting ``target`` by Erlang A (``patience``) or Erlang C."""

    def meets(n: int) -> bool:
        if patience:
            figures = _erlang_a(load, n)
            return figures is not None and figures.router_service_level >= target
        level = _erlang_c(load, n)
        return level is not None and level >= target

    if not meets(max_agents):
        return None
    lo, hi = 1, max_agents  # both are monotone in the head count: bisect
    while lo < hi:
        mid = (lo + hi) // 2
        if meets(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def fewest_agents(
    load: QueueLoad,
    target: float,
    *,
    hours: float = 8.0,
    seeds: Sequence[int] = (1, 2, 3),
    max_agents: int = 1000,
    warmup_hours: float = 0.5,
) -> StaffingAnswer:
    """The fewest agents (1..``max_agents``) whose simulated service level, by the
    router's rule and averaged over ``seeds``, is at least ``target``."""
    if not 0 < target <= 1:
        raise ValueError(f"target: must be in (0, 1], got {target}")
    if not 1 <= max_agents <= 100_000:
        raise ValueError(f"max_agents: must be 1..100000, got {max_agents}")
    if not seeds:
        raise ValueError("seeds: at least one")
    with_patience = load.patience_s > 0
    by_a = erlang_answer(load, target, patience=True, max_agents=max_agents)
    by_c = erlang_answer(load, target, patience=False, max_agents=max_agents)
    guess = by_a if with_patience and by_a is not None else by_c
    if guess is None:
        guess = min(max_agents, max(1, math.ceil(load.rate_per_s * load.aht_s)))
    trials: dict[int, Trial] = {}

    def trial(n: int) -> Trial:
        if n not in trials:
            if len(trials) >= MAX_TRIALS:
                raise ValueError(f"no answer within {MAX_TRIALS} simulated head counts")
            trials[n] = _simulate(load, n, hours, seeds, warmup_hours)
        return trials[n]

    n = guess
    if trial(n).meets(target):
        while n > 1 and trial(n - 1).meets(target):
            n -= 1
        answer: int | None = n
    else:
        while n < max_agents and not trial(n + 1).meets(target):
            n += 1
        answer = n + 1 if n < max_agents else None
        if answer is not None:  # show the head count just below too
            trial(answer - 1)
    return StaffingAnswer(
        target=target,
        threshold_s=load.service_level_s,
        agents=answer,
        trials=tuple(trials[k] for k in sorted(trials)),
        erlang_a_agents=by_a if with_patience else by_c,
        erlang_c_agents=by_c,
    )


def _simulate(
    load: QueueLoad, agents: int, hours: float, seeds: Sequence[int], warmup_hours: float
) -> Trial:
    staff = [Staffing(agents, ((load.skill, 5),), (load.language,) if load.language else ("en",))]
    runs = [
        simulate([load], staff, hours=hours, seed=seed, warmup_hours=warmup_hours) for seed in seeds
    ]
    reports = [run.queues[load.queue] for run in runs]
    return Trial(
        agents=agents,
        service_level=statistics.fmean(r.router_service_level for r in reports),
        all_arrivals_service_level=statistics.fmean(r.all_arrivals_service_level for r in reports),
        abandonment=statistics.fmean(r.abandonment or 0.0 for r in reports),
        asa_s=statistics.fmean(r.asa_s for r in reports),
        occupancy=statistics.fmean(run.occupancy for run in runs),
        erlang_a=_erlang_a(load, agents),
        erlang_c_service_level=_erlang_c(load, agents),
    )
