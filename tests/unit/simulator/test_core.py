"""The seeded simulation core: arrivals, patience, offers, handling, breaks, shutdown."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest

from services.simulator import events as ev
from services.simulator.core import ContactStage, Simulation
from services.simulator.scenario import (
    AgentGroup,
    Behaviour,
    QueueSpec,
    Scenario,
    Span,
    load_scenario,
)
from tests.unit.simulator.routing_double import Drive, FakeRouter, drive

START = 1_700_000_000.0


def _scenario(
    *,
    rate: float = 0.2,
    profile: tuple[tuple[float, float], ...] = ((0.0, 1.0),),
    agents: int = 3,
    behaviour: Behaviour | None = None,
) -> Scenario:
    queue = QueueSpec(
        name="billing-en",
        skill="billing",
        language="en",
        min_proficiency=3,
        weight=1.0,
        channels=(("voice", 0.5), ("chat", 0.3), ("email", 0.2)),
    )
    group = AgentGroup(
        team="billing",
        count=agents,
        skills=(("billing", 7),),
        languages=("en",),
        capacity=(("voice", 1), ("chat", 3), ("email", 5)),
    )
    return Scenario(
        name="test",
        description="",
        domain="acme",
        duration=0,
        rate=rate,
        profile=profile,
        queues=(queue,),
        agents=(group,) if agents else (),
        behaviour=behaviour or Behaviour(),
    )


def _arrived(log: Drive) -> dict[str, ev.ContactArrived]:
    return {e.contact_id: e for e in log.of(ev.ContactArrived)}  # type: ignore[attr-defined]


def _run_to_quiet(sim: Simulation, router: FakeRouter, *, busy: float, drain: float) -> Drive:
    """Run with arrivals for ``busy`` seconds, then without until everyone has finished."""
    log = drive(sim, router, START + busy)
    sim.stop_arrivals()
    return drive(sim, router, START + busy + drain, record=log)


def test_arrivals_follow_the_rate_profile() -> None:
    """Counts per window match the integral of the rate profile within Poisson tolerance."""
    profile = ((0.0, 0.5), (1000.0, 2.0), (2000.0, 2.0))
    scenario = _scenario(rate=1.0, profile=profile, agents=0)
    window = 250.0
    counts: dict[int, int] = defaultdict(int)
    seeds = range(4)
    for seed in seeds:
        sim = Simulation(scenario, seed=seed, start=START, arrivals_until=START + 2000)
        for event in drive(sim, None, START + 2000).of(ev.ContactArrived):
            counts[int((event.at - START) // window)] += 1  # type: ignore[attr-defined]
    for index in range(int(2000 // window)):
        lo = index * window
        # Integral of the rate over the window, by midpoints of 1 s steps.
        expected = len(seeds) * sum(scenario.rate_at(lo + s + 0.5) for s in range(int(window)))
        assert abs(counts[index] - expected) < 4 * math.sqrt(expected), (
            index,
            counts[index],
            expected,
        )
    # The ramp is visible: the last window has clearly more than the first.
    assert counts[7] > 2.5 * counts[0]


def test_same_seed_gives_the_same_story_and_another_seed_does_not() -> None:
    scenario = _scenario()

    def story(seed: int) -> list[tuple[float, ev.SimEvent]]:
        sim = Simulation(scenario, seed=seed, start=START, run_id="r")
        return drive(sim, FakeRouter(), START + 600).events

    assert story(7) == story(7)
    assert story(7) != story(8)


def test_customers_abandon_once_their_patience_runs_out() -> None:
    """With nobody logged in, every contact is abandoned, and never before its patience floor."""
    scenario = _scenario(agents=0)
    sim = Simulation(scenario, seed=3, start=START)
    log = _run_to_quiet(sim, FakeRouter(), busy=600, drain=20_000)
    arrived = _arrived(log)
    assert len(arrived) > 50
    abandoned = {e.contact_id: t for t, e in log.events if isinstance(e, ev.ContactAbandoned)}
    assert set(abandoned) == set(arrived)
    for contact_id, at in abandoned.items():
        contact = arrived[contact_id]
        assert at - contact.at >= scenario.channels[contact.channel].patience_min
    assert sim.open_contacts() == 0


def test_agents_accept_offers_after_a_ring_and_end_what_they_were_given() -> None:
    behaviour = Behaviour(miss_offer=0.0, reject_offer=0.0, ring=Span(1.0, 3.0), break_every=0)
    sim = Simulation(_scenario(behaviour=behaviour), seed=5, start=START)
    log = _run_to_quiet(sim, FakeRouter(), busy=900, drain=5000)
    offers = {d.offer_id: (t, d) for t, d in log.decisions if isinstance(d, ev.OfferMade)}
    accepts = [(t, e) for t, e in log.events if isinstance(e, ev.OfferAccepted)]
    assert accepts
    for t, accept in accepts:
        offered_at, offer = offers[accept.offer_id]
        assert accept.agent_id == offer.agent_id
        # The ring is measured from when the desktop saw the offer (after delivery latency).
        assert 1.0 <= t - offered_at <= 3.0 + 0.1
    assigned = {d.contact_id: d.agent_id for d in log.decided(ev.ContactAssigned)}  # type: ignore[attr-defined]
    ended = {e.contact_id: e.agent_id for e in log.of(ev.ContactEnded)}  # type: ignore[attr-defined]
    assert assigned
    assert ended == assigned
    assert not log.decided(ev.OfferTimedOut)


def test_a_missed_offer_is_timed_out_and_the_agent_comes_back() -> None:
    behaviour = Behaviour(miss_offer=0.3, reject_offer=0.0, break_every=0)
    sim = Simulation(_scenario(behaviour=behaviour), seed=11, start=START)
    log = _run_to_quiet(sim, FakeRouter(offer_timeout=8.0), busy=900, drain=5000)
    timed_out = log.decided(ev.OfferTimedOut)
    assert timed_out
    assert sim.stats.counts["offers_missed"] >= len(timed_out) > 0
    for miss in timed_out:
        agent = miss.agent_id  # type: ignore[attr-defined]
        came_back = [
            e
            for e in log.of(ev.AgentStateChanged)
            if e.agent_id == agent and e.available  # type: ignore[attr-defined]
        ]
        assert came_back, f"{agent} never became available again after a missed offer"
    # The contacts of missed offers were served later by someone.
    assigned = {d.contact_id for d in log.decided(ev.ContactAssigned)}  # type: ignore[attr-defined]
    missed_contacts = {m.contact_id for m in timed_out}  # type: ignore[attr-defined]
    abandoned = {e.contact_id for e in log.of(ev.ContactAbandoned)}  # type: ignore[attr-defined]
    assert missed_contacts <= assigned | abandoned


@pytest.mark.parametrize(
    "scenario_name", ["quiet-day", "monday-spike", "skill-shortage", "broker-restart"]
)
def test_every_arrived_contact_ends_or_abandons_exactly_once(scenario_name: str) -> None:
    scenario = load_scenario(scenario_name)
    sim = Simulation(scenario, seed=2, start=START)
    router = FakeRouter()
    log = _run_to_quiet(sim, router, busy=600, drain=20_000)
    arrived = _arrived(log)
    assert len(arrived) > 40
    finals: dict[str, int] = defaultdict(int)
    for e in log.events:
        if isinstance(e[1], ev.ContactEnded | ev.ContactAbandoned):
            finals[e[1].contact_id] += 1
    assert set(finals) == set(arrived)
    assert set(finals.values()) == {1}
    assert sim.open_contacts() == 0
    assert sim.unconfirmed_contacts() == []  # the router closed every one of them
    assert not router.contacts


def test_holds_and_pauses_say_why_and_how_long_and_resume_before_the_end() -> None:
    scenario = load_scenario("quiet-day")
    sim = Simulation(scenario, seed=9, start=START)
    log = _run_to_quiet(sim, FakeRouter(), busy=1200, drain=20_000)
    arrived = _arrived(log)
    position = {id(e): i for i, (_, e) in enumerate(log.events)}
    held, paused = log.of(ev.ContactHeld), log.of(ev.ContactPaused)
    assert held
    assert paused
    for interruption in [*held, *paused]:
        contact_id = interruption.contact_id  # type: ignore[attr-defined]
        channel = arrived[contact_id].channel
        assert (channel == "voice") == isinstance(interruption, ev.ContactHeld)
        assert interruption.expected_seconds > 0  # type: ignore[attr-defined]
        assert interruption.detail  # type: ignore[attr-defined]
        resumed = [e for e in log.of(ev.ContactResumed) if e.contact_id == contact_id]  # type: ignore[attr-defined]
        ended = [e for e in log.of(ev.ContactEnded) if e.contact_id == contact_id]  # type: ignore[attr-defined]
        assert len(resumed) == 1
        assert len(ended) == 1
        assert position[id(interruption)] < position[id(resumed[0])] < position[id(ended[0])]


def test_dispositions_surveys_manager_requests_and_breaks_all_happen() -> None:
    behaviour = Behaviour(
        manager_request=0.2, survey=0.8, low_score=0.3, resolve=0.7, break_every=120
    )
    sim = Simulation(_scenario(rate=0.3, agents=5, behaviour=behaviour), seed=4, start=START)
    log = _run_to_quiet(sim, FakeRouter(), busy=1800, drain=20_000)
    dispositions = {e.disposition for e in log.of(ev.ContactEnded)}  # type: ignore[attr-defined]
    assert {ev.Disposition.RESOLVED, ev.Disposition.UNRESOLVED} <= dispositions
    scores = [e.score for e in log.of(ev.SurveyAnswered)]  # type: ignore[attr-defined]
    assert scores
    assert all(1 <= s <= 5 for s in scores)
    assert min(scores) <= 2
    assert log.of(ev.ManagerRequested)
    breaks = [e for e in log.of(ev.AgentStateChanged) if not e.available]  # type: ignore[attr-defined]
    assert breaks
    assert {b.reason for b in breaks} <= {"break", "lunch", "training", "coaching"}  # type: ignore[attr-defined]


def test_customers_have_names_phones_and_emails_in_their_language() -> None:
    scenario = load_scenario("quiet-day")
    sim = Simulation(scenario, seed=1, start=START)
    log = drive(sim, FakeRouter(), START + 900)
    customers = [e.customer for e in log.of(ev.ContactArrived)]  # type: ignore[attr-defined]
    languages = {c.language for c in customers}
    assert languages == {"en", "ru", "pl"}
    for customer in customers:
        assert customer.name
        assert customer.phone.startswith("+")
        assert customer.phone[1:].isdigit()
        assert customer.email.endswith((".com", ".org", ".net"))
        assert "@example." in customer.email


def test_unroutable_contacts_wait_until_they_give_up() -> None:
    """skill-shortage: Polish billing has no eligible agent, so it is never assigned."""
    scenario = load_scenario("skill-shortage")
    sim = Simulation(scenario, seed=6, start=START)
    log = _run_to_quiet(sim, FakeRouter(), busy=600, drain=20_000)
    polish = {
        e.contact_id  # type: ignore[attr-defined]
        for e in log.of(ev.ContactArrived)
        if e.queue == "billing-pl"  # type: ignore[attr-defined]
    }
    assert polish
    unroutable = {d.contact_id for d in log.decided(ev.ContactUnroutable)}  # type: ignore[attr-defined]
    assert polish <= unroutable
    assigned = {d.contact_id for d in log.decided(ev.ContactAssigned)}  # type: ignore[attr-defined]
    assert not polish & assigned
    assert sim.stats.counts["unroutable"] >= len(polish)


def test_a_shift_that_ends_logs_out_only_after_its_last_contact() -> None:
    scenario = load_scenario("skill-shortage")  # tech-ru-01 logs out at 90 s
    sim = Simulation(scenario, seed=8, start=START)
    log = drive(sim, FakeRouter(), START + 600)
    logouts = [(t, e) for t, e in log.events if isinstance(e, ev.AgentLoggedOut)]
    assert [e.agent_id for _, e in logouts] == ["tech-ru-01"]
    logout_at = logouts[0][0]
    assert logout_at >= START + 90
    ends = [
        t for t, e in log.events if isinstance(e, ev.ContactEnded) and e.agent_id == "tech-ru-01"
    ]
    assert all(t <= logout_at for t in ends)


def test_shutdown_ends_every_contact_and_logs_every_agent_out() -> None:
    scenario = load_scenario("monday-spike")
    sim = Simulation(scenario, seed=12, start=START)
    log = drive(sim, FakeRouter(), START + 200)
    assert sim.open_contacts() > 0
    abandoned_by_patience = sim.stats.counts["abandoned"]
    final = sim.shutdown(START + 200)
    assert sim.open_contacts() == 0
    # customers still waiting hang up because the run ends: counted apart, not as abandons
    hung_up = sum(isinstance(e, ev.ContactAbandoned) for e in final)
    assert sim.stats.counts["hung_up_at_close"] == hung_up
    assert sim.stats.counts["abandoned"] == abandoned_by_patience
    logged_in = {e.agent_id for e in log.of(ev.AgentLoggedIn)}  # type: ignore[attr-defined]
    assert {e.agent_id for e in final if isinstance(e, ev.AgentLoggedOut)} == logged_in
    assert sim.next_deadline() is None
    assert all(e.at == START + 200 for e in final)


def test_decisions_about_strangers_are_ignored() -> None:
    sim = Simulation(_scenario(), seed=1, start=START)
    sim.advance(START + 1)
    for decision in (
        ev.OfferMade("o1", "someone-else", "nobody", START + 10),
        ev.ContactAssigned("o1", "someone-else", "billing-01"),
        ev.OfferTimedOut("o1", "someone-else", "nobody"),
        ev.ContactClosed("someone-else", abandoned=True),
        ev.AgentStatusChanged("nobody", ev.AgentPresence.AWAY, "missed offer"),
    ):
        assert sim.apply(decision, START + 2) == []


def test_an_offer_to_an_agent_set_away_is_declined_at_once() -> None:
    """After a missed offer the router set the agent away; a racing offer is declined."""
    sim = Simulation(_scenario(rate=1.0), seed=1, start=START)
    now, arrivals = START, []
    while not arrivals:
        now += 0.5
        arrivals = [e for e in sim.advance(now) if isinstance(e, ev.ContactArrived)]
    contact_id = arrivals[0].contact_id
    sim.apply(ev.AgentStatusChanged("billing-01", ev.AgentPresence.AWAY, "missed offer"), now)
    sim.apply(ev.OfferMade("o1", contact_id, "billing-01", now + 20), now)
    out = [e for e in sim.advance(now + 0.5) if isinstance(e, ev.OfferRejected)]
    assert [(e.offer_id, e.reason) for e in out] == [("o1", "agent not ready")]
    assert sim.contact_stage(contact_id) is ContactStage.RINGING
