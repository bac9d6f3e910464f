"""VirtualClock: time moves only when told to, so timing is proven without sleeping."""

from __future__ import annotations

import asyncio
import time

import pytest

from failover_cli.clock import SystemClock, VirtualClock

START = 1_800_000_000.0


async def sleeper(clock: VirtualClock, seconds: float, woke: list[tuple[str, float]], tag: str):
    await clock.sleep(seconds)
    woke.append((tag, clock.time()))


def test_starts_at_the_given_time_and_stays_there() -> None:
    assert VirtualClock().time() == START
    clock = VirtualClock(start=100.0)
    assert (clock.time(), clock.monotonic()) == (100.0, 100.0)
    assert clock.time() == 100.0  # reading does not move it
    assert clock.pending == 0
    assert clock.sleeps == []


def test_advance_moves_wall_and_monotonic_time_together() -> None:
    clock = VirtualClock(start=100.0)
    clock.advance(2.5)
    assert (clock.time(), clock.monotonic()) == (102.5, 102.5)
    clock.advance(0)
    assert clock.time() == 102.5


async def test_sleep_parks_until_advance_reaches_its_deadline() -> None:
    clock = VirtualClock(start=0.0)
    task = asyncio.create_task(clock.sleep(5))
    await clock.settle()
    assert not task.done()
    assert clock.pending == 1
    assert clock.sleeps == [5]

    clock.advance(4.999)
    await clock.settle()
    assert not task.done()
    assert clock.pending == 1

    clock.advance(0.001)
    await clock.settle()
    assert task.done()
    assert clock.pending == 0
    assert clock.time() == pytest.approx(5.0)


async def test_advance_wakes_sleepers_in_deadline_order() -> None:
    clock = VirtualClock(start=0.0)
    woke: list[tuple[str, float]] = []
    tasks = [
        asyncio.create_task(sleeper(clock, s, woke, tag))
        for tag, s in [("three", 3), ("one", 1), ("two-a", 2), ("two-b", 2)]
    ]
    await clock.settle()
    assert woke == []
    assert clock.pending == 4
    clock.advance(10)
    await asyncio.gather(*tasks)
    assert [tag for tag, _ in woke] == ["one", "two-a", "two-b", "three"]
    assert clock.time() == 10.0
    assert clock.sleeps == [3, 1, 2, 2]


async def test_advance_wakes_only_the_sleepers_that_are_due() -> None:
    clock = VirtualClock(start=0.0)
    woke: list[tuple[str, float]] = []
    short = asyncio.create_task(sleeper(clock, 1, woke, "short"))
    long_ = asyncio.create_task(sleeper(clock, 5, woke, "long"))
    await clock.settle()
    clock.advance(2)
    await clock.settle()
    assert woke == [("short", 2.0)]
    assert clock.pending == 1
    assert not long_.done()
    clock.advance(3)
    await asyncio.gather(short, long_)
    assert woke == [("short", 2.0), ("long", 5.0)]


async def test_a_sleep_is_measured_from_when_it_starts() -> None:
    clock = VirtualClock(start=0.0)
    clock.advance(7)
    task = asyncio.create_task(clock.sleep(3))
    await clock.settle()
    clock.advance(2.5)
    await clock.settle()
    assert not task.done()
    clock.advance(0.5)
    await clock.settle()
    assert task.done()


@pytest.mark.parametrize("seconds", [0, -1.5])
async def test_non_positive_sleep_returns_at_once(seconds: float) -> None:
    clock = VirtualClock(start=0.0)
    await asyncio.wait_for(clock.sleep(seconds), timeout=5)
    assert clock.time() == 0.0
    assert clock.pending == 0
    assert clock.sleeps == [seconds]


async def test_a_cancelled_sleeper_is_no_longer_pending() -> None:
    clock = VirtualClock(start=0.0)
    woke: list[tuple[str, float]] = []
    gone = asyncio.create_task(sleeper(clock, 1, woke, "gone"))
    kept = asyncio.create_task(sleeper(clock, 2, woke, "kept"))
    await clock.settle()
    gone.cancel()
    await clock.settle()
    assert clock.pending == 1
    clock.advance(5)
    await kept
    assert woke == [("kept", 5.0)]
    assert gone.cancelled()


async def test_run_jumps_to_each_deadline_in_turn() -> None:
    clock = VirtualClock(start=0.0)
    seen: list[float] = []

    async def work() -> str:
        await clock.sleep(100)
        seen.append(clock.time())
        await clock.sleep(50)
        seen.append(clock.time())
        return "done"

    assert await clock.run(work()) == "done"
    assert seen == [100.0, 150.0]
    assert clock.time() == 150.0
    assert clock.sleeps == [100, 50]


async def test_run_with_concurrent_sleepers_stops_at_the_last_deadline() -> None:
    clock = VirtualClock(start=0.0)
    woke: list[tuple[str, float]] = []

    async def all_of_them() -> None:
        await asyncio.gather(
            sleeper(clock, 3, woke, "c"), sleeper(clock, 1, woke, "a"), sleeper(clock, 2, woke, "b")
        )

    await clock.run(all_of_them())
    assert woke == [("a", 1.0), ("b", 2.0), ("c", 3.0)]
    assert clock.time() == 3.0


async def test_run_does_not_wait_in_real_time() -> None:
    clock = VirtualClock()

    async def a_day_of_retries() -> int:
        for _ in range(24):
            await clock.sleep(3600)
        return 24

    started = time.monotonic()
    assert await clock.run(a_day_of_retries()) == 24
    assert clock.time() == START + 86_400
    assert time.monotonic() - started < 5.0  # a real wait would take a day


async def test_run_follows_tasks_woken_by_other_tasks() -> None:
    clock = VirtualClock(start=0.0)
    ready = asyncio.Event()

    async def setter() -> None:
        await clock.sleep(4)
        ready.set()

    async def waiter() -> float:
        helper = asyncio.create_task(setter())
        await ready.wait()
        await clock.sleep(1)
        await helper
        return clock.time()

    assert await clock.run(waiter()) == 5.0


async def test_run_propagates_the_exception() -> None:
    clock = VirtualClock(start=0.0)

    async def fails() -> None:
        await clock.sleep(2)
        raise LookupError("boom")

    with pytest.raises(LookupError, match="boom"):
        await clock.run(fails())
    assert clock.time() == 2.0


async def test_system_clock_is_the_real_clock() -> None:
    clock = SystemClock()
    assert abs(clock.time() - time.time()) < 5.0
    a = clock.monotonic()
    await clock.sleep(-1)  # never negative: returns at once
    await clock.sleep(0)
    assert clock.monotonic() >= a
