"""Kafka in and out for the simulator, built to ride out a broker restart.

:class:`KafkaPublisher` keeps an ordered backlog and sends it in batches; when the broker
is away it keeps the backlog, backs off, rebuilds the producer if it must, and carries
on where it stopped. A batch that half-failed is re-sent from the first failure: later
records may then arrive twice, which is harmless because every consumer ignores an
``event_id`` it has already applied. :class:`KafkaDecisions` reads ``routing.decisions``
(committed records only) from the end, without a consumer group: like a telephony
platform, the simulator cares about decisions made from now on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from switchboard.v1.envelope_pb2 import Envelope

from services.common.codec import decode_envelope
from services.common.errors import DecodeError

__all__ = [
    "DecisionStream",
    "EventPublisher",
    "FakeDecisions",
    "FakePublisher",
    "KafkaDecisions",
    "KafkaPublisher",
    "Record",
]

log = structlog.get_logger("simulator.kafka")

#: Longest pause between attempts while the broker is unreachable.
MAX_BACKOFF = 5.0


@dataclass(frozen=True, slots=True)
class Record:
    """One record to publish."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


class EventPublisher(Protocol):
    """Accepts records in order and delivers them eventually, in that order."""

    def enqueue(self, record: Record) -> None: ...

    async def run(self, stop: asyncio.Event) -> None: ...

    async def flush(self, within: float) -> bool: ...

    @property
    def backlog(self) -> int: ...


class DecisionStream(Protocol):
    """Envelopes from ``routing.decisions``, as they are committed."""

    async def start(self) -> None: ...

    def stream(self, stop: asyncio.Event) -> AsyncIterator[Envelope]: ...

    async def close(self) -> None: ...


@dataclass
class FakePublisher:
    """In-memory publisher for tests: records land in ``sent`` at once."""

    sent: list[Record] = field(default_factory=list)

    def enqueue(self, record: Record) -> None:
        self.sent.append(record)

    async def run(self, stop: asyncio.Event) -> None:
        await stop.wait()

    async def flush(self, within: float) -> bool:
        return True

    @property
    def backlog(self) -> int:
        return 0


@dataclass
class FakeDecisions:
    """In-memory decision stream for tests: ``put`` an envelope, the runner receives it."""

    queue: asyncio.Queue[Envelope] = field(default_factory=asyncio.Queue)

    async def start(self) -> None:
        return None

    def put(self, envelope: Envelope) -> None:
        self.queue.put_nowait(envelope)

    async def stream(self, stop: asyncio.Event) -> AsyncIterator[Envelope]:
        while not stop.is_set():
            getter = asyncio.ensure_future(self.queue.get())
            stopper = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if getter in done:
                yield getter.result()
            else:
                getter.cancel()

    async def close(self) -> None:
        return None


class KafkaPublisher:
    """Idempotent producer with an in-process backlog that survives broker outages."""

    def __init__(self, bootstrap_servers: str, *, client_id: str = "simulator") -> None:
        self._servers = bootstrap_servers
        self._client_id = client_id
        self._backlog: deque[Record] = deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._producer: AIOKafkaProducer | None = None
        self.sent = 0
        self.failures = 0

    @property
    def backlog(self) -> int:
        return len(self._backlog)

    def enqueue(self, record: Record) -> None:
        self._backlog.append(record)
        self._idle.clear()
        self._wakeup.set()

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._servers,
                client_id=self._client_id,
                acks="all",
                enable_idempotence=True,
                linger_ms=5,
                request_timeout_ms=10_000,
                retry_backoff_ms=250,
            )
            try:
                await producer.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), timeout=5)

    async def _send_batch(self, batch: list[Record]) -> int:
        """Send ``batch`` in order; return how many from its start were acknowledged."""
        producer = await self._ensure_producer()
        futures = [
            await producer.send(
                record.topic, record.value, key=record.key, headers=list(record.headers)
            )
            for record in batch
        ]
        results = await asyncio.gather(*futures, return_exceptions=True)
        for index, result in enumerate(results):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                raise _PartialSend(index, result)
        return len(batch)

    async def run(self, stop: asyncio.Event) -> None:
        """Send until ``stop``; then :meth:`flush` delivers what is left."""
        backoff = 0.25
        while not stop.is_set():
            if not self._backlog:
                self._idle.set()
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout=1.0)
                continue
            if await self._attempt():
                backoff = 0.25
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=backoff)
                backoff = min(MAX_BACKOFF, backoff * 2)

    async def _attempt(self) -> bool:
        batch = list(self._backlog)[:500]
        try:
            acked = await asyncio.wait_for(self._send_batch(batch), timeout=30)
        except _PartialSend as partial:
            acked = partial.acked
            self._note_failure(partial.error, acked)
            # The idempotent producer's sequence numbers are now out of step with the
            # broker (OutOfOrderSequenceNumber forever): start over with a new producer id.
            await self._drop_producer()
        except (KafkaError, OSError, TimeoutError) as exc:
            acked = 0
            self._note_failure(exc, 0)
            await self._drop_producer()
        for _ in range(acked):
            self._backlog.popleft()
        self.sent += acked
        return acked == len(batch)

    def _note_failure(self, error: BaseException, acked: int) -> None:
        self.failures += 1
        # One line per outage, then every 20th failure: a restart should not flood the log.
        if self.failures == 1 or self.failures % 20 == 0:
            log.warning(
                "publish failed; keeping the backlog and retrying",
                error=f"{type(error).__name__}: {error}",
                backlog=len(self._backlog),
                acked=acked,
                failures=self.failures,
            )

    async def flush(self, within: float) -> bool:
        """Deliver the backlog ``within`` seconds; False if some is left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while self._backlog and loop.time() < deadline:
            if not await self._attempt():
                await asyncio.sleep(0.5)
        return not self._backlog

    async def close(self) -> None:
        await self._drop_producer()


class _PartialSend(Exception):
    def __init__(self, acked: int, error: Exception) -> None:
        super().__init__(str(error))
        self.acked = acked
        self.error = error


class KafkaDecisions:
    """Reads every partition of ``routing.decisions`` from its end, committed records only."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._topic = topic
        # Subscribing without a group assigns every partition of the topic.
        self._consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap_servers,
            client_id="simulator-decisions",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            isolation_level="read_committed",
        )

    async def start(self) -> None:
        """Connect and position at the end, so nothing decided after this is missed."""
        try:
            await self._consumer.start()
            assigned = self._assigned()
            await self._consumer.seek_to_end(*assigned)
            for tp in assigned:
                await self._consumer.position(tp)
        except BaseException:
            await self.close()
            raise

    def _assigned(self) -> list[TopicPartition]:
        assigned = sorted(self._consumer.assignment())
        if not assigned:
            raise KafkaError(f"topic {self._topic} does not exist; provision topics first")
        return assigned

    async def stream(self, stop: asyncio.Event) -> AsyncIterator[Envelope]:
        while not stop.is_set():
            try:
                batches = await self._consumer.getmany(timeout_ms=500, max_records=500)
            except KafkaError as exc:
                log.warning("reading decisions failed; retrying", error=str(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
                continue
            for records in batches.values():
                for record in records:
                    try:
                        yield decode_envelope(record.value, record.headers)
                    except DecodeError as exc:
                        log.debug("undecodable decision skipped", reason=exc.reason)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._consumer.stop(), timeout=5)
