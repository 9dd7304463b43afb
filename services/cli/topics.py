"""``switchboard topics``: every Switchboard topic with its partitions, offsets and each
service group's lag (end offset minus the group's committed offset, summed over
partitions). Lag counts offsets, and a transactional topic has a marker after each
transaction, so a caught-up reader of routing.decisions may show a few."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.cli import kafka_client
from services.cli.kafka_options import add_kafka_options, kafka_settings
from services.common.access import ACCESS
from services.common.topics import Topics, load_topic_specs

__all__ = ["TopicState", "lag_of", "register", "topic_lines"]


@dataclass(frozen=True, slots=True)
class TopicState:
    """One topic: its offsets (None if the broker does not have it) and, per service whose
    group has committed offsets on it, that group's lag."""

    name: str
    offsets: kafka_client.Offsets | None
    lag: Mapping[str, int]


def lag_of(
    topic: str, offsets: kafka_client.Offsets, committed: Mapping[tuple[str, int], int]
) -> int | None:
    """The group's lag on ``topic``; None if it committed nothing there. A partition it has
    not committed on counts from the partition's first offset."""
    if not any((topic, p) in committed for p in range(len(offsets.end))):
        return None
    return sum(
        max(0, end - committed.get((topic, p), begin))
        for p, (begin, end) in enumerate(zip(offsets.begin, offsets.end, strict=True))
    )


def topic_lines(states: Sequence[TopicState], *, partitions: bool = False) -> list[str]:
    """A table; with ``partitions``, each partition's first and end offset below its topic."""
    width = max((len(s.name) for s in states), default=5)
    lines = [f"{'TOPIC':<{width}} {'PARTITIONS':>10} {'OFFSETS':>9}  LAG"]
    for s in states:
        if s.offsets is None:
            lines.append(f"{s.name:<{width}} {'missing':>10}")
            continue
        held = sum(e - b for b, e in zip(s.offsets.begin, s.offsets.end, strict=True))
        lag = ", ".join(f"{service} {n}" for service, n in s.lag.items()) or "-"
        lines.append(f"{s.name:<{width}} {len(s.offsets.end):>10} {held:>9}  {lag}")
        if partitions:
            lines.extend(
                f"  partition {p}: offsets {b}-{e}"
                for p, (b, e) in enumerate(zip(s.offsets.begin, s.offsets.end, strict=True))
            )
    return lines


async def _topics(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = kafka_settings(args, env)
    topics = Topics(settings.topic_prefix)
    names = [spec.name for spec in load_topic_specs(prefix=topics.prefix)]
    offsets = await kafka_client.offsets_of(settings, names)
    group_prefix = topics.prefix if args.group_prefix is None else args.group_prefix
    committed = {
        service: await kafka_client.committed_offsets(settings, f"{group_prefix}{service}")
        for service in ACCESS
    }
    states = []
    for name in names:
        found = offsets.get(name)
        lag: dict[str, int] = {}
        if found is not None:
            for service, done in committed.items():
                if (n := lag_of(name, found, done)) is not None:
                    lag[service] = n
        states.append(TopicState(name, found, lag))
    print("\n".join(topic_lines(states, partitions=args.partitions)))
    return 0


def register(commands: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Add ``topics`` to the ``switchboard`` parser."""
    parser = commands.add_parser(
        "topics",
        help="topics: partitions, offsets, each service's lag (operators)",
        description="Every Switchboard topic with its partitions, the offsets it holds "
        "(end minus first, summed over partitions: records and transaction markers) and "
        "each service group's lag (end offset minus the group's committed offset, summed "
        "over partitions). A transactional topic has a marker after each transaction, so "
        "a caught-up reader of routing.decisions may show a small lag.",
        formatter_class=formatter,
    )
    parser.add_argument(
        "--group-prefix",
        default=None,
        help="the services' consumer groups are <this><service> (default: the topic "
        "prefix; services name their group after themselves unless "
        "SWITCHBOARD_KAFKA__GROUP_ID says otherwise)",
    )
    parser.add_argument(
        "--partitions", action="store_true", help="also each partition's first and end offset"
    )
    add_kafka_options(parser)
    parser.set_defaults(run=_topics)
