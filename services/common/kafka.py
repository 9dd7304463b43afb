"""The transactional consume-decide-produce loop every service runs, and its helpers.

The exactly-once argument, in one place (Kafka Streams is the model):

- **Ownership is by partition number.** Input topics are keyed by routing domain and
  co-partitioned (equal partition counts; murmur2 of the domain, as the Java client), and
  the group uses the range assignor, so partition *n* of every input topic goes to the
  same member: a domain's contact and agent events meet in one instance. This is checked
  at start (equal counts) and on every assignment (no split); a record whose domain does
  not hash to its partition is dead-lettered, never applied on the wrong owner.
- **One task per owned partition number**, with its own transactional producer whose
  ``transactional.id`` is derived from group and partition, the same on every instance.
  Taking a partition over starts that producer first (InitProducerId), which makes the
  broker fence the previous owner and abort its open transaction; only then is the
  partition's state restored from the changelog (to its real end: an in-doubt
  transaction is waited for). An instance that stalled (GC, VM pause, SIGSTOP) and
  resumes after its partitions moved is refused by the broker on its next write: it
  drops that partition's state and commits nothing for it.
- **One cycle**: poll a batch; decode each record (bad ones go to the service's own
  ``<service>.dlq`` with the reason and source in headers, as do an event on another
  topic than its payload's and a domain on the wrong partition; the handler's
  ``on_refused`` may answer each); skip an ``event_id`` its
  domain has applied before (the window lives in the domain's changelog state, so
  restarts and failovers keep it); hand the
  envelope to the :class:`EventHandler` (a thin adapter over a pure core that applies an
  event wholly or not at all); fire due timers of caught-up partitions; run queued
  commands (e.g. a manager's Acknowledge); collect the changelog; then, per partition,
  write outputs, dead letters, changelog records *and* the consumed offsets in one
  transaction. Tasks commit independently: while one task's transaction is in flight,
  the loop polls only the free tasks' partitions (the busy task's records wait in the
  fetch buffer, its timers and commands wait for it).
- **Nothing counts as handled until committed**: every produce of a transaction is
  confirmed before the commit, or the transaction aborts and is retried. A record larger
  than ``max_record_bytes`` never reaches the broker: it becomes a dead letter cut to fit.
- **Timers wait for the backlog**: after a takeover, a partition's timers (offer
  timeouts, SLA clocks, notification deadlines) fire only once its input has been read to
  the end offsets seen at assignment, so an accept already in the topic beats its timeout.

Readers use ``read_committed``, so a crash at any point leaves either all of a cycle's
effects on a partition or none: the next owner restores the changelog and resumes at the
committed offset, losing nothing and emitting nothing twice. A bad record never stops
the loop; a failed transaction is aborted and retried with backoff (the broker may be
restarting).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import (
    ConcurrentTransactions,
    InvalidProducerEpoch,
    KafkaError,
    KafkaTimeoutError,
    ProducerFenced,
    TransactionalIdAuthorizationFailed,
)
from aiokafka.partitioner import murmur2
from aiokafka.producer import sender as aiokafka_sender
from switchboard.v1.envelope_pb2 import Envelope

from services.common.clock import Clock, SystemClock
from services.common.codec import decode_envelope
from services.common.config import KafkaSettings
from services.common.contract import DEFAULT_TEXT_CHARS, home_topic, within_bounds
from services.common.errors import ConfigError, DecodeError, RejectedEvent
from services.common.kafka_connection import connection_options
from services.common.metrics import RuntimeMetrics
from services.common.topics import DLQ_SUFFIX, Topics

#: How late a timer may fire so that timers due close together share one cycle.
TIMER_SLACK_MS = 5
#: Retry delay for CONCURRENT_TRANSACTIONS right after a commit (aiokafka's default: 20 ms).
CONCURRENT_TRANSACTIONS_RETRY_S = 0.002
#: (topic, key) -> partition entries kept; keys are domains, so few in practice.
KEY_PARTITION_CACHE = 100_000
#: Backoff of aiokafka's other retries. Kafka 4 verifies each transactional write
#: (KIP-890) and answers an old client's write that races the verification with a
#: retriable NOT_ENOUGH_REPLICAS / COORDINATOR_NOT_AVAILABLE; with one producer per
#: partition committing concurrently that race is common, and a 10 ms backoff made a
#: cycle of 4 transactions take 15 ms instead of 6 (measured: bench/RESULTS.md).
RETRY_BACKOFF_MS = 2
#: While a transaction is in flight the loop polls at least this often, so the task it
#: frees takes the records that waited for it promptly.
BUSY_POLL_MS = 2
#: Room left for a dead letter's headers when its value is cut to fit.
DEAD_LETTER_HEADROOM = 16 * 1024
#: The topics whose events :func:`wrong_topic_reason` checks (unprefixed).
_OWN_TOPICS = frozenset(
    {
        "contact.events",
        "agent.events",
        "routing.decisions",
        "escalations",
        "notifications",
        "policies",
    }
)

__all__ = [
    "REPLAYED_FROM_HEADER",
    "ConsumeLoop",
    "EventHandler",
    "InboundRecord",
    "NotOwnedError",
    "OutboundRecord",
    "TopicPartition",
    "dead_letter_headers",
    "dead_letter_of_output",
    "dead_letter_record",
    "make_transactional_producer",
    "oversized_dead_letter",
    "read_changelog",
    "read_latest_records",
    "record_size",
    "transient",
    "wrong_partition_reason",
    "wrong_topic_reason",
]

log = structlog.get_logger("kafka")

Headers = tuple[tuple[str, bytes], ...]
_Result = TypeVar("_Result")
_Kept = TypeVar("_Kept")


@dataclass(frozen=True, slots=True)
class InboundRecord:
    """A consumed record, without aiokafka types."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class OutboundRecord:
    """A record to produce; ``value=None`` is a tombstone (deletes the key when compacted)."""

    topic: str
    value: bytes | None
    key: bytes | None = None
    partition: int | None = None
    headers: Headers = ()


