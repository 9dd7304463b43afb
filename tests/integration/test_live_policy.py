"""Routing policies changed live, per domain (issue #16 items 1 and 6, router side): the
real router process on the real broker reads PolicyChanged records from ``policies``
while contacts flow. Queues added and removed, a rollback, refused versions, a restart,
and two tenants with different policies on one instance; nothing is lost (the auditor
accounts for every contact) and every decision names the version it was made under."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from switchboard.v1 import common_pb2, router_admin_pb2, router_admin_pb2_grpc, routing_pb2
from switchboard.v1.envelope_pb2 import Envelope

from services.auditor.__main__ import audit_topics
from services.common.codec import encode_envelope, new_envelope
from services.common.topics import Topics
from tests.scenario import accept, arrive, audit_ok, end, login
from tests.support import (
    ROOT,
    KafkaBroker,
    ServiceProcess,
    bearer,
    channel_as,
    service_env,
    service_process,
    wait_for,
)

pytestmark = pytest.mark.kafka

_CONFIG = (ROOT / "deploy" / "config" / "router.toml").read_text()
#: The configured default as a policy document (router.toml's [routing] tables), with no
#: wrap-up so one agent serves contact after contact without waiting.
DEFAULT = _CONFIG[_CONFIG.index("\n[routing]\n") :].replace("wrap_up_s = 3", "wrap_up_s = 0")
CALLBACK = """
[routing.queues.callback-en]
skills = { billing = 3 }
language = "en"
offer_timeout_s = 30
wrap_up_s = 0
"""
#: A Polish-only tenant's own policy: one queue, none of acme's.
POLISH = """
[routing]
[routing.queues.wsparcie-pl]
skills = { billing = 1 }
language = "pl"
offer_timeout_s = 30
wrap_up_s = 0
"""
_ids = itertools.count()


def without(document: str, queue: str) -> str:
    """``document`` with the table of ``queue`` left out."""
    head, _, rest = document.partition(f"[routing.queues.{queue}]")
    _, found, tail = rest.partition("[routing.queues.")
    return head + found + tail


def with_fallback(document: str, queue: str) -> str:
    return document.replace("[routing]\n", f'[routing]\nfallback_queue = "{queue}"\n', 1)


def policy(domain: str, version: int, document: str, restores: int = 0) -> bytes:
    """A PolicyChanged as the PolicyService writes it to ``policies``."""
    e = new_envelope(domain, "policy-service", event_id=f"policy-{domain}-{next(_ids)}")
    current = e.policy_changed.current
    current.version, current.document, current.author = version, document, "ops@example"
    current.comment, current.restores_version = f"test version {version}", restores
    return encode_envelope(e)


def polish_agent(agent_id: str, domain: str) -> bytes:
    e = new_envelope(domain, "desk", event_id=f"login-{domain}-{agent_id}")
    e.agent_logged_in.agent_id = agent_id
    e.agent_logged_in.languages.extend(["pl", "en"])
    e.agent_logged_in.skills.add(skill="billing", proficiency=5)
    e.agent_logged_in.capacity.add(channel=common_pb2.CHANNEL_VOICE, max_concurrent=1)
    return encode_envelope(e)


def transfer(contact_id: str, queue: str, domain: str) -> bytes:
    e = new_envelope(domain, "pbx", event_id=f"transfer-{domain}-{contact_id}")
    e.contact_transferred.contact_id, e.contact_transferred.to_queue = contact_id, queue
    return encode_envelope(e)


def of(domain: str, kind: str, decisions: list[Envelope]) -> list[Envelope]:
    return [d for d in decisions if d.domain == domain and d.WhichOneof("payload") == kind]


def offered(domain: str, contact_id: str) -> Callable[[list[Envelope]], bool]:
    return lambda ds: any(
        d.offer_made.contact_id == contact_id for d in of(domain, "offer_made", ds)
    )


def rejected(event_id: str) -> Callable[[list[Envelope]], bool]:
    return lambda ds: any(d.event_rejected.event_id == event_id for d in ds)


@asynccontextmanager
async def router(kafka: KafkaBroker, topics: Topics, logs: Path) -> AsyncIterator[ServiceProcess]:
    process = service_process("router", service_env("router", kafka, topics), logs)
    await process.start()
    try:
        yield process
    finally:
        await process.stop()


async def versions(process: ServiceProcess, domain: str) -> set[int]:
    """The policy versions RouterAdmin shows for ``domain``'s queues."""
    assert process.grpc_port is not None
    async with channel_as(process.grpc_port, bearer("ops", "router", "operator")) as channel:
        stats = await router_admin_pb2_grpc.RouterAdminStub(channel).GetQueueStats(
            router_admin_pb2.GetQueueStatsRequest(domain=domain)
        )
    return {q.policy_version for q in stats.queues}


