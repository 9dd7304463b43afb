"""How fast the what-if replays a day of a 100-agent center (#16: "in seconds").

    .venv/bin/python -m bench.whatif_replay [--scale 1.0] [--repeat 3]

A synthetic recorded day (services.router.synthetic.default_center: ~100 agents in five
teams, ~10,000 contacts on the six queues of deploy/config/router.toml over 12.5 hours,
the real core deciding) is built in memory as the three topics would hold it. Timed:
turning those records into a recording (what the command does after reading Kafka),
the recorded figures, and one replay through the real core under the current policy
and under a proposed one (wrap-up 30 s instead of 3-5 s, and a notification policy
telling positions every 15 s instead of 30 s), each with the real escalation and
notifier cores fed alongside (deploy/config/escalation.toml and notifier.toml);
``--routing-only`` times the replays without them. Kafka reading is not timed here (the
integration test covers it). Prints the best of ``--repeat`` runs and how close the
unchanged-policy replay comes to the recorded figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from services.router.domain import RoutingPolicy
from services.router.downstream import DownstreamPolicies
from services.router.recording import build_recording, figures
from services.router.replay import replay
from services.router.synthetic import default_center, record_day
from services.router.whatif import DEFAULT_POLICY, downstream_policies, format_comparison

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def best_of(repeat: int, work: Callable[[], T]) -> tuple[float, T]:
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - started)
    assert result is not None
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--routing-only", action="store_true")
    args = parser.parse_args()
    data = tomllib.loads((ROOT / "deploy" / "config" / "router.toml").read_text())["routing"]
    current = RoutingPolicy.from_dict(data)
    for queue in data["queues"].values():
        queue["wrap_up_s"] = 30
    proposed = RoutingPolicy.from_dict(data)
    now: DownstreamPolicies | None = None
    new: DownstreamPolicies | None = None
    if not args.routing_only:
        now, new = downstream_policies(DEFAULT_POLICY, DEFAULT_POLICY)
        new = dataclasses.replace(
            new, notification=dataclasses.replace(new.notification, position_min_interval_s=15)
        )
    demand, teams = default_center(args.scale)
    start = 1_800_000_000.0
    made = time.perf_counter()
    records = record_day(current, demand, teams, hours=12.5, start=start)
    made = time.perf_counter() - made
    t_build, recording = best_of(
        args.repeat,
        lambda: build_recording(
            records, domain="acme", start=start + 1800, end=start + 12 * 3600, warmup_s=1800
        ),
    )
    t_figures, recorded = best_of(args.repeat, lambda: figures(recording, current))
    t_current, as_is = best_of(args.repeat, lambda: replay(recording, current, downstream=now))
    t_proposed, to_be = best_of(args.repeat, lambda: replay(recording, proposed, downstream=new))
    agents = len({e.event.agent_id for e in recording.agent_events}) + len(recording.roster)
    counted = sum(c.counted for c in recording.contacts)
    print(
        f"a day: {len(records)} records, {agents} agents, {len(recording.contacts)} contacts "
        f"replayed ({counted} counted, 11.5 h window) [recorded in {made:.1f} s]"
    )
    print(f"build recording   {t_build:6.2f} s")
    print(f"recorded figures  {t_figures:6.2f} s")
    print(f"replay, current   {t_current:6.2f} s")
    print(f"replay, proposed  {t_proposed:6.2f} s")
    total = t_build + t_figures + t_current + t_proposed
    print(f"what-if total     {total:6.2f} s (best of {args.repeat})")
    print()
    print(format_comparison(recorded, as_is, to_be))


if __name__ == "__main__":
    main()
