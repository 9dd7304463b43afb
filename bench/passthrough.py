"""``python -m bench.passthrough``: the ceiling for a Switchboard service on this machine.

The same runtime as the real services (``ConsumeLoop``: transactional producer,
read_committed consumer, decode, dedupe, encode, produce, commit offsets with the
output) with no logic at all: every input envelope is re-encoded to ``routing.decisions``.
bench/end_to_end.py reports the router's throughput as a fraction of this one's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
from prometheus_client import CollectorRegistry
from switchboard.v1.envelope_pb2 import Envelope

from services.common.codec import encode_envelope
from services.common.config import ServiceSettings
from services.common.kafka import ConsumeLoop, InboundRecord, OutboundRecord
from services.common.metrics import RuntimeMetrics
from services.common.runtime import run_service, service_main
from services.common.topics import Topics


@dataclass
class PassThrough:
    """An EventHandler that decides nothing: envelope in, the same envelope out."""

    out_topic: str
    seen: set[str] = field(default_factory=set)

    def handle(self, envelope: Envelope, record: InboundRecord) -> Sequence[OutboundRecord]:
        return [OutboundRecord(self.out_topic, encode_envelope(envelope), record.key)]

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


async def run(settings: ServiceSettings, registry: CollectorRegistry) -> None:
    topics = Topics(settings.kafka.topic_prefix)
    loop = ConsumeLoop(
        service="passthrough",
        settings=settings.kafka,
        input_topics=[topics.contact_events, topics.agent_events],
        handler=PassThrough(topics.routing_decisions),
        metrics=RuntimeMetrics.create(registry),
    )

    def register(server: grpc.aio.Server) -> Sequence[str]:
        return []

    await run_service("passthrough", settings, loop, register)


def main() -> None:
    service_main("passthrough", ServiceSettings.from_env, run)


if __name__ == "__main__":
    main()
