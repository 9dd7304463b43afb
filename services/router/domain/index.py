"""The core's two indexes: ready agents (heaps) and waiting lines (sorted lists).

Their design and invariants are described at the top of ``core.py``; this module holds
the data structures and nothing else: which agent or contact to pick is decided there.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.router.domain.model import AgentState, Priority
from services.router.domain.policy import Strategy
from services.router.domain.records import AgentRecord, ContactRecord

__all__ = ["ANY", "COMPACT_SLACK", "ReadyAgents", "StaffCounts", "WaitingLines", "strategy_key"]

ANY = "*"  # language or skill wildcard bucket
#: A ready-agent heap is rebuilt without its stale entries once it holds this many more
#: than twice its live entries: amortised O(1) per push, and never every heap at once.
COMPACT_SLACK = 64

_Bucket = tuple[Strategy, int, str, str, int]  # strategy, channel, language, skill, level
_Found = tuple[tuple[Any, ...], AgentRecord]  # (strategy key, agent)


def strategy_key(strategy: Strategy, agent: AgentRecord) -> tuple[Any, ...]:
    """Heap order of ready agents: smallest first. Each key ends with the agent id, so
    ties go to the lowest id."""
    if strategy == Strategy.LEAST_OCCUPIED:
        return (agent.occupancy(), agent.idle_since, agent.agent_id)
    if strategy == Strategy.ROUND_ROBIN:
        return (agent.last_offer_seq, agent.agent_id)
    return (agent.idle_since, agent.agent_id)  # LONGEST_IDLE, and MOST_PROFICIENT per level


@dataclass(init=False)  # a dataclass for ``==`` on the indexed data: tests compare cores
class ReadyAgents:
    """Heaps of ready agents per (strategy, channel, language, skill, level), lazily
    invalidated: an entry carries the agent's version and is stale once it differs."""

    _heaps: dict[_Bucket, list[tuple[Any, ...]]]
    _compact_at: dict[_Bucket, int]
    _strategies: frozenset[Strategy] = field(compare=False)
    _max_total: int = field(compare=False)
    _agents: Mapping[str, AgentRecord] = field(compare=False)

    def __init__(
        self, strategies: Iterable[Strategy], max_total: int, agents: Mapping[str, AgentRecord]
    ) -> None:
        self._strategies = frozenset(strategies)
        self._max_total = max_total
        self._agents = agents  # the core's own dict, read to tell live entries from stale
        self._heaps: dict[_Bucket, list[tuple[Any, ...]]] = {}
        self._compact_at: dict[_Bucket, int] = {}

    def push(self, agent: AgentRecord) -> None:
        """Index ``agent`` (at its current version) wherever it could take a contact now."""
        if agent.state != AgentState.AVAILABLE:
            return
        langs = (*agent.languages, ANY)
        skills = (*agent.skills.items(), (ANY, 10))
        max_total = self._max_total
        for strategy in self._strategies:
            entry = (*strategy_key(strategy, agent), agent.version, agent.agent_id)
            for channel, limit in agent.capacity.items():
                if limit <= 0 or not agent.can_take(channel, max_total):
                    continue
                for lang in langs:
                    for skill, level in skills:
                        bucket = (strategy, channel, lang, skill, level)
                        heap = self._heaps.setdefault(bucket, [])
                        heapq.heappush(heap, entry)
                        if len(heap) > self._compact_at.get(bucket, COMPACT_SLACK):
                            self._compact(bucket, heap)

    def search(
        self, strategy: Strategy, contact: ContactRecord, skills: Mapping[str, int], language: str
    ) -> _Found | None:
        """Best ready agent eligible for ``contact`` (:meth:`AgentRecord.eligible_for`)
        among the heap heads of its most demanding skill, at that skill's minimum level
        and up; ranked by level first for MOST_PROFICIENT, else by the strategy key."""
        if skills:
            primary = min(skills, key=lambda s: (-skills[s], s))
            low = skills[primary]
        else:
            primary, low = ANY, 10
        lang = language or ANY
        channel = contact.channel
        best: _Found | None = None
        for level in range(10, low - 1, -1):
            heap = self._heaps.get((strategy, channel, lang, primary, level))
            if not heap:
                continue
            found = self._first_eligible(heap, contact, skills, language)
            if found is None:
                continue
            rank = (0 if strategy != Strategy.MOST_PROFICIENT else -level, *found[0])
            if best is None or rank < best[0]:
                best = (rank, found[1])
            if strategy == Strategy.MOST_PROFICIENT:
                break  # higher levels come first and dominate
        return best

    def _first_eligible(
        self,
        heap: list[tuple[Any, ...]],
        contact: ContactRecord,
        skills: Mapping[str, int],
        language: str,
    ) -> _Found | None:
        """The head-most live entry whose agent is eligible; drops stale heads on the way
        and puts back the live ones it passed over."""
        skipped: list[tuple[Any, ...]] = []
        result: _Found | None = None
        agents, max_total = self._agents, self._max_total
        while heap:
            entry = heap[0]
            agent = agents.get(entry[-1])
            if (
                agent is None
                or agent.version != entry[-2]
                or not agent.can_take(contact.channel, max_total)
            ):
                heapq.heappop(heap)  # stale: the agent changed since this entry was pushed
                continue
            if agent.eligible_for(contact, skills, language, max_total):
                result = (entry[:-2], agent)
                break
            skipped.append(heapq.heappop(heap))
        for entry in skipped:
            heapq.heappush(heap, entry)
        return result

    def entries(self) -> int:
        """Entries in the index, live and stale (memory must track the agents)."""
        return sum(len(heap) for heap in self._heaps.values())

    def _compact(self, bucket: _Bucket, heap: list[tuple[Any, ...]]) -> None:
        """Drop one heap's stale entries so memory stays proportional to the agents."""
        agents = self._agents
        heap[:] = [e for e in heap if (a := agents.get(e[-1])) is not None and a.version == e[-2]]
        heapq.heapify(heap)
        self._compact_at[bucket] = 2 * len(heap) + COMPACT_SLACK


