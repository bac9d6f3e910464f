"""The circuit breaker as a pure state machine: every call gets ``now`` (epoch seconds)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from failover_cli.breaker import (
    MAX_OUTCOMES,
    BreakerPolicy,
    BreakerSnapshot,
    BreakerState,
    CircuitBreaker,
    Permit,
    Transition,
)
from failover_cli.state import ProviderState

T0 = 1_800_000_000.0
CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def tripped(policy: BreakerPolicy | None = None, at: float = T0) -> CircuitBreaker:
    """A breaker opened by ``failure_threshold`` consecutive failures, the last one at ``at``."""
    b = CircuitBreaker(policy or BreakerPolicy())
    for _ in range(b.policy.failure_threshold):
        b.on_failure(at)
    assert b.state(at) is OPEN
    return b


def is_probe(permit: Permit | None) -> bool:
    """An admission that holds a half-open slot."""
    return permit is not None and permit.probe


def is_plain(permit: Permit | None) -> bool:
    """An ordinary admission of a closed breaker."""
    return permit is not None and not permit.probe


# --- closed -> open ---------------------------------------------------------------------------


def test_new_breaker_is_closed_and_admits_without_probe() -> None:
    b = CircuitBreaker()
    assert b.state(T0) is CLOSED
    assert is_plain(b.acquire(T0))
    assert b.next_admission(T0) == T0
    assert b.snap == BreakerSnapshot()


def test_opens_on_the_threshold_th_consecutive_failure() -> None:
    b = CircuitBreaker(BreakerPolicy(failure_threshold=3, cooldown=30.0))
    assert b.on_failure(T0) is None
    assert b.on_failure(T0 + 1) is None
    assert b.state(T0 + 1) is CLOSED
    assert b.consecutive_failures() == 2

    assert b.on_failure(T0 + 2) == Transition(CLOSED, OPEN, T0 + 32)
    assert b.state(T0 + 2) is OPEN
    assert b.snap.state == "open"
    assert b.snap.opened_at == T0 + 2
    assert b.snap.open_until == T0 + 32
    assert b.snap.cooldown == 30.0
    assert b.snap.updated_at == T0 + 2


def test_a_success_breaks_the_consecutive_run() -> None:
    b = CircuitBreaker(BreakerPolicy(failure_threshold=3))
    b.on_failure(T0)
    b.on_failure(T0 + 1)
    b.on_success(T0 + 2)
    b.on_failure(T0 + 3)
    b.on_failure(T0 + 4)
    assert b.consecutive_failures() == 2
    assert b.state(T0 + 4) is CLOSED
    assert b.on_failure(T0 + 5) == Transition(CLOSED, OPEN, T0 + 5 + 30)


def test_failure_rate_trips_only_once_min_requests_are_seen() -> None:
    policy = BreakerPolicy(failure_threshold=100, window=60.0, failure_rate=0.5, min_requests=10)
    b = CircuitBreaker(policy)
    t = T0
    for i in range(9):  # s f s f s f s f s: 9 calls, 4 failures
        t += 1
        if i % 2:
            assert b.on_failure(t) is None
        else:
            b.on_success(t)
    assert b.window_counts(t) == (9, 4)
    assert b.state(t) is CLOSED
    t += 1
    assert b.on_failure(t) == Transition(CLOSED, OPEN, t + 30)  # 10 calls, 5 failures: 0.5
    assert b.window_counts(t) == (10, 5)


def test_failure_rate_below_the_threshold_stays_closed() -> None:
    policy = BreakerPolicy(failure_threshold=100, window=60.0, failure_rate=0.5, min_requests=10)
    b = CircuitBreaker(policy)
    t = T0
    for _ in range(6):
        t += 1
        b.on_success(t)
    for _ in range(5):  # 11 calls, 5 failures: 0.4545...
        t += 1
        assert b.on_failure(t) is None
    assert b.window_counts(t) == (11, 5)
    t += 1
    assert b.on_failure(t) == Transition(CLOSED, OPEN, t + 30)  # 12 calls, 6 failures


def test_all_failures_below_min_requests_do_not_trip_on_rate() -> None:
    policy = BreakerPolicy(failure_threshold=100, min_requests=10, failure_rate=0.5)
    b = CircuitBreaker(policy)
    for i in range(9):
        assert b.on_failure(T0 + i) is None
    assert b.state(T0 + 8) is CLOSED
    assert b.on_failure(T0 + 9) is not None
    assert b.state(T0 + 9) is OPEN


def test_failure_rate_only_counts_the_window() -> None:
    policy = BreakerPolicy(failure_threshold=100, window=60.0, failure_rate=0.5, min_requests=10)
    b = CircuitBreaker(policy)
    for i in range(9):
        b.on_failure(T0 + i)
    # 100 s later the 9 old failures are outside the 60 s window: 1 call, not 10.
    assert b.on_failure(T0 + 100) is None
    assert b.window_counts(T0 + 100) == (1, 1)
    assert b.state(T0 + 100) is CLOSED


def test_window_counts_edges() -> None:
    b = CircuitBreaker(BreakerPolicy(window=60.0, failure_threshold=100, min_requests=100))
    b.on_failure(T0)
    b.on_success(T0 + 10)
    assert b.window_counts(T0 + 59.5) == (2, 1)
    assert b.window_counts(T0 + 60.5) == (1, 0)
    assert b.window_counts(T0 + 70.5) == (0, 0)


def test_outcomes_are_bounded() -> None:
    b = CircuitBreaker()
    for i in range(MAX_OUTCOMES + 5):
        b.on_success(T0 + i)
    assert len(b.outcomes) == MAX_OUTCOMES
    assert b.outcomes[0] == (T0 + 5, True)
    assert b.outcomes[-1] == (T0 + MAX_OUTCOMES + 4, True)


# --- open -> half-open -> closed / open ---------------------------------------------------------


def test_open_skips_until_the_cooldown_then_turns_half_open() -> None:
    b = tripped(BreakerPolicy(cooldown=30.0))
    assert b.acquire(T0 + 29.999) is None
    assert b.state(T0 + 29.999) is OPEN
    assert b.next_admission(T0 + 10) == T0 + 30
    assert b.state(T0 + 30) is HALF_OPEN
    assert b.next_admission(T0 + 30) == T0 + 30
    assert is_probe(b.acquire(T0 + 30))


@pytest.mark.parametrize("probes", [1, 2, 3])
def test_half_open_admits_at_most_half_open_probes_at_once(probes: int) -> None:
    b = tripped(BreakerPolicy(half_open_probes=probes))
    now = T0 + 30
    permits = [b.acquire(now) for _ in range(probes)]
    assert all(is_probe(p) for p in permits)
    assert b.probes_in_flight == probes
    assert b.acquire(now) is None  # the rest skip the provider
    assert b.next_admission(now) is None
    b.release(permits[0])
    assert b.probes_in_flight == probes - 1
    assert b.next_admission(now) == now
    assert is_probe(b.acquire(now))
    assert b.state(now) is HALF_OPEN


def test_a_second_failed_probe_of_the_same_round_does_not_double_again() -> None:
    b = tripped(BreakerPolicy(cooldown=30.0, max_cooldown=600.0, half_open_probes=2))
    first, second = b.acquire(T0 + 30), b.acquire(T0 + 30)
    assert b.on_failure(T0 + 31, first) == Transition(HALF_OPEN, OPEN, T0 + 61)
    assert b.on_failure(T0 + 32, second) is None  # already open: a straggler, like any other
    assert (b.snap.cooldown, b.snap.open_until) == (30.0, T0 + 61)


def test_a_probe_failing_after_another_probe_closed_the_breaker_is_an_ordinary_failure() -> None:
    b = tripped(BreakerPolicy(failure_threshold=3, cooldown=30.0, half_open_probes=2))
    first, second = b.acquire(T0 + 30), b.acquire(T0 + 30)
    assert b.on_success(T0 + 31, first) == Transition(HALF_OPEN, CLOSED, None)
    assert b.on_failure(T0 + 32, second) is None
    assert b.state(T0 + 32) is CLOSED
    assert b.probes_in_flight == 0


def test_release_gives_back_the_slot_without_recording_an_outcome() -> None:
    b = tripped()
    before = list(b.outcomes)
    permit = b.acquire(T0 + 30)
    assert permit is not None
    b.release(permit)
    assert b.probes_in_flight == 0
    assert list(b.outcomes) == before
    assert b.state(T0 + 30) is HALF_OPEN
    b.release(Permit(probe=True))  # a stray release never goes negative
    b.release(Permit())
    assert b.probes_in_flight == 0


def test_probe_success_closes_and_resets() -> None:
    b = tripped()
    now = T0 + 31
    permit = b.acquire(now)
    assert b.on_success(now, permit) == Transition(HALF_OPEN, CLOSED, None)
    assert b.state(now) is CLOSED
    assert b.probes_in_flight == 0
    assert (b.snap.state, b.snap.opened_at, b.snap.open_until, b.snap.cooldown) == (
        "closed",
        None,
        None,
        0.0,
    )
    assert b.snap.since == now
    assert b.snap.updated_at == now
    assert is_plain(b.acquire(now))


def test_probe_failure_reopens_for_a_share_of_the_outage_within_the_bounds() -> None:
    b = tripped(BreakerPolicy(cooldown=30.0, max_cooldown=100.0, cooldown_ratio=0.5))
    now = T0 + 30
    # down 31 s: the base; down 62 s: 31; down 94 s: 47; then 71, 100 (the cap), 100.
    expected = [30.0, 31.0, 47.0, 71.0, 100.0, 100.0]
    for cooldown in expected:
        permit = b.acquire(now)
        assert is_probe(permit)
        assert b.on_failure(now + 1, permit) == Transition(
            HALF_OPEN, OPEN, pytest.approx(now + 1 + cooldown, abs=0.5)
        )
        cooldown = b.snap.cooldown
        assert b.snap.down_since == T0  # one outage, however many spells
        assert b.probes_in_flight == 0
        assert b.snap.opened_at == now + 1  # a new open spell
        assert b.state(now + 1 + cooldown - 0.001) is OPEN
        now = now + 1 + cooldown
        assert b.state(now) is HALF_OPEN


def test_after_a_close_the_next_trip_uses_the_base_cooldown_again() -> None:
    b = tripped(BreakerPolicy(cooldown=30.0, failure_threshold=1, cooldown_ratio=1.0))
    permit = b.acquire(T0 + 60)
    b.on_failure(T0 + 60, permit)  # down 60 s: reopened for 60
    assert b.snap.cooldown == 60.0
    permit = b.acquire(T0 + 120)
    b.on_success(T0 + 120, permit)
    assert b.snap.down_since is None
    assert b.on_failure(T0 + 121) == Transition(CLOSED, OPEN, T0 + 121 + 30)
    assert b.snap.cooldown == 30.0
    assert b.snap.down_since == T0 + 121


def test_a_straggler_success_while_open_does_not_close() -> None:
    b = tripped()
    assert b.on_success(T0 + 5, Permit()) is None  # admitted before the trip
    assert b.state(T0 + 5) is OPEN
    assert b.snap.open_until == T0 + 30


def test_a_straggler_failure_while_open_changes_nothing() -> None:
    b = tripped()
    snap = b.snap
    assert b.on_failure(T0 + 5, Permit()) is None
    assert b.snap == snap


def test_a_success_without_permit_closes_only_once_half_open() -> None:
    """A health check (no permit) may close a half-open breaker, never an open one."""
    b = tripped()
    assert b.on_success(T0 + 10) is None
    assert b.state(T0 + 10) is OPEN
    assert b.on_success(T0 + 30) == Transition(HALF_OPEN, CLOSED, None)


# --- after a close, old failures do not count (``since``) --------------------------------------


def test_failures_before_a_probe_close_do_not_count_towards_the_rate() -> None:
    policy = BreakerPolicy(
        failure_threshold=100, window=600.0, failure_rate=0.5, min_requests=4, cooldown=30.0
    )
    b = CircuitBreaker(policy)
    for i in range(4):
        b.on_failure(T0 + i)
    assert b.state(T0 + 3) is OPEN
    b.on_success(T0 + 33, b.acquire(T0 + 33))
    assert b.snap.since == T0 + 33

    assert b.on_failure(T0 + 34) is None  # counting the 4 old failures would trip (5 of 6)
    assert b.window_counts(T0 + 34) == (2, 1)
    b.on_success(T0 + 35)
    assert b.on_failure(T0 + 36) == Transition(CLOSED, OPEN, T0 + 66)  # 4 calls, 2 failures


def test_failures_before_a_reset_do_not_count_as_consecutive() -> None:
    b = CircuitBreaker(BreakerPolicy(failure_threshold=3))
    b.on_failure(T0)
    b.on_failure(T0 + 1)
    b.force(T0 + 2, None)
    assert b.on_failure(T0 + 3) is None
    assert b.on_failure(T0 + 4) is None
    assert b.consecutive_failures() == 2
    assert b.state(T0 + 4) is CLOSED
    assert b.on_failure(T0 + 5) is not None


# --- deadlines: the later one wins --------------------------------------------------------------


def test_hold_until_opens_a_closed_breaker_until_a_long_retry_after() -> None:
    b = CircuitBreaker(BreakerPolicy(cooldown=30.0))
    assert b.hold_until(T0, T0 + 120) == Transition(CLOSED, OPEN, T0 + 120)
    assert b.snap.open_until == T0 + 120
    assert b.state(T0 + 119) is OPEN
    assert b.state(T0 + 120) is HALF_OPEN


def test_a_short_retry_after_holds_a_closed_breaker_as_long_as_asked() -> None:
    b = CircuitBreaker(BreakerPolicy(cooldown=30.0))
    assert b.hold_until(T0, T0 + 5) == Transition(CLOSED, OPEN, T0 + 5)
    assert b.state(T0 + 4.999) is OPEN
    assert b.state(T0 + 5) is HALF_OPEN
    assert b.snap.cooldown == 30.0  # the base a failed probe doubles
    permit = b.acquire(T0 + 5)
    assert b.on_failure(T0 + 5, permit) == Transition(HALF_OPEN, OPEN, T0 + 35)


def test_a_short_retry_after_never_shortens_a_longer_cooldown() -> None:
    b = tripped(BreakerPolicy(cooldown=30.0))
    assert b.hold_until(T0 + 1, T0 + 5) is None
    assert b.snap.open_until is not None
    assert b.snap.open_until >= T0 + 30
    assert b.state(T0 + 29) is OPEN


def test_a_short_retry_after_does_not_lengthen_a_running_cooldown() -> None:
    b = tripped(BreakerPolicy(cooldown=30.0))
    b.hold_until(T0 + 20, T0 + 21)
    assert b.snap.open_until == T0 + 30  # the later of the two deadlines (30 vs 21)
    assert b.snap.cooldown == 30.0


def test_a_long_retry_after_extends_an_open_breaker() -> None:
    b = tripped(BreakerPolicy(cooldown=30.0))
    assert b.hold_until(T0 + 1, T0 + 200) is None  # still open: no transition
    assert b.snap.open_until == T0 + 200
    assert b.snap.opened_at == T0  # the same open spell
    assert b.state(T0 + 199) is OPEN
    assert b.next_admission(T0 + 1) == T0 + 200


def test_a_probe_failure_never_shortens_a_longer_hold() -> None:
    b = tripped(BreakerPolicy(cooldown=30.0))
    permit = b.acquire(T0 + 30)
    b.hold_until(T0 + 30, T0 + 500)  # the probe's 429 asked for 470 s
    b.on_failure(T0 + 31, permit)
    assert b.snap.open_until is not None
    assert b.snap.open_until >= T0 + 500


def test_hold_until_in_the_past_or_now_does_nothing() -> None:
    b = CircuitBreaker()
    assert b.hold_until(T0, T0) is None
    assert b.hold_until(T0, T0 - 10) is None
    assert b.snap == BreakerSnapshot()
    assert b.state(T0) is CLOSED


def test_severe_failure_opens_at_once_with_max_cooldown() -> None:
    b = CircuitBreaker(BreakerPolicy(failure_threshold=3, cooldown=30.0, max_cooldown=600.0))
    assert b.on_failure(T0, severe=True) == Transition(CLOSED, OPEN, T0 + 600)
    assert b.snap.cooldown == 600.0
    assert b.state(T0 + 599) is OPEN
    assert b.state(T0 + 600) is HALF_OPEN


def test_severe_failure_on_a_probe_reopens_with_max_cooldown() -> None:
    b = tripped(BreakerPolicy(cooldown=30.0, max_cooldown=600.0))
    permit = b.acquire(T0 + 30)
    assert b.on_failure(T0 + 30, permit, severe=True) == Transition(HALF_OPEN, OPEN, T0 + 630)


def test_severe_failure_while_open_moves_the_deadline_later_only() -> None:
    b = CircuitBreaker(BreakerPolicy(cooldown=30.0, max_cooldown=600.0))
    b.hold_until(T0, T0 + 1000)
    assert b.on_failure(T0 + 1, severe=True) is None
    assert b.snap.open_until == T0 + 1000
    assert b.on_failure(T0 + 500, severe=True) is None
    assert b.snap.open_until == T0 + 1100


# --- slow calls ---------------------------------------------------------------------------------


def test_a_success_slower_than_slow_call_ms_counts_as_a_failure() -> None:
    b = CircuitBreaker(BreakerPolicy(failure_threshold=2, slow_call_ms=1000.0))
    assert b.on_success(T0, latency_ms=1000.0) is None  # not slower than the limit
    assert b.outcomes[-1] == (T0, True)
    assert b.on_success(T0 + 1, latency_ms=1000.5) is None
    assert b.outcomes[-1] == (T0 + 1, False)
    assert b.on_success(T0 + 2, latency_ms=5000.0) == Transition(CLOSED, OPEN, T0 + 32)


def test_slow_calls_are_successes_without_slow_call_ms_or_latency() -> None:
    b = CircuitBreaker(BreakerPolicy(failure_threshold=1))
    b.on_success(T0, latency_ms=1e9)
    b2 = CircuitBreaker(BreakerPolicy(failure_threshold=1, slow_call_ms=10.0))
    b2.on_success(T0)
    assert b.outcomes[-1] == (T0, True)
    assert b2.outcomes[-1] == (T0, True)
    assert b.state(T0) is CLOSED and b2.state(T0) is CLOSED


def test_a_slow_probe_reopens_and_frees_its_slot() -> None:
    b = tripped(BreakerPolicy(cooldown=30.0, slow_call_ms=100.0))
    permit = b.acquire(T0 + 30)
    assert b.on_success(T0 + 30, permit, latency_ms=101.0) == Transition(
        HALF_OPEN, OPEN, T0 + 30 + 30
    )
    assert b.probes_in_flight == 0


# --- manual overrides ---------------------------------------------------------------------------


def test_force_open_skips_forever_and_ignores_outcomes() -> None:
    b = CircuitBreaker()
    assert b.force(T0, "open") == Transition(CLOSED, OPEN, None)
    assert b.snap.forced == "open"
    assert b.snap.updated_at == T0
    later = T0 + 1e6
    assert b.state(later) is OPEN
    assert b.acquire(later) is None
    assert b.next_admission(later) is None
    assert b.on_success(later) is None
    assert b.hold_until(later, later + 10) is None
    assert b.state(later) is OPEN


def test_force_closed_admits_and_never_trips() -> None:
    b = tripped()
    transition = b.force(T0 + 1, "closed")
    assert (transition.old, transition.new) == (OPEN, CLOSED)
    for i in range(20):
        assert b.on_failure(T0 + 2 + i) is None
    assert b.on_failure(T0 + 30, severe=True) is None
    assert b.hold_until(T0 + 30, T0 + 1000) is None
    assert b.state(T0 + 30) is CLOSED
    assert is_plain(b.acquire(T0 + 30))
    assert b.next_admission(T0 + 30) == T0 + 30


def test_force_none_clears_the_override_and_resets() -> None:
    b = tripped()
    b.force(T0 + 1, "open")
    assert b.force(T0 + 2, None) == Transition(OPEN, CLOSED, None)
    assert b.snap == BreakerSnapshot(since=T0 + 2, updated_at=T0 + 2)
    assert b.state(T0 + 2) is CLOSED
    assert b.consecutive_failures() == 0  # the three failures are before the reset
    assert b.window_counts(T0 + 2) == (0, 0)


def test_force_none_resets_a_tripped_breaker() -> None:
    b = tripped()
    assert b.force(T0 + 5, None) == Transition(OPEN, CLOSED, None)
    assert is_plain(b.acquire(T0 + 5))


# --- next_admission -----------------------------------------------------------------------------


def test_next_admission_in_every_state() -> None:
    b = tripped(BreakerPolicy(cooldown=30.0, half_open_probes=1))
    assert b.next_admission(T0 + 1) == T0 + 30  # open: the half-open time
    assert b.next_admission(T0 + 30) == T0 + 30  # half-open with a free slot: now
    b.acquire(T0 + 30)
    assert b.next_admission(T0 + 31) is None  # half-open, probe in flight
    b.force(T0 + 31, "closed")
    assert b.next_admission(T0 + 32) == T0 + 32
    b.force(T0 + 32, "open")
    assert b.next_admission(T0 + 33) is None


# --- persistence: deadlines are wall-clock, a rebuilt breaker behaves the same --------------


def rebuild(b: CircuitBreaker) -> CircuitBreaker:
    """What another process sees: the snapshot and outcomes through the stored JSON form."""
    stored = json.loads(
        json.dumps(ProviderState(breaker=b.snap, outcomes=list(b.outcomes)).to_dict())
    )
    loaded = ProviderState.from_dict(stored)
    return CircuitBreaker(b.policy, loaded.breaker, loaded.outcomes)


def test_reloaded_open_breaker_turns_half_open_past_open_until() -> None:
    b = tripped(BreakerPolicy(cooldown=30.0), at=T0 + 2)
    again = CircuitBreaker(b.policy, b.snap, b.outcomes)
    assert again.state(T0 + 31) is OPEN
    assert again.next_admission(T0 + 31) == T0 + 32
    assert again.state(T0 + 32) is HALF_OPEN
    permit = again.acquire(T0 + 40)
    assert is_probe(permit)
    assert again.on_success(T0 + 40, permit) == Transition(HALF_OPEN, CLOSED, None)


def test_consecutive_failures_carry_across_a_reload() -> None:
    b = CircuitBreaker(BreakerPolicy(failure_threshold=3))
    b.on_failure(T0)
    b.on_failure(T0 + 1)
    again = rebuild(b)
    assert again.consecutive_failures() == 2
    assert again.on_failure(T0 + 2) == Transition(CLOSED, OPEN, T0 + 32)


def test_since_carries_across_a_reload() -> None:
    b = tripped(BreakerPolicy(failure_threshold=3))
    b.on_success(T0 + 30, b.acquire(T0 + 30))
    b.on_failure(T0 + 31)
    b.on_failure(T0 + 32)
    again = rebuild(b)
    assert again.snap.since == T0 + 30
    assert again.consecutive_failures() == 2
    assert again.on_failure(T0 + 33) is not None


def test_reloaded_probe_failure_sizes_the_cooldown_by_the_stored_outage() -> None:
    b = tripped(BreakerPolicy(cooldown=30.0, max_cooldown=1000.0, cooldown_ratio=0.5))
    b.on_failure(T0 + 100, b.acquire(T0 + 100))  # down 100 s: cooldown 50, until T0 + 150
    again = rebuild(b)
    assert again.snap.down_since == T0
    assert again.state(T0 + 149) is OPEN
    permit = again.acquire(T0 + 150)
    assert again.on_failure(T0 + 150, permit) == Transition(HALF_OPEN, OPEN, T0 + 150 + 75)


Op = tuple[str, int, int]
OPS = st.tuples(
    st.sampled_from(["ok", "fail", "severe", "slow", "probe_ok", "probe_fail", "hold", "reset"]),
    st.integers(min_value=0, max_value=90_000),  # milliseconds since the previous op
    st.integers(min_value=1, max_value=900),  # seconds held, for "hold"
)


def apply(b: CircuitBreaker, op: Op, now: float) -> object:
    kind, _, hold = op
    if kind == "ok":
        return b.on_success(now, latency_ms=10.0)
    if kind == "slow":
        return b.on_success(now, latency_ms=5_000.0)
    if kind == "fail":
        return b.on_failure(now)
    if kind == "severe":
        return b.on_failure(now, severe=True)
    if kind == "hold":
        return b.hold_until(now, now + hold)
    if kind == "reset":
        return b.force(now, None)
    permit = b.acquire(now)
    if permit is None:
        return "skipped"
    if kind == "probe_ok":
        return (permit, b.on_success(now, permit))
    return (permit, b.on_failure(now, permit))


@settings(max_examples=150, deadline=None, database=None)
@given(
    ops=st.lists(OPS, min_size=1, max_size=40),
    data=st.data(),
    policy=st.builds(
        BreakerPolicy,
        failure_threshold=st.integers(1, 5),
        window=st.sampled_from([10.0, 60.0]),
        failure_rate=st.sampled_from([0.3, 0.5, 1.0]),
        min_requests=st.integers(1, 6),
        cooldown=st.sampled_from([5.0, 30.0]),
        max_cooldown=st.sampled_from([60.0, 600.0]),
        slow_call_ms=st.just(1_000.0),
    ),
)
def test_a_breaker_rebuilt_from_storage_behaves_the_same(
    ops: list[Op], data: st.DataObject, policy: BreakerPolicy
) -> None:
    split = data.draw(st.integers(min_value=0, max_value=len(ops) - 1), label="split")
    live = CircuitBreaker(policy)
    ms = 0
    reloaded: CircuitBreaker | None = None
    for i, op in enumerate(ops):
        if i == split:
            reloaded = rebuild(live)
        ms += op[1]
        now = round(T0 + ms / 1000, 3)  # stored times are milliseconds
        expected = apply(live, op, now)
        if reloaded is not None:
            assert apply(reloaded, op, now) == expected
            assert reloaded.snap == live.snap
            assert reloaded.state(now) is live.state(now)
            assert reloaded.next_admission(now) == live.next_admission(now)
            assert list(reloaded.outcomes) == list(live.outcomes)


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(ops=st.lists(OPS, min_size=1, max_size=60))
def test_invariants_hold_after_any_sequence(ops: list[Op]) -> None:
    policy = BreakerPolicy(cooldown=10.0, max_cooldown=80.0, slow_call_ms=1_000.0)
    b = CircuitBreaker(policy)
    ms = 0
    for op in ops:
        ms += op[1]
        now = T0 + ms / 1000
        before = b.snap
        apply(b, op, now)
        assert b.probes_in_flight == 0  # every probe above is resolved at once
        assert b.snap.state in ("closed", "open")
        if b.snap.state == "open":
            assert b.snap.open_until is not None
            assert b.snap.opened_at is not None and b.snap.opened_at <= now
            assert policy.cooldown <= b.snap.cooldown <= policy.max_cooldown
        if before.state == "open" and b.snap.state == "open" and op[0] != "reset":
            # a later deadline always wins: nothing but a close or a reset moves it earlier
            assert b.snap.open_until >= before.open_until  # type: ignore[operator]
        assert b.snap.since <= now


# --- the persisted snapshot ---------------------------------------------------------------------


def test_snapshot_round_trips_through_its_dict() -> None:
    snap = BreakerSnapshot(
        state="open",
        opened_at=T0,
        open_until=T0 + 30.5,
        cooldown=30.5,
        forced="closed",
        since=T0 - 1,
        updated_at=T0 + 0.25,
    )
    assert BreakerSnapshot.from_dict(json.loads(json.dumps(snap.to_dict()))) == snap
    assert BreakerSnapshot.from_dict(BreakerSnapshot().to_dict()) == BreakerSnapshot()


def test_snapshot_from_dict_defaults_and_sanitises() -> None:
    assert BreakerSnapshot.from_dict({}) == BreakerSnapshot()
    odd = BreakerSnapshot.from_dict({"state": "half_open", "forced": "maybe", "cooldown": None})
    assert odd == BreakerSnapshot()
    assert BreakerSnapshot.from_dict({"open_until": 5, "since": 7}) == BreakerSnapshot(
        open_until=5.0, since=7.0
    )


def test_an_open_snapshot_without_a_deadline_half_opens_instead_of_staying_open() -> None:
    b = CircuitBreaker(BreakerPolicy(), BreakerSnapshot(state="open", opened_at=0.0))
    assert b.state(1.0) is BreakerState.HALF_OPEN
    assert b.acquire(1.0) == Permit(probe=True, spell=0.0)


def test_force_rejects_an_unknown_mode_and_changes_nothing() -> None:
    b = CircuitBreaker(BreakerPolicy())
    with pytest.raises(ValueError, match="half_open"):
        b.force(1.0, "half_open")
    assert b.snap == BreakerSnapshot()