class EventHandler(Protocol):
    """The service side of the loop, per owned partition number. Decision methods are
    synchronous: the core never awaits."""

    def handle(self, envelope: Envelope, record: InboundRecord) -> Sequence[OutboundRecord]:
        """Apply one event wholly or not at all; raise :class:`RejectedEvent` to dead-letter
        it with a reason (and nothing changed)."""
        ...

    def on_timer(self, partition: int, now: float) -> Sequence[OutboundRecord]:
        """Fire whatever is due at ``now`` in the domains on ``partition``."""
        ...

    def next_deadline(self, partition: int) -> float | None:
        """Epoch seconds of the earliest pending timer on ``partition``, if any."""
        ...

    def drain_changelog(self, partition: int) -> Sequence[OutboundRecord]:
        """State changes on ``partition`` since the last call, to persist in its transaction."""
        ...

    def on_refused(
        self, envelope: Envelope, record: InboundRecord, reason: str
    ) -> Sequence[OutboundRecord]:
        """Records that tell the event's producer it was refused (its dead letter is
        written by the loop either way); most handlers return none."""
        ...

    def seen_before(self, domain: str, event_id: str) -> bool:
        """Whether ``domain`` has already applied ``event_id`` (a re-sent event)."""
        ...

    def remember(self, domain: str, partition: int, event_id: str, now: float) -> None:
        """``domain`` applied ``event_id``: keep it (in the changelog) to skip a re-send."""
        ...

    async def on_assigned(self, partitions: set[int]) -> None:
        """Partition numbers taken over: restore their state before any record is handled."""
        ...

    async def on_revoked(self, partitions: set[int]) -> None:
        """Partition numbers given up or fenced: drop their state (the changelog has it)."""
        ...


def event_id_in(value: bytes | None) -> str:
    """The ``eventId`` of a JSON record that is not a valid envelope, if it has one (so its
    dead letter can be found by the id its producer knows); "" otherwise."""
    if not value or not value.lstrip().startswith(b"{") or len(value) > 1_000_000:
        return ""
    try:
        found = json.loads(value).get("eventId", "")
    except (ValueError, AttributeError):
        return ""
    return found[:128] if isinstance(found, str) else ""


def wrong_topic_reason(payload: str, topic: str) -> str | None:
    """Why an event with ``payload`` must not be read from ``topic`` (unprefixed), or None
    when it belongs there (or the topic is none of Switchboard's own)."""
    home = home_topic(payload)
    if home is None or home == topic or topic not in _OWN_TOPICS:
        return None
    return f"{payload} belongs on {home}, not {topic}: publish it there"


def wrong_partition_reason(domain: str, key: bytes | None, home: int, partition: int) -> str:
    """One line an integrator can act on: where the domain belongs and how to get it there."""
    where = (
        f"domain {domain!r} hashes to partition {home} with murmur2 (the Java client's "
        f"default) but arrived on partition {partition}"
    )
    librdkafka = "librdkafka clients (kcat, confluent-kafka) must set partitioner=murmur2_random"
    if key == domain.encode():
        return f"{where}; {librdkafka}"
    keyed = (
        "the record has no key"
        if key is None
        else f"its key is {key[:64].decode('utf-8', 'replace')!r}, not the domain"
    )
    return f"{where}; {keyed}: key each record by its domain ({librdkafka})"


#: The one ``dlq.*`` header an input may bring into its dead letter: set by
#: ``switchboard dlq replay``, it says a refused replay was a replay (and of which letter).
REPLAYED_FROM_HEADER = "dlq.replayed-from"


def dead_letter_headers(
    record: InboundRecord, reason: str, error: str, service: str, event_id: str = ""
) -> Headers:
    """Headers of a dead letter: why, and where it came from; the original headers follow
    (without any ``dlq.*`` header it brought, but ``dlq.replayed-from``)."""
    one_line = " ".join(reason.split())  # protobuf's JSON errors span lines
    own = (
        ("dlq.reason", one_line.encode("utf-8", "replace")[:2000]),
        ("dlq.error", error.encode()),
        ("dlq.service", service.encode()),
        ("dlq.source.topic", record.topic.encode()),
        ("dlq.source.partition", str(record.partition).encode()),
        ("dlq.source.offset", str(record.offset).encode()),
        ("dlq.event_id", event_id.encode()),
    )
    return own + tuple(
        h for h in record.headers if not h[0].startswith("dlq.") or h[0] == REPLAYED_FROM_HEADER
    )


def dead_letter_record(
    topics: Topics, record: InboundRecord, reason: str, error: str, service: str, event_id: str = ""
) -> OutboundRecord:
    """The original bytes and key, unchanged, on ``<service>.dlq`` with the reason and
    source in headers."""
    return OutboundRecord(
        topic=topics.dead_letters(service),
        value=record.value,
        key=record.key,
        headers=dead_letter_headers(record, reason, error, service, event_id),
    )


def dead_letter_of_output(
    topics: Topics, out: OutboundRecord, reason: str, error: str, service: str, event_id: str = ""
) -> OutboundRecord:
    """A copy of ``out`` on ``<service>.dlq``, for an output the service itself gave up
    on (no one consumed record is its source): the headers of :func:`dead_letter_headers`
    with the topic the original went to (``dlq.original.topic``, as
    :func:`oversized_dead_letter`) in place of ``dlq.source.*``. The original's partition
    and offset are not known: it commits in the same transaction."""
    return OutboundRecord(
        topic=topics.dead_letters(service),
        value=out.value,
        key=out.key,
        headers=(
            ("dlq.reason", " ".join(reason.split()).encode("utf-8", "replace")[:2000]),
            ("dlq.error", error.encode()),
            ("dlq.service", service.encode()),
            ("dlq.original.topic", out.topic.encode()),
            ("dlq.event_id", event_id.encode()),
            # its own headers (content-type: the value is read as it was written)
            *(h for h in out.headers if not h[0].startswith("dlq.")),
        ),
    )


