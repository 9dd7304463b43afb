"""Escalation's mapper reads every event field with the shared contract: core inputs are
built from checked values, and a bad value is refused with the contract's reason (never
guessed: an unknown pause reason is no longer "checking", an unknown priority no longer
NORMAL)."""

from __future__ import annotations

import pytest
from switchboard.v1 import common_pb2, contact_events_pb2
from switchboard.v1.envelope_pb2 import Envelope

from services.common.codec import new_envelope
from services.common.errors import RejectedEvent
from services.escalation.adapters.mapping import envelope_to_input
from services.escalation.domain import model as m


def arrival(**fields: object) -> Envelope:
    e = new_envelope("acme", "pbx", event_id="e-1")
    a = e.contact_arrived
    a.contact_id, a.queue, a.channel = "c-1", "billing-en", common_pb2.CHANNEL_VOICE
    a.customer.customer_id, a.customer.name = "cust-1", "Anna"
    for name, value in fields.items():
        setattr(a, name, value)
    return e


def hold(kind: str, reason: int, seconds: int = 90) -> Envelope:
    e = new_envelope("acme", "pbx", event_id="e-2")
    p = getattr(e, kind)
    p.contact_id, p.agent_id, p.reason = "c-1", "a-1", reason
    p.expected_duration.seconds = seconds
    return e


def ended(disposition: int) -> Envelope:
    e = new_envelope("acme", "pbx", event_id="e-3")
    e.contact_ended.contact_id, e.contact_ended.agent_id = "c-1", "a-1"
    e.contact_ended.disposition = disposition  # type: ignore[assignment]
    e.contact_ended.note = "no fix"
    return e


def reason(e: Envelope) -> str:
    with pytest.raises(RejectedEvent) as info:
        envelope_to_input(e)
    return info.value.reason


def test_an_arrival_becomes_a_core_input_with_its_priority() -> None:
    assert envelope_to_input(arrival(priority=common_pb2.PRIORITY_VIP, reopened=True)) == (
        m.ContactArrived(
            "c-1", "billing-en", m.Customer("cust-1", "Anna"), m.Priority.VIP, reopened=True
        )
    )
    unset = envelope_to_input(arrival())
    assert isinstance(unset, m.ContactArrived)
    assert unset.priority is m.Priority.NORMAL


def test_an_unknown_priority_is_refused_not_read_as_normal() -> None:
    assert reason(arrival(priority=9)) == "contact_arrived.priority: unknown Priority value 9"


def test_an_arrival_is_checked_whole_like_the_router_checks_it() -> None:
    assert reason(arrival(queue="")) == "contact_arrived.queue: required, got an empty value"
    assert (
        reason(arrival(channel=0)) == "contact_arrived.channel: not set (0 is CHANNEL_UNSPECIFIED)"
    )


@pytest.mark.parametrize(
    ("kind", "cls"), [("contact_held", m.ContactHeld), ("contact_paused", m.ContactPaused)]
)
def test_a_hold_or_pause_keeps_its_reason_and_promised_seconds(kind: str, cls: type) -> None:
    assert envelope_to_input(hold(kind, contact_events_pb2.PAUSE_REASON_AWAITING_CUSTOMER)) == cls(
        "c-1", m.PauseReason.AWAITING_CUSTOMER, 90.0, "a-1"
    )


@pytest.mark.parametrize("kind", ["contact_held", "contact_paused"])
def test_a_pause_reason_of_zero_or_from_a_newer_producer_is_refused_not_read_as_checking(
    kind: str,
) -> None:
    assert reason(hold(kind, 0)) == f"{kind}.reason: not set (0 is PAUSE_REASON_UNSPECIFIED)"
    assert reason(hold(kind, 42)) == f"{kind}.reason: unknown PauseReason value 42"


def test_a_negative_promised_duration_is_refused_naming_the_field() -> None:
    assert reason(hold("contact_held", 1, seconds=-30)) == (
        "contact_held.expected_duration: must not be negative, got -30.0 s"
    )


def test_a_disposition_is_required_and_must_be_known() -> None:
    assert envelope_to_input(ended(contact_events_pb2.DISPOSITION_UNRESOLVED)) == m.ContactEnded(
        "c-1", m.Disposition.UNRESOLVED, "no fix", "a-1"
    )
    assert reason(ended(0)) == "contact_ended.disposition: not set (0 is DISPOSITION_UNSPECIFIED)"
    assert reason(ended(42)) == "contact_ended.disposition: unknown Disposition value 42"


def test_every_id_escalation_reads_is_required() -> None:
    for kind in ("contact_resumed", "contact_reopened", "manager_requested", "contact_assigned"):
        e = new_envelope("acme", "test", event_id="e-4")
        getattr(e, kind).SetInParent()
        assert reason(e) == f"{kind}.contact_id: required, got an empty value"


def test_every_known_proto_enum_value_has_its_escalation_enum_member_of_the_same_name() -> None:
    """The contract lets every known number through; the mapper must have a member for it."""
    pairs = [
        (common_pb2.Priority, m.Priority, "PRIORITY_"),
        (contact_events_pb2.PauseReason, m.PauseReason, "PAUSE_REASON_"),
        (contact_events_pb2.Disposition, m.Disposition, "DISPOSITION_"),
    ]
    for proto, domain, prefix in pairs:
        for value in proto.DESCRIPTOR.values[1:]:
            assert domain(value.number).name == value.name.removeprefix(prefix)
