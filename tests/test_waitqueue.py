"""The wait queue on its own, and the router's all-down behaviour built on it: wait until the
earliest half-open time (bounded by queue.max_wait and the request timeout), release waiters
in arrival order, refuse past queue.max_size."""

from __future__ import annotations

import asyncio

import pytest
from fakes import Recorder, ScriptedProvider, Step, build_router, transient

from failover_cli.breaker import BreakerPolicy
from failover_cli.config import QueueConfig
from failover_cli.errors import AllProvidersFailed, QueueFull
from failover_cli.types import (
    Attempt,
    AttemptStarted,
    AttemptSucceeded,
    BreakerTransition,
    HealthResult,
    ProviderSkipped,
    Queued,
    Usage,
)
from failover_cli.waitqueue import WaitQueue

T0 = 1_800_000_000.0


# --- WaitQueue ---------------------------------------------------------------------------------


async def test_wait_returns_true_at_wake_time(clock):
    q = WaitQueue(clock, 10)
    t = q.ticket()
    assert await clock.run(q.wait(t, T0 + 5, T0 + 60)) is True
    assert clock.time() == T0 + 5
    assert len(q) == 0


async def test_wait_returns_false_at_give_up_time(clock):
    q = WaitQueue(clock, 10)
    assert await clock.run(q.wait(q.ticket(), None, T0 + 60)) is False
    assert clock.time() == T0 + 60
    assert len(q) == 0


async def test_wake_time_after_give_up_time_gives_up(clock):
    q = WaitQueue(clock, 10)
    assert await clock.run(q.wait(q.ticket(), T0 + 90, T0 + 60)) is False
    assert clock.time() == T0 + 60


async def test_wait_without_wake_time_needs_a_kick(clock):
    q = WaitQueue(clock, 10)
    task = asyncio.ensure_future(q.wait(q.ticket(), None, T0 + 60))
    await clock.settle()
    clock.advance(7)
    await clock.settle()
    assert not task.done()
    q.kick()
    assert await clock.run(task) is True
    assert clock.time() == T0 + 7


async def test_kick_wakes_waiters_oldest_first(clock):
    q = WaitQueue(clock, 10)
    woken: list[str] = []

    async def waiter(name: str, ticket: int):
        await q.wait(ticket, None, T0 + 60)
        woken.append(name)

    tickets = [q.ticket() for _ in range(3)]
    # register in reverse, so arrival in the dict differs from ticket order
    order = zip("cba", reversed(tickets), strict=True)
    tasks = [asyncio.ensure_future(waiter(n, t)) for n, t in order]
    await clock.settle()
    assert [q.position(t) for t in tickets] == [1, 2, 3]
    q.kick()
    await asyncio.gather(*tasks)
    assert woken == ["a", "b", "c"]


async def test_one_alarm_at_the_earliest_wake_time_wakes_everyone(clock):
    q = WaitQueue(clock, 10)
    late = asyncio.ensure_future(q.wait(q.ticket(), T0 + 10, T0 + 60))
    await clock.settle()
    early = asyncio.ensure_future(q.wait(q.ticket(), T0 + 5, T0 + 60))
    await clock.run(asyncio.gather(late, early))
    assert late.result() is True and early.result() is True
    assert clock.time() == T0 + 5


async def test_queue_full_counts_waiting_requests(clock):
    q = WaitQueue(clock, 2)
    tasks = [asyncio.ensure_future(q.wait(q.ticket(), None, T0 + 60)) for _ in range(2)]
    await clock.settle()
    assert len(q) == 2
    with pytest.raises(QueueFull, match=r"2 requests are already waiting .*queue.max_size = 2"):
        q.ticket()
    q.kick()
    await asyncio.gather(*tasks)
    assert q.ticket() == 3  # room again once they left


async def test_max_size_zero_refuses_everyone(clock):
    with pytest.raises(QueueFull):
        WaitQueue(clock, 0).ticket()


async def test_close_cancels_the_alarm(clock):
    q = WaitQueue(clock, 10)
    task = asyncio.ensure_future(q.wait(q.ticket(), T0 + 5, T0 + 60))
    await clock.settle()
    q.close()
    assert await clock.run(task) is False  # nothing rang: gave up at T0 + 60
    assert clock.time() == T0 + 60


# --- the router when every provider is down ----------------------------------------------------


def down_router(clock, *providers: ScriptedProvider, holds=(), **kw):
    router = build_router(clock, list(providers), **kw)
    for name, until in holds:
        router.tracker.hold_until(name, until)
    rec = Recorder()
    router.add_listener(rec)
    return router, rec


async def test_waits_until_the_earliest_half_open_time_then_succeeds(clock):
    a, b = ScriptedProvider("a", clock), ScriptedProvider("b", clock, default=Step(text="b ok"))
    router, rec = down_router(clock, a, b, holds=[("a", T0 + 40), ("b", T0 + 35)])
    result = await clock.run(router.route("x"))
    assert clock.time() == T0 + 35
    assert (result.provider, result.latency_ms) == ("b", 35_000.0)
    assert a.calls == 0 and b.calls == 1
    assert result.attempts == (
        Attempt("a", "skipped", message="breaker open, half-open in 40.0s"),
        Attempt("b", "skipped", message="breaker open, half-open in 35.0s"),
        Attempt("a", "skipped", message="breaker open, half-open in 5.0s"),
        Attempt("b", "ok"),
    )
    assert rec.events == [
        ProviderSkipped("a", "breaker open, half-open in 40.0s"),
        ProviderSkipped("b", "breaker open, half-open in 35.0s"),
        Queued(T0 + 35, 1),
        ProviderSkipped("a", "breaker open, half-open in 5.0s"),
        AttemptStarted("b", 1),
        BreakerTransition("b", "half_open", "closed", None),
        AttemptSucceeded("b", 0.0, None, Usage(10, 2)),
    ]


