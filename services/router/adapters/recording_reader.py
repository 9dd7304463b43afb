"""Read one domain's window of ``contact.events``, ``agent.events`` and
``routing.decisions`` from Kafka, for the what-if. Thin: seek, read, decode.

Only the domain's own partition of each topic is read (murmur2 of the domain, as every
producer keys these topics), from the offset of the window's first timestamp
(``offsets_for_times``) until the last record at or before its end, committed records
only. A record that is no envelope is left out and counted, as the services dead-letter
it; records of other domains sharing the partition are sorted out by
:func:`services.router.recording.build_recording`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import murmur2

from services.common.codec import decode_envelope
from services.common.config import KafkaSettings
from services.common.errors import DecodeError
from services.common.kafka_connection import connection_options
from services.common.topics import Topics
from services.router.recording import MAX_EVENTS, RecordedEvent, Stream

__all__ = ["domain_partition", "read_window"]

#: Records a little out of timestamp order (producer clocks) are still read this far past
#: the end before the read stops.
SLACK_MS = 60_000
#: Empty polls in a row (half a second each) after which a partition is taken as read:
#: an open transaction holds the committed end below the end offset.
MAX_IDLE_POLLS = 20


def domain_partition(domain: str, partitions: int) -> int:
    """The partition a domain's records are on (the Java client's default partitioner)."""
    return int(murmur2(domain.encode()) & 0x7FFFFFFF) % partitions


async def _partition_counts(settings: KafkaSettings, names: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(
        **connection_options(settings), request_timeout_ms=settings.request_timeout_ms
    )
    await admin.start()
    try:
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    counts: dict[str, int] = {}
    for topic in described:
        if topic.get("error_code") or not topic.get("partitions"):
            raise RuntimeError(f"topic {topic.get('topic')!r} does not exist")
        counts[str(topic["topic"])] = len(topic["partitions"])
    missing = set(names) - set(counts)
    if missing:
        raise RuntimeError(f"topic {sorted(missing)[0]!r} does not exist")
    return counts


async def read_window(
    settings: KafkaSettings,
    topics: Topics,
    domain: str,
    ranges: Mapping[Stream, tuple[float, float]],
    *,
    max_records: int = MAX_EVENTS,
) -> tuple[list[RecordedEvent], Counter[str]]:
    """Records of ``domain`` with timestamps within ``ranges[stream]`` (epoch seconds),
    and the records left out by reason. More than ``max_records`` is an error."""
    consumer = AIOKafkaConsumer(
        **connection_options(settings),
        enable_auto_commit=False,
        isolation_level="read_committed",
        request_timeout_ms=settings.request_timeout_ms,
    )
    events: list[RecordedEvent] = []
    skipped: Counter[str] = Counter()
    counts = await _partition_counts(settings, [topics.name(s.value) for s in ranges])
    await consumer.start()
    try:
        for stream, (since, until) in ranges.items():
            topic = topics.name(stream.value)
            tp = TopicPartition(topic, domain_partition(domain, counts[topic]))
            consumer.assign([tp])
            found = await consumer.offsets_for_times({tp: int(since * 1000)})
            ends = await consumer.end_offsets([tp])
            if found.get(tp) is None:
                continue  # nothing at or after ``since``
            consumer.seek(tp, found[tp].offset)
            until_ms = int(until * 1000)
            end = ends[tp]
            done = False
            idle = 0
            while not done and await consumer.position(tp) < end and idle < MAX_IDLE_POLLS:
                batch = await consumer.getmany(tp, timeout_ms=500, max_records=5_000)
                records = batch.get(tp, [])
                idle = 0 if records else idle + 1
                for record in records:
                    if record.offset >= end or record.timestamp > until_ms + SLACK_MS:
                        done = True
                        break
                    if record.timestamp > until_ms or record.timestamp < since * 1000:
                        continue
                    try:
                        envelope = decode_envelope(record.value, tuple(record.headers))
                    except DecodeError:
                        skipped[f"{stream.value}: not an envelope"] += 1
                        continue
                    events.append(RecordedEvent(stream, record.timestamp / 1000, envelope))
                    if len(events) > max_records:
                        raise ValueError(f"more than {max_records} records: narrow the window")
    finally:
        await consumer.stop()
    return events, skipped


async def read_applied_policy(
    settings: KafkaSettings, topics: Topics, domain: str
) -> tuple[int, str] | None:
    """The version and document of ``domain``'s policy in force: the last ``policies``
    record of the domain (compacted, keyed by domain, on its murmur2 partition), or
    ``None`` if the domain runs on the configured default."""
    topic = topics.name("policies")
    counts = await _partition_counts(settings, [topic])
    tp = TopicPartition(topic, domain_partition(domain, counts[topic]))
    consumer = AIOKafkaConsumer(
        **connection_options(settings),
        enable_auto_commit=False,
        isolation_level="read_committed",
        request_timeout_ms=settings.request_timeout_ms,
    )
    await consumer.start()
    found: tuple[int, str] | None = None
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        idle = 0
        while await consumer.position(tp) < end and idle < MAX_IDLE_POLLS:
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=1_000)
            records = batch.get(tp, [])
            idle = 0 if records else idle + 1
            for record in records:
                if record.key != domain.encode() or record.value is None:
                    continue
                try:
                    envelope = decode_envelope(record.value, tuple(record.headers))
                except DecodeError:
                    continue
                if envelope.WhichOneof("payload") == "policy_changed":
                    current = envelope.policy_changed.current
                    if found is None or current.version > found[0]:
                        found = (current.version, current.document)
    finally:
        await consumer.stop()
    return found
