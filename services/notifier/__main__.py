"""``python -m services.notifier``: tell customers what is happening, exactly once."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import grpc
from prometheus_client import CollectorRegistry
from switchboard.v1 import notification_pb2_grpc

from services.common.kafka import ConsumeLoop
from services.common.metrics import RuntimeMetrics
from services.common.policy_input import POLICIES_TOPIC
from services.common.runtime import RunningService, run_service, service_main
from services.common.topics import Topics
from services.notifier.adapters.delivery import DeliveryWorker
from services.notifier.adapters.gateway import GrpcChannelGateway
from services.notifier.adapters.grpc import NotifierServicer
from services.notifier.adapters.kafka import KafkaDeliveryReports, NotifierHandler
from services.notifier.metrics import NotifierMetrics
from services.notifier.settings import NotifierSettings

__all__ = ["build_and_run", "main"]

#: Direct requests (NotifierService.Notify) belong to this routing domain.
DIRECT_DOMAIN = "direct"


async def build_and_run(
    settings: NotifierSettings,
    registry: CollectorRegistry | None = None,
    on_started: Callable[[RunningService], None] | None = None,
    *,
    handle_signals: bool = True,
) -> None:
    registry = registry or CollectorRegistry()
    topics = Topics(settings.kafka.topic_prefix)
    metrics = NotifierMetrics.create(registry)
    handler = NotifierHandler(
        policy=settings.notifier_policy(),
        catalog=settings.catalog(),
        topics=topics,
        kafka=settings.kafka,
        metrics=metrics,
        retry=settings.delivery.retry(),
    )
    loop = ConsumeLoop(
        service="notifier",
        settings=settings.kafka,
        # each domain's policy is an input too, in order with the domain's events
        input_topics=[topics.contact_events, topics.routing_decisions, topics.name(POLICIES_TOPIC)],
        handler=handler,
        metrics=RuntimeMetrics.create(registry),
    )
    worker = DeliveryWorker(
        reports=KafkaDeliveryReports(handler, loop),
        gateway=GrpcChannelGateway(settings.gateways),
        settings=settings.delivery,
        clock=handler.clock,
        metrics=metrics,
    )

    def register(server: grpc.aio.Server) -> Sequence[str]:
        notification_pb2_grpc.add_NotifierServiceServicer_to_server(
            NotifierServicer(handler, loop, DIRECT_DOMAIN), server
        )
        return ["switchboard.v1.NotifierService"]

    await run_service(
        "notifier",
        settings,
        loop,
        register,
        extra_tasks=[worker.run],
        on_started=on_started,
        handle_signals=handle_signals,
    )


def main() -> None:
    service_main("notifier", NotifierSettings.from_env, build_and_run)


if __name__ == "__main__":
    main()
