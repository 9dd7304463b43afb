"""Two tenants with different business hours in one notifier, through the real broker and
the reference gateway (issue #16): a contact arriving while its tenant is closed is told
when work resumes, in its language; the other tenant's is not; what the closed tenant's
policy keeps quiet is recorded SUPPRESSED on notifications, never sent."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import pytest
from prometheus_client import CollectorRegistry
from switchboard.v1 import common_pb2, notification_pb2, notification_pb2_grpc

from services.common.codec import decode_envelope, encode_envelope, new_envelope
from services.notifier.gateway_stub import ReferenceGateway
from tests.integration.test_notifier_service import notifier
from tests.support import KafkaBroker, bearer, until, wait_serving

pytestmark = pytest.mark.kafka
WARSAW = ZoneInfo("Europe/Warsaw")
POLISH_MONTHS = [
    "stycznia",
    "lutego",
    "marca",
    "kwietnia",
    "maja",
    "czerwca",
    "lipca",
    "sierpnia",
    "września",
    "października",
    "listopada",
    "grudnia",
]


def closed_until(today: date) -> date:
    """The tenant is closed from yesterday to three days on (holidays), then opens on the
    first working day after."""
    day = today + timedelta(days=4)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def wroclaw_document(today: date) -> str:
    holidays = ", ".join(f'"{today + timedelta(days=n)}"' for n in range(-1, 4))
    return f"""
[notification]
quiet_outside_hours = ["queue_position", "callback_offer"]
[notification.business_hours]
timezone = "Europe/Warsaw"
holidays = [{holidays}]
[notification.business_hours.hours]
mon = "08:00-18:00"
tue = "08:00-18:00"
wed = "08:00-18:00"
thu = "08:00-18:00"
fri = "08:00-18:00"
"""


ACME_DOCUMENT = """
[notification]
[notification.business_hours]
timezone = "America/New_York"
[notification.business_hours.hours]
mon = "00:00-24:00"
tue = "00:00-24:00"
wed = "00:00-24:00"
thu = "00:00-24:00"
fri = "00:00-24:00"
sat = "00:00-24:00"
sun = "00:00-24:00"
"""


def policy(domain: str, document: str) -> bytes:
    envelope = new_envelope(domain, "router", event_id=f"policy/{domain}/{uuid.uuid4().hex}")
    envelope.policy_changed.current.version = 1
    envelope.policy_changed.current.document = document
    return encode_envelope(envelope)


def arrived(domain: str, contact_id: str, queue: str, language: str) -> bytes:
    e = new_envelope(domain, "pbx", event_id=f"arrive-{contact_id}")
    a = e.contact_arrived
    a.contact_id, a.queue, a.channel = contact_id, queue, common_pb2.CHANNEL_SMS
    a.customer.name, a.customer.phone, a.customer.language = "Ola", "+48600123456", language
    return encode_envelope(e)


def position(domain: str, contact_id: str, queue: str) -> bytes:
    e = new_envelope(domain, "router", event_id=f"position-{contact_id}")
    q = e.queue_position_updated
    q.contact_id, q.queue, q.position = contact_id, queue, 2
    q.estimated_wait.FromSeconds(90)
    return encode_envelope(e)


async def test_the_outside_hours_notice_follows_each_tenants_hours(
    kafka: KafkaBroker, gateway: tuple[ReferenceGateway, int]
) -> None:
    reference, gateway_port = gateway
    topics = await kafka.fresh_topics()
    today = datetime.now(WARSAW).date()
    registry = CollectorRegistry()

    def consumed(topic: str, payload: str) -> float:
        labels = {"topic": topic, "payload": payload}
        return registry.get_sample_value("switchboard_events_consumed_total", labels) or 0.0

    def delivered(notification_id: str) -> list[Any]:
        return [d for d in reference.delivered if d.notification_id == notification_id]

    async with notifier(kafka, topics, gateway_port, registry) as port:
        await kafka.produce(
            topics.name("policies"),
            [policy("wroclaw", wroclaw_document(today)), policy("acme", ACME_DOCUMENT)],
        )
        await until(lambda: consumed(topics.name("policies"), "policy_changed") == 2)
        await kafka.produce(
            topics.contact_events,
            [
                arrived("wroclaw", "w1", "obsluga-pl", "pl"),
                arrived("acme", "a1", "billing-en", "en"),
            ],
        )
        await until(lambda: consumed(topics.contact_events, "contact_arrived") == 2)
        await kafka.produce(
            topics.routing_decisions,
            [position("wroclaw", "w1", "obsluga-pl"), position("acme", "a1", "billing-en")],
        )
        await until(lambda: bool(delivered("arrive-w1:outside_hours")), what="the notice")
        await until(lambda: bool(delivered("position-a1:queue_position")), what="acme's place")

        opens = closed_until(today)
        [notice] = delivered("arrive-w1:outside_hours")
        assert notice.body.startswith("Dzień dobry, Ola, teraz nie pracujemy.")
        assert f" {opens.day} {POLISH_MONTHS[opens.month - 1]} o 08:00 (" in notice.body

        await wait_serving(port)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = notification_pb2_grpc.NotifierServiceStub(channel)
            service = bearer("crm", "notifier", "service")

            async def outcome(notification_id: str) -> int:
                request = notification_pb2.GetNotificationRequest(notification_id=notification_id)
                reply = await stub.GetNotification(request, metadata=service)
                return reply.record.outcome

            assert await outcome("position-w1:queue_position") == (
                notification_pb2.DELIVERY_OUTCOME_SUPPRESSED
            )
            with pytest.raises(grpc.aio.AioRpcError) as never:
                await outcome("arrive-a1:outside_hours")
            assert never.value.code() == grpc.StatusCode.NOT_FOUND, "acme is open"

        records = await kafka.read_all(topics.notifications, expect=3)
        settled = {
            (e.domain, e.notification_record.notification.notification_id): (
                e.notification_record.outcome,
                e.policy_version,
            )
            for e in (decode_envelope(r.value, r.headers) for r in records)
        }
    assert settled == {
        ("wroclaw", "arrive-w1:outside_hours"): (notification_pb2.DELIVERY_OUTCOME_DELIVERED, 1),
        ("wroclaw", "position-w1:queue_position"): (
            notification_pb2.DELIVERY_OUTCOME_SUPPRESSED,
            1,
        ),
        ("acme", "position-a1:queue_position"): (notification_pb2.DELIVERY_OUTCOME_DELIVERED, 1),
    }
    assert delivered("position-w1:queue_position") == [], "held back, never sent"
