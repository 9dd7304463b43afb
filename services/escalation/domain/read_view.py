"""Every domain's escalations as the compacted ``escalations`` topic holds them: what any
instance answers Watch and ListOpen from, whichever instance owns the domain.

The adapter feeds it every committed record of every partition in order: a change
replaces the escalation's state (a partition keeps one escalation's records in order, so
the latest record is the state, as a restore reads it), a tombstone removes it (its case
was forgotten, or the customer erased). Resolved escalations stay until their tombstone,
so the view holds exactly what the topic holds.

Bounded: past ``max_escalations`` a new escalation is refused (:class:`ReadViewFull`) and
the view marks itself incomplete for good (a record it skipped is not read again), so the
service answers with an error naming the setting rather than with a partial list.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from services.escalation.domain.core import oldest_first
from services.escalation.domain.model import (
    Escalation,
    EscalationChange,
    EscalationReason,
    Tier,
)

__all__ = ["EscalationReadView", "ReadViewFull"]


class ReadViewFull(Exception):
    """The view holds its most escalations; the one offered was not kept."""


@dataclass
class EscalationReadView:
    """The latest state of every escalation on the topic, by id."""

    max_escalations: int = 100_000
    _by_id: dict[str, Escalation] = field(default_factory=dict)
    #: Escalations refused because the view was full (it is incomplete if any).
    refused: int = 0

    def __len__(self) -> int:
        return len(self._by_id)

    @property
    def complete(self) -> bool:
        return self.refused == 0

    def apply(self, escalation_id: str, change: EscalationChange | None) -> EscalationChange | None:
        """One record of the topic (``None``: a tombstone); returns the change to stream to
        Watch (none for a tombstone). Raises :class:`ReadViewFull` for one escalation too
        many."""
        if change is None:
            self._by_id.pop(escalation_id, None)
            return None
        if escalation_id not in self._by_id and len(self._by_id) >= self.max_escalations:
            self.refused += 1
            raise ReadViewFull(
                f"the read view holds {self.max_escalations} escalations, its most "
                "(view.max_escalations); it is incomplete until the setting is raised and "
                "the instance restarted"
            )
        self._by_id[escalation_id] = change.escalation
        return change

    def get(self, escalation_id: str) -> Escalation | None:
        return self._by_id.get(escalation_id)

    def has_version(self, escalation_id: str, version: int) -> bool:
        """Whether the view shows ``escalation_id`` at ``version`` or later (or no longer
        holds it: it was deleted after)."""
        held = self._by_id.get(escalation_id)
        return held is None or held.version >= version

    def open_for(
        self,
        teams: Collection[str],
        tier: Tier | None = None,
        reason: EscalationReason | None = None,
    ) -> list[Escalation]:
        """Open and acknowledged escalations of ``teams``, oldest first, filtered (None: any)."""
        return oldest_first(
            e
            for e in self._by_id.values()
            if e.is_open
            and e.team in teams
            and (tier is None or e.tier is tier)
            and (reason is None or e.reason is reason)
        )

    def count_open(self) -> int:
        return sum(e.is_open for e in self._by_id.values())
