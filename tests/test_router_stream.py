"""router.stream(): chunks, the result, failover before the first token, continuation after a
mid-stream failure (the seam), truncated streams, hedged streams and early exits."""

from __future__ import annotations

import gc

import pytest
from fakes import (
    ScriptedProvider,
    Step,
    bad_request,
    build_router,
    provider_down,
    transient,
)

from failover_cli.breaker import BreakerState
from failover_cli.config import QueueConfig, RoutingConfig
from failover_cli.errors import AllProvidersFailed, RequestRejected
from failover_cli.router import RouteStream
from failover_cli.types import Attempt, Cost, ErrorClass, ProviderConfig, Segment, Usage

T0 = 1_800_000_000.0


def fake(clock, name, *steps: Step, default: Step | None = None, **kw) -> ScriptedProvider:
    return ScriptedProvider(name, clock, list(steps), default or Step(text=f"{name} here"), **kw)


async def consume(stream: RouteStream) -> list[str]:
    return [chunk async for chunk in stream]


def half_open(router, clock, name: str) -> None:
    router.tracker.hold_until(name, clock.time() + 30)
    clock.advance(30)
    assert router.tracker.breakers[name].state(clock.time()) is BreakerState.HALF_OPEN


async def test_chunks_arrive_in_order_and_result_is_populated(clock):
    a = fake(clock, "a", Step(text="one two three", ttft=0.25, delay=0.125), cost=Cost(2.0, 4.0))
    router = build_router(clock, [a, fake(clock, "b")])
    stream = router.stream("count", max_tokens=20)
    assert stream.result is None
    chunks = await clock.run(consume(stream))
    assert chunks == ["one", " two", " three"]
    r = stream.result
    assert r is not None
    assert (r.text, r.provider, r.model, r.stop_reason) == ("one two three", "a", "a-model", "end")
    assert r.usage == Usage(10, 3)
    assert r.cost == pytest.approx((10 * 2.0 + 3 * 4.0) / 1e6)
    assert (r.ttft_ms, r.latency_ms) == (250.0, 625.0)
    assert r.attempts == (Attempt("a", "ok", duration_ms=625.0, ttft_ms=250.0),)
    assert r.segments == (Segment("a", "a-model", "one two three"),)
    assert (a.requests[0].prompt, a.requests[0].max_tokens) == ("count", 20)
    assert a.closed_streams == 1


async def test_collect_returns_the_result(clock):
    router = build_router(clock, [fake(clock, "a", Step(text="x y"))])
    result = await clock.run(router.stream("p").collect())
    assert (result.text, result.provider) == ("x y", "a")


async def test_failure_before_first_token_is_retried_then_fails_over_transparently(clock):
    a = fake(clock, "a", default=Step(error=transient(503)))
    b = fake(clock, "b", Step(text="from b"))
    router = build_router(clock, [a, b])
    stream = router.stream("p")
    chunks = await clock.run(consume(stream))
    assert chunks == ["from", " b"]
    assert clock.sleeps == [0.25, 0.5]
    assert a.calls == 3 and a.closed_streams == 3
    r = stream.result
    assert [(x.provider, x.outcome) for x in r.attempts] == [("a", "failed")] * 3 + [("b", "ok")]
    assert r.segments == (Segment("b", "b-model", "from b"),)
    assert b.requests[0].assistant_prefix is None


async def test_provider_error_before_first_token_fails_over_at_once(clock):
    a = fake(clock, "a", default=Step(error=provider_down()))
    b = fake(clock, "b", Step(text="fine"))
    router = build_router(clock, [a, b])
    stream = router.stream("p")
    assert await clock.run(consume(stream)) == ["fine"]
    assert a.calls == 1
    assert clock.sleeps == []


