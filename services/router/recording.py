"""A window of one domain's recorded traffic, as the what-if replay needs it. Pure.

:func:`build_recording` turns the records of ``contact.events``, ``agent.events`` and
``routing.decisions`` (read by ``services.router.adapters.recording_reader``, or made
in memory by :mod:`services.router.synthetic`) into:

- every contact that arrived from ``start - warmup`` on, with its *legs* (one per queue
  it waited in: the arrival, then each transfer), each with what the recording shows of
  it: when it was answered, how long it was handled, or after how long it left while
  waiting (hung up, ended, transferred);
- the agents logged in when the replay starts (the *roster*, from every agent event
  before it), and their logins, logouts, breaks and skill changes after that;
- each agent's mean delay between an offer and its acceptance;
- the router's own decisions on the window, from which :func:`figures` computes the
  *recorded* per-queue figures, by the same rules as the replay's;
- what each contact event tells the escalation service and the notifier (each read by
  that service's own mapping, once): the arrival, the end (its disposition), and the
  events only they act on (holds, pauses, resumes, surveys, requests for a manager,
  reopened tickets), each *anchored* to the moment of the contact it follows (its
  leg's enqueue or answer, or its end), so the replay can move it with that moment;
- when read (``outcomes=True``), the escalations and notifications the services
  recorded, from ``escalations`` and ``notifications``: the recorded column of
  escalations raised and notifications sent.

Times: an input event's time is its record timestamp (when it was produced, which is
what the router saw, within its lag); a decision's is the router's clock in its envelope
(``occurred_at``), falling back to the record timestamp. Contacts are *counted* when
they arrived within ``[start, end]``; the ones before (the warm-up) and after (the
tail) are replayed too, as load, but not counted.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from google.protobuf.duration_pb2 import Duration
from switchboard.v1.envelope_pb2 import Envelope

from services.common import contract
from services.common.errors import RejectedEvent
from services.escalation.adapters.mapping import envelope_to_input as escalation_input
from services.escalation.domain import model as esc
from services.notifier.adapters.mapping import KIND_NUMBERS, OUTCOMES
from services.notifier.adapters.mapping import envelope_to_input as notifier_input
from services.notifier.domain import core as note
from services.router.adapters.mapping import envelope_to_input, ignored_payloads
from services.router.domain import RoutingPolicy
from services.router.domain import model as m

__all__ = [
    "MAX_CONTACTS",
    "MAX_EVENTS",
    "AgentEvent",
    "Anchor",
    "Aside",
    "FigureCounter",
    "Figures",
    "Leg",
    "LegEnd",
    "QueueFigures",
    "RecordedContact",
    "RecordedEscalation",
    "RecordedEvent",
    "RecordedNotification",
    "Recording",
    "Said",
    "Stream",
    "build_recording",
    "envelope_to_decision",
    "figures",
]

#: Most records one recording may hold (about 1 GB of memory); more is an error.
MAX_EVENTS = 5_000_000
#: Most contacts one recording may hold.
MAX_CONTACTS = 1_000_000

_PRESENT = frozenset(
    {m.AgentState.AVAILABLE, m.AgentState.BUSY, m.AgentState.RESERVED, m.AgentState.WRAP_UP}
)
_WORKING = frozenset({m.AgentState.BUSY, m.AgentState.RESERVED, m.AgentState.WRAP_UP})


class Stream(StrEnum):
    """Which topic a record came from (unprefixed name)."""

    CONTACT = "contact.events"
    AGENT = "agent.events"
    DECISION = "routing.decisions"
    ESCALATION = "escalations"
    NOTIFICATION = "notifications"


#: What the services decided, not what they were told: read for the recorded column only.
_OUTCOME_STREAMS = frozenset({Stream.ESCALATION, Stream.NOTIFICATION})
_KINDS = {number: kind for kind, number in KIND_NUMBERS.items()}
_OUTCOMES = {number: outcome for outcome, number in OUTCOMES.items()}


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """One record of the window: its topic, its time (epoch seconds), its envelope."""

    stream: Stream
    at: float
    envelope: Envelope


class LegEnd(StrEnum):
    """How a leg (a stay in one queue) ended in the recording."""

    ENDED = "ended"  # handled, then ended (or hung up while talking)
    TRANSFERRED = "transferred"  # moved to another queue or agent
    ABANDONED = "abandoned"  # hung up while waiting
    OPEN = "open"  # still going when the recording stops


@dataclass(slots=True)
class Leg:
    queue: str
    enqueued_at: float
    answered_at: float | None = None
    end: LegEnd = LegEnd.OPEN
    ended_at: float | None = None
    #: A transfer's target (``to_queue`` empty: the same queue).
    to_queue: str = ""
    to_agent: str = ""

    @property
    def handle_s(self) -> float | None:
        """Recorded handle time: end (or transfer) minus assignment; None if unknown."""
        if self.answered_at is None or self.ended_at is None or self.end == LegEnd.OPEN:
            return None
        return max(0.0, self.ended_at - self.answered_at)

    @property
    def left_waiting_after_s(self) -> float | None:
        """Seconds after its enqueue that the contact left while still waiting."""
        if self.answered_at is not None or self.ended_at is None:
            return None
        return max(0.0, self.ended_at - self.enqueued_at)

    @property
    def waited_s(self) -> float | None:
        return None if self.answered_at is None else max(0.0, self.answered_at - self.enqueued_at)


@dataclass(frozen=True, slots=True)
class Said:
    """What one contact event tells escalation and the notifier, each as its service's
    mapping reads the record (None: that service ignores the event, or refuses it), and
    the event's id (the cause the notifier derives its notification ids from)."""

    cause: str
    escalation: esc.Input | None
    notifier: note.Input | None


