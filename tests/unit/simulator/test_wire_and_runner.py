"""The adapter: events become real envelopes on the right topic; the runner drives the core."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from switchboard.v1 import agent_events_pb2, common_pb2, contact_events_pb2, routing_pb2
from switchboard.v1.envelope_pb2 import Envelope

from services.common.clock import FakeClock
from services.common.codec import decode_envelope, encode_envelope, new_envelope
from services.common.errors import ConfigError
from services.common.topics import Topics
from services.simulator import events as ev
from services.simulator.adapters.kafka import FakeDecisions, FakePublisher
from services.simulator.adapters.wire import decision_from_envelope, to_envelope
from services.simulator.core import Simulation
from services.simulator.runner import SimulationRunner
from services.simulator.scenario import Behaviour, Span, load_scenario
from services.simulator.settings import SimulatorSettings
from tests.support import until
from tests.unit.simulator.routing_double import FakeRouter, drive

START = 1_700_000_000.0
PAYLOAD = {
    ev.ContactArrived: "contact_arrived",
    ev.ContactAbandoned: "contact_abandoned",
    ev.ContactHeld: "contact_held",
    ev.ContactPaused: "contact_paused",
    ev.ContactResumed: "contact_resumed",
    ev.ContactEnded: "contact_ended",
    ev.SurveyAnswered: "survey_result",
    ev.AgentLoggedIn: "agent_logged_in",
    ev.AgentLoggedOut: "agent_logged_out",
    ev.AgentStateChanged: "agent_state_changed",
    ev.OfferAccepted: "offer_accepted",
    ev.OfferRejected: "offer_rejected",
    ev.ManagerRequested: "manager_requested",
}


def _many_events() -> list[ev.SimEvent]:
    scenario = load_scenario("monday-spike")
    behaviour = Behaviour(manager_request=0.3, survey=0.9, reject_offer=0.1, break_every=60)
    sim = Simulation(replace(scenario, behaviour=behaviour), seed=3, start=START, run_id="w")
    log = drive(sim, FakeRouter(), START + 900)
    return [e for _, e in log.events] + sim.shutdown(START + 900)


def test_every_simulated_event_is_a_valid_envelope_with_its_payload() -> None:
    events = _many_events()
    assert {type(e) for e in events} == set(PAYLOAD)
    for event in events:
        envelope = decode_envelope(encode_envelope(to_envelope(event, "acme")))
        assert envelope.WhichOneof("payload") == PAYLOAD[type(event)]
        assert envelope.event_id == event.event_id
        assert envelope.domain == "acme"
        assert abs(envelope.occurred_at.ToMicroseconds() / 1e6 - event.at) < 1e-3


def test_contact_arrived_carries_skills_language_channel_and_customer() -> None:
    arrived = next(e for e in _many_events() if isinstance(e, ev.ContactArrived))
    msg = to_envelope(arrived, "acme").contact_arrived
    assert msg.queue == arrived.queue
    assert msg.channel in (
        common_pb2.CHANNEL_VOICE,
        common_pb2.CHANNEL_CHAT,
        common_pb2.CHANNEL_EMAIL,
    )
    assert [(s.skill, s.min_proficiency) for s in msg.required_skills] == [
        (arrived.skill, arrived.min_proficiency)
    ]
    assert msg.language == arrived.language
    assert msg.customer.name == arrived.customer.name
    assert msg.customer.phone == arrived.customer.phone
    assert msg.priority != common_pb2.PRIORITY_UNSPECIFIED


def test_hold_carries_reason_code_and_expected_duration() -> None:
    held = ev.ContactHeld(
        event_id="e1",
        at=START,
        contact_id="c1",
        agent_id="a1",
        reason=ev.PauseReason.WAITING_FOR_SPECIALIST,
        detail="asking billing",
        expected_seconds=12.5,
    )
    msg = to_envelope(held, "acme").contact_held
    assert msg.reason == contact_events_pb2.PAUSE_REASON_WAITING_FOR_SPECIALIST
    assert msg.expected_duration.ToMilliseconds() == 12_500


def _decision_envelope(**payload: object) -> Envelope:
    envelope = new_envelope("acme", "router")
    for name, message in payload.items():
        getattr(envelope, name).CopyFrom(message)
    return envelope


def test_router_decisions_are_read_into_the_core_types() -> None:
    offer = routing_pb2.OfferMade(offer_id="o1", contact_id="c1", agent_id="a1")
    offer.expires_at.FromMilliseconds(int(START * 1000) + 15_000)
    status = routing_pb2.AgentStatusChanged(
        agent_id="a1", state=agent_events_pb2.AGENT_STATE_AWAY, reason="missed offer"
    )
    position = routing_pb2.QueuePositionUpdated(contact_id="c1", position=3)
    position.estimated_wait.FromSeconds(90)
    assert decision_from_envelope(_decision_envelope(offer_made=offer)) == ev.OfferMade(
        "o1", "c1", "a1", START + 15
    )
    assert decision_from_envelope(
        _decision_envelope(agent_status_changed=status)
    ) == ev.AgentStatusChanged("a1", ev.AgentPresence.AWAY, "missed offer")
    assert decision_from_envelope(
        _decision_envelope(queue_position_updated=position)
    ) == ev.QueuePositionUpdated("c1", 3, 90.0)
    requeued = routing_pb2.ContactRequeued(
        contact_id="c1", reason=routing_pb2.REQUEUE_REASON_TIMED_OUT
    )
    assert decision_from_envelope(_decision_envelope(contact_requeued=requeued)) == (
        ev.ContactRequeued("c1", "", "REQUEUE_REASON_TIMED_OUT")
    )
    for name, message in (
        (
            "contact_assigned",
            routing_pb2.ContactAssigned(offer_id="o1", contact_id="c1", agent_id="a1"),
        ),
        (
            "offer_timed_out",
            routing_pb2.OfferTimedOut(offer_id="o1", contact_id="c1", agent_id="a1"),
        ),
        ("contact_unroutable", routing_pb2.ContactUnroutable(contact_id="c1", reason="no pl")),
        ("contact_closed", routing_pb2.ContactClosed(contact_id="c1", abandoned=True)),
    ):
        assert decision_from_envelope(_decision_envelope(**{name: message})) is not None


def test_events_the_simulator_does_not_act_on_are_ignored() -> None:
    envelope = new_envelope("acme", "pbx")
    envelope.contact_abandoned.contact_id = "c1"
    assert decision_from_envelope(envelope) is None


@pytest.mark.timeout(30)
async def test_runner_publishes_logins_answers_offers_and_logs_out_on_stop() -> None:
    scenario = load_scenario("quiet-day").with_rate(0.0)
    scenario = replace(scenario, behaviour=Behaviour(miss_offer=0, reject_offer=0, ring=Span(1, 1)))
    clock = FakeClock(START)
    sim = Simulation(scenario, seed=1, start=START, run_id="r")
    publisher, decisions = FakePublisher(), FakeDecisions()
    topics = Topics(prefix="t.")
    runner = SimulationRunner(sim, publisher, decisions, clock, topics, "acme")
    agents = sum(group.count for group in scenario.agents)

    def published(kind: str) -> list[Envelope]:
        envelopes = [decode_envelope(r.value, r.headers) for r in publisher.sent]
        return [e for e in envelopes if e.WhichOneof("payload") == kind]

    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    clock.advance(5)
    await until(lambda: len(published("agent_logged_in")) == agents, 10, "agents logged in")
    assert {r.topic for r in publisher.sent} == {"t.agent.events"}
    assert {r.key for r in publisher.sent} == {b"acme"}

    # A decision for another domain is not ours; one for ours is answered after the ring.
    offer = routing_pb2.OfferMade(offer_id="o1", contact_id="c-unknown", agent_id="billing-01")
    decisions.put(_decision_envelope(offer_made=offer))
    other = _decision_envelope(offer_made=offer)
    other.domain = "other"
    decisions.put(other)
    await until(lambda: decisions.queue.empty(), 10, "decisions consumed")
    assert not published("offer_accepted")  # the contact is unknown to the simulation

    stop.set()
    stats = await task
    assert len(published("agent_logged_out")) == agents
    assert stats.counts["agent_logins"] == agents


@pytest.mark.timeout(30)
async def test_runner_writes_json_events_with_their_content_type_when_asked() -> None:
    scenario = load_scenario("quiet-day").with_rate(0.0)
    clock = FakeClock(START)
    sim = Simulation(scenario, seed=1, start=START, run_id="j")
    publisher, decisions = FakePublisher(), FakeDecisions()
    runner = SimulationRunner(
        sim, publisher, decisions, clock, Topics(), "acme", output_format="json"
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    clock.advance(5)
    await until(lambda: bool(publisher.sent), 10, "something published")
    stop.set()
    await task
    for record in publisher.sent:
        assert record.headers == (("content-type", b"application/json"),)
        assert record.value.startswith(b'{"eventId":"')
        assert decode_envelope(record.value, record.headers).domain == "acme"


def test_the_simulator_writes_as_the_services_do_and_refuses_an_unknown_format() -> None:
    env = {"SWITCHBOARD_KAFKA__OUTPUT_FORMAT": "json"}
    assert SimulatorSettings.from_args([], {}).output_format == "protobuf"
    assert SimulatorSettings.from_args([], env).output_format == "json"
    assert SimulatorSettings.from_args(["--output-format", "protobuf"], env).output_format == (
        "protobuf"
    )
    with pytest.raises(ConfigError, match="--output-format: expected protobuf or json"):
        SimulatorSettings.from_args(["--output-format", "xml"], {})
