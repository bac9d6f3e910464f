"""The status report: persisted state turned into the documented, JSON-ready view.

``failover status --json`` prints :func:`status_report` as is; the status table renders it.
No network and no clock of its own: ``now`` (epoch seconds) is passed in.

Schema (``providers`` in chain order; extra keys may be added, none removed)::

    {"chain": str, "generated_at": float,
     "providers": [{"name", "kind", "model", "state": "closed|open|half_open", "forced",
                    "cooldown_remaining_s", "open_until", "consecutive_failures",
                    "requests", "successes", "failures", "failures_by_class",
                    "success_rate", "latency_ms": {"p50", "p95", "p99"}, "ttft_ms": {"p50"},
                    "score", "score_breakdown": {"latency", "reliability", "cost", "total"},
                    "last_error", "last_health", "sparkline_ms": [float]}]}
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .breaker import BreakerState
from .clock import VirtualClock
from .config import Config, fingerprint
from .scoring import percentile
from .state import ChainState
from .tracker import Tracker

SPARKLINE_POINTS = 24  # most recent successful latencies shown in the sparkline


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def status_report(
    config: Config, state: ChainState, now: float, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Every provider of ``config``'s chain, as ``failover status --json`` documents it.
    A provider-class verdict about another key or endpoint than ``env`` gives now is shown
    as the router would treat it: closed."""
    env = os.environ if env is None else env
    prints = {p.name: fingerprint(p, env) for p in config.providers}
    tracker = Tracker(
        [p.name for p in config.providers], config.breaker, VirtualClock(now), fingerprints=prints
    )
    tracker.seed(state, config.breaker)
    scores = tracker.scores(config.prices(), config.routing.weights)

    rows = []
    for p in config.providers:
        ps = state.provider(p.name)
        b = tracker.breakers[p.name]
        current = b.state(now)
        ok_samples = [s for s in ps.samples if s.ok]
        latencies = [s.latency_ms for s in ok_samples]
        ttfts = [s.ttft_ms for s in ok_samples if s.ttft_ms is not None]
        failures = sum(ps.failures.values())
        remaining: float | None = 0.0
        if current is BreakerState.OPEN:
            until = b.snap.open_until if b.snap.forced is None else None
            remaining = None if until is None else round(max(0.0, until - now), 1)
        rows.append(
            {
                "name": p.name,
                "kind": p.kind,
                "model": p.model,
                "state": current.value,
                "forced": b.snap.forced,
                "cooldown_remaining_s": remaining,
                "open_until": b.snap.open_until if current is not BreakerState.CLOSED else None,
                "consecutive_failures": ps.consecutive_failures,
                "requests": ps.requests,
                "successes": ps.successes,
                "failures": failures,
                "failures_by_class": dict(sorted(ps.failures.items())),
                "success_rate": round(ps.successes / ps.requests, 4) if ps.requests else None,
                "latency_ms": {
                    "p50": _ms(percentile(latencies, 50)),
                    "p95": _ms(percentile(latencies, 95)),
                    "p99": _ms(percentile(latencies, 99)),
                },
                "ttft_ms": {"p50": _ms(percentile(ttfts, 50))},
                "score": round(scores[p.name].total, 4),
                "score_breakdown": scores[p.name].to_dict(),
                "last_error": ps.last_error,
                "last_health": ps.last_health,
                "last_ratelimit": ps.last_ratelimit,
                "sparkline_ms": [round(v, 1) for v in latencies[-SPARKLINE_POINTS:]],
            }
        )
    return {"chain": config.chain, "generated_at": round(now, 3), "providers": rows}
