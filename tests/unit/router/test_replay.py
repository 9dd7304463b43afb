"""The what-if replay: a recording of the real core's own day, replayed under the same
policy, gives back the recorded per-queue figures; a policy change moves them the way
it must; the recording is read as the topics hold it."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from switchboard.v1 import contact_events_pb2, escalation_pb2
from switchboard.v1.envelope_pb2 import Envelope

from services.common.codec import new_envelope
from services.escalation.adapters.mapping import envelope_to_input as escalation_input
from services.escalation.domain import EscalationPolicy
from services.notifier.adapters.mapping import KIND_NUMBERS, OUTCOMES
from services.notifier.adapters.mapping import envelope_to_input as notifier_input
from services.notifier.adapters.templates import load_catalog
from services.notifier.domain.core import NotifierPolicy
from services.router.adapters.mapping import decision_to_envelope
from services.router.domain import RoutingPolicy
from services.router.domain import model as m
from services.router.downstream import DownstreamPolicies, escalation_decision, notifier_decision
from services.router.recording import (
    Anchor,
    Figures,
    LegEnd,
    RecordedEvent,
    Stream,
    build_recording,
    figures,
)
from services.router.replay import AgentChange, PatienceModel, Survival, adjust_agents, replay
from services.router.synthetic import Demand, Team, input_to_envelope, record_day
from services.router.whatif import TEMPLATES, format_comparison

T0 = 1_800_000_000.0
HOUR = 3600.0
ROOT = Path(__file__).resolve().parents[3]


def policy(wrap_up_s: float = 5, **billing: object) -> RoutingPolicy:
    return RoutingPolicy.from_dict(
        {
            "queues": {
                "billing-en": {
                    "skills": {"billing": 3},
                    "language": "en",
                    "offer_timeout_s": 10,
                    "wrap_up_s": wrap_up_s,
                    **billing,
                },
                "tech-en": {
                    "skills": {"tech": 4},
                    "language": "en",
                    "offer_timeout_s": 10,
                    "wrap_up_s": wrap_up_s,
                    "service_level_s": 30,
                    "steps": [{"after_s": 40, "min_proficiency_delta": 2}],
                },
            }
        }
    )


CURRENT = policy()
DEMAND = [Demand("billing-en", 150, 200, 150), Demand("tech-en", 90, 260, 200)]
TEAMS = [
    Team("billing", 9, (("billing", 5),), ("en",), (0, 5), 15),
    Team("tech", 6, (("tech", 6),), ("en",), (0, 5), 15),
    Team("mixed", 3, (("billing", 4), ("tech", 3)), ("en",), (1, 5), 15),
]


@pytest.fixture(scope="module")
def day() -> list[RecordedEvent]:
    return record_day(CURRENT, DEMAND, TEAMS, hours=5, start=T0, seed=7)


@pytest.fixture(scope="module")
def recording(day: list[RecordedEvent]):  # type: ignore[no-untyped-def]
    return build_recording(day, domain="acme", start=T0 + HOUR, end=T0 + 4 * HOUR)


def test_replaying_under_the_unchanged_policy_gives_back_the_recorded_figures(recording) -> None:  # type: ignore[no-untyped-def]
    """Measured on this 3-hour window (~720 counted contacts): the differences are a
    point or two. They come from what the replay models: agents accept after their mean
    delay (recorded delays vary +-50 %), so a caller who hung up while an offer rang may
    be answered, or the reverse; answered callers' patience is drawn (Kaplan-Meier)."""
    recorded = figures(recording, CURRENT)
    replayed = replay(recording, CURRENT)
    assert not replayed.refused
    for queue in CURRENT.queues:
        r, p = recorded.queues[queue], replayed.queues[queue]
        assert r.offered == p.offered > 250
        assert r.answered > 0.8 * r.offered
        assert p.service_level == pytest.approx(r.service_level, abs=0.03), queue
        assert p.abandonment == pytest.approx(r.abandonment, abs=0.02), queue
        assert p.asa_s == pytest.approx(r.asa_s, rel=0.15, abs=1.0), queue
        assert p.occupancy == pytest.approx(r.occupancy, abs=0.02), queue
    assert replayed.occupancy == pytest.approx(recorded.occupancy, abs=0.02)


