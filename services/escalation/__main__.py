"""``python -m services.escalation``: unresolved and breaching cases reach the right manager."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence

import grpc
import structlog
from prometheus_client import CollectorRegistry
from switchboard.v1 import escalation_pb2_grpc

from services.common.auth import BearerTokenInterceptor
from services.common.errors import ConfigError
from services.common.kafka import ConsumeLoop
from services.common.log_setup import configure_logging
from services.common.metrics import RuntimeMetrics, serve_metrics
from services.common.runtime import RunningService, run_service
from services.common.topics import Topics
from services.escalation.adapters.grpc import EscalationServicer
from services.escalation.adapters.kafka import EscalationHandler
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
    )
    loop = ConsumeLoop(
        service="escalation",
        settings=settings.kafka,
        input_topics=[topics.contact_events, topics.agent_events, topics.routing_decisions],
        handler=handler,
        metrics=RuntimeMetrics.create(registry),
        transactional_id=settings.kafka.transactional_id or f"escalation-{settings.instance}",
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
        interceptors=[BearerTokenInterceptor(settings.identities.tokens)],
        on_started=on_started,
        handle_signals=handle_signals,
    )


def main() -> None:
    try:
        settings = EscalationSettings.from_env()
    except ConfigError as exc:
        print(f"escalation: {exc}", file=sys.stderr)
        sys.exit(2)
    configure_logging(settings.log, cache_loggers=True)
    registry = CollectorRegistry()
    _, port = serve_metrics(settings.metrics.host, settings.metrics.port, registry)
    structlog.get_logger("escalation").info(
        "metrics endpoint", url=f"http://{settings.metrics.host}:{port}/metrics"
    )
    asyncio.run(build_and_run(settings, registry))


if __name__ == "__main__":
    main()
