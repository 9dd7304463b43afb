"""The whole stack as separate processes against the real broker, as `make run` starts it:
a contact arrives, is offered, accepted, put on hold (the customer hears why and for how
long, once), resumed and ended; a contact nobody can take escalates to a watching
manager; Prometheus scrapes every service; at the end every contact is accounted for."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from switchboard.v1 import common_pb2, contact_events_pb2, escalation_pb2, escalation_pb2_grpc
from switchboard.v1.envelope_pb2 import Envelope

from services.auditor.__main__ import audit_topics
from services.common.codec import decode_envelope, encode_envelope, new_envelope
from services.common.topics import Topics
from tests.support import (
    KafkaBroker,
    ServiceProcess,
    bearer,
    free_port,
    gateway_client_env,
    identity_env,
)

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]
ROOT = Path(__file__).resolve().parents[2]


class Stack:
    """Ports, topics and processes of one private stack."""

    def __init__(self, kafka: KafkaBroker, topics: Topics, logs: Path) -> None:
        self.kafka, self.topics, self.logs = kafka, topics, logs
        self.gateway_port = free_port()
        self.ports = {
            name: (free_port(), free_port()) for name in ("router", "notifier", "escalation")
        }
        self.processes: list[ServiceProcess] = []

    def env(self, name: str) -> dict[str, str]:
        grpc_port, metrics_port = self.ports[name]
        extra = {"SWITCHBOARD_GATEWAYS__DEFAULT": f"127.0.0.1:{self.gateway_port}"}
        extra |= gateway_client_env()
        return (
            identity_env(name)
            | (extra if name == "notifier" else {})
            | {
                "SWITCHBOARD_CONFIG": str(ROOT / "deploy" / "config" / f"{name}.toml"),
                "SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
                "SWITCHBOARD_KAFKA__TOPIC_PREFIX": self.topics.prefix,
                "SWITCHBOARD_KAFKA__GROUP_ID": f"{self.topics.prefix}{name}",
                "SWITCHBOARD_INSTANCE": f"{self.topics.prefix}{name}",
                "SWITCHBOARD_GRPC__PORT": str(grpc_port),
                "SWITCHBOARD_METRICS__PORT": str(metrics_port),
                "SWITCHBOARD_LOG__FORMAT": "json",
                "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen")]),
            }
        )

    async def start(self) -> None:
        gateway = ServiceProcess(
            "services.notifier.gateway_stub",
            env=identity_env("gateway") | {"PYTHONPATH": self.env("router")["PYTHONPATH"]},
            log_path=str(self.logs / "gateway.log"),
            args=("--port", str(self.gateway_port)),
            grpc_port=self.gateway_port,
        )
        self.processes.append(gateway)
        names = ["router", "notifier", "escalation"]
        for name in names:
            self.processes.append(
                ServiceProcess(
                    f"services.{name}",
                    env=self.env(name),
                    log_path=str(self.logs / f"{name}.log"),
                    grpc_port=self.ports[name][0],
                )
            )
        await asyncio.gather(*(p.start() for p in self.processes))

    async def stop(self) -> None:
        codes = await asyncio.gather(*(p.stop() for p in reversed(self.processes)))
        assert all(code == 0 for code in codes), f"unclean exits: {codes}; logs in {self.logs}"


@pytest.fixture
async def stack(kafka: KafkaBroker, tmp_path: Path) -> AsyncIterator[Stack]:
    topics = await kafka.fresh_topics()
    running = Stack(kafka, topics, tmp_path)
    try:
        await running.start()
        yield running
    finally:
        await running.stop()


def event(kind: str, event_id: str, **fields: object) -> bytes:
    envelope = new_envelope("acme", "e2e", event_id=event_id)
    message = getattr(envelope, kind)
    for name, value in fields.items():
        setattr(message, name, value)
    return encode_envelope(envelope)


async def decisions(stack: Stack) -> list[Envelope]:
    records = await stack.kafka.read_all(stack.topics.routing_decisions, expect=10**9, timeout=0.3)
    return [decode_envelope(r.value, r.headers) for r in records]


async def wait_for_decision(stack: Stack, payload: str, contact_id: str) -> Envelope:
    found: list[Envelope] = []

    async def look() -> None:
        found.extend(
            d
            for d in await decisions(stack)
            if d.WhichOneof("payload") == payload and getattr(d, payload).contact_id == contact_id
        )

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while not found:
        assert loop.time() < deadline, f"no {payload} for {contact_id}"
        await look()
    return found[0]


async def test_the_story_of_a_day(stack: Stack) -> None:
    kafka, topics = stack.kafka, stack.topics
    login = new_envelope("acme", "desk", event_id="login-anna")
    login.agent_logged_in.agent_id = "agent-anna"
    login.agent_logged_in.team = "billing-en"
    login.agent_logged_in.languages.append("en")
    login.agent_logged_in.skills.add(skill="billing", proficiency=7)
    login.agent_logged_in.capacity.add(channel=common_pb2.CHANNEL_VOICE, max_concurrent=1)
    await kafka.produce(topics.agent_events, [encode_envelope(login)], key=b"acme")

    arrive = new_envelope("acme", "pbx", event_id="arrive-c1")
    a = arrive.contact_arrived
    a.contact_id, a.queue, a.channel = "c1", "billing-en", common_pb2.CHANNEL_VOICE
    a.customer.name, a.customer.language, a.customer.phone = "Jan", "pl", "+48600100200"
    await kafka.produce(topics.contact_events, [encode_envelope(arrive)], key=b"acme")

    offer = await wait_for_decision(stack, "offer_made", "c1")
    assert offer.offer_made.agent_id == "agent-anna"
    await kafka.produce(
        topics.agent_events,
        [
            event(
                "offer_accepted",
                "accept-c1",
                agent_id="agent-anna",
                contact_id="c1",
                offer_id=offer.offer_made.offer_id,
            )
        ],
        key=b"acme",
    )
    await wait_for_decision(stack, "contact_assigned", "c1")

    hold = new_envelope("acme", "pbx", event_id="hold-c1")
    hold.contact_held.contact_id, hold.contact_held.agent_id = "c1", "agent-anna"
    hold.contact_held.reason = contact_events_pb2.PAUSE_REASON_WAITING_FOR_SPECIALIST
    hold.contact_held.expected_duration.FromSeconds(180)
    await kafka.produce(topics.contact_events, [encode_envelope(hold)], key=b"acme")
    told = await kafka.read_all(topics.notifications, expect=1, timeout=60)
    note = decode_envelope(told[0].value, told[0].headers).notification_record
    assert note.outcome == 1
    # What the customer read is the gateway's to know; the topic says only that it went.
    assert note.notification.body == ""
    assert note.notification.customer.name == ""
    received = (stack.logs / "gateway.log").read_text()
    assert "Jan" in received
    assert "konsultujemy się ze specjalistą" in received
    assert "3 minuty" in received

    await kafka.produce(
        topics.contact_events,
        [
            event("contact_resumed", "resume-c1", contact_id="c1", agent_id="agent-anna"),
            event(
                "contact_ended",
                "end-c1",
                contact_id="c1",
                agent_id="agent-anna",
                disposition=contact_events_pb2.DISPOSITION_RESOLVED,
            ),
        ],
        key=b"acme",
    )
    await wait_for_decision(stack, "contact_closed", "c1")

    # Nobody speaks Polish billing: the contact is unroutable and, if the escalation
    # service runs, a manager watching sees it.
    stranded = new_envelope("acme", "pbx", event_id="arrive-c2")
    s = stranded.contact_arrived
    s.contact_id, s.queue, s.channel = "c2", "billing-pl", common_pb2.CHANNEL_CHAT
    s.customer.name, s.customer.language = "Ola", "pl"
    await kafka.produce(topics.contact_events, [encode_envelope(stranded)], key=b"acme")
    await wait_for_decision(stack, "contact_unroutable", "c2")
    await a_manager_sees_the_escalation(stack, "c2")
    await kafka.produce(
        topics.contact_events,
        [event("contact_abandoned", "abandon-c2", contact_id="c2")],
        key=b"acme",
    )
    await wait_for_decision(stack, "contact_closed", "c2")

    told = await kafka.read_all(topics.notifications, expect=4, timeout=30)
    kinds = sorted(
        decode_envelope(r.value, r.headers).notification_record.notification.kind for r in told
    )
    report = await audit_topics(kafka.bootstrap_servers, topics)
    assert report.ok, report.summary()
    assert (report.arrived, report.assigned, report.abandoned) == (2, 1, 1)
    assert 1 in kinds  # HOLD_STARTED

    # Last, so a machine without Prometheus still runs the story and its audit (CI
    # installs Prometheus and sets REQUIRE_KAFKA_TESTS, which turns this skip into a failure).
    await prometheus_scrapes_every_service(stack)


async def a_manager_sees_the_escalation(stack: Stack, contact_id: str) -> None:
    """Watch as the head of service (sees every team) until the contact's escalation shows."""
    metadata = bearer("hugo", "escalation", "manager", teams=["*"])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.ports['escalation'][0]}") as channel:
        stub = escalation_pb2_grpc.EscalationServiceStub(channel)
        call = stub.Watch(escalation_pb2.WatchRequest(), metadata=metadata, timeout=120)
        async for item in call:
            if item.record.escalation.contact_id == contact_id:
                call.cancel()
                return
    raise AssertionError("the manager's stream ended without the escalation")