class Anchor(StrEnum):
    """The moment of a contact an :class:`Aside` follows."""

    ENQUEUED = "enqueued"  # the leg's start: it came while the contact waited
    ANSWERED = "answered"  # the leg's answer: it came while an agent had the contact
    ENDED = "ended"  # the contact's end (a survey, a reopened ticket)


@dataclass(frozen=True, slots=True)
class Aside:
    """A contact event only escalation and the notifier act on (a hold, a pause, a
    resume, a survey, a request for a manager, a reopened ticket), ``after_s`` seconds
    after its ``anchor`` on leg ``leg`` in the recording."""

    anchor: Anchor
    leg: int
    after_s: float
    said: Said


@dataclass(slots=True)
class RecordedContact:
    arrival: m.ContactArrived
    arrived_at: float
    counted: bool
    legs: list[Leg] = field(default_factory=list)
    #: The arrival as escalation and the notifier read it.
    arrival_said: Said | None = None
    #: The recorded end (its disposition), if the contact ended while recorded.
    ending: Said | None = None
    asides: list[Aside] = field(default_factory=list)

    @property
    def contact_id(self) -> str:
        return self.arrival.contact_id


@dataclass(frozen=True, slots=True)
class AgentEvent:
    at: float
    event: m.AgentLoggedIn | m.AgentLoggedOut | m.AgentStateChanged | m.AgentSkillsChanged


@dataclass(frozen=True, slots=True)
class RecordedEscalation:
    """An escalation the escalation service recorded (its latest record on the topic)."""

    escalation_id: str
    contact_id: str
    queue: str
    reason: str  # EscalationReason slug
    raised_at: float


@dataclass(frozen=True, slots=True)
class RecordedNotification:
    """A notification's final outcome as the notifier recorded it."""

    notification_id: str
    contact_id: str
    kind: str
    outcome: str  # delivered | suppressed | dead_lettered | rejected
    created_at: float


