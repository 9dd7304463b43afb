"""Create Switchboard's topics idempotently: ``python -m services.common.provision``.

Reads ``deploy/topics.toml``; topics that exist are left alone, but their partition
count is checked, because co-partitioning depends on it. Returns once every partition
of every topic has a leader, so the first producers do not start with retries.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Sequence
from pathlib import Path

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from services.common.errors import ConfigError
from services.common.topics import DEFAULT_TOPICS_FILE, TopicSpec, load_topic_specs

__all__ = ["ensure_topics", "main"]

log = structlog.get_logger("provision")


async def ensure_topics(bootstrap_servers: str, specs: Sequence[TopicSpec]) -> list[str]:
    """Create the missing topics; return the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="provision")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        if missing:
            # A concurrent provisioner may win the race; that is fine.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(
                            name=spec.name,
                            num_partitions=spec.partitions,
                            replication_factor=1,
                            topic_configs=spec.configs(),
                        )
                        for spec in missing
                    ]
                )
        await _wait_until_ready(admin, specs, created={spec.name for spec in missing})
        if missing:
            await _wait_until_led(bootstrap_servers, missing)
        return [spec.name for spec in missing]
    finally:
        await admin.close()


async def _wait_until_ready(
    admin: AIOKafkaAdminClient, specs: Sequence[TopicSpec], created: set[str]
) -> None:
    """Wait until every topic is listed with all its partitions led and in sync.

    Creation is asynchronous in the broker. A topic that already existed with another
    partition count is a configuration error: domains would no longer be co-partitioned
    across contact and agent events.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    wanted = {spec.name: spec.partitions for spec in specs}
    while True:
        waiting = []
        for topic in await admin.describe_topics(list(wanted)):
            name, partitions = topic["topic"], topic["partitions"]
            ready = topic["error_code"] == 0 and all(
                p["error_code"] == 0 and p["leader"] >= 0 and p["isr"] for p in partitions
            )
            if ready and name not in created and len(partitions) != wanted[name]:
                raise ConfigError(
                    f"topic {name!r} has {len(partitions)} partitions but deploy/topics.toml "
                    f"says {wanted[name]}; co-partitioning by domain needs them equal"
                )
            if not ready or len(partitions) != wanted[name]:
                waiting.append(name)
        if not waiting:
            break
        if loop.time() > deadline:
            raise TimeoutError(f"topics not ready after 30 s: {sorted(waiting)}")
        await asyncio.sleep(0.1)


async def _wait_until_led(bootstrap_servers: str, specs: Sequence[TopicSpec]) -> None:
    """Metadata names a leader a moment before that broker serves the partition (KRaft
    applies the change asynchronously); asking every leader for its end offset waits
    that out, so the first producers do not log NotLeaderForPartition retries."""
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, client_id="provision")
    await probe.start()
    try:
        partitions = [
            TopicPartition(spec.name, partition)
            for spec in specs
            for partition in range(spec.partitions)
        ]
        await asyncio.wait_for(probe.end_offsets(partitions), timeout=30)
    except (KafkaError, TimeoutError) as exc:  # best effort: producers retry on their own
        log.warning("new partitions not all served yet", error=repr(exc))
    finally:
        await probe.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    parser.add_argument("--prefix", default="")
    parser.add_argument("--file", type=Path, default=DEFAULT_TOPICS_FILE)
    args = parser.parse_args(argv)
    specs = load_topic_specs(args.file, args.prefix)
    created = asyncio.run(ensure_topics(args.bootstrap_servers, specs))
    print(f"topics: {len(specs)} defined, {len(created)} created")


if __name__ == "__main__":
    main()
