"""The router under a budget: every hop (first try, fail-over, continuation of a broken
stream, hedge) is checked against it, answers are charged to the shared state, and a
request nothing within the budget can answer raises BudgetExceeded."""

from __future__ import annotations

from typing import Any

import pytest
from fakes import Recorder, ScriptedProvider, Step, provider_down, transient

from failover_cli.budget import periods
from failover_cli.clock import VirtualClock
from failover_cli.config import BudgetConfig, BudgetLimit, Config, RoutingConfig
from failover_cli.errors import AllProvidersFailed, BudgetExceeded
from failover_cli.retry import RetryPolicy
from failover_cli.router import FailoverRouter
from failover_cli.state import ChainState, StateDelta
from failover_cli.store import JsonFileStore, MemoryStore
from failover_cli.types import Cost, ProviderSkipped

# $0.10 a token, in and out: the scripted answer "ok" (10 tokens in, 1 out) costs $1.10, and
# the worst case of prompt "hi" with max_tokens=10 is 1 + 10 tokens: $1.10 too.
PAID = Cost(input_per_mtok=100_000.0, output_per_mtok=100_000.0)
FREE = Cost()
ASK: dict[str, Any] = {"prompt": "hi", "max_tokens": 10}


def provider(clock: VirtualClock, name: str, cost: Cost | None, *steps: Step) -> ScriptedProvider:
    return ScriptedProvider(name, clock, list(steps), cost=cost)


def router(
    clock: VirtualClock,
    providers: list[ScriptedProvider],
    budget: BudgetConfig,
    routing: RoutingConfig | None = None,
    **kwargs: Any,
) -> FailoverRouter:
    config = Config(
        providers=tuple(p.config for p in providers),
        retry=RetryPolicy(attempts=2, base_delay=0.1),
        routing=routing or RoutingConfig(),
        budget=budget,
    )
    kwargs.setdefault("background_probes", False)
    kwargs.setdefault("autoflush", False)
    return FailoverRouter(config, providers=providers, clock=clock, random=lambda: 0.5, **kwargs)


def budget_skips(attempts) -> dict[str, str]:
    return {a.provider: a.message for a in attempts if a.reason == "budget"}


async def collect(stream: Any) -> str:
    return "".join([chunk async for chunk in stream])


def spent(state: ChainState, name: str, epoch: float) -> float:
    return state.provider(name).spend.get(periods(epoch)[0], 0.0)


async def test_a_paid_fallback_over_budget_is_skipped_and_a_free_one_answers() -> None:
    """The peer's bug: a free-tier primary failing over to a paid provider spent past the
    budget. The fail-over hop is checked like the first one."""
    clock = VirtualClock()
    free = provider(clock, "free", FREE, Step(provider_down()))
    paid = provider(clock, "paid", PAID)
    local = provider(clock, "local", FREE, Step(text="local answer"))
    events = Recorder()
    r = router(clock, [free, paid, local], BudgetConfig(daily_usd=1.0), listeners=[events])
    result = await clock.run(r.route(**ASK))
    assert result.provider == "local" and result.text == "local answer"
    assert paid.calls == 0
    assert budget_skips(result.attempts) == {
        "paid": "daily budget $1.00: $0.00 spent, this request up to $1.10"
    }
    assert [e.provider for e in events.of(ProviderSkipped)] == ["paid"]


async def test_refused_when_no_provider_fits_with_the_limit_and_spend_named() -> None:
    clock = VirtualClock()
    a, b = provider(clock, "a", PAID), provider(clock, "b", PAID)
    r = router(clock, [a, b], BudgetConfig(daily_usd=1.0))
    with pytest.raises(BudgetExceeded) as caught:
        await clock.run(r.route(**ASK))
    exc = caught.value
    assert isinstance(exc, AllProvidersFailed)  # code catching that keeps working
    assert str(exc) == (
        "refused by the budget: a: skipped (daily budget $1.00: $0.00 spent, this request "
        "up to $1.10); b: skipped (daily budget $1.00: $0.00 spent, this request up to $1.10)"
    )
    assert a.calls == b.calls == 0


