"""Health checks: all providers at once, failures mapped to results, results fed to the
breakers, and the monitoring-plugin status codes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from failover_cli.breaker import BreakerPolicy, BreakerState, Transition
from failover_cli.clock import VirtualClock
from failover_cli.errors import InvalidRequest, ProviderUnavailable, TransientError
from failover_cli.health import HealthStatus, check_all, check_one, overall
from failover_cli.store import MemoryStore
from failover_cli.tracker import Tracker
from failover_cli.types import ErrorClass, HealthResult, ProviderConfig

T0 = 1_800_000_000.0


@dataclass
class Checked:
    """A provider whose health check takes ``delay`` virtual seconds, then returns ``result``
    (or raises ``error``); ``gate`` makes it wait for another check to start first."""

    name: str
    clock: VirtualClock
    delay: float = 0.0
    ok: bool = True
    error: BaseException | None = None
    gate: asyncio.Event | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)
    deep_seen: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.config = ProviderConfig(name=self.name, kind="ollama", model="m")

    async def health(self, *, deep: bool = False, timeout: float = 5.0) -> HealthResult:
        self.deep_seen.append(deep)
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.delay:
            await self.clock.sleep(self.delay)
        if self.error is not None:
            raise self.error
        status = None if self.ok else 503
        error = None if self.ok else "HTTP 503"
        cls = None if self.ok else ErrorClass.TRANSIENT
        return HealthResult(self.name, self.ok, self.delay * 1000, error, cls, status, T0)


# --- check_one / check_all ---------------------------------------------------------------------


async def test_checks_run_in_parallel_on_the_virtual_clock(clock):
    providers = [Checked(n, clock, delay=d) for n, d in [("a", 1.0), ("b", 2.0), ("c", 0.5)]]
    results = await clock.run(check_all(providers, clock=clock))
    assert clock.time() == T0 + 2.0  # sequential checks would take 3.5 s
    assert [r.provider for r in results] == ["a", "b", "c"]  # results keep chain order
    assert [r.latency_ms for r in results] == [1000.0, 2000.0, 500.0]


async def test_checks_run_in_parallel_with_each_other(clock):
    a = Checked("a", clock)
    b = Checked("b", clock)
    a.gate = b.started  # a can only finish once b's check has begun
    b.gate = a.started
    results = await asyncio.wait_for(check_all([a, b], clock=clock, timeout=0.5), 5)
    assert [r.ok for r in results] == [True, True]


async def test_deep_flag_is_passed_through(clock):
    a = Checked("a", clock)
    await check_all([a], deep=True, clock=clock)
    assert a.deep_seen == [True]


async def test_provider_error_becomes_a_failed_result(clock):
    down = Checked("a", clock, delay=0.25, error=ProviderUnavailable("bad key", status=401))
    result = await clock.run(check_one(down, deep=False, timeout=5, clock=clock))
    assert result == HealthResult("a", False, 250.0, "bad key", ErrorClass.PROVIDER, 401, T0 + 0.25)


async def test_timeout_becomes_a_transient_failure(clock):
    slow = Checked("a", clock, error=TimeoutError())
    result = await check_one(slow, deep=False, timeout=5, clock=clock)
    assert (result.ok, result.error, result.error_class, result.status) == (
        False,
        "no answer within 5s",
        ErrorClass.TRANSIENT,
        None,
    )


# --- feeding the tracker -----------------------------------------------------------------------


def make_tracker(clock, *names: str):
    seen: list[tuple[str, Transition]] = []
    tracker = Tracker(
        names or ("a",),
        BreakerPolicy(),
        clock,
        store=MemoryStore(),  # with a store, health results are batched for it (pending)
        on_transition=lambda n, t: seen.append((n, t)),
    )
    return tracker, seen


async def test_passing_check_moves_an_open_breaker_to_half_open(clock):
    tracker, seen = make_tracker(clock, "a", "b")
    tracker.hold_until("a", T0 + 30)
    seen.clear()
    await check_all([Checked("a", clock), Checked("b", clock)], tracker=tracker, clock=clock)
    br = tracker.breakers["a"]
    assert br.state(clock.time()) is BreakerState.HALF_OPEN
    assert seen == [("a", Transition(BreakerState.OPEN, BreakerState.HALF_OPEN, T0))]
    assert tracker.acquire("a").probe is True  # the next request is a probe
    assert tracker.breakers["b"].state(clock.time()) is BreakerState.CLOSED
    assert tracker.pending.providers["a"].last_health == {
        "at": T0,
        "ok": True,
        "latency_ms": 0.0,
        "error": None,
    }


async def test_failing_check_opens_a_closed_breaker(clock):
    tracker, seen = make_tracker(clock)
    await check_all([Checked("a", clock, ok=False)], tracker=tracker, clock=clock)
    assert tracker.breakers["a"].snap.open_until == T0 + 30
    assert seen == [("a", Transition(BreakerState.CLOSED, BreakerState.OPEN, T0 + 30))]


async def test_failing_check_extends_an_open_breaker(clock):
    tracker, seen = make_tracker(clock)
    tracker.hold_until("a", T0 + 30)
    clock.advance(20)
    seen.clear()
    await check_all([Checked("a", clock, ok=False)], tracker=tracker, clock=clock)
    assert tracker.breakers["a"].snap.open_until == T0 + 20 + 30
    assert tracker.breakers["a"].state(clock.time()) is BreakerState.OPEN
    assert seen == []  # still open: no transition


async def test_raised_transient_check_failure_opens_the_breaker(clock):
    tracker, _ = make_tracker(clock)
    down = Checked("a", clock, error=TransientError("cannot connect", reason="connect"))
    await check_all([down], tracker=tracker, clock=clock)
    assert tracker.breakers["a"].state(clock.time()) is BreakerState.OPEN


@pytest.mark.parametrize(
    "error",
    [
        ProviderUnavailable("no API key: set X_KEY", reason="no_key"),  # could not run
        InvalidRequest("max_tokens: must be positive", status=400),  # our request, not them
    ],
    ids=["no_key", "request"],
)
async def test_check_that_says_nothing_about_the_provider_changes_nothing(clock, error):
    tracker, seen = make_tracker(clock)
    tracker.hold_until("a", T0 + 30)
    seen.clear()
    await check_all([Checked("a", clock, error=error)], tracker=tracker, clock=clock)
    assert tracker.breakers["a"].snap.open_until == T0 + 30
    assert seen == []
    assert tracker.pending.providers["a"].last_health["ok"] is False


async def test_forced_breaker_ignores_checks(clock):
    tracker, _ = make_tracker(clock)
    tracker.force("a", "open")
    await check_all([Checked("a", clock)], tracker=tracker, clock=clock)
    assert tracker.breakers["a"].state(clock.time()) is BreakerState.OPEN
    tracker.force("a", "closed")
    await check_all([Checked("a", clock, ok=False)], tracker=tracker, clock=clock)
    assert tracker.breakers["a"].state(clock.time()) is BreakerState.CLOSED


async def test_result_for_an_unknown_provider_is_ignored(clock):
    tracker, seen = make_tracker(clock)
    tracker.on_health(HealthResult("ghost", False, 1.0, "HTTP 503", ErrorClass.TRANSIENT, 503))
    assert "ghost" not in tracker.pending.providers and seen == []


# --- overall status ----------------------------------------------------------------------------


def _r(ok: bool) -> HealthResult:
    return HealthResult("x", ok, 1.0)


def test_status_codes_are_monitoring_plugin_codes():
    assert [int(s) for s in HealthStatus] == [0, 1, 2, 3]
    assert [s.name for s in HealthStatus] == ["OK", "WARNING", "CRITICAL", "UNKNOWN"]


@pytest.mark.parametrize(
    ("oks", "serve", "expected"),
    [
        ([True, True], [True, True], HealthStatus.OK),
        ([True, False], [True, True], HealthStatus.WARNING),
        ([False, True], [False, True], HealthStatus.WARNING),
        ([True, True], [True, False], HealthStatus.WARNING),  # passes, but breaker forced open
        ([False, False], [True, True], HealthStatus.CRITICAL),
        ([True, False], [False, True], HealthStatus.CRITICAL),  # the one that passed can't serve
        ([], [], HealthStatus.CRITICAL),
    ],
)
def test_overall(oks, serve, expected):
    assert overall([_r(ok) for ok in oks], serve) is expected
