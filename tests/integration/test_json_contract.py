"""JSON both ways (#15 item 1): a telephony platform that speaks only JSON runs a call's
whole lifecycle against the real services, configured with ``kafka.output_format =
"json"``. The test publishes JSON text with a plain aiokafka producer (key = domain,
header ``content-type: application/json``) and reads every output as JSON text with a
plain consumer: the offer id it accepts is the one it read from the JSON decision. The
escalation service and the notifier take the router's JSON decisions as their input, and
the auditor (reading both formats) finds every contact accounted for."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from services.auditor.__main__ import audit_topics
from services.common.topics import Topics
from services.notifier.gateway_stub import ReferenceGateway
from tests.support import KafkaBroker, ServiceProcess, service_env, service_process

pytestmark = pytest.mark.kafka
JSON_HEADER = [("content-type", b"application/json")]
Record = dict[str, Any]


class JsonPlatform:
    """What an integrator writes: JSON text out, JSON text in; no Switchboard code."""

    def __init__(self, kafka: KafkaBroker, topics: Topics) -> None:
        self.kafka, self.topics = kafka, topics
        self.producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
        self.sent = 0

    async def send(self, topic: str, payload: str, body: Record) -> str:
        self.sent += 1
        event_id = f"pbx-{self.sent}"
        text = json.dumps(
            {"eventId": event_id, "domain": "acme", "source": "pbx-json", payload: body},
            separators=(",", ":"),
        )
        await self.producer.send_and_wait(topic, text.encode(), key=b"acme", headers=JSON_HEADER)
        return event_id

    async def contact(self, payload: str, body: Record) -> str:
        return await self.send(self.topics.contact_events, payload, body)

    async def agent(self, payload: str, body: Record) -> str:
        return await self.send(self.topics.agent_events, payload, body)

    async def read(self, topic: str) -> list[Record]:
        """Every committed record of ``topic``, each checked to be one line of JSON."""
        records = await self.kafka.read_all(topic, expect=10**9, timeout=0.3)
        out = []
        for r in records:
            assert dict(r.headers)["content-type"] == b"application/json", r.value
            assert b"\n" not in r.value
            out.append(json.loads(r.value))
        return out

    async def wait(
        self, topic: str, what: str, predicate: Callable[[Record], bool], timeout: float = 60
    ) -> Record:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = [r for r in await self.read(topic) if predicate(r)]
            if found:
                return found[-1]
            assert loop.time() < deadline, f"no {what} on {topic}"

    async def decision(self, kind: str, **fields: Any) -> Record:
        """The latest decision of ``kind`` whose payload has ``fields``."""
        found = await self.wait(
            self.topics.routing_decisions,
            f"{kind} {fields}",
            lambda r: kind in r and all(r[kind].get(k) == v for k, v in fields.items()),
        )
        return dict(found[kind])


def login(agent_id: str) -> Record:
    return {
        "agentId": agent_id,
        "team": "billing-team",
        "skills": [{"skill": "billing", "proficiency": 5}],
        "languages": ["en"],
        "capacity": [{"channel": "CHANNEL_VOICE", "maxConcurrent": 1}],
    }


async def test_a_json_only_platform_runs_a_call_from_arrival_to_survey(
    kafka: KafkaBroker, tmp_path: Path, gateway: tuple[ReferenceGateway, int]
) -> None:
    _, gateway_port = gateway
    topics = await kafka.fresh_topics()
    extra = {
        "router": {},
        "escalation": {},
        "notifier": {"GATEWAYS__DEFAULT": f"127.0.0.1:{gateway_port}"},
    }
    processes: list[ServiceProcess] = [
        service_process(
            name,
            service_env(name, kafka, topics, KAFKA__OUTPUT_FORMAT="json", **extra[name]),
            tmp_path,
        )
        for name in ("router", "escalation", "notifier")
    ]
    await asyncio.gather(*(p.start() for p in processes))
    pbx = JsonPlatform(kafka, topics)
    await pbx.producer.start()
    try:
        await pbx.agent("agentLoggedIn", login("anna"))
        await pbx.agent("agentLoggedIn", login("ben"))
        await pbx.contact(
            "contactArrived",
            {
                "contactId": "call-1",
                "queue": "billing-en",
                "channel": "CHANNEL_VOICE",
                "language": "en",
                "customer": {"customerId": "cust-1", "name": "Anna Nowak", "phone": "+48600123456"},
            },
        )
        offer = await pbx.decision("offerMade", contactId="call-1")
        first, other = offer["agentId"], ({"anna", "ben"} - {offer["agentId"]}).pop()
        await pbx.agent(
            "offerAccepted",
            {"agentId": first, "contactId": "call-1", "offerId": offer["offerId"]},
        )
        assigned = await pbx.decision("contactAssigned", contactId="call-1")
        assert (assigned["agentId"], assigned["offerId"]) == (first, offer["offerId"])

        await pbx.contact(
            "contactHeld",
            {
                "contactId": "call-1",
                "agentId": first,
                "reason": "PAUSE_REASON_CHECKING_INFORMATION",
                "expectedDuration": "120s",
            },
        )
        await pbx.contact("contactResumed", {"contactId": "call-1", "agentId": first})
        await pbx.contact(
            "contactPaused",
            {
                "contactId": "call-1",
                "agentId": first,
                "reason": "PAUSE_REASON_AWAITING_CUSTOMER",
                "expectedDuration": "300s",
            },
        )
        await pbx.contact("contactResumed", {"contactId": "call-1", "agentId": first})
        await pbx.contact(
            "contactTransferred",
            {"contactId": "call-1", "fromAgentId": first, "toAgentId": other},
        )
        requeued = await pbx.decision("contactRequeued", contactId="call-1")
        assert requeued["reason"] == "REQUEUE_REASON_TRANSFERRED"
        second = await pbx.decision("offerMade", contactId="call-1", agentId=other)
        assert second["offerId"] != offer["offerId"]
        # the first offer id is stale now: refused, and the platform is told why
        stale = await pbx.agent(
            "offerAccepted",
            {"agentId": first, "contactId": "call-1", "offerId": offer["offerId"]},
        )
        refused = await pbx.decision("eventRejected", eventId=stale)
        assert refused["reason"] == (
            f"offer '{offer['offerId']}' is no longer open: offer '{second['offerId']}' was "
            "made after it"
        )
        await pbx.agent(
            "offerAccepted",
            {"agentId": other, "contactId": "call-1", "offerId": second["offerId"]},
        )
        await pbx.decision("contactAssigned", contactId="call-1", agentId=other)
        await pbx.contact(
            "contactEnded",
            {"contactId": "call-1", "agentId": other, "disposition": "DISPOSITION_RESOLVED"},
        )
        closed = await pbx.decision("contactClosed", contactId="call-1")
        assert closed["abandoned"] is False  # printed although false: every field is there
        survey = await pbx.contact(
            "surveyResult",
            {"contactId": "call-1", "customerId": "cust-1", "agentId": other, "score": 5},
        )
        ghost = await pbx.contact(
            "contactEnded", {"contactId": "ghost", "disposition": "DISPOSITION_RESOLVED"}
        )
        answer = await pbx.decision("eventRejected", eventId=ghost)
        assert answer == {
            "eventId": ghost,
            "reason": "contact 'ghost' is unknown (it never arrived, or it has closed)",
            "topic": topics.contact_events,
            "payload": "contact_ended",
        }

        # A contact nobody can take: the router says so in JSON; escalation and the
        # notifier act on that JSON decision and write JSON themselves.
        await pbx.contact(
            "contactArrived",
            {
                "contactId": "call-2",
                "queue": "tech-en",
                "channel": "CHANNEL_VOICE",
                "customer": {"customerId": "cust-2", "name": "Ola", "phone": "+48600999888"},
            },
        )
        await pbx.decision("contactUnroutable", contactId="call-2")
        raised = await pbx.wait(
            topics.escalations,
            "escalation of call-2",
            lambda r: r["escalationRecord"]["escalation"]["contactId"] == "call-2",
        )
        assert raised["escalationRecord"]["escalation"]["reason"] == "ESCALATION_REASON_UNROUTABLE"
        told = await pbx.wait(
            topics.notifications,
            "no-agent notification of call-2",
            lambda r: (
                r["notificationRecord"]["notification"]["contactId"] == "call-2"
                and r["notificationRecord"]["notification"]["kind"]
                == "NOTIFICATION_KIND_NO_AGENT_AVAILABLE"
            ),
        )
        assert told["notificationRecord"]["outcome"] == "DELIVERY_OUTCOME_DELIVERED"
        await pbx.contact("contactAbandoned", {"contactId": "call-2"})
        await pbx.decision("contactClosed", contactId="call-2")
        held = await pbx.wait(
            topics.notifications,
            "hold notification of call-1",
            lambda r: (
                r["notificationRecord"]["notification"]["kind"] == "NOTIFICATION_KIND_HOLD_STARTED"
            ),
        )
        assert held["notificationRecord"]["outcome"] == "DELIVERY_OUTCOME_DELIVERED"
    finally:
        await pbx.producer.stop()
        codes = await asyncio.gather(*(p.stop() for p in processes))
    assert codes == [0, 0, 0], f"unclean exits; logs in {tmp_path}"

    # Nothing the platform sent was refused but the stale accept and the unknown contact,
    # by the router (the others may have their own say on the ghost; never on the call).
    refused_ids = set()
    for letter in await kafka.read_all(topics.dead_letters("router"), expect=10**9, timeout=0.5):
        refused_ids.add(dict(letter.headers)["dlq.event_id"].decode())
    assert refused_ids == {stale, ghost}
    assert survey not in refused_ids
    for raw in await kafka.read_all(topics.routing_decisions, expect=10**9, timeout=0.5):
        if b'"offerMade"' in raw.value:
            print("a decision as it is on the topic:", raw.value.decode())
            break
    report = await audit_topics(kafka.bootstrap_servers, topics)  # it reads JSON as well
    assert report.ok, report.summary()
    counted = (report.arrived, report.offers, report.assigned, report.abandoned, report.closed)
    assert counted == (2, 2, 1, 1, 2), report.summary()  # assigned: contacts, not offers
