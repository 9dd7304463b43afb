"""The auditor finds what a contact center must never do: lose, double, overbook."""

from __future__ import annotations

from switchboard.v1 import (
    agent_events_pb2 as agent,
)
from switchboard.v1 import (
    common_pb2 as common,
)
from switchboard.v1 import (
    contact_events_pb2 as contact,
)
from switchboard.v1 import (
    escalation_pb2 as esc,
)
from switchboard.v1 import (
    notification_pb2 as note,
)
from switchboard.v1 import (
    routing_pb2 as routing,
)

from services.auditor.ledger import Ledger

VOICE = common.CHANNEL_VOICE


def logged_in(ledger: Ledger, agent_id: str, voice: int = 1) -> None:
    ledger.add(
        "agent_logged_in",
        agent.AgentLoggedIn(
            agent_id=agent_id,
            capacity=[common.ChannelCapacity(channel=VOICE, max_concurrent=voice)],
        ),
    )


def arrive(ledger: Ledger, contact_id: str) -> None:
    ledger.add("contact_arrived", contact.ContactArrived(contact_id=contact_id, channel=VOICE))


def offer(ledger: Ledger, contact_id: str, agent_id: str, attempt: int = 1) -> None:
    ledger.add(
        "offer_made",
        routing.OfferMade(
            offer_id=f"{contact_id}#{attempt}",
            contact_id=contact_id,
            agent_id=agent_id,
            channel=VOICE,
        ),
    )


def close(ledger: Ledger, contact_id: str, abandoned: bool = False) -> None:
    ledger.add("contact_closed", routing.ContactClosed(contact_id=contact_id, abandoned=abandoned))


def test_a_clean_run_is_accounted_for() -> None:
    ledger = Ledger()
    logged_in(ledger, "a1")
    arrive(ledger, "c1")
    offer(ledger, "c1", "a1")
    ledger.add("contact_assigned", routing.ContactAssigned(contact_id="c1", agent_id="a1"))
    ledger.add("contact_ended", contact.ContactEnded(contact_id="c1"))
    close(ledger, "c1")
    arrive(ledger, "c2")
    ledger.add("contact_abandoned", contact.ContactAbandoned(contact_id="c2"))
    close(ledger, "c2", abandoned=True)
    report = ledger.report()
    assert report.ok, report.summary()
    assert (report.arrived, report.assigned, report.abandoned, report.still_waiting) == (2, 1, 1, 0)


def test_a_contact_offered_to_two_agents_at_once_is_a_violation() -> None:
    ledger = Ledger()
    arrive(ledger, "c1")
    offer(ledger, "c1", "a1", attempt=1)
    offer(ledger, "c1", "a2", attempt=2)
    assert any("still outstanding" in v for v in ledger.report(run_finished=False).violations)


def test_the_same_offer_twice_is_a_violation() -> None:
    ledger = Ledger()
    arrive(ledger, "c1")
    offer(ledger, "c1", "a1")
    offer(ledger, "c1", "a1")
    assert any("made twice" in v for v in ledger.report(run_finished=False).violations)


def test_an_agent_over_capacity_is_a_violation_and_a_timeout_frees_capacity() -> None:
    ledger = Ledger()
    logged_in(ledger, "a1", voice=1)
    arrive(ledger, "c1")
    arrive(ledger, "c2")
    offer(ledger, "c1", "a1")
    ledger.add("offer_timed_out", routing.OfferTimedOut(contact_id="c1", agent_id="a1"))
    offer(ledger, "c2", "a1")
    assert ledger.report(run_finished=False).ok
    offer(ledger, "c1", "a1", attempt=2)
    assert any("capacity 1" in v for v in ledger.report(run_finished=False).violations)


def test_a_contact_that_ended_but_was_never_closed_is_a_ghost() -> None:
    ledger = Ledger()
    arrive(ledger, "c1")
    ledger.add("contact_abandoned", contact.ContactAbandoned(contact_id="c1"))
    assert any("ghost" in v for v in ledger.report(run_finished=False).violations)


