"""Decision cost of the routing core against a naive linear-scan router (not a test).

    .venv/bin/python -m bench.router_core                    # 1k, 10k, 100k agents
    .venv/bin/python -m bench.router_core --agents 1000,10000 --events 20000

One event stream per size: agents log in with 3 of 100 skills each; then contacts arrive
on 100 queues (one per skill), are offered, accepted and ended, so agents free up and
take the next waiting contact. The stream runs through ``RoutingCore`` and through
``NaiveRouter`` (scan every agent on arrival, every waiting contact when an agent frees
up, longest-idle first: the same policy), and the two must make the same offers on the
prefix both ran. Prints, per arrival (the arrival plus the accepts and ends it sets off),
arrivals/s, inputs applied/s and p50/p99 latency.
"""

from __future__ import annotations

import argparse
import random
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from services.router.domain import RoutingCore, RoutingPolicy
from services.router.domain.model import (
    AgentLoggedIn,
    Channel,
    ContactArrived,
    ContactEnded,
    Input,
    OfferAccepted,
    OfferMade,
)

SKILLS = [f"s{n}" for n in range(100)]


def policy() -> RoutingPolicy:
    return RoutingPolicy.from_dict(
        {
            "queues": {
                f"q-{s}": {"skills": {s: 1}, "wrap_up_s": 0, "offer_timeout_s": 10**6}
                for s in SKILLS
            },
            "position_refresh_s": 10**6,
        }
    )


@dataclass
class NaiveRouter:
    """What a first version would do: look at everyone, every time (same longest-idle policy)."""

    agents: dict[str, tuple[frozenset[str], float]] = field(default_factory=dict)  # skills, idle
    busy: set[str] = field(default_factory=set)
    waiting: list[tuple[str, str]] = field(default_factory=list)  # (contact, skill) FIFO
    owner: dict[str, str] = field(default_factory=dict)

    def apply(self, event: Input, now: float) -> list[tuple[str, str]]:
        if isinstance(event, AgentLoggedIn):
            self.agents[event.agent_id] = (frozenset(s for s, _ in event.skills), now)
            return self._free(event.agent_id)
        if isinstance(event, ContactArrived):
            skill = event.queue.removeprefix("q-")
            best = None
            for agent, (skills, idle) in self.agents.items():
                eligible = agent not in self.busy and skill in skills
                if eligible and (best is None or (idle, agent) < best[0]):
                    best = ((idle, agent), agent)
            if best is None:
                self.waiting.append((event.contact_id, skill))
                return []
            return self._offer(event.contact_id, best[1])
        if isinstance(event, ContactEnded):
            agent = self.owner.pop(event.contact_id)
            self.busy.discard(agent)
            skills, _ = self.agents[agent]
            self.agents[agent] = (skills, now)
            return self._free(agent)
        return []

    def _free(self, agent: str) -> list[tuple[str, str]]:
        skills, _ = self.agents[agent]
        for n, (contact, skill) in enumerate(self.waiting):
            if skill in skills:
                del self.waiting[n]
                return self._offer(contact, agent)
        return []

    def _offer(self, contact: str, agent: str) -> list[tuple[str, str]]:
        self.busy.add(agent)
        self.owner[contact] = agent
        return [(contact, agent)]


def stream(agents: int, events: int, seed: int) -> Iterator[tuple[float, Input]]:
    """Logins, then arrivals and (after the offer is accepted) ends, time increasing."""
    rng = random.Random(seed)
    now = 0.0
    for n in range(agents):
        now += 0.001
        skills = tuple((s, rng.randint(1, 10)) for s in rng.sample(SKILLS, 3))
        yield now, AgentLoggedIn(f"a{n}", skills=skills, capacity=((Channel.VOICE, 1),))
    for n in range(events):
        now += 0.01
        yield now, ContactArrived(f"c{n}", f"q-{rng.choice(SKILLS)}", Channel.VOICE)


def percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000  # ns -> us


Run = tuple[list[tuple[str, str]], list[int], int]  # offers, ns per arrival, inputs applied


def run_core(agents: int, events: int, seed: int) -> Run:
    core = RoutingCore(policy())
    offers: list[tuple[str, str]] = []
    latencies: list[int] = []
    inputs = 0
    live: deque[str] = deque()  # assigned contacts, ended oldest-first to keep agents cycling
    for now, event in stream(agents, events, seed):
        started = time.perf_counter_ns()
        decisions = core.apply(event, now)
        follow: list[Input] = []
        for d in decisions:
            if isinstance(d, OfferMade):
                offers.append((d.contact_id, d.agent_id))
                follow.append(OfferAccepted(d.agent_id, d.contact_id, d.offer_id))
                live.append(d.contact_id)
        if len(live) > agents // 2:
            follow.append(ContactEnded(live.popleft()))
        for f in follow:
            for d in core.apply(f, now):
                if isinstance(d, OfferMade):
                    offers.append((d.contact_id, d.agent_id))
                    core.apply(OfferAccepted(d.agent_id, d.contact_id, d.offer_id), now)
                    live.append(d.contact_id)
                    inputs += 1
        if isinstance(event, ContactArrived):
            latencies.append(time.perf_counter_ns() - started)
            inputs += 1 + len(follow)
    return offers, latencies, inputs


def run_naive(agents: int, events: int, seed: int) -> Run:
    naive = NaiveRouter()
    offers: list[tuple[str, str]] = []
    latencies: list[int] = []
    inputs = 0
    live: deque[str] = deque()
    for now, event in stream(agents, events, seed):
        started = time.perf_counter_ns()
        made = naive.apply(event, now)
        offers.extend(made)
        live.extend(c for c, _ in made)
        ended = len(live) > agents // 2
        if ended:
            more = naive.apply(ContactEnded(live.popleft()), now)
            offers.extend(more)
            live.extend(c for c, _ in more)
        if isinstance(event, ContactArrived):
            latencies.append(time.perf_counter_ns() - started)
            inputs += 1 + ended
    return offers, latencies, inputs


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--agents", default="1000,10000,100000")
    parser.add_argument("--events", type=int, default=50_000, help="arrivals per size")
    parser.add_argument("--naive-events", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    print(
        f"{'AGENTS':>8} {'ROUTER':>8} {'arrivals/s':>11} {'inputs/s':>9} "
        f"{'p50 us':>8} {'p99 us':>8}  same offers"
    )
    for agents in (int(a) for a in args.agents.split(",")):
        core_offers, core_lat, core_inputs = run_core(agents, args.events, args.seed)
        naive_offers, naive_lat, naive_inputs = run_naive(agents, args.naive_events, args.seed)
        prefix = len(naive_offers)
        same = core_offers[:prefix] == naive_offers
        for name, lat, inputs in (
            ("core", core_lat, core_inputs),
            ("naive", naive_lat, naive_inputs),
        ):
            seconds = sum(lat) / 1e9
            print(
                f"{agents:>8} {name:>8} {len(lat) / seconds:>11,.0f} {inputs / seconds:>9,.0f} "
                f"{percentile(lat, 0.5):>8.1f} "
                f"{percentile(lat, 0.99):>8.1f}  {'yes' if same else 'NO'} ({prefix} offers)",
                flush=True,
            )


if __name__ == "__main__":
    main()
