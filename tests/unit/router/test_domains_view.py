"""The read view of every domain (any replica answers RouterAdmin): fed with the owner's
changelog records it answers as the owner does; bounded, scoped, and honest about what
it left out."""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry
from switchboard.v1 import router_admin_pb2

from services.common.clock import FakeClock
from services.common.config import KafkaSettings
from services.common.errors import ConfigError
from services.common.identity import Caller, Role, calling_as
from services.common.topics import Topics
from services.router.adapters.grpc import RouterAdminServicer
from services.router.adapters.kafka import RouterHandler
from services.router.adapters.view import AdminView
from services.router.domain import RoutingCore
from services.router.domain.domains_view import DomainsView, ViewIncomplete, ViewLimits
from services.router.domain.model import ContactEnded, OfferAccepted
from services.router.metrics import RouterMetrics
from services.router.settings import RouterSettings
from tests.support import ROOT
from tests.unit.router.test_routing_core import T0, agent, call, policy


def feed(view: DomainsView, domain: str, core: RoutingCore) -> None:
    """What the owner commits to the changelog after a cycle, as the view receives it."""
    for entity, snapshot in core.take_changes().items():
        value = None if snapshot is None else json.dumps(snapshot).encode()
        view.put(domain, entity, value)


def busy_core() -> RoutingCore:
    core = RoutingCore(policy())
    core.apply(agent("a1"), T0)
    core.apply(agent("a2", billing=4), T0 + 1)
    for n in range(5):
        core.apply(call(f"c{n}"), T0 + 2 + n)
    core.apply(OfferAccepted("a1", "c0", "c0#1"), T0 + 10)
    core.apply(ContactEnded("c0"), T0 + 40)  # a1 wraps up; c0 closes (deleted)
    return core


def test_the_view_answers_what_the_owner_answers() -> None:
    owner, view = busy_core(), DomainsView(policy())
    feed(view, "acme", owner)
    mirror = view.core("acme", T0 + 50)
    assert mirror is not None
    now = T0 + 60
    assert mirror.queue_stats(now) == owner.queue_stats(now)
    assert sorted(mirror.agent_views(), key=str) == sorted(owner.agent_views(), key=str)
    for contact_id in ("c0", "c1", "c2", "c3", "c4"):
        assert mirror.contact_view(contact_id, now) == owner.contact_view(contact_id, now)
    waiting = owner.contact_view("c4", now)
    assert waiting is not None
    assert waiting.position == 3
    assert view.contact_domains("c4") == ["acme"]
    assert view.contact_domains("c0") == []  # closed: deleted from the changelog and the view


def test_changes_reach_the_view_once_the_rebuild_interval_passed() -> None:
    owner, view = busy_core(), DomainsView(policy(), ViewLimits(rebuild_after_s=1.0))
    feed(view, "acme", owner)
    first = view.core("acme", T0 + 50)
    assert view.core("acme", T0 + 50.1) is first  # unchanged: not rebuilt
    owner.apply(call("c9"), T0 + 50.2)
    feed(view, "acme", owner)
    assert view.core("acme", T0 + 50.5) is first  # changed, but rebuilt < 1 s ago
    fresh = view.core("acme", T0 + 51.1)
    assert fresh is not first
    assert fresh is not None
    assert fresh.contact_view("c9", T0 + 52) == owner.contact_view("c9", T0 + 52)


def test_the_dedupe_window_and_other_entities_are_not_held() -> None:
    view = DomainsView(policy())
    view.put("acme", "~seen/0", b'{"at": 1, "ids": ["e1"]}')
    assert view.domains() == []
    assert view.size == 0


def test_scope_decides_which_domains_a_call_answers_for() -> None:
    view = DomainsView(policy())
    for domain in ("acme", "globex"):
        feed(view, domain, busy_core())
    acme_only = {"acme"}.__contains__
    assert view.plan(owned={"initech"}, sees=lambda _: True) == ["acme", "globex", "initech"]
    assert view.plan(owned=(), sees=acme_only) == ["acme"]
    assert view.plan(owned=(), sees=acme_only, only="globex") == []
    assert view.plan(owned=(), sees=lambda _: True, only="nowhere") == []


