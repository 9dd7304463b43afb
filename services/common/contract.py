"""The one reading of the event contracts, shared by every service's mapper.

Each field kind of ``contact_events``, ``agent_events`` and ``routing`` is read here once,
so every service that reads a field (router, escalation, notifier) accepts the same
values and dead-letters the rest with the same :class:`RejectedEvent` reason, which names
the field and the value:

=====================  ==============================================================
``required``           an id that must be non-empty
``enum_value``         a known, non-zero number of a proto enum: ``*_UNSPECIFIED`` (0)
                       is "not set" and an unknown number comes from a newer producer;
                       both are refused rather than guessed
``channel``            ``enum_value`` of ``Channel``
``priority``           ``Priority``, except that an unset (0) priority reads as NORMAL
                       (producers may omit it); an unknown number is refused
``pause_reason``       ``enum_value`` of ``PauseReason``
``disposition``        ``enum_value`` of ``Disposition``
``agent_state``        ``enum_value`` of ``AgentState``
``duration_s``         a ``google.protobuf.Duration`` as float seconds: valid per its
                       spec (within +-10,000 years, nanos in range and of the same sign)
                       and not negative, so the result is always finite
``skills``             (skill, level) pairs: a non-empty name, a level 0-10
=====================  ==============================================================

:func:`set_duration_s` is the writing side of ``duration_s``, for the router's decisions.

Events whose fields several services read are read whole, by one function
(:func:`contact_arrived`, :func:`pause`), so the checks run in the same order and the
first bad field gives the same reason everywhere. Rules that depend on a service's
configuration (a configured queue or skill) stay with that service.

Returned enum values are plain proto numbers; each mapper turns them into its domain's
enum (the domains use the proto's numbers).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from switchboard.v1 import agent_events_pb2, common_pb2, contact_events_pb2
from switchboard.v1.envelope_pb2 import Envelope

from services.common.errors import RejectedEvent

__all__ = [
    "MAX_DURATION_S",
    "MAX_PROFICIENCY",
    "Arrival",
    "Pause",
    "ProtoEnum",
    "agent_state",
    "channel",
    "contact_arrived",
    "disposition",
    "duration_s",
    "enum_value",
    "erased_customer",
    "home_topic",
    "pause",
    "pause_reason",
    "priority",
    "required",
    "set_duration_s",
    "skills",
    "within_bounds",
]

_STRING = FieldDescriptor.TYPE_STRING
_MESSAGE = FieldDescriptor.TYPE_MESSAGE

#: The largest ``google.protobuf.Duration`` its spec allows (about 10,000 years).
MAX_DURATION_S = 315_576_000_000
_MAX_NANOS = 999_999_999
#: Skill levels are 1 (novice) to 10 (expert); 0 means "any" in a requirement.
MAX_PROFICIENCY = 10


#: Longest text a field may carry, in characters, by field name; every other string
#: field (ids, names, codes) gets DEFAULT_TEXT_CHARS.
TEXT_LIMITS = {
    "note": 2_000,
    "text": 2_000,
    "comment": 1_000,
    "detail": 500,
    "reason": 500,
    "summary": 2_000,
    "subject": 200,
    "body": 4_000,
    # a domain's policy (policy.proto's PolicyVersion.document: services/common/policy_document)
    "document": 64 * 1024,
}
#: Limits of one message's field (by its full name) that differ from its name's above.
FIELD_TEXT_LIMITS = {
    "switchboard.v1.ApplyPolicyRequest.comment": 500,
    "switchboard.v1.RollbackPolicyRequest.comment": 500,
    "switchboard.v1.PolicyVersion.comment": 500,
}
_QUALIFIED_NAMES = frozenset(name.rpartition(".")[2] for name in FIELD_TEXT_LIMITS)
DEFAULT_TEXT_CHARS = 128
#: Most entries in any list field (skills, languages, capacities, notes).
MAX_LIST_ENTRIES = 32
#: Deepest nesting of messages inside an event.
MAX_DEPTH = 8


def within_bounds(message: Message, path: str = "", depth: int = 0) -> None:
    """Every string and list field of ``message`` within its limit, or :class:`RejectedEvent`
    naming the first that is not: the services keep what they read in memory, so no field
    may be unbounded (an agent with 500 skills in 500 languages was 10M index entries)."""
    if depth > MAX_DEPTH:
        raise RejectedEvent(f"{path or 'event'}: nested deeper than {MAX_DEPTH}")
    for field, value in message.ListFields():
        name = f"{path}.{field.name}" if path else field.name
        if field.is_repeated:
            if len(value) > MAX_LIST_ENTRIES:
                raise RejectedEvent(f"{name}: {len(value)} entries, at most {MAX_LIST_ENTRIES}")
            items = value
        else:
            items = (value,)
        if field.type == _STRING:
            limit = TEXT_LIMITS.get(field.name, DEFAULT_TEXT_CHARS)
            if field.name in _QUALIFIED_NAMES:
                limit = FIELD_TEXT_LIMITS.get(field.full_name, limit)
            for item in items:
                if len(item) > limit:
                    raise RejectedEvent(f"{name}: {len(item)} characters, at most {limit}")
        elif field.type == _MESSAGE:
            for item in items:
                within_bounds(item, name, depth + 1)


#: Envelope payload field numbers (see envelope.proto) -> the topic those events belong on.
_HOME_TOPICS = (
    (range(10, 30), "contact.events"),
    (range(30, 50), "agent.events"),
    (range(50, 70), "routing.decisions"),
    (range(70, 80), "escalations"),
    (range(80, 90), "notifications"),
    (range(90, 100), "policies"),
)


@functools.cache
def home_topic(payload: str) -> str | None:
    """The topic (unprefixed) an event with this payload belongs on, e.g. "agent.events"
    for ``offer_accepted``; None for a name the envelope does not have."""
    field = Envelope.DESCRIPTOR.fields_by_name.get(payload)
    if field is None or field.containing_oneof is None:
        return None
    for numbers, topic in _HOME_TOPICS:
        if field.number in numbers:
            return topic
    return None


def erased_customer(event: contact_events_pb2.CustomerErasureRequested) -> str:
    """The customer id whose personal data every service erases."""
    return required(event.customer_id, "customer_erasure_requested.customer_id")


def required(value: str, field: str) -> str:
    """``value`` if it is set: an empty id names nothing a core could act on."""
    if not value:
        raise RejectedEvent(f"{field}: required, got an empty value")
    return value


class ProtoEnum(Protocol):
    """A generated enum wrapper such as ``common_pb2.Channel``: its descriptor is enough."""

    @property
    def DESCRIPTOR(self) -> EnumDescriptor: ...


@functools.cache
def _numbers(descriptor: EnumDescriptor) -> frozenset[int]:
    return frozenset(number for number in descriptor.values_by_number if number != 0)


def enum_value(value: int, enum: ProtoEnum, field: str) -> int:
    """``value`` if it is a known, non-zero number of ``enum``.

    Zero is the proto's "not set"; a number this build does not know comes from a newer
    producer, and guessing its meaning would act on a value nobody sent.
    """
    descriptor = enum.DESCRIPTOR
    if value in _numbers(descriptor):
        return value
    name = descriptor.name
    if value == 0:
        unset = descriptor.values_by_number[0].name
        raise RejectedEvent(f"{field}: not set (0 is {unset})")
    raise RejectedEvent(f"{field}: unknown {name} value {value}")


def channel(value: int, field: str) -> int:
    """A known ``Channel``: capacity, templates and delivery all depend on it."""
    return enum_value(value, common_pb2.Channel, field)


def priority(value: int, field: str) -> int:
    """A known ``Priority``; unset (0) reads as NORMAL, the one enum with a default,
    because producers that know nothing of priorities leave it out."""
    if value == 0:
        return common_pb2.PRIORITY_NORMAL
    return enum_value(value, common_pb2.Priority, field)


def pause_reason(value: int, field: str) -> int:
    """A known ``PauseReason``: it decides whether the SLA clock stops and what the
    customer is told."""
    return enum_value(value, contact_events_pb2.PauseReason, field)


def disposition(value: int, field: str) -> int:
    """A known ``Disposition``: it decides escalation and the closing message."""
    return enum_value(value, contact_events_pb2.Disposition, field)


def agent_state(value: int, field: str) -> int:
    """A known ``AgentState``."""
    return enum_value(value, agent_events_pb2.AgentState, field)


def duration_s(duration: Duration, field: str) -> float:
    """``duration`` in seconds, refused when negative or outside the Duration spec."""
    seconds, nanos = duration.seconds, duration.nanos
    if not -_MAX_NANOS <= nanos <= _MAX_NANOS or seconds < 0 < nanos or nanos < 0 < seconds:
        raise RejectedEvent(f"{field}: invalid Duration (seconds={seconds}, nanos={nanos})")
    if seconds < 0 or nanos < 0:
        raise RejectedEvent(f"{field}: must not be negative, got {seconds + nanos / 1e9} s")
    if seconds > MAX_DURATION_S:
        raise RejectedEvent(f"{field}: {seconds} s exceeds the Duration range")
    return seconds + nanos / 1e9


def set_duration_s(target: Duration, seconds: float) -> None:
    """Write ``seconds`` so that :func:`duration_s` reads it back: a negative value (the
    clock stepped back) is written as 0."""
    target.FromNanoseconds(int(max(0.0, seconds) * 1e9))


def skills(items: Iterable[tuple[str, int]], field: str) -> tuple[tuple[str, int], ...]:
    """(skill, level) pairs with a name and a level 0-10, in the order given."""
    out = []
    for skill, level in items:
        if not skill:
            raise RejectedEvent(f"{field}: skill name is empty")
        if not 0 <= level <= MAX_PROFICIENCY:
            raise RejectedEvent(f"{field}.{skill}: level {level} is outside 0-{MAX_PROFICIENCY}")
        out.append((skill, level))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Arrival:
    """A ``ContactArrived`` whose contract fields were checked; the rest is read as is."""

    contact_id: str
    queue: str
    channel: int
    priority: int
    required_skills: tuple[tuple[str, int], ...]
    optional_skills: tuple[tuple[str, int], ...]


def contact_arrived(event: contact_events_pb2.ContactArrived) -> Arrival:
    """Every service checks a whole arrival, so a contact exists in all of them or in
    none: contact id, queue, channel, priority, then the skills."""
    return Arrival(
        contact_id=required(event.contact_id, "contact_arrived.contact_id"),
        queue=required(event.queue, "contact_arrived.queue"),
        channel=channel(event.channel, "contact_arrived.channel"),
        priority=priority(event.priority, "contact_arrived.priority"),
        required_skills=skills(
            ((r.skill, r.min_proficiency) for r in event.required_skills),
            "contact_arrived.required_skills",
        ),
        optional_skills=skills(
            ((r.skill, r.min_proficiency) for r in event.optional_skills),
            "contact_arrived.optional_skills",
        ),
    )


@dataclass(frozen=True, slots=True)
class Pause:
    """A ``ContactHeld`` or ``ContactPaused`` whose contract fields were checked."""

    contact_id: str
    reason: int
    expected_s: float


def pause(
    event: contact_events_pb2.ContactHeld | contact_events_pb2.ContactPaused, kind: str
) -> Pause:
    """A hold or pause (``kind`` is the payload name): contact id, reason, expected
    duration, read the same by escalation and the notifier."""
    return Pause(
        contact_id=required(event.contact_id, f"{kind}.contact_id"),
        reason=pause_reason(event.reason, f"{kind}.reason"),
        expected_s=duration_s(event.expected_duration, f"{kind}.expected_duration"),
    )
