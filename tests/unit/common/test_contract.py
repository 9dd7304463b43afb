"""The shared reading of the event contracts: each reader accepts what the protos allow
and refuses the rest with a reason that names the field and the value; and the three
services, fed the same bad event, refuse it with the same reason."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from switchboard.v1 import agent_events_pb2, common_pb2, contact_events_pb2
from switchboard.v1.envelope_pb2 import Envelope

from services.common import contract
from services.common.codec import new_envelope
from services.common.errors import RejectedEvent
from services.escalation.adapters.mapping import envelope_to_input as escalation_input
from services.notifier.adapters.mapping import envelope_to_input as notifier_input
from services.router.adapters.mapping import envelope_to_input as router_input


def refused(call: Callable[[], object]) -> str:
    with pytest.raises(RejectedEvent) as info:
        call()
    return info.value.reason


# --- ids ------------------------------------------------------------------------------


def test_required_returns_a_set_id_and_refuses_an_empty_one_by_field() -> None:
    assert contract.required("c-1", "contact_arrived.contact_id") == "c-1"
    assert refused(lambda: contract.required("", "contact_arrived.contact_id")) == (
        "contact_arrived.contact_id: required, got an empty value"
    )


# --- enums ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reader", "enum"),
    [
        (contract.channel, common_pb2.Channel),
        (contract.pause_reason, contact_events_pb2.PauseReason),
        (contract.disposition, contact_events_pb2.Disposition),
        (contract.agent_state, agent_events_pb2.AgentState),
    ],
)
def test_an_enum_reader_accepts_every_known_non_zero_value(
    reader: Callable[[int, str], int], enum: contract.ProtoEnum
) -> None:
    numbers = [v.number for v in enum.DESCRIPTOR.values if v.number != 0]
    assert numbers, "the enum has values"
    assert [reader(n, "f") for n in numbers] == numbers


@pytest.mark.parametrize(
    ("reader", "field", "zero_reason", "unknown_reason"),
    [
        (
            contract.channel,
            "contact_arrived.channel",
            "contact_arrived.channel: not set (0 is CHANNEL_UNSPECIFIED)",
            "contact_arrived.channel: unknown Channel value 99",
        ),
        (
            contract.pause_reason,
            "contact_paused.reason",
            "contact_paused.reason: not set (0 is PAUSE_REASON_UNSPECIFIED)",
            "contact_paused.reason: unknown PauseReason value 99",
        ),
        (
            contract.disposition,
            "contact_ended.disposition",
            "contact_ended.disposition: not set (0 is DISPOSITION_UNSPECIFIED)",
            "contact_ended.disposition: unknown Disposition value 99",
        ),
        (
            contract.agent_state,
            "agent_state_changed.state",
            "agent_state_changed.state: not set (0 is AGENT_STATE_UNSPECIFIED)",
            "agent_state_changed.state: unknown AgentState value 99",
        ),
    ],
)
def test_an_enum_reader_refuses_zero_and_unknown_numbers_naming_field_and_value(
    reader: Callable[[int, str], int], field: str, zero_reason: str, unknown_reason: str
) -> None:
    assert refused(lambda: reader(0, field)) == zero_reason
    assert refused(lambda: reader(99, field)) == unknown_reason
    assert refused(lambda: reader(-1, field)) == unknown_reason.replace("99", "-1")


def test_priority_reads_unset_as_normal_and_refuses_an_unknown_number() -> None:
    assert contract.priority(0, "p") == common_pb2.PRIORITY_NORMAL
    assert contract.priority(common_pb2.PRIORITY_VIP, "p") == common_pb2.PRIORITY_VIP
    assert contract.priority(common_pb2.PRIORITY_CALLBACK, "p") == common_pb2.PRIORITY_CALLBACK
    assert refused(lambda: contract.priority(7, "contact_arrived.priority")) == (
        "contact_arrived.priority: unknown Priority value 7"
    )


# --- durations ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [
        (Duration(), 0.0),
        (Duration(seconds=120), 120.0),
        (Duration(seconds=1, nanos=500_000_000), 1.5),
        (Duration(nanos=1), 1e-9),
        (Duration(seconds=contract.MAX_DURATION_S), float(contract.MAX_DURATION_S)),
    ],
)
def test_duration_s_reads_a_valid_non_negative_duration_as_seconds(
    duration: Duration, seconds: float
) -> None:
    assert contract.duration_s(duration, "f") == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("duration", "reason"),
    [
        (Duration(seconds=-5), "contact_held.expected_duration: must not be negative, got -5.0 s"),
        (
            Duration(nanos=-500_000_000),
            "contact_held.expected_duration: must not be negative, got -0.5 s",
        ),
        (
            Duration(seconds=1, nanos=-1),
            "contact_held.expected_duration: invalid Duration (seconds=1, nanos=-1)",
        ),
        (
            Duration(nanos=1_000_000_000),
            "contact_held.expected_duration: invalid Duration (seconds=0, nanos=1000000000)",
        ),
        (
            Duration(seconds=contract.MAX_DURATION_S + 1),
            f"contact_held.expected_duration: {contract.MAX_DURATION_S + 1} s exceeds the "
            "Duration range",
        ),
    ],
)
def test_duration_s_refuses_negative_and_invalid_durations_naming_the_field(
    duration: Duration, reason: str
) -> None:
    assert refused(lambda: contract.duration_s(duration, "contact_held.expected_duration")) == (
        reason
    )


def test_set_duration_s_writes_what_duration_s_reads_and_a_negative_value_as_zero() -> None:
    target = Duration()
    contract.set_duration_s(target, 12.25)
    assert contract.duration_s(target, "f") == 12.25
    contract.set_duration_s(target, -3.0)
    assert (target.seconds, target.nanos) == (0, 0)


# --- skills ---------------------------------------------------------------------------


def test_skills_keeps_named_skills_with_levels_0_to_10_in_order() -> None:
    items = [("billing", 0), ("tech", 10), ("sales", 5)]
    assert contract.skills(items, "f") == tuple(items)


def test_skills_refuses_an_empty_name_and_a_level_above_10_naming_the_field() -> None:
    assert refused(lambda: contract.skills([("", 3)], "agent_logged_in.skills")) == (
        "agent_logged_in.skills: skill name is empty"
    )
    assert refused(lambda: contract.skills([("billing", 11)], "agent_logged_in.skills")) == (
        "agent_logged_in.skills.billing: level 11 is outside 0-10"
    )


# --- whole events ---------------------------------------------------------------------


def arrived(**fields: object) -> contact_events_pb2.ContactArrived:
    event = contact_events_pb2.ContactArrived(
        contact_id="c-1", queue="billing-en", channel=common_pb2.CHANNEL_VOICE
    )
    event.required_skills.add(skill="billing", min_proficiency=3)
    for name, value in fields.items():
        setattr(event, name, value)
    return event


def test_contact_arrived_returns_the_checked_fields() -> None:
    arrival = contract.contact_arrived(arrived(priority=common_pb2.PRIORITY_VIP))
    assert arrival == contract.Arrival(
        contact_id="c-1",
        queue="billing-en",
        channel=common_pb2.CHANNEL_VOICE,
        priority=common_pb2.PRIORITY_VIP,
        required_skills=(("billing", 3),),
        optional_skills=(),
    )


def test_contact_arrived_checks_fields_in_contract_order_so_the_first_bad_one_is_named() -> None:
    everything_wrong = arrived(contact_id="", queue="", channel=0, priority=9)
    assert refused(lambda: contract.contact_arrived(everything_wrong)) == (
        "contact_arrived.contact_id: required, got an empty value"
    )
    assert refused(lambda: contract.contact_arrived(arrived(queue="", channel=0))) == (
        "contact_arrived.queue: required, got an empty value"
    )
    assert refused(lambda: contract.contact_arrived(arrived(channel=0, priority=9))) == (
        "contact_arrived.channel: not set (0 is CHANNEL_UNSPECIFIED)"
    )
    bad_skill = arrived()
    bad_skill.optional_skills.add(skill="tech", min_proficiency=12)
    assert refused(lambda: contract.contact_arrived(bad_skill)) == (
        "contact_arrived.optional_skills.tech: level 12 is outside 0-10"
    )


def test_pause_reads_a_hold_and_a_pause_alike_naming_the_payload() -> None:
    held = contact_events_pb2.ContactHeld(
        contact_id="c-1", reason=contact_events_pb2.PAUSE_REASON_AWAITING_CUSTOMER
    )
    held.expected_duration.FromSeconds(90)
    assert contract.pause(held, "contact_held") == contract.Pause(
        "c-1", contact_events_pb2.PAUSE_REASON_AWAITING_CUSTOMER, 90.0
    )
    paused = contact_events_pb2.ContactPaused(contact_id="c-1", reason=0)
    assert refused(lambda: contract.pause(paused, "contact_paused")) == (
        "contact_paused.reason: not set (0 is PAUSE_REASON_UNSPECIFIED)"
    )


# --- every service, the same bad event --------------------------------------------------

SERVICES: dict[str, Callable[[Envelope], object]] = {
    "router": router_input,
    "escalation": escalation_input,
    "notifier": notifier_input,
}


def envelope(payload: str, **fields: object) -> Envelope:
    e = new_envelope("acme", "test", event_id="bad-1")
    message = getattr(e, payload)
    message.SetInParent()
    for name, value in fields.items():
        if isinstance(value, Message):
            getattr(message, name).CopyFrom(value)
        else:
            setattr(message, name, value)
    return e


def arrival_envelope(**fields: object) -> Envelope:
    e = new_envelope("acme", "test", event_id="bad-1")
    e.contact_arrived.CopyFrom(arrived(**fields))
    return e


# (bad event, services that read the bad field, the one reason they all give)
SAME_BAD_EVENT = [
    (
        arrival_envelope(contact_id=""),
        ("router", "escalation", "notifier"),
        "contact_arrived.contact_id: required, got an empty value",
    ),
    (
        arrival_envelope(queue=""),
        ("router", "escalation", "notifier"),
        "contact_arrived.queue: required, got an empty value",
    ),
    (
        arrival_envelope(channel=0),
        ("router", "escalation", "notifier"),
        "contact_arrived.channel: not set (0 is CHANNEL_UNSPECIFIED)",
    ),
    (
        arrival_envelope(channel=42),
        ("router", "escalation", "notifier"),
        "contact_arrived.channel: unknown Channel value 42",
    ),
    (
        arrival_envelope(priority=42),
        ("router", "escalation", "notifier"),
        "contact_arrived.priority: unknown Priority value 42",
    ),
    (
        envelope("contact_abandoned"),
        ("router", "escalation", "notifier"),
        "contact_abandoned.contact_id: required, got an empty value",
    ),
    (
        envelope("contact_ended", disposition=contact_events_pb2.DISPOSITION_RESOLVED),
        ("router", "escalation", "notifier"),
        "contact_ended.contact_id: required, got an empty value",
    ),
    (
        envelope("contact_ended", contact_id="c-1"),
        ("router", "escalation", "notifier"),
        "contact_ended.disposition: not set (0 is DISPOSITION_UNSPECIFIED)",
    ),
    (
        envelope("contact_ended", contact_id="c-1", disposition=42),
        ("router", "escalation", "notifier"),
        "contact_ended.disposition: unknown Disposition value 42",
    ),
    (
        envelope("contact_held", contact_id="c-1"),
        ("escalation", "notifier"),
        "contact_held.reason: not set (0 is PAUSE_REASON_UNSPECIFIED)",
    ),
    (
        envelope("contact_paused", contact_id="c-1", reason=42),
        ("escalation", "notifier"),
        "contact_paused.reason: unknown PauseReason value 42",
    ),
    (
        envelope(
            "contact_paused", contact_id="c-1", reason=1, expected_duration=Duration(seconds=-1)
        ),
        ("escalation", "notifier"),
        "contact_paused.expected_duration: must not be negative, got -1.0 s",
    ),
    (
        envelope("contact_resumed"),
        ("escalation", "notifier"),
        "contact_resumed.contact_id: required, got an empty value",
    ),
    (
        envelope("contact_transferred"),
        ("router", "escalation"),
        "contact_transferred.contact_id: required, got an empty value",
    ),
    (
        envelope("contact_assigned"),
        ("escalation", "notifier"),
        "contact_assigned.contact_id: required, got an empty value",
    ),
    (
        envelope("contact_closed"),
        ("escalation", "notifier"),
        "contact_closed.contact_id: required, got an empty value",
    ),
    (
        envelope("contact_unroutable"),
        ("escalation", "notifier"),
        "contact_unroutable.contact_id: required, got an empty value",
    ),
]


@pytest.mark.parametrize(
    ("bad", "readers", "reason"),
    SAME_BAD_EVENT,
    ids=[reason.split(":")[0] + f"[{i}]" for i, (_, _, reason) in enumerate(SAME_BAD_EVENT)],
)
def test_every_service_that_reads_a_bad_field_refuses_the_event_with_the_same_reason(
    bad: Envelope, readers: tuple[str, ...], reason: str
) -> None:
    reasons = {}
    for name in readers:
        with pytest.raises(RejectedEvent) as info:
            SERVICES[name](bad)
        reasons[name] = info.value.reason
    assert reasons == dict.fromkeys(readers, reason)


# --- bounds on every field -----------------------------------------------------------------


def test_an_agent_with_hundreds_of_skills_and_languages_is_refused_naming_the_field() -> None:
    e = new_envelope("acme", "desk", event_id="login-1")
    login = e.agent_logged_in
    login.agent_id = "a-1"
    for n in range(500):
        login.skills.add(skill=f"skill-{n}", proficiency=5)
        login.languages.append(f"l{n}")
    with pytest.raises(RejectedEvent) as refused:
        contract.within_bounds(e)
    assert refused.value.reason == (
        f"agent_logged_in.skills: 500 entries, at most {contract.MAX_LIST_ENTRIES}"
    )


@pytest.mark.parametrize(
    ("fill", "reason"),
    [
        (
            lambda e: setattr(e.contact_arrived.customer, "name", "A" * 300),
            "contact_arrived.customer.name: 300 characters, at most 128",
        ),
        (
            lambda e: setattr(e.contact_ended, "note", "n" * 2_001),
            "contact_ended.note: 2001 characters, at most 2000",
        ),
        (lambda e: setattr(e, "event_id", "e" * 129), "event_id: 129 characters, at most 128"),
        (lambda e: setattr(e, "domain", "d" * 129), "domain: 129 characters, at most 128"),
    ],
)
def test_every_text_field_has_a_limit(fill: Callable[[Envelope], None], reason: str) -> None:
    e = new_envelope("acme", "pbx", event_id="e-1")
    fill(e)
    with pytest.raises(RejectedEvent) as refused:
        contract.within_bounds(e)
    assert refused.value.reason == reason


def test_an_ordinary_event_is_within_bounds() -> None:
    e = arrival_envelope()
    e.contact_arrived.customer.name = "Zofia Żak-Wiśniewska"
    e.contact_arrived.required_skills.add(skill="billing", min_proficiency=3)
    contract.within_bounds(e)
