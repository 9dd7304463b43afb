"""Follow every partition of some topics, committed records only, to keep a read view.

A service that answers reads for every domain, not just the ones it owns, keeps a view
fed by its own consumer: no consumer group (nothing to commit, no rebalance), every
partition assigned, ``read_committed`` (an aborted transaction is never seen). Topics in
``from_start`` are read from their beginning (a compacted topic: the whole state), those
in ``from_end`` from their end at start (only what is written from now on matters, e.g.
answers to commands this instance is about to send).

:attr:`TopicFollower.loaded` is set once the ``from_start`` topics have been read to the
ends they had at start; :meth:`TopicFollower.caught_up` waits until everything committed
before the call has been read (read-your-writes for a caller who acts on what another
instance showed them). ``on_record`` runs synchronously in the follower's task, once per
record, in partition order; it must not raise (a failure stops the follower, and
:meth:`TopicFollower.run` raises it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.common.config import KafkaSettings
from services.common.kafka import InboundRecord
from services.common.kafka_connection import connection_options

__all__ = ["TopicFollower"]

log = structlog.get_logger("read_view")

#: How long one poll waits; also how late a :meth:`TopicFollower.caught_up` waiter may
#: learn that it is satisfied when nothing more arrives.
POLL_MS = 50
#: Most :meth:`TopicFollower.caught_up` calls waiting at once (each holds a future).
MAX_WAITERS = 10_000


@dataclass(eq=False)
class _Waiter:
    ends: dict[TopicPartition, int]
    done: asyncio.Future[None]


@dataclass
class TopicFollower:
    settings: KafkaSettings
    from_start: Sequence[str]
    on_record: Callable[[InboundRecord], None]
    from_end: Sequence[str] = ()
    client_id: str = "read-view"
    loaded: asyncio.Event = field(default_factory=asyncio.Event)
    _consumer: AIOKafkaConsumer | None = None
    _partitions: list[TopicPartition] = field(default_factory=list)
    _waiters: list[_Waiter] = field(default_factory=list)
    _ready: asyncio.Event = field(default_factory=asyncio.Event)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Read until :meth:`stop`; raises what stops it otherwise (a missing topic, a
        failure of ``on_record``)."""
        consumer = self._consumer = AIOKafkaConsumer(
            **connection_options(self.settings),
            client_id=self.client_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            request_timeout_ms=self.settings.request_timeout_ms,
        )
        await consumer.start()
        try:
            await self._assign(consumer)
            ends = await consumer.end_offsets(
                [tp for tp in self._partitions if tp.topic in self.from_start]
            )
            self._ready.set()
            loading = {tp: end for tp, end in ends.items() if end > 0}
            while not self._stopping.is_set():
                batch = await consumer.getmany(timeout_ms=POLL_MS, max_records=5_000)
                for records in batch.values():
                    for raw in records:
                        self.on_record(
                            InboundRecord(
                                topic=raw.topic,
                                partition=raw.partition,
                                offset=raw.offset,
                                key=raw.key,
                                value=raw.value,
                                headers=tuple(raw.headers or ()),
                                timestamp_ms=raw.timestamp,
                            )
                        )
                if loading:
                    loading = await self._behind(consumer, loading)
                    if not loading:
                        log.info("read view loaded", topics=list(self.from_start))
                if not loading and not self.loaded.is_set():
                    self.loaded.set()
                await self._settle_waiters(consumer)
        finally:
            self._consumer = None
            for waiter in self._waiters:
                if not waiter.done.done():
                    waiter.done.set_exception(ConnectionError("the read view stopped"))
            self._waiters.clear()
            await consumer.stop()

    async def _assign(self, consumer: AIOKafkaConsumer) -> None:
        partitions: list[TopicPartition] = []
        for topic, ids in (await self._partitions_of([*self.from_start, *self.from_end])).items():
            partitions += [TopicPartition(topic, p) for p in ids]
        self._partitions = partitions
        consumer.assign(partitions)
        starts = [tp for tp in partitions if tp.topic in self.from_start]
        ends = [tp for tp in partitions if tp.topic not in self.from_start]
        if starts:
            await consumer.seek_to_beginning(*starts)
        if ends:
            await consumer.seek_to_end(*ends)
            for tp in ends:  # fix the position now: later records are the ones wanted
                await consumer.position(tp)

    async def _partitions_of(self, topics: list[str]) -> dict[str, list[int]]:
        """Every partition of ``topics`` (a consumer without a group learns them from the
        cluster's metadata, asked here)."""
        admin = AIOKafkaAdminClient(
            **connection_options(self.settings),
            client_id=self.client_id,
            request_timeout_ms=self.settings.request_timeout_ms,
        )
        await admin.start()
        try:
            described = await admin.describe_topics(topics)
        finally:
            await admin.close()
        found: dict[str, list[int]] = {}
        for topic in described:
            if topic["error_code"] != 0 or not topic["partitions"]:
                raise RuntimeError(
                    f"topic {topic['topic']!r} cannot be read (error {topic['error_code']}); "
                    "provision topics first"
                )
            found[topic["topic"]] = sorted(p["partition"] for p in topic["partitions"])
        missing = sorted(set(topics) - set(found))
        if missing:
            raise RuntimeError(f"topics {missing} do not exist; provision topics first")
        return found

    @staticmethod
    async def _behind(
        consumer: AIOKafkaConsumer, targets: dict[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        """The partitions of ``targets`` not yet read up to their target offset."""
        return {tp: end for tp, end in targets.items() if await consumer.position(tp) < end}

    async def caught_up(self, wait_s: float) -> None:
        """Return once every record committed before this call (on the ``from_start``
        topics) has been handed to ``on_record``; TimeoutError after ``wait_s``."""
        await asyncio.wait_for(self._caught_up(), wait_s)

    async def _caught_up(self) -> None:
        await self._ready.wait()
        consumer = self._consumer
        if consumer is None:
            raise ConnectionError("the read view is not running")
        if len(self._waiters) >= MAX_WAITERS:
            raise ConnectionError(f"{MAX_WAITERS} callers are waiting for the read view")
        wanted = [tp for tp in self._partitions if tp.topic in self.from_start]
        ends: dict[TopicPartition, int] = await consumer.end_offsets(wanted)
        behind = await self._behind(consumer, ends)
        if not behind:
            return
        waiter = _Waiter(behind, self._new_future())
        self._waiters.append(waiter)
        try:
            await waiter.done
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    @staticmethod
    def _new_future() -> asyncio.Future[None]:
        return asyncio.get_running_loop().create_future()

    async def _settle_waiters(self, consumer: AIOKafkaConsumer) -> None:
        for waiter in list(self._waiters):
            if waiter.done.done():
                continue
            waiter.ends = await self._behind(consumer, waiter.ends)
            if not waiter.ends:
                waiter.done.set_result(None)
