"""Managers' commands as the domain's owner receives them from any instance: the owner
checks the caller again (role, token scope, the policy's teams), never applies a command
past its deadline, answers every command (a refused one too) on ``escalation.replies``
in the same records as the change, and never creates a domain for a command."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from switchboard.v1 import escalation_pb2
from switchboard.v1.envelope_pb2 import Envelope

from services.common.clock import FakeClock
from services.common.codec import decode_envelope, new_envelope
from services.common.config import KafkaSettings
from services.common.kafka import InboundRecord, OutboundRecord
from services.common.topics import Topics
from services.escalation.adapters.kafka import EscalationHandler
from services.escalation.adapters.mapping import (
    command_from_proto,
    command_to_proto,
    outcome_from_proto,
    outcome_to_proto,
)
from services.escalation.domain import EscalationCore, EscalationStatus, ManagerRequested
from services.escalation.domain import commands as c
from services.escalation.metrics import EscalationMetrics
from tests.unit.escalation.scenario import T0, arrive, make_core, make_policy

ESC = "eu/c1/manager_requested"
SOFIA = c.Requester("sofia", frozenset({"manager"}), frozenset({"billing"}), frozenset({"eu"}))
LATER = T0 + 60


def raised() -> EscalationCore:
    core = make_core(triggers={"enabled": ["manager_requested"]})
    arrive(core, "c1", T0)
    core.apply(ManagerRequested("c1"), T0)
    return core


def test_a_manager_of_the_team_acknowledges_notes_and_resolves() -> None:
    core = raised()
    ack = c.run_command(core, c.Acknowledge(ESC), SOFIA, T0 + 1, LATER)
    assert ack.status is c.CommandStatus.OK
    assert ack.escalation is not None
    assert ack.escalation.acknowledged_by == "sofia"
    assert [ch.kind.slug for ch in ack.changes] == ["acknowledged"]
    note = c.run_command(core, c.AddNote(ESC, "called back"), SOFIA, T0 + 2, LATER)
    assert note.escalation is not None
    assert note.escalation.notes[-1].text == "called back"
    done = c.run_command(core, c.Resolve(ESC, "refund", "sorted"), SOFIA, T0 + 3, LATER)
    assert done.escalation is not None
    assert done.escalation.status is EscalationStatus.RESOLVED
    again = c.run_command(core, c.Resolve(ESC, "refund"), SOFIA, T0 + 4, LATER)
    assert again.status is c.CommandStatus.FAILED_PRECONDITION
    assert "already resolved" in again.message


def test_what_the_caller_may_not_see_is_not_found_and_changes_nothing() -> None:
    core = raised()
    callers = [
        # the policy does not give sam the billing team, whatever his token says
        c.Requester("sam", frozenset({"manager"}), frozenset({"*"}), frozenset({"*"})),
        # sofia's token does not carry the team (or the domain) for this command
        c.Requester("sofia", frozenset({"manager"}), frozenset(), frozenset({"eu"})),
        c.Requester("sofia", frozenset({"manager"}), frozenset({"billing"}), frozenset({"us"})),
    ]
    for who in callers:
        outcome = c.run_command(core, c.Acknowledge(ESC), who, T0 + 1, LATER)
        assert outcome.status is c.CommandStatus.NOT_FOUND, who
        assert outcome.message == f"escalation {ESC!r} not found"
        assert outcome.changes == ()
    for missing in (c.run_command(core, c.Acknowledge("eu/c9/unresolved"), SOFIA, T0, LATER),):
        assert missing.status is c.CommandStatus.NOT_FOUND
    nobody = c.run_command(None, c.Acknowledge(ESC), SOFIA, T0, LATER)  # domain not held
    assert nobody.status is c.CommandStatus.NOT_FOUND
    assert core.get(ESC).status is EscalationStatus.OPEN  # type: ignore[union-attr]


def test_no_manager_role_is_permission_denied_and_a_late_command_is_not_applied() -> None:
    core = raised()
    operator = c.Requester("sofia", frozenset({"operator"}), frozenset({"*"}), frozenset({"*"}))
    denied = c.run_command(core, c.Acknowledge(ESC), operator, T0 + 1, LATER)
    assert denied.status is c.CommandStatus.PERMISSION_DENIED
    late = c.run_command(core, c.Acknowledge(ESC), SOFIA, LATER + 1, LATER)
    assert late.status is c.CommandStatus.EXPIRED
    assert late.changes == ()
    assert core.get(ESC).status is EscalationStatus.OPEN  # type: ignore[union-attr]


def test_blank_arguments_are_invalid() -> None:
    core = raised()
    blank = c.run_command(core, c.AddNote(ESC, "  "), SOFIA, T0 + 1, LATER)
    assert blank.status is c.CommandStatus.INVALID_ARGUMENT


def test_the_scope_a_command_carries_is_only_what_it_needs() -> None:
    assert c.Requester.scope_for(frozenset({"*", "x"}), "billing") == {"*"}
    assert c.Requester.scope_for(frozenset({"billing", "sales"}), "billing") == {"billing"}
    assert c.Requester.scope_for(frozenset({"sales"}), "billing") == frozenset()


def test_commands_and_outcomes_survive_the_wire() -> None:
    for command in (c.Acknowledge(ESC), c.AddNote(ESC, "hi"), c.Resolve(ESC, "ok", "bye")):
        proto = escalation_pb2.EscalationCommand.FromString(
            command_to_proto(command, SOFIA, LATER).SerializeToString()
        )
        assert command_from_proto(proto) == (command, SOFIA, LATER)
    outcome = c.run_command(raised(), c.Acknowledge(ESC), SOFIA, T0 + 1, LATER)
    assert outcome.escalation is not None
    back = outcome_from_proto(outcome_to_proto("cmd-1", outcome.answer()))
    assert back == c.CommandAnswer(c.CommandStatus.OK, "", ESC, outcome.escalation.version)
    refused = c.CommandOutcome(c.CommandStatus.NOT_FOUND, "gone").answer()
    assert outcome_from_proto(outcome_to_proto("cmd-2", refused)) == refused


# --- the owner's handler ----------------------------------------------------------------

TOPICS = Topics("t.")


def owner() -> EscalationHandler:
    h = EscalationHandler(
        policy=make_policy(triggers={"enabled": ["manager_requested"]}),
        topics=TOPICS,
        kafka=KafkaSettings(),
        metrics=EscalationMetrics.create(CollectorRegistry()),
        clock=FakeClock(T0 + 1),
    )
    core = h.states.core_for("eu", 0)
    arrive(core, "c1", T0)
    h.emit_changes(core.apply(ManagerRequested("c1"), T0))
    return h


def command_envelope(command: c.ManagerCommand, domain: str = "eu") -> Envelope:
    envelope = new_envelope(domain, "escalation", event_id="cmd-1", occurred_at=T0)
    envelope.escalation_command.CopyFrom(command_to_proto(command, SOFIA, LATER))
    return envelope


def record(envelope: Envelope) -> InboundRecord:
    value = envelope.SerializeToString()
    return InboundRecord("t.escalation.commands", 0, 7, b"eu", value, (), 0)


def answer_in(out: list[OutboundRecord], domain: bytes = b"eu") -> c.CommandAnswer:
    (reply,) = [o for o in out if o.topic == "t.escalation.replies"]
    assert reply.key == domain  # on the domain's partition, as the command
    result = decode_envelope(reply.value).escalation_command_result
    assert result.command_id == "cmd-1"
    return outcome_from_proto(result)


def test_the_owner_writes_the_change_and_the_answer_together() -> None:
    h = owner()
    envelope = command_envelope(c.Acknowledge(ESC))
    out = list(h.handle(envelope, record(envelope)))
    changes = [o for o in out if o.topic == "t.escalations"]
    assert len(changes) == 1
    assert changes[0].key == ESC.encode()
    kind = decode_envelope(changes[0].value).escalation_record.kind
    assert kind == escalation_pb2.ESCALATION_CHANGE_KIND_ACKNOWLEDGED
    acked = decode_envelope(changes[0].value).escalation_record.escalation
    assert acked.acknowledged_by == "sofia"
    # the answer names the version to show, and carries no customer data
    assert answer_in(out) == c.CommandAnswer(c.CommandStatus.OK, "", ESC, acked.version)


def test_a_command_for_a_domain_the_owner_does_not_hold_creates_no_domain() -> None:
    h = owner()
    envelope = command_envelope(c.Acknowledge("zz/c1/manager_requested"), domain="zz")
    out = list(h.handle(envelope, record(envelope)))
    assert answer_in(out, b"zz").status is c.CommandStatus.NOT_FOUND
    assert "zz" not in h.states.cores
    assert [o for o in out if o.topic == "t.escalations"] == []


def test_a_command_the_loop_refuses_is_answered_so_nobody_waits_for_nothing() -> None:
    h = owner()
    envelope = command_envelope(c.Acknowledge(ESC))
    out = h.on_refused(envelope, record(envelope), "escalation_command.action: required")
    answer = answer_in(list(out))
    assert answer.status is c.CommandStatus.REJECTED
    assert "action: required" in answer.message
    # other refused events have nobody waiting here
    arrival = new_envelope("eu", "pbx", event_id="e1")
    arrival.contact_arrived.contact_id = "c2"
    assert list(h.on_refused(arrival, record(arrival), "bad")) == []
