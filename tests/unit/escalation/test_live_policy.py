"""A domain's escalation policy changed live (issue #16): clocks carry over, deadlines
apply from the change on, teams and people follow the new version, the version is
persisted, and the manager scope is each domain's policy's."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from switchboard.v1.envelope_pb2 import Envelope

from services.common.clock import FakeClock
from services.common.codec import decode_envelope, new_envelope
from services.common.config import KafkaSettings
from services.common.errors import RejectedEvent
from services.common.kafka import InboundRecord
from services.common.topics import Topics
from services.escalation.adapters.kafka import EscalationHandler
from services.escalation.domain import (
    UNASSIGNED_TEAM,
    ContactAssigned,
    ContactRequeued,
    ContactUnroutable,
    EscalationChangeKind,
    EscalationCore,
    EscalationPolicy,
    EscalationReason,
    EscalationStatus,
    ManagerRequested,
    PermissionDenied,
    PolicyError,
    Tier,
)
from services.escalation.domain.core import POLICY_KEY, stored_policy
from services.escalation.domain.policy import policy_in_document
from services.escalation.domain.scopes import DomainPolicies
from services.escalation.metrics import EscalationMetrics
from tests.unit.escalation.scenario import (
    BASE,
    HOUR,
    MIN,
    T0,
    arrive,
    eid,
    kinds,
    make_core,
    make_policy,
    merged,
)

ASKED = eid("c1", EscalationReason.MANAGER_REQUESTED)
WAITED = eid("c1", EscalationReason.WAIT_THRESHOLD)


def asked_for_manager(core: EscalationCore, at: float = T0) -> None:
    arrive(core, "c1", at)
    core.apply(ManagerRequested("c1", "refund"), at)


def supervisor_s(seconds: float, **more: Any) -> dict[str, Any]:
    return {"ack_deadlines_s": {"supervisor": seconds}, **more}


# --- deadlines ---------------------------------------------------------------------------


def test_a_shortened_tier_deadline_already_passed_moves_the_escalation_up_at_once() -> None:
    core = make_core(triggers={"enabled": ["manager_requested"]})
    asked_for_manager(core)  # supervisor's deadline: T0 + 600
    changes = core.change_policy(
        make_policy(triggers={"enabled": ["manager_requested"]}, **supervisor_s(100)), 2, T0 + 200
    )
    assert kinds(changes) == [("re_escalated", "manager_requested")]
    esc = changes[0].escalation
    assert (esc.tier, esc.assignee, esc.previous_tiers) == (
        Tier.MANAGER,
        "mira",
        (Tier.SUPERVISOR,),
    )
    assert esc.ack_deadline == T0 + 200 + 1200, "the manager's time runs from the move"
    assert core.policy_version == 2


def test_a_shortened_deadline_not_yet_passed_moves_it_on_the_new_deadline() -> None:
    core = make_core(triggers={"enabled": ["manager_requested"]})
    asked_for_manager(core)
    changes = core.change_policy(
        make_policy(triggers={"enabled": ["manager_requested"]}, **supervisor_s(100)), 2, T0 + 50
    )
    assert kinds(changes) == [("updated", "manager_requested")]
    assert changes[0].escalation.ack_deadline == T0 + 100  # from when the supervisor got it
    assert core.next_deadline() == T0 + 100
    assert core.tick(T0 + 99) == []
    [moved] = core.tick(T0 + 100)
    assert (moved.kind, moved.escalation.tier) == (EscalationChangeKind.RE_ESCALATED, Tier.MANAGER)


def test_a_lengthened_deadline_waits_longer() -> None:
    core = make_core(triggers={"enabled": ["manager_requested"]})
    asked_for_manager(core)
    core.change_policy(
        make_policy(triggers={"enabled": ["manager_requested"]}, **supervisor_s(1000)), 2, T0 + 200
    )
    assert core.tick(T0 + 600) == [], "the old deadline no longer applies"
    assert core.get(ASKED).tier is Tier.SUPERVISOR  # type: ignore[union-attr]
    [moved] = core.tick(T0 + 1000)
    assert moved.escalation.tier is Tier.MANAGER


def test_deadlines_due_before_the_change_fire_under_the_old_policy() -> None:
    core = make_core(triggers={"enabled": ["manager_requested"]})
    asked_for_manager(core)
    changes = core.change_policy(
        make_policy(triggers={"enabled": ["manager_requested"]}, **supervisor_s(5000)), 2, T0 + 700
    )
    [moved] = [c for c in changes if c.kind is EscalationChangeKind.RE_ESCALATED]
    assert moved.escalation.tier is Tier.MANAGER
    assert moved.escalation.version == int((T0 + 600) * 1000), "at the instant it fell due"


def test_an_acknowledged_escalation_is_left_to_its_owner() -> None:
    core = make_core(triggers={"enabled": ["manager_requested"]})
    asked_for_manager(core)
    core.acknowledge(ASKED, "sofia", T0 + 10)
    changes = core.change_policy(
        make_policy(triggers={"enabled": ["manager_requested"]}, **supervisor_s(1)), 2, T0 + 20
    )
    assert changes == []
    assert core.get(ASKED).status is EscalationStatus.ACKNOWLEDGED  # type: ignore[union-attr]


# --- SLA clocks --------------------------------------------------------------------------


def test_the_wait_clock_carries_over_and_a_longer_threshold_waits_longer() -> None:
    core = make_core()
    arrive(core, "c1", T0)  # threshold 300 s
    core.change_policy(make_policy(triggers={"wait_threshold_s": 600}), 2, T0 + 200)
    assert core.tick(T0 + 599) == []
    assert kinds(core.tick(T0 + 600)) == [("raised", "wait_threshold")]


def test_a_threshold_already_exceeded_raises_at_the_change_not_back_then() -> None:
    core = make_core()
    arrive(core, "c1", T0)
    changes = core.change_policy(make_policy(triggers={"wait_threshold_s": 100}), 2, T0 + 200)
    assert kinds(changes) == [("raised", "wait_threshold")]
    assert changes[0].escalation.raised_at == T0 + 200


def test_time_so_far_counts_on_the_old_hours_and_from_the_change_on_the_new() -> None:
    """Monday 09:00 UTC arrival, always-open queue; at 09:02 the queue gets office hours
    that close at 09:00 UTC (10:00 Warsaw): two minutes banked, the rest waits for
    Tuesday's opening (08:00 Warsaw = 07:00 UTC)."""
    core = make_core()
    arrive(core, "c1", T0)
    office = {
        "calendars": {
            "warsaw": {
                "timezone": "Europe/Warsaw",
                "hours": dict.fromkeys(("mon", "tue", "wed", "thu", "fri"), "08:00-10:00"),
            }
        },
        "queues": {"billing-en": {"team": "billing", "calendar": "warsaw"}},
    }
    core.change_policy(make_policy(**office), 2, T0 + 2 * MIN)
    tuesday_opening = T0 + 22 * HOUR
    assert core.next_deadline() == pytest.approx(tuesday_opening + 3 * MIN)
    assert kinds(core.tick(tuesday_opening + 3 * MIN)) == [("raised", "wait_threshold")]


