"""The delivery worker: sends pending notifications through a :class:`ChannelGateway`.

One task; at most ``concurrency`` calls in flight; each call has a deadline
(``deadline_s``), and a circuit breaker per gateway endpoint stops calling one that keeps
failing. The worker decides nothing about a notification's fate: it reports each
attempt to :class:`DeliveryReports`, where the core decides (retry, REJECTED,
DEAD_LETTERED) and the state change commits with its ``NotificationRecord``. The gateway
deduplicates on the notification id, so an attempt interrupted by a crash is never
delivered twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from services.common.clock import Clock
from services.notifier.adapters.gateway import ChannelGateway, GatewayError
from services.notifier.domain.core import Pending
from services.notifier.domain.delivery import CircuitBreaker
from services.notifier.metrics import NotifierMetrics
from services.notifier.settings import DeliverySettings

__all__ = ["DeliveryReports", "DeliveryWorker"]

log = structlog.get_logger("delivery")


class DeliveryReports(Protocol):
    """What the worker needs of the notifier's state: what is due, and where each
    attempt's result goes (applied by the core, committed with its records)."""

    @property
    def work_ready(self) -> asyncio.Event:
        """Set when a notification is decided, so the worker need not wait for its scan."""
        ...

    def due(self, now: float) -> list[tuple[str, Pending]]:
        """(domain, pending) for every notification whose next attempt is due at ``now``."""
        ...

    def pending(self, domain: str, notification_id: str) -> Pending | None: ...

    async def delivered(self, domain: str, notification_id: str, gateway_message_id: str) -> None:
        """The gateway accepted it."""
        ...

    async def failed(self, domain: str, notification_id: str, status: str, error: str) -> None:
        """The gateway refused it, or did not answer in time."""
        ...

    async def postpone(self, domain: str, notification_id: str, at: float) -> None:
        """Not attempted (circuit open): try again at ``at``."""
        ...


@dataclass
class DeliveryWorker:
    reports: DeliveryReports
    gateway: ChannelGateway
    settings: DeliverySettings
    clock: Clock
    metrics: NotifierMetrics
    #: Seconds between scans for due retries when no new work is signalled.
    scan_s: float = 0.05
    _breakers: dict[str, CircuitBreaker] = field(default_factory=dict)
    _in_flight: set[str] = field(default_factory=set)

    async def run(self, stop: asyncio.Event) -> None:
        semaphore = asyncio.Semaphore(self.settings.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        try:
            while not stop.is_set():
                self.reports.work_ready.clear()
                for domain, pending in self.reports.due(self.clock.now()):
                    nid = pending.notification.notification_id
                    if nid in self._in_flight:
                        continue
                    self._in_flight.add(nid)
                    task = asyncio.create_task(self._attempt(domain, nid, semaphore))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                with contextlib.suppress(TimeoutError):  # new work, or the next scan
                    await asyncio.wait_for(self.reports.work_ready.wait(), timeout=self.scan_s)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.gateway.close()

    async def _attempt(self, domain: str, nid: str, semaphore: asyncio.Semaphore) -> None:
        try:
            async with semaphore:
                await self._deliver(domain, nid)
        except Exception:
            log.exception("delivery attempt failed", notification_id=nid)
        finally:
            self._in_flight.discard(nid)

    async def _deliver(self, domain: str, nid: str) -> None:
        pending = self.reports.pending(domain, nid)
        if pending is None:
            return
        note = pending.notification
        endpoint = self.gateway.endpoint(note.channel)
        breaker = self._breakers.setdefault(
            endpoint, CircuitBreaker(self.settings.breaker_failures, self.settings.breaker_open_s)
        )
        now = self.clock.now()
        if not breaker.allows(now):
            await self.reports.postpone(domain, nid, now + breaker.open_s / 2)
            return
        started = time.perf_counter()
        deadline_s = self.settings.deadline_s
        try:
            async with asyncio.timeout(deadline_s):
                message_id = await self.gateway.deliver(note, deadline_s)
        except (GatewayError, TimeoutError) as exc:
            failure = (
                exc
                if isinstance(exc, GatewayError)
                else GatewayError("DEADLINE_EXCEEDED", f"no answer within {deadline_s}s")
            )
            breaker.failed(self.clock.now())
            self.metrics.circuit_state.labels(endpoint).set(int(breaker.state))
            await self.reports.failed(domain, nid, failure.status, str(failure))
            return
        breaker.succeeded()
        self.metrics.circuit_state.labels(endpoint).set(int(breaker.state))
        self.metrics.delivery_seconds.observe(time.perf_counter() - started)
        await self.reports.delivered(domain, nid, message_id)
