"""Service level and queue statistics: one rule in the domain, rendered alike everywhere."""

from __future__ import annotations

import math
from pathlib import Path

from prometheus_client import CollectorRegistry
from switchboard.v1 import router_admin_pb2

from services.common.clock import FakeClock
from services.common.identity import Caller, Role, calling_as
from services.common.topics import Topics
from services.router.adapters.grpc import RouterAdminServicer
from services.router.adapters.kafka import RouterHandler
from services.router.domain import RoutingCore
from services.router.domain.model import ContactAbandoned, OfferAccepted
from services.router.domain.read_model import service_level
from services.router.metrics import RouterMetrics
from services.router.settings import RouterSettings
from tests.unit.router.test_routing_core import T0, agent, call, policy

ROOT = Path(__file__).resolve().parents[3]


def test_service_level_is_undefined_until_the_queue_answered_or_failed_someone() -> None:
    assert service_level(answered_within=0, answered=0, abandoned_late=0) is None
    assert service_level(answered_within=1, answered=1, abandoned_late=0) == 1.0
    assert service_level(answered_within=1, answered=1, abandoned_late=1) == 0.5
    assert service_level(answered_within=0, answered=0, abandoned_late=1) == 0.0


def test_a_queue_that_has_handled_no_one_has_no_service_level_in_the_core() -> None:
    core = RoutingCore(policy())
    core.apply(call("c1"), T0)  # waiting, not yet answered
    core.apply(ContactAbandoned("c1"), T0 + 5)  # a short abandon does not count against it
    stats = {s.queue: s for s in core.queue_stats(T0 + 6)}
    assert stats["billing"].service_level is None
    assert (stats["billing"].abandoned, stats["billing"].abandoned_late) == (1, 0)
    core.apply(agent("a1"), T0 + 7)
    core.apply(call("c2"), T0 + 8)
    core.apply(OfferAccepted("a1", "c2", "c2#1"), T0 + 9)
    stats = {s.queue: s for s in core.queue_stats(T0 + 10)}
    assert stats["billing"].service_level == 1.0
    assert stats["billing"].answered_within == 1


async def test_router_admin_and_the_exported_gauge_agree_queue_by_queue() -> None:
    """Two domains: 'billing' answered one customer in time in d1 and failed one in d2 (1/2);
    'vip' handled no one anywhere (no service level: NaN in both renderings)."""
    clock = FakeClock(T0)
    registry = CollectorRegistry()
    settings = RouterSettings.from_env(
        {
            "SWITCHBOARD_CONFIG": str(ROOT / "deploy" / "config" / "router.toml"),
            "SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1",
        }
    )
    handler = RouterHandler(
        policy(), Topics(""), settings.kafka, RouterMetrics.create(registry), clock
    )
    d1 = handler.states.core_for("d1", 0)
    d1.apply(agent("a1"), T0)
    d1.apply(call("c1"), T0)
    d1.apply(OfferAccepted("a1", "c1", "c1#1"), T0 + 1)
    d2 = handler.states.core_for("d2", 0)
    d2.apply(call("c2"), T0)
    d2.apply(ContactAbandoned("c2"), T0 + 30)  # after the 20 s threshold: a failure
    clock.current = T0 + 31
    handler.drain_changelog(0)  # updates the gauges
    operator = Caller("ops", frozenset({Role.OPERATOR}), domains=frozenset({"*"}))
    with calling_as(operator):
        reply = await RouterAdminServicer(handler.states, clock).GetQueueStats(
            router_admin_pb2.GetQueueStatsRequest(), context=None
        )
    admin: dict[str, list[float]] = {}
    for q in reply.queues:
        admin.setdefault(q.queue, []).append(q.service_level)

    def gauge(queue: str) -> float:
        value = registry.get_sample_value("switchboard_router_service_level", {"queue": queue})
        assert value is not None
        return value

    assert gauge("billing") == 0.5  # summed counts across domains: 1 within / 2 handled
    assert sorted(admin["billing"]) == [0.0, 1.0]  # per domain
    assert math.isnan(gauge("vip"))
    assert len(admin["vip"]) == 2
    assert all(math.isnan(v) for v in admin["vip"])


def test_a_ringing_contact_counts_in_the_longest_wait_and_the_wait_stops_at_assignment() -> None:
    """A call ringing for minutes showed a longest wait of 0 s; a contact's `waited` kept
    growing after an agent took it."""
    core = RoutingCore(policy(offer_timeout_s=600))
    core.apply(call("c1"), T0)
    core.apply(agent("a1"), T0 + 60)  # offered at once: ringing from now on
    [stats] = [s for s in core.queue_stats(T0 + 300) if s.queue == "billing"]
    assert (stats.waiting, stats.offered, stats.longest_wait) == (0, 1, 300.0)
    core.apply(OfferAccepted("a1", "c1", "c1#1"), T0 + 70)
    view = core.contact_view("c1", T0 + 500)
    assert view is not None
    assert view.waited == 70.0