# --- teams, people, queues ---------------------------------------------------------------


def test_the_assignee_follows_the_teams_new_staff() -> None:
    core = make_core(triggers={"enabled": ["manager_requested"]})
    asked_for_manager(core)
    changes = core.change_policy(
        make_policy(
            triggers={"enabled": ["manager_requested"]}, teams={"billing": {"supervisor": "sara"}}
        ),
        2,
        T0 + 10,
    )
    assert [(c.kind, c.escalation.assignee) for c in changes] == [
        (EscalationChangeKind.UPDATED, "sara")
    ]
    assert core.teams_visible_to("sara") == {"billing"}
    assert core.teams_visible_to("sofia") == frozenset()


def test_an_open_escalation_whose_team_is_gone_goes_to_the_head_of_service() -> None:
    core = make_core(triggers={"enabled": ["manager_requested"]})
    asked_for_manager(core)
    without_billing = merged(BASE, {"triggers": {"enabled": ["manager_requested"]}})
    del without_billing["teams"]["billing"]
    without_billing["queues"] = {"sales-en": {"team": "sales"}}
    policy = EscalationPolicy.from_dict(without_billing)
    [change] = core.change_policy(policy, 2, T0 + 10)
    esc = change.escalation
    assert (change.kind, esc.team, esc.tier, esc.assignee, esc.ack_deadline) == (
        EscalationChangeKind.UPDATED,
        UNASSIGNED_TEAM,
        Tier.HEAD_OF_SERVICE,
        "hugo",
        None,
    )
    assert "without a home in policy version 2: team 'billing'" in esc.summary
    assert core.tick(T0 + 10 * HOUR) == [], "no deadline climbs an unassigned one"
    assert core.resolve(ASKED, "hugo", "handled", T0 + 11 * HOUR).escalation.is_open is False


