"""The Watch streams' queues: bounded, and a bounded number of them.

A manager's console that stops reading must not make the service hold every change for
it: its queue holds ``queue_size`` changes, and past that the stream is ended with
RESOURCE_EXHAUSTED (the console reconnects and gets a fresh snapshot), while every other
watcher goes on. At most ``max_streams`` streams are open at once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from services.escalation.domain import model as m

__all__ = ["TooManyWatchers", "Watcher", "Watchers"]


class TooManyWatchers(Exception):
    """Every Watch stream slot is taken."""


@dataclass(eq=False)
class Watcher:
    """One stream's queue; ``None`` in it means the stream fell behind and must end."""

    queue: asyncio.Queue[m.EscalationChange | None]
    fell_behind: bool = False


@dataclass
class Watchers:
    max_streams: int = 100
    queue_size: int = 1_000
    _open: set[Watcher] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self._open)

    def open(self) -> Watcher:
        if len(self._open) >= self.max_streams:
            raise TooManyWatchers(f"{self.max_streams} Watch streams are open; try again later")
        watcher = Watcher(asyncio.Queue(maxsize=self.queue_size + 1))  # +1: room for the end
        self._open.add(watcher)
        return watcher

    def close(self, watcher: Watcher) -> None:
        self._open.discard(watcher)

    def publish(self, change: m.EscalationChange) -> None:
        """Every open stream gets ``change``; one whose queue is full is told to end."""
        for watcher in self._open:
            if watcher.fell_behind:
                continue
            if watcher.queue.qsize() >= self.queue_size:
                watcher.fell_behind = True
                watcher.queue.put_nowait(None)
            else:
                watcher.queue.put_nowait(change)
