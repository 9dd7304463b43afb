"""Scenario files: every shipped one loads, bad values name their field, the profile interpolates."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from services.simulator.errors import ScenarioError
from services.simulator.scenario import SCENARIO_DIR, load_scenario, parse_scenario

SHIPPED = sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))
MINIMAL = {
    "name": "x",
    "queues": [{"skill": "billing", "language": "en", "channels": {"voice": 1}}],
}


def test_the_four_required_scenarios_are_shipped() -> None:
    assert {"quiet-day", "monday-spike", "skill-shortage", "broker-restart"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_scenario_loads_with_sane_traffic(name: str) -> None:
    scenario = load_scenario(name)
    assert scenario.name == name
    assert scenario.queues
    assert scenario.agents
    # A laptop-friendly default: at most about one contact per second at the peak.
    assert 0 < scenario.peak_rate <= 1.0
    assert {q.language for q in scenario.queues} <= {"en", "ru", "pl"}


def test_skill_shortage_really_has_no_polish_billing_agent() -> None:
    scenario = load_scenario("skill-shortage")
    polish_billing = [q for q in scenario.queues if q.language == "pl" and q.skill == "billing"]
    assert polish_billing
    need = polish_billing[0].min_proficiency
    for group in scenario.agents:
        assert not ("pl" in group.languages and dict(group.skills).get("billing", 0) >= need)


def test_broker_restart_scenario_tells_the_launcher_when() -> None:
    restart = load_scenario("broker-restart").broker_restart
    assert restart is not None
    assert restart.at > 0
    assert restart.downtime > 0


def test_minimal_scenario_gets_calm_defaults() -> None:
    scenario = parse_scenario(MINIMAL)
    assert scenario.queues[0].name == "billing-en"
    assert scenario.domain == "acme"
    assert scenario.rate == 0.25
    assert set(scenario.channels) == {"voice", "chat", "email"}


def test_profile_is_linear_between_points_and_holds_after_the_last() -> None:
    scenario = parse_scenario({**MINIMAL, "arrivals": {"rate": 2.0, "profile": [[0, 1], [100, 3]]}})
    assert scenario.multiplier(0) == 1
    assert scenario.multiplier(50) == pytest.approx(2.0)
    assert scenario.multiplier(1000) == 3
    assert scenario.rate_at(50) == pytest.approx(4.0)
    assert scenario.peak_rate == 6.0
    assert scenario.with_rate(1.0).peak_rate == 3.0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            {"queues": [{"skill": "billing", "language": "de", "channels": {"voice": 1}}]},
            "queues[0].language",
        ),
        (
            {"queues": [{"skill": "billing", "language": "en", "channels": {"fax": 1}}]},
            "queues[0].channels",
        ),
        ({"behaviour": {"miss_offer": 1.5}}, "behaviour.miss_offer"),
        ({"behaviour": {"ring": [5, 1]}}, "behaviour.ring"),
        ({"arrivals": {"profile": [[10, 1], [5, 1]]}}, "arrivals.profile"),
        ({"arrivals": {"profile": [[0, 0]]}}, "arrivals.profile"),
        (
            {"agents": [{"team": "t", "skills": {"billing": 11}, "languages": ["en"]}]},
            "agents[0].skills.billing",
        ),
        ({"queues": []}, "queues"),
    ],
)
def test_bad_values_name_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(ScenarioError, match=re.escape(f"bad.toml: {field}")):
        parse_scenario({**MINIMAL, **change}, "bad.toml")


def test_an_unknown_scenario_lists_the_known_ones(tmp_path: Path) -> None:
    (tmp_path / "calm.toml").write_text('name = "calm"\n')
    with pytest.raises(ScenarioError, match="known scenarios: calm"):
        load_scenario("nope", tmp_path)


def test_invalid_toml_is_reported_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("name = \n")
    with pytest.raises(ScenarioError, match=r"broken\.toml: not valid TOML"):
        load_scenario(str(path))


def test_shipped_files_are_plain_toml() -> None:
    for path in SCENARIO_DIR.glob("*.toml"):
        assert tomllib.loads(path.read_text())["name"] == path.stem
