"""How protobuf values read in a terminal line: enum words, durations, times."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf.duration_pb2 import Duration

__all__ = ["duration_text", "enum_word", "utc_text"]


def enum_word(enum: Any, value: int, prefix: str) -> str:
    """An enum value's proto name without its prefix, lower case (``TIER_MANAGER`` ->
    ``manager``); the number itself for a value this client does not know."""
    try:
        return str(enum.Name(value)).removeprefix(prefix).lower()
    except ValueError:
        return str(value)


def duration_text(duration: Duration) -> str:
    """Whole seconds, ``95s``; ``-`` for none."""
    seconds = duration.seconds + duration.nanos / 1e9
    return f"{seconds:.0f}s" if seconds > 0 else "-"


def utc_text(epoch_ms: int) -> str:
    """``2025-01-06 10:12:03Z``: UTC, so operators in different places read the same time."""
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