def test_past_its_bounds_a_domain_is_left_out_and_calls_needing_it_are_told() -> None:
    view = DomainsView(policy(), ViewLimits(max_domains=1))
    feed(view, "acme", busy_core())
    gave_up = view.put("globex", "meta:", b'{"seq": 1, "offer_seq": 0}')
    assert gave_up is not None
    assert "'globex'" in gave_up
    assert "more than 1 domains" in gave_up
    assert view.put("globex", "meta:", b'{"seq": 2, "offer_seq": 0}') is None  # said once
    assert (view.domains(), view.incomplete, view.refused) == (["acme"], 1, 2)
    everyone = lambda _: True  # noqa: E731
    with pytest.raises(ViewIncomplete, match="globex"):
        view.plan(owned=(), sees=everyone)
    with pytest.raises(ViewIncomplete):
        view.plan(owned=(), sees=everyone, only="globex")
    # the replica that owns globex answers it live; acme's operator is not affected
    assert view.plan(owned={"globex"}, sees=everyone) == ["acme", "globex"]
    assert view.plan(owned=(), sees={"acme"}.__contains__) == ["acme"]


def test_the_byte_bound_frees_what_the_domain_held() -> None:
    small = DomainsView(policy(), ViewLimits(max_bytes=2_000))
    one = RoutingCore(policy())
    one.apply(agent("a1"), T0)
    feed(small, "acme", one)  # one agent: fits
    held = small.size
    assert 0 < held < 2_000
    core = busy_core()
    feed(small, "globex", core)
    assert small.domains() == ["acme"]
    assert small.size == held
    assert small.contact_domains("c4") == []
    with pytest.raises(ViewIncomplete):
        small.plan(owned=(), sees=lambda _: True)


def test_more_refused_domains_than_it_can_name_refuses_every_unbounded_call() -> None:
    view = DomainsView(policy(), ViewLimits(max_domains=1))
    for domain in ("a", "b", "c"):
        view.put(domain, "meta:", b'{"seq": 1, "offer_seq": 0}')
    assert view.overflowed
    with pytest.raises(ViewIncomplete):
        view.plan(owned=(), sees={"a"}.__contains__)
    assert view.plan(owned=(), sees={"a"}.__contains__, only="a") == ["a"]


def test_a_snapshot_that_does_not_restore_is_reported_not_shown() -> None:
    view = DomainsView(policy())
    view.put("acme", "agent:a1", b'{"team": "t1"}')  # fields missing
    with pytest.raises(ViewIncomplete, match="does not restore"):
        view.core("acme", T0)
    assert view.domains() == []
    assert view.incomplete == 1


def test_rebuilt_cores_are_bounded() -> None:
    view = DomainsView(policy(), ViewLimits(max_cores=2))
    for domain in ("a", "b", "c"):
        feed(view, domain, busy_core())
    a = view.core("a", T0)
    view.core("b", T0)
    view.core("c", T0)  # a is the least recently asked: dropped
    assert view.core("a", T0) is not a
    assert view.core("c", T0) is view.core("c", T0)


# -- RouterAdmin on a replica: own domains live, the others from the view -------------


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code


class Context:
    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)


def replica(view: DomainsView, ready: bool = True) -> tuple[RouterAdminServicer, RouterHandler]:
    clock = FakeClock(T0 + 60)
    handler = RouterHandler(
        policy(), Topics(""), KafkaSettings(), RouterMetrics.create(CollectorRegistry()), clock
    )
    admin_view = AdminView(KafkaSettings(), "router.changelog", view, ready_wait_s=0.05)
    if ready:
        admin_view.ready.set()
    return RouterAdminServicer(handler.states, clock, admin_view), handler


def operator(*domains: str) -> Caller:
    return Caller("ops", frozenset({Role.OPERATOR}), domains=frozenset(domains))


async def call_as(caller: Caller, method: Any, request: Any) -> Any:
    with calling_as(caller):
        return await method(request, Context())