@dataclass
class Recording:
    domain: str
    start: float
    end: float
    #: When the replay starts: ``start`` less the warm-up (never before the first record).
    replay_from: float
    #: The last record's time.
    horizon: float
    contacts: list[RecordedContact]
    #: Logged in at ``replay_from``: their login, and whether they were away (reason).
    roster: list[tuple[m.AgentLoggedIn, str | None]]
    agent_events: list[AgentEvent]
    #: Mean seconds from an offer to its acceptance, per agent that accepted any.
    accept_delay_s: dict[str, float]
    default_accept_delay_s: float
    #: The router's recorded decisions (time, decision) on the window and its margins.
    decisions: list[tuple[float, m.Decision]]
    #: Records not used, by reason (undecodable, another domain, refused by the mapping).
    skipped: Counter[str] = field(default_factory=Counter)
    #: The escalations and notifications the services recorded, by id, when read
    #: (None: not read, :attr:`outcomes_missing` says why).
    escalations: dict[str, RecordedEscalation] | None = None
    notifications: dict[str, RecordedNotification] | None = None
    outcomes_missing: str = "the escalations and notifications topics were not read"

    def counted_ids(self) -> set[str]:
        return {c.contact_id for c in self.contacts if c.counted}

    def arrival_queues(self) -> dict[str, str]:
        return {c.contact_id: c.arrival.queue for c in self.contacts if c.counted}

    def agent_inputs(self) -> list[tuple[float, m.AgentLoggedIn | m.AgentSkillsChanged]]:
        """Every login and skill change (with the roster at ``replay_from``), in order."""
        out: list[tuple[float, m.AgentLoggedIn | m.AgentSkillsChanged]] = [
            (self.replay_from, login) for login, _ in self.roster
        ]
        out.extend(
            (e.at, e.event)
            for e in self.agent_events
            if isinstance(e.event, m.AgentLoggedIn | m.AgentSkillsChanged)
        )
        return out


# ---------------------------------------------------------------------------- building


def build_recording(
    events: Iterable[RecordedEvent],
    *,
    domain: str,
    start: float,
    end: float,
    warmup_s: float = 1800.0,
    outcomes: bool = False,
) -> Recording:
    """The recording of ``domain`` for contacts arriving in ``[start, end]``.

    ``events`` may hold records of other domains (a partition is shared) and from before
    the warm-up (agent events are read further back, for the roster); both are sorted
    out here. With ``outcomes``, the ``escalations`` and ``notifications`` records among
    them were read (none is a count of zero). Raises ``ValueError`` on a window that is
    empty or inverted, or on more than :data:`MAX_EVENTS` records.
    """
    if not end > start:
        raise ValueError(f"the window must end after it starts ({start} .. {end})")
    ordered: list[RecordedEvent] = []
    decided: list[RecordedEvent] = []
    skipped: Counter[str] = Counter()
    for n, event in enumerate(events):
        if n >= MAX_EVENTS:
            raise ValueError(f"more than {MAX_EVENTS} records in the window: narrow it")
        if event.envelope.domain != domain:
            skipped["another domain"] += 1
            continue
        (decided if event.stream in _OUTCOME_STREAMS else ordered).append(event)
    ordered.sort(key=lambda e: e.at)  # stable: a partition's order is kept on ties
    if not ordered:
        raise ValueError(f"no records of domain {domain!r} in the window")
    first_contact = min((e.at for e in ordered if e.stream != Stream.AGENT), default=ordered[0].at)
    replay_from = max(start - warmup_s, first_contact)
    builder = _Builder(domain, start, end, replay_from, skipped)
    for event in ordered:
        builder.add(event)
    recording = builder.finish(ordered[-1].at)
    if outcomes:
        recording.escalations, recording.notifications = {}, {}
        recording.outcomes_missing = ""
        for event in decided:
            _outcome(recording, event)
    return recording


