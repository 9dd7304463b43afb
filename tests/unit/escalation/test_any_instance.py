"""The instance that takes a manager's call, without a broker (a fake producer stands for
Kafka): commands wait for the owner's answer up to their deadline and no longer, only so
many wait at once, an answer settles only its own command, and a view that could not
hold every escalation refuses to answer rather than answer partly."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry
from switchboard.v1 import escalation_pb2

from services.common.clock import FakeClock
from services.common.codec import decode_envelope, encode_envelope, new_envelope
from services.common.config import KafkaSettings
from services.common.identity import Caller, Role, calling_as
from services.common.kafka import InboundRecord
from services.common.topics import Topics
from services.escalation.adapters.grpc import EscalationServicer
from services.escalation.adapters.mapping import outcome_to_proto
from services.escalation.adapters.replicas import (
    CommandSender,
    CommandTimedOut,
    ReadModel,
    TooManyCommands,
)
from services.escalation.domain import commands as c
from services.escalation.domain.read_view import EscalationReadView
from services.escalation.domain.scopes import DomainPolicies
from services.escalation.metrics import EscalationMetrics
from tests.unit.escalation.scenario import T0, make_policy

TOPICS = Topics("t.")
ESC = "eu/c1/manager_requested"
SOFIA = c.Requester("sofia", frozenset({"manager"}), frozenset({"billing"}), frozenset({"eu"}))
HUGO = Caller("hugo", frozenset({Role.MANAGER}), frozenset({"*"}), frozenset({"*"}))


class FakeProducer:
    """Takes every record (as a broker that accepted it) and keeps it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.took = asyncio.Event()

    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> None:
        self.sent.append((topic, value, key))
        self.took.set()


def sender(max_in_flight: int = 10) -> tuple[CommandSender, FakeProducer]:
    s = CommandSender(
        TOPICS,
        KafkaSettings(),
        EscalationMetrics.create(CollectorRegistry()),
        max_in_flight=max_in_flight,
        clock=FakeClock(T0),
    )
    producer = FakeProducer()
    s._producer = producer  # type: ignore[assignment]
    return s, producer


def reply(command_id: str, answer: c.CommandAnswer) -> InboundRecord:
    envelope = new_envelope("eu", "escalation", event_id=f"{command_id}/result")
    envelope.escalation_command_result.CopyFrom(outcome_to_proto(command_id, answer))
    return InboundRecord("t.escalation.replies", 0, 0, b"eu", encode_envelope(envelope), (), 0)


async def test_a_command_goes_to_the_domains_partition_and_returns_its_own_answer() -> None:
    s, producer = sender()
    sending = asyncio.create_task(s.send("eu", c.Acknowledge(ESC), SOFIA, wait_s=5))
    await producer.took.wait()
    topic, value, key = producer.sent[0]
    assert (topic, key) == ("t.escalation.commands", b"eu")  # keyed by domain
    envelope = decode_envelope(value)
    command = envelope.escalation_command
    assert command.acknowledge.escalation_id == ESC
    assert (command.subject, list(command.teams)) == ("sofia", ["billing"])
    assert command.expires_at.seconds == int(T0 + 5)  # the owner drops it after this
    s.on_reply(reply("someone-elses", c.CommandAnswer(c.CommandStatus.NOT_FOUND, "no")))
    assert not sending.done()
    ok = c.CommandAnswer(c.CommandStatus.OK, "", ESC, 7)
    s.on_reply(reply(envelope.event_id, ok))
    assert await sending == ok
    assert len(s) == 0


async def test_no_answer_by_the_deadline_times_out_and_frees_the_slot() -> None:
    s, _ = sender()
    with pytest.raises(CommandTimedOut, match=r"owning domain 'eu' within 0\.1 s"):
        await s.send("eu", c.Acknowledge(ESC), SOFIA, wait_s=0.1)
    assert len(s) == 0


async def test_only_so_many_commands_wait_at_once() -> None:
    s, producer = sender(max_in_flight=1)
    waiting = asyncio.create_task(s.send("eu", c.Acknowledge(ESC), SOFIA, wait_s=5))
    await producer.took.wait()
    with pytest.raises(TooManyCommands, match=r"commands\.max_in_flight"):
        await s.send("eu", c.Acknowledge(ESC), SOFIA, wait_s=5)
    waiting.cancel()


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code


class Context:
    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)


def servicer(view: EscalationReadView) -> tuple[EscalationServicer, ReadModel]:
    metrics = EscalationMetrics.create(CollectorRegistry())
    model = ReadModel(
        TOPICS,
        KafkaSettings(),
        metrics,
        CommandSender(TOPICS, KafkaSettings(), metrics),
        DomainPolicies(make_policy()),
        view,
    )
    model.follower.loaded.set()
    return EscalationServicer(model), model


async def test_a_view_that_could_not_hold_every_escalation_refuses_to_answer() -> None:
    view = EscalationReadView(max_escalations=1)
    view.refused = 1  # one escalation was left out
    service, _ = servicer(view)
    with calling_as(HUGO):
        calls: list[Any] = [
            service.ListOpen(escalation_pb2.ListOpenRequest(), Context()),
            anext(service.Watch(escalation_pb2.WatchRequest(), Context())),
            service.Acknowledge(escalation_pb2.AcknowledgeRequest(escalation_id=ESC), Context()),
        ]
        for call in calls:
            with pytest.raises(Aborted) as refused:
                await call
            assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "view.max_escalations" in str(refused.value)


async def test_a_view_still_loading_answers_unavailable() -> None:
    service, model = servicer(EscalationReadView())
    model.follower.loaded.clear()
    service._view_settings = service._view_settings.model_copy(update={"load_timeout_s": 0.05})
    with calling_as(HUGO), pytest.raises(Aborted) as refused:
        await service.ListOpen(escalation_pb2.ListOpenRequest(), Context())
    assert refused.value.code == grpc.StatusCode.UNAVAILABLE
    assert "still loading" in str(refused.value)