def test_the_replay_is_deterministic_and_paired(recording) -> None:  # type: ignore[no-untyped-def]
    assert replay(recording, CURRENT, seed=3) == replay(recording, CURRENT, seed=3)


def sl(f: Figures, queue: str) -> float:
    value = f.queues[queue].service_level
    assert value is not None
    return value


def test_a_longer_wrap_up_worsens_every_queue(recording) -> None:  # type: ignore[no-untyped-def]
    before = replay(recording, CURRENT)
    after = replay(recording, policy(wrap_up_s=60))
    for queue in CURRENT.queues:
        b, a = before.queues[queue], after.queues[queue]
        assert sl(after, queue) < sl(before, queue) - 0.05
        assert (a.asa_s or 0) > (b.asa_s or 0)
        assert (a.abandonment or 0) > (b.abandonment or 0)
        assert (a.occupancy or 0) > (b.occupancy or 0)


def test_a_stricter_service_level_threshold_lowers_the_service_level(recording) -> None:  # type: ignore[no-untyped-def]
    strict = replay(recording, policy(service_level_s=5))
    assert sl(strict, "billing-en") < sl(replay(recording, CURRENT), "billing-en") - 0.05


@pytest.mark.parametrize("patience", list(PatienceModel))
def test_agents_added_or_removed_move_the_figures(recording, patience: PatienceModel) -> None:  # type: ignore[no-untyped-def]
    base = replay(recording, CURRENT, patience=patience)
    fewer = replay(
        adjust_agents(recording, [AgentChange("billing", -3)]), CURRENT, patience=patience
    )
    more = replay(adjust_agents(recording, [AgentChange("tech", +3)]), CURRENT, patience=patience)
    assert sl(fewer, "billing-en") < sl(base, "billing-en") - 0.05
    assert (fewer.queues["billing-en"].abandonment or 0) > (
        base.queues["billing-en"].abandonment or 0
    )
    assert sl(more, "tech-en") > sl(base, "tech-en")
    assert (more.queues["tech-en"].asa_s or 0) < (base.queues["tech-en"].asa_s or 0)


def test_agent_changes_clone_whole_days_or_remove_agents(recording) -> None:  # type: ignore[no-untyped-def]
    ids = {e.event.agent_id for e in recording.agent_events}
    cloned = adjust_agents(recording, [AgentChange.parse("mixed:+4")])
    clones = {e.event.agent_id for e in cloned.agent_events} - ids
    assert clones == {"mixed-000~1", "mixed-001~1", "mixed-002~1", "mixed-000~2"}
    original = [
        (e.at, type(e.event)) for e in recording.agent_events if e.event.agent_id == "mixed-000"
    ]
    copy = [(e.at, type(e.event)) for e in cloned.agent_events if e.event.agent_id == "mixed-000~2"]
    assert copy == original
    assert copy
    removed = adjust_agents(recording, [AgentChange.parse("tech:-2")])
    assert {e.event.agent_id for e in removed.agent_events} == ids - {"tech-004", "tech-005"}
    by_skill = adjust_agents(recording, [AgentChange.parse("billing:+1")])  # a team too
    assert "billing-000~1" in {e.event.agent_id for e in by_skill.agent_events}
    with pytest.raises(ValueError, match="no agent of team or skill 'nobody'"):
        adjust_agents(recording, [AgentChange("nobody", 1)])
    with pytest.raises(ValueError, match="cannot remove 7"):
        adjust_agents(recording, [AgentChange("tech", -7)])
    for bad in ("tech", "tech:3", "tech:+x", ":+1", "tech:+0"):
        with pytest.raises(ValueError, match="--agents"):
            AgentChange.parse(bad)


def test_a_queue_the_proposed_policy_drops_is_refused_and_said(recording) -> None:  # type: ignore[no-untyped-def]
    only_billing = RoutingPolicy.from_dict({"queues": {"billing-en": {"skills": {"billing": 3}}}})
    result = replay(recording, only_billing)
    tech = result.queues["tech-en"]
    assert tech.refused == tech.offered > 0
    assert tech.answered == 0
    assert any("tech-en" in reason for reason in result.refused)
    table = format_comparison(figures(recording, CURRENT), replay(recording, CURRENT), result)
    assert f"proposed policy: {tech.offered} arrival(s) for tech-en refused" in table
    assert "replayed escalations and notifications: not computed" in table