def _outcome(recording: Recording, event: RecordedEvent) -> None:
    """One ``escalations`` or ``notifications`` record into the recording (the latest
    record of an escalation, or a notification's outcome, once per id)."""
    envelope = event.envelope
    kind = envelope.WhichOneof("payload")
    if kind == "escalation_record" and recording.escalations is not None:
        e = envelope.escalation_record.escalation
        try:
            reason = esc.EscalationReason(e.reason).slug
        except ValueError:
            recording.skipped[f"escalations: unknown reason {e.reason}"] += 1
            return
        raised = e.raised_at
        recording.escalations[e.escalation_id] = RecordedEscalation(
            e.escalation_id, e.contact_id, e.queue, reason, raised.seconds + raised.nanos / 1e9
        )
    elif kind == "notification_record" and recording.notifications is not None:
        record = envelope.notification_record
        n = record.notification
        found, outcome = _KINDS.get(n.kind), _OUTCOMES.get(record.outcome)
        if found is None or outcome is None:
            recording.skipped[f"notifications: unknown kind {n.kind} or outcome"] += 1
            return
        created = n.created_at
        recording.notifications[n.notification_id] = RecordedNotification(
            n.notification_id, n.contact_id, found, outcome, created.seconds + created.nanos / 1e9
        )
    else:
        recording.skipped[f"{event.stream.value}: {kind or 'no payload'}"] += 1


def _said(envelope: Envelope, skipped: Counter[str]) -> Said | None:
    """What the record tells escalation and the notifier, each through its service's own
    mapping; what a service would refuse (dead-letter) is counted in ``skipped``."""
    kind = envelope.WhichOneof("payload") or ""
    escalation: esc.Input | None = None
    notifier: note.Input | None = None
    try:
        escalation = escalation_input(envelope)
    except (RejectedEvent, ValueError) as exc:
        skipped[f"escalation refuses {kind}: {str(exc)[:80]}"] += 1
    try:
        notifier = notifier_input(envelope)
    except (RejectedEvent, ValueError) as exc:
        skipped[f"notifier refuses {kind}: {str(exc)[:80]}"] += 1
    if escalation is None and notifier is None:
        return None
    return Said(envelope.event_id, escalation, notifier)


