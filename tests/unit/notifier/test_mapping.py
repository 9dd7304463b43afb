"""The notifier's mapper reads every event field with the shared contract: core inputs are
built from checked values, and a bad value is refused with the contract's reason (never
guessed: an unset disposition is no longer "resolved", an unknown pause reason no longer
"unspecified", an unknown channel no longer accepted)."""

from __future__ import annotations

import pytest
from switchboard.v1 import common_pb2, contact_events_pb2
from switchboard.v1.envelope_pb2 import Envelope

from services.common.codec import new_envelope
from services.common.errors import RejectedEvent
from services.notifier.adapters.mapping import envelope_to_input
from services.notifier.domain import core as n


def arrival(**fields: object) -> Envelope:
    e = new_envelope("acme", "pbx", event_id="e-1")
    a = e.contact_arrived
    a.contact_id, a.queue, a.channel = "c-1", "billing-en", common_pb2.CHANNEL_SMS
    a.language = "pl"
    a.customer.name, a.customer.phone = "Anna", "+48600123456"
    for name, value in fields.items():
        setattr(a, name, value)
    return e


def hold(kind: str, reason: int) -> Envelope:
    e = new_envelope("acme", "pbx", event_id="e-2")
    p = getattr(e, kind)
    p.contact_id, p.reason = "c-1", reason
    p.expected_duration.FromMilliseconds(90_500)
    return e


def ended(disposition: int) -> Envelope:
    e = new_envelope("acme", "pbx", event_id="e-3")
    e.contact_ended.contact_id = "c-1"
    e.contact_ended.disposition = disposition  # type: ignore[assignment]
    return e


def reason(e: Envelope) -> str:
    with pytest.raises(RejectedEvent) as info:
        envelope_to_input(e)
    return info.value.reason


def test_an_arrival_becomes_a_core_input_with_its_checked_channel() -> None:
    assert envelope_to_input(arrival()) == n.ContactArrived(
        "c-1", common_pb2.CHANNEL_SMS, n.Customer(name="Anna", phone="+48600123456", language="pl")
    )


def test_an_arrival_on_a_channel_of_zero_or_from_a_newer_producer_is_refused() -> None:
    assert (
        reason(arrival(channel=0)) == "contact_arrived.channel: not set (0 is CHANNEL_UNSPECIFIED)"
    )
    assert reason(arrival(channel=6)) == "contact_arrived.channel: unknown Channel value 6"


def test_an_arrival_is_checked_whole_like_the_router_checks_it() -> None:
    assert reason(arrival(queue="")) == "contact_arrived.queue: required, got an empty value"
    assert reason(arrival(priority=9)) == "contact_arrived.priority: unknown Priority value 9"


@pytest.mark.parametrize("kind", ["contact_held", "contact_paused"])
def test_every_known_pause_reason_has_its_words_and_zero_or_unknown_is_refused(
    kind: str,
) -> None:
    for value in contact_events_pb2.PauseReason.DESCRIPTOR.values[1:]:
        event = envelope_to_input(hold(kind, value.number))
        assert event == n.ContactPaused(
            "c-1",
            value.name.removeprefix("PAUSE_REASON_").lower(),
            90.5,
            hold=kind == "contact_held",
        )
    assert reason(hold(kind, 0)) == f"{kind}.reason: not set (0 is PAUSE_REASON_UNSPECIFIED)"
    assert reason(hold(kind, 42)) == f"{kind}.reason: unknown PauseReason value 42"


def test_every_known_disposition_has_its_outcome_and_an_unset_one_is_not_resolved() -> None:
    for value in contact_events_pb2.Disposition.DESCRIPTOR.values[1:]:
        assert envelope_to_input(ended(value.number)) == n.ContactEnded(
            "c-1", value.name.removeprefix("DISPOSITION_").lower()
        )
    assert reason(ended(0)) == "contact_ended.disposition: not set (0 is DISPOSITION_UNSPECIFIED)"
    assert reason(ended(42)) == "contact_ended.disposition: unknown Disposition value 42"


def test_a_queue_position_reads_its_estimate_with_the_contract_duration() -> None:
    e = new_envelope("acme", "router", event_id="e-4")
    q = e.queue_position_updated
    q.contact_id, q.position = "c-1", 3
    q.estimated_wait.FromSeconds(240)
    assert envelope_to_input(e) == n.QueuePositionUpdated("c-1", 3, 240.0)
    q.estimated_wait.FromSeconds(-1)
    assert reason(e) == "queue_position_updated.estimated_wait: must not be negative, got -1.0 s"


def test_a_queue_position_without_an_estimate_is_read_as_none_not_zero() -> None:
    e = new_envelope("acme", "router", event_id="e-4")
    q = e.queue_position_updated
    q.contact_id, q.position, q.estimated_wait_unknown = "c-1", 3, True
    assert envelope_to_input(e) == n.QueuePositionUpdated("c-1", 3, None)


def test_every_id_the_notifier_reads_is_required() -> None:
    for kind in ("contact_resumed", "contact_abandoned", "contact_assigned", "contact_closed"):
        e = new_envelope("acme", "test", event_id="e-5")
        getattr(e, kind).SetInParent()
        assert reason(e) == f"{kind}.contact_id: required, got an empty value"