# ------------------------------------------------------------------ reading a recording


def envelope(event: m.Input | m.Decision, domain: str = "acme") -> Envelope:
    e = new_envelope(domain, "test", event_id=f"e-{id(event)}", occurred_at=T0)
    if isinstance(event, m.OfferMade | m.ContactAssigned | m.ContactClosed | m.AgentStatusChanged):
        return decision_to_envelope(event, e)
    return input_to_envelope(event, e)


def rec(at: float, event: m.Input | m.Decision, domain: str = "acme") -> RecordedEvent:
    stream = (
        Stream.DECISION
        if isinstance(
            event, m.OfferMade | m.ContactAssigned | m.ContactClosed | m.AgentStatusChanged
        )
        else (
            Stream.CONTACT
            if isinstance(
                event, m.ContactArrived | m.ContactEnded | m.ContactTransferred | m.ContactAbandoned
            )
            else Stream.AGENT
        )
    )
    e = envelope(event, domain)
    if stream == Stream.DECISION:
        e.occurred_at.seconds, e.occurred_at.nanos = int(at), 0
    return RecordedEvent(stream, at, e)


def test_a_recording_has_the_roster_legs_and_accept_delays() -> None:
    login = m.AgentLoggedIn(
        "a1", "billing", (("billing", 5), ("tech", 5)), ("en",), ((m.Channel.VOICE, 1),)
    )
    gone = m.AgentLoggedIn("a2", "billing", (("billing", 5),), ("en",))
    events = [
        rec(T0 - 7200, login),
        rec(T0 - 7100, m.AgentStateChanged("a1", m.AgentState.AWAY, "lunch")),
        rec(T0 - 7000, gone),
        rec(T0 - 6000, m.AgentLoggedOut("a2")),
        rec(T0 - 5000, m.AgentLoggedIn("b1", "other", (("billing", 5),), ("en",)), domain="other"),
        rec(T0, m.ContactArrived("c1", "billing-en", m.Channel.VOICE)),
        rec(T0 + 2, m.AgentStateChanged("a1", m.AgentState.AVAILABLE)),
        rec(T0, m.OfferMade("c1#1", "c1", "a1", "billing-en", m.Channel.VOICE, T0 + 10, 0, 1, 0)),
        rec(T0 + 4, m.OfferAccepted("a1", "c1", "c1#1")),
        rec(T0 + 4, m.ContactAssigned("c1#1", "c1", "a1", "billing-en", 4, True)),
        rec(T0 + 100, m.ContactTransferred("c1", "tech-en")),
        rec(T0 + 130, m.ContactAssigned("c1#2", "c1", "a1", "tech-en", 30, True)),
        rec(T0 + 200, m.ContactEnded("c1", "a1")),
        rec(T0 + 10, m.ContactArrived("c2", "billing-en", m.Channel.VOICE)),
        rec(T0 + 55, m.ContactAbandoned("c2")),
        rec(T0 + 20, m.ContactArrived("x1", "billing-en", m.Channel.VOICE), domain="other"),
    ]
    recording = build_recording(events, domain="acme", start=T0, end=T0 + 60, warmup_s=600)
    assert recording.replay_from == T0  # the warm-up starts no earlier than the contacts
    assert [(login.agent_id, away) for login, away in recording.roster] == [("a1", "lunch")]
    assert recording.skipped["another domain"] == 2
    assert recording.accept_delay_s == {"a1": 4.0}
    c1, c2 = recording.contacts
    assert [(leg.queue, leg.end, leg.handle_s) for leg in c1.legs] == [
        ("billing-en", LegEnd.TRANSFERRED, 96.0),
        ("tech-en", LegEnd.ENDED, 70.0),
    ]
    assert c1.legs[1].waited_s == 30
    assert (c2.legs[0].end, c2.legs[0].left_waiting_after_s) == (LegEnd.ABANDONED, 45.0)
    # a1 comes back from lunch and takes c1 (transferred, then taken again in tech-en);
    # c2 hangs up after its recorded 45 s, a1 being busy
    result = replay(recording, CURRENT)
    billing, tech = result.queues["billing-en"], result.queues["tech-en"]
    assert (billing.offered, billing.answered, billing.abandoned) == (2, 1, 1)
    assert billing.asa_s == pytest.approx(2 + 4)  # back at +2, accepts after 4 s
    assert (tech.offered, tech.answered) == (0, 1)
    with pytest.raises(ValueError, match="no records of domain 'nobody'"):
        build_recording(events, domain="nobody", start=T0, end=T0 + 60)
    with pytest.raises(ValueError, match="must end after it starts"):
        build_recording(events, domain="acme", start=T0, end=T0)


