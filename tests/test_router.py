"""The routing core against scripted fake providers on a virtual clock: every error class,
retries and Retry-After, breaker integration, AllProvidersFailed, redaction, events, scoring
order, hedging and persistence of the tracker. No test sleeps: ``clock.run`` jumps time."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest
from fakes import (
    Recorder,
    ScriptedProvider,
    Step,
    bad_request,
    build_router,
    provider_down,
    rng,
    too_long,
    transient,
)

from failover_cli.breaker import BreakerPolicy, BreakerState
from failover_cli.clock import VirtualClock
from failover_cli.config import Config, QueueConfig, RoutingConfig
from failover_cli.errors import (
    AllProvidersFailed,
    InvalidRequest,
    ProviderUnavailable,
    RequestRejected,
    StateError,
    TransientError,
)
from failover_cli.retry import RetryPolicy
from failover_cli.router import FailoverRouter
from failover_cli.state import ChainState, StateDelta, merge
from failover_cli.types import (
    Attempt,
    AttemptFailed,
    AttemptStarted,
    AttemptSucceeded,
    BreakerTransition,
    CompletionRequest,
    Cost,
    ErrorClass,
    ProviderConfig,
    ProviderSkipped,
    Segment,
    Usage,
)

T0 = 1_800_000_000.0


def fake(clock: VirtualClock, name: str, *steps: Step, default: Step | None = None, **kw):
    return ScriptedProvider(name, clock, list(steps), default or Step(text=f"{name} says hi"), **kw)


def breaker(router: FailoverRouter, name: str):
    return router.tracker.breakers[name]


def no_key() -> ProviderUnavailable:
    return ProviderUnavailable("ANTHROPIC_API_KEY is not set", reason="no_key")


# --- success and the result --------------------------------------------------------------------


async def test_primary_answers_and_result_is_complete(clock):
    a = fake(clock, "a", Step(delay=0.25, text="hello there"), cost=Cost(3.0, 15.0))
    b = fake(clock, "b")
    router = build_router(clock, [a, b])
    result = await clock.run(router.route("hi", max_tokens=50, system="be brief"))
    assert result.text == "hello there"
    assert (result.provider, result.model) == ("a", "a-model")
    assert result.usage == Usage(10, 2)
    assert result.cost == pytest.approx((10 * 3.0 + 2 * 15.0) / 1e6)
    assert result.latency_ms == 250.0
    assert result.stop_reason == "end"
    assert result.attempts == (Attempt("a", "ok", duration_ms=250.0),)
    assert result.segments == (Segment("a", "a-model", "hello there"),)
    assert b.calls == 0
    sent = a.requests[0]
    assert (sent.prompt, sent.max_tokens, sent.system) == ("hi", 50, "be brief")


async def test_no_cost_configured_gives_none(clock):
    router = build_router(clock, [fake(clock, "a")])
    assert (await clock.run(router.route("x"))).cost is None


async def test_a_prepared_request_is_sent_as_is(clock):
    a = fake(clock, "a")
    router = build_router(clock, [a])
    req = CompletionRequest("p", max_tokens=7, system="s", temperature=0.25)
    await clock.run(router.route(request=req))
    assert a.requests == [req]


async def test_each_attempt_gets_what_is_left_of_the_request_deadline(clock):
    a = fake(clock, "a", Step(error=transient(503)), Step(text="ok"))
    router = build_router(clock, [a])
    await clock.run(router.route("x", timeout=10))
    assert a.timeouts == [10.0, 9.75]  # after a 0.25 s backoff
    b = fake(clock, "b")
    router = build_router(clock, [b])
    await clock.run(router.route("x"))
    assert b.timeouts == [300.0]  # the provider's own timeout when the deadline is further


async def test_deadline_exceeded_before_the_next_provider_is_reported(clock):
    a = fake(clock, "a", default=Step(delay=1.0, error=transient(503)))
    b = fake(clock, "b")
    rec = Recorder()
    router = build_router(clock, [a, b], listeners=[rec])
    with pytest.raises(AllProvidersFailed) as info:
        await clock.run(router.route("x", timeout=1))
    assert str(info.value).startswith("request deadline exceeded: ")
    assert info.value.reason == "deadline"
    assert b.calls == 0
    started = [e.provider for e in rec.of(AttemptStarted)]
    ended = [e.provider for e in rec.events if isinstance(e, AttemptFailed | AttemptSucceeded)]
    assert started == ended
    assert [(x.provider, x.outcome) for x in info.value.attempts] == [
        ("a", "failed"),
        ("b", "skipped"),
    ]


async def test_slow_successes_trip_the_breaker_with_slow_call_ms(clock):
    a = fake(clock, "a", default=Step(delay=2.0, text="slow"))
    b = fake(clock, "b")
    rec = Recorder()
    router = build_router(
        clock,
        [a, b],
        breaker=BreakerPolicy(failure_threshold=2, slow_call_ms=1500),
        listeners=[rec],
    )
    for _ in range(2):
        assert (await clock.run(router.route("x"))).provider == "a"  # answered, but slowly
    assert rec.of(BreakerTransition) == [BreakerTransition("a", "closed", "open", T0 + 4 + 30)]
    assert (await clock.run(router.route("x"))).provider == "b"
    assert a.calls == 2


# --- transient ---------------------------------------------------------------------------------


async def test_transient_is_retried_on_same_provider_with_full_jitter(clock):
    a = fake(clock, "a", Step(error=transient(503)), Step(error=transient(502)), Step(text="ok"))
    b = fake(clock, "b")
    router = build_router(clock, [a, b], random=rng(0.25, 0.75))
    result = await clock.run(router.route("x"))
    assert result.provider == "a"
    assert a.calls == 3 and b.calls == 0
    # full jitter: retry 1 draws from [0, 0.5), retry 2 from [0, 1.0)
    assert clock.sleeps == [0.125, 0.75]
    assert [t - T0 for t in a.calls_at] == [0.0, 0.125, 0.875]
    assert [(x.outcome, x.status) for x in result.attempts] == [
        ("failed", 503),
        ("failed", 502),
        ("ok", None),
    ]
    assert result.latency_ms == 875.0
    calls, failures = breaker(router, "a").window_counts(clock.time())
    assert (calls, failures) == (3, 2)  # transient failures count against the breaker


async def test_transient_exhausts_retries_then_fails_over(clock):
    a = fake(clock, "a", default=Step(error=transient(500)))
    b = fake(clock, "b")
    router = build_router(clock, [a, b], breaker=BreakerPolicy(failure_threshold=5))
    result = await clock.run(router.route("x"))
    assert result.provider == "b"
    assert (a.calls, b.calls) == (3, 1)
    assert clock.sleeps == [0.25, 0.5]  # random 0.5 x [0.5, 1.0]
    assert breaker(router, "a").consecutive_failures() == 3
    assert breaker(router, "a").state(clock.time()) is BreakerState.CLOSED


async def test_backoff_is_capped_at_max_delay(clock):
    a = fake(clock, "a", default=Step(error=transient(503)))
    router = build_router(
        clock,
        [a, fake(clock, "b")],
        retry=RetryPolicy(attempts=4, base_delay=4.0, max_delay=5.0),
        breaker=BreakerPolicy(failure_threshold=10),
        random=rng(0.5, 0.5, 1.0),
    )
    await clock.run(router.route("x"))
    assert clock.sleeps == [2.0, 2.5, 5.0]
    assert a.calls == 4


async def test_backoff_longer_than_the_deadline_fails_over_without_sleeping(clock):
    a = fake(clock, "a", default=Step(error=transient(503)))
    b = fake(clock, "b")
    router = build_router(clock, [a, b])  # jitter 0.5: first backoff 0.25 s
    result = await clock.run(router.route("x", timeout=0.2))
    assert result.provider == "b"
    assert a.calls == 1
    assert clock.sleeps == []


async def test_transient_failures_open_breaker_then_provider_is_skipped_without_calls(clock):
    a = fake(clock, "a", default=Step(error=transient(503)))
    b = fake(clock, "b")
    rec = Recorder()
    router = build_router(clock, [a, b], listeners=[rec])
    await clock.run(router.route("x"))
    assert a.calls == 3
    opened = T0 + 0.75  # after backoffs of 0.25 and 0.5
    assert rec.of(BreakerTransition) == [BreakerTransition("a", "closed", "open", opened + 30)]
    result = await clock.run(router.route("y"))
    assert a.calls == 3  # not called again
    assert result.provider == "b"
    assert result.attempts[0] == Attempt("a", "skipped", message="breaker open, half-open in 30.0s")
    assert [x.provider for x in result.attempts] == ["a", "b"]


async def test_backoff_sleeper_wakes_when_another_request_opens_the_breaker(clock):
    a = fake(clock, "a", default=Step(error=transient(503)))
    b = fake(clock, "b")
    router = build_router(clock, [a, b], breaker=BreakerPolicy(failure_threshold=2))

    async def both():
        return await asyncio.gather(router.route("one"), router.route("two"))

    first, second = await clock.run(both())
    # "one" failed, began a 0.25 s backoff; "two"'s failure opened the breaker and woke it
    assert clock.time() == T0
    assert a.calls == 2
    assert [x.outcome for x in first.attempts] == ["failed", "skipped", "ok"]
    assert [x.outcome for x in second.attempts] == ["failed", "ok"]
    assert first.provider == second.provider == "b"


def refused() -> TransientError:
    return TransientError("cannot connect: connection refused", reason="connect")


async def test_refused_connection_fails_over_at_once_when_another_can_answer(clock):
    a = fake(clock, "a", default=Step(error=refused()))
    b = fake(clock, "b")
    router = build_router(clock, [a, b])
    result = await clock.run(router.route("x"))
    assert result.provider == "b"
    assert a.calls == 1
    assert clock.sleeps == []
    assert breaker(router, "a").window_counts(clock.time()) == (1, 1)  # still counted


async def test_refused_connection_on_the_only_provider_is_retried_with_backoff(clock):
    a = fake(clock, "a", Step(error=refused()), Step(error=refused()), Step(text="up"))
    router = build_router(clock, [a])
    result = await clock.run(router.route("x"))
    assert result.text == "up"
    assert clock.sleeps == [0.25, 0.5]


async def test_refused_connection_on_a_broken_alternative_still_fails_over(clock):
    a = fake(clock, "a", default=Step(error=refused()))
    b = fake(clock, "b", default=Step(error=refused()))
    c = fake(clock, "c")
    router = build_router(clock, [a, b, c])
    assert (await clock.run(router.route("x"))).provider == "c"
    assert (a.calls, b.calls) == (1, 1)


async def test_refused_connection_on_the_last_provider_standing_is_retried(clock):
    a = fake(clock, "a", default=Step(error=transient(503)))
    b = fake(clock, "b", Step(error=refused()), Step(text="b after retry"))
    router = build_router(clock, [a, b], breaker=BreakerPolicy(failure_threshold=5))
    result = await clock.run(router.route("x"))  # a: 3 tries, breaker still closed
    assert (result.provider, result.text) == ("b", "b after retry")
    assert b.calls == 2


# --- provider ----------------------------------------------------------------------------------


async def test_provider_error_fails_over_at_once_and_opens_with_max_cooldown(clock):
    a = fake(clock, "a", default=Step(error=provider_down(401)))
    b = fake(clock, "b")
    rec = Recorder()
    router = build_router(clock, [a, b], listeners=[rec])
    result = await clock.run(router.route("x"))
    assert result.provider == "b"
    assert a.calls == 1
    assert clock.sleeps == []
    br = breaker(router, "a")
    assert br.state(clock.time()) is BreakerState.OPEN
    assert br.snap.open_until == T0 + 600
    assert result.attempts[0] == Attempt(
        "a", "failed", ErrorClass.PROVIDER, 401, "invalid x-api-key", 0.0
    )
    failed = rec.of(AttemptFailed)
    assert failed == [AttemptFailed("a", ErrorClass.PROVIDER, 401, "invalid x-api-key", 0.0, False)]


async def test_quota_429_classified_as_provider_is_not_retried(clock):
    quota = ProviderUnavailable("insufficient_quota", status=429, reason="quota")
    a = fake(clock, "a", default=Step(error=quota))
    router = build_router(clock, [a, fake(clock, "b")])
    result = await clock.run(router.route("x"))
    assert a.calls == 1
    assert result.attempts[0].error_class is ErrorClass.PROVIDER
    assert breaker(router, "a").snap.open_until == T0 + 600


# --- request -----------------------------------------------------------------------------------


async def test_request_error_raises_request_rejected_without_failover(clock):
    a = fake(clock, "a", default=Step(error=bad_request()))
    b = fake(clock, "b")
    router = build_router(clock, [a, b])
    with pytest.raises(RequestRejected) as info:
        await clock.run(router.route("x"))
    exc = info.value
    assert not isinstance(exc, AllProvidersFailed)
    assert str(exc) == "request rejected by a: max_tokens: must be positive"
    assert exc.error.status == 400 and exc.error.error_class is ErrorClass.REQUEST
    assert exc.attempts == (
        Attempt("a", "failed", ErrorClass.REQUEST, 400, "max_tokens: must be positive"),
    )
    assert (a.calls, b.calls) == (1, 0)
    br = breaker(router, "a")
    assert list(br.outcomes) == []  # breaker untouched
    assert br.state(clock.time()) is BreakerState.CLOSED


async def test_request_error_on_half_open_probe_releases_the_permit(clock):
    a = fake(clock, "a", Step(error=bad_request()), Step(text="fine"))
    router = build_router(clock, [a])
    router.tracker.hold_until("a", T0 + 30)
    clock.advance(30)
    assert breaker(router, "a").state(clock.time()) is BreakerState.HALF_OPEN
    with pytest.raises(RequestRejected):
        await clock.run(router.route("x"))
    br = breaker(router, "a")
    assert br.probes_in_flight == 0
    assert br.state(clock.time()) is BreakerState.HALF_OPEN  # no outcome recorded
    result = await clock.run(router.route("y"))
    assert result.text == "fine"
    assert br.state(clock.time()) is BreakerState.CLOSED


# --- context_length ----------------------------------------------------------------------------


async def test_context_length_fails_over_without_retry_or_breaker(clock):
    a = fake(clock, "a", default=Step(error=too_long()))
    b = fake(clock, "b")
    router = build_router(clock, [a, b])
    result = await clock.run(router.route("x" * 1000))
    assert result.provider == "b"
    assert (a.calls, b.calls) == (1, 1)
    assert clock.sleeps == []
    assert result.attempts[0] == Attempt(
        "a", "failed", ErrorClass.CONTEXT_LENGTH, 400, "prompt is too long"
    )
    br = breaker(router, "a")
    assert list(br.outcomes) == []
    assert br.state(clock.time()) is BreakerState.CLOSED


async def test_context_length_on_every_provider_fails_without_waiting(clock):
    a = fake(clock, "a", default=Step(error=too_long()))
    b = fake(clock, "b", default=Step(error=too_long()))
    router = build_router(clock, [a, b])
    with pytest.raises(AllProvidersFailed) as info:
        await clock.run(router.route("x"))
    assert (a.calls, b.calls) == (1, 1)
    assert clock.time() == T0
    assert str(info.value) == (
        "no provider could answer: a: context_length 400 (prompt is too long); "
        "b: context_length 400 (prompt is too long)"
    )


async def test_context_length_on_a_half_open_probe_is_not_tried_again(clock):
    a = fake(clock, "a", default=Step(error=too_long()))
    router = build_router(clock, [a])
    router.tracker.hold_until("a", T0 + 30)
    clock.advance(30)
    with pytest.raises(AllProvidersFailed) as info:
        await asyncio.wait_for(clock.run(router.route("x")), 5)
    assert a.calls == 1
    assert clock.time() == T0 + 30
    assert str(info.value) == "no provider could answer: a: context_length 400 (prompt is too long)"
    assert breaker(router, "a").probes_in_flight == 0


# --- missing key -------------------------------------------------------------------------------


async def test_missing_key_is_skipped_with_a_clear_reason(clock):
    a = fake(clock, "a", default=Step(error=no_key()))
    b = fake(clock, "b")
    rec = Recorder()
    router = build_router(clock, [a, b], listeners=[rec])
    result = await clock.run(router.route("x"))
    assert result.provider == "b"
    assert a.calls == 1
    assert result.attempts[0] == Attempt(
        "a", "skipped", ErrorClass.PROVIDER, None, "ANTHROPIC_API_KEY is not set", reason="no_key"
    )
    assert rec.of(ProviderSkipped) == [ProviderSkipped("a", "ANTHROPIC_API_KEY is not set")]
    assert rec.of(AttemptFailed) == []
    br = breaker(router, "a")
    assert list(br.outcomes) == []
    assert br.state(clock.time()) is BreakerState.CLOSED


async def test_missing_key_on_the_only_provider_reports_why(clock):
    a = fake(clock, "a", default=Step(error=no_key()))
    router = build_router(clock, [a])
    with pytest.raises(AllProvidersFailed) as info:
        await clock.run(router.route("x"))
    assert str(info.value) == "no provider is configured: a: skipped (ANTHROPIC_API_KEY is not set)"
    assert info.value.reason == "not_configured"
    assert clock.time() == T0


# --- Retry-After -------------------------------------------------------------------------------


async def test_short_retry_after_is_the_retry_delay(clock):
    a = fake(clock, "a", Step(error=transient(429, retry_after=2.0)), Step(text="after wait"))
    rec = Recorder()
    router = build_router(clock, [a, fake(clock, "b")], listeners=[rec])
    result = await clock.run(router.route("x"))
    assert result.text == "after wait"
    assert clock.sleeps == [2.0]
    assert [t - T0 for t in a.calls_at] == [0.0, 2.0]
    assert rec.of(AttemptFailed) == [
        AttemptFailed("a", ErrorClass.TRANSIENT, 429, "HTTP 429", 0.0, True, 2.0)
    ]


async def test_retry_after_equal_to_max_retry_after_is_honoured(clock):
    a = fake(clock, "a", Step(error=transient(429, retry_after=30.0)), Step(text="ok"))
    router = build_router(clock, [a])  # nothing else to fail over to
    result = await clock.run(router.route("x"))
    assert result.provider == "a"
    assert clock.sleeps == [30.0]


async def test_long_retry_after_fails_over_at_once_and_holds_breaker_open(clock):
    a = fake(clock, "a", default=Step(error=transient(429, retry_after=120.0)))
    b = fake(clock, "b")
    router = build_router(clock, [a, b])
    result = await clock.run(router.route("x"))
    assert result.provider == "b"
    assert a.calls == 1
    assert clock.sleeps == []
    br = breaker(router, "a")
    assert br.state(clock.time()) is BreakerState.OPEN
    assert br.snap.open_until == T0 + 120
    clock.advance(119)
    await clock.run(router.route("y"))
    assert a.calls == 1  # still held open
    clock.advance(1)
    await clock.run(router.route("z"))
    assert a.calls == 2  # half-open probe at T0 + 120


async def test_short_retry_after_never_shortens_a_longer_cooldown(clock):
    steps = [Step(error=transient(503)), Step(error=transient(503))]
    a = fake(clock, "a", *steps, Step(error=transient(429, retry_after=1.0)))
    router = build_router(clock, [a, fake(clock, "b")])
    await clock.run(router.route("x"))
    # the third failure trips the breaker (cooldown 30); its Retry-After of 1 s does not shorten it
    assert breaker(router, "a").snap.open_until == T0 + 0.75 + 30


async def test_short_retry_after_on_failed_probe_keeps_the_full_cooldown(clock):
    a = fake(clock, "a", default=Step(error=transient(429, retry_after=1.0)))
    router = build_router(clock, [a, fake(clock, "b")])
    router.tracker.hold_until("a", T0 + 30)
    clock.advance(30)
    await clock.run(router.route("x"))
    assert a.calls == 1
    assert breaker(router, "a").snap.open_until == T0 + 30 + 30


async def test_retry_after_beyond_request_deadline_fails_over(clock):
    a = fake(clock, "a", default=Step(error=transient(503, retry_after=20.0)))
    b = fake(clock, "b")
    rec = Recorder()
    router = build_router(clock, [a, b], listeners=[rec])
    result = await clock.run(router.route("x", timeout=10))
    assert result.provider == "b"
    assert a.calls == 1
    assert clock.sleeps == []
    assert rec.of(AttemptFailed)[0].will_retry is False


# --- breaker integration -----------------------------------------------------------------------


def _one_shot(clock, *a_steps: Step, **policy):
    a = fake(clock, "a", *a_steps)
    b = fake(clock, "b")
    rec = Recorder()
    router = build_router(
        clock,
        [a, b],
        retry=RetryPolicy(attempts=1),
        breaker=BreakerPolicy(failure_threshold=1, **policy),
        listeners=[rec],
    )
    return a, b, rec, router


async def test_after_cooldown_one_probe_is_admitted_and_success_closes(clock):
    a, _b, rec, router = _one_shot(clock, Step(error=transient()), Step(text="back"))
    await clock.run(router.route("x"))
    assert breaker(router, "a").snap.open_until == T0 + 30
    clock.advance(29.5)
    assert (await clock.run(router.route("y"))).provider == "b"
    assert a.calls == 1
    clock.advance(0.5)
    result = await clock.run(router.route("z"))
    assert result.provider == "a" and result.text == "back"
    assert a.calls == 2
    assert rec.of(BreakerTransition)[-1] == BreakerTransition("a", "half_open", "closed", None)
    assert breaker(router, "a").state(clock.time()) is BreakerState.CLOSED


async def test_failed_probes_grow_the_cooldown_with_the_outage_up_to_max(clock):
    a, _b, rec, router = _one_shot(
        clock,
        *[Step(error=transient())] * 4,
        cooldown=30.0,
        max_cooldown=100.0,
        cooldown_ratio=1.0,
    )
    await clock.run(router.route("x"))
    deadlines = [breaker(router, "a").snap.open_until - T0]
    for _ in range(3):
        clock.advance(breaker(router, "a").snap.open_until - clock.time())
        await clock.run(router.route("probe"))
        deadlines.append(breaker(router, "a").snap.open_until - T0)
    # Down 30 s at the first probe: 30 more; down 60 s: 60 more; then the cap.
    assert deadlines == [30.0, 30 + 30.0, 60 + 60.0, 120 + 100.0]
    assert a.calls == 4
    assert [(t.old, t.new) for t in rec.of(BreakerTransition)] == [("closed", "open")] + [
        ("half_open", "open")
    ] * 3


async def test_half_open_admits_a_single_probe_at_once(clock):
    a = fake(clock, "a", default=Step(delay=1.0, text="slow probe"))
    b = fake(clock, "b")
    router = build_router(clock, [a, b])
    router.tracker.hold_until("a", T0 + 30)
    clock.advance(30)

    async def both():
        return await asyncio.gather(router.route("one"), router.route("two"))

    first, second = await clock.run(both())
    assert a.calls == 1
    assert (first.provider, second.provider) == ("a", "b")
    assert second.attempts[0] == Attempt(
        "a", "skipped", message="half-open, probe already in flight"
    )
    assert breaker(router, "a").state(clock.time()) is BreakerState.CLOSED


async def test_force_open_and_force_closed(clock):
    a = fake(clock, "a")
    b = fake(clock, "b")
    rec = Recorder()
    router = build_router(clock, [a, b], listeners=[rec])
    router.tracker.force("a", "open")
    assert rec.of(BreakerTransition) == [BreakerTransition("a", "closed", "open", None)]
    result = await clock.run(router.route("x"))
    assert a.calls == 0
    assert result.attempts[0] == Attempt("a", "skipped", message="forced open")
    # forced closed wins over a real open breaker
    router.tracker.force("a", None)
    router.tracker.hold_until("a", T0 + 500)
    router.tracker.force("a", "closed")
    assert (await clock.run(router.route("y"))).provider == "a"
    router.tracker.force("a", None)
    assert breaker(router, "a").state(clock.time()) is BreakerState.CLOSED


async def test_everything_forced_open_fails_fast(clock):
    a = fake(clock, "a")
    router = build_router(clock, [a])
    router.tracker.force("a", "open")
    with pytest.raises(AllProvidersFailed) as info:
        await clock.run(router.route("x"))
    assert str(info.value) == "no provider is available: a: skipped (forced open)"
    assert clock.time() == T0
    assert a.calls == 0


# --- AllProvidersFailed ------------------------------------------------------------------------


async def test_all_failed_carries_every_attempt_in_order(clock):
    a = fake(clock, "a", default=Step(delay=0.5, error=transient(503)))
    b = fake(clock, "b", default=Step(delay=0.25, error=provider_down(401)))
    c = fake(clock, "c", default=Step(delay=0.125, error=too_long()))
    router = build_router(clock, [a, b, c], breaker=BreakerPolicy(failure_threshold=5))
    with pytest.raises(AllProvidersFailed) as info:
        await clock.run(router.route("x"))
    exc = info.value
    t = ErrorClass.TRANSIENT
    assert exc.attempts == (
        Attempt("a", "failed", t, 503, "HTTP 503", 500.0),
        Attempt("a", "failed", t, 503, "HTTP 503", 500.0),
        Attempt("a", "failed", t, 503, "HTTP 503", 500.0),
        Attempt("b", "failed", ErrorClass.PROVIDER, 401, "invalid x-api-key", 250.0),
        Attempt("c", "failed", ErrorClass.CONTEXT_LENGTH, 400, "prompt is too long", 125.0),
    )
    assert str(exc) == (
        "no provider could answer: a: transient 503 (HTTP 503); "
        "b: provider 401 (invalid x-api-key); c: context_length 400 (prompt is too long)"
    )
    assert exc.attempts[3].to_dict() == {
        "provider": "b",
        "outcome": "failed",
        "class": "provider",
        "status": 401,
        "message": "invalid x-api-key",
        "duration_ms": 250.0,
    }


async def test_only_restricts_the_chain(clock):
    a, b = fake(clock, "a"), fake(clock, "b")
    router = build_router(clock, [a, b])
    result = await clock.run(router.route("x", only=["b"]))
    assert result.provider == "b" and a.calls == 0
    with pytest.raises(AllProvidersFailed, match="no provider named zzz"):
        await clock.run(router.route("x", only=["zzz"]))


CANARY = "sk-canary-4f9d2e7a1b3c"


def _canary_router(clock, *providers: ScriptedProvider, listeners=()):
    configs = [
        ProviderConfig(name=p.name, kind="anthropic", model=p.config.model, api_key_env="X_KEY")
        for p in providers
    ]
    router = build_router(
        clock,
        list(providers),
        configs=configs,
        env={"X_KEY": CANARY},
        listeners=listeners,
        queue=QueueConfig(max_wait=0),
    )
    return router


async def test_key_in_provider_messages_is_redacted_everywhere(clock):
    leak = Step(error=TransientError(f"bad header x-api-key: {CANARY}", status=500))
    a = fake(clock, "a", default=leak)
    b = fake(clock, "b", default=Step(error=provider_down()))
    b.default.error.message = f"key {CANARY} rejected"
    rec = Recorder()
    router = _canary_router(clock, a, b, listeners=[rec])
    with pytest.raises(AllProvidersFailed) as info:
        await clock.run(router.route("x"))
    exc = info.value
    texts = [str(exc), repr(exc), *(x.message for x in exc.attempts)]
    texts += [repr(e) for e in rec.events]
    texts += [repr(d.last_error) for d in router.tracker.pending.providers.values()]
    assert all(CANARY not in t for t in texts)
    assert exc.attempts[0].message == "bad header x-api-key: [REDACTED]"
    assert "key [REDACTED] rejected" in str(exc)


async def test_key_in_rejected_request_is_redacted(clock):
    a = fake(clock, "a", default=Step(error=bad_request()))
    a.default.error.message = f"invalid key {CANARY} in body"
    router = _canary_router(clock, a)
    with pytest.raises(RequestRejected) as info:
        await clock.run(router.route("x"))
    exc = info.value
    assert str(exc) == "request rejected by a: invalid key [REDACTED] in body"
    assert CANARY not in str(exc.error)
    assert CANARY not in exc.attempts[0].message


async def test_key_is_not_left_in_the_rejected_errors_args(clock):
    leak = InvalidRequest(f"invalid key {CANARY} in body", status=400)
    a = fake(clock, "a", default=Step(error=leak))
    router = _canary_router(clock, a)
    with pytest.raises(RequestRejected) as info:
        await clock.run(router.route("x"))
    assert CANARY not in repr(info.value.error)


# --- events ------------------------------------------------------------------------------------


async def test_events_trace_a_failover(clock):
    a = fake(clock, "a", default=Step(error=transient(503)))
    b = fake(clock, "b", default=Step(delay=0.5, text="b wins"))
    rec = Recorder()
    router = build_router(
        clock,
        [a, b],
        retry=RetryPolicy(attempts=2),
        breaker=BreakerPolicy(failure_threshold=2),
        listeners=[rec],
    )
    await clock.run(router.route("x"))
    tr = ErrorClass.TRANSIENT
    assert rec.events == [
        AttemptStarted("a", 1),
        AttemptFailed("a", tr, 503, "HTTP 503", 0.0, True, 0.25),
        AttemptStarted("a", 2),
        BreakerTransition("a", "closed", "open", T0 + 0.25 + 30),
        AttemptFailed("a", tr, 503, "HTTP 503", 0.0, False, None),
        AttemptStarted("b", 1),
        AttemptSucceeded("b", 500.0, None, Usage(10, 2)),
    ]
    rec.events.clear()
    await clock.run(router.route("y"))
    assert rec.events == [
        ProviderSkipped("a", "breaker open, half-open in 29.5s"),
        AttemptStarted("b", 1),
        AttemptSucceeded("b", 500.0, None, Usage(10, 2)),
    ]


async def test_add_listener_receives_events(clock):
    router = build_router(clock, [fake(clock, "a")])
    rec = Recorder()
    router.add_listener(rec)
    await clock.run(router.route("x"))
    assert [type(e) for e in rec.events] == [AttemptStarted, AttemptSucceeded]


# --- scoring and order -------------------------------------------------------------------------


async def test_order_follows_priority_not_list_position(clock):
    a = ScriptedProvider("a", clock, priority=2)
    b = ScriptedProvider("b", clock, priority=1)
    router = build_router(clock, [a, b])
    assert router.order() == ["b", "a"]
    assert (await clock.run(router.route("x"))).provider == "b"


async def test_equal_priority_tier_is_ordered_by_latency_history(clock):
    a = ScriptedProvider("a", clock, default=Step(delay=0.5), priority=1)
    b = ScriptedProvider("b", clock, default=Step(delay=0.125), priority=1)
    c = ScriptedProvider("c", clock, default=Step(delay=0.0625), priority=2)
    router = build_router(clock, [a, b, c])
    assert router.order() == ["a", "b", "c"]  # no history: list position
    await clock.run(router.route("x"))  # a: 500 ms
    await clock.run(router.route("x", only=["b"]))  # b: 125 ms
    await clock.run(router.route("x", only=["c"]))  # c: 62.5 ms, but a lower tier
    scores = router.scores()
    assert scores["a"].latency == pytest.approx(62.5 / 500)
    assert scores["b"].latency == pytest.approx(62.5 / 125)
    assert scores["c"].latency == 1.0
    assert scores["a"].reliability == scores["b"].reliability == pytest.approx(2 / 3)
    assert scores["b"].total == pytest.approx(0.5 * 0.5 + 0.4 * 2 / 3 + 0.1 * 0.5)
    assert router.order() == ["b", "a", "c"]
    assert (await clock.run(router.route("next"))).provider == "b"


async def test_strategy_score_ignores_priority(clock):
    a = ScriptedProvider("a", clock, default=Step(delay=0.5), priority=1)
    b = ScriptedProvider("b", clock, default=Step(delay=0.125), priority=2)
    config = Config(providers=(a.config, b.config), routing=RoutingConfig(strategy="score"))
    router = FailoverRouter(config, providers=[a, b], clock=clock)
    await clock.run(router.route("x"))
    assert router.order() == ["a", "b"]  # a has the only latency data
    await clock.run(router.route("x", only=["b"]))
    assert router.order() == ["b", "a"]


async def test_failures_lower_reliability_and_reorder_a_tier(clock):
    a = ScriptedProvider("a", clock, [Step(error=transient())], priority=1)
    b = ScriptedProvider("b", clock, priority=1)
    router = build_router(clock, [a, b], retry=RetryPolicy(attempts=1))
    await clock.run(router.route("x"))  # a fails once, b answers
    scores = router.scores()
    assert scores["a"].reliability == pytest.approx(1 / 3)
    assert scores["b"].reliability == pytest.approx(2 / 3)
    assert router.order() == ["b", "a"]


# --- hedging -----------------------------------------------------------------------------------


def _hedged(clock, providers: Sequence[ScriptedProvider], ms: float = 500, **kw):
    return build_router(clock, list(providers), routing=RoutingConfig(hedge_after_ms=ms), **kw)


async def test_slow_primary_is_hedged_and_the_loser_cancelled(clock):
    a = fake(clock, "a", default=Step(delay=5.0, text="slow"))
    b = fake(clock, "b", default=Step(delay=0.25, text="fast"))
    router = _hedged(clock, [a, b])
    result = await clock.run(router.route("x"))
    assert (result.provider, result.text) == ("b", "fast")
    assert [t - T0 for t in b.calls_at] == [0.5]
    assert clock.time() == T0 + 0.75
    assert result.latency_ms == 750.0
    assert result.attempts == (Attempt("b", "ok", duration_ms=250.0),)
    assert a.cancelled == 1
    br = breaker(router, "a")
    assert list(br.outcomes) == [] and br.probes_in_flight == 0
    assert clock.pending == 0


async def test_fast_primary_never_starts_the_hedge(clock):
    a = fake(clock, "a", default=Step(delay=0.25))
    b = fake(clock, "b")
    router = _hedged(clock, [a, b])
    result = await clock.run(router.route("x"))
    assert result.provider == "a"
    assert b.calls == 0
    assert clock.time() == T0 + 0.25
    assert clock.pending == 0


async def test_hedge_that_fails_leaves_the_primary_to_win(clock):
    a = fake(clock, "a", default=Step(delay=1.0, text="primary"))
    b = fake(clock, "b", default=Step(delay=0.125, error=provider_down()))
    router = _hedged(clock, [a, b])
    result = await clock.run(router.route("x"))
    assert (result.provider, result.text) == ("a", "primary")
    assert clock.time() == T0 + 1.0
    assert [(x.provider, x.outcome) for x in result.attempts] == [("b", "failed"), ("a", "ok")]
    assert a.cancelled == 0


async def test_hedge_loser_holding_a_probe_releases_it(clock):
    a = fake(clock, "a", default=Step(delay=5.0))
    b = fake(clock, "b", default=Step(delay=0.25))
    router = _hedged(clock, [a, b])
    router.tracker.hold_until("a", T0 + 30)
    clock.advance(30)
    result = await clock.run(router.route("x"))
    assert result.provider == "b"
    br = breaker(router, "a")
    assert br.probes_in_flight == 0
    assert br.state(clock.time()) is BreakerState.HALF_OPEN
    assert br.acquire(clock.time()) is not None  # the slot is free for the next probe


async def test_hedge_starts_one_provider_at_a_time(clock):
    a = fake(clock, "a", default=Step(delay=5.0, text="a"))
    b = fake(clock, "b", default=Step(delay=5.0, text="b"))
    c = fake(clock, "c", default=Step(delay=0.25, text="c"))
    router = _hedged(clock, [a, b, c])
    await clock.run(router.route("x"))
    assert [t - T0 for t in b.calls_at] == [0.5]
    # c is not started together with b: the hedge is one more provider, not the whole chain
    assert all(t - T0 >= 1.0 for t in c.calls_at)


async def test_hedging_does_not_busy_loop_while_waiting(clock, monkeypatch):
    waits = 0
    real_wait = asyncio.wait

    async def counting_wait(*args, **kwargs):
        nonlocal waits
        waits += 1
        return await real_wait(*args, **kwargs)

    monkeypatch.setattr(asyncio, "wait", counting_wait)
    a = fake(clock, "a", default=Step(delay=5.0))
    b = fake(clock, "b", default=Step(delay=2.0))
    router = _hedged(clock, [a, b])
    assert (await clock.run(router.route("x"))).provider == "b"
    # events that need a wake-up: the hedge timer, b's answer (a's is cancelled)
    assert waits <= 5


async def test_hedge_delay_counts_from_the_provider_now_running(clock):
    a = fake(clock, "a", default=Step(delay=0.375, error=provider_down()))
    b = fake(clock, "b", default=Step(delay=0.25, text="b"))
    c = fake(clock, "c", default=Step(delay=0.5, text="c"))
    router = _hedged(clock, [a, b, c])
    result = await clock.run(router.route("x"))
    # b started at 0.375 and answered at 0.625, before its own hedge delay (0.875) ran out
    assert result.provider == "b"
    assert c.calls == 0


# --- tracker persistence -----------------------------------------------------------------------


class FakeStore:
    """An in-memory StateStore that merges with failover_cli.state.merge (thread-safe)."""

    def __init__(self, fail_update: bool = False, fail_load: bool = False) -> None:
        self.chains: dict[str, ChainState] = {}
        self.fail_update = fail_update
        self.fail_load = fail_load
        self.updates = 0
        self.updated = threading.Event()
        self.closed = False
        self._lock = threading.Lock()

    def load(self, chain: str) -> ChainState:
        if self.fail_load:
            raise StateError("state file is corrupt")
        with self._lock:
            return ChainState.from_dict(self.chains.get(chain, ChainState()).to_dict())

    def update(self, chain: str, delta: StateDelta) -> ChainState:
        if self.fail_update:
            raise StateError("disk full")
        with self._lock:
            self.updates += 1
            self.chains[chain] = merge(self.chains.get(chain, ChainState()), delta)
            self.updated.set()
            return ChainState.from_dict(self.chains[chain].to_dict())

    def reset(self, chain: str, providers: Sequence[str] | None = None) -> None:
        with self._lock:
            if providers is None:
                self.chains.pop(chain, None)
            else:
                for name in providers:
                    self.chains.get(chain, ChainState()).providers.pop(name, None)

    def close(self) -> None:
        self.closed = True


async def test_outcomes_are_flushed_at_aclose(clock):
    store = FakeStore()
    a = fake(clock, "a", default=Step(error=transient(503)))
    b = fake(clock, "b", default=Step(delay=0.25, text="two words"))
    router = build_router(
        clock, [a, b], store=store, autoflush=False, retry=RetryPolicy(attempts=1)
    )
    await clock.run(router.route("x"))
    assert store.updates == 0
    await router.aclose()
    assert store.updates == 1
    state = store.chains["default"]
    pa, pb = state.providers["a"], state.providers["b"]
    assert (pa.requests, pa.successes, pa.failures) == (1, 0, {"transient": 1})
    assert pa.outcomes == [(T0, False)]
    assert pa.last_error == {
        "at": T0,
        "class": "transient",
        "status": 503,
        "reason": None,
        "message": "HTTP 503",
    }
    assert (pb.requests, pb.successes, pb.failures) == (1, 1, {})
    assert [(s.t, s.latency_ms, s.tokens, s.ok) for s in pb.samples] == [
        (T0 + 0.25, 250.0, 2, True)
    ]


async def test_autoflush_and_aclose_record_each_outcome_exactly_once(clock):
    store = FakeStore()
    a = fake(clock, "a", default=Step(error=provider_down()))
    b = fake(clock, "b")
    router = build_router(clock, [a, b], store=store)
    for _ in range(3):
        await clock.run(router.route("x"))
    await router.aclose()
    state = store.chains["default"]
    assert state.providers["a"].requests == 1  # opened, then skipped twice
    assert state.providers["b"].requests == 3
    assert state.providers["b"].successes == 3
    assert state.providers["a"].breaker.open_until == T0 + 600


async def test_a_breaker_transition_is_written_without_waiting_for_aclose(clock):
    store = FakeStore()
    a = fake(clock, "a", default=Step(error=provider_down()))
    # only a transition can trigger a flush here: the periodic one is an hour away
    router = build_router(clock, [a, fake(clock, "b")], store=store, flush_interval=3600)
    await clock.run(router.route("x"))
    # the flush runs in the background; wait for it (returns as soon as it lands)
    assert await asyncio.to_thread(store.updated.wait, 2)
    assert store.chains["default"].providers["a"].breaker.open_until == T0 + 600
    await router.aclose()


async def test_a_breaker_transition_is_written_at_once_with_a_periodic_write_pending(clock):
    """A transition's write does not wait for a periodic one already scheduled (an hour
    away here): it wakes it. Other processes learn of the open breaker, and a half-open
    probe's lease is given back, at once."""
    store = FakeStore()
    a = fake(clock, "a", Step(), default=Step(error=provider_down()))
    router = build_router(clock, [a, fake(clock, "b")], store=store, flush_interval=3600)
    await clock.run(router.route("x"))  # a answers: an outcome to write, an hour away
    assert not store.updated.is_set()
    await clock.run(router.route("x"))  # a is down: its breaker opens
    assert await asyncio.to_thread(store.updated.wait, 2)
    state = store.chains["default"].providers["a"]
    assert state.breaker.open_until == T0 + 600
    assert state.successes == 1  # the outcome that was waiting went with it
    await router.aclose()


