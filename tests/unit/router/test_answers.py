"""Every refused event gets an answer on routing.decisions and a dead letter with the same
one-line reason (#15 item 2), through the loop's real per-record step: an event on the
wrong topic, a domain on the wrong partition, and what the core refuses. Decisions come
out in the configured format (#15 item 1)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry
from switchboard.v1.envelope_pb2 import Envelope

from services.common.clock import FakeClock
from services.common.codec import decode_envelope, encode_envelope, new_envelope
from services.common.config import KafkaSettings
from services.common.kafka import (
    ConsumeLoop,
    InboundRecord,
    OutboundRecord,
    wrong_partition_reason,
    wrong_topic_reason,
)
from services.common.metrics import RuntimeMetrics
from services.common.topics import Topics
from services.router.adapters.kafka import RouterHandler
from services.router.domain import RoutingPolicy
from services.router.metrics import RouterMetrics

TOPICS = Topics("p.")
POLICY = RoutingPolicy.from_dict({"queues": {"billing": {"skills": {"billing": 3}}}})


class Router:
    """The router's handler behind ``ConsumeLoop.apply_record``, on 4 input partitions."""

    def __init__(self, output_format: str = "protobuf") -> None:
        registry = CollectorRegistry()
        kafka = KafkaSettings(topic_prefix=TOPICS.prefix, output_format=output_format)  # type: ignore[arg-type]
        self.handler = RouterHandler(
            POLICY, TOPICS, kafka, RouterMetrics.create(registry), FakeClock(1_700_000_000.0)
        )
        self.loop = ConsumeLoop(
            service="router",
            settings=kafka,
            input_topics=[TOPICS.contact_events, TOPICS.agent_events],
            handler=self.handler,
            metrics=RuntimeMetrics.create(registry),
        )
        self.loop._input_partitions = 4
        self.offset = 0

    def feed(
        self,
        topic: str,
        envelope: Envelope,
        *,
        partition: int | None = None,
        key: bytes | None = None,
    ) -> list[OutboundRecord]:
        self.offset += 1
        home = self.loop.partition_of(envelope.domain)
        record = InboundRecord(
            topic,
            home if partition is None else partition,
            self.offset,
            envelope.domain.encode() if key is None else key,
            encode_envelope(envelope),
            (),
            0,
        )
        return list(self.loop.apply_record(record))


def letters(outputs: Sequence[OutboundRecord]) -> list[dict[str, bytes]]:
    return [dict(o.headers) for o in outputs if o.topic.endswith(".dlq")]


def answers(outputs: Sequence[OutboundRecord]) -> list[tuple[bytes | None, Envelope]]:
    return [
        (o.key, decode_envelope(o.value, o.headers))
        for o in outputs
        if o.topic == TOPICS.routing_decisions
    ]


def event(payload: str, event_id: str, domain: str = "acme", **fields: str) -> Envelope:
    e = new_envelope(domain, "pbx", event_id=event_id)
    getattr(e, payload).SetInParent()
    for name, value in fields.items():
        setattr(getattr(e, payload), name, value)
    return e


def the_answer(outputs: Sequence[OutboundRecord], error: str) -> str:
    """The one dead letter's reason, checked against the one EventRejected answering it."""
    [letter] = letters(outputs)
    [(key, answer)] = answers(outputs)
    reason = letter["dlq.reason"].decode()
    assert letter["dlq.error"] == error.encode()
    assert key == answer.domain.encode()  # keyed by domain, where the producer reads
    assert answer.event_rejected.reason == reason
    assert answer.event_rejected.event_id == letter["dlq.event_id"].decode()
    assert "\n" not in reason
    return reason


def test_an_agent_event_on_contact_events_is_refused_and_answered() -> None:
    router = Router()
    accept = event("offer_accepted", "e-1", agent_id="a1", contact_id="c1", offer_id="c1#1")
    outputs = router.feed(TOPICS.contact_events, accept)
    reason = the_answer(outputs, "wrong_topic")
    assert reason == "offer_accepted belongs on agent.events, not contact.events: publish it there"
    [(_, answer)] = answers(outputs)
    assert (answer.event_rejected.topic, answer.event_rejected.payload) == (
        TOPICS.contact_events,
        "offer_accepted",
    )


