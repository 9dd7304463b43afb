"""Tiers, deadlines and managers' commands: acknowledge, note, resolve, and who may."""

from __future__ import annotations

import pytest

from services.escalation.domain import (
    EscalationChangeKind,
    EscalationCore,
    EscalationReason,
    EscalationStatus,
    InvalidArgument,
    InvalidTransition,
    ManagerRequested,
    NotFound,
    PermissionDenied,
    Tier,
    UnknownContact,
)
from services.escalation.domain import policy as policy_module
from tests.unit.escalation.scenario import T0, arrive, eid, kinds, make_core

ESC = eid("c1", EscalationReason.MANAGER_REQUESTED)


def raised(core: EscalationCore, at: float = T0, queue: str = "billing-en") -> None:
    arrive(core, "c1", at, queue=queue)
    core.apply(ManagerRequested("c1", "refund"), at)


def test_an_unacknowledged_escalation_climbs_one_tier_per_missed_deadline() -> None:
    core = make_core()
    raised(core)
    assert core.next_deadline() == T0 + 300  # the wait threshold comes first
    core.tick(T0 + 300)
    assert core.get(ESC).ack_deadline == T0 + 600  # type: ignore[union-attr]

    to_manager = [c for c in core.tick(T0 + 600) if c.escalation.escalation_id == ESC]
    assert kinds(to_manager) == [("re_escalated", "manager_requested")]
    esc = to_manager[0].escalation
    assert (esc.tier, esc.assignee, esc.previous_tiers) == (
        Tier.MANAGER,
        "mira",
        (Tier.SUPERVISOR,),
    )
    assert esc.ack_deadline == T0 + 600 + 1200

    to_head = [c for c in core.tick(T0 + 1800) if c.escalation.escalation_id == ESC]
    esc = to_head[0].escalation
    assert (esc.tier, esc.assignee) == (Tier.HEAD_OF_SERVICE, "hugo")
    assert esc.previous_tiers == (Tier.SUPERVISOR, Tier.MANAGER)
    assert esc.ack_deadline == T0 + 1800 + 1800, "shown to the head, though nobody is above"
    assert [c for c in core.tick(T0 + 99_999) if c.escalation.escalation_id == ESC] == []


def test_a_tick_after_a_long_outage_climbs_every_tier_on_the_original_schedule() -> None:
    core = make_core(triggers={"enabled": ["manager_requested"]})
    raised(core)
    changes = core.tick(T0 + 10_000)
    assert [c.escalation.tier for c in changes] == [Tier.MANAGER, Tier.HEAD_OF_SERVICE]
    assert changes[-1].escalation.ack_deadline == T0 + 600 + 1200 + 1800


def test_acknowledgement_stops_re_escalation_and_measures_time_to_acknowledge() -> None:
    core = make_core(triggers={"enabled": ["manager_requested"]})
    raised(core)
    result = core.acknowledge(ESC, "sofia", T0 + 120)
    assert kinds(list(result.changes)) == [("acknowledged", "manager_requested")]
    esc = result.escalation
    assert esc.status is EscalationStatus.ACKNOWLEDGED
    assert (esc.acknowledged_by, esc.acknowledged_at, esc.ack_deadline) == ("sofia", T0 + 120, None)
    assert esc.time_to_acknowledge == 120
    assert core.tick(T0 + 100_000) == []


def test_acknowledging_twice_changes_nothing() -> None:
    core = make_core(triggers={"enabled": ["manager_requested"]})
    raised(core)
    first = core.acknowledge(ESC, "sofia", T0 + 10)
    second = core.acknowledge(ESC, "mira", T0 + 20)
    assert second.changes == ()
    assert second.escalation == first.escalation


def test_the_manager_tier_may_acknowledge_after_re_escalation() -> None:
    core = make_core(triggers={"enabled": ["manager_requested"]})
    raised(core)
    result = core.acknowledge(ESC, "mira", T0 + 700)
    assert kinds(list(result.changes)) == [
        ("re_escalated", "manager_requested"),
        ("acknowledged", "manager_requested"),
    ]
    assert result.escalation.tier is Tier.MANAGER


def test_notes_are_kept_in_order_and_resolution_closes_with_a_code() -> None:
    core = make_core(triggers={"enabled": ["manager_requested"]})
    raised(core)
    core.add_note(ESC, "sofia", "calling the customer", T0 + 10)
    noted = core.add_note(ESC, "mira", "refund approved", T0 + 20)
    assert noted.changes[0].kind is EscalationChangeKind.NOTE_ADDED
    assert [(n.author, n.text, n.at) for n in noted.escalation.notes] == [
        ("sofia", "calling the customer", T0 + 10),
        ("mira", "refund approved", T0 + 20),
    ]
    done = core.resolve(ESC, "sofia", "refund-issued", T0 + 30, note="customer happy")
    esc = done.escalation
    assert (esc.status, esc.resolution_code, esc.resolved_by, esc.resolved_at) == (
        EscalationStatus.RESOLVED,
        "refund-issued",
        "sofia",
        T0 + 30,
    )
    assert esc.notes[-1].text == "customer happy"
    assert core.tick(T0 + 100_000) == []
    versions = [1, *(c.escalation.version for c in done.changes)]
    assert versions == sorted(versions)


