"""Per-domain service state persisted in a compacted changelog topic.

A service keeps one pure core per routing domain. After each cycle it drains the cores'
changed entities and writes them, keyed ``<domain>/<entity>``, to its changelog on the
same partition number as the input records of that domain (inputs are keyed by domain,
so a domain always lives on one partition). The consume loop commits those records in
the same transaction as the outputs and offsets of that partition. On assignment of
partition *p* the service reads changelog partition *p* back and rebuilds the cores of
its domains; on revocation (or when fenced) it drops them. This is Kafka Streams'
state-store pattern, in miniature.

The domain's event-id dedupe window lives here too (:class:`EventIdWindow`), stored as
``<domain>/~seen/<n>`` chunks in the same changelog, so a re-sent event is still
ignored after a restart or a failover, and the same id in two domains is two events.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from switchboard.v1.envelope_pb2 import Envelope

from services.common.config import KafkaSettings
from services.common.errors import RejectedEvent
from services.common.kafka import InboundRecord, OutboundRecord, read_changelog

__all__ = [
    "DomainStateHandler",
    "DomainStates",
    "EventIdWindow",
    "StatefulCore",
    "decode_changelog",
    "encode_changes",
]

_SEPARATOR = "/"
_COMPACT = (",", ":")
#: Changelog entities of the dedupe window: ``<domain>/~seen/<chunk number>``.
SEEN_PREFIX = "~seen/"
#: Ids per stored chunk; the newest chunk is rewritten until it is full (so a drain
#: re-encodes at most this many ids per domain, and a domain has max_ids / SEEN_CHUNK keys).
SEEN_CHUNK = 64


class StatefulCore(Protocol):
    """What :class:`DomainStates` needs of a service's pure core."""

    def next_deadline(self) -> float | None: ...

    def take_changes(self) -> Mapping[str, Any | None]: ...


_Core = TypeVar("_Core", bound=StatefulCore)


def encode_changes(
    topic: str, domain: str, partition: int, changes: Mapping[str, Any | None]
) -> list[OutboundRecord]:
    """Changelog records for one domain's changed entities (``None`` deletes the entity)."""
    return [
        OutboundRecord(
            topic=topic,
            key=f"{domain}{_SEPARATOR}{entity}".encode(),
            value=None if snapshot is None else json.dumps(snapshot, separators=_COMPACT).encode(),
            partition=partition,
        )
        for entity, snapshot in changes.items()
    ]


def decode_changelog(
    entries: Mapping[bytes, tuple[int, bytes]],
) -> dict[str, tuple[int, dict[str, Any]]]:
    """{domain: (partition, {entity: snapshot})} from the latest changelog values."""
    domains: dict[str, tuple[int, dict[str, Any]]] = {}
    for key, (partition, value) in entries.items():
        domain, _, entity = key.decode().partition(_SEPARATOR)
        _, entities = domains.setdefault(domain, (partition, {}))
        entities[entity] = json.loads(value)
    return domains


@dataclass
class _Chunk:
    number: int
    first_at: float
    ids: list[str]


