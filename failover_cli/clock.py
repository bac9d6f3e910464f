"""Time as a dependency: the real clock, and a virtual one for deterministic tests.

``time()`` is wall-clock epoch seconds (deadlines that outlive a process are stored this way);
``monotonic()`` measures durations; ``sleep()`` is the only way the core waits.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time as _time
from collections.abc import Awaitable
from typing import Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    def time(self) -> float: ...

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return _time.time()

    def monotonic(self) -> float:
        return _time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


SYSTEM_CLOCK = SystemClock()


class VirtualClock:
    """A clock that only moves when told to, so tests prove timing without sleeping.

    ``sleep()`` parks the caller until :meth:`advance` (or :meth:`run`'s auto-jump) moves
    virtual time past its wake-up point. Wall and monotonic time move together.
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self.sleeps: list[float] = []  # every requested sleep, for assertions

    def time(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self._now + seconds, next(self._seq), fut))
        await fut

    def advance(self, seconds: float) -> None:
        """Move time forward, waking every sleeper whose time has come, in order."""
        target = self._now + seconds
        while self._timers and self._timers[0][0] <= target:
            when, _, fut = heapq.heappop(self._timers)
            self._now = max(self._now, when)
            if not fut.done():
                fut.set_result(None)
        self._now = target

    @property
    def pending(self) -> int:
        return sum(1 for *_, f in self._timers if not f.done())

    async def settle(self, rounds: int = 50) -> None:
        """Let every runnable task run until all are parked (on the clock or elsewhere)."""
        for _ in range(rounds):
            await asyncio.sleep(0)

    async def run(self, aw: Awaitable[T]) -> T:
        """Await ``aw``, jumping virtual time to the next timer whenever everything is parked."""
        task = asyncio.ensure_future(aw)
        while not task.done():
            await self.settle()
            if task.done():
                break
            live = [t for t in self._timers if not t[2].done()]
            if not live:
                await asyncio.sleep(0.001)  # waiting on real I/O; let it progress
                continue
            self.advance(min(t[0] for t in live) - self._now)
        return task.result()
