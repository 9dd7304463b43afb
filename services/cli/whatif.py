"""``switchboard whatif``: what if we staffed differently? The staffing simulator
(``python -m services.router.simulate``) driving the real routing core, same options."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from services.router import simulate

__all__ = ["register"]


async def _whatif(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    simulate.run(args)
    return 0


def register(commands: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Add ``whatif`` to the ``switchboard`` parser."""
    parser = commands.add_parser(
        "whatif",
        help="simulate a day with more or fewer agents (service level, ASA, abandonment)",
        description=simulate.DESCRIPTION,
        formatter_class=formatter,
    )
    simulate.add_arguments(parser)
    parser.set_defaults(run=_whatif)
