"""PolicyChanged as the router's input (issue #16), through the loop's real per-record
step: applied to its domain only, refused (dead letter and EventRejected, nothing
changed) when stale or unreadable, carried on every decision as Envelope.policy_version,
and stored in the changelog so a new owner and other replicas' read views use it."""

from __future__ import annotations

import json
from collections.abc import Sequence

from prometheus_client import CollectorRegistry
from switchboard.v1 import router_admin_pb2
from switchboard.v1.envelope_pb2 import Envelope

from services.common.clock import FakeClock
from services.common.codec import decode_envelope, new_envelope
from services.common.config import KafkaSettings
from services.common.kafka import OutboundRecord
from services.router.adapters.kafka import POLICIES_TOPIC, RouterHandler
from services.router.domain.domains_view import DomainsView
from services.router.metric_labels import DomainLabels, LabelPolicy
from services.router.metrics import RouterMetrics
from tests.unit.router.test_answers import (
    POLICY,
    TOPICS,
    Router,
    answers,
    event,
    letters,
    the_answer,
)
from tests.unit.router.test_domains_view import call_as, operator, replica

POLICIES = TOPICS.name(POLICIES_TOPIC)
#: acme's own policy: the default's billing queue (as test_answers' POLICY) and sales.
SALES = """
[routing]
fallback_queue = "billing"
[routing.queues.billing]
skills = {billing = 3}
[routing.queues.sales]
skills = {sales = 2}
"""


def policy_changed(version: int, document: str, domain: str = "acme") -> Envelope:
    e = new_envelope(domain, "policy-service", event_id=f"policy-{domain}-{version}")
    e.policy_changed.current.version = version
    e.policy_changed.current.document = document
    e.policy_changed.current.author = "ops@acme"
    return e


def arrival(contact_id: str, queue: str, domain: str = "acme") -> Envelope:
    e = event("contact_arrived", f"arrive-{contact_id}", domain, contact_id=contact_id)
    e.contact_arrived.queue = queue
    e.contact_arrived.channel = 1  # type: ignore[assignment]
    return e


def login(agent_id: str, skill: str, domain: str = "acme") -> Envelope:
    e = event("agent_logged_in", f"login-{agent_id}", domain, agent_id=agent_id)
    e.agent_logged_in.languages.append("en")
    e.agent_logged_in.skills.add(skill=skill, proficiency=5)
    e.agent_logged_in.capacity.add(channel=1, max_concurrent=1)
    return e


def decisions(outputs: Sequence[OutboundRecord]) -> list[Envelope]:
    return [e for _, e in answers(outputs)]


def test_a_policy_applies_to_its_domain_and_every_decision_names_its_version() -> None:
    router = Router()
    assert router.feed(POLICIES, policy_changed(1, SALES)) == []  # nothing to decide yet
    out = router.feed(TOPICS.agent_events, login("s1", "sales"))
    out += router.feed(TOPICS.contact_events, arrival("c1", "sales"))
    seen = decisions(out)
    assert [d.WhichOneof("payload") for d in seen] == [
        "agent_status_changed",
        "offer_made",
        "agent_status_changed",
    ]
    assert {d.policy_version for d in seen} == {1}
    # another domain runs on the configured default: no sales queue, version 0
    out = router.feed(TOPICS.contact_events, arrival("c1", "sales", "globex"))
    assert the_answer(out, "rejected") == "queue 'sales' is not configured"
    assert decisions(out)[0].policy_version == 0
    out = router.feed(TOPICS.contact_events, arrival("c2", "billing", "globex"))
    assert {d.policy_version for d in decisions(out)} == {0}


def test_a_stale_version_is_refused_naming_both_and_changes_nothing() -> None:
    router = Router()
    router.feed(POLICIES, policy_changed(2, SALES))
    out = router.feed(POLICIES, policy_changed(1, "[routing]\nmax_total = 1\n"))
    assert the_answer(out, "rejected") == "policy version 1 is stale: version 2 is applied"
    [answer] = decisions(out)
    assert answer.policy_version == 2
    assert answer.event_rejected.payload == "policy_changed"
    assert router.handler.states.cores["acme"].policy_version == 2