async def test_a_replica_answers_for_its_own_domains_and_the_others() -> None:
    view = DomainsView(policy())
    feed(view, "globex", busy_core())  # owned by the other replica
    admin, handler = replica(view)
    mine = handler.states.core_for("acme", 0)
    mine.apply(agent("z1"), T0)
    mine.apply(call("k1"), T0 + 1)  # offered to z1 at once

    stats = await call_as(
        operator("*"), admin.GetQueueStats, router_admin_pb2.GetQueueStatsRequest()
    )
    assert sorted({q.domain for q in stats.queues}) == ["acme", "globex"]
    agents = await call_as(operator("*"), admin.ListAgents, router_admin_pb2.ListAgentsRequest())
    assert sorted((a.domain, a.agent_id) for a in agents.agents) == [
        ("acme", "z1"),
        ("globex", "a1"),
        ("globex", "a2"),
    ]
    theirs = await call_as(
        operator("globex"), admin.GetContact, router_admin_pb2.GetContactRequest(contact_id="c4")
    )
    assert (theirs.contact_status, theirs.position) == (router_admin_pb2.CONTACT_STATUS_WAITING, 3)
    ours = await call_as(
        operator("acme"), admin.GetContact, router_admin_pb2.GetContactRequest(contact_id="k1")
    )
    assert ours.contact_status == router_admin_pb2.CONTACT_STATUS_OFFERED

    # another tenant's operator: nothing listed, the contact NOT_FOUND as a made-up one
    stranger = operator("initech")
    assert not (
        await call_as(stranger, admin.GetQueueStats, router_admin_pb2.GetQueueStatsRequest())
    ).queues
    assert not (
        await call_as(stranger, admin.ListAgents, router_admin_pb2.ListAgentsRequest())
    ).agents
    with pytest.raises(Aborted) as hidden:
        await call_as(
            stranger, admin.GetContact, router_admin_pb2.GetContactRequest(contact_id="c4")
        )
    assert (hidden.value.code, str(hidden.value)) == (
        grpc.StatusCode.NOT_FOUND,
        "contact c4 not found",
    )
    with pytest.raises(Aborted) as wrong_domain:
        await call_as(
            operator("*"),
            admin.GetContact,
            router_admin_pb2.GetContactRequest(domain="acme", contact_id="c4"),
        )
    assert wrong_domain.value.code == grpc.StatusCode.NOT_FOUND


async def test_a_view_that_left_a_domain_out_or_is_loading_says_so() -> None:
    view = DomainsView(policy(), ViewLimits(max_domains=1))
    feed(view, "acme", busy_core())
    feed(view, "globex", busy_core())  # left out
    admin, _ = replica(view)
    with pytest.raises(Aborted) as full:
        await call_as(operator("*"), admin.ListAgents, router_admin_pb2.ListAgentsRequest())
    assert full.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "globex" in str(full.value)
    with pytest.raises(Aborted) as unknown:  # not found in what it holds: it cannot say
        await call_as(
            operator("globex"), admin.GetContact, router_admin_pb2.GetContactRequest(contact_id="x")
        )
    assert unknown.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    # acme's operator is answered in full; the message never names a domain they cannot see
    assert (
        await call_as(operator("acme"), admin.ListAgents, router_admin_pb2.ListAgentsRequest())
    ).agents

    loading, _ = replica(DomainsView(policy()), ready=False)
    with pytest.raises(Aborted) as early:
        await call_as(operator("*"), loading.ListAgents, router_admin_pb2.ListAgentsRequest())
    assert early.value.code == grpc.StatusCode.UNAVAILABLE


def test_changelog_keys_are_split_into_domain_and_entity() -> None:
    view = DomainsView(policy())
    admin_view = AdminView(KafkaSettings(), "router.changelog", view)
    admin_view.apply(b"acme/meta:", b'{"seq": 1, "offer_seq": 0}')
    admin_view.apply(b"\xff\xfe", b"{}")  # not text: skipped
    admin_view.apply(None, b"{}")
    admin_view.apply(b"acme/meta:", None)  # tombstone
    assert view.domains() == []


def test_the_view_bounds_are_configured_and_checked() -> None:
    base = {
        "SWITCHBOARD_CONFIG": str(ROOT / "deploy" / "config" / "router.toml"),
        "SWITCHBOARD_ADMIN_VIEW__MAX_DOMAINS": "7",
        "SWITCHBOARD_ADMIN_VIEW__MAX_CACHED_CORES": "3",
    }
    limits = RouterSettings.from_env(base).admin_view.limits()
    assert (limits.max_domains, limits.max_cores) == (7, 3)
    with pytest.raises(ConfigError, match=r"admin_view\.max_domains"):
        RouterSettings.from_env(base | {"SWITCHBOARD_ADMIN_VIEW__MAX_DOMAINS": "0"})
