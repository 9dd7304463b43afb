"""The launcher's run: broker, topics, children, health, live summary, clean stop, report.

Every step races with the stop signal, so Ctrl-C during a slow broker start or a health
wait stops at once; whatever was started is stopped in ``finally``, in order, and the
broker only if this run started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
import urllib.request
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeVar

from services.common.provision import ensure_topics
from services.common.topics import TopicSpec, load_topic_specs
from services.launcher.broker import BrokerControl
from services.launcher.demo_credentials import (
    OPERATOR_SUBJECT,
    demo_people,
    escalation_staffing,
    tenant_staffing,
    write_demo_credentials,
)
from services.launcher.errors import LaunchError
from services.launcher.plan import (
    ROOT,
    ChildSpec,
    StackOptions,
    identity_dir,
    missing_modules,
    plan_stack,
)
from services.launcher.policies import (
    POLICIES_DIR,
    DemoPolicy,
    apply_demo_policies,
    demo_policies,
)
from services.launcher.summary import OpsSummary, Sample, parse_metrics_text, render, summarize
from services.launcher.supervisor import Supervisor, log_tail
from services.simulator.scenario import Scenario

__all__ = ["Launcher", "RunConfig"]

_T = TypeVar("_T")
#: Applies the demo tenants' policies: (router target, operator token file, policies) ->
#: one line per domain.
ApplyPolicies = Callable[[str, Path, Sequence[DemoPolicy]], Coroutine[Any, Any, list[str]]]


class _Stopped(Exception):
    """A stop was requested while a start-up step was in progress."""


@dataclass(frozen=True, slots=True)
class RunConfig:
    """How long to run and how to show it."""

    duration: float = 0.0
    refresh: float = 2.0
    #: Without a terminal, print the summary this often instead of redrawing it.
    plain_every: float = 15.0
    health_timeout: float = 90.0
    stop_grace: float = 30.0
    tty: bool = False


class Launcher:
    """One ``make run``."""

    def __init__(
        self,
        scenario: Scenario,
        options: StackOptions,
        config: RunConfig,
        out: TextIO,
        broker: BrokerControl,
        supervisor: Supervisor,
        *,
        provision: Callable[[str, Sequence[TopicSpec]], Awaitable[list[str]]] = ensure_topics,
        apply_policies: ApplyPolicies = apply_demo_policies,
        policies_dir: Path = POLICIES_DIR,
        root: Path = ROOT,
    ) -> None:
        self.scenario = scenario
        self.options = options
        self.config = config
        self.out = out
        self.broker = broker
        self.supervisor = supervisor
        self.specs = plan_stack(options)
        self.provision = provision
        self.apply_policies = apply_policies
        self.policies_dir = policies_dir
        self.root = root
        self._drawn = 0
        self._last: OpsSummary | None = None
        self._broker_note = ""
        self._started = time.monotonic()

    # --- output -----------------------------------------------------------------------

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def _elapsed(self) -> str:
        seconds = int(time.monotonic() - self._started)
        return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"

    def _header(self) -> str:
        left = ""
        if self.config.duration > 0:
            remaining = max(0, int(self.config.duration - (time.monotonic() - self._started)))
            left = f" · {remaining}s left"
        note = f" · {self._broker_note}" if self._broker_note else ""
        return (
            f"Switchboard · scenario {self.scenario.name} · {self._elapsed()}{left}{note}"
            " · Ctrl-C stops"
        )

    def _draw(self, summary: OpsSummary) -> None:
        lines = render(summary, header=self._header())
        if self.config.tty:
            width = shutil.get_terminal_size((120, 40)).columns
            clipped = [line[: width - 1] for line in lines]
            if self._drawn:
                self.out.write(f"\x1b[{self._drawn}F\x1b[J")
            self.out.write("\n".join(clipped) + "\n")
            self.out.flush()
            self._drawn = len(clipped)
        else:
            self.say("\n".join(lines) + "\n")

    # --- steps ------------------------------------------------------------------------

    async def _unless_stopped(self, step: Coroutine[Any, Any, _T], stop: asyncio.Event) -> _T:
        task = asyncio.ensure_future(step)
        waiter = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            waiter.cancel()
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise _Stopped

    def _check_modules(self) -> None:
        missing = missing_modules(self.specs, self.root)
        if missing:
            lines = [
                f"  - {spec.name}: python -m {spec.module} needs "
                + " or ".join(str(p.relative_to(self.root)) for p in spec.module_file(self.root))
                for spec in missing
            ]
            raise LaunchError(
                "cannot start the stack, these modules are not in the tree:\n"
                + "\n".join(lines)
                + "\nNothing was started. Run without them with --skip NAME[,NAME] if intended."
            )

    async def _start_children(self, stop: asyncio.Event) -> None:
        applied = False
        for spec in self.specs:
            if spec.name == "simulator":  # traffic starts under the tenants' own policies
                await self._apply_policies(stop)
                applied = True
            child = await self.supervisor.start(spec)
            if spec.grpc_port is not None:
                self.say(f"  {spec.name:<11} starting (log {child.log_path})")
                await self._unless_stopped(
                    self.supervisor.wait_healthy(child, self.config.health_timeout), stop
                )
                self.say(f"  {spec.name:<11} SERVING on 127.0.0.1:{spec.grpc_port}")
            else:
                self.say(f"  {spec.name:<11} started (log {child.log_path})")
        if not applied:
            await self._apply_policies(stop)

    async def _apply_policies(self, stop: asyncio.Event) -> None:
        """Each demo tenant's ``deploy/policies/<domain>.toml`` through PolicyService."""
        policies = demo_policies(self.policies_dir)
        if not policies:
            return
        router = next((s for s in self.specs if s.name == "router"), None)
        if router is None or router.grpc_port is None:
            self.say("policies: not applied (the router is not started by this run)")
            return
        token = identity_dir(self.options) / "tokens" / f"{OPERATOR_SUBJECT}.jwt"
        self.say(f"policies: applying {len(policies)} tenant(s) through PolicyService")
        lines = await self._unless_stopped(
            self.apply_policies(f"127.0.0.1:{router.grpc_port}", token, policies), stop
        )
        for line in lines:
            self.say(f"  {line}")

    async def _scrape_one(self, spec: ChildSpec) -> tuple[str, list[Sample] | None, str]:
        url = f"http://127.0.0.1:{spec.metrics_port}/metrics"

        def fetch() -> str:
            with urllib.request.urlopen(url, timeout=1.5) as response:
                return str(response.read().decode("utf-8"))

        try:
            text = await asyncio.to_thread(fetch)
            return spec.name, parse_metrics_text(text), ""
        except (OSError, ValueError) as exc:
            return spec.name, None, type(exc).__name__

    async def scrape(self) -> OpsSummary:
        targets = [s for s in self.specs if s.metrics_port is not None]
        results = await asyncio.gather(*(self._scrape_one(s) for s in targets))
        return summarize(
            {name: samples for name, samples, _ in results},
            {name: error for name, _, error in results if error},
        )

    async def _broker_restart(self, stop: asyncio.Event) -> None:
        plan = self.scenario.broker_restart
        if plan is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=plan.at)
        if stop.is_set():
            return
        if not self.broker.started_here:
            self._broker_note = "broker restart skipped (broker not started by this run)"
            return
        self._broker_note = f"broker DOWN (scenario restart, back in {plan.downtime:.0f}s)"
        await self.broker.restart(plan.downtime, stop)
        self._broker_note = "broker restarted"

    # --- the run ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> int:
        """Run until stopped, the duration ends or a child dies; return the exit code."""
        self._check_modules()
        code = 0
        reason = "stopped"
        restart: asyncio.Task[None] | None = None
        try:
            self.say(f"Switchboard: scenario {self.scenario.name} — {self.scenario.description}")
            self.say(f"broker: {self.options.bootstrap_servers}")
            await self._unless_stopped(self.broker.ensure_up(), stop)
            self.say(
                "broker: started by this run (stopped at the end)"
                if self.broker.started_here
                else "broker: already running (left running at the end)"
            )
            specs = load_topic_specs(prefix=self.options.topic_prefix)
            created = await self._unless_stopped(
                asyncio.wait_for(self.provision(self.options.bootstrap_servers, specs), 120), stop
            )
            self.say(f"topics: {len(specs)} defined, {len(created)} created")
            self._make_demo_credentials()
            await self._start_children(stop)
            self._print_endpoints()
            restart = asyncio.create_task(self._broker_restart(stop))
            code, reason = await self._watch(stop)
        except _Stopped:
            reason = "stopped during start-up"
        except LaunchError as exc:
            self.say(f"launcher: {exc.reason}")
            code, reason = 1, "start-up failed"
        finally:
            if restart is not None:
                restart.cancel()
                with contextlib.suppress(asyncio.CancelledError, LaunchError):
                    await restart
            codes = await self.supervisor.stop_all(self.config.stop_grace)
            await self.broker.stop()
            self._report(reason, codes)
        return code

    def _make_demo_credentials(self) -> None:
        """Fresh keys and tokens for this run (the demo profile still identifies callers)."""
        directory = identity_dir(self.options)
        staffing = escalation_staffing(ROOT / "deploy" / "config" / "escalation.toml")
        tenants = tenant_staffing(demo_policies(self.policies_dir))
        write_demo_credentials(directory, demo_people(staffing, tenants))
        example = directory / "tokens" / f"{sorted(staffing)[0]}.jwt" if staffing else None
        self.say(f"identity: demo tokens made for this run in {directory / 'tokens'}")
        if example is not None:
            self.say(
                f"  e.g. SWITCHBOARD_TOKEN_FILE={example} .venv/bin/switchboard escalations list"
            )

    def _print_endpoints(self) -> None:
        self.say("metrics endpoints (Prometheus text format):")
        for spec in self.specs:
            if spec.metrics_port is not None:
                self.say(f"  {spec.name:<11} http://127.0.0.1:{spec.metrics_port}/metrics")
        self.say(f"logs: {self.supervisor.log_dir}/<name>.log\n")

    async def _watch(self, stop: asyncio.Event) -> tuple[int, str]:
        loop = asyncio.get_running_loop()
        end = loop.time() + self.config.duration if self.config.duration > 0 else None
        last_plain = -1e9
        while True:
            summary = await self.scrape()
            self._last = summary
            if self.config.tty or loop.time() - last_plain >= self.config.plain_every:
                self._draw(summary)
                last_plain = loop.time()
            dead = self.supervisor.exited()
            if dead:
                child = dead[0]
                self.say(
                    f"launcher: {child.spec.name} exited with code {child.process.returncode}; "
                    f"stopping the stack. Its log ({child.log_path}) ends with:\n"
                    f"{log_tail(child.log_path)}"
                )
                return 1, f"{child.spec.name} exited"
            if stop.is_set():
                return 0, "stopped by signal"
            if end is not None and loop.time() >= end:
                return 0, f"duration of {self.config.duration:.0f}s elapsed"
            timeout = (
                self.config.refresh if end is None else min(self.config.refresh, end - loop.time())
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(0.0, timeout))

    def _report(self, reason: str, codes: dict[str, int | None]) -> None:
        self._drawn = 0
        self.say("")
        self.say(
            f"== Switchboard run report: {self.scenario.name}, ran {self._elapsed()} ({reason}) =="
        )
        if self._last is not None:
            for line in render(self._last):
                self.say(line)
        report_path = self.options.run_dir / "simulator-report.json"
        self._simulator_lines(report_path)
        exits = ", ".join(f"{name} {_exit(code)}" for name, code in codes.items())
        self.say(f"children: {exits or 'none started'}")
        broker = "stopped" if self.broker.started_here else "left running (not started by this run)"
        self.say(f"broker: {broker}")
        self.say(f"logs: {self.supervisor.log_dir}")

    def _simulator_lines(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        keys = (
            "arrived",
            "assigned",
            "abandoned",
            "hung_up_at_close",
            "ended",
            "ended_resolved",
            "ended_unresolved",
            "offers_missed",
            "holds",
            "pauses",
            "manager_requests",
            "surveys",
            "surveys_low",
            "unroutable",
        )
        always = {"arrived", "assigned", "abandoned", "ended"}
        parts = [
            f"{k.replace('_', ' ')} {data.get(k, 0)}" for k in keys if k in data or k in always
        ]
        self.say("simulated: " + ", ".join(parts))
        self.say(
            f"contacts not confirmed closed by the router: {data.get('unconfirmed_by_router', '?')}"
        )


def _exit(code: int | None) -> str:
    if code is None:
        return "still running?"
    if code == 0:
        return "ok"
    if code < 0:
        return f"signal {-code}"
    return f"exit {code}"