# ------------------------------------------------------------------ patience


def test_kaplan_meier_without_censoring_is_the_empirical_distribution() -> None:
    km = Survival([1, 2, 2, 4], [])
    assert [km.at(t) for t in (0, 1, 1.5, 2, 3, 4)] == [1, 0.75, 0.75, 0.25, 0.25, 0]
    assert km.draw_above(0, 0.0) == 4
    assert km.draw_above(0, 0.99) == 1


def test_kaplan_meier_with_censoring_and_conditional_draws() -> None:
    km = Survival([1, 3], [2])  # the one censored at 2 is still at risk at 2
    assert km.at(1) == pytest.approx(2 / 3)
    assert km.at(3) == 0
    assert km.draw_above(2, 0.5) == 3  # answered after 2 s: only 3 remains
    open_ended = Survival([1], [5, 5])  # two never seen to hang up
    assert open_ended.at(4) == pytest.approx(2 / 3)
    assert math.isinf(open_ended.draw_above(2, 0.3))


def test_censored_patience_never_hangs_up_an_answered_caller(recording) -> None:  # type: ignore[no-untyped-def]
    """With the ``censored`` model only recorded hang-ups hang up: never more than
    recorded, whatever the policy (here one that answers later)."""
    slower = policy(wrap_up_s=30)
    censored = replay(recording, slower, patience=PatienceModel.CENSORED)
    drawn = replay(recording, slower, patience=PatienceModel.KAPLAN_MEIER)
    recorded = figures(recording, CURRENT)
    for queue in CURRENT.queues:
        assert censored.queues[queue].abandoned <= recorded.queues[queue].abandoned
        assert drawn.queues[queue].abandoned > censored.queues[queue].abandoned


def test_figures_count_only_the_window(recording) -> None:  # type: ignore[no-untyped-def]
    counted = [c for c in recording.contacts if c.counted]
    assert all(T0 + HOUR <= c.arrived_at <= T0 + 4 * HOUR for c in counted)
    assert len(counted) < len(recording.contacts)  # warm-up and tail replayed, not counted
    total = figures(recording, CURRENT)
    assert sum(q.offered for q in total.queues.values()) == len(counted)
    shifted = dataclasses.replace(recording, start=recording.start + HOUR)
    assert figures(shifted, CURRENT).occupancy != total.occupancy


def test_a_queues_demand_is_measured_on_the_recording(recording) -> None:  # type: ignore[no-untyped-def]
    """What ``--target`` staffs from when given a window: the recorded arrival rate,
    mean handle time, and the exponential patience fitted with censoring."""
    from services.router.whatif import queue_load

    load = queue_load(recording, "billing-en", 20)
    assert load.rate_per_s * 3600 == pytest.approx(150, rel=0.1)  # Demand: 150 an hour
    assert load.aht_s == pytest.approx(200, rel=0.1)
    assert load.patience_s == pytest.approx(150, rel=0.25)
    assert load.service_level_s == 20


# ------------------------------------------------------------------ escalations, notifications


CATALOG = load_catalog(TEMPLATES)


