"""The shared consume loop against the real broker: handled, dead-lettered, committed once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from google.protobuf import json_format
from prometheus_client import CollectorRegistry
from switchboard.v1.envelope_pb2 import Envelope

from services.common.codec import encode_envelope, new_envelope
from services.common.errors import ConfigError, RejectedEvent
from services.common.kafka import ConsumeLoop, InboundRecord, OutboundRecord
from services.common.metrics import RuntimeMetrics
from services.common.topics import Topics
from tests.support import KafkaBroker, until

pytestmark = pytest.mark.kafka


@dataclass
class EchoHandler:
    """Records what it handled and echoes each contact id to routing.decisions."""

    topics: Topics
    handled: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def handle(self, envelope: Envelope, record: InboundRecord) -> Sequence[OutboundRecord]:
        contact_id = envelope.contact_abandoned.contact_id
        if contact_id.startswith("reject"):
            raise RejectedEvent(f"unknown contact {contact_id}")
        self.handled.append(contact_id)
        return [OutboundRecord(self.topics.routing_decisions, contact_id.encode(), b"acme")]

    def on_timer(self, partition: int, now: float) -> Sequence[OutboundRecord]:
        return []

    def next_deadline(self, partition: int) -> float | None:
        return None

    def drain_changelog(self, partition: int) -> Sequence[OutboundRecord]:
        return []

    def on_refused(
        self, envelope: Envelope, record: InboundRecord, reason: str
    ) -> Sequence[OutboundRecord]:
        return []

    def seen_before(self, domain: str, event_id: str) -> bool:
        return event_id in self.seen

    def remember(self, domain: str, partition: int, event_id: str, now: float) -> None:
        self.seen.add(event_id)

    async def on_assigned(self, partitions: set[int]) -> None:
        return None

    async def on_revoked(self, partitions: set[int]) -> None:
        return None


def abandoned(contact_id: str, event_id: str | None = None) -> Envelope:
    envelope = new_envelope("acme", "test", event_id=event_id or f"ev-{contact_id}")
    envelope.contact_abandoned.contact_id = contact_id
    return envelope


@asynccontextmanager
async def running(
    kafka: KafkaBroker, topics: Topics, handler: EchoHandler
) -> AsyncIterator[ConsumeLoop]:
    loop = ConsumeLoop(
        service="echo",
        settings=kafka.settings(topics, group_id=f"{topics.prefix}echo"),
        input_topics=[topics.contact_events],
        handler=handler,
        metrics=RuntimeMetrics.create(CollectorRegistry()),
    )
    task = asyncio.create_task(loop.run())
    try:
        yield loop
    finally:
        loop.stop()
        await asyncio.wait_for(task, 30)


async def test_a_produced_envelope_reaches_the_handler_and_its_output_is_committed(
    kafka: KafkaBroker,
) -> None:
    topics = await kafka.fresh_topics()
    handler = EchoHandler(topics)
    async with running(kafka, topics, handler):
        await kafka.produce(topics.contact_events, [encode_envelope(abandoned("c-1"))])
        await until(lambda: handler.handled == ["c-1"])
    out = await kafka.read_all(topics.routing_decisions, expect=1)
    assert [r.value for r in out] == [b"c-1"]


async def test_json_with_the_content_type_header_is_handled(kafka: KafkaBroker) -> None:
    topics = await kafka.fresh_topics()
    handler = EchoHandler(topics)
    text = json_format.MessageToJson(abandoned("c-json")).encode()
    async with running(kafka, topics, handler):
        await kafka.produce(
            topics.contact_events, [text], headers=[("content-type", b"application/json")]
        )
        await until(lambda: handler.handled == ["c-json"])


async def test_garbage_goes_to_the_dead_letter_topic_and_the_next_message_is_handled(
    kafka: KafkaBroker,
) -> None:
    topics = await kafka.fresh_topics()
    # A service's dead letters go to its own topic, provisioned with it ("echo.dlq").
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topics.dead_letters("echo"), num_partitions=4, replication_factor=1)]
        )
    finally:
        await admin.close()
    handler = EchoHandler(topics)
    async with running(kafka, topics, handler):
        await kafka.produce(
            topics.contact_events,
            [
                b"\xff\x00 not protobuf",
                encode_envelope(abandoned("reject-me")),
                encode_envelope(abandoned("c-after")),
            ],
        )
        await until(lambda: handler.handled == ["c-after"])
    letters = await kafka.read_all(topics.dead_letters("echo"), expect=2)
    reasons = sorted(dict(r.headers)["dlq.reason"].decode() for r in letters)
    assert reasons[0].startswith("invalid protobuf envelope")
    assert reasons[1] == "unknown contact reject-me"
    assert {dict(r.headers)["dlq.source.topic"] for r in letters} == {
        topics.contact_events.encode()
    }


async def test_a_restarted_loop_does_not_handle_committed_messages_again(
    kafka: KafkaBroker,
) -> None:
    topics = await kafka.fresh_topics()
    first = EchoHandler(topics)
    async with running(kafka, topics, first):
        await kafka.produce(topics.contact_events, [encode_envelope(abandoned("c-1"))])
        await until(lambda: first.handled == ["c-1"])
    second = EchoHandler(topics)
    async with running(kafka, topics, second):
        await kafka.produce(topics.contact_events, [encode_envelope(abandoned("c-2"))])
        await until(lambda: "c-2" in second.handled)
    assert second.handled == ["c-2"]


async def test_a_duplicate_event_id_is_applied_once(kafka: KafkaBroker) -> None:
    topics = await kafka.fresh_topics()
    handler = EchoHandler(topics)
    async with running(kafka, topics, handler):
        same = encode_envelope(abandoned("c-1", event_id="same"))
        await kafka.produce(topics.contact_events, [same, same, encode_envelope(abandoned("c-2"))])
        await until(lambda: "c-2" in handler.handled)
    assert handler.handled == ["c-1", "c-2"]


async def test_a_command_runs_inside_the_loop_and_returns_after_its_records_commit(
    kafka: KafkaBroker,
) -> None:
    topics = await kafka.fresh_topics()
    handler = EchoHandler(topics)
    async with running(kafka, topics, handler) as loop:
        await until(lambda: loop.started.is_set())
        result = await loop.execute(
            lambda: ("done", [OutboundRecord(topics.escalations, b"ack", b"esc-1")]),
            partition=loop.partition_of("acme"),
        )
        assert result == "done"
        records = await kafka.read_all(topics.escalations, expect=1, timeout=5)
        assert [r.value for r in records] == [b"ack"]


async def test_input_topics_that_are_not_co_partitioned_stop_the_loop_with_the_counts(
    kafka: KafkaBroker,
) -> None:
    """A domain's events must meet in one instance: 4 partitions beside 2 is refused."""
    topics = await kafka.fresh_topics()
    odd = f"{topics.prefix}two-partitions"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(odd, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    loop = ConsumeLoop(
        service="echo",
        settings=kafka.settings(topics, group_id=f"{topics.prefix}echo"),
        input_topics=[topics.contact_events, odd],
        handler=EchoHandler(topics),
        metrics=RuntimeMetrics.create(CollectorRegistry()),
    )
    with pytest.raises(ConfigError, match="equal partition counts") as failure:
        await asyncio.wait_for(loop.run(), 60)
    assert f"'{odd}': 2" in str(failure.value)
