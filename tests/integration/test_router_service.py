"""The router as a service: events in through the real broker, decisions out, and a
kill -9 in the middle loses nothing and doubles nothing."""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry
from switchboard.v1 import common_pb2, contact_events_pb2, router_admin_pb2, router_admin_pb2_grpc
from switchboard.v1.envelope_pb2 import Envelope

from services.auditor.__main__ import audit_topics
from services.common.codec import decode_envelope, encode_envelope, new_envelope
from services.common.runtime import RunningService
from services.common.topics import Topics
from services.router.__main__ import build_and_run
from services.router.settings import RouterSettings
from tests.support import (
    KafkaBroker,
    ServiceProcess,
    bearer,
    channel_as,
    free_port,
    identity_env,
    until,
    wait_serving,
)

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "config" / "router.toml"


def login(agent_id: str, language: str = "en") -> bytes:
    e = new_envelope("acme", "desk", event_id=f"login-{agent_id}")
    e.agent_logged_in.agent_id = agent_id
    e.agent_logged_in.team = "billing-team"
    e.agent_logged_in.languages.append(language)
    e.agent_logged_in.skills.add(skill="billing", proficiency=5)
    e.agent_logged_in.capacity.add(channel=common_pb2.CHANNEL_VOICE, max_concurrent=1)
    return encode_envelope(e)


def arrive(contact_id: str, queue: str = "billing-en") -> bytes:
    e = new_envelope("acme", "pbx", event_id=f"arrive-{contact_id}")
    e.contact_arrived.contact_id = contact_id
    e.contact_arrived.queue = queue
    e.contact_arrived.channel = common_pb2.CHANNEL_VOICE
    e.contact_arrived.customer.name = "Anna"
    return encode_envelope(e)


def accept(agent_id: str, contact_id: str, offer_id: str) -> bytes:
    e = new_envelope("acme", "desk", event_id=f"accept-{offer_id}")
    e.offer_accepted.agent_id, e.offer_accepted.contact_id = agent_id, contact_id
    e.offer_accepted.offer_id = offer_id
    return encode_envelope(e)


def end(contact_id: str) -> bytes:
    e = new_envelope("acme", "pbx", event_id=f"end-{contact_id}")
    e.contact_ended.contact_id = contact_id
    e.contact_ended.disposition = contact_events_pb2.DISPOSITION_RESOLVED
    return encode_envelope(e)


class Decisions:
    """Everything the router has committed to routing.decisions so far."""

    def __init__(self, kafka: KafkaBroker, topics: Topics) -> None:
        self.kafka, self.topics = kafka, topics

    async def read(self) -> list[Envelope]:
        records = await self.kafka.read_all(
            self.topics.routing_decisions, expect=10**9, timeout=0.5
        )
        return [decode_envelope(r.value, r.headers) for r in records]

    async def wait_for(self, predicate, timeout: float = 30.0) -> list[Envelope]:  # type: ignore[no-untyped-def]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            decisions = await self.read()
            if predicate(decisions):
                return decisions
            if loop.time() > deadline:
                kinds = [d.WhichOneof("payload") for d in decisions]
                raise AssertionError(f"decisions never matched; saw {kinds}")


def offers(decisions: list[Envelope]) -> list[tuple[str, str, str]]:
    return [
        (d.offer_made.contact_id, d.offer_made.agent_id, d.offer_made.offer_id)
        for d in decisions
        if d.HasField("offer_made")
    ]


