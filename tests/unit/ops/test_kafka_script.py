"""deploy/kafka/kafka.sh waits for *this* start's ready line (regression for c068c51: a
``tail | grep -q`` under ``pipefail`` died of SIGPIPE on a long log, and ``make test``
after a few runs timed out with "could not start Kafka")."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "deploy" / "kafka" / "kafka.sh"
READY = "[2026-11-25 10:00:00,000] INFO [KafkaRaftServer nodeId=1] Kafka Server started"


def started_since(data: Path, seen: int) -> int:
    """Run the script's own ``started_since`` (cut out of it) under its strict mode."""
    script = SCRIPT.read_text()
    start = script.index("started_since() {")
    function = script[start : script.index("\n}\n", start) + 3]
    program = f"set -euo pipefail\ndata={data}\n{function}\nstarted_since {seen}\n"
    return subprocess.run(["bash", "-c", program], check=False, timeout=60).returncode


@pytest.fixture
def data(tmp_path: Path) -> Path:
    (tmp_path / "logs").mkdir()
    return tmp_path


def test_the_ready_line_after_a_long_start_is_found(data: Path) -> None:
    noise = "".join(f"INFO loading partition t-{n}\n" for n in range(300_000))
    (data / "logs" / "server.log").write_text(f"old start\n{READY}\n{noise}{READY}\n{noise}")
    assert started_since(data, 2) == 0


def test_a_previous_start_s_ready_line_does_not_count(data: Path) -> None:
    (data / "logs" / "server.log").write_text(f"{READY}\nshut down\nstarting again\n")
    assert started_since(data, 1) == 1


def test_no_log_yet_means_not_started(data: Path) -> None:
    assert started_since(data, 0) != 0


def test_status_says_nothing_runs_and_fails(tmp_path: Path) -> None:
    """`kafka.sh status` used to print nothing; now it says what it found."""
    result = subprocess.run(
        [str(SCRIPT), "status"],
        env={"PATH": "/usr/bin:/bin", "KAFKA_PORT": "1", "KAFKA_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 1
    assert (
        result.stdout.strip()
        == f"kafka: not running (nothing answers on 127.0.0.1:1; data {tmp_path})"
    )
