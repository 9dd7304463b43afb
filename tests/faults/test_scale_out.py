"""Scale out, stall and fail over without splitting a domain, doubling or losing a record
(issue #12, point 7), with real processes, the real broker and the auditor at the end of
every test:

- three routers under load, scaled 1 -> 3 -> 2 -> 1 (SIGTERM, then kill -9);
- a router stalled (SIGSTOP) past the session timeout, its domains taken over, resumed;
- an oversized input and an oversized output: a dead letter for each, nothing else lost;
- kill -9 while offers ring: accepts published before the timeout are honoured;
- two escalation and two notifier instances, one of each killed under load.

The load comes from the test playing telephony and agent desktops
(:class:`ContactCenter`): it logs agents in, publishes arrivals, answers every offer it
reads on ``routing.decisions`` and ends every assigned contact after a short talk.

"Each domain on one instance at a time" is checked as follows (see
:func:`moves_without_a_membership_change`). A domain's decisions, in offset order, name
their decider in ``source`` ("router/<instance>"). A domain can only move in a
rebalance, and here a rebalance only follows a change of the group that the test
made (a start, a stop, a kill, a stall, a resume). So the domain's k-th change of
decider must be explained by a distinct change of membership made before it (by the
wall clock: the deciding router's ``occurred_at`` against the test's ``time.time()``,
one machine), the changes used in order. A split domain (two instances deciding in
turn) or a zombie (a stalled instance deciding after its successor, from stale state)
moves more often than the group changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import murmur2
from aiokafka.structs import ConsumerRecord
from switchboard.v1 import common_pb2, contact_events_pb2, notification_pb2_grpc
from switchboard.v1.envelope_pb2 import Envelope

from services.auditor.__main__ import audit_topics
from services.common.codec import decode_envelope, encode_envelope, new_envelope
from services.common.topics import Topics, load_topic_specs
from services.notifier.gateway_stub import ReferenceGateway
from tests.support import (
    GrpcServer,
    KafkaBroker,
    ServiceProcess,
    service_env,
    service_process,
    until,
    wait_for,
)

pytestmark = [pytest.mark.kafka, pytest.mark.faults]

VOICE, SMS = common_pb2.CHANNEL_VOICE, common_pb2.CHANNEL_SMS
AVAILABLE, AWAY = 1, 2  # switchboard.v1.AgentState
STATE_NAMES = {1: "available", 2: "away", 3: "logged out", 4: "busy", 5: "wrap-up", 6: "reserved"}
#: The consumer group's session timeout (services/common/kafka.py): how long a killed or
#: stalled member keeps its partitions.
SESSION_TIMEOUT_S = 10.0
#: The broker takes batches up to 1,048,588 bytes (message.max.bytes): this input fits,
#: but neither the services' own limit nor a dead letter copying it with reason headers.
OVERSIZED_INPUT_BYTES = 1_048_400


def partitions_of_inputs() -> int:
    """Partition count of contact.events (= agent.events = routing.decisions)."""
    return int(next(s.partitions for s in load_topic_specs() if s.name == "contact.events"))


def partition_of(domain: str, partitions: int) -> int:
    """The partition a domain-keyed record lands on (murmur2, as every producer here)."""
    return int(murmur2(domain.encode()) & 0x7FFFFFFF) % partitions


def spread_domains(per_partition: int) -> list[str]:
    """Domain names that put exactly ``per_partition`` domains on every input partition."""
    partitions = partitions_of_inputs()
    chosen: dict[int, list[str]] = defaultdict(list)
    for n in itertools.count():
        name = f"tenant{n}"
        bucket = chosen[partition_of(name, partitions)]
        if len(bucket) < per_partition:
            bucket.append(name)
        if all(len(chosen[p]) == per_partition for p in range(partitions)):
            return sorted(d for names in chosen.values() for d in names)
    raise AssertionError("unreachable")


# --- events, as a telephony platform and agent desktops publish them ------------------


def login(agent_id: str, domain: str, skill: str = "billing") -> bytes:
    e = new_envelope(domain, "desk", event_id=f"login-{domain}-{agent_id}")
    e.agent_logged_in.agent_id = agent_id
    e.agent_logged_in.team = "billing-team"
    e.agent_logged_in.languages.append("en")
    e.agent_logged_in.skills.add(skill=skill, proficiency=5)
    e.agent_logged_in.capacity.add(channel=VOICE, max_concurrent=1)
    return encode_envelope(e)


def set_state(agent_id: str, domain: str, state: int, seq: int) -> bytes:
    e = new_envelope(domain, "desk", event_id=f"state-{domain}-{agent_id}-{seq}")
    e.agent_state_changed.agent_id = agent_id
    e.agent_state_changed.state = state  # type: ignore[assignment]
    e.agent_state_changed.reason = "break" if state == AWAY else ""
    return encode_envelope(e)


def arrival(
    contact_id: str,
    domain: str,
    queue: str = "billing-en",
    channel: int = VOICE,
    name: str = "Anna",
) -> Envelope:
    e = new_envelope(domain, "pbx", event_id=f"arrive-{domain}-{contact_id}")
    e.contact_arrived.contact_id = contact_id
    e.contact_arrived.queue = queue
    e.contact_arrived.channel = channel  # type: ignore[assignment]
    e.contact_arrived.customer.name = name
    e.contact_arrived.customer.phone = "+48600123456"
    return e


def arrive(contact_id: str, domain: str, **fields: Any) -> bytes:
    return encode_envelope(arrival(contact_id, domain, **fields))


def accept(agent_id: str, contact_id: str, offer_id: str, domain: str) -> bytes:
    e = new_envelope(domain, "desk", event_id=f"accept-{domain}-{offer_id}")
    e.offer_accepted.agent_id, e.offer_accepted.contact_id = agent_id, contact_id
    e.offer_accepted.offer_id = offer_id
    return encode_envelope(e)


def end(contact_id: str, domain: str, agent_id: str = "", note: str = "") -> bytes:
    e = new_envelope(domain, "pbx", event_id=f"end-{domain}-{contact_id}")
    e.contact_ended.contact_id = contact_id
    e.contact_ended.agent_id = agent_id
    if note:
        e.contact_ended.disposition = contact_events_pb2.DISPOSITION_UNRESOLVED
        e.contact_ended.note = note
    else:
        e.contact_ended.disposition = contact_events_pb2.DISPOSITION_RESOLVED
    return encode_envelope(e)


def hold(contact_id: str, domain: str, minutes: int = 3) -> bytes:
    e = new_envelope(domain, "pbx", event_id=f"hold-{domain}-{contact_id}")
    e.contact_held.contact_id = contact_id
    e.contact_held.reason = contact_events_pb2.PAUSE_REASON_CHECKING_INFORMATION
    e.contact_held.expected_duration.FromSeconds(minutes * 60)
    return encode_envelope(e)


# --- the contact center the services serve ----------------------------------------------


def at(envelope: Envelope) -> float:
    """When the service decided (its own clock, epoch seconds)."""
    return envelope.occurred_at.ToNanoseconds() / 1e9


@dataclass
class ContactCenter:
    """Telephony and agent desktops, played by the test over the real topics.

    Reads ``routing.decisions`` (committed only) as they come: answers every offer after
    ``answer_after_s`` (unless ``auto_answer`` is off) and ends every assigned contact
    after ``talk_s``. Keeps each domain's decisions in offset order for the checks.
    """

    kafka: KafkaBroker
    topics: Topics
    talk_s: float = 0.3
    answer_after_s: float = 0.0
    auto_answer: bool = True
    decisions: dict[str, list[Envelope]] = field(default_factory=lambda: defaultdict(list))
    arrived: set[tuple[str, str]] = field(default_factory=set)
    closed: Counter[tuple[str, str]] = field(default_factory=Counter)
    agent_states: dict[tuple[str, str], int] = field(default_factory=dict)
    _due: list[tuple[float, int, str, str, bytes]] = field(default_factory=list)
    _seq: Iterator[int] = field(default_factory=itertools.count)
    _producer: AIOKafkaProducer | None = None
    _consumer: AIOKafkaConsumer | None = None
    _reader: asyncio.Task[None] | None = None
    _load: asyncio.Task[None] | None = None
    _stop_load: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> ContactCenter:
        servers = self.kafka.bootstrap_servers
        self._producer = AIOKafkaProducer(
            bootstrap_servers=servers, acks="all", enable_idempotence=True, linger_ms=2
        )
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            fetch_max_wait_ms=50,
        )
        await self._consumer.start()
        topic = self.topics.routing_decisions
        partitions = self._consumer.partitions_for_topic(topic) or set()
        while not partitions:
            await self._consumer._client.force_metadata_update()
            partitions = self._consumer.partitions_for_topic(topic) or set()
        self._consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop_load()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()

    # publishing ---------------------------------------------------------------------

    async def publish(self, topic: str, domain: str, *values: bytes) -> None:
        if self._producer is None:
            raise RuntimeError("not started")
        sent = [await self._producer.send(topic, v, key=domain.encode()) for v in values]
        await asyncio.gather(*sent)

    async def login(self, domain: str, agents: Iterable[int]) -> None:
        await self.publish(
            self.topics.agent_events, domain, *(login(f"{domain}-a{n}", domain) for n in agents)
        )

    async def arrive(self, domain: str, contact_id: str) -> None:
        self.arrived.add((domain, contact_id))
        await self.publish(self.topics.contact_events, domain, arrive(contact_id, domain))

    def start_load(self, domains: list[str], per_second: float) -> None:
        """Arrivals round-robin over ``domains`` at ``per_second`` until :meth:`stop_load`."""

        async def run() -> None:
            interval = len(domains) / per_second
            for n in itertools.count():
                for domain in domains:
                    await self.arrive(domain, f"{domain}-c{n}")
                with contextlib.suppress(TimeoutError):  # pacing the load, not waiting on it
                    await asyncio.wait_for(self._stop_load.wait(), interval)
                if self._stop_load.is_set():
                    return

        self._load = asyncio.create_task(run())

    async def stop_load(self) -> None:
        self._stop_load.set()
        if self._load is not None:
            await self._load
            self._load = None

    async def pulse(self, domains: list[str], stop: asyncio.Event, interval: float = 0.1) -> None:
        """Until ``stop``: a probe agent per domain (a skill no queue asks for) goes away and
        back every ``interval``, a steady stream of decisions showing, moment by moment, who
        decides for the domain. Ends with every probe available."""
        for domain in domains:
            await self.publish(self.topics.agent_events, domain, login("probe", domain, "probe"))
        for n in itertools.count():
            state = AWAY if n % 2 == 0 else AVAILABLE
            for domain in domains:
                value = set_state("probe", domain, state, n)
                await self.publish(self.topics.agent_events, domain, value)
            if state == AVAILABLE and stop.is_set():
                return
            with contextlib.suppress(TimeoutError):  # pacing, not waiting on it
                await asyncio.wait_for(stop.wait(), interval)

    # reading and answering ------------------------------------------------------------

    async def _read(self) -> None:
        if self._consumer is None:
            raise RuntimeError("not started")
        while True:
            batch = await self._consumer.getmany(timeout_ms=50)
            for _, records in sorted(batch.items()):
                for record in records:
                    self._on_decision(decode_envelope(record.value, record.headers))
            await self._send_due()

    def _later(self, delay: float, topic: str, domain: str, value: bytes) -> None:
        heapq.heappush(self._due, (time.time() + delay, next(self._seq), topic, domain, value))

    async def _send_due(self) -> None:
        now = time.time()
        while self._due and self._due[0][0] <= now:
            _, _, topic, domain, value = heapq.heappop(self._due)
            await self.publish(topic, domain, value)

    def _on_decision(self, e: Envelope) -> None:
        self.decisions[e.domain].append(e)
        kind = e.WhichOneof("payload")
        if kind == "offer_made" and self.auto_answer:
            o = e.offer_made
            value = accept(o.agent_id, o.contact_id, o.offer_id, e.domain)
            self._later(self.answer_after_s, self.topics.agent_events, e.domain, value)
        elif kind == "contact_assigned":
            a = e.contact_assigned
            value = end(a.contact_id, e.domain, a.agent_id)
            self._later(self.talk_s, self.topics.contact_events, e.domain, value)
        elif kind == "contact_closed":
            self.closed[(e.domain, e.contact_closed.contact_id)] += 1
        elif kind == "agent_status_changed":
            s = e.agent_status_changed
            self.agent_states[(e.domain, s.agent_id)] = s.state

    # waiting and judging --------------------------------------------------------------

    async def until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``predicate`` (the reader must stay alive) until true or fail saying ``what``.

        Every 0.1 s, not support's 0.02 s: the predicates scan every decision so far, and
        the services under test share two cores with this loop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self._reader is not None and self._reader.done():
                self._reader.result()  # raises what killed it
                raise AssertionError("the contact center's reader stopped")
            if predicate():
                return
            if loop.time() > deadline:
                raise AssertionError(f"not true within {timeout} s: {what}")
            await asyncio.sleep(0.1)

    def decided_since(self, since: float, domains: Iterable[str], sources: set[str]) -> set[str]:
        """The ``domains`` with a decision by one of ``sources`` made at or after ``since``."""
        return {
            d
            for d in domains
            if any(at(e) >= since and e.source in sources for e in reversed(self.decisions[d]))
        }

    def assigned_since(
        self, since: float, domains: Iterable[str], sources: set[str], count: int = 3
    ) -> set[str]:
        """The ``domains`` where ``sources`` assigned ``count`` contacts at or after ``since``."""
        return {
            d
            for d in domains
            if sum(
                at(e) >= since and e.source in sources and e.HasField("contact_assigned")
                for e in self.decisions[d]
            )
            >= count
        }

    def sources(self, since: float = 0.0) -> set[str]:
        return {e.source for es in self.decisions.values() for e in es if at(e) >= since}

    def lost(self) -> list[tuple[str, str]]:
        return sorted(c for c in self.arrived if not self.closed[c])

    def settled(self) -> bool:
        """Every arrival closed, every agent available again (wrap-up over, nothing stuck)."""
        return not self.lost() and all(s == AVAILABLE for s in self.agent_states.values())

    def problems(self) -> list[str]:
        """What a finished run must not show: lost contacts, doubles, stuck agents."""
        found = []
        if lost := self.lost():
            found.append(f"{len(lost)} of {len(self.arrived)} contacts never closed: {lost[:8]}")
        if doubles := [c for c, n in self.closed.items() if n > 1]:
            found.append(f"contacts closed more than once: {doubles[:8]}")
        offers = Counter(
            (d, e.offer_made.offer_id)
            for d, es in self.decisions.items()
            for e in es
            if e.HasField("offer_made")
        )
        if doubled := [o for o, n in offers.items() if n > 1]:
            found.append(f"offers made twice: {doubled[:8]}")
        stuck = {a: STATE_NAMES.get(s, s) for a, s in self.agent_states.items() if s != AVAILABLE}
        if stuck:
            found.append(
                f"{len(stuck)} agents not available at the end: {sorted(stuck.items())[:8]}"
            )
        return found


def decider_runs(decisions: list[Envelope]) -> list[tuple[str, float, int]]:
    """(source, when, index) of each run of one decider in a domain's decisions."""
    runs: list[tuple[str, float, int]] = []
    for index, e in enumerate(decisions):
        if not runs or runs[-1][0] != e.source:
            runs.append((e.source, at(e), index))
    return runs