def escalation_policy(wait_s: float = 60, **queues: dict[str, object]) -> EscalationPolicy:
    return EscalationPolicy.from_dict(
        {
            "manager": "mira",
            "head_of_service": "hugo",
            "ack_deadlines_s": {"supervisor": 120, "manager": 240},
            "triggers": {"wait_threshold_s": wait_s, "pause_grace_s": 15, "low_score": 2},
            "teams": {"billing": {"supervisor": "sofia"}, "tech": {"supervisor": "tom"}},
            "queues": {
                "billing-en": {"team": "billing", **queues.get("billing-en", {})},
                "tech-en": {"team": "tech", **queues.get("tech-en", {})},
            },
        },
        prefix="escalation.",
    )


def sides(escalation: EscalationPolicy | None = None, **notification: object) -> DownstreamPolicies:
    return DownstreamPolicies(
        escalation or escalation_policy(),
        NotifierPolicy.from_dict(
            {"position_min_interval_s": 30, "overrun_grace_s": 10, **notification}
        ),
        CATALOG,
    )


def total(f: Figures, attr: str, name: str) -> int:
    return sum(getattr(q, attr)[name] for q in f.queues.values())


def test_wait_escalations_are_the_real_cores_and_match_the_routing_decisions(recording) -> None:  # type: ignore[no-untyped-def]
    """With the escalation wait threshold equal to each queue's service-level threshold,
    the escalation core raises exactly one wait escalation per contact the routing core
    answered after the threshold or lost after it; a shorter threshold raises more."""
    same = escalation_policy(20, **{"tech-en": {"triggers": {"wait_threshold_s": 30}}})
    for staffed in (recording, adjust_agents(recording, [AgentChange("billing", -3)])):
        result = replay(staffed, CURRENT, downstream=sides(same))
        assert not result.outcomes_missing
        assert not result.outcomes_refused
        for queue in CURRENT.queues:
            q = result.queues[queue]
            late = q.answered - q.answered_within + q.abandoned_late
            assert q.escalations == Counter({"wait_threshold": late}), queue
            assert late > 50
    patient = replay(recording, CURRENT, downstream=sides(escalation_policy(60)))
    eager = replay(recording, CURRENT, downstream=sides(escalation_policy(15)))
    for queue in CURRENT.queues:
        assert (
            eager.queues[queue].escalations["wait_threshold"]
            > patient.queues[queue].escalations["wait_threshold"] + 20
        )
    # the routing figures are the same with or without the other two cores
    plain = replay(recording, CURRENT)
    for queue in CURRENT.queues:
        a, b = plain.queues[queue], patient.queues[queue]
        assert (a.answered, a.answered_within, a.abandoned) == (
            b.answered,
            b.answered_within,
            b.abandoned,
        )


def test_notifications_are_the_real_cores(recording) -> None:  # type: ignore[no-untyped-def]
    """Every answered contact is told it was closed (the notifier's closing notice on its
    end); a shorter position interval tells more positions; a tighter rate limit holds
    some back (suppressed, not sent)."""
    busy = adjust_agents(recording, [AgentChange("billing", -3)])
    base = replay(busy, CURRENT, downstream=sides())
    for queue in CURRENT.queues:
        q = base.queues[queue]
        assert q.notifications["closed"] == q.answered > 0
    often = replay(busy, CURRENT, downstream=sides(position_min_interval_s=5))
    assert total(often, "notifications", "queue_position") > 1.2 * total(
        base, "notifications", "queue_position"
    )
    assert total(base, "notifications", "queue_position") > 100
    limited = replay(
        busy,
        CURRENT,
        downstream=sides(position_min_interval_s=5, rate_limit_count=1, rate_limit_window_s=3600),
    )
    assert total(limited, "notifications", "queue_position") < total(
        often, "notifications", "queue_position"
    )
    assert total(limited, "suppressed", "queue_position") > 0
    assert replay(busy, CURRENT, downstream=sides()) == base  # deterministic


