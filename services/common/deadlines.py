"""One heap of deadlines, so a tick costs O(due * log n), never a scan: the timer structure
of every pure core (offer timeouts, SLA clocks, notification deadlines). Pure: no I/O."""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["Deadlines"]

_K = TypeVar("_K", bound=Hashable)


@dataclass
class Deadlines(Generic[_K]):
    """At most one deadline per key; rescheduling or cancelling leaves a stale heap entry
    that is skipped when it surfaces (and swept when stale entries outnumber live ones)."""

    _live: dict[_K, tuple[float, int]] = field(default_factory=dict)
    _heap: list[tuple[float, int, _K]] = field(default_factory=list)
    _seq: int = 0

    def __len__(self) -> int:
        return len(self._live)

    def set(self, key: _K, when: float) -> None:
        """Schedule (or move) ``key``'s deadline."""
        current = self._live.get(key)
        if current is not None and current[0] == when:
            return
        self._seq += 1
        self._live[key] = (when, self._seq)
        heapq.heappush(self._heap, (when, self._seq, key))
        if len(self._heap) > 2 * len(self._live) + 64:
            self._heap = [(w, s, k) for k, (w, s) in self._live.items()]
            heapq.heapify(self._heap)

    def cancel(self, key: _K) -> None:
        self._live.pop(key, None)

    def get(self, key: _K) -> float | None:
        entry = self._live.get(key)
        return None if entry is None else entry[0]

    def fires_before(self, first: _K, then: _K) -> bool:
        """Whether ``first`` is scheduled to fire before ``then`` (or ``then`` is not
        scheduled): by time, and in scheduling order at equal times, as :meth:`pop_due`."""
        a, b = self._live.get(first), self._live.get(then)
        return a is not None and (b is None or a < b)

    def next(self) -> float | None:
        """The earliest live deadline."""
        self._skip_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> tuple[float, _K] | None:
        """The earliest deadline at or before ``now``, removed; None if nothing is due."""
        self._skip_stale()
        if not self._heap or self._heap[0][0] > now:
            return None
        when, _, key = heapq.heappop(self._heap)
        del self._live[key]
        return when, key

    def _skip_stale(self) -> None:
        while self._heap:
            when, seq, key = self._heap[0]
            if self._live.get(key) == (when, seq):
                return
            heapq.heappop(self._heap)
