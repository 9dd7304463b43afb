"""A replayed dead letter meets the router's real decode-dedupe-handle step
(``ConsumeLoop.apply_record``): an event it refused is not remembered, so once the cause is
fixed its replay is applied; an event it applied is skipped when replayed."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry
from switchboard.v1 import agent_events_pb2, common_pb2

from services.cli.dlq import DeadLetter, plan_replay
from services.common.clock import FakeClock
from services.common.codec import decode_envelope, encode_envelope, new_envelope
from services.common.kafka import ConsumeLoop, InboundRecord, OutboundRecord
from services.common.metrics import RuntimeMetrics
from services.common.topics import Topics
from services.router.adapters.kafka import RouterHandler
from services.router.metrics import RouterMetrics
from services.router.settings import RouterSettings

ROOT = Path(__file__).resolve().parents[3]
TOPICS = Topics("")


class Router:
    """The router's handler behind the loop's per-record step, on one partition."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        registry = CollectorRegistry()
        settings = RouterSettings.from_env(
            {
                "SWITCHBOARD_CONFIG": str(ROOT / "deploy" / "config" / "router.toml"),
                "SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1",
            }
        )
        self.handler = RouterHandler(
            settings.policy(), TOPICS, settings.kafka, RouterMetrics.create(registry), self.clock
        )
        self.loop = ConsumeLoop(
            service="router",
            settings=settings.kafka,
            input_topics=[TOPICS.contact_events, TOPICS.agent_events],
            handler=self.handler,
            metrics=RuntimeMetrics.create(registry),
            clock=self.clock,
        )
        self.loop._input_partitions = 1  # every domain is at home on partition 0
        self.offset = 0

    def feed(self, out: OutboundRecord | InboundRecord) -> list[OutboundRecord]:
        """``out`` consumed from its topic (a producer's record, or a replay)."""
        self.offset += 1
        record = InboundRecord(out.topic, 0, self.offset, out.key, out.value, out.headers, 0)
        outputs = list(self.loop.apply_record(record))
        self.handler.drain_changelog(0)
        self.clock.advance(0.1)
        return outputs


def agent_event(event_id: str, build: str) -> OutboundRecord:
    e = new_envelope("acme", "desk", event_id=event_id)
    if build == "login":
        e.agent_logged_in.agent_id, e.agent_logged_in.team = "a1", "billing-team"
        e.agent_logged_in.languages.append("en")
        e.agent_logged_in.skills.add(skill="billing", proficiency=5)
        e.agent_logged_in.capacity.add(channel=common_pb2.CHANNEL_VOICE, max_concurrent=1)
    else:
        e.agent_state_changed.agent_id = "a1"
        e.agent_state_changed.state = agent_events_pb2.AGENT_STATE_AWAY
        e.agent_state_changed.reason = "lunch"
    return OutboundRecord(TOPICS.agent_events, encode_envelope(e), b"acme")


def statuses(outputs: list[OutboundRecord]) -> list[tuple[str, str]]:
    found = []
    for out in outputs:
        if out.topic == TOPICS.routing_decisions:
            envelope = decode_envelope(out.value, out.headers)
            if envelope.HasField("agent_status_changed"):
                status = envelope.agent_status_changed
                found.append((status.agent_id, status.reason))
    return found


def replay_of(letter: OutboundRecord, offset: int) -> OutboundRecord:
    read = InboundRecord(letter.topic, 0, offset, letter.key, letter.value, letter.headers, 0)
    [replay], skipped = plan_replay(
        [DeadLetter.of("router", read)], TOPICS, now_ms=0, dedupe_window_s=3600
    )
    assert skipped == []
    return replay.record


def test_a_refused_event_replayed_after_the_fix_is_applied_and_a_second_replay_is_skipped() -> None:
    router = Router()
    away = agent_event("away-1", "state")
    [letter, answer] = router.feed(away)  # a1 is not logged in: refused
    assert letter.topic == "router.dlq"
    assert dict(letter.headers)["dlq.reason"] == b"agent 'a1' is not logged in"
    assert answer.topic == TOPICS.routing_decisions  # the EventRejected answer

    router.feed(agent_event("login-1", "login"))  # the fix: a1 logs in
    replayed = router.feed(replay_of(letter, 0))
    assert statuses(replayed) == [("a1", "lunch")]  # applied, not taken for a duplicate
    assert not [out for out in replayed if out.topic == "router.dlq"]

    assert router.feed(replay_of(letter, 0)) == []  # applied once: a repeat is skipped
    assert router.feed(away) == []  # and so is the original id, sent again
