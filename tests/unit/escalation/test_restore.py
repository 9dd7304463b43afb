"""Durable state: dirty case facts out, an identical core back in after a restart."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from services.escalation.domain import (
    UNASSIGNED_TEAM,
    ContactAssigned,
    ContactEnded,
    ContactHeld,
    ContactPaused,
    ContactResumed,
    CustomerErased,
    Disposition,
    Escalation,
    EscalationChange,
    EscalationChangeKind,
    EscalationCore,
    EscalationPolicy,
    EscalationReason,
    EscalationStatus,
    ManagerRequested,
    PauseReason,
    PermissionDenied,
    SurveyResult,
    Tier,
    UnknownContact,
)
from tests.unit.escalation.scenario import (
    BASE,
    HOUR,
    T0,
    arrive,
    eid,
    kinds,
    make_core,
    make_policy,
    merged,
)


class Topics:
    """What the adapter keeps: the compacted escalations topic and the case changelog."""

    def __init__(self) -> None:
        self.escalations: dict[str, Escalation] = {}
        self.changelog: dict[str, dict[str, object]] = {}

    def record(self, core: EscalationCore, changes: list[EscalationChange]) -> None:
        for change in changes:
            self.escalations[change.escalation.escalation_id] = change.escalation
        for key, value in core.take_changes().items():
            if value is None:
                self.changelog.pop(key, None)
            else:
                self.changelog[key] = json.loads(json.dumps(value))  # must survive JSON

    def restart(self, domain: str = "eu", **overrides: object) -> EscalationCore:
        return EscalationCore.restore(
            make_policy(**overrides), domain, self.escalations.values(), self.changelog
        )


def busy_morning(core: EscalationCore, topics: Topics) -> None:
    """Waiting, on hold, awaiting the customer, escalated and half acknowledged."""
    steps = [
        lambda: arrive(core, "c1", T0, customer_id="cust-1"),
        lambda: arrive(core, "c2", T0 + 10, customer_id="cust-1", vip=True),
        lambda: arrive(core, "t1", T0 + 20, queue="tickets"),
        lambda: core.apply(ContactAssigned("c2"), T0 + 30),
        lambda: core.apply(ContactHeld("c2", PauseReason.CHECKING_INFORMATION, 600), T0 + 40),
        lambda: core.apply(ContactAssigned("t1"), T0 + 50),
        lambda: core.apply(ContactPaused("t1", PauseReason.AWAITING_CUSTOMER), T0 + 60),
        lambda: core.apply(ManagerRequested("c2", "now"), T0 + 70),
        lambda: core.tick(T0 + 300),
        lambda: list(
            core.acknowledge(eid("c1", EscalationReason.WAIT_THRESHOLD), "sofia", T0 + 400).changes
        ),
    ]
    for step in steps:
        topics.record(core, step())


def test_a_restored_core_holds_the_same_facts_and_escalations() -> None:
    core, topics = make_core(), Topics()
    busy_morning(core, topics)
    restored = topics.restart()
    assert restored.snapshot() == core.snapshot()
    assert sorted(restored.escalations(), key=str) == sorted(core.escalations(), key=str)
    assert restored.next_deadline() == core.next_deadline()
    assert restored.take_changes() == {}


def test_a_restored_core_behaves_identically_and_raises_nothing_twice() -> None:
    core, topics = make_core(), Topics()
    busy_morning(core, topics)
    before_restart = set(topics.escalations)
    restored = topics.restart()
    script: list[Callable[[EscalationCore], list[EscalationChange]]] = [
        lambda c: c.tick(T0 + 500),
        lambda c: c.apply(ManagerRequested("c2", "again"), T0 + 600),
        lambda c: c.tick(T0 + 2000),
        lambda c: c.apply(ContactResumed("t1"), T0 + HOUR),
        lambda c: c.tick(T0 + 5 * HOUR),
        lambda c: c.apply(ContactEnded("c2", Disposition.RESOLVED), T0 + 6 * HOUR),
        lambda c: arrive(c, "c3", T0 + 7 * HOUR, customer_id="cust-1"),
    ]
    after_restart = []
    for step in script:
        changes = step(restored)
        assert changes == step(core)
        after_restart += changes
    raised_again = {
        c.escalation.escalation_id for c in after_restart if c.kind is EscalationChangeKind.RAISED
    }
    assert raised_again, "the script does raise new escalations"
    assert not raised_again & before_restart
    assert restored.snapshot() == core.snapshot()


def test_deadlines_keep_running_from_when_they_were_raised_across_a_restart() -> None:
    core, topics = make_core(triggers={"enabled": ["manager_requested"]}), Topics()
    topics.record(core, arrive(core, "c1", T0))
    topics.record(core, core.apply(ManagerRequested("c1"), T0 + 100))
    restored = topics.restart(triggers={"enabled": ["manager_requested"]})
    assert restored.next_deadline() == T0 + 700
    changes = restored.tick(T0 + 50_000)  # down for hours: catches up on the original schedule
    assert [c.escalation.ack_deadline for c in changes] == [T0 + 700 + 1200, T0 + 1900 + 1800]


def test_the_sla_clock_survives_a_restart_mid_wait() -> None:
    core, topics = make_core(), Topics()
    topics.record(core, arrive(core, "c1", T0))
    restored = topics.restart()
    assert kinds(restored.tick(T0 + 300)) == [("raised", "wait_threshold")]


def test_changes_are_taken_once_and_deletions_are_none() -> None:
    core = make_core(retain_closed_s=HOUR)
    arrive(core, "c1", T0, customer_id="cust-1")
    assert set(core.take_changes()) == {"case/c1", "customer/cust-1"}
    assert core.take_changes() == {}
    core.apply(ContactEnded("c1", Disposition.RESOLVED), T0 + 10)
    assert set(core.take_changes()) == {"case/c1"}
    core.tick(T0 + 10 + HOUR)  # retention over, nothing open: forgotten
    assert core.take_changes() == {"case/c1": None}
    core.tick(T0 + 2 * 86_400)  # the customer's history leaves the repeat window
    assert core.take_changes() == {"customer/cust-1": None}
    assert core.snapshot() == {}
    assert core.next_deadline() is None


def test_a_closed_case_is_kept_while_a_person_still_owes_it_an_answer() -> None:
    core = make_core(retain_closed_s=60)
    arrive(core, "c1", T0)
    core.apply(ContactEnded("c1", Disposition.UNRESOLVED), T0 + 10)
    core.tick(T0 + HOUR)
    assert "case/c1" in core.snapshot()
    esc = eid("c1", EscalationReason.UNRESOLVED)
    core.acknowledge(esc, "sofia", T0 + HOUR)
    core.resolve(esc, "sofia", "called-back", T0 + HOUR + 1)
    assert core.snapshot() == {}
    assert core.get(esc) is None


def test_a_late_survey_inside_the_retention_still_escalates_and_after_it_is_rejected() -> None:
    core = make_core(retain_closed_s=HOUR)
    arrive(core, "c1", T0)
    core.apply(ContactEnded("c1", Disposition.RESOLVED), T0 + 10)
    assert kinds(core.apply(SurveyResult("c1", 1), T0 + 20)) == [("raised", "low_satisfaction")]
    arrive(core, "c2", T0)
    core.apply(ContactEnded("c2", Disposition.RESOLVED), T0 + 10)
    core.tick(T0 + 2 * HOUR)
    with pytest.raises(UnknownContact):
        core.apply(SurveyResult("c2", 1), T0 + 2 * HOUR)


def test_an_idle_case_whose_close_was_lost_is_eventually_forgotten() -> None:
    core = make_core(triggers={"enabled": ["pause_overrun"]}, forget_idle_s=86_400)
    arrive(core, "c1", T0)
    core.tick(T0 + 86_400)
    assert core.snapshot() == {}


def test_an_open_escalation_whose_case_fact_is_missing_is_still_restored() -> None:
    core, topics = make_core(triggers={"enabled": ["manager_requested"]}), Topics()
    topics.record(core, arrive(core, "c1", T0))
    topics.record(core, core.apply(ManagerRequested("c1"), T0))
    topics.changelog.clear()
    restored = topics.restart(triggers={"enabled": ["manager_requested"]})
    result = restored.resolve(eid("c1", EscalationReason.MANAGER_REQUESTED), "sofia", "ok", T0 + 1)
    assert result.escalation.resolution_code == "ok"


def test_restore_leaves_out_what_the_policy_no_longer_covers_and_says_so() -> None:
    """Stored state never stops a restore (the service would crash-loop on it)."""
    core, topics = make_core(), Topics()
    topics.record(core, arrive(core, "c1", T0, queue="sales-en"))
    data = merged(BASE, {})
    del data["queues"]["sales-en"]
    restored = EscalationCore.restore(EscalationPolicy.from_dict(data), "eu", [], topics.changelog)
    assert restored.snapshot() == {}
    assert restored.restore_problems == ["case/c1: queue 'sales-en' is no longer configured"]
    odd = {"agent/x": {}, "case/x": {"queue": "billing-en"}}
    restored = EscalationCore.restore(make_policy(), "eu", [], odd)
    assert restored.restore_problems[0] == "agent/x: unknown entity"
    assert restored.restore_problems[1].startswith("case/x: unreadable (KeyError")


def test_an_open_escalation_of_a_team_removed_from_config_goes_to_the_head_of_service() -> None:
    core, topics = make_core(triggers={"enabled": ["manager_requested"]}), Topics()
    topics.record(core, arrive(core, "c1", T0, queue="sales-en"))
    topics.record(core, core.apply(ManagerRequested("c1"), T0 + 10))
    escalation_id = eid("c1", EscalationReason.MANAGER_REQUESTED)
    data = merged(BASE, {"triggers": {"enabled": ["manager_requested"]}})
    del data["queues"]["sales-en"], data["teams"]["sales"]
    restored = EscalationCore.restore(
        EscalationPolicy.from_dict(data),
        "eu",
        topics.escalations.values(),
        topics.changelog,
        now=T0 + 20,
    )
    held = restored.get(escalation_id)
    assert held is not None
    assert (held.team, held.assignee, held.tier) == (UNASSIGNED_TEAM, "hugo", Tier.HEAD_OF_SERVICE)
    assert "team 'sales' is no longer configured" in held.summary
    assert any("now the head of service's" in line for line in restored.restore_problems)
    [change] = restored.take_restore_changes()
    assert change.kind is EscalationChangeKind.UPDATED
    assert change.escalation == held
    assert restored.take_restore_changes() == []
    # The head of service can act on it; time passing breaks nothing.
    restored.tick(T0 + 30 * HOUR)
    with pytest.raises(PermissionDenied):
        restored.acknowledge(escalation_id, "sofia", T0 + 30 * HOUR)
    done = restored.resolve(escalation_id, "hugo", "handled", T0 + 30 * HOUR)
    assert done.escalation.status is EscalationStatus.RESOLVED


def test_escalations_of_other_domains_are_left_to_their_own_core() -> None:
    core, topics = make_core(domain="us", triggers={"enabled": ["manager_requested"]}), Topics()
    topics.record(core, arrive(core, "c1", T0))
    topics.record(core, core.apply(ManagerRequested("c1"), T0))
    restored = EscalationCore.restore(make_policy(), "eu", topics.escalations.values(), {})
    assert restored.escalations() == []


def test_an_idle_case_with_an_open_escalation_is_forgotten_after_it_is_resolved() -> None:
    """The idle deadline closes the case but keeps it for its open escalation; resolving that
    escalation re-arms the drop, so the case does not stay held forever."""
    core = make_core(
        triggers={"enabled": ["manager_requested"]}, forget_idle_s=HOUR, retain_closed_s=HOUR
    )
    arrive(core, "c1", T0)
    core.apply(ManagerRequested("c1"), T0)
    core.tick(T0 + HOUR)  # idle: closed, kept for the open escalation
    assert "case/c1" in core.snapshot()
    core.resolve(
        eid("c1", EscalationReason.MANAGER_REQUESTED), "sofia", "called back", T0 + HOUR + 60
    )
    assert core.next_deadline() is not None  # the drop is armed again
    core.tick(T0 + 2 * HOUR + 1)
    assert "case/c1" not in core.snapshot()


def test_an_escalation_forgotten_with_its_case_is_to_be_deleted_from_the_topic() -> None:
    """A resolved escalation outlives its case by nothing: when the case's retention ends,
    the adapter writes a tombstone for it (customers' details leave the compacted topic)."""
    core, topics = make_core(triggers={"enabled": ["manager_requested"]}), Topics()
    topics.record(core, arrive(core, "c1", T0))
    topics.record(core, core.apply(ManagerRequested("c1"), T0))
    escalation_id = eid("c1", EscalationReason.MANAGER_REQUESTED)
    done = core.resolve(escalation_id, "hugo", "handled", T0 + 10)
    topics.record(core, list(done.changes))
    assert core.take_retired() == []  # its contact is still going on: kept
    topics.record(core, core.apply(ContactEnded("c1", Disposition.RESOLVED), T0 + 20))
    assert [e.escalation_id for e in core.take_retired()] == [escalation_id]  # retain_closed_s 0
    assert core.get(escalation_id) is None
    assert core.take_retired() == []
    # A restart finds the resolved escalation on the topic without its case: deleted too.
    restored = topics.restart()
    assert [e.escalation_id for e in restored.take_retired()] == [escalation_id]


def test_an_erasure_scrubs_cases_escalations_and_summaries_and_deletes_the_history() -> None:
    core = make_core(triggers={"enabled": ["repeat_contact"], "repeat_contacts": 2})
    for n in range(2):
        arrive(core, f"c{n}", T0 + n, customer_id="cust-7")
    [repeat] = core.escalations()
    assert "cust-7" in repeat.summary
    changes = core.apply(CustomerErased("cust-7"), T0 + 10)
    [updated] = [c for c in changes if c.kind is EscalationChangeKind.UPDATED]
    assert updated.escalation.customer.name == ""
    assert updated.escalation.customer.customer_id == ""
    assert "cust-7" not in updated.escalation.summary
    snapshot = json.dumps(core.snapshot())
    assert "cust-7" not in snapshot
    assert "Anna" not in snapshot
