"""Crashes and outages, with real processes and a real broker: kill -9 each service,
restart the broker mid-run, lose one of two routers, and drive the notifier through a
gateway that fails half the time. Every test ends with the auditor: nothing lost,
nothing doubled."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from switchboard.v1 import notification_pb2_grpc

from services.notifier.gateway_stub import ReferenceGateway
from tests.scenario import (
    DEAD_LETTERED,
    DELIVERED,
    SMS,
    accept,
    arrive,
    audit_ok,
    count,
    end,
    hold,
    login,
    offers,
    outcomes,
    told_about_holds,
)
from tests.support import (
    GrpcServer,
    KafkaBroker,
    PrivateBroker,
    free_port,
    service_env,
    service_process,
    until,
    wait_for,
)

pytestmark = [pytest.mark.kafka, pytest.mark.faults]

# Offers must outlive the group's session timeout (10 s): a killed member's partitions
# move only then, and these scenarios answer offers made before the crash.
SLOW_OFFERS = {"ROUTING__QUEUES__BILLING-EN__OFFER_TIMEOUT_S": "120"}


# --- the scenarios --------------------------------------------------------------------


async def test_kill_9_the_escalation_service_and_no_case_is_raised_twice(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    topics = await kafka.fresh_topics()
    env = service_env("escalation", kafka, topics, ESCALATION__TRIGGERS__WAIT_THRESHOLD_S="1")
    escalation = service_process("escalation", env, tmp_path)
    await escalation.start()
    try:
        raised = count("escalation_record")
        first = [arrive(f"c{n}", "billing-pl") for n in range(6)]
        await kafka.produce(topics.contact_events, first, key=b"acme")
        await wait_for(kafka, topics.escalations, lambda es: raised(es) >= 3)
        await escalation.kill()  # some cases raised, some timers still pending
        await kafka.produce(
            topics.contact_events, [arrive(f"c{n}", "billing-pl") for n in range(6, 9)], key=b"acme"
        )
        await escalation.start()
        records = await wait_for(kafka, topics.escalations, lambda es: raised(es) >= 9)
    finally:
        await escalation.stop()
    contacts = {e.escalation_record.escalation.contact_id for e in records}
    assert contacts == {f"c{n}" for n in range(9)}
    await audit_ok(kafka, topics, check_notifications=False)


async def test_kill_9_the_notifier_mid_delivery_and_every_customer_is_told_once(
    kafka: KafkaBroker, tmp_path: Path, gateway: tuple[ReferenceGateway, int]
) -> None:
    reference, port = gateway
    topics = await kafka.fresh_topics()
    env = service_env("notifier", kafka, topics, GATEWAYS__DEFAULT=f"127.0.0.1:{port}")
    notifier = service_process("notifier", env, tmp_path)
    contacts = [f"c{n}" for n in range(30)]
    await notifier.start()
    try:
        events = [record for c in contacts for record in (arrive(c, channel=SMS), hold(c))]
        await kafka.produce(topics.contact_events, events, key=b"acme")
        await until(lambda: len(reference.delivered) >= 5, what="first deliveries")
        await notifier.kill()  # deliveries in flight, their records not yet committed
        await notifier.start()
        await until(lambda: told_about_holds(reference) == set(contacts), timeout=60)
        records = await wait_for(
            kafka,
            topics.notifications,
            lambda rs: len(outcomes(rs)) == len(contacts),
        )
    finally:
        await notifier.stop()
    assert told_about_holds(reference) == set(contacts)
    assert len(reference.delivered) == len(contacts)  # each once: no duplicate behind the set
    assert all(outcome == [DELIVERED] for outcome in outcomes(records).values())
    await audit_ok(kafka, topics, check_escalations=False)


async def test_kill_9_the_router_with_offers_out_and_restore_everything(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    """Covered in depth in tests/integration/test_router_service.py; here with more load."""
    topics = await kafka.fresh_topics()
    env = service_env("router", kafka, topics, **SLOW_OFFERS)
    router = service_process("router", env, tmp_path)
    await router.start()
    try:
        await kafka.produce(topics.agent_events, [login(f"a{n}") for n in range(4)], key=b"acme")
        await kafka.produce(
            topics.contact_events, [arrive(f"c{n}") for n in range(12)], key=b"acme"
        )
        before = offers(
            await wait_for(kafka, topics.routing_decisions, lambda ds: len(offers(ds)) == 4)
        )
        await router.kill()
        await router.start()
        for _, contact, agent, offer in before:
            await kafka.produce(topics.agent_events, [accept(agent, contact, offer)], key=b"acme")
            await kafka.produce(topics.contact_events, [end(contact)], key=b"acme")
        after = await wait_for(kafka, topics.routing_decisions, lambda ds: len(offers(ds)) == 8)
    finally:
        await router.stop()
    offered = [contact for _, contact, _, _ in offers(after)]
    assert offered == [f"c{n}" for n in range(8)]  # in arrival order, none twice
    await audit_ok(kafka, topics, check_notifications=False, check_escalations=False)


async def test_two_routers_share_the_domains_and_the_survivor_takes_over(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    topics = await kafka.fresh_topics()
    domains = [f"tenant{n}" for n in range(8)]  # spread over the 4 partitions

    def router(label: str) -> Any:
        env = service_env("router", kafka, topics, INSTANCE=label, **SLOW_OFFERS)
        return service_process("router", env, tmp_path, label=label)

    first, second = router("router-a"), router("router-b")
    await first.start()
    await second.start()
    try:
        for domain in domains:
            await kafka.produce(
                topics.agent_events, [login(f"{domain}-a1", domain)], key=domain.encode()
            )
            await kafka.produce(
                topics.contact_events,
                [arrive(f"{domain}-c{n}", domain=domain) for n in range(2)],
                key=domain.encode(),
            )
        made = await wait_for(
            kafka, topics.routing_decisions, lambda ds: len(offers(ds)) == len(domains)
        )
        await first.kill()  # half the domains lose their owner with an offer ringing
        for domain, contact, agent, offer in offers(made):
            key = domain.encode()
            await kafka.produce(
                topics.agent_events, [accept(agent, contact, offer, domain)], key=key
            )
            await kafka.produce(topics.contact_events, [end(contact, domain)], key=key)
        after = await wait_for(
            kafka, topics.routing_decisions, lambda ds: len(offers(ds)) == 2 * len(domains)
        )
    finally:
        await second.stop()
        await first.stop()
    deciders = {e.domain: e.source for e in made if e.HasField("offer_made")}
    assert set(deciders.values()) == {"router/router-a", "router/router-b"}  # both owned some
    taken_over = {d for d, source in deciders.items() if source == "router/router-a"}
    first_offers = {(d, offer) for d, _, _, offer in offers(made)}
    later = [
        e
        for e in after
        if e.HasField("offer_made") and (e.domain, e.offer_made.offer_id) not in first_offers
    ]
    assert {e.domain for e in later} >= taken_over  # the dead one's domains carried on
    assert {e.source for e in later} == {"router/router-b"}  # ... by the survivor
    per_domain = Counter((d, c) for d, c, _, _ in offers(after))
    assert set(per_domain) == {(d, f"{d}-c{n}") for d in domains for n in range(2)}
    assert set(per_domain.values()) == {1}  # each contact offered exactly once
    await audit_ok(kafka, topics, check_notifications=False, check_escalations=False)


async def test_a_gateway_failing_half_the_time_delivers_once_or_dead_letters(
    kafka: KafkaBroker, tmp_path: Path, grpc_server: Callable[..., Any]
) -> None:
    flaky = ReferenceGateway(fail_rate=0.5, stall_rate=0.1, stall_seconds=3.0)
    server: GrpcServer = await grpc_server(
        lambda s: notification_pb2_grpc.add_CustomerChannelGatewayServicer_to_server(flaky, s)
    )
    topics = await kafka.fresh_topics()
    env = service_env(
        "notifier",
        kafka,
        topics,
        GATEWAYS__DEFAULT=f"127.0.0.1:{server.port}",
        DELIVERY__DEADLINE_S="0.5",
        DELIVERY__BASE_S="0.05",
        DELIVERY__CAP_S="0.3",
        DELIVERY__MAX_ATTEMPTS="4",
        DELIVERY__BREAKER_FAILURES="8",
        DELIVERY__BREAKER_OPEN_S="0.5",
    )
    notifier = service_process("notifier", env, tmp_path)
    contacts = [f"c{n}" for n in range(40)]
    await notifier.start()
    try:
        events = [record for c in contacts for record in (arrive(c, channel=SMS), hold(c))]
        await kafka.produce(topics.contact_events, events, key=b"acme")
        records = await wait_for(
            kafka,
            topics.notifications,
            lambda rs: len(outcomes(rs)) == len(contacts),
            timeout=120,
        )
    finally:
        await notifier.stop()
    settled = outcomes(records)
    assert all(len(o) == 1 and o[0] in (DELIVERED, DEAD_LETTERED) for o in settled.values())
    delivered = {n for n, o in settled.items() if o == [DELIVERED]}
    dead = {n for n, o in settled.items() if o == [DEAD_LETTERED]}
    told = Counter(d.notification_id for d in flaky.delivered)
    # the customer got exactly the ones recorded as delivered, each once
    assert told == Counter(delivered)
    assert delivered
    assert dead
    dlq = await kafka.read_all(topics.dead_letters("notifier"), expect=len(dead), timeout=10)
    assert len(dlq) == len(dead)
    await audit_ok(kafka, topics, check_escalations=False)


async def test_the_broker_restarts_mid_run_and_the_services_carry_on(
    tmp_path: Path, gateway: tuple[ReferenceGateway, int]
) -> None:
    reference, gateway_port = gateway
    broker = PrivateBroker(
        bootstrap_servers="",
        port=free_port(),
        controller_port=free_port(),
        data_dir=tmp_path / "kafka",
    )
    broker.bootstrap_servers = f"127.0.0.1:{broker.port}"
    await broker.start()
    processes = []
    try:
        topics = await broker.fresh_topics()
        router = service_process("router", service_env("router", broker, topics), tmp_path)
        notifier = service_process(
            "notifier",
            service_env("notifier", broker, topics, GATEWAYS__DEFAULT=f"127.0.0.1:{gateway_port}"),
            tmp_path,
        )
        processes = [router, notifier]
        await asyncio.gather(*(p.start() for p in processes))
        await broker.produce(topics.agent_events, [login("a1")], key=b"acme")
        await broker.produce(topics.contact_events, [arrive("c0"), hold("c0")], key=b"acme")
        [(_, contact, agent, offer)] = offers(
            await wait_for(broker, topics.routing_decisions, lambda ds: len(offers(ds)) == 1)
        )
        await broker.produce(topics.agent_events, [accept(agent, contact, offer)], key=b"acme")
        await wait_for(broker, topics.routing_decisions, count("contact_assigned"))
        await until(lambda: told_about_holds(reference) == {"c0"})

        await broker.stop()  # everything the services do now fails until it is back
        await broker.start()

        await broker.produce(topics.contact_events, [end("c0")], key=b"acme")
        await broker.produce(topics.contact_events, [arrive("c1"), hold("c1")], key=b"acme")
        decisions = await wait_for(
            broker, topics.routing_decisions, lambda ds: len(offers(ds)) == 2, timeout=90
        )
        await until(lambda: told_about_holds(reference) == {"c0", "c1"}, timeout=90)
        for process in processes:
            assert process.process is not None
            assert process.process.returncode is None
        await audit_ok(broker, topics, check_escalations=False)
    finally:
        for process in processes:
            await process.stop()
        await broker.stop()
    assert [c for _, c, _, _ in offers(decisions)] == ["c0", "c1"]