async def test_answers_are_charged_to_the_store_and_the_next_request_is_refused() -> None:
    clock = VirtualClock()
    store = MemoryStore()
    gpt = provider(clock, "gpt", PAID)
    r = router(clock, [gpt], BudgetConfig(daily_usd=2.5), store=store)
    first = await clock.run(r.route(**ASK))
    assert first.cost == pytest.approx(1.1)
    assert spent(store.load("default"), "gpt", clock.time()) == pytest.approx(1.1)
    await clock.run(r.route(**ASK))  # 1.10 + 1.10 <= 2.50
    assert spent(store.load("default"), "gpt", clock.time()) == pytest.approx(2.2)
    with pytest.raises(BudgetExceeded, match=r"daily budget \$2.50: \$2.20 spent"):
        await clock.run(r.route(**ASK))
    assert gpt.calls == 2


async def test_a_provider_limit_sends_the_request_to_a_cheaper_provider() -> None:
    clock = VirtualClock()
    store = MemoryStore()
    dear = provider(clock, "dear", PAID)
    cheap = provider(clock, "cheap", Cost(input_per_mtok=1.0, output_per_mtok=1.0))
    budget = BudgetConfig(monthly_usd=100.0, providers={"dear": BudgetLimit(daily_usd=2.0)})
    r = router(clock, [dear, cheap], budget, store=store)
    assert (await clock.run(r.route(**ASK))).provider == "dear"
    result = await clock.run(r.route(**ASK))
    assert result.provider == "cheap"
    assert budget_skips(result.attempts) == {
        "dear": "dear's daily budget $2.00: $1.10 spent, this request up to $1.10"
    }


async def test_a_new_utc_day_opens_the_daily_budget_again() -> None:
    clock = VirtualClock()
    gpt = provider(clock, "gpt", PAID)
    r = router(clock, [gpt], BudgetConfig(daily_usd=1.5, monthly_usd=10.0))
    await clock.run(r.route(**ASK))
    with pytest.raises(BudgetExceeded):
        await clock.run(r.route(**ASK))
    clock.advance(86_400)  # no store: the router's own spend, rolled over by the clock
    assert (await clock.run(r.route(**ASK))).provider == "gpt"


async def test_two_routers_sharing_one_state_file_enforce_one_budget(tmp_path) -> None:
    clock = VirtualClock()
    path = tmp_path / "state.json"
    budget = BudgetConfig(daily_usd=2.5)
    a_gpt, b_gpt = provider(clock, "gpt", PAID), provider(clock, "gpt", PAID)
    a = router(clock, [a_gpt], budget, store=JsonFileStore(path))
    b = router(clock, [b_gpt], budget, store=JsonFileStore(path))
    await clock.run(a.route(**ASK))  # $1.10
    await clock.run(b.route(**ASK))  # sees a's $1.10: $2.20 in all
    with pytest.raises(BudgetExceeded, match=r"\$2.20 spent"):
        await clock.run(a.route(**ASK))  # a spent only $1.10 itself
    assert (a_gpt.calls, b_gpt.calls) == (1, 1)
    stored = JsonFileStore(path).load("default")
    assert spent(stored, "gpt", clock.time()) == pytest.approx(2.2)


async def test_retries_are_hops_too() -> None:
    """Another process's spend lands between two tries of one provider: the retry is
    checked against it and skipped."""
    clock = VirtualClock()
    store = MemoryStore()
    gpt = provider(clock, "gpt", PAID, Step(transient()))
    r = router(clock, [gpt], BudgetConfig(daily_usd=2.0), store=store)
    day, month = periods(clock.time())
    other = StateDelta()
    other.provider("claude").spend = {day: 1.5, month: 1.5}
    ledger = r._ledger
    assert ledger is not None
    real_admit = ledger.admit

    def admit_after_other_process(*args: Any, **kwargs: Any) -> str | None:
        if gpt.calls == 1 and not ledger.spend.chain(day):
            store.update("default", other)  # while gpt backs off
            ledger.adopt({"claude": {day: 1.5, month: 1.5}})
        return real_admit(*args, **kwargs)

    ledger.admit = admit_after_other_process  # type: ignore[method-assign]
    with pytest.raises(BudgetExceeded) as caught:
        await clock.run(r.route(**ASK))
    assert gpt.calls == 1
    assert [(a.provider, a.outcome, a.reason) for a in caught.value.attempts] == [
        ("gpt", "failed", None),
        ("gpt", "skipped", "budget"),
    ]
    assert "refused by the budget (no provider could answer within it)" in str(caught.value)