class _Builder:
    def __init__(
        self, domain: str, start: float, end: float, replay_from: float, skipped: Counter[str]
    ) -> None:
        self.domain, self.start, self.end, self.replay_from = domain, start, end, replay_from
        self.skipped = skipped
        self.contacts: dict[str, RecordedContact] = {}
        self.order: list[RecordedContact] = []
        self.roster: dict[str, tuple[m.AgentLoggedIn, str | None]] = {}
        self.agent_events: list[AgentEvent] = []
        self.offers: dict[str, float] = {}  # offer id -> offered at
        self.delays: dict[str, list[float]] = defaultdict(list)
        self.accepted_at: dict[str, float] = {}  # contact -> last accept (no decisions)
        self.decisions: list[tuple[float, m.Decision]] = []

    def add(self, event: RecordedEvent) -> None:
        if event.stream == Stream.DECISION:
            self._decision(event)
            return
        kind = event.envelope.WhichOneof("payload") or ""
        if kind in ignored_payloads:
            self._aside(event)
            return
        if kind == "offer_accepted":
            accept = event.envelope.offer_accepted
            offered = self.offers.pop(accept.offer_id, None)
            if offered is not None and event.at >= offered:
                self.delays[accept.agent_id].append(event.at - offered)
            self.accepted_at[accept.contact_id] = event.at
            return
        try:
            item = envelope_to_input(event.envelope)
        except (RejectedEvent, ValueError) as exc:
            self.skipped[f"refused: {str(exc)[:80]}"] += 1
            return
        if item is None or isinstance(item, m.OfferRejected | m.CustomerErased):
            return
        if isinstance(
            item, m.AgentLoggedIn | m.AgentLoggedOut | m.AgentStateChanged | m.AgentSkillsChanged
        ):
            self._agent(event.at, item)
        elif not isinstance(item, m.OfferAccepted):  # accepts are read above
            self._contact(event, item)

    # -- agents

    def _agent(
        self,
        at: float,
        item: m.AgentLoggedIn | m.AgentLoggedOut | m.AgentStateChanged | m.AgentSkillsChanged,
    ) -> None:
        if at >= self.replay_from:
            self.agent_events.append(AgentEvent(at, item))
            return
        # before the replay: fold into the roster
        agent = item.agent_id
        match item:
            case m.AgentLoggedIn():
                if agent not in self.roster:
                    self.roster[agent] = (item, None)
            case m.AgentLoggedOut():
                self.roster.pop(agent, None)
            case m.AgentStateChanged() if agent in self.roster:
                login, _ = self.roster[agent]
                if item.state == m.AgentState.LOGGED_OUT:
                    del self.roster[agent]
                elif item.state == m.AgentState.AWAY:
                    self.roster[agent] = (login, item.reason)
                elif item.state == m.AgentState.AVAILABLE:
                    self.roster[agent] = (login, None)
            case m.AgentSkillsChanged() if agent in self.roster:
                login, away = self.roster[agent]
                changed = m.AgentLoggedIn(
                    agent, login.team, item.skills, item.languages, login.capacity
                )
                self.roster[agent] = (changed, away)
            case _:
                pass

    # -- contacts

    def _contact(
        self,
        event: RecordedEvent,
        item: m.ContactArrived | m.ContactAbandoned | m.ContactEnded | m.ContactTransferred,
    ) -> None:
        at = event.at
        if isinstance(item, m.ContactArrived):
            if at < self.replay_from or item.contact_id in self.contacts:
                return
            if len(self.order) >= MAX_CONTACTS:
                raise ValueError(f"more than {MAX_CONTACTS} contacts in the window: narrow it")
            contact = RecordedContact(item, at, self.start <= at <= self.end)
            contact.legs.append(Leg(item.queue, at))
            contact.arrival_said = _said(event.envelope, self.skipped)
            self.contacts[item.contact_id] = contact
            self.order.append(contact)
            return
        found = self.contacts.get(item.contact_id)
        if found is None:
            return  # arrived before the replay starts
        leg = found.legs[-1]
        if leg.end != LegEnd.OPEN:
            return  # already over (a repeated event)
        if leg.answered_at is None and item.contact_id in self.accepted_at:
            leg.answered_at = self.accepted_at[item.contact_id]  # no decisions read
        leg.ended_at = at
        match item:
            case m.ContactAbandoned():
                leg.end = LegEnd.ABANDONED if leg.answered_at is None else LegEnd.ENDED
            case m.ContactEnded():
                leg.end = LegEnd.ENDED
                found.ending = _said(event.envelope, self.skipped)
            case m.ContactTransferred():
                leg.end = LegEnd.TRANSFERRED
                leg.to_queue, leg.to_agent = item.to_queue, item.to_agent_id
                found.legs.append(Leg(item.to_queue or leg.queue, at))

    def _aside(self, event: RecordedEvent) -> None:
        """An event only escalation and the notifier act on, anchored to the moment of
        its contact it follows: the leg's enqueue or answer, or the contact's end."""
        envelope = event.envelope
        payload = getattr(envelope, envelope.WhichOneof("payload") or "")
        found = self.contacts.get(getattr(payload, "contact_id", ""))
        if found is None:
            return  # arrived before the replay starts (or names no contact)
        said = _said(envelope, self.skipped)
        if said is None:
            return
        index = len(found.legs) - 1
        leg = found.legs[index]
        if leg.end != LegEnd.OPEN and leg.ended_at is not None:
            anchor, since = Anchor.ENDED, leg.ended_at
        elif leg.answered_at is not None:
            anchor, since = Anchor.ANSWERED, leg.answered_at
        else:
            anchor, since = Anchor.ENQUEUED, leg.enqueued_at
        found.asides.append(Aside(anchor, index, max(0.0, event.at - since), said))

    # -- decisions

    def _decision(self, event: RecordedEvent) -> None:
        envelope = event.envelope
        at = _occurred_at(envelope) or event.at
        decision = envelope_to_decision(envelope)
        if decision is None:
            return
        if isinstance(decision, m.OfferMade):
            self.offers[decision.offer_id] = at
        elif isinstance(decision, m.ContactAssigned):
            found = self.contacts.get(decision.contact_id)
            if found is not None and found.legs[-1].answered_at is None:
                found.legs[-1].answered_at = at
        if at >= self.replay_from:
            self.decisions.append((at, decision))

    def finish(self, horizon: float) -> Recording:
        means = {agent: sum(d) / len(d) for agent, d in self.delays.items() if d}
        every = [x for d in self.delays.values() for x in d]
        return Recording(
            domain=self.domain,
            start=self.start,
            end=self.end,
            replay_from=self.replay_from,
            horizon=max(horizon, self.end),
            contacts=self.order,
            roster=list(self.roster.values()),
            agent_events=self.agent_events,
            accept_delay_s=means,
            default_accept_delay_s=sum(every) / len(every) if every else 0.0,
            decisions=self.decisions,
            skipped=self.skipped,
        )


