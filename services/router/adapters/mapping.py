"""Protobuf envelopes <-> routing-core dataclasses. The only place both worlds meet."""

from __future__ import annotations

from switchboard.v1 import agent_events_pb2, common_pb2, routing_pb2
from switchboard.v1.envelope_pb2 import Envelope

from services.common import contract
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


def envelope_to_input(envelope: Envelope) -> m.Input | None:
    """The core input for an envelope, ``None`` for events the router ignores.

    Every field is read with :mod:`services.common.contract`, as escalation and the
    notifier read it; rules on the configuration (a configured queue or skill) are the
    core's (``UnknownQueue``, ``UnknownSkill``).
    """
    kind = envelope.WhichOneof("payload")
    if kind == "customer_erasure_requested":
        return m.CustomerErased(contract.erased_customer(envelope.customer_erasure_requested))
    if kind == "contact_arrived":
        e = envelope.contact_arrived
        arrival = contract.contact_arrived(e)
        return m.ContactArrived(
            contact_id=arrival.contact_id,
            queue=arrival.queue,
            channel=m.Channel(arrival.channel),
            required_skills=tuple(
                m.SkillRequirement(s, max(1, p)) for s, p in arrival.required_skills
            ),
            optional_skills=tuple(
                m.SkillRequirement(s, max(1, p)) for s, p in arrival.optional_skills
            ),
            language=e.language,
            priority=m.Priority(arrival.priority),
            preferred_agent_id=e.preferred_agent_id,
            customer_id=e.customer.customer_id,
            customer_name=e.customer.name,
        )
    if kind == "contact_abandoned":
        return m.ContactAbandoned(
            contract.required(envelope.contact_abandoned.contact_id, "contact_abandoned.contact_id")
        )
    if kind == "contact_ended":
        e2 = envelope.contact_ended
        contact_id = contract.required(e2.contact_id, "contact_ended.contact_id")
        # Not used by routing, but read as every service reads it: an end the others
        # refuse must not close the contact here alone.
        contract.disposition(e2.disposition, "contact_ended.disposition")
        return m.ContactEnded(contact_id, e2.agent_id)
    if kind == "contact_transferred":
        e3 = envelope.contact_transferred
        return m.ContactTransferred(
            contract.required(e3.contact_id, "contact_transferred.contact_id"),
            e3.to_queue,
            e3.to_agent_id,
        )
    if kind == "agent_logged_in":
        a = envelope.agent_logged_in
        return m.AgentLoggedIn(
            agent_id=contract.required(a.agent_id, "agent_logged_in.agent_id"),
            team=a.team,
            skills=contract.skills(
                ((s.skill, s.proficiency) for s in a.skills), "agent_logged_in.skills"
            ),
            languages=tuple(a.languages),
            capacity=tuple(
                (
                    m.Channel(contract.channel(c.channel, "agent_logged_in.capacity.channel")),
                    c.max_concurrent,
                )
                for c in a.capacity
            ),
        )
    if kind == "agent_logged_out":
        return m.AgentLoggedOut(
            contract.required(envelope.agent_logged_out.agent_id, "agent_logged_out.agent_id")
        )
    if kind == "agent_state_changed":
        s = envelope.agent_state_changed
        return m.AgentStateChanged(
            contract.required(s.agent_id, "agent_state_changed.agent_id"),
            m.AgentState(contract.agent_state(s.state, "agent_state_changed.state")),
            s.reason,
        )
    if kind == "agent_skills_changed":
        k = envelope.agent_skills_changed
        return m.AgentSkillsChanged(
            contract.required(k.agent_id, "agent_skills_changed.agent_id"),
            contract.skills(
                ((s.skill, s.proficiency) for s in k.skills), "agent_skills_changed.skills"
            ),
            tuple(k.languages),
        )
    if kind == "offer_accepted":
        o = envelope.offer_accepted
        return m.OfferAccepted(
            contract.required(o.agent_id, "offer_accepted.agent_id"),
            contract.required(o.contact_id, "offer_accepted.contact_id"),
            # without it the accept cannot be matched to an offer: refused and answered,
            # not ignored until the offer times out
            contract.required(o.offer_id, "offer_accepted.offer_id"),
        )
    if kind == "offer_rejected":
        r = envelope.offer_rejected
        return m.OfferRejected(
            contract.required(r.agent_id, "offer_rejected.agent_id"),
            contract.required(r.contact_id, "offer_rejected.contact_id"),
            contract.required(r.offer_id, "offer_rejected.offer_id"),
        )
    if kind in ignored_payloads:
        return None
    raise RejectedEvent(f"the router does not accept {kind} events")


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
            contract.set_duration_s(o.waited, decision.waited)
            o.attempt, o.relaxation_step = decision.attempt, decision.relaxation_step
        case m.ContactAssigned():
            a = envelope.contact_assigned
            a.offer_id, a.contact_id, a.agent_id, a.queue = (
                decision.offer_id,
                decision.contact_id,
                decision.agent_id,
                decision.queue,
            )
            contract.set_duration_s(a.waited, decision.waited)
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
            if decision.estimated_wait is None:
                q.estimated_wait_unknown = True  # and estimated_wait is left unset
            else:
                contract.set_duration_s(q.estimated_wait, decision.estimated_wait)
            contract.set_duration_s(q.waited, decision.waited)
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
            contract.set_duration_s(c.waited, decision.waited)
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
