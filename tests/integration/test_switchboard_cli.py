"""`switchboard` as an operator runs it (a subprocess) against real services on the real
broker: a refused record is in each refusing service's dead letters once, listed and
shown masked; a refused event is replayed after the fix and applied (a dry run sends
nothing); the router's view with an operator token; every command's help."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka.structs import ConsumerRecord
from switchboard.v1 import agent_events_pb2

from services.common.codec import encode_envelope, new_envelope
from services.common.topics import Topics
from services.launcher.demo_credentials import AUDIENCES
from services.notifier.gateway_stub import ReferenceGateway
from tests.scenario import arrive, login
from tests.support import (
    ISSUER,
    KafkaBroker,
    ServiceProcess,
    service_env,
    service_process,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


async def switchboard(*args: str, env: dict[str, str] | None = None) -> Ran:
    """``python -m services.cli ARGS`` (what the ``switchboard`` console script runs)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        *args,
        env=os.environ
        | {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen")])}
        | (env or {}),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


async def until_output(
    args: tuple[str, ...], env: dict[str, str], wanted: str, timeout: float = 60.0
) -> Ran:
    """Run the command until its output contains ``wanted`` (or fail, showing the last)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        ran = await switchboard(*args, env=env)
        if wanted in ran.out:
            return ran
        if loop.time() > deadline:
            raise AssertionError(f"{args}: no {wanted!r} within {timeout} s; last: {ran}")


def kafka_env(kafka: KafkaBroker, topics: Topics) -> dict[str, str]:
    return {
        "SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "SWITCHBOARD_KAFKA__TOPIC_PREFIX": topics.prefix,
    }


def token_file(tmp_path: Path, subject: str, server: str, *roles: str, **claims: object) -> Path:
    path = tmp_path / f"{subject}.jwt"
    path.write_text(ISSUER.mint(subject, audience=AUDIENCES[server], roles=roles, **claims))  # type: ignore[arg-type]
    return path


def headers_of(record: ConsumerRecord[bytes, bytes]) -> dict[str, bytes]:
    return dict(record.headers or ())


async def letters_of(
    kafka: KafkaBroker, topics: Topics, service: str, *, at_least: int, timeout: float = 60.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """The service's committed dead letters, once there are ``at_least``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = await kafka.read_all(topics.dead_letters(service), expect=10**9, timeout=0.5)
        if len(found) >= at_least:
            return found
        if loop.time() > deadline:
            raise AssertionError(f"{service}: {len(found)} dead letters, wanted {at_least}")


async def test_every_command_documents_its_options() -> None:
    commands = [
        (),
        ("escalations",),
        *(("escalations", a) for a in ("watch", "list", "ack", "note", "resolve")),
        ("queues",),
        ("agents",),
        ("contact",),
        ("dlq",),
        *(("dlq", a) for a in ("list", "show", "replay")),
        ("topics",),
        ("whatif",),
        ("simulate",),
        ("policy",),
        *(("policy", a) for a in ("validate", "diff", "apply", "history", "rollback")),
    ]
    runs = await asyncio.gather(*(switchboard(*c, "--help") for c in commands))
    for command, ran in zip(commands, runs, strict=True):
        assert ran.code == 0, (command, ran.err)
        assert ran.out.startswith(f"usage: switchboard {' '.join(command)}".rstrip()), ran.out
    assert "--token-file" in runs[commands.index(("queues",))].out
    assert "--dry-run" in runs[commands.index(("dlq", "replay"))].out
    assert "--extra-agents" in runs[commands.index(("simulate",))].out
    assert "--policy" in runs[commands.index(("whatif",))].out
    assert "--expected-version" in runs[commands.index(("policy", "apply"))].out
    # The old entry point still works, as an alias.
    alias = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.escalation.cli",
        "list",
        "--help",
        env=os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen")])},
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await alias.communicate()
    assert alias.returncode == 0
    assert out.decode().startswith("usage: switchboard escalations list")


@pytest.mark.kafka
async def test_a_record_every_service_refuses_is_in_each_ones_dead_letters_once_and_shown_masked(
    kafka: KafkaBroker, tmp_path: Path, gateway: tuple[ReferenceGateway, int]
) -> None:
    _, gateway_port = gateway
    topics = await kafka.fresh_topics()
    env = kafka_env(kafka, topics)
    processes: list[ServiceProcess] = []
    for service in ("router", "escalation", "notifier"):
        extra = {"GATEWAYS__DEFAULT": f"127.0.0.1:{gateway_port}"} if service == "notifier" else {}
        processes.append(
            service_process(service, service_env(service, kafka, topics, **extra), tmp_path)
        )
    await asyncio.gather(*(p.start() for p in processes))
    bad = {  # a field no service knows: every one of them refuses it at decoding
        "eventId": "pbx-bad-1",
        "domain": "acme",
        "contactArrived": {
            "contactId": "c9",
            "queue": "billing-en",
            "colour": "red",
            "customer": {"name": "Anna Nowak", "phone": "+48600123456"},
        },
    }
    try:
        await kafka.produce(
            topics.contact_events,
            [json.dumps(bad).encode()],
            key=b"acme",
            headers=[("content-type", b"application/json")],
        )
        await kafka.produce(topics.contact_events, [arrive("c8", queue="nope")], key=b"acme")
        letters = {
            service: await letters_of(kafka, topics, service, at_least=1)
            for service in ("router", "escalation", "notifier")
        }
        letters["router"] = await letters_of(kafka, topics, "router", at_least=2)

        manager = token_file(tmp_path, "mira", "escalation", "manager", teams=["*"])
        escalations = await switchboard(
            "escalations",
            "list",
            "--target",
            f"127.0.0.1:{processes[1].grpc_port}",
            env={"SWITCHBOARD_TOKEN_FILE": str(manager)},
        )
        no_token = await switchboard(
            "escalations", "list", "--target", f"127.0.0.1:{processes[1].grpc_port}"
        )
        listed = await switchboard("dlq", "list", env=env)
        only = await switchboard(
            "dlq", "list", "--service", "escalation", "--event-id", "pbx-bad-1", env=env
        )
        # Every service has read contact.events to its end: lag 0 for each group.
        lag = await until_output(("topics",), env, "router 0, escalation 0, notifier 0")
    finally:
        await asyncio.gather(*(p.stop() for p in processes))

    for service, found in letters.items():
        bad_ones = [r for r in found if headers_of(r)["dlq.event_id"] == b"pbx-bad-1"]
        assert len(bad_ones) == 1, (service, [headers_of(r) for r in found])
        h = headers_of(bad_ones[0])
        assert (h["dlq.service"], h["dlq.error"]) == (service.encode(), b"decode")
        assert h["dlq.source.topic"] == topics.contact_events.encode()
    assert [headers_of(r)["dlq.reason"] for r in letters["router"]].count(
        b"queue 'nope' is not configured"
    ) == 1

    assert escalations.code == 0, escalations.err
    assert (no_token.code, no_token.err.strip()) == (
        2,
        "error: no token: set SWITCHBOARD_TOKEN_FILE (or --token-file) or SWITCHBOARD_TOKEN",
    )

    assert listed.code == 0, listed.err
    for service in ("router", "escalation", "notifier"):
        assert f"{topics.dead_letters(service)} from {topics.contact_events}:" in listed.out
    assert f"{topics.dead_letters('router')} from {topics.contact_events}: 2 dead letters" in (
        listed.out
    )
    bad_lines = [line for line in listed.out.splitlines() if " pbx-bad-1 " in line]
    assert len(bad_lines) == 3, listed.out
    assert all(" decode  invalid JSON envelope" in line for line in bad_lines)
    assert "Anna" not in listed.out
    assert only.out.count("pbx-bad-1") == 1, only.out
    assert only.out.lstrip().startswith(f"{topics.dead_letters('escalation')} from"), only.out
    [lag_line] = [x for x in lag.out.splitlines() if "notifier 0" in x]
    assert lag_line.split() == [
        topics.contact_events,
        "4",
        "2",
        "router",
        "0,",
        "escalation",
        "0,",
        "notifier",
        "0",
    ]

    [router_line] = [line for line in bad_lines if line.lstrip().startswith("router:")]
    letter_id = router_line.split()[0]
    shown = await switchboard("dlq", "show", letter_id, env=env)
    assert shown.code == 0, shown.err
    assert "Anna" not in shown.out
    assert "600123456" not in shown.out
    assert '"name": "A***"' in shown.out
    assert '"phone": "***56"' in shown.out
    assert '"eventId": "pbx-bad-1"' in shown.out  # the id stays greppable
    assert f"  replay     to {topics.contact_events}" in shown.out
    missing = await switchboard("dlq", "show", "router:0:999999", env=env)
    assert missing.code == 1
    assert "no dead letter router:0:999999" in missing.err


def away_for_lunch(agent_id: str) -> bytes:
    e = new_envelope("acme", "desk", event_id=f"away-{agent_id}-1")
    e.agent_state_changed.agent_id = agent_id
    e.agent_state_changed.state = agent_events_pb2.AGENT_STATE_AWAY
    e.agent_state_changed.reason = "lunch"
    return encode_envelope(e)


@pytest.mark.kafka
async def test_a_refused_event_replayed_after_the_fix_is_applied_and_a_dry_run_sends_nothing(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    topics = await kafka.fresh_topics()
    env = kafka_env(kafka, topics)
    router = service_process("router", service_env("router", kafka, topics), tmp_path)
    await router.start()
    target = ("--target", f"127.0.0.1:{router.grpc_port}")
    ops = env | {"SWITCHBOARD_TOKEN_FILE": str(token_file(tmp_path, "ops", "router", "operator"))}
    try:
        # a1 is not logged in yet: the router refuses the state change.
        away = away_for_lunch("a1")
        await kafka.produce(topics.agent_events, [away], key=b"acme")
        await letters_of(kafka, topics, "router", at_least=1)
        listed = await switchboard("dlq", "list", env=env)
        [line] = [x for x in listed.out.splitlines() if "away-a1-1" in x]
        assert "rejected  agent 'a1' is not logged in" in line
        letter_id = line.split()[0]

        dry = await switchboard("dlq", "replay", "--dry-run", letter_id, env=env)
        assert dry.code == 0, dry.err
        assert (
            dry.out.splitlines()[-1]
            == "dry run: 1 record would be sent, 0 skipped; nothing was sent"
        )
        assert f"would send {letter_id} -> {topics.agent_events} (key acme, event away-a1-1" in (
            dry.out
        )
        assert len(await kafka.read_all(topics.agent_events, expect=2, timeout=1)) == 1

        # The fix: a1 logs in. Then the replay is applied, not skipped as a duplicate.
        await kafka.produce(topics.agent_events, [login("a1")], key=b"acme")
        await until_output(("agents", *target), ops, "a1  team=billing-team  available")
        replayed = await switchboard("dlq", "replay", letter_id, env=env)
        assert replayed.code == 0, replayed.err
        assert replayed.out.splitlines()[-1] == "1 record sent, 0 skipped"
        await until_output(("agents", *target), ops, "a1  team=billing-team  away (lunch)")
        await wait_for(
            kafka,
            topics.routing_decisions,
            lambda ds: any(d.agent_status_changed.reason == "lunch" for d in ds),
            what="the router announcing a1 away for lunch",
        )
        queues = await switchboard("queues", *target, env=ops)
        refused = await switchboard(
            "queues",
            *target,
            env={
                "SWITCHBOARD_TOKEN_FILE": str(
                    token_file(tmp_path, "piotr", "router", "manager", teams=["polish"])
                )
            },
        )
        unknown = await switchboard("contact", "nobody", *target, env=ops)
        router_letters = await kafka.read_all(topics.dead_letters("router"), expect=2, timeout=1)
    finally:
        await router.stop()

    [sent] = [
        r
        for r in await kafka.read_all(topics.agent_events, expect=3)
        if "dlq.replayed-from" in headers_of(r)
    ]
    assert sent.key == b"acme"
    assert sent.value == away
    assert [name for name, _ in sent.headers if name.startswith("dlq.")] == ["dlq.replayed-from"]
    partition, offset = letter_id.split(":")[1:]
    assert headers_of(sent)["dlq.replayed-from"] == (
        f"{topics.dead_letters('router')}/{partition}/{offset}".encode()
    )
    assert len(router_letters) == 1  # the replay was applied, not refused again

    assert queues.code == 0, queues.err
    assert queues.out.splitlines()[0].split() == [
        "DOMAIN",
        "QUEUE",
        "WAITING",
        "OFFERED",
        "LONGEST",
        "EST.WAIT",
        "SL",
        "ANSWERED",
        "ABANDONED",
        "STAFFED",
    ]
    assert re.search(r"^acme +billing-en +0 +0 ", queues.out, re.MULTILINE), queues.out
    assert (refused.code, refused.err.split(":")[:2]) == (1, ["error", " PERMISSION_DENIED"])
    assert (unknown.code, unknown.err.strip()) == (1, "error: NOT_FOUND: contact nobody not found")
