"""Per-domain state survives a restart through the compacted changelog, exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from switchboard.v1.envelope_pb2 import Envelope

from services.common.codec import encode_envelope, new_envelope
from services.common.config import KafkaSettings
from services.common.kafka import ConsumeLoop, InboundRecord, OutboundRecord, TopicPartition
from services.common.metrics import RuntimeMetrics
from services.common.state import DomainStates
from services.common.topics import Topics
from tests.support import KafkaBroker, until

pytestmark = pytest.mark.kafka


@dataclass
class Tally:
    """A tiny core: counts events per domain and remembers what changed."""

    count: int = 0
    dirty: bool = False


@dataclass
class TallyHandler:
    topics: Topics
    settings: KafkaSettings
    states: DomainStates[Tally] = field(init=False)
    emitted: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.states = DomainStates(
            changelog_topic=self.topics.changelog("router"),
            new_core=lambda _domain: Tally(),
            restore_core=lambda _domain, entities: Tally(count=entities["tally"]["count"]),
            take_changes=self._take,
        )

    @staticmethod
    def _take(core: Tally) -> Mapping[str, Any]:
        if not core.dirty:
            return {}
        core.dirty = False
        return {"tally": {"count": core.count}}

    def handle(self, envelope: Envelope, record: InboundRecord) -> Sequence[OutboundRecord]:
        core = self.states.core_for(envelope.domain, record.partition)
        core.count += 1
        core.dirty = True
        self.emitted.append(core.count)
        return []

    def on_timer(self, now: float) -> Sequence[OutboundRecord]:
        return []

    def next_deadline(self) -> float | None:
        return None

    def drain_changelog(self) -> Sequence[OutboundRecord]:
        return self.states.drain()

    async def on_assigned(self, partitions: set[TopicPartition]) -> None:
        await self.states.restore(self.settings, {tp.partition for tp in partitions})

    async def on_revoked(self, partitions: set[TopicPartition]) -> None:
        self.states.drop({tp.partition for tp in partitions})


def event(n: int) -> bytes:
    envelope = new_envelope("acme", "test", event_id=f"e-{n}")
    envelope.contact_abandoned.contact_id = f"c-{n}"
    return encode_envelope(envelope)


async def run_until(kafka: KafkaBroker, topics: Topics, handler: TallyHandler, count: int) -> None:
    settings = kafka.settings(topics, group_id=f"{topics.prefix}tally")
    loop = ConsumeLoop(
        service="tally",
        settings=settings,
        input_topics=[topics.contact_events],
        handler=handler,
        metrics=RuntimeMetrics.create(CollectorRegistry()),
        transactional_id=f"{topics.prefix}tally-1",
    )
    task = asyncio.create_task(loop.run())
    try:
        await until(lambda: bool(handler.emitted) and handler.emitted[-1] == count)
    finally:
        loop.stop()
        await asyncio.wait_for(task, 30)


async def test_a_restarted_service_restores_domain_state_and_continues_counting(
    kafka: KafkaBroker,
) -> None:
    topics = await kafka.fresh_topics()
    await kafka.produce(topics.contact_events, [event(n) for n in range(3)], key=b"acme")
    first = TallyHandler(topics, kafka.settings(topics))
    await run_until(kafka, topics, first, 3)

    await kafka.produce(topics.contact_events, [event(n) for n in range(3, 5)], key=b"acme")
    second = TallyHandler(topics, kafka.settings(topics))
    await run_until(kafka, topics, second, 5)
    assert second.emitted == [4, 5]
