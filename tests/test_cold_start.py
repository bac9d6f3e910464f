"""Cold start: a breaker with no evidence yet admits ``failure_threshold`` scouts and holds the
rest of a burst (bounded by ``cold_start_wait``) until a scout succeeds, a stream opens or the
breaker trips. The pure breaker rules first, then the router on a virtual clock, then a burst
over real HTTP against the OpenAI simulator."""

from __future__ import annotations

import asyncio

import pytest
from conftest import SIM_KEY
from fakes import Recorder, ScriptedProvider, Step, bad_request, build_router, transient

from failover_cli.breaker import BreakerPolicy, BreakerSnapshot, BreakerState, CircuitBreaker
from failover_cli.clock import VirtualClock
from failover_cli.config import Config, RoutingConfig
from failover_cli.errors import AllProvidersFailed, RequestRejected
from failover_cli.retry import RetryPolicy
from failover_cli.router import FailoverRouter
from failover_cli.sim import Behavior
from failover_cli.types import ProviderConfig, ProviderSkipped

T0 = 1_800_000_000.0


def fake(clock: VirtualClock, name: str, default: Step | None = None) -> ScriptedProvider:
    return ScriptedProvider(name, clock, [], default or Step(text=f"{name} says hi"))


# --- the pure breaker ----------------------------------------------------------------------


def test_a_fresh_breaker_admits_failure_threshold_scouts_then_asks_to_wait() -> None:
    b = CircuitBreaker(BreakerPolicy(failure_threshold=3))
    assert b.cold and not b.must_wait()
    permits = [b.acquire(T0) for _ in range(3)]
    assert all(p is not None and p.scout for p in permits)
    assert b.must_wait()
    late = b.acquire(T0)  # a caller that waited long enough still gets in, as a plain call
    assert late is not None and not late.scout


def test_reported_failures_keep_their_scout_slots_taken() -> None:
    b = CircuitBreaker(BreakerPolicy(failure_threshold=3))
    p1, p2, _p3 = (b.acquire(T0) for _ in range(3))
    b.on_failure(T0, p1)
    assert b.must_wait()  # two scouts out and one failure: together they can still trip it
    b.release(p2)  # a scout that ends with no outcome (cancelled, request error) frees a slot
    assert not b.must_wait()
    assert b.acquire(T0).scout


def test_the_last_scout_failure_trips_the_breaker_and_ends_the_cold_start() -> None:
    b = CircuitBreaker(BreakerPolicy(failure_threshold=2))
    p1, p2 = b.acquire(T0), b.acquire(T0)
    b.on_failure(T0, p1)
    b.on_failure(T0, p2)
    assert b.state(T0) is BreakerState.OPEN
    assert not b.cold and not b.must_wait()
    assert b.acquire(T0) is None


def test_one_success_ends_the_cold_start_for_everyone() -> None:
    b = CircuitBreaker(BreakerPolicy(failure_threshold=2))
    p1, p2 = b.acquire(T0), b.acquire(T0)
    b.on_success(T0, p1)
    assert not b.cold and not b.must_wait()
    assert b.scouts_in_flight == 1
    b.release(p2)
    assert b.scouts_in_flight == 0


def test_warm_ends_the_cold_start_without_an_outcome() -> None:
    b = CircuitBreaker(BreakerPolicy(failure_threshold=1))
    b.acquire(T0)
    assert b.must_wait()
    b.warm()
    assert not b.must_wait() and list(b.outcomes) == []


@pytest.mark.parametrize(
    ("outcomes", "snapshot", "cold"),
    [
        ([], None, True),
        ([(T0, False)], None, True),  # one failure: not yet enough to judge either way
        ([(T0, True)], None, False),  # a stored success: it has worked
        ([(T0, False)] * 3, None, False),  # enough outcomes for the breaker alone
        ([], BreakerSnapshot(forced="closed"), False),
        ([], BreakerSnapshot(state="open", open_until=T0 + 30), False),
    ],
)
def test_a_breaker_rebuilt_from_stored_history_is_cold_only_without_evidence(
    outcomes, snapshot, cold
) -> None:
    b = CircuitBreaker(BreakerPolicy(failure_threshold=3), snapshot, outcomes)
    assert b.cold is cold


