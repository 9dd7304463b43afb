"""Pure accounting over a run's records: what happened to every contact, and what broke.

Fed envelopes in topic order (each topic's records in offset order; topics may be fed
one after another because every check keys by contact, agent or escalation), it
answers the questions a contact center is trusted on: was any contact lost, offered to
two agents at once, any agent over capacity, any customer told twice, any case
escalated twice for the same reason.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AuditReport", "Ledger"]

# Protobuf enum numbers used here (kept as ints so this module needs no generated code).
_KIND_HOLD_STARTED = 1
_KIND_PAUSE_STARTED = 2
_OUTCOME_DELIVERED = 1
_OUTCOME_DEAD_LETTERED = 2
_OUTCOME_REJECTED = 3
_OUTCOME_SUPPRESSED = 4
_CHANGE_RAISED = 1
_AGENT_BUSY = 4
_AGENT_RESERVED = 6


@dataclass
class AuditReport:
    """Counts and the violations found; ``ok`` when nothing was lost or doubled."""

    arrived: int = 0
    assigned: int = 0
    abandoned: int = 0
    closed: int = 0
    still_waiting: int = 0
    #: Of those still waiting, the ones whose last routing word was ContactUnroutable
    #: (e.g. parked when a policy change removed their queue): reported, not lost.
    unroutable: int = 0
    offers: int = 0
    holds: int = 0
    notifications_delivered: int = 0
    escalations_raised: int = 0
    dead_letters: int = 0
    violations: list[str] = field(default_factory=list)
    _scope: str = ""

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        lines = [
            f"contacts arrived {self.arrived}: assigned {self.assigned}, abandoned "
            f"{self.abandoned}, closed {self.closed}, still waiting {self.still_waiting} "
            f"({self.unroutable} reported unroutable)",
            f"offers {self.offers}; holds/pauses {self.holds}; notifications delivered "
            f"{self.notifications_delivered}; escalations raised {self.escalations_raised}; "
            f"dead letters {self.dead_letters}",
            "violations: none" if self.ok else f"violations ({len(self.violations)}):",
        ]
        lines.extend(f"  - {v}" for v in self.violations[:50])
        return "\n".join(lines)


@dataclass
class _Contact:
    arrived: bool = False
    channel: int = 0
    offer: str | None = None  # outstanding offer id
    agent: str | None = None  # agent holding capacity for it
    assigned: bool = False
    abandoned_input: bool = False
    ended_input: bool = False
    closed: bool = False
    closed_abandoned: bool = False
    #: The router's last word on it was ContactUnroutable (until it is offered or requeued).
    unroutable: bool = False


@dataclass
class Ledger:
    """Feed records with :meth:`add`; read the verdict with :meth:`report`."""

    contacts: dict[str, _Contact] = field(default_factory=lambda: defaultdict(_Contact))
    capacity: dict[tuple[str, int], int] = field(default_factory=dict)
    in_hand: Counter[tuple[str, int]] = field(default_factory=Counter)
    offer_ids: Counter[str] = field(default_factory=Counter)
    holds: Counter[tuple[str, int]] = field(default_factory=Counter)
    delivered_ids: Counter[str] = field(default_factory=Counter)
    settled: Counter[tuple[str, int]] = field(default_factory=Counter)
    raised: Counter[tuple[str, int]] = field(default_factory=Counter)
    escalation_ids: dict[tuple[str, int], set[str]] = field(
        default_factory=lambda: defaultdict(set)
    )
    #: The router's last word on each agent's state (``AgentStatusChanged``).
    agent_states: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    violations: list[str] = field(default_factory=list)

    def add_dead_letter(self) -> None:
        self.dead_letters += 1

    def add(self, payload: str, body: Any, domain: str = "") -> None:
        """One envelope's payload name and message (a protobuf message or look-alike).

        Ids are only unique within a domain (two tenants may both have a "call-1"), so
        every contact, agent, offer and notification is keyed as ``domain/id``.
        """
        handler = getattr(self, f"_on_{payload}", None)
        if handler is not None:
            self._scope = f"{domain}/" if domain else ""
            handler(body)

    def _k(self, ident: str) -> str:
        return self._scope + ident

    # inputs -----------------------------------------------------------------------
    def _on_contact_arrived(self, m: Any) -> None:
        c = self.contacts[self._k(m.contact_id)]
        c.arrived = True
        c.channel = m.channel

    def _on_contact_abandoned(self, m: Any) -> None:
        self.contacts[self._k(m.contact_id)].abandoned_input = True

    def _on_contact_ended(self, m: Any) -> None:
        self.contacts[self._k(m.contact_id)].ended_input = True

    def _on_contact_held(self, m: Any) -> None:
        self.holds[(self._k(m.contact_id), _KIND_HOLD_STARTED)] += 1

    def _on_contact_paused(self, m: Any) -> None:
        self.holds[(self._k(m.contact_id), _KIND_PAUSE_STARTED)] += 1

    def _on_agent_logged_in(self, m: Any) -> None:
        for cap in m.capacity:
            self.capacity[(self._k(m.agent_id), cap.channel)] = cap.max_concurrent

    # routing decisions ----------------------------------------------------------------
    def _on_offer_made(self, m: Any) -> None:
        offer, contact, agent = self._k(m.offer_id), self._k(m.contact_id), self._k(m.agent_id)
        self.offer_ids[offer] += 1
        if self.offer_ids[offer] > 1:
            self.violations.append(f"offer {offer} was made twice")
            return
        c = self.contacts[contact]
        if c.offer is not None:
            self.violations.append(
                f"contact {contact} offered to {agent} while offer {c.offer} was still outstanding"
            )
        if c.assigned:
            self.violations.append(f"contact {contact} offered again after assignment")
        c.offer, c.agent = offer, agent
        c.unroutable = False
        key = (agent, m.channel)
        self.in_hand[key] += 1
        limit = self.capacity.get(key)
        if limit is not None and self.in_hand[key] > limit:
            self.violations.append(
                f"agent {agent} holds {self.in_hand[key]} contacts on channel "
                f"{m.channel}, capacity {limit}"
            )

    def _release(self, contact_id: str) -> None:
        c = self.contacts[contact_id]
        if c.agent is not None:
            key = (c.agent, c.channel)
            self.in_hand[key] = max(0, self.in_hand[key] - 1)
        c.agent = None
        c.offer = None

    def _answers_outstanding_offer(self, m: Any, what: str) -> None:
        """An assignment or a timeout must end the offer that is ringing, at its agent.

        Anything else was decided from stale state: e.g. a stalled router instance that
        came back after its domains moved and timed out an offer its successor had
        already seen accepted.
        """
        contact = self._k(m.contact_id)
        c = self.contacts[contact]
        offer = self._k(m.offer_id) if m.offer_id else ""
        if c.offer is None:
            self.violations.append(
                f"contact {contact} {what}{f' on offer {offer}' if offer else ''} "
                "with no offer outstanding"
            )
        elif offer and offer != c.offer:
            self.violations.append(
                f"contact {contact} {what} on offer {offer} while offer {c.offer} was outstanding"
            )
        elif m.agent_id and c.agent is not None and self._k(m.agent_id) != c.agent:
            self.violations.append(
                f"contact {contact} {what} for agent {self._k(m.agent_id)}, but was "
                f"offered to {c.agent}"
            )

    def _on_contact_assigned(self, m: Any) -> None:
        c = self.contacts[self._k(m.contact_id)]
        if c.assigned:
            self.violations.append(f"contact {self._k(m.contact_id)} assigned twice")
        else:
            self._answers_outstanding_offer(m, "assigned")
        c.assigned = True
        c.offer = None  # the reservation stays with the agent until closed

    def _on_offer_timed_out(self, m: Any) -> None:
        self._answers_outstanding_offer(m, "timed out")
        self._release(self._k(m.contact_id))

    def _on_contact_requeued(self, m: Any) -> None:
        """Back in a line (a declined or withdrawn offer, a transfer, or a policy change
        that moved it to a fallback queue or brought a parked contact's queue back)."""
        self._release(self._k(m.contact_id))
        c = self.contacts[self._k(m.contact_id)]
        c.assigned = False
        c.unroutable = False

    def _on_contact_unroutable(self, m: Any) -> None:
        self.contacts[self._k(m.contact_id)].unroutable = True

    def _on_contact_closed(self, m: Any) -> None:
        c = self.contacts[self._k(m.contact_id)]
        if c.closed:
            self.violations.append(f"contact {self._k(m.contact_id)} closed twice")
        self._release(self._k(m.contact_id))
        c.closed = True
        c.closed_abandoned = m.abandoned

    def _on_agent_status_changed(self, m: Any) -> None:
        self.agent_states[self._k(m.agent_id)] = m.state

    # escalations and notifications -------------------------------------------------------
    def _on_escalation_record(self, m: Any) -> None:
        e = m.escalation
        key = (self._k(e.contact_id), e.reason)
        self.escalation_ids[key].add(self._k(e.escalation_id))
        if m.kind == _CHANGE_RAISED:
            self.raised[key] += 1

    def _on_notification_record(self, m: Any) -> None:
        n = m.notification
        if m.outcome == _OUTCOME_DELIVERED:
            self.delivered_ids[self._k(n.notification_id)] += 1
        if m.outcome in (
            _OUTCOME_DELIVERED,
            _OUTCOME_DEAD_LETTERED,
            _OUTCOME_REJECTED,
            _OUTCOME_SUPPRESSED,
        ) and n.kind in (_KIND_HOLD_STARTED, _KIND_PAUSE_STARTED):
            self.settled[(self._k(n.contact_id), n.kind)] += 1

    # verdict ---------------------------------------------------------------------------
    def report(
        self,
        *,
        run_finished: bool = True,
        check_notifications: bool = True,
        check_escalations: bool = True,
    ) -> AuditReport:
        """Judge the run. ``run_finished``: inputs said every contact ended, so none may wait."""
        report = AuditReport(dead_letters=self.dead_letters, violations=list(self.violations))
        for contact_id, c in self.contacts.items():
            if not c.arrived:
                continue
            report.arrived += 1
            report.assigned += c.assigned
            report.closed += c.closed
            if c.closed and c.closed_abandoned:
                report.abandoned += 1
            if not c.closed:
                report.still_waiting += 1
                report.unroutable += c.unroutable
                if c.abandoned_input or c.ended_input:
                    report.violations.append(
                        f"contact {contact_id} ended or was abandoned but never closed (ghost)"
                    )
                elif run_finished:
                    report.violations.append(f"contact {contact_id} never reached a final state")
        report.violations.extend(self._stuck_agents())
        report.offers = sum(self.offer_ids.values())
        report.holds = sum(self.holds.values())
        report.notifications_delivered = len(self.delivered_ids)
        report.escalations_raised = sum(self.raised.values())
        if check_notifications:
            for notification_id, times in self.delivered_ids.items():
                if times > 1:
                    report.violations.append(
                        f"notification {notification_id} delivered {times} times"
                    )
            for key, count in self.holds.items():
                told = self.settled.get(key, 0)
                if told != count:
                    report.violations.append(
                        f"contact {key[0]}: {count} hold/pause events (kind {key[1]}) but "
                        f"{told} notifications settled"
                    )
        if check_escalations:
            for key, times in self.raised.items():
                if times > 1 or len(self.escalation_ids[key]) > 1:
                    report.violations.append(
                        f"contact {key[0]} escalated {times} times for reason {key[1]}"
                    )
        return report

    def _stuck_agents(self) -> list[str]:
        """Agents the router last called reserved or busy, holding nothing that explains it.

        Every reservation has an owner and an end: reserved needs an offer still ringing
        at the agent, busy a contact in hand that is not closed. Valid at any point of a
        run, since an agent's status and its contacts' decisions share a partition.
        """
        ringing: set[str] = set()
        in_hand: set[str] = set()
        for c in self.contacts.values():
            if c.agent is None or c.closed:
                continue
            in_hand.add(c.agent)
            if c.offer is not None:
                ringing.add(c.agent)
        stuck = []
        for agent, state in sorted(self.agent_states.items()):
            if state == _AGENT_RESERVED and agent not in ringing:
                stuck.append(f"agent {agent} left reserved with no offer ringing")
            elif state == _AGENT_BUSY and agent not in in_hand:
                stuck.append(f"agent {agent} left busy with no contact in hand")
        return stuck
