"""Admission limits of the gateway: request body size, concurrent requests with a bounded
queue, and a per-key request rate. Pure asyncio, with the clock injected."""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import Any

from ..clock import SYSTEM_CLOCK, Clock

MAX_RATE_KEYS = 10_000  # buckets kept; the least recently used beyond this are forgotten


class BodyTooLarge(Exception):
    """The request body is larger than the limit."""


async def read_body(receive: Callable[[], Awaitable[dict[str, Any]]], limit: int) -> bytes:
    """The whole request body from an ASGI ``receive``, refusing (BodyTooLarge) as soon as it
    passes ``limit`` bytes, before reading the rest."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client disconnected")
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"request body larger than {limit} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class Admission:
    """At most ``max_concurrency`` requests served at once, at most ``max_queue`` waiting for
    a slot (first come, first served); beyond that :meth:`acquire` refuses at once."""

    def __init__(self, max_concurrency: int, max_queue: int) -> None:
        self.max_concurrency = max(1, max_concurrency)
        self.max_queue = max(0, max_queue)
        self.active = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def try_acquire(self) -> bool:
        """Take a free slot if there is one and nobody is waiting for it; never waits."""
        if self.active < self.max_concurrency and not self._waiting:
            self.active += 1
            return True
        return False

    async def acquire(self) -> bool:
        """Take a slot, waiting in line if all are busy; False when the line is full."""
        if self.try_acquire():
            return True
        if len(self._waiting) >= self.max_queue:
            return False
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot was handed over just as the waiter left
            elif fut in self._waiting:
                self._waiting.remove(fut)
            raise
        return True

    def release(self) -> None:
        """Give a slot back: to the next waiter, if any."""
        while self._waiting:
            fut = self._waiting.popleft()
            if not fut.done():
                fut.set_result(None)  # the slot passes on; ``active`` is unchanged
                return
        self.active -= 1


class RateLimiter:
    """A token bucket per key: ``per_minute`` requests a minute on average, bursts of up to
    ``burst`` (default: a minute's worth, at least 1)."""

    def __init__(
        self, per_minute: float, *, burst: float | None = None, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        if per_minute <= 0:
            raise ValueError("rate must be positive")
        self.rate = per_minute / 60.0  # tokens a second
        self.burst = burst if burst is not None else max(1.0, per_minute)
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def take(self, key: str) -> float | None:
        """Spend one token of ``key``'s bucket: None if allowed, else the seconds until one
        is available (the Retry-After)."""
        now = self.clock.monotonic()
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            allowed = True
        else:
            self._buckets[key] = (tokens, now)
            allowed = False
        while len(self._buckets) > MAX_RATE_KEYS:
            self._buckets.popitem(last=False)
        return None if allowed else (1.0 - tokens) / self.rate
