"""``python -m services.notifier``: tell customers what is happening, exactly once."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence

import grpc
import structlog
from prometheus_client import CollectorRegistry
from switchboard.v1 import notification_pb2_grpc

from services.common.errors import ConfigError
from services.common.kafka import ConsumeLoop
from services.common.log_setup import configure_logging
from services.common.metrics import RuntimeMetrics, serve_metrics
from services.common.runtime import RunningService, run_service
from services.common.topics import Topics
from services.notifier.adapters.delivery import DeliveryWorker
from services.notifier.adapters.grpc import NotifierServicer
from services.notifier.adapters.kafka import NotifierHandler
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
    handler = NotifierHandler(
        policy=settings.notifier_policy(),
        catalog=settings.catalog(),
        topics=topics,
        kafka=settings.kafka,
        metrics=NotifierMetrics.create(registry),
    )
    loop = ConsumeLoop(
        service="notifier",
        settings=settings.kafka,
        input_topics=[topics.contact_events, topics.routing_decisions],
        handler=handler,
        metrics=RuntimeMetrics.create(registry),
        transactional_id=settings.kafka.transactional_id or f"notifier-{settings.instance}",
    )
    worker = DeliveryWorker(handler, loop, settings.gateways, settings.delivery)

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
    try:
        settings = NotifierSettings.from_env()
    except ConfigError as exc:
        print(f"notifier: {exc}", file=sys.stderr)
        sys.exit(2)
    configure_logging(settings.log, cache_loggers=True)
    registry = CollectorRegistry()
    _, port = serve_metrics(settings.metrics.host, settings.metrics.port, registry)
    structlog.get_logger("notifier").info(
        "metrics endpoint", url=f"http://{settings.metrics.host}:{port}/metrics"
    )
    asyncio.run(build_and_run(settings, registry))


if __name__ == "__main__":
    main()
