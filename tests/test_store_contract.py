"""One contract for every StateStore: memory, JSON file and Redis behave alike.

Each test gets ``open_store()``, a factory for stores over one fresh backing (the same dict,
file or key prefix), so a second store proves what actually persisted.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from failover_cli.breaker import MAX_OUTCOMES, BreakerSnapshot
from failover_cli.protocols import StateStore
from failover_cli.state import (
    ChainState,
    ProviderDelta,
    ProviderState,
    Sample,
    StateDelta,
    merge,
)
from failover_cli.store import JsonFileStore, MemoryStore

try:
    from redis_server import redis_url  # a fixture
except ImportError:  # tests/ imported as a package
    from tests.redis_server import redis_url  # noqa: F401

T0 = 1_800_000_000.0

StoreFactory = Callable[[], StateStore]


@pytest.fixture(params=["memory", "json", "redis"])
def open_store(request: pytest.FixtureRequest, tmp_path) -> Iterator[StoreFactory]:
    opened: list[StateStore] = []
    if request.param == "memory":
        shared = MemoryStore()

        def factory() -> StateStore:
            return shared

    elif request.param == "json":
        path = tmp_path / "state.json"

        def factory() -> StateStore:
            store = JsonFileStore(path)
            opened.append(store)
            return store

    else:
        from failover_cli.store.redis import RedisStore

        url = request.getfixturevalue("redis_url")
        prefix = f"test-{uuid.uuid4().hex}"

        def factory() -> StateStore:
            store = RedisStore(url, prefix=prefix)
            opened.append(store)
            return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: StoreFactory) -> StateStore:
    return open_store()


def delta_for(provider: str, history: int = 500, **fields) -> StateDelta:
    delta = StateDelta(history=history)
    delta.providers[provider] = ProviderDelta(**fields)
    return delta


def sample(t: float, latency: float = 100.0, ok: bool = True) -> Sample:
    return Sample(t, latency, None, 1, ok)


# --- basics ----------------------------------------------------------------------------------


def test_empty_store_loads_an_empty_chain(store: StateStore) -> None:
    assert store.load("nothing-here").providers == {}


def test_update_returns_the_merged_chain_and_persists_it(open_store: StoreFactory) -> None:
    store = open_store()
    store.update("c", delta_for("anthropic", requests=1, successes=1))
    returned = store.update("c", delta_for("openai", requests=2))
    assert set(returned.providers) == {"anthropic", "openai"}  # not only the delta's provider
    assert returned.providers["anthropic"].requests == 1
    assert returned.providers["openai"].requests == 2
    assert open_store().load("c").to_dict() == returned.to_dict()


def test_counters_add_up_across_updates(open_store: StoreFactory) -> None:
    store = open_store()
    store.update("c", delta_for("p", requests=3, successes=2, failures={"transient": 1}))
    store.update("c", delta_for("p", requests=4, successes=1, failures={"transient": 2}))
    store.update("c", delta_for("p", requests=1, failures={"provider": 1}))
    p = open_store().load("c").providers["p"]
    assert (p.requests, p.successes) == (8, 3)
    assert p.failures == {"transient": 3, "provider": 1}


def test_samples_are_bounded_by_history_and_kept_in_time_order(
    open_store: StoreFactory,
) -> None:
    store = open_store()
    store.update("c", delta_for("p", history=5, samples=[sample(T0 + i) for i in range(5)]))
    late = [sample(T0 + 2.5), sample(T0 + 10), sample(T0 + 1.5)]  # out of order, overlapping
    store.update("c", delta_for("p", history=5, samples=late))
    times = [s.t - T0 for s in open_store().load("c").providers["p"].samples]
    assert times == [2, 2.5, 3, 4, 10]


def test_outcomes_are_bounded_to_the_most_recent(open_store: StoreFactory) -> None:
    store = open_store()
    total = MAX_OUTCOMES + 200
    for start in range(0, total, 400):
        outcomes = [(T0 + i, i % 3 != 0) for i in range(start, min(start + 400, total))]
        store.update("c", delta_for("p", outcomes=outcomes))
    kept = open_store().load("c").providers["p"].outcomes
    assert len(kept) == MAX_OUTCOMES
    assert kept[0] == (T0 + 200, 200 % 3 != 0)
    assert kept[-1] == (T0 + total - 1, (total - 1) % 3 != 0)
    assert kept == sorted(kept)


# --- breaker merge ---------------------------------------------------------------------------


def open_snapshot(updated_at: float, open_until: float, **kw) -> BreakerSnapshot:
    return BreakerSnapshot(
        state="open",
        opened_at=updated_at,
        open_until=open_until,
        cooldown=open_until - updated_at,
        updated_at=updated_at,
        **kw,
    )


def test_most_recent_breaker_change_wins(open_store: StoreFactory) -> None:
    store = open_store()
    opened = open_snapshot(T0 + 10, T0 + 40)
    store.update("c", delta_for("p", breaker=opened))
    stale_close = BreakerSnapshot(state="closed", since=T0 + 5, updated_at=T0 + 5)
    store.update("c", delta_for("p", breaker=stale_close))  # older change arriving later
    assert open_store().load("c").providers["p"].breaker == opened
    fresh_close = BreakerSnapshot(state="closed", since=T0 + 20, updated_at=T0 + 20)
    store.update("c", delta_for("p", breaker=fresh_close))
    assert open_store().load("c").providers["p"].breaker == fresh_close


def test_of_two_open_deadlines_the_later_wins(open_store: StoreFactory) -> None:
    store = open_store()
    store.update("c", delta_for("p", breaker=open_snapshot(T0 + 10, T0 + 100)))
    store.update("c", delta_for("p", breaker=open_snapshot(T0 + 20, T0 + 50)))  # newer, shorter
    breaker = open_store().load("c").providers["p"].breaker
    assert breaker.state == "open"
    assert breaker.updated_at == T0 + 20
    assert breaker.open_until == T0 + 100


def test_newer_error_and_health_win(open_store: StoreFactory) -> None:
    store = open_store()
    new_error = {"at": T0 + 9, "class": "transient", "status": 503, "message": "busy"}
    old_error = {"at": T0 + 3, "class": "provider", "status": 401, "message": "auth"}
    store.update("c", delta_for("p", last_error=new_error))
    store.update("c", delta_for("p", last_error=old_error))
    health = {"at": T0 + 1, "ok": True, "latency_ms": 12.5, "error": None}
    store.update("c", delta_for("p", last_health=health))
    p = open_store().load("c").providers["p"]
    assert p.last_error == new_error
    assert p.last_health == health


# --- isolation and reset ---------------------------------------------------------------------


def test_chains_are_isolated(open_store: StoreFactory) -> None:
    store = open_store()
    store.update("one", delta_for("p", requests=5))
    store.update("two", delta_for("p", requests=7))
    store.reset("one")
    fresh = open_store()
    assert fresh.load("one").providers == {}
    assert fresh.load("two").providers["p"].requests == 7


def test_reset_of_one_provider_keeps_the_others(open_store: StoreFactory) -> None:
    store = open_store()
    for name in ("a", "b", "c"):
        store.update("chain", delta_for(name, requests=1))
    store.reset("chain", ["b"])
    assert set(open_store().load("chain").providers) == {"a", "c"}
    store.update("chain", delta_for("b", requests=2))  # starts again from zero
    assert open_store().load("chain").providers["b"].requests == 2


def test_reset_of_all_providers_and_of_an_unknown_chain(open_store: StoreFactory) -> None:
    store = open_store()
    store.update("chain", delta_for("a", requests=1))
    store.update("chain", delta_for("b", requests=1))
    store.reset("chain")
    store.reset("never-written")
    store.reset("chain", ["not-there"])
    assert open_store().load("chain").providers == {}
    store.update("chain", delta_for("a", requests=3))
    assert open_store().load("chain").providers["a"].requests == 3


def test_returned_state_is_a_copy(open_store: StoreFactory) -> None:
    store = open_store()
    error = {"at": T0, "class": "transient", "status": 500, "message": "x"}
    returned = store.update("c", delta_for("p", requests=1, last_error=dict(error)))
    returned.providers["p"].requests = 99
    returned.providers["p"].last_error["message"] = "changed"  # type: ignore[index]
    loaded = store.load("c")
    loaded.providers["p"].samples.append(sample(T0))
    assert store.load("c").providers["p"].requests == 1
    assert store.load("c").providers["p"].last_error == error
    assert store.load("c").providers["p"].samples == []


def test_threads_sharing_one_store_lose_nothing(open_store: StoreFactory) -> None:
    store = open_store()

    def record(worker: int) -> None:
        for _ in range(10):
            store.update("c", delta_for("p", requests=1, outcomes=[(T0 + worker, True)]))

    threads = [threading.Thread(target=record, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    p = open_store().load("c").providers["p"]
    assert p.requests == 80
    assert len(p.outcomes) == 80


# --- round trip ------------------------------------------------------------------------------


def test_every_field_round_trips(open_store: StoreFactory) -> None:
    forced = BreakerSnapshot(
        state="open",
        opened_at=T0 + 1.25,
        open_until=T0 + 31.25,
        cooldown=30.0,
        forced="open",
        since=T0 - 100.5,
        updated_at=T0 + 2.125,
    )
    samples = [
        Sample(T0 + 1.5, 812.375, 95.25, 431, True),
        Sample(T0 + 2.0, 30_000.0, None, 0, False),
    ]
    outcomes = [(T0 + 1.5, True), (T0 + 2.0, False)]
    error = {"at": T0 + 2.0, "class": "transient", "status": 529, "message": "overloaded"}
    health = {"at": T0 + 0.5, "ok": False, "latency_ms": 5000.0, "error": "timeout"}
    delta = delta_for(
        "anthropic",
        requests=2,
        successes=1,
        failures={"transient": 1},
        outcomes=outcomes,
        samples=samples,
        breaker=forced,
        last_error=error,
        last_health=health,
    )
    open_store().update("c", delta)
    expected = ProviderState(
        breaker=forced,
        outcomes=outcomes,
        samples=samples,
        requests=2,
        successes=1,
        failures={"transient": 1},
        last_error=error,
        last_health=health,
    )
    loaded = open_store().load("c").providers["anthropic"]
    assert loaded == expected
    assert loaded.breaker.forced == "open"
    assert loaded.consecutive_failures == 1


def test_forced_close_round_trips(open_store: StoreFactory) -> None:
    forced = BreakerSnapshot(state="closed", forced="closed", since=T0, updated_at=T0 + 1)
    open_store().update("c", delta_for("p", breaker=forced))
    assert open_store().load("c").providers["p"].breaker == forced


def test_random_updates_match_the_pure_merge(open_store: StoreFactory) -> None:
    """Whatever the store does on the way, the result is exactly state.merge's."""
    rng = random.Random(20240601)
    store = open_store()
    expected = {"x": ChainState(), "y": ChainState()}
    clock = T0
    for _ in range(40):
        chain = rng.choice(["x", "y"])
        delta = StateDelta(history=8)
        for name in rng.sample(["a", "b", "c"], rng.randint(1, 3)):
            clock += rng.randint(1, 5000) / 1000
            d = delta.provider(name)
            d.requests = rng.randint(0, 3)
            d.successes = rng.randint(0, d.requests)
            if rng.random() < 0.5:
                d.failures = {rng.choice(["transient", "provider"]): rng.randint(1, 2)}
            d.outcomes = [(clock - rng.randint(0, 3000) / 1000, rng.random() < 0.7)]
            d.samples = [
                Sample(clock - rng.randint(0, 3000) / 1000, rng.randint(1, 90_000) / 1000)
                for _ in range(rng.randint(0, 3))
            ]
            d.samples.sort(key=lambda s: s.t)
            if rng.random() < 0.3:
                d.breaker = open_snapshot(clock, clock + rng.randint(1, 60))
        returned = store.update(chain, delta)
        expected[chain] = merge(expected[chain], delta)
        assert returned.to_dict() == expected[chain].to_dict()
    fresh = open_store()
    for chain, state in expected.items():
        assert fresh.load(chain).to_dict() == state.to_dict()