def _occurred_at(envelope: Envelope) -> float | None:
    ts = envelope.occurred_at
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    return ts.seconds + ts.nanos / 1e9


def _duration(value: Duration, path: str) -> float:
    try:
        return contract.duration_s(value, path)
    except RejectedEvent:
        return 0.0


def envelope_to_decision(envelope: Envelope) -> m.Decision | None:
    """The decisions the figures need, read back from ``routing.decisions``; None for
    the others (positions, requeues, timeouts, rejections)."""
    kind = envelope.WhichOneof("payload")
    if kind == "offer_made":
        o = envelope.offer_made
        return m.OfferMade(
            o.offer_id,
            o.contact_id,
            o.agent_id,
            o.queue,
            m.Channel.VOICE,
            0.0,
            _duration(o.waited, "offer_made.waited"),
            o.attempt,
            o.relaxation_step,
        )
    if kind == "contact_assigned":
        a = envelope.contact_assigned
        return m.ContactAssigned(
            a.offer_id,
            a.contact_id,
            a.agent_id,
            a.queue,
            _duration(a.waited, "contact_assigned.waited"),
            a.within_service_level,
        )
    if kind == "contact_closed":
        c = envelope.contact_closed
        return m.ContactClosed(
            c.contact_id, c.queue, c.abandoned, _duration(c.waited, "contact_closed.waited")
        )
    if kind == "contact_unroutable":
        u = envelope.contact_unroutable
        return m.ContactUnroutable(u.contact_id, u.queue, u.reason)
    if kind == "agent_status_changed":
        s = envelope.agent_status_changed
        try:
            state = m.AgentState(s.state)
        except ValueError:
            return None
        return m.AgentStatusChanged(s.agent_id, state, s.reason, s.team)
    return None


# ---------------------------------------------------------------------------- figures


@dataclass
class QueueFigures:
    """One queue's figures over the counted contacts (arrived in the window)."""

    queue: str
    offered: int = 0
    answered: int = 0
    answered_within: int = 0
    abandoned: int = 0
    abandoned_late: int = 0
    wait_sum_s: float = 0.0
    unroutable: int = 0
    #: Arrivals the policy refused (e.g. a queue it no longer has).
    refused: int = 0
    busy_s: float = 0.0
    present_s: float = 0.0
    #: Escalations raised about the counted contacts, by reason (slug), by the queue the
    #: escalation names.
    escalations: Counter[str] = field(default_factory=Counter)
    #: Notifications sent to the counted contacts, by kind, by the queue the contact was
    #: in when told; the ones the notification policy held back (settled SUPPRESSED),
    #: and, recorded only, the ones the gateway never took (dead-lettered, rejected).
    notifications: Counter[str] = field(default_factory=Counter)
    suppressed: Counter[str] = field(default_factory=Counter)
    undelivered: Counter[str] = field(default_factory=Counter)

    @property
    def service_level(self) -> float | None:
        """The router's rule: answered within / (answered + abandoned after the threshold)."""
        handled = self.answered + self.abandoned_late
        return self.answered_within / handled if handled else None

    @property
    def asa_s(self) -> float | None:
        return self.wait_sum_s / self.answered if self.answered else None

    @property
    def abandonment(self) -> float | None:
        return self.abandoned / self.offered if self.offered else None

    @property
    def occupancy(self) -> float | None:
        """Busy (ringing, talking, wrapping up) / present, of the agents who can take it."""
        return self.busy_s / self.present_s if self.present_s > 0 else None


