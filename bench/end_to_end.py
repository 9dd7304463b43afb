"""End-to-end benchmark through the real broker and the real services (not a test).

    .venv/bin/python -m bench.end_to_end              # everything, about 6 minutes
    .venv/bin/python -m bench.end_to_end --quick      # smaller, about 2 minutes
    .venv/bin/python -m bench.end_to_end --soak 600   # also: RSS over a 10-minute run

What it measures, in order:

1. **Kafka's own ceilings** on this broker: ``ProducerPerformance`` and
   ``ConsumerPerformance`` from the kafka-tools jar (records/s).
2. **Drain throughput** (the sustained maximum): a topic pre-filled with N input events,
   then the service starts and consumes it all; events/s from the first to the last
   consumed. Once for the router, once for ``bench.passthrough`` (the same runtime with
   no logic), so the router's number reads as a fraction of what the runtime allows.
3. **Latency under open-loop load**: router, notifier, escalation and the reference
   gateway running; a generator publishes contact arrivals (each followed by an
   abandon, so agents free up) at fixed rates, and holds at a low rate. p50/p99 from an
   arrival's send to its committed offer being read, and from a hold's send to the
   customer's notification record; CPU and resident memory of every service per step.

Every number is printed; bench/RESULTS.md records a run with the machine and command.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from switchboard.v1 import common_pb2, contact_events_pb2

from services.common.codec import decode_envelope, encode_envelope, new_envelope
from services.common.provision import ensure_topics
from services.common.topics import Topics, load_topic_specs
from services.launcher.demo_credentials import (
    AUDIENCES,
    DEMO_ISSUER,
    SERVICES_SUBJECT,
    demo_people,
    write_demo_credentials,
)

ROOT = Path(__file__).resolve().parents[1]
KAFKA = ROOT / "deploy" / "kafka" / "kafka.sh"
BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
DOMAINS = 64
AGENTS_PER_DOMAIN = 4
#: Sends in the first second of each step are not measured (connections, caches warming).
WARMUP_S = 1.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# --- events --------------------------------------------------------------------------


def login(domain: str, agent: str) -> bytes:
    e = new_envelope(domain, "bench")
    e.agent_logged_in.agent_id = agent
    e.agent_logged_in.team = "billing-en-team"
    e.agent_logged_in.languages.append("en")
    e.agent_logged_in.skills.add(skill="billing", proficiency=6)
    e.agent_logged_in.capacity.add(channel=common_pb2.CHANNEL_VOICE, max_concurrent=1)
    return encode_envelope(e)


def arrive(
    domain: str, contact: str, channel: int = common_pb2.CHANNEL_VOICE, phone: str = "+48600123456"
) -> bytes:
    e = new_envelope(domain, "bench")
    e.contact_arrived.contact_id = contact
    e.contact_arrived.queue = "billing-en"
    e.contact_arrived.channel = channel  # type: ignore[assignment]
    e.contact_arrived.customer.name = "Anna"
    e.contact_arrived.customer.phone = phone
    return encode_envelope(e)


def abandon(domain: str, contact: str) -> bytes:
    e = new_envelope(domain, "bench")
    e.contact_abandoned.contact_id = contact
    return encode_envelope(e)


def hold(domain: str, contact: str) -> bytes:
    e = new_envelope(domain, "bench")
    e.contact_held.contact_id = contact
    e.contact_held.reason = contact_events_pb2.PAUSE_REASON_CHECKING_INFORMATION
    e.contact_held.expected_duration.FromSeconds(120)
    return encode_envelope(e)


# --- processes -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    """A service as a child process, with its metrics port and /proc accounting."""

    name: str
    module: str
    env: dict[str, str]
    args: tuple[str, ...] = ()
    metrics_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    _cpu_mark: tuple[float, float] = (0.0, 0.0)

    def start(self, logs: Path) -> None:
        env = (
            os.environ
            | self.env
            | {
                "SWITCHBOARD_METRICS__PORT": str(self.metrics_port),
                "SWITCHBOARD_GRPC__PORT": self.env.get("SWITCHBOARD_GRPC__PORT", "0"),
                "SWITCHBOARD_LOG__LEVEL": "warning",
                "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen")]),
            }
        )
        with (logs / f"{self.name}.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module, *self.args],
                env=env,
                stdout=log,
                stderr=log,
            )
        self.mark_cpu()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def _cpu_seconds(self) -> float:
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def mark_cpu(self) -> None:
        self._cpu_mark = (time.monotonic(), self._cpu_seconds())

    def cpu_percent(self) -> float:
        """CPU used since the last mark, as % of one core."""
        then, cpu = self._cpu_mark
        return 100 * (self._cpu_seconds() - cpu) / max(1e-9, time.monotonic() - then)

    def rss_mb(self) -> float:
        assert self.process is not None
        pages = int(Path(f"/proc/{self.process.pid}/statm").read_text().split()[1])
        return pages * PAGE / 2**20

    def metric(self, name: str) -> float:
        """Sum of a metric's samples from the service's own /metrics (0 if not yet there)."""
        try:
            url = f"http://127.0.0.1:{self.metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return 0.0
        pattern = re.compile(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+-]+)$", re.M)
        return sum(float(v) for v in pattern.findall(text))


@functools.cache
def identity_dir() -> Path:
    """The demo profile's credentials, as ``make run`` makes them (every call identified)."""
    directory = Path(tempfile.mkdtemp(prefix="switchboard-bench-identity-"))
    write_demo_credentials(directory, demo_people({}))
    return directory