async def test_failure_after_tokens_continues_on_next_provider_with_the_prefix(clock):
    a = fake(clock, "a", Step(text="one two three four", fail_after=2, error=transient(502)))
    b = fake(clock, "b", Step(text=" three four"), cost=Cost(1.0, 2.0))
    router = build_router(clock, [a, b])
    stream = router.stream("count to four")
    chunks = await clock.run(consume(stream))
    assert chunks == ["one", " two", " three", " four"]
    r = stream.result
    assert r.text == "one two three four"
    assert r.provider == "b"
    assert r.segments == (
        Segment("a", "a-model", "one two"),
        Segment("b", "b-model", " three four"),
    )
    assert a.calls == 1  # no retry after text was delivered
    sent = b.requests[0]
    assert (sent.prompt, sent.assistant_prefix) == ("count to four", "one two")
    assert [(x.provider, x.outcome, x.error_class, x.status) for x in r.attempts] == [
        ("a", "failed", ErrorClass.TRANSIENT, 502),
        ("b", "ok", None, None),
    ]
    assert r.usage == Usage(10, 3)
    assert r.cost == pytest.approx((10 * 1.0 + 3 * 2.0) / 1e6)
    assert router.tracker.breakers["a"].window_counts(clock.time()) == (1, 1)


async def test_two_seams_accumulate_the_prefix(clock):
    a = fake(clock, "a", Step(text="one two three", fail_after=1, error=transient()))
    b = fake(clock, "b", Step(text=" two three", fail_after=2, error=provider_down()))
    c = fake(clock, "c", Step(text=" three"))
    router = build_router(clock, [a, b, c])
    stream = router.stream("p")
    assert await clock.run(consume(stream)) == ["one", " two", " three"]
    assert b.requests[0].assistant_prefix == "one"
    assert c.requests[0].assistant_prefix == "one two"
    assert [s.provider for s in stream.result.segments] == ["a", "b", "c"]
    assert stream.result.text == "one two three"


async def test_truncated_stream_after_tokens_fails_over_with_the_prefix(clock):
    a = fake(clock, "a", Step(text="one two", truncate=True))
    b = fake(clock, "b", Step(text=" three"))
    router = build_router(clock, [a, b])
    stream = router.stream("p")
    assert await clock.run(consume(stream)) == ["one", " two", " three"]
    failed = stream.result.attempts[0]
    assert (failed.provider, failed.error_class) == ("a", ErrorClass.TRANSIENT)
    assert failed.message == "stream ended without its terminal event"
    assert b.requests[0].assistant_prefix == "one two"


async def test_empty_truncated_stream_is_a_transient_failure_before_first_token(clock):
    a = fake(clock, "a", Step(truncate=True, fail_after=0), Step(text="second try"))
    router = build_router(clock, [a, fake(clock, "b")])
    stream = router.stream("p")
    assert await clock.run(consume(stream)) == ["second", " try"]
    assert clock.sleeps == [0.25]
    assert stream.result.attempts[0] == Attempt(
        "a", "failed", ErrorClass.TRANSIENT, None, "stream ended before any event"
    )
    assert stream.result.segments == (Segment("a", "a-model", "second try"),)


async def test_request_error_mid_stream_is_surfaced_not_failed_over(clock):
    a = fake(clock, "a", Step(text="one two", fail_after=1, error=bad_request()))
    b = fake(clock, "b")
    router = build_router(clock, [a, b])
    chunks: list[str] = []

    async def run():
        async for chunk in router.stream("p"):
            chunks.append(chunk)

    with pytest.raises(RequestRejected):
        await clock.run(run())
    assert chunks == ["one"]
    assert b.calls == 0


async def test_everything_failing_after_a_seam_raises_with_all_attempts(clock):
    a = fake(clock, "a", Step(text="one two", fail_after=1, error=transient()))
    b = fake(clock, "b", default=Step(error=provider_down()))
    router = build_router(clock, [a, b], queue=QueueConfig(max_wait=0))
    chunks: list[str] = []

    async def run():
        async for chunk in router.stream("p"):
            chunks.append(chunk)

    with pytest.raises(AllProvidersFailed) as info:
        await clock.run(run())
    assert chunks == ["one"]
    assert [(x.provider, x.error_class) for x in info.value.attempts] == [
        ("a", ErrorClass.TRANSIENT),
        ("b", ErrorClass.PROVIDER),
    ]


