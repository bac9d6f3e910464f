"""Scoring: percentiles, the three components, weights, and chain ordering by tier and score."""

from __future__ import annotations

import pytest

from failover_cli.scoring import (
    ProviderStats,
    ScoreBreakdown,
    Weights,
    order,
    percentile,
    score_all,
    typical_latency,
)


def test_percentile_is_nearest_rank():
    values = [10, 2, 8, 4, 6, 1, 3, 5, 7, 9]  # unsorted on purpose
    assert percentile(values, 50) == 5
    assert percentile(values, 95) == 10
    assert percentile(values, 90) == 9
    assert percentile(values, 0) == 1
    assert percentile(values, 100) == 10
    assert percentile([], 50) is None


def test_typical_latency_is_mean_of_p50_and_p95():
    assert typical_latency([100.0] * 18 + [1000.0, 1000.0]) == pytest.approx((100 + 1000) / 2)
    assert typical_latency([100.0] * 19 + [1000.0]) == 100.0  # one outlier in 20 is p100
    assert typical_latency([]) is None


def test_components_and_weighted_total():
    stats = [
        ProviderStats("a", latencies_ms=[100.0] * 5, calls=8, successes=6, price=10.0),
        ProviderStats("b", latencies_ms=[200.0] * 5, calls=0, successes=0, price=2.0),
        ProviderStats("c", latencies_ms=[], calls=4, successes=0, price=None),
        ProviderStats("d", latencies_ms=[400.0], calls=2, successes=2, price=0.0),
    ]
    s = score_all(stats, Weights())
    assert (s["a"].latency, s["b"].latency, s["c"].latency, s["d"].latency) == (
        1.0,
        0.5,
        0.5,  # no data yet
        0.25,
    )
    assert s["a"].reliability == pytest.approx(7 / 10)  # Laplace: (6 + 1) / (8 + 2)
    assert s["b"].reliability == pytest.approx(1 / 2)
    assert s["c"].reliability == pytest.approx(1 / 6)
    assert s["d"].reliability == pytest.approx(3 / 4)
    assert s["a"].cost == pytest.approx(2 / 10)  # cheapest paid price over this one
    assert s["b"].cost == 1.0
    assert s["c"].cost == 0.5  # unknown price
    assert s["d"].cost == 1.0  # free
    assert s["a"].total == pytest.approx(0.5 * 1.0 + 0.4 * 0.7 + 0.1 * 0.2)
    assert s["c"].total == pytest.approx(0.5 * 0.5 + 0.4 / 6 + 0.1 * 0.5)


def test_weights_are_normalised():
    stats = [
        ProviderStats("fast", latencies_ms=[100.0], calls=10, successes=5, price=4.0),
        ProviderStats("slow", latencies_ms=[400.0], calls=10, successes=10, price=1.0),
    ]
    s = score_all(stats, Weights(latency=2, reliability=1, cost=1))
    fast_rel, slow_rel = 6 / 12, 11 / 12
    assert s["fast"].total == pytest.approx((2 * 1.0 + fast_rel + 0.25) / 4)
    assert s["slow"].total == pytest.approx((2 * 0.25 + slow_rel + 1.0) / 4)
    only_reliability = score_all(stats, Weights(latency=0, reliability=1, cost=0))
    assert only_reliability["slow"].total == pytest.approx(slow_rel)
    assert only_reliability["fast"].total == pytest.approx(fast_rel)


def test_latency_outlier_tail_costs_score():
    steady = ProviderStats("steady", latencies_ms=[200.0] * 20)
    spiky = ProviderStats("spiky", latencies_ms=[100.0] * 18 + [2000.0] * 2)
    s = score_all([steady, spiky], Weights())
    # typical: steady 200, spiky (100 + 2000) / 2 = 1050
    assert s["steady"].latency == 1.0
    assert s["spiky"].latency == pytest.approx(200 / 1050)


def test_breakdown_to_dict_rounds():
    b = ScoreBreakdown(latency=1 / 3, reliability=2 / 3, cost=0.5, total=0.123456)
    assert b.to_dict() == {"latency": 0.3333, "reliability": 0.6667, "cost": 0.5, "total": 0.1235}


def _scores(**totals: float) -> dict[str, ScoreBreakdown]:
    return {n: ScoreBreakdown(0, 0, 0, t) for n, t in totals.items()}


def test_priority_strategy_orders_tiers_then_score_then_position():
    names = ["a", "b", "c", "d", "e"]
    priorities = [2, 1, 2, 1, 2]
    scores = _scores(a=0.2, b=0.5, c=0.9, d=0.7, e=0.2)
    assert order(names, priorities, scores, "priority") == ["d", "b", "c", "a", "e"]


def test_score_strategy_ignores_priority():
    names = ["a", "b", "c"]
    scores = _scores(a=0.2, b=0.5, c=0.9)
    assert order(names, [1, 2, 3], scores, "score") == ["c", "b", "a"]


def test_unscored_providers_rank_last_in_their_tier():
    assert order(["a", "b"], [1, 1], _scores(b=0.1), "priority") == ["b", "a"]
