"""The local Kafka broker through ``deploy/kafka/kafka.sh``, remembering whether we started it.

A broker that was already running belongs to someone else (another run, the test suite):
the launcher uses it but never stops or restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from services.launcher.errors import LaunchError
from services.launcher.plan import ROOT

__all__ = ["BrokerControl"]

KAFKA_SCRIPT = ROOT / "deploy" / "kafka" / "kafka.sh"


@dataclass
class BrokerControl:
    """Start, stop and restart the local broker; ``started_here`` decides who may stop it."""

    env: Mapping[str, str]
    log_path: Path
    script: Path = KAFKA_SCRIPT
    started_here: bool = False
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def _run(self, action: str, within: float) -> int:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            process = await asyncio.create_subprocess_exec(
                "bash",
                str(self.script),
                action,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=dict(self.env),
            )
            try:
                return await asyncio.wait_for(process.wait(), timeout=within)
            except TimeoutError:
                process.kill()
                await process.wait()
                raise LaunchError(
                    f"kafka.sh {action} did not finish in {within:.0f}s; see {self.log_path}"
                ) from None

    async def running(self) -> bool:
        return await self._run("status", 10) == 0

    async def ensure_up(self) -> None:
        """Start the broker unless one already answers; remember which it was."""
        async with self._lock:
            if await self.running():
                return
            if await self._run("up", 600) != 0:
                raise LaunchError(f"the Kafka broker did not start; see {self.log_path}")
            self.started_here = True

    async def stop(self) -> None:
        """Stop the broker, only if this launcher started it."""
        async with self._lock:
            if self.started_here:
                await self._run("down", 120)

    async def restart(self, downtime: float, stop_requested: asyncio.Event) -> bool:
        """Stop, wait ``downtime`` (or until a stop), start again; False if not ours to restart."""
        if not self.started_here:
            return False
        async with self._lock:
            await self._run("down", 120)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_requested.wait(), timeout=downtime)
        async with self._lock:
            if await self._run("up", 600) != 0:
                raise LaunchError(f"the Kafka broker did not come back; see {self.log_path}")
        return True