async def applied(process: ServiceProcess, domain: str, version: int) -> None:
    """Until the router has applied ``version`` for ``domain`` (policies is its own topic:
    its records meet the domain's events in whatever order the broker hands them over)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while (last := await versions(process, domain)) != {version}:
        if loop.time() > deadline:
            raise AssertionError(f"{domain}: version {version} not applied; RouterAdmin: {last}")
        await asyncio.sleep(0.1)


async def serve(
    kafka: KafkaBroker, topics: Topics, domain: str, agent_id: str, contacts: list[str]
) -> list[Envelope]:
    """The agent accepts and ends each contact once it is offered, in the given order."""
    seen: list[Envelope] = []
    for contact_id in contacts:
        seen = await wait_for(
            kafka, topics.routing_decisions, offered(domain, contact_id), what=contact_id
        )
        [offer] = [
            d.offer_made
            for d in of(domain, "offer_made", seen)
            if d.offer_made.contact_id == contact_id
        ][-1:]
        await kafka.produce(
            topics.agent_events, [accept(agent_id, contact_id, offer.offer_id, domain)]
        )
        await kafka.produce(topics.contact_events, [end(contact_id, domain)])
    return seen


async def dead_letter(kafka: KafkaBroker, topics: Topics, reason: str) -> dict[str, bytes]:
    """The router's dead letter whose reason is ``reason`` (its headers)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        records = await kafka.read_all(topics.dead_letters("router"), expect=10**9, timeout=0.5)
        letters = [dict(r.headers) for r in records]
        found = [h for h in letters if h["dlq.reason"] == reason.encode()]
        if found:
            return found[0]
        if loop.time() > deadline:
            said = [h["dlq.reason"] for h in letters]
            raise AssertionError(f"no dead letter saying {reason!r}; saw {said}")


