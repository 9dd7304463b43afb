"""``python -m services.router``: route contacts to agents, from Kafka to Kafka."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import grpc
from prometheus_client import CollectorRegistry
from switchboard.v1 import policy_pb2_grpc, router_admin_pb2_grpc

from services.common.kafka import ConsumeLoop
from services.common.metrics import RuntimeMetrics
from services.common.runtime import RunningService, run_service, service_main
from services.common.topics import Topics
from services.policy.servicer import PolicyServicer
from services.policy.store import PolicyMetrics, PolicyStore
from services.router.adapters.grpc import RouterAdminServicer
from services.router.adapters.kafka import POLICIES_TOPIC, RouterHandler
from services.router.adapters.view import AdminView, AdminViewMetrics
from services.router.domain.domains_view import DomainsView
from services.router.metric_labels import DomainLabels
from services.router.metrics import RouterMetrics
from services.router.settings import RouterSettings

__all__ = ["build_and_run", "main"]


async def build_and_run(
    settings: RouterSettings,
    registry: CollectorRegistry | None = None,
    on_started: Callable[[RunningService], None] | None = None,
    *,
    handle_signals: bool = True,
) -> None:
    """Wire the router and run it until stopped (also used by tests, in-process)."""
    registry = registry or CollectorRegistry()
    topics = Topics(settings.kafka.topic_prefix)
    handler = RouterHandler(
        policy=settings.policy(),
        topics=topics,
        kafka=settings.kafka,
        metrics=RouterMetrics.create(registry),
        instance=settings.instance,
        labels=DomainLabels(settings.metrics.label_policy()),
    )
    loop = ConsumeLoop(
        service="router",
        settings=settings.kafka,
        # The domains' policies are one more input, co-partitioned by domain: a new
        # version is applied by the domain's owner in order with its events.
        input_topics=[topics.contact_events, topics.agent_events, topics.name(POLICIES_TOPIC)],
        handler=handler,
        metrics=RuntimeMetrics.create(registry),
    )

    # Every domain, from the changelog: any replica answers RouterAdmin for all of them.
    admin_view = AdminView(
        settings.kafka,
        topics.changelog("router"),
        DomainsView(settings.policy(), settings.admin_view.limits()),
        ready_wait_s=settings.admin_view.ready_wait_s,
        metrics=AdminViewMetrics.create(registry),
    )

    # Operators' policies per domain: any replica answers and writes for every domain.
    policies = PolicyStore(
        settings.kafka, topics, settings.policy_service, PolicyMetrics.create(registry)
    )

    def register(server: grpc.aio.Server) -> Sequence[str]:
        router_admin_pb2_grpc.add_RouterAdminServicer_to_server(
            RouterAdminServicer(handler.states, handler.clock, admin_view), server
        )
        policy_pb2_grpc.add_PolicyServiceServicer_to_server(PolicyServicer(policies), server)
        return ["switchboard.v1.RouterAdmin", "switchboard.v1.PolicyService"]

    await run_service(
        "router",
        settings,
        loop,
        register,
        extra_tasks=[admin_view.run, policies.run],
        on_started=on_started,
        handle_signals=handle_signals,
    )


def main() -> None:
    service_main("router", RouterSettings.from_env, build_and_run)


if __name__ == "__main__":
    main()
