"""``python -m services.escalation``: unresolved and breaching cases reach the right manager."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import grpc
from prometheus_client import CollectorRegistry
from switchboard.v1 import escalation_pb2_grpc

from services.common.kafka import ConsumeLoop
from services.common.metrics import RuntimeMetrics
from services.common.runtime import RunningService, run_service, service_main
from services.common.topics import Topics
from services.escalation.adapters.grpc import EscalationServicer
from services.escalation.adapters.kafka import EscalationHandler
from services.escalation.adapters.watchers import Watchers
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
    handler = EscalationHandler(
        policy=settings.policy(),
        topics=topics,
        kafka=settings.kafka,
        metrics=EscalationMetrics.create(registry),
        watchers=Watchers(settings.watch.max_streams, settings.watch.queue_size),
    )
    loop = ConsumeLoop(
        service="escalation",
        settings=settings.kafka,
        input_topics=[topics.contact_events, topics.agent_events, topics.routing_decisions],
        handler=handler,
        metrics=RuntimeMetrics.create(registry),
    )

    def register(server: grpc.aio.Server) -> Sequence[str]:
        escalation_pb2_grpc.add_EscalationServiceServicer_to_server(
            EscalationServicer(handler, loop), server
        )
        return ["switchboard.v1.EscalationService"]

    await run_service(
        "escalation",
        settings,
        loop,
        register,
        on_started=on_started,
        handle_signals=handle_signals,
    )


def main() -> None:
    service_main("escalation", EscalationSettings.from_env, build_and_run)


if __name__ == "__main__":
    main()