async def test_queue_added_removed_rolled_back_refused_and_kept_across_a_restart(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    topics = await kafka.fresh_topics()
    policies = topics.name("policies")
    v1 = DEFAULT + CALLBACK
    async with router(kafka, topics, tmp_path) as process:
        await kafka.produce(topics.agent_events, [login("a1")])
        # on the configured default, acme has no callback-en queue
        await kafka.produce(topics.contact_events, [arrive("c0", "callback-en")])
        seen = await wait_for(kafka, topics.routing_decisions, rejected("arrive-acme-c0"))
        [refusal] = of("acme", "event_rejected", seen)
        assert refusal.event_rejected.reason == "queue 'callback-en' is not configured"
        assert refusal.policy_version == 0

        # (a) version 1 adds it: contacts for it route, and say so
        await kafka.produce(policies, [policy("acme", 1, v1)])
        await applied(process, "acme", 1)
        await kafka.produce(topics.contact_events, [arrive("c1", "callback-en")])
        seen = await serve(kafka, topics, "acme", "a1", ["c1"])
        [offer] = of("acme", "offer_made", seen)
        assert (offer.offer_made.queue, offer.policy_version) == ("callback-en", 1)

        # version 2 removes it again
        await kafka.produce(policies, [policy("acme", 2, DEFAULT)])
        await applied(process, "acme", 2)
        await kafka.produce(topics.contact_events, [arrive("c2", "callback-en")])
        seen = await wait_for(kafka, topics.routing_decisions, rejected("arrive-acme-c2"))
        assert [r.policy_version for r in of("acme", "event_rejected", seen)] == [0, 2]

        # (c) rollback: version 3 is version 1's document again, and behaves as it did
        await kafka.produce(policies, [policy("acme", 3, v1, restores=1)])
        await applied(process, "acme", 3)
        await kafka.produce(topics.contact_events, [arrive("c3", "callback-en")])
        seen = await serve(kafka, topics, "acme", "a1", ["c3"])
        [offer] = [d for d in of("acme", "offer_made", seen) if d.offer_made.contact_id == "c3"]
        assert (offer.offer_made.queue, offer.policy_version) == ("callback-en", 3)

        # (d) an invalid document and a stale version: refused, answered, nothing changes
        bad = v1.replace("offer_timeout_s = 30", "offer_timeout_s = 0")
        await kafka.produce(policies, [policy("acme", 4, bad), policy("acme", 2, DEFAULT)])
        invalid = await dead_letter(
            kafka,
            topics,
            "policy version 4 refused: routing.queues.callback-en.offer_timeout_s: must be > 0",
        )
        stale = await dead_letter(kafka, topics, "policy version 2 is stale: version 3 is applied")
        for letter in (invalid, stale):
            assert letter["dlq.source.topic"] == policies.encode()
            answer = letter["dlq.event_id"].decode()
            seen = await wait_for(kafka, topics.routing_decisions, rejected(answer))
            [said] = [d for d in seen if d.event_rejected.event_id == answer]
            assert (said.event_rejected.payload, said.policy_version) == ("policy_changed", 3)
        assert await versions(process, "acme") == {3}

        # (e) a crash: the new process restores acme with its own policy, version 3
        await process.kill()
        await process.start()
        assert await versions(process, "acme") == {3}
        await kafka.produce(topics.contact_events, [arrive("c4", "callback-en")])
        seen = await serve(kafka, topics, "acme", "a1", ["c4"])
        [offer] = [d for d in of("acme", "offer_made", seen) if d.offer_made.contact_id == "c4"]
        assert (offer.offer_made.queue, offer.policy_version) == ("callback-en", 3)
        await wait_for(
            kafka,
            topics.routing_decisions,
            lambda ds: any(d.contact_closed.contact_id == "c4" for d in ds),
        )
    await audit_ok(kafka, topics, check_notifications=False, check_escalations=False)


async def test_a_removed_queues_contacts_move_or_are_parked_per_tenant_and_none_is_lost(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    """acme removes tech-en with billing-en as fallback; globex, on the same router,
    switches to a Polish-only policy with no fallback: its tech-en contacts are parked
    (reported, visible, and an operator can still transfer them)."""
    topics = await kafka.fresh_topics()
    policies = topics.name("policies")
    waiting = {"acme": ["t1", "t2", "t3"], "globex": ["g1", "g2"]}
    async with router(kafka, topics, tmp_path) as process:
        await kafka.produce(topics.agent_events, [login("a1")])  # billing, no tech
        for domain, contacts in waiting.items():
            await kafka.produce(
                topics.contact_events, [arrive(c, "tech-en", domain) for c in contacts]
            )
        # each applied: nobody logged in has tech, so each is said unroutable
        await wait_for(
            kafka,
            topics.routing_decisions,
            lambda ds: (
                len(of("acme", "contact_unroutable", ds))
                + len(of("globex", "contact_unroutable", ds))
                == 5
            ),
            what="five contacts waiting for tech",
        )
        acme_v1 = with_fallback(without(DEFAULT, "tech-en"), "billing-en")
        await kafka.produce(policies, [policy("acme", 1, acme_v1), policy("globex", 1, POLISH)])

        # acme: each moves to billing-en (the fallback) and a1 serves them in line order
        seen = await wait_for(
            kafka,
            topics.routing_decisions,
            lambda ds: len(of("acme", "contact_requeued", ds)) == 3,
            what="acme's contacts moved",
        )
        moved = of("acme", "contact_requeued", seen)
        assert {(d.contact_requeued.queue, d.contact_requeued.reason) for d in moved} == {
            ("billing-en", routing_pb2.REQUEUE_REASON_POLICY_CHANGED)
        }
        assert [d.contact_requeued.contact_id for d in moved] == ["t1", "t2", "t3"]
        assert {d.policy_version for d in moved} == {1}
        seen = await serve(kafka, topics, "acme", "a1", ["t1", "t2", "t3"])
        assert {d.offer_made.queue for d in of("acme", "offer_made", seen)} == {"billing-en"}

        # globex: parked, with the reason, and visible to its operator
        seen = await wait_for(
            kafka,
            topics.routing_decisions,
            lambda ds: len(of("globex", "contact_unroutable", ds)) == 4,
            what="globex's contacts parked",
        )
        parked = [d for d in of("globex", "contact_unroutable", seen) if d.policy_version == 1]
        assert [(d.contact_unroutable.contact_id, d.contact_unroutable.reason) for d in parked] == [
            ("g1", "queue 'tech-en' removed by policy version 1"),
            ("g2", "queue 'tech-en' removed by policy version 1"),
        ]
        assert process.grpc_port is not None
        async with channel_as(
            process.grpc_port, bearer("ops", "router", "operator", domains=["globex"])
        ) as channel:
            admin = router_admin_pb2_grpc.RouterAdminStub(channel)
            g2 = await admin.GetContact(router_admin_pb2.GetContactRequest(contact_id="g2"))
            assert (g2.contact_status, g2.queue) == (
                router_admin_pb2.CONTACT_STATUS_PARKED,
                "tech-en",
            )
            stats = await admin.GetQueueStats(router_admin_pb2.GetQueueStatsRequest())
            assert [(q.domain, q.queue, q.policy_version) for q in stats.queues] == [
                ("globex", "wsparcie-pl", 1)
            ]

        # per tenant: each domain refuses the other's queue names
        await kafka.produce(topics.contact_events, [arrive("x1", "billing-en", "globex")])
        await kafka.produce(topics.contact_events, [arrive("x2", "wsparcie-pl", "acme")])
        seen = await wait_for(
            kafka,
            topics.routing_decisions,
            lambda ds: rejected("arrive-globex-x1")(ds) and rejected("arrive-acme-x2")(ds),
        )
        reasons = {
            (d.domain, d.event_rejected.reason, d.policy_version)
            for d in seen
            if d.HasField("event_rejected")
        }
        assert reasons == {
            ("globex", "queue 'billing-en' is not configured", 1),
            ("acme", "queue 'wsparcie-pl' is not configured", 1),
        }

        # an operator transfers g1 to globex's queue; a Polish agent serves it. g2 stays.
        await kafka.produce(topics.contact_events, [transfer("g1", "wsparcie-pl", "globex")])
        await kafka.produce(topics.agent_events, [polish_agent("p1", "globex")])
        await serve(kafka, topics, "globex", "p1", ["g1"])
        await wait_for(
            kafka,
            topics.routing_decisions,
            lambda ds: (
                {d.contact_closed.contact_id for d in of("globex", "contact_closed", ds)} == {"g1"}
                and len(of("acme", "contact_closed", ds)) == 3
            ),
            what="t1-t3 and g1 closed",
        )
    report = await audit_topics(kafka.bootstrap_servers, topics, run_finished=False)
    assert report.ok, report.summary()
    # x1 and x2 were refused: 5 arrived, 4 closed, g2 parked (reported unroutable)
    assert (report.arrived, report.closed, report.still_waiting, report.unroutable) == (
        5,
        4,
        1,
        1,
    ), report.summary()
