"""Simulator events to and from the wire: :class:`Envelope` protobufs.

The only place that knows both the core's dataclasses and the generated code. Router
decisions the simulator does not act on (and payloads it does not know) map to ``None``.
"""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration
from switchboard.v1 import agent_events_pb2 as agent_pb
from switchboard.v1 import common_pb2 as common_pb
from switchboard.v1 import contact_events_pb2 as contact_pb
from switchboard.v1 import routing_pb2 as routing_pb
from switchboard.v1.envelope_pb2 import Envelope

from services.common.codec import new_envelope
from services.simulator import events as ev
from services.simulator.scenario import ChannelName

__all__ = ["SOURCE_AGENTS", "SOURCE_TELEPHONY", "decision_from_envelope", "to_envelope"]

#: ``Envelope.source`` of what telephony and channels publish, and of agent desktops.
SOURCE_TELEPHONY = "simulator-pbx"
SOURCE_AGENTS = "simulator-desktop"

_CHANNELS: dict[ChannelName, common_pb.Channel.ValueType] = {
    "voice": common_pb.CHANNEL_VOICE,
    "chat": common_pb.CHANNEL_CHAT,
    "email": common_pb.CHANNEL_EMAIL,
}
_PRIORITIES = {
    ev.Priority.NORMAL: common_pb.PRIORITY_NORMAL,
    ev.Priority.VIP: common_pb.PRIORITY_VIP,
    ev.Priority.CALLBACK: common_pb.PRIORITY_CALLBACK,
}
_REASONS = {
    ev.PauseReason.CHECKING_INFORMATION: contact_pb.PAUSE_REASON_CHECKING_INFORMATION,
    ev.PauseReason.WAITING_FOR_SPECIALIST: contact_pb.PAUSE_REASON_WAITING_FOR_SPECIALIST,
    ev.PauseReason.AWAITING_CUSTOMER: contact_pb.PAUSE_REASON_AWAITING_CUSTOMER,
    ev.PauseReason.WAITING_FOR_THIRD_PARTY: contact_pb.PAUSE_REASON_WAITING_FOR_THIRD_PARTY,
    ev.PauseReason.TECHNICAL_ISSUE: contact_pb.PAUSE_REASON_TECHNICAL_ISSUE,
}
_DISPOSITIONS = {
    ev.Disposition.RESOLVED: contact_pb.DISPOSITION_RESOLVED,
    ev.Disposition.UNRESOLVED: contact_pb.DISPOSITION_UNRESOLVED,
    ev.Disposition.NO_REPLY: contact_pb.DISPOSITION_NO_REPLY,
    ev.Disposition.CALLBACK_SCHEDULED: contact_pb.DISPOSITION_CALLBACK_SCHEDULED,
}
_PRESENCE = {
    agent_pb.AGENT_STATE_AVAILABLE: ev.AgentPresence.AVAILABLE,
    agent_pb.AGENT_STATE_AWAY: ev.AgentPresence.AWAY,
    agent_pb.AGENT_STATE_LOGGED_OUT: ev.AgentPresence.LOGGED_OUT,
    agent_pb.AGENT_STATE_BUSY: ev.AgentPresence.BUSY,
    agent_pb.AGENT_STATE_WRAP_UP: ev.AgentPresence.WRAP_UP,
    agent_pb.AGENT_STATE_RESERVED: ev.AgentPresence.RESERVED,
}


def _envelope(event: ev.SimEvent, domain: str) -> Envelope:
    source = SOURCE_TELEPHONY if event.topic == "contact" else SOURCE_AGENTS
    return new_envelope(domain, source, event_id=event.event_id, occurred_at=event.at)


