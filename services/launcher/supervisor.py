"""Child processes: start with logs to files, wait for gRPC health, stop in stages, leave nothing.

Each child runs in its own session (process group), so a terminal's Ctrl-C reaches only
the launcher, which then stops the children in order: SIGTERM, a grace period, then
SIGKILL to the group of any straggler, so even a grandchild cannot outlive the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.launcher.errors import LaunchError
from services.launcher.plan import ROOT, ChildSpec

__all__ = ["Child", "Supervisor", "log_tail"]

log = structlog.get_logger("launcher")


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a child's log, for an error message."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


@dataclass
class Child:
    """A started child process."""

    spec: ChildSpec
    process: asyncio.subprocess.Process
    log_path: Path
    log_file: IO[bytes]

    @property
    def running(self) -> bool:
        return self.process.returncode is None


@dataclass
class Supervisor:
    """Starts, watches and stops the launcher's children."""

    log_dir: Path
    python: str = sys.executable
    base_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    children: list[Child] = field(default_factory=list)

    async def start(self, spec: ChildSpec) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{spec.name}.log"
        log_file = log_path.open("wb")
        env = {**self.base_env, **spec.env}
        # The repository and its generated code must be importable in the child.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), str(ROOT / "gen"), env.get("PYTHONPATH", "")) if p
        )
        try:
            process = await asyncio.create_subprocess_exec(
                *spec.command(self.python),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                cwd=str(ROOT),
                start_new_session=True,
            )
        except OSError as exc:
            log_file.close()
            raise LaunchError(f"{spec.name}: cannot start {spec.module}: {exc}") from None
        child = Child(spec, process, log_path, log_file)
        self.children.append(child)
        return child

    async def wait_healthy(self, child: Child, within: float) -> None:
        """Wait until the child's gRPC health says SERVING; fail fast if it exits."""
        port = child.spec.grpc_port
        if port is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        last = "no answer yet"
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                if not child.running:
                    code = child.process.returncode
                    raise LaunchError(
                        f"{child.spec.name} exited with code {code} while starting; its log "
                        f"({child.log_path}) ends with:\n{log_tail(child.log_path)}"
                    )
                try:
                    reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                    last = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
                except grpc.aio.AioRpcError as exc:
                    if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                        return  # a server without the health service: answering is enough
                    last = exc.code().name
                if loop.time() > deadline:
                    raise LaunchError(
                        f"{child.spec.name} is not SERVING on 127.0.0.1:{port} after {within:.0f}s "
                        f"(last: {last}); see {child.log_path}"
                    )
                await asyncio.sleep(0.25)

    def exited(self) -> list[Child]:
        """Children that have stopped on their own."""
        return [c for c in self.children if not c.running]

    async def stop_all(self, grace: float = 15.0) -> dict[str, int | None]:
        """Stop children stage by stage (lowest ``stop_stage`` first); return exit codes."""
        stages = sorted({c.spec.stop_stage for c in self.children})
        for stage in stages:
            group = [c for c in self.children if c.spec.stop_stage == stage]
            await asyncio.gather(*(self._stop(child, grace) for child in group))
        for child in self.children:
            child.log_file.close()
        return {c.spec.name: c.process.returncode for c in self.children}

    async def _stop(self, child: Child, grace: float) -> None:
        pid = child.process.pid
        if child.running:
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(child.process.wait(), timeout=grace)
            except TimeoutError:
                log.warning("child did not stop in time; killing", child=child.spec.name, pid=pid)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                await child.process.wait()
        # Anything the child left behind in its own process group goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)

    def pids(self) -> Sequence[int]:
        return [c.process.pid for c in self.children]
