"""One half-open probe per provider for the fleet: processes sharing a store take the
provider's probe lease before probing, skip it (or wait within the bounded wait) while another
holds it, and never repeat a probe whose outcome is already stored.

Routers here share one JSON state file and call real simulators on 127.0.0.1; time is a
``VirtualClock`` moved by hand, so nothing sleeps to prove timing (the loops below poll for
real I/O to arrive)."""

from __future__ import annotations

import asyncio
from typing import Any

from failover_cli.breaker import BreakerPolicy, BreakerSnapshot, BreakerState, ProbeLease
from failover_cli.clock import VirtualClock
from failover_cli.config import Config, QueueConfig
from failover_cli.errors import StateError
from failover_cli.retry import RetryPolicy
from failover_cli.router import FailoverRouter
from failover_cli.sim import Behavior, Simulator
from failover_cli.state import ProviderDelta, StateDelta
from failover_cli.store import JsonFileStore, MemoryStore
from failover_cli.tracker import PROBE_LEASE_POLL, Tracker
from failover_cli.types import ProviderConfig

T0 = 1_800_000_000.0
KEY = "sim-lease-key-0001"


def seed_half_open(store: Any, name: str, now: float, chain: str = "default") -> None:
    """Store ``name``'s breaker as opened a minute ago, its cooldown over: half-open now."""
    delta = StateDelta()
    delta.providers[name] = ProviderDelta(
        breaker=BreakerSnapshot(
            state="open",
            opened_at=now - 60,
            open_until=now - 1,
            cooldown=30.0,
            updated_at=now - 60,
            down_since=now - 60,
        )
    )
    store.update(chain, delta)


def router(path: Any, clock: VirtualClock, *sims: tuple[str, Simulator], **queue: Any):
    providers = tuple(
        ProviderConfig(
            name=n,
            kind="openai",
            model="m",
            base_url=s.base_url,
            api_key_env="LEASE_KEY",
            timeout=10,
        )
        for n, s in sims
    )
    config = Config(providers=providers, retry=RetryPolicy(attempts=1), queue=QueueConfig(**queue))
    return FailoverRouter(
        config, store=JsonFileStore(path), clock=clock, env={"LEASE_KEY": KEY},
        background_probes=False, random=lambda: 0.5,
    )  # fmt: skip