def identity_env(server: str) -> dict[str, str]:
    return {
        "SWITCHBOARD_IDENTITY__PROFILE": "demo",
        "SWITCHBOARD_IDENTITY__JWT__JWKS_FILE": str(identity_dir() / "jwks.json"),
        "SWITCHBOARD_IDENTITY__JWT__AUDIENCE": AUDIENCES.get(server, AUDIENCES["router"]),
        "SWITCHBOARD_IDENTITY__JWT__ISSUER": DEMO_ISSUER,
    }


def service_env(name: str, topics: Topics, **extra: str) -> dict[str, str]:
    config = ROOT / "deploy" / "config" / f"{name}.toml"
    env = identity_env(name) | {
        "SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS": BOOTSTRAP,
        "SWITCHBOARD_KAFKA__TOPIC_PREFIX": topics.prefix,
        "SWITCHBOARD_KAFKA__GROUP_ID": f"{topics.prefix}{name}",
        "SWITCHBOARD_INSTANCE": f"{topics.prefix}{name}",
    }
    if config.exists():
        env["SWITCHBOARD_CONFIG"] = str(config)
    if name == "notifier":
        env["SWITCHBOARD_GATEWAYS__CREDENTIALS__PLAINTEXT"] = "true"
        env["SWITCHBOARD_GATEWAYS__CREDENTIALS__TOKEN_FILE"] = str(
            identity_dir() / "tokens" / f"{SERVICES_SUBJECT}.jwt"
        )
    return env | {f"SWITCHBOARD_{k}": v for k, v in extra.items()}


# --- Kafka helpers -------------------------------------------------------------------


CREATED: list[str] = []  # topics this run made; deleted at the end


async def fresh_topics() -> Topics:
    topics = Topics(prefix=f"bench{uuid.uuid4().hex[:8]}.")
    specs = load_topic_specs(prefix=topics.prefix)
    await ensure_topics(BOOTSTRAP, specs)
    CREATED.extend(spec.name for spec in specs)
    return topics


async def drop_created_topics() -> None:
    """A benchmark leaves the broker as it found it (thousands of stale partitions slow it)."""
    if not CREATED:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.delete_topics(CREATED)
    finally:
        await admin.close()


def producer() -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=BOOTSTRAP, acks="all", linger_ms=5, max_batch_size=256 * 1024
    )


async def prefill(topics: Topics, pairs: int) -> int:
    """Logins, then ``pairs`` arrival+abandon pairs spread over the domains; returns events."""
    p = producer()
    await p.start()
    sent = 0
    try:
        for d in range(DOMAINS):
            for a in range(AGENTS_PER_DOMAIN):
                await p.send(topics.agent_events, login(f"d{d}", f"a{a}"), key=f"d{d}".encode())
                sent += 1
        for n in range(pairs):
            domain = f"d{n % DOMAINS}"
            key = domain.encode()
            await p.send(topics.contact_events, arrive(domain, f"c{n}"), key=key)
            await p.send(topics.contact_events, abandon(domain, f"c{n}"), key=key)
            sent += 2
        await p.flush()
    finally:
        await p.stop()
    return sent


