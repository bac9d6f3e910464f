"""Health checks of every provider at once, fed back into the breakers.

Monitoring-plugin exit codes (Nagios, Icinga, cron): 0 OK, 1 WARNING (some down but the chain
can serve), 2 CRITICAL (no provider can serve), 3 UNKNOWN (configuration error).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from enum import IntEnum

from .clock import SYSTEM_CLOCK, Clock
from .errors import ProviderError
from .protocols import Provider
from .tracker import Tracker
from .types import ErrorClass, HealthResult


class HealthStatus(IntEnum):
    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


async def check_one(
    provider: Provider, *, deep: bool, timeout: float, clock: Clock = SYSTEM_CLOCK
) -> HealthResult:
    """One provider's check, bounded by ``timeout``; never raises for provider failures."""
    started = clock.monotonic()
    try:
        async with asyncio.timeout(timeout + 1.0):  # the adapter bounds itself; belt and braces
            return await provider.health(deep=deep, timeout=timeout)
    except TimeoutError:
        error, cls, status = f"no answer within {timeout:g}s", ErrorClass.TRANSIENT, None
    except ProviderError as exc:
        error, cls, status = exc.message, exc.error_class, exc.status
    return HealthResult(
        provider.name, False, (clock.monotonic() - started) * 1000, error, cls, status, clock.time()
    )


async def check_all(
    providers: Sequence[Provider],
    *,
    deep: bool = False,
    timeout: float = 5.0,
    tracker: Tracker | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> list[HealthResult]:
    """Check every provider in parallel (one task each); feed results to ``tracker``."""
    tasks = [
        asyncio.ensure_future(check_one(p, deep=deep, timeout=timeout, clock=clock))
        for p in providers
    ]
    results = list(await asyncio.gather(*tasks))
    if tracker is not None:
        for result in results:
            tracker.on_health(result)
    return results


def overall(results: Sequence[HealthResult], can_serve: Sequence[bool]) -> HealthStatus:
    """OK when every check passed; WARNING when some failed but a provider that passed can
    serve (its breaker admits requests); CRITICAL when none can."""
    if results and all(r.ok for r in results) and all(can_serve):
        return HealthStatus.OK
    if any(r.ok and serve for r, serve in zip(results, can_serve, strict=True)):
        return HealthStatus.WARNING
    return HealthStatus.CRITICAL