async def test_a_broken_stream_is_charged_and_its_continuation_checked() -> None:
    clock = VirtualClock()
    store = MemoryStore()
    gpt = provider(
        clock, "gpt", PAID, Step(text="one two three four", fail_after=2, error=transient())
    )
    claude = provider(clock, "claude", PAID)
    llama = provider(clock, "llama", FREE, Step(text=" three four"))
    # 1.10 (the worst case of the first hop) fits; after the broken stream is charged its
    # estimate (1 token in, 2 out: $0.30) the continuation, now longer, does not.
    r = router(clock, [gpt, claude, llama], BudgetConfig(daily_usd=1.3), store=store)
    stream = r.stream(**ASK)
    assert await clock.run(collect(stream)) == "one two three four"
    assert stream.result is not None and stream.result.provider == "llama"
    assert claude.calls == 0
    assert "claude" in budget_skips(stream.result.attempts)
    assert spent(store.load("default"), "gpt", clock.time()) == pytest.approx(0.3)


async def test_a_hedge_is_checked_before_it_starts() -> None:
    clock = VirtualClock()
    slow = provider(clock, "slow", FREE, Step(ttft=5.0, text="late"))
    dear = provider(clock, "dear", PAID)
    r = router(clock, [slow, dear], BudgetConfig(daily_usd=1.0), RoutingConfig(hedge_after_ms=100))
    stream = r.stream(**ASK)
    assert await clock.run(collect(stream)) == "late"
    assert dear.calls == 0
    assert stream.result is not None and "dear" in budget_skips(stream.result.attempts)


async def test_an_unpriced_provider_is_skipped_under_a_budget_that_covers_it() -> None:
    clock = VirtualClock()
    unknown = provider(clock, "unknown", None)
    free = provider(clock, "free", FREE, Step(text="free"))
    r = router(clock, [unknown, free], BudgetConfig(monthly_usd=50.0))
    result = await clock.run(r.route(**ASK))
    assert result.provider == "free" and unknown.calls == 0
    assert "no price configured" in budget_skips(result.attempts)["unknown"]
    # A limit on another provider only leaves it alone.
    other = router(
        clock,
        [provider(clock, "unknown", None), provider(clock, "free", FREE)],
        BudgetConfig(providers={"free": BudgetLimit(daily_usd=1.0)}),
    )
    assert (await clock.run(other.route(**ASK))).provider == "unknown"


class CountingStore(MemoryStore):
    """A memory store that counts what the router asks of it."""

    def __init__(self) -> None:
        super().__init__()
        self.loads = 0
        self.updates = 0

    def load(self, chain: str) -> ChainState:
        self.loads += 1
        return super().load(chain)

    def update(self, chain: str, delta: StateDelta) -> ChainState:
        self.updates += 1
        return super().update(chain, delta)


async def test_without_a_budget_the_store_is_not_touched_on_the_request_path() -> None:
    clock = VirtualClock()
    store = CountingStore()
    r = router(clock, [provider(clock, "gpt", PAID)], BudgetConfig(), store=store)
    assert r._ledger is None
    loads = store.loads
    for _ in range(3):
        await clock.run(r.route(**ASK))
    assert (store.loads, store.updates) == (loads, 0)
    budgeted = router(
        clock, [provider(clock, "gpt", PAID)], BudgetConfig(daily_usd=100.0), store=store
    )
    await clock.run(budgeted.route(**ASK))
    assert store.updates == 1  # the charge, written at once


