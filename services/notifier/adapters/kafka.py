"""The notifier's Kafka side: events in, decisions into the (changelogged) pending set;
each delivery attempt's result applied by the core in its partition's transaction, with
final outcomes out on ``notifications`` (and a copy on ``notifier.dlq`` when given
up)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import structlog
from switchboard.v1 import notification_pb2
from switchboard.v1.envelope_pb2 import Envelope

from services.common.clock import Clock, SystemClock
from services.common.codec import encode_record, new_envelope
from services.common.config import KafkaSettings
from services.common.errors import RejectedEvent
from services.common.kafka import (
    InboundRecord,
    NotOwnedError,
    OutboundRecord,
    dead_letter_of_output,
)
from services.common.state import DomainStateHandler, DomainStates
from services.common.topics import Topics
from services.notifier.adapters.mapping import OUTCOMES, envelope_to_input, to_proto
from services.notifier.domain.channels import channel_info
from services.notifier.domain.core import NotifierCore, NotifierPolicy, Pending
from services.notifier.domain.delivery import DEAD_LETTERED, DELIVERED, REJECTED, RETRY, RetryPolicy
from services.notifier.domain.errors import NotifierError
from services.notifier.domain.templates import TemplateCatalog
from services.notifier.metrics import NotifierMetrics

__all__ = ["CommandRunner", "KafkaDeliveryReports", "NotifierHandler"]

log = structlog.get_logger("notifier")
_Result = TypeVar("_Result")


@dataclass
class NotifierHandler(DomainStateHandler[NotifierCore]):
    policy: NotifierPolicy
    catalog: TemplateCatalog
    topics: Topics
    kafka: KafkaSettings
    metrics: NotifierMetrics
    clock: Clock = field(default_factory=SystemClock)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: Draws the retry backoff's jitter for every core of this instance.
    rng: random.Random = field(default_factory=random.Random)
    states: DomainStates[NotifierCore] = field(init=False)
    #: Set when a notification is decided, so the delivery worker sends it now rather
    #: than at its next scan.
    work_ready: asyncio.Event = field(default_factory=asyncio.Event)
    _coalesced_counted: int = 0

    def __post_init__(self) -> None:
        self.states = DomainStates.for_service(
            "notifier",
            self.kafka,
            self.topics.changelog,
            new_core=lambda _d: NotifierCore(self.policy, self.catalog, self.retry),
            restore_core=lambda _d, snaps: NotifierCore.restore(
                self.policy, self.catalog, snaps, self.retry
            ),
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
        now = self.clock.now()
        return [
            record
            for pending in core.take_erased()
            for record in self.outcome_records(envelope.domain, pending, REJECTED, now)
        ]

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
        """Add the cores' coalesced updates not yet counted to the metric."""
        total = sum(core.coalesced for _, core in self.states.items())
        if total > self._coalesced_counted:
            self.metrics.coalesced.inc(total - self._coalesced_counted)
            self._coalesced_counted = total

    def outcome_records(
        self,
        domain: str,
        pending: Pending,
        outcome: str,
        now: float,
        gateway_message_id: str = "",
    ) -> list[OutboundRecord]:
        """The ``NotificationRecord`` of a settled notification on ``notifications`` (what
        was told, not to whom: no name, address or body), and for a DEAD_LETTERED one, its
        copy on ``notifier.dlq``; counted in metrics."""
        note = pending.notification
        record = notification_pb2.NotificationRecord(
            notification=_without_personal_data(to_proto(note)),
            outcome=OUTCOMES[outcome],
            attempts=pending.attempts,
            last_error=pending.last_error,
            gateway_message_id=gateway_message_id,
        )
        if outcome == DELIVERED:
            record.delivered_at.GetCurrentTime()
        envelope = new_envelope(
            domain, "notifier", event_id=f"{note.notification_id}:outcome", occurred_at=now
        )
        envelope.notification_record.CopyFrom(record)
        value, headers = encode_record(envelope, self.kafka.output_format)
        out = [
            OutboundRecord(
                self.topics.notifications, value, note.contact_id.encode(), headers=headers
            )
        ]
        if outcome == DEAD_LETTERED:
            out.append(
                dead_letter_of_output(
                    self.topics,
                    out[0],
                    reason=pending.last_error,
                    error="undeliverable",
                    service="notifier",
                    event_id=note.notification_id,
                )
            )
            self.metrics.dead_lettered.inc()
        self.metrics.notifications.labels(note.kind, channel_info(note.channel).name, outcome).inc()
        return out