async def test_max_wait_shorter_than_the_cooldown_fails_fast(clock):
    a = ScriptedProvider("a", clock)
    router, rec = down_router(clock, a, holds=[("a", T0 + 30)], queue=QueueConfig(max_wait=10))
    with pytest.raises(AllProvidersFailed) as info:
        await clock.run(router.route("x"))
    assert clock.time() == T0
    assert rec.of(Queued) == []
    assert a.calls == 0
    assert (
        str(info.value) == "no provider is available: a: skipped (breaker open, half-open in 30.0s)"
    )
    assert info.value.attempts == (
        Attempt("a", "skipped", message="breaker open, half-open in 30.0s"),
    )


async def test_max_wait_per_request_overrides_the_config(clock):
    a = ScriptedProvider("a", clock)
    router, _ = down_router(clock, a, holds=[("a", T0 + 30)])  # queue.max_wait 60
    with pytest.raises(AllProvidersFailed):
        await clock.run(router.route("x", max_wait=29))
    assert clock.time() == T0
    assert (await clock.run(router.route("x", max_wait=30))).provider == "a"
    assert clock.time() == T0 + 30


async def test_the_request_timeout_bounds_the_wait(clock):
    a = ScriptedProvider("a", clock)
    router, rec = down_router(clock, a, holds=[("a", T0 + 30)])  # queue.max_wait 60
    with pytest.raises(AllProvidersFailed):
        await clock.run(router.route("x", timeout=20))
    assert clock.time() == T0 and rec.of(Queued) == []
    assert (await clock.run(router.route("x", timeout=40))).provider == "a"
    assert clock.time() == T0 + 30


async def test_probe_failing_after_the_wait_gives_up(clock):
    a = ScriptedProvider("a", clock, default=Step(error=transient(503)))
    router, _ = down_router(clock, a, holds=[("a", T0 + 30)], queue=QueueConfig(max_wait=45))
    with pytest.raises(AllProvidersFailed) as info:
        await clock.run(router.route("x"))
    assert clock.time() == T0 + 30  # the reopened breaker (until T0 + 60) is past max_wait
    assert a.calls == 1
    assert str(info.value) == (
        "every provider is still down after waiting: a: transient 503 (HTTP 503)"
    )


async def test_a_passing_health_check_releases_waiters_early(clock):
    a = ScriptedProvider("a", clock)
    router, _ = down_router(clock, a, holds=[("a", T0 + 30)])
    task = asyncio.ensure_future(router.route("x"))
    await clock.settle()
    clock.advance(5)
    router.tracker.on_health(HealthResult("a", True, 1.0))
    result = await clock.run(task)
    assert result.provider == "a"
    assert clock.time() == T0 + 5


async def _arrive(clock, router, prompts, gap: float = 1.0):
    """Start one route per prompt, ``gap`` virtual seconds apart; return every outcome."""
    tasks = []
    for prompt in prompts:
        tasks.append(asyncio.ensure_future(router.route(prompt)))
        await clock.sleep(gap)
    return await asyncio.gather(*tasks, return_exceptions=True)


async def test_waiters_are_released_in_arrival_order(clock):
    a = ScriptedProvider("a", clock)
    router, rec = down_router(clock, a, holds=[("a", T0 + 30)])
    results = await clock.run(_arrive(clock, router, ["first", "second", "third"]))
    assert [r.provider for r in results] == ["a", "a", "a"]
    assert [r.prompt for r in a.requests] == ["first", "second", "third"]
    assert [q.position for q in rec.of(Queued)] == [1, 2, 3]
    assert [t - T0 for t in a.calls_at] == [30.0, 30.0, 30.0]


async def test_waiters_are_released_in_arrival_order_with_several_probe_slots(clock):
    a = ScriptedProvider("a", clock, default=Step(delay=0.25))
    router, _ = down_router(
        clock, a, holds=[("a", T0 + 30)], breaker=BreakerPolicy(half_open_probes=3)
    )
    results = await clock.run(_arrive(clock, router, ["first", "second", "third"]))
    assert [r.provider for r in results] == ["a", "a", "a"]
    assert [r.prompt for r in a.requests] == ["first", "second", "third"]


async def test_waiters_behind_a_slow_probe_keep_waiting_for_its_outcome(clock):
    a = ScriptedProvider("a", clock, default=Step(delay=0.25))
    router, _ = down_router(clock, a, holds=[("a", T0 + 30)])
    results = await clock.run(_arrive(clock, router, ["first", "second", "third"]))
    assert [getattr(r, "provider", r) for r in results] == ["a", "a", "a"]
    assert [r.prompt for r in a.requests] == ["first", "second", "third"]


async def test_queue_full_refuses_past_max_size(clock):
    a = ScriptedProvider("a", clock)
    router, _ = down_router(clock, a, holds=[("a", T0 + 30)], queue=QueueConfig(max_size=1))
    first, second = await clock.run(_arrive(clock, router, ["first", "second"]))
    assert isinstance(second, QueueFull)
    assert str(second) == ("1 requests are already waiting for a provider (queue.max_size = 1)")
    assert first.provider == "a"
    assert [r.prompt for r in a.requests] == ["first"]
