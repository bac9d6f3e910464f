"""``bounded``: every wait of a stream bounded by the stream clocks, on one timer for the whole
stream. The sources here are driven by futures; the deadlines are a few milliseconds of loop
time, and no test waits for one unless the stream is meant to time out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from failover_cli.providers._http import bounded

FAR = 60.0  # seconds: a limit no test reaches


class Waits:
    """A stand-in for the stream clocks: each wait's instant, in loop time, from a list."""

    def __init__(self, *offsets: float) -> None:
        self.offsets = list(offsets)
        self.asked: list[float] = []

    def next_wait(self) -> float:
        offset = self.offsets.pop(0) if len(self.offsets) > 1 else self.offsets[0]
        when = asyncio.get_running_loop().time() + offset
        self.asked.append(when)
        return when


async def fed(
    *items: Any, gate: dict[int, asyncio.Future[None]] | None = None
) -> AsyncIterator[Any]:
    """``items``, item ``i`` only once ``gate[i]`` (if any) is done."""
    for i, item in enumerate(items):
        if gate is not None and i in gate:
            await gate[i]
        yield item


def timers(loop: asyncio.AbstractEventLoop) -> int:
    """Live timers on the loop (cancelled ones are not counted)."""
    return sum(not h.cancelled() for h in loop._scheduled)  # type: ignore[attr-defined]


async def test_items_pass_through_and_the_stream_leaves_no_timer():
    loop = asyncio.get_running_loop()
    before = timers(loop)
    got = [item async for item in bounded(fed(1, 2, 3), Waits(FAR))]  # type: ignore[arg-type]
    assert got == [1, 2, 3]
    assert timers(loop) == before


async def test_a_wait_past_its_instant_is_a_timeout():
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    stream = bounded(fed("a", "b", gate={1: never}), Waits(FAR, 0.005))  # type: ignore[arg-type]
    assert await anext(stream) == "a"
    with pytest.raises(TimeoutError):
        await anext(stream)
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_one_timer_serves_every_wait_while_none_needs_an_earlier_instant():
    loop = asyncio.get_running_loop()
    created = 0
    call_at = loop.call_at

    def counted(*args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        nonlocal created
        created += 1
        return call_at(*args, **kwargs)

    loop.call_at = counted  # type: ignore[method-assign]
    try:
        got = [x async for x in bounded(fed(*range(50)), Waits(FAR, FAR + 1))]  # type: ignore[arg-type]
    finally:
        del loop.call_at  # type: ignore[method-assign]
    assert got == list(range(50))
    assert created == 1  # an asyncio.timeout per wait would have made 51


async def test_a_later_instant_is_waited_for_when_the_timer_was_set_earlier():
    """The first wait's instant is near; the second wait's is far: the timer, set for the
    first, fires during the second and moves to its instant instead of ending it."""
    loop = asyncio.get_running_loop()
    late: asyncio.Future[None] = loop.create_future()
    waits = Waits(0.002, FAR)
    stream = bounded(fed("first", "second", gate={1: late}), waits)  # type: ignore[arg-type]
    assert await anext(stream) == "first"
    loop.call_later(0.02, late.set_result, None)  # well after the first instant
    assert await anext(stream) == "second"
    assert loop.time() > waits.asked[0]  # the early timer did fire during that wait
    await stream.aclose()


async def test_the_consumer_is_never_cancelled_between_items():
    """The instant of a wait passes while the consumer holds an item: its own await goes on;
    the stream's next wait, already late, is the one that times out."""
    loop = asyncio.get_running_loop()
    never: asyncio.Future[None] = loop.create_future()
    stream = bounded(fed("a", "b", gate={1: never}), Waits(0.002))  # type: ignore[arg-type]
    assert await anext(stream) == "a"
    await asyncio.sleep(0.01)  # the consumer's own work, past the instant: not cancelled
    with pytest.raises(TimeoutError):
        await anext(stream)


async def test_a_cancellation_from_elsewhere_stays_a_cancellation():
    loop = asyncio.get_running_loop()
    never: asyncio.Future[None] = loop.create_future()

    async def consume() -> list[Any]:
        return [x async for x in bounded(fed("a", "b", gate={1: never}), Waits(FAR))]  # type: ignore[arg-type]

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_the_timer_cancels_the_task_that_waits_now():
    """A stream opened in one task (a hedge's) and read on in another: the late wait of the
    second is the one ended, and the first task is left alone."""
    loop = asyncio.get_running_loop()
    never: asyncio.Future[None] = loop.create_future()
    stream = bounded(fed("a", "b", gate={1: never}), Waits(FAR, 0.005))  # type: ignore[arg-type]

    async def first() -> Any:
        return await anext(stream)

    opener = asyncio.ensure_future(first())
    assert await opener == "a"
    with pytest.raises(TimeoutError):
        await anext(stream)
    assert not opener.cancelled()


async def test_a_wait_that_completes_as_it_expires_leaves_no_cancellation_behind():
    """The timer fires in the same turn as the item arrives: whichever wins, the task is left
    with no cancellation pending (as asyncio.timeout leaves it)."""
    loop = asyncio.get_running_loop()
    for _ in range(20):
        ready: asyncio.Future[None] = loop.create_future()
        stream = bounded(fed("a", "b", gate={1: ready}), Waits(FAR, 0.003))  # type: ignore[arg-type]
        assert await anext(stream) == "a"
        loop.call_later(0.003, ready.set_result, None)
        try:
            await anext(stream)
        except TimeoutError:
            pass
        await stream.aclose()
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
        await asyncio.sleep(0.005)  # nothing cancels this task afterwards