def test_a_waiting_contact_whose_queue_is_removed_is_not_lost() -> None:
    """Its clock runs on (defaults, always open) and a breach goes to the head of service;
    the router's next decision naming the fallback queue moves it there."""
    core = make_core()
    arrive(core, "c1", T0)
    arrive(core, "c2", T0)
    policy = EscalationPolicy.from_dict(
        {**BASE, "queues": {k: v for k, v in BASE["queues"].items() if k != "billing-en"}}
    )
    assert core.change_policy(policy, 2, T0 + 10) == []
    core.apply(ContactRequeued("c2", "sales-en"), T0 + 20)  # the router's fallback
    core.apply(ContactAssigned("c2", "sales-en", "a1"), T0 + 30)
    [breach] = core.tick(T0 + 300)
    assert (breach.escalation.contact_id, breach.escalation.team) == ("c1", UNASSIGNED_TEAM)
    assert breach.escalation.assignee == "hugo"
    assert core.open_escalations() == [breach.escalation], "c2 was taken in its new queue"
    # the router reports the contact unroutable, naming the removed queue: known, so read
    changes = core.apply(ContactUnroutable("c1", "billing-en", "queue removed"), T0 + 301)
    assert kinds(changes) == [("raised", "unroutable")]
    assert changes[0].escalation.team == UNASSIGNED_TEAM


def test_an_unroutable_naming_an_unknown_queue_for_an_unknown_contact_is_still_refused() -> None:
    core = make_core()
    with pytest.raises(Exception, match="queue 'nowhere' is not in the escalation policy"):
        core.apply(ContactUnroutable("c9", "nowhere"), T0)


# --- persistence -------------------------------------------------------------------------


def test_the_version_and_document_are_persisted_and_a_restore_runs_on_them() -> None:
    core = make_core(triggers={"enabled": ["manager_requested"]})
    asked_for_manager(core)
    core.take_changes()
    document = "[escalation.ack_deadlines_s]\nsupervisor = 100\n"
    core.change_policy(make_policy(**supervisor_s(100)), 3, T0 + 50, document)
    changes = core.take_changes()
    assert changes[POLICY_KEY] == {"version": 3, "document": document}
    facts = core.snapshot()
    assert stored_policy(facts) == (3, document)
    restored = EscalationCore.restore(
        make_policy(**supervisor_s(100)),
        "eu",
        core.escalations(),
        facts,
        T0 + 60,
        version=3,
        document=document,
    )
    assert restored.restore_problems == []
    assert (restored.policy_version, restored.policy_document) == (3, document)
    assert restored.next_deadline() == core.next_deadline() == T0 + 100
    assert restored.snapshot() == facts


def test_a_stored_policy_that_is_missing_or_mangled_reads_as_the_default() -> None:
    assert stored_policy({}) == (0, "")
    assert stored_policy({POLICY_KEY: {"version": "2", "document": ""}}) == (0, "")
    assert stored_policy({POLICY_KEY: {"version": 2, "document": "x"}}) == (2, "x")


def test_a_document_without_an_escalation_table_is_the_configured_default() -> None:
    default = make_policy()
    assert policy_in_document("[routing]\nx = 1\n", default) is default
    with pytest.raises(PolicyError, match=r"^escalation\.teams: missing$"):
        policy_in_document("[escalation]\nmanager = 'm'\n", default)
    with pytest.raises(PolicyError, match="not TOML"):
        policy_in_document("[escalation", default)


# --- manager scope per domain ------------------------------------------------------------


def test_whose_escalations_a_person_sees_is_their_domains_policy() -> None:
    book = DomainPolicies(make_policy())
    wroclaw = make_policy(teams={"billing": {"supervisor": "zofia"}})
    assert book.apply("wroclaw", 1, wroclaw)
    assert not book.apply("wroclaw", 1, make_policy()), "not newer: ignored"
    in_acme = arrive_and_ask("acme")
    in_wroclaw = arrive_and_ask("wroclaw")
    assert book.visible_to("sofia")(in_acme)
    assert not book.visible_to("sofia")(in_wroclaw)
    assert book.visible_to("zofia")(in_wroclaw)
    assert not book.visible_to("zofia")(in_acme)
    assert book.teams_to_show("zofia", ["billing"]) == {"billing"}
    with pytest.raises(PermissionDenied, match=r"zofia may not see team\(s\) \['sales'\]"):
        book.teams_to_show("zofia", ["sales"])
    assert book.version_for("wroclaw") == 1
    assert book.version_for("acme") == 0


