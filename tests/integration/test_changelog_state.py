"""Per-domain state survives a restart through the compacted changelog, exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from switchboard.v1.envelope_pb2 import Envelope

from services.common.codec import encode_envelope, new_envelope
from services.common.config import KafkaSettings
from services.common.kafka import ConsumeLoop, InboundRecord, OutboundRecord
from services.common.metrics import RuntimeMetrics
from services.common.state import DomainStateHandler, DomainStates
from services.common.topics import Topics
from tests.support import KafkaBroker, until

pytestmark = pytest.mark.kafka


@dataclass
class Tally:
    """A tiny core: counts events per domain and remembers what changed."""

    count: int = 0
    dirty: bool = False

    def next_deadline(self) -> float | None:
        return None

    def take_changes(self) -> Mapping[str, Any]:
        if not self.dirty:
            return {}
        self.dirty = False
        return {"tally": {"count": self.count}}


@dataclass
class TallyHandler(DomainStateHandler[Tally]):
    topics: Topics
    settings: KafkaSettings
    states: DomainStates[Tally] = field(init=False)
    emitted: list[int] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.states = DomainStates(
            changelog_topic=self.topics.changelog("router"),
            new_core=lambda _domain: Tally(),
            restore_core=lambda _domain, entities: Tally(count=entities["tally"]["count"]),
        )

    def handle(self, envelope: Envelope, record: InboundRecord) -> Sequence[OutboundRecord]:
        core = self.states.core_for(envelope.domain, record.partition)
        core.count += 1
        core.dirty = True
        self.emitted.append(core.count)
        self.applied.append(f"{envelope.domain}/{envelope.event_id}")
        return []

    def on_timer(self, partition: int, now: float) -> Sequence[OutboundRecord]:
        return []

    def next_deadline(self, partition: int) -> float | None:
        return None

    async def on_assigned(self, partitions: set[int]) -> None:
        await self.states.restore(self.settings, partitions)


def event(n: int) -> bytes:
    envelope = new_envelope("acme", "test", event_id=f"e-{n}")
    envelope.contact_abandoned.contact_id = f"c-{n}"
    return encode_envelope(envelope)


async def run_until(
    kafka: KafkaBroker,
    topics: Topics,
    handler: TallyHandler,
    count: int,
    done: Callable[[], bool] | None = None,
) -> None:
    settings = kafka.settings(topics, group_id=f"{topics.prefix}tally")
    loop = ConsumeLoop(
        service="tally",
        settings=settings,
        input_topics=[topics.contact_events],
        handler=handler,
        metrics=RuntimeMetrics.create(CollectorRegistry()),
    )
    task = asyncio.create_task(loop.run())
    try:
        await until(done or (lambda: bool(handler.emitted) and handler.emitted[-1] == count))
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


def event_in(domain: str, event_id: str) -> bytes:
    envelope = new_envelope(domain, "test", event_id=event_id)
    envelope.contact_abandoned.contact_id = f"c-{event_id}"
    return encode_envelope(envelope)


async def test_a_re_sent_event_is_still_ignored_after_a_restart(kafka: KafkaBroker) -> None:
    """The dedupe window is domain state in the changelog, not process memory."""
    topics = await kafka.fresh_topics()
    await kafka.produce(topics.contact_events, [event_in("acme", f"e-{n}") for n in range(3)])
    first = TallyHandler(topics, kafka.settings(topics))
    await run_until(kafka, topics, first, 3)

    # The PBX re-sends e-1 after the restart (a retry), then a new event.
    await kafka.produce(topics.contact_events, [event_in("acme", "e-1"), event_in("acme", "e-new")])
    second = TallyHandler(topics, kafka.settings(topics))
    await run_until(kafka, topics, second, 4)
    assert second.emitted == [4]  # e-new only; the re-sent e-1 was skipped


async def test_the_same_event_id_in_two_domains_is_two_events(kafka: KafkaBroker) -> None:
    topics = await kafka.fresh_topics()
    handler = TallyHandler(topics, kafka.settings(topics))
    await kafka.produce(
        topics.contact_events,
        [
            event_in("acme", "call-1"),
            event_in("globex", "call-1"),  # another tenant's id: not a duplicate
            event_in("acme", "call-1"),  # a re-send within acme: a duplicate
            event_in("acme", "call-2"),
        ],
    )
    await run_until(kafka, topics, handler, 0, done=lambda: "acme/call-2" in handler.applied)
    await kafka.produce(topics.contact_events, [event_in("globex", "call-2")])
    await run_until(kafka, topics, handler, 0, done=lambda: "globex/call-2" in handler.applied)
    assert sorted(handler.applied) == [
        "acme/call-1",
        "acme/call-2",
        "globex/call-1",
        "globex/call-2",
    ]