def record_size(out: OutboundRecord) -> int:
    """Bytes ``out`` takes on the wire, near enough (key, value, headers, overhead)."""
    size = 70 + len(out.key or b"") + len(out.value or b"")
    for name, value in out.headers:
        size += 10 + len(name) + len(value)
    return size


def oversized_dead_letter(
    topics: Topics,
    out: OutboundRecord,
    size: int,
    limit: int,
    service: str,
    source: InboundRecord | None = None,
) -> OutboundRecord:
    """A record too large to produce, as a dead letter that fits: on ``<service>.dlq`` (a
    dead letter stays where it was going), value cut, reason, original topic and size in
    headers."""
    reason = f"record too large: {size} bytes for {out.topic}, the limit is {limit}"
    own: list[tuple[str, bytes]] = [
        ("dlq.reason", reason.encode()),
        ("dlq.error", b"too_large"),
        ("dlq.service", service.encode()),
        ("dlq.original.topic", out.topic.encode()),
        ("dlq.original.size", str(size).encode()),
        ("dlq.truncated", b"true"),
    ]
    if source is not None:
        own += [
            ("dlq.source.topic", source.topic.encode()),
            ("dlq.source.partition", str(source.partition).encode()),
            ("dlq.source.offset", str(source.offset).encode()),
        ]
    kept = dict(own)
    budget = DEAD_LETTER_HEADROOM // 2
    for name, value in out.headers:  # the original's own headers, as far as they fit
        if name in kept:  # e.g. why it was a dead letter in the first place
            name = name.replace("dlq.", "dlq.original.", 1)
        if name not in kept and len(name) + len(value) < budget:
            own.append((name, value))
            kept[name] = value
            budget -= len(name) + len(value)
    key = (out.key or b"")[:1024] or None
    room = max(0, limit - DEAD_LETTER_HEADROOM - len(key or b""))
    topic = out.topic if out.topic.endswith(DLQ_SUFFIX) else topics.dead_letters(service)
    return OutboundRecord(
        topic=topic,
        value=(out.value or b"")[:room],
        key=key,
        partition=out.partition if topic == out.topic else None,
        headers=tuple(own),
    )


def _append(batch: Any, out: OutboundRecord) -> bool:
    """Add ``out`` to an aiokafka batch; False when the batch is full."""
    added = batch.append(key=out.key, value=out.value, timestamp=None, headers=list(out.headers))
    return added is not None


def make_transactional_producer(settings: KafkaSettings, transactional_id: str) -> AIOKafkaProducer:
    """Idempotent, ``acks=all``, transactional: outputs and offsets commit together."""
    # The first AddPartitionsToTxn after a commit meets CONCURRENT_TRANSACTIONS until the
    # coordinator has written the markers (a millisecond or two on a healthy broker);
    # aiokafka retries it after a fixed 20 ms, so back-to-back transactions took ~24 ms.
    # Retrying after 2 ms brings them to ~5 ms (measured: bench/RESULTS.md).
    aiokafka_sender.BACKOFF_OVERRIDE = CONCURRENT_TRANSACTIONS_RETRY_S
    return AIOKafkaProducer(
        **connection_options(settings),
        transactional_id=transactional_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=1,
        # A cycle's records for one partition go out as one batch (see _send_batched).
        max_batch_size=512 * 1024,
        request_timeout_ms=settings.request_timeout_ms,
        client_id=transactional_id,
        # Other retries (AddOffsetsToTxn or a later AddPartitionsToTxn meeting
        # CONCURRENT_TRANSACTIONS, writes racing Kafka 4's transaction verification)
        # wait retry_backoff: 100 ms by default.
        retry_backoff_ms=RETRY_BACKOFF_MS,
    )


async def read_changelog(
    settings: KafkaSettings,
    topic: str,
    partitions: Iterable[int],
    *,
    wait_in_doubt_s: float = 0.0,
) -> dict[bytes, tuple[int, bytes]]:
    """Latest committed value per key of ``topic``'s ``partitions``: {key: (partition, value)}.

    Reads from the beginning to the last stable offset with ``read_committed``, so an
    aborted transaction is never restored. If a transaction is still open on a partition
    (its last stable offset is below its end), waits up to ``wait_in_doubt_s`` for it to
    end, so the state read is the real end and not a stale prefix; past that it logs and
    restores what is committed.
    """
    return await _read_latest(
        settings, topic, partitions, wait_in_doubt_s, lambda rec: (rec.partition, rec.value)
    )


async def read_latest_records(
    settings: KafkaSettings, topic: str, partitions: Iterable[int]
) -> dict[bytes, tuple[bytes, Headers]]:
    """As :func:`read_changelog`, for a compacted topic written in either output format:
    {key: (value, headers)}, so the value is decoded by its ``content-type``."""
    return await _read_latest(
        settings, topic, partitions, 0.0, lambda rec: (rec.value, tuple(rec.headers or ()))
    )


async def _read_latest(
    settings: KafkaSettings,
    topic: str,
    partitions: Iterable[int],
    wait_in_doubt_s: float,
    keep: Callable[[Any], _Kept],
) -> dict[bytes, _Kept]:
    wanted = [TopicPartition(topic, p) for p in partitions]
    state: dict[bytes, _Kept] = {}
    if not wanted:
        return state
    consumer = AIOKafkaConsumer(
        **connection_options(settings),
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        request_timeout_ms=settings.request_timeout_ms,
    )
    await consumer.start()
    try:
        known = await consumer.topics()
        if topic not in known:
            raise RuntimeError(f"changelog topic {topic!r} does not exist; provision topics first")
        consumer.assign(wanted)
        await consumer.seek_to_beginning(*wanted)
        ends = await _stable_ends(settings, consumer, wanted, wait_in_doubt_s)
        remaining = {tp for tp in wanted if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=200, max_records=10_000)
            for records in batch.values():
                for rec in records:
                    if rec.key is None:
                        continue
                    if rec.value is None:
                        state.pop(rec.key, None)
                    else:
                        state[rec.key] = keep(rec)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return state


