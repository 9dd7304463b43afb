"""Two escalation instances (real processes) behind one address, on the real broker: any
instance serves any manager. With domains on both instances' partitions, a manager
connected to either sees every escalation of their teams, and acknowledges, notes and
resolves one the other instance owns; the change shows through both. Another team's
escalation stays NOT_FOUND through either, as does an unknown id."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiokafka.partitioner import murmur2
from switchboard.v1 import common_pb2, escalation_pb2, escalation_pb2_grpc

from services.common.codec import decode_envelope, encode_envelope, new_envelope
from services.common.topics import load_topic_specs
from tests.support import KafkaBroker, ServiceProcess, bearer, service_env, service_process, until

pytestmark = pytest.mark.kafka

PIOTR = bearer("piotr", "escalation", "manager", teams=["polish"])  # supervisor, Polish team
SOFIA = bearer("sofia", "escalation", "manager", teams=["billing-en", "tech-en"])
PARTITIONS = next(s.partitions for s in load_topic_specs() if s.name == "escalation.commands")


def partition_of(domain: str) -> int:
    return (murmur2(domain.encode()) & 0x7FFFFFFF) % PARTITIONS


def one_domain_per_partition() -> dict[int, str]:
    chosen: dict[int, str] = {}
    for n in itertools.count():
        chosen.setdefault(partition_of(f"site{n}"), f"site{n}")
        if len(chosen) == PARTITIONS:
            return chosen
    raise AssertionError("unreachable")


def arrived(domain: str, contact_id: str, queue: str) -> bytes:
    e = new_envelope(domain, "pbx", event_id=f"arrive-{domain}-{contact_id}")
    e.contact_arrived.contact_id, e.contact_arrived.queue = contact_id, queue
    e.contact_arrived.channel = common_pb2.CHANNEL_CHAT
    return encode_envelope(e)


def owned(process: ServiceProcess) -> set[int]:
    """The partitions the instance took over last (its JSON log says so)."""
    latest: set[int] = set()
    for line in Path(process.log_path).read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "partitions taken over":
            latest = set(entry["partitions"])
        elif entry.get("event") == "partitions revoked":
            latest = set()
    return latest


def settled(a: ServiceProcess, b: ServiceProcess) -> bool:
    mine, theirs = owned(a), owned(b)
    return bool(mine) and bool(theirs) and not mine & theirs and len(mine | theirs) == PARTITIONS


def stub(port: int | None, channel_of: dict[int, grpc.aio.Channel]) -> Any:
    assert port is not None
    if port not in channel_of:
        channel_of[port] = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    return escalation_pb2_grpc.EscalationServiceStub(channel_of[port])


async def listed(s: Any, metadata: Any) -> dict[str, escalation_pb2.Escalation]:
    reply = await s.ListOpen(escalation_pb2.ListOpenRequest(), metadata=metadata, timeout=10)
    return {e.escalation_id: e for e in reply.escalations}


async def eventually(what: str, check: Any, timeout: float = 30.0) -> Any:
    """Poll the async ``check`` until it returns something truthy (or fail saying what)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = await check()
        if found:
            return found
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)


