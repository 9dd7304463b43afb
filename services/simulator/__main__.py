"""``python -m services.simulator``: drive Switchboard with a simulated contact center."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import Sequence
from typing import Literal, cast

import structlog

from services.common.clock import SystemClock
from services.common.config import LogSettings
from services.common.errors import SwitchboardError
from services.common.log_setup import configure_logging
from services.common.topics import Topics
from services.simulator.adapters.kafka import KafkaDecisions, KafkaPublisher
from services.simulator.core import Simulation
from services.simulator.runner import SimulationRunner
from services.simulator.scenario import load_scenario
from services.simulator.settings import SimulatorSettings

__all__ = ["main"]

log = structlog.get_logger("simulator")


async def _run(settings: SimulatorSettings) -> int:
    scenario = load_scenario(settings.scenario)
    if settings.rate is not None:
        scenario = scenario.with_rate(settings.rate)
    domain = settings.domain or scenario.domain
    duration = scenario.duration if settings.duration is None else settings.duration
    clock = SystemClock()
    topics = Topics(prefix=settings.topic_prefix)
    sim = Simulation(scenario, seed=settings.seed, start=clock.now(), run_id=uuid.uuid4().hex[:6])
    publisher = KafkaPublisher(settings.bootstrap_servers)
    decisions = KafkaDecisions(settings.bootstrap_servers, topics.routing_decisions)
    runner = SimulationRunner(
        sim, publisher, decisions, clock, topics, domain, output_format=settings.output_format
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if duration > 0:
        loop.call_later(duration, stop.set)
    log.info(
        "simulating",
        scenario=scenario.name,
        domain=domain,
        rate=scenario.rate,
        duration=duration or "until stopped",
        seed=settings.seed,
        bootstrap_servers=settings.bootstrap_servers,
        topic_prefix=settings.topic_prefix,
    )
    try:
        stats = await runner.run(stop)
    finally:
        await publisher.close()
    if settings.report is not None:
        report = {
            "scenario": scenario.name,
            "domain": domain,
            "published": runner.published,
            "unconfirmed_by_router": len(sim.unconfirmed_contacts()),
            **stats.as_dict(),
        }
        settings.report.parent.mkdir(parents=True, exist_ok=True)
        settings.report.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = SimulatorSettings.from_args(argv, os.environ)
        fmt = cast(Literal["auto", "json", "console"], settings.log_format)
        configure_logging(LogSettings(format=fmt))
        return asyncio.run(_run(settings))
    except SwitchboardError as exc:
        print(f"simulator: {exc.reason}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