async def test_breaker_state_survives_a_restart(clock):
    store = FakeStore()
    a1 = fake(clock, "a", default=Step(error=provider_down()))
    first = build_router(clock, [a1, fake(clock, "b")], store=store, autoflush=False)
    await clock.run(first.route("x"))
    await first.aclose()
    snap = store.chains["default"].providers["a"].breaker
    assert (snap.state, snap.open_until) == ("open", T0 + 600)  # epoch seconds

    later = VirtualClock(T0 + 100)  # another process, 100 s later
    a2 = fake(later, "a")
    second = build_router(later, [a2, fake(later, "b")], store=store, autoflush=False)
    result = await later.run(second.route("y"))
    assert a2.calls == 0
    assert result.attempts[0] == Attempt(
        "a", "skipped", message="breaker open, half-open in 500.0s"
    )

    much_later = VirtualClock(T0 + 600)
    a3 = fake(much_later, "a")
    third = build_router(much_later, [a3, fake(much_later, "b")], store=store, autoflush=False)
    assert (await much_later.run(third.route("z"))).provider == "a"  # the half-open probe
    assert a3.calls == 1


async def test_flush_adopts_a_breaker_opened_by_another_process(clock):
    store = FakeStore()
    a1, a2 = fake(clock, "a"), fake(clock, "a", default=Step(error=provider_down()))
    one = build_router(clock, [a1, fake(clock, "b")], store=store, autoflush=False)
    two = build_router(clock, [a2, fake(clock, "b")], store=store, autoflush=False)
    await clock.run(one.route("x"))
    await clock.run(two.route("x"))
    assert await two.flush()
    clock.advance(1)
    assert await one.flush()
    assert breaker(one, "a").state(clock.time()) is BreakerState.OPEN
    result = await clock.run(one.route("y"))
    assert result.provider == "b"
    assert a1.calls == 1