def test_another_teams_escalation_can_be_neither_seen_nor_changed() -> None:
    core = make_core(triggers={"enabled": ["manager_requested"]})
    raised(core)  # billing
    assert core.teams_visible_to("sam") == {"sales"}
    assert core.open_escalations(teams=core.teams_visible_to("sam")) == []
    assert [e.escalation_id for e in core.open_escalations(core.teams_visible_to("hugo"))] == [ESC]
    for command in (
        lambda: core.acknowledge(ESC, "sam", T0 + 1),
        lambda: core.add_note(ESC, "sam", "mine now", T0 + 1),
        lambda: core.resolve(ESC, "sam", "done", T0 + 1),
        lambda: core.acknowledge(ESC, "stranger", T0 + 1),
    ):
        with pytest.raises(PermissionDenied, match="billing"):
            command()
    assert core.get(ESC).status is EscalationStatus.OPEN  # type: ignore[union-attr]


def test_commands_on_unknown_or_resolved_escalations_are_refused() -> None:
    core = make_core(triggers={"enabled": ["manager_requested"]}, retain_closed_s=3600)
    raised(core)
    with pytest.raises(NotFound):
        core.acknowledge("eu/nope/unroutable", "sofia", T0)
    with pytest.raises(InvalidArgument, match="resolution_code"):
        core.resolve(ESC, "sofia", " ", T0)
    with pytest.raises(InvalidArgument, match="text"):
        core.add_note(ESC, "sofia", "", T0)
    core.resolve(ESC, "sofia", "done", T0 + 1)
    with pytest.raises(InvalidTransition, match="already resolved"):
        core.resolve(ESC, "sofia", "done", T0 + 2)
    with pytest.raises(InvalidTransition):
        core.acknowledge(ESC, "sofia", T0 + 2)
    with pytest.raises(InvalidTransition):
        core.add_note(ESC, "sofia", "late", T0 + 2)


def test_open_escalations_filter_by_tier_and_reason_oldest_first() -> None:
    core = make_core(triggers={"enabled": ["manager_requested", "unroutable"]})
    arrive(core, "c2", T0, queue="sales-en")
    core.apply(ManagerRequested("c2"), T0 + 5)
    raised(core, T0 + 10)
    assert [e.contact_id for e in core.open_escalations()] == ["c2", "c1"]
    core.tick(T0 + 605)
    assert [e.contact_id for e in core.open_escalations(tier=Tier.MANAGER)] == ["c2"]
    assert [e.contact_id for e in core.open_escalations(reason=EscalationReason.UNROUTABLE)] == []
    assert core.get(eid("c2", EscalationReason.MANAGER_REQUESTED)).assignee == "max"  # type: ignore[union-attr]


def test_a_refused_command_fires_no_due_deadline_and_the_next_call_publishes_it() -> None:
    """Refused before anything changes: the re-escalation due is neither applied nor lost."""
    core = make_core(triggers={"enabled": ["manager_requested"]})
    raised(core)
    with pytest.raises(PermissionDenied):
        core.acknowledge(ESC, "sam", T0 + 700)
    assert core.get(ESC).tier is Tier.SUPERVISOR  # type: ignore[union-attr]
    assert kinds(core.tick(T0 + 700)) == [("re_escalated", "manager_requested")]


def test_a_rejected_event_fires_no_due_deadline_and_the_next_call_publishes_it() -> None:
    core = make_core(triggers={"enabled": ["manager_requested"]})
    raised(core)
    core.take_changes()
    with pytest.raises(UnknownContact):
        core.apply(ManagerRequested("ghost"), T0 + 700)
    assert core.take_changes() == {}
    assert kinds(arrive(core, "c2", T0 + 701)) == [("re_escalated", "manager_requested")]


def test_the_core_climbs_the_policys_tier_chain_not_the_enum_numbers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a chain that skips the manager, the supervisor's missed deadline goes to the head."""
    monkeypatch.setattr(policy_module, "TIER_CHAIN", (Tier.SUPERVISOR, Tier.HEAD_OF_SERVICE))
    core = make_core(triggers={"enabled": ["manager_requested"]})
    raised(core)
    changes = core.tick(T0 + 10_000)
    assert [(c.escalation.tier, c.escalation.assignee) for c in changes] == [
        (Tier.HEAD_OF_SERVICE, "hugo")
    ]
    assert changes[0].escalation.previous_tiers == (Tier.SUPERVISOR,)
    later = [c for c in core.tick(T0 + 99_999) if c.escalation.escalation_id == ESC]
    assert later == [], "the last tier in the chain has nobody above it"