def test_a_queue_the_proposed_policy_drops_leaves_its_callers_to_escalate(recording) -> None:  # type: ignore[no-untyped-def]
    """Escalation reads contact.events whatever the router does: callers of a queue the
    routing policy no longer has wait unanswered, and their wait escalations rise."""
    only_billing = RoutingPolicy.from_dict({"queues": {"billing-en": {"skills": {"billing": 3}}}})
    before = replay(recording, CURRENT, downstream=sides())
    after = replay(recording, only_billing, downstream=sides())
    tech_before, tech_after = before.queues["tech-en"], after.queues["tech-en"]
    assert tech_after.refused == tech_after.offered
    assert tech_after.escalations["wait_threshold"] > 2 * tech_before.escalations["wait_threshold"]
    assert tech_after.notifications["closed"] == 0
    table = format_comparison(figures(recording, CURRENT), before, after)
    assert "ESCALATIONS" in table
    assert "NOTIFIED" in table
    assert "escalations raised by reason (recorded/current/proposed): wait_threshold -/" in table
    assert "recorded escalations and notifications: -, the escalations and notifications" in table


@pytest.mark.parametrize(
    "decision",
    [
        m.ContactAssigned("o1", "c1", "a1", "billing-en", 12.5, True),
        m.ContactRequeued("c1", "billing-en", m.RequeueReason.TIMED_OUT, "a1"),
        m.ContactUnroutable("c1", "billing-en", "no agent with billing>=3"),
        m.ContactClosed("c1", "billing-en", True, 40.0),
        m.ContactClosed("c1", "billing-en", False, 4.0),
        m.QueuePositionUpdated("c1", "billing-en", 3, 90.0, 10.0),
        m.QueuePositionUpdated("c1", "billing-en", 3, None, 10.0),
        m.OfferMade("o1", "c1", "a1", "billing-en", m.Channel.VOICE, T0, 1.0, 1, 0),
        m.OfferTimedOut("o1", "c1", "a1"),
        m.AgentStatusChanged("a1", m.AgentState.BUSY, "", "billing"),
    ],
    ids=lambda d: type(d).__name__,
)
def test_decisions_reach_the_cores_as_the_services_read_their_records(
    decision: m.Decision,
) -> None:
    """The replay hands decisions to the escalation and notifier cores directly; what it
    hands them is what each service's mapping reads from the router's record."""
    record = decision_to_envelope(decision, new_envelope("acme", "router", event_id="d1"))
    assert escalation_decision(decision) == escalation_input(record)
    assert notifier_decision(decision) == notifier_input(record)


def contact_event(at: float, fill: Callable[[Envelope], object], stream: Stream) -> RecordedEvent:
    e = new_envelope("acme", "platform", event_id=f"x-{at}", occurred_at=at)
    fill(e)
    return RecordedEvent(stream, at, e)


def held(e: Envelope) -> None:
    e.contact_held.contact_id, e.contact_held.agent_id = "c1", "a1"
    e.contact_held.reason = contact_events_pb2.PAUSE_REASON_CHECKING_INFORMATION
    e.contact_held.expected_duration.FromSeconds(30)


def resumed(e: Envelope) -> None:
    e.contact_resumed.contact_id = "c1"


def manager(e: Envelope) -> None:
    e.manager_requested.contact_id, e.manager_requested.agent_id = "c1", "a1"


def ended_unresolved(e: Envelope) -> None:
    e.contact_ended.contact_id, e.contact_ended.agent_id = "c1", "a1"
    e.contact_ended.disposition = contact_events_pb2.DISPOSITION_UNRESOLVED


def survey(e: Envelope) -> None:
    e.survey_result.contact_id, e.survey_result.score = "c1", 1


