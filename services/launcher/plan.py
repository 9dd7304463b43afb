"""What the launcher starts, with exactly which flags and environment: one place to read.

The services read ``SWITCHBOARD_CONFIG`` (their TOML in ``deploy/config``) and the
``SWITCHBOARD_*`` overrides below; the launcher sets only what must agree across the
stack (broker, topic prefix, ports, log format), so each service's own file stays the
source of everything else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from services.launcher.demo_credentials import AUDIENCES, DEMO_ISSUER, SERVICES_SUBJECT

__all__ = [
    "ROOT",
    "ChildSpec",
    "StackOptions",
    "identity_dir",
    "missing_modules",
    "plan_stack",
]

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class StackOptions:
    """The choices of one ``make run``."""

    scenario_path: Path
    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    rate: float | None = None
    seed: int = 1
    run_dir: Path = ROOT / ".run"
    host: str = "127.0.0.1"
    skip: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """One child process: ``python -m module args`` with ``env`` added to the launcher's."""

    name: str
    module: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    grpc_port: int | None = None
    metrics_port: int | None = None
    #: Stop order: lower stops first (the simulator ends the day while the router still runs).
    stop_stage: int = 0

    def command(self, python: str) -> list[str]:
        return [python, "-m", self.module, *self.args]

    def module_file(self, root: Path = ROOT) -> list[Path]:
        """Files, any one of which makes ``python -m module`` work."""
        base = root.joinpath(*self.module.split("."))
        return [base / "__main__.py", base.with_suffix(".py")]


#: (name, module, gRPC port, metrics port, stop stage)
_SERVICES = (
    ("router", "services.router", 50051, 9401, 2),
    ("escalation", "services.escalation", 50052, 9402, 1),
    ("notifier", "services.notifier", 50053, 9403, 1),
)
GATEWAY_PORT = 50060


def identity_dir(options: StackOptions) -> Path:
    """Where this run's demo credentials are written (``demo_credentials``)."""
    return options.run_dir / "identity"


def _identity_env(options: StackOptions, server: str) -> dict[str, str]:
    """The demo profile: every caller still proves who it is, with a token this run made."""
    return {
        "SWITCHBOARD_IDENTITY__PROFILE": "demo",
        "SWITCHBOARD_IDENTITY__JWT__JWKS_FILE": str(identity_dir(options) / "jwks.json"),
        "SWITCHBOARD_IDENTITY__JWT__AUDIENCE": AUDIENCES[server],
        "SWITCHBOARD_IDENTITY__JWT__ISSUER": DEMO_ISSUER,
    }


def _service_env(
    options: StackOptions, name: str, grpc_port: int, metrics_port: int
) -> dict[str, str]:
    env = _identity_env(options, name) | {
        "SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS": options.bootstrap_servers,
        "SWITCHBOARD_KAFKA__TOPIC_PREFIX": options.topic_prefix,
        "SWITCHBOARD_GRPC__HOST": options.host,
        "SWITCHBOARD_GRPC__PORT": str(grpc_port),
        "SWITCHBOARD_METRICS__HOST": options.host,
        "SWITCHBOARD_METRICS__PORT": str(metrics_port),
        # Logs go to files: JSON lines, one event each, easy to grep and to ship.
        "SWITCHBOARD_LOG__FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
    }
    config = ROOT / "deploy" / "config" / f"{name}.toml"
    if config.exists():
        env["SWITCHBOARD_CONFIG"] = str(config)
    if name == "notifier":  # it calls the gateway as the services' own identity
        env["SWITCHBOARD_GATEWAYS__CREDENTIALS__PLAINTEXT"] = "true"
        env["SWITCHBOARD_GATEWAYS__CREDENTIALS__TOKEN_FILE"] = str(
            identity_dir(options) / "tokens" / f"{SERVICES_SUBJECT}.jwt"
        )
    return env


def plan_stack(options: StackOptions) -> list[ChildSpec]:
    """The children in start order: gateway, router, escalation, notifier, simulator."""
    specs = [
        ChildSpec(
            name="gateway",
            module="services.notifier.gateway_stub",
            args=("--port", str(GATEWAY_PORT)),
            env=_identity_env(options, "gateway")
            | {"PYTHONUNBUFFERED": "1", "SWITCHBOARD_LOG__FORMAT": "json"},
            grpc_port=GATEWAY_PORT,
            stop_stage=3,
        )
    ]
    for name, module, grpc_port, metrics_port, stage in _SERVICES:
        specs.append(
            ChildSpec(
                name=name,
                module=module,
                env=_service_env(options, name, grpc_port, metrics_port),
                grpc_port=grpc_port,
                metrics_port=metrics_port,
                stop_stage=stage,
            )
        )
    simulator_args = [
        "--scenario",
        str(options.scenario_path),
        "--bootstrap-servers",
        options.bootstrap_servers,
        "--topic-prefix",
        options.topic_prefix,
        "--duration",
        "0",  # the launcher decides when the run ends
        "--seed",
        str(options.seed),
        "--report",
        str(options.run_dir / "simulator-report.json"),
        "--log-format",
        "json",
    ]
    if options.rate is not None:
        simulator_args += ["--rate", str(options.rate)]
    specs.append(
        ChildSpec(
            name="simulator",
            module="services.simulator",
            args=tuple(simulator_args),
            env={"PYTHONUNBUFFERED": "1"},
            stop_stage=0,
        )
    )
    return [spec for spec in specs if spec.name not in options.skip]


def missing_modules(specs: Sequence[ChildSpec], root: Path = ROOT) -> list[ChildSpec]:
    """Children whose module is not in the tree, so ``python -m`` would fail."""
    return [spec for spec in specs if not any(p.exists() for p in spec.module_file(root))]
