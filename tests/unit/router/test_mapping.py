"""The router's mapper reads every event field with the shared contract: core inputs are
built from checked values, and a bad value is refused with the contract's reason."""

from __future__ import annotations

import pytest
from switchboard.v1 import agent_events_pb2, common_pb2, contact_events_pb2
from switchboard.v1.envelope_pb2 import Envelope

from services.common.codec import new_envelope
from services.common.errors import RejectedEvent
from services.router.adapters.mapping import decision_to_envelope, envelope_to_input
from services.router.domain import model as m


def arrival(**fields: object) -> Envelope:
    e = new_envelope("acme", "pbx", event_id="e-1")
    a = e.contact_arrived
    a.contact_id, a.queue, a.channel = "c-1", "billing-en", common_pb2.CHANNEL_CHAT
    a.required_skills.add(skill="billing", min_proficiency=0)
    a.optional_skills.add(skill="tech", min_proficiency=4)
    a.customer.customer_id, a.customer.name = "cust-1", "Anna"
    for name, value in fields.items():
        setattr(a, name, value)
    return e


def login(channel: int = common_pb2.CHANNEL_VOICE, level: int = 7) -> Envelope:
    e = new_envelope("acme", "desk", event_id="e-2")
    e.agent_logged_in.agent_id = "a-1"
    e.agent_logged_in.skills.add(skill="billing", proficiency=level)
    e.agent_logged_in.capacity.add(channel=channel, max_concurrent=2)  # type: ignore[arg-type]
    return e


def state_change(state: int) -> Envelope:
    e = new_envelope("acme", "desk", event_id="e-3")
    e.agent_state_changed.agent_id = "a-1"
    e.agent_state_changed.state = state  # type: ignore[assignment]
    return e


def reason(e: Envelope) -> str:
    with pytest.raises(RejectedEvent) as info:
        envelope_to_input(e)
    return info.value.reason


def test_an_arrival_becomes_a_core_input_built_from_checked_values() -> None:
    assert envelope_to_input(arrival(priority=common_pb2.PRIORITY_VIP)) == (
        m.ContactArrived(
            contact_id="c-1",
            queue="billing-en",
            channel=m.Channel.CHAT,
            required_skills=(m.SkillRequirement("billing", 1),),
            optional_skills=(m.SkillRequirement("tech", 4),),
            priority=m.Priority.VIP,
            customer_id="cust-1",
            customer_name="Anna",
        )
    )


def test_an_arrival_without_priority_is_normal_and_one_with_an_unknown_priority_is_refused() -> (
    None
):
    event = envelope_to_input(arrival())
    assert isinstance(event, m.ContactArrived)
    assert event.priority is m.Priority.NORMAL
    assert reason(arrival(priority=9)) == "contact_arrived.priority: unknown Priority value 9"


def test_an_arrival_with_a_bad_contract_field_is_refused_naming_it() -> None:
    assert reason(arrival(queue="")) == "contact_arrived.queue: required, got an empty value"
    assert (
        reason(arrival(channel=0)) == "contact_arrived.channel: not set (0 is CHANNEL_UNSPECIFIED)"
    )
    assert reason(arrival(channel=6)) == "contact_arrived.channel: unknown Channel value 6"


def test_a_skill_the_configuration_does_not_know_is_left_to_the_core() -> None:
    """The mapper reads the contract; the core, which holds the policy, raises UnknownSkill
    (tests/unit/router/test_routing_core.py)."""
    e = arrival()
    e.contact_arrived.required_skills.add(skill="juggling", min_proficiency=1)
    event = envelope_to_input(e)
    assert isinstance(event, m.ContactArrived)
    assert event.required_skills[-1] == m.SkillRequirement("juggling", 1)


def test_a_login_is_read_with_checked_skills_and_capacity_channels() -> None:
    assert envelope_to_input(login()) == m.AgentLoggedIn(
        agent_id="a-1", skills=(("billing", 7),), capacity=((m.Channel.VOICE, 2),)
    )
    assert reason(login(channel=0)) == (
        "agent_logged_in.capacity.channel: not set (0 is CHANNEL_UNSPECIFIED)"
    )
    assert reason(login(level=11)) == "agent_logged_in.skills.billing: level 11 is outside 0-10"


def test_an_agent_state_of_zero_or_from_a_newer_producer_is_refused() -> None:
    assert reason(state_change(0)) == (
        "agent_state_changed.state: not set (0 is AGENT_STATE_UNSPECIFIED)"
    )
    assert reason(state_change(42)) == "agent_state_changed.state: unknown AgentState value 42"


def test_every_known_proto_enum_value_has_its_router_enum_member_of_the_same_name() -> None:
    """The contract lets every known number through; the mapper must have a member for it."""
    pairs = [
        (common_pb2.Channel, m.Channel, "CHANNEL_"),
        (common_pb2.Priority, m.Priority, "PRIORITY_"),
        (agent_events_pb2.AgentState, m.AgentState, "AGENT_STATE_"),
    ]
    for proto, domain, prefix in pairs:
        for value in proto.DESCRIPTOR.values[1:]:
            assert domain(value.number).name == value.name.removeprefix(prefix)


def test_an_end_without_a_disposition_is_refused_like_the_other_services_refuse_it() -> None:
    """The router does not use the disposition, but closing a contact that escalation and
    the notifier keep open would split the services' view of it."""
    e = new_envelope("acme", "pbx", event_id="e-4")
    e.contact_ended.contact_id, e.contact_ended.agent_id = "c-1", "a-1"
    with pytest.raises(RejectedEvent, match=r"contact_ended\.disposition: not set"):
        envelope_to_input(e)
    e.contact_ended.disposition = contact_events_pb2.DISPOSITION_RESOLVED
    assert envelope_to_input(e) == m.ContactEnded("c-1", "a-1")


def test_a_negative_wait_is_written_as_zero_so_consumers_can_read_it() -> None:
    decision = m.ContactClosed("c-1", "billing-en", abandoned=False, waited=-0.25)
    out = decision_to_envelope(decision, new_envelope("acme", "router", event_id="d-1"))
    assert (out.contact_closed.waited.seconds, out.contact_closed.waited.nanos) == (0, 0)


def test_a_position_without_an_estimate_says_so_and_carries_no_wait() -> None:
    unknown = m.QueuePositionUpdated("c-1", "billing-pl", 2, None, 12.0)
    out = decision_to_envelope(unknown, new_envelope("acme", "router", event_id="d-2"))
    q = out.queue_position_updated
    assert (q.position, q.estimated_wait_unknown, q.HasField("estimated_wait")) == (2, True, False)
    known = m.QueuePositionUpdated("c-1", "billing-en", 2, 45.0, 12.0)
    q = decision_to_envelope(
        known, new_envelope("acme", "router", event_id="d-3")
    ).queue_position_updated
    assert (q.estimated_wait.seconds, q.estimated_wait_unknown) == (45, False)


def test_an_accept_without_its_offer_id_is_refused_not_ignored() -> None:
    """It cannot be matched to an offer; ignoring it let the offer time out and the agent
    go AWAY. Refused, it is dead-lettered and answered on routing.decisions."""
    e = new_envelope("acme", "desk", event_id="accept-1")
    e.offer_accepted.agent_id, e.offer_accepted.contact_id = "a-1", "c-1"
    assert reason(e) == "offer_accepted.offer_id: required, got an empty value"
