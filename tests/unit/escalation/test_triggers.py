"""Every trigger, once per case and reason, with the SLA clock on business hours."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from services.escalation.domain import (
    CONTACT_ABANDONED,
    CONTACT_RESOLVED,
    SYSTEM,
    ContactAbandoned,
    ContactAssigned,
    ContactClosed,
    ContactEnded,
    ContactHeld,
    ContactPaused,
    ContactReopened,
    ContactRequeued,
    ContactResumed,
    ContactTransferred,
    ContactUnroutable,
    Disposition,
    EscalationChangeKind,
    EscalationReason,
    EscalationStatus,
    InvalidInput,
    ManagerRequested,
    PauseReason,
    Severity,
    SurveyResult,
    Tier,
    UnknownContact,
    UnknownQueue,
)
from tests.unit.escalation.scenario import HOUR, MIN, T0, arrive, eid, kinds, make_core, only

R = EscalationReason
RAISED = EscalationChangeKind.RAISED


# --- wait threshold ----------------------------------------------------------------------


def test_a_contact_waiting_past_the_threshold_is_escalated_to_the_teams_supervisor() -> None:
    core = make_core()
    arrive(core, "c1", T0)
    assert core.next_deadline() == T0 + 300
    assert core.tick(T0 + 299) == []
    changes = core.tick(T0 + 400)
    esc = only(changes, RAISED).escalation
    assert kinds(changes) == [("raised", "wait_threshold")]
    assert esc.escalation_id == eid("c1", R.WAIT_THRESHOLD)
    assert (esc.team, esc.tier, esc.assignee, esc.status) == (
        "billing",
        Tier.SUPERVISOR,
        "sofia",
        EscalationStatus.OPEN,
    )
    assert esc.raised_at == T0 + 300, "raised when the threshold passed, not when ticked"
    assert esc.ack_deadline == T0 + 300 + 600
    assert esc.severity is Severity.MEDIUM
    assert esc.customer.name == "Anna"
    assert "5m 00s" in esc.summary


def test_a_contact_answered_in_time_is_never_escalated() -> None:
    core = make_core()
    arrive(core, "c1", T0)
    core.apply(ContactAssigned("c1", "billing-en", "a1"), T0 + 200)
    assert core.tick(T0 + 10 * HOUR) == []


def test_a_requeued_contact_keeps_its_earlier_wait() -> None:
    core = make_core()
    arrive(core, "c1", T0)
    core.apply(ContactAssigned("c1"), T0 + 200)
    core.apply(ContactRequeued("c1"), T0 + 1000)
    assert core.next_deadline() == T0 + 1100
    assert kinds(core.tick(T0 + 1100)) == [("raised", "wait_threshold")]


def test_a_late_tick_is_caught_up_by_the_next_event() -> None:
    """The adapter missed the deadline; the assignment must not hide the breach."""
    core = make_core()
    arrive(core, "c1", T0)
    changes = core.apply(ContactAssigned("c1"), T0 + 500)
    assert kinds(changes) == [("raised", "wait_threshold")]


def test_a_vip_waiting_too_long_is_more_severe() -> None:
    core = make_core()
    arrive(core, "c1", T0, vip=True)
    assert only(core.tick(T0 + 300), RAISED).escalation.severity is Severity.HIGH


def test_wait_spanning_closing_time_and_a_holiday_counts_only_open_hours() -> None:
    """Arrives Friday 17:55 Warsaw time (threshold 10 min); Monday is a holiday.

    Five minutes count on Friday, none over the weekend or the holiday, and the
    remaining five on Tuesday from 08:00: it breaches on Tuesday at 08:05.
    """
    core = make_core(
        calendars={
            "warsaw": {
                "timezone": "Europe/Warsaw",
                "hours": dict.fromkeys(("mon", "tue", "wed", "thu", "fri"), "08:00-18:00"),
                "holidays": ["2025-01-13"],
            }
        },
        queues={"billing-en": {"calendar": "warsaw", "triggers": {"wait_threshold_s": 600}}},
    )
    warsaw = ZoneInfo("Europe/Warsaw")
    friday = datetime(2025, 1, 10, 17, 55, tzinfo=warsaw).timestamp()
    tuesday = datetime(2025, 1, 14, 8, 5, tzinfo=warsaw).timestamp()
    arrive(core, "c1", friday)
    assert core.next_deadline() == tuesday
    assert core.tick(tuesday - 1) == []
    assert only(core.tick(tuesday), RAISED).escalation.raised_at == tuesday


def test_the_sla_clock_stops_while_the_ticket_awaits_the_customer() -> None:
    """Ticket queue: the clock runs until resolution, but not while the customer owes a reply."""
    core = make_core()
    arrive(core, "t1", T0, queue="tickets")
    core.apply(ContactAssigned("t1", "tickets", "a1"), T0 + 10 * MIN)  # resolution clock runs on
    core.apply(ContactPaused("t1", PauseReason.AWAITING_CUSTOMER, 0), T0 + 20 * MIN)
    assert core.next_deadline() != T0 + HOUR
    assert core.tick(T0 + 5 * HOUR) == []
    core.apply(ContactResumed("t1"), T0 + 5 * HOUR)  # the customer replied
    assert core.next_deadline() == T0 + 5 * HOUR + 40 * MIN
    esc = only(core.tick(T0 + 6 * HOUR), RAISED).escalation
    assert esc.reason is R.WAIT_THRESHOLD
    assert esc.raised_at == T0 + 5 * HOUR + 40 * MIN


def test_a_pause_for_another_reason_does_not_stop_the_sla_clock() -> None:
    core = make_core()
    arrive(core, "t1", T0, queue="tickets")
    core.apply(ContactAssigned("t1"), T0 + MIN)
    core.apply(ContactPaused("t1", PauseReason.WAITING_FOR_THIRD_PARTY, 0), T0 + 2 * MIN)
    assert kinds(core.tick(T0 + HOUR)) == [("raised", "wait_threshold")]


def test_a_transfer_applies_the_new_queues_threshold_to_the_wait_so_far() -> None:
    core = make_core()
    arrive(core, "c1", T0, queue="tickets")  # threshold 1 h
    core.apply(ContactTransferred("c1", "sales-en"), T0 + 4 * MIN)  # threshold 5 min
    assert core.next_deadline() == T0 + 5 * MIN
    assert only(core.tick(T0 + 5 * MIN), RAISED).escalation.team == "sales"


# --- unroutable, pause overrun ----------------------------------------------------------------


def test_an_unroutable_contact_is_escalated_at_once_and_repeats_only_update_it() -> None:
    core = make_core()
    arrive(core, "c1", T0)
    first = core.apply(ContactUnroutable("c1", "billing-en", "nobody speaks pl"), T0 + 1)
    esc = only(first, RAISED).escalation
    assert esc.severity is Severity.HIGH
    assert "nobody speaks pl" in esc.summary
    again = core.apply(ContactUnroutable("c1", "billing-en", "nobody speaks pl"), T0 + 60)
    assert kinds(again) == [("updated", "unroutable")]
    assert again[0].escalation.escalation_id == esc.escalation_id
    assert again[0].escalation.version > esc.version
    assert again[0].escalation.raised_at == T0 + 1
    assert "seen 2 times" in again[0].escalation.summary


def test_a_hold_longer_than_promised_is_escalated_after_the_grace() -> None:
    core = make_core(triggers={"pause_grace_s": 30})
    arrive(core, "c1", T0)
    core.apply(ContactAssigned("c1"), T0 + 10)
    core.apply(ContactHeld("c1", PauseReason.CHECKING_INFORMATION, 120, "a1"), T0 + 100)
    assert core.next_deadline() == T0 + 250
    esc = only(core.tick(T0 + 250), RAISED).escalation
    assert esc.reason is R.PAUSE_OVERRUN
    assert "customer was told 2m 00s" in esc.summary


def test_a_hold_resumed_in_time_is_not_escalated() -> None:
    core = make_core()
    arrive(core, "c1", T0)
    core.apply(ContactAssigned("c1"), T0 + 10)
    core.apply(ContactHeld("c1", PauseReason.CHECKING_INFORMATION, 120), T0 + 100)
    core.apply(ContactResumed("c1"), T0 + 200)
    assert core.tick(T0 + HOUR) == []


def test_a_second_overrun_on_the_same_contact_updates_the_first() -> None:
    core = make_core()
    arrive(core, "c1", T0)
    core.apply(ContactAssigned("c1"), T0 + 10)
    core.apply(ContactPaused("c1", PauseReason.WAITING_FOR_SPECIALIST, 60), T0 + 100)
    assert kinds(core.tick(T0 + 160)) == [("raised", "pause_overrun")]
    core.apply(ContactResumed("c1"), T0 + 200)
    core.apply(ContactHeld("c1", PauseReason.TECHNICAL_ISSUE, 60), T0 + 300)
    assert kinds(core.tick(T0 + 360)) == [("updated", "pause_overrun")]


def test_waiting_on_the_customer_is_never_a_pause_overrun() -> None:
    core = make_core()
    arrive(core, "c1", T0)
    core.apply(ContactAssigned("c1"), T0 + 10)
    core.apply(ContactPaused("c1", PauseReason.AWAITING_CUSTOMER, 60), T0 + 100)
    assert core.tick(T0 + HOUR) == []


def test_a_negative_promise_is_rejected() -> None:
    core = make_core()
    arrive(core, "c1", T0)
    with pytest.raises(InvalidInput, match="expected_duration"):
        core.apply(ContactHeld("c1", PauseReason.CHECKING_INFORMATION, -1), T0 + 1)


# --- outcomes ---------------------------------------------------------------------------


def test_a_contact_ended_unresolved_is_escalated() -> None:
    core = make_core()
    arrive(core, "c1", T0)
    core.apply(ContactAssigned("c1"), T0 + 10)
    changes = core.apply(ContactEnded("c1", Disposition.UNRESOLVED, "needs a refund"), T0 + 100)
    assert kinds(changes) == [("raised", "unresolved")]
    assert "needs a refund" in changes[0].escalation.summary


def test_a_reopened_ticket_is_escalated_both_ways_it_can_be_reported() -> None:
    core = make_core(retain_closed_s=HOUR)
    arrive(core, "t1", T0, queue="tickets")
    core.apply(ContactEnded("t1", Disposition.RESOLVED), T0 + 100)
    assert kinds(core.apply(ContactReopened("t1"), T0 + 200)) == [("raised", "reopened")]
    back = arrive(core, "t1", T0 + 300, queue="tickets", reopened=True)
    assert kinds(back) == [("updated", "reopened")]
    core.acknowledge(eid("t1", R.REOPENED), "sofia", T0 + 300)
    # Back in line: its wait is measured afresh.
    assert core.next_deadline() == T0 + 300 + HOUR


def test_a_reopened_ticket_never_seen_before_arrives_escalated() -> None:
    core = make_core()
    assert kinds(arrive(core, "t9", T0, queue="tickets", reopened=True)) == [("raised", "reopened")]


def test_the_same_customer_contacting_three_times_in_a_day_is_escalated_once() -> None:
    core = make_core(triggers={"enabled": ["repeat_contact"]})
    assert arrive(core, "c1", T0, customer_id="cust-7") == []
    assert arrive(core, "c2", T0 + HOUR, customer_id="cust-7") == []
    third = arrive(core, "c3", T0 + 2 * HOUR, customer_id="cust-7")
    esc = only(third, RAISED).escalation
    assert (esc.reason, esc.contact_id) == (R.REPEAT_CONTACT, "c3")
    assert "c1, c2, c3" in esc.summary
    fourth = arrive(core, "c4", T0 + 2 * HOUR + 60, customer_id="cust-7")
    assert kinds(fourth) == [("updated", "repeat_contact")]
    assert fourth[0].escalation.escalation_id == esc.escalation_id
    assert "c1, c2, c3, c4" in fourth[0].escalation.summary


def test_contacts_spread_wider_than_the_window_are_not_repeats() -> None:
    core = make_core(triggers={"enabled": ["repeat_contact"]})
    arrive(core, "c1", T0, customer_id="cust-7")
    arrive(core, "c2", T0 + 13 * HOUR, customer_id="cust-7")
    assert arrive(core, "c3", T0 + 26 * HOUR, customer_id="cust-7") == []


def test_a_customer_asking_for_a_manager_is_escalated_and_asking_again_updates_it() -> None:
    core = make_core()
    arrive(core, "c1", T0)
    first = core.apply(ManagerRequested("c1", "I want your boss"), T0 + 10)
    esc = only(first, RAISED).escalation
    assert (esc.reason, esc.severity) == (R.MANAGER_REQUESTED, Severity.HIGH)
    assert kinds(core.apply(ManagerRequested("c1", "still waiting"), T0 + 20)) == [
        ("updated", "manager_requested")
    ]


def test_a_low_survey_score_is_escalated_and_a_good_one_is_not() -> None:
    core = make_core(retain_closed_s=HOUR)
    arrive(core, "c1", T0)
    arrive(core, "c2", T0)
    for cid in ("c1", "c2"):
        core.apply(ContactEnded(cid, Disposition.RESOLVED), T0 + 100)
    assert core.apply(SurveyResult("c1", 4), T0 + 200) == []
    changes = core.apply(SurveyResult("c2", 1, "cust-1", "rude"), T0 + 200)
    esc = only(changes, RAISED).escalation
    assert esc.reason is R.LOW_SATISFACTION
    assert '"rude"' in esc.summary
    assert esc.severity is Severity.LOW


def test_a_survey_score_out_of_range_is_rejected() -> None:
    core = make_core()
    arrive(core, "c1", T0)
    with pytest.raises(InvalidInput, match="score"):
        core.apply(SurveyResult("c1", 9), T0)


def test_a_disabled_trigger_raises_nothing() -> None:
    core = make_core(queues={"billing-en": {"triggers": {"enabled": ["unroutable"]}}})
    arrive(core, "c1", T0)
    assert core.next_deadline() != T0 + 300
    assert core.apply(ManagerRequested("c1"), T0 + 1) == []
    assert kinds(core.apply(ContactUnroutable("c1", "billing-en"), T0 + 2)) == [
        ("raised", "unroutable")
    ]


# --- dedupe and resolution ------------------------------------------------------------------


def test_one_case_escalates_once_per_reason_and_separately_per_reason() -> None:
    core = make_core()
    arrive(core, "c1", T0)
    core.tick(T0 + 300)
    core.apply(ContactUnroutable("c1", "billing-en"), T0 + 301)
    core.apply(ManagerRequested("c1"), T0 + 302)
    ids = sorted(e.escalation_id for e in core.open_escalations())
    assert ids == sorted(
        eid("c1", r) for r in (R.WAIT_THRESHOLD, R.UNROUTABLE, R.MANAGER_REQUESTED)
    )


def test_a_resolved_contact_closes_its_escalations_except_those_about_its_outcome() -> None:
    core = make_core(retain_closed_s=HOUR)
    arrive(core, "c1", T0)
    core.tick(T0 + 300)
    core.apply(ManagerRequested("c1"), T0 + 310)
    core.apply(ContactAssigned("c1"), T0 + 320)
    core.apply(ContactEnded("c1", Disposition.UNRESOLVED), T0 + 400)  # stays for a person
    core.apply(ContactReopened("c1"), T0 + 500)
    changes = core.apply(ContactEnded("c1", Disposition.RESOLVED), T0 + 600)
    assert kinds(changes) == [("resolved", "wait_threshold"), ("resolved", "manager_requested")]
    for change in changes:
        assert change.escalation.resolution_code == CONTACT_RESOLVED
        assert change.escalation.resolved_by == SYSTEM
        assert change.escalation.resolved_at == T0 + 600
    assert {e.reason for e in core.open_escalations()} == {R.UNRESOLVED, R.REOPENED}


def test_the_routers_close_also_resolves_open_escalations() -> None:
    core = make_core()
    arrive(core, "c1", T0)
    core.apply(ContactUnroutable("c1", "billing-en"), T0 + 5)
    changes = core.apply(ContactClosed("c1", "billing-en"), T0 + 50)
    assert kinds(changes) == [("resolved", "unroutable")]
    assert core.open_escalations() == []


def test_an_abandoned_contact_closes_only_the_escalations_about_its_wait() -> None:
    core = make_core()
    arrive(core, "c1", T0)
    core.tick(T0 + 300)
    core.apply(ManagerRequested("c1"), T0 + 310)
    changes = core.apply(ContactAbandoned("c1"), T0 + 320)
    assert kinds(changes) == [("resolved", "wait_threshold")]
    assert changes[0].escalation.resolution_code == CONTACT_ABANDONED
    assert [e.reason for e in core.open_escalations()] == [R.MANAGER_REQUESTED]


def test_evidence_after_resolution_does_not_raise_the_same_reason_again() -> None:
    core = make_core()
    arrive(core, "c1", T0)
    esc = only(core.apply(ManagerRequested("c1"), T0 + 1), RAISED).escalation
    core.resolve(esc.escalation_id, "sofia", "called-back", T0 + 2)
    assert core.apply(ManagerRequested("c1"), T0 + 3) == []


# --- ignored and rejected inputs ------------------------------------------------------------


def test_late_events_for_unknown_contacts_are_ignored() -> None:
    core = make_core()
    for event in (
        ContactHeld("ghost", PauseReason.CHECKING_INFORMATION, 60),
        ContactPaused("ghost", PauseReason.AWAITING_CUSTOMER),
        ContactResumed("ghost"),
        ContactEnded("ghost", Disposition.RESOLVED),
        ContactAbandoned("ghost"),
        ContactTransferred("ghost", "sales-en"),
    ):
        assert core.apply(event, T0) == []
    assert core.snapshot() == {}


def test_a_repeated_arrival_is_ignored() -> None:
    core = make_core()
    arrive(core, "c1", T0)
    assert arrive(core, "c1", T0 + 100) == []
    assert core.next_deadline() == T0 + 300


def test_events_that_would_escalate_an_unknown_contact_are_rejected_with_a_reason() -> None:
    core = make_core()
    for event in (
        ManagerRequested("ghost"),
        SurveyResult("ghost", 1),
        ContactReopened("ghost"),
        ContactEnded("ghost", Disposition.UNRESOLVED),
    ):
        with pytest.raises(UnknownContact, match="ghost"):
            core.apply(event, T0)


def test_a_contact_in_a_queue_without_a_policy_is_rejected() -> None:
    core = make_core()
    with pytest.raises(UnknownQueue, match="'marketing'"):
        arrive(core, "c1", T0, queue="marketing")
    with pytest.raises(InvalidInput, match="contact_id"):
        arrive(core, "", T0)


def test_an_unroutable_report_overtaking_the_arrival_is_kept_and_learns_the_customer() -> None:
    """routing.decisions and contact.events race; the escalation still reaches a person."""
    core = make_core()
    raised = only(core.apply(ContactUnroutable("c1", "billing-en"), T0), RAISED).escalation
    assert raised.customer.name == ""
    learned = arrive(core, "c1", T0 + 1, vip=True)
    assert kinds(learned) == [("updated", "unroutable")]
    assert learned[0].escalation.customer.name == "Anna"
    assert learned[0].escalation.severity is Severity.CRITICAL


def test_an_assignment_overtaking_the_arrival_does_not_start_a_ghost_wait() -> None:
    core = make_core()
    assert core.apply(ContactAssigned("c1", "billing-en", "a1"), T0) == []
    assert arrive(core, "c1", T0 + 1) == []
    assert core.tick(T0 + 10 * HOUR) == []
