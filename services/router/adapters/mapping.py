"""Protobuf envelopes <-> routing-core dataclasses. The only place both worlds meet."""

from __future__ import annotations

from collections.abc import Collection

from switchboard.v1 import agent_events_pb2, common_pb2, routing_pb2
from switchboard.v1.envelope_pb2 import Envelope

from services.common.codec import set_timestamp
from services.common.errors import RejectedEvent
from services.router.domain import model as m

__all__ = ["decision_to_envelope", "envelope_to_input", "ignored_payloads"]

#: Contact events the router does not act on (they matter to escalation and notifier).
ignored_payloads = frozenset(
    {
        "contact_held",
        "contact_paused",
        "contact_resumed",
        "contact_reopened",
        "survey_result",
        "manager_requested",
    }
)


def _channel(value: int, field: str) -> m.Channel:
    try:
        return m.Channel(value)
    except ValueError:
        raise RejectedEvent(f"{field}: unknown or missing channel ({value})") from None


def _priority(value: int) -> m.Priority:
    if value == 0:
        return m.Priority.NORMAL
    try:
        return m.Priority(value)
    except ValueError:
        raise RejectedEvent(f"priority: unknown value {value}") from None


def _skills(items: Collection[tuple[str, int]], field: str) -> tuple[tuple[str, int], ...]:
    out = []
    for skill, level in items:
        if not skill:
            raise RejectedEvent(f"{field}: skill name is empty")
        if not 0 <= level <= 10:
            raise RejectedEvent(f"{field}.{skill}: proficiency {level} is outside 1-10")
        out.append((skill, level))
    return tuple(out)


def envelope_to_input(envelope: Envelope, known_skills: Collection[str]) -> m.Input | None:
    """The core input for an envelope, ``None`` for events the router ignores."""
    kind = envelope.WhichOneof("payload")
    if kind == "contact_arrived":
        e = envelope.contact_arrived
        if not e.contact_id or not e.queue:
            raise RejectedEvent("contact_arrived: contact_id and queue are required")
        required = _skills(
            [(r.skill, r.min_proficiency) for r in e.required_skills], "required_skills"
        )
        optional = _skills(
            [(r.skill, r.min_proficiency) for r in e.optional_skills], "optional_skills"
        )
        for skill, _ in (*required, *optional):
            if skill not in known_skills:
                raise RejectedEvent(f"required_skills: skill {skill!r} is not configured")
        return m.ContactArrived(
            contact_id=e.contact_id,
            queue=e.queue,
            channel=_channel(e.channel, "contact_arrived.channel"),
            required_skills=tuple(m.SkillRequirement(s, max(1, p)) for s, p in required),
            optional_skills=tuple(m.SkillRequirement(s, max(1, p)) for s, p in optional),
            language=e.language,
            priority=_priority(e.priority),
            preferred_agent_id=e.preferred_agent_id,
            customer_id=e.customer.customer_id,
            customer_name=e.customer.name,
        )
    if kind == "contact_abandoned":
        return m.ContactAbandoned(_required(envelope.contact_abandoned.contact_id, kind))
    if kind == "contact_ended":
        e2 = envelope.contact_ended
        return m.ContactEnded(_required(e2.contact_id, kind), e2.agent_id)
    if kind == "contact_transferred":
        e3 = envelope.contact_transferred
        return m.ContactTransferred(_required(e3.contact_id, kind), e3.to_queue, e3.to_agent_id)
    if kind == "agent_logged_in":
        a = envelope.agent_logged_in
        return m.AgentLoggedIn(
            agent_id=_required(a.agent_id, kind),
            team=a.team,
            skills=_skills([(s.skill, s.proficiency) for s in a.skills], "skills"),
            languages=tuple(a.languages),
            capacity=tuple(
                (_channel(c.channel, "capacity.channel"), c.max_concurrent) for c in a.capacity
            ),
        )
    if kind == "agent_logged_out":
        return m.AgentLoggedOut(_required(envelope.agent_logged_out.agent_id, kind))
    if kind == "agent_state_changed":
        s = envelope.agent_state_changed
        try:
            state = m.AgentState(s.state)
        except ValueError:
            raise RejectedEvent(f"agent_state_changed.state: unknown value {s.state}") from None
        return m.AgentStateChanged(_required(s.agent_id, kind), state, s.reason)
    if kind == "agent_skills_changed":
        k = envelope.agent_skills_changed
        return m.AgentSkillsChanged(
            _required(k.agent_id, kind),
            _skills([(s.skill, s.proficiency) for s in k.skills], "skills"),
            tuple(k.languages),
        )
    if kind == "offer_accepted":
        o = envelope.offer_accepted
        return m.OfferAccepted(_required(o.agent_id, kind), o.contact_id, o.offer_id)
    if kind == "offer_rejected":
        r = envelope.offer_rejected
        return m.OfferRejected(_required(r.agent_id, kind), r.contact_id, r.offer_id)
    if kind in ignored_payloads:
        return None
    raise RejectedEvent(f"the router does not accept {kind} events")


