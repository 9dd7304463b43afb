"""A domain published with the wrong partitioner (#15 item 2): kcat, like every librdkafka
client, hashes keys with CRC32 by default, so "acme" lands on partition 2 of 4 where the
services (murmur2, the Java client's default) look for it on partition 0. The router
refuses it, says which partitioner to set, and answers on routing.decisions keyed by the
domain; the same record sent with ``-X partitioner=murmur2_random`` is routed."""

from __future__ import annotations

import asyncio
import json
import shutil
import zlib
from pathlib import Path

import pytest
from aiokafka.partitioner import murmur2

from services.common.topics import Topics
from tests.support import KafkaBroker, service_env, service_process

pytestmark = pytest.mark.kafka
KCAT = shutil.which("kcat") or "/usr/bin/kcat"
PARTITIONS = 4  # deploy/topics.toml


async def kcat(kafka: KafkaBroker, topic: str, line: str, *options: str) -> None:
    """One JSON record, keyed "acme", as an integrator sends it with kcat."""
    process = await asyncio.create_subprocess_exec(
        KCAT,
        "-P",
        "-b",
        kafka.bootstrap_servers,
        "-t",
        topic,
        "-k",
        "acme",
        "-H",
        "content-type=application/json",
        *options,
        stdin=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(line.encode() + b"\n"), 30)
    assert process.returncode == 0, stderr.decode()


async def decisions(kafka: KafkaBroker, topics: Topics, what: str, predicate) -> list:  # type: ignore[no-untyped-def]
    """The committed JSON decisions, polled until one matches ``predicate`` (60 s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        records = await kafka.read_all(topics.routing_decisions, expect=10**9, timeout=0.5)
        found = [r for r in records if predicate(json.loads(r.value))]
        if found:
            return found
        assert loop.time() < deadline, f"no {what} on routing.decisions"


@pytest.mark.skipif(not Path(KCAT).exists(), reason="kcat is not installed")
async def test_kcat_default_partitioner_is_refused_and_answered_murmur2_random_is_routed(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    home = (murmur2(b"acme") & 0x7FFFFFFF) % PARTITIONS
    crc32 = zlib.crc32(b"acme") % PARTITIONS
    assert (home, crc32) == (0, 2)  # the case: the two hashes disagree
    topics = await kafka.fresh_topics()
    router = service_process(
        "router",
        service_env("router", kafka, topics, KAFKA__OUTPUT_FORMAT="json"),
        tmp_path,
    )
    await router.start()
    try:
        login = {
            "eventId": "kcat-login-1",
            "domain": "acme",
            "source": "desk",
            "agentLoggedIn": {
                "agentId": "a-kcat",
                "team": "billing-team",
                "skills": [{"skill": "billing", "proficiency": 5}],
                "languages": ["en"],
            },
        }
        await kcat(kafka, topics.agent_events, json.dumps(login))  # kcat's default partitioner
        [answer] = await decisions(kafka, topics, "eventRejected", lambda d: "eventRejected" in d)
        reason = (
            "domain 'acme' hashes to partition 0 with murmur2 (the Java client's default) but "
            "arrived on partition 2; librdkafka clients (kcat, confluent-kafka) must set "
            "partitioner=murmur2_random"
        )
        assert json.loads(answer.value)["eventRejected"] == {
            "eventId": "kcat-login-1",
            "reason": reason,
            "topic": topics.agent_events,
            "payload": "agent_logged_in",
        }
        # keyed by the domain: on the partition the producer reads its decisions from
        assert (answer.key, answer.partition) == (b"acme", home)
        [letter] = await kafka.read_all(topics.dead_letters("router"), expect=1)
        headers = dict(letter.headers)
        assert (headers["dlq.error"], headers["dlq.reason"].decode()) == (b"partition", reason)
        assert (headers["dlq.source.partition"], headers["dlq.event_id"]) == (b"2", b"kcat-login-1")

        login["eventId"] = "kcat-login-2"
        await kcat(
            kafka, topics.agent_events, json.dumps(login), "-X", "partitioner=murmur2_random"
        )
        [status] = await decisions(
            kafka,
            topics,
            "agentStatusChanged",
            lambda d: d.get("agentStatusChanged", {}).get("agentId") == "a-kcat",
        )
        assert json.loads(status.value)["agentStatusChanged"]["state"] == "AGENT_STATE_AVAILABLE"
        assert len(await kafka.read_all(topics.dead_letters("router"), expect=2, timeout=1)) == 1
    finally:
        assert await router.stop() == 0
