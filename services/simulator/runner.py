"""Runs the pure simulation in real time against a publisher and a decision stream.

Three tasks share one event loop (so the synchronous core needs no locks): a ticker fires
the core's timers as the clock reaches them, a reader feeds it the router's decisions,
and the publisher delivers what both produce. On stop the day ends properly: waiting
customers hang up, handled contacts end, agents log out, and the backlog is flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import structlog

from services.common.clock import Clock
from services.common.codec import OutputFormat, encode_record
from services.common.topics import Topics
from services.simulator.adapters.kafka import DecisionStream, EventPublisher, Record
from services.simulator.adapters.wire import decision_from_envelope, to_envelope
from services.simulator.core import SimStats, Simulation
from services.simulator.events import SimEvent

__all__ = ["SimulationRunner"]

log = structlog.get_logger("simulator")

#: The ticker never sleeps longer than this, so a stop is noticed promptly.
MAX_TICK = 0.5


class SimulationRunner:
    """Wires a :class:`Simulation` to Kafka (or fakes) and a clock."""

    def __init__(
        self,
        sim: Simulation,
        publisher: EventPublisher,
        decisions: DecisionStream,
        clock: Clock,
        topics: Topics,
        domain: str,
        *,
        progress_every: float = 15.0,
        flush_timeout: float = 10.0,
        output_format: OutputFormat = "protobuf",
    ) -> None:
        self.sim = sim
        self.publisher = publisher
        self.decisions = decisions
        self.clock = clock
        self.topics = topics
        self.domain = domain
        self.key = domain.encode()
        self.progress_every = progress_every
        self.flush_timeout = flush_timeout
        self.output_format: OutputFormat = output_format
        self.published = 0

    def emit(self, events: Iterable[SimEvent]) -> None:
        """Queue events for publishing, keyed by routing domain."""
        for event in events:
            topic = (
                self.topics.contact_events if event.topic == "contact" else self.topics.agent_events
            )
            value, headers = encode_record(to_envelope(event, self.domain), self.output_format)
            self.publisher.enqueue(Record(topic=topic, key=self.key, value=value, headers=headers))
            self.published += 1

    async def _tick(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            now = self.clock.now()
            self.emit(self.sim.advance(now))
            deadline = self.sim.next_deadline()
            delay = MAX_TICK if deadline is None else min(MAX_TICK, max(0.0, deadline - now))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)

    async def _read(self, stop: asyncio.Event) -> None:
        async for envelope in self.decisions.stream(stop):
            if envelope.domain and envelope.domain != self.domain:
                continue
            decision = decision_from_envelope(envelope)
            if decision is not None:
                now = self.clock.now()
                self.emit(self.sim.advance(now))
                self.emit(self.sim.apply(decision, now))

    async def _progress(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.progress_every)
            log.info(
                "simulator progress",
                domain=self.domain,
                open_contacts=self.sim.open_contacts(),
                agents_logged_in=self.sim.logged_in_agents(),
                published=self.published,
                backlog=self.publisher.backlog,
                **self.sim.stats.counts,
            )

    async def _await_router_confirmations(self, within: float) -> None:
        """Keep reading decisions until the router confirms every ended contact, or ``within``.

        The end-of-day events were just published; without this the final report would
        count contacts the router closes a few milliseconds later as unconfirmed.
        """
        done = asyncio.Event()

        async def read_until_done() -> None:
            async for envelope in self.decisions.stream(done):
                decision = decision_from_envelope(envelope)
                if decision is not None:
                    self.sim.apply(decision, self.clock.now())
                if not self.sim.unconfirmed_contacts():
                    done.set()

        if not self.sim.unconfirmed_contacts():
            return
        reader = asyncio.create_task(read_until_done())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(reader), timeout=within)
        done.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader, timeout=2.0)

    async def run(self, stop: asyncio.Event) -> SimStats:
        """Run until ``stop`` is set, then end the day and flush; return the statistics."""
        await self.decisions.start()
        log.info("simulator started", domain=self.domain, scenario=self.sim.scenario.name)
        inner = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as group:
                publisher = group.create_task(self.publisher.run(inner))
                group.create_task(self._tick(inner))
                group.create_task(self._read(inner))
                group.create_task(self._progress(inner))
                await stop.wait()
                inner.set()
                publisher.cancel()
        finally:
            self.emit(self.sim.shutdown(self.clock.now()))
            delivered = await self.publisher.flush(self.flush_timeout)
            if delivered:
                await self._await_router_confirmations(self.flush_timeout)
            await self.decisions.close()
            log.info(
                "simulator stopped",
                domain=self.domain,
                delivered_all=delivered,
                backlog=self.publisher.backlog,
                unconfirmed_by_router=len(self.sim.unconfirmed_contacts()),
                **self.sim.stats.as_dict(),
            )
        return self.sim.stats