def test_a_contact_event_on_agent_events_is_refused_and_answered() -> None:
    outputs = Router().feed(TOPICS.agent_events, event("contact_ended", "e-2", contact_id="c1"))
    assert the_answer(outputs, "wrong_topic") == (
        "contact_ended belongs on contact.events, not agent.events: publish it there"
    )


@pytest.mark.parametrize(
    ("payload", "topic", "expected"),
    [
        ("offer_accepted", "agent.events", None),
        ("contact_arrived", "contact.events", None),
        ("customer_erasure_requested", "contact.events", None),
        ("manager_requested", "agent.events", None),
        ("offer_made", "routing.decisions", None),
        ("contact_arrived", "some.other.topic", None),  # not Switchboard's: not judged
        ("offer_made", "contact.events", "offer_made belongs on routing.decisions"),
        ("escalation_record", "agent.events", "escalation_record belongs on escalations"),
    ],
)
def test_every_payload_has_one_home_topic(payload: str, topic: str, expected: str | None) -> None:
    reason = wrong_topic_reason(payload, topic)
    assert reason == expected if expected is None else (reason or "").startswith(expected)


def test_a_domain_on_the_wrong_partition_is_refused_naming_the_partitioner() -> None:
    router = Router()
    home = router.loop.partition_of("acme")
    elsewhere = (home + 1) % 4
    outputs = router.feed(
        TOPICS.contact_events,
        event("contact_abandoned", "e-3", contact_id="c1"),
        partition=elsewhere,
    )
    assert the_answer(outputs, "partition") == (
        f"domain 'acme' hashes to partition {home} with murmur2 (the Java client's default) "
        f"but arrived on partition {elsewhere}; librdkafka clients (kcat, confluent-kafka) "
        "must set partitioner=murmur2_random"
    )


def test_the_partition_reason_says_when_the_key_is_missing_or_not_the_domain() -> None:
    assert wrong_partition_reason("acme", None, 0, 2).endswith(
        "arrived on partition 2; the record has no key: key each record by its domain "
        "(librdkafka clients (kcat, confluent-kafka) must set partitioner=murmur2_random)"
    )
    assert "; its key is 'c-17', not the domain: key each record by its domain" in (
        wrong_partition_reason("acme", b"c-17", 0, 2)
    )


@pytest.mark.parametrize(
    ("payload", "fields", "reason"),
    [
        (
            "contact_ended",
            {"contact_id": "ghost", "disposition": "DISPOSITION_RESOLVED"},
            "contact 'ghost' is unknown (it never arrived, or it has closed)",
        ),
        ("agent_logged_out", {"agent_id": "nobody"}, "agent 'nobody' is not logged in"),
        (
            "offer_accepted",
            {"agent_id": "a1", "contact_id": "ghost", "offer_id": "ghost#1"},
            "offer 'ghost#1' is not open: contact 'ghost' is unknown "
            "(it never arrived, or it has closed)",
        ),
    ],
)
def test_what_the_core_refuses_is_answered_with_its_reason(
    payload: str, fields: dict[str, str], reason: str
) -> None:
    e = new_envelope("acme", "pbx", event_id="e-4")
    message = getattr(e, payload)
    for name, value in fields.items():
        if name == "disposition":
            message.disposition = 1  # DISPOSITION_RESOLVED
        else:
            setattr(message, name, value)
    topic = TOPICS.contact_events if payload.startswith("contact") else TOPICS.agent_events
    assert the_answer(Router().feed(topic, e), "rejected") == reason


def test_decisions_and_answers_are_json_when_configured() -> None:
    router = Router(output_format="json")
    outputs = router.feed(TOPICS.agent_events, event("agent_logged_out", "e-5", agent_id="x"))
    [answer] = [o for o in outputs if o.topic == TOPICS.routing_decisions]
    assert dict(answer.headers) == {"content-type": b"application/json"}
    assert answer.value is not None
    assert answer.value.startswith(b'{"eventId":"rejected:e-5"')
    assert b'"eventRejected":{"eventId":"e-5","reason":"agent \'x\' is not logged in"' in (
        answer.value
    )
