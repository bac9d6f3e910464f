"""Where requests wait while every usable provider is down.

Waiters are released in arrival order: one alarm (not one timer per waiter) fires at the
earliest time a breaker may admit again, and every breaker that closes or half-opens kicks
the queue; woken waiters resume in ticket order, and a waiter that must wait again keeps its
place. Each waiter also gives up at its own deadline.
"""

from __future__ import annotations

import asyncio
import itertools

from .clock import Clock
from .errors import QueueFull


class WaitQueue:
    def __init__(self, clock: Clock, max_size: int) -> None:
        self.clock = clock
        self.max_size = max_size
        self._waiters: dict[int, asyncio.Future[None]] = {}
        self._tickets = itertools.count(1)
        self._alarm: asyncio.Task[None] | None = None
        self._alarm_at: float | None = None

    def __len__(self) -> int:
        return len(self._waiters)

    def ticket(self) -> int:
        """A place in line; refuses with QueueFull when ``max_size`` requests already wait."""
        if len(self._waiters) >= self.max_size:
            raise QueueFull(
                f"{len(self._waiters)} requests are already waiting for a provider "
                f"(queue.max_size = {self.max_size})"
            )
        return next(self._tickets)

    def position(self, ticket: int) -> int:
        return 1 + sum(1 for t in self._waiters if t < ticket)

    async def wait(self, ticket: int, wake_at: float | None, give_up_at: float) -> bool:
        """Park until kicked or ``wake_at`` (True), or until ``give_up_at`` (False).
        Times are the clock's ``time()``."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._waiters[ticket] = fut
        if wake_at is not None and wake_at <= give_up_at:
            self._arm(wake_at)
        timer = asyncio.ensure_future(self.clock.sleep(give_up_at - self.clock.time()))
        try:
            await asyncio.wait({fut, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            self._waiters.pop(ticket, None)
        return fut.done()

    def kick(self) -> None:
        """Wake every waiter, oldest first."""
        for ticket in sorted(self._waiters):
            fut = self._waiters[ticket]
            if not fut.done():
                fut.set_result(None)

    def _arm(self, at: float) -> None:
        if self._alarm is not None and not self._alarm.done():
            if self._alarm_at is not None and self._alarm_at <= at:
                return
            self._alarm.cancel()
        self._alarm_at = at
        self._alarm = asyncio.ensure_future(self._ring(at))

    async def _ring(self, at: float) -> None:
        await self.clock.sleep(at - self.clock.time())
        self._alarm = None
        self._alarm_at = None
        self.kick()

    def close(self) -> None:
        if self._alarm is not None:
            self._alarm.cancel()