def test_cold_start_wait_zero_turns_the_gate_off() -> None:
    b = CircuitBreaker(BreakerPolicy(failure_threshold=1, cold_start_wait=0))
    b.acquire(T0)
    assert b.cold and not b.must_wait()


# --- the router on a virtual clock ------------------------------------------------------------


def _burst(router: FailoverRouter, n: int):
    async def run():
        return await asyncio.gather(*(router.route(f"r{i}") for i in range(n)))

    return run()


async def test_a_burst_on_a_dead_primary_sends_it_only_the_scouts(clock: VirtualClock):
    a = fake(clock, "a", default=Step(delay=0.01, error=transient(500)))
    b = fake(clock, "b")
    router = build_router(clock, [a, b], breaker=BreakerPolicy(failure_threshold=3))
    results = await clock.run(_burst(router, 50))
    assert a.calls == 3
    assert {r.provider for r in results} == {"b"}
    assert b.calls == 50
    assert clock.time() == pytest.approx(
        T0 + 0.01, abs=1e-6
    )  # held requests left when the breaker opened
    held = [r for r in results if r.attempts[0].outcome == "skipped"]
    assert len(held) == 47
    assert held[0].attempts[0].message.startswith("breaker open")


async def test_a_scouts_immediate_retry_is_held_like_any_other_request(clock):
    a = fake(clock, "a", default=Step(delay=0.01, error=transient(500)))
    b = fake(clock, "b")
    policy = BreakerPolicy(failure_threshold=3)
    router = build_router(clock, [a, b], breaker=policy, random=lambda: 0.0)  # no backoff
    results = await clock.run(_burst(router, 3))
    assert a.calls == 3  # no scout retried past the others still out
    assert {r.provider for r in results} == {"b"}


async def test_a_burst_on_a_healthy_cold_primary_is_released_by_the_first_success(clock):
    a = fake(clock, "a", default=Step(delay=0.1))
    router = build_router(clock, [a, fake(clock, "b")], breaker=BreakerPolicy(failure_threshold=2))
    results = await clock.run(_burst(router, 10))
    assert {r.provider for r in results} == {"a"}
    assert a.calls_at == [T0] * 2 + [T0 + 0.1] * 8


async def test_held_requests_wait_no_longer_than_cold_start_wait(clock):
    a = fake(clock, "a", default=Step(delay=5.0))
    policy = BreakerPolicy(failure_threshold=1, cold_start_wait=0.25)
    router = build_router(clock, [a, fake(clock, "b")], breaker=policy)
    results = await clock.run(_burst(router, 4))
    assert {r.provider for r in results} == {"a"}
    assert a.calls_at == [T0] + [T0 + 0.25] * 3
    assert clock.time() == pytest.approx(T0 + 5.25, abs=1e-6)


async def test_held_requests_wait_no_longer_than_their_own_deadline(clock):
    a = fake(clock, "a", default=Step(delay=5.0))
    policy = BreakerPolicy(failure_threshold=1, cold_start_wait=10)
    router = build_router(clock, [a, fake(clock, "b")], breaker=policy)

    async def run():
        scout = asyncio.ensure_future(router.route("scout"))
        await asyncio.sleep(0)
        with pytest.raises(AllProvidersFailed, match=r"^request deadline exceeded"):
            await router.route("held", timeout=2)
        held_until = clock.time()
        await scout
        return held_until

    assert await clock.run(run()) == pytest.approx(T0 + 2, abs=1e-6)
    assert a.calls == 1


async def test_a_scout_ending_without_an_outcome_lets_a_held_request_take_its_place(clock):
    a = ScriptedProvider("a", clock, [Step(delay=0.1, error=bad_request())], Step(delay=0.1))
    router = build_router(clock, [a, fake(clock, "b")], breaker=BreakerPolicy(failure_threshold=1))

    async def run():
        return await asyncio.gather(
            *(router.route(f"r{i}") for i in range(3)), return_exceptions=True
        )

    first, *rest = await clock.run(run())
    assert isinstance(first, RequestRejected)  # says nothing about the provider's health
    assert [r.provider for r in rest] == ["a", "a"]
    # a new scout at once, then the last request after its success
    assert a.calls_at == pytest.approx([T0, T0 + 0.1, T0 + 0.2], abs=1e-6)


