"""The commands' thin Kafka adapter: read the newest records of a topic, one record at an
offset, end offsets and a group's committed offsets, and send records. No group is
joined and nothing is committed; reads are ``read_committed`` (services write in
transactions). Every read has a deadline and a bound on what it holds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.common.config import KafkaSettings
from services.common.errors import ConfigError
from services.common.kafka import InboundRecord, OutboundRecord
from services.common.kafka_connection import connection_options

__all__ = [
    "MAX_HELD_BYTES",
    "Offsets",
    "Tail",
    "committed_offsets",
    "offsets_of",
    "read_at",
    "read_tail",
    "send",
]

#: Most record bytes one read keeps in memory (a dead letter is at most ~1 MB).
MAX_HELD_BYTES = 256 * 1024 * 1024
CLIENT_ID = "switchboard-cli"


@dataclass(frozen=True, slots=True)
class Tail:
    """The newest records of a topic; ``older`` when some partition had more before them."""

    records: list[InboundRecord]
    older: bool


@dataclass(frozen=True, slots=True)
class Offsets:
    """Per partition of a topic: where its records begin and end (the next offset)."""

    begin: tuple[int, ...]
    end: tuple[int, ...]


def _consumer(settings: KafkaSettings) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        **connection_options(settings),
        client_id=CLIENT_ID,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        request_timeout_ms=settings.request_timeout_ms,
    )


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition] | None:
    """The topic's partitions, or None if the broker does not know it (or hides it)."""
    if topic not in await consumer.topics():
        return None
    await consumer._client.force_metadata_update()  # topics() leaves the cache unfilled
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


def _inbound(record: Any, with_value: bool) -> InboundRecord:
    return InboundRecord(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value if with_value else None,
        headers=tuple(record.headers or ()),
        timestamp_ms=record.timestamp,
    )


async def read_tail(
    settings: KafkaSettings,
    topic: str,
    *,
    per_partition: int,
    keep: Callable[[InboundRecord], bool] = lambda _: True,
    with_values: bool = False,
    timeout_s: float = 30.0,
) -> Tail | None:
    """The last ``per_partition`` offsets of each partition of ``topic`` that ``keep``
    accepts (values only if ``with_values``); None if there is no such topic."""
    consumer = _consumer(settings)
    try:
        await consumer.start()
        partitions = await _partitions(consumer, topic)
        if partitions is None:
            return None
        if not partitions:
            return Tail([], older=False)
        consumer.assign(partitions)
        begins = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        starts = {tp: max(begins[tp], ends[tp] - per_partition) for tp in partitions}
        for tp, start in starts.items():
            consumer.seek(tp, start)
        older = any(starts[tp] > begins[tp] for tp in partitions)
        remaining = {tp for tp in partitions if ends[tp] > starts[tp]}
        kept: list[InboundRecord] = []
        held = 0
        deadline = asyncio.get_running_loop().time() + timeout_s
        while remaining:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{topic}: not read to its end within {timeout_s:g} s")
            batch = await consumer.getmany(*remaining, timeout_ms=200, max_records=1000)
            for records in batch.values():
                for raw in records:
                    record = _inbound(raw, with_value=True)
                    if not keep(record):
                        continue
                    held += len(record.value or b"") if with_values else 0
                    if held > MAX_HELD_BYTES:
                        raise ConfigError(
                            f"{topic}: more than {MAX_HELD_BYTES // 2**20} MiB of records "
                            "selected; narrow the selection"
                        )
                    kept.append(record if with_values else _inbound(raw, with_value=False))
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return Tail(kept, older)
    finally:
        await consumer.stop()


async def read_at(
    settings: KafkaSettings, topic: str, partition: int, offset: int, *, timeout_s: float = 30.0
) -> InboundRecord | None:
    """The committed record at ``offset`` of ``topic``'s ``partition``, or None if there is
    none (out of range, aged out, a transaction marker, or no such topic)."""
    consumer = _consumer(settings)
    try:
        await consumer.start()
        partitions = await _partitions(consumer, topic)
        tp = TopicPartition(topic, partition)
        if partitions is None or tp not in partitions:
            return None
        consumer.assign([tp])
        begin = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        if not begin <= offset < end:
            return None
        consumer.seek(tp, offset)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while await consumer.position(tp) <= offset:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{topic}/{partition}@{offset}: not read within {timeout_s:g} s")
            batch = await consumer.getmany(tp, timeout_ms=200, max_records=1)
            for raw in batch.get(tp, ()):
                if raw.offset == offset:
                    return _inbound(raw, with_value=True)
                if raw.offset > offset:
                    return None
        return None
    finally:
        await consumer.stop()


async def offsets_of(settings: KafkaSettings, topics: Sequence[str]) -> dict[str, Offsets]:
    """Begin and end offsets of each of ``topics`` the broker knows (and lets us see)."""
    consumer = _consumer(settings)
    try:
        await consumer.start()
        found: dict[str, list[TopicPartition]] = {}
        for topic in topics:
            partitions = await _partitions(consumer, topic)
            if partitions:
                found[topic] = partitions
        every = [tp for partitions in found.values() for tp in partitions]
        begins = await consumer.beginning_offsets(every) if every else {}
        ends = await consumer.end_offsets(every) if every else {}
        return {
            topic: Offsets(tuple(begins[tp] for tp in tps), tuple(ends[tp] for tp in tps))
            for topic, tps in found.items()
        }
    finally:
        await consumer.stop()


async def committed_offsets(settings: KafkaSettings, group: str) -> dict[tuple[str, int], int]:
    """The group's committed offsets, by (topic, partition); empty for an unknown group."""
    admin = AIOKafkaAdminClient(**connection_options(settings), client_id=CLIENT_ID)
    try:
        await admin.start()
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {
        (tp.topic, tp.partition): meta.offset for tp, meta in offsets.items() if meta.offset >= 0
    }


async def send(settings: KafkaSettings, records: Sequence[OutboundRecord]) -> list[tuple[int, int]]:
    """Produce ``records`` (idempotent, acks=all; partitioned by murmur2 of the key, as the
    services and the Java client); their (partition, offset), in order."""
    producer = AIOKafkaProducer(
        **connection_options(settings),
        client_id=CLIENT_ID,
        acks="all",
        enable_idempotence=True,
        request_timeout_ms=settings.request_timeout_ms,
    )
    try:
        await producer.start()
        placed = []
        for out in records:
            meta = await producer.send_and_wait(
                out.topic, out.value, key=out.key, headers=list(out.headers)
            )
            placed.append((meta.partition, meta.offset))
        return placed
    finally:
        await producer.stop()
