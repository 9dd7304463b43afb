"""A tiny, pure stand-in for the router, and a discrete-event driver, for simulator tests.

``FakeRouter`` follows the agreed offer protocol just enough to exercise the simulator:
offers reserve a slot and expire, accepts assign, rejections and timeouts re-queue (a
timeout also sets the agent away with "missed offer"), ends and abandons close. ``drive``
runs the simulation and the fake router against each other on a fake clock, with a small
delivery delay for decisions, so a test replays hours of contact-center life in milliseconds.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from dataclasses import dataclass, field

from services.simulator import events as ev
from services.simulator.core import Simulation

__all__ = ["Drive", "FakeRouter", "drive"]


@dataclass
class _Agent:
    skills: dict[str, int]
    languages: tuple[str, ...]
    capacity: dict[str, int]
    ready: bool = True
    in_hand: Counter[str] = field(default_factory=Counter)


@dataclass
class _Waiting:
    arrived: ev.ContactArrived
    offer_id: str = ""
    agent_id: str = ""
    assigned: bool = False


class FakeRouter:
    """First-come-first-served, first eligible agent; enough protocol for the simulator."""

    def __init__(self, offer_timeout: float = 10.0) -> None:
        self.offer_timeout = offer_timeout
        self.agents: dict[str, _Agent] = {}
        self.contacts: dict[str, _Waiting] = {}
        self.order: list[str] = []
        self.offers: dict[str, tuple[str, str, float]] = {}
        self._ids = itertools.count(1)

    def next_deadline(self) -> float | None:
        return min((expires for _, _, expires in self.offers.values()), default=None)

    def tick(self, now: float) -> list[ev.Decision]:
        out: list[ev.Decision] = []
        for offer_id, (contact_id, agent_id, expires) in list(self.offers.items()):
            if expires <= now:
                del self.offers[offer_id]
                self._release(agent_id, contact_id)
                self.contacts[contact_id].offer_id = ""
                agent = self.agents.get(agent_id)
                if agent is not None:
                    agent.ready = False
                out.append(ev.OfferTimedOut(offer_id, contact_id, agent_id))
                out.append(ev.AgentStatusChanged(agent_id, ev.AgentPresence.AWAY, "missed offer"))
        out.extend(self._match(now))
        return out

    def handle(self, event: ev.SimEvent, now: float) -> list[ev.Decision]:
        out: list[ev.Decision] = []
        match event:
            case ev.AgentLoggedIn():
                self.agents[event.agent_id] = _Agent(
                    skills=dict(event.skills),
                    languages=event.languages,
                    capacity=dict(event.capacity) or {"voice": 1},
                )
            case ev.AgentLoggedOut():
                self.agents.pop(event.agent_id, None)
            case ev.AgentStateChanged():
                agent = self.agents.get(event.agent_id)
                if agent is not None:
                    agent.ready = event.available
            case ev.ContactArrived():
                self.contacts[event.contact_id] = _Waiting(event)
                self.order.append(event.contact_id)
                if not any(self._eligible(a, event) for a in self.agents.values()):
                    out.append(ev.ContactUnroutable(event.contact_id, "no eligible agent"))
            case ev.ContactAbandoned():
                waiting = self.contacts.get(event.contact_id)
                if waiting is not None:
                    if waiting.offer_id:
                        self.offers.pop(waiting.offer_id, None)
                    if waiting.agent_id:
                        self._release(waiting.agent_id, event.contact_id)
                    self._close(event.contact_id)
                    out.append(ev.ContactClosed(event.contact_id, abandoned=True))
            case ev.OfferAccepted():
                offer = self.offers.pop(event.offer_id, None)
                if offer is not None:
                    self.contacts[event.contact_id].assigned = True
                    self.contacts[event.contact_id].offer_id = ""
                    out.append(ev.ContactAssigned(event.offer_id, event.contact_id, event.agent_id))
            case ev.OfferRejected():
                offer = self.offers.pop(event.offer_id, None)
                if offer is not None:
                    self._release(event.agent_id, event.contact_id)
                    self.contacts[event.contact_id].offer_id = ""
                    out.append(ev.ContactRequeued(event.contact_id, event.agent_id, "REJECTED"))
            case ev.ContactEnded():
                if event.contact_id in self.contacts:
                    self._release(event.agent_id, event.contact_id)
                    self._close(event.contact_id)
                    out.append(ev.ContactClosed(event.contact_id, abandoned=False))
            case _:
                pass
        out.extend(self._match(now))
        return out

    def _close(self, contact_id: str) -> None:
        self.contacts.pop(contact_id, None)
        if contact_id in self.order:
            self.order.remove(contact_id)

    def _release(self, agent_id: str, contact_id: str) -> None:
        agent = self.agents.get(agent_id)
        waiting = self.contacts.get(contact_id)
        if agent is not None and waiting is not None and waiting.agent_id == agent_id:
            agent.in_hand[waiting.arrived.channel] -= 1
            waiting.agent_id = ""

    @staticmethod
    def _eligible(agent: _Agent, contact: ev.ContactArrived) -> bool:
        return (
            agent.skills.get(contact.skill, 0) >= contact.min_proficiency
            and contact.language in agent.languages
            and agent.capacity.get(contact.channel, 0) > 0
        )

    def _match(self, now: float) -> list[ev.Decision]:
        out: list[ev.Decision] = []
        for contact_id in list(self.order):
            waiting = self.contacts[contact_id]
            if waiting.agent_id:
                continue
            contact = waiting.arrived
            for agent_id, agent in self.agents.items():
                if (
                    agent.ready
                    and self._eligible(agent, contact)
                    and agent.in_hand[contact.channel] < agent.capacity[contact.channel]
                ):
                    offer_id = f"o{next(self._ids)}"
                    agent.in_hand[contact.channel] += 1
                    waiting.agent_id = agent_id
                    waiting.offer_id = offer_id
                    self.offers[offer_id] = (contact_id, agent_id, now + self.offer_timeout)
                    out.append(
                        ev.OfferMade(offer_id, contact_id, agent_id, now + self.offer_timeout)
                    )
                    break
        return out


@dataclass
class Drive:
    """Everything both sides said, in order, with the time they said it."""

    events: list[tuple[float, ev.SimEvent]] = field(default_factory=list)
    decisions: list[tuple[float, ev.Decision]] = field(default_factory=list)

    def of(self, kind: type) -> list[object]:
        return [e for _, e in self.events if isinstance(e, kind)]

    def decided(self, kind: type) -> list[object]:
        return [d for _, d in self.decisions if isinstance(d, kind)]


def drive(
    sim: Simulation,
    router: FakeRouter | None,
    until: float,
    *,
    latency: float = 0.05,
    record: Drive | None = None,
) -> Drive:
    """Run ``sim`` (and ``router``) in event time up to ``until``; decisions arrive ``latency`` late."""
    log = record or Drive()
    pending: list[tuple[float, int, ev.Decision]] = []
    seq = itertools.count()

    def deliver(events: list[ev.SimEvent], now: float) -> None:
        for event in events:
            log.events.append((now, event))
            if router is not None:
                for decision in router.handle(event, now):
                    heapq.heappush(pending, (now + latency, next(seq), decision))

    while True:
        candidates = [
            t for t in (sim.next_deadline(), pending[0][0] if pending else None) if t is not None
        ]
        if router is not None and router.next_deadline() is not None:
            candidates.append(router.next_deadline())  # type: ignore[arg-type]
        if not candidates or min(candidates) > until:
            break
        now = min(candidates)
        if pending and pending[0][0] == now:
            _, _, decision = heapq.heappop(pending)
            log.decisions.append((now, decision))
            deliver(sim.apply(decision, now), now)
        elif router is not None and router.next_deadline() == now:
            for decision in router.tick(now):
                heapq.heappush(pending, (now + latency, next(seq), decision))
        else:
            deliver(sim.advance(now), now)
    return log
