"""``python -m services.router.simulate``: what if we staffed differently?

A discrete-event simulation that drives the real :class:`RoutingCore` (not a model of
it) through a synthetic day: Poisson arrivals per queue, exponential or lognormal
handle times, customers who hang up when their patience runs out, and agents with
skills and languages who accept every offer. It prints, per queue, the numbers an
operations team plans with: service level, average speed of answer (ASA), abandonment
and occupancy. Pure: no I/O but the final print, no real time, deterministic by seed.

``erlang_c`` and friends give the textbook answer for the single-skill FIFO case;
tests/unit/router/test_simulate.py checks the simulation against them.

    python -m services.router.simulate --agents 12 --rate-per-minute 4 --aht-seconds 150
    python -m services.router.simulate --agents 12 --extra-agents 3 --minutes 480
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from services.router.domain import RoutingCore, RoutingPolicy
from services.router.domain.model import (
    AgentLoggedIn,
    Channel,
    ContactAbandoned,
    ContactArrived,
    ContactAssigned,
    ContactClosed,
    ContactEnded,
    Decision,
    Input,
    OfferAccepted,
    OfferMade,
)

__all__ = [
    "QueueLoad",
    "QueueReport",
    "Staffing",
    "erlang_c",
    "erlang_c_asa",
    "erlang_c_service_level",
    "simulate",
]


# --- the textbook ----------------------------------------------------------------------


def erlang_c(agents: int, traffic: float) -> float:
    """Probability that a contact waits (M/M/c), ``traffic`` = arrival rate x handle time."""
    if traffic <= 0:
        return 0.0
    if traffic >= agents:
        return 1.0
    # Erlang B by its stable recurrence, then C from B.
    b = 1.0
    for k in range(1, agents + 1):
        b = traffic * b / (k + traffic * b)
    return agents * b / (agents - traffic * (1 - b))


def erlang_c_service_level(agents: int, rate: float, aht: float, threshold: float) -> float:
    """Share of contacts answered within ``threshold`` seconds (M/M/c, FIFO, no abandons)."""
    traffic = rate * aht
    if traffic >= agents:
        return 0.0
    return 1 - erlang_c(agents, traffic) * math.exp(-(agents - traffic) * threshold / aht)


def erlang_c_asa(agents: int, rate: float, aht: float) -> float:
    """Average speed of answer in seconds (M/M/c, FIFO, no abandons)."""
    traffic = rate * aht
    if traffic >= agents:
        return math.inf
    return erlang_c(agents, traffic) * aht / (agents - traffic)


# --- what to simulate -----------------------------------------------------------------


@dataclass(frozen=True)
class QueueLoad:
    """Demand on one queue: arrivals per second, handle time, patience (0 = infinite)."""

    queue: str
    skill: str
    rate_per_s: float
    aht_s: float
    language: str = ""
    patience_s: float = 0.0
    lognormal_sigma: float = 0.0  # 0: exponential handle times
    service_level_s: float = 20.0


@dataclass(frozen=True)
class Staffing:
    """A group of identical agents."""

    count: int
    skills: tuple[tuple[str, int], ...]
    languages: tuple[str, ...] = ("en",)
    name: str = "agent"


@dataclass
class QueueReport:
    queue: str
    offered: int = 0
    answered: int = 0
    answered_within: int = 0
    abandoned: int = 0
    total_wait_s: float = 0.0

    @property
    def service_level(self) -> float:
        """Answered within the threshold / (answered + abandoned): every abandon counts
        against the queue, stricter than the router (which counts only abandons after the
        threshold); without patience both agree, which is what Erlang C is checked on."""
        handled = self.answered + self.abandoned
        return self.answered_within / handled if handled else 1.0

    @property
    def asa_s(self) -> float:
        return self.total_wait_s / self.answered if self.answered else 0.0

    @property
    def abandonment(self) -> float:
        return self.abandoned / self.offered if self.offered else 0.0


@dataclass
class SimulationResult:
    queues: dict[str, QueueReport]
    occupancy: float
    hours: float


# --- the simulation -------------------------------------------------------------------


@dataclass(order=True)
class _Event:
    at: float
    seq: int
    act: Callable[[], None] = field(compare=False)


def simulate(
    loads: Sequence[QueueLoad],
    staffing: Sequence[Staffing],
    *,
    hours: float,
    seed: int = 1,
    warmup_hours: float = 0.5,
) -> SimulationResult:
    """Run the day; statistics count contacts that arrive after ``warmup_hours``."""
    rng = random.Random(seed)
    policy = RoutingPolicy.from_dict(
        {
            "queues": {
                load.queue: {
                    "skills": {load.skill: 1},
                    "language": load.language,
                    "offer_timeout_s": 3600,
                    "wrap_up_s": 0,
                    "service_level_s": load.service_level_s,
                }
                for load in loads
            },
            "position_refresh_s": 3600,
        }
    )
    core = RoutingCore(policy)
    clock = 0.0
    start_stats = warmup_hours * 3600
    end = start_stats + hours * 3600
    agenda: list[_Event] = []
    seq = itertools.count()
    by_queue = {load.queue: load for load in loads}
    reports = {load.queue: QueueReport(load.queue) for load in loads}
    arrived_at: dict[str, float] = {}
    queue_of: dict[str, str] = {}
    answered: set[str] = set()
    busy_since: dict[str, float] = {}
    busy_total = 0.0
    agents = 0

    def at(when: float, act: Callable[[], None]) -> None:
        heapq.heappush(agenda, _Event(when, next(seq), act))

    def feed(event: Input) -> None:
        for decision in core.apply(event, clock):
            react(decision)

    def react(decision: Decision) -> None:
        if isinstance(decision, OfferMade):  # agents here accept at once
            feed(OfferAccepted(decision.agent_id, decision.contact_id, decision.offer_id))
        elif isinstance(decision, ContactAssigned):
            contact = decision.contact_id
            answered.add(contact)
            load = by_queue[queue_of[contact]]
            waited = clock - arrived_at[contact]
            if arrived_at[contact] >= start_stats:
                report = reports[load.queue]
                report.answered += 1
                report.answered_within += waited <= load.service_level_s
                report.total_wait_s += waited
            busy_since[decision.agent_id] = max(clock, start_stats)
            at(clock + handle_time(load), lambda: end_contact(contact, decision.agent_id))

    def end_contact(contact: str, agent: str) -> None:
        nonlocal busy_total
        if clock > start_stats:
            busy_total += clock - busy_since.pop(agent, clock)
        feed(ContactEnded(contact))

    def handle_time(load: QueueLoad) -> float:
        if load.lognormal_sigma > 0:
            sigma = load.lognormal_sigma
            return rng.lognormvariate(math.log(load.aht_s) - sigma * sigma / 2, sigma)
        return rng.expovariate(1 / load.aht_s)

    def arrive(load: QueueLoad, n: int) -> None:
        contact = f"{load.queue}-{n}"
        arrived_at[contact], queue_of[contact] = clock, load.queue
        if clock >= start_stats:
            reports[load.queue].offered += 1
        if load.patience_s > 0:
            at(clock + rng.expovariate(1 / load.patience_s), lambda: abandon(contact))
        feed(ContactArrived(contact, load.queue, Channel.VOICE, language=load.language))
        at(clock + rng.expovariate(load.rate_per_s), lambda: arrive(load, n + 1))

    def abandon(contact: str) -> None:
        if contact in answered:
            return  # patience only runs out while waiting
        decisions = core.apply(ContactAbandoned(contact), clock)
        closed = any(isinstance(d, ContactClosed) and d.abandoned for d in decisions)
        if closed and arrived_at[contact] >= start_stats:
            reports[queue_of[contact]].abandoned += 1
        for decision in decisions:
            react(decision)

    for group in staffing:
        for n in range(group.count):
            agents += 1
            feed(
                AgentLoggedIn(
                    f"{group.name}-{n}",
                    skills=group.skills,
                    languages=group.languages,
                    capacity=((Channel.VOICE, 1),),
                )
            )
    for load in loads:
        at(rng.expovariate(load.rate_per_s), lambda load=load: arrive(load, 0))  # type: ignore[misc]
    while agenda:
        deadline = core.next_deadline()
        if deadline is not None and deadline <= agenda[0].at:
            clock = max(clock, deadline)
            for decision in core.tick(clock):
                react(decision)
            continue
        event = heapq.heappop(agenda)
        if event.at > end:
            break
        clock = event.at
        event.act()
    busy_total += sum(max(0.0, end - since) for since in busy_since.values())
    occupancy = busy_total / (agents * hours * 3600) if agents else 0.0
    return SimulationResult(reports, occupancy, hours)


# --- command line ---------------------------------------------------------------------


def _print(result: SimulationResult, loads: Sequence[QueueLoad]) -> None:
    print(f"{'QUEUE':<14}{'OFFERED':>9}{'ANSWERED':>10}{'SL':>9}{'ASA':>9}{'ABANDON':>9}")
    for load in loads:
        r = result.queues[load.queue]
        print(
            f"{r.queue:<14}{r.offered:>9}{r.answered:>10}{r.service_level:>9.1%}"
            f"{r.asa_s:>8.1f}s{r.abandonment:>9.1%}"
        )
    print(f"occupancy {result.occupancy:.1%} over {result.hours:g} simulated hours")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--agents", type=int, default=12)
    parser.add_argument("--extra-agents", type=int, default=0, help="the what-if: add these")
    parser.add_argument("--rate-per-minute", type=float, default=4.0)
    parser.add_argument("--aht-seconds", type=float, default=150.0)
    parser.add_argument("--patience-seconds", type=float, default=0.0, help="0: nobody hangs up")
    parser.add_argument("--lognormal-sigma", type=float, default=0.0)
    parser.add_argument("--threshold-seconds", type=float, default=20.0)
    parser.add_argument("--minutes", type=float, default=480.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    load = QueueLoad(
        queue="billing-pl",
        skill="billing",
        language="pl",
        rate_per_s=args.rate_per_minute / 60,
        aht_s=args.aht_seconds,
        patience_s=args.patience_seconds,
        lognormal_sigma=args.lognormal_sigma,
        service_level_s=args.threshold_seconds,
    )
    # The what-if: the same customers (same seed) with and without the extra agents.
    counts = [args.agents] + ([args.agents + args.extra_agents] if args.extra_agents else [])
    for agents in counts:
        print(f"with {agents} agents:")
        staff = [Staffing(agents, (("billing", 5),), ("pl",))]
        result = simulate([load], staff, hours=args.minutes / 60, seed=args.seed)
        _print(result, [load])
        if args.patience_seconds == 0 and args.lognormal_sigma == 0:
            sl = erlang_c_service_level(agents, load.rate_per_s, load.aht_s, load.service_level_s)
            asa = erlang_c_asa(agents, load.rate_per_s, load.aht_s)
            print(f"Erlang C for {agents} agents: SL {sl:.1%}, ASA {asa:.1f}s")


if __name__ == "__main__":
    main()