def test_waiting_contacts_are_fine_in_a_live_run_but_not_in_a_finished_one() -> None:
    ledger = Ledger()
    arrive(ledger, "c1")
    assert ledger.report(run_finished=False).ok
    assert not ledger.report(run_finished=True).ok


def test_a_hold_must_be_told_exactly_once() -> None:
    ledger = Ledger()
    ledger.add("contact_held", contact.ContactHeld(contact_id="c1"))
    assert not ledger.report(run_finished=False).ok
    delivered = note.NotificationRecord(
        notification=note.Notification(
            notification_id="n1", contact_id="c1", kind=note.NOTIFICATION_KIND_HOLD_STARTED
        ),
        outcome=note.DELIVERY_OUTCOME_DELIVERED,
    )
    ledger.add("notification_record", delivered)
    assert ledger.report(run_finished=False).ok
    ledger.add("notification_record", delivered)
    violations = ledger.report(run_finished=False).violations
    assert any("delivered 2 times" in v for v in violations)


def test_one_escalation_per_case_and_reason() -> None:
    ledger = Ledger()

    def raised(escalation_id: str) -> esc.EscalationRecord:
        return esc.EscalationRecord(
            kind=esc.ESCALATION_CHANGE_KIND_RAISED,
            escalation=esc.Escalation(
                escalation_id=escalation_id,
                contact_id="c1",
                reason=esc.ESCALATION_REASON_WAIT_THRESHOLD,
            ),
        )

    ledger.add("escalation_record", raised("c1:wait"))
    assert ledger.report(run_finished=False).ok
    ledger.add("escalation_record", raised("c1:wait-again"))
    assert any("escalated 2 times" in v for v in ledger.report(run_finished=False).violations)


def test_the_same_ids_in_two_domains_are_different_contacts_and_agents() -> None:
    ledger = Ledger()
    for domain in ("acme", "globex"):
        ledger.add(
            "agent_logged_in",
            agent.AgentLoggedIn(
                agent_id="a1", capacity=[common.ChannelCapacity(channel=VOICE, max_concurrent=1)]
            ),
            domain,
        )
        ledger.add("contact_arrived", contact.ContactArrived(contact_id="call-1"), domain)
        offered = routing.OfferMade(offer_id="call-1#1", contact_id="call-1", agent_id="a1")
        ledger.add("offer_made", offered, domain)
    ledger.add("contact_closed", routing.ContactClosed(contact_id="call-1"), "acme")
    report = ledger.report()
    # nothing doubled across tenants; globex's call is still open, and named with its domain
    assert (report.arrived, report.offers) == (2, 2)
    assert report.violations == ["contact globex/call-1 never reached a final state"]


def status(ledger: Ledger, agent_id: str, state: int, domain: str = "") -> None:
    ledger.add(
        "agent_status_changed",
        routing.AgentStatusChanged(agent_id=agent_id, state=state),  # type: ignore[arg-type]
        domain,
    )


def test_an_agent_reserved_or_busy_only_while_it_holds_a_contact() -> None:
    ledger = Ledger()
    logged_in(ledger, "a1")
    arrive(ledger, "c1")
    offer(ledger, "c1", "a1")
    status(ledger, "a1", agent.AGENT_STATE_RESERVED)
    assert ledger.report(run_finished=False).ok  # ringing: reserved is right
    ledger.add(
        "contact_assigned", routing.ContactAssigned(offer_id="c1#1", contact_id="c1", agent_id="a1")
    )
    status(ledger, "a1", agent.AGENT_STATE_BUSY)
    assert ledger.report(run_finished=False).ok  # in hand: busy is right
    close(ledger, "c1")
    assert ledger.report().violations == ["agent a1 left busy with no contact in hand"]
    status(ledger, "a1", agent.AGENT_STATE_WRAP_UP)
    assert ledger.report().ok


