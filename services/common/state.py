"""Per-domain service state persisted in a compacted changelog topic.

A service keeps one pure core per routing domain. After each batch it drains the cores'
changed entities and writes them, keyed ``<domain>/<entity>``, to its changelog on the
same partition number as the input records of that domain (inputs are keyed by domain,
so a domain always lives on one partition). The consume loop commits those records in
the same transaction as the outputs and offsets. On assignment of input partition *p*
the service reads changelog partition *p* back and rebuilds the cores of its domains;
on revocation it drops them. This is Kafka Streams' state-store pattern, in miniature.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from services.common.config import KafkaSettings
from services.common.kafka import OutboundRecord, read_changelog

__all__ = ["DomainStates", "decode_changelog", "encode_changes"]

_Core = TypeVar("_Core")
_SEPARATOR = "/"
_COMPACT = (",", ":")


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
class DomainStates(Generic[_Core]):
    """The cores this instance owns, which partition each lives on, and their changelog."""

    changelog_topic: str
    new_core: Callable[[str], _Core]
    restore_core: Callable[[str, Mapping[str, Any]], _Core]
    take_changes: Callable[[_Core], Mapping[str, Any | None]]
    cores: dict[str, _Core] = field(default_factory=dict)
    partition_of: dict[str, int] = field(default_factory=dict)

    def core_for(self, domain: str, partition: int) -> _Core:
        """The domain's core, created empty the first time the domain is seen."""
        core = self.cores.get(domain)
        if core is None:
            core = self.cores[domain] = self.new_core(domain)
        self.partition_of.setdefault(domain, partition)
        return core

    def items(self) -> Iterator[tuple[str, _Core]]:
        return iter(list(self.cores.items()))

    def drain(self) -> list[OutboundRecord]:
        """Changelog records for everything changed since the last drain."""
        records: list[OutboundRecord] = []
        for domain, core in self.cores.items():
            changes = self.take_changes(core)
            if changes:
                records.extend(
                    encode_changes(
                        self.changelog_topic, domain, self.partition_of.get(domain, 0), changes
                    )
                )
        return records

    async def restore(self, settings: KafkaSettings, partitions: Iterable[int]) -> int:
        """Rebuild the cores of every domain stored on ``partitions``; returns how many."""
        wanted = set(partitions)
        entries = await read_changelog(settings, self.changelog_topic, wanted)
        restored = decode_changelog(entries)
        for domain, (partition, entities) in restored.items():
            self.cores[domain] = self.restore_core(domain, entities)
            self.partition_of[domain] = partition
        return len(restored)

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget the domains on revoked partitions (their state is safe in the changelog)."""
        gone = set(partitions)
        for domain in [d for d, p in self.partition_of.items() if p in gone]:
            self.cores.pop(domain, None)
            self.partition_of.pop(domain, None)
