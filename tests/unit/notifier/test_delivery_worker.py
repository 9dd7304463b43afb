"""The delivery worker against the in-memory gateway: it calls, times out, reports; the
core decides; each result commits with its records (an inline runner stands in for the
consume loop)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry
from switchboard.v1.envelope_pb2 import Envelope

from services.common.clock import FakeClock
from services.common.codec import decode_envelope
from services.common.config import KafkaSettings
from services.common.kafka import OutboundRecord
from services.common.topics import Topics
from services.notifier.adapters.delivery import DeliveryWorker
from services.notifier.adapters.gateway import FakeChannelGateway
from services.notifier.adapters.kafka import KafkaDeliveryReports, NotifierHandler
from services.notifier.domain.core import ContactArrived, ContactPaused, Customer, NotifierPolicy
from services.notifier.metrics import NotifierMetrics
from services.notifier.settings import DeliverySettings
from tests.unit.notifier.test_notifier_core import CATALOG, SMS

_R = TypeVar("_R")
TOPICS = Topics("t.")
NID = "e1:hold_started"


@dataclass
class InlineRunner:
    """Runs each command at once, as if its transaction committed."""

    committed: list[OutboundRecord] = field(default_factory=list)

    async def execute(
        self, command: Callable[[], tuple[_R, Sequence[OutboundRecord]]], *, partition: int
    ) -> _R:
        result, records = command()
        self.committed.extend(records)
        return result


@dataclass
class Rig:
    handler: NotifierHandler
    runner: InlineRunner
    gateway: FakeChannelGateway
    clock: FakeClock
    registry: CollectorRegistry

    def records(self, topic: str) -> list[OutboundRecord]:
        return [r for r in self.runner.committed if r.topic == topic]

    def outcome(self) -> Any:
        [record] = self.records(TOPICS.notifications)
        assert record.value is not None
        envelope: Envelope = decode_envelope(record.value, record.headers)
        return envelope.notification_record

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def decide_one(self) -> None:
        core = self.handler.states.core_for("acme", 0)
        now = self.clock.now()
        core.apply(ContactArrived("c1", SMS, Customer("cust-1", "Anna")), "e0", now)
        core.apply(ContactPaused("c1", "technical_issue", 60, hold=True), "e1", now)
        self.handler.work_ready.set()


@asynccontextmanager
async def running(**delivery: Any) -> AsyncIterator[Rig]:
    clock, registry = FakeClock(), CollectorRegistry()
    metrics = NotifierMetrics.create(registry)
    settings = DeliverySettings(**{"deadline_s": 0.05, **delivery})
    handler = NotifierHandler(
        policy=NotifierPolicy(),
        catalog=CATALOG,
        topics=TOPICS,
        kafka=KafkaSettings(),
        metrics=metrics,
        clock=clock,
        retry=settings.retry(),
    )
    rig = Rig(handler, InlineRunner(), FakeChannelGateway(), clock, registry)
    worker = DeliveryWorker(
        reports=KafkaDeliveryReports(handler, rig.runner),
        gateway=rig.gateway,
        settings=settings,
        clock=clock,
        metrics=metrics,
        scan_s=0.002,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield rig
    finally:
        stop.set()
        await asyncio.wait_for(task, 2)


async def until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.002)


def pending_of(rig: Rig) -> Any:
    return rig.handler.states.cores["acme"].pending(NID)


async def test_a_delivered_notification_is_settled_with_the_gateways_message_id() -> None:
    async with running() as rig:
        rig.decide_one()
        await until(lambda: bool(rig.records(TOPICS.notifications)))
    record = rig.outcome()
    assert record.outcome == 1  # DELIVERED
    assert (record.attempts, record.gateway_message_id) == (1, "fake-1")
    assert [n.notification_id for n in rig.gateway.delivered] == [NID]
    assert rig.records(TOPICS.dead_letters("notifier")) == []
    assert rig.metric(
        "switchboard_notifier_notifications_total",
        kind="hold_started",
        channel="sms",
        outcome="delivered",
    )


async def test_a_transient_failure_is_retried_when_the_core_says_and_then_delivered() -> None:
    async with running(base_s=1.0, cap_s=1.0) as rig:
        rig.gateway.fail_next(1, "UNAVAILABLE")
        rig.decide_one()
        await until(lambda: rig.gateway.attempts == 1 and pending_of(rig).attempts == 1)
        retry_at = pending_of(rig).next_attempt_at
        assert rig.clock.now() <= retry_at <= rig.clock.now() + 1.0
        await asyncio.sleep(0.02)
        assert rig.gateway.attempts == 1  # not before the core's retry time
        rig.clock.current = retry_at
        await until(lambda: bool(rig.records(TOPICS.notifications)))
    record = rig.outcome()
    assert record.outcome == 1
    assert record.attempts == 2
    assert record.last_error == "UNAVAILABLE: scripted failure"
    assert rig.metric("switchboard_notifier_retries_total") == 1


async def test_a_permanent_failure_is_rejected_without_a_retry() -> None:
    async with running() as rig:
        rig.gateway.fail_next(1, "INVALID_ARGUMENT")
        rig.decide_one()
        await until(lambda: bool(rig.records(TOPICS.notifications)))
    assert rig.outcome().outcome == 3  # REJECTED
    assert rig.gateway.attempts == 1
    assert rig.gateway.delivered == []
    assert rig.records(TOPICS.dead_letters("notifier")) == []


async def test_an_exhausted_budget_is_dead_lettered_with_the_shared_headers() -> None:
    async with running(max_attempts=2, base_s=0.001, cap_s=0.001) as rig:
        rig.gateway.fail_next(10, "UNAVAILABLE")
        rig.decide_one()
        await until(lambda: rig.gateway.attempts == 1 and pending_of(rig).attempts == 1)
        rig.clock.advance(1)
        await until(lambda: bool(rig.records(TOPICS.notifications)))
    assert rig.outcome().outcome == 2  # DEAD_LETTERED
    [letter] = rig.records(TOPICS.dead_letters("notifier"))
    [original] = rig.records(TOPICS.notifications)
    assert (letter.value, letter.key) == (original.value, original.key)
    assert dict(letter.headers) == {
        "dlq.reason": b"UNAVAILABLE: scripted failure",
        "dlq.error": b"undeliverable",
        "dlq.service": b"notifier",
        "dlq.original.topic": TOPICS.notifications.encode(),
        "dlq.event_id": NID.encode(),
        "content-type": b"application/x-protobuf",  # the original's, so it reads as written
    }
    assert rig.metric("switchboard_notifier_dead_lettered_total") == 1


async def test_a_gateway_that_does_not_answer_in_time_fails_with_deadline_exceeded() -> None:
    async with running(deadline_s=0.02, base_s=1.0) as rig:
        rig.gateway.stall_next(1)
        rig.decide_one()
        await until(lambda: pending_of(rig).attempts == 1)
        assert pending_of(rig).last_error.startswith("DEADLINE_EXCEEDED")
        rig.clock.advance(2)
        await until(lambda: bool(rig.records(TOPICS.notifications)))
    assert rig.outcome().outcome == 1
    assert rig.gateway.attempts == 2


async def test_an_open_circuit_postpones_without_calling_or_counting_an_attempt() -> None:
    async with running(breaker_failures=1, breaker_open_s=10, base_s=0.001, cap_s=0.001) as rig:
        rig.gateway.fail_next(1, "UNAVAILABLE")
        rig.decide_one()
        await until(lambda: pending_of(rig).attempts == 1)
        rig.clock.advance(1)  # retry due, but the circuit is open
        await until(lambda: pending_of(rig).next_attempt_at == rig.clock.now() + 5)
        assert rig.gateway.attempts == 1
        assert pending_of(rig).attempts == 1
        assert rig.metric("switchboard_notifier_circuit_state", gateway="fake") == 2
        rig.clock.advance(10)  # the circuit lets a trial through
        await until(lambda: bool(rig.records(TOPICS.notifications)))
    assert rig.outcome().outcome == 1
    assert rig.metric("switchboard_notifier_circuit_state", gateway="fake") == 0