async def prometheus_scrapes_every_service(stack: Stack) -> None:
    """A real Prometheus server scrapes the services; the key series exist."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("Debian's prometheus package is not installed (CI installs it)")
    port = free_port()
    targets = [f"127.0.0.1:{metrics}" for _, metrics in stack.ports.values()]
    config = stack.logs / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\nscrape_configs:\n"
        f"  - job_name: switchboard\n    static_configs: [{{targets: {json.dumps(targets)}}}]\n"
    )
    process = subprocess.Popen(  # noqa: ASYNC220 - a long-running child, stopped below
        [
            binary,
            f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--storage.tsdb.path={stack.logs / 'tsdb'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wanted = [
            "switchboard_router_contacts_arrived_total",
            "switchboard_events_consumed_total",
            "switchboard_notifier_notifications_total",
            "switchboard_router_agents",
        ]
        found: dict[str, bool] = {}

        def query(expr: str) -> list[object]:
            url = f"http://127.0.0.1:{port}/api/v1/query?query={expr}"
            with urllib.request.urlopen(url, timeout=2) as reply:
                return list(json.load(reply)["data"]["result"])

        expected_up = 3

        async def all_found() -> bool:
            for metric in wanted:
                try:
                    found[metric] = bool(await asyncio.to_thread(query, metric))
                except OSError:
                    return False
            # every service's target scraped and up (each is scraped on its own schedule)
            up = await asyncio.to_thread(query, "up")
            found["up"] = sum(1 for r in up if r["value"][1] == "1") >= expected_up  # type: ignore[index]
            return all(found.values())

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while not await all_found():
            assert loop.time() < deadline, f"series missing or targets down: {found}"
            await asyncio.sleep(0.5)
    finally:
        process.terminate()
        process.wait(timeout=30)
