"""NotifierService.Notify always decides a DIRECT notification with the request's text:
the deprecated ``kind`` is ignored (as the proto says)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry
from switchboard.v1 import common_pb2, notification_pb2

from services.common.clock import FakeClock
from services.common.config import KafkaSettings
from services.common.identity import Caller, Role, calling_as
from services.common.kafka import OutboundRecord
from services.common.topics import Topics
from services.notifier.adapters.grpc import NotifierServicer
from services.notifier.adapters.kafka import NotifierHandler
from services.notifier.domain.core import NotifierPolicy
from services.notifier.metrics import NotifierMetrics
from tests.unit.notifier.test_notifier_core import CATALOG

_R = TypeVar("_R")


class InlineLoop:
    """The consume loop's command side: every domain on partition 0, commands run at once."""

    def partition_of(self, domain: str) -> int:
        return 0

    async def execute(
        self, command: Callable[[], tuple[_R, Sequence[OutboundRecord]]], *, partition: int
    ) -> _R:
        return command()[0]


class MustNotAbort:
    async def abort(self, code: Any, details: str) -> None:
        raise AssertionError(f"aborted: {code} {details}")


async def test_notify_ignores_the_deprecated_kind_and_sends_the_text_as_a_direct_message() -> None:
    handler = NotifierHandler(
        policy=NotifierPolicy(),
        catalog=CATALOG,
        topics=Topics("t."),
        kafka=KafkaSettings(),
        metrics=NotifierMetrics.create(CollectorRegistry()),
        clock=FakeClock(),
    )
    servicer = NotifierServicer(handler, InlineLoop(), "direct")  # type: ignore[arg-type]
    request = notification_pb2.NotifyRequest(
        contact_id="c1",
        channel=common_pb2.CHANNEL_SMS,
        kind=notification_pb2.NOTIFICATION_KIND_CLOSED,
        text="Your callback is at 15:00.",
        request_id="r1",
    )
    with calling_as(Caller("crm", frozenset({Role.SERVICE}), domains=frozenset({"*"}))):
        reply = await servicer.Notify(request, context=MustNotAbort())
    assert reply.notification_id == "direct-r1:direct"
    pending = handler.states.cores["direct"].pending(reply.notification_id)
    assert pending is not None
    assert (pending.notification.kind, pending.notification.body) == (
        "direct",
        "Your callback is at 15:00.",
    )
