"""Topic names and their definitions, from ``deploy/topics.toml``.

Every service addresses topics through :class:`Topics`, which applies the configured
prefix, so tests (and tenants) can share one broker without seeing each other's data.
Dead letters go to one topic per service, ``<service>.dlq``: a record every service
refuses is there once per service that refused it, and each service writes only its own.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from services.common.errors import ConfigError

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

    def dead_letters(self, service: str) -> str:
        """The dead-letter topic of ``service`` (a service name, e.g. ``router.dlq``): what
        it refused, from whichever topic, and what it could not deliver."""
        if not service or "." in service:
            raise ValueError(f"a service name, not a topic, is expected: {service!r}")
        return self.name(f"{service}{DLQ_SUFFIX}")

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
    """Read topic definitions (the services' dead-letter topics are listed there too)."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    defaults = data.get("defaults", {})
    specs: list[TopicSpec] = []
    for base, raw in data["topics"].items():
        entry = {**defaults, **raw}
        if "dlq" in entry:
            raise ConfigError(
                f"{path.name}: topics.{base!r}: 'dlq' is gone; dead letters go to one topic "
                "per service, '<service>.dlq', listed as topics of their own"
            )
        compacted = bool(entry.get("compacted", False))
        specs.append(
            TopicSpec(
                name=f"{prefix}{base}",
                partitions=int(entry["partitions"]),
                compacted=compacted,
                # A compacted topic keeps the latest value per key for ever.
                retention_ms=(
                    None if compacted or "retention_ms" not in entry else int(entry["retention_ms"])
                ),
            )
        )
    return specs
