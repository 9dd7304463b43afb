"""Bad input, generated: every service's real handler behind the consume loop's own
decode-dedupe-handle step (``ConsumeLoop.apply_record``), fed random bytes, truncated and
oversized protobufs, wrong JSON, unknown enum values, missing fields, events for agents
and contacts nobody knows, duplicates and events out of order.

Each input must be handled, ignored, or dead-lettered with a reason the service meant
to give (``decode`` or ``rejected``), never by the catch-all for handler crashes, and a
good event afterwards must still be handled. The number of inputs tried is printed at
the end of the run (``bad-input fuzz:`` in pytest's summary).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from switchboard.v1 import common_pb2, contact_events_pb2
from switchboard.v1.envelope_pb2 import Envelope

from services.common.clock import FakeClock
from services.common.codec import JSON_CONTENT_TYPE, encode_envelope, new_envelope
from services.common.kafka import ConsumeLoop, InboundRecord, OutboundRecord
from services.common.metrics import RuntimeMetrics
from services.common.topics import Topics
from services.escalation.adapters.kafka import EscalationHandler
from services.escalation.metrics import EscalationMetrics
from services.escalation.settings import EscalationSettings
from services.notifier.adapters.kafka import NotifierHandler
from services.notifier.metrics import NotifierMetrics
from services.notifier.settings import NotifierSettings
from services.router.adapters.kafka import RouterHandler
from services.router.metrics import RouterMetrics
from services.router.settings import RouterSettings
from tests.support import FUZZ_INPUTS

ROOT = Path(__file__).resolve().parents[2]
TOPICS = Topics("")
EXAMPLES = 150

# --- a service under test: the real handler inside the real decode/dedupe/dispatch ----


@dataclass
class Harness:
    """One service's handler behind ``ConsumeLoop.apply_record``, with a clock we move."""

    service: str
    loop: ConsumeLoop
    clock: FakeClock
    handler: Any
    offset: int = 0
    dead: Counter[str] = field(default_factory=Counter)

    def feed(
        self,
        topic: str,
        value: bytes,
        headers: Sequence[tuple[str, bytes]] = (),
        *,
        tick: bool = True,
    ) -> list[OutboundRecord]:
        FUZZ_INPUTS[self.service] += 1
        self.offset += 1
        record = InboundRecord(topic, 0, self.offset, b"acme", value, list(headers), 0)
        outputs = list(self.loop.apply_record(record))
        if tick:
            self.clock.advance(0.7)
            outputs.extend(self.handler.on_timer(0, self.clock.now()))
        for out in outputs:
            if out.topic.endswith(".dlq"):
                error = dict(out.headers or ())["dlq.error"].decode()
                reason = dict(out.headers or ())["dlq.reason"].decode()
                assert error in ("decode", "rejected", "wrong_topic", "too_large"), (
                    f"{self.service} crashed: {reason}"
                )
                assert reason, "a dead letter must say why"
                self.dead[error] += 1
        self.handler.drain_changelog(0)
        return outputs


def harness(service: str) -> Harness:
    clock = FakeClock()
    registry = CollectorRegistry()
    env = {
        "SWITCHBOARD_CONFIG": str(ROOT / "deploy" / "config" / f"{service}.toml"),
        "SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1",
    }
    handler: Any
    if service == "router":
        rs = RouterSettings.from_env(env)
        handler = RouterHandler(
            rs.policy(), TOPICS, rs.kafka, RouterMetrics.create(registry), clock
        )
        kafka = rs.kafka
    elif service == "escalation":
        es = EscalationSettings.from_env(
            env | {"SWITCHBOARD_ESCALATION__TRIGGERS__WAIT_THRESHOLD_S": "1"}
        )
        handler = EscalationHandler(
            policy=es.policy(),
            topics=TOPICS,
            kafka=es.kafka,
            metrics=EscalationMetrics.create(registry),
            clock=clock,
        )
        kafka = es.kafka
    else:
        ns = NotifierSettings.from_env(env | {"SWITCHBOARD_GATEWAYS__DEFAULT": "127.0.0.1:1"})
        handler = NotifierHandler(
            policy=ns.notifier_policy(),
            catalog=ns.catalog(),
            topics=TOPICS,
            kafka=ns.kafka,
            metrics=NotifierMetrics.create(registry),
            clock=clock,
        )
        kafka = ns.kafka
    loop = ConsumeLoop(
        service=service,
        settings=kafka,
        input_topics=[TOPICS.contact_events, TOPICS.agent_events, TOPICS.routing_decisions],
        handler=handler,
        metrics=RuntimeMetrics.create(registry),
        clock=clock,
    )
    loop._input_partitions = 1  # one partition: every domain is home on partition 0
    return Harness(service, loop, clock, handler)


