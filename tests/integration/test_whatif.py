"""The what-if command on the real broker: a recorded window of one domain on the three
topics (binary and JSON records, timestamps of two hours ago, another domain and a
record that is no envelope beside it), and what escalation and the notifier recorded of
it on ``escalations`` and ``notifications`` (an escalation twice, a tombstone, another
domain's), read back by ``python -m services.router.whatif`` as a process, replayed
(with the escalation and notifier cores) and printed."""

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
from switchboard.v1 import escalation_pb2

from services.common.codec import (
    CONTENT_TYPE_HEADER,
    JSON_CONTENT_TYPE,
    encode_envelope,
    new_envelope,
)
from services.common.topics import Topics
from services.notifier.adapters.mapping import KIND_NUMBERS, OUTCOMES
from services.router.domain import RoutingPolicy
from services.router.recording import RecordedEvent, Stream, build_recording, figures
from services.router.replay import replay
from services.router.synthetic import Demand, Team, record_day
from services.router.whatif import downstream_policies, format_comparison
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
#: The proposed side's escalation and notification policies (a policy document's
#: tables): escalation.toml's and notifier.toml's, but a wait escalation after 20 s
#: instead of 60, and positions told every 10 s instead of 30.
ESCALATION = (ROOT / "deploy" / "config" / "escalation.toml").read_text()
NOTIFIER = (ROOT / "deploy" / "config" / "notifier.toml").read_text()
PROPOSED_TABLES = ESCALATION[ESCALATION.index("[escalation]") :].replace(
    "wait_threshold_s = 60", "wait_threshold_s = 20"
) + NOTIFIER[NOTIFIER.index("[policy]") :].replace("[policy]", "[notification]").replace(
    "position_min_interval_s = 30", "position_min_interval_s = 10"
)
DEMAND = [Demand("billing-en", 150, 200, 150), Demand("tech-en", 90, 260, 200)]
TEAMS = [
    Team("billing", 9, (("billing", 5),), ("en",), (0, 2), 10),
    Team("tech", 6, (("tech", 6),), ("en",), (0, 2), 10),
]


def policy_of(text: str) -> RoutingPolicy:
    import tomllib

    return RoutingPolicy.from_dict(tomllib.loads(text)["routing"])


def escalation_record(at: float, domain: str, contact: str, kind: int) -> RecordedEvent:
    """A wait escalation of ``contact``, as escalation writes each change of it."""
    e = new_envelope(domain, "escalation", event_id=f"{contact}@{kind}", occurred_at=at)
    e.escalation_record.kind = escalation_pb2.EscalationChangeKind.ValueType(kind)
    record = e.escalation_record.escalation
    record.escalation_id = f"{domain}/{contact}/wait_threshold"
    record.contact_id, record.domain, record.queue = contact, domain, contact.rsplit("-", 1)[0]
    record.reason = escalation_pb2.ESCALATION_REASON_WAIT_THRESHOLD
    record.raised_at.FromMilliseconds(round(at * 1000))
    return RecordedEvent(Stream.ESCALATION, at, e)


def notification_record(
    at: float, domain: str, contact: str, kind: str, outcome: str
) -> RecordedEvent:
    e = new_envelope(domain, "notifier", event_id=f"{contact}:{kind}", occurred_at=at)
    record = e.notification_record
    record.notification.notification_id = f"{contact}/{at}:{kind}"
    record.notification.contact_id = contact
    record.notification.kind = KIND_NUMBERS[kind]
    record.notification.created_at.FromMilliseconds(round(at * 1000))
    record.outcome = OUTCOMES[outcome]
    return RecordedEvent(Stream.NOTIFICATION, at, e)


def outcome_records(acme: list[RecordedEvent], start: float, end: float) -> list[RecordedEvent]:
    """What escalation and the notifier would have written of a few counted contacts
    (and of one of another domain): three billing-en escalations, one of them raised then
    acknowledged (two records, one escalation), and five notices, one held back."""
    arrivals = [
        (r.at, r.envelope.contact_arrived.contact_id)
        for r in acme
        if r.envelope.WhichOneof("payload") == "contact_arrived" and start <= r.at <= end
    ]
    billing = [(at, c) for at, c in arrivals if c.startswith("billing-en")][:3]
    tech = [(at, c) for at, c in arrivals if c.startswith("tech-en")][:2]
    acknowledged = 2
    out = [escalation_record(at + 60, "acme", c, 1) for at, c in billing]
    out.append(escalation_record(billing[0][0] + 90, "acme", billing[0][1], acknowledged))
    out.append(escalation_record(billing[0][0] + 60, "globex", "billing-en-0", 1))
    out += [
        notification_record(at + 30, "acme", c, "queue_position", "delivered") for at, c in tech
    ]
    out.append(
        notification_record(tech[0][0] + 40, "acme", tech[0][1], "callback_offer", "delivered")
    )
    out.append(
        notification_record(tech[0][0] + 50, "acme", tech[0][1], "queue_position", "suppressed")
    )
    out.append(
        notification_record(billing[0][0] + 400, "acme", billing[0][1], "closed", "delivered")
    )
    out.append(
        notification_record(billing[0][0] + 400, "globex", "billing-en-0", "closed", "delivered")
    )
    return out