def test_an_agent_left_reserved_after_its_offer_ended_is_stuck() -> None:
    ledger = Ledger()
    logged_in(ledger, "a1")
    arrive(ledger, "c1")
    offer(ledger, "c1", "a1")
    status(ledger, "a1", agent.AGENT_STATE_RESERVED)
    ledger.add("contact_abandoned", contact.ContactAbandoned(contact_id="c1"))
    close(ledger, "c1", abandoned=True)
    assert ledger.report().violations == ["agent a1 left reserved with no offer ringing"]


def test_a_contact_assigned_twice_is_a_violation() -> None:
    ledger = Ledger()
    arrive(ledger, "c1")
    offer(ledger, "c1", "a1")
    assigned = routing.ContactAssigned(offer_id="c1#1", contact_id="c1", agent_id="a1")
    ledger.add("contact_assigned", assigned)
    assert ledger.report(run_finished=False).ok
    ledger.add("contact_assigned", assigned)
    assert ledger.report(run_finished=False).violations == ["contact c1 assigned twice"]


def test_only_the_ringing_offer_can_be_accepted_or_time_out() -> None:
    """What a router deciding from stale state (a stalled instance come back) writes."""
    ledger = Ledger()
    arrive(ledger, "c1")
    offer(ledger, "c1", "a1")
    ledger.add(
        "contact_assigned", routing.ContactAssigned(offer_id="c1#1", contact_id="c1", agent_id="a1")
    )
    ledger.add(
        "offer_timed_out", routing.OfferTimedOut(offer_id="c1#1", contact_id="c1", agent_id="a1")
    )
    assert ledger.report(run_finished=False).violations == [
        "contact c1 timed out on offer c1#1 with no offer outstanding"
    ]

    ledger = Ledger()
    arrive(ledger, "c2")
    offer(ledger, "c2", "a1", attempt=2)
    ledger.add(
        "contact_assigned", routing.ContactAssigned(offer_id="c2#1", contact_id="c2", agent_id="a1")
    )
    ledger.add(
        "offer_timed_out", routing.OfferTimedOut(offer_id="c2#2", contact_id="c2", agent_id="a9")
    )
    assert ledger.report(run_finished=False).violations == [
        "contact c2 assigned on offer c2#1 while offer c2#2 was outstanding",
        "contact c2 timed out on offer c2#2 with no offer outstanding",
    ]


def test_an_offer_answered_by_another_agent_is_a_violation() -> None:
    ledger = Ledger()
    ledger.add("contact_arrived", contact.ContactArrived(contact_id="c1", channel=VOICE), "acme")
    ledger.add(
        "offer_made",
        routing.OfferMade(offer_id="c1#1", contact_id="c1", agent_id="a1", channel=VOICE),
        "acme",
    )
    ledger.add(
        "contact_assigned",
        routing.ContactAssigned(offer_id="c1#1", contact_id="c1", agent_id="a2"),
        "acme",
    )
    assert ledger.report(run_finished=False).violations == [
        "contact acme/c1 assigned for agent acme/a2, but was offered to acme/a1"
    ]


def test_contacts_a_policy_change_parked_or_moved_are_accounted_for() -> None:
    """Parked (ContactUnroutable: its queue removed, no fallback) is still waiting, and
    counted apart; one moved to a fallback (a POLICY_CHANGED requeue) waits again."""
    ledger = Ledger()
    for contact_id in ("parked", "moved"):
        arrive(ledger, contact_id)
    ledger.add(
        "contact_unroutable",
        routing.ContactUnroutable(
            contact_id="parked", queue="vip", reason="queue 'vip' removed by policy version 2"
        ),
    )
    ledger.add("contact_unroutable", routing.ContactUnroutable(contact_id="moved", queue="vip"))
    ledger.add(
        "contact_requeued",
        routing.ContactRequeued(
            contact_id="moved", queue="billing", reason=routing.REQUEUE_REASON_POLICY_CHANGED
        ),
    )
    report = ledger.report(run_finished=False)
    assert report.ok, report.summary()
    assert (report.arrived, report.still_waiting, report.unroutable) == (2, 2, 1)
    assert "still waiting 2 (1 reported unroutable)" in report.summary()
    # a finished run still wants every contact closed: parked is not an end
    assert not ledger.report(run_finished=True).ok