def test_a_full_book_says_it_is_incomplete() -> None:
    book = DomainPolicies(make_policy(), max_domains=1)
    assert book.apply("a", 1, make_policy())
    assert not book.apply("b", 1, make_policy())
    assert not book.complete


def arrive_and_ask(domain: str) -> Any:
    core = make_core(domain, triggers={"enabled": ["manager_requested"]})
    asked_for_manager(core)
    return core.get(eid("c1", EscalationReason.MANAGER_REQUESTED, domain))


# --- the handler: a policies record ------------------------------------------------------

TOPICS = Topics("t.")


def handler(clock: FakeClock) -> EscalationHandler:
    return EscalationHandler(
        policy=make_policy(triggers={"enabled": ["manager_requested"]}),
        topics=TOPICS,
        kafka=KafkaSettings(),
        metrics=EscalationMetrics.create(CollectorRegistry()),
        clock=clock,
    )


def policy_record(domain: str, version: int, document: str) -> tuple[Envelope, InboundRecord]:
    envelope = new_envelope(domain, "router", event_id=f"policy/{domain}/{version}")
    envelope.policy_changed.current.version = version
    envelope.policy_changed.current.document = document
    return envelope, InboundRecord(TOPICS.name("policies"), 0, version, domain.encode(), b"", (), 0)


def event_record(envelope: Envelope) -> InboundRecord:
    return InboundRecord(TOPICS.contact_events, 0, 0, envelope.domain.encode(), b"", (), 0)


SHORT = """
[escalation]
manager = "mira"
head_of_service = "hugo"
[escalation.ack_deadlines_s]
supervisor = 100
[escalation.triggers]
enabled = ["manager_requested"]
[escalation.teams.billing]
supervisor = "sofia"
[escalation.queues.billing-en]
team = "billing"
"""


def test_the_handler_applies_a_newer_version_and_its_outputs_carry_it() -> None:
    clock = FakeClock(T0)
    h = handler(clock)
    arrival = new_envelope("eu", "pbx", event_id="a1")
    arrival.contact_arrived.contact_id, arrival.contact_arrived.queue = "c1", "billing-en"
    arrival.contact_arrived.channel = 2
    h.handle(arrival, event_record(arrival))
    asked = new_envelope("eu", "agent", event_id="m1")
    asked.manager_requested.contact_id = "c1"
    [raised] = h.handle(asked, event_record(asked))
    assert decode_envelope(raised.value, raised.headers).policy_version == 0

    clock.current = T0 + 200
    [moved] = h.handle(*policy_record("eu", 4, SHORT))
    record = decode_envelope(moved.value, moved.headers)
    assert record.policy_version == 4
    assert record.escalation_record.escalation.tier == Tier.MANAGER.value
    [(_, core)] = h.states.items()
    assert (core.policy_version, core.policy_document) == (4, SHORT)


def test_the_handler_refuses_a_stale_or_unreadable_version_and_changes_nothing() -> None:
    h = handler(FakeClock(T0))
    h.handle(*policy_record("eu", 4, SHORT))
    with pytest.raises(RejectedEvent) as stale:
        h.handle(*policy_record("eu", 4, SHORT))
    assert stale.value.reason == (
        "policy version 4 of domain 'eu' is stale: version 4 is already applied"
    )
    with pytest.raises(RejectedEvent) as unreadable:
        h.handle(*policy_record("eu", 5, SHORT.replace('team = "billing"', 'team = "nobody"')))
    assert unreadable.value.reason == (
        "policy version 5 of domain 'eu': escalation.queues.billing-en.team: unknown team 'nobody'"
    )
    with pytest.raises(RejectedEvent):
        h.handle(*policy_record("other", 1, "not toml ["))
    assert [d for d, _ in h.states.items()] == ["eu"], "a refused domain gets no core"
    assert h.states.cores["eu"].policy_version == 4


def test_a_policy_record_on_another_topic_or_something_else_on_policies_is_refused() -> None:
    h = handler(FakeClock(T0))
    envelope, _ = policy_record("eu", 1, SHORT)
    with pytest.raises(RejectedEvent, match="policy_changed belongs on policies"):
        h.handle(envelope, event_record(envelope))
    arrival = new_envelope("eu", "pbx", event_id="a1")
    arrival.contact_arrived.contact_id = "c1"
    _, on_policies = policy_record("eu", 1, SHORT)
    with pytest.raises(RejectedEvent, match="only policy_changed belongs on policies"):
        h.handle(arrival, on_policies)