async def produce(kafka: KafkaBroker, topics: Topics, records: list[RecordedEvent]) -> None:
    """As the platform, the desktops, the router, escalation and the notifier would have:
    inputs and decisions keyed by domain, escalations by escalation id, notifications by
    contact id, with the record's time; every third contact event as JSON; one tombstone
    on the (compacted) escalations topic."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for n, r in enumerate(records):
            headers: list[tuple[str, bytes]] = []
            value = encode_envelope(r.envelope)
            if r.stream == Stream.CONTACT and n % 3 == 0:
                value = json_format.MessageToJson(r.envelope).encode()
                headers = [(CONTENT_TYPE_HEADER, JSON_CONTENT_TYPE.encode())]
            key = r.envelope.domain
            if r.stream == Stream.ESCALATION:
                key = r.envelope.escalation_record.escalation.escalation_id
            elif r.stream == Stream.NOTIFICATION:
                key = r.envelope.notification_record.notification.contact_id
            await producer.send(
                topics.name(r.stream.value),
                value,
                key=key.encode(),
                timestamp_ms=round(r.at * 1000),
                headers=headers,
            )
        await producer.send(
            topics.escalations,
            None,
            key=b"acme/forgotten/wait_threshold",
            timestamp_ms=round(records[len(records) // 2].at * 1000),
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
    proposed_toml = ROUTING.format(wrap=45) + PROPOSED_TABLES
    (tmp_path / "current.toml").write_text(current_toml)
    (tmp_path / "proposed.toml").write_text(proposed_toml)
    current, proposed = policy_of(current_toml), policy_of(proposed_toml)
    began = round(time.time() - 3 * 3600)
    acme = record_day(current, DEMAND, TEAMS, hours=2, start=began, seed=5)
    globex = record_day(current, DEMAND[:1], TEAMS[:1], hours=1, start=began, domain="globex")
    start, end = began + 900, began + 2 * 3600 - 900
    decided = outcome_records(acme, start, end)
    await produce(kafka, topics, sorted(acme + globex + decided, key=lambda r: r.at))

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
    as_kept = [dataclasses.replace(r, at=round(r.at * 1000) / 1000) for r in acme + decided]
    recording = build_recording(
        as_kept, domain="acme", start=start, end=end, warmup_s=900, outcomes=True
    )
    now, new = downstream_policies(tmp_path / "current.toml", tmp_path / "proposed.toml")
    expected = format_comparison(
        figures(recording, current),
        replay(recording, current, downstream=now),
        replay(recording, proposed, downstream=new),
    )
    assert expected in out
    assert "records left out: 1 (contact.events: not an envelope)" in out

    # Without --current, the current side is the domain's applied version, read from the
    # policies topic; another domain's version is not it
    for domain, version in (("globex", 7), ("acme", 1)):
        applied = new_envelope(domain, "policy-service", event_id=f"{domain}-policy-{version}")
        applied.policy_changed.current.version = version
        applied.policy_changed.current.document = current_toml
        await kafka.produce(topics.name("policies"), [encode_envelope(applied)])
    code, applied_out, err = await whatif(
        *("--domain", "acme", "--from", str(start), "--to", str(end)),
        *("--policy", str(tmp_path / "proposed.toml"), "--warmup-minutes", "15"),
        env={
            "SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "SWITCHBOARD_KAFKA__TOPIC_PREFIX": topics.prefix,
        },
    )
    assert code == 0, err
    assert "current: acme's policy version 1 (applied)" in applied_out
    assert expected in applied_out
    rows = {
        line.split()[0]: line.split()
        for line in out.splitlines()
        if line.startswith(("billing-en", "tech-en"))
    }
    # QUEUE OFFERED | SL x3 | ASA x3 | ABANDONED x3 | OCCUPANCY x3 | ESCALATIONS x3 | NOTIFIED x3
    for queue in ("billing-en", "tech-en"):
        offered, recorded_sl, current_sl, proposed_sl = rows[queue][1], *rows[queue][3:6]
        assert int(offered) > 100
        assert abs(float(recorded_sl[:-1]) - float(current_sl[:-1])) < 3.0  # percent
        assert float(proposed_sl[:-1]) < float(current_sl[:-1])  # 45 s of wrap-up hurts
        escalated = [int(n) for n in rows[queue][19:22]]
        notified = [int(n) for n in rows[queue][23:26]]
        assert escalated[2] > escalated[1] > 0  # 20 s instead of 60 s, and longer waits
        assert notified[2] > notified[1] > int(offered) // 2  # a notice at least on each end
    # the recorded column: what the two topics hold of acme's counted contacts
    assert [int(n) for n in (rows["billing-en"][19], rows["tech-en"][19])] == [3, 0]
    assert [int(n) for n in (rows["billing-en"][23], rows["tech-en"][23])] == [1, 3]
    assert "notifications held back by the policy (suppressed) " in out
    assert f"proposed: escalation {tmp_path / 'proposed.toml'}, notification" in out

    # `switchboard whatif` takes a policy document (as `switchboard policy apply` does):
    # its [routing] table is replayed through the router core, its [escalation] and
    # [notification] tables through the escalation and notifier cores
    document = tmp_path / "proposed-policy.toml"
    document.write_text(proposed_toml)
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
