"""The notifier's Kafka side: events in, decisions into the (changelogged) pending set,
final outcomes out on ``notifications`` (and ``notifications.dlq`` when given up)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog
from switchboard.v1 import notification_pb2
from switchboard.v1.envelope_pb2 import Envelope

from services.common.clock import Clock, SystemClock
from services.common.codec import encode_envelope, new_envelope
from services.common.config import KafkaSettings
from services.common.errors import RejectedEvent
from services.common.kafka import InboundRecord, OutboundRecord
from services.common.state import DomainStateHandler, DomainStates
from services.common.topics import Topics
from services.notifier.adapters.mapping import OUTCOMES, envelope_to_input, to_proto
from services.notifier.domain.core import NotifierCore, NotifierPolicy, Pending
from services.notifier.domain.errors import NotifierError
from services.notifier.domain.templates import TemplateCatalog
from services.notifier.metrics import NotifierMetrics

__all__ = ["NotifierHandler"]

log = structlog.get_logger("notifier")
STYLE = {1: "voice", 2: "chat", 3: "email", 4: "sms", 5: "social"}


@dataclass
class NotifierHandler(DomainStateHandler[NotifierCore]):
    policy: NotifierPolicy
    catalog: TemplateCatalog
    topics: Topics
    kafka: KafkaSettings
    metrics: NotifierMetrics
    clock: Clock = field(default_factory=SystemClock)
    states: DomainStates[NotifierCore] = field(init=False)
    #: Set when a notification is decided, so the delivery worker sends it now rather
    #: than at its next 50 ms scan.
    work_ready: asyncio.Event = field(default_factory=asyncio.Event)
    _coalesced_seen: int = 0

    def __post_init__(self) -> None:
        self.states = DomainStates.for_service(
            "notifier",
            self.kafka,
            self.topics.changelog,
            new_core=lambda _d: NotifierCore(self.policy, self.catalog),
            restore_core=lambda _d, snaps: NotifierCore.restore(self.policy, self.catalog, snaps),
        )

    def handle(self, envelope: Envelope, record: InboundRecord) -> Sequence[OutboundRecord]:
        event = envelope_to_input(envelope)
        if event is None:
            return []
        core = self.states.core_for(envelope.domain, record.partition)
        try:
            decided = core.apply(event, envelope.event_id, self.clock.now())
        except NotifierError as exc:
            raise RejectedEvent(exc.reason) from None
        for note in decided:
            log.info("notification decided", contact_id=note.contact_id, kind=note.kind)
        if decided:
            self.work_ready.set()
        self._count_coalesced()
        return []

    def on_timer(self, partition: int, now: float) -> Sequence[OutboundRecord]:
        for _, core in self.states.due(partition, now):
            if core.tick(now):
                self.work_ready.set()
        self._count_coalesced()
        return []

    async def on_assigned(self, partitions: set[int]) -> None:
        restored = await self.states.restore(self.kafka, partitions)
        log.info("notifier state restored", partitions=sorted(partitions), domains=restored)

    def _count_coalesced(self) -> None:
        total = sum(core.coalesced for _, core in self.states.items())
        if total > self._coalesced_seen:
            self.metrics.coalesced.inc(total - self._coalesced_seen)
            self._coalesced_seen = total

    # -- outcome records, built inside loop.execute by the delivery worker -------------

    def outcome_records(
        self, domain: str, pending: Pending, outcome: str, now: float, gateway_message_id: str = ""
    ) -> list[OutboundRecord]:
        note = pending.notification
        record = notification_pb2.NotificationRecord(
            notification=to_proto(note),
            outcome=OUTCOMES[outcome],
            attempts=pending.attempts,
            last_error=pending.last_error,
            gateway_message_id=gateway_message_id,
        )
        if outcome == "delivered":
            record.delivered_at.GetCurrentTime()
        envelope = new_envelope(
            domain, "notifier", event_id=f"{note.notification_id}:outcome", occurred_at=now
        )
        envelope.notification_record.CopyFrom(record)
        value = encode_envelope(envelope)
        key = note.contact_id.encode()
        out = [OutboundRecord(self.topics.notifications, value, key)]
        if outcome == "dead_lettered":
            out.append(
                OutboundRecord(
                    self.topics.dlq(self.topics.notifications),
                    value,
                    key,
                    headers=(
                        ("dlq.reason", pending.last_error.encode()[:2000]),
                        ("dlq.error", b"undeliverable"),
                        ("dlq.service", b"notifier"),
                        ("dlq.event_id", note.notification_id.encode()),
                    ),
                )
            )
            self.metrics.dead_lettered.inc()
        self.metrics.notifications.labels(note.kind, STYLE.get(note.channel, "sms"), outcome).inc()
        return out