@dataclass
class EventIdWindow:
    """The event ids one domain has applied, bounded by count and age, oldest out first.

    Persisted in chunks of :data:`SEEN_CHUNK` ids: each drain rewrites the newest chunk
    (compaction keeps its latest value) and tombstones the chunks that aged out, so the
    changelog holds about ``max_ids / SEEN_CHUNK`` keys per domain, not one per event.
    """

    max_ids: int
    max_age_s: float
    _ids: set[str] = field(default_factory=set)
    _chunks: deque[_Chunk] = field(default_factory=deque)
    _by_number: dict[int, _Chunk] = field(default_factory=dict)
    _dirty: set[int] = field(default_factory=set)
    _gone: set[int] = field(default_factory=set)

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, event_id: str, now: float) -> None:
        if event_id in self._ids:
            return
        tail = self._chunks[-1] if self._chunks else None
        if tail is None or len(tail.ids) >= SEEN_CHUNK:
            tail = _Chunk(tail.number + 1 if tail else 0, now, [])
            self._chunks.append(tail)
            self._by_number[tail.number] = tail
        tail.ids.append(event_id)
        self._ids.add(event_id)
        self._dirty.add(tail.number)
        self._expire(now)

    def _expire(self, now: float) -> None:
        # The newest chunk always stays: the window never forgets what it just learnt.
        while len(self._chunks) > 1 and (
            len(self._ids) - len(self._chunks[0].ids) >= self.max_ids
            # every id of the oldest chunk is older than the next chunk's first
            or self._chunks[1].first_at < now - self.max_age_s
        ):
            old = self._chunks.popleft()
            del self._by_number[old.number]
            self._ids.difference_update(old.ids)
            self._dirty.discard(old.number)
            self._gone.add(old.number)

    def take_changes(self) -> dict[str, Any | None]:
        """Changelog entities changed since the last call (``None``: delete the chunk)."""
        if not self._dirty and not self._gone:
            return {}
        changes: dict[str, Any | None] = {f"{SEEN_PREFIX}{n}": None for n in self._gone}
        for number in self._dirty:
            chunk = self._by_number[number]
            changes[f"{SEEN_PREFIX}{number}"] = {"at": chunk.first_at, "ids": chunk.ids}
        self._dirty.clear()
        self._gone.clear()
        return changes

    @classmethod
    def restore(
        cls, max_ids: int, max_age_s: float, chunks: Mapping[str, Mapping[str, Any]]
    ) -> EventIdWindow:
        """Rebuild from stored chunks (entity name -> ``{"at": ..., "ids": [...]}``)."""
        window = cls(max_ids, max_age_s)
        ordered = sorted((int(name.removeprefix(SEEN_PREFIX)), v) for name, v in chunks.items())
        for number, value in ordered:
            ids = [str(i) for i in value["ids"]]
            chunk = _Chunk(number, float(value["at"]), ids)
            window._chunks.append(chunk)
            window._by_number[number] = chunk
            window._ids.update(ids)
        return window


