"""Background recovery probes for long-running routers (the library, the gateway).

While a provider's breaker is open for a failure to reach it (nothing listening, a TLS
failure), its no-token health call is made every base cooldown; a pass moves the breaker to
half-open, so the next request finds the provider again without having waited out a grown
cooldown, and no user request is spent finding out. Failures that a model list cannot see the
end of are left to the probe-on-request of the breaker: 5xx from completions, rate limits,
quota, and silence (a server whose generation hangs may still list its models, and a pass
would re-admit it every base cooldown for a user to pay the timeout again).
A one-shot CLI does not start these.
"""

from __future__ import annotations

from .breaker import BreakerState
from .clock import Clock
from .protocols import Provider
from .tracker import Tracker

# The failures a reachability check can tell the end of.
NETWORK_REASONS = frozenset({"connect", "tls"})
PROBE_TIMEOUT = 5.0


async def probe_while_open(provider: Provider, tracker: Tracker, clock: Clock) -> None:
    """Probe ``provider`` every base cooldown while its breaker stays open for a network
    reason; return once it is half-open or closed (or open for another reason)."""
    name = provider.name
    breaker = tracker.breakers[name]
    interval = breaker.policy.cooldown
    while True:
        await clock.sleep(interval)
        now = clock.time()
        if (
            breaker.state(now) is not BreakerState.OPEN
            or breaker.snap.forced is not None
            or tracker.last_reason.get(name) not in NETWORK_REASONS
        ):
            return
        result = await provider.health(timeout=min(PROBE_TIMEOUT, interval))
        tracker.on_health(result)
        if result.ok:
            return
