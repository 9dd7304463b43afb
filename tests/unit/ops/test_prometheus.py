"""Prometheus assets: scrape every service, alert on what operations asked for, pass promtool."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.launcher.plan import StackOptions, plan_stack
from tests.unit.ops.assets import DEPLOY, load_all, metric_names, run_promtool, unknown_metrics

PROM = DEPLOY / "prometheus"
REQUIRED_ALERTS = {
    "SwitchboardServiceLevelBelowTarget",
    "SwitchboardLongestWaitHigh",
    "SwitchboardEscalationsUnacknowledged",
    "SwitchboardConsumerLagGrowing",
    "SwitchboardDeadLetters",
}


def _rules() -> list[dict[str, object]]:
    (doc,) = load_all(PROM / "alerts.yml")
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_local_scrape_config_targets_every_service_metrics_port(tmp_path: Path) -> None:
    (config,) = load_all(PROM / "prometheus.yml")
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    ports = {
        s.metrics_port for s in plan_stack(StackOptions(scenario_path=tmp_path)) if s.metrics_port
    }
    assert (
        targets
        == {f"127.0.0.1:{port}" for port in ports}
        == {
            "127.0.0.1:9401",
            "127.0.0.1:9402",
            "127.0.0.1:9403",
        }
    )
    assert config["rule_files"] == ["alerts.yml"]


def test_compose_scrape_config_names_the_compose_services() -> None:
    (config,) = load_all(PROM / "prometheus.compose.yml")
    targets = {
        t for job in config["scrape_configs"] for s in job["static_configs"] for t in s["targets"]
    }
    assert targets == {"router:9401", "escalation:9402", "notifier:9403"}


def test_the_alerts_operations_asked_for_exist_with_severity_and_summary() -> None:
    rules = _rules()
    names = {rule["alert"] for rule in rules}
    assert names >= REQUIRED_ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}  # type: ignore[index]
        assert rule["annotations"]["summary"]  # type: ignore[index]
    service_level = next(r for r in rules if r["alert"] == "SwitchboardServiceLevelBelowTarget")
    assert service_level["for"] == "5m"


@pytest.mark.parametrize("rule", _rules(), ids=lambda rule: str(rule["alert"]))
def test_every_alert_names_only_agreed_metrics(rule: dict[str, object]) -> None:
    expr = str(rule["expr"])
    assert metric_names(expr), f"{rule['alert']} selects no metric"
    assert not unknown_metrics(expr), f"{rule['alert']}: unknown {unknown_metrics(expr)}"


def test_promtool_accepts_the_rules() -> None:
    result = run_promtool("check", "rules", str(PROM / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.compose.yml"])
def test_promtool_accepts_the_scrape_configs(config: str) -> None:
    result = run_promtool("check", "config", str(PROM / config))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_fire_when_they_should() -> None:
    """promtool's rule unit tests: service level, dead letters, escalations, lag."""
    result = run_promtool("test", "rules", str(PROM / "alerts_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
