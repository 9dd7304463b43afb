"""Every metric the dashboard, alerts and live summary name is really exported by a service."""

from __future__ import annotations

import importlib

import pytest
from prometheus_client import CollectorRegistry

from services.common.metrics import RuntimeMetrics
from services.launcher.metric_names import AGREED_METRICS, base_metric_name

# (module, class) of each service's metrics dataclass, built with ``create(registry)``.
SERVICE_METRICS = {
    "router": ("services.router.metrics", "RouterMetrics"),
    "escalation": ("services.escalation.metrics", "EscalationMetrics"),
    "notifier": ("services.notifier.metrics", "NotifierMetrics"),
}


def exported_by(exporter: str) -> set[str]:
    registry = CollectorRegistry()
    RuntimeMetrics.create(registry)
    if exporter != "runtime":
        module, name = SERVICE_METRICS[exporter]
        getattr(importlib.import_module(module), name).create(registry)
    names: set[str] = set()
    for family in registry.collect():
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
    return {base_metric_name(n) for n in names}


@pytest.mark.parametrize("exporter", ["runtime", "router", "escalation", "notifier"])
def test_each_service_exports_the_metrics_it_agreed_to(exporter: str) -> None:
    agreed = {m.name for m in AGREED_METRICS.values() if m.exporter == exporter}
    missing = agreed - exported_by(exporter)
    assert not missing, f"{exporter} does not export {sorted(missing)}"


@pytest.mark.parametrize("exporter", ["runtime", "router", "escalation", "notifier"])
def test_each_metric_carries_the_labels_it_agreed_to(exporter: str) -> None:
    """A dashboard query ``sum by (domain, queue)`` is only right if the labels are."""
    registry = CollectorRegistry()
    RuntimeMetrics.create(registry)
    if exporter != "runtime":
        module, name = SERVICE_METRICS[exporter]
        getattr(importlib.import_module(module), name).create(registry)
    exported = {
        base_metric_name(c._name + ("_total" if c._type == "counter" else "")): c._labelnames  # type: ignore[attr-defined]
        for c in registry._collector_to_names  # type: ignore[attr-defined]
    }
    for metric in AGREED_METRICS.values():
        if metric.exporter == exporter:
            assert exported[metric.name] == metric.labels, metric.name
