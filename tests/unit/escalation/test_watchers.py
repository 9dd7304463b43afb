"""Watch streams are bounded: a console that stops reading is ended with RESOURCE_EXHAUSTED
while the others go on, and only so many streams may be open at once. The streams are
fed by the read view from the committed ``escalations`` records (here handed to it
directly, as its consumer would)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry
from switchboard.v1 import escalation_pb2

from services.common.clock import FakeClock
from services.common.config import KafkaSettings
from services.common.identity import Caller, Role, calling_as
from services.common.kafka import InboundRecord, OutboundRecord
from services.common.topics import Topics
from services.escalation.adapters.grpc import EscalationServicer
from services.escalation.adapters.kafka import EscalationHandler
from services.escalation.adapters.replicas import CommandSender, ReadModel
from services.escalation.adapters.watchers import TooManyWatchers, Watchers
from services.escalation.domain import ManagerRequested
from services.escalation.domain.scopes import DomainPolicies
from services.escalation.metrics import EscalationMetrics
from tests.unit.escalation.scenario import T0, arrive, make_policy

HUGO = Caller("hugo", frozenset({Role.MANAGER}), frozenset({"*"}), frozenset({"*"}))
TOPICS = Topics("t.")


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code


class Context:
    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)


def handler() -> EscalationHandler:
    return EscalationHandler(
        policy=make_policy(triggers={"enabled": ["manager_requested"]}),
        topics=TOPICS,
        kafka=KafkaSettings(),
        metrics=EscalationMetrics.create(CollectorRegistry()),
        clock=FakeClock(T0),
    )


def read_model(watchers: Watchers) -> ReadModel:
    metrics = EscalationMetrics.create(CollectorRegistry())
    model = ReadModel(
        TOPICS,
        KafkaSettings(),
        metrics,
        CommandSender(TOPICS, KafkaSettings(), metrics),
        DomainPolicies(make_policy()),
    )
    model.watchers = watchers
    model.follower.loaded.set()  # as if the topic had been read to its end
    return model


def committed(model: ReadModel, records: list[OutboundRecord]) -> None:
    """Hand the handler's records to the read view as its consumer reads them back."""
    for offset, out in enumerate(records):
        model.on_record(InboundRecord(out.topic, 0, offset, out.key, out.value, out.headers, 0))


def raise_escalation(h: EscalationHandler, model: ReadModel, contact_id: str) -> None:
    core = h.states.core_for("eu", 0)
    arrive(core, contact_id, T0)
    committed(model, h.emit_changes(core.apply(ManagerRequested(contact_id), T0)))


async def read(stream: Any, count: int) -> None:
    for _ in range(count):
        await anext(stream)


async def test_a_stream_that_falls_behind_is_ended_and_the_others_go_on() -> None:
    h = handler()
    model = read_model(Watchers(max_streams=10, queue_size=3))
    servicer = EscalationServicer(model)
    with calling_as(HUGO):
        slow = servicer.Watch(escalation_pb2.WatchRequest(), Context())
        fast = servicer.Watch(escalation_pb2.WatchRequest(), Context())
        for stream in (slow, fast):  # both subscribed: snapshot sent
            first = await anext(stream)
            assert first.record.kind == escalation_pb2.ESCALATION_CHANGE_KIND_SNAPSHOT_COMPLETE
        seen: list[Any] = []
        for n in range(5):
            raise_escalation(h, model, f"c{n}")
            seen.append(await anext(fast))  # the fast one keeps up
        with pytest.raises(Aborted) as ended:
            await read(slow, 4)  # three changes kept, then the end
        assert ended.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "fell 3 changes behind" in str(ended.value)
        assert [r.record.escalation.contact_id for r in seen] == [f"c{n}" for n in range(5)]
        await fast.aclose()
    assert len(model.watchers) == 0  # both closed their slots


async def test_a_new_stream_starts_with_the_views_open_escalations() -> None:
    h = handler()
    model = read_model(Watchers())
    raise_escalation(h, model, "c1")
    with calling_as(HUGO):
        stream = EscalationServicer(model).Watch(escalation_pb2.WatchRequest(), Context())
        first, second = await anext(stream), await anext(stream)
        assert first.record.kind == escalation_pb2.ESCALATION_CHANGE_KIND_RAISED
        assert first.record.escalation.contact_id == "c1"
        assert second.record.kind == escalation_pb2.ESCALATION_CHANGE_KIND_SNAPSHOT_COMPLETE
        await stream.aclose()


async def test_only_so_many_streams_are_open_at_once() -> None:
    watchers = Watchers(max_streams=2, queue_size=10)
    first, _second = watchers.open(), watchers.open()
    with pytest.raises(TooManyWatchers, match="2 Watch streams are open"):
        watchers.open()
    watchers.close(first)
    assert watchers.open() is not None


async def test_a_third_stream_is_refused_with_resource_exhausted() -> None:
    model = read_model(Watchers(max_streams=1, queue_size=10))
    servicer = EscalationServicer(model)
    with calling_as(HUGO):
        held = servicer.Watch(escalation_pb2.WatchRequest(), Context())
        await anext(held)
        with pytest.raises(Aborted) as refused:
            await anext(servicer.Watch(escalation_pb2.WatchRequest(), Context()))
        assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        await held.aclose()
