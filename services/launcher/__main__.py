"""``python -m services.launcher --scenario NAME [--rate R] [--duration S]`` (``make run``)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from services.common.config import LogSettings
from services.common.errors import SwitchboardError
from services.common.log_setup import configure_logging
from services.launcher.app import Launcher, RunConfig
from services.launcher.broker import BrokerControl
from services.launcher.plan import ROOT, StackOptions
from services.launcher.supervisor import Supervisor
from services.simulator.scenario import load_scenario, resolve_scenario_path

__all__ = ["main"]


def _parse(argv: Sequence[str] | None, env: Mapping[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m services.launcher",
        description="Run the whole Switchboard stack with a simulated contact center.",
    )
    parser.add_argument(
        "--scenario", default="quiet-day", help="name in deploy/scenarios or a path"
    )
    parser.add_argument("--rate", type=float, default=None, help="arrivals per second (scales)")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds; 0 = until Ctrl-C")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--topic-prefix", default=env.get("SWITCHBOARD_KAFKA__TOPIC_PREFIX", ""))
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated children not to start (gateway,router,escalation,notifier,simulator)",
    )
    parser.add_argument("--run-dir", type=Path, default=ROOT / ".run")
    parser.add_argument("--refresh", type=float, default=2.0, help="seconds between refreshes")
    return parser.parse_args(argv)


async def _main(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    run_dir = Path(args.run_dir)
    scenario_path = resolve_scenario_path(args.scenario)
    scenario = load_scenario(args.scenario)
    port = env.get("KAFKA_PORT", "9092")
    options = StackOptions(
        scenario_path=scenario_path.resolve(),
        bootstrap_servers=f"127.0.0.1:{port}",
        topic_prefix=args.topic_prefix,
        rate=args.rate,
        seed=args.seed,
        run_dir=run_dir,
        skip=frozenset(s.strip() for s in args.skip.split(",") if s.strip()),
    )
    config = RunConfig(
        duration=args.duration if args.duration > 0 else scenario.duration,
        refresh=args.refresh,
        tty=sys.stdout.isatty(),
    )
    broker = BrokerControl(env=dict(env), log_path=run_dir / "logs" / "broker.log")
    supervisor = Supervisor(log_dir=run_dir / "logs", base_env=dict(env))
    launcher = Launcher(scenario, options, config, sys.stdout, broker, supervisor)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return await launcher.run(stop)


def main(argv: Sequence[str] | None = None) -> int:
    env = dict(os.environ)
    args = _parse(argv, env)
    # The launcher's own log lines go to stderr; the summary owns stdout.
    configure_logging(LogSettings(level="warning"), stream=sys.stderr)
    try:
        return asyncio.run(_main(args, env))
    except SwitchboardError as exc:
        print(f"launcher: {exc.reason}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