async def drain_rate(service: Service, total: int, logs: Path, within: float = 600) -> float:
    """Start ``service`` on a pre-filled topic; events/s from its first to last consumed."""
    service.start(logs)
    first_at: float | None = None
    deadline = time.monotonic() + within
    consumed = 0.0
    try:
        while time.monotonic() < deadline:
            consumed = service.metric("switchboard_events_consumed_total")
            now = time.monotonic()
            if consumed > 0 and first_at is None:
                first_at, first_count = now, consumed
            if consumed >= total:
                assert first_at is not None
                cycles = service.metric("switchboard_batch_seconds_count")
                print(f"  {service.name}: {consumed / max(1.0, cycles):.0f} events per cycle")
                return (consumed - first_count) / max(1e-9, now - first_at)
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{service.name} consumed {consumed} of {total} within {within} s")
    finally:
        service.stop()


# --- Kafka's own tools ---------------------------------------------------------------


def kafka_tool(*args: str) -> str:
    result = subprocess.run(
        [str(KAFKA), "run-class", *args], capture_output=True, text=True, check=True, timeout=600
    )
    return result.stdout


def kafka_ceilings(records: int, size: int) -> tuple[float, float]:
    topic = f"bench-perf-{uuid.uuid4().hex[:8]}"
    kafka_tool(
        "org.apache.kafka.tools.TopicCommand",
        "--bootstrap-server", BOOTSTRAP, "--create", "--topic", topic, "--partitions", "4",
        "--replication-factor", "1",
    )  # fmt: skip
    out = kafka_tool(
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic", topic, "--num-records", str(records), "--record-size", str(size),
        "--throughput", "-1", "--producer-props", f"bootstrap.servers={BOOTSTRAP}", "acks=all",
    )  # fmt: skip
    produce = float(re.findall(r"([0-9.]+) records/sec", out)[-1])
    out = kafka_tool(
        "org.apache.kafka.tools.ConsumerPerformance",
        "--bootstrap-server", BOOTSTRAP, "--topic", topic, "--num-records", str(records),
    )  # fmt: skip
    consume = _consumer_rate(out)
    kafka_tool(
        "org.apache.kafka.tools.TopicCommand",
        "--bootstrap-server", BOOTSTRAP, "--delete", "--topic", topic,
    )  # fmt: skip
    return produce, consume


def _consumer_rate(out: str) -> float:
    """records/s: the ``nMsg.sec`` column of ConsumerPerformance's summary line."""
    lines = out.splitlines()
    for n, line in enumerate(lines[:-1]):
        columns = [c.strip() for c in line.split(",")]
        if "nMsg.sec" in columns:
            return float(lines[n + 1].split(",")[columns.index("nMsg.sec")])
    return float("nan")


# --- open-loop latency ---------------------------------------------------------------


@dataclass
class Step:
    rate: int
    sent: int = 0
    offers: list[float] = field(default_factory=list)
    decided: list[float] = field(default_factory=list)  # arrival sent -> router's decision
    holds: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    rss: dict[str, float] = field(default_factory=dict)
    achieved: float = 0.0


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Watcher:
    """Reads committed offers and notification records; matches them to send times."""

    def __init__(self, topics: Topics) -> None:
        self.topics = topics
        self.arrival_sent: dict[str, tuple[float, float]] = {}  # monotonic, wall clock
        self.hold_sent: dict[str, float] = {}
        self.step: Step | None = None

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=BOOTSTRAP,
            isolation_level="read_committed",
            auto_offset_reset="latest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            wanted = [self.topics.routing_decisions, self.topics.notifications]
            parts = []
            for topic in wanted:
                while not consumer.partitions_for_topic(topic):
                    await consumer._client.force_metadata_update()
                parts += [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
            consumer.assign(parts)
            await consumer.seek_to_end(*parts)
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=100, max_records=5000)
                now = time.monotonic()
                for records in batches.values():
                    for record in records:
                        self._see(record.topic, record.value, record.headers, now)
        finally:
            await consumer.stop()

    def _see(
        self, topic: str, value: bytes | None, headers: Sequence[tuple[str, bytes]], now: float
    ) -> None:
        if self.step is None or value is None:
            return
        if topic == self.topics.routing_decisions:
            envelope = decode_envelope(value, headers)
            if envelope.HasField("offer_made"):
                sent = self.arrival_sent.pop(envelope.offer_made.contact_id, None)
                if sent is not None:
                    self.step.offers.append(now - sent[0])
                    decided_at = envelope.occurred_at.seconds + envelope.occurred_at.nanos / 1e9
                    self.step.decided.append(decided_at - sent[1])
        else:
            envelope = decode_envelope(value, headers)
            record = envelope.notification_record
            if record.outcome == 1 and record.notification.kind == 1:  # delivered hold
                sent = self.hold_sent.pop(record.notification.contact_id, None)
                if sent is not None:
                    self.step.holds.append(now - sent)


