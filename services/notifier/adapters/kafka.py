"""The notifier's Kafka side: events in, decisions into the (changelogged) pending set;
each delivery attempt's result applied by the core in its partition's transaction, with
final outcomes out on ``notifications`` (and a copy on ``notifier.dlq`` when given
up). What the domain's policy held back is recorded SUPPRESSED when decided. Each
domain's policy comes from ``policies`` (its ``[notification]`` table, applied live;
stale or unreadable versions are dead-lettered) and is kept with the domain's state;
every output envelope carries the version it was decided under."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

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
from services.common.policy_input import PolicyInput, policy_input, require_newer
from services.common.state import DomainStateHandler, DomainStates
from services.common.topics import Topics
from services.notifier.adapters.mapping import OUTCOMES, envelope_to_input, to_proto
from services.notifier.domain.channels import channel_info
from services.notifier.domain.core import (
    Notification,
    NotifierCore,
    NotifierPolicy,
    Pending,
    policy_in_document,
    stored_policy,
)
from services.notifier.domain.delivery import (
    DEAD_LETTERED,
    DELIVERED,
    REJECTED,
    RETRY,
    SUPPRESSED,
    RetryPolicy,
)
from services.notifier.domain.errors import NotifierError, PolicyError
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
            restore_core=self._restore_core,
        )

    def _restore_core(self, domain: str, snapshots: Mapping[str, Any]) -> NotifierCore:
        """The domain's core under the policy its changelog holds (a stored document this
        build cannot read runs the domain on the configured default, and says so)."""
        version, document = stored_policy(snapshots)
        policy = self.policy
        if version:
            try:
                policy = policy_in_document(document, self.policy)
            except PolicyError as exc:
                log.warning(
                    "restore: the domain's stored policy is unreadable; running the default",
                    domain=domain,
                    policy_version=version,
                    reason=exc.reason,
                )
                version, document = 0, ""
        return NotifierCore.restore(
            policy, self.catalog, snapshots, self.retry, version=version, document=document
        )

    def handle(self, envelope: Envelope, record: InboundRecord) -> Sequence[OutboundRecord]:
        changed = policy_input(envelope, record.topic.removeprefix(self.topics.prefix))
        if changed is not None:
            return self._change_policy(changed, record.partition)
        event = envelope_to_input(envelope)
        if event is None:
            return []
        core = self.states.core_for(envelope.domain, record.partition)
        try:
            decided = core.apply(event, envelope.event_id, self.clock.now())
        except NotifierError as exc:
            raise RejectedEvent(exc.reason) from None
        return self._decided(envelope.domain, core, decided)

    def _change_policy(self, changed: PolicyInput, partition: int) -> list[OutboundRecord]:
        """A new version of the domain's policy: applied from now on, or refused (stale, or
        a document the policy parser refuses) with nothing changed."""
        held = self.states.cores.get(changed.domain)
        applied = 0 if held is None else held.policy_version
        require_newer(changed, applied)
        try:
            policy = policy_in_document(changed.document, self.policy)
        except PolicyError as exc:
            raise RejectedEvent(
                f"policy version {changed.version} of domain {changed.domain!r}: {exc.reason}"
            ) from None
        core = self.states.core_for(changed.domain, partition)
        now = self.clock.now()
        decided = core.change_policy(policy, changed.version, now, changed.document)
        log.info(
            "policy applied",
            domain=changed.domain,
            policy_version=changed.version,
            previous_version=applied,
        )
        return self._decided(changed.domain, core, decided)

    def _decided(
        self, domain: str, core: NotifierCore, decided: Sequence[Notification]
    ) -> list[OutboundRecord]:
        """Wake the delivery worker for what was decided; the outcome records of what was
        settled at once (erased: REJECTED; held back by the policy: SUPPRESSED)."""
        for note in decided:
            log.info("notification decided", contact_id=note.contact_id, kind=note.kind)
        if decided:
            self.work_ready.set()
        self._count_coalesced()
        now = self.clock.now()
        out = [
            record
            for pending in core.take_erased()
            for record in self.outcome_records(domain, pending, REJECTED, now)
        ]
        for pending in core.take_suppressed():
            note = pending.notification
            log.info("notification suppressed", contact_id=note.contact_id, kind=note.kind)
            out.extend(self.outcome_records(domain, pending, SUPPRESSED, now))
        return out

    def on_timer(self, partition: int, now: float) -> Sequence[OutboundRecord]:
        out: list[OutboundRecord] = []
        for domain, core in self.states.due(partition, now):
            out.extend(self._decided(domain, core, core.tick(now)))
        self._count_coalesced()
        return out

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
        core = self.states.cores.get(domain)
        envelope.policy_version = 0 if core is None else core.policy_version
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