@dataclass
class Figures:
    queues: dict[str, QueueFigures]
    #: Every agent together.
    occupancy: float | None
    #: Inputs the core refused in a replay, by reason.
    refused: Counter[str] = field(default_factory=Counter)
    #: Why escalations and notifications were not counted ("": they were).
    outcomes_missing: str = "not computed"
    #: Inputs the escalation and notifier cores refused in a replay, by reason.
    outcomes_refused: Counter[str] = field(default_factory=Counter)


class FigureCounter:
    """Counts decisions (recorded or replayed) into :class:`Figures`, one rule for both.

    Service level, ASA and abandonment count contacts that arrived in the window, by the
    queue of the decision; occupancy integrates each agent's state over ``[start, end]``,
    into every queue whose skills and language the agent has (under ``policy``).
    """

    def __init__(
        self,
        policy: RoutingPolicy,
        counted: Mapping[str, str],
        start: float,
        end: float,
    ) -> None:
        self.policy, self.counted, self.start, self.end = policy, counted, start, end
        self.queues: dict[str, QueueFigures] = {q: QueueFigures(q) for q in policy.queues}
        for queue in counted.values():
            self._queue(queue).offered += 1
        self.skills: dict[str, tuple[dict[str, int], tuple[str, ...]]] = {}
        self.serves: dict[str, tuple[str, ...]] = {}
        self.state: dict[str, tuple[m.AgentState, float]] = {}
        self.busy_s = 0.0
        self.present_s = 0.0

    def _queue(self, name: str) -> QueueFigures:
        found = self.queues.get(name)
        if found is None:
            found = self.queues[name] = QueueFigures(name)
        return found

    def agent(self, event: m.AgentLoggedIn | m.AgentSkillsChanged) -> None:
        self.skills[event.agent_id] = (dict(event.skills), tuple(event.languages))
        self.serves.pop(event.agent_id, None)

    def _serves(self, agent: str) -> tuple[str, ...]:
        found = self.serves.get(agent)
        if found is None:
            skills, languages = self.skills.get(agent, ({}, ()))
            found = tuple(
                q.name
                for q in self.policy.queues.values()
                if (not q.language or q.language in languages)
                and all(skills.get(s, 0) >= level for s, level in q.skills)
            )
            self.serves[agent] = found
        return found

    def refused_arrival(self, contact_id: str) -> None:
        queue = self.counted.get(contact_id)
        if queue is not None:
            self._queue(queue).refused += 1

    def decision(self, at: float, decision: m.Decision) -> None:
        match decision:
            case m.ContactAssigned() if decision.contact_id in self.counted:
                q = self._queue(decision.queue)
                q.answered += 1
                q.answered_within += decision.within_service_level
                q.wait_sum_s += decision.waited
            case m.ContactClosed(abandoned=True) if decision.contact_id in self.counted:
                q = self._queue(decision.queue)
                q.abandoned += 1
                qp = self.policy.queues.get(decision.queue)
                threshold = qp.service_level_s if qp is not None else math.inf
                q.abandoned_late += decision.waited > threshold
            case m.ContactUnroutable() if decision.contact_id in self.counted:
                self._queue(decision.queue).unroutable += 1
            case m.AgentStatusChanged():
                self._state(at, decision.agent_id, decision.state)
            case _:
                pass

    def escalated(self, contact_id: str, queue: str, reason: str) -> None:
        """An escalation raised about ``contact_id`` (counted if the contact is)."""
        if contact_id in self.counted:
            self._queue(queue).escalations[reason] += 1

    def notified(self, contact_id: str, queue: str, kind: str, outcome: str) -> None:
        """A notification's outcome for ``contact_id`` (counted if the contact is)."""
        if contact_id not in self.counted:
            return
        q = self._queue(queue)
        if outcome == "delivered":
            q.notifications[kind] += 1
        elif outcome == "suppressed":
            q.suppressed[kind] += 1
        else:
            q.undelivered[kind] += 1

    def set_state(self, at: float, agent: str, state: m.AgentState) -> None:
        """An agent's state known otherwise (the roster at the start of a recording)."""
        if agent not in self.state:
            self.state[agent] = (state, at)

    def _state(self, at: float, agent: str, state: m.AgentState) -> None:
        previous = self.state.get(agent)
        self.state[agent] = (state, at)
        if previous is not None:
            self._account(agent, previous[0], previous[1], at)

    def _account(self, agent: str, state: m.AgentState, since: float, until: float) -> None:
        lo, hi = max(since, self.start), min(until, self.end)
        if hi <= lo or state not in _PRESENT:
            return
        span = hi - lo
        working = state in _WORKING
        self.present_s += span
        self.busy_s += span * working
        for queue in self._serves(agent):
            q = self._queue(queue)
            q.present_s += span
            q.busy_s += span * working

    def finish(
        self,
        refused: Counter[str] | None = None,
        *,
        outcomes_missing: str = "not computed",
        outcomes_refused: Counter[str] | None = None,
    ) -> Figures:
        for agent, (state, since) in self.state.items():
            self._account(agent, state, since, self.end)
        self.state.clear()
        occupancy = self.busy_s / self.present_s if self.present_s > 0 else None
        return Figures(
            self.queues,
            occupancy,
            refused or Counter(),
            outcomes_missing,
            outcomes_refused or Counter(),
        )