def to_envelope(event: ev.SimEvent, domain: str) -> Envelope:
    """The envelope a telephony platform or agent desktop would publish for ``event``."""
    env = _envelope(event, domain)
    match event:
        case ev.ContactArrived():
            msg = env.contact_arrived
            msg.contact_id = event.contact_id
            msg.queue = event.queue
            msg.channel = _CHANNELS[event.channel]
            msg.required_skills.add(skill=event.skill, min_proficiency=event.min_proficiency)
            if event.optional_skill:
                msg.optional_skills.add(skill=event.optional_skill, min_proficiency=0)
            msg.language = event.language
            msg.priority = _PRIORITIES[event.priority]
            msg.preferred_agent_id = event.preferred_agent_id
            c = event.customer
            msg.customer.CopyFrom(
                common_pb.Customer(
                    customer_id=c.customer_id,
                    name=c.name,
                    phone=c.phone,
                    email=c.email,
                    language=c.language,
                )
            )
        case ev.ContactAbandoned():
            env.contact_abandoned.contact_id = event.contact_id
        case ev.ContactHeld():
            held = env.contact_held
            held.contact_id = event.contact_id
            held.agent_id = event.agent_id
            held.reason = _REASONS[event.reason]
            held.detail = event.detail
            held.expected_duration.FromMilliseconds(round(event.expected_seconds * 1000))
        case ev.ContactPaused():
            paused = env.contact_paused
            paused.contact_id = event.contact_id
            paused.agent_id = event.agent_id
            paused.reason = _REASONS[event.reason]
            paused.detail = event.detail
            paused.expected_duration.FromMilliseconds(round(event.expected_seconds * 1000))
        case ev.ContactResumed():
            env.contact_resumed.contact_id = event.contact_id
            env.contact_resumed.agent_id = event.agent_id
        case ev.ContactEnded():
            ended = env.contact_ended
            ended.contact_id = event.contact_id
            ended.agent_id = event.agent_id
            ended.disposition = _DISPOSITIONS[event.disposition]
            ended.note = event.note
        case ev.SurveyAnswered():
            survey = env.survey_result
            survey.contact_id = event.contact_id
            survey.customer_id = event.customer_id
            survey.agent_id = event.agent_id
            survey.score = event.score
            survey.comment = event.comment
        case ev.AgentLoggedIn():
            login = env.agent_logged_in
            login.agent_id = event.agent_id
            login.name = event.name
            login.team = event.team
            for skill, level in event.skills:
                login.skills.add(skill=skill, proficiency=level)
            login.languages.extend(event.languages)
            for channel, limit in event.capacity:
                login.capacity.add(channel=_CHANNELS[channel], max_concurrent=limit)
        case ev.AgentLoggedOut():
            env.agent_logged_out.agent_id = event.agent_id
        case ev.AgentStateChanged():
            state = env.agent_state_changed
            state.agent_id = event.agent_id
            state.state = (
                agent_pb.AGENT_STATE_AVAILABLE if event.available else agent_pb.AGENT_STATE_AWAY
            )
            state.reason = event.reason
        case ev.OfferAccepted():
            env.offer_accepted.agent_id = event.agent_id
            env.offer_accepted.contact_id = event.contact_id
            env.offer_accepted.offer_id = event.offer_id
        case ev.OfferRejected():
            rejected = env.offer_rejected
            rejected.agent_id = event.agent_id
            rejected.contact_id = event.contact_id
            rejected.offer_id = event.offer_id
            rejected.reason = event.reason
        case ev.ManagerRequested():
            env.manager_requested.agent_id = event.agent_id
            env.manager_requested.contact_id = event.contact_id
            env.manager_requested.note = event.note
    return env


def _seconds(duration: Duration) -> float:
    return duration.ToMilliseconds() / 1000.0


def decision_from_envelope(env: Envelope) -> ev.Decision | None:
    """The router decision in ``env`` as the core sees it, or ``None`` if it does not matter."""
    kind = env.WhichOneof("payload")
    if kind == "offer_made":
        offer: routing_pb.OfferMade = env.offer_made
        return ev.OfferMade(
            offer_id=offer.offer_id,
            contact_id=offer.contact_id,
            agent_id=offer.agent_id,
            expires_at=offer.expires_at.ToMilliseconds() / 1000.0,
        )
    if kind == "contact_assigned":
        a = env.contact_assigned
        return ev.ContactAssigned(offer_id=a.offer_id, contact_id=a.contact_id, agent_id=a.agent_id)
    if kind == "offer_timed_out":
        t = env.offer_timed_out
        return ev.OfferTimedOut(offer_id=t.offer_id, contact_id=t.contact_id, agent_id=t.agent_id)
    if kind == "contact_requeued":
        r = env.contact_requeued
        return ev.ContactRequeued(
            contact_id=r.contact_id,
            agent_id=r.agent_id,
            reason=routing_pb.RequeueReason.Name(r.reason),
        )
    if kind == "contact_unroutable":
        u = env.contact_unroutable
        return ev.ContactUnroutable(contact_id=u.contact_id, reason=u.reason)
    if kind == "contact_closed":
        c = env.contact_closed
        return ev.ContactClosed(contact_id=c.contact_id, abandoned=c.abandoned)
    if kind == "agent_status_changed":
        s = env.agent_status_changed
        return ev.AgentStatusChanged(
            agent_id=s.agent_id,
            state=_PRESENCE.get(s.state, ev.AgentPresence.UNKNOWN),
            reason=s.reason,
        )
    if kind == "queue_position_updated":
        q = env.queue_position_updated
        return ev.QueuePositionUpdated(
            contact_id=q.contact_id,
            position=q.position,
            estimated_wait=_seconds(q.estimated_wait),
        )
    return None