async def generate(
    topics: Topics, watcher: Watcher, step: Step, seconds: float, hold_rate: int
) -> None:
    """``step.rate`` events/s (arrival+abandon pairs) plus holds; open loop."""
    p = producer()
    await p.start()
    pairs_per_tick = step.rate / 2 / 100  # 10 ms ticks
    holds_per_tick = hold_rate / 100
    owed = owed_holds = 0.0
    n = 0
    started = time.monotonic()
    tick = 0
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            owed += pairs_per_tick
            owed_holds += holds_per_tick
            while owed >= 1:
                owed -= 1
                n += 1
                domain = f"d{n % DOMAINS}"
                contact = f"s{step.rate}-c{n}"
                if elapsed >= WARMUP_S:  # the first second warms connections and caches
                    watcher.arrival_sent[contact] = (time.monotonic(), time.time())
                await p.send(topics.contact_events, arrive(domain, contact), key=domain.encode())
                await p.send(topics.contact_events, abandon(domain, contact), key=domain.encode())
                step.sent += 2
            while owed_holds >= 1:
                owed_holds -= 1
                contact = f"s{step.rate}-h{n}-{tick}"
                if elapsed >= WARMUP_S:
                    watcher.hold_sent[contact] = time.monotonic()
                # a domain with no agents: the contact waits while on hold (IVR hold)
                key = b"holds"
                await p.send(
                    topics.contact_events,
                    arrive(
                        "holds", contact, common_pb2.CHANNEL_SMS, phone=f"+4860{n:07d}{tick % 10}"
                    ),
                    key=key,
                )
                await p.send(topics.contact_events, hold("holds", contact), key=key)
            tick += 1
            await asyncio.sleep(max(0.0, tick * 0.01 - elapsed))
        await p.flush()
    finally:
        await p.stop()


async def latency_steps(
    rates: Sequence[int], seconds: float, hold_rate: int, logs: Path, soak: float
) -> list[Step]:
    topics = await fresh_topics()
    gateway_port = free_port()
    services = [
        Service(
            "gateway",
            "services.notifier.gateway_stub",
            identity_env("gateway"),
            ("--port", str(gateway_port)),
        ),
        Service("router", "services.router", service_env("router", topics)),
        Service(
            "notifier",
            "services.notifier",
            service_env(
                "notifier",
                topics,
                GATEWAYS__DEFAULT=f"127.0.0.1:{gateway_port}",
                POLICY__RATE_LIMIT_COUNT="1000000",
            ),
        ),
        Service("escalation", "services.escalation", service_env("escalation", topics)),
    ]
    for service in services:
        service.start(logs)
    p = producer()
    await p.start()
    for d in range(DOMAINS):
        for a in range(AGENTS_PER_DOMAIN):
            await p.send(topics.agent_events, login(f"d{d}", f"a{a}"), key=f"d{d}".encode())
    await p.flush()
    await p.stop()
    router = services[1]
    while router.metric("switchboard_events_consumed_total") < DOMAINS * AGENTS_PER_DOMAIN:  # noqa: ASYNC110 - polling another process's metrics
        await asyncio.sleep(0.2)
    watcher = Watcher(topics)
    stop = asyncio.Event()
    watching = asyncio.create_task(watcher.run(stop))
    results = []
    try:
        for rate in rates:
            step = Step(rate)
            watcher.step = step
            consumed_before = router.metric("switchboard_events_consumed_total")
            for service in services:
                service.mark_cpu()
            started = time.monotonic()
            await generate(topics, watcher, step, seconds, hold_rate)
            await asyncio.sleep(2)  # let the tail of the step drain (offers still in flight)
            step.achieved = (
                router.metric("switchboard_events_consumed_total") - consumed_before
            ) / (time.monotonic() - started)
            step.cpu = {s.name: s.cpu_percent() for s in services}
            step.rss = {s.name: s.rss_mb() for s in services}
            results.append(step)
            print_step(step)
        if soak:
            await soak_run(topics, watcher, services, soak, hold_rate)
    finally:
        stop.set()
        await watching
        for service in reversed(services):
            service.stop()
    return results