def figures(recording: Recording, policy: RoutingPolicy) -> Figures:
    """The recorded figures: the router's own decisions, counted as the replay's are;
    with the escalations and notifications read, the ones about the counted contacts
    (an escalation by the queue it names, if raised by the last record read; a
    notification by the queue its contact was in when it was decided)."""
    counter = FigureCounter(policy, recording.arrival_queues(), recording.start, recording.end)
    inputs = sorted(recording.agent_inputs(), key=lambda item: item[0])
    for login, away in recording.roster:
        state = m.AgentState.AWAY if away is not None else m.AgentState.AVAILABLE
        counter.set_state(recording.replay_from, login.agent_id, state)
    i = 0
    for at, decision in recording.decisions:
        while i < len(inputs) and inputs[i][0] <= at:
            counter.agent(inputs[i][1])
            i += 1
        counter.decision(at, decision)
    if recording.escalations is None or recording.notifications is None:
        return counter.finish(outcomes_missing=recording.outcomes_missing)
    for e in recording.escalations.values():
        if e.raised_at <= recording.horizon:  # not later than the replay sees
            counter.escalated(e.contact_id, e.queue, e.reason)
    legs = {c.contact_id: c.legs for c in recording.contacts if c.counted}
    for n in recording.notifications.values():
        contact_legs = legs.get(n.contact_id)
        if contact_legs is not None:
            counter.notified(n.contact_id, _queue_at(contact_legs, n.created_at), n.kind, n.outcome)
    return counter.finish(outcomes_missing="")


def _queue_at(legs: list[Leg], at: float) -> str:
    """The queue a contact was in at ``at``: its last leg begun by then."""
    queue = legs[0].queue
    for leg in legs:
        if leg.enqueued_at > at:
            break
        queue = leg.queue
    return queue
