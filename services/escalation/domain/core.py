"""The escalation core: a sans-I/O state machine over one routing domain's cases.

Feed it events with :meth:`EscalationCore.apply` and the time with :meth:`tick`; it
returns escalation changes to publish. Managers' commands (:meth:`acknowledge`,
:meth:`add_note`, :meth:`resolve`) return the escalation and the changes. The adapter
sleeps until :meth:`next_deadline`, drains :meth:`take_changes` into the changelog, and
rebuilds the core after a restart with :meth:`restore`; :meth:`change_policy` applies a new
version of the domain's policy live. The core never reads a clock:
``now`` is always passed in, so a fake clock drives every test.

Every entry point applies its input wholly or not at all. It first judges the input
against the state it will meet (after the deadlines due at ``now``, which may forget a
case) and refuses it before anything changes: no deadline fired, no change to hand out,
nothing for :meth:`take_changes`. Then it fires the deadlines already due, so a tick the
adapter was late for never loses a breach (a refusal leaves them scheduled for the next
call), and applies the input. Time-based changes carry the instant the deadline fell
due, not the instant the tick ran, so a core restored after downtime decides exactly as
one that never stopped.

The rules are here; the rest is beside it: the tunables (tier chain, deadlines, triggers,
severities) in :mod:`.policy`, what is remembered per case in :mod:`.cases`, its
changelog records in :mod:`.snapshots`, business-time arithmetic in :mod:`.sla_clock`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace
from typing import Any

from services.common.business_hours import ALWAYS_OPEN, BusinessCalendar
from services.common.deadlines import Deadlines
from services.escalation.domain.cases import Case, History, Pause, Phase
from services.escalation.domain.errors import (
    InvalidArgument,
    InvalidInput,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    UnknownContact,
    UnknownQueue,
)
from services.escalation.domain.model import (
    CommandResult,
    ContactAbandoned,
    ContactArrived,
    ContactAssigned,
    ContactClosed,
    ContactEnded,
    ContactHeld,
    ContactPaused,
    ContactReopened,
    ContactRequeued,
    ContactResumed,
    ContactTransferred,
    ContactUnroutable,
    Customer,
    CustomerErased,
    Disposition,
    Escalation,
    EscalationChange,
    EscalationChangeKind,
    EscalationNote,
    EscalationReason,
    EscalationStatus,
    Input,
    ManagerRequested,
    PauseReason,
    Priority,
    SurveyResult,
    Tier,
    escalation_id,
)
from services.escalation.domain.policy import (
    MAX_REPEAT_CONTACTS,
    TIER_CHAIN,
    UNASSIGNED_TEAM,
    EscalationPolicy,
    SlaClock,
    TriggerSettings,
)
from services.escalation.domain.snapshots import (
    case_key,
    case_record,
    customer_key,
    history_record,
    read_case_facts,
)

__all__ = [
    "CONTACT_ABANDONED",
    "CONTACT_RESOLVED",
    "POLICY_KEY",
    "SYSTEM",
    "EscalationCore",
    "oldest_first",
    "stored_policy",
]

#: ``resolved_by`` of escalations closed because their contact was.
SYSTEM = "system"
#: ``resolution_code`` when the contact was resolved (ended RESOLVED, or closed by routing).
CONTACT_RESOLVED = "contact-resolved"
#: ``resolution_code`` of waiting-related escalations when the customer gave up.
CONTACT_ABANDONED = "contact-abandoned"

_R = EscalationReason
#: About the contact's outcome itself: they stay open for a person when it closes.
_ABOUT_OUTCOME = frozenset({_R.UNRESOLVED, _R.LOW_SATISFACTION, _R.REOPENED})
#: About the customer waiting: moot once the customer has hung up.
_ABOUT_WAITING = frozenset({_R.WAIT_THRESHOLD, _R.UNROUTABLE, _R.PAUSE_OVERRUN})
_ON_RESOLVED = frozenset(_R) - _ABOUT_OUTCOME

#: The changelog entity holding the domain's policy version and document.
POLICY_KEY = "policy"

_Key = tuple[str, str]
_SLA, _PAUSE, _ACK, _DROP, _HISTORY = "sla", "pause", "ack", "drop", "history"


class EscalationCore:
    """Escalations of one routing domain under one policy."""

    def __init__(self, policy: EscalationPolicy, domain: str = "") -> None:
        self.policy = policy
        self.domain = domain
        #: The version of the domain's policy in force (0: the configured default) and its
        #: document, opaque here: persisted with the case facts, so a restore (which the
        #: adapter feeds the parsed document) runs the domain on its own policy.
        self.policy_version = 0
        self.policy_document = ""
        self._triggers: dict[str, TriggerSettings] = {
            queue: policy.triggers_for(domain, queue) for queue in policy.queues
        }
        self._history_window_s = policy.max_repeat_window_s
        self._cases: dict[str, Case] = {}
        self._customers: dict[str, History] = {}
        self._escalations: dict[str, Escalation] = {}
        self._deadlines: Deadlines[_Key] = Deadlines()
        #: Changelog entities changed since the last :meth:`take_changes`.
        self._dirty: set[str] = set()
        #: What :meth:`restore` left out or re-homed, one line each (logged and counted).
        self.restore_problems: list[str] = []
        self._restore_changes: list[EscalationChange] = []
        #: Escalations forgotten with their case, not yet deleted from the topic.
        self._retired: list[Escalation] = []

    # --- events and time ----------------------------------------------------------------

    def apply(self, event: Input, now: float) -> list[EscalationChange]:
        """Apply one event; late or repeated events change nothing of their own; unusable
        ones raise :class:`~services.escalation.domain.errors.RejectedInput` before
        anything changes (not even the deadlines due)."""
        self._check(event, now)
        out = self.tick(now)
        self._dispatch(event, now, out)
        return out

    def _check(self, event: Input, now: float) -> None:
        """Refuse an event the core cannot apply at ``now``, changing nothing.

        Judged against the state the event will meet, after the deadlines due at ``now``,
        so refusing first decides exactly as ticking first would. Handlers rely on it.
        """
        if isinstance(event, CustomerErased):
            if not event.customer_id:
                raise InvalidInput("customer_id: empty")
            return
        if not event.contact_id:
            raise InvalidInput("contact_id: empty")
        match event:
            case ContactArrived():
                self._known_queue(event.queue)
            case ContactUnroutable():
                # a held case whose queue a policy change removed: the router says so
                if self._held_after_tick(event.contact_id, now) is None:
                    self._known_queue(event.queue)
            case ContactHeld() | ContactPaused():
                promised_s = event.expected_duration
                if promised_s < 0 or not math.isfinite(promised_s):
                    raise InvalidInput(f"expected_duration: must be >= 0, got {promised_s}")
            case ContactTransferred():
                case = self._held_after_tick(event.contact_id, now)
                if case is not None and event.to_queue and event.to_queue != case.queue:
                    self._known_queue(event.to_queue)
            case SurveyResult():
                if not 1 <= event.score <= 5:
                    raise InvalidInput(f"score: must be 1-5, got {event.score}")
                self._required(event.contact_id, "SurveyResult", now)
            case ContactReopened():
                self._required(event.contact_id, "ContactReopened", now)
            case ManagerRequested():
                self._required(event.contact_id, "ManagerRequested", now)
            case ContactEnded(disposition=Disposition.UNRESOLVED):
                self._required(event.contact_id, "ContactEnded(UNRESOLVED)", now)

    def _dispatch(self, event: Input, now: float, out: list[EscalationChange]) -> None:
        match event:
            case CustomerErased():
                self._erase(event.customer_id, now, out)
            case ContactArrived():
                self._arrive(event, now, out)
            case ContactHeld():
                self._pause(event.contact_id, "hold", event.reason, event.expected_duration, now)
            case ContactPaused():
                self._pause(event.contact_id, "pause", event.reason, event.expected_duration, now)
            case ContactResumed():
                self._resume(event.contact_id, now)
            case ContactTransferred():
                self._transfer(event, now)
            case ContactEnded():
                self._end(event, now, out)
            case ContactReopened():
                self._reopened(event.contact_id, now, out)
            case ContactAbandoned():
                found = self._cases.get(event.contact_id)
                if found is not None:
                    self._close(found, now, abandoned=True, out=out)
            case SurveyResult():
                self._survey(event, now, out)
            case ManagerRequested():
                self._manager_requested(event, now, out)
            case ContactAssigned() | ContactRequeued():
                self._routed(event, now)
            case ContactUnroutable():
                self._unroutable(event, now, out)
            case ContactClosed():
                closed = self._case_or_new_provisional(event.contact_id, event.queue, now)
                if closed is not None:
                    self._close(closed, now, abandoned=event.abandoned, out=out)

    def tick(self, now: float) -> list[EscalationChange]:
        """Fire every deadline at or before ``now``, in time order."""
        out: list[EscalationChange] = []
        while (due := self._deadlines.pop_due(now)) is not None:
            at, (kind, key) = due
            if kind == _SLA:
                self._sla_breached(key, at, out)
            elif kind == _PAUSE:
                self._pause_overran(key, at, out)
            elif kind == _ACK:
                self._re_escalate(key, at, out)
            elif kind == _DROP:
                self._drop_deadline_reached(key, at, out)
            else:
                self._prune_history(key, at)
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`tick` next has something to do (None: nothing scheduled)."""
        return self._deadlines.next()

    # --- the domain's policy --------------------------------------------------------------

    def change_policy(
        self, policy: EscalationPolicy, version: int, now: float, document: str = ""
    ) -> list[EscalationChange]:
        """Run the domain on ``policy`` (its ``version``, ``document``) from ``now`` on.

        Deadlines due before ``now`` fire first, under the old policy. Then nothing is
        reset: SLA clocks carry over (time so far counted on the old calendar, from now on
        the new one), and a changed threshold or tier deadline applies from now to what is
        open: an escalation keeps the moment its tier got it, so a shortened deadline that
        has already passed moves it up at once and a lengthened one waits longer; a wait
        threshold already exceeded raises now. Teams, people and tiers are the new
        policy's: an open escalation's assignee follows its team's new staff, and one whose
        team or queue is gone goes to the head of service (team ``unassigned``), as a
        restore re-homes it. The caller refuses versions not newer than
        :attr:`policy_version` (the core applies what it is given).
        """
        out = self.tick(now)
        old = self.policy
        old_calendars = {contact_id: self._calendar(c) for contact_id, c in self._cases.items()}
        self.policy, self.policy_version, self.policy_document = policy, version, document
        self._triggers = {queue: policy.triggers_for(self.domain, queue) for queue in policy.queues}
        self._history_window_s = policy.max_repeat_window_s
        self._dirty.add(POLICY_KEY)
        for contact_id, case in self._cases.items():
            if case.sla.running and old_calendars[contact_id] != self._calendar(case):
                case.sla.stop(now, old_calendars[contact_id])  # bank it on the old hours
                case.sla.start(now)
                self._dirty.add(case_key(contact_id))
            self._arm_sla(case)
            self._arm_pause(case)
            self._arm_drop(case)
            for kind in (_SLA, _PAUSE, _DROP):
                self._not_before((kind, contact_id), now)
        for history in self._customers.values():
            self._arm_history(history)
            self._not_before((_HISTORY, history.customer_id), now)
        for esc in oldest_first(e for e in self._escalations.values() if e.is_open):
            self._follow_policy(esc, old, version, now, out)
        out.extend(self.tick(now))
        return out

    def _not_before(self, key: _Key, now: float) -> None:
        """A deadline a policy change moved into the past falls due now, not back then."""
        when = self._deadlines.get(key)
        if when is not None and when < now:
            self._deadlines.set(key, now)

    def _follow_policy(
        self,
        esc: Escalation,
        old: EscalationPolicy,
        version: int,
        now: float,
        out: list[EscalationChange],
    ) -> None:
        """One open escalation under the policy just applied (see :meth:`change_policy`)."""
        if esc.team == UNASSIGNED_TEAM:
            if esc.assignee != self.policy.head_of_service:
                moved = replace(
                    esc,
                    assignee=self.policy.head_of_service,
                    version=_next_version(esc.version, now),
                )
                self._store_change(moved, EscalationChangeKind.UPDATED, out)
            return
        homeless = _homeless(esc, self.policy)
        if homeless:
            why = f"without a home in policy version {version}: {homeless}"
            self._store_change(self._rehomed(esc, why, now), EscalationChangeKind.UPDATED, out)
            self._deadlines.cancel((_ACK, esc.escalation_id))
            return
        if esc.status is not EscalationStatus.OPEN:
            return  # acknowledged: its owner keeps it, no deadline runs
        old_s = old.ack_deadlines_s.get(esc.tier)
        given_at = now if esc.ack_deadline is None or old_s is None else esc.ack_deadline - old_s
        changed = replace(
            esc,
            assignee=self.policy.teams[esc.team].person(esc.tier),
            ack_deadline=self.policy.ack_deadline(esc.tier, given_at),
        )
        if changed == esc:
            return
        changed = replace(changed, version=_next_version(esc.version, now))
        deadline = changed.ack_deadline
        if deadline is not None and deadline <= now and self.policy.next_tier(esc.tier):
            self._escalations[esc.escalation_id] = changed  # moves up at once, published so
            self._re_escalate(esc.escalation_id, now, out)
            return
        self._store_change(changed, EscalationChangeKind.UPDATED, out)
        self._arm_ack(changed)

    # --- managers' commands ---------------------------------------------------------------

    def teams_visible_to(self, person: str) -> frozenset[str]:
        """Teams whose escalations ``person`` may see and change."""
        return self.policy.teams_visible_to(person)

    def acknowledge(self, escalation_id: str, by: str, now: float) -> CommandResult:
        """Take ownership: stops re-escalation. Acknowledging twice changes nothing."""
        esc = self._authorized(escalation_id, by, now)
        if esc.status is EscalationStatus.RESOLVED:
            raise InvalidTransition(f"{escalation_id}: already resolved")
        out = self.tick(now)
        esc = self._escalations[escalation_id]  # a due re-escalation may have moved it on
        if esc.status is EscalationStatus.OPEN:
            esc = replace(
                esc,
                status=EscalationStatus.ACKNOWLEDGED,
                acknowledged_at=now,
                acknowledged_by=by,
                ack_deadline=None,
                version=_next_version(esc.version, now),
            )
            self._deadlines.cancel((_ACK, escalation_id))
            self._store_change(esc, EscalationChangeKind.ACKNOWLEDGED, out)
        return CommandResult(esc, tuple(out))

    def add_note(self, escalation_id: str, by: str, text: str, now: float) -> CommandResult:
        """Add a note to an open or acknowledged escalation."""
        esc = self._authorized(escalation_id, by, now)
        if not text.strip():
            raise InvalidArgument("text: empty")
        if len(esc.notes) >= MAX_NOTES:
            raise InvalidArgument(f"{escalation_id}: already has {MAX_NOTES} notes, the most kept")
        if esc.status is EscalationStatus.RESOLVED:
            raise InvalidTransition(f"{escalation_id}: resolved escalations take no notes")
        out = self.tick(now)
        esc = self._escalations[escalation_id]
        esc = replace(
            esc,
            notes=(*esc.notes, EscalationNote(by, text, now)),
            version=_next_version(esc.version, now),
        )
        self._store_change(esc, EscalationChangeKind.NOTE_ADDED, out)
        return CommandResult(esc, tuple(out))

    def resolve(
        self, escalation_id: str, by: str, resolution_code: str, now: float, note: str = ""
    ) -> CommandResult:
        """Close with a resolution code (and an optional closing note)."""
        esc = self._authorized(escalation_id, by, now)
        if not resolution_code.strip():
            raise InvalidArgument("resolution_code: empty")
        if esc.status is EscalationStatus.RESOLVED:
            raise InvalidTransition(f"{escalation_id}: already resolved")
        out = self.tick(now)
        esc = self._escalations[escalation_id]
        esc = self._resolve(esc, now, resolution_code, by, out, note=note)
        case = self._cases.get(esc.contact_id)
        if case is not None:
            self._forget_if_finished(case, now)
        return CommandResult(esc, tuple(out))

    # --- queries ------------------------------------------------------------------------

    def get(self, escalation_id: str) -> Escalation | None:
        return self._escalations.get(escalation_id)

    def escalations(self) -> list[Escalation]:
        """Every escalation held (open, and resolved ones of cases still remembered)."""
        return list(self._escalations.values())

    def open_escalations(
        self,
        teams: Collection[str] | None = None,
        tier: Tier | None = None,
        reason: EscalationReason | None = None,
    ) -> list[Escalation]:
        """Open and acknowledged escalations, oldest first, filtered (None: any)."""
        return oldest_first(
            e
            for e in self._escalations.values()
            if e.is_open
            and (teams is None or e.team in teams)
            and (tier is None or e.tier is tier)
            and (reason is None or e.reason is reason)
        )

    # --- durable state ------------------------------------------------------------------

    def take_changes(self) -> dict[str, dict[str, Any] | None]:
        """Case facts changed since the last call: ``{entity: snapshot | None (deleted)}``.

        Entities are ``case/<contact_id>`` and ``customer/<customer_id>``; snapshots are
        JSON-serialisable. Escalations themselves travel as the changes this core returns.
        """
        changes = {key: self._entity(key) for key in sorted(self._dirty)}
        self._dirty.clear()
        return changes

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every case fact, as :meth:`take_changes` would write them (for checks and tests)."""
        keys = [case_key(c) for c in self._cases] + [customer_key(c) for c in self._customers]
        keys += [POLICY_KEY] if self.policy_version else []
        return {key: entity for key in sorted(keys) if (entity := self._entity(key)) is not None}

    @classmethod
    def restore(
        cls,
        policy: EscalationPolicy,
        domain: str,
        escalations: Iterable[Escalation],
        case_facts: Mapping[str, Mapping[str, Any]],
        now: float = 0.0,
        *,
        version: int = 0,
        document: str = "",
    ) -> EscalationCore:
        """Rebuild a core from the ``escalations`` topic and the case-fact changelog, under
        the domain's ``policy`` (its ``version`` and ``document``: see :func:`stored_policy`).

        Escalations of other domains are skipped, so the whole topic may be passed in.
        Deadlines resume from their stored instants: nothing is raised again, nothing reset.

        Never fails on what the stored state says (the service would crash-loop on it):
        a fact it cannot read, or of a queue no longer configured, is left out; an open
        escalation whose team or queue is no longer configured goes to the head of service
        (team ``unassigned``). Each is listed in :attr:`restore_problems`, and the
        re-homed escalations' changes are returned by the next :meth:`take_restore_changes`.
        """
        core = cls(policy, domain)
        core.policy_version, core.policy_document = version, document
        core._cases, core._customers, core.restore_problems = read_case_facts(
            {k: v for k, v in case_facts.items() if k != POLICY_KEY}, policy.queues
        )
        for esc in escalations:
            if esc.domain != domain:
                continue
            homeless = _homeless(esc, policy)
            if homeless and esc.is_open:
                esc = core._rehome(esc, homeless, now)
            if esc.contact_id not in core._cases:
                # An open escalation outlives its case facts: a closed case holds it again,
                # so managers can still act on it and the drop waits for its resolution.
                if not esc.is_open:
                    core._retired.append(esc)  # its case was forgotten: so is it, on the topic
                    continue
                orphan = Case(
                    contact_id=esc.contact_id,
                    queue=esc.queue,
                    customer=esc.customer,
                    priority=esc.priority,
                    arrived_at=esc.raised_at,
                    last_seen=esc.raised_at,
                    phase=Phase.DONE,
                    closed_at=esc.raised_at,
                )
                core._cases[esc.contact_id] = orphan
                core._dirty.add(case_key(esc.contact_id))
            core._escalations[esc.escalation_id] = esc
            core._arm_ack(esc)
        for case in core._cases.values():
            core._arm_sla(case)
            core._arm_pause(case)
            core._arm_drop(case)
        for history in core._customers.values():
            core._arm_history(history)
        return core

    def _erase(self, customer_id: str, now: float, out: list[EscalationChange]) -> None:
        """Remove the customer's name, phone, e-mail and id from cases, escalations (each
        re-published without them) and summaries, and delete their contact history."""
        for contact_id, case in self._cases.items():
            if case.customer.customer_id == customer_id:
                case.customer = _anonymous(case.customer)
                self._dirty.add(case_key(contact_id))
        for esc_id, esc in list(self._escalations.items()):
            if esc.customer.customer_id != customer_id:
                continue
            erased = replace(
                esc,
                customer=_anonymous(esc.customer),
                summary=esc.summary.replace(customer_id, "[erased]"),
                version=_next_version(esc.version, now),
            )
            self._escalations[esc_id] = erased
            out.append(EscalationChange(EscalationChangeKind.UPDATED, erased))
        if self._customers.pop(customer_id, None) is not None:
            self._dirty.add(customer_key(customer_id))
            self._deadlines.cancel((_HISTORY, customer_id))

    def _rehomed(self, esc: Escalation, why: str, now: float) -> Escalation:
        """``esc`` given to the head of service (team ``unassigned``, top tier, no deadline):
        nobody the policy names can answer it any more."""
        return replace(
            esc,
            team=UNASSIGNED_TEAM,
            tier=TIER_CHAIN[-1],
            assignee=self.policy.head_of_service,
            ack_deadline=None,
            summary=f"{esc.summary} [{why}]".strip(),
            version=_next_version(esc.version, now),
        )

    def _rehome(self, esc: Escalation, why: str, now: float) -> Escalation:
        """An open escalation nobody configured can answer any more: the head of service's."""
        rehomed = self._rehomed(esc, f"restored without a home: {why}", now)
        self.restore_problems.append(f"{esc.escalation_id}: {why}; now the head of service's")
        self._restore_changes.append(EscalationChange(EscalationChangeKind.UPDATED, rehomed))
        return rehomed

    def take_retired(self) -> list[Escalation]:
        """Escalations forgotten with their case since the last call: the adapter deletes
        them from the compacted ``escalations`` topic (tombstones), so a customer's
        details there last no longer than the case's retention (``retain_closed_s``)."""
        retired, self._retired = self._retired, []
        return retired

    def take_restore_changes(self) -> list[EscalationChange]:
        """The re-homings :meth:`restore` made, once (the adapter publishes them)."""
        changes, self._restore_changes = self._restore_changes, []
        return changes

    # --- event handlers -------------------------------------------------------------------

    def _arrive(self, event: ContactArrived, now: float, out: list[EscalationChange]) -> None:
        case = self._cases.get(event.contact_id)
        if case is None:
            case = Case(
                contact_id=event.contact_id,
                queue=event.queue,
                customer=event.customer,
                priority=event.priority,
                arrived_at=now,
                last_seen=now,
            )
            self._cases[case.contact_id] = case
            self._sync_sla_clock(case, now)
        elif not case.seen_arrival:
            # A routing decision overtook the arrival: keep its phase, learn who it is.
            case.customer, case.priority, case.seen_arrival = event.customer, event.priority, True
            self._update_open_with_customer(case, now, out)
        elif event.reopened and case.phase is Phase.DONE:
            case.queue, case.phase, case.closed_at, case.disposition = (
                event.queue,
                Phase.WAITING,
                None,
                None,
            )
            case.pause = None
            case.sla.reset()
            self._deadlines.cancel((_PAUSE, case.contact_id))
            self._sync_sla_clock(case, now)
        else:
            return  # a repeated arrival
        if event.reopened:
            self._escalate(case, _R.REOPENED, now, f"reopened ticket back in {event.queue}", out)
        else:
            self._record_arrival(case, now, out)
        self._note_activity(case, now)

    def _reopened(self, contact_id: str, now: float, out: list[EscalationChange]) -> None:
        case = self._cases[contact_id]  # known: _check refused it otherwise
        self._escalate(case, _R.REOPENED, now, "the customer reopened the ticket", out)
        self._note_activity(case, now)

    def _manager_requested(
        self, event: ManagerRequested, now: float, out: list[EscalationChange]
    ) -> None:
        case = self._cases[event.contact_id]  # known: _check refused it otherwise
        note = f": {event.note}" if event.note else ""
        self._escalate(case, _R.MANAGER_REQUESTED, now, f"customer asked for a manager{note}", out)
        self._note_activity(case, now)

    def _routed(self, event: ContactAssigned | ContactRequeued, now: float) -> None:
        """Assignment stops the queue-wait clock; a requeue starts it again."""
        case = self._case_or_new_provisional(event.contact_id, event.queue, now)
        if case is not None:
            self._follow_router(case, event.queue, now)
        if isinstance(event, ContactAssigned):
            before, after = Phase.WAITING, Phase.ASSIGNED
        else:
            before, after = Phase.ASSIGNED, Phase.WAITING
        if case is not None and case.phase is before:
            case.phase = after
            self._sync_sla_clock(case, now)
            self._note_activity(case, now)

    def _unroutable(
        self, event: ContactUnroutable, now: float, out: list[EscalationChange]
    ) -> None:
        case = self._case_or_new_provisional(event.contact_id, event.queue, now)
        if case is None or case.phase is Phase.DONE:
            return
        self._follow_router(case, event.queue, now)
        detail = f": {event.reason}" if event.reason else ""
        summary = f"no eligible agent in {case.queue}{detail}"
        self._escalate(case, _R.UNROUTABLE, now, summary, out)
        self._note_activity(case, now)

    def _pause(
        self, contact_id: str, kind: str, reason: PauseReason, promised_s: float, now: float
    ) -> None:
        case = self._cases.get(contact_id)
        if case is None or case.phase is Phase.DONE:
            return
        case.pause = Pause(kind, reason, now, promised_s)
        self._sync_sla_clock(case, now)
        self._arm_pause(case)
        self._note_activity(case, now)

    def _resume(self, contact_id: str, now: float) -> None:
        case = self._cases.get(contact_id)
        if case is None or case.pause is None:
            return
        case.pause = None
        self._deadlines.cancel((_PAUSE, contact_id))
        self._sync_sla_clock(case, now)
        self._note_activity(case, now)

    def _transfer(self, event: ContactTransferred, now: float) -> None:
        case = self._cases.get(event.contact_id)
        if case is None or not event.to_queue or event.to_queue == case.queue:
            return
        self._move(case, event.to_queue, now)

    def _move(self, case: Case, queue: str, now: float) -> None:
        """The case is in ``queue`` from ``now`` on; its clock carries over."""
        case.sla.stop(now, self._calendar(case))  # the time so far counts on the old calendar
        case.queue = queue
        self._sync_sla_clock(case, now)
        self._arm_pause(case)
        self._note_activity(case, now)

    def _follow_router(self, case: Case, queue: str, now: float) -> None:
        """A case whose queue a policy change removed is where the router put it next (its
        fallback queue): only then, so an old decision never undoes a transfer."""
        if case.queue not in self.policy.queues and queue in self.policy.queues:
            self._move(case, queue, now)

    def _end(self, event: ContactEnded, now: float, out: list[EscalationChange]) -> None:
        case = self._cases.get(event.contact_id)  # an UNRESOLVED one is known (_check)
        if case is None or case.disposition is event.disposition:
            return
        case.disposition = event.disposition
        if case.phase is not Phase.DONE:
            case.phase, case.closed_at = Phase.DONE, now
        case.pause = None
        self._deadlines.cancel((_PAUSE, case.contact_id))
        self._sync_sla_clock(case, now)
        if event.disposition is Disposition.UNRESOLVED:
            note = f": {event.note}" if event.note else ""
            self._escalate(case, _R.UNRESOLVED, now, f"contact ended unresolved{note}", out)
        elif event.disposition is Disposition.RESOLVED:
            self._auto_resolve(case, _ON_RESOLVED, CONTACT_RESOLVED, now, out)
        self._note_activity(case, now)
        self._forget_if_finished(case, now)

    def _close(
        self, case: Case, now: float, *, abandoned: bool, out: list[EscalationChange]
    ) -> None:
        if case.phase is not Phase.DONE:
            case.phase, case.closed_at, case.pause = Phase.DONE, now, None
            self._deadlines.cancel((_PAUSE, case.contact_id))
            self._sync_sla_clock(case, now)
        if abandoned:
            self._auto_resolve(case, _ABOUT_WAITING, CONTACT_ABANDONED, now, out)
        elif case.disposition is not Disposition.UNRESOLVED:
            self._auto_resolve(case, _ON_RESOLVED, CONTACT_RESOLVED, now, out)
        self._note_activity(case, now)
        self._forget_if_finished(case, now)

    def _survey(self, event: SurveyResult, now: float, out: list[EscalationChange]) -> None:
        case = self._cases[event.contact_id]  # known: _check refused it otherwise
        if event.customer_id and not case.customer.customer_id:
            case.customer = replace(case.customer, customer_id=event.customer_id)
        if event.score <= self._triggers_of(case.queue).low_score:
            comment = f': "{event.comment}"' if event.comment else ""
            self._escalate(
                case, _R.LOW_SATISFACTION, now, f"survey score {event.score}/5{comment}", out
            )
        self._note_activity(case, now)

    def _record_arrival(self, case: Case, now: float, out: list[EscalationChange]) -> None:
        """Add the arrival to the customer's history (written to the changelog, its pruning
        scheduled), then raise or update REPEAT_CONTACT if the window holds enough."""
        customer_id = case.customer.customer_id
        if not customer_id:
            return
        history = self._customers.get(customer_id)
        if history is None:
            history = self._customers[customer_id] = History(customer_id)
        history.arrivals = [a for a in history.arrivals if a[0] > now - self._history_window_s]
        history.arrivals.append((now, case.contact_id))
        del history.arrivals[:-MAX_REPEAT_CONTACTS]  # bounded by count as well as by age
        self._dirty.add(customer_key(customer_id))
        self._arm_history(history)
        triggers = self._triggers_of(case.queue)
        recent = [c for at, c in history.arrivals if at > now - triggers.repeat_window_s]
        if len(recent) < triggers.repeat_contacts:
            return
        listed = ", ".join(recent[-SUMMARY_CONTACTS:])
        more = len(recent) - SUMMARY_CONTACTS
        summary = (
            f"{len(recent)}{'+' if len(recent) == MAX_REPEAT_CONTACTS else ''} contacts from "
            f"customer {customer_id} within {_duration(triggers.repeat_window_s)}: "
            f"{'... ' if more > 0 else ''}{listed}"
        )
        target = history.repeat_escalation
        current = None if target is None else self._escalations.get(target)
        if current is not None and current.is_open:
            self._escalate(case, _R.REPEAT_CONTACT, now, summary, out, target=target)
        else:
            own = escalation_id(self.domain, case.contact_id, _R.REPEAT_CONTACT)
            self._escalate(case, _R.REPEAT_CONTACT, now, summary, out)
            if own in self._escalations:
                history.repeat_escalation = own

    # --- deadlines ----------------------------------------------------------------------

    def _sla_breached(self, contact_id: str, at: float, out: list[EscalationChange]) -> None:
        case = self._cases.get(contact_id)
        if case is None or not case.sla.running:
            return
        triggers = self._triggers_of(case.queue)
        until = "an agent" if triggers.sla_clock is SlaClock.QUEUE else "a resolution"
        summary = (
            f"waited {_duration(triggers.wait_threshold_s)} of business time for {until} "
            f"in {case.queue}, the threshold"
        )
        self._escalate(case, _R.WAIT_THRESHOLD, at, summary, out)

    def _pause_overran(self, contact_id: str, at: float, out: list[EscalationChange]) -> None:
        case = self._cases.get(contact_id)
        if case is None or case.pause is None:
            return
        pause = case.pause
        summary = (
            f"{'on hold' if pause.kind == 'hold' else 'paused'} "
            f"({pause.reason.slug.replace('_', ' ')}) for {_duration(at - pause.started_at)}, "
            f"customer was told {_duration(pause.promised_s)}"
        )
        self._escalate(case, _R.PAUSE_OVERRUN, at, summary, out)

    def _re_escalate(self, esc_id: str, at: float, out: list[EscalationChange]) -> None:
        esc = self._escalations.get(esc_id)
        if esc is None or esc.status is not EscalationStatus.OPEN:
            return
        tier = self.policy.next_tier(esc.tier)
        if tier is None:
            return
        esc = replace(
            esc,
            tier=tier,
            assignee=self.policy.teams[esc.team].person(tier),
            previous_tiers=(*esc.previous_tiers, esc.tier),
            ack_deadline=self.policy.ack_deadline(tier, at),
            version=_next_version(esc.version, at),
        )
        self._store_change(esc, EscalationChangeKind.RE_ESCALATED, out)
        self._arm_ack(esc)

    def _drop_deadline_reached(
        self, contact_id: str, at: float, out: list[EscalationChange]
    ) -> None:
        """An open case went idle (its closing event was lost: close it) or a closed case's
        retention ended: forget it, unless one of its escalations is still open (resolving
        that one re-arms the drop)."""
        case = self._cases.get(contact_id)
        if case is None:
            return
        if case.phase is not Phase.DONE:
            # Idle past forget_idle_s: the closing event was lost. Stop its clocks.
            case.phase, case.closed_at, case.pause = Phase.DONE, at, None
            self._deadlines.cancel((_PAUSE, contact_id))
            self._sync_sla_clock(case, at)
            self._dirty.add(case_key(contact_id))
            if not self._has_open(case):
                self._forget(case)
                return
        self._forget_if_finished(case, at)

    def _prune_history(self, customer_id: str, at: float) -> None:
        history = self._customers.get(customer_id)
        if history is None:
            return
        history.arrivals = [a for a in history.arrivals if a[0] > at - self._history_window_s]
        self._dirty.add(customer_key(customer_id))
        if history.arrivals:
            self._arm_history(history)
        else:
            del self._customers[customer_id]

    # --- building blocks ----------------------------------------------------------------

    def _escalate(
        self,
        case: Case,
        reason: EscalationReason,
        at: float,
        summary: str,
        out: list[EscalationChange],
        *,
        target: str | None = None,
    ) -> None:
        """Raise the case's escalation for ``reason``, or update it with new evidence.

        A resolved one stays resolved: a case escalates once per reason.
        """
        if reason not in self._triggers_of(case.queue).enabled:
            return
        if target is None:
            seen = case.evidence[reason.slug] = case.evidence.get(reason.slug, 0) + 1
            if seen > 1:
                summary = f"{summary} (seen {seen} times)"
        self._dirty.add(case_key(case.contact_id))
        esc_id = target or escalation_id(self.domain, case.contact_id, reason)
        current = self._escalations.get(esc_id)
        if current is None:
            queue = self.policy.queues.get(case.queue)
            team = None if queue is None else self.policy.teams.get(queue.team)
            tier = self.policy.first_tier
            esc = Escalation(
                escalation_id=esc_id,
                contact_id=case.contact_id,
                domain=self.domain,
                queue=case.queue,
                team=UNASSIGNED_TEAM if team is None else team.name,
                reason=reason,
                severity=self.policy.severity_for(reason, case.priority),
                tier=tier,
                assignee="" if team is None else team.person(tier),
                status=EscalationStatus.OPEN,
                raised_at=at,
                ack_deadline=self.policy.ack_deadline(tier, at),
                summary=summary,
                customer=case.customer,
                version=_next_version(0, at),
                priority=case.priority,
            )
            if team is None:  # its queue is no longer configured: the head of service's
                esc = self._rehomed(esc, f"without a home: queue {case.queue!r} is gone", at)
            self._store_change(esc, EscalationChangeKind.RAISED, out)
            self._arm_ack(esc)
            if reason is _R.WAIT_THRESHOLD:
                self._deadlines.cancel((_SLA, case.contact_id))
        elif current.is_open and current.summary != summary:
            esc = replace(current, summary=summary, version=_next_version(current.version, at))
            self._store_change(esc, EscalationChangeKind.UPDATED, out)

    def _auto_resolve(
        self,
        case: Case,
        reasons: frozenset[EscalationReason],
        code: str,
        now: float,
        out: list[EscalationChange],
    ) -> None:
        for reason in sorted(reasons):
            esc = self._escalations.get(escalation_id(self.domain, case.contact_id, reason))
            if esc is not None and esc.is_open:
                self._resolve(esc, now, code, SYSTEM, out)

    def _resolve(
        self,
        esc: Escalation,
        now: float,
        code: str,
        by: str,
        out: list[EscalationChange],
        note: str = "",
    ) -> Escalation:
        notes = (*esc.notes, EscalationNote(by, note, now)) if note.strip() else esc.notes
        esc = replace(
            esc,
            status=EscalationStatus.RESOLVED,
            resolved_at=now,
            resolution_code=code,
            resolved_by=by,
            ack_deadline=None,
            notes=notes,
            version=_next_version(esc.version, now),
        )
        self._deadlines.cancel((_ACK, esc.escalation_id))
        self._store_change(esc, EscalationChangeKind.RESOLVED, out)
        return esc

    def _store_change(
        self, esc: Escalation, kind: EscalationChangeKind, out: list[EscalationChange]
    ) -> None:
        """Hold ``esc`` as the escalation's state and append the change to publish to ``out``."""
        self._escalations[esc.escalation_id] = esc
        out.append(EscalationChange(kind, esc))

    def _update_open_with_customer(
        self, case: Case, now: float, out: list[EscalationChange]
    ) -> None:
        """Open escalations raised before the arrival was seen learn the customer and
        priority (and the severity that follows); each publishes an UPDATED change."""
        for reason in _R:
            esc = self._escalations.get(escalation_id(self.domain, case.contact_id, reason))
            if esc is not None and esc.is_open:
                esc = replace(
                    esc,
                    customer=case.customer,
                    priority=case.priority,
                    severity=self.policy.severity_for(reason, case.priority),
                    version=_next_version(esc.version, now),
                )
                self._store_change(esc, EscalationChangeKind.UPDATED, out)

    def _authorized(self, esc_id: str, by: str, now: float) -> Escalation:
        """The escalation ``by`` may act on at ``now`` (as held before the due deadlines:
        they may re-escalate it, never resolve it; they drop it with its case)."""
        esc = self._escalations.get(esc_id)
        if esc is None or self._held_after_tick(esc.contact_id, now) is None:
            raise NotFound(f"{esc_id}: no such escalation")
        if esc.team not in self.teams_visible_to(by):
            raise PermissionDenied(f"{by!r} may not act on team {esc.team!r}")
        return esc

    def _required(self, contact_id: str, what: str, now: float) -> None:
        if self._held_after_tick(contact_id, now) is None:
            raise UnknownContact(f"{what} for unknown contact {contact_id!r}: its queue is unknown")

    def _held_after_tick(self, contact_id: str, now: float) -> Case | None:
        """The case as :meth:`tick` at ``now`` would leave it held, without firing anything.

        Only the case's own drop deadline forgets it (:meth:`_drop_deadline_reached`; a closed
        case's is armed when the retention ends), and not if one of its escalations is open by then:
        already, or raised first by its SLA or pause deadline (each armed only when firing
        would raise). Deadlines never resolve an escalation.
        """
        case = self._cases.get(contact_id)
        if case is None:
            return None
        drop = (_DROP, contact_id)
        drop_at = self._deadlines.get(drop)
        if drop_at is None or drop_at > now or self._has_open(case):
            return case
        for kind, reason in ((_SLA, _R.WAIT_THRESHOLD), (_PAUSE, _R.PAUSE_OVERRUN)):
            if (
                self._deadlines.fires_before((kind, contact_id), drop)
                and escalation_id(self.domain, contact_id, reason) not in self._escalations
            ):
                return case
        return None

    def _known_queue(self, queue: str) -> None:
        if queue not in self.policy.queues:
            raise UnknownQueue(f"queue {queue!r} is not in the escalation policy")

    def _case_or_new_provisional(self, contact_id: str, queue: str, now: float) -> Case | None:
        """The case; or, when a routing decision overtakes the arrival on a known queue, a
        new provisional one, stored with its SLA clock started and its drop scheduled."""
        case = self._cases.get(contact_id)
        if case is not None or queue not in self.policy.queues:
            return case
        case = Case(contact_id, queue, Customer(), Priority.NORMAL, now, now, seen_arrival=False)
        self._cases[contact_id] = case
        self._sync_sla_clock(case, now)
        self._note_activity(case, now)
        return case

    def _note_activity(self, case: Case, now: float) -> None:
        """The case was just seen: it goes to the changelog and its drop deadline is re-armed
        (idle cases are forgotten ``forget_idle_s`` after they were last seen)."""
        case.last_seen = max(case.last_seen, now)
        self._dirty.add(case_key(case.contact_id))
        self._arm_drop(case)

    def _has_open(self, case: Case) -> bool:
        return any(
            (esc := self._escalations.get(escalation_id(self.domain, case.contact_id, r)))
            is not None
            and esc.is_open
            for r in _R
        )

    def _forget_if_finished(self, case: Case, now: float) -> None:
        """Forget a closed case once nothing is open and late events have had their time."""
        if case.phase is not Phase.DONE or self._has_open(case):
            return
        assert case.closed_at is not None  # noqa: S101 -- DONE always sets it
        if now >= case.closed_at + self.policy.retain_closed_s:
            self._forget(case)
        else:  # its drop deadline may have fired while an escalation was still open
            self._arm_drop(case)

    def _forget(self, case: Case) -> None:
        """Delete the case (a changelog deletion), its escalations (each to be deleted from
        the ``escalations`` topic: :meth:`take_retired`) and all its deadlines."""
        contact_id = case.contact_id
        del self._cases[contact_id]
        self._dirty.add(case_key(contact_id))
        for reason in _R:
            esc_id = escalation_id(self.domain, contact_id, reason)
            retired = self._escalations.pop(esc_id, None)
            if retired is not None:
                self._retired.append(retired)
            self._deadlines.cancel((_ACK, esc_id))
        for kind in (_SLA, _PAUSE, _DROP):
            self._deadlines.cancel((kind, contact_id))

    # --- clocks -------------------------------------------------------------------------

    def _sync_sla_clock(self, case: Case, now: float) -> None:
        """Start or stop the SLA clock to match the case's state, then re-arm its deadline.

        It runs while the customer waits for the center: in line, and (for a RESOLUTION
        clock) with an agent too; never once done or while awaiting the customer.
        """
        if case.awaiting_customer or case.phase is Phase.DONE:
            running = False
        elif case.phase is Phase.WAITING:
            running = True
        else:
            running = self._triggers_of(case.queue).sla_clock is SlaClock.RESOLUTION
        if running:
            case.sla.start(now)
        elif case.sla.since is not None:  # stopping: bank on this queue's calendar
            case.sla.stop(now, self._calendar(case))
        self._arm_sla(case)

    def _calendar(self, case: Case) -> BusinessCalendar:
        """The business hours the case's SLA clock counts on: its queue's (always open for
        a queue no longer configured, whose case came back with an open escalation)."""
        queue = self.policy.queues.get(case.queue)
        return queue.calendar if queue is not None else ALWAYS_OPEN

    def _triggers_of(self, queue: str) -> TriggerSettings:
        """The queue's trigger settings; the policy's defaults for a queue no longer configured."""
        found = self._triggers.get(queue)
        return found if found is not None else self.policy.triggers

    def _arm_sla(self, case: Case) -> None:
        key = (_SLA, case.contact_id)
        triggers = self._triggers_of(case.queue)
        if (
            case.sla.since is None  # stopped: nothing to breach
            or _R.WAIT_THRESHOLD not in triggers.enabled
            or escalation_id(self.domain, case.contact_id, _R.WAIT_THRESHOLD) in self._escalations
        ):
            self._deadlines.cancel(key)
            return
        when = case.sla.reaches(triggers.wait_threshold_s, self._calendar(case))
        if when is None:
            self._deadlines.cancel(key)
        else:
            self._deadlines.set(key, when)

    def _arm_pause(self, case: Case) -> None:
        key = (_PAUSE, case.contact_id)
        pause = case.pause
        triggers = self._triggers_of(case.queue)
        if (
            pause is None
            or case.awaiting_customer  # the customer, not the center, is keeping it waiting
            or pause.promised_s <= 0
            or _R.PAUSE_OVERRUN not in triggers.enabled
        ):
            self._deadlines.cancel(key)
        else:
            self._deadlines.set(key, pause.started_at + pause.promised_s + triggers.pause_grace_s)

    def _arm_ack(self, esc: Escalation) -> None:
        key = (_ACK, esc.escalation_id)
        if (
            esc.status is EscalationStatus.OPEN
            and esc.ack_deadline is not None
            and self.policy.next_tier(esc.tier) is not None
        ):
            self._deadlines.set(key, esc.ack_deadline)
        else:
            self._deadlines.cancel(key)

    def _arm_drop(self, case: Case) -> None:
        if case.phase is Phase.DONE and case.closed_at is not None:
            when = case.closed_at + self.policy.retain_closed_s
        else:
            when = case.last_seen + self.policy.forget_idle_s
        self._deadlines.set((_DROP, case.contact_id), when)

    def _arm_history(self, history: History) -> None:
        oldest = history.arrivals[0][0]
        self._deadlines.set((_HISTORY, history.customer_id), oldest + self._history_window_s)

    def _entity(self, key: str) -> dict[str, Any] | None:
        if key == POLICY_KEY:
            return {"version": self.policy_version, "document": self.policy_document}
        kind, _, ident = key.partition("/")
        if kind == "case":
            case = self._cases.get(ident)
            return None if case is None else case_record(case)
        history = self._customers.get(ident)
        return None if history is None else history_record(history)


