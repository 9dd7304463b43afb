"""The launcher: what it passes each service, a missing module, a full run with stand-in services."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from services.common.topics import TopicSpec
from services.launcher.app import Launcher, RunConfig
from services.launcher.errors import LaunchError
from services.launcher.plan import ROOT, ChildSpec, StackOptions, missing_modules, plan_stack
from services.launcher.policies import DemoPolicy
from services.launcher.supervisor import Supervisor
from services.simulator.scenario import load_scenario, resolve_scenario_path
from tests.support import until

FAKE = "tests.unit.ops.fake_service"


def _options(tmp_path: Path, **changes: object) -> StackOptions:
    options = StackOptions(
        scenario_path=resolve_scenario_path("quiet-day"),
        bootstrap_servers="127.0.0.1:19092",
        topic_prefix="run1.",
        run_dir=tmp_path,
    )
    return replace(options, **changes)  # type: ignore[arg-type]


def test_each_service_gets_the_agreed_env_and_ports(tmp_path: Path) -> None:
    specs = {s.name: s for s in plan_stack(_options(tmp_path))}
    assert list(specs) == ["gateway", "router", "escalation", "notifier", "simulator"]
    for name, grpc_port, metrics_port in (
        ("router", 50051, 9401),
        ("escalation", 50052, 9402),
        ("notifier", 50053, 9403),
    ):
        spec = specs[name]
        assert spec.command("py") == ["py", "-m", f"services.{name}"]
        assert spec.env["SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS"] == "127.0.0.1:19092"
        assert spec.env["SWITCHBOARD_KAFKA__TOPIC_PREFIX"] == "run1."
        assert spec.env["SWITCHBOARD_GRPC__PORT"] == str(grpc_port)
        assert spec.env["SWITCHBOARD_METRICS__PORT"] == str(metrics_port)
        config = ROOT / "deploy" / "config" / f"{name}.toml"
        assert spec.env.get("SWITCHBOARD_CONFIG") == (str(config) if config.exists() else None)
    assert specs["gateway"].command("py") == [
        "py",
        "-m",
        "services.notifier.gateway_stub",
        "--port",
        "50060",
    ]
    sim = specs["simulator"].args
    assert sim[sim.index("--topic-prefix") + 1] == "run1."
    assert sim[sim.index("--bootstrap-servers") + 1] == "127.0.0.1:19092"
    assert "--rate" not in sim
    with_rate = plan_stack(_options(tmp_path, rate=2.5, skip=frozenset({"gateway"})))
    assert with_rate[0].name == "router"
    assert with_rate[-1].args[-2:] == ("--rate", "2.5")


def test_the_simulator_stops_first_and_the_gateway_last(tmp_path: Path) -> None:
    stages = {s.name: s.stop_stage for s in plan_stack(_options(tmp_path))}
    assert stages["simulator"] < stages["notifier"] == stages["escalation"] < stages["router"]
    assert stages["router"] < stages["gateway"]


def test_missing_modules_are_found_without_importing(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__main__.py").write_text("")
    (tmp_path / "single.py").write_text("")
    specs = [ChildSpec("a", "pkg"), ChildSpec("b", "single"), ChildSpec("c", "absent.mod")]
    assert [s.name for s in missing_modules(specs, tmp_path)] == ["c"]


class FakeBroker:
    """Records calls instead of running kafka.sh."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.started_here = True

    async def ensure_up(self) -> None:
        self.calls.append("up")

    async def stop(self) -> None:
        self.calls.append("down")

    async def restart(self, downtime: float, stop: asyncio.Event) -> bool:
        self.calls.append("restart")
        return True


async def _no_provision(servers: str, specs: Sequence[TopicSpec]) -> list[str]:
    return [s.name for s in specs]


