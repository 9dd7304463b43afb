"""The simulated contact center as a pure, seeded discrete-event model.

Customers arrive by a non-homogeneous Poisson process (Lewis-Shedler thinning against
the scenario's rate profile), wait with a patience they lose, and are offered to agents
by the *router* (outside, over Kafka). Agents log in, answer offers after a ring (or miss
them), hold and resume, pause tickets, ask for a manager, end contacts, take breaks and
log out; customers answer surveys. Time is whatever the caller says it is: the real-time
adapter passes the wall clock, tests pass a fake one, and the same seed always gives the
same story. No I/O, no asyncio, no protobuf: outputs are :mod:`.events` dataclasses.

Drive it with :meth:`Simulation.advance` (fire timers due by ``now``) and
:meth:`Simulation.apply` (a router decision arrived); both return the events to publish.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial

from services.simulator.events import (
    AgentLoggedIn,
    AgentLoggedOut,
    AgentPresence,
    AgentStateChanged,
    AgentStatusChanged,
    ContactAbandoned,
    ContactArrived,
    ContactAssigned,
    ContactClosed,
    ContactEnded,
    ContactHeld,
    ContactPaused,
    ContactRequeued,
    ContactResumed,
    ContactUnroutable,
    Customer,
    Decision,
    Disposition,
    ManagerRequested,
    OfferAccepted,
    OfferMade,
    OfferRejected,
    OfferTimedOut,
    PauseReason,
    Priority,
    QueuePositionUpdated,
    SimEvent,
    SurveyAnswered,
)
from services.simulator.names import COUNTRY_CODES, EMAIL_DOMAINS, FIRST_NAMES, LAST_NAMES
from services.simulator.scenario import AgentGroup, ChannelName, QueueSpec, Scenario, Span

__all__ = ["ContactStage", "SimStats", "Simulation"]

Timer = Callable[[float], None]

_HOLD_REASONS = (
    PauseReason.CHECKING_INFORMATION,
    PauseReason.WAITING_FOR_SPECIALIST,
    PauseReason.TECHNICAL_ISSUE,
)
_PAUSE_REASONS = (
    PauseReason.AWAITING_CUSTOMER,
    PauseReason.WAITING_FOR_THIRD_PARTY,
    PauseReason.WAITING_FOR_SPECIALIST,
    PauseReason.CHECKING_INFORMATION,
)
_DETAILS = {
    PauseReason.CHECKING_INFORMATION: "checking your account history",
    PauseReason.WAITING_FOR_SPECIALIST: "asking a billing specialist",
    PauseReason.AWAITING_CUSTOMER: "waiting for the document you will send",
    PauseReason.WAITING_FOR_THIRD_PARTY: "waiting for the bank to confirm the refund",
    PauseReason.TECHNICAL_ISSUE: "our system is being restored",
}
_BREAK_REASONS = ("break", "lunch", "training", "coaching")
_REJECT_REASONS = ("finishing notes", "wrong skill for me", "headset problem")
_LOW_COMMENTS = ("waited far too long", "problem not solved", "agent was unhelpful", "")
_HIGH_COMMENTS = ("quick and friendly", "thank you", "", "", "solved my problem")
_MANAGER_NOTES = (
    "customer asks for a supervisor",
    "wants compensation beyond my authority",
    "complaint about a previous agent",
)


class ContactStage(StrEnum):
    """Where a simulated contact is; the last three are final."""

    WAITING = "waiting"
    RINGING = "ringing"
    HANDLING = "handling"
    INTERRUPTED = "interrupted"
    ENDED = "ended"
    ABANDONED = "abandoned"
    CLOSED = "closed"


_FINAL = frozenset({ContactStage.ENDED, ContactStage.ABANDONED, ContactStage.CLOSED})


@dataclass(slots=True)
class _Contact:
    contact_id: str
    queue: QueueSpec
    channel: ChannelName
    customer: Customer
    arrived_at: float
    patience_until: float
    stage: ContactStage = ContactStage.WAITING
    agent_id: str = ""
    offer_id: str = ""
    unroutable: bool = False
    estimate_considered: bool = False
    interrupted_by_hold: bool = False


@dataclass(slots=True)
class _Agent:
    agent_id: str
    name: str
    group: AgentGroup
    logged_in: bool = False
    on_break: bool = False
    #: Set away by the router after a missed offer, until the agent notices.
    not_ready: bool = False
    recovering: bool = False
    pending_logout: bool = False
    contacts: set[str] = field(default_factory=set)
    ringing: dict[str, str] = field(default_factory=dict)
    router_state: AgentPresence = AgentPresence.UNKNOWN

    @property
    def idle(self) -> bool:
        return not self.contacts and not self.ringing


@dataclass
class SimStats:
    """What happened so far, for logs, the final report and tests."""

    counts: Counter[str] = field(default_factory=Counter)
    arrived_by_queue: Counter[str] = field(default_factory=Counter)
    arrived_by_channel: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {
            **dict(sorted(self.counts.items())),
            "arrived_by_queue": dict(sorted(self.arrived_by_queue.items())),
            "arrived_by_channel": dict(sorted(self.arrived_by_channel.items())),
        }


class Simulation:
    """Customers, telephony and agent desktops of one routing domain, seeded and clock-free."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        seed: int,
        start: float,
        run_id: str = "sim",
        arrivals_until: float | None = None,
    ) -> None:
        self.scenario = scenario
        self.start = start
        self.run_id = run_id
        self.stats = SimStats()
        self._rng = random.Random(seed)
        self._timers: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self._contact_numbers = itertools.count(1)
        self._customer_numbers = itertools.count(1)
        self._out: list[SimEvent] = []
        self._contacts: dict[str, _Contact] = {}
        self._agents: dict[str, _Agent] = {}
        self._customers: dict[str, list[Customer]] = {}
        self._last_agent: dict[str, str] = {}
        self._router_closed: set[str] = set()
        self._arrivals_until = arrivals_until
        self._arrivals_on = True
        self._now = start
        for group in scenario.agents:
            for index in range(group.count):
                agent = self._new_agent(group, index)
                self._at(start + group.login_at + index * 0.2, partial(self._login, agent))
        self._schedule_arrival(start)

    # --- driving ----------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When the next timer is due, if any."""
        return self._timers[0][0] if self._timers else None

    def advance(self, now: float) -> list[SimEvent]:
        """Fire every timer due by ``now``, in time order; return the events to publish."""
        while self._timers and self._timers[0][0] <= now:
            due, _, timer = heapq.heappop(self._timers)
            self._now = max(self._now, due)
            timer(self._now)
        self._now = max(self._now, now)
        return self._flush()

    def apply(self, decision: Decision, now: float) -> list[SimEvent]:
        """React to one router decision at ``now``; unknown contacts and agents are ignored."""
        self._now = max(self._now, now)
        now = self._now
        match decision:
            case OfferMade():
                self._on_offer(decision, now)
            case ContactAssigned():
                self._on_assigned(decision, now)
            case OfferTimedOut():
                self._on_offer_timed_out(decision, now)
            case ContactRequeued():
                self._on_requeued(decision)
            case ContactUnroutable():
                contact = self._contacts.get(decision.contact_id)
                if contact is not None and not contact.unroutable:
                    contact.unroutable = True
                    self.stats.counts["unroutable"] += 1
            case ContactClosed():
                self._on_closed(decision, now)
            case AgentStatusChanged():
                self._on_agent_status(decision, now)
            case QueuePositionUpdated():
                self._on_position(decision, now)
        return self._flush()

    def stop_arrivals(self) -> None:
        """No new contacts from now on; those already here carry on to their end."""
        self._arrivals_on = False

    def shutdown(self, now: float) -> list[SimEvent]:
        """End the day: waiting customers hang up, handled ones end, everyone logs out."""
        self._now = max(self._now, now)
        now = self._now
        self._arrivals_on = False
        self._timers.clear()
        for contact in self._contacts.values():
            if contact.stage in (ContactStage.WAITING, ContactStage.RINGING):
                # counted apart from patience running out: the run ended, not the customer
                self._abandon_now(contact, now, counter="hung_up_at_close")
            elif contact.stage in (ContactStage.HANDLING, ContactStage.INTERRUPTED):
                if contact.stage is ContactStage.INTERRUPTED:
                    self._resume(contact.contact_id, now)
                self._finish(contact, Disposition.CALLBACK_SCHEDULED, "simulation stopped", now)
        for agent in self._agents.values():
            if agent.logged_in:
                agent.ringing.clear()
                agent.logged_in = False
                self._out.append(
                    AgentLoggedOut(event_id=self._eid(), at=now, agent_id=agent.agent_id)
                )
        return self._flush()

    # --- queries ----------------------------------------------------------------------

    def open_contacts(self) -> int:
        """Contacts that have not ended, been abandoned or been closed by the router."""
        return sum(1 for c in self._contacts.values() if c.stage not in _FINAL)

    def contact_stage(self, contact_id: str) -> ContactStage | None:
        contact = self._contacts.get(contact_id)
        return None if contact is None else contact.stage

    def unconfirmed_contacts(self) -> list[str]:
        """Finished contacts the router has not (yet) reported closed."""
        return [
            c.contact_id
            for c in self._contacts.values()
            if c.stage in _FINAL and c.contact_id not in self._router_closed
        ]

    def logged_in_agents(self) -> int:
        return sum(1 for a in self._agents.values() if a.logged_in)

    # --- internals: plumbing ----------------------------------------------------------

    def _at(self, due: float, timer: Timer) -> None:
        heapq.heappush(self._timers, (due, next(self._seq), timer))

    def _eid(self) -> str:
        return f"{self.run_id}-{next(self._ids):08d}"

    def _flush(self) -> list[SimEvent]:
        out, self._out = self._out, []
        return out

    def _uniform(self, span: Span) -> float:
        return self._rng.uniform(span.low, span.high)

    def _pick(self, weighted: tuple[tuple[str, float], ...]) -> str:
        names = [name for name, _ in weighted]
        weights = [weight for _, weight in weighted]
        return self._rng.choices(names, weights=weights)[0]

    # --- arrivals ---------------------------------------------------------------------

    def _schedule_arrival(self, after: float) -> None:
        """Next arrival by thinning: candidates at the peak rate, kept with rate(t)/peak."""
        peak = self.scenario.peak_rate
        if peak <= 0:
            return
        last_point, last_multiplier = self.scenario.profile[-1]
        t = after
        while True:
            t += self._rng.expovariate(peak)
            if self._arrivals_until is not None and t > self._arrivals_until:
                return
            elapsed = t - self.start
            if last_multiplier <= 0 and elapsed >= last_point:
                return
            if self._rng.random() * peak <= self.scenario.rate_at(elapsed):
                break
        self._at(t, self._arrive)

    def _arrive(self, now: float) -> None:
        if not self._arrivals_on:
            return
        queue = self._rng.choices(
            self.scenario.queues, weights=[q.weight for q in self.scenario.queues]
        )[0]
        channel: ChannelName = self._pick(queue.channels)  # type: ignore[assignment]
        customer = self._customer(queue.language)
        priority = (
            Priority.VIP if self._rng.random() < self.scenario.behaviour.vip else Priority.NORMAL
        )
        self._open_contact(queue, channel, customer, priority, now)
        self._schedule_arrival(now)

    def _open_contact(
        self,
        queue: QueueSpec,
        channel: ChannelName,
        customer: Customer,
        priority: Priority,
        now: float,
    ) -> None:
        profile = self.scenario.channels[channel]
        patience = profile.patience_min + self._rng.expovariate(
            1.0 / max(profile.patience_mean, 1e-9)
        )
        contact = _Contact(
            contact_id=f"c-{self.run_id}-{next(self._contact_numbers):05d}",
            queue=queue,
            channel=channel,
            customer=customer,
            arrived_at=now,
            patience_until=now + patience,
        )
        self._contacts[contact.contact_id] = contact
        self.stats.counts["arrived"] += 1
        self.stats.arrived_by_queue[queue.name] += 1
        self.stats.arrived_by_channel[channel] += 1
        self._at(contact.patience_until, partial(self._abandon, contact.contact_id))
        self._out.append(
            ContactArrived(
                event_id=self._eid(),
                at=now,
                contact_id=contact.contact_id,
                queue=queue.name,
                channel=channel,
                skill=queue.skill,
                min_proficiency=queue.min_proficiency,
                optional_skill=queue.optional_skill,
                language=queue.language,
                priority=priority,
                preferred_agent_id=self._last_agent.get(customer.customer_id, ""),
                customer=customer,
            )
        )

    def _customer(self, language: str) -> Customer:
        known = self._customers.setdefault(language, [])
        if known and self._rng.random() < self.scenario.behaviour.repeat_customer:
            return self._rng.choice(known)
        number = next(self._customer_numbers)
        first = self._rng.choice(FIRST_NAMES[language])
        last = self._rng.choice(LAST_NAMES[language])
        national = "".join(str(self._rng.randint(0, 9)) for _ in range(8))
        customer = Customer(
            customer_id=f"cust-{language}-{number:05d}",
            name=first,
            phone=f"+{COUNTRY_CODES[language]}{self._rng.randint(5, 9)}{national}",
            email=f"{first}.{last}{number}@{self._rng.choice(EMAIL_DOMAINS)}".lower(),
            language=language,
        )
        known.append(customer)
        return customer

    def _abandon(self, contact_id: str, now: float) -> None:
        contact = self._contacts[contact_id]
        if contact.stage in (ContactStage.WAITING, ContactStage.RINGING):
            self._abandon_now(contact, now)

    def _abandon_now(self, contact: _Contact, now: float, counter: str = "abandoned") -> None:
        if contact.stage is ContactStage.RINGING:
            for agent in self._agents.values():
                agent.ringing.pop(contact.offer_id, None)
        contact.stage = ContactStage.ABANDONED
        self.stats.counts[counter] += 1
        self._out.append(
            ContactAbandoned(event_id=self._eid(), at=now, contact_id=contact.contact_id)
        )

    # --- agents -----------------------------------------------------------------------

    def _new_agent(self, group: AgentGroup, index: int) -> _Agent:
        language = group.languages[0] if group.languages[0] in FIRST_NAMES else "en"
        name = f"{self._rng.choice(FIRST_NAMES[language])} {self._rng.choice(LAST_NAMES[language])}"
        agent = _Agent(agent_id=f"{group.team}-{index + 1:02d}", name=name, group=group)
        self._agents[agent.agent_id] = agent
        return agent

    def _login(self, agent: _Agent, now: float) -> None:
        agent.logged_in = True
        agent.on_break = agent.not_ready = agent.pending_logout = False
        self.stats.counts["agent_logins"] += 1
        group = agent.group
        self._out.append(
            AgentLoggedIn(
                event_id=self._eid(),
                at=now,
                agent_id=agent.agent_id,
                name=agent.name,
                team=group.team,
                skills=group.skills,
                languages=group.languages,
                capacity=group.capacity,
            )
        )
        self._schedule_break(agent, now)
        if group.logout_at is not None:
            self._at(self.start + group.logout_at, partial(self._logout, agent))

    def _logout(self, agent: _Agent, now: float) -> None:
        if not agent.logged_in:
            return
        if not agent.idle:
            if not agent.pending_logout:
                agent.pending_logout = True
                # Stop new offers while the last contacts finish, as a desktop's "not ready".
                self._out.append(
                    AgentStateChanged(
                        event_id=self._eid(),
                        at=now,
                        agent_id=agent.agent_id,
                        available=False,
                        reason="end of shift",
                    )
                )
            return
        agent.logged_in = False
        agent.pending_logout = False
        self.stats.counts["agent_logouts"] += 1
        self._out.append(AgentLoggedOut(event_id=self._eid(), at=now, agent_id=agent.agent_id))

    def _schedule_break(self, agent: _Agent, now: float) -> None:
        every = self.scenario.behaviour.break_every
        if every > 0:
            self._at(now + self._rng.expovariate(1.0 / every), partial(self._break_due, agent))

    def _break_due(self, agent: _Agent, now: float) -> None:
        if not agent.logged_in or agent.pending_logout or agent.on_break:
            return
        if not agent.idle or agent.not_ready:
            # Finish the work in hand first, as agents do.
            self._at(now + self._rng.uniform(5.0, 15.0), partial(self._break_due, agent))
            return
        agent.on_break = True
        self.stats.counts["breaks"] += 1
        self._out.append(
            AgentStateChanged(
                event_id=self._eid(),
                at=now,
                agent_id=agent.agent_id,
                available=False,
                reason=self._rng.choice(_BREAK_REASONS),
            )
        )
        self._at(
            now + self._uniform(self.scenario.behaviour.break_length), partial(self._back, agent)
        )

    def _back(self, agent: _Agent, now: float) -> None:
        if not agent.logged_in or not agent.on_break:
            return
        agent.on_break = False
        agent.not_ready = False
        self._available(agent, now)
        self._schedule_break(agent, now)

    def _available(self, agent: _Agent, now: float) -> None:
        self._out.append(
            AgentStateChanged(
                event_id=self._eid(), at=now, agent_id=agent.agent_id, available=True, reason=""
            )
        )

    def _recover(self, agent: _Agent, now: float) -> None:
        """The agent noticed they were set away for a missed offer and is ready again."""
        agent.recovering = False
        if not agent.logged_in or agent.pending_logout or agent.on_break or not agent.not_ready:
            return
        agent.not_ready = False
        self._available(agent, now)

    def _set_not_ready(self, agent: _Agent, now: float) -> None:
        agent.not_ready = True
        if not agent.recovering:
            agent.recovering = True
            delay = self._uniform(self.scenario.behaviour.recover_after_miss)
            self._at(now + delay, partial(self._recover, agent))

    # --- offers -----------------------------------------------------------------------

    def _on_offer(self, offer: OfferMade, now: float) -> None:
        agent = self._agents.get(offer.agent_id)
        contact = self._contacts.get(offer.contact_id)
        if agent is None or contact is None or contact.stage in _FINAL:
            return
        contact.stage = ContactStage.RINGING
        contact.offer_id = offer.offer_id
        self.stats.counts["offers"] += 1
        behaviour = self.scenario.behaviour
        if not agent.logged_in or agent.on_break or agent.not_ready or agent.pending_logout:
            # The desktop says "not ready": decline at once so the contact is not held up.
            self._at(now + 0.2, partial(self._reject, agent.agent_id, offer, "agent not ready"))
            return
        agent.ringing[offer.offer_id] = offer.contact_id
        draw = self._rng.random()
        if draw < behaviour.miss_offer:
            self.stats.counts["offers_missed"] += 1  # the router will time it out
            return
        delay = self._uniform(behaviour.ring)
        if draw < behaviour.miss_offer + behaviour.reject_offer:
            reason = self._rng.choice(_REJECT_REASONS)
            self._at(now + delay, partial(self._reject, agent.agent_id, offer, reason))
        else:
            self._at(now + delay, partial(self._accept, agent.agent_id, offer))

    def _still_ringing(self, offer: OfferMade) -> _Contact | None:
        contact = self._contacts.get(offer.contact_id)
        if contact is None or contact.stage is not ContactStage.RINGING:
            return None
        return contact if contact.offer_id == offer.offer_id else None

    def _accept(self, agent_id: str, offer: OfferMade, now: float) -> None:
        agent = self._agents[agent_id]
        agent.ringing.pop(offer.offer_id, None)
        if self._still_ringing(offer) is None or not agent.logged_in:
            return
        self.stats.counts["offers_accepted"] += 1
        self._out.append(
            OfferAccepted(
                event_id=self._eid(),
                at=now,
                agent_id=agent_id,
                contact_id=offer.contact_id,
                offer_id=offer.offer_id,
            )
        )

    def _reject(self, agent_id: str, offer: OfferMade, reason: str, now: float) -> None:
        self._agents[agent_id].ringing.pop(offer.offer_id, None)
        if self._still_ringing(offer) is None:
            return
        self.stats.counts["offers_rejected"] += 1
        self._out.append(
            OfferRejected(
                event_id=self._eid(),
                at=now,
                agent_id=agent_id,
                contact_id=offer.contact_id,
                offer_id=offer.offer_id,
                reason=reason,
            )
        )

    def _on_offer_timed_out(self, decision: OfferTimedOut, now: float) -> None:
        contact = self._contacts.get(decision.contact_id)
        if (
            contact is not None
            and contact.stage is ContactStage.RINGING
            and contact.offer_id == decision.offer_id
        ):
            contact.stage = ContactStage.WAITING
            contact.offer_id = ""
        agent = self._agents.get(decision.agent_id)
        if agent is not None:
            agent.ringing.pop(decision.offer_id, None)
            self.stats.counts["offers_timed_out"] += 1
            if agent.logged_in:
                self._set_not_ready(agent, now)

    def _on_requeued(self, decision: ContactRequeued) -> None:
        contact = self._contacts.get(decision.contact_id)
        if contact is None or contact.stage is not ContactStage.RINGING:
            return
        for agent in self._agents.values():
            agent.ringing.pop(contact.offer_id, None)
        contact.stage = ContactStage.WAITING
        contact.offer_id = ""
        self.stats.counts["requeued"] += 1

    def _on_agent_status(self, decision: AgentStatusChanged, now: float) -> None:
        agent = self._agents.get(decision.agent_id)
        if agent is None:
            return
        agent.router_state = decision.state
        if (
            decision.state is AgentPresence.AWAY
            and "miss" in decision.reason.lower()
            and agent.logged_in
        ):
            self._set_not_ready(agent, now)

    def _on_position(self, decision: QueuePositionUpdated, now: float) -> None:
        """A customer told the wait is longer than they will stay may hang up sooner."""
        contact = self._contacts.get(decision.contact_id)
        if (
            contact is None
            or contact.stage is not ContactStage.WAITING
            or contact.estimate_considered
        ):
            return
        contact.estimate_considered = True
        if decision.estimated_wait > contact.patience_until - now and (
            self._rng.random() < self.scenario.behaviour.abandon_on_long_estimate
        ):
            contact.patience_until = now + self._rng.uniform(2.0, 10.0)
            self._at(contact.patience_until, partial(self._abandon, contact.contact_id))

    def _on_closed(self, decision: ContactClosed, now: float) -> None:
        self._router_closed.add(decision.contact_id)
        contact = self._contacts.get(decision.contact_id)
        if contact is None or contact.stage in _FINAL:
            return
        # The router closed a contact we still thought open (e.g. transferred out).
        contact.stage = ContactStage.CLOSED
        self.stats.counts["closed_by_router"] += 1
        agent = self._agents.get(contact.agent_id)
        if agent is not None:
            agent.contacts.discard(contact.contact_id)
            self._after_free(agent, now)

    # --- handling ---------------------------------------------------------------------

    def _on_assigned(self, decision: ContactAssigned, now: float) -> None:
        contact = self._contacts.get(decision.contact_id)
        agent = self._agents.get(decision.agent_id)
        if contact is None or agent is None or contact.stage in _FINAL:
            return
        if contact.stage in (ContactStage.HANDLING, ContactStage.INTERRUPTED):
            return  # a duplicate decision
        agent.ringing.pop(decision.offer_id, None)
        contact.stage = ContactStage.HANDLING
        contact.agent_id = agent.agent_id
        contact.offer_id = decision.offer_id
        agent.contacts.add(contact.contact_id)
        self.stats.counts["assigned"] += 1
        self._plan_handling(contact, now)

    def _plan_handling(self, contact: _Contact, now: float) -> None:
        """Decide the whole conversation up front: hold or pause, manager, end, survey."""
        rng = self._rng
        behaviour = self.scenario.behaviour
        profile = self.scenario.channels[contact.channel]
        handle = profile.handle_min + rng.expovariate(1.0 / max(profile.handle_mean, 1e-9))
        cid = contact.contact_id
        manager = rng.random() < behaviour.manager_request
        if manager:
            self._at(now + handle * 0.15, partial(self._ask_manager, cid))
        if rng.random() < profile.interrupt:
            start = now + handle * rng.uniform(0.25, 0.5)
            expected = self._uniform(profile.interrupt_expected)
            factor = (
                rng.uniform(1.3, 2.0)
                if rng.random() < behaviour.overrun
                else rng.uniform(0.4, 0.95)
            )
            actual = expected * factor
            voice = contact.channel == "voice"
            reason = rng.choice(_HOLD_REASONS if voice else _PAUSE_REASONS)
            self._at(start, partial(self._interrupt, cid, reason, expected, voice))
            self._at(start + actual, partial(self._resume, cid))
            handle += actual
        resolve = behaviour.resolve / 2 if manager else behaviour.resolve
        draw = rng.random()
        if draw < resolve:
            disposition = Disposition.RESOLVED
        elif draw < resolve + behaviour.callback:
            disposition = Disposition.CALLBACK_SCHEDULED
        elif contact.channel == "email" and rng.random() < 0.3:
            disposition = Disposition.NO_REPLY
        else:
            disposition = Disposition.UNRESOLVED
        self._at(now + handle, partial(self._end, cid, disposition))

    def _ask_manager(self, contact_id: str, now: float) -> None:
        contact = self._contacts[contact_id]
        if contact.stage is not ContactStage.HANDLING:
            return
        self.stats.counts["manager_requests"] += 1
        self._out.append(
            ManagerRequested(
                event_id=self._eid(),
                at=now,
                agent_id=contact.agent_id,
                contact_id=contact_id,
                note=self._rng.choice(_MANAGER_NOTES),
            )
        )

    def _interrupt(
        self, contact_id: str, reason: PauseReason, expected: float, voice: bool, now: float
    ) -> None:
        contact = self._contacts[contact_id]
        if contact.stage is not ContactStage.HANDLING:
            return
        contact.stage = ContactStage.INTERRUPTED
        contact.interrupted_by_hold = voice
        kwargs = {
            "event_id": self._eid(),
            "at": now,
            "contact_id": contact_id,
            "agent_id": contact.agent_id,
            "reason": reason,
            "detail": _DETAILS[reason],
            "expected_seconds": round(expected, 1),
        }
        if voice:
            self.stats.counts["holds"] += 1
            self._out.append(ContactHeld(**kwargs))  # type: ignore[arg-type]
        else:
            self.stats.counts["pauses"] += 1
            self._out.append(ContactPaused(**kwargs))  # type: ignore[arg-type]

    def _resume(self, contact_id: str, now: float) -> None:
        contact = self._contacts[contact_id]
        if contact.stage is not ContactStage.INTERRUPTED:
            return
        contact.stage = ContactStage.HANDLING
        self.stats.counts["resumed"] += 1
        self._out.append(
            ContactResumed(
                event_id=self._eid(), at=now, contact_id=contact_id, agent_id=contact.agent_id
            )
        )

    def _end(self, contact_id: str, disposition: Disposition, now: float) -> None:
        contact = self._contacts[contact_id]
        if contact.stage is ContactStage.INTERRUPTED:
            self._resume(contact_id, now)
        if contact.stage is not ContactStage.HANDLING:
            return
        notes = {
            Disposition.RESOLVED: "problem solved",
            Disposition.UNRESOLVED: "could not solve; needs follow-up",
            Disposition.NO_REPLY: "customer stopped replying",
            Disposition.CALLBACK_SCHEDULED: "customer will be called back",
        }
        self._finish(contact, disposition, notes[disposition], now)
        behaviour = self.scenario.behaviour
        if self._rng.random() < behaviour.survey:
            delay = self._uniform(behaviour.survey_delay)
            self._at(now + delay, partial(self._survey, contact_id, disposition))
        if disposition is Disposition.CALLBACK_SCHEDULED and self._arrivals_on:
            self._at(now + self._rng.uniform(20.0, 60.0), partial(self._callback, contact_id))

    def _finish(self, contact: _Contact, disposition: Disposition, note: str, now: float) -> None:
        contact.stage = ContactStage.ENDED
        self.stats.counts["ended"] += 1
        self.stats.counts[f"ended_{disposition.value}"] += 1
        self._last_agent[contact.customer.customer_id] = contact.agent_id
        self._out.append(
            ContactEnded(
                event_id=self._eid(),
                at=now,
                contact_id=contact.contact_id,
                agent_id=contact.agent_id,
                disposition=disposition,
                note=note,
            )
        )
        agent = self._agents.get(contact.agent_id)
        if agent is not None:
            agent.contacts.discard(contact.contact_id)
            self._after_free(agent, now)

    def _after_free(self, agent: _Agent, now: float) -> None:
        if agent.pending_logout and agent.idle:
            self._logout(agent, now)

    def _survey(self, contact_id: str, disposition: Disposition, now: float) -> None:
        contact = self._contacts[contact_id]
        low_chance = self.scenario.behaviour.low_score
        if disposition is not Disposition.RESOLVED:
            low_chance = min(1.0, low_chance * 3)
        low = self._rng.random() < low_chance
        score = self._rng.choice((1, 2)) if low else self._rng.choices((3, 4, 5), (1, 3, 4))[0]
        self.stats.counts["surveys"] += 1
        if low:
            self.stats.counts["surveys_low"] += 1
        self._out.append(
            SurveyAnswered(
                event_id=self._eid(),
                at=now,
                contact_id=contact_id,
                customer_id=contact.customer.customer_id,
                agent_id=contact.agent_id,
                score=score,
                comment=self._rng.choice(_LOW_COMMENTS if low else _HIGH_COMMENTS),
            )
        )

    def _callback(self, contact_id: str, now: float) -> None:
        """The promised callback: a new voice contact for the same customer, treated first."""
        if not self._arrivals_on:
            return
        old = self._contacts[contact_id]
        self.stats.counts["callbacks"] += 1
        self._open_contact(old.queue, "voice", old.customer, Priority.CALLBACK, now)
