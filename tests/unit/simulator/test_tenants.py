"""Two tenants in one simulated run (issue #16): the shipped scenarios add a Polish-only
tenant, ``wroclaw``, beside ``acme``; each tenant's traffic uses its own queues and
agents, is keyed by its own domain, and the report counts both, separately and together."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from services.common.clock import FakeClock
from services.common.codec import decode_envelope
from services.common.topics import Topics
from services.simulator import events as ev
from services.simulator.__main__ import run_report
from services.simulator.adapters.kafka import FakeDecisions, FakePublisher
from services.simulator.core import Simulation
from services.simulator.errors import ScenarioError
from services.simulator.runner import SimulationRunner
from services.simulator.scenario import SCENARIO_DIR, load_scenario, parse_scenario
from tests.support import until
from tests.unit.simulator.routing_double import FakeRouter, drive

START = 1_700_000_000.0
#: The tenant's queues, as its policy (deploy/policies/wroclaw.toml, /work/notes) names them.
WROCLAW_QUEUES = {"faktury", "serwis", "sprzedaz"}
SHIPPED = sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_scenario_runs_acme_and_a_polish_only_tenant(name: str) -> None:
    scenario = load_scenario(name)
    assert [t.domain for t in scenario.all_tenants] == ["acme", "wroclaw"]
    [wroclaw] = scenario.tenants
    assert {q.name for q in wroclaw.queues} == WROCLAW_QUEUES
    assert {q.language for q in wroclaw.queues} == {"pl"}
    assert {lang for group in wroclaw.agents for lang in group.languages} == {"pl"}
    assert 0 < wroclaw.peak_rate < scenario.peak_rate
    # every queue has someone who speaks its language with the skill it asks for
    for queue in wroclaw.queues:
        assert any(
            queue.language in group.languages
            and dict(group.skills).get(queue.skill, 0) >= queue.min_proficiency
            for group in wroclaw.agents
        ), queue.name
    assert (wroclaw.behaviour, wroclaw.channels) == (scenario.behaviour, scenario.channels)


def test_the_polish_tenant_speaks_polish_in_its_own_queues() -> None:
    [wroclaw] = load_scenario("quiet-day").tenants
    sim = Simulation(wroclaw, seed=2, start=START, run_id="w")
    log = drive(sim, FakeRouter(), START + 1800)
    arrivals = [e for _, e in log.events if isinstance(e, ev.ContactArrived)]
    logins = [e for _, e in log.events if isinstance(e, ev.AgentLoggedIn)]
    assert len(arrivals) > 50
    assert {a.queue for a in arrivals} == WROCLAW_QUEUES
    assert {a.language for a in arrivals} == {a.customer.language for a in arrivals} == {"pl"}
    assert {login.languages for login in logins} == {("pl",)}
    assert sim.stats.counts["assigned"] > 0.8 * len(arrivals), "its own agents answer"


def test_tenants_are_read_with_the_main_tenants_defaults_and_checked() -> None:
    base: dict[str, Any] = {
        "name": "x",
        "arrivals": {"rate": 0.5, "profile": [[0, 1.0], [60, 2.0]]},
        "queues": [{"skill": "billing", "language": "en", "channels": {"voice": 1}}],
        "tenants": [
            {
                "domain": "wroclaw",
                "queues": [
                    {
                        "name": "faktury",
                        "skill": "billing",
                        "language": "pl",
                        "channels": {"chat": 1},
                    }
                ],
            }
        ],
    }
    scenario = parse_scenario(base)
    [tenant] = scenario.tenants
    assert (tenant.name, tenant.rate, tenant.profile) == ("x/wroclaw", 0.5, scenario.profile)
    assert tenant.tenants == ()
    assert tenant.broker_restart is None
    scaled = scenario.with_rate(1.0)
    assert (scaled.rate, scaled.tenants[0].rate) == (1.0, 1.0)
    assert scenario.with_domain("globex").domain == "globex"
    with pytest.raises(ScenarioError, match="'wroclaw' is one of the scenario's other tenants"):
        scenario.with_domain("wroclaw")

    twice = {**base, "tenants": [*base["tenants"], {**base["tenants"][0]}]}
    with pytest.raises(ScenarioError, match=r"tenants: domains must be unique"):
        parse_scenario(twice)
    typo = {**base, "tenants": [{**base["tenants"][0], "queue": []}]}
    with pytest.raises(ScenarioError, match=r"tenants\[0\]\.queue: unknown field of a tenant"):
        parse_scenario(typo)
    empty = {**base, "tenants": [{"domain": "wroclaw"}]}
    with pytest.raises(ScenarioError, match=r"tenants\[0\]\.queues: at least one"):
        parse_scenario(empty)


@pytest.mark.timeout(30)
async def test_each_tenant_publishes_under_its_domain_and_the_report_counts_both() -> None:
    scenario = load_scenario("quiet-day")
    clock = FakeClock(START)
    topics = Topics(prefix="t.")
    runners = [
        SimulationRunner(
            Simulation(replace(tenant, rate=0.0), seed=1, start=START, run_id=f"r{n}"),
            FakePublisher(),
            FakeDecisions(),
            clock,
            topics,
            tenant.domain,
        )
        for n, tenant in enumerate(scenario.all_tenants)
    ]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(r.run(stop)) for r in runners]
    clock.advance(5)
    for runner, tenant in zip(runners, scenario.all_tenants, strict=True):
        agents = sum(group.count for group in tenant.agents)
        await until(lambda r=runner, n=agents: r.sim.stats.counts["agent_logins"] == n, 10)
    stop.set()
    await asyncio.gather(*tasks)
    for runner in runners:
        publisher = runner.publisher
        assert isinstance(publisher, FakePublisher)
        envelopes = [decode_envelope(r.value, r.headers) for r in publisher.sent]
        assert {e.domain for e in envelopes} == {runner.domain}
        assert {r.key for r in publisher.sent} == {runner.domain.encode()}

    report = run_report("quiet-day", runners)
    acme, wroclaw = (runners[0].sim.stats.counts, runners[1].sim.stats.counts)
    assert report["agent_logins"] == acme["agent_logins"] + wroclaw["agent_logins"]
    assert report["domain"] == "acme"
    tenants = report["tenants"]
    assert isinstance(tenants, dict)
    assert tenants["wroclaw"]["agent_logins"] == wroclaw["agent_logins"] == 5
    assert tenants["acme"]["published"] == runners[0].published