def moves_without_a_membership_change(
    decisions: dict[str, list[Envelope]], changes: list[float]
) -> list[str]:
    """Domains that changed decider more often, or sooner, than the group changed.

    ``changes``: when the test changed the group's membership (sorted). A domain's k-th
    move must come after an unused change, the changes taken in order (greedy matching:
    one change of membership explains at most one move of each domain).
    """
    problems = []
    for domain, envelopes in sorted(decisions.items()):
        runs = decider_runs(envelopes)
        used = 0
        for (before, _, _), (source, when, index) in itertools.pairwise(runs):
            if used < len(changes) and changes[used] <= when:
                used += 1
                continue
            problems.append(
                f"domain {domain} moved from {before} to {source} (decision {index} of "
                f"{len(envelopes)}) with no change of membership left to explain it; "
                f"deciders in offset order: {[r[0] for r in runs]}"
            )
            break
    return problems


@dataclass
class Membership:
    """When the test changed the consumer group (start, stop, kill, stall, resume).

    Each step is also printed with its time since the test began, so a failure's captured
    output shows the timeline.
    """

    began: float = field(default_factory=time.time)
    changes: list[float] = field(default_factory=list)

    def change(self, what: str, count: int = 1) -> float:
        """Record ``count`` changes of membership made now (two starts at once: 2)."""
        now = self.note(what)
        self.changes += [now] * count
        return now

    def note(self, what: str) -> float:
        now = time.time()
        print(f"{now - self.began:6.1f} s  {what}")  # shown with a failure: its timeline
        return now