def test_holds_requests_ends_and_surveys_follow_the_moment_they_hang_on() -> None:
    """A hold, a request for a manager, an unresolved end and a bad survey, recorded
    around c1's answer and end, reach both cores in the replay; if the replay never
    answers c1 (its only agent removed) none of them happens: c1 hangs up instead."""
    login = m.AgentLoggedIn("a1", "billing", (("billing", 5),), ("en",), ((m.Channel.VOICE, 1),))
    events = [
        rec(T0 - 100, login),
        rec(T0, m.ContactArrived("c1", "billing-en", m.Channel.VOICE)),
        rec(T0, m.OfferMade("c1#1", "c1", "a1", "billing-en", m.Channel.VOICE, T0 + 10, 0, 1, 0)),
        rec(T0 + 4, m.OfferAccepted("a1", "c1", "c1#1")),
        rec(T0 + 4, m.ContactAssigned("c1#1", "c1", "a1", "billing-en", 4, True)),
        rec(T0 + 10, m.ContactArrived("c2", "billing-en", m.Channel.VOICE)),
        contact_event(T0 + 24, held, Stream.CONTACT),
        rec(T0 + 55, m.ContactAbandoned("c2")),
        contact_event(T0 + 104, resumed, Stream.CONTACT),
        contact_event(T0 + 114, manager, Stream.AGENT),
        contact_event(T0 + 154, ended_unresolved, Stream.CONTACT),
        contact_event(T0 + 214, survey, Stream.CONTACT),
    ]
    recording = build_recording(events, domain="acme", start=T0, end=T0 + 60, warmup_s=600)
    (c1, _) = recording.contacts
    assert [(a.anchor, a.after_s) for a in c1.asides] == [
        (Anchor.ANSWERED, 20.0),
        (Anchor.ANSWERED, 100.0),
        (Anchor.ANSWERED, 110.0),
        (Anchor.ENDED, 60.0),
    ]
    assert c1.ending is not None
    downstream = sides(escalation_policy(30))
    result = replay(recording, CURRENT, downstream=downstream).queues["billing-en"]
    assert result.escalations == Counter(
        {
            "wait_threshold": 1,  # c2, hung up after 45 s
            "pause_overrun": 1,  # 30 s promised, 80 s held
            "manager_requested": 1,
            "unresolved": 1,
            "low_satisfaction": 1,
        }
    )
    assert result.notifications == Counter(
        {"hold_started": 1, "pause_overrun": 1, "resumed": 1, "closed": 1, "queue_position": 1}
    )  # c2 was told its place while a1 had c1
    nobody = adjust_agents(recording, [AgentChange("billing", -1)])
    unanswered = replay(nobody, CURRENT, downstream=downstream).queues["billing-en"]
    assert unanswered.answered == 0
    # nobody logged in could take them: both unroutable, both hang up unanswered
    assert unanswered.escalations == Counter({"wait_threshold": 2, "unroutable": 2})
    assert unanswered.notifications == Counter({"no_agent_available": 2, "queue_position": 3})


def escalation_record(
    at: float, contact: str, reason: int, kind: int, domain: str = "acme"
) -> RecordedEvent:
    e = new_envelope(domain, "escalation", event_id=f"{contact}/{reason}@{kind}", occurred_at=at)
    e.escalation_record.kind = escalation_pb2.EscalationChangeKind.ValueType(kind)
    record = e.escalation_record.escalation
    record.escalation_id, record.contact_id, record.domain = f"{contact}/{reason}", contact, domain
    record.queue, record.reason = "billing-en", escalation_pb2.EscalationReason.ValueType(reason)
    record.raised_at.FromSeconds(int(at))
    return RecordedEvent(Stream.ESCALATION, at, e)


def notification_record(at: float, contact: str, kind: str, outcome: str) -> RecordedEvent:
    e = new_envelope("acme", "notifier", event_id=f"{contact}:{kind}:{at}", occurred_at=at)
    record = e.notification_record
    record.notification.notification_id = f"{contact}:{kind}:{at}"
    record.notification.contact_id = contact
    record.notification.kind = KIND_NUMBERS[kind]
    record.notification.created_at.FromSeconds(int(at))
    record.outcome = OUTCOMES[outcome]
    return RecordedEvent(Stream.NOTIFICATION, at, e)