async def test_without_the_gate_a_burst_reaches_the_dead_primary_every_time(clock):
    a = fake(clock, "a", default=Step(delay=0.01, error=transient(500)))
    b = fake(clock, "b")
    policy = BreakerPolicy(failure_threshold=3, cold_start_wait=0)
    router = build_router(clock, [a, b], breaker=policy, retry=RetryPolicy(attempts=1))
    await clock.run(_burst(router, 20))
    assert a.calls == 20


async def test_a_primary_with_stored_history_is_not_held(clock):
    a = fake(clock, "a", default=Step(delay=0.1))
    router = build_router(clock, [a, fake(clock, "b")], breaker=BreakerPolicy(failure_threshold=1))
    router.tracker.breakers["a"].outcomes.append((T0 - 60, True))
    await clock.run(_burst(router, 5))
    assert a.calls_at == [T0] * 5


async def test_an_opened_stream_releases_held_requests_before_it_ends(clock):
    a = fake(clock, "a", default=Step(text="one two three", ttft=0.05, delay=1.0))
    router = build_router(clock, [a, fake(clock, "b")], breaker=BreakerPolicy(failure_threshold=1))

    async def consume(i: int) -> str:
        return "".join([chunk async for chunk in router.stream(f"s{i}")])

    async def run():
        return await asyncio.gather(*(consume(i) for i in range(3)))

    assert await clock.run(run()) == ["one two three"] * 3
    assert a.calls_at == [T0, T0 + 0.05, T0 + 0.05]


async def test_held_hedged_requests_still_hedge_and_skip_a_tripped_primary(clock):
    a = fake(clock, "a", default=Step(delay=0.01, error=transient(500)))
    b = fake(clock, "b")
    router = build_router(
        clock,
        [a, b],
        breaker=BreakerPolicy(failure_threshold=2),
        routing=RoutingConfig(hedge_after_ms=500),
    )
    results = await clock.run(_burst(router, 10))
    assert a.calls == 2
    assert {r.provider for r in results} == {"b"}
    scouts = [r for r in results if r.attempts[0].outcome == "failed"]
    held = [r for r in results if r.attempts[0].outcome == "skipped"]
    assert (len(scouts), len(held)) == (2, 8)
    assert all([x.provider for x in r.attempts] == ["a", "b"] for r in held)


async def test_held_requests_emit_a_skip_event_naming_the_open_breaker(clock):
    a = fake(clock, "a", default=Step(error=transient(500)))
    rec = Recorder()
    router = build_router(
        clock, [a, fake(clock, "b")], breaker=BreakerPolicy(failure_threshold=1), listeners=[rec]
    )
    await clock.run(_burst(router, 3))
    assert [e.provider for e in rec.of(ProviderSkipped)] == ["a", "a"]


# --- over real HTTP ---------------------------------------------------------------------------


async def test_a_burst_over_loopback_sends_the_dead_primary_only_the_scouts(sim):
    dead = sim("openai", Behavior(statuses=[500] * 100))
    good = sim("openai")
    configs = [
        ProviderConfig(name=n, kind="openai", model="m", base_url=s.base_url, api_key_env="K")
        for n, s in (("dead", dead), ("good", good))
    ]
    # The hold is bounded by wall-clock time here: long enough that a loaded CI machine
    # answering the scouts slowly cannot release the burst before their verdict.
    config = Config(providers=tuple(configs), breaker=BreakerPolicy(cold_start_wait=30.0))
    router = FailoverRouter(config, env={"K": SIM_KEY}, random=lambda: 0.0)
    try:
        results = await asyncio.gather(*(router.route(f"q{i}", max_tokens=8) for i in range(30)))
    finally:
        await router.aclose()
    assert {r.provider for r in results} == {"good"}
    assert dead.count == 3  # failure_threshold's default: the scouts, and nobody else
    assert good.count == 30
