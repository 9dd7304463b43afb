"""``python -m services.auditor``: read every topic of a run and account for every contact.

Exit status 0 when nothing was lost or doubled, 1 otherwise; the report goes to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.auditor.ledger import AuditReport, Ledger
from services.common.access import ACCESS
from services.common.codec import decode_envelope
from services.common.errors import DecodeError
from services.common.topics import Topics

__all__ = ["audit_topics", "main"]


_Read = tuple[bytes | None, tuple, int, int]  # type: ignore[type-arg]  # value, headers, partition, offset


async def _read_topic(bootstrap_servers: str, topic: str) -> list[_Read]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    out: list[_Read] = []
    try:
        if topic not in await consumer.topics():
            return out
        # topics() does not fill the consumer's metadata cache; ask for it explicitly.
        await consumer._client.force_metadata_update()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            return out
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=200, max_records=10_000)
            for records in batch.values():
                out.extend(
                    (r.value, tuple(r.headers or ()), r.partition, r.offset) for r in records
                )
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return out


async def audit_topics(
    bootstrap_servers: str,
    topics: Topics,
    *,
    run_finished: bool = True,
    check_notifications: bool = True,
    check_escalations: bool = True,
) -> AuditReport:
    """Read the run's topics (inputs first, then decisions, escalations, notifications)."""
    ledger = Ledger()
    order = [
        topics.agent_events,
        topics.contact_events,
        topics.routing_decisions,
        topics.escalations,
        topics.notifications,
    ]
    refused: set[tuple[str, int, int]] = set()
    for service in ACCESS:  # each service's own dead letters: one per record it refused
        letters = await _read_topic(bootstrap_servers, topics.dead_letters(service))
        for _ in letters:
            ledger.add_dead_letter()
        if service == "router":
            refused = _refused_by_router(letters)
    for topic in order:
        for value, headers, partition, offset in await _read_topic(bootstrap_servers, topic):
            if (topic, partition, offset) in refused:
                continue  # the router never applied it: no contact, nothing to account for
            try:
                envelope = decode_envelope(value, headers)
            except DecodeError:
                continue  # dead-lettered by the services; counted above
            payload = envelope.WhichOneof("payload")
            if payload is not None:
                ledger.add(payload, getattr(envelope, payload), envelope.domain)
    return ledger.report(
        run_finished=run_finished,
        check_notifications=check_notifications,
        check_escalations=check_escalations,
    )


def _refused_by_router(letters: list[_Read]) -> set[tuple[str, int, int]]:
    """(topic, partition, offset) of the source records the router dead-lettered."""
    refused = set()
    for _, headers, _, _ in letters:
        h = dict(headers)
        if "dlq.source.topic" in h and "dlq.source.offset" in h:
            refused.add(
                (
                    h["dlq.source.topic"].decode(),
                    int(h.get("dlq.source.partition", b"0")),
                    int(h["dlq.source.offset"]),
                )
            )
    return refused


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    parser.add_argument("--topic-prefix", default="")
    parser.add_argument(
        "--allow-waiting", action="store_true", help="contacts may still be waiting (live run)"
    )
    args = parser.parse_args(argv)
    report = asyncio.run(
        audit_topics(
            args.bootstrap_servers, Topics(args.topic_prefix), run_finished=not args.allow_waiting
        )
    )
    print(report.summary())
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