async def refused(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    code: grpc.StatusCode = caught.value.code()
    return code


async def collect(s: Any, metadata: Any, into: list[Any]) -> None:
    async for item in s.Watch(escalation_pb2.WatchRequest(), metadata=metadata):
        into.append(item.record)


def ids(records: Iterable[Any], kind: int) -> set[str]:
    return {r.escalation.escalation_id for r in records if r.kind == kind}


async def test_a_manager_on_either_instance_sees_and_changes_every_escalation_of_their_teams(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    topics = await kafka.fresh_topics()
    a, b = (
        service_process(
            "escalation",
            service_env(
                "escalation",
                kafka,
                topics,
                INSTANCE=f"esc-{n}",
                ESCALATION__TRIGGERS__WAIT_THRESHOLD_S="1",
            ),
            tmp_path,
            label=f"esc-{n}",
        )
        for n in "ab"
    )
    channels: dict[int, grpc.aio.Channel] = {}
    await a.start()
    await b.start()
    try:
        await until(lambda: settled(a, b), timeout=60, what="both instances own partitions")
        domains = one_domain_per_partition()
        of_b = sorted(d for p, d in domains.items() if p in owned(b))
        of_a = sorted(d for p, d in domains.items() if p in owned(a))
        on_a, on_b = stub(a.grpc_port, channels), stub(b.grpc_port, channels)
        watched: list[Any] = []
        watch = asyncio.create_task(collect(on_a, PIOTR, watched))
        await until(lambda: len(watched) == 1, what="A's snapshot sent")  # empty, then live

        # A Polish case in every domain, and an English one in a domain B owns.
        for domain in domains.values():
            await kafka.produce(topics.contact_events, [arrived(domain, "c1", "billing-pl")])
        english = f"{of_b[0]}/c2/wait_threshold"
        await kafka.produce(topics.contact_events, [arrived(of_b[0], "c2", "billing-en")])
        polish = {f"{d}/c1/wait_threshold" for d in domains.values()}

        # Every Polish escalation, whoever owns its domain, through either instance.
        for s in (on_a, on_b):
            await eventually(
                "every Polish escalation listed", lambda s=s: _has(s, PIOTR, polish), 60
            )
        await until(lambda: ids(watched, escalation_pb2.ESCALATION_CHANGE_KIND_RAISED) >= polish)
        assert set(await listed(on_a, PIOTR)) == polish  # and nothing of another team

        # Acknowledge, note and resolve through A an escalation B owns.
        target = f"{of_b[0]}/c1/wait_threshold"
        acked = await on_a.Acknowledge(
            escalation_pb2.AcknowledgeRequest(escalation_id=target), metadata=PIOTR, timeout=15
        )
        assert acked.escalation.status == escalation_pb2.ESCALATION_STATUS_ACKNOWLEDGED
        assert acked.escalation.acknowledged_by == "piotr"
        noted = await on_a.AddNote(
            escalation_pb2.AddNoteRequest(escalation_id=target, text="calling back"),
            metadata=PIOTR,
            timeout=15,
        )
        assert [n.text for n in noted.escalation.notes] == ["calling back"]
        # A shows the change at once (its reply waited for it); B as soon as it reads it.
        now_on_a = (await listed(on_a, PIOTR))[target]
        assert now_on_a.status == escalation_pb2.ESCALATION_STATUS_ACKNOWLEDGED
        assert [n.text for n in now_on_a.notes] == ["calling back"]

        async def noted_on_b() -> bool:
            e = (await listed(on_b, PIOTR)).get(target)
            return e is not None and [n.text for n in e.notes] == ["calling back"]

        await eventually("the note shown by B", noted_on_b)
        await until(
            lambda: target in ids(watched, escalation_pb2.ESCALATION_CHANGE_KIND_NOTE_ADDED)
        )

        # ... and through B one that A owns.
        theirs = f"{of_a[0]}/c1/wait_threshold"
        done = await on_b.Resolve(
            escalation_pb2.ResolveRequest(escalation_id=theirs, resolution_code="called-back"),
            metadata=PIOTR,
            timeout=15,
        )
        assert done.escalation.status == escalation_pb2.ESCALATION_STATUS_RESOLVED
        assert done.escalation.resolved_by == "piotr"
        assert theirs not in await listed(on_b, PIOTR)
        await eventually("resolved, gone from A", lambda: _lacks(on_a, PIOTR, theirs))
        # resolving it again: refused as it is today, through either instance
        for s in (on_a, on_b):
            again = s.Resolve(
                escalation_pb2.ResolveRequest(escalation_id=theirs, resolution_code="again"),
                metadata=PIOTR,
                timeout=15,
            )
            assert await refused(again) == grpc.StatusCode.FAILED_PRECONDITION

        # Another team's escalation and an unknown id: NOT_FOUND through either instance.
        for s in (on_a, on_b):
            for escalation_id in (english, f"{of_b[0]}/nobody/wait_threshold", "no-such-id"):
                ack = s.Acknowledge(
                    escalation_pb2.AcknowledgeRequest(escalation_id=escalation_id),
                    metadata=PIOTR,
                    timeout=15,
                )
                assert await refused(ack) == grpc.StatusCode.NOT_FOUND, escalation_id
        # ... though its own team's manager sees it through A, whoever owns it.
        await eventually("the English one shown to Sofia", lambda: _has(on_a, SOFIA, {english}))
        watch.cancel()
    finally:
        for channel in channels.values():
            await channel.close()
        await asyncio.gather(a.stop(), b.stop())

    records = await kafka.read_all(
        topics.escalations, expect=len(polish) + 4
    )  # + English, ack, note, resolve
    history = [
        decode_envelope(r.value).escalation_record.kind for r in records if r.key == target.encode()
    ]
    assert history == [
        escalation_pb2.ESCALATION_CHANGE_KIND_RAISED,
        escalation_pb2.ESCALATION_CHANGE_KIND_ACKNOWLEDGED,
        escalation_pb2.ESCALATION_CHANGE_KIND_NOTE_ADDED,
    ]


async def _has(s: Any, metadata: Any, wanted: set[str]) -> bool:
    return wanted <= set(await listed(s, metadata))


async def _lacks(s: Any, metadata: Any, escalation_id: str) -> bool:
    return escalation_id not in await listed(s, metadata)


async def test_a_command_whose_owner_is_stalled_times_out_and_is_never_applied_later(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    """The owner frozen (SIGSTOP): the call ends DEADLINE_EXCEEDED at the command's
    deadline; the instance that takes the domain over reads the command too late and
    drops it, so the caller's "timed out" stays true."""
    topics = await kafka.fresh_topics()
    a, b = (
        service_process(
            "escalation",
            service_env(
                "escalation",
                kafka,
                topics,
                INSTANCE=f"esc-{n}",
                ESCALATION__TRIGGERS__WAIT_THRESHOLD_S="1",
                COMMANDS__TIMEOUT_S="2",
            ),
            tmp_path,
            label=f"esc-{n}",
        )
        for n in "ab"
    )
    channels: dict[int, grpc.aio.Channel] = {}
    await a.start()
    await b.start()
    try:
        await until(lambda: settled(a, b), timeout=60, what="both instances own partitions")
        domain = next(d for p, d in one_domain_per_partition().items() if p in owned(b))
        target = f"{domain}/c1/wait_threshold"
        on_a = stub(a.grpc_port, channels)
        await kafka.produce(topics.contact_events, [arrived(domain, "c1", "billing-pl")])
        await eventually("raised", lambda: _has(on_a, PIOTR, {target}), 60)
        b.pause()
        ack = on_a.Acknowledge(
            escalation_pb2.AcknowledgeRequest(escalation_id=target), metadata=PIOTR, timeout=15
        )
        with pytest.raises(grpc.aio.AioRpcError) as timed_out:
            await ack
        assert timed_out.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert f"owning domain {domain!r}" in (timed_out.value.details() or "")
        # A takes the domain over (B missed its session) and reads the command: too late.
        await until(lambda: len(owned(a)) == PARTITIONS, timeout=60, what="A owns everything")
        expired = await kafka_answers(kafka, topics.name("escalation.replies"))
        assert [r.status for r in expired] == [escalation_pb2.ESCALATION_COMMAND_STATUS_EXPIRED]
        e = (await listed(on_a, PIOTR))[target]
        assert e.status == escalation_pb2.ESCALATION_STATUS_OPEN
        # A fresh command now reaches the new owner.
        acked = await on_a.Acknowledge(
            escalation_pb2.AcknowledgeRequest(escalation_id=target), metadata=PIOTR, timeout=15
        )
        assert acked.escalation.status == escalation_pb2.ESCALATION_STATUS_ACKNOWLEDGED
    finally:
        b.resume()
        for channel in channels.values():
            await channel.close()
        await asyncio.gather(a.stop(), b.stop())


async def kafka_answers(kafka: KafkaBroker, topic: str) -> list[Any]:
    """The committed command results on ``topic``, once there is at least one."""
    records = await kafka.read_all(topic, expect=1, timeout=30)
    return [decode_envelope(r.value).escalation_command_result for r in records]