@dataclass
class DomainStates(Generic[_Core]):
    """The cores this instance owns, which partition each lives on, their dedupe windows,
    and their changelog."""

    changelog_topic: str
    new_core: Callable[[str], _Core]
    restore_core: Callable[[str, Mapping[str, Any]], _Core]
    dedupe_max_ids: int = 10_000
    dedupe_max_age_s: float = 3_600.0
    #: Most domains (tenants) one instance holds a core for.
    max_domains: int = 10_000
    cores: dict[str, _Core] = field(default_factory=dict)
    partition_of: dict[str, int] = field(default_factory=dict)
    _domains_on: dict[int, set[str]] = field(default_factory=dict)
    _seen: dict[str, EventIdWindow] = field(default_factory=dict)

    @classmethod
    def for_service(
        cls,
        service: str,
        kafka: KafkaSettings,
        topics_changelog: Callable[[str], str],
        new_core: Callable[[str], _Core],
        restore_core: Callable[[str, Mapping[str, Any]], _Core],
    ) -> DomainStates[_Core]:
        """The usual wiring: the service's changelog topic and the dedupe bounds of ``kafka``."""
        return cls(
            changelog_topic=topics_changelog(service),
            new_core=new_core,
            restore_core=restore_core,
            dedupe_max_ids=kafka.dedupe_max_ids,
            dedupe_max_age_s=kafka.dedupe_max_age_s,
            max_domains=kafka.max_domains,
        )

    def _place(self, domain: str, partition: int) -> None:
        if domain not in self.partition_of:
            self.partition_of[domain] = partition
            self._domains_on.setdefault(partition, set()).add(domain)

    def core_for(self, domain: str, partition: int) -> _Core:
        """The domain's core, created empty the first time the domain is seen; past
        ``max_domains`` a new domain is refused (each holds a core in memory)."""
        core = self.cores.get(domain)
        if core is None:
            if len(self.cores) >= self.max_domains:
                raise RejectedEvent(
                    f"domain {domain!r}: this instance already serves {self.max_domains} "
                    "domains (kafka.max_domains)"
                )
            core = self.cores[domain] = self.new_core(domain)
        self._place(domain, partition)
        return core

    def adopt(self, domain: str, partition: int, core: _Core) -> None:
        """Own ``core`` for ``domain`` (restored from elsewhere than the changelog)."""
        self.cores[domain] = core
        self._place(domain, partition)

    def items(self) -> Iterator[tuple[str, _Core]]:
        return iter(list(self.cores.items()))

    def on_partition(self, partition: int) -> list[tuple[str, _Core]]:
        """The cores of the domains that live on ``partition``."""
        return [
            (d, core)
            for d in self._domains_on.get(partition, ())
            if (core := self.cores.get(d)) is not None
        ]

    def next_deadline(self, partition: int) -> float | None:
        deadlines = [
            d for _, core in self.on_partition(partition) if (d := core.next_deadline()) is not None
        ]
        return min(deadlines, default=None)

    def due(self, partition: int, now: float) -> list[tuple[str, _Core]]:
        """Cores on ``partition`` with a timer due at ``now``."""
        return [
            (domain, core)
            for domain, core in self.on_partition(partition)
            if (d := core.next_deadline()) is not None and d <= now
        ]

    # -- dedupe --------------------------------------------------------------------

    def seen_before(self, domain: str, event_id: str) -> bool:
        window = self._seen.get(domain)
        return window is not None and event_id in window

    def remember(self, domain: str, partition: int, event_id: str, now: float) -> None:
        window = self._seen.get(domain)
        if window is None:
            window = self._seen[domain] = EventIdWindow(self.dedupe_max_ids, self.dedupe_max_age_s)
        self._place(domain, partition)
        window.add(event_id, now)

    # -- changelog -----------------------------------------------------------------

    def drain(self, partition: int) -> list[OutboundRecord]:
        """Changelog records for everything on ``partition`` changed since the last drain."""
        records: list[OutboundRecord] = []
        for domain in self._domains_on.get(partition, ()):
            changes: dict[str, Any | None] = {}
            core = self.cores.get(domain)
            if core is not None:
                changes.update(core.take_changes())
            window = self._seen.get(domain)
            if window is not None:
                changes.update(window.take_changes())
            if changes:
                records.extend(encode_changes(self.changelog_topic, domain, partition, changes))
        return records

    async def restore(self, settings: KafkaSettings, partitions: Iterable[int]) -> int:
        """Rebuild the cores of every domain stored on ``partitions``; returns how many."""
        wanted = set(partitions)
        entries = await read_changelog(
            settings, self.changelog_topic, wanted, wait_in_doubt_s=settings.restore_wait_s
        )
        restored = decode_changelog(entries)
        cores = 0
        for domain, (partition, entities) in restored.items():
            seen = {k: v for k, v in entities.items() if k.startswith(SEEN_PREFIX)}
            snapshots = {k: v for k, v in entities.items() if not k.startswith(SEEN_PREFIX)}
            if snapshots:
                self.cores[domain] = self.restore_core(domain, snapshots)
                cores += 1
            if seen:
                self._seen[domain] = EventIdWindow.restore(
                    self.dedupe_max_ids, self.dedupe_max_age_s, seen
                )
            self._place(domain, partition)
        return cores

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget the domains on ``partitions`` (their committed state is in the changelog)."""
        for partition in set(partitions):
            for domain in self._domains_on.pop(partition, set()):
                self.cores.pop(domain, None)
                self.partition_of.pop(domain, None)
                self._seen.pop(domain, None)


class DomainStateHandler(Generic[_Core]):
    """The part of :class:`services.common.kafka.EventHandler` every service's handler has
    in common: timers, changelog, dedupe and revocation only ask the domain states.
    A handler sets ``states`` and adds ``handle``, ``on_timer`` and ``on_assigned``."""

    states: DomainStates[_Core]

    def next_deadline(self, partition: int) -> float | None:
        return self.states.next_deadline(partition)

    def drain_changelog(self, partition: int) -> Sequence[OutboundRecord]:
        return self.states.drain(partition)

    def on_refused(
        self, envelope: Envelope, record: InboundRecord, reason: str
    ) -> Sequence[OutboundRecord]:
        return []

    def seen_before(self, domain: str, event_id: str) -> bool:
        return self.states.seen_before(domain, event_id)

    def remember(self, domain: str, partition: int, event_id: str, now: float) -> None:
        self.states.remember(domain, partition, event_id, now)

    async def on_revoked(self, partitions: set[int]) -> None:
        self.states.drop(partitions)
