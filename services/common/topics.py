"""Topic names and their definitions, from ``deploy/topics.toml``.

Every service addresses topics through :class:`Topics`, which applies the configured
prefix, so tests (and tenants) can share one broker without seeing each other's data.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_TOPICS_FILE",
    "DLQ_SUFFIX",
    "TopicSpec",
    "Topics",
    "load_topic_specs",
]

DLQ_SUFFIX = ".dlq"
DEFAULT_TOPICS_FILE = Path(__file__).resolve().parents[2] / "deploy" / "topics.toml"


@dataclass(frozen=True)
class Topics:
    """Names of the topics, with the prefix applied."""

    prefix: str = ""

    def name(self, base: str) -> str:
        return f"{self.prefix}{base}"

    def dlq(self, topic: str) -> str:
        """The dead-letter companion of an already-prefixed topic."""
        return f"{topic}{DLQ_SUFFIX}"

    @property
    def contact_events(self) -> str:
        return self.name("contact.events")

    @property
    def agent_events(self) -> str:
        return self.name("agent.events")

    @property
    def routing_decisions(self) -> str:
        return self.name("routing.decisions")

    @property
    def escalations(self) -> str:
        return self.name("escalations")

    @property
    def notifications(self) -> str:
        return self.name("notifications")

    def changelog(self, service: str) -> str:
        """Compacted state changelog of a service, e.g. ``router.changelog``."""
        return self.name(f"{service}.changelog")


@dataclass(frozen=True)
class TopicSpec:
    """One topic as provisioned."""

    name: str
    partitions: int
    compacted: bool
    retention_ms: int | None
    with_dlq: bool

    def configs(self) -> dict[str, str]:
        configs = {"cleanup.policy": "compact" if self.compacted else "delete"}
        if self.compacted:
            # Compact promptly so restore reads stay short.
            configs["min.cleanable.dirty.ratio"] = "0.1"
            configs["segment.ms"] = "600000"
        if self.retention_ms is not None:
            configs["retention.ms"] = str(self.retention_ms)
        return configs


def load_topic_specs(path: Path = DEFAULT_TOPICS_FILE, prefix: str = "") -> list[TopicSpec]:
    """Read topic definitions; each ``with_dlq`` topic also yields its ``.dlq`` companion."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    defaults = data.get("defaults", {})
    specs: list[TopicSpec] = []
    for base, raw in data["topics"].items():
        entry = {**defaults, **raw}
        compacted = bool(entry.get("compacted", False))
        spec = TopicSpec(
            name=f"{prefix}{base}",
            partitions=int(entry["partitions"]),
            compacted=compacted,
            # A compacted topic keeps the latest value per key for ever.
            retention_ms=(
                None if compacted or "retention_ms" not in entry else int(entry["retention_ms"])
            ),
            with_dlq=bool(entry.get("dlq", False)),
        )
        specs.append(spec)
        if spec.with_dlq:
            specs.append(
                TopicSpec(
                    name=spec.name + DLQ_SUFFIX,
                    partitions=spec.partitions,
                    compacted=False,
                    retention_ms=int(entry.get("dlq_retention_ms", 7 * 24 * 3600 * 1000)),
                    with_dlq=False,
                )
            )
    return specs