def test_non_finite_numbers_never_reach_the_store(open_store: StoreFactory) -> None:
    """NaN and infinities in a delta (a Retry-After of "inf", a broken clock) are dropped or
    reset by the merge, so every store holds, returns and writes finite numbers only."""
    inf, nan = float("inf"), float("nan")
    store = open_store()
    delta = delta_for(
        "p",
        requests=2,
        outcomes=[(T0, False), (nan, False)],
        samples=[sample(T0, 12.5), sample(T0 + 1, inf)],
        breaker=BreakerSnapshot(state="open", opened_at=T0, open_until=inf, updated_at=T0),
        last_error={"at": T0, "class": "transient", "status": 429, "message": "x", "after": nan},
    )
    returned = store.update("c", delta).providers["p"]
    loaded = open_store().load("c").providers["p"]
    assert loaded == returned
    assert (loaded.requests, loaded.outcomes, loaded.samples) == (
        2,
        [(T0, False)],
        [sample(T0, 12.5)],
    )
    assert loaded.breaker.state == "open" and loaded.breaker.open_until is None
    assert loaded.last_error == {
        "at": T0, "class": "transient", "status": 429, "message": "x", "after": None,
    }  # fmt: skip


# --- spend (the budget) ------------------------------------------------------------------------


def spend_delta(provider: str, day: str, usd: float) -> StateDelta:
    return delta_for(provider, spend={day: usd, day[:7]: usd})