# --- generating envelopes that are well-formed protobuf but wrong in every other way ---

IDS = ["a1", "a2", "c1", "c2", "ghost", "", "x" * 300]
QUEUES = ["billing-en", "billing-pl", "tech-ru", "no-such-queue", ""]
SKILLS = ["billing", "tech", "sales", "juggling", ""]
LANGUAGES = ["en", "ru", "pl", "xx", ""]
PAYLOADS = [f.name for f in Envelope.DESCRIPTOR.oneofs_by_name["payload"].fields]
INPUT_TOPICS = ["contact.events", "agent.events", "routing.decisions"]


def text_for(name: str, rng: random.Random) -> str:
    """Strings that collide with real ids, queues and skills often enough to matter."""
    if name.endswith("queue") or name == "queue":
        return rng.choice(QUEUES)
    if "skill" in name:
        return rng.choice(SKILLS)
    if "language" in name:
        return rng.choice(LANGUAGES)
    if name.endswith("_id") or name in ("team", "domain"):
        return rng.choice(IDS)
    return rng.choice(["", "Anna", "żółć ёжик", "\x00\x01", "x" * rng.randint(0, 5000)])


def fill(message: Message, rng: random.Random, depth: int = 0) -> None:
    """Set a random subset of fields: unknown enum numbers, extreme numbers, nesting."""
    descriptor: Descriptor = message.DESCRIPTOR
    for f in descriptor.fields:
        if f.containing_oneof is not None and f.containing_oneof.name == "payload":
            continue
        if rng.random() < 0.35:
            continue  # missing field
        repeated = f.is_repeated
        for _ in range(rng.randint(0, 3) if repeated else 1):
            if f.type == FieldDescriptor.TYPE_MESSAGE:
                if depth > 2 or (f.message_type.GetOptions().map_entry):
                    continue
                child = getattr(message, f.name).add() if repeated else getattr(message, f.name)
                if f.message_type.full_name in (
                    "google.protobuf.Timestamp",
                    "google.protobuf.Duration",
                ):
                    child.seconds = rng.choice([0, -5, 60, 10**9, 10**11])
                    continue
                fill(child, rng, depth + 1)
                if not repeated:
                    child.SetInParent()
                continue
            value: Any
            if f.type == FieldDescriptor.TYPE_ENUM:
                value = rng.choice([0, 1, 2, 3, 7, 99, -1])
            elif f.type == FieldDescriptor.TYPE_STRING:
                value = text_for(f.name, rng)
            elif f.type == FieldDescriptor.TYPE_BOOL:
                value = rng.random() < 0.5
            elif f.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
                value = rng.choice([0.0, -1.0, 1e308, float("nan"), float("inf"), 3.5])
            elif f.type == FieldDescriptor.TYPE_BYTES:
                value = rng.randbytes(rng.randint(0, 16))
            elif f.type in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_UINT64):
                value = rng.choice([0, 1, 10, 2**31])
            else:
                value = rng.choice([0, 1, -1, 10, 2**31 - 1, -(2**31)])
            if repeated:
                getattr(message, f.name).append(value)
            else:
                setattr(message, f.name, value)


def random_envelope(rng: random.Random) -> Envelope:
    envelope = new_envelope(
        rng.choice(["acme", "acme", ""]), "fuzz", event_id=f"e{rng.randint(0, 40)}"
    )
    payload = rng.choice(PAYLOADS)
    fill(getattr(envelope, payload), rng)
    getattr(envelope, payload).SetInParent()
    return envelope


def bad_inputs(seed: int, count: int) -> Iterator[tuple[str, bytes, list[tuple[str, bytes]]]]:
    """(topic, value, headers): a seeded mix of every kind of bad input the issue names."""
    rng = random.Random(seed)
    json_header = [("content-type", JSON_CONTENT_TYPE.encode())]
    for _ in range(count):
        topic = rng.choice(INPUT_TOPICS)
        kind = rng.randrange(12)  # half of them well-formed protobuf
        valid = encode_envelope(random_envelope(rng))
        if kind == 0:
            yield topic, rng.randbytes(rng.randint(0, 200)), []
        elif kind == 1:
            yield topic, valid[: rng.randint(0, max(0, len(valid) - 1))], []
        elif kind == 2:
            yield topic, valid + rng.randbytes(rng.randint(1, 50)), []  # trailing garbage
        elif kind == 3:
            yield topic, b"\x0a" + b"\xff" * 10 + rng.randbytes(1_000_100), []  # oversized
        elif kind == 4:
            junk = rng.choice(
                [
                    '{"eventId": 5}',
                    "[1,2",
                    '{"contactArrived": "yes"}',
                    "null",
                    "{}",
                    '{"eventId":"x","contactArrived":{"channel":"CHANNEL_TELEPATHY"}}',
                ]
            )
            yield topic, junk.encode(), json_header
        elif kind == 5:
            yield topic, valid, [("content-type", b"text/x-yaml")]
        else:  # well-formed protobuf, nonsense content; some of it repeated (duplicates)
            yield topic, valid, []