class FakePolicies:
    """Records what the launcher would apply through PolicyService."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Path, list[str]]] = []

    async def __call__(self, target: str, token: Path, policies: Sequence[DemoPolicy]) -> list[str]:
        self.calls.append((target, token, [p.domain for p in policies]))
        return [f"{p.domain}: version 1 applied from {p.path.name}" for p in policies]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _launcher(
    tmp_path: Path, specs: list[ChildSpec], out: io.StringIO, **config: object
) -> tuple[Launcher, FakeBroker]:
    broker = FakeBroker()
    launcher = Launcher(
        load_scenario("quiet-day"),
        _options(tmp_path),
        RunConfig(refresh=0.2, health_timeout=30, stop_grace=10, **config),  # type: ignore[arg-type]
        out,
        broker,  # type: ignore[arg-type]
        Supervisor(log_dir=tmp_path / "logs", base_env=dict(os.environ)),
        provision=_no_provision,
        apply_policies=FakePolicies(),
    )
    launcher.specs = specs
    return launcher, broker


def _fake(name: str, **env: str) -> ChildSpec:
    grpc_port, metrics_port = _free_port(), _free_port()
    return ChildSpec(
        name=name,
        module=FAKE,
        env={
            "SWITCHBOARD_GRPC__PORT": str(grpc_port),
            "SWITCHBOARD_METRICS__PORT": str(metrics_port),
            "SWITCHBOARD_KAFKA__TOPIC_PREFIX": "run1.",
            **env,
        },
        grpc_port=grpc_port,
        metrics_port=metrics_port,
    )


def _gone(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.timeout(60)
async def test_a_missing_service_is_a_clear_error_and_nothing_starts(tmp_path: Path) -> None:
    out = io.StringIO()
    launcher, broker = _launcher(tmp_path, [ChildSpec("router", "services.no_such_router")], out)
    with pytest.raises(LaunchError, match=r"router: python -m services\.no_such_router needs"):
        await launcher.run(asyncio.Event())
    assert broker.calls == []


@pytest.mark.timeout(60)
async def test_full_run_waits_for_health_shows_the_summary_and_stops_everything(
    tmp_path: Path,
) -> None:
    out = io.StringIO()
    specs = [_fake("router"), _fake("escalation")]
    launcher, broker = _launcher(tmp_path, specs, out)
    stop = asyncio.Event()
    run = asyncio.create_task(launcher.run(stop))
    await until(lambda: "billing-en" in out.getvalue(), 30, "the live summary")
    stop.set()
    code = await run
    text = out.getvalue()
    assert code == 0
    assert "router      SERVING" in text
    assert f"http://127.0.0.1:{specs[0].metrics_port}/metrics" in text
    assert "== Switchboard run report: quiet-day" in text
    assert "Escalations open: supervisor 0 · manager 2" in text  # one per stand-in
    assert "children: router ok, escalation ok" in text
    assert broker.calls == ["up", "down"]
    for child in launcher.supervisor.children:
        assert child.process.returncode == 0
        assert _gone(child.process.pid)
    assert "fake service: stopped" in (tmp_path / "logs" / "router.log").read_text()
    # the demo tenants' policies, through the router, with the demo operator's token
    applied = launcher.apply_policies
    assert isinstance(applied, FakePolicies)
    assert applied.calls == [
        (
            f"127.0.0.1:{specs[0].grpc_port}",
            tmp_path / "identity" / "tokens" / "ops.jwt",
            ["acme", "wroclaw"],
        )
    ]
    assert "  wroclaw: version 1 applied from wroclaw.toml" in text
    assert text.index("escalation  SERVING") < text.index("policies: applying 2 tenant(s)")


@pytest.mark.timeout(60)
async def test_the_tenants_policies_are_applied_before_the_simulator_starts(
    tmp_path: Path,
) -> None:
    out = io.StringIO()
    # the simulator has no gRPC port: the launcher starts it and moves on
    specs = [_fake("router"), replace(_fake("simulator"), grpc_port=None, metrics_port=None)]
    launcher, _ = _launcher(tmp_path, specs, out, duration=0.5)
    order: list[str] = []
    start = launcher.supervisor.start

    async def recording_start(spec: ChildSpec):  # type: ignore[no-untyped-def]
        order.append(spec.name)
        return await start(spec)

    async def policies(target: str, token: Path, found: Sequence[DemoPolicy]) -> list[str]:
        order.append("policies")
        return []

    launcher.supervisor.start = recording_start  # type: ignore[method-assign]
    launcher.apply_policies = policies
    await launcher.run(asyncio.Event())
    assert order[:3] == ["router", "policies", "simulator"]


@pytest.mark.timeout(60)
async def test_a_child_failing_at_start_stops_the_rest_and_shows_its_log(tmp_path: Path) -> None:
    out = io.StringIO()
    specs = [_fake("router"), _fake("escalation", FAKE_EXIT_AT_START="3")]
    launcher, broker = _launcher(tmp_path, specs, out)
    code = await launcher.run(asyncio.Event())
    text = out.getvalue()
    assert code == 1
    assert "escalation exited with code 3 while starting" in text
    assert "fake service: broken configuration" in text
    assert broker.calls == ["up", "down"]
    assert all(_gone(c.process.pid) for c in launcher.supervisor.children)


@pytest.mark.timeout(60)
async def test_the_duration_ends_the_run_on_its_own(tmp_path: Path) -> None:
    out = io.StringIO()
    launcher, _ = _launcher(tmp_path, [_fake("router")], out, duration=0.5)
    assert await launcher.run(asyncio.Event()) == 0
    assert "duration of 0s elapsed" in out.getvalue() or "duration of 1s elapsed" in out.getvalue()


@pytest.mark.timeout(60)
async def test_a_stubborn_child_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    supervisor = Supervisor(log_dir=tmp_path)
    child = await supervisor.start(_fake("stubborn", FAKE_IGNORE_TERM="1"))
    await supervisor.wait_healthy(child, within=30)
    codes = await supervisor.stop_all(grace=0.5)
    assert codes == {"stubborn": -signal.SIGKILL}
    assert _gone(child.process.pid)