def test_concurrent_spend_increments_lose_nothing(open_store: StoreFactory) -> None:
    """Writers with their own store objects (own locks, own connections: as separate
    processes would) add spend at once; every cent is counted."""

    def record(provider: str) -> None:
        store = open_store()
        for _ in range(15):
            store.update("c", spend_delta(provider, "2026-12-03", 0.25))

    threads = [threading.Thread(target=record, args=(p,)) for p in ("a", "a", "b", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    loaded = open_store().load("c").providers
    assert loaded["a"].spend == {"2026-12-03": 7.5, "2026-12": 7.5}
    assert loaded["b"].spend == {"2026-12-03": 7.5, "2026-12": 7.5}


def test_spend_of_earlier_periods_expires_as_the_clock_moves_on(
    open_store: StoreFactory,
) -> None:
    store = open_store()
    store.update("c", spend_delta("p", "2026-11-30", 1.0))
    store.update("c", spend_delta("p", "2026-11-30", 0.5))
    assert open_store().load("c").providers["p"].spend == {"2026-11-30": 1.5, "2026-11": 1.5}
    store.update("c", spend_delta("p", "2026-12-01", 0.25))  # a new day and a new month
    assert open_store().load("c").providers["p"].spend == {
        "2026-12-01": 0.25, "2026-11-30": 1.5, "2026-12": 0.25, "2026-11": 1.5,
    }  # fmt: skip
    other = StateDelta()
    other.provider("p").spend = {"2026-12-02": 2.0, "2026-12": 2.0}
    other.provider("p").requests = 1  # spend travels with the other outcomes of a batch
    returned = store.update("c", other).providers["p"]
    assert returned.spend["2026-12-02"] == 2.0 and returned.spend["2026-12"] == 2.25
    assert returned.requests == 1
    assert open_store().load("c").providers["p"] == returned
    store.update("c", spend_delta("p", "2027-01-01", 0.5))  # old enough now: gone
    assert open_store().load("c").providers["p"].spend == {
        "2027-01-01": 0.5, "2026-12-02": 2.0, "2026-12-01": 0.25, "2027-01": 0.5, "2026-12": 2.25,
    }  # fmt: skip


def test_a_reset_forgets_breakers_and_history_but_keeps_spend(open_store: StoreFactory) -> None:
    """`status --reset` must not reopen a budget."""
    store = open_store()
    store.update("c", delta_for("a", requests=3, spend={"2026-12-03": 1.5, "2026-12": 4.0}))
    store.update("c", delta_for("b", requests=2))
    store.reset("c", ["a"])
    loaded = open_store().load("c").providers
    assert loaded["a"] == ProviderState(spend={"2026-12-03": 1.5, "2026-12": 4.0})
    assert loaded["b"].requests == 2
    store.reset("c")
    assert open_store().load("c").to_dict() == {
        "providers": {"a": ProviderState(spend={"2026-12-03": 1.5, "2026-12": 4.0}).to_dict()}
    }
    store.update("c", spend_delta("a", "2026-12-03", 0.5))
    assert open_store().load("c").providers["a"].spend == {"2026-12-03": 2.0, "2026-12": 4.5}


# --- the fleet's half-open probe lease -------------------------------------------------------


def test_a_probe_lease_goes_to_one_owner_until_it_ends(open_store: StoreFactory) -> None:
    a, b = open_store(), open_store()
    first = a.claim_probe("c", "p", "A", 30.0, T0)
    assert first.granted and first.holder == "A"
    assert T0 + 29 <= first.expires_at <= T0 + 30
    other = b.claim_probe("c", "p", "B", 30.0, T0 + 1)
    assert not other.granted and other.holder == "A"
    assert T0 + 1 < other.expires_at <= T0 + 31  # when B may look again at the latest
    assert a.claim_probe("c", "p", "A", 30.0, T0 + 2).granted  # the holder renews its own
    b.end_probe("c", "p", "B")  # not B's to end
    assert not b.claim_probe("c", "p", "B", 30.0, T0 + 3).granted
    a.end_probe("c", "p", "A")
    assert b.claim_probe("c", "p", "B", 30.0, T0 + 4).granted
    assert a.load("c") == ChainState()  # a lease is not breaker state


def test_probe_leases_of_other_providers_and_chains_are_independent(
    open_store: StoreFactory,
) -> None:
    store = open_store()
    assert store.claim_probe("c", "p", "A", 30.0, T0).granted
    assert store.claim_probe("c", "q", "B", 30.0, T0).granted
    assert store.claim_probe("d", "p", "B", 30.0, T0).granted
    assert store.claim_probe("c:p", "x", "B", 30.0, T0).granted  # names cannot run together


def test_an_abandoned_probe_lease_lapses(open_store: StoreFactory) -> None:
    a, b = open_store(), open_store()
    assert a.claim_probe("c", "p", "A", 0.001, T0).granted  # its holder died
    # Memory and file leases expire on the caller's clock (T0 + 1 is past it at once); the
    # Redis server expires its key on its own clock: polled for, not proving timing.
    end = time.monotonic() + 5
    while not b.claim_probe("c", "p", "B", 30.0, T0 + 1).granted:
        assert time.monotonic() < end, "an expired lease was never released"
        time.sleep(0.01)


def test_racing_claimants_get_exactly_one_lease(open_store: StoreFactory) -> None:
    stores = [open_store() for _ in range(6)]
    barrier = threading.Barrier(len(stores))
    granted: list[str] = []

    def claim(i: int) -> None:
        barrier.wait()
        if stores[i].claim_probe("c", "p", f"owner{i}", 30.0, T0).granted:
            granted.append(f"owner{i}")

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 1
    assert stores[0].claim_probe("c", "p", "late", 30.0, T0).holder == granted[0]