@asynccontextmanager
async def router_in_process(
    kafka: KafkaBroker, topics: Topics, registry: CollectorRegistry | None = None
) -> AsyncIterator[int]:
    """A router in this process; yields its gRPC (RouterAdmin) port."""
    settings = RouterSettings.from_env(
        identity_env("router")
        | {
            "SWITCHBOARD_CONFIG": str(CONFIG),
            "SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "SWITCHBOARD_KAFKA__TOPIC_PREFIX": topics.prefix,
            "SWITCHBOARD_KAFKA__GROUP_ID": f"{topics.prefix}router",
            "SWITCHBOARD_INSTANCE": topics.prefix,
            "SWITCHBOARD_GRPC__PORT": "0",
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
        yield started[0].grpc_port if started else 0
    finally:
        if started:
            started[0].stop()
        await asyncio.wait_for(task, 30)


async def test_a_call_is_offered_accepted_and_closed(kafka: KafkaBroker) -> None:
    topics = await kafka.fresh_topics()
    decisions = Decisions(kafka, topics)
    async with router_in_process(kafka, topics):
        await kafka.produce(topics.agent_events, [login("a1")], key=b"acme")
        await kafka.produce(topics.contact_events, [arrive("c1")], key=b"acme")
        seen = await decisions.wait_for(lambda ds: offers(ds))
        assert offers(seen) == [("c1", "a1", "c1#1")]
        await kafka.produce(topics.agent_events, [accept("a1", "c1", "c1#1")], key=b"acme")
        await decisions.wait_for(lambda ds: any(d.HasField("contact_assigned") for d in ds))
        await kafka.produce(topics.contact_events, [end("c1")], key=b"acme")
        await decisions.wait_for(lambda ds: any(d.HasField("contact_closed") for d in ds))
    report = await audit_topics(kafka.bootstrap_servers, topics, check_notifications=False)
    assert report.ok, report.summary()


async def test_router_admin_shows_statuses_contacts_in_hand_and_no_service_level_yet(
    kafka: KafkaBroker,
) -> None:
    topics = await kafka.fresh_topics()
    decisions = Decisions(kafka, topics)
    async with (
        router_in_process(kafka, topics) as port,
        channel_as(port, bearer("ops", "router", "operator", domains=["acme"])) as channel,
    ):
        await wait_serving(port)
        admin = router_admin_pb2_grpc.RouterAdminStub(channel)
        await kafka.produce(topics.agent_events, [login("a1")], key=b"acme")
        await kafka.produce(topics.contact_events, [arrive("c1"), arrive("c2")], key=b"acme")
        await decisions.wait_for(lambda ds: offers(ds) == [("c1", "a1", "c1#1")])

        ringing = await admin.GetContact(router_admin_pb2.GetContactRequest(contact_id="c1"))
        assert (ringing.contact_status, ringing.status, ringing.agent_id) == (
            router_admin_pb2.CONTACT_STATUS_OFFERED,
            "offered",
            "a1",
        )
        waiting = await admin.GetContact(router_admin_pb2.GetContactRequest(contact_id="c2"))
        assert (waiting.contact_status, waiting.position) == (
            router_admin_pb2.CONTACT_STATUS_WAITING,
            1,
        )
        (agent,) = (await admin.ListAgents(router_admin_pb2.ListAgentsRequest())).agents
        assert [(c.channel, c.contacts) for c in agent.in_hand] == [(common_pb2.CHANNEL_VOICE, 1)]
        assert [(c.channel, c.max_concurrent) for c in agent.capacity] == [
            (common_pb2.CHANNEL_VOICE, 1)
        ]
        request = router_admin_pb2.GetQueueStatsRequest(queues=["billing-en"])
        (idle,) = (await admin.GetQueueStats(request)).queues
        assert (idle.waiting, idle.offered, idle.answered) == (1, 1, 0)
        assert math.isnan(idle.service_level)  # answered and failed no one: none, not 100 %

        await kafka.produce(topics.agent_events, [accept("a1", "c1", "c1#1")], key=b"acme")
        await decisions.wait_for(lambda ds: any(d.HasField("contact_assigned") for d in ds))
        talking = await admin.GetContact(router_admin_pb2.GetContactRequest(contact_id="c1"))
        assert talking.contact_status == router_admin_pb2.CONTACT_STATUS_ASSIGNED
        (served,) = (await admin.GetQueueStats(request)).queues
        assert (served.answered, served.service_level) == (1, 1.0)
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await admin.GetContact(router_admin_pb2.GetContactRequest(contact_id="nobody"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND

        # Another tenant's operator: acme's contact is as missing as a made-up one, and
        # its queues and agents are not listed; no token or the wrong role gets nothing.
        async with channel_as(
            port, bearer("ops2", "router", "operator", domains=["globex"])
        ) as other:
            stranger = router_admin_pb2_grpc.RouterAdminStub(other)
            with pytest.raises(grpc.aio.AioRpcError) as hidden:
                await stranger.GetContact(router_admin_pb2.GetContactRequest(contact_id="c1"))
            assert (hidden.value.code(), hidden.value.details()) == (
                grpc.StatusCode.NOT_FOUND,
                "contact c1 not found",
            )
            assert not (
                await stranger.GetQueueStats(router_admin_pb2.GetQueueStatsRequest())
            ).queues
            assert not (await stranger.ListAgents(router_admin_pb2.ListAgentsRequest())).agents
        for metadata, code in (
            ((), grpc.StatusCode.UNAUTHENTICATED),
            (bearer("ops", "escalation", "operator"), grpc.StatusCode.UNAUTHENTICATED),
            (bearer("piotr", "router", "manager"), grpc.StatusCode.PERMISSION_DENIED),
        ):
            async with channel_as(port, metadata) as refused_channel:
                refused = router_admin_pb2_grpc.RouterAdminStub(refused_channel)
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await refused.ListAgents(router_admin_pb2.ListAgentsRequest())
                assert caught.value.code() == code


async def test_a_contact_nobody_can_take_gets_no_estimate_and_acme_its_own_metrics_label(
    kafka: KafkaBroker,
) -> None:
    """Nobody speaks Polish: the contact's positions say the wait is unknown (it used to
    be told 30 s), on the wire and in RouterAdmin. acme is named in router.toml's
    metrics.domains, so its series carry domain="acme"."""
    topics = await kafka.fresh_topics()
    decisions = Decisions(kafka, topics)
    registry = CollectorRegistry()
    async with (
        router_in_process(kafka, topics, registry) as port,
        channel_as(port, bearer("ops", "router", "operator", domains=["acme"])) as channel,
    ):
        await wait_serving(port)
        admin = router_admin_pb2_grpc.RouterAdminStub(channel)
        await kafka.produce(topics.agent_events, [login("a1")], key=b"acme")
        await kafka.produce(topics.contact_events, [arrive("c1", "billing-pl")], key=b"acme")

        def positions(ds: list[Envelope]) -> list[Any]:
            return [d.queue_position_updated for d in ds if d.HasField("queue_position_updated")]

        seen = await decisions.wait_for(lambda ds: bool(positions(ds)))
        assert any(d.HasField("contact_unroutable") for d in seen)
        (told,) = positions(seen)
        assert (told.contact_id, told.position, told.estimated_wait_unknown) == ("c1", 1, True)
        assert not told.HasField("estimated_wait")
        view = await admin.GetContact(router_admin_pb2.GetContactRequest(contact_id="c1"))
        assert (view.position, view.estimated_wait_unknown) == (1, True)
        stats = {
            q.queue: q
            for q in (
                await admin.GetQueueStats(
                    router_admin_pb2.GetQueueStatsRequest(queues=["billing-pl", "billing-en"])
                )
            ).queues
        }
        assert stats["billing-pl"].estimated_wait_unknown
        assert not stats["billing-en"].estimated_wait_unknown
        arrived = {"domain": "acme", "queue": "billing-pl", "channel": "voice"}
        assert registry.get_sample_value("switchboard_router_contacts_arrived_total", arrived) == 1


async def test_bad_events_are_dead_lettered_and_routing_goes_on(kafka: KafkaBroker) -> None:
    topics = await kafka.fresh_topics()
    decisions = Decisions(kafka, topics)
    async with router_in_process(kafka, topics):
        await kafka.produce(
            topics.contact_events, [b"\x00garbage", arrive("c0", queue="nope")], key=b"acme"
        )
        await kafka.produce(topics.agent_events, [login("a1")], key=b"acme")
        await kafka.produce(topics.contact_events, [arrive("c1")], key=b"acme")
        await decisions.wait_for(lambda ds: offers(ds) == [("c1", "a1", "c1#1")])
        # The producer learns from the stream it reads: one answer naming the event.
        answered = await decisions.wait_for(
            lambda ds: any(d.HasField("event_rejected") for d in ds)
        )
    letters = await kafka.read_all(topics.dead_letters("router"), expect=2)
    reasons = sorted(dict(r.headers)["dlq.reason"].decode() for r in letters)
    assert "queue 'nope' is not configured" in reasons
    assert {dict(r.headers)["dlq.source.topic"] for r in letters} == {
        topics.contact_events.encode()
    }
    [rejected] = [d for d in answered if d.HasField("event_rejected")]
    assert rejected.domain == "acme"
    assert (
        rejected.event_rejected.event_id,
        rejected.event_rejected.reason,
        rejected.event_rejected.topic,
        rejected.event_rejected.payload,
    ) == ("arrive-c0", "queue 'nope' is not configured", topics.contact_events, "contact_arrived")


async def test_kill_9_with_offers_ringing_and_contacts_waiting_loses_and_doubles_nothing(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    topics = await kafka.fresh_topics()
    decisions = Decisions(kafka, topics)
    port = free_port()
    router = ServiceProcess(
        module="services.router",
        env=identity_env("router")
        | {
            "SWITCHBOARD_CONFIG": str(CONFIG),
            "SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "SWITCHBOARD_KAFKA__TOPIC_PREFIX": topics.prefix,
            "SWITCHBOARD_KAFKA__GROUP_ID": f"{topics.prefix}router",
            "SWITCHBOARD_INSTANCE": "crashy",
            # the group notices the dead member only after its session times out (10 s);
            # offers must outlive that for this scenario
            "SWITCHBOARD_ROUTING__QUEUES__BILLING-EN__OFFER_TIMEOUT_S": "120",
            "SWITCHBOARD_GRPC__PORT": str(port),
            "SWITCHBOARD_METRICS__PORT": "0",
            "SWITCHBOARD_LOG__FORMAT": "json",
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen")]),
        },
        log_path=str(tmp_path / "router.log"),
        grpc_port=port,
    )
    await router.start()
    try:
        await kafka.produce(topics.agent_events, [login("a1"), login("a2")], key=b"acme")
        await kafka.produce(topics.contact_events, [arrive(f"c{n}") for n in range(5)], key=b"acme")
        before = await decisions.wait_for(lambda ds: len(offers(ds)) == 2)
        await router.kill()  # two offers ringing, three contacts waiting

        await router.start()
        # the agents answer the offers made before the crash; the restored router knows them
        for contact_id, agent_id, offer_id in offers(before):
            await kafka.produce(
                topics.agent_events, [accept(agent_id, contact_id, offer_id)], key=b"acme"
            )
        await decisions.wait_for(lambda ds: sum(d.HasField("contact_assigned") for d in ds) == 2)
        # end the calls: each agent is then offered the next waiting contact, in order
        for contact_id, _, _ in offers(before):
            await kafka.produce(topics.contact_events, [end(contact_id)], key=b"acme")
        after = await decisions.wait_for(lambda ds: len(offers(ds)) == 4, timeout=60)
    finally:
        await router.stop()
    assert [c for c, _, _ in offers(after)] == ["c0", "c1", "c2", "c3"]
    report = await audit_topics(
        kafka.bootstrap_servers, topics, run_finished=False, check_notifications=False
    )
    assert report.ok, report.summary()
    assert report.still_waiting == 3  # c2, c3 ringing/offered, c4 waiting: none lost