def _without_personal_data(
    notification: notification_pb2.Notification,
) -> notification_pb2.Notification:
    """The record's consumers (operators, the auditor) need what was told and how it
    went, not the customer's name, phone, e-mail or the message (which names them): those
    stay with the gateway, and the notifier's state until the contact is over."""
    language = notification.customer.language
    notification.ClearField("customer")
    notification.customer.language = language
    notification.ClearField("body")
    return notification


class CommandRunner(Protocol):
    """Runs a command in a partition's transaction (:meth:`ConsumeLoop.execute`)."""

    async def execute(
        self,
        command: Callable[[], tuple[_Result, Sequence[OutboundRecord]]],
        *,
        partition: int,
    ) -> _Result: ...


@dataclass
class KafkaDeliveryReports:
    """The worker's :class:`~services.notifier.adapters.delivery.DeliveryReports`: each
    result is applied to the domain's core inside ``runner`` (the consume loop), so the
    state change and the outcome records commit in one transaction."""

    handler: NotifierHandler
    runner: CommandRunner

    @property
    def work_ready(self) -> asyncio.Event:
        return self.handler.work_ready

    def due(self, now: float) -> list[tuple[str, Pending]]:
        return [
            (domain, pending)
            for domain, core in self.handler.states.items()
            for pending in core.due(now)
        ]

    def pending(self, domain: str, notification_id: str) -> Pending | None:
        core = self.handler.states.cores.get(domain)
        return None if core is None else core.pending(notification_id)

    async def delivered(self, domain: str, notification_id: str, gateway_message_id: str) -> None:
        def command(core: NotifierCore, now: float) -> list[OutboundRecord]:
            pending = core.settle(notification_id, now)
            if pending is None:
                return []
            return self._settled(domain, pending, DELIVERED, now, gateway_message_id)

        await self._run(domain, command)

    async def failed(self, domain: str, notification_id: str, status: str, error: str) -> None:
        def command(core: NotifierCore, now: float) -> list[OutboundRecord]:
            attempt = core.delivery_failed(notification_id, status, error, now, self.handler.rng)
            if attempt is None:
                return []
            if attempt.step.outcome == RETRY:
                self.handler.metrics.retries.inc()
                return []
            return self._settled(domain, attempt.pending, attempt.step.outcome, now)

        await self._run(domain, command)

    async def postpone(self, domain: str, notification_id: str, at: float) -> None:
        def command(core: NotifierCore, now: float) -> list[OutboundRecord]:
            core.postpone(notification_id, at)
            return []

        await self._run(domain, command)

    def _settled(
        self, domain: str, pending: Pending, outcome: str, now: float, gateway_message_id: str = ""
    ) -> list[OutboundRecord]:
        log.info(
            "notification settled",
            notification_id=pending.notification.notification_id,
            outcome=outcome,
            attempts=pending.attempts,
        )
        return self.handler.outcome_records(domain, pending, outcome, now, gateway_message_id)

    async def _run(
        self, domain: str, change: Callable[[NotifierCore, float], list[OutboundRecord]]
    ) -> None:
        """Apply ``change`` to the domain's core in its partition's transaction; a domain
        that moved to another instance meanwhile is that instance's to deliver (the gateway
        dedupes)."""
        partition = self.handler.states.partition_of.get(domain)
        if partition is None:
            return

        def command() -> tuple[None, list[OutboundRecord]]:
            core = self.handler.states.cores.get(domain)
            if core is None:
                return None, []
            return None, change(core, self.handler.clock.now())

        try:
            await self.runner.execute(command, partition=partition)
        except NotOwnedError:
            log.info("domain moved to another instance; its owner settles", domain=domain)
