"""``switchboard whatif`` and ``switchboard simulate``: planners' questions, answered with
the real routing core.

``whatif`` is ``python -m services.router.whatif`` (same options): replay a recorded window
of a domain's traffic under the current and a proposed policy (``--policy``: a policy
document, as ``switchboard policy apply`` takes, or a router.toml), or find the fewest
agents for a service-level target (``--target 80/20``). ``simulate`` is the staffing
simulator, ``python -m services.router.simulate``: one queue through a simulated day,
with and without extra agents.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping
from typing import Any

from services.router import simulate, whatif

__all__ = ["register"]


async def _whatif(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    # It reads Kafka with an event loop of its own: run it beside this one.
    return await asyncio.to_thread(whatif.run, args)


async def _simulate(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    simulate.run(args)
    return 0


def register(commands: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Add ``whatif`` and ``simulate`` to the ``switchboard`` parser."""
    replay = commands.add_parser(
        "whatif",
        help="replay recorded traffic under a proposed policy, or staff for a target",
        description=whatif.DESCRIPTION,
        formatter_class=formatter,
    )
    whatif.add_arguments(replay)
    replay.set_defaults(run=_whatif)
    simulated = commands.add_parser(
        "simulate",
        help="simulate a day with more or fewer agents (service level, ASA, abandonment)",
        description=simulate.DESCRIPTION,
        formatter_class=formatter,
    )
    simulate.add_arguments(simulated)
    simulated.set_defaults(run=_simulate)
