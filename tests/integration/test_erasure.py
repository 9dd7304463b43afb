"""A data subject's erasure request, end to end: one event on contact.events, and the
router, escalation and the notifier remove the customer's name, phone, e-mail and id from
their state, from the live values of every changelog and from the escalations topic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from switchboard.v1 import common_pb2

from services.common.codec import decode_envelope, encode_envelope, new_envelope
from services.common.topics import Topics
from services.notifier.gateway_stub import ReferenceGateway
from tests.scenario import SMS, audit_ok, hold, login
from tests.support import KafkaBroker, service_env, service_process, until, wait_for

pytestmark = pytest.mark.kafka

PERSONAL = (b"Zofia", b"600123456", b"zofia.zak", b"cust-7")


def arrival(contact_id: str, queue: str, language: str, channel: int) -> bytes:
    e = new_envelope("acme", "pbx", event_id=f"arrive-{contact_id}")
    a = e.contact_arrived
    a.contact_id, a.queue, a.channel, a.language = contact_id, queue, channel, language
    customer = a.customer
    customer.customer_id, customer.name, customer.language = "cust-7", "Zofia Żak", language
    customer.phone, customer.email = "+48600123456", "zofia.zak@poczta.pl"
    return encode_envelope(e)


def erasure(customer_id: str) -> bytes:
    e = new_envelope("acme", "dpo", event_id="erasure-DPO-2026-114")  # ids hold no personal data
    e.customer_erasure_requested.customer_id = customer_id
    e.customer_erasure_requested.request_id = "DPO-2026-114"
    return encode_envelope(e)


async def live_records(kafka: KafkaBroker, topic: str) -> dict[bytes, Any]:
    """What a compacted topic holds for good: the latest record of every key."""
    latest: dict[bytes, Any] = {}
    for record in await kafka.read_all(topic, expect=10**9, timeout=1.0):
        latest[record.key or b""] = record
    return {key: record for key, record in latest.items() if record.value is not None}


async def live_values(kafka: KafkaBroker, topic: str) -> dict[bytes, bytes]:
    """What a compacted topic holds for good: the latest value of every key."""
    return {key: record.value for key, record in (await live_records(kafka, topic)).items()}


def holding_personal_data(values: dict[bytes, bytes]) -> list[str]:
    return [
        f"{key.decode(errors='replace')}: {word.decode()}"
        for key, value in values.items()
        for word in PERSONAL
        if word in value
    ]


async def test_an_erasure_request_removes_the_customer_from_every_live_store(
    kafka: KafkaBroker, tmp_path: Path, gateway: tuple[ReferenceGateway, int]
) -> None:
    reference, gateway_port = gateway
    topics = await kafka.fresh_topics()
    extra = {
        "router": {},
        "escalation": {"ESCALATION__TRIGGERS__WAIT_THRESHOLD_S": "1"},
        "notifier": {"GATEWAYS__DEFAULT": f"127.0.0.1:{gateway_port}"},
    }
    processes = [
        service_process(name, service_env(name, kafka, topics, **settings), tmp_path)
        for name, settings in extra.items()
    ]
    for process in processes:
        await process.start()
    stores = [
        topics.changelog("router"),
        topics.changelog("escalation"),
        topics.changelog("notifier"),
        topics.escalations,
    ]
    try:
        await kafka.produce(topics.agent_events, [login("a1")])
        await kafka.produce(
            topics.contact_events,
            [
                arrival("c1", "billing-en", "en", SMS),  # served, put on hold: told by SMS
                hold("c1"),
                arrival("c2", "billing-pl", "pl", common_pb2.CHANNEL_CHAT),  # nobody: escalated
            ],
        )
        await until(lambda: bool(reference.delivered), what="the hold message")
        await wait_for(
            kafka, topics.escalations, lambda es: any(e.HasField("escalation_record") for e in es)
        )
        before = {topic: holding_personal_data(await live_values(kafka, topic)) for topic in stores}
        assert all(before.values()), f"the scenario must have put the customer everywhere: {before}"

        await kafka.produce(topics.contact_events, [erasure("cust-7")])

        async def erased_everywhere() -> list[str]:
            return [
                f"{topic}: {found}"
                for topic in stores
                if (found := holding_personal_data(await live_values(kafka, topic)))
            ]

        remaining = await erased_everywhere()
        for _ in range(60):
            if not remaining:
                break
            remaining = await erased_everywhere()
        assert not remaining, remaining
    finally:
        for process in processes:
            await process.stop()
    escalated = [
        decode_envelope(record.value, record.headers).escalation_record.escalation
        for record in (await live_records(kafka, topics.escalations)).values()
    ]
    assert escalated
    assert all(e.customer.name == "" and e.customer.language in ("en", "pl") for e in escalated)
    await audit_ok(kafka, topics)


def test_the_topics_helper_names_every_store() -> None:
    """Guard: the stores checked above are every compacted topic of deploy/topics.toml."""
    from services.common.topics import load_topic_specs

    compacted = {spec.name for spec in load_topic_specs() if spec.compacted}
    t = Topics("")
    # `policies` holds each domain's policy documents (queues, teams, hours) and the
    # operator who applied each: no customer data, so nothing for an erasure to remove.
    assert compacted - {t.name("policies")} == {
        t.changelog("router"),
        t.changelog("escalation"),
        t.changelog("notifier"),
        t.escalations,
    }
