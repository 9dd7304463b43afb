"""The what-if replay: a recording of the real core's own day, replayed under the same
policy, gives back the recorded per-queue figures; a policy change moves them the way
it must; the recording is read as the topics hold it."""

from __future__ import annotations

import dataclasses
import math

import pytest
from switchboard.v1.envelope_pb2 import Envelope

from services.common.codec import new_envelope
from services.router.adapters.mapping import decision_to_envelope
from services.router.domain import RoutingPolicy
from services.router.domain import model as m
from services.router.recording import (
    Figures,
    LegEnd,
    RecordedEvent,
    Stream,
    build_recording,
    figures,
)
from services.router.replay import AgentChange, PatienceModel, Survival, adjust_agents, replay
from services.router.synthetic import Demand, Team, input_to_envelope, record_day
from services.router.whatif import format_comparison

T0 = 1_800_000_000.0
HOUR = 3600.0


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
    assert "escalations raised, notifications sent: not computed" in table


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
