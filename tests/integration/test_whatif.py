"""The what-if command on the real broker: a recorded window of one domain on the three
topics (binary and JSON records, timestamps of two hours ago, another domain and a
record that is no envelope beside it), read back by ``python -m services.router.whatif``
as a process, replayed, and printed."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from google.protobuf import json_format

from services.common.codec import CONTENT_TYPE_HEADER, JSON_CONTENT_TYPE, encode_envelope
from services.common.topics import Topics
from services.router.domain import RoutingPolicy
from services.router.recording import RecordedEvent, Stream, build_recording, figures
from services.router.replay import replay
from services.router.synthetic import Demand, Team, record_day
from services.router.whatif import format_comparison
from tests.support import KafkaBroker

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]

ROUTING = """
[routing.queues.billing-en]
skills = {{ billing = 3 }}
language = "en"
offer_timeout_s = 10
wrap_up_s = {wrap}

[routing.queues.tech-en]
skills = {{ tech = 4 }}
language = "en"
offer_timeout_s = 10
wrap_up_s = {wrap}
service_level_s = 30
"""
DEMAND = [Demand("billing-en", 150, 200, 150), Demand("tech-en", 90, 260, 200)]
TEAMS = [
    Team("billing", 9, (("billing", 5),), ("en",), (0, 2), 10),
    Team("tech", 6, (("tech", 6),), ("en",), (0, 2), 10),
]


def policy_of(text: str) -> RoutingPolicy:
    import tomllib

    return RoutingPolicy.from_dict(tomllib.loads(text)["routing"])


async def produce(kafka: KafkaBroker, topics: Topics, records: list[RecordedEvent]) -> None:
    """As the platform, the desktops and the router would have: keyed by domain, with
    the record's time; every third contact event as JSON."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for n, r in enumerate(records):
            headers: list[tuple[str, bytes]] = []
            value = encode_envelope(r.envelope)
            if r.stream == Stream.CONTACT and n % 3 == 0:
                value = json_format.MessageToJson(r.envelope).encode()
                headers = [(CONTENT_TYPE_HEADER, JSON_CONTENT_TYPE.encode())]
            await producer.send(
                topics.name(r.stream.value),
                value,
                key=r.envelope.domain.encode(),
                timestamp_ms=round(r.at * 1000),
                headers=headers,
            )
        await producer.send(
            topics.contact_events,
            b"\x00not an envelope",
            key=b"acme",
            timestamp_ms=round(records[len(records) // 2].at * 1000),
        )
        await producer.flush()
    finally:
        await producer.stop()


async def whatif(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.router.whatif",
        *args,
        env=os.environ | env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_whatif_replays_a_recorded_window_read_from_kafka(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    topics = await kafka.fresh_topics()
    current_toml = ROUTING.format(wrap=5)
    proposed_toml = ROUTING.format(wrap=45)
    (tmp_path / "current.toml").write_text(current_toml)
    (tmp_path / "proposed.toml").write_text(proposed_toml)
    current, proposed = policy_of(current_toml), policy_of(proposed_toml)
    began = round(time.time() - 3 * 3600)
    acme = record_day(current, DEMAND, TEAMS, hours=2, start=began, seed=5)
    globex = record_day(current, DEMAND[:1], TEAMS[:1], hours=1, start=began, domain="globex")
    await produce(kafka, topics, sorted(acme + globex, key=lambda r: r.at))
    start, end = began + 900, began + 2 * 3600 - 900

    code, out, err = await whatif(
        "--domain",
        "acme",
        "--from",
        str(start),
        "--to",
        str(end),
        "--current",
        str(tmp_path / "current.toml"),
        "--policy",
        str(tmp_path / "proposed.toml"),
        "--warmup-minutes",
        "15",
        env={
            "SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "SWITCHBOARD_KAFKA__TOPIC_PREFIX": topics.prefix,
        },
    )
    assert code == 0, err

    # The same window computed here from the records as produced (times to the
    # millisecond, as Kafka keeps them): the command must print exactly this table.
    as_kept = [dataclasses.replace(r, at=round(r.at * 1000) / 1000) for r in acme]
    recording = build_recording(as_kept, domain="acme", start=start, end=end, warmup_s=900)
    expected = format_comparison(
        figures(recording, current), replay(recording, current), replay(recording, proposed)
    )
    assert expected in out
    assert "records left out: 1 (contact.events: not an envelope)" in out
    rows = {
        line.split()[0]: line.split()
        for line in out.splitlines()
        if line.startswith(("billing-en", "tech-en"))
    }
    for queue in ("billing-en", "tech-en"):
        offered, recorded_sl, current_sl, proposed_sl = rows[queue][1], *rows[queue][3:6]
        assert int(offered) > 100
        assert abs(float(recorded_sl[:-1]) - float(current_sl[:-1])) < 3.0  # percent
        assert float(proposed_sl[:-1]) < float(current_sl[:-1])  # 45 s of wrap-up hurts

    # `switchboard whatif` takes a policy document (as `switchboard policy apply` does):
    # its [routing] table is replayed, the other tables are not the routing core's
    document = tmp_path / "proposed-policy.toml"
    document.write_text(proposed_toml + "\n[notification]\nposition_min_interval_s = 45\n")
    cli = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        "whatif",
        *("--domain", "acme", "--from", str(start), "--to", str(end)),
        *("--current", str(tmp_path / "current.toml"), "--policy", str(document)),
        *("--warmup-minutes", "15", "--bootstrap-servers", kafka.bootstrap_servers),
        *("--topic-prefix", topics.prefix),
        env=os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen")])},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    cli_out, cli_err = await asyncio.wait_for(cli.communicate(), 120)
    assert cli.returncode == 0, cli_err.decode()
    assert expected in cli_out.decode()

    # a policy with a mistake changes nothing and names the field
    (tmp_path / "bad.toml").write_text(ROUTING.format(wrap=-1))
    code, out, err = await whatif(
        "--domain",
        "acme",
        "--from",
        str(start),
        "--to",
        str(end),
        "--policy",
        str(tmp_path / "bad.toml"),
        "--bootstrap-servers",
        kafka.bootstrap_servers,
        "--topic-prefix",
        topics.prefix,
        env={},
    )
    assert code == 2
    assert not out
    assert "routing.queues.billing-en.wrap_up_s: must be >= 0" in err
    # a domain with nothing recorded
    code, _, err = await whatif(
        "--domain",
        "nobody",
        "--from",
        str(start),
        "--to",
        str(end),
        "--current",
        str(tmp_path / "current.toml"),
        "--policy",
        str(tmp_path / "proposed.toml"),
        "--bootstrap-servers",
        kafka.bootstrap_servers,
        "--topic-prefix",
        topics.prefix,
        env={},
    )
    assert code == 2
    assert "no records of domain 'nobody'" in err
