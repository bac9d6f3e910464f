"""Persisted chain state: exact merging, the JSON form, and the versioned document envelope."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from failover_cli import state as state_module
from failover_cli.breaker import MAX_OUTCOMES, BreakerSnapshot
from failover_cli.state import (
    DEFAULT_HISTORY,
    SCHEMA_VERSION,
    ChainState,
    ForeignDocument,
    FutureSchema,
    ProviderDelta,
    ProviderState,
    Sample,
    StateDelta,
    decode_document,
    dump_document,
    load_document,
    merge,
    merge_breaker,
    merge_provider,
)

T0 = 1_800_000_000.0
SETTINGS = settings(max_examples=150, deadline=None, database=None)


def open_snap(updated_at: float, open_until: float, **kw: Any) -> BreakerSnapshot:
    return BreakerSnapshot(
        state="open",
        opened_at=updated_at,
        open_until=open_until,
        cooldown=30.0,
        updated_at=updated_at,
        **kw,
    )


# --- counters and histories ---------------------------------------------------------------------


def test_counters_add_exactly() -> None:
    state = ProviderState(requests=10, successes=7, failures={"transient": 2, "provider": 1})
    delta = ProviderDelta(requests=4, successes=1, failures={"transient": 3, "context_length": 1})
    merged = merge_provider(state, delta)
    assert (merged.requests, merged.successes) == (14, 8)
    assert merged.failures == {"transient": 5, "provider": 1, "context_length": 1}


def test_outcomes_merge_in_time_order() -> None:
    state = ProviderState(outcomes=[(T0 + 1, True), (T0 + 5, False)])
    delta = ProviderDelta(outcomes=[(T0 + 3, False), (T0 + 7, True)])
    merged = merge_provider(state, delta)
    assert merged.outcomes == [(T0 + 1, True), (T0 + 3, False), (T0 + 5, False), (T0 + 7, True)]


def test_outcomes_are_bounded_keeping_the_newest() -> None:
    state = ProviderState(outcomes=[(T0 + i, True) for i in range(MAX_OUTCOMES)])
    delta = ProviderDelta(outcomes=[(T0 - 1, False), (T0 + MAX_OUTCOMES, False)])
    merged = merge_provider(state, delta)
    assert len(merged.outcomes) == MAX_OUTCOMES
    assert merged.outcomes[0] == (T0 + 1, True)  # the oldest two went
    assert merged.outcomes[-1] == (T0 + MAX_OUTCOMES, False)
    assert (T0 - 1, False) not in merged.outcomes


def test_samples_merge_in_time_order_and_are_bounded_to_history() -> None:
    state = ProviderState(samples=[Sample(T0 + t, 100.0 + t) for t in (1, 4, 6)])
    delta = ProviderDelta(samples=[Sample(T0 + t, 200.0 + t) for t in (2, 5, 7)])
    merged = merge_provider(state, delta, history=4)
    assert [s.t for s in merged.samples] == [T0 + 4, T0 + 5, T0 + 6, T0 + 7]
    assert [s.latency_ms for s in merged.samples] == [104.0, 205.0, 106.0, 207.0]


def test_samples_appended_after_the_newest_stay_in_order() -> None:
    state = ProviderState(samples=[Sample(T0 + 1, 1.0), Sample(T0 + 2, 2.0)])
    delta = ProviderDelta(samples=[Sample(T0 + 3, 3.0), Sample(T0 + 4, 4.0)])
    merged = merge_provider(state, delta, history=3)
    assert merged.samples == [Sample(T0 + 2, 2.0), Sample(T0 + 3, 3.0), Sample(T0 + 4, 4.0)]


def test_history_zero_keeps_no_samples() -> None:
    state = ProviderState(samples=[Sample(T0, 1.0)])
    assert merge_provider(state, ProviderDelta(samples=[Sample(T0 + 1, 2.0)]), 0).samples == []


def test_merge_uses_the_delta_history_bound() -> None:
    chain = ChainState({"a": ProviderState(samples=[Sample(T0 + i, 1.0) for i in range(5)])})
    delta = StateDelta(history=2)
    delta.provider("a").samples.append(Sample(T0 + 10, 9.0))
    merged = merge(chain, delta)
    assert merged.providers["a"].samples == [Sample(T0 + 4, 1.0), Sample(T0 + 10, 9.0)]
    assert StateDelta().history == DEFAULT_HISTORY


def test_merge_touches_only_the_delta_providers() -> None:
    b = ProviderState(requests=5)
    chain = ChainState({"a": ProviderState(requests=1), "b": b})
    delta = StateDelta()
    delta.provider("a").requests = 2
    delta.provider("c").successes = 3
    merged = merge(chain, delta)
    assert set(merged.providers) == {"a", "b", "c"}
    assert merged.providers["a"].requests == 3
    assert merged.providers["b"] == b
    assert merged.providers["c"] == ProviderState(successes=3)


# --- the breaker snapshot -----------------------------------------------------------------------


def test_most_recent_breaker_change_wins() -> None:
    old = open_snap(T0, T0 + 30)
    closed = BreakerSnapshot(since=T0 + 40, updated_at=T0 + 40)
    assert merge_provider(ProviderState(breaker=old), ProviderDelta(breaker=closed)).breaker == (
        closed
    )
    # an older change arriving late loses
    assert merge_breaker(closed, old) == closed


def test_equal_times_let_the_delta_win() -> None:
    a = BreakerSnapshot(since=T0, updated_at=T0)
    b = BreakerSnapshot(forced="closed", updated_at=T0)
    assert merge_breaker(a, b) == b
    assert merge_breaker(b, a) == a


def test_no_breaker_in_the_delta_keeps_the_stored_one() -> None:
    snap = open_snap(T0, T0 + 30)
    assert merge_breaker(snap, None) is snap
    assert merge_provider(ProviderState(breaker=snap), ProviderDelta(requests=1)).breaker == snap


def test_of_two_open_deadlines_the_later_wins() -> None:
    long_ = open_snap(T0, T0 + 600, since=T0 - 5)
    short = open_snap(T0 + 10, T0 + 40)
    merged = merge_breaker(long_, short)
    assert merged == open_snap(T0 + 10, T0 + 600)  # newer snapshot, later deadline
    assert merge_breaker(short, long_) == merged


def test_a_later_deadline_in_the_newer_snapshot_is_kept() -> None:
    early = open_snap(T0, T0 + 30)
    later = open_snap(T0 + 10, T0 + 70)
    assert merge_breaker(early, later) == later


def test_a_newer_manual_override_is_not_extended() -> None:
    tripped = open_snap(T0, T0 + 600)
    forced = BreakerSnapshot(state="open", open_until=T0 + 5, forced="open", updated_at=T0 + 1)
    assert merge_breaker(tripped, forced) == forced


def test_last_error_and_health_keep_the_newest_by_at() -> None:
    state = ProviderState(
        last_error={"at": T0 + 10, "class": "transient", "status": 503, "message": "new"},
        last_health={"at": T0 + 1, "ok": True, "latency_ms": 5.0, "error": None},
    )
    delta = ProviderDelta(
        last_error={"at": T0 + 5, "class": "provider", "status": 401, "message": "old"},
        last_health={"at": T0 + 2, "ok": False, "latency_ms": 9.0, "error": "boom"},
    )
    merged = merge_provider(state, delta)
    assert merged.last_error == state.last_error
    assert merged.last_health == delta.last_health
    assert merge_provider(merged, ProviderDelta()).last_error == state.last_error
    fresh = merge_provider(ProviderState(), delta)
    assert (fresh.last_error, fresh.last_health) == (delta.last_error, delta.last_health)


def test_merge_does_not_modify_its_inputs() -> None:
    chain = ChainState(
        {
            "a": ProviderState(
                breaker=open_snap(T0, T0 + 30),
                outcomes=[(T0 + 1, True), (T0 + 5, False)],
                samples=[Sample(T0 + 1, 10.0), Sample(T0 + 5, 50.0)],
                requests=2,
                successes=1,
                failures={"transient": 1},
                last_error={"at": T0, "class": "transient", "status": 500, "message": "x"},
            ),
            "b": ProviderState(requests=9),
        }
    )
    delta = StateDelta(history=2)
    d = delta.provider("a")
    d.requests, d.successes, d.failures = 3, 2, {"transient": 1, "provider": 1}
    d.outcomes = [(T0 + 3, True), (T0 + 9, False)]
    d.samples = [Sample(T0 + 3, 30.0)]
    d.breaker = BreakerSnapshot(since=T0 + 9, updated_at=T0 + 9)
    d.last_error = {"at": T0 + 9, "class": "provider", "status": 401, "message": "y"}
    delta.provider("c").requests = 1

    chain_before, delta_before = copy.deepcopy(chain), copy.deepcopy(delta)
    merged = merge(chain, delta)
    assert chain == chain_before
    assert delta == delta_before
    assert merged is not chain
    assert merged.providers["a"] != chain.providers["a"]
    assert "c" not in chain.providers


# --- consecutive failures -----------------------------------------------------------------------


def test_consecutive_failures_counts_trailing_failures_after_since() -> None:
    outcomes = [(T0, False), (T0 + 1, True), (T0 + 2, False), (T0 + 3, False), (T0 + 4, False)]
    assert ProviderState(outcomes=outcomes).consecutive_failures == 3
    since = BreakerSnapshot(since=T0 + 3, updated_at=T0 + 3)
    assert ProviderState(breaker=since, outcomes=outcomes).consecutive_failures == 2
    assert ProviderState(outcomes=[*outcomes, (T0 + 5, True)]).consecutive_failures == 0
    assert ProviderState().consecutive_failures == 0


def test_consecutive_failures_is_derived_not_loaded() -> None:
    ps = ProviderState(outcomes=[(T0, False), (T0 + 1, False)])
    d = ps.to_dict()
    assert d["consecutive_failures"] == 2
    d["consecutive_failures"] = 99
    assert ProviderState.from_dict(d).consecutive_failures == 2


# --- the JSON form ------------------------------------------------------------------------------


def full_state() -> ChainState:
    return ChainState(
        {
            "anthropic": ProviderState(
                breaker=open_snap(T0 + 0.125, T0 + 60.5, since=T0 - 100),
                outcomes=[(T0 - 1.5, True), (T0 + 0.125, False)],
                samples=[
                    Sample(T0 - 1.5, 812.25, 120.5, 42, True),
                    Sample(T0, 3.0, None, 0, False),
                ],
                requests=12,
                successes=11,
                failures={"transient": 1},
                last_error={"at": T0, "class": "transient", "status": 529, "message": "overloaded"},
                last_health={"at": T0 - 3, "ok": True, "latency_ms": 80.5, "error": None},
            ),
            "ollama": ProviderState(),
        }
    )


def test_chain_state_round_trips_exactly_through_json() -> None:
    chain = full_state()
    again = ChainState.from_dict(json.loads(json.dumps(chain.to_dict())))
    assert again == chain
    assert again.to_dict() == chain.to_dict()


def test_document_round_trips_exactly() -> None:
    chains = {"default": full_state(), "other": ChainState()}
    doc = json.loads(json.dumps(dump_document(chains)))
    assert doc["schema"] == SCHEMA_VERSION
    assert load_document(doc) == chains
    assert dump_document(load_document(doc)) == doc


def test_sample_list_form() -> None:
    s = Sample(T0 + 0.5, 812.25, 120.5, 42, False)
    assert s.to_list() == [T0 + 0.5, 812.25, 120.5, 42, False]
    assert Sample.from_list(s.to_list()) == s
    loaded = Sample.from_list([1, 2, None, 3, 1])
    assert loaded == Sample(1.0, 2.0, None, 3, True)
    assert loaded.ok is True


def test_provider_delta_round_trips() -> None:
    delta = ProviderDelta(
        requests=2,
        successes=1,
        failures={"provider": 1},
        outcomes=[(T0, True), (T0 + 1, False)],
        samples=[Sample(T0, 5.5, 1.25, 3, True)],
        breaker=open_snap(T0 + 1, T0 + 601),
        last_error={"at": T0 + 1, "class": "provider", "status": 401, "message": "bad key"},
        last_health=None,
    )
    assert ProviderDelta.from_dict(json.loads(json.dumps(delta.to_dict()))) == delta
    assert ProviderDelta.from_dict(ProviderDelta().to_dict()) == ProviderDelta()


def test_full_precision_times_round_trip_exactly() -> None:
    close = 1_800_000_123.4564  # a time.time() value, finer than a millisecond
    ps = ProviderState(
        breaker=BreakerSnapshot(since=close, updated_at=close),
        outcomes=[(close - 0.0003, False), (close, True)],  # the probe success closed it
        samples=[Sample(close, 12.345)],
    )
    again = ProviderState.from_dict(json.loads(json.dumps(ps.to_dict())))
    assert again == ps
    assert again.outcomes[-1][0] >= again.breaker.since  # still after the close


def test_chain_state_provider_defaults_without_inserting() -> None:
    chain = ChainState()
    assert chain.provider("x") == ProviderState()
    assert chain.providers == {}


def test_state_delta_provider_creates_once() -> None:
    delta = StateDelta()
    assert delta.is_empty()
    d = delta.provider("a")
    assert delta.provider("a") is d
    assert delta.is_empty()  # an empty provider delta is still empty
    d.requests = 1
    assert not delta.is_empty()


@pytest.mark.parametrize(
    "field_value",
    [
        {"requests": 1},
        {"successes": 1},
        {"failures": {"transient": 1}},
        {"outcomes": [(T0, True)]},
        {"samples": [Sample(T0, 1.0)]},
        {"breaker": BreakerSnapshot()},
        {"last_error": {"at": T0}},
        {"last_health": {"at": T0}},
    ],
)
def test_provider_delta_is_not_empty_with_any_field(field_value: dict[str, Any]) -> None:
    assert ProviderDelta().is_empty()
    assert not ProviderDelta(**field_value).is_empty()


# --- the document envelope ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc",
    [
        None,
        [],
        "state",
        42,
        {},
        {"chains": {}},
        {"schema": "1", "chains": {}},
        {"schema": 1.0, "chains": {}},
        {"schema": 1},
        {"schema": 1, "chains": []},
        {"schema": 0, "chains": {}},
        {"schema": -3, "chains": {}},
    ],
)
def test_foreign_envelopes_are_rejected(doc: Any) -> None:
    with pytest.raises(ForeignDocument):
        load_document(doc)


@pytest.mark.parametrize(
    "chain",
    [
        [],
        "x",
        {"providers": [1]},
        {"providers": {"a": "x"}},
        {"providers": {"a": {"requests": "many"}}},
        {"providers": {"a": {"requests": [1]}}},
        {"providers": {"a": {"failures": {"transient": "x"}}}},
        {"providers": {"a": {"failures": [["transient", 1]]}}},
        {"providers": {"a": {"outcomes": [[1]]}}},
        {"providers": {"a": {"outcomes": [[1, True, 3]]}}},
        {"providers": {"a": {"outcomes": [["soon", True]]}}},
        {"providers": {"a": {"samples": [[1, 2, 3]]}}},
        {"providers": {"a": {"samples": [["t", 2, None, 3, True]]}}},
        {"providers": {"a": {"breaker": "open"}}},
        {"providers": {"a": {"breaker": {"open_until": "later"}}}},
        {"providers": {"a": {"breaker": {"cooldown": [30]}}}},
    ],
)
def test_a_malformed_chain_is_dropped_alone(chain: Any) -> None:
    assert_dropped_alone(chain)


GOOD = {"providers": {"p": {"requests": 7, "outcomes": [[T0, True]]}}}


def assert_dropped_alone(chain: Any) -> None:
    """A document holding ``chain`` beside a good one: the good one loads, ``chain`` is named
    as malformed (with a one-line reason) and left out."""
    doc = {"schema": SCHEMA_VERSION, "chains": {"bad": chain, "good": GOOD}}
    decoded = decode_document(doc)
    assert list(decoded.malformed) == ["bad"]
    assert decoded.malformed["bad"] and "\n" not in decoded.malformed["bad"]
    assert list(decoded.chains) == ["good"]
    assert decoded.chains["good"].providers["p"].requests == 7
    assert load_document(doc) == decoded.chains


def test_newer_schema_is_refused_as_future() -> None:
    with pytest.raises(FutureSchema):
        load_document({"schema": SCHEMA_VERSION + 1, "chains": {}})


@pytest.mark.parametrize(
    "doc",
    [
        {"schema": SCHEMA_VERSION + 1, "chains": [{"name": "default"}]},
        {"schema": SCHEMA_VERSION + 1},
        {"schema": SCHEMA_VERSION + 7, "tables": {}},
    ],
)
def test_newer_schema_of_any_shape_is_future(doc: dict[str, Any]) -> None:
    with pytest.raises(FutureSchema):
        load_document(doc)


@pytest.mark.parametrize(
    "provider",
    [
        '{"requests": 1e400}',
        '{"successes": -1e400}',
        '{"failures": {"transient": 1e400}}',
        '{"samples": [[1, 2, null, 1e400, true]]}',
    ],
)
def test_infinite_counters_are_malformed(provider: str) -> None:
    # JSON numbers too large for a float decode as inf, which int() cannot take
    assert_dropped_alone({"providers": {"p": json.loads(provider)}})


@pytest.mark.parametrize(
    "provider",
    [
        '{"breaker": {"state": "open", "open_until": Infinity}}',  # open for ever
        '{"breaker": {"state": "open", "open_until": 1e400}}',
        '{"breaker": {"updated_at": NaN}}',  # would win every merge, or none
        '{"breaker": {"cooldown": -Infinity}}',
        '{"outcomes": [[NaN, false]]}',
        '{"outcomes": [[1e400, true]]}',
        '{"samples": [[1, NaN, null, 1, true]]}',
        '{"samples": [[Infinity, 2, null, 1, true]]}',
        '{"samples": [[1, 2, -Infinity, 1, true]]}',
    ],
)
def test_non_finite_times_and_deadlines_are_malformed(provider: str) -> None:
    assert_dropped_alone({"providers": {"p": json.loads(provider)}})


@pytest.mark.parametrize("key", ["last_error", "last_health", "last_ratelimit"])
def test_non_finite_numbers_in_a_record_become_none(key: str) -> None:
    stored = json.loads('{"at": 1e400, "latency_ms": NaN, "nested": {"x": [Infinity, 2.5]}}')
    p = ProviderState.from_dict({key: stored})
    assert getattr(p, key) == {"at": None, "latency_ms": None, "nested": {"x": [None, 2.5]}}
    json.dumps(p.to_dict(), allow_nan=False)  # writable as strict JSON
    clean = {"at": T0, "ok": True}
    assert getattr(ProviderState.from_dict({key: clean}), key) is clean  # nothing copied


def test_merging_never_lets_a_non_finite_number_into_the_state() -> None:
    inf, nan = float("inf"), float("nan")
    delta = StateDelta()
    d = delta.provider("p")
    d.requests = 3
    d.outcomes = [(T0, True), (nan, False), (inf, False)]
    d.samples = [Sample(T0, 5.0), Sample(T0 + 1, nan), Sample(inf, 1.0), Sample(T0, 1.0, inf)]
    d.breaker = BreakerSnapshot(state="open", opened_at=T0, open_until=inf, updated_at=T0)
    d.last_error = {"at": T0, "class": "transient", "status": 429, "retry_after": inf}
    d.last_ratelimit = {"at": nan, "remaining_requests": 3}
    p = merge(ChainState(), delta).providers["p"]
    assert p.requests == 3
    assert p.outcomes == [(T0, True)]
    assert p.samples == [Sample(T0, 5.0)]
    assert p.breaker.state == "open" and p.breaker.open_until is None  # probes, not for ever
    assert p.breaker.opened_at == T0
    assert p.last_error == {"at": T0, "class": "transient", "status": 429, "retry_after": None}
    assert p.last_ratelimit == {"at": None, "remaining_requests": 3}
    text = json.dumps(p.to_dict(), allow_nan=False)
    assert ProviderState.from_dict(json.loads(text)) == p


def test_a_journalled_delta_with_non_finite_numbers_does_not_decode() -> None:
    good = ProviderDelta(requests=1, outcomes=[(T0, True)]).to_dict()
    assert ProviderDelta.from_dict(good).requests == 1
    for bad in ({"outcomes": [[float("nan"), True]]}, {"breaker": {"open_until": 1e400}}):
        with pytest.raises(ValueError):
            ProviderDelta.from_dict(json.loads(json.dumps({**good, **bad})))


@pytest.mark.parametrize("key", ["last_error", "last_health"])
@pytest.mark.parametrize("value", ["boom", 3, [1, 2], True])
def test_non_object_last_error_or_health_is_malformed(key: str, value: Any) -> None:
    assert_dropped_alone({"providers": {"p": {key: value}}})


@pytest.mark.parametrize("key", ["last_error", "last_health"])
@pytest.mark.parametrize("at", ["yesterday", True, [1]])
def test_a_last_error_or_health_whose_time_is_not_a_number_is_malformed(key: str, at: Any) -> None:
    # merging compares "at": a non-number would crash the next update instead of loading
    assert_dropped_alone({"providers": {"p": {key: {"at": at}}}})


def test_boolean_schema_is_foreign() -> None:
    with pytest.raises(ForeignDocument):
        load_document({"schema": True, "chains": {}})


def test_older_schema_is_migrated_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    def one_to_two(doc: dict[str, Any]) -> dict[str, Any]:
        return {"schema": 2, "chains": {n: {"providers": c["p"]} for n, c in doc["chains"].items()}}

    monkeypatch.setattr(state_module, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(state_module, "MIGRATIONS", {1: one_to_two})
    old = {"schema": 1, "chains": {"default": {"p": {"a": {"requests": 4}}}}}
    loaded = load_document(old)
    assert loaded == {"default": ChainState({"a": ProviderState(requests=4)})}
    with pytest.raises(ForeignDocument):
        load_document({"schema": 0, "chains": {}})  # no step from 0


@SETTINGS
@given(
    garbage=st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=5)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "providers",
                        "breaker",
                        "outcomes",
                        "samples",
                        "requests",
                        "failures",
                        "last_error",
                        "last_health",
                        "at",
                        "state",
                        "open_until",
                        "updated_at",
                        "a",
                        "x",
                    ]
                ),
                inner,
                max_size=5,
            )
        ),
        max_leaves=20,
    )
)
@example(garbage={"providers": {"a": {"last_error": {"at": "soon"}}}})  # loads, then crashed merge
def test_garbage_chains_load_or_are_dropped(garbage: Any) -> None:
    doc = {"schema": SCHEMA_VERSION, "chains": {"c": garbage, "good": GOOD}}
    decoded = decode_document(doc)
    assert decoded.chains["good"].providers["p"].requests == 7  # never lost to a neighbour
    if "c" in decoded.malformed:
        return
    chain = decoded.chains["c"]
    # What loads must survive the next update and be written back: a value accepted here
    # and crashing a later merge is the failure this test hunts for.
    delta = StateDelta()
    for name in chain.providers:
        d = delta.provider(name)
        d.requests = 1
        d.last_error = {"at": T0, "class": "transient", "status": 503, "message": "x"}
        d.breaker = BreakerSnapshot(state="open", open_until=T0 + 30, updated_at=T0)
    merged = merge(chain, delta)
    json.dumps(merged.to_dict(), allow_nan=False)  # strict JSON: no NaN, no Infinity
    assert set(merged.providers) == set(chain.providers)


# --- properties: merging is exact whatever the order and grouping --------------------------------

PROVIDERS = ("a", "b", "c")
CLASSES = ("transient", "provider", "context_length")


@st.composite
def deltas(draw: st.DrawFn) -> StateDelta:
    """A StateDelta with time-ordered, globally distinct outcome and sample times."""
    delta = StateDelta(history=7)
    for name in draw(st.lists(st.sampled_from(PROVIDERS), unique=True, max_size=3)):
        d = delta.provider(name)
        d.requests = draw(st.integers(0, 50))
        d.successes = draw(st.integers(0, 50))
        d.failures = draw(st.dictionaries(st.sampled_from(CLASSES), st.integers(0, 9), max_size=3))
        times = sorted(draw(st.lists(st.integers(0, 10**6), unique=True, max_size=6)))
        # a unique random fraction keeps times distinct across deltas (ties would be ambiguous)
        salt = draw(st.integers(0, 999))
        d.outcomes = [(T0 + t + salt / 1000, draw(st.booleans())) for t in times]
        d.samples = [Sample(T0 + t + salt / 1000, float(t % 997)) for t in times[:4]]
    return delta


def unique_times(ds: list[StateDelta]) -> bool:
    seen = [t for d in ds for p in d.providers.values() for t, _ in p.outcomes]
    return len(seen) == len(set(seen))


def counters(chain: ChainState) -> dict[str, tuple[int, int, dict[str, int]]]:
    return {
        n: (p.requests, p.successes, {k: v for k, v in p.failures.items() if v})
        for n, p in chain.providers.items()
    }


def fold(chain: ChainState, ds: list[StateDelta]) -> ChainState:
    for d in ds:
        chain = merge(chain, d)
    return chain


def combine(a: StateDelta, b: StateDelta) -> StateDelta:
    """The single delta a process would have sent had it seen both ``a`` and ``b``."""
    out = StateDelta(history=a.history)
    for src in (a, b):
        for name, d in src.providers.items():
            o = out.provider(name)
            o.requests += d.requests
            o.successes += d.successes
            for k, v in d.failures.items():
                o.failures[k] = o.failures.get(k, 0) + v
            o.outcomes = sorted(o.outcomes + d.outcomes)
            o.samples = sorted(o.samples + d.samples, key=lambda s: s.t)
    return out


BASE = ChainState(
    {
        "a": ProviderState(
            requests=3,
            successes=2,
            failures={"transient": 1},
            outcomes=[(T0 - 10, True), (T0 - 5, False)],
            samples=[Sample(T0 - 10, 1.0)],
        )
    }
)


@SETTINGS
@given(ds=st.lists(deltas(), max_size=6), data=st.data())
def test_any_order_of_deltas_gives_the_same_state(ds: list[StateDelta], data: Any) -> None:
    if not unique_times(ds):
        return
    shuffled = data.draw(st.permutations(ds), label="order")
    one, other = fold(BASE, ds), fold(BASE, shuffled)
    assert counters(one) == counters(other)
    for name in one.providers:
        assert one.providers[name].outcomes == other.providers[name].outcomes
        assert one.providers[name].samples == other.providers[name].samples
    expected = sum(d.providers[n].requests for d in ds for n in d.providers if n == "a")
    assert one.provider("a").requests == 3 + expected


@SETTINGS
@given(s=st.lists(deltas(), min_size=1, max_size=3), a=deltas(), b=deltas())
def test_merging_a_then_b_equals_merging_a_plus_b(
    s: list[StateDelta], a: StateDelta, b: StateDelta
) -> None:
    base = fold(BASE, s)
    stepwise = merge(merge(base, a), b)
    at_once = merge(base, combine(a, b))
    assert counters(stepwise) == counters(at_once)
    if unique_times([*s, a, b]):
        for name in stepwise.providers:
            assert stepwise.providers[name].outcomes == at_once.providers[name].outcomes
            assert stepwise.providers[name].samples == at_once.providers[name].samples


@SETTINGS
@given(ds=st.lists(deltas(), min_size=1, max_size=8))
def test_merged_histories_are_sorted_and_bounded(ds: list[StateDelta]) -> None:
    chain = fold(BASE, ds)
    for p in chain.providers.values():
        assert [t for t, _ in p.outcomes] == sorted(t for t, _ in p.outcomes)
        assert [s.t for s in p.samples] == sorted(s.t for s in p.samples)
        assert len(p.samples) <= 7
        assert len(p.outcomes) <= MAX_OUTCOMES


@SETTINGS
@given(ds=st.lists(deltas(), max_size=5))
def test_merged_state_round_trips_through_the_document(ds: list[StateDelta]) -> None:
    # every time here is a whole number of milliseconds, as stored
    chains = {"default": fold(BASE, ds)}
    doc = json.loads(json.dumps(dump_document(chains)))
    assert load_document(doc) == chains
