"""Escalations raised and notifications sent in a what-if replay: the real escalation and
notifier cores, fed as their services feed them. Pure.

The escalation service reads ``contact.events``, ``agent.events`` (a request for a
manager) and ``routing.decisions``; the notifier ``contact.events`` and
``routing.decisions``. In a replay (:mod:`services.router.replay`) both cores get, in
time order:

- the replay's contact events: each arrival at its recorded time, as the services' own
  mapping read its record (customer, priority, channel, language); hang-ups, ends and
  transfers when the replay has them happen; the recorded end's disposition (an end the
  recording did not see, of a customer who hung up there, is RESOLVED); holds, pauses,
  resumes, surveys, requests for a manager and reopened tickets moved with the moment
  of the contact they followed (:class:`~services.router.recording.Aside`), and only if
  the replay has that moment (an answer that never came brings no hold);
- the replayed routing core's decisions (assignments, requeues, positions, unroutable
  contacts, closes), translated as the services' mapping reads their records
  (:func:`escalation_decision`, :func:`notifier_decision`; a test checks both against
  the mapping of the envelope the router would write);
- their own timers, ticked when due (``next_deadline`` / ``tick``).

What a replay cannot know is assumed: no manager acknowledges an escalation (commands are
not replayed), so escalations climb the tiers, and only raised ones are counted; the
gateway accepts every notification at once (it is settled DELIVERED when decided, as a
healthy gateway would), so decided is sent; notices the notification policy holds back
(rate limit, quiet hours) are counted as suppressed. A customer's earlier contacts are
known from the replay's start only (repeat-contact escalations look back no further).
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass

from services.escalation.domain import EscalationCore, EscalationPolicy, RejectedInput
from services.escalation.domain import model as esc
from services.notifier.domain import core as note
from services.notifier.domain.errors import NotifierError
from services.notifier.domain.templates import TemplateCatalog
from services.router.domain import model as m
from services.router.recording import FigureCounter, Said

__all__ = [
    "Downstream",
    "DownstreamPolicies",
    "escalation_decision",
    "notifier_decision",
]

#: Most distinct refusal reasons kept; the rest are counted together.
MAX_REASONS = 100
#: The routing decisions escalation or the notifier reads (offers, timeouts and agents'
#: statuses, most of them, are skipped at once).
_HEARD = frozenset(
    {
        m.ContactAssigned,
        m.ContactRequeued,
        m.ContactUnroutable,
        m.ContactClosed,
        m.QueuePositionUpdated,
    }
)


@dataclass(frozen=True, slots=True)
class DownstreamPolicies:
    """The escalation and notification policies of one side of the what-if, and the
    notifier's message templates (the core words every notice it decides)."""

    escalation: EscalationPolicy
    notification: note.NotifierPolicy
    catalog: TemplateCatalog
    #: Where the two policies come from, for the reader of a what-if.
    source: str = ""


def escalation_decision(decision: m.Decision) -> esc.Input | None:
    """The escalation core's input for a routing decision, as the escalation service's
    mapping reads the router's record of it (None: escalation ignores it)."""
    match decision:
        case m.ContactAssigned():
            return esc.ContactAssigned(decision.contact_id, decision.queue, decision.agent_id)
        case m.ContactRequeued():
            return esc.ContactRequeued(decision.contact_id, decision.queue)
        case m.ContactUnroutable():
            return esc.ContactUnroutable(decision.contact_id, decision.queue, decision.reason)
        case m.ContactClosed():
            return esc.ContactClosed(decision.contact_id, decision.queue, decision.abandoned)
        case _:
            return None


def notifier_decision(decision: m.Decision) -> note.Input | None:
    """The notifier core's input for a routing decision, as the notifier's mapping reads
    the router's record of it (None: the notifier ignores it)."""
    match decision:
        case m.QueuePositionUpdated():
            return note.QueuePositionUpdated(
                decision.contact_id, decision.position, decision.estimated_wait
            )
        case m.ContactAssigned():
            return note.ContactAssigned(decision.contact_id)
        case m.ContactUnroutable():
            return note.ContactUnroutable(decision.contact_id)
        case m.ContactClosed():
            return note.ContactClosed(decision.contact_id)
        case _:
            return None


