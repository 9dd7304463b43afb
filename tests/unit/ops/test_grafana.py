"""The Grafana dashboard imports (uid, title, schemaVersion, gridPos, targets, datasource
variable), has the panels an operations lead reads, and queries only agreed metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.launcher.metric_names import AGREED_METRICS
from tests.unit.ops.assets import DEPLOY, metric_names, run_promtool, unknown_metrics

GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "switchboard.json"


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _panels() -> list[dict[str, Any]]:
    return [p for p in _dashboard()["panels"] if p["type"] != "row"]


def _exprs() -> list[str]:
    return [t["expr"] for p in _panels() for t in p["targets"]]


def test_dashboard_has_what_grafana_import_needs() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == "switchboard-ops"
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    assert dashboard["schemaVersion"] >= 36
    assert "id" not in dashboard or dashboard["id"] is None  # import assigns its own
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert {"x", "y", "w", "h"} <= set(grid)
        assert grid["x"] >= 0
        assert grid["x"] + grid["w"] <= 24
    for panel in _panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids))
        for target in panel["targets"]:
            assert target["expr"].strip()
            assert target["datasource"]["uid"] == "${datasource}"


def test_panels_do_not_overlap() -> None:
    cells: set[tuple[int, int]] = set()
    for panel in _dashboard()["panels"]:
        g = panel["gridPos"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & mine, panel["title"]
        cells |= mine


@pytest.mark.parametrize(
    "metric",
    [
        "switchboard_router_service_level",
        "switchboard_router_contacts_abandoned_total",
        "switchboard_router_contacts_waiting",
        "switchboard_router_longest_wait_seconds",
        "switchboard_router_agents",
        "switchboard_router_occupancy",
        "switchboard_escalation_open",
        "switchboard_notifier_notifications_total",
        "switchboard_router_decision_seconds_bucket",
        "switchboard_consumer_lag",
    ],
)
def test_the_panels_an_operations_lead_reads_are_there(metric: str) -> None:
    assert any(metric in metric_names(expr) for expr in _exprs()), metric


@pytest.mark.parametrize("expr", _exprs())
def test_every_query_of_a_per_domain_metric_follows_the_domain_variable(expr: str) -> None:
    """The router labels its series by domain (tenant); a panel never mixes the tenants
    the Domain drop-down left out."""
    per_domain = {m for m, spec in AGREED_METRICS.items() if "domain" in spec.labels}
    names = {n.removesuffix("_bucket") for n in metric_names(expr)}
    if names & per_domain:
        assert 'domain=~"$domain"' in expr, expr


def test_the_dashboard_has_a_domain_variable() -> None:
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    assert "label_values(switchboard_router_contacts_waiting, domain)" in json.dumps(
        variables["domain"]["query"]
    )
    assert variables["domain"]["includeAll"]


def test_decision_latency_is_a_histogram_quantile() -> None:
    latency = [e for e in _exprs() if "switchboard_router_decision_seconds_bucket" in e]
    assert latency
    assert all(e.startswith("histogram_quantile(") for e in latency)


@pytest.mark.parametrize("expr", _exprs())
def test_every_panel_query_names_only_agreed_metrics(expr: str) -> None:
    names = metric_names(expr)
    assert names, expr
    assert not unknown_metrics(expr), unknown_metrics(expr)
    assert "up" not in names


def test_every_agreed_router_metric_appears_somewhere() -> None:
    used = {name for expr in _exprs() for name in metric_names(expr)}
    used |= {n.removesuffix("_bucket") for n in used}
    router = {m for m, spec in AGREED_METRICS.items() if spec.exporter == "router"}
    assert router <= used


def test_every_panel_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query as a recording rule (dashboard variables substituted)."""
    rules = [
        {
            "record": f"switchboard:dashboard_query_{i}",
            "expr": e.replace("$queue", ".*").replace("$domain", ".*"),
        }
        for i, e in enumerate(_exprs())
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run_promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_provisioning_points_at_the_dashboard_folder_and_prometheus() -> None:
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "switchboard.yml").read_text()
    )
    assert provider["apiVersion"] == 1
    (entry,) = provider["providers"]
    assert entry["type"] == "file"
    assert entry["options"]["path"].endswith("/switchboard")
    datasources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    assert [d["type"] for d in datasources["datasources"]] == ["prometheus"]