def _required(value: str, kind: str) -> str:
    if not value:
        raise RejectedEvent(f"{kind}: id is required")
    return value


def _duration(target: object, seconds: float) -> None:
    target.FromNanoseconds(int(max(0.0, seconds) * 1e9))  # type: ignore[attr-defined]


def decision_to_envelope(decision: m.Decision, envelope: Envelope) -> Envelope:
    """Fill ``envelope``'s payload from a decision; returns the envelope."""
    match decision:
        case m.OfferMade():
            o = envelope.offer_made
            o.offer_id, o.contact_id, o.agent_id = (
                decision.offer_id,
                decision.contact_id,
                decision.agent_id,
            )
            o.queue = decision.queue
            o.channel = common_pb2.Channel.ValueType(int(decision.channel))
            set_timestamp(o.expires_at, decision.expires_at)
            _duration(o.waited, decision.waited)
            o.attempt, o.relaxation_step = decision.attempt, decision.relaxation_step
        case m.ContactAssigned():
            a = envelope.contact_assigned
            a.offer_id, a.contact_id, a.agent_id, a.queue = (
                decision.offer_id,
                decision.contact_id,
                decision.agent_id,
                decision.queue,
            )
            _duration(a.waited, decision.waited)
            a.within_service_level = decision.within_service_level
        case m.OfferTimedOut():
            envelope.offer_timed_out.CopyFrom(
                routing_pb2.OfferTimedOut(
                    offer_id=decision.offer_id,
                    contact_id=decision.contact_id,
                    agent_id=decision.agent_id,
                )
            )
        case m.ContactRequeued():
            envelope.contact_requeued.CopyFrom(
                routing_pb2.ContactRequeued(
                    contact_id=decision.contact_id,
                    queue=decision.queue,
                    reason=routing_pb2.RequeueReason.ValueType(int(decision.reason)),
                    agent_id=decision.agent_id,
                )
            )
        case m.QueuePositionUpdated():
            q = envelope.queue_position_updated
            q.contact_id, q.queue, q.position = (
                decision.contact_id,
                decision.queue,
                decision.position,
            )
            _duration(q.estimated_wait, decision.estimated_wait)
            _duration(q.waited, decision.waited)
        case m.ContactUnroutable():
            envelope.contact_unroutable.CopyFrom(
                routing_pb2.ContactUnroutable(
                    contact_id=decision.contact_id, queue=decision.queue, reason=decision.reason
                )
            )
        case m.ContactClosed():
            c = envelope.contact_closed
            c.contact_id, c.queue, c.abandoned = (
                decision.contact_id,
                decision.queue,
                decision.abandoned,
            )
            _duration(c.waited, decision.waited)
        case m.AgentStatusChanged():
            envelope.agent_status_changed.CopyFrom(
                routing_pb2.AgentStatusChanged(
                    agent_id=decision.agent_id,
                    state=agent_events_pb2.AgentState.ValueType(int(decision.state)),
                    reason=decision.reason,
                    team=decision.team,
                )
            )
    return envelope
