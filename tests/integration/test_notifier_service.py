"""The notifier through the real broker and a real gateway on loopback: a hold is told
exactly once, with reason and duration, even across a restart in the middle of retries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry
from switchboard.v1 import common_pb2, contact_events_pb2, notification_pb2, notification_pb2_grpc

from services.common.codec import decode_envelope, encode_envelope, new_envelope
from services.common.runtime import RunningService
from services.common.topics import Topics
from services.notifier.__main__ import build_and_run
from services.notifier.gateway_stub import ReferenceGateway
from services.notifier.settings import NotifierSettings
from tests.support import (
    GrpcServer,
    KafkaBroker,
    bearer,
    gateway_client_env,
    identity_env,
    until,
    wait_serving,
)

pytestmark = pytest.mark.kafka
CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "config" / "notifier.toml"


def arrived(contact_id: str, language: str = "en") -> bytes:
    e = new_envelope("acme", "pbx", event_id=f"arrive-{contact_id}")
    e.contact_arrived.contact_id = contact_id
    e.contact_arrived.queue = "billing-en"
    e.contact_arrived.channel = common_pb2.CHANNEL_SMS
    e.contact_arrived.customer.name = "Anna"
    e.contact_arrived.customer.phone = "+48600123456"
    e.contact_arrived.customer.language = language
    return encode_envelope(e)


def held(contact_id: str, minutes: int = 5) -> bytes:
    e = new_envelope("acme", "pbx", event_id=f"hold-{contact_id}")
    e.contact_held.contact_id = contact_id
    e.contact_held.reason = contact_events_pb2.PAUSE_REASON_CHECKING_INFORMATION
    e.contact_held.expected_duration.FromSeconds(minutes * 60)
    return encode_envelope(e)


async def start_gateway(grpc_server: Callable[..., Any], gateway: ReferenceGateway) -> GrpcServer:
    server: GrpcServer = await grpc_server(
        lambda s: notification_pb2_grpc.add_CustomerChannelGatewayServicer_to_server(gateway, s)
    )
    return server


@asynccontextmanager
async def notifier(
    kafka: KafkaBroker,
    topics: Topics,
    gateway_port: int,
    registry: CollectorRegistry | None = None,
    **env: str,
) -> AsyncIterator[int]:
    settings = NotifierSettings.from_env(
        identity_env("notifier")
        | gateway_client_env()
        | {
            "SWITCHBOARD_CONFIG": str(CONFIG),
            "SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "SWITCHBOARD_KAFKA__TOPIC_PREFIX": topics.prefix,
            "SWITCHBOARD_KAFKA__GROUP_ID": f"{topics.prefix}notifier",
            "SWITCHBOARD_INSTANCE": topics.prefix,
            "SWITCHBOARD_GRPC__PORT": "0",
            "SWITCHBOARD_GATEWAYS__DEFAULT": f"127.0.0.1:{gateway_port}",
            **env,
        }
    )
    started: list[RunningService] = []
    task = asyncio.create_task(
        build_and_run(
            settings, registry or CollectorRegistry(), started.append, handle_signals=False
        )
    )
    await until(lambda: bool(started) or task.done())
    try:
        yield started[0].grpc_port
    finally:
        if started:
            started[0].stop()
        await asyncio.wait_for(task, 30)


async def delivered_records(kafka: KafkaBroker, topics: Topics, expect: int) -> list[Any]:
    records = await kafka.read_all(topics.notifications, expect=expect, timeout=5)
    return [decode_envelope(r.value, r.headers).notification_record for r in records]


async def test_a_hold_yields_exactly_one_message_with_reason_and_duration(
    kafka: KafkaBroker, grpc_server: Callable[..., Any]
) -> None:
    topics = await kafka.fresh_topics()
    gateway = ReferenceGateway()
    server = await start_gateway(grpc_server, gateway)
    async with notifier(kafka, topics, server.port):
        await kafka.produce(topics.contact_events, [arrived("c1"), held("c1")], key=b"acme")
        await until(lambda: len(gateway.delivered) == 1)
        [record] = await delivered_records(kafka, topics, expect=1)
    [message] = gateway.delivered
    assert "checking some information" in message.body
    assert "5 minutes" in message.body
    assert message.to == "Anna"
    assert record.notification.notification_id == "hold-c1:hold_started"
    assert record.outcome == 1  # DELIVERED


async def test_a_place_in_line_without_an_estimate_is_told_without_a_wait(
    kafka: KafkaBroker, grpc_server: Callable[..., Any]
) -> None:
    """The router has no estimate for a contact nobody logged in could take; the
    customer must not read a made-up wait."""
    topics = await kafka.fresh_topics()
    gateway = ReferenceGateway()
    server = await start_gateway(grpc_server, gateway)
    position = new_envelope("acme", "router", event_id="position-c1")
    q = position.queue_position_updated
    q.contact_id, q.queue, q.position, q.estimated_wait_unknown = "c1", "billing-pl", 2, True
    registry = CollectorRegistry()
    consumed = {"topic": topics.contact_events, "payload": "contact_arrived"}
    async with notifier(kafka, topics, server.port, registry):
        await kafka.produce(topics.contact_events, [arrived("c1")], key=b"acme")
        # the two topics are read independently: tell the position once the arrival is in
        await until(
            lambda: registry.get_sample_value("switchboard_events_consumed_total", consumed) == 1,
            what="the arrival consumed",
        )
        await kafka.produce(topics.routing_decisions, [encode_envelope(position)], key=b"acme")
        await until(lambda: len(gateway.delivered) == 1, what="the position notice")
    [message] = gateway.delivered
    assert "number 2 in line" in message.body
    assert "cannot estimate the wait" in message.body
    assert "minute" not in message.body


async def test_a_restart_in_the_middle_of_retries_neither_loses_nor_duplicates(
    kafka: KafkaBroker, grpc_server: Callable[..., Any]
) -> None:
    topics = await kafka.fresh_topics()
    gateway = ReferenceGateway()
    gateway.fail_next(10_000, grpc.StatusCode.UNAVAILABLE)
    server = await start_gateway(grpc_server, gateway)
    fast_retries = {
        "SWITCHBOARD_DELIVERY__BASE_S": "0.05",
        "SWITCHBOARD_DELIVERY__CAP_S": "0.2",
        "SWITCHBOARD_DELIVERY__MAX_ATTEMPTS": "1000",
        "SWITCHBOARD_DELIVERY__BREAKER_FAILURES": "1000",
    }
    async with notifier(kafka, topics, server.port, **fast_retries):
        await kafka.produce(topics.contact_events, [arrived("c1", "ru"), held("c1")], key=b"acme")
        await until(lambda: gateway.attempts >= 3)
    gateway._scripted.clear()
    async with notifier(kafka, topics, server.port, **fast_retries):
        await until(lambda: len(gateway.delivered) == 1)
        records = await delivered_records(kafka, topics, expect=1)
    # counted after the second instance stopped gracefully: nothing is still in flight
    assert len(gateway.delivered) == 1
    assert "5 минут" in gateway.delivered[0].body
    assert [r.outcome for r in records] == [1]


async def test_a_gateway_that_refuses_permanently_is_recorded_as_rejected(
    kafka: KafkaBroker, grpc_server: Callable[..., Any]
) -> None:
    topics = await kafka.fresh_topics()
    gateway = ReferenceGateway()
    gateway.fail_next(1, grpc.StatusCode.INVALID_ARGUMENT)
    server = await start_gateway(grpc_server, gateway)
    async with notifier(kafka, topics, server.port):
        await kafka.produce(topics.contact_events, [arrived("c1"), held("c1")], key=b"acme")
        [record] = await delivered_records(kafka, topics, expect=1)
    assert record.outcome == 3  # REJECTED
    assert gateway.delivered == []


async def test_an_exhausted_retry_budget_is_dead_lettered_with_the_reason(
    kafka: KafkaBroker, grpc_server: Callable[..., Any]
) -> None:
    topics = await kafka.fresh_topics()
    gateway = ReferenceGateway()
    gateway.fail_next(10_000, grpc.StatusCode.UNAVAILABLE)
    server = await start_gateway(grpc_server, gateway)
    async with notifier(
        kafka,
        topics,
        server.port,
        SWITCHBOARD_DELIVERY__BASE_S="0.01",
        SWITCHBOARD_DELIVERY__MAX_ATTEMPTS="3",
    ):
        await kafka.produce(topics.contact_events, [arrived("c1"), held("c1")], key=b"acme")
        [record] = await delivered_records(kafka, topics, expect=1)
        letters = await kafka.read_all(topics.dead_letters("notifier"), expect=1)
    assert record.outcome == 2  # DEAD_LETTERED
    headers = dict(letters[0].headers)
    assert headers["dlq.reason"].startswith(b"UNAVAILABLE")
    assert headers["dlq.service"] == b"notifier"
    assert headers["dlq.original.topic"] == topics.notifications.encode()
    assert headers["dlq.event_id"] == b"hold-c1:hold_started"


async def test_notify_answers_only_a_service_identity_of_its_domain(
    kafka: KafkaBroker, grpc_server: Callable[..., Any]
) -> None:
    topics = await kafka.fresh_topics()
    gateway = ReferenceGateway()
    server = await start_gateway(grpc_server, gateway)
    request = notification_pb2.NotifyRequest(
        request_id="r1",
        contact_id="c1",
        channel=common_pb2.CHANNEL_SMS,
        text="Your refund is on its way",
    )
    request.customer.name, request.customer.phone = "Anna", "+48600123456"
    async with notifier(kafka, topics, server.port) as port:
        await wait_serving(port)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = notification_pb2_grpc.NotifierServiceStub(channel)
            refusals = [
                ((), grpc.StatusCode.UNAUTHENTICATED),
                (bearer("mallory", "gateway", "service"), grpc.StatusCode.UNAUTHENTICATED),
                (bearer("piotr", "notifier", "manager"), grpc.StatusCode.PERMISSION_DENIED),
                (
                    bearer("crm", "notifier", "service", domains=["globex"]),
                    grpc.StatusCode.PERMISSION_DENIED,
                ),
            ]
            for metadata, code in refusals:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.Notify(request, metadata=metadata)
                assert refused.value.code() == code
            assert not gateway.delivered  # nothing reached a customer on a refused call
            reply = await stub.Notify(request, metadata=bearer("crm", "notifier", "service"))
            await until(lambda: len(gateway.delivered) == 1, what="the direct message")
    assert reply.notification_id == "direct-r1:direct"
    assert gateway.delivered[0].body == "Your refund is on its way"