def test_recorded_escalations_and_notifications_are_counted_from_their_topics() -> None:
    """The recorded column: each escalation once (however many records it has), each
    notification by its outcome, in the queue the contact was in when told; contacts
    outside the window and other domains are not counted."""
    login = m.AgentLoggedIn("a1", "billing", (("billing", 5), ("tech", 5)), ("en",))
    wait, unresolved = 1, 4  # EscalationReason numbers
    raised, resolved = 1, 4  # EscalationChangeKind numbers
    events = [
        rec(T0 - 100, login),
        rec(T0, m.ContactArrived("c1", "billing-en", m.Channel.VOICE)),
        rec(T0 + 4, m.ContactAssigned("c1#1", "c1", "a1", "billing-en", 4, True)),
        rec(T0 + 100, m.ContactTransferred("c1", "tech-en")),
        rec(T0 + 10, m.ContactArrived("c2", "billing-en", m.Channel.VOICE)),
        rec(T0 + 55, m.ContactAbandoned("c2")),
        rec(T0 + 500, m.ContactArrived("late", "billing-en", m.Channel.VOICE)),
        escalation_record(T0 + 40, "c2", wait, raised),
        escalation_record(T0 + 55, "c2", wait, resolved),  # the same escalation, later
        escalation_record(T0 + 200, "c1", unresolved, raised),
        escalation_record(T0 + 560, "late", wait, raised),  # arrived after the window
        escalation_record(T0 + 86_400, "c2", 8, raised),  # a survey the next day: too late
        escalation_record(T0 + 40, "c2", wait, raised, domain="other"),
        notification_record(T0 + 20, "c2", "queue_position", "delivered"),
        notification_record(T0 + 50, "c2", "queue_position", "suppressed"),
        notification_record(T0 + 150, "c1", "closed", "delivered"),  # after the transfer
        notification_record(T0 + 151, "c1", "resumed", "dead_lettered"),
    ]
    recording = build_recording(
        events, domain="acme", start=T0, end=T0 + 60, warmup_s=600, outcomes=True
    )
    recorded = figures(recording, CURRENT)
    billing, tech = recorded.queues["billing-en"], recorded.queues["tech-en"]
    assert billing.escalations == Counter({"wait_threshold": 1, "unresolved": 1})
    assert billing.notifications == Counter({"queue_position": 1})
    assert billing.suppressed == Counter({"queue_position": 1})
    assert tech.notifications == Counter({"closed": 1})
    assert tech.undelivered == Counter({"resumed": 1})
    assert recording.horizon == T0 + 500  # the outcome records do not stretch the replay
    table = format_comparison(recorded, replay(recording, CURRENT), replay(recording, CURRENT))
    billing_row = next(line for line in table.splitlines() if line.startswith("billing-en"))
    assert billing_row.split()[-8:] == ["|", "2", "-", "-", "|", "1", "-", "-"]
    assert "recorded: 1 notification(s) decided but never delivered" in table
    unread = build_recording(events, domain="acme", start=T0, end=T0 + 60, warmup_s=600)
    assert figures(unread, CURRENT).outcomes_missing
    assert figures(unread, CURRENT).queues["billing-en"].escalations == Counter()


def test_policy_documents_give_the_proposed_side_its_escalation_and_notification_policy(
    tmp_path: Path,
) -> None:
    """``--policy`` as a policy document: its [escalation] and [notification] tables
    are the proposed side's; without them both sides run the configured ones; a mistake
    is refused naming the field."""
    from services.router.whatif import UsageError, downstream_policies

    router = tmp_path / "router.toml"
    router.write_text("[routing.queues.billing-en]\nskills = { billing = 3 }\n")
    escalation = (ROOT / "deploy" / "config" / "escalation.toml").read_text()
    document = tmp_path / "proposed.toml"
    document.write_text(
        "[routing.queues.billing-en]\nskills = { billing = 3 }\n"
        + escalation[escalation.index("[escalation]") :].replace(
            "wait_threshold_s = 60", "wait_threshold_s = 20"
        )
        + "\n[notification]\nposition_min_interval_s = 5\n"
    )
    now, new = downstream_policies(router, document)
    assert now.escalation.triggers_for("acme", "billing-en").wait_threshold_s == 60
    assert new.escalation.triggers_for("acme", "billing-en").wait_threshold_s == 20
    assert (now.notification.position_min_interval_s, new.notification.position_min_interval_s) == (
        30,
        5,
    )
    same_now, same_new = downstream_policies(router, router, escalation=document)
    assert same_now.escalation == same_new.escalation == new.escalation
    assert same_now.notification == same_new.notification == now.notification
    bad = tmp_path / "bad.toml"
    bad.write_text("[notification]\nposition_min_interval_s = -1\n")
    with pytest.raises(UsageError, match=r"notification\.position_min_interval_s: must be > 0"):
        downstream_policies(router, bad)
    with pytest.raises(UsageError, match=r"no \[escalation\] table"):
        downstream_policies(router, router, escalation=router)