class Downstream:
    """One replay's escalation and notifier cores; what they decide about the counted
    contacts goes into the replay's :class:`FigureCounter`."""

    def __init__(self, policies: DownstreamPolicies, domain: str, counter: FigureCounter) -> None:
        self.escalation = EscalationCore(policies.escalation, domain)
        self.notifier = note.NotifierCore(policies.notification, policies.catalog)
        self.counter = counter
        #: Each contact's queue as last heard (arrival, transfer, routing decision).
        self.queue_of: dict[str, str] = {}
        self.refused: Counter[str] = Counter()
        self._causes = itertools.count()

    # -- time

    def next_deadline(self) -> float | None:
        first = self.escalation.next_deadline()
        second = self.notifier.next_deadline()
        if first is None:
            return second
        return first if second is None or first <= second else second

    def tick(self, now: float) -> None:
        self._escalated(self.escalation.tick(now))
        self._notified(self.notifier.tick(now), now)

    # -- contact events

    def arrived(self, now: float, contact_id: str, queue: str, said: Said | None) -> None:
        self.queue_of[contact_id] = queue
        if said is not None:
            self.heard(now, said)

    def heard(self, now: float, said: Said) -> None:
        """A recorded contact event, as each service's mapping read it."""
        if said.escalation is not None:
            self._escalate(said.escalation, now)
        if said.notifier is not None:
            self._notify(said.notifier, said.cause, now)

    def abandoned(self, now: float, contact_id: str) -> None:
        self._escalate(esc.ContactAbandoned(contact_id), now)
        self._notify(note.ContactAbandoned(contact_id), f"{contact_id}/abandoned", now)

    def ended(self, now: float, contact_id: str, said: Said | None) -> None:
        """The contact ended: as recorded (its disposition), or RESOLVED if the recording
        saw no end."""
        if said is None:
            said = Said(
                f"{contact_id}/ended",
                esc.ContactEnded(contact_id, esc.Disposition.RESOLVED),
                note.ContactEnded(contact_id, "resolved"),
            )
        self.heard(now, said)

    def transferred(self, now: float, contact_id: str, to_queue: str) -> None:
        if to_queue:
            self.queue_of[contact_id] = to_queue
        self._escalate(esc.ContactTransferred(contact_id, to_queue), now)

    # -- routing decisions

    def decision(self, now: float, decision: m.Decision) -> None:
        if type(decision) not in _HEARD:
            return
        for_escalation = escalation_decision(decision)
        for_notifier = notifier_decision(decision)
        if for_escalation is None and for_notifier is None:
            return
        if isinstance(decision, m.ContactAssigned | m.ContactRequeued | m.QueuePositionUpdated) or (
            isinstance(decision, m.ContactUnroutable) and decision.queue
        ):
            self.queue_of[decision.contact_id] = decision.queue
        if for_escalation is not None:
            self._escalate(for_escalation, now)
        if for_notifier is not None:
            self._notify(for_notifier, f"replay-{next(self._causes)}", now)

    # -- the cores

    def _escalate(self, event: esc.Input, now: float) -> None:
        try:
            changes = self.escalation.apply(event, now)
        except RejectedInput as exc:
            self._refuse("escalation", event, exc.reason)
            return
        self._escalated(changes)

    def _escalated(self, changes: list[esc.EscalationChange]) -> None:
        for change in changes:
            if change.kind is esc.EscalationChangeKind.RAISED:
                e = change.escalation
                self.counter.escalated(e.contact_id, e.queue, e.reason.slug)

    def _notify(self, event: note.Input, cause: str, now: float) -> None:
        try:
            decided = self.notifier.apply(event, cause, now)
        except NotifierError as exc:
            self._refuse("notifier", event, exc.reason)
            return
        self._notified(decided, now)

    def _notified(self, decided: list[note.Notification], now: float) -> None:
        for n in decided:
            self.notifier.settle(n.notification_id, now)  # the gateway took it at once
            self.counter.notified(n.contact_id, self._queue(n.contact_id), n.kind, "delivered")
        for pending in self.notifier.take_suppressed():
            n = pending.notification
            self.counter.notified(n.contact_id, self._queue(n.contact_id), n.kind, "suppressed")

    def _queue(self, contact_id: str) -> str:
        return self.queue_of.get(contact_id) or self.counter.counted.get(contact_id, "")

    def _refuse(self, service: str, event: object, reason: str) -> None:
        key = f"{service}: {type(event).__name__}: {reason[:80]}"
        if key not in self.refused and len(self.refused) >= MAX_REASONS:
            key = f"{service}: other reasons"
        self.refused[key] += 1
