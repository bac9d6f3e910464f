"""Provider scoring and chain ordering. Pure: statistics in, numbers out.

Each component is in [0, 1], higher is better:

- latency: the fastest candidate's typical latency over this one's (typical = mean of p50 and
  p95 of recent successful calls, so a long tail costs); no data yet scores 0.5;
- reliability: Laplace-smoothed success rate in the window, (successes + 1) / (calls + 2);
- cost: the cheapest candidate's price over this one's (free scores 1; unknown price 0.5).

The total is the weighted mean of the three with the configured weights.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from .records import frozen


@frozen
class Weights:
    latency: float = 0.5
    reliability: float = 0.4
    cost: float = 0.1


@frozen
class ProviderStats:
    """What scoring needs to know about one provider."""

    name: str
    latencies_ms: Sequence[float] = ()  # recent successful calls, oldest first
    calls: int = 0  # in the window
    successes: int = 0
    price: float | None = None  # USD per million tokens (input + output); None = unknown


@frozen
class ScoreBreakdown:
    latency: float
    reliability: float
    cost: float
    total: float

    def to_dict(self) -> dict[str, float]:
        return {k: round(getattr(self, k), 4) for k in ("latency", "reliability", "cost", "total")}


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (q in [0, 100]) of ``values``; None when empty."""
    data = sorted(values)
    if not data:
        return None
    rank = max(1, math.ceil(q / 100 * len(data)))
    return data[min(rank, len(data)) - 1]


def typical_latency(latencies_ms: Sequence[float]) -> float | None:
    p50 = percentile(latencies_ms, 50)
    p95 = percentile(latencies_ms, 95)
    if p50 is None or p95 is None:
        return None
    return (p50 + p95) / 2


def score_all(stats: Sequence[ProviderStats], weights: Weights) -> dict[str, ScoreBreakdown]:
    """Score every provider relative to the others in ``stats``."""
    typical = {s.name: typical_latency(s.latencies_ms) for s in stats}
    known = [v for v in typical.values() if v is not None and v > 0]
    fastest = min(known) if known else None
    prices = [s.price for s in stats if s.price is not None and s.price > 0]
    cheapest = min(prices) if prices else None
    wsum = weights.latency + weights.reliability + weights.cost or 1.0
    out: dict[str, ScoreBreakdown] = {}
    for s in stats:
        t = typical[s.name]
        if t is None or fastest is None:
            lat = 0.5
        else:
            lat = 1.0 if t <= 0 else fastest / t
        rel = (s.successes + 1) / (s.calls + 2)
        if s.price is None:
            cost = 0.5
        elif s.price <= 0 or cheapest is None:
            cost = 1.0
        else:
            cost = cheapest / s.price
        total = (weights.latency * lat + weights.reliability * rel + weights.cost * cost) / wsum
        out[s.name] = ScoreBreakdown(lat, rel, cost, total)
    return out


def order(
    names: Sequence[str],
    priorities: Sequence[int],
    scores: dict[str, ScoreBreakdown],
    strategy: str = "priority",
) -> list[str]:
    """Order the chain. ``priority``: by priority tier, ties broken by score (then position);
    ``score``: by score alone (then position)."""
    idx = range(len(names))

    def total(i: int) -> float:
        s = scores.get(names[i])
        return s.total if s else 0.0

    if strategy == "score":
        ranked = sorted(idx, key=lambda i: (-total(i), i))
    else:
        ranked = sorted(idx, key=lambda i: (priorities[i], -total(i), i))
    return [names[i] for i in ranked]
