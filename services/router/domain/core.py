"""The routing core: one sans-I/O state machine per routing domain.

API::

    core = RoutingCore(policy)
    decisions = core.apply(event, now)      # an input dataclass from ``model``
    decisions = core.tick(now)              # due timers: offers, wrap-up, relaxation, positions
    core.next_deadline()                    # when ``tick`` has work next, or None
    core.take_changes()                     # {"agent:<id>" | "contact:<id>" | ...: snapshot}
    core.snapshot()                         # every entity, as take_changes writes them
    RoutingCore.restore(policy, snapshots)  # an identical core, timers and indexes included
    core.change_policy(policy, version, now, document)  # the domain's new policy, live
    core.queue_stats(now), core.agent_views(), core.contact_view(contact_id, now)

This module holds the event handlers and the routing decisions; around it:
``states.py`` (statuses and their transition tables), ``records.py`` (agent, contact and
queue records and their snapshots), ``index.py`` (the ready-agent heaps, waiting lines
and staffing counts described below), ``read_model.py`` (statistics and views, the
service-level rule) and ``services.common.deadlines`` (the timers).

Indexes (why a decision costs about the same at 100 and 100,000 agents):

- *Ready agents* live in heaps keyed by ``(strategy, channel, language, skill, level)``,
  where ``level`` is the agent's proficiency in that skill. A contact needing ``skill``
  at proficiency >= p looks at the heads of at most ``11 - p`` heaps; the heap order is
  the strategy's key (idle-since, occupancy, last-offer sequence), so the best agent is a
  head. Entries are invalidated lazily by a per-agent version number, never searched.
- *Waiting contacts* live in one sorted list per queue, keyed by
  ``(enqueued_at - priority_boost, seq)``. The key never changes while the contact waits,
  so aging needs no re-sorting: a normal contact that has waited longer than the VIP
  boost simply sorts before a VIP who arrived later, and nobody starves. A freed agent
  scans only the queues it can serve, from the head, and stops at the first contact it
  may take.
- *Timers* are one :class:`~services.common.deadlines.Deadlines` keyed by
  ``(kind, contact or agent id, version)``; one whose version is stale when it fires is
  skipped.

Policy changes (:meth:`RoutingCore.change_policy`, a domain's new policy version, applied
live as an input in order with the domain's events) never lose a contact:

- a waiting contact whose queue the new policy removes moves to the policy's
  ``fallback_queue`` (``ContactRequeued``, reason POLICY_CHANGED) or, without one, is
  *parked* (``ContactUnroutable`` saying which queue which version removed): in no line,
  visible in RouterAdmin, until it is transferred, ends, or a later version brings its
  queue back or names a fallback (``ContactRequeued`` POLICY_CHANGED);
- offers ringing and contacts in hand complete under the terms they were made under (the
  removed queue's service-level threshold, offer timeout and wrap-up are kept, persisted,
  while such contacts remain); a later requeue of one goes to the fallback or parks;
- agents keep their state, contacts in hand and capacity; kept queues keep their
  counters, removed queues' counters are dropped, new queues start at zero;
- kept queues' changed skills, thresholds, steps and strategies apply at once: waiting
  contacts that used the queue's default skills take the new ones, their relaxation step
  is recomputed from how long they have waited, and every waiting contact is offered to
  the agents free now.

The applied version and document are persisted (``policy:``) so a restore, a takeover
and the read views of other replicas rebuild the domain with its own policy.

Invariants (checked by the property tests): an agent never holds more contacts than its
capacity; a contact is never on two offers; a contact offered or assigned meets its
requirements as relaxed at that moment; every contact ends with exactly one
``ContactClosed`` or is still waiting; a rejected or timed-out contact keeps its place.
An input is applied wholly or not at all: every handler checks before it changes
anything, so a :class:`RoutingError` leaves state, timers, indexes and the changelog as
they were (no rollback needed on the hot path).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from services.common.deadlines import Deadlines
from services.router.domain import read_model
from services.router.domain.errors import (
    InvalidTransition,
    PolicyError,
    StaleOffer,
    StalePolicy,
    UnknownAgent,
    UnknownContact,
    UnknownOffer,
    UnknownQueue,
    UnknownSkill,
)
from services.router.domain.index import ANY, ReadyAgents, StaffCounts, WaitingLines
from services.router.domain.model import (
    AgentLoggedIn,
    AgentLoggedOut,
    AgentSkillsChanged,
    AgentState,
    AgentStateChanged,
    AgentStatusChanged,
    Channel,
    ContactAbandoned,
    ContactArrived,
    ContactAssigned,
    ContactClosed,
    ContactEnded,
    ContactRequeued,
    ContactTransferred,
    ContactUnroutable,
    CustomerErased,
    Decision,
    Input,
    OfferAccepted,
    OfferMade,
    OfferRejected,
    OfferTimedOut,
    QueuePositionUpdated,
    RequeueReason,
)
from services.router.domain.policy import QueuePolicy, RoutingPolicy, policy_from_document
from services.router.domain.read_model import AgentView, ContactView, QueueStats
from services.router.domain.records import TOLD_UNKNOWN, AgentRecord, ContactRecord, QueueCounts
from services.router.domain.states import ASSIGNED, OFFERED, PARKED, WAITING

__all__ = ["AgentView", "ContactView", "QueueStats", "RoutingCore"]

MISSED_OFFER = "missed offer"
#: An estimate must move by this share (and at least ESTIMATE_MIN_CHANGE_S) to be re-sent.
ESTIMATE_CHANGE_SHARE = 0.2
ESTIMATE_MIN_CHANGE_S = 10.0
#: Weight of the newest handle time in the per-queue moving average.
HANDLE_EWMA_ALPHA = 0.2

_OFFER, _WRAP, _RELAX, _RETRY = "offer", "wrap", "relax", "retry"
#: How far a freed agent scans one queue's line for a contact it may take.
SCAN_LIMIT = 256


class RoutingCore:
    """Routing state of one domain. Not thread-safe; one writer (the consume loop)."""

    def __init__(self, policy: RoutingPolicy) -> None:
        self.policy = policy
        #: The domain's applied policy version (0: the configured default) and its
        #: document ("" for the default), persisted as the ``policy:`` entity.
        self.policy_version = 0
        self.policy_document = ""
        #: Terms of removed queues that offers ringing or contacts in hand were made
        #: under (they complete under them); dropped at a policy change once unused.
        self._retired: dict[str, QueuePolicy] = {}
        self._agents: dict[str, AgentRecord] = {}
        self._contacts: dict[str, ContactRecord] = {}
        #: What :meth:`restore` could not place (logged and counted by the adapter).
        self.restore_problems: list[str] = []
        self._restore_decisions: list[Decision] = []
        self._queues: dict[str, QueueCounts] = {q: QueueCounts() for q in policy.queues}
        self._lines = WaitingLines(policy.queues, policy.boost)
        self._waiting = self._lines.by_queue  # queue -> line, read-only here
        self._ready = ReadyAgents(
            {q.strategy for q in policy.queues.values()}, policy.max_total, self._agents
        )
        self._staff = StaffCounts()
        #: (kind, contact or agent id, version): a timer whose version no longer matches
        #: its entity when it fires is skipped.
        self._timers: Deadlines[tuple[str, str, int]] = Deadlines()
        self._seq = 0
        self._offer_seq = 0
        self._unpersisted: set[str] = set()  # changelog keys changed since take_changes
        self._moved_queues: set[str] = set()  # queues whose positions need re-sending
        self._refresh_due: float | None = None
        self._last_refresh = 0.0
        self._known_skills: frozenset[str] = frozenset()
        self._queues_by_anchor: dict[str, list[tuple[int, str]]] = {}
        self._overflow_from: dict[str, list[tuple[str, int]]] = {}
        self._index_policy()

    def _index_policy(self) -> None:
        """The lookups derived from the policy alone (at creation and at a policy change)."""
        policy = self.policy
        self._known_skills = frozenset(
            s for qp in policy.queues.values() for s, _ in (*qp.skills, *qp.optional_skills)
        )
        # anchor skill -> (policy order, queue) of the queues that require it (ANY: none)
        self._queues_by_anchor = {}
        for order, qp in enumerate(policy.queues.values()):
            anchor = min(s for s, _ in qp.skills) if qp.skills else ANY
            self._queues_by_anchor.setdefault(anchor, []).append((order, qp.name))
        # queue -> queues whose contacts may overflow into it (by step index)
        self._overflow_from = {q: [] for q in policy.queues}
        for qp in policy.queues.values():
            for i, step in enumerate(qp.steps, start=1):
                for target in step.overflow_queues:
                    self._overflow_from[target].append((qp.name, i))

    # ------------------------------------------------------------------ entry points

    def apply(self, event: Input, now: float) -> list[Decision]:
        """Apply one input; returns the decisions it caused (possibly none)."""
        out: list[Decision] = []
        match event:
            case ContactArrived():
                self._arrive(event, now, out)
            case ContactAbandoned():
                self._abandon(event.contact_id, now, out)
            case ContactEnded():
                self._end(event.contact_id, now, out)
            case ContactTransferred():
                self._transfer(event, now, out)
            case AgentLoggedIn():
                self._login(event, now, out)
            case AgentLoggedOut():
                self._logout(event.agent_id, now, out)
            case AgentStateChanged():
                self._state_change(event, now, out)
            case AgentSkillsChanged():
                self._skills_change(event, now, out)
            case OfferAccepted():
                self._accept(event, now, out)
            case OfferRejected():
                self._reject(event, now, out)
            case CustomerErased() if event.customer_id:
                self._erase(event.customer_id)
        return out

    def _erase(self, customer_id: str) -> None:
        """Forget which contacts were this customer's (their only personal datum here)."""
        for contact_id, contact in self._contacts.items():
            if contact.customer_id == customer_id:
                contact.customer_id = ""
                self._persist_contact(contact_id)

    def tick(self, now: float) -> list[Decision]:
        """Fire every timer due at ``now`` and refresh positions of queues that moved."""
        out: list[Decision] = []
        while (due := self._timers.pop_due(now)) is not None:
            kind, key, version = due[1]
            if kind == _OFFER:
                self._offer_timeout(key, version, now, out)
            elif kind == _WRAP:
                self._wrap_end(key, version, now, out)
            elif kind == _RELAX:
                self._relax(key, version, now, out)
            elif kind == _RETRY:
                self._retry(key, version, now, out)
        if self._refresh_due is not None and self._refresh_due <= now:
            self._refresh_due = None
            self._last_refresh = now
            self._send_positions(now, out)
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`tick` has work next (a timer or a position refresh), or None."""
        due = self._timers.next()
        if self._refresh_due is not None and (due is None or self._refresh_due < due):
            return self._refresh_due
        return due

    def take_changes(self) -> dict[str, dict[str, Any] | None]:
        """Snapshots of every entity changed since the last call (``None`` = deleted)."""
        changes: dict[str, dict[str, Any] | None] = {}
        for key in self._unpersisted:
            kind, _, ident = key.partition(":")
            if kind == "agent":
                agent = self._agents.get(ident)
                changes[key] = agent.snapshot() if agent else None
            elif kind == "contact":
                contact = self._contacts.get(ident)
                changes[key] = contact.snapshot() if contact else None
            elif kind == "queue":
                counts = self._queues.get(ident)  # None: a policy change removed the queue
                changes[key] = counts.snapshot() if counts else None
            elif kind == "meta":
                changes[key] = {"seq": self._seq, "offer_seq": self._offer_seq}
            elif kind == "policy":
                changes[key] = self._policy_snapshot()
        self._unpersisted.clear()
        return changes

    def _policy_snapshot(self) -> dict[str, Any]:
        """The ``policy:`` entity: the applied version, its document, and the retired
        queues' terms that contacts in flight still need."""
        return {
            "version": self.policy_version,
            "document": self.policy_document,
            "retired": {
                name: {
                    "service_level_s": qp.service_level_s,
                    "offer_timeout_s": qp.offer_timeout_s,
                    "wrap_up_s": qp.wrap_up_s,
                }
                for name, qp in sorted(self._retired.items())
            },
        }

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every entity, as :meth:`take_changes` would write them (for checks and tests)."""
        entities: dict[str, dict[str, Any]] = {
            "meta:": {"seq": self._seq, "offer_seq": self._offer_seq}
        }
        if self.policy_version or self._retired:  # a domain on the default writes none
            entities["policy:"] = self._policy_snapshot()
        entities.update((f"queue:{q}", qs.snapshot()) for q, qs in self._queues.items())
        entities.update((f"agent:{a}", agent.snapshot()) for a, agent in self._agents.items())
        entities.update((f"contact:{c}", ct.snapshot()) for c, ct in self._contacts.items())
        return entities

    @classmethod
    def restore(cls, policy: RoutingPolicy, snapshots: Mapping[str, Any]) -> RoutingCore:
        """Rebuild a core from :meth:`take_changes` snapshots (latest per key).

        ``policy`` is the configured default; a domain whose snapshots hold a ``policy:``
        entity (a version it applied) is rebuilt with that version's document. Older
        snapshots have none: the default, version 0.

        Never fails on stored state: a stored document this build cannot read leaves the
        default in force (the version is kept, so an older record is still stale); a
        waiting contact of a queue no longer configured moves to the fallback queue or is
        parked, an offer ringing or a contact in hand in one completes; each is listed in
        :attr:`restore_problems`, and the decisions it needs are owed
        (:meth:`take_restore_decisions`) so the telephony platform and managers learn.
        """
        problems: list[str] = []
        stored = snapshots.get("policy:")
        if stored:
            document = str(stored.get("document", ""))
            if document:
                try:
                    policy = policy_from_document(document, policy)
                except PolicyError as exc:
                    problems.append(
                        f"policy version {stored.get('version')}: {exc.reason}; "
                        "the configured default applies"
                    )
        core = cls(policy)
        core.restore_problems = problems
        if stored:
            core.policy_version = int(stored.get("version", 0))
            core.policy_document = str(stored.get("document", ""))
            for name, terms in dict(stored.get("retired", {})).items():
                core._retired[name] = QueuePolicy(
                    name,
                    (),
                    service_level_s=float(terms["service_level_s"]),
                    offer_timeout_s=float(terms["offer_timeout_s"]),
                    wrap_up_s=float(terms["wrap_up_s"]),
                )
        homeless: list[ContactRecord] = []
        for key, snap in snapshots.items():
            kind, _, ident = key.partition(":")
            if snap is None:
                continue
            if kind == "meta":
                core._seq = int(snap["seq"])
                core._offer_seq = int(snap["offer_seq"])
            elif kind == "queue" and ident in core._queues:
                core._queues[ident] = QueueCounts.from_snapshot(snap)
            elif kind == "agent":
                core._agents[ident] = AgentRecord.from_snapshot(ident, snap)
            elif kind == "contact":
                contact = core._contacts[ident] = ContactRecord.from_snapshot(ident, snap)
                if contact.queue not in core._queues and contact.status == WAITING:
                    homeless.append(contact)  # its queue is gone: never fatal, said
                elif contact.status == PARKED and (
                    contact.queue in core._queues or policy.fallback_queue
                ):
                    homeless.append(contact)  # its queue is back, or there is a fallback
        for agent in core._agents.values():
            if agent.state != AgentState.LOGGED_OUT:
                core._staff.add(agent, +1)
            if agent.state == AgentState.WRAP_UP:
                core._timers.set((_WRAP, agent.agent_id, agent.version), agent.wrap_until)
            core._ready.push(agent)
        for contact in core._contacts.values():
            core._seq = max(core._seq, contact.seq + 1)
            if contact.status == WAITING and contact.queue in core._queues:
                core._lines.add(contact)
            elif contact.status == OFFERED:
                core._timers.set(
                    (_OFFER, contact.contact_id, contact.attempt), contact.offer_expires
                )
            core._schedule_relaxation(contact)
        for contact in homeless:
            core._restore_placement(contact)
        core._unpersisted.clear()
        if any(c.status == WAITING for c in core._contacts.values()):
            core._moved_queues.update(core.policy.queues)
            core._refresh_due = 0.0
        return core

    def _restore_placement(self, contact: ContactRecord) -> None:
        """A restored contact that must wait in a queue the policy no longer has (to the
        fallback, or parked), or a parked one whose queue is back (in line again)."""
        gone = contact.queue
        out = self._restore_decisions
        if contact.status == PARKED and gone in self._queues:
            self._unpark(contact, None, out)
            self.restore_problems.append(f"contact {contact.contact_id}: back in {gone!r}")
            return
        self._rehome(contact, None, f"queue {gone!r} is no longer configured", out)
        where = f"moved to {contact.queue!r}" if contact.status == WAITING else "parked"
        self.restore_problems.append(
            f"contact {contact.contact_id}: queue {gone!r} is no longer configured; {where}"
        )

    def take_restore_decisions(self) -> list[Decision]:
        """The decisions :meth:`restore` owes (once)."""
        decisions, self._restore_decisions = self._restore_decisions, []
        return decisions

    # ------------------------------------------------------------------ policy changes

    def change_policy(
        self, policy: RoutingPolicy, version: int, now: float, document: str = ""
    ) -> list[Decision]:
        """Apply ``version`` of the domain's policy (``document``: its text, persisted so
        a restore rebuilds the domain with it). Wholly or not at all: a version not newer
        than the applied one is :class:`StalePolicy` and changes nothing. What becomes of
        contacts, offers, agents and counters: see the module's docstring."""
        if version <= self.policy_version:
            raise StalePolicy(
                f"policy version {version} is stale: version {self.policy_version} is applied"
            )
        out: list[Decision] = []
        in_flight = {c.queue for c in self._contacts.values() if c.status in (OFFERED, ASSIGNED)}
        retired = {
            q: self._terms(q) for q in sorted(in_flight) if q not in policy.queues
        }  # the old terms, while they are still needed
        self.policy, self.policy_version, self.policy_document = policy, version, document
        self._retired = retired
        self._unpersisted.add("policy:")
        for queue in self._queues:
            if queue not in policy.queues:
                self._persist_queue_counts(queue)  # dropped: deleted from the changelog
        self._queues = {q: self._queues.get(q) or QueueCounts() for q in policy.queues}
        self._lines = WaitingLines(policy.queues, policy.boost)  # the boost may have changed
        self._waiting = self._lines.by_queue
        self._ready = ReadyAgents(
            {q.strategy for q in policy.queues.values()}, policy.max_total, self._agents
        )
        for agent in self._agents.values():
            self._ready.push(agent)
        self._index_policy()
        self._moved_queues &= set(policy.queues)
        for contact in sorted(self._contacts.values(), key=lambda c: c.seq):
            self._timers.cancel((_RELAX, contact.contact_id, contact.step + 1))
            kept = policy.queues.get(contact.queue)
            if kept is not None:  # the queue's skills (not the arrival's own): the new ones
                required = contact.required if contact.own_required else dict(kept.skills)
                optional = contact.optional if contact.own_optional else dict(kept.optional_skills)
                if (required, optional) != (contact.required, contact.optional):
                    contact.required, contact.optional = required, optional
                    self._persist_contact(contact.contact_id)
            if contact.status in (OFFERED, ASSIGNED):
                self._schedule_relaxation(contact)  # none if its queue was removed
                continue
            if kept is None:
                if contact.status == WAITING or policy.fallback_queue:
                    why = f"queue {contact.queue!r} removed by policy version {version}"
                    self._rehome(contact, now, why, out)
                continue  # parked, and still nowhere to go
            if contact.status == PARKED:
                self._unpark(contact, now, out)
                continue
            step = self._steps_due(kept, contact, now)
            if step != contact.step:
                contact.step = step
                self._persist_contact(contact.contact_id)
            self._lines.add(contact)
            self._schedule_relaxation(contact)
        self._refresh_all_positions_soon()
        # Re-evaluate at once: every agent free now takes the best contacts it may.
        free = sorted(
            (a for a in self._agents.values() if a.state == AgentState.AVAILABLE),
            key=lambda a: (a.idle_since, a.agent_id),
        )
        for agent in free:
            self._dispatch_agent(agent, now, out)
        return out

    def _terms(self, queue: str) -> QueuePolicy:
        """The terms contacts of ``queue`` are handled under: the policy's, a removed
        queue's kept for the contacts in flight in it, or the defaults."""
        return self.policy.queues.get(queue) or self._retired.get(queue) or QueuePolicy(queue, ())

    @staticmethod
    def _steps_due(qp: QueuePolicy, contact: ContactRecord, now: float | None) -> int:
        """Relaxation steps of ``qp`` a contact that waited since it was enqueued has
        reached (``now`` unknown: none yet; their timers, due, fire at the next tick)."""
        if now is None:
            return 0
        waited = now - contact.enqueued_at
        return sum(1 for step in qp.steps if step.after_s <= waited)

    def _rehome(
        self, contact: ContactRecord, now: float | None, why: str, out: list[Decision]
    ) -> None:
        """A contact that must wait, in a queue the policy does not have: into the
        fallback queue (on the fallback's terms, keeping its place by waiting time), or
        parked and reported unroutable with ``why``."""
        self._timers.cancel((_RELAX, contact.contact_id, contact.step + 1))
        fallback = self.policy.fallback_queue
        if not fallback:
            if contact.status != PARKED:
                contact.move_to(PARKED)
            contact.unroutable_reported = True
            self._persist_contact(contact.contact_id)
            out.append(ContactUnroutable(contact.contact_id, contact.queue, why))
            return
        qp = self.policy.queues[fallback]
        contact.queue = fallback
        contact.required = dict(qp.skills)
        contact.optional = dict(qp.optional_skills)
        contact.own_required = contact.own_optional = False
        contact.language = contact.language or qp.language
        self._unpark(contact, now, out)

    def _unpark(self, contact: ContactRecord, now: float | None, out: list[Decision]) -> None:
        """Into the line of its (configured) queue again, said with a POLICY_CHANGED requeue."""
        if contact.status == PARKED:
            contact.move_to(WAITING)
        contact.step = self._steps_due(self.policy.queues[contact.queue], contact, now)
        self._lines.add(contact)
        self._refresh_positions_soon(contact.queue)
        self._schedule_relaxation(contact)
        self._persist_contact(contact.contact_id)
        out.append(ContactRequeued(contact.contact_id, contact.queue, RequeueReason.POLICY_CHANGED))
        self._check_routable(contact, out)

    # ------------------------------------------------------------------ views

    def queue_stats(self, now: float) -> list[QueueStats]:
        """Every queue of the policy, as :mod:`read_model` computes them."""
        ringing: dict[str, list[ContactRecord]] = {name: [] for name in self._queues}
        for c in self._contacts.values():
            if c.status == OFFERED and c.queue in ringing:
                ringing[c.queue].append(c)
        stats = []
        for name, counts in self._queues.items():
            line = self._waiting[name]
            stats.append(
                read_model.queue_stats(
                    name,
                    counts,
                    (self._contacts[c] for _, _, c in line),
                    ringing[name],
                    now,
                    estimated_wait=(
                        self._estimate(name, len(line) + 1)
                        if self._could_be_taken(self._probe(name))
                        else None
                    ),
                    staffed_agents=self._staffed(name),
                )
            )
        return stats

    def agent_views(self) -> list[AgentView]:
        return [read_model.agent_view(agent) for agent in self._agents.values()]

    def contact_view(self, contact_id: str, now: float) -> ContactView | None:
        contact = self._contacts.get(contact_id)
        if contact is None:
            return None
        position = self._lines.position(contact) if contact.status == WAITING else 0
        estimate: float | None = 0.0
        if position:
            estimate = (
                self._estimate(contact.queue, position) if self._could_be_taken(contact) else None
            )
        elif contact.status == PARKED:
            estimate = None  # in no line: nobody can say
        return ContactView(
            contact_id=contact_id,
            queue=contact.queue,
            status=contact.status,
            position=position,
            estimated_wait=estimate,
            agent_id=contact.agent,
            # the wait ends when an agent takes the contact (a transfer starts it again)
            waited=(contact.assigned_at if contact.status == ASSIGNED else now)
            - contact.enqueued_at,
            channel=Channel(contact.channel),
        )

    # ------------------------------------------------------------------ contact events

    def _arrive(self, event: ContactArrived, now: float, out: list[Decision]) -> None:
        if event.contact_id in self._contacts:
            return  # a repeated arrival: already routing it
        qp = self.policy.queues.get(event.queue)
        if qp is None:
            raise UnknownQueue(f"queue {event.queue!r} is not configured")
        for needed in (*event.required_skills, *event.optional_skills):
            if needed.skill not in self._known_skills:
                raise UnknownSkill(f"skill {needed.skill!r} is not configured in any queue")
        required = {r.skill: r.min_proficiency for r in event.required_skills} or dict(qp.skills)
        optional = {r.skill: r.min_proficiency for r in event.optional_skills} or dict(
            qp.optional_skills
        )
        contact = ContactRecord(
            contact_id=event.contact_id,
            queue=event.queue,
            channel=int(event.channel),
            required=required,
            optional=optional,
            language=event.language or qp.language,
            priority=int(event.priority),
            preferred_agent=event.preferred_agent_id,
            customer_id=event.customer_id,
            enqueued_at=now,
            seq=self._next_seq(),
            own_required=bool(event.required_skills),
            own_optional=bool(event.optional_skills),
        )
        if contact.preferred_agent and contact.preferred_agent not in self._agents:
            contact.preferred_agent = ""  # not logged in: do not hold the customer for them
        self._contacts[contact.contact_id] = contact
        self._queues[event.queue].arrived += 1
        self._refresh_positions_soon(event.queue)
        self._schedule_relaxation(contact)
        self._lines.add(contact)
        self._persist_contact(contact.contact_id)
        self._check_routable(contact, out)
        self._dispatch_contact(contact, now, out)

    def _abandon(self, contact_id: str, now: float, out: list[Decision]) -> None:
        contact = self._known_contact(contact_id)
        if contact.status == ASSIGNED:
            self._end(contact_id, now, out)  # hung up while talking: handled, not abandoned
            return
        freed = self._agents.get(contact.agent) if contact.status == OFFERED else None
        if contact.status == OFFERED:
            self._withdraw_offer(contact, freed, now, out)
        self._lines.remove(contact)
        qs = self._queues.get(contact.queue)
        if qs is not None:  # None: its queue was removed, with its counters
            qs.abandoned += 1
            qs.abandoned_late += (
                now - contact.enqueued_at > self.policy.queues[contact.queue].service_level_s
            )
            self._refresh_positions_soon(contact.queue)
        self._close(contact, now, abandoned=True, out=out)
        if freed is not None:
            self._dispatch_agent(freed, now, out)

    def _end(self, contact_id: str, now: float, out: list[Decision]) -> None:
        contact = self._known_contact(contact_id)
        freed = self._agents.get(contact.agent) if contact.status == OFFERED else None
        if contact.status == OFFERED:
            self._withdraw_offer(contact, freed, now, out)
        if contact.status == ASSIGNED:
            agent = self._agents.get(contact.agent)
            if agent is not None:
                agent.active.pop(contact_id, None)
                agent.handled += 1
                qs = self._queues.get(contact.queue)
                if qs is not None:  # None: its queue was removed, with its counters
                    handle = max(0.0, now - contact.assigned_at)
                    qs.handle_s = (
                        handle
                        if qs.handle_s == 0
                        else ((1 - HANDLE_EWMA_ALPHA) * qs.handle_s + HANDLE_EWMA_ALPHA * handle)
                    )
                    self._persist_queue_counts(contact.queue)
                if self._start_wrap_up(agent, self._terms(contact.queue), now, out):
                    freed = agent  # no wrap-up: free once the contact is closed
        self._lines.remove(contact)
        self._close(contact, now, abandoned=False, out=out)
        if freed is not None:
            self._dispatch_agent(freed, now, out)

    def _transfer(self, event: ContactTransferred, now: float, out: list[Decision]) -> None:
        contact = self._known_contact(event.contact_id)
        target = event.to_queue or contact.queue
        qp = self.policy.queues.get(target)
        if qp is None:
            raise UnknownQueue(f"transfer to unconfigured queue {target!r}")
        previous_agent = contact.agent
        freed = self._agents.get(contact.agent) if contact.status == OFFERED else None
        if contact.status == OFFERED:
            self._withdraw_offer(contact, freed, now, out)
            contact.offer_outcome = "it was withdrawn when the contact was transferred"
        elif contact.status == ASSIGNED:
            agent = self._agents.get(contact.agent)
            if agent is not None:
                agent.active.pop(contact.contact_id, None)
                agent.handled += 1
                # no wrap-up: takes work before the contact is requeued, as it always did
                # (so its next offer precedes this ContactRequeued in the decisions)
                if self._start_wrap_up(agent, self._terms(contact.queue), now, out):
                    self._dispatch_agent(agent, now, out)
        self._lines.remove(contact)
        if contact.queue in self._waiting:
            self._refresh_positions_soon(contact.queue)
        self._timers.cancel((_RELAX, contact.contact_id, contact.step + 1))
        contact.queue = target
        contact.required = dict(qp.skills)
        contact.optional = dict(qp.optional_skills)
        contact.own_required = contact.own_optional = False
        contact.language = contact.language or qp.language
        contact.move_to(WAITING)
        contact.agent, contact.offer_id = "", ""
        contact.step = 0
        contact.preferred_agent = event.to_agent_id if event.to_agent_id in self._agents else ""
        contact.declined = []
        self._lines.add(contact)
        self._refresh_positions_soon(target)
        self._schedule_relaxation(contact)
        self._persist_contact(contact.contact_id)
        out.append(
            ContactRequeued(contact.contact_id, target, RequeueReason.TRANSFERRED, previous_agent)
        )
        self._dispatch_contact(contact, now, out)
        if freed is not None:
            self._dispatch_agent(freed, now, out)

    # ------------------------------------------------------------------ agent events

    def _login(self, event: AgentLoggedIn, now: float, out: list[Decision]) -> None:
        existing = self._agents.get(event.agent_id)
        if existing is not None and existing.state != AgentState.LOGGED_OUT:
            return  # already logged in: a repeated login changes nothing
        capacity = {int(ch): n for ch, n in event.capacity} or {
            int(ch): n for ch, n in self.policy.capacity.items()
        }
        agent = AgentRecord(
            agent_id=event.agent_id,
            team=event.team,
            skills=dict(event.skills),
            languages=tuple(event.languages),
            capacity=capacity,
            idle_since=now,
        )
        if existing is not None:  # logged out with contacts still in hand
            agent.active = existing.active
            agent.handled = existing.handled
            agent.version = existing.version + 1
        self._agents[agent.agent_id] = agent
        self._staff.add(agent, +1)
        self._persist_agent(agent.agent_id)
        self._status(agent, out)
        self._refresh_all_positions_soon()
        self._ready.push(agent)
        self._dispatch_agent(agent, now, out)

    def _logout(self, agent_id: str, now: float, out: list[Decision]) -> None:
        agent = self._agents.get(agent_id)
        if agent is None or agent.state == AgentState.LOGGED_OUT:
            raise UnknownAgent(f"agent {agent_id!r} is not logged in")
        agent.move_to(AgentState.LOGGED_OUT, "")
        self._staff.add(agent, -1)
        self._release_offers(agent, now, out)
        self._reindex_and_persist(agent)
        self._status(agent, out)
        self._refresh_all_positions_soon()
        if not agent.active:
            del self._agents[agent_id]
            self._persist_agent(agent_id)

    def _state_change(self, event: AgentStateChanged, now: float, out: list[Decision]) -> None:
        agent = self._agents.get(event.agent_id)
        if agent is None or agent.state == AgentState.LOGGED_OUT:
            raise UnknownAgent(f"agent {event.agent_id!r} is not logged in")
        if event.state == AgentState.AWAY:
            if agent.state == AgentState.AWAY and agent.reason == event.reason:
                return
            agent.move_to(AgentState.AWAY, event.reason)
            self._release_offers(agent, now, out)
            self._reindex_and_persist(agent)
            self._status(agent, out)
        elif event.state == AgentState.AVAILABLE:
            if agent.state == AgentState.AVAILABLE:
                return
            agent.move_to(AgentState.AVAILABLE, "")
            agent.idle_since = now
            self._reindex_and_persist(agent)
            self._status(agent, out)
            self._dispatch_agent(agent, now, out)
        elif event.state == AgentState.LOGGED_OUT:
            self._logout(event.agent_id, now, out)
        else:
            raise InvalidTransition(
                f"agents may set AVAILABLE, AWAY or LOGGED_OUT, not {event.state.name}"
            )

    def _skills_change(self, event: AgentSkillsChanged, now: float, out: list[Decision]) -> None:
        agent = self._agents.get(event.agent_id)
        if agent is None or agent.state == AgentState.LOGGED_OUT:
            # logged out with a contact still in hand: not in the staffing counters, so
            # moving it between skills would count an agent nobody can reach
            raise UnknownAgent(f"agent {event.agent_id!r} is not logged in")
        self._staff.add(agent, -1)
        agent.skills = dict(event.skills)
        agent.languages = tuple(event.languages)
        self._staff.add(agent, +1)
        self._reindex_and_persist(agent)
        self._refresh_all_positions_soon()
        self._dispatch_agent(agent, now, out)

    def _accept(self, event: OfferAccepted, now: float, out: list[Decision]) -> None:
        contact = self._open_offer(event.contact_id, event.offer_id, event.agent_id)
        agent = self._agents[contact.agent]
        agent.offers.pop(contact.offer_id, None)
        contact.move_to(ASSIGNED)
        contact.offer_outcome = f"{agent.agent_id!r} accepted it"
        contact.assigned_at = now
        waited = now - contact.enqueued_at
        within = waited <= self._terms(contact.queue).service_level_s
        qs = self._queues.get(contact.queue)
        if qs is not None:  # None: its queue was removed, with its counters
            qs.answered += 1
            qs.answered_within += within
            self._persist_queue_counts(contact.queue)
        self._persist_contact(contact.contact_id)
        self._reindex_and_persist(agent)
        out.append(
            ContactAssigned(
                contact.offer_id, contact.contact_id, agent.agent_id, contact.queue, waited, within
            )
        )
        self._status(agent, out)
        self._dispatch_agent(agent, now, out)

    def _reject(self, event: OfferRejected, now: float, out: list[Decision]) -> None:
        contact = self._open_offer(event.contact_id, event.offer_id, event.agent_id)
        agent = self._agents[contact.agent]
        contact.declined.append(agent.agent_id)
        self._requeue(contact, agent, RequeueReason.REJECTED, now, out)
        self._status(agent, out)
        self._dispatch_contact(contact, now, out)
        self._dispatch_agent(agent, now, out)

    # ------------------------------------------------------------------ timers

    def _offer_timeout(
        self, contact_id: str, attempt: int, now: float, out: list[Decision]
    ) -> None:
        contact = self._contacts.get(contact_id)
        if contact is None or contact.status != OFFERED or contact.attempt != attempt:
            return
        agent = self._agents.get(contact.agent)
        out.append(OfferTimedOut(contact.offer_id, contact_id, contact.agent))
        contact.offer_outcome = (
            f"it timed out unanswered by {contact.agent!r} after "
            f"{self._terms(contact.queue).offer_timeout_s:g} s"
        )
        if agent is not None:
            contact.declined.append(agent.agent_id)
            self._requeue(contact, agent, RequeueReason.TIMED_OUT, now, out)
            agent.move_to(AgentState.AWAY, MISSED_OFFER)
            self._release_offers(agent, now, out)
            self._reindex_and_persist(agent)
            self._status(agent, out)
        self._dispatch_contact(contact, now, out)

    def _wrap_end(self, agent_id: str, version: int, now: float, out: list[Decision]) -> None:
        """Wrap-up time is over. Judged by ``wrap_until``, not by ``version``: an agent
        changes (a second chat ends, skills change) during wrap-up and must still leave it;
        a timer of an earlier wrap-up finds ``wrap_until`` later than now and is skipped."""
        agent = self._agents.get(agent_id)
        if agent is None or agent.state != AgentState.WRAP_UP or agent.wrap_until > now:
            return
        agent.move_to(AgentState.AVAILABLE, "")
        agent.idle_since = now
        self._reindex_and_persist(agent)
        self._status(agent, out)
        self._dispatch_agent(agent, now, out)

    def _retry(self, contact_id: str, attempt: int, now: float, out: list[Decision]) -> None:
        """An offer was declined or missed a while ago: its agent may be tried again."""
        contact = self._contacts.get(contact_id)
        if contact is None or contact.attempt != attempt or not contact.declined:
            return
        contact.declined = []
        self._persist_contact(contact.contact_id)
        self._dispatch_contact(contact, now, out)

    def _relax(self, contact_id: str, step: int, now: float, out: list[Decision]) -> None:
        contact = self._contacts.get(contact_id)
        if contact is None or contact.step >= step or contact.queue not in self._waiting:
            return  # gone, already there, or its queue was removed (it is in flight)
        contact.step = step
        contact.declined = []
        self._persist_contact(contact.contact_id)
        self._schedule_relaxation(contact)
        if contact.status == WAITING:
            self._check_routable(contact, out)
            self._dispatch_contact(contact, now, out)

    # ------------------------------------------------------------------ lookups

    def _known_contact(self, contact_id: str) -> ContactRecord:
        contact = self._contacts.get(contact_id)
        if contact is None:
            raise UnknownContact(
                f"contact {contact_id!r} is unknown (it never arrived, or it has closed)"
            )
        return contact

    def _open_offer(self, contact_id: str, offer_id: str, agent_id: str) -> ContactRecord:
        """The contact whose open offer ``offer_id`` is, made to ``agent_id``; otherwise
        the error says which offer it was and what became of it."""
        contact = self._contacts.get(contact_id)
        if contact is None:
            raise UnknownContact(
                f"offer {offer_id!r} is not open: contact {contact_id!r} is unknown "
                "(it never arrived, or it has closed)"
            )
        if contact.status == OFFERED and contact.offer_id == offer_id:
            if contact.agent != agent_id:
                raise InvalidTransition(
                    f"offer {offer_id!r} was made to {contact.agent!r}, not {agent_id!r}"
                )
            return contact
        prefix, _, number = offer_id.rpartition("#")
        attempt = int(number) if prefix == contact_id and number.isdigit() else 0
        if not 1 <= attempt <= contact.attempt:
            open_now = (
                f" (its open offer is {contact.offer_id!r})" if contact.status == OFFERED else ""
            )
            raise UnknownOffer(
                f"offer {offer_id!r} was never made for contact {contact_id!r}{open_now}"
            )
        if attempt < contact.attempt:
            what = f"offer '{contact_id}#{contact.attempt}' was made after it"
        else:
            what = contact.offer_outcome or "it has ended"
        raise StaleOffer(f"offer {offer_id!r} is no longer open: {what}")

    # ------------------------------------------------------------------ routing

    def _requirements(self, contact: ContactRecord) -> tuple[dict[str, int], str, bool]:
        """Skills (with relaxed minimums), language and whether only the preferred agent may
        take it, as relaxed at the contact's current step."""
        qp = self.policy.queues[contact.queue]
        delta = 0
        drop_optional = False
        release = False
        for step in qp.steps[: contact.step]:
            delta += step.min_proficiency_delta
            drop_optional |= step.drop_optional_skills
            release |= step.release_preferred_agent
        skills = {s: max(1, p - delta) for s, p in contact.required.items()}
        if not drop_optional:
            for s, p in contact.optional.items():
                skills[s] = max(skills.get(s, 1), max(1, p - delta))
        preferred_only = bool(contact.preferred_agent) and not release
        return skills, contact.language, preferred_only

    def _queues_open_to(self, contact: ContactRecord) -> list[str]:
        qp = self.policy.queues[contact.queue]
        queues = [contact.queue]
        for step in qp.steps[: contact.step]:
            queues.extend(step.overflow_queues)
        return queues

    def _best_agent(self, contact: ContactRecord, now: float) -> AgentRecord | None:
        skills, language, preferred_only = self._requirements(contact)
        if preferred_only:
            if (
                now - contact.enqueued_at
                >= self.policy.queues[contact.queue].preferred_agent_timeout_s
            ):
                preferred_only = False
            else:
                agent = self._agents.get(contact.preferred_agent)
                if agent is not None and agent.eligible_for(
                    contact, skills, language, self.policy.max_total
                ):
                    return agent
                return None
        best: tuple[Any, ...] | None = None
        best_agent: AgentRecord | None = None
        for queue in self._queues_open_to(contact):
            qp = self.policy.queues[queue]
            q_skills = dict(skills)
            if queue != contact.queue:  # overflow: the other queue's requirements apply
                q_skills = dict(qp.skills)
            q_language = language if queue == contact.queue else (qp.language or language)
            found = self._ready.search(qp.strategy, contact, q_skills, q_language)
            if found is not None and (best is None or found[0] < best):
                best, best_agent = found[0], found[1]
        return best_agent

    def _dispatch_contact(self, contact: ContactRecord, now: float, out: list[Decision]) -> None:
        if contact.status != WAITING:
            return
        agent = self._best_agent(contact, now)
        if agent is not None:
            self._offer(contact, agent, now, out)

    def _dispatch_agent(self, agent: AgentRecord, now: float, out: list[Decision]) -> None:
        """An agent may take more work: offer the best waiting contacts it can serve."""
        while agent.state == AgentState.AVAILABLE:
            contact = self._best_contact(agent, now)
            if contact is None:
                return
            self._offer(contact, agent, now, out)

    def _best_contact(self, agent: AgentRecord, now: float) -> ContactRecord | None:
        best: tuple[float, int] | None = None
        best_contact: ContactRecord | None = None
        for queue, min_step in self._candidate_queues(agent):
            for scanned, (key0, key1, contact_id) in enumerate(self._waiting[queue]):
                if scanned >= SCAN_LIMIT or (best is not None and (key0, key1) >= best):
                    break
                contact = self._contacts[contact_id]
                if contact.step < min_step:
                    continue
                if self._agent_may_take(agent, contact, now):
                    best, best_contact = (key0, key1), contact
                    break
        return best_contact

    def _candidate_queues(self, agent: AgentRecord) -> list[tuple[str, int]]:
        """Queues (and overflow sources, with the step that opens them) the agent may serve."""
        return [(q, step) for q, step in self._servable_queues(agent) if self._waiting[q]]

    def _servable_queues(self, agent: AgentRecord) -> list[tuple[str, int]]:
        """Every queue whose skills and language the agent has, in policy order.

        Queues are indexed by one of their skills (the anchor), so this looks only at
        queues anchored on the agent's own skills, not at every queue of the policy.
        """
        found: list[tuple[int, str]] = []
        for anchor in (*agent.skills, ANY):
            for order, name in self._queues_by_anchor.get(anchor, ()):
                qp = self.policy.queues[name]
                if qp.language and qp.language not in agent.languages:
                    continue
                if any(s not in agent.skills for s, _ in qp.skills):
                    continue
                found.append((order, name))
        found.sort()
        servable: list[tuple[str, int]] = []
        for _order, name in found:
            servable.append((name, 0))
            servable.extend(self._overflow_from[name])
        return servable

    def _agent_may_take(self, agent: AgentRecord, contact: ContactRecord, now: float) -> bool:
        skills, language, preferred_only = self._requirements(contact)
        if preferred_only and agent.agent_id != contact.preferred_agent:
            waited = now - contact.enqueued_at
            if waited < self.policy.queues[contact.queue].preferred_agent_timeout_s:
                return False
        if agent.eligible_for(contact, skills, language, self.policy.max_total):
            return True
        for queue in self._queues_open_to(contact)[1:]:
            qp = self.policy.queues[queue]
            if agent.eligible_for(
                contact, dict(qp.skills), qp.language or language, self.policy.max_total
            ):
                return True
        return False

    def _offer(
        self, contact: ContactRecord, agent: AgentRecord, now: float, out: list[Decision]
    ) -> None:
        qp = self.policy.queues[contact.queue]
        self._lines.remove(contact)
        contact.attempt += 1
        contact.move_to(OFFERED)
        contact.agent = agent.agent_id
        contact.offer_id = f"{contact.contact_id}#{contact.attempt}"
        contact.offer_expires = now + qp.offer_timeout_s
        contact.declined = []
        agent.active[contact.contact_id] = contact.channel
        agent.offers[contact.offer_id] = contact.contact_id
        self._offer_seq += 1
        agent.last_offer_seq = self._offer_seq
        self._persist_meta()
        self._reindex_and_persist(agent)
        self._persist_contact(contact.contact_id)
        self._refresh_positions_soon(contact.queue)
        self._timers.set((_OFFER, contact.contact_id, contact.attempt), contact.offer_expires)
        out.append(
            OfferMade(
                offer_id=contact.offer_id,
                contact_id=contact.contact_id,
                agent_id=agent.agent_id,
                queue=contact.queue,
                channel=Channel(contact.channel),
                expires_at=contact.offer_expires,
                waited=now - contact.enqueued_at,
                attempt=contact.attempt,
                relaxation_step=contact.step,
            )
        )
        self._status(agent, out)

    def _requeue(
        self,
        contact: ContactRecord,
        agent: AgentRecord,
        reason: RequeueReason,
        now: float,
        out: list[Decision],
    ) -> None:
        """Back to its original place in line: the sort key never changed."""
        if reason == RequeueReason.REJECTED:
            contact.offer_outcome = f"{agent.agent_id!r} rejected it"
        elif reason == RequeueReason.AGENT_UNAVAILABLE:
            contact.offer_outcome = f"it was withdrawn when {agent.agent_id!r} became unavailable"
        agent.active.pop(contact.contact_id, None)
        agent.offers.pop(contact.offer_id, None)
        contact.move_to(WAITING)
        contact.agent = ""
        self._reindex_and_persist(agent)
        self._persist_contact(contact.contact_id)
        out.append(ContactRequeued(contact.contact_id, contact.queue, reason, agent.agent_id))
        if contact.queue not in self._waiting:  # offered in a queue a policy change removed
            why = f"queue {contact.queue!r} removed by policy version {self.policy_version}"
            self._rehome(contact, now, why, out)
        else:
            self._lines.add(contact)
            self._refresh_positions_soon(contact.queue)
        retry = reason in (RequeueReason.REJECTED, RequeueReason.TIMED_OUT)
        if retry and contact.status == WAITING:
            retry_after = self.policy.queues[contact.queue].offer_timeout_s
            self._timers.set((_RETRY, contact.contact_id, contact.attempt), now + retry_after)

    def _withdraw_offer(
        self, contact: ContactRecord, agent: AgentRecord | None, now: float, out: list[Decision]
    ) -> None:
        """The contact left while ringing: free the agent without blaming them.

        The caller closes or requeues the contact first and only then lets the agent take
        new work, so the decisions read in an order where capacity is never exceeded.
        """
        if agent is not None:
            agent.active.pop(contact.contact_id, None)
            agent.offers.pop(contact.offer_id, None)
            self._reindex_and_persist(agent)
            self._status(agent, out)
        contact.move_to(WAITING)
        contact.agent = ""

    def _release_offers(self, agent: AgentRecord, now: float, out: list[Decision]) -> None:
        """Withdraw every offer ringing at an agent who went away or logged out."""
        for offer_id, contact_id in list(agent.offers.items()):
            contact = self._contacts.get(contact_id)
            agent.offers.pop(offer_id, None)
            if contact is None or contact.offer_id != offer_id or contact.status != OFFERED:
                continue
            self._requeue(contact, agent, RequeueReason.AGENT_UNAVAILABLE, now, out)
            self._dispatch_contact(contact, now, out)

    def _start_wrap_up(
        self, agent: AgentRecord, qp: QueuePolicy, now: float, out: list[Decision]
    ) -> bool:
        """The agent finished a contact. True if it may take work at once (no wrap-up):
        the caller then dispatches it, but only after the contact's own ContactClosed or
        ContactRequeued, so the decisions never show the agent over its capacity."""
        if agent.state == AgentState.LOGGED_OUT:
            if not agent.active:
                del self._agents[agent.agent_id]
                self._persist_agent(agent.agent_id)
            return False
        if agent.state != AgentState.AVAILABLE:
            self._reindex_and_persist(agent)
            return False
        if qp.wrap_up_s > 0:
            agent.move_to(AgentState.WRAP_UP, "wrap-up")
            agent.wrap_until = now + qp.wrap_up_s
            self._reindex_and_persist(agent)
            self._timers.set((_WRAP, agent.agent_id, agent.version), agent.wrap_until)
            self._status(agent, out)
            return False
        agent.idle_since = now
        self._reindex_and_persist(agent)
        self._status(agent, out)
        return True

    def _close(
        self, contact: ContactRecord, now: float, *, abandoned: bool, out: list[Decision]
    ) -> None:
        del self._contacts[contact.contact_id]
        self._persist_contact(contact.contact_id)
        out.append(
            ContactClosed(
                contact.contact_id,
                contact.queue,
                abandoned,
                (contact.assigned_at or now) - contact.enqueued_at,
            )
        )

    def _check_routable(self, contact: ContactRecord, out: list[Decision]) -> None:
        """Say once if no logged-in agent could take the contact even fully relaxed."""
        if contact.unroutable_reported or self._could_be_taken(contact):
            return
        skills, language = self._fully_relaxed(contact)
        needs = ", ".join(f"{s}>={p}" for s, p in sorted(skills.items())) or "any skill"
        contact.unroutable_reported = True
        self._persist_contact(contact.contact_id)
        out.append(
            ContactUnroutable(
                contact.contact_id,
                contact.queue,
                f"no logged-in agent speaks {language or 'any language'} with {needs}",
            )
        )

    def _probe(self, queue: str) -> ContactRecord:
        """A new arrival with ``queue``'s own requirements (for the queue's estimate)."""
        qp = self.policy.queues[queue]
        return ContactRecord(
            contact_id="",
            queue=queue,
            channel=0,
            required=dict(qp.skills),
            optional=dict(qp.optional_skills),
            language=qp.language,
            priority=0,
            preferred_agent="",
            customer_id="",
            enqueued_at=0.0,
            seq=0,
        )

    def _fully_relaxed(self, contact: ContactRecord) -> tuple[dict[str, int], str]:
        """The contact's skills and language once every step of its queue has applied."""
        saved_step = contact.step
        contact.step = len(self.policy.queues[contact.queue].steps)
        skills, language, _ = self._requirements(contact)
        contact.step = saved_step
        return skills, language

    def _could_be_taken(self, contact: ContactRecord) -> bool:
        """Whether a logged-in agent has each skill (fully relaxed) in the contact's
        language, or the skills of a queue it may overflow to now. False: the contact is
        unroutable, and its wait cannot be estimated (the rule behind both)."""
        skills, language = self._fully_relaxed(contact)
        lang = language or ANY
        if all(self._staff.at_least(lang, s, lvl) > 0 for s, lvl in skills.items()):
            return True  # each skill is covered (combinations are checked when offering)
        for queue in self._queues_open_to(contact)[1:]:
            oq = self.policy.queues[queue]
            if all(self._staff.at_least(oq.language or ANY, s, 1) > 0 for s, _ in oq.skills):
                return True
        return False

    # ------------------------------------------------------------------ positions, estimates

    def _staffed(self, queue: str) -> int:
        qp = self.policy.queues[queue]
        skill = qp.skills[0][0] if qp.skills else ANY
        return self._staff.at_least(qp.language or ANY, skill, 1)

    def _estimate(self, queue: str, position: int) -> float:
        """Erlang-style rule of thumb: position x average handle time / staffed agents."""
        handle = self._queues[queue].handle_s or self.policy.default_handle_s
        staffed = self._staffed(queue)
        if staffed == 0:
            return float(position) * handle
        return position * handle / staffed

    def _send_positions(self, now: float, out: list[Decision]) -> None:
        """Tell waiting contacts of the queues that moved their place and estimate, when
        either changed enough to be worth a message."""
        queues, self._moved_queues = self._moved_queues, set()
        for queue in queues:
            lst = self._waiting.get(queue)
            if not lst:
                continue
            handle = self._queues[queue].handle_s or self.policy.default_handle_s
            staffed = self._staffed(queue)
            for index, (_, _, contact_id) in enumerate(lst, start=1):
                contact = self._contacts[contact_id]
                if not self._could_be_taken(contact):  # no estimate: say so, not a number
                    if contact.sent_position == index and contact.sent_estimate == TOLD_UNKNOWN:
                        continue
                    contact.sent_position, contact.sent_estimate = index, TOLD_UNKNOWN
                    self._persist_contact(contact.contact_id)
                    out.append(
                        QueuePositionUpdated(
                            contact_id, queue, index, None, now - contact.enqueued_at
                        )
                    )
                    continue
                estimate = index * handle / max(1, staffed)
                moved = abs(estimate - contact.sent_estimate)
                if (
                    contact.sent_position == index
                    and contact.sent_estimate != TOLD_UNKNOWN
                    and moved
                    < max(ESTIMATE_MIN_CHANGE_S, ESTIMATE_CHANGE_SHARE * contact.sent_estimate)
                ):
                    continue
                contact.sent_position, contact.sent_estimate = index, estimate
                self._persist_contact(contact.contact_id)
                out.append(
                    QueuePositionUpdated(
                        contact_id, queue, index, estimate, now - contact.enqueued_at
                    )
                )

    def _refresh_positions_soon(self, queue: str) -> None:
        """``queue``'s line moved: re-send its positions at the next batched refresh."""
        self._moved_queues.add(queue)
        if self._refresh_due is None:  # positions are refreshed in batches, not per event
            self._refresh_due = self._last_refresh + self.policy.position_refresh_s

    def _refresh_all_positions_soon(self) -> None:
        """Staffing changed, so every estimate may have: refresh every non-empty line."""
        for queue in self.policy.queues:
            if self._waiting[queue]:
                self._refresh_positions_soon(queue)

    # ------------------------------------------------------------------ bookkeeping

    def _next_seq(self) -> int:
        self._seq += 1
        self._persist_meta()
        return self._seq

    def _schedule_relaxation(self, contact: ContactRecord) -> None:
        qp = self.policy.queues.get(contact.queue)
        if qp is None:  # in flight in a removed queue, or parked: nothing relaxes
            return
        steps = qp.steps
        if contact.step < len(steps):
            due = contact.enqueued_at + steps[contact.step].after_s
            self._timers.set((_RELAX, contact.contact_id, contact.step + 1), due)

    def _persist_agent(self, agent_id: str) -> None:
        """Write the agent (or its deletion) to the changelog at the next take_changes."""
        self._unpersisted.add(f"agent:{agent_id}")

    def _persist_contact(self, contact_id: str) -> None:
        """Write the contact (or its deletion) to the changelog at the next take_changes."""
        self._unpersisted.add(f"contact:{contact_id}")

    def _persist_queue_counts(self, queue: str) -> None:
        self._unpersisted.add(f"queue:{queue}")

    def _persist_meta(self) -> None:
        """The arrival and offer sequence numbers moved."""
        self._unpersisted.add("meta:")

    def _reindex_and_persist(self, agent: AgentRecord) -> None:
        """The agent changed: make its index entries stale (new version), push fresh ones
        if it is ready, and persist it."""
        agent.version += 1
        self._persist_agent(agent.agent_id)
        self._ready.push(agent)

    def _status(self, agent: AgentRecord, out: list[Decision]) -> None:
        out.append(
            AgentStatusChanged(agent.agent_id, agent.effective_state(), agent.reason, agent.team)
        )

    # ------------------------------------------------------------------ for tests and checks

    def index_entries(self) -> int:
        """Entries in the ready-agent index, live and stale (memory must track the agents)."""
        return self._ready.entries()

    def waiting_ids(self, queue: str) -> list[str]:
        """Contact ids waiting in ``queue``, in line order."""
        return self._lines.ids(queue)

    def contacts(self) -> Iterable[str]:
        return self._contacts.keys()
