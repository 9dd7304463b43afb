"""A stand-in service process for launcher tests: gRPC health SERVING plus a /metrics page.

Reads the same env vars the launcher passes the real services; exports a few agreed
metrics with fixed values; exits 0 on SIGTERM. ``FAKE_EXIT_AT_START=3`` makes it exit
with code 3 at once, like a service with a broken configuration; ``FAKE_IGNORE_TERM=1``
makes it ignore SIGTERM, like a hung service.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


async def main() -> int:
    if os.environ.get("FAKE_EXIT_AT_START"):
        print("fake service: broken configuration", flush=True)
        return int(os.environ["FAKE_EXIT_AT_START"])
    registry = CollectorRegistry()
    per_queue = ["domain", "queue"]
    Gauge("switchboard_router_contacts_waiting", "w", per_queue, registry=registry).labels(
        "acme", "billing-en"
    ).set(3)
    Gauge("switchboard_router_longest_wait_seconds", "l", per_queue, registry=registry).labels(
        "acme", "billing-en"
    ).set(42)
    Gauge("switchboard_router_service_level", "s", per_queue, registry=registry).labels(
        "acme", "billing-en"
    ).set(0.75)
    answered = Counter(
        "switchboard_router_contacts_answered_total",
        "a",
        [*per_queue, "within_sl"],
        registry=registry,
    )
    answered.labels("acme", "billing-en", "true").inc(30)
    answered.labels("acme", "billing-en", "false").inc(10)
    Counter(
        "switchboard_router_contacts_abandoned_total", "b", per_queue, registry=registry
    ).labels("acme", "billing-en").inc(10)
    agents = Gauge("switchboard_router_agents", "g", ["domain", "state"], registry=registry)
    agents.labels("acme", "AGENT_STATE_AVAILABLE").set(4)
    agents.labels("acme", "busy").set(2)
    Gauge("switchboard_escalation_open", "e", ["tier"], registry=registry).labels(
        "TIER_MANAGER"
    ).set(1)
    start_http_server(
        int(os.environ["SWITCHBOARD_METRICS__PORT"]), addr="127.0.0.1", registry=registry
    )
    server = grpc.aio.server()
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    server.add_insecure_port(f"127.0.0.1:{os.environ['SWITCHBOARD_GRPC__PORT']}")
    await server.start()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    print("fake service: serving", os.environ.get("SWITCHBOARD_KAFKA__TOPIC_PREFIX"), flush=True)
    stop = asyncio.Event()
    stubborn = bool(os.environ.get("FAKE_IGNORE_TERM"))
    asyncio.get_running_loop().add_signal_handler(
        signal.SIGTERM, (lambda: None) if stubborn else stop.set
    )
    await stop.wait()
    await server.stop(0.5)
    print("fake service: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