def test_an_unreadable_document_is_refused_naming_the_field_and_changes_nothing() -> None:
    router = Router()
    router.feed(POLICIES, policy_changed(1, SALES))
    core = router.handler.states.cores["acme"]
    before = core.snapshot()
    bad = SALES.replace("sales = 2", "sales = 11")
    out = router.feed(POLICIES, policy_changed(2, bad))
    assert the_answer(out, "rejected") == (
        "policy version 2 refused: routing.queues.sales.skills.sales: proficiency is 1-10"
    )
    out = router.feed(POLICIES, policy_changed(3, "[routing"))
    assert the_answer(out, "rejected").startswith("policy version 3 refused: document: not TOML")
    out = router.feed(POLICIES, policy_changed(4, "[billing]\nx = 1\n"))
    assert the_answer(out, "rejected").startswith(
        "policy version 4 refused: billing: unknown table"
    )
    out = router.feed(POLICIES, policy_changed(0, SALES))
    assert the_answer(out, "rejected") == "policy_changed.current.version: 0 is not a version"
    assert core.snapshot() == before
    assert core.policy_version == 1


def test_a_document_without_a_routing_table_puts_the_domain_on_the_default() -> None:
    router = Router()
    router.feed(POLICIES, policy_changed(1, SALES))
    router.feed(TOPICS.contact_events, arrival("c1", "sales"))  # nobody: it waits
    out = router.feed(POLICIES, policy_changed(2, "[notification]\nx = 1\n"))
    [parked] = decisions(out)  # the default has no sales queue, and no fallback
    assert parked.contact_unroutable.reason == "queue 'sales' removed by policy version 2"
    assert parked.policy_version == 2
    core = router.handler.states.cores["acme"]
    assert (core.policy_version, sorted(core.policy.queues)) == (2, ["billing"])


def test_a_policy_on_an_input_topic_or_an_event_on_policies_is_refused() -> None:
    """contact.events is written by integrators: a policy there must never apply."""
    router = Router()
    out = router.feed(TOPICS.contact_events, policy_changed(1, SALES))
    assert the_answer(out, "wrong_topic") == (
        "policy_changed belongs on policies, not contact.events: publish it there"
    )
    out = router.feed(POLICIES, arrival("c1", "billing"))
    assert the_answer(out, "wrong_topic").startswith("contact_arrived belongs on contact.events")
    assert "acme" not in router.handler.states.cores or (
        router.handler.states.cores["acme"].policy_version == 0
    )


def test_the_policy_is_in_the_changelog_for_restore_and_the_read_views() -> None:
    router = Router()
    router.feed(POLICIES, policy_changed(3, SALES))
    router.feed(TOPICS.contact_events, arrival("c1", "sales"))
    partition = router.loop.partition_of("acme")
    records = router.handler.drain_changelog(partition)
    stored = {
        r.key.decode().partition("/")[2]: json.loads(r.value)
        for r in records
        if r.key is not None and r.value is not None
    }
    assert stored["policy:"]["version"] == 3
    assert stored["policy:"]["document"] == SALES
    # a new owner (restore from the changelog)
    restored = router.handler._restore_core("acme", stored)
    assert (restored.policy_version, sorted(restored.policy.queues)) == (3, ["billing", "sales"])
    # another replica's read view, and RouterAdmin there
    view = DomainsView(router.handler.policy)
    for r in records:
        assert r.key is not None
        domain, _, entity = r.key.decode().partition("/")
        view.put(domain, entity, r.value)
    mirror = view.core("acme", 1_700_000_001.0)
    assert mirror is not None
    assert mirror.policy_version == 3
    assert [q.queue for q in mirror.queue_stats(1_700_000_001.0)] == ["billing", "sales"]


