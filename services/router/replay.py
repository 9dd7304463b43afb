"""Replay a recording through the real routing core under a policy. Pure, deterministic.

The customers and agents of the recording do what the recording says they did, and
what it cannot say is modelled:

- **Arrivals** come at their recorded times, with their recorded attributes (queue,
  skills, language, priority, preferred agent).
- **Agents** log in, log out, take breaks and change skills at their recorded times (the
  ones logged in when the replay starts are logged in then, away if they were).
  They accept every offer after their own recorded mean delay between an offer and its
  acceptance (the mean over all agents for one who accepted nothing). Rejections and
  missed offers are not replayed: the replayed agents never decline.
- **Handle time** of a contact answered in the recording is its recorded one (end, or
  transfer, minus assignment). A contact the recording never answered (it hung up) but
  the replay does gets a handle time drawn from the queue's recorded handle times.
- **Patience.** A contact that hung up while waiting has its exact patience (hang-up
  minus arrival): it hangs up then, unless answered sooner. A contact that was answered
  after waiting ``w`` seconds has a patience we only know exceeds ``w`` (censored).
  The default model (``kaplan-meier``) estimates the queue's patience distribution
  with the Kaplan-Meier estimator over every leg of the recording (hang-ups are
  events; answered and still-waiting contacts are censored at their wait), and draws
  each answered contact's patience from it conditioned on exceeding ``w``. Beyond the
  longest recorded hang-up the estimator knows nothing: that remaining share of
  customers never hangs up. ``censored`` is the simpler model where every answered
  contact is infinitely patient (optimistic when a policy makes waits longer).
  A contact that left while waiting for another reason (ended, transferred) leaves
  after the same wait in the replay, if still waiting.
- **Transfers** happen after the leg's recorded handle time, to the recorded queue or
  agent; each queue the contact then waits in is a new leg.
- **Escalations and notifications** (with ``downstream`` policies): the real
  escalation and notifier cores get the replay's contact events and the replayed
  core's decisions in time order, their timers ticked; :mod:`services.router.downstream`
  says what they are fed and what is assumed (nobody acknowledges; the gateway takes
  every notice). A contact the policy refuses (its queue is gone) is still seen by
  both services, and hangs up after its patience.

Draws use one random generator per contact and leg, seeded by the seed and the contact
id, so the current and the proposed policy meet the very same customers (paired
comparison) and a replay is deterministic. Position updates are switched off in a
replay without ``downstream`` (they change no routing decision and cost time); with it
they run at the policy's ``position_refresh_s``, as the notifier hears them.
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
import itertools
import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import partial

from services.router.domain import RoutingCore, RoutingError, RoutingPolicy
from services.router.domain import model as m
from services.router.downstream import Downstream, DownstreamPolicies
from services.router.recording import (
    AgentEvent,
    Anchor,
    Aside,
    FigureCounter,
    Figures,
    Leg,
    LegEnd,
    RecordedContact,
    Recording,
)

__all__ = [
    "AgentChange",
    "PatienceModel",
    "Survival",
    "adjust_agents",
    "replay",
]

#: After the last record the replay runs on at most this long (offers, wrap-ups).
RUN_ON_S = 3600.0
#: A queue with fewer recorded hang-ups borrows the patience of every queue together.
MIN_ABANDONS_PER_QUEUE = 10
#: Position updates are off in a replay: the next refresh is this far away.
_NEVER = 1e15


class PatienceModel(StrEnum):
    KAPLAN_MEIER = "kaplan-meier"
    CENSORED = "censored"


# ---------------------------------------------------------------------------- patience


class Survival:
    """Kaplan-Meier estimate of a patience distribution from exact and censored times."""

    def __init__(self, events: Sequence[float], censored: Sequence[float]) -> None:
        points = sorted([(t, 1) for t in events] + [(t, 0) for t in censored])
        at_risk = len(points)
        survival = 1.0
        self.times: list[float] = []
        self.survival: list[float] = []  # non-increasing
        i = 0
        while i < len(points):
            t = points[i][0]
            died = left = 0
            while i < len(points) and points[i][0] == t:
                died += points[i][1]
                left += 1
                i += 1
            if died:
                survival *= 1.0 - died / at_risk
                self.times.append(t)
                self.survival.append(survival)
            at_risk -= left
        self._negated = [-s for s in self.survival]  # non-decreasing, for bisect
        self.events = len(events)

    def at(self, t: float) -> float:
        """P(patience > t)."""
        i = bisect.bisect_right(self.times, t)
        return 1.0 if i == 0 else self.survival[i - 1]

    def draw_above(self, waited: float, u: float) -> float:
        """A patience drawn conditioned on exceeding ``waited``, by inversion with
        ``u`` in [0, 1): ``math.inf`` for the share beyond the last recorded hang-up."""
        above = self.at(waited)
        if above <= 0.0:
            return math.inf
        target = u * above
        # the first event time whose survival is <= target (survival never increases)
        i = bisect.bisect_left(self._negated, -target)
        return self.times[i] if i < len(self.times) else math.inf


def _patience_tables(recording: Recording) -> tuple[dict[str, Survival], Survival]:
    events: dict[str, list[float]] = defaultdict(list)
    censored: dict[str, list[float]] = defaultdict(list)
    for contact in recording.contacts:
        for leg in contact.legs:
            if leg.end == LegEnd.ABANDONED and leg.ended_at is not None:
                events[leg.queue].append(leg.ended_at - leg.enqueued_at)
            elif leg.answered_at is not None:
                censored[leg.queue].append(leg.answered_at - leg.enqueued_at)
            elif leg.ended_at is not None:  # ended or transferred while waiting
                censored[leg.queue].append(leg.ended_at - leg.enqueued_at)
            else:  # still waiting when the recording stops
                censored[leg.queue].append(recording.horizon - leg.enqueued_at)
    pooled = Survival(
        [t for ts in events.values() for t in ts], [t for ts in censored.values() for t in ts]
    )
    tables = {
        queue: Survival(events.get(queue, []), censored.get(queue, []))
        for queue in set(events) | set(censored)
        if len(events.get(queue, [])) >= MIN_ABANDONS_PER_QUEUE
    }
    return tables, pooled


# ---------------------------------------------------------------------------- agents


@dataclass(frozen=True, slots=True)
class AgentChange:
    """``--agents GROUP:+N``: clone (or with -N remove) N agents of a team or skill."""

    group: str
    delta: int

    @classmethod
    def parse(cls, text: str) -> AgentChange:
        group, sep, number = text.rpartition(":")
        if not sep or not group or not number or number[0] not in "+-":
            raise ValueError(f"--agents: expected GROUP:+N or GROUP:-N, got {text!r}")
        try:
            delta = int(number)
        except ValueError:
            raise ValueError(f"--agents: {number!r} is not a whole number") from None
        if delta == 0 or abs(delta) > 10_000:
            raise ValueError(f"--agents: the change must be 1..10000 agents, got {delta}")
        return cls(group, delta)


def _agents_of(recording: Recording, group: str) -> list[str]:
    logins: dict[str, m.AgentLoggedIn] = {login.agent_id: login for login, _ in recording.roster}
    for e in recording.agent_events:
        if isinstance(e.event, m.AgentLoggedIn):
            logins.setdefault(e.event.agent_id, e.event)
    team = sorted(a for a, login in logins.items() if login.team == group)
    if team:
        return team
    return sorted(a for a, login in logins.items() if any(s == group for s, _ in login.skills))


def adjust_agents(recording: Recording, changes: Sequence[AgentChange]) -> Recording:
    """The recording with agents cloned or removed, group by group.

    A group is a team (the ``team`` of the agents' logins) or, if no agent has that
    team, a skill. ``+N`` clones N of the group's agents (by agent id, cycling), each
    clone living its original's day (logins, breaks, skills, accept delay) as
    ``<id>~<n>``; ``-N`` removes the N last of the group by agent id, with all they did.
    """
    roster = list(recording.roster)
    events = list(recording.agent_events)
    delays = dict(recording.accept_delay_s)
    for change in changes:
        members = _agents_of(
            dataclasses.replace(recording, roster=roster, agent_events=events), change.group
        )
        if not members:
            raise ValueError(
                f"--agents: no agent of team or skill {change.group!r} in the recording"
            )
        if change.delta < 0:
            if -change.delta > len(members):
                raise ValueError(
                    f"--agents: {change.group!r} has {len(members)} agents, "
                    f"cannot remove {-change.delta}"
                )
            gone = set(members[change.delta :])
            roster = [(login, away) for login, away in roster if login.agent_id not in gone]
            events = [e for e in events if e.event.agent_id not in gone]
            continue
        for k in range(change.delta):
            source = members[k % len(members)]
            clone = f"{source}~{k // len(members) + 1}"
            while any(login.agent_id == clone for login, _ in roster) or clone in delays:
                clone += "~"
            roster.extend(
                (dataclasses.replace(login, agent_id=clone), away)
                for login, away in recording.roster
                if login.agent_id == source
            )
            events.extend(
                AgentEvent(e.at, dataclasses.replace(e.event, agent_id=clone))
                for e in recording.agent_events
                if e.event.agent_id == source
            )
            if source in delays:
                delays[clone] = delays[source]
        events.sort(key=lambda e: e.at)
    return dataclasses.replace(recording, roster=roster, agent_events=events, accept_delay_s=delays)


# ---------------------------------------------------------------------------- the replay


@dataclass(slots=True)
class _Live:
    contact: RecordedContact
    leg: int = 0
    assigned: bool = False
    gone: bool = False


class _Replay:
    def __init__(
        self,
        recording: Recording,
        policy: RoutingPolicy,
        seed: int,
        patience: PatienceModel,
        downstream: DownstreamPolicies | None,
    ) -> None:
        self.recording = recording
        self.policy = policy
        self.seed = seed
        self.patience = patience
        self.core = RoutingCore(
            policy if downstream else dataclasses.replace(policy, position_refresh_s=_NEVER)
        )
        self.counter = FigureCounter(
            policy, recording.arrival_queues(), recording.start, recording.end
        )
        self.downstream = (
            None if downstream is None else Downstream(downstream, recording.domain, self.counter)
        )
        self.refused: Counter[str] = Counter()
        #: The open offer of each contact: an agent answers only an offer still open (one
        #: that timed out, was withdrawn or whose customer hung up is not answered late).
        self.open_offer: dict[str, str] = {}
        self.agenda: list[tuple[float, int, Callable[[], object]]] = []
        self.seq = itertools.count()
        self.now = recording.replay_from
        self.live: dict[str, _Live] = {}
        self.tables, self.pooled = _patience_tables(recording)
        handles: dict[str, list[float]] = defaultdict(list)
        for contact in recording.contacts:
            for leg in contact.legs:
                if leg.handle_s is not None:
                    handles[leg.queue].append(leg.handle_s)
        self.handles = {q: sorted(h) for q, h in handles.items()}
        self.all_handles = sorted(h for hs in handles.values() for h in hs)

    # -- the loop

    def run(self) -> Figures:
        rec = self.recording
        for login, away in rec.roster:
            self._at(rec.replay_from, partial(self._agent, login))
            if away is not None:
                self._at(
                    rec.replay_from,
                    partial(
                        self._agent, m.AgentStateChanged(login.agent_id, m.AgentState.AWAY, away)
                    ),
                )
        for e in rec.agent_events:
            self._at(e.at, partial(self._agent, e.event))
        for contact in rec.contacts:
            self._at(contact.arrived_at, partial(self._arrive, contact))
        stop = rec.horizon + RUN_ON_S
        core = self.core
        agenda = self.agenda
        downstream = self.downstream
        while True:
            deadline = core.next_deadline()
            if downstream is not None:
                due = downstream.next_deadline()
                if (
                    due is not None
                    and (deadline is None or due < deadline)
                    and (not agenda or due < agenda[0][0])
                ):
                    if due > stop:
                        break
                    self.now = max(self.now, due)
                    downstream.tick(self.now)
                    continue
            if agenda and (deadline is None or agenda[0][0] < deadline):
                at, _, act = heapq.heappop(agenda)
                if at > stop:
                    break
                self.now = max(self.now, at)
                act()
            elif deadline is not None and deadline <= stop:
                self.now = max(self.now, deadline)
                self._react(core.tick(self.now))
            else:
                break
        if downstream is None:
            return self.counter.finish(self.refused)
        return self.counter.finish(
            self.refused, outcomes_missing="", outcomes_refused=downstream.refused
        )

    def _at(self, when: float, act: Callable[[], object]) -> None:
        heapq.heappush(self.agenda, (when, next(self.seq), act))

    def _feed(self, event: m.Input) -> bool:
        try:
            decisions = self.core.apply(event, self.now)
        except RoutingError as exc:
            self.refused[f"{type(event).__name__}: {exc.reason}"] += 1
            return False
        self._react(decisions)
        return True

    def _react(self, decisions: list[m.Decision]) -> None:
        downstream = self.downstream
        for d in decisions:
            self.counter.decision(self.now, d)
            if downstream is not None:
                downstream.decision(self.now, d)
            if isinstance(d, m.OfferMade):
                delay = self.recording.accept_delay_s.get(
                    d.agent_id, self.recording.default_accept_delay_s
                )
                self.open_offer[d.contact_id] = d.offer_id
                accept = m.OfferAccepted(d.agent_id, d.contact_id, d.offer_id)
                self._at(self.now + delay, partial(self._answer, accept))
            elif isinstance(d, m.OfferTimedOut | m.ContactRequeued):
                self.open_offer.pop(d.contact_id, None)
            elif isinstance(d, m.ContactAssigned):
                self.open_offer.pop(d.contact_id, None)
                live = self.live.get(d.contact_id)
                if live is not None:
                    live.assigned = True
                    leg = live.contact.legs[live.leg]
                    self._at(
                        self.now + self._handle(live, leg), partial(self._finish, live, live.leg)
                    )
                    self._asides(live, Anchor.ANSWERED)
            elif isinstance(d, m.ContactClosed):
                self.open_offer.pop(d.contact_id, None)
                live = self.live.pop(d.contact_id, None)
                if live is not None:
                    live.gone = True

    def _answer(self, accept: m.OfferAccepted) -> None:
        if self.open_offer.get(accept.contact_id) == accept.offer_id:
            self._feed(accept)

    def _agent(
        self,
        event: m.AgentLoggedIn | m.AgentLoggedOut | m.AgentStateChanged | m.AgentSkillsChanged,
    ) -> None:
        if isinstance(event, m.AgentLoggedIn | m.AgentSkillsChanged):
            self.counter.agent(event)
        self._feed(event)

    # -- customers

    def _arrive(self, contact: RecordedContact) -> None:
        live = _Live(contact)
        self.live[contact.contact_id] = live
        if self.downstream is not None:  # they read contact.events whatever the router does
            self.downstream.arrived(
                self.now, contact.contact_id, contact.arrival.queue, contact.arrival_said
            )
        if not self._feed(contact.arrival):
            self.live.pop(contact.contact_id, None)
            self.counter.refused_arrival(contact.contact_id)
            if self.downstream is not None:
                self._strand(live)
            return
        if contact.contact_id in self.live:  # not closed at once
            self._start_leg(live)

    def _strand(self, live: _Live) -> None:
        """A contact the router refused: nobody takes it, the customer hangs up after the
        recorded wait or the drawn patience (escalation and the notifier see it)."""
        leg = live.contact.legs[0]
        left = leg.left_waiting_after_s
        patience = left if left is not None else self._patience(live, leg)
        if math.isfinite(patience) and self.downstream is not None:
            self._at(
                self.now + patience,
                partial(self._downstream_abandoned, live.contact.contact_id),
            )

    def _downstream_abandoned(self, contact_id: str) -> None:
        if self.downstream is not None:
            self.downstream.abandoned(self.now, contact_id)

    def _start_leg(self, live: _Live) -> None:
        leg = live.contact.legs[live.leg]
        self._asides(live, Anchor.ENQUEUED)
        left = leg.left_waiting_after_s
        if left is not None:  # left while waiting in the recording: the same in the replay
            self._at(self.now + left, partial(self._leave, live, live.leg, leg.end))
            return
        patience = self._patience(live, leg)
        if math.isfinite(patience):
            self._at(self.now + patience, partial(self._leave, live, live.leg, LegEnd.ABANDONED))

    def _patience(self, live: _Live, leg: Leg) -> float:
        """A customer the recording saw answered (or still waiting at its end)."""
        if self.patience == PatienceModel.CENSORED and leg.answered_at is not None:
            return math.inf
        waited = (
            leg.waited_s
            if leg.waited_s is not None
            else max(0.0, self.recording.horizon - leg.enqueued_at)
        )
        table = self.tables.get(leg.queue, self.pooled)
        return table.draw_above(waited, self._draw(live, "patience"))

    def _leave(self, live: _Live, leg_index: int, how: LegEnd) -> None:
        """The customer leaves while still waiting (or ringing), as the recording says."""
        if live.gone or live.leg != leg_index or live.assigned:
            return
        leg = live.contact.legs[leg_index]
        contact_id = live.contact.contact_id
        if how == LegEnd.TRANSFERRED:
            self._transfer(live, leg)
        elif how == LegEnd.ENDED:
            self._end(live)
        else:
            if self.downstream is not None:
                self.downstream.abandoned(self.now, contact_id)
            self._feed(m.ContactAbandoned(contact_id))

    def _finish(self, live: _Live, leg_index: int) -> None:
        if live.gone or live.leg != leg_index:
            return
        leg = live.contact.legs[leg_index]
        if leg.end == LegEnd.TRANSFERRED:
            self._transfer(live, leg)
        else:
            self._end(live)

    def _end(self, live: _Live) -> None:
        contact = live.contact
        if self.downstream is not None:
            self.downstream.ended(self.now, contact.contact_id, contact.ending)
            self._asides(live, Anchor.ENDED)
        self._feed(m.ContactEnded(contact.contact_id))

    def _transfer(self, live: _Live, leg: Leg) -> None:
        if self.downstream is not None:
            self.downstream.transferred(self.now, live.contact.contact_id, leg.to_queue)
        live.leg += 1
        live.assigned = False
        if not self._feed(
            m.ContactTransferred(live.contact.contact_id, leg.to_queue, leg.to_agent)
        ):
            live.leg -= 1
            self._end(live)
            return
        if live.leg < len(live.contact.legs) and not live.assigned:
            self._start_leg(live)

    # -- what only escalation and the notifier hear

    def _asides(self, live: _Live, anchor: Anchor) -> None:
        """Schedule the recorded events that followed this moment of the contact (on its
        current leg, or after its end), as long after it as recorded."""
        if self.downstream is None or not live.contact.asides:
            return
        for aside in live.contact.asides:
            if aside.anchor == anchor and (anchor == Anchor.ENDED or aside.leg == live.leg):
                self._at(self.now + aside.after_s, partial(self._aside, live, aside))

    def _aside(self, live: _Live, aside: Aside) -> None:
        """Heard if the contact is still where the recording had it (the same leg, still
        waiting or still with its agent); after its end, always."""
        if aside.anchor != Anchor.ENDED:
            if live.gone or live.leg != aside.leg:
                return
            if live.assigned != (aside.anchor == Anchor.ANSWERED):
                return
        if self.downstream is not None:
            self.downstream.heard(self.now, aside.said)

    def _handle(self, live: _Live, leg: Leg) -> float:
        known = leg.handle_s
        if known is not None:
            return known
        pool = self.handles.get(leg.queue) or self.all_handles
        if not pool:
            return self.policy.default_handle_s
        return pool[int(self._draw(live, "handle") * len(pool))]

    def _draw(self, live: _Live, purpose: str) -> float:
        """A number in [0, 1) that depends only on the seed, the contact, its leg and the
        purpose: both policies' replays draw the same for the same customer."""
        key = f"{self.seed}/{live.contact.contact_id}/{live.leg}/{purpose}"
        return random.Random(key).random()  # noqa: S311


def replay(
    recording: Recording,
    policy: RoutingPolicy,
    *,
    seed: int = 1,
    patience: PatienceModel = PatienceModel.KAPLAN_MEIER,
    downstream: DownstreamPolicies | None = None,
) -> Figures:
    """Per-queue figures of ``recording`` replayed through a fresh core under ``policy``;
    with ``downstream``, the escalations raised and notifications sent too (fresh
    escalation and notifier cores under those policies, fed alongside)."""
    return _Replay(recording, policy, seed, patience, downstream).run()
