"""Scenario helpers shared by the integration and fault tests: the events a telephony
platform and agent desktops publish, and readers of what the services committed."""

from __future__ import annotations

from collections.abc import Callable

from switchboard.v1 import common_pb2, contact_events_pb2
from switchboard.v1.envelope_pb2 import Envelope

from services.auditor.__main__ import audit_topics
from services.common.codec import encode_envelope, new_envelope
from services.common.topics import Topics
from services.notifier.gateway_stub import ReferenceGateway
from tests.support import KafkaBroker

DELIVERED, DEAD_LETTERED = 1, 2
SMS = common_pb2.CHANNEL_SMS


# --- events, as a telephony platform and agent desktops publish them ------------------


def login(agent_id: str, domain: str = "acme") -> bytes:
    e = new_envelope(domain, "desk", event_id=f"login-{domain}-{agent_id}")
    e.agent_logged_in.agent_id = agent_id
    e.agent_logged_in.team = "billing-team"
    e.agent_logged_in.languages.append("en")
    e.agent_logged_in.skills.add(skill="billing", proficiency=5)
    e.agent_logged_in.capacity.add(channel=common_pb2.CHANNEL_VOICE, max_concurrent=1)
    return encode_envelope(e)


def arrive(
    contact_id: str,
    queue: str = "billing-en",
    domain: str = "acme",
    channel: int = common_pb2.CHANNEL_VOICE,
) -> bytes:
    e = new_envelope(domain, "pbx", event_id=f"arrive-{domain}-{contact_id}")
    e.contact_arrived.contact_id = contact_id
    e.contact_arrived.queue = queue
    e.contact_arrived.channel = channel  # type: ignore[assignment]
    e.contact_arrived.customer.name = "Anna"
    e.contact_arrived.customer.phone = "+48600123456"
    return encode_envelope(e)


def accept(agent_id: str, contact_id: str, offer_id: str, domain: str = "acme") -> bytes:
    e = new_envelope(domain, "desk", event_id=f"accept-{domain}-{offer_id}")
    e.offer_accepted.agent_id, e.offer_accepted.contact_id = agent_id, contact_id
    e.offer_accepted.offer_id = offer_id
    return encode_envelope(e)


def end(contact_id: str, domain: str = "acme") -> bytes:
    e = new_envelope(domain, "pbx", event_id=f"end-{domain}-{contact_id}")
    e.contact_ended.contact_id = contact_id
    e.contact_ended.disposition = contact_events_pb2.DISPOSITION_RESOLVED
    return encode_envelope(e)


def hold(contact_id: str, minutes: int = 3) -> bytes:
    e = new_envelope("acme", "pbx", event_id=f"hold-{contact_id}")
    e.contact_held.contact_id = contact_id
    e.contact_held.reason = contact_events_pb2.PAUSE_REASON_CHECKING_INFORMATION
    e.contact_held.expected_duration.FromSeconds(minutes * 60)
    return encode_envelope(e)


# --- reading what the services committed ----------------------------------------------


def offers(decisions: list[Envelope]) -> list[tuple[str, str, str, str]]:
    """(domain, contact, agent, offer id) of every offer made."""
    return [
        (d.domain, d.offer_made.contact_id, d.offer_made.agent_id, d.offer_made.offer_id)
        for d in decisions
        if d.HasField("offer_made")
    ]


def count(kind: str) -> Callable[[list[Envelope]], int]:
    return lambda envelopes: sum(e.WhichOneof("payload") == kind for e in envelopes)


def outcomes(records: list[Envelope]) -> dict[str, list[int]]:
    """Notification id -> the outcomes recorded for it, in order."""
    found: dict[str, list[int]] = {}
    for e in records:
        if e.HasField("notification_record") and e.notification_record.outcome:
            record = e.notification_record
            found.setdefault(record.notification.notification_id, []).append(record.outcome)
    return found


def told_about_holds(gateway: ReferenceGateway) -> set[str]:
    """Contacts whose customer received the hold message."""
    return {
        d.notification_id.removeprefix("hold-").removesuffix(":hold_started")
        for d in gateway.delivered
        if d.notification_id.endswith(":hold_started")
    }


async def audit_ok(kafka: KafkaBroker, topics: Topics, **checks: bool) -> None:
    report = await audit_topics(kafka.bootstrap_servers, topics, run_finished=False, **checks)
    assert report.ok, report.summary()
