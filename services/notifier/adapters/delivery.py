"""The delivery worker: sends pending notifications through ``CustomerChannelGateway``.

One task; at most ``concurrency`` calls in flight; each call has a deadline. The outcome
of every attempt goes back into the core through ``ConsumeLoop.execute``, so the state
change and the ``NotificationRecord`` commit in one transaction. A retryable failure is
rescheduled with full-jitter backoff; a permanent one is REJECTED; an exhausted budget is
DEAD_LETTERED (and copied to ``notifications.dlq``). The gateway deduplicates on the
notification id, so an attempt interrupted by a crash is never delivered twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import structlog
from switchboard.v1 import notification_pb2, notification_pb2_grpc

from services.common.kafka import ConsumeLoop, NotOwnedError, OutboundRecord
from services.notifier.adapters.kafka import STYLE, NotifierHandler
from services.notifier.adapters.mapping import to_proto
from services.notifier.domain.delivery import CircuitBreaker, RetryPolicy, is_retryable
from services.notifier.settings import DeliverySettings, GatewaySettings

__all__ = ["DeliveryWorker"]

log = structlog.get_logger("delivery")


@dataclass
class DeliveryWorker:
    handler: NotifierHandler
    loop: ConsumeLoop
    gateways: GatewaySettings
    settings: DeliverySettings
    rng: random.Random = field(default_factory=random.Random)
    _channels: dict[str, grpc.aio.Channel] = field(default_factory=dict)
    _breakers: dict[str, CircuitBreaker] = field(default_factory=dict)
    _in_flight: set[str] = field(default_factory=set)

    @property
    def retry(self) -> RetryPolicy:
        s = self.settings
        return RetryPolicy(s.base_s, s.cap_s, s.max_attempts, s.budget_s)

    async def run(self, stop: asyncio.Event) -> None:
        semaphore = asyncio.Semaphore(self.settings.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        try:
            while not stop.is_set():
                self.handler.work_ready.clear()
                now = self.handler.clock.now()
                for domain, core in self.handler.states.items():
                    for pending in core.due(now):
                        nid = pending.notification.notification_id
                        if nid in self._in_flight:
                            continue
                        self._in_flight.add(nid)
                        task = asyncio.create_task(self._attempt(domain, nid, semaphore))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                with contextlib.suppress(TimeoutError):  # new work, or the next scan
                    await asyncio.wait_for(self.handler.work_ready.wait(), timeout=0.05)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for channel in self._channels.values():
                await channel.close(None)

    def _stub(self, target: str) -> notification_pb2_grpc.CustomerChannelGatewayStub:
        channel = self._channels.get(target)
        if channel is None:
            channel = self._channels[target] = grpc.aio.insecure_channel(target)
        return notification_pb2_grpc.CustomerChannelGatewayStub(channel)

    async def _attempt(self, domain: str, nid: str, semaphore: asyncio.Semaphore) -> None:
        try:
            async with semaphore:
                await self._deliver(domain, nid)
        except Exception:
            log.exception("delivery attempt failed", notification_id=nid)
        finally:
            self._in_flight.discard(nid)

    async def _deliver(self, domain: str, nid: str) -> None:
        core = self.handler.states.cores.get(domain)
        pending = core.pending(nid) if core else None
        if core is None or pending is None:
            return
        note = pending.notification
        target = self.gateways.for_channel(STYLE.get(note.channel, "sms"))
        breaker = self._breakers.setdefault(
            target, CircuitBreaker(self.settings.breaker_failures, self.settings.breaker_open_s)
        )
        now = self.handler.clock.now()
        if not breaker.allows(now):
            await self._reschedule(
                domain, nid, now + self.settings.breaker_open_s / 2, "circuit open", count=False
            )
            return
        started = time.perf_counter()
        try:
            reply = await self._stub(target).Deliver(  # type: ignore[misc]
                notification_pb2.DeliverRequest(notification=to_proto(note)),
                timeout=self.settings.deadline_s,
            )
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
            breaker.failed(self.handler.clock.now())
            self.handler.metrics.circuit_state.labels(target).set(int(breaker.state))
            error = f"{code}: {exc.details()}"
            if not is_retryable(code):
                await self._settle(domain, nid, "rejected", error)
                return
            attempts = pending.attempts + 1
            now = self.handler.clock.now()
            if self.retry.gives_up(attempts, pending.first_attempt_at or now, now):
                await self._settle(domain, nid, "dead_lettered", error)
                return
            self.handler.metrics.retries.inc()
            await self._reschedule(domain, nid, now + self.retry.backoff(attempts, self.rng), error)
            return
        breaker.succeeded()
        self.handler.metrics.circuit_state.labels(target).set(int(breaker.state))
        self.handler.metrics.delivery_seconds.observe(time.perf_counter() - started)
        await self._settle(domain, nid, "delivered", "", reply.gateway_message_id)

    async def _reschedule(
        self, domain: str, nid: str, at: float, error: str, *, count: bool = True
    ) -> None:
        def command() -> tuple[None, list[OutboundRecord]]:
            core = self.handler.states.cores.get(domain)
            if core is not None:
                if count:
                    core.retry_later(nid, at, error, self.handler.clock.now())
                else:
                    pending = core.pending(nid)
                    if pending is not None:
                        pending.next_attempt_at = at
            return None, []

        await self._run(domain, command)

    async def _run(
        self, domain: str, command: Callable[[], tuple[None, list[OutboundRecord]]]
    ) -> None:
        """Run ``command`` in the domain's partition transaction; a domain that moved to
        another instance meanwhile is that instance's to deliver (the gateway dedupes)."""
        partition = self.handler.states.partition_of.get(domain)
        if partition is None:
            return
        try:
            await self.loop.execute(command, partition=partition)
        except NotOwnedError:
            log.info("domain moved to another instance; its owner settles", domain=domain)

    async def _settle(
        self, domain: str, nid: str, outcome: str, error: str, gateway_message_id: str = ""
    ) -> None:
        def command() -> tuple[None, list[OutboundRecord]]:
            core = self.handler.states.cores.get(domain)
            if core is None:
                return None, []
            now = self.handler.clock.now()
            pending = core.settle(nid, now, error, outcome)
            if pending is None:
                return None, []
            log.info(
                "notification settled",
                notification_id=nid,
                outcome=outcome,
                attempts=pending.attempts,
            )
            return None, self.handler.outcome_records(
                domain, pending, outcome, now, gateway_message_id
            )

        await self._run(domain, command)
