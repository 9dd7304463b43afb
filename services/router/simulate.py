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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial

from services.router.domain import RoutingCore, RoutingPolicy, read_model
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
    "DESCRIPTION",
    "QueueLoad",
    "QueueReport",
    "Staffing",
    "add_arguments",
    "erlang_c",
    "erlang_c_asa",
    "erlang_c_service_level",
    "run",
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
    """One queue's day, counted over the customers who arrived after the warm-up (so not
    the core's own counts, which include the warm-up); the ratios are the router's."""

    queue: str
    offered: int = 0
    answered: int = 0
    answered_within: int = 0
    abandoned: int = 0
    #: Abandoned after waiting longer than the threshold (these count against the SL).
    abandoned_late: int = 0
    total_wait_s: float = 0.0

    @property
    def service_level(self) -> float | None:
        """The router's rule, :func:`read_model.service_level`: answered within the
        threshold / (answered + abandoned after it); ``None`` if nobody was handled."""
        return read_model.service_level(self.answered_within, self.answered, self.abandoned_late)

    @property
    def router_service_level(self) -> float:
        """:attr:`service_level` as a number (1.0 when nobody was handled), for searches
        that compare it with a target."""
        level = self.service_level
        return 1.0 if level is None else level

    @property
    def all_arrivals_service_level(self) -> float:
        """Answered within the threshold / (answered + every abandon): what Erlang A's
        ``service_level`` gives (every hang-up counts against it); 1.0 if none arrived."""
        handled = self.answered + self.abandoned
        return self.answered_within / handled if handled else 1.0

    @property
    def asa_s(self) -> float:
        """Average speed of answer: total wait of the answered / answered (the exported
        ``switchboard_router_wait_seconds`` histogram's ``_sum / _count``)."""
        return self.total_wait_s / self.answered if self.answered else 0.0

    @property
    def abandonment(self) -> float | None:
        """The router's rule, :func:`read_model.abandonment`."""
        return read_model.abandonment(self.abandoned, self.answered)


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


