"""Feeds the read view of every domain (:mod:`services.router.domain.domains_view`) from
the router changelog, so any replica answers RouterAdmin for every domain.

One consumer without a group reads every partition of the changelog from the beginning,
``read_committed`` (an aborted transaction's state is never shown), and keeps reading.
The router's user may already read its changelog, so this needs no new topic or ACL.
The view is *ready* once it has read what was committed when it started; until then a
call waits (``admin_view.ready_wait_s``) rather than answer from half the picture.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge

from services.common.config import KafkaSettings
from services.common.kafka_connection import connection_options
from services.router.domain.domains_view import DomainsView

__all__ = ["AdminView", "AdminViewMetrics"]

log = structlog.get_logger("router.admin_view")

#: Separates the domain from the entity in a changelog key (``services.common.state``).
_KEY_SEPARATOR = "/"
#: Pause before reconnecting after the consumer failed, doubling up to the maximum.
RETRY_S, MAX_RETRY_S = 1.0, 30.0


@dataclass(frozen=True)
class AdminViewMetrics:
    domains: Gauge
    bytes: Gauge
    incomplete: Gauge
    refused: Counter
    ready: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> AdminViewMetrics:
        return cls(
            domains=Gauge(
                "switchboard_router_admin_view_domains",
                "Domains in the read view RouterAdmin answers from (every replica's).",
                registry=registry,
            ),
            bytes=Gauge(
                "switchboard_router_admin_view_bytes",
                "Bytes of domain state held by the read view.",
                registry=registry,
            ),
            incomplete=Gauge(
                "switchboard_router_admin_view_incomplete_domains",
                "Domains left out of the read view past its bounds (calls needing them are "
                "refused with RESOURCE_EXHAUSTED).",
                registry=registry,
            ),
            refused=Counter(
                "switchboard_router_admin_view_refused_total",
                "Changelog records the read view refused (past admin_view.max_domains or "
                "max_bytes).",
                registry=registry,
            ),
            ready=Gauge(
                "switchboard_router_admin_view_ready",
                "1 once the read view has read the changelog committed when it started.",
                registry=registry,
            ),
        )


class AdminView:
    """The view, the task that tails the changelog into it, and its readiness."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        view: DomainsView,
        *,
        ready_wait_s: float = 10.0,
        metrics: AdminViewMetrics | None = None,
    ) -> None:
        self.kafka, self.topic, self.view = kafka, topic, view
        self.ready_wait_s = ready_wait_s
        self.metrics = metrics
        self.ready = asyncio.Event()
        self._positions: dict[int, int] = {}
        self._refused_counted = 0

    async def wait_ready(self) -> bool:
        """Until the view has caught up (``False`` if it has not within ``ready_wait_s``)."""
        if not self.ready.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ready.wait(), self.ready_wait_s)
        return self.ready.is_set()

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One changelog record."""
        if key is None:
            return
        try:
            domain, separator, entity = key.decode().partition(_KEY_SEPARATOR)
        except UnicodeDecodeError:
            return
        if separator and (gave_up := self.view.put(domain, entity, value)) is not None:
            log.warning("read view incomplete", why=gave_up)

    async def run(self, stop: asyncio.Event) -> None:
        """Tail the changelog until ``stop``. After a failure the view is not ready (calls
        needing it are UNAVAILABLE) until the reader has reconnected, resumed where it
        left off and caught up again: routing goes on meanwhile."""
        pause = RETRY_S
        while not stop.is_set():
            try:
                await self._tail(stop)
            except Exception as exc:  # noqa: BLE001 - a read-only view must not stop routing
                self.ready.clear()
                self._update_metrics()
                log.warning("read view: changelog reader failed; retrying", error=repr(exc))
            else:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)
            pause = min(pause * 2, MAX_RETRY_S)

    async def _tail(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            **connection_options(self.kafka),
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            request_timeout_ms=self.kafka.request_timeout_ms,
        )
        await consumer.start()
        try:
            if self.topic not in await consumer.topics():
                raise RuntimeError(f"changelog {self.topic!r} does not exist or is not readable")
            await consumer._client.force_metadata_update()  # as the auditor: topics() keeps none
            partitions = consumer.partitions_for_topic(self.topic)
            if not partitions:
                raise RuntimeError(f"no partitions known for {self.topic!r} yet")
            wanted = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(wanted)
            for tp in wanted:
                if tp.partition in self._positions:
                    consumer.seek(tp, self._positions[tp.partition])
                else:
                    await consumer.seek_to_beginning(tp)
            targets: dict[TopicPartition, int] = (
                {} if self.ready.is_set() else await consumer.end_offsets(wanted)
            )
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=200, max_records=5_000)
                for tp, records in batch.items():
                    for record in records:
                        self.apply(record.key, record.value)
                    self._positions[tp.partition] = await consumer.position(tp)
                if not self.ready.is_set() and await self._reached(consumer, targets):
                    self.ready.set()
                    log.info(
                        "read view ready",
                        domains=len(self.view),
                        bytes=self.view.size,
                    )
                self._update_metrics()
        finally:
            await consumer.stop()

    @staticmethod
    async def _reached(consumer: AIOKafkaConsumer, targets: dict[TopicPartition, int]) -> bool:
        for tp, end in targets.items():
            if await consumer.position(tp) < end:
                return False
        return True

    def _update_metrics(self) -> None:
        if self.metrics is None:
            return
        self.metrics.domains.set(len(self.view))
        self.metrics.bytes.set(self.view.size)
        self.metrics.incomplete.set(self.view.incomplete)
        self.metrics.ready.set(1 if self.ready.is_set() else 0)
        if self.view.refused > self._refused_counted:
            self.metrics.refused.inc(self.view.refused - self._refused_counted)
            self._refused_counted = self.view.refused