@dataclass(init=False)
class WaitingLines:
    """One sorted list of ``(key, seq, contact id)`` per queue; a contact's key never
    changes while it waits, so it keeps its place without re-sorting."""

    #: queue -> its line, head first. Read it (the core scans it on the hot path without
    #: a method call per queue); change it only through :meth:`add` and :meth:`remove`.
    by_queue: dict[str, list[tuple[float, int, str]]]
    _boost: Callable[[Priority], float] = field(compare=False)

    def __init__(self, queues: Iterable[str], boost: Callable[[Priority], float]) -> None:
        self.by_queue: dict[str, list[tuple[float, int, str]]] = {q: [] for q in queues}
        self._boost = boost

    def _entry(self, contact: ContactRecord) -> tuple[float, int, str]:
        key0, key1 = contact.key(self._boost(Priority(contact.priority)))
        return (key0, key1, contact.contact_id)

    def add(self, contact: ContactRecord) -> None:
        """Put ``contact`` in its queue's line at its place (no-op if already there)."""
        lst = self.by_queue[contact.queue]
        entry = self._entry(contact)
        i = bisect_left(lst, entry)
        if i == len(lst) or lst[i] != entry:
            insort(lst, entry)

    def remove(self, contact: ContactRecord) -> None:
        """Take ``contact`` out of its queue's line (no-op if not there, or if its queue
        has no line: a policy change removed it)."""
        lst = self.by_queue.get(contact.queue)
        if lst is None:
            return
        entry = self._entry(contact)
        i = bisect_left(lst, entry)
        if i < len(lst) and lst[i] == entry:
            del lst[i]

    def position(self, contact: ContactRecord) -> int:
        """1-based place of a waiting ``contact`` in its line."""
        key0, key1, _ = self._entry(contact)
        return bisect_left(self.by_queue[contact.queue], (key0, key1, "")) + 1

    def ids(self, queue: str) -> list[str]:
        return [c for _, _, c in self.by_queue[queue]]


@dataclass(init=False)
class StaffCounts:
    """Logged-in agents per (language, skill, proficiency), wildcards included: how many
    could serve a queue (staffing, estimates) and whether a contact is routable at all."""

    _counts: dict[tuple[str, str, int], int]

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, int], int] = {}

    def add(self, agent: AgentRecord, delta: int) -> None:
        """Count a logged-in agent in (``delta`` 1) or out (-1)."""
        counts = self._counts
        for lang in (*agent.languages, ANY):
            for skill, level in (*agent.skills.items(), (ANY, 10)):
                key = (lang, skill, max(1, min(10, level)))
                counts[key] = counts.get(key, 0) + delta

    def at_least(self, language: str, skill: str, level: int) -> int:
        """Agents speaking ``language`` with ``skill`` at ``level`` or above."""
        counts = self._counts
        return sum(counts.get((language, skill, q), 0) for q in range(max(1, level), 11))
