"""``python -m services.simulator``: drive Switchboard with a simulated contact center."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections import Counter
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
    if settings.domain:
        scenario = scenario.with_domain(settings.domain)
    duration = scenario.duration if settings.duration is None else settings.duration
    clock = SystemClock()
    topics = Topics(prefix=settings.topic_prefix)
    run_id = uuid.uuid4().hex[:6]
    # One simulated contact center per tenant, side by side in this process: each with its
    # own producer, its own read of the decisions (its domain's) and its own seed and ids.
    runners: list[SimulationRunner] = []
    publishers: list[KafkaPublisher] = []
    for index, tenant in enumerate(scenario.all_tenants):
        sim = Simulation(
            tenant,
            seed=settings.seed + index,
            start=clock.now(),
            run_id=run_id if index == 0 else f"{run_id}-{tenant.domain[:12]}",
        )
        publishers.append(
            KafkaPublisher(settings.bootstrap_servers, client_id=f"simulator-{tenant.domain}")
        )
        runners.append(
            SimulationRunner(
                sim,
                publishers[-1],
                KafkaDecisions(settings.bootstrap_servers, topics.routing_decisions),
                clock,
                topics,
                tenant.domain,
                output_format=settings.output_format,
            )
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
        domains=[t.domain for t in scenario.all_tenants],
        rates=[t.rate for t in scenario.all_tenants],
        duration=duration or "until stopped",
        seed=settings.seed,
        bootstrap_servers=settings.bootstrap_servers,
        topic_prefix=settings.topic_prefix,
    )
    try:
        await asyncio.gather(*(runner.run(stop) for runner in runners))
    finally:
        for publisher in publishers:
            await publisher.close()
    if settings.report is not None:
        settings.report.parent.mkdir(parents=True, exist_ok=True)
        report = run_report(scenario.name, runners)
        settings.report.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


def run_report(scenario: str, runners: Sequence[SimulationRunner]) -> dict[str, object]:
    """The final statistics: the totals over every tenant at the top (as one tenant's
    report always was), each tenant's under ``tenants`` by domain."""
    tenants = {
        runner.domain: {
            "published": runner.published,
            "unconfirmed_by_router": len(runner.sim.unconfirmed_contacts()),
            **runner.sim.stats.as_dict(),
        }
        for runner in runners
    }
    totals: Counter[str] = Counter()
    nested: dict[str, Counter[str]] = {}
    for figures in tenants.values():
        for key, value in figures.items():
            if isinstance(value, int):
                totals[key] += value
            elif isinstance(value, dict):
                nested.setdefault(key, Counter()).update(value)
    return {
        "scenario": scenario,
        "domain": runners[0].domain,
        **dict(totals),
        **{key: dict(sorted(counts.items())) for key, counts in nested.items()},
        "tenants": tenants,
    }


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