async def test_store_update_failure_warns_once_and_requests_still_succeed(clock):
    warnings: list[str] = []
    store = FakeStore(fail_update=True)
    router = build_router(
        clock, [fake(clock, "a"), fake(clock, "b")], store=store, on_warning=warnings.append
    )
    for _ in range(3):
        result = await clock.run(router.route("x"))
        assert result.provider == "a"
        assert await router.flush() is False
    await router.aclose()
    assert len(warnings) == 1
    assert warnings[0] == "outcome not recorded: disk full"


async def test_store_load_failure_warns_and_starts_fresh(clock):
    warnings: list[str] = []
    router = build_router(
        clock, [fake(clock, "a")], store=FakeStore(fail_load=True), on_warning=warnings.append
    )
    assert (await clock.run(router.route("x"))).provider == "a"
    assert warnings == ["state not loaded, starting fresh: state file is corrupt"]


# --- construction ------------------------------------------------------------------------------


def test_missing_provider_object_is_an_error(clock):
    a = fake(clock, "a")
    config = [a.config, ProviderConfig(name="b", kind="openai", model="m")]
    with pytest.raises(ValueError, match="no provider object for: b"):
        FailoverRouter(config, providers=[a], clock=clock)


async def test_without_a_store_nothing_accumulates_for_a_flush_that_never_comes(clock):
    a = fake(clock, "a", default=Step(text="hi"))
    b = fake(clock, "b", Step(error=transient()), default=Step(text="hi"))
    router = build_router(clock, [b, a])
    for _ in range(50):
        await clock.run(router.route("q"))
    assert router.tracker.pending.is_empty()
    assert router.tracker.pending.providers == {}


async def test_status_scores_what_the_router_scores(clock):
    """`failover status` rebuilds the scores from stored state: they must be the router's."""
    from failover_cli.cli.status import status_report
    from failover_cli.store import MemoryStore

    store = MemoryStore()
    a = fake(clock, "a", Step(error=transient()), default=Step(text="a", delay=0.2))
    b = fake(clock, "b", default=Step(text="b", delay=0.05))
    router = build_router(clock, [a, b], store=store)
    for _ in range(6):
        await clock.run(router.route("q"))
    expected = {n: s.to_dict() for n, s in router.scores().items()}
    await router.aclose()
    report = status_report(router.config, store.load(router.config.chain), clock.time())
    assert {p["name"]: p["score_breakdown"] for p in report["providers"]} == expected
    assert expected["a"] != expected["b"]  # the history made a difference