# --- good events after the storm -----------------------------------------------------


def login_event(agent_id: str) -> bytes:
    e = new_envelope("fresh", "desk")
    e.agent_logged_in.agent_id = agent_id
    e.agent_logged_in.team = "billing-en-team"
    e.agent_logged_in.languages.append("en")
    e.agent_logged_in.skills.add(skill="billing", proficiency=9)
    e.agent_logged_in.capacity.add(channel=common_pb2.CHANNEL_VOICE, max_concurrent=1)
    return encode_envelope(e)


def arrive_event(contact_id: str, queue: str = "billing-en") -> bytes:
    e = new_envelope("fresh", "pbx")
    e.contact_arrived.contact_id, e.contact_arrived.queue = contact_id, queue
    e.contact_arrived.channel = common_pb2.CHANNEL_VOICE
    e.contact_arrived.customer.name = "Anna"
    e.contact_arrived.customer.phone = "+48600123456"
    return encode_envelope(e)


def hold_event(contact_id: str) -> bytes:
    e = new_envelope("fresh", "pbx")
    e.contact_held.contact_id = contact_id
    e.contact_held.reason = contact_events_pb2.PAUSE_REASON_CHECKING_INFORMATION
    e.contact_held.expected_duration.FromSeconds(120)
    return encode_envelope(e)


def still_routes(h: Harness) -> bool:
    h.feed("agent.events", login_event("good-agent"))
    out = h.feed("contact.events", arrive_event("good-contact"))
    return any(b"good-agent" in (o.value or b"") for o in out if o.topic == "routing.decisions")


def still_escalates(h: Harness) -> bool:
    h.feed("contact.events", arrive_event("good-contact", "billing-pl"))
    h.clock.advance(5)
    out = list(h.handler.on_timer(0, h.clock.now()))
    return any(b"good-contact" in (o.value or b"") for o in out if o.topic == "escalations")


def still_notifies(h: Harness) -> bool:
    h.feed("contact.events", arrive_event("good-contact"))
    h.feed("contact.events", hold_event("good-contact"))
    core = h.handler.states.core_for("fresh", 0)
    return any(p.notification.contact_id == "good-contact" for p in core.due(h.clock.now() + 60))


STILL_WORKS: dict[str, Callable[[Harness], bool]] = {
    "router": still_routes,
    "escalation": still_escalates,
    "notifier": still_notifies,
}


@pytest.mark.parametrize("service", ["router", "escalation", "notifier"])
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), count=st.integers(1, 40))
def test_bad_input_is_dead_lettered_or_ignored_and_good_input_still_works(
    service: str, seed: int, count: int
) -> None:
    h = harness(service)
    for topic, value, headers in bad_inputs(seed, count):
        h.feed(topic, value, headers)
    assert STILL_WORKS[service](h), f"{service} stopped handling good events"


@pytest.mark.parametrize("service", ["router", "escalation", "notifier"])
@settings(max_examples=EXAMPLES, deadline=None)
@given(data=st.data())
def test_any_byte_string_is_handled_or_dead_lettered(service: str, data: st.DataObject) -> None:
    h = harness(service)
    for _ in range(5):
        topic = data.draw(st.sampled_from(INPUT_TOPICS))
        value = data.draw(st.binary(max_size=300))
        as_json = data.draw(st.booleans())
        if as_json:
            value = json.dumps(
                data.draw(
                    st.dictionaries(
                        st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=4
                    )
                )
            ).encode()
        h.feed(topic, value, [("content-type", JSON_CONTENT_TYPE.encode())] if as_json else [])
    assert STILL_WORKS[service](h)


def test_the_same_events_twice_and_shuffled_change_nothing_the_second_time() -> None:
    """A replayed, reordered stream (a producer retry storm) after the first delivery."""
    h = harness("router")
    events = [("agent.events", login_event(f"a{n}")) for n in range(3)]
    events += [("contact.events", arrive_event(f"c{n}")) for n in range(5)]
    first = [o for topic, value in events for o in h.feed(topic, value, tick=False)]
    rng = random.Random(7)
    replay = events * 3
    rng.shuffle(replay)
    again = [o for topic, value in replay for o in h.feed(topic, value, tick=False)]
    assert any(o.topic == "routing.decisions" for o in first), "the first delivery must route"
    assert again == []
