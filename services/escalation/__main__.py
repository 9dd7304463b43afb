"""``python -m services.escalation``: unresolved and breaching cases reach the right manager."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import grpc
from prometheus_client import CollectorRegistry
from switchboard.v1 import escalation_pb2_grpc

from services.common.kafka import ConsumeLoop
from services.common.metrics import RuntimeMetrics
from services.common.policy_input import POLICIES_TOPIC
from services.common.runtime import RunningService, run_service, service_main
from services.common.topics import Topics
from services.escalation.adapters.grpc import EscalationServicer
from services.escalation.adapters.kafka import EscalationHandler
from services.escalation.adapters.replicas import COMMANDS_TOPIC, CommandSender, ReadModel
from services.escalation.adapters.watchers import Watchers
from services.escalation.domain.read_view import EscalationReadView
from services.escalation.domain.scopes import DomainPolicies
from services.escalation.metrics import EscalationMetrics
from services.escalation.settings import EscalationSettings

__all__ = ["build_and_run", "main"]


async def build_and_run(
    settings: EscalationSettings,
    registry: CollectorRegistry | None = None,
    on_started: Callable[[RunningService], None] | None = None,
    *,
    handle_signals: bool = True,
) -> None:
    registry = registry or CollectorRegistry()
    topics = Topics(settings.kafka.topic_prefix)
    metrics = EscalationMetrics.create(registry)
    policy = settings.policy()
    handler = EscalationHandler(policy=policy, topics=topics, kafka=settings.kafka, metrics=metrics)
    loop = ConsumeLoop(
        service="escalation",
        settings=settings.kafka,
        # Managers' commands and the domains' policies are inputs too, co-partitioned by
        # domain: each is applied by the domain's owner, in order with the domain's
        # events, in its transaction.
        input_topics=[
            topics.contact_events,
            topics.agent_events,
            topics.routing_decisions,
            topics.name(COMMANDS_TOPIC),
            topics.name(POLICIES_TOPIC),
        ],
        handler=handler,
        metrics=RuntimeMetrics.create(registry),
    )
    model = ReadModel(
        topics=topics,
        kafka=settings.kafka,
        metrics=metrics,
        commands=CommandSender(
            topics, settings.kafka, metrics, max_in_flight=settings.commands.max_in_flight
        ),
        view=EscalationReadView(settings.view.max_escalations),
        watchers=Watchers(settings.watch.max_streams, settings.watch.queue_size),
        policies=DomainPolicies(policy, max_domains=settings.kafka.max_domains),
    )

    def register(server: grpc.aio.Server) -> Sequence[str]:
        escalation_pb2_grpc.add_EscalationServiceServicer_to_server(
            EscalationServicer(model, settings.view, settings.commands), server
        )
        return ["switchboard.v1.EscalationService"]

    # The read view runs beside the service and outlives its gRPC calls (a command in
    # flight at shutdown still gets its answer); if it fails, the loop stops the service.
    view_task = asyncio.create_task(model.run(loop.fail), name="escalation-read-view")
    try:
        await run_service(
            "escalation",
            settings,
            loop,
            register,
            on_started=on_started,
            handle_signals=handle_signals,
        )
    finally:
        model.stop()
        await view_task


def main() -> None:
    service_main("escalation", EscalationSettings.from_env, build_and_run)


if __name__ == "__main__":
    main()
