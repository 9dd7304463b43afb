"""Every service process starts through ``service_main`` (regression for 8667110: two
services ran without uvloop, and settings errors were reported three different ways)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("service", ["router", "escalation", "notifier"])
def test_a_bad_setting_exits_2_naming_the_field(service: str) -> None:
    result = _run(["-m", f"services.{service}"], SWITCHBOARD_KAFKA__MAX_BATCH="0")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"{service}: ")
    assert "kafka.max_batch" in result.stderr


def test_service_main_runs_on_uvloop_with_cached_loggers() -> None:
    probe = """
import asyncio, sys, structlog
from services.common.config import ServiceSettings
from services.common.runtime import service_main

async def run(settings, registry):
    loop = type(asyncio.get_running_loop())
    print(loop.__module__, structlog.get_config()["cache_logger_on_first_use"])

service_main("probe", lambda: ServiceSettings(metrics={"port": 0}), run)
"""
    result = _run(["-c", probe])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["uvloop", "True"]
