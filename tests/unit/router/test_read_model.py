"""Service level and queue statistics: one rule in the domain, rendered alike everywhere."""

from __future__ import annotations

import math
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from switchboard.v1 import router_admin_pb2

from services.common.clock import FakeClock
from services.common.identity import Caller, Role, calling_as
from services.common.topics import Topics
from services.launcher.summary import parse_metrics_text, summarize
from services.router.adapters.grpc import RouterAdminServicer
from services.router.adapters.kafka import RouterHandler
from services.router.domain import RoutingCore
from services.router.domain.model import ContactAbandoned, OfferAccepted
from services.router.domain.read_model import service_level
from services.router.metric_labels import DomainLabels, LabelPolicy
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


async def test_router_admin_the_exported_gauge_and_the_summary_agree_with_the_rule() -> None:
    """One scenario, every rendering. 'billing': d1 (its own label) answered one customer
    in time (1/1); d2 answered one in time and lost one after the 20 s threshold (1/2);
    d3 answered one in time (1/1); d2 and d3 share the label "other": (1+1)/(2+1).
    'vip' handled no one anywhere: no service level (NaN, None), never 100 %."""
    clock = FakeClock(T0)
    registry = CollectorRegistry()
    settings = RouterSettings.from_env(
        {
            "SWITCHBOARD_CONFIG": str(ROOT / "deploy" / "config" / "router.toml"),
            "SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1",
        }
    )
    handler = RouterHandler(
        policy(),
        Topics(""),
        settings.kafka,
        RouterMetrics.create(registry),
        clock,
        labels=DomainLabels(LabelPolicy(named=frozenset({"d1"}))),
    )
    for domain, n in (("d1", 1), ("d2", 2), ("d3", 3)):
        core = handler.states.core_for(domain, 0)
        core.apply(agent(f"a{n}"), T0)
        core.apply(call(f"c{n}"), T0)
        core.apply(OfferAccepted(f"a{n}", f"c{n}", f"c{n}#1"), T0 + 1)
    d2 = handler.states.core_for("d2", 0)
    d2.apply(call("late"), T0)
    d2.apply(ContactAbandoned("late"), T0 + 30)  # after the 20 s threshold: a failure
    clock.current = T0 + 31
    handler.drain_changelog(0)  # updates the gauges
    operator = Caller("ops", frozenset({Role.OPERATOR}), domains=frozenset({"*"}))
    with calling_as(operator):
        reply = await RouterAdminServicer(handler.states, clock).GetQueueStats(
            router_admin_pb2.GetQueueStatsRequest(), context=None
        )
    admin = {(q.domain, q.queue): q.service_level for q in reply.queues}

    def gauge(domain: str, queue: str) -> float:
        labels = {"domain": domain, "queue": queue}
        value = registry.get_sample_value("switchboard_router_service_level", labels)
        assert value is not None
        return value

    def rule(domains: tuple[str, ...], queue: str) -> float | None:
        stats = [
            s
            for d in domains
            for s in handler.states.core_for(d, 0).queue_stats(T0 + 31)
            if s.queue == queue
        ]
        within, answered, late = (sum(getattr(s, f) for s in stats) for f in _COUNTS)
        return service_level(within, answered, late)

    summary = summarize({"router": parse_metrics_text(generate_latest(registry).decode())})
    shown = {(q.domain, q.queue): q.service_level for q in summary.queues}

    assert admin["d1", "billing"] == gauge("d1", "billing") == rule(("d1",), "billing") == 1.0
    assert shown["d1", "billing"] == 1.0
    assert (admin["d2", "billing"], admin["d3", "billing"]) == (0.5, 1.0)
    other = rule(("d2", "d3"), "billing")
    assert gauge("other", "billing") == shown["other", "billing"] == other == 2 / 3
    assert all(math.isnan(admin[d, "vip"]) for d in ("d1", "d2", "d3"))
    assert math.isnan(gauge("d1", "vip"))
    assert math.isnan(gauge("other", "vip"))
    assert rule(("d1", "d2", "d3"), "vip") is None
    assert shown["d1", "vip"] is None
    assert shown["other", "vip"] is None


_COUNTS = ("answered_within", "answered", "abandoned_late")


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
