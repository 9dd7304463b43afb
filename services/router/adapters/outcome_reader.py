"""Read what escalation and the notifier recorded for one domain's window, for the
what-if's recorded column. Thin: seek, read, decode, keep the domain's records.

``escalations`` is keyed by escalation id and ``notifications`` by contact id, so a
domain's records are on every partition: each is read from the offset of the window's
first timestamp (``offsets_for_times``), committed records only, and records of other
domains are dropped here. ``notifications`` (an outcome record per notification) is read
until the window's end. ``escalations`` is compacted promptly: an escalation's first
record (raised) is replaced by its latest (acknowledged, resolved...), which may be
hours later, so it is read to the end of the topic; every escalation raised in the
window is then seen once, unless its case was forgotten since (after the escalation
service's ``retain_closed_s``, 3 days by default, its records are deleted).
"""

from __future__ import annotations

from collections import Counter

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.common.codec import decode_envelope
from services.common.config import KafkaSettings
from services.common.errors import DecodeError
from services.common.kafka_connection import connection_options
from services.common.topics import Topics
from services.router.recording import RecordedEvent, Stream

__all__ = ["MAX_OUTCOME_RECORDS", "read_outcomes"]

#: Most records read from both topics together; more is an error (the column shows "-").
MAX_OUTCOME_RECORDS = 2_000_000
#: Records a little out of timestamp order are still read this far past the end.
SLACK_MS = 60_000
#: Empty polls in a row (half a second each) after which a partition is taken as read.
MAX_IDLE_POLLS = 20


async def _partitions(settings: KafkaSettings, names: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(
        **connection_options(settings), request_timeout_ms=settings.request_timeout_ms
    )
    await admin.start()
    try:
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    counts = {
        str(t["topic"]): len(t["partitions"])
        for t in described
        if not t.get("error_code") and t.get("partitions")
    }
    missing = sorted(set(names) - set(counts))
    if missing:
        raise RuntimeError(f"topic {missing[0]!r} does not exist")
    return counts


async def read_outcomes(
    settings: KafkaSettings,
    topics: Topics,
    domain: str,
    since: float,
    until: float,
    *,
    max_records: int = MAX_OUTCOME_RECORDS,
) -> tuple[list[RecordedEvent], Counter[str]]:
    """The domain's ``escalations`` records from ``since`` to the topic's end and its
    ``notifications`` records within ``[since, until]`` (epoch seconds), and the
    records left out by reason. More than ``max_records`` read is a ``ValueError``."""
    plan = {Stream.ESCALATION: None, Stream.NOTIFICATION: int(until * 1000)}
    counts = await _partitions(settings, [topics.name(s.value) for s in plan])
    consumer = AIOKafkaConsumer(
        **connection_options(settings),
        enable_auto_commit=False,
        isolation_level="read_committed",
        request_timeout_ms=settings.request_timeout_ms,
    )
    events: list[RecordedEvent] = []
    skipped: Counter[str] = Counter()
    read = 0
    await consumer.start()
    try:
        for stream, until_ms in plan.items():
            topic = topics.name(stream.value)
            for partition in range(counts[topic]):
                tp = TopicPartition(topic, partition)
                consumer.assign([tp])
                found = await consumer.offsets_for_times({tp: int(since * 1000)})
                if found.get(tp) is None:
                    continue  # nothing at or after ``since``
                end = (await consumer.end_offsets([tp]))[tp]
                consumer.seek(tp, found[tp].offset)
                done, idle = False, 0
                while not done and await consumer.position(tp) < end and idle < MAX_IDLE_POLLS:
                    batch = await consumer.getmany(tp, timeout_ms=500, max_records=5_000)
                    records = batch.get(tp, [])
                    idle = 0 if records else idle + 1
                    for record in records:
                        if record.offset >= end or (
                            until_ms is not None and record.timestamp > until_ms + SLACK_MS
                        ):
                            done = True
                            break
                        read += 1
                        if read > max_records:
                            raise ValueError(f"more than {max_records} records on {topic}")
                        if until_ms is not None and record.timestamp > until_ms:
                            continue
                        if record.value is None:
                            continue  # a tombstone: an escalation forgotten with its case
                        try:
                            envelope = decode_envelope(record.value, tuple(record.headers))
                        except DecodeError:
                            skipped[f"{stream.value}: not an envelope"] += 1
                            continue
                        if envelope.domain == domain:
                            events.append(RecordedEvent(stream, record.timestamp / 1000, envelope))
    finally:
        await consumer.stop()
    return events, skipped