async def test_a_charge_made_while_the_state_file_is_locked_is_journalled_not_lost(
    tmp_path,
) -> None:
    from failover_cli.store._lockfile import file_lock

    clock = VirtualClock()
    path = tmp_path / "state.json"
    gpt = provider(clock, "gpt", PAID)
    r = router(
        clock, [gpt], BudgetConfig(daily_usd=3.0), store=JsonFileStore(path, lock_timeout=0.01)
    )
    await clock.run(r.route(**ASK))  # creates the file
    lock = file_lock(str(path) + ".lock")
    assert lock.try_acquire()  # another process holds the lock for long
    try:
        await clock.run(r.route(**ASK))  # charged through the journal
    finally:
        lock.release()
    assert spent(JsonFileStore(path).load("default"), "gpt", clock.time()) == pytest.approx(2.2)
    with pytest.raises(BudgetExceeded, match=r"\$2.20 spent"):
        await clock.run(r.route(**ASK))


# --- hops in flight in one process --------------------------------------------------------------


async def test_concurrent_requests_hold_their_worst_case_while_in_flight() -> None:
    """A gateway's concurrent requests cannot pass the limit together: each hop in flight
    holds its worst case until its answer's real cost replaces it."""
    import asyncio

    clock = VirtualClock()
    gpt = provider(clock, "gpt", PAID)
    gpt.default = Step(delay=1.0)
    r = router(clock, [gpt], BudgetConfig(daily_usd=2.5))
    ledger = r._ledger
    assert ledger is not None

    async def three() -> list[Any]:
        return await asyncio.gather(*(r.route(**ASK) for _ in range(3)), return_exceptions=True)

    results = await clock.run(three())
    assert [type(x).__name__ for x in results] == ["RouteResult", "RouteResult", "BudgetExceeded"]
    assert "$0.00 spent, $2.20 in flight, this request up to $1.10" in str(results[2])
    assert gpt.calls == 2
    assert ledger.in_flight == 0
    assert ledger.spend.chain(periods(clock.time())[0]) == pytest.approx(2.2)


async def test_a_failed_hop_gives_back_what_it_held() -> None:
    clock = VirtualClock()
    a = provider(clock, "a", PAID, Step(provider_down()))
    b = provider(clock, "b", PAID)
    r = router(clock, [a, b], BudgetConfig(daily_usd=1.5))  # room for one worst case
    result = await clock.run(r.route(**ASK))
    assert result.provider == "b"
    assert r._ledger is not None and r._ledger.in_flight == 0


async def test_a_cancelled_request_and_a_stream_closed_early_hold_nothing() -> None:
    import asyncio

    clock = VirtualClock()
    gpt = provider(clock, "gpt", PAID)
    gpt.default = Step(delay=5.0, text="a b c d")
    r = router(clock, [gpt], BudgetConfig(daily_usd=100.0))
    ledger = r._ledger
    assert ledger is not None
    task = asyncio.ensure_future(r.route(**ASK))
    await clock.settle()
    assert ledger.in_flight == pytest.approx(1.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ledger.in_flight == 0

    stream = r.stream(**ASK)
    events = stream.__aiter__()
    assert await clock.run(events.__anext__()) == "a"
    assert ledger.in_flight == pytest.approx(1.1)
    await stream.aclose()
    assert ledger.in_flight == 0


async def test_concurrent_charges_through_a_shared_file_lose_nothing(tmp_path) -> None:
    import asyncio

    clock = VirtualClock()
    gpt = provider(clock, "gpt", PAID)
    gpt.default = Step(delay=1.0)
    path = tmp_path / "state.json"
    r = router(clock, [gpt], BudgetConfig(daily_usd=3.5), store=JsonFileStore(path))

    async def three() -> list[Any]:
        return await asyncio.gather(*(r.route(**ASK) for _ in range(3)))

    assert [x.provider for x in await clock.run(three())] == ["gpt"] * 3
    assert spent(JsonFileStore(path).load("default"), "gpt", clock.time()) == pytest.approx(3.3)
    with pytest.raises(BudgetExceeded, match=r"\$3.30 spent"):
        await clock.run(r.route(**ASK))