def router(kafka: KafkaBroker, topics: Topics, logs: Path, label: str, **extra: str) -> Any:
    env = service_env("router", kafka, topics, INSTANCE=label, **extra)
    return service_process("router", env, logs, label=label)


@contextlib.contextmanager
def judged_later(problems: list[str]) -> Iterator[None]:
    """Run a scenario's steps; if one fails, say so and still judge what the services did."""
    try:
        yield
    except AssertionError as exc:
        problems.append(f"the scenario stopped: {exc}")


async def audit(kafka: KafkaBroker, topics: Topics, **checks: bool) -> list[str]:
    report = await audit_topics(kafka.bootstrap_servers, topics, **checks)
    print(f"auditor:\n{report.summary()}")  # the counts, shown with -rP
    return [] if report.ok else [f"auditor:\n{report.summary()}"]


async def stop_all(processes: Iterable[ServiceProcess]) -> None:
    await asyncio.gather(*(p.stop() for p in processes))


# --- 1. scale out and back in under load -------------------------------------------------


async def test_three_routers_scaled_1_3_2_1_under_load_lose_double_and_split_nothing(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    topics = await kafka.fresh_topics()
    domains = spread_domains(per_partition=2)
    a, b, c = (router(kafka, topics, tmp_path, label) for label in ("ra", "rb", "rc"))
    group = Membership()
    problems: list[str] = []
    async with ContactCenter(kafka, topics) as center:
        try:
            with judged_later(problems):
                group.note("start ra")
                await a.start()
                for domain in domains:
                    await center.login(domain, range(3))
                center.start_load(domains, per_second=6)
                all_work = set(domains)
                one, three = {"router/ra"}, {"router/ra", "router/rb", "router/rc"}
                # Each step holds until every domain has had contacts assigned since it began by
                # the routers then in the group: work flowed through every domain.
                await center.until(
                    lambda: center.assigned_since(0, domains, one) == all_work,
                    timeout=30,
                    what="the first router assigning in every domain",
                )

                scaled_out = group.change("start rb and rc: scale out to three", count=2)
                await asyncio.gather(b.start(), c.start())
                for domain in domains:  # more agents log in while the group rebalances
                    await center.login(domain, [3])
                await center.until(
                    lambda: center.sources(scaled_out) == three,
                    timeout=40,
                    what="all three routers deciding",
                )
                settled = group.note("all three deciding")
                await center.until(
                    lambda: center.assigned_since(settled, domains, three) == all_work,
                    timeout=30,
                    what="every domain served by one of three routers",
                )

                stopped = group.change("SIGTERM rc: scale in to two, gracefully")
                code = await c.stop()
                if code != 0:
                    problems.append(f"router rc exited with {code} on SIGTERM (graceful stop)")
                two = {"router/ra", "router/rb"}
                await center.until(
                    lambda: center.assigned_since(stopped, domains, two) == all_work,
                    timeout=40,
                    what="every domain served by ra or rb after rc stopped",
                )

                killed = group.change("kill -9 rb: down to one, by a crash")
                await b.kill()
                await center.until(
                    lambda: center.assigned_since(killed, domains, one) == all_work,
                    timeout=SESSION_TIMEOUT_S + 40,
                    what="ra serving every domain after rb was killed",
                )

                group.note("ra took over everything; load stops")
                await center.stop_load()
                with contextlib.suppress(AssertionError):  # judged below, with everything else
                    await center.until(lambda: not center.lost(), timeout=45, what="all closed")
                    await center.until(center.settled, timeout=15, what="every agent available")
        finally:
            group.change("stop the rest")
            await stop_all([a, b, c])
    served = Counter(
        e.source for es in center.decisions.values() for e in es if e.HasField("contact_assigned")
    )
    group.note(f"{len(center.arrived)} contacts; assignments by router: {dict(served)}")
    if set(served) != three:
        problems.append(f"not every router served contacts: {dict(served)}")
    problems += center.problems()
    problems += moves_without_a_membership_change(center.decisions, group.changes)
    if unknown := center.sources() - {"router/ra", "router/rb", "router/rc"}:
        problems.append(f"decisions from unknown sources: {unknown}")
    problems += await audit(kafka, topics, check_notifications=False, check_escalations=False)
    assert not problems, "\n".join(problems)


# --- 2. a stalled router comes back after its domains moved ----------------------------


async def test_a_router_stalled_past_the_session_timeout_is_fenced_when_it_resumes(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    """Rule checked for each domain the stalled router lost: after the survivor's first
    decision for it, the stalled router decides again only once the survivor has made its
    last decision for it (a legitimate handback after it rejoined the group); never in
    between, from the state it had before it froze. From the takeover until after the
    resume a probe agent in each lost domain changes state every 0.1 s, so the survivor
    keeps deciding there and anything the stalled router commits on waking falls in between.
    """
    topics = await kafka.fresh_topics()
    domains = spread_domains(per_partition=2)
    survivor, stalled = router(kafka, topics, tmp_path, "ra"), router(kafka, topics, tmp_path, "rb")
    ra, rb = "router/ra", "router/rb"
    group = Membership()
    problems: list[str] = []
    lost: set[str] = set()
    stall = 0.0
    pulses_stop = asyncio.Event()
    pulse: asyncio.Task[None] | None = None
    # Agents pick up after a second, so the stalled router has offers ringing when it freezes.
    async with ContactCenter(kafka, topics, answer_after_s=1.0) as center:
        try:
            with judged_later(problems):
                group.change("start ra and rb")  # the second to join moves domains
                await asyncio.gather(survivor.start(), stalled.start())
                for domain in domains:
                    await center.login(domain, range(3))
                center.start_load(domains, per_second=6)
                await center.until(
                    lambda: center.sources() == {ra, rb}, timeout=40, what="both routers deciding"
                )
                both = group.note("both deciding")
                await center.until(
                    lambda: center.assigned_since(both, domains, {ra, rb}, 2) == set(domains),
                    timeout=30,
                    what="every domain served by one of the two",
                )
                lost = {d for d in domains if center.decisions[d][-1].source == rb}
                assert lost, "the second router owned no domain; nothing to take over"

                stall = group.change(f"SIGSTOP rb, which decides for {sorted(lost)}")
                stalled.pause()
                await center.until(
                    lambda: center.decided_since(stall, lost, {ra}) == lost,
                    timeout=SESSION_TIMEOUT_S + 40,
                    what="the survivor taking over the stalled router's domains",
                )
                group.note("ra decides for all of them")
                # From now on the lost domains decide something every 0.1 s: whatever the
                # stalled router commits when it wakes lands between the survivor's decisions.
                pulse = asyncio.create_task(center.pulse(sorted(lost), pulses_stop))
                # The stall itself: past the session timeout however soon the takeover came.
                await asyncio.sleep(max(0.0, stall + SESSION_TIMEOUT_S + 2 - time.time()))

                # Room for whatever it had in flight to try to commit, and for it to rejoin.
                resumed = group.change("SIGCONT rb") + 5
                stalled.resume()
                await center.until(
                    lambda: center.decided_since(resumed, domains, {ra, rb}) == set(domains),
                    timeout=40,
                    what="every domain decided again after the resume",
                )
                pulses_stop.set()
                await pulse
                group.note("every domain decided since; load stops")
                await center.stop_load()
                with contextlib.suppress(AssertionError):  # judged below, with everything else
                    await center.until(lambda: not center.lost(), timeout=45, what="all closed")
                    await center.until(center.settled, timeout=15, what="every agent available")
        finally:
            pulses_stop.set()
            if pulse is not None:
                await pulse
            ended = group.change("stop both")
            await stop_all([survivor, stalled])
    for domain in sorted(lost):
        group.note(f"{domain} deciders: {[r[0] for r in decider_runs(center.decisions[domain])]}")
        decisions = [e for e in center.decisions[domain] if at(e) < ended]
        first = next((i for i, e in enumerate(decisions) if e.source == ra and at(e) >= stall), 0)
        last = max((i for i, e in enumerate(decisions) if e.source == ra), default=0)
        zombie = [e for e in decisions[first:last] if e.source == rb]
        if zombie:
            kinds = Counter(e.WhichOneof("payload") for e in zombie)
            problems.append(
                f"domain {domain}: {len(zombie)} decisions by the stalled router after the "
                f"survivor took over and before the survivor's last: {dict(kinds)}"
            )
    problems += center.problems()
    problems += moves_without_a_membership_change(center.decisions, group.changes)
    problems += await audit(kafka, topics, check_notifications=False, check_escalations=False)
    assert not problems, "\n".join(problems)


# --- 3. records too large for the broker -------------------------------------------------


def oversized_arrival(contact_id: str, domain: str, size: int) -> bytes:
    """A valid protobuf envelope of exactly ``size`` bytes (the customer's name fills it)."""
    e = arrival(contact_id, domain)
    e.contact_arrived.customer.name = ""
    filler = size - len(encode_envelope(e))
    while len(encode_envelope(e)) != size:
        e.contact_arrived.customer.name = "N" * filler
        filler -= len(encode_envelope(e)) - size
    return encode_envelope(e)


def headers_of(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    return {k: v.decode(errors="replace") for k, v in record.headers or ()}


async def test_an_oversized_input_and_an_oversized_output_become_dead_letters(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    """The input: a 1,048,400-byte arrival (the broker takes it; no service may apply it).
    Then a customer name of 500 kB and an end with a 600 kB note: each event is under a
    megabyte, but every field has a bound now, so both services refuse them naming the
    field, and no output can grow past a record (the oversized-output path itself is
    unit-tested: tests/unit/common/test_domain_state.py)."""
    topics = await kafka.fresh_topics()
    processes = [
        router(kafka, topics, tmp_path, "router"),
        service_process("escalation", service_env("escalation", kafka, topics), tmp_path),
    ]
    key = b"acme"
    huge = oversized_arrival("c-huge", "acme", OVERSIZED_INPUT_BYTES)
    assert len(huge) == OVERSIZED_INPUT_BYTES
    await asyncio.gather(*(p.start() for p in processes))
    try:
        await kafka.produce(topics.agent_events, [login("a1", "acme")], key=key)
        await kafka.produce(topics.contact_events, [huge], key=key)
        huge_offset = (await kafka.read_all(topics.contact_events, expect=1, timeout=5))[0].offset
        await kafka.produce(
            topics.contact_events,
            [
                arrive("c-after", "acme"),
                arrive("c-big", "acme", name="B" * 500_000),
                end("c-big", "acme", note="n" * 600_000),
                arrive("c-next", "acme"),
                end("c-next", "acme", note="wrong tariff"),
            ],
            key=key,
        )
        decisions = await wait_for(
            kafka,
            topics.routing_decisions,
            lambda ds: any(d.offer_made.contact_id == "c-after" for d in ds),
            timeout=30.0,
            what="the router offering c-after, the arrival after the oversized one",
        )
        escalations = await wait_for(
            kafka,
            topics.escalations,
            lambda es: any(e.escalation_record.escalation.contact_id == "c-next" for e in es),
            timeout=30.0,
            what="the escalation of c-next, after the refused c-big",
        )
        # Each service's own dead letters: 3 refused inputs each, and no oversized output
        # (the escalation's would be a 4th: waited for a while).
        letters = [
            r
            for service, expect in (("router", 3), ("escalation", 4))
            for r in await kafka.read_all(topics.dead_letters(service), expect=expect, timeout=5)
        ]
        output_dlq = [
            r for r in letters if headers_of(r).get("dlq.original.topic") == topics.escalations
        ]
        input_dlq = [
            r
            for r in letters
            if headers_of(r).get("dlq.source.topic") == topics.contact_events
            and r not in output_dlq
        ]
        alive = {p.log_path: p.process.returncode for p in processes if p.process is not None}
    finally:
        await stop_all(processes)

    def is_the_huge_one(record: ConsumerRecord[bytes, bytes]) -> bool:
        h = headers_of(record)
        return h.get("dlq.source.offset") == str(huge_offset) or record.value[:64] == huge[:64]

    problems = []
    for service in ("router", "escalation"):
        letters = [
            r
            for r in input_dlq
            if headers_of(r).get("dlq.service") == service and is_the_huge_one(r)
        ]
        reasons = [headers_of(r).get("dlq.reason", "") for r in letters]
        if len(letters) != 1 or not re.search(r"too large|exceeds", reasons[0]):
            problems.append(
                f"{service}: expected one dead letter of the oversized input on "
                f"{topics.dead_letters(service)} saying it is too large; found reasons "
                f"{reasons} among {len(input_dlq)} dead letters"
            )
    for service in ("router", "escalation"):
        refused = sorted(
            headers_of(r).get("dlq.reason", "")
            for r in input_dlq
            if headers_of(r).get("dlq.service") == service and not is_the_huge_one(r)
        )
        if refused != [
            "contact_arrived.customer.name: 500000 characters, at most 128",
            "contact_ended.note: 600000 characters, at most 2000",
        ]:
            problems.append(f"{service}: expected both bound refusals, got {refused}")
    if output_dlq:
        problems.append(f"no output may be oversized now: {[headers_of(r) for r in output_dlq]}")
    if any(e.escalation_record.escalation.contact_id == "c-big" for e in escalations):
        problems.append("c-big was refused at the door: it cannot have an escalation")
    if [d for d in decisions if d.offer_made.contact_id == "c-huge"]:
        problems.append("the oversized arrival was routed")
    if crashed := {log: code for log, code in alive.items() if code is not None}:
        problems.append(f"services exited: {crashed}")
    problems += await audit(
        kafka, topics, run_finished=False, check_notifications=False, check_escalations=True
    )
    assert not problems, "\n".join(problems)


# --- 4. kill -9 while offers ring ----------------------------------------------------


async def test_kill_9_while_offers_ring_and_the_accepts_already_published_are_honoured(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    """Two routers, an offer ringing in every domain, one router killed, every offer
    accepted at once. The demo's offer timeout (8 s) is shorter than the session timeout
    (10 s), so by the time the survivor takes the dead one's domains their offers are
    overdue: the accepts already in the topic must be read before any offer timer fires.
    Then the killed router is restarted and takes its share back."""
    topics = await kafka.fresh_topics()
    domains = spread_domains(per_partition=2)
    survivor, killed = router(kafka, topics, tmp_path, "ra"), router(kafka, topics, tmp_path, "rb")
    group = Membership()
    problems: list[str] = []
    moved: set[str] = set()
    async with ContactCenter(kafka, topics, auto_answer=False) as center:

        def ringing() -> list[Envelope]:
            return [e for es in center.decisions.values() for e in es if e.HasField("offer_made")]

        def outcomes() -> dict[str, str]:
            return {
                e.domain: e.WhichOneof("payload") or ""
                for es in center.decisions.values()
                for e in es
                if e.WhichOneof("payload") in ("contact_assigned", "offer_timed_out")
            }

        try:
            with judged_later(problems):
                group.change("start ra and rb")  # the second to join moves domains
                await asyncio.gather(survivor.start(), killed.start())  # both in the group
                for domain in domains:
                    await center.login(domain, [0])
                    await center.arrive(domain, f"{domain}-c0")
                await center.until(
                    lambda: len(ringing()) == len(domains), 30, "an offer per domain"
                )
                moved = {e.domain for e in ringing() if e.source == "router/rb"}
                assert moved, "the second router had no offer ringing; nothing to take over"
                kill_at = group.change(f"kill -9 rb with offers ringing in {sorted(moved)}")
                await killed.kill()
                for e in ringing():
                    o = e.offer_made
                    assert time.time() < o.expires_at.ToNanoseconds() / 1e9, "too slow to matter"
                    value = accept(o.agent_id, o.contact_id, o.offer_id, e.domain)
                    await center.publish(topics.agent_events, e.domain, value)
                await center.until(
                    lambda: len(outcomes()) == len(domains),
                    timeout=SESSION_TIMEOUT_S + 40,
                    what="each offer assigned or timed out",
                )
                took_over = min(
                    at(e) for d in moved for e in center.decisions[d] if at(e) > kill_at
                )
                expired = max(e.offer_made.expires_at.ToNanoseconds() / 1e9 for e in ringing())
                assert took_over > expired, "the survivor took over before the offers expired"
                group.change("restart rb")
                await killed.start()  # and the killed one comes back
                for domain in domains:
                    await center.publish(topics.contact_events, domain, end(f"{domain}-c0", domain))
                with contextlib.suppress(AssertionError):  # judged below
                    await center.until(lambda: not center.lost(), timeout=30, what="all closed")
                    await center.until(center.settled, timeout=15, what="every agent available")
        finally:
            group.change("stop both")
            await stop_all([survivor, killed])
    if timed_out := sorted(d for d, kind in outcomes().items() if kind != "contact_assigned"):
        problems.append(
            f"accepted offers timed out instead in {timed_out} (moved: {sorted(moved)})"
        )
    problems += center.problems()
    problems += moves_without_a_membership_change(center.decisions, group.changes)
    problems += await audit(kafka, topics, check_notifications=False, check_escalations=False)
    assert not problems, "\n".join(problems)


# --- 5. two escalation and two notifier instances, one of each killed -----------------


@pytest.fixture
async def gateway(grpc_server: Callable[..., Any]) -> tuple[ReferenceGateway, int]:
    """The reference customer gateway on loopback, in this process (deliveries counted)."""
    reference = ReferenceGateway(delay_seconds=0.02)
    server: GrpcServer = await grpc_server(
        lambda s: notification_pb2_grpc.add_CustomerChannelGatewayServicer_to_server(reference, s)
    )
    return reference, server.port


async def test_two_escalation_and_two_notifier_instances_survive_losing_one_of_each(
    kafka: KafkaBroker, tmp_path: Path, gateway: tuple[ReferenceGateway, int]
) -> None:
    reference, port = gateway
    topics = await kafka.fresh_topics()
    domains = spread_domains(per_partition=2)

    def instance(name: str, label: str, **extra: str) -> ServiceProcess:
        env = service_env(name, kafka, topics, INSTANCE=label, **extra)
        return service_process(name, env, tmp_path, label=label)

    escalations = [
        instance("escalation", f"esc-{n}", ESCALATION__TRIGGERS__WAIT_THRESHOLD_S="1") for n in "ab"
    ]
    notifiers = [
        instance("notifier", f"not-{n}", GATEWAYS__DEFAULT=f"127.0.0.1:{port}") for n in "ab"
    ]
    processes = [*escalations, *notifiers]
    contacts = [(d, f"{d}-c{n}") for n in range(10) for d in domains]

    async def publish(batch: list[tuple[str, str]]) -> None:
        for domain, contact in batch:  # waiting in billing-pl, on hold, told by SMS
            await kafka.produce(
                topics.contact_events,
                [arrive(contact, domain, queue="billing-pl", channel=SMS), hold(contact, domain)],
                key=domain.encode(),
            )

    def told() -> Counter[tuple[str, str]]:
        return Counter(
            (d.notification_id.split(":")[0], d.notification_id.rsplit(":", 1)[-1])
            for d in reference.delivered
        )

    await asyncio.gather(*(p.start() for p in processes))
    try:
        await publish(contacts[: len(contacts) // 2])
        await until(lambda: len(reference.delivered) >= 10, what="first deliveries")
        await wait_for(
            kafka, topics.escalations, lambda es: len(es) >= 10, 30.0, "first escalations"
        )
        await asyncio.gather(escalations[0].kill(), notifiers[0].kill())  # mid-load
        await publish(contacts[len(contacts) // 2 :])
        await until(
            lambda: len(told()) >= len(contacts),
            timeout=SESSION_TIMEOUT_S + 50,
            what="every customer told about the hold",
        )
        records = await wait_for(
            kafka,
            topics.escalations,
            lambda es: len(raised(es)) >= len(contacts),
            timeout=SESSION_TIMEOUT_S + 30,
            what="every waiting contact escalated",
        )
        await wait_for(
            kafka,
            topics.notifications,
            lambda ns: sum(n.notification_record.outcome == 1 for n in ns) >= len(contacts),
            timeout=30.0,
            what="every delivery recorded",
        )
    finally:
        await stop_all(processes)
    holds = {(f"hold-{d}-{c}", "hold_started") for d, c in contacts}
    assert set(told()) == holds, set(told()) ^ holds
    assert all(n == 1 for n in told().values())  # nobody told twice
    assert Counter(raised(records)) == Counter(dict.fromkeys(contacts, 1))
    problems = await audit(kafka, topics, run_finished=False)
    assert not problems, "\n".join(problems)


# --- reading what the services committed ----------------------------------------------


def raised(records: list[Envelope]) -> list[tuple[str, str]]:
    """(domain, contact) of every escalation raised."""
    return [
        (e.domain, e.escalation_record.escalation.contact_id)
        for e in records
        if e.HasField("escalation_record") and e.escalation_record.kind == 1
    ]