async def soak_run(
    topics: Topics, watcher: Watcher, services: list[Service], seconds: float, hold_rate: int
) -> None:
    """A long run at a steady 2,000 events/s, sampling resident memory every 30 s."""
    router = next(s for s in services if s.name == "router")
    while router.metric("switchboard_consumer_lag") > 0:  # noqa: ASYNC110 - another process
        await asyncio.sleep(0.5)  # the last step's backlog drains first
    print(f"\nsoak: {seconds:.0f} s at 2000 events/s; RSS MB every 30 s")
    print("t(s)  " + "  ".join(f"{s.name:>10}" for s in services) + "   offer p50/p99 ms")
    elapsed = 0.0
    while elapsed < seconds:
        step = Step(2000)
        watcher.step = step
        await generate(topics, watcher, step, 30, hold_rate)
        elapsed += 30
        await asyncio.sleep(1)  # the window's last offers
        print(
            f"{elapsed:>4.0f}  "
            + "  ".join(f"{s.rss_mb():>10.1f}" for s in services)
            + f"   {percentile(step.offers, 0.5) * 1000:.0f}"
            + f"/{percentile(step.offers, 0.99) * 1000:.0f}",
            flush=True,
        )


def print_step(step: Step) -> None:
    ms = 1000
    print(
        f"{step.rate:>7} ev/s target  {step.achieved:>8.0f} consumed/s   "
        f"arrival->offer p50 {percentile(step.offers, 0.5) * ms:6.1f} ms "
        f"p99 {percentile(step.offers, 0.99) * ms:7.1f} ms (n={len(step.offers)}; "
        f"decided p50 {percentile(step.decided, 0.5) * ms:.1f} "
        f"p99 {percentile(step.decided, 0.99) * ms:.1f} ms)   "
        f"hold->notified p50 {percentile(step.holds, 0.5) * ms:6.1f} ms "
        f"p99 {percentile(step.holds, 0.99) * ms:7.1f} ms (n={len(step.holds)})",
        flush=True,
    )
    print(
        "        CPU % of a core: "
        + ", ".join(f"{k} {v:.0f}" for k, v in step.cpu.items())
        + "   RSS MB: "
        + ", ".join(f"{k} {v:.0f}" for k, v in step.rss.items()),
        flush=True,
    )


# --- main ----------------------------------------------------------------------------


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (about 2 minutes)")
    parser.add_argument("--rates", default="", help="comma-separated events/s steps")
    parser.add_argument("--step-seconds", type=float, default=0)
    parser.add_argument("--drain-events", type=int, default=0)
    parser.add_argument("--hold-rate", type=int, default=20, help="holds per second")
    parser.add_argument("--soak", type=float, default=0, help="seconds of steady load for RSS")
    parser.add_argument("--skip", default="", help="kafka,drain,latency to skip")
    args = parser.parse_args(argv)
    quick = args.quick
    rates = [int(r) for r in args.rates.split(",") if r] or (
        [500, 2000] if quick else [500, 1000, 2000, 4000, 6000]
    )
    seconds = args.step_seconds or (8 if quick else 20)
    drain = args.drain_events or (40_000 if quick else 200_000)
    skip = set(args.skip.split(","))
    logs = ROOT / ".run" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(KAFKA), "up"], check=True, capture_output=True)  # noqa: ASYNC221 - once, at start
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, broker {BOOTSTRAP}")

    ceilings: dict[str, float] = {}
    if "kafka" not in skip:
        produce, consume = kafka_ceilings(records=drain * 2, size=120)
        ceilings |= {"kafka producer": produce, "kafka consumer": consume}
        print(f"kafka ProducerPerformance: {produce:,.0f} records/s (120 B, acks=all)")
        print(f"kafka ConsumerPerformance: {consume:,.0f} records/s")

    if "drain" not in skip:
        for name, module in (("passthrough", "bench.passthrough"), ("router", "services.router")):
            topics = await fresh_topics()
            total = await prefill(topics, drain // 2)
            env = service_env(name if name == "router" else "passthrough", topics)
            rate = await drain_rate(Service(name, module, env), total, logs)
            ceilings[name] = rate
            print(f"drain {name}: {total:,} events in, {rate:,.0f} events/s sustained")
        if "passthrough" in ceilings and "router" in ceilings:
            router = ceilings["router"]
            for other in ("passthrough", "kafka producer", "kafka consumer"):
                if other in ceilings:
                    print(f"router / {other}: {router / ceilings[other]:.1%}")

    if "latency" not in skip:
        print(f"\nopen-loop latency, {seconds:.0f} s per step, holds at {args.hold_rate}/s")
        await latency_steps(rates, seconds, args.hold_rate, logs, args.soak)


async def run_and_clean_up(argv: Sequence[str] | None = None) -> None:
    try:
        await main(argv)
    finally:
        await drop_created_topics()


if __name__ == "__main__":
    asyncio.run(run_and_clean_up())
