"""Helpers for the asset tests: load YAML documents, find metric names in PromQL, run promtool."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.launcher.metric_names import AGREED_METRICS, base_metric_name

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
#: Series Prometheus itself provides, allowed in rules beside the agreed metrics.
BUILTIN_SERIES = frozenset({"up"})
_FUNCTIONS_AND_KEYWORDS = frozenset(
    {
        "sum", "avg", "min", "max", "count", "by", "without", "rate", "increase", "delta",
        "deriv", "irate", "histogram_quantile", "time", "and", "or", "unless", "on",
        "ignoring", "le", "bool", "offset", "min_over_time", "max_over_time", "avg_over_time",
        "humanizePercentage", "humanizeDuration", "label_values", "abs", "clamp_min",
    }
)  # fmt: skip
_METRIC = re.compile(r"\b(switchboard_[a-z0-9_]+|up)\b")


def load_all(path: Path) -> list[dict[str, Any]]:
    """Every YAML document in ``path`` (empty documents dropped)."""
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (``switchboard_*`` and builtins)."""
    return set(_METRIC.findall(expr))


def unknown_metrics(expr: str) -> set[str]:
    """Names in ``expr`` that are neither agreed metrics nor Prometheus builtins."""
    return {
        name
        for name in metric_names(expr)
        if name not in BUILTIN_SERIES and base_metric_name(name) not in AGREED_METRICS
    }


def promtool() -> str:
    """The promtool binary; CI must have it (``.ci/run`` installs it), elsewhere it may skip."""
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI") or os.environ.get("SWITCHBOARD_REQUIRE_PROMTOOL") == "1":
            pytest.fail("promtool is required in CI (apt-get install prometheus)")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return found


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )
