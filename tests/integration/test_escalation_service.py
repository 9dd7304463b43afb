"""The escalation service through the real broker and a real gRPC server on loopback:
breaches reach the right manager's stream, other teams' cases stay invisible, tokens are
checked, acknowledgement stops re-escalation, and a restart loses and repeats nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry
from switchboard.v1 import common_pb2, escalation_pb2, escalation_pb2_grpc

from services.common.codec import decode_envelope, encode_envelope, new_envelope
from services.common.runtime import RunningService
from services.common.topics import Topics
from services.escalation.__main__ import build_and_run
from services.escalation.settings import EscalationSettings
from tests.support import KafkaBroker, bearer, identity_env, until, wait_serving

pytestmark = pytest.mark.kafka
CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "config" / "escalation.toml"
PIOTR = bearer("piotr", "escalation", "manager", teams=["polish"])  # supervisor, Polish team
SOFIA = bearer("sofia", "escalation", "manager", teams=["billing-en", "tech-en"])  # English


def arrived(contact_id: str, queue: str) -> bytes:
    e = new_envelope("acme", "pbx", event_id=f"arrive-{contact_id}")
    e.contact_arrived.contact_id, e.contact_arrived.queue = contact_id, queue
    e.contact_arrived.channel = common_pb2.CHANNEL_CHAT
    e.contact_arrived.customer.name = "Ola"
    return encode_envelope(e)


@asynccontextmanager
async def escalation(kafka: KafkaBroker, topics: Topics, **env: str) -> AsyncIterator[int]:
    settings = EscalationSettings.from_env(
        identity_env("escalation")
        | {
            "SWITCHBOARD_CONFIG": str(CONFIG),
            "SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "SWITCHBOARD_KAFKA__TOPIC_PREFIX": topics.prefix,
            "SWITCHBOARD_KAFKA__GROUP_ID": f"{topics.prefix}escalation",
            "SWITCHBOARD_INSTANCE": topics.prefix,
            "SWITCHBOARD_GRPC__PORT": "0",
            "SWITCHBOARD_ESCALATION__TRIGGERS__WAIT_THRESHOLD_S": "1",
            **env,
        }
    )
    started: list[RunningService] = []
    task = asyncio.create_task(
        build_and_run(settings, CollectorRegistry(), started.append, handle_signals=False)
    )
    await until(lambda: bool(started) or task.done())
    await wait_serving(started[0].grpc_port)
    try:
        yield started[0].grpc_port
    finally:
        started[0].stop()
        await asyncio.wait_for(task, 30)


async def collect(stub: Any, metadata: Any, into: list[Any]) -> None:
    async for item in stub.Watch(escalation_pb2.WatchRequest(), metadata=metadata):
        into.append(item.record)


async def test_a_breach_reaches_only_the_right_manager_and_ack_stops_re_escalation(
    kafka: KafkaBroker,
) -> None:
    topics = await kafka.fresh_topics()
    async with (
        escalation(kafka, topics, SWITCHBOARD_ESCALATION__ACK_DEADLINES_S__SUPERVISOR="4") as port,
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        stub = escalation_pb2_grpc.EscalationServiceStub(channel)
        polish: list[Any] = []
        english: list[Any] = []
        watchers = [
            asyncio.create_task(collect(stub, PIOTR, polish)),
            asyncio.create_task(collect(stub, SOFIA, english)),
        ]
        await until(lambda: len(polish) == 1 and len(english) == 1)  # snapshots complete
        await kafka.produce(topics.contact_events, [arrived("c1", "billing-pl")], key=b"acme")
        await until(lambda: any(r.escalation.contact_id == "c1" for r in polish))
        raised = next(r.escalation for r in polish if r.escalation.contact_id == "c1")
        assert raised.reason == escalation_pb2.ESCALATION_REASON_WAIT_THRESHOLD
        assert (raised.team, raised.assignee) == ("polish", "piotr")

        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.Acknowledge(
                escalation_pb2.AcknowledgeRequest(escalation_id=raised.escalation_id),
                metadata=SOFIA,
            )
        # another team's escalation is answered as one that does not exist
        assert denied.value.code() == grpc.StatusCode.NOT_FOUND
        assert denied.value.details() == f"escalation {raised.escalation_id!r} not found"
        acked = await stub.Acknowledge(
            escalation_pb2.AcknowledgeRequest(escalation_id=raised.escalation_id),
            metadata=PIOTR,
        )
        assert acked.escalation.status == escalation_pb2.ESCALATION_STATUS_ACKNOWLEDGED
        assert acked.escalation.acknowledged_by == "piotr"
        # past the supervisor's deadline nothing moves: it was acknowledged in time
        listed = await stub.ListOpen(escalation_pb2.ListOpenRequest(), metadata=PIOTR)
        assert [e.tier for e in listed.escalations] == [escalation_pb2.TIER_SUPERVISOR]
        for task in watchers:
            task.cancel()
        assert not any(r.escalation.contact_id == "c1" for r in english)

    records = await kafka.read_all(topics.escalations, expect=2)
    kinds = [decode_envelope(r.value, r.headers).escalation_record.kind for r in records]
    assert kinds == [
        escalation_pb2.ESCALATION_CHANGE_KIND_RAISED,
        escalation_pb2.ESCALATION_CHANGE_KIND_ACKNOWLEDGED,
    ]


async def test_an_unacknowledged_escalation_climbs_to_the_manager(kafka: KafkaBroker) -> None:
    topics = await kafka.fresh_topics()
    async with escalation(
        kafka, topics, SWITCHBOARD_ESCALATION__ACK_DEADLINES_S__SUPERVISOR="1"
    ) as port:
        await kafka.produce(topics.contact_events, [arrived("c1", "sales-pl")], key=b"acme")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = escalation_pb2_grpc.EscalationServiceStub(channel)
            manager = bearer("mira", "escalation", "manager", teams=["*"])

            async def at_manager() -> bool:
                reply = await stub.ListOpen(escalation_pb2.ListOpenRequest(), metadata=manager)
                return any(e.tier == escalation_pb2.TIER_MANAGER for e in reply.escalations)

            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while not await at_manager():
                assert loop.time() < deadline, "never re-escalated"


async def test_no_or_unknown_token_is_unauthenticated_and_other_teams_are_refused(
    kafka: KafkaBroker,
) -> None:
    topics = await kafka.fresh_topics()
    async with escalation(kafka, topics) as port:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = escalation_pb2_grpc.EscalationServiceStub(channel)
            unauthenticated = [
                (),
                (("authorization", "Bearer forged"),),
                bearer("piotr", "escalation", "manager", teams=["polish"], exp=1),  # expired
                bearer("piotr", "router", "manager", teams=["polish"]),  # for another server
            ]
            for metadata in unauthenticated:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.ListOpen(escalation_pb2.ListOpenRequest(), metadata=metadata)
                assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.aio.AioRpcError) as not_a_manager:
                await stub.ListOpen(
                    escalation_pb2.ListOpenRequest(),
                    metadata=bearer("ops", "escalation", "operator", teams=["*"]),
                )
            assert not_a_manager.value.code() == grpc.StatusCode.PERMISSION_DENIED
            # authenticated, but naming another team's escalations: refused, team named
            for call in (
                stub.ListOpen(
                    escalation_pb2.ListOpenRequest(teams=["polish", "tech-en"]), metadata=PIOTR
                ),
                stub.Watch(escalation_pb2.WatchRequest(teams=["tech-en"]), metadata=PIOTR).read(),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await call
                assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
                assert refused.value.details() == "piotr may not see team(s) ['tech-en']"
            own = escalation_pb2.ListOpenRequest(teams=["polish"])
            assert list((await stub.ListOpen(own, metadata=PIOTR)).escalations) == []


@pytest.mark.parametrize(
    ("before", "after"),
    [("protobuf", "protobuf"), ("json", "protobuf")],  # the topic is read back in both formats
)
async def test_a_restart_keeps_open_escalations_and_raises_nothing_twice(
    kafka: KafkaBroker, before: str, after: str
) -> None:
    topics = await kafka.fresh_topics()
    async with escalation(kafka, topics, SWITCHBOARD_KAFKA__OUTPUT_FORMAT=before) as port:
        await kafka.produce(topics.contact_events, [arrived("c1", "billing-pl")], key=b"acme")
        [first] = await kafka.read_all(topics.escalations, expect=1)
        assert (
            dict(first.headers)["content-type"]
            == f"application/{before}".replace("protobuf", "x-protobuf").encode()
        )
    async with escalation(kafka, topics, SWITCHBOARD_KAFKA__OUTPUT_FORMAT=after) as port:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = escalation_pb2_grpc.EscalationServiceStub(channel)
            reply = await stub.ListOpen(escalation_pb2.ListOpenRequest(), metadata=PIOTR)
            assert [e.contact_id for e in reply.escalations] == ["c1"]
            # more evidence for the same case after the restart updates, never re-raises
            await kafka.produce(topics.contact_events, [arrived("c2", "billing-pl")], key=b"acme")
            await kafka.read_all(topics.escalations, expect=2)
    records = await kafka.read_all(topics.escalations, expect=2)
    raised = [decode_envelope(r.value, r.headers).escalation_record for r in records]
    assert sorted(
        r.escalation.contact_id
        for r in raised
        if r.kind == escalation_pb2.ESCALATION_CHANGE_KIND_RAISED
    ) == ["c1", "c2"]


async def test_a_team_removed_from_config_while_its_escalation_is_open_does_not_stop_the_restart(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    """The restore keeps the escalation, hands it to the head of service and says so; it
    used to raise, and the service crash-looped on its own state."""
    topics = await kafka.fresh_topics()
    async with escalation(kafka, topics):
        await kafka.produce(topics.contact_events, [arrived("c1", "billing-pl")], key=b"acme")
        await kafka.read_all(topics.escalations, expect=1)
    without_polish = CONFIG.read_text()
    for section in (
        '[escalation.teams.polish]\nsupervisor = "piotr"\n',
        '[escalation.queues.sales-pl]\nteam = "polish"\n',
        '[escalation.queues.billing-pl]\nteam = "polish"\n',
    ):
        assert section in without_polish
        without_polish = without_polish.replace(section, "")
    config = tmp_path / "escalation.toml"
    config.write_text(without_polish)
    async with escalation(kafka, topics, SWITCHBOARD_CONFIG=str(config)) as port:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = escalation_pb2_grpc.EscalationServiceStub(channel)
            hugo = bearer("hugo", "escalation", "manager", teams=["*"])
            reply = await stub.ListOpen(escalation_pb2.ListOpenRequest(), metadata=hugo)
            [kept] = reply.escalations
            assert (kept.contact_id, kept.team, kept.assignee) == ("c1", "unassigned", "hugo")
            assert kept.tier == escalation_pb2.TIER_HEAD_OF_SERVICE
            await stub.Resolve(
                escalation_pb2.ResolveRequest(
                    escalation_id=kept.escalation_id, resolution_code="handled"
                ),
                metadata=hugo,
            )
    records = await kafka.read_all(topics.escalations, expect=3)
    kinds = [decode_envelope(r.value, r.headers).escalation_record.kind for r in records]
    assert kinds == [
        escalation_pb2.ESCALATION_CHANGE_KIND_RAISED,
        escalation_pb2.ESCALATION_CHANGE_KIND_UPDATED,  # the re-homing, published
        escalation_pb2.ESCALATION_CHANGE_KIND_RESOLVED,
    ]