async def until(condition: Any, what: str, limit: float = 10.0) -> None:
    """Poll for real I/O to arrive (not a timing proof)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not condition():
        assert loop.time() < end, what
        await asyncio.sleep(0.005)


def start(behavior: Behavior) -> Simulator:
    return Simulator("openai", behavior, api_key=KEY).start()


async def test_two_routers_on_one_state_file_send_one_failing_probe(tmp_path) -> None:
    path = tmp_path / "state.json"
    clock = VirtualClock(T0)
    primary = start(Behavior(statuses=[500], latency=0.3))
    backup = start(Behavior())
    try:
        seed_half_open(JsonFileStore(path), "primary", T0)
        a = router(path, clock, ("primary", primary), ("backup", backup))
        b = router(path, clock, ("primary", primary), ("backup", backup))
        probing = asyncio.create_task(a.route("hi"))
        await until(lambda: primary.count == 1, "A's probe never reached the primary")
        rb = await b.route("hi")
        assert rb.provider == "backup" and primary.count == 1
        assert (rb.attempts[0].provider, rb.attempts[0].outcome) == ("primary", "skipped")
        ra = await probing  # the probe failed: A fell back too
        assert ra.provider == "backup"
        await a.flush()  # its outcome stored, the lease given back
        clock.advance(PROBE_LEASE_POLL)
        rb = await b.route("hi")  # B wins the lease, reads the store: open again, no probe
        assert rb.provider == "backup" and primary.count == 1
        assert b.tracker.breakers["primary"].state(clock.time()) is BreakerState.OPEN, rb.attempts
        assert JsonFileStore(path).claim_probe("default", "primary", "x", 1, T0).granted
        await a.aclose()
        await b.aclose()
    finally:
        primary.stop()
        backup.stop()


async def test_a_waiter_in_another_router_is_served_once_the_probe_succeeds(tmp_path) -> None:
    """The bounded wait holds across processes: B, with nothing else to try, waits for A's
    probe instead of sending its own, then is served by the recovered primary."""
    path = tmp_path / "state.json"
    clock = VirtualClock(T0)
    primary = start(Behavior(latency=0.3))
    try:
        seed_half_open(JsonFileStore(path), "primary", T0)
        a = router(path, clock, ("primary", primary), max_wait=30)
        b = router(path, clock, ("primary", primary), max_wait=30)
        probing = asyncio.create_task(a.route("hi"))
        await until(lambda: primary.count == 1, "A's probe never reached the primary")
        waiting = asyncio.create_task(b.route("hi"))
        await until(lambda: clock.pending > 0, "B did not wait for the lease")
        assert primary.count == 1 and not waiting.done()
        assert (await probing).provider == "primary"
        await a.flush()
        clock.advance(PROBE_LEASE_POLL)  # B looks again: the probe's success is in the store
        rb = await waiting
        assert rb.provider == "primary" and primary.count == 2
        assert b.tracker.breakers["primary"].state(clock.time()) is BreakerState.CLOSED
        await a.aclose()
        await b.aclose()
    finally:
        primary.stop()


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.claims = 0
        self.loads = 0
        self.fail = False

    def load(self, chain: str):  # type: ignore[no-untyped-def]
        self.loads += 1
        return super().load(chain)

    def claim_probe(
        self, chain: str, provider: str, owner: str, ttl: float, now: float
    ) -> ProbeLease:
        self.claims += 1
        if self.fail:
            raise StateError("redis down")
        return super().claim_probe(chain, provider, owner, ttl, now)


def trackers(store: Any, clock: VirtualClock, ttl: float = 5.0, **kw: Any) -> list[Tracker]:
    seed_half_open(store, "p", clock.time())
    policy = BreakerPolicy()
    return [Tracker(["p"], policy, clock, store=store, probe_ttls={"p": ttl}, **kw)
            for _ in range(2)]  # fmt: skip


def test_a_closed_breaker_never_asks_the_store() -> None:
    store, clock = CountingStore(), VirtualClock(T0)
    t = Tracker(["p"], BreakerPolicy(), clock, store=store)
    loads = store.loads
    for _ in range(100):
        permit = t.acquire("p")
        assert permit is not None and not permit.probe
        t.release("p", permit)
    assert store.claims == 0 and store.loads == loads


def test_a_lease_held_elsewhere_is_asked_for_again_only_after_the_poll() -> None:
    store, clock = CountingStore(), VirtualClock(T0)
    a, b = trackers(store, clock)
    probe = a.acquire("p")
    assert probe is not None and probe.probe
    assert b.acquire("p") is None
    claims = store.claims
    assert b.breakers["p"].next_admission(clock.time()) == T0 + PROBE_LEASE_POLL
    clock.advance(PROBE_LEASE_POLL / 2)
    assert b.acquire("p") is None and store.claims == claims  # no round trip meanwhile
    clock.advance(PROBE_LEASE_POLL)
    assert b.acquire("p") is None and store.claims == claims + 1


def test_a_dead_holders_lease_lapses_after_the_providers_timeout() -> None:
    store, clock = MemoryStore(), VirtualClock(T0)
    a, b = trackers(store, clock, ttl=5.0)
    assert a.acquire("p") is not None  # and A dies with it
    clock.advance(4.9)
    assert b.acquire("p") is None
    clock.advance(0.2)
    permit = b.acquire("p")
    assert permit is not None and permit.probe


def test_the_lease_is_given_back_only_after_the_outcome_is_stored() -> None:
    store, clock = MemoryStore(), VirtualClock(T0)
    a, b = trackers(store, clock)
    probe = a.acquire("p")
    assert probe is not None
    a.on_success("p", probe, 50.0)
    assert a.breakers["p"].state(clock.time()) is BreakerState.CLOSED
    assert not store.claim_probe("default", "p", "other", 1, clock.time()).granted  # not yet
    assert a.flush_now()
    clock.advance(PROBE_LEASE_POLL)
    permit = b.acquire("p")  # wins the lease, reads the store, finds it closed
    assert permit is not None and not permit.probe
    assert b.breakers["p"].state(clock.time()) is BreakerState.CLOSED
    assert store.claim_probe("default", "p", "other", 1, clock.time()).granted  # B gave it back


def test_a_probe_given_back_without_an_outcome_frees_the_lease_at_once() -> None:
    store, clock = MemoryStore(), VirtualClock(T0)
    a, b = trackers(store, clock)
    probe = a.acquire("p")
    assert probe is not None
    a.release("p", probe)  # a request-class error, a cancelled request
    permit = b.acquire("p")
    assert permit is not None and permit.probe


def test_an_unreachable_store_falls_back_to_one_process_with_one_warning() -> None:
    store, clock = CountingStore(), VirtualClock(T0)
    warnings: list[str] = []
    a, _ = trackers(store, clock, on_warning=warnings.append)
    store.fail = True
    probe = a.acquire("p")
    assert probe is not None and probe.probe
    assert a.acquire("p") is None  # the process's own half-open limit still holds
    a.release("p", probe)
    assert a.acquire("p") is not None
    assert len(warnings) == 1 and "redis down" in warnings[0]


def test_a_busy_state_file_lock_is_contention_not_an_error(tmp_path) -> None:
    path = tmp_path / "state.json"
    holder, claimant = JsonFileStore(path), JsonFileStore(path)
    with holder._exclusive("held by a long write"):
        lease = claimant.claim_probe("default", "p", "B", 30.0, T0)
    assert not lease.granted and T0 < lease.expires_at <= T0 + 1  # ask again soon
    assert claimant.claim_probe("default", "p", "B", 30.0, T0).granted


class HungStore(MemoryStore):
    """A store whose lease claims hang until released, as a Redis that stopped answering."""

    def __init__(self) -> None:
        super().__init__()
        import threading

        self.answer = threading.Event()
        self.claims = 0

    def claim_probe(self, chain: str, provider: str, owner: str, ttl: float, now: float):
        self.claims += 1
        self.answer.wait(10)
        return super().claim_probe(chain, provider, owner, ttl, now)


async def test_a_claim_off_the_loop_never_stalls_it_and_is_used_once_answered() -> None:
    from failover_cli.tracker import CLAIM_POLL

    store, clock = HungStore(), VirtualClock(T0)
    (t, _) = trackers(store, clock, claims_off_loop=True)
    try:
        assert t.acquire("p") is None  # asked in a thread: the loop goes on at once
        assert t.breakers["p"].next_admission(clock.time()) == T0 + CLAIM_POLL
        ticks = 0
        for _ in range(5):  # the loop keeps running while the store hangs
            await asyncio.sleep(0)
            ticks += 1
        clock.advance(CLAIM_POLL)
        assert t.acquire("p") is None and store.claims == 1  # still waiting: not asked again
        store.answer.set()
        await until(lambda: t._claims["p"].done(), "the claim never came back")
        clock.advance(CLAIM_POLL)
        permit = t.acquire("p")
        assert ticks == 5 and permit is not None and permit.probe
        assert not store.claim_probe("default", "p", "other", 1, clock.time()).granted  # ours
    finally:
        store.answer.set()


async def test_a_lease_won_off_the_loop_but_not_used_is_given_back() -> None:
    store, clock = HungStore(), VirtualClock(T0)
    store.answer.set()
    (t, _) = trackers(store, clock, claims_off_loop=True)
    assert t.acquire("p") is None
    await until(lambda: "p" not in t._claims, "an unused lease was kept")
    await until(
        lambda: store.claim_probe("default", "p", "other", 1, clock.time()).granted,
        "the unused lease was not given back",
    )


def test_without_a_running_loop_the_claim_is_made_in_place() -> None:
    store, clock = MemoryStore(), VirtualClock(T0)
    (t, _) = trackers(store, clock, claims_off_loop=True)
    permit = t.acquire("p")
    assert permit is not None and permit.probe


async def test_a_hung_store_costs_a_request_its_short_hold_and_never_the_loop(
    monkeypatch,
) -> None:
    """A gateway whose Redis stopped answering: the request holds off the half-open primary
    for at most ``cold_start_wait``, is served by the backup, and the loop runs on meanwhile;
    once the store answers, the next request sends the probe."""
    import failover_cli.tracker as tracker_module

    # An answer nobody used is given back after the poll; on a loaded machine the next
    # request could come later than that, so keep it here for as long as the test runs.
    monkeypatch.setattr(tracker_module, "PROBE_LEASE_POLL", 60.0)
    store = HungStore()
    seed_half_open(store, "primary", __import__("time").time())
    primary, backup = start(Behavior()), start(Behavior())
    try:
        providers = tuple(
            ProviderConfig(name=n, kind="openai", model="m", base_url=s.base_url,
                           api_key_env="LEASE_KEY", timeout=10)
            for n, s in (("primary", primary), ("backup", backup))
        )  # fmt: skip
        config = Config(
            providers=providers,
            retry=RetryPolicy(attempts=1),
            breaker=BreakerPolicy(cold_start_wait=0.05),
        )
        r = FailoverRouter(config, store=store, env={"LEASE_KEY": KEY}, background_probes=False)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        running = asyncio.create_task(ticker())
        first = await r.route("hi")
        assert first.provider == "backup" and primary.count == 0 and ticks > 10
        assert "has not answered the probe-lease claim" in first.attempts[0].message
        store.answer.set()
        await until(lambda: not r.tracker.claim_pending("primary"), "the claim never returned")
        second = await r.route("hi")
        assert second.provider == "primary", second.attempts
        assert primary.count == 1 and store.claims == 1
        running.cancel()
        await r.aclose()
    finally:
        store.answer.set()
        primary.stop()
        backup.stop()