async def _stable_ends(
    settings: KafkaSettings,
    consumer: AIOKafkaConsumer,
    wanted: list[TopicPartition],
    wait_s: float,
) -> dict[TopicPartition, int]:
    """Last stable offsets of ``wanted``, once no transaction is open on them (bounded wait)."""
    stable: dict[TopicPartition, int] = await consumer.end_offsets(wanted)
    if wait_s <= 0:
        return stable
    raw = AIOKafkaConsumer(
        **connection_options(settings),
        enable_auto_commit=False,
        isolation_level="read_uncommitted",
        request_timeout_ms=settings.request_timeout_ms,
    )
    await raw.start()
    try:
        ends: dict[TopicPartition, int] = await raw.end_offsets(wanted)
    finally:
        await raw.stop()
    deadline = time.monotonic() + wait_s
    while in_doubt := sorted(str(tp) for tp in wanted if stable[tp] < ends[tp]):
        if time.monotonic() > deadline:
            log.warning(
                "in-doubt transaction did not end; restoring what is committed",
                partitions=in_doubt,
                waited_s=wait_s,
            )
            break
        log.info("waiting for an in-doubt transaction before restoring", partitions=in_doubt)
        await asyncio.sleep(0.1)
        stable = await consumer.end_offsets(wanted)
    return stable


@dataclass
class _Command:
    run: Callable[[], tuple[Any, Sequence[OutboundRecord]]]
    partition: int
    done: asyncio.Future[Any]


class NotOwnedError(RuntimeError):
    """A command for a domain whose partition this instance does not own (any more)."""


@dataclass
class _Task:
    """One owned partition number of every input topic (Kafka Streams' task): its own
    transactional producer, and until caught up, the end offsets its backlog must reach
    before its timers may fire."""

    partition: int
    producer: AIOKafkaProducer
    backlog_ends: dict[TopicPartition, int] = field(default_factory=dict)
    #: The transaction in flight, if any; the task takes no new records until it ends
    #: (they wait in the consumer's fetch buffer).
    committing: asyncio.Task[bool] | None = None

    @property
    def caught_up(self) -> bool:
        return not self.backlog_ends

    @property
    def busy(self) -> bool:
        return self.committing is not None and not self.committing.done()


@dataclass
class _Work:
    """What one task commits in one cycle."""

    started: float = 0.0
    records: int = 0
    outputs: list[OutboundRecord] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    commands: list[tuple[_Command, Any, BaseException | None]] = field(default_factory=list)


def _names(partitions: Iterable[TopicPartition]) -> list[str]:
    """``topic[n]`` for logs."""
    return sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: ConsumeLoop) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._owner.cycle_lock:  # the batch in flight commits first
            log.info("partitions revoked", partitions=_names(revoked))
            try:
                await self._owner.release({tp.partition for tp in revoked})
            except Exception as exc:  # noqa: BLE001 - aiokafka would only log it; we must stop
                self._owner.fail(exc)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self._owner.cycle_lock:
            log.info("partitions assigned", partitions=_names(assigned))
            try:
                await self._owner.take_over(set(assigned))
            except Exception as exc:  # noqa: BLE001 - never consume a partition without its state
                self._owner.fail(exc)


