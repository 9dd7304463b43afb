"""Moved: ``switchboard escalations`` (services/cli/escalations.py). This module keeps
``python -m services.escalation.cli watch|list|ack|note|resolve ...`` working."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from services.cli.__main__ import main as switchboard
from services.cli.escalations import format_escalation

__all__ = ["format_escalation", "main"]


def main(argv: Sequence[str] | None = None) -> None:
    switchboard(["escalations", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