async def test_closing_the_stream_early_closes_provider_stream_and_frees_the_probe(clock):
    a = fake(clock, "a", default=Step(text="one two three"))
    router = build_router(clock, [a])
    half_open(router, clock, "a")

    async def read_one():
        it = aiter(router.stream("p"))
        first = await anext(it)
        await it.aclose()
        return first

    assert await clock.run(read_one()) == "one"
    br = router.tracker.breakers["a"]
    assert a.closed_streams == 1
    assert br.probes_in_flight == 0
    assert br.state(clock.time()) is BreakerState.HALF_OPEN  # no outcome was recorded
    assert (await clock.run(router.route("again"))).provider == "a"  # probe slot is free


async def test_breaking_out_of_the_loop_closes_provider_stream_and_frees_the_probe(clock):
    a = fake(clock, "a", default=Step(text="one two three"))
    router = build_router(clock, [a])
    half_open(router, clock, "a")

    async def read_one():
        async for chunk in router.stream("p"):
            return chunk

    gc.disable()  # prove the close does not depend on a garbage-collection pass
    try:
        assert await clock.run(read_one()) == "one"
        await clock.settle()
        assert a.closed_streams == 1
        assert router.tracker.breakers["a"].probes_in_flight == 0
    finally:
        gc.enable()


async def test_hedged_stream_takes_the_first_token_and_closes_the_loser(clock):
    a = fake(clock, "a", default=Step(text="slow answer", ttft=5.0))
    b = fake(clock, "b", default=Step(text="quick answer", ttft=0.25))
    router = build_router(clock, [a, b], routing=RoutingConfig(hedge_after_ms=500))
    stream = router.stream("p")
    assert await clock.run(consume(stream)) == ["quick", " answer"]
    assert [t - T0 for t in b.calls_at] == [0.5]
    assert a.cancelled == 1 and a.closed_streams == 1
    assert stream.result.provider == "b"
    assert stream.result.ttft_ms == 750.0
    assert stream.result.attempts == (Attempt("b", "ok", duration_ms=250.0, ttft_ms=250.0),)
    assert router.tracker.breakers["a"].probes_in_flight == 0


async def test_hedged_stream_when_both_open_at_once_keeps_one_and_closes_the_other(clock):
    a = fake(clock, "a", default=Step(text="from a", ttft=0.75))
    b = fake(clock, "b", default=Step(text="from b", ttft=0.25))  # started at 0.5
    router = build_router(clock, [a, b], routing=RoutingConfig(hedge_after_ms=500))
    half_open(router, clock, "a")
    half_open(router, clock, "b")
    stream = router.stream("p")
    chunks = await clock.run(consume(stream))
    winner = stream.result.provider
    loser = b if winner == "a" else a
    assert chunks == ["from", f" {winner}"]
    assert loser.closed_streams == 1
    assert router.tracker.breakers[loser.name].probes_in_flight == 0
    assert router.tracker.breakers[winner].state(clock.time()) is BreakerState.CLOSED


async def test_key_in_a_mid_stream_error_is_redacted(clock):
    canary = "sk-stream-canary-99f1c0"
    leak = transient(500)
    leak.message = f"upstream said key={canary}"
    a = fake(clock, "a", Step(text="one two", fail_after=1, error=leak))
    b = fake(clock, "b", Step(text=" two"))
    configs = [
        ProviderConfig(name=p.name, kind="gemini", model=p.config.model, api_key_env="K")
        for p in (a, b)
    ]
    router = build_router(clock, [a, b], configs=configs, env={"K": canary})
    stream = router.stream("p")
    await clock.run(consume(stream))
    assert stream.result.attempts[0].message == "upstream said key=[REDACTED]"
    assert canary not in repr(stream.result.to_dict())