async def _confirmed(delivered: Sequence[asyncio.Future[Any]]) -> None:
    """Wait for every produce of a transaction; raise the first failure, having read all
    (so none is left "never retrieved" when a fenced producer fails them together)."""
    results = await asyncio.gather(*delivered, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def transient(exc: BaseException) -> bool:
    """Worth retrying the transaction: aiokafka calls the error ``retriable``, or it is one
    of two it does not flag: its own timeout (the client gave up on a broker that is
    away; it cannot know why) and CONCURRENT_TRANSACTIONS (the coordinator is still
    closing our previous transaction; Kafka's protocol says retry). Anything else is a
    bug or a misconfiguration that retrying would only hide: the loop stops and its
    replacement starts from the last commit."""
    if isinstance(exc, KafkaError):
        return bool(exc.retriable) or isinstance(exc, KafkaTimeoutError | ConcurrentTransactions)
    return False


def _is_fenced(exc: BaseException, producer: AIOKafkaProducer) -> bool:
    """Another instance now holds this partition's transactional id (or ours timed out)."""
    if isinstance(exc, ProducerFenced | InvalidProducerEpoch | TransactionalIdAuthorizationFailed):
        return True
    # aiokafka puts its transaction manager in a fatal state on fencing; the error the
    # caller sees may then be an IllegalStateError from the next begin/abort.
    manager = getattr(producer, "_txn_manager", None)
    return bool(manager is not None and manager.is_fatal_error())


@dataclass
class ConsumeLoop:
    """Runs an :class:`EventHandler` over co-partitioned ``input_topics`` with exactly-once
    effects, one fenced transactional producer per owned partition number."""

    service: str
    settings: KafkaSettings
    input_topics: Sequence[str]
    handler: EventHandler
    metrics: RuntimeMetrics
    clock: Clock = field(default_factory=SystemClock)
    cycle_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _topics: Topics = field(init=False)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _started: asyncio.Event = field(default_factory=asyncio.Event)
    _commands: list[_Command] = field(default_factory=list)
    _consumer: AIOKafkaConsumer | None = None
    _tasks: dict[int, _Task] = field(default_factory=dict)
    _input_partitions: int = 0
    _last_lag_report: float = 0.0
    _last_progress: float = 0.0
    _fatal: BaseException | None = None
    _partition_counts: dict[str, list[int]] = field(default_factory=dict)
    _key_partitions: dict[tuple[str, bytes], int] = field(default_factory=dict)
    _domain_partitions: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._topics = Topics(self.settings.topic_prefix)

    @property
    def group_id(self) -> str:
        return self.settings.group_id or self.service

    def transactional_id(self, partition: int) -> str:
        """Stable across instances and restarts: whoever owns partition *n* uses this id,
        so the broker fences the previous owner (a stalled zombie) when a new one starts."""
        group = self.group_id
        prefix = self.settings.topic_prefix
        base = group if group.startswith(prefix) else f"{prefix}{group}"
        return f"{base}-{partition}"

    @property
    def started(self) -> asyncio.Event:
        """Set once the consumer has joined its group and the loop is polling."""
        return self._started

    def owned_partitions(self) -> set[int]:
        return set(self._tasks)

    def partition_of(self, domain: str) -> int:
        """The input partition a domain's events live on (murmur2 of the domain, as Java)."""
        home = self._domain_partitions.get(domain)
        if home is None:
            if not self._input_partitions:
                raise NotOwnedError(f"{self.service} has not joined its group yet")
            if len(self._domain_partitions) >= KEY_PARTITION_CACHE:
                self._domain_partitions.clear()
            home = int(murmur2(domain.encode()) & 0x7FFFFFFF) % self._input_partitions
            self._domain_partitions[domain] = home
        return home

    def last_progress_age(self) -> float:
        """Seconds since the loop last completed a cycle (liveness), by the injected clock."""
        if not self._last_progress:
            return float("inf")
        return self.clock.now() - self._last_progress

    async def execute(
        self,
        command: Callable[[], tuple[_Result, Sequence[OutboundRecord]]],
        *,
        partition: int,
    ) -> _Result:
        """Run ``command`` inside the loop, between batches, as part of ``partition``'s
        transaction; return once its records are committed.

        Keeps the core single-writer: gRPC calls that change state go through here. Raises
        :class:`NotOwnedError` if this instance does not own ``partition`` when it runs.
        """
        if self._stopping.is_set():
            raise NotOwnedError(f"{self.service} is shutting down")
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._commands.append(_Command(command, partition, done))
        result: _Result = await done
        return result

    def stop(self) -> None:
        """Ask the loop to finish its current batch, commit and close."""
        self._stopping.set()

    def fail(self, error: BaseException) -> None:
        """Stop without another cycle and make :meth:`run` raise ``error``."""
        log.error("consume loop failing", error=repr(error))
        self._fatal = error
        self._stopping.set()

    async def run(self) -> None:
        """Consume until :meth:`stop`; commits every batch; closes clients on the way out."""
        self._consumer = AIOKafkaConsumer(
            **connection_options(self.settings),
            group_id=self.group_id,
            client_id=f"{self.service}-{self.group_id}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            request_timeout_ms=self.settings.request_timeout_ms,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
            max_poll_interval_ms=300_000,
            fetch_max_wait_ms=100,
            # Partition n of every input topic to the same member: a domain's contact and
            # agent events meet in one instance. Checked on every assignment (take_over).
            partition_assignment_strategy=(RangePartitionAssignor,),
        )
        await self._consumer.start()
        try:
            self._consumer.subscribe(list(self.input_topics), listener=_Rebalance(self))
            self.metrics.loop_running.set(1)
            await self._poll_until_stopped()
        finally:
            self.metrics.loop_running.set(0)
            try:
                await self._consumer.stop()
            finally:
                await self._close_tasks(set(self._tasks))
                self._fail_pending_commands(NotOwnedError(f"{self.service} is shutting down"))

    def _check_co_partitioned(self) -> int:
        """Every input topic must have the same partitions, or domains would split.
        (Called on assignment, when the consumer has the subscribed topics' metadata.)"""
        if self._consumer is None:
            raise RuntimeError("consumer not started")
        counts: dict[str, int] = {}
        for topic in self.input_topics:
            partitions = self._consumer.partitions_for_topic(topic)
            if not partitions:
                raise ConfigError(f"input topic {topic!r} does not exist; provision topics first")
            counts[topic] = len(partitions)
        if len(set(counts.values())) != 1:
            raise ConfigError(
                "input topics must have equal partition counts to be co-partitioned by "
                f"domain; found {counts}"
            )
        return next(iter(counts.values()))

    # -- ownership: assignment, revocation, fencing --------------------------------------

    async def take_over(self, assigned: set[TopicPartition]) -> None:
        """New partitions: check co-partitioning, fence the previous owner by starting this
        partition's producer, restore its state, note its backlog's end."""
        if self._consumer is None:
            raise RuntimeError("consumer not started")
        self._input_partitions = self._check_co_partitioned()
        by_number: dict[int, set[str]] = {}
        for tp in assigned:
            by_number.setdefault(tp.partition, set()).add(tp.topic)
        wanted = set(self.input_topics)
        split = {n: sorted(wanted - topics) for n, topics in by_number.items() if topics != wanted}
        if split:
            raise RuntimeError(
                f"split assignment: partitions {sorted(split)} came without {split}; every "
                "member of the group must subscribe to the same input topics with the range "
                "assignor (a domain's events must meet in one instance)"
            )
        new = sorted(set(by_number) - set(self._tasks))
        started = time.perf_counter()
        producers = await asyncio.gather(*(self._start_producer(n) for n in new))
        for number, producer in zip(new, producers, strict=True):
            self._tasks[number] = _Task(number, producer)
        await self.handler.on_assigned(set(new))
        tps = [TopicPartition(t, n) for n in new for t in self.input_topics]
        if tps:
            ends: dict[TopicPartition, int] = await self._consumer.end_offsets(tps)
            for tp, end in ends.items():
                if end > 0:
                    self._tasks[tp.partition].backlog_ends[tp] = end
        self._update_task_gauges()
        self._started.set()  # joined the group (with or without partitions to own)
        log.info(
            "partitions taken over",
            partitions=new,
            seconds=round(time.perf_counter() - started, 3),
            backlog={_names([tp])[0]: end for tp, end in sorted(ends.items()) if end}
            if tps
            else {},
        )

    async def release(self, partitions: set[int]) -> None:
        """Partitions taken away: let their transactions in flight end, then close the
        producers and drop the state (records fetched but not applied are the next
        owner's to read)."""
        await self._settle_all()
        gone = partitions & set(self._tasks)
        await self.handler.on_revoked(gone)
        await self._close_tasks(gone)
        self._update_task_gauges()

    async def _start_producer(self, partition: int) -> AIOKafkaProducer:
        producer = make_transactional_producer(self.settings, self.transactional_id(partition))
        await producer.start()  # InitProducerId: fences any earlier holder of this id
        return producer

    async def _close_tasks(self, partitions: set[int]) -> None:
        tasks = [self._tasks.pop(n) for n in sorted(partitions) if n in self._tasks]
        for task in tasks:
            with contextlib.suppress(Exception):  # a fenced producer may fail to close cleanly
                await task.producer.stop()

    async def _fenced(self, task: _Task, exc: BaseException) -> None:
        """Another instance took this partition over while we stalled: drop its uncommitted
        state, stop reading it, commit nothing for it. The group hands it back if it is ours."""
        log.warning(
            "fenced: another instance owns this partition now; dropping its state",
            partition=task.partition,
            transactional_id=self.transactional_id(task.partition),
            error=repr(exc),
        )
        self.metrics.fenced.inc()
        if self._consumer is not None:
            mine = self._consumer.assignment()
            self._consumer.pause(
                *(
                    tp
                    for t in self.input_topics
                    if (tp := TopicPartition(t, task.partition)) in mine
                )
            )
        await self.handler.on_revoked({task.partition})
        await self._close_tasks({task.partition})
        self._update_task_gauges()
        # Usually the stall also cost us the group membership and a rebalance is under
        # way. A fence without one (our transaction outlived transaction.timeout.ms) would
        # leave the partition paused forever: ask for a rebalance, which hands it back with
        # its committed offsets and a fresh producer. aiokafka has no public call for it.
        coordinator = getattr(self._consumer, "_coordinator", None)
        if coordinator is not None:
            coordinator.request_rejoin()

    def _update_task_gauges(self) -> None:
        self.metrics.partitions_owned.set(len(self._tasks))
        self.metrics.partitions_catching_up.set(sum(not t.caught_up for t in self._tasks.values()))

    # -- the loop -------------------------------------------------------------------------

    async def _poll_until_stopped(self) -> None:
        """Collect, apply, commit, settle. Each task's transaction runs while the loop goes
        on with the other tasks; a task takes new records only once its transaction has
        ended, so the loop polls just the partitions of tasks that are free."""
        if self._consumer is None:
            raise RuntimeError("consumer not started")
        while not self._stopping.is_set():
            batch = await self._poll(self._wait_ms())
            async with self.cycle_lock:
                if self._fatal is not None:
                    raise self._fatal
                self._settle_finished()
                self._drop_unowned_commands()
                self._start_ready(batch)
                await self._check_caught_up()
            self._last_progress = self.clock.now()
            self.metrics.last_progress.set(time.time())
            if not self._started.is_set() and self._consumer.assignment():
                self._started.set()
            await self._report_lag()
        if self._fatal is not None:
            raise self._fatal
        # One last round so queued commands and due timers are committed before we close.
        async with self.cycle_lock:
            await self._settle_all()
            self._start_ready({})
            await self._settle_all()

    async def _poll(self, wait_ms: int) -> Mapping[Any, Sequence[Any]]:
        """Records of the free tasks' partitions (a busy task's wait in the fetch buffer);
        with every task busy, wait for a transaction to end instead."""
        if self._consumer is None:
            raise RuntimeError("consumer not started")
        if not self._tasks:  # nothing owned (yet): the group's coordination runs meanwhile
            await asyncio.sleep(wait_ms / 1000)
            return {}
        mine = self._consumer.assignment()
        free = [
            tp
            for task in self._tasks.values()
            if not task.busy
            for topic in self.input_topics
            if (tp := TopicPartition(topic, task.partition)) in mine
        ]
        if free:
            batch: Mapping[Any, Sequence[Any]] = await self._consumer.getmany(
                *free, timeout_ms=wait_ms, max_records=self.settings.max_batch
            )
            return batch
        running = {t.committing for t in self._tasks.values() if t.busy and t.committing}
        if running:
            await asyncio.wait(running, timeout=wait_ms / 1000, return_when="FIRST_COMPLETED")
        else:  # owned partitions not (yet) in the consumer's assignment: never spin
            await asyncio.sleep(max(wait_ms, 1) / 1000)
        return {}

    def _wait_ms(self) -> int:
        if any(
            c.partition not in self._tasks or not self._tasks[c.partition].busy
            for c in self._commands
        ):
            return 0
        wait = self.settings.poll_interval_ms
        deadline = self._next_deadline()
        if deadline is not None:
            # Round up and add a little slack: timers due within a few ms fire in one
            # cycle, and the loop never spins on sub-millisecond waits.
            until_due = max(0, math.ceil((deadline - self.clock.now()) * 1000))
            wait = min(wait, until_due + TIMER_SLACK_MS if until_due else 0)
        if any(t.busy for t in self._tasks.values()):
            # A task freed by its commit takes the records that waited for it promptly.
            wait = min(wait, BUSY_POLL_MS)
        return wait

    def _next_deadline(self) -> float | None:
        deadlines = [
            d
            for n, task in self._tasks.items()
            # a busy task's timers wait for its transaction (the loop polls every
            # BUSY_POLL_MS meanwhile): waiting on them would spin
            if task.caught_up and not task.busy and (d := self.handler.next_deadline(n)) is not None
        ]
        return min(deadlines, default=None)

    async def _check_caught_up(self) -> None:
        """A task whose backlog has been read gets its timers back."""
        if self._consumer is None:
            return
        changed = False
        for task in list(self._tasks.values()):
            if task.caught_up:
                continue
            for tp, end in list(task.backlog_ends.items()):
                if (
                    tp not in self._consumer.assignment()
                    or await self._consumer.position(tp) >= end
                ):
                    del task.backlog_ends[tp]
            if task.caught_up:
                changed = True
                log.info("partition caught up; its timers run", partition=task.partition)
        if changed:
            self._update_task_gauges()

    def _drop_unowned_commands(self) -> None:
        """A command for a partition this instance does not own fails at once."""
        kept: list[_Command] = []
        for command in self._commands:
            if command.partition in self._tasks:
                kept.append(command)
            else:
                command.done.set_exception(
                    NotOwnedError(f"partition {command.partition} is not owned by this instance")
                )
        self._commands = kept

    def _start_ready(self, batch: Mapping[Any, Sequence[Any]]) -> None:
        """Apply the work of every task not committing, and start its transaction."""
        now = self.clock.now()
        by_task: dict[int, list[Any]] = {}
        for tp, records in batch.items():
            by_task.setdefault(tp.partition, []).extend(records)
        for number, task in list(self._tasks.items()):
            if task.busy:
                continue
            work = self._apply_task(task, by_task.get(number, []), now)
            if work.outputs or work.offsets or work.commands:
                task.committing = asyncio.create_task(
                    self._commit_and_settle(task, work), name=f"{self.service}-txn-{number}"
                )

    def _apply_task(self, task: _Task, records: Sequence[Any], now: float) -> _Work:
        """One task's share of a cycle: its records, commands, due timers and changelog."""
        work = _Work(started=time.perf_counter(), records=len(records))
        for raw in records:
            record = InboundRecord(
                topic=raw.topic,
                partition=raw.partition,
                offset=raw.offset,
                key=raw.key,
                value=raw.value,
                headers=tuple(raw.headers or ()),
                timestamp_ms=raw.timestamp,
            )
            work.outputs.extend(self.apply_record(record))
            work.offsets[TopicPartition(raw.topic, raw.partition)] = raw.offset + 1
        mine = [c for c in self._commands if c.partition == task.partition]
        if mine:
            self._commands = [c for c in self._commands if c.partition != task.partition]
        for command in mine:
            try:
                value, records_out = command.run()
            except Exception as exc:  # noqa: BLE001 - the caller gets the error, the loop goes on
                work.commands.append((command, None, exc))
            else:
                work.outputs.extend(map(self._fit, records_out))
                work.commands.append((command, value, None))
        if task.caught_up:
            deadline = self.handler.next_deadline(task.partition)
            if deadline is not None and deadline <= now:
                work.outputs.extend(map(self._fit, self.handler.on_timer(task.partition, now)))
        work.outputs.extend(map(self._fit, self.handler.drain_changelog(task.partition)))
        return work

    async def _commit_and_settle(self, task: _Task, work: _Work) -> bool:
        """Commit one task's work, then answer its commands (after the commit, never before)."""
        committed = True
        if work.outputs or work.offsets:
            committed = await self._commit(task, work)
        for command, value, error in work.commands:
            if command.done.done():
                continue
            if not committed:
                command.done.set_exception(
                    NotOwnedError(f"partition {task.partition} was taken over; nothing committed")
                )
            elif error is not None:
                command.done.set_exception(error)
            else:
                command.done.set_result(value)
        if work.records:
            self.metrics.batch_seconds.observe(time.perf_counter() - work.started)
        return committed

    def _settle_finished(self) -> None:
        """Reap ended transactions; one that failed for good stops the loop."""
        for task in list(self._tasks.values()):
            done = task.committing
            if done is not None and done.done():
                task.committing = None
                if not done.cancelled() and (error := done.exception()) is not None:
                    raise error

    async def _settle_all(self) -> None:
        """Wait for every transaction in flight (before a rebalance or a stop)."""
        running = [t.committing for t in self._tasks.values() if t.committing is not None]
        if running:
            await asyncio.wait(running)
        self._settle_finished()

    def apply_record(self, record: InboundRecord) -> Sequence[OutboundRecord]:
        """Decode, dedupe and handle one record; a failure becomes a dead letter, never a crash.

        The loop's per-record step, without I/O: its outputs are only returned (the loop
        commits them with the record's offset), so tests can drive it record by record.
        """
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            topic=record.topic, partition=record.partition, offset=record.offset
        )
        try:
            envelope = decode_envelope(record.value, record.headers)
        except DecodeError as exc:
            return [self._dead_letter(record, exc.reason, "decode", event_id_in(record.value))]
        try:
            within_bounds(envelope)
        except RejectedEvent as exc:
            letter = self._dead_letter(record, exc.reason, "rejected", envelope.event_id[:128])
            return [letter, *self._answer_refusal(envelope, record, exc.reason)]
        payload = envelope.WhichOneof("payload") or ""
        domain = envelope.domain
        structlog.contextvars.bind_contextvars(event_id=envelope.event_id, domain=domain)
        self.metrics.consumed.labels(record.topic, payload).inc()
        misplaced = wrong_topic_reason(payload, record.topic.removeprefix(self._topics.prefix))
        if misplaced is not None:
            letter = self._dead_letter(record, misplaced, "wrong_topic", envelope.event_id)
            return [letter, *self._answer_refusal(envelope, record, misplaced)]
        home = self.partition_of(domain) if domain else record.partition
        if home != record.partition:
            reason = wrong_partition_reason(domain, record.key, home, record.partition)
            letter = self._dead_letter(record, reason, "partition", envelope.event_id)
            return [letter, *self._answer_refusal(envelope, record, reason)]
        if self.handler.seen_before(domain, envelope.event_id):
            self.metrics.duplicates.labels(record.topic).inc()
            log.debug("duplicate event skipped")
            return []
        started = time.perf_counter()
        try:
            outputs = self.handler.handle(envelope, record)
        except RejectedEvent as exc:
            letter = self._dead_letter(record, exc.reason, "rejected", envelope.event_id)
            return [letter, *self._answer_refusal(envelope, record, exc.reason)]
        except Exception as exc:  # one bad event must never stop the loop
            log.exception("handler failed; dead-lettering the event")
            reason = f"handler error: {type(exc).__name__}: {exc}"
            letter = self._dead_letter(record, reason, "handler", envelope.event_id)
            return [letter, *self._answer_refusal(envelope, record, reason)]
        finally:
            self.metrics.handle_seconds.observe(time.perf_counter() - started)
        self.handler.remember(domain, record.partition, envelope.event_id, self.clock.now())
        return [self._fit(out, record) for out in outputs]

    def _answer_refusal(
        self, envelope: Envelope, record: InboundRecord, reason: str
    ) -> list[OutboundRecord]:
        """What the handler publishes so the event's producer learns of the refusal; never
        for an event whose id or domain is itself past its bound (it could not be keyed)."""
        if len(envelope.event_id) > DEFAULT_TEXT_CHARS or len(envelope.domain) > DEFAULT_TEXT_CHARS:
            return []
        try:
            answers = self.handler.on_refused(envelope, record, reason)
        except Exception:
            log.exception("could not answer a refused event")
            return []
        return [self._fit(out, record) for out in answers]

    def _fit(self, out: OutboundRecord, source: InboundRecord | None = None) -> OutboundRecord:
        """``out`` itself, or if it is larger than a record may be, its dead letter cut to fit."""
        size = record_size(out)
        if size <= self.settings.max_record_bytes:
            return out
        log.warning("record too large; dead-lettered", topic=out.topic, size=size)
        return oversized_dead_letter(
            self._topics, out, size, self.settings.max_record_bytes, self.service, source
        )

    def _dead_letter(
        self, record: InboundRecord, reason: str, error: str, event_id: str = ""
    ) -> OutboundRecord:
        log.warning("dead-lettered", reason=reason, error=error)
        letter = dead_letter_record(self._topics, record, reason, error, self.service, event_id)
        return self._fit(letter, record)

    async def _commit(self, task: _Task, work: _Work) -> bool:
        """Write ``task``'s outputs and offsets in one transaction; retry while Kafka is away.

        Every produce is confirmed before the commit; any failure aborts (aiokafka's
        transaction context) and the whole transaction is retried if the error is
        :func:`transient`. Returns False if the partition was fenced (nothing of it
        committed, its state dropped); any other error stops the loop, which restarts
        from the last commit.
        """
        producer = task.producer
        outputs = work.outputs  # each already fitted where it was made (apply_record, _apply_task)
        delay = 0.1
        started = time.perf_counter()
        for attempt in itertools.count(1):
            try:
                async with producer.transaction():
                    delivered = await self._send_batched(producer, outputs)
                    if work.offsets:
                        await producer.send_offsets_to_transaction(
                            dict(work.offsets), self.group_id
                        )
                    await _confirmed(delivered)
            except Exception as exc:
                if _is_fenced(exc, producer):
                    await self._fenced(task, exc)
                    return False
                if not transient(exc):
                    raise
                self.metrics.transactions_aborted.inc()
                log.warning(
                    "transaction failed; retrying",
                    partition=task.partition,
                    attempt=attempt,
                    error=repr(exc),
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.metrics.commit_seconds.observe(time.perf_counter() - started)
            self._count_committed(outputs)
            return True
        raise AssertionError("unreachable")

    def _count_committed(self, outputs: Sequence[OutboundRecord]) -> None:
        """Counted once committed, never before: a fenced or failed cycle counts nothing."""
        for topic, produced in Counter(out.topic for out in outputs).items():
            self.metrics.produced.labels(topic).inc(produced)
        for out in outputs:
            if out.topic.endswith(DLQ_SUFFIX):
                headers = dict(out.headers)
                source = (
                    headers.get("dlq.source.topic")
                    or headers.get("dlq.original.topic")
                    or b"unknown"
                )
                error = headers.get("dlq.error", b"unknown")
                self.metrics.dead_lettered.labels(source.decode(), error.decode()).inc()

    async def _send_batched(
        self, producer: AIOKafkaProducer, outputs: Sequence[OutboundRecord]
    ) -> list[asyncio.Future[Any]]:
        """Hand the records to the producer as one batch per partition; returns the
        delivery futures (the caller awaits every one before it commits).

        ``send`` per record costs a future, a pure-Python murmur2 hash and an accumulator
        lookup each; at hundreds of records per cycle that was a tenth of a service's CPU.
        Partitions are the default partitioner's (murmur2 of the key, as Java's), so
        records keyed by domain stay co-partitioned with the topics they came from.
        """
        unpartitioned = {out.topic for out in outputs if out.partition is None}
        partitions = {topic: await self._partitions_of(producer, topic) for topic in unpartitioned}
        groups: dict[tuple[str, int], list[OutboundRecord]] = {}
        for out in outputs:
            partition = out.partition
            if partition is None:
                partition = self._partition_for(out.topic, out.key, partitions[out.topic])
            groups.setdefault((out.topic, partition), []).append(out)
        delivered: list[asyncio.Future[Any]] = []
        for (topic, partition), records in groups.items():
            batch = producer.create_batch()
            for out in records:
                if not _append(batch, out):  # batch full: send it, start the next
                    delivered.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    if not _append(batch, out):
                        raise ValueError(f"a record for {topic} is larger than a batch")
            delivered.append(await producer.send_batch(batch, topic, partition=partition))
        return delivered

    async def _partitions_of(self, producer: AIOKafkaProducer, topic: str) -> list[int]:
        """The topic's partition ids, sorted (asked of the producer's metadata once)."""
        partitions = self._partition_counts.get(topic)
        if partitions is None:
            partitions = sorted(await producer.partitions_for(topic))
            self._partition_counts[topic] = partitions
        return partitions

    def _partition_for(self, topic: str, key: bytes | None, partitions: list[int]) -> int:
        if key is None:
            return random.choice(partitions)  # noqa: S311 - spreading load, not security
        cached = self._key_partitions.get((topic, key))
        if cached is None:
            if len(self._key_partitions) >= KEY_PARTITION_CACHE:
                self._key_partitions.clear()
            cached = partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]
            self._key_partitions[(topic, key)] = cached
        return cached

    async def _report_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag_report < 1.0 or self._consumer is None:
            return
        self._last_lag_report = now
        for tp in self._consumer.assignment():
            highwater = self._consumer.highwater(tp)
            if highwater is None:
                continue
            position = await self._consumer.position(tp)
            self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(
                max(0, highwater - position)
            )

    def _fail_pending_commands(self, error: BaseException) -> None:
        for command in self._commands:
            if not command.done.done():
                command.done.set_exception(error)
        self._commands.clear()
