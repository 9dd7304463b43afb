"""Wiring shared by every service's ``__main__``: logging, metrics, gRPC, the loop, shutdown.

Structured concurrency: the consume loop, the gRPC server and the health watchdog run
in one ``asyncio.TaskGroup``. SIGTERM or SIGINT first gives the gRPC server ``grace``
seconds for in-flight calls (whose commands the still-running loop commits), then stops
the loop (it finishes and commits its batch). If the loop
dies, the whole service stops with an error so its supervisor restarts it: a silently
stalled dispatcher is the failure users of other platforms report most.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import structlog
from prometheus_client import CollectorRegistry

from services.common.config import ServiceSettings
from services.common.errors import ConfigError
from services.common.grpc_server import HealthReporter, start_grpc_server
from services.common.identity import IdentityInterceptor, authenticator_from
from services.common.kafka import ConsumeLoop
from services.common.log_setup import configure_logging
from services.common.metrics import serve_metrics

_Settings = TypeVar("_Settings", bound=ServiceSettings)

__all__ = ["RunningService", "run_service", "service_main"]

log = structlog.get_logger("runtime")

#: A loop that has not completed a cycle for this long is reported NOT_SERVING.
STALL_SECONDS = 30.0


@dataclass
class RunningService:
    """Handles a test or ``__main__`` keeps on a started service."""

    grpc_port: int
    health: HealthReporter
    server: grpc.aio.Server
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)

    def stop(self) -> None:
        self.stop_requested.set()


async def _watch_health(loop: ConsumeLoop, health: HealthReporter, stop: asyncio.Event) -> None:
    serving: bool | None = None
    while not stop.is_set():
        healthy = loop.started.is_set() and loop.last_progress_age() < STALL_SECONDS
        if healthy != serving:
            await health.set_serving(healthy)
            serving = healthy
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)


async def run_service(
    name: str,
    settings: ServiceSettings,
    loop: ConsumeLoop,
    register: Callable[[grpc.aio.Server], Sequence[str]],
    *,
    interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]] = (),
    extra_tasks: Sequence[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = (),
    on_started: Callable[[RunningService], None] | None = None,
    handle_signals: bool = True,
) -> None:
    """Run ``loop`` and a gRPC server until a signal or ``RunningService.stop()``.

    Every call but health and reflection is identified first (``settings.identity``): a
    server that cannot identify its callers does not start.
    """
    identify = IdentityInterceptor(authenticator_from(settings.identity, settings.grpc))
    server, port, health = await start_grpc_server(
        settings.grpc, register, [identify, *interceptors]
    )
    running = RunningService(grpc_port=port, health=health, server=server)
    log.info("service started", service=name, grpc_port=port, instance=settings.instance)
    if handle_signals:
        event_loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            event_loop.add_signal_handler(sig, running.stop)
    if on_started is not None:
        on_started(running)
    started = time.monotonic()
    try:
        async with asyncio.TaskGroup() as group:
            loop_task = group.create_task(loop.run(), name=f"{name}-consume-loop")
            group.create_task(_watch_health(loop, health, running.stop_requested))
            for make_task in extra_tasks:
                group.create_task(make_task(running.stop_requested))
            stop_waiter = group.create_task(running.stop_requested.wait())
            done, _ = await asyncio.wait(
                {loop_task, stop_waiter}, return_when=asyncio.FIRST_COMPLETED
            )
            if loop_task in done and not running.stop_requested.is_set():
                loop_task.result()  # re-raise the loop's error
                raise RuntimeError("consume loop ended unexpectedly")
            log.info("stopping", service=name)
            await health.set_serving(False)
            # STYLE.md #6: in-flight calls first (a command needs the loop to commit its
            # records), then the loop finishes its batch, commits and closes.
            await server.stop(settings.grpc.shutdown_grace)
            loop.stop()
            running.stop_requested.set()
    finally:
        await health.shutdown()
        await server.stop(settings.grpc.shutdown_grace)  # no-op after a clean stop
        log.info("service stopped", service=name, ran_seconds=round(time.monotonic() - started, 1))


def service_main(
    name: str,
    load_settings: Callable[[], _Settings],
    run: Callable[[_Settings, CollectorRegistry], Coroutine[Any, Any, None]],
) -> None:
    """A service process: settings (a bad one exits 2 naming the field), logging, the
    metrics endpoint, uvloop, then ``run`` until it returns."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        sys.exit(2)
    configure_logging(settings.log, cache_loggers=True)
    registry = CollectorRegistry()
    _, port = serve_metrics(settings.metrics.host, settings.metrics.port, registry)
    structlog.get_logger(name).info(
        "metrics endpoint", url=f"http://{settings.metrics.host}:{port}/metrics"
    )
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency; stay runnable without
        pass
    try:
        asyncio.run(run(settings, registry))
    except ConfigError as exc:  # found while wiring (a key file, the identity settings)
        print(f"{name}: {exc}", file=sys.stderr)
        sys.exit(2)