def stored_policy(case_facts: Mapping[str, Any]) -> tuple[int, str]:
    """The policy version and document a domain's changelog holds ((0, ""): the default;
    an unreadable entry reads as the default too, and the caller says so)."""
    stored = case_facts.get(POLICY_KEY)
    if not isinstance(stored, Mapping):
        return 0, ""
    version, document = stored.get("version"), stored.get("document")
    if isinstance(version, bool) or not isinstance(version, int) or not isinstance(document, str):
        return 0, ""
    return version, document


def oldest_first(escalations: Iterable[Escalation]) -> list[Escalation]:
    """The order managers see escalations in: by raise time, then id (so ties are stable)."""
    return sorted(escalations, key=lambda e: (e.raised_at, e.escalation_id))


def _anonymous(customer: Customer) -> Customer:
    """The customer without what identifies them (the language stays: how to speak)."""
    return Customer(customer_id="", language=customer.language)


#: Notes one escalation keeps (each at most 2,000 characters: the API's bound).
MAX_NOTES = 100
#: Contact ids a repeat-contact summary lists (the latest).
SUMMARY_CONTACTS = 10


def _homeless(esc: Escalation, policy: EscalationPolicy) -> str:
    """Why the policy no longer has a place for ``esc`` ("" if it has)."""
    if esc.team != UNASSIGNED_TEAM and esc.team not in policy.teams:
        return f"team {esc.team!r} is no longer configured"
    if esc.queue not in policy.queues:
        return f"queue {esc.queue!r} is no longer configured"
    return ""


def _next_version(previous: int, at: float) -> int:
    """Hybrid logical clock: always above the previous version and the change's millisecond."""
    return max(previous + 1, int(at * 1000))


def _duration(seconds: float) -> str:
    """``45s``, ``5m 00s``, ``2h 05m``: how long, as a manager reads it."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"
