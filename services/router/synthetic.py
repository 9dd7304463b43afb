"""A synthetic recorded day: the real routing core run on simulated traffic, written as
the three topics would hold it. Pure and deterministic by seed.

For the what-if's tests and benchmark: customers arrive (Poisson, per queue), wait,
hang up when their patience runs out, talk for their handle time; agents log in for
their shift, take a break, accept every offer after a few seconds (uniform around
their mean), log out. Everything the telephony platform and the desktops would send
becomes a ``contact.events`` or ``agent.events`` record, and every decision of the core
a ``routing.decisions`` record, each with its time: what
:func:`services.router.recording.build_recording` reads back.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from switchboard.v1 import agent_events_pb2, common_pb2, contact_events_pb2
from switchboard.v1.envelope_pb2 import Envelope

from services.common.codec import new_envelope
from services.router.adapters.mapping import decision_to_envelope
from services.router.domain import RoutingCore, RoutingError, RoutingPolicy
from services.router.domain import model as m
from services.router.recording import RecordedEvent, Stream

__all__ = ["Demand", "Team", "default_center", "input_to_envelope", "record_day"]


@dataclass(frozen=True, slots=True)
class Demand:
    """Customers of one queue: arrivals an hour, mean handle and patience in seconds."""

    queue: str
    per_hour: float
    aht_s: float
    patience_s: float = math.inf
    language: str = ""


@dataclass(frozen=True, slots=True)
class Team:
    """Identical agents: skills, languages, a shift (hours from the start), one break."""

    name: str
    count: int
    skills: tuple[tuple[str, int], ...]
    languages: tuple[str, ...]
    shift: tuple[float, float] = (0.0, math.inf)
    break_minutes: float = 0.0
    accept_delay_s: float = 3.0


def default_center(scale: float = 1.0) -> tuple[list[Demand], list[Team]]:
    """About 100 agents and 10,000 contacts in a 12.5-hour day (``scale`` multiplies
    both), on the queues of ``deploy/config/router.toml``."""
    demand = [
        Demand("billing-en", 300 * scale, 240, 180),
        Demand("tech-en", 200 * scale, 300, 240),
        Demand("billing-ru", 90 * scale, 240, 150),
        Demand("tech-ru", 60 * scale, 300, 200),
        Demand("sales-pl", 80 * scale, 200, 120),
        Demand("billing-pl", 70 * scale, 240, 150),
    ]
    n = max(1, round(scale * 10))
    teams = [
        Team("billing-en", 3 * n + 2, (("billing", 5),), ("en",), (0.0, 12.5), 15),
        Team("tech-en", 2 * n + 3, (("tech", 6),), ("en",), (0.0, 12.5), 15),
        Team("russian", n + 3, (("billing", 4), ("tech", 5)), ("ru",), (0.0, 12.5), 15),
        Team("polish", n + 3, (("sales", 4), ("billing", 4)), ("pl", "en"), (0.0, 12.5), 15),
        Team("late", 2 * n, (("billing", 4), ("tech", 4)), ("en",), (4.0, 12.5), 15),
    ]
    return demand, teams


def input_to_envelope(event: m.Input, envelope: Envelope) -> Envelope:
    """Fill ``envelope`` with the event a telephony platform or desktop would send."""
    match event:
        case m.ContactArrived():
            a = envelope.contact_arrived
            a.contact_id, a.queue = event.contact_id, event.queue
            a.channel = common_pb2.Channel.ValueType(int(event.channel))
            a.language = event.language
            a.priority = common_pb2.Priority.ValueType(int(event.priority))
            a.preferred_agent_id = event.preferred_agent_id
            a.customer.customer_id = event.customer_id
        case m.ContactAbandoned():
            envelope.contact_abandoned.contact_id = event.contact_id
        case m.ContactEnded():
            e = envelope.contact_ended
            e.contact_id, e.agent_id = event.contact_id, event.agent_id
            e.disposition = contact_events_pb2.DISPOSITION_RESOLVED
        case m.ContactTransferred():
            t = envelope.contact_transferred
            t.contact_id, t.to_queue, t.to_agent_id = (
                event.contact_id,
                event.to_queue,
                event.to_agent_id,
            )
        case m.AgentLoggedIn():
            login = envelope.agent_logged_in
            login.agent_id, login.team = event.agent_id, event.team
            for skill, level in event.skills:
                login.skills.add(skill=skill, proficiency=level)
            login.languages.extend(event.languages)
            for channel, limit in event.capacity:
                login.capacity.add(
                    channel=common_pb2.Channel.ValueType(int(channel)), max_concurrent=limit
                )
        case m.AgentLoggedOut():
            envelope.agent_logged_out.agent_id = event.agent_id
        case m.AgentStateChanged():
            s = envelope.agent_state_changed
            s.agent_id, s.reason = event.agent_id, event.reason
            s.state = agent_events_pb2.AgentState.ValueType(int(event.state))
        case m.OfferAccepted():
            o = envelope.offer_accepted
            o.agent_id, o.contact_id, o.offer_id = event.agent_id, event.contact_id, event.offer_id
        case m.OfferRejected():
            r = envelope.offer_rejected
            r.agent_id, r.contact_id, r.offer_id = event.agent_id, event.contact_id, event.offer_id
        case _:
            raise ValueError(f"no envelope for {type(event).__name__}")
    return envelope


_CONTACT_INPUTS = (m.ContactArrived, m.ContactAbandoned, m.ContactEnded, m.ContactTransferred)


class _Day:
    def __init__(
        self, policy: RoutingPolicy, domain: str, start: float, hours: float, seed: int
    ) -> None:
        self.core = RoutingCore(policy)
        self.domain, self.start, self.end = domain, start, start + hours * 3600
        self.rng = random.Random(seed)  # noqa: S311 - simulated traffic
        self.agenda: list[tuple[float, int, Callable[[], None]]] = []
        self.seq = itertools.count()
        self.now = start
        self.out: list[RecordedEvent] = []
        self.ids = itertools.count()
        self.assigned: set[str] = set()
        self.handle_s: dict[str, float] = {}
        self.delay_s: dict[str, float] = {}

    def at(self, when: float, act: Callable[[], None]) -> None:
        heapq.heappush(self.agenda, (when, next(self.seq), act))

    def run(self) -> list[RecordedEvent]:
        while self.agenda:
            deadline = self.core.next_deadline()
            if deadline is not None and deadline <= self.agenda[0][0]:
                self.now = max(self.now, deadline)
                self._decided(self.core.tick(self.now))
                continue
            when, _, act = heapq.heappop(self.agenda)
            self.now = when
            act()
        return self.out

    def feed(self, event: m.Input) -> None:
        stream = Stream.CONTACT if isinstance(event, _CONTACT_INPUTS) else Stream.AGENT
        envelope = new_envelope(
            self.domain, "synthetic", event_id=f"in-{next(self.ids)}", occurred_at=self.now
        )
        self.out.append(RecordedEvent(stream, self.now, input_to_envelope(event, envelope)))
        try:
            decisions = self.core.apply(event, self.now)
        except RoutingError:
            return  # refused, as the router would (dead-lettered)
        self._decided(decisions)

    def _decided(self, decisions: Sequence[m.Decision]) -> None:
        for n, d in enumerate(decisions):
            if isinstance(d, m.QueuePositionUpdated):
                continue  # not needed by the what-if; keeps the recording small
            envelope = new_envelope(
                self.domain, "router", event_id=f"d-{next(self.ids)}-{n}", occurred_at=self.now
            )
            self.out.append(
                RecordedEvent(Stream.DECISION, self.now, decision_to_envelope(d, envelope))
            )
            if isinstance(d, m.OfferMade):
                mean = self.delay_s.get(d.agent_id, 3.0)
                delay = self.rng.uniform(0.5 * mean, 1.5 * mean)
                self.at(
                    self.now + delay,
                    partial(self.feed, m.OfferAccepted(d.agent_id, d.contact_id, d.offer_id)),
                )
            elif isinstance(d, m.ContactAssigned):
                self.assigned.add(d.contact_id)
                handle = self.handle_s.pop(d.contact_id, 180.0)
                self.at(
                    self.now + handle, partial(self.feed, m.ContactEnded(d.contact_id, d.agent_id))
                )

    # -- customers

    def arrivals(self, demand: Demand) -> None:
        if demand.per_hour <= 0:
            return
        gap = 3600.0 / demand.per_hour
        when = self.start + self.rng.expovariate(1 / gap)
        n = 0
        while when < self.end:
            contact = f"{demand.queue}-{n}"
            self.at(when, partial(self.arrive, demand, contact))
            when += self.rng.expovariate(1 / gap)
            n += 1

    def arrive(self, demand: Demand, contact: str) -> None:
        self.handle_s[contact] = self.rng.expovariate(1 / demand.aht_s)
        if math.isfinite(demand.patience_s):
            patience = self.rng.expovariate(1 / demand.patience_s)
            self.at(self.now + patience, partial(self.hang_up, contact))
        self.feed(
            m.ContactArrived(contact, demand.queue, m.Channel.VOICE, language=demand.language)
        )

    def hang_up(self, contact: str) -> None:
        if contact not in self.assigned and contact in self.core.contacts():
            self.feed(m.ContactAbandoned(contact))

    # -- agents

    def shift(self, team: Team, n: int) -> None:
        agent = f"{team.name}-{n:03d}"
        self.delay_s[agent] = self.rng.uniform(0.5, 1.5) * team.accept_delay_s
        begin = self.start + team.shift[0] * 3600 + self.rng.uniform(0, 300)
        finish = min(self.end, self.start + team.shift[1] * 3600) - self.rng.uniform(0, 300)
        login = m.AgentLoggedIn(
            agent, team.name, team.skills, team.languages, ((m.Channel.VOICE, 1),)
        )
        self.at(begin, partial(self.feed, login))
        if team.break_minutes > 0 and finish > begin:
            away = begin + self.rng.uniform(0.3, 0.7) * (finish - begin)
            self.at(
                away, partial(self.feed, m.AgentStateChanged(agent, m.AgentState.AWAY, "break"))
            )
            back = away + team.break_minutes * 60
            self.at(back, partial(self.feed, m.AgentStateChanged(agent, m.AgentState.AVAILABLE)))
        if finish < self.end:
            self.at(finish, partial(self.feed, m.AgentLoggedOut(agent)))


def record_day(
    policy: RoutingPolicy,
    demand: Sequence[Demand],
    teams: Sequence[Team],
    *,
    hours: float,
    start: float,
    domain: str = "acme",
    seed: int = 1,
) -> list[RecordedEvent]:
    """The records of ``hours`` of traffic from epoch second ``start``, in time order.

    Customers still waiting or talking at the end finish after it (their records come
    after ``start + hours``), as a recording read with a tail would show them.
    """
    day = _Day(policy, domain, start, hours, seed)
    for team in teams:
        for n in range(team.count):
            day.shift(team, n)
    for d in demand:
        day.arrivals(d)
    return day.run()
