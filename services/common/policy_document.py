"""A domain's policy document (``policy.proto``'s ``PolicyVersion.document``): TOML with
up to three tables, each read by one service with its own parser.

    [routing]        # router.toml's [routing]: queues, skills, strategies, steps, capacity
    [escalation]     # escalation.toml's [escalation]: teams, tiers, people, calendars
    [notification]   # notifier.toml's [policy]: thresholds, quiet hours

Pure: :func:`policy_tables` reads the text, bounds it and names what is wrong; whether a
table's contents are valid is each service's parser's business (``RoutingPolicy.from_dict``,
``EscalationPolicy``'s, ``NotifierPolicy.from_dict``).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "MAX_COMMENT_CHARS",
    "MAX_DOCUMENT_BYTES",
    "TABLES",
    "PolicyDocumentError",
    "PolicyTable",
    "policy_tables",
]

PolicyTable = Literal["routing", "escalation", "notification"]
#: The tables a document may have, and which service reads each.
TABLES: dict[PolicyTable, str] = {
    "routing": "router",
    "escalation": "escalation",
    "notification": "notifier",
}
MAX_DOCUMENT_BYTES = 64 * 1024
MAX_COMMENT_CHARS = 500


@dataclass(frozen=True)
class PolicyDocumentError(Exception):
    """The document cannot be read; ``reason`` names the field (one line)."""

    reason: str

    def __str__(self) -> str:
        return self.reason


def policy_tables(document: str) -> dict[PolicyTable, dict[str, Any]]:
    """The document's tables (only those present), or :class:`PolicyDocumentError`."""
    size = len(document.encode("utf-8"))
    if size > MAX_DOCUMENT_BYTES:
        raise PolicyDocumentError(f"document: {size} bytes exceeds {MAX_DOCUMENT_BYTES}")
    try:
        data = tomllib.loads(document)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyDocumentError(f"document: not TOML ({exc})") from None
    unknown = sorted(set(data) - set(TABLES))
    if unknown:
        raise PolicyDocumentError(
            f"{unknown[0]}: unknown table (a policy has [routing], [escalation], [notification])"
        )
    tables: dict[PolicyTable, dict[str, Any]] = {}
    for name in TABLES:
        if name in data:
            table = data[name]
            if not isinstance(table, dict):
                raise PolicyDocumentError(f"{name}: must be a table")
            tables[name] = table
    if not tables:
        raise PolicyDocumentError("document: no [routing], [escalation] or [notification] table")
    return tables