async def test_router_admin_shows_each_domains_policy_version_and_parked_contacts() -> None:
    router = Router()
    router.feed(POLICIES, policy_changed(1, SALES.replace('fallback_queue = "billing"\n', "")))
    router.feed(TOPICS.contact_events, arrival("c1", "sales"))
    out = router.feed(POLICIES, policy_changed(2, "[routing.queues.billing]\nskills = {}\n"))
    [unroutable] = decisions(out)
    assert unroutable.contact_unroutable.reason == "queue 'sales' removed by policy version 2"
    view = DomainsView(router.handler.policy)
    for r in router.handler.drain_changelog(router.loop.partition_of("acme")):
        assert r.key is not None
        domain, _, entity = r.key.decode().partition("/")
        view.put(domain, entity, r.value)
    admin, handler = replica(view)  # acme lives on the other replica: from the view
    handler.states.core_for("globex", 0)  # globex is this one's, on the default
    stats = await call_as(
        operator("*"), admin.GetQueueStats, router_admin_pb2.GetQueueStatsRequest()
    )
    assert sorted((q.domain, q.queue, q.policy_version) for q in stats.queues) == [
        ("acme", "billing", 2),  # sales removed by version 2
        ("globex", "billing", 0),  # the replica's configured default: billing and vip
        ("globex", "vip", 0),
    ]
    parked = await call_as(
        operator("acme"), admin.GetContact, router_admin_pb2.GetContactRequest(contact_id="c1")
    )
    assert (parked.contact_status, parked.queue, parked.estimated_wait_unknown) == (
        router_admin_pb2.CONTACT_STATUS_PARKED,
        "sales",
        True,
    )


def test_letters_of_refused_policies_keep_the_original_record() -> None:
    router = Router()
    out = router.feed(POLICIES, policy_changed(1, "[routing"))
    [letter] = letters(out)
    [dead] = [o for o in out if o.topic.endswith(".dlq")]
    assert dead.value is not None
    assert decode_envelope(dead.value, ()).policy_changed.current.document == "[routing"
    assert letter["dlq.source.topic"] == POLICIES.encode()


def test_metrics_follow_each_domains_own_queues_and_stay_bounded() -> None:
    registry = CollectorRegistry()
    clock = FakeClock(1_700_000_000.0)
    kafka = KafkaSettings(topic_prefix=TOPICS.prefix)
    router = Router()
    router.handler = RouterHandler(
        POLICY,
        TOPICS,
        kafka,
        RouterMetrics.create(registry),
        clock,
        labels=DomainLabels(LabelPolicy(frozenset({"acme"}))),
    )
    router.loop.handler = router.handler

    def waiting(domain: str, queue: str) -> float | None:
        labels = {"domain": domain, "queue": queue}
        return registry.get_sample_value("switchboard_router_contacts_waiting", labels)

    router.feed(POLICIES, policy_changed(1, SALES))
    router.feed(TOPICS.contact_events, arrival("c1", "sales"))
    router.feed(POLICIES, policy_changed(1, SALES, "globex"))  # not labelled: "other"
    router.feed(TOPICS.contact_events, arrival("c1", "sales", "globex"))
    clock.advance(2)
    router.handler.drain_changelog(router.loop.partition_of("acme"))
    assert waiting("acme", "sales") == 1
    assert waiting("other", "other") == 1  # globex's own queue name: not a new series
    assert waiting("other", "sales") is None
    billing_only = SALES.partition("[routing.queues.sales]")[0]
    assert router.feed(POLICIES, policy_changed(2, billing_only))
    clock.advance(2)
    router.handler.drain_changelog(router.loop.partition_of("acme"))
    assert waiting("acme", "sales") is None  # the removed queue's series is gone
    assert waiting("acme", "billing") == 1  # c1 moved to the fallback