def _policy(loads: Sequence[QueueLoad]) -> RoutingPolicy:
    """One queue per load; agents never miss an offer, no wrap-up, positions not sent."""
    return RoutingPolicy.from_dict(
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


class _Day:
    """One simulated day: an agenda of customer events around the real core.

    Customer events are the methods ``_arrive`` (which schedules the next arrival and
    this customer's hang-up), ``_abandon`` and ``_end_call``; the core's decisions are
    answered by ``_react`` (agents accept every offer at once; an assignment schedules
    the end of the call). Statistics count customers who arrive after the warm-up.
    """

    def __init__(
        self, loads: Sequence[QueueLoad], *, hours: float, seed: int, warmup_hours: float
    ) -> None:
        self.loads = list(loads)
        self.by_queue = {load.queue: load for load in loads}
        self.rng = random.Random(seed)
        self.core = RoutingCore(_policy(loads))
        self.clock = 0.0
        self.hours = hours
        self.start_stats = warmup_hours * 3600
        self.end = self.start_stats + hours * 3600
        self.agenda: list[_Event] = []
        self.seq = itertools.count()
        self.reports = {load.queue: QueueReport(load.queue) for load in loads}
        self.arrived_at: dict[str, float] = {}
        self.queue_of: dict[str, str] = {}
        self.answered: set[str] = set()
        self.busy_since: dict[str, float] = {}  # agent -> start of the call (or of stats)
        self.busy_total = 0.0
        self.agents = 0

    def run(self, staffing: Sequence[Staffing]) -> SimulationResult:
        for group in staffing:
            for n in range(group.count):
                self._log_in(f"{group.name}-{n}", group)
        for load in self.loads:
            self._at(self.rng.expovariate(load.rate_per_s), partial(self._arrive, load, 0))
        while self.agenda:
            deadline = self.core.next_deadline()
            if deadline is not None and deadline <= self.agenda[0].at:
                self.clock = max(self.clock, deadline)
                self._react_all(self.core.tick(self.clock))
                continue
            event = heapq.heappop(self.agenda)
            if event.at > self.end:
                break
            self.clock = event.at
            event.act()
        self.busy_total += sum(max(0.0, self.end - since) for since in self.busy_since.values())
        capacity_s = self.agents * self.hours * 3600
        occupancy = self.busy_total / capacity_s if self.agents else 0.0
        return SimulationResult(self.reports, occupancy, self.hours)

    # -- scheduling and feeding the core

    def _at(self, when: float, act: Callable[[], None]) -> None:
        heapq.heappush(self.agenda, _Event(when, next(self.seq), act))

    def _feed(self, event: Input) -> None:
        self._react_all(self.core.apply(event, self.clock))

    def _react_all(self, decisions: Iterable[Decision]) -> None:
        for decision in decisions:
            self._react(decision)

    def _react(self, decision: Decision) -> None:
        if isinstance(decision, OfferMade):  # agents here accept at once
            self._feed(OfferAccepted(decision.agent_id, decision.contact_id, decision.offer_id))
        elif isinstance(decision, ContactAssigned):
            self._assigned(decision)

    # -- events

    def _log_in(self, agent_id: str, group: Staffing) -> None:
        self.agents += 1
        self._feed(
            AgentLoggedIn(
                agent_id,
                skills=group.skills,
                languages=group.languages,
                capacity=((Channel.VOICE, 1),),
            )
        )

    def _arrive(self, load: QueueLoad, n: int) -> None:
        contact = f"{load.queue}-{n}"
        self.arrived_at[contact], self.queue_of[contact] = self.clock, load.queue
        if self.clock >= self.start_stats:
            self.reports[load.queue].offered += 1
        if load.patience_s > 0:
            patience = self.rng.expovariate(1 / load.patience_s)
            self._at(self.clock + patience, partial(self._abandon, contact))
        self._feed(ContactArrived(contact, load.queue, Channel.VOICE, language=load.language))
        gap = self.rng.expovariate(load.rate_per_s)
        self._at(self.clock + gap, partial(self._arrive, load, n + 1))

    def _assigned(self, decision: ContactAssigned) -> None:
        contact = decision.contact_id
        self.answered.add(contact)
        load = self.by_queue[self.queue_of[contact]]
        waited = self.clock - self.arrived_at[contact]
        if self.arrived_at[contact] >= self.start_stats:
            report = self.reports[load.queue]
            report.answered += 1
            report.answered_within += waited <= load.service_level_s
            report.total_wait_s += waited
        self.busy_since[decision.agent_id] = max(self.clock, self.start_stats)
        call_s = self._handle_time(load)
        self._at(self.clock + call_s, partial(self._end_call, contact, decision.agent_id))

    def _end_call(self, contact: str, agent: str) -> None:
        if self.clock > self.start_stats:
            self.busy_total += self.clock - self.busy_since.pop(agent, self.clock)
        self._feed(ContactEnded(contact))

    def _abandon(self, contact: str) -> None:
        if contact in self.answered:
            return  # patience only runs out while waiting
        decisions = self.core.apply(ContactAbandoned(contact), self.clock)
        closed = [d for d in decisions if isinstance(d, ContactClosed) and d.abandoned]
        if closed and self.arrived_at[contact] >= self.start_stats:
            report = self.reports[self.queue_of[contact]]
            report.abandoned += 1
            waited = self.clock - self.arrived_at[contact]
            report.abandoned_late += waited > self.by_queue[report.queue].service_level_s
        self._react_all(decisions)

    def _handle_time(self, load: QueueLoad) -> float:
        if load.lognormal_sigma > 0:
            sigma = load.lognormal_sigma
            return self.rng.lognormvariate(math.log(load.aht_s) - sigma * sigma / 2, sigma)
        return self.rng.expovariate(1 / load.aht_s)


def simulate(
    loads: Sequence[QueueLoad],
    staffing: Sequence[Staffing],
    *,
    hours: float,
    seed: int = 1,
    warmup_hours: float = 0.5,
) -> SimulationResult:
    """Run the day; statistics count contacts that arrive after ``warmup_hours``."""
    day = _Day(loads, hours=hours, seed=seed, warmup_hours=warmup_hours)
    return day.run(staffing)


# --- command line ---------------------------------------------------------------------


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _print(result: SimulationResult, loads: Sequence[QueueLoad]) -> None:
    print(f"{'QUEUE':<14}{'OFFERED':>9}{'ANSWERED':>10}{'SL':>9}{'ASA':>9}{'ABANDON':>9}")
    for load in loads:
        r = result.queues[load.queue]
        print(
            f"{r.queue:<14}{r.offered:>9}{r.answered:>10}{_percent(r.service_level):>9}"
            f"{r.asa_s:>8.1f}s{_percent(r.abandonment):>9}"
        )
    print(f"occupancy {result.occupancy:.1%} over {result.hours:g} simulated hours")


#: What the simulator answers, for its ``--help`` (and ``switchboard whatif --help``).
DESCRIPTION = (
    "What if we staffed differently? One queue (billing, Polish) through a simulated day "
    "on the real routing core: service level, average speed of answer, abandonment and "
    "occupancy, with and without --extra-agents, and Erlang C for comparison."
)


def _within(kind: Callable[[str], float], low: float, high: float) -> Callable[[str], float]:
    """An option's parser: a number of ``kind`` from ``low`` to ``high``, or a clear error."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value:g} is not between {low:g} and {high:g}")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The simulator's options (shared with ``switchboard whatif``), each bounded."""
    parser.add_argument(
        "--agents",
        type=_within(int, 1, 10_000),
        default=12,
        help="agents staffing the queue (default 12)",
    )
    parser.add_argument(
        "--extra-agents",
        type=_within(int, 0, 10_000),
        default=0,
        help="the what-if: the same day again with this many more (default 0: no comparison)",
    )
    parser.add_argument(
        "--rate-per-minute",
        type=_within(float, 0.001, 10_000),
        default=4.0,
        help="arrivals per minute (default 4)",
    )
    parser.add_argument(
        "--aht-seconds",
        type=_within(float, 1, 86_400),
        default=150.0,
        help="average handle time (default 150)",
    )
    parser.add_argument(
        "--patience-seconds",
        type=_within(float, 0, 86_400),
        default=0.0,
        help="average patience before a caller hangs up (default 0: nobody hangs up)",
    )
    parser.add_argument(
        "--lognormal-sigma",
        type=_within(float, 0, 5),
        default=0.0,
        help="handle times lognormal with this sigma (default 0: exponential)",
    )
    parser.add_argument(
        "--threshold-seconds",
        type=_within(float, 0, 86_400),
        default=20.0,
        help="service-level threshold: answered within this many seconds (default 20)",
    )
    parser.add_argument(
        "--minutes",
        type=_within(float, 1, 7 * 24 * 60),
        default=480.0,
        help="length of the simulated day, at most a week (default 480)",
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="random seed: the same seed, the same customers"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    add_arguments(parser)
    run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> None:
    """Simulate and print, for the options of :func:`add_arguments`."""
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
