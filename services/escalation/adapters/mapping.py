"""Protobuf <-> escalation-core dataclasses."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp
from switchboard.v1 import common_pb2, escalation_pb2
from switchboard.v1.envelope_pb2 import Envelope

from services.common import contract
from services.common.codec import set_timestamp
from services.common.errors import RejectedEvent
from services.escalation.domain import commands as c
from services.escalation.domain import model as m

__all__ = [
    "command_from_proto",
    "command_to_proto",
    "envelope_to_input",
    "escalation_from_proto",
    "escalation_to_proto",
    "outcome_from_proto",
    "outcome_to_proto",
]


def _customer(proto: common_pb2.Customer) -> m.Customer:
    return m.Customer(proto.customer_id, proto.name, proto.phone, proto.email, proto.language)


def envelope_to_input(envelope: Envelope) -> m.Input | None:
    """The core input for an envelope, ``None`` for events escalation does not act on.

    Every field is read with :mod:`services.common.contract`, as the router and the
    notifier read it.
    """
    kind = envelope.WhichOneof("payload")
    if kind == "customer_erasure_requested":
        return m.CustomerErased(contract.erased_customer(envelope.customer_erasure_requested))
    if kind == "contact_arrived":
        e = envelope.contact_arrived
        arrival = contract.contact_arrived(e)
        return m.ContactArrived(
            arrival.contact_id,
            arrival.queue,
            _customer(e.customer),
            m.Priority(arrival.priority),
            e.reopened,
        )
    if kind in ("contact_held", "contact_paused"):
        event = envelope.contact_held if kind == "contact_held" else envelope.contact_paused
        pause = contract.pause(event, kind)
        make = m.ContactHeld if kind == "contact_held" else m.ContactPaused
        return make(pause.contact_id, m.PauseReason(pause.reason), pause.expected_s, event.agent_id)
    if kind == "contact_resumed":
        r = envelope.contact_resumed
        return m.ContactResumed(contract.required(r.contact_id, f"{kind}.contact_id"), r.agent_id)
    if kind == "contact_transferred":
        t = envelope.contact_transferred
        return m.ContactTransferred(
            contract.required(t.contact_id, f"{kind}.contact_id"), t.to_queue
        )
    if kind == "contact_ended":
        e2 = envelope.contact_ended
        return m.ContactEnded(
            contract.required(e2.contact_id, f"{kind}.contact_id"),
            m.Disposition(contract.disposition(e2.disposition, f"{kind}.disposition")),
            e2.note,
            e2.agent_id,
        )
    if kind == "contact_reopened":
        return m.ContactReopened(
            contract.required(envelope.contact_reopened.contact_id, f"{kind}.contact_id")
        )
    if kind == "contact_abandoned":
        return m.ContactAbandoned(
            contract.required(envelope.contact_abandoned.contact_id, f"{kind}.contact_id")
        )
    if kind == "survey_result":
        s = envelope.survey_result
        return m.SurveyResult(
            contract.required(s.contact_id, f"{kind}.contact_id"), s.score, s.customer_id, s.comment
        )
    if kind == "manager_requested":
        mr = envelope.manager_requested
        return m.ManagerRequested(
            contract.required(mr.contact_id, f"{kind}.contact_id"), mr.note, mr.agent_id
        )
    if kind == "contact_assigned":
        a = envelope.contact_assigned
        return m.ContactAssigned(
            contract.required(a.contact_id, f"{kind}.contact_id"), a.queue, a.agent_id
        )
    if kind == "contact_requeued":
        q = envelope.contact_requeued
        return m.ContactRequeued(contract.required(q.contact_id, f"{kind}.contact_id"), q.queue)
    if kind == "contact_unroutable":
        u = envelope.contact_unroutable
        return m.ContactUnroutable(
            contract.required(u.contact_id, f"{kind}.contact_id"), u.queue, u.reason
        )
    if kind == "contact_closed":
        c = envelope.contact_closed
        return m.ContactClosed(
            contract.required(c.contact_id, f"{kind}.contact_id"), c.queue, c.abandoned
        )
    return None


def _ts(target: Timestamp, value: float | None) -> None:
    if value is not None:
        set_timestamp(target, value)


def _from_ts(ts: Timestamp) -> float | None:
    return ts.ToNanoseconds() / 1e9 if ts.seconds or ts.nanos else None


def escalation_to_proto(e: m.Escalation) -> escalation_pb2.Escalation:
    proto = escalation_pb2.Escalation(
        escalation_id=e.escalation_id,
        contact_id=e.contact_id,
        domain=e.domain,
        queue=e.queue,
        team=e.team,
        reason=escalation_pb2.EscalationReason.ValueType(e.reason.value),
        severity=escalation_pb2.Severity.ValueType(e.severity.value),
        tier=escalation_pb2.Tier.ValueType(e.tier.value),
        assignee=e.assignee,
        status=escalation_pb2.EscalationStatus.ValueType(e.status.value),
        acknowledged_by=e.acknowledged_by,
        resolution_code=e.resolution_code,
        resolved_by=e.resolved_by,
        summary=e.summary,
        version=e.version,
        priority=common_pb2.Priority.ValueType(e.priority.value),
        customer=common_pb2.Customer(
            customer_id=e.customer.customer_id,
            name=e.customer.name,
            phone=e.customer.phone,
            email=e.customer.email,
            language=e.customer.language,
        ),
        previous_tiers=[escalation_pb2.Tier.ValueType(t.value) for t in e.previous_tiers],
    )
    _ts(proto.raised_at, e.raised_at)
    _ts(proto.ack_deadline, e.ack_deadline)
    _ts(proto.acknowledged_at, e.acknowledged_at)
    _ts(proto.resolved_at, e.resolved_at)
    for note in e.notes:
        n = proto.notes.add(author=note.author, text=note.text)
        _ts(n.at, note.at)
    return proto


def escalation_from_proto(p: escalation_pb2.Escalation) -> m.Escalation:
    return m.Escalation(
        escalation_id=p.escalation_id,
        contact_id=p.contact_id,
        domain=p.domain,
        queue=p.queue,
        team=p.team,
        reason=m.EscalationReason(p.reason),
        severity=m.Severity(p.severity),
        tier=m.Tier(p.tier),
        assignee=p.assignee,
        status=m.EscalationStatus(p.status),
        raised_at=_from_ts(p.raised_at) or 0.0,
        ack_deadline=_from_ts(p.ack_deadline),
        acknowledged_at=_from_ts(p.acknowledged_at),
        acknowledged_by=p.acknowledged_by,
        resolved_at=_from_ts(p.resolved_at),
        resolution_code=p.resolution_code,
        resolved_by=p.resolved_by,
        summary=p.summary,
        customer=_customer(p.customer),
        notes=tuple(m.EscalationNote(n.author, n.text, _from_ts(n.at) or 0.0) for n in p.notes),
        previous_tiers=tuple(m.Tier(t) for t in p.previous_tiers),
        version=p.version,
        priority=m.Priority(p.priority) if p.priority else m.Priority.NORMAL,
    )


def command_to_proto(
    command: c.ManagerCommand, requester: c.Requester, expires_at: float
) -> escalation_pb2.EscalationCommand:
    proto = escalation_pb2.EscalationCommand(
        subject=requester.subject,
        roles=sorted(requester.roles),
        teams=sorted(requester.teams),
        domains=sorted(requester.domains),
    )
    set_timestamp(proto.expires_at, expires_at)
    if isinstance(command, c.Acknowledge):
        proto.acknowledge.escalation_id = command.escalation_id
    elif isinstance(command, c.AddNote):
        proto.add_note.escalation_id, proto.add_note.text = command.escalation_id, command.text
    else:
        proto.resolve.escalation_id = command.escalation_id
        proto.resolve.resolution_code = command.resolution_code
        proto.resolve.note = command.note
    return proto


def command_from_proto(
    p: escalation_pb2.EscalationCommand,
) -> tuple[c.ManagerCommand, c.Requester, float]:
    """The command, who sent it and its deadline; :class:`RejectedEvent` if it names no
    action, no caller or no deadline (only a broken sender writes such a command)."""
    action = p.WhichOneof("action")
    command: c.ManagerCommand
    if action == "acknowledge":
        command = c.Acknowledge(p.acknowledge.escalation_id)
    elif action == "add_note":
        command = c.AddNote(p.add_note.escalation_id, p.add_note.text)
    elif action == "resolve":
        r = p.resolve
        command = c.Resolve(r.escalation_id, r.resolution_code, r.note)
    else:
        raise RejectedEvent("escalation_command.action: required (acknowledge, add_note, resolve)")
    subject = contract.required(p.subject, "escalation_command.subject")
    expires_at = _from_ts(p.expires_at)
    if expires_at is None:
        raise RejectedEvent("escalation_command.expires_at: required")
    requester = c.Requester(subject, frozenset(p.roles), frozenset(p.teams), frozenset(p.domains))
    return command, requester, expires_at


def outcome_to_proto(
    command_id: str, answer: c.CommandAnswer
) -> escalation_pb2.EscalationCommandResult:
    return escalation_pb2.EscalationCommandResult(
        command_id=command_id,
        status=escalation_pb2.EscalationCommandStatus.ValueType(answer.status.value),
        message=answer.message,
        escalation_id=answer.escalation_id,
        version=answer.version,
    )


def outcome_from_proto(p: escalation_pb2.EscalationCommandResult) -> c.CommandAnswer:
    """The owner's answer (ValueError for a status this build does not know)."""
    return c.CommandAnswer(c.CommandStatus(p.status), p.message, p.escalation_id, p.version)
