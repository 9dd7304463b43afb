"""Any router replica answers RouterAdmin for every domain (issue #15, item 4): two real
router processes in one group on the real broker, each owning half the partitions; an
operator connected to one sees the other's domains as the other shows them."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
from aiokafka.partitioner import murmur2
from switchboard.v1 import common_pb2, router_admin_pb2, router_admin_pb2_grpc

from services.common.codec import encode_envelope, new_envelope
from services.common.topics import load_topic_specs
from services.router.adapters.view import AdminView
from services.router.domain.domains_view import DomainsView
from services.router.settings import RouterSettings
from tests.integration.test_kafka_security import kafka_user
from tests.support import (
    ROOT,
    KafkaBroker,
    bearer,
    channel_as,
    service_env,
    service_process,
    until,
    wait_for,
)

pytestmark = pytest.mark.kafka
_T = TypeVar("_T")


def one_domain_per_partition() -> list[str]:
    """Domain names landing on every partition of the inputs once (murmur2, as producers)."""
    count = next(s.partitions for s in load_topic_specs() if s.name == "contact.events")
    chosen: dict[int, str] = {}
    for n in itertools.count():
        chosen.setdefault(int(murmur2(f"tenant{n}".encode()) & 0x7FFFFFFF) % count, f"tenant{n}")
        if len(chosen) == count:
            return sorted(chosen.values())
    raise AssertionError("unreachable")


def login(domain: str) -> bytes:
    e = new_envelope(domain, "desk", event_id=f"login-{domain}")
    e.agent_logged_in.agent_id = f"{domain}-a1"
    e.agent_logged_in.team = "billing-team"
    e.agent_logged_in.languages.append("en")
    e.agent_logged_in.skills.add(skill="billing", proficiency=5)
    e.agent_logged_in.capacity.add(channel=common_pb2.CHANNEL_VOICE, max_concurrent=1)
    return encode_envelope(e)


def arrive(domain: str, n: int) -> bytes:
    e = new_envelope(domain, "pbx", event_id=f"arrive-{domain}-{n}")
    e.contact_arrived.contact_id = f"{domain}-c{n}"
    e.contact_arrived.queue = "billing-en"
    e.contact_arrived.channel = common_pb2.CHANNEL_VOICE
    return encode_envelope(e)


def accept(domain: str) -> bytes:
    e = new_envelope(domain, "desk", event_id=f"accept-{domain}")
    e.offer_accepted.agent_id, e.offer_accepted.contact_id = f"{domain}-a1", f"{domain}-c1"
    e.offer_accepted.offer_id = f"{domain}-c1#1"
    return encode_envelope(e)


async def eventually(ask: Callable[[], Awaitable[_T]], ok: Callable[[_T], bool], what: str) -> _T:
    """Ask until the answer is ``ok`` (the view follows the owner's commits), or fail."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        answer = await ask()
        if ok(answer):
            return answer
        if loop.time() > deadline:
            raise AssertionError(f"{what}: last answer {answer}")
        await asyncio.sleep(0.05)


def figures(reply: router_admin_pb2.GetQueueStatsResponse) -> list[tuple[object, ...]]:
    """Everything but the longest wait, which grows with the clock of the one answering."""
    return [
        (
            q.domain,
            q.queue,
            q.waiting,
            q.offered,
            "none" if math.isnan(q.service_level) else q.service_level,
            q.answered,
            q.abandoned,
            q.estimated_wait.ToNanoseconds(),
            q.staffed_agents,
        )
        for q in reply.queues
    ]


def agents(reply: router_admin_pb2.ListAgentsResponse) -> list[bytes]:
    return sorted(a.SerializeToString(deterministic=True) for a in reply.agents)


def where(contact: router_admin_pb2.GetContactResponse) -> tuple[object, ...]:
    return (
        contact.contact_id,
        contact.queue,
        contact.contact_status,
        contact.position,
        contact.agent_id,
        contact.estimated_wait.ToNanoseconds(),
    )


async def test_either_replica_answers_for_every_domain_as_its_owner_does(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    topics = await kafka.fresh_topics()
    routers = {
        name: service_process(
            "router",
            service_env(
                "router",
                kafka,
                topics,
                INSTANCE=f"{topics.prefix}{name}",
                # offers keep ringing for the whole test
                **{"ROUTING__QUEUES__BILLING-EN__OFFER_TIMEOUT_S": "600"},
            ),
            tmp_path,
            label=f"router-{name}",
        )
        for name in ("a", "b")
    }
    domains = one_domain_per_partition()
    try:
        for router in routers.values():
            await router.start()
        for domain in domains:
            await kafka.produce(topics.agent_events, [login(domain)])
            await kafka.produce(topics.contact_events, [arrive(domain, n) for n in (1, 2, 3)])
        decided = await wait_for(
            kafka,
            topics.routing_decisions,
            lambda seen: {e.domain for e in seen if e.HasField("offer_made")} == set(domains),
            what="an offer in every domain",
        )
        owner = {e.domain: e.source.rsplit("/", 1)[-1] for e in decided}
        assert {e.domain: e.source for e in decided} == {
            d: f"router/{owner[d]}" for d in domains
        }, "a domain decided by two instances"
        of_b = [d for d in domains if owner[d] == f"{topics.prefix}b"]
        of_a = [d for d in domains if owner[d] == f"{topics.prefix}a"]
        assert of_a, "router a owns no domain: nothing to show"
        assert of_b, "router b owns no domain: nothing to show"
        theirs, ours = of_b[0], of_a[0]
        ports = {name: r.grpc_port for name, r in routers.items()}
        assert ports["a"] is not None
        assert ports["b"] is not None

        async with (
            channel_as(ports["a"], bearer("ops", "router", "operator", domains=[theirs])) as to_a,
            channel_as(ports["b"], bearer("ops", "router", "operator", domains=[theirs])) as to_b,
            channel_as(ports["a"], bearer("ops", "router", "operator")) as everything_a,
            channel_as(ports["a"], bearer("ops2", "router", "operator", domains=[ours])) as other,
        ):
            on_a = router_admin_pb2_grpc.RouterAdminStub(to_a)
            on_b = router_admin_pb2_grpc.RouterAdminStub(to_b)
            stats = router_admin_pb2.GetQueueStatsRequest(domain=theirs, queues=["billing-en"])
            listing = router_admin_pb2.ListAgentsRequest(domain=theirs)
            waiting = router_admin_pb2.GetContactRequest(contact_id=f"{theirs}-c3")
            ringing = router_admin_pb2.GetContactRequest(contact_id=f"{theirs}-c1")

            async def agree(phase: str) -> None:
                owners = figures(await on_b.GetQueueStats(stats))
                await eventually(
                    lambda: on_a.GetQueueStats(stats), lambda r: figures(r) == owners, phase
                )
                owners_agents = agents(await on_b.ListAgents(listing))
                await eventually(
                    lambda: on_a.ListAgents(listing), lambda r: agents(r) == owners_agents, phase
                )
                for request in (waiting, ringing):
                    await same_contact(request, phase)

            async def same_contact(request: router_admin_pb2.GetContactRequest, phase: str) -> None:
                owners_view = where(await on_b.GetContact(request))
                answer = await eventually(
                    lambda: on_a.GetContact(request), lambda r: where(r) == owners_view, phase
                )
                assert answer.waited.ToNanoseconds() > 0

            # B owns `theirs`; A answers from its read view, as B does
            await agree("before the accept")
            (queue,) = (await on_a.GetQueueStats(stats)).queues
            assert (queue.waiting, queue.offered, queue.answered) == (2, 1, 0)
            assert math.isnan(queue.service_level)
            assert queue.longest_wait.ToNanoseconds() > 0
            third = await on_a.GetContact(waiting)
            assert (third.contact_status, third.position) == (
                router_admin_pb2.CONTACT_STATUS_WAITING,
                2,
            )
            (agent,) = (await on_a.ListAgents(listing)).agents
            assert (agent.agent_id, agent.domain) == (f"{theirs}-a1", theirs)

            # B changes state; A follows
            await kafka.produce(topics.agent_events, [accept(theirs)])
            assigned = await eventually(
                lambda: on_a.GetContact(ringing),
                lambda r: r.contact_status == router_admin_pb2.CONTACT_STATUS_ASSIGNED,
                "the accept reaches a",
            )
            assert assigned.agent_id == f"{theirs}-a1"
            await agree("after the accept")
            (served,) = (await on_a.GetQueueStats(stats)).queues
            assert (served.answered, served.service_level) == (1, 1.0)

            # an operator of every domain, on A: all four, whoever owns them
            everything = router_admin_pb2_grpc.RouterAdminStub(everything_a)
            listed = await everything.ListAgents(router_admin_pb2.ListAgentsRequest())
            assert sorted(a.domain for a in listed.agents) == domains
            queues = await everything.GetQueueStats(router_admin_pb2.GetQueueStatsRequest())
            assert {q.domain for q in queues.queues} == set(domains)

            # another tenant's operator (A's own domain): B's domain stays invisible
            stranger = router_admin_pb2_grpc.RouterAdminStub(other)
            with pytest.raises(grpc.aio.AioRpcError) as hidden:
                await stranger.GetContact(waiting)
            assert (hidden.value.code(), hidden.value.details()) == (
                grpc.StatusCode.NOT_FOUND,
                f"contact {theirs}-c3 not found",
            )
            with pytest.raises(grpc.aio.AioRpcError) as asked_by_domain:
                await stranger.GetContact(
                    router_admin_pb2.GetContactRequest(domain=theirs, contact_id=f"{theirs}-c3")
                )
            assert asked_by_domain.value.code() == grpc.StatusCode.NOT_FOUND
            seen = await stranger.GetQueueStats(router_admin_pb2.GetQueueStatsRequest())
            assert {q.domain for q in seen.queues} == {ours}
            assert not (await stranger.ListAgents(listing)).agents
            mine = await stranger.ListAgents(router_admin_pb2.ListAgentsRequest())
            assert [a.domain for a in mine.agents] == [ours]
    finally:
        for router in routers.values():
            await router.stop()


async def test_the_read_view_needs_no_more_than_the_routers_own_acls(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    """Over SASL_SSL as the router's user, holding only services.common.access's rules:
    reading every partition of its changelog needs no group and no new ACL."""
    topics = await kafka.fresh_topics()
    secure = await kafka_user(kafka, topics, "router", tmp_path)
    await kafka.produce(topics.changelog("router"), [b'{"seq":1,"offer_seq":0}'], key=b"acme/meta:")
    policy = RouterSettings.from_env(
        {"SWITCHBOARD_CONFIG": str(ROOT / "deploy" / "config" / "router.toml")}
    ).policy()
    admin_view = AdminView(secure, topics.changelog("router"), DomainsView(policy))
    stop = asyncio.Event()
    reader = asyncio.create_task(admin_view.run(stop))
    try:
        await until(lambda: admin_view.ready.is_set() or reader.done(), what="the view ready")
        assert admin_view.view.domains() == ["acme"]
    finally:
        stop.set()
        await asyncio.wait_for(reader, 10)
