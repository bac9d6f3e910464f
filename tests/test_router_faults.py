"""The router under the faults of issue 11, on a virtual clock: fail-fast reasons, long
Retry-After with an alternative, absurd Retry-After, rate-limit reports, providers that are not
configured or not listening, continuation strategies, parameters a provider cannot take,
fingerprinted provider-class verdicts and background recovery probes. No test sleeps."""

from __future__ import annotations

import json
import math

import pytest
from fakes import Recorder, ScriptedProvider, Step, build_router, provider_down, transient

from failover_cli.breaker import BreakerPolicy, BreakerState
from failover_cli.clock import VirtualClock
from failover_cli.config import Config, QueueConfig
from failover_cli.errors import (
    AllProvidersFailed,
    InvalidRequest,
    ProviderUnavailable,
    TransientError,
)
from failover_cli.retry import RetryPolicy
from failover_cli.router import FailoverRouter
from failover_cli.store.memory import MemoryStore
from failover_cli.types import (
    ParameterAdjusted,
    ProviderConfig,
    RateLimit,
    StreamSwitched,
    TextDelta,
)

T0 = 1_800_000_000.0


def fake(clock: VirtualClock, name: str, *steps: Step, default: Step | None = None, **kw):
    return ScriptedProvider(name, clock, list(steps), default or Step(text=f"{name} says hi"), **kw)


def as_kind(p: ScriptedProvider, kind: str, model: str, **kw: object) -> ScriptedProvider:
    p.config = ProviderConfig(name=p.name, kind=kind, model=model, **kw)  # type: ignore[arg-type]
    return p


def timed_out(reason: str) -> TransientError:
    return TransientError(f"{reason} after 10s", reason=reason)


# --- 1. time: a silent or slow provider fails over at once ----------------------------------


@pytest.mark.parametrize("reason", ["first_token_timeout", "stall", "timeout", "connect"])
async def test_a_silent_primary_fails_over_without_retrying_it(clock, reason):
    a = fake(clock, "a", default=Step(delay=10.0, error=timed_out(reason)))
    b = fake(clock, "b")
    router = build_router(clock, [a, b])
    result = await clock.run(router.route("x"))
    assert result.provider == "b"
    assert a.calls == 1  # not 3 tries of 10 s each
    assert clock.sleeps == [10.0]


async def test_a_silent_provider_is_retried_when_nothing_else_can_answer(clock):
    a = fake(clock, "a", Step(error=timed_out("first_token_timeout")), Step(text="late"))
    router = build_router(clock, [a])
    assert (await clock.run(router.route("x"))).text == "late"
    assert a.calls == 2


async def test_a_first_token_timeout_in_a_stream_fails_over(clock):
    a = fake(clock, "a", default=Step(ttft=10.0, error=timed_out("first_token_timeout")))
    b = fake(clock, "b", default=Step(text="from b"))
    router = build_router(clock, [a, b])
    result = await clock.run(router.stream("x").collect())
    assert (result.text, result.provider, a.calls) == ("from b", "b", 1)


# --- 5. Retry-After and rate limits -----------------------------------------------------------


async def test_a_long_retry_after_fails_over_at_once_when_another_can_answer(clock):
    a = fake(clock, "a", default=Step(error=transient(429, retry_after=8.0)))
    b = fake(clock, "b")
    router = build_router(clock, [a, b])
    result = await clock.run(router.route("x"))
    assert result.provider == "b"
    assert clock.sleeps == []  # was: 8 s on the primary with the secondary healthy
    assert router.tracker.breakers["a"].snap.open_until == T0 + 8.0  # next requests skip a


async def test_a_short_retry_after_is_waited_on_the_primary(clock):
    a = fake(clock, "a", Step(error=transient(429, retry_after=1.5)), Step(text="a again"))
    router = build_router(clock, [a, fake(clock, "b")])
    assert (await clock.run(router.route("x"))).provider == "a"
    assert clock.sleeps == [1.5]


async def test_with_nothing_else_a_long_retry_after_is_waited(clock):
    a = fake(clock, "a", Step(error=transient(429, retry_after=8.0)), Step(text="a again"))
    router = build_router(clock, [a])
    assert (await clock.run(router.route("x"))).provider == "a"
    assert clock.sleeps == [8.0]


@pytest.mark.parametrize("absurd", [1e12, math.inf])
async def test_an_absurd_retry_after_never_holds_a_breaker_for_centuries(clock, absurd):
    store = MemoryStore()
    a = fake(clock, "a", default=Step(error=transient(429, retry_after=absurd)))
    router = build_router(clock, [a, fake(clock, "b")], store=store)
    await clock.run(router.route("x"))
    await router.aclose()
    until = router.tracker.breakers["a"].snap.open_until
    assert until is not None and until <= T0 + 86_400
    json.dumps(store.load("default").to_dict(), allow_nan=False)  # no Infinity stored


async def test_a_provider_reporting_exhausted_limits_is_tried_after_the_others(clock):
    exhausted = RateLimit(remaining_requests=0, requests_reset_at=T0 + 20)
    a = fake(clock, "a", default=Step(error=transient(503)))
    a.script = [Step(error=_with_ratelimit(transient(429), exhausted))]
    b = fake(clock, "b")
    store = MemoryStore()
    router = build_router(clock, [a, b], store=store)
    assert (await clock.run(router.route("x"))).provider == "b"
    assert router.order() == ["b", "a"]
    clock.advance(21)
    assert router.order() == ["a", "b"]  # its reset has passed
    await router.aclose()
    reported = store.load("default").provider("a").last_ratelimit
    assert reported is not None and reported["remaining_requests"] == 0


def _with_ratelimit(exc: TransientError, rl: RateLimit) -> TransientError:
    exc.ratelimit = rl
    return exc


# --- providers that cannot answer: not configured, not listening ------------------------------


def _no_key(name: str) -> ProviderUnavailable:
    return ProviderUnavailable(f"no API key: set {name.upper()}_KEY", reason="no_key")


async def test_nothing_configured_fails_at_once_without_waiting(clock):
    a = fake(clock, "a", default=Step(error=_no_key("a")))
    b = fake(clock, "b", default=Step(error=_no_key("b")))
    router = build_router(clock, [a, b])
    with pytest.raises(AllProvidersFailed) as info:
        await clock.run(router.route("x"))
    assert str(info.value).startswith("no provider is configured: ")
    assert clock.sleeps == []


async def test_a_provider_nothing_listens_on_is_not_waited_for(clock):
    refused = TransientError("cannot connect: refused", reason="connect")
    a = fake(clock, "a", default=Step(error=_no_key("a")))
    b = fake(clock, "b", default=Step(error=refused))
    router = build_router(clock, [a, b], breaker=BreakerPolicy(failure_threshold=1))
    for _ in range(3):  # three one-shot runs: each fails at once, none waits 60 s
        with pytest.raises(AllProvidersFailed):
            await clock.run(router.route("x"))
    assert clock.sleeps == []


async def test_asking_to_wait_waits_even_for_a_refused_provider(clock):
    refused = TransientError("cannot connect: refused", reason="connect")
    b = fake(clock, "b", Step(error=refused), default=Step(text="back"))
    router = build_router(clock, [b], breaker=BreakerPolicy(failure_threshold=1, cooldown=5.0))
    result = await clock.run(router.route("x", max_wait=30))
    assert result.text == "back"
    assert clock.time() == T0 + 5.0


# --- 3. continuing a broken stream ------------------------------------------------------------


def broken_stream(after: int = 2) -> Step:
    return Step(text="one two three four", fail_after=after, error=transient(503))


async def test_a_stream_continues_by_prefill_where_the_next_provider_takes_it(clock):
    a = fake(clock, "a", broken_stream())
    b = as_kind(fake(clock, "b", default=Step(text=" three four")), "ollama", "llama3.2")
    rec = Recorder()
    router = build_router(clock, [a, b], listeners=[rec])
    result = await clock.run(router.stream("x").collect())
    assert result.text == "one two three four"
    sent = b.requests[0]
    assert (sent.assistant_prefix, sent.continuation) == ("one two", "prefill")
    assert rec.of(StreamSwitched) == [StreamSwitched("a", "b", "prefill", len("one two"))]


async def test_a_refused_prefill_is_the_routers_failure_and_falls_back_to_instruct(clock):
    refusal = InvalidRequest("This model does not support assistant message prefill", status=400)
    a = fake(clock, "a", broken_stream())
    b = as_kind(fake(clock, "b", default=Step(text=" three four")), "anthropic", "claude-3-5-haiku")
    b.script = [Step(error=refusal)]
    router = build_router(clock, [a, b])
    result = await clock.run(router.stream("x").collect())  # no RequestRejected, no exit 3
    assert result.text == "one two three four"
    assert [r.continuation for r in b.requests] == ["prefill", "instruct"]
    assert [r.assistant_prefix for r in b.requests] == ["one two", "one two"]
    assert "continuing by prefill was refused" in result.attempts[1].message


async def test_a_provider_that_cannot_continue_restarts_and_says_so(clock):
    a = fake(clock, "a", broken_stream())
    b = fake(clock, "b", default=Step(text="a whole new answer"))
    b.config = ProviderConfig(name="b", kind="openai", model="m", continuation="restart")
    router = build_router(clock, [a, b])
    stream = router.stream("x")
    events = [e async for e in stream.events()]
    assert StreamSwitched("a", "b", "restart", 0) in events
    after = events[events.index(StreamSwitched("a", "b", "restart", 0)) + 1 :]
    assert "".join(e.text for e in after if isinstance(e, TextDelta)) == "a whole new answer"
    assert stream.result is not None
    assert stream.result.text == "a whole new answer"  # the discarded start is not in it
    assert [s.provider for s in stream.result.segments] == ["b"]
    assert b.requests[0].assistant_prefix is None


async def test_when_every_continuation_is_refused_the_original_failure_is_reported_first(clock):
    refusal = InvalidRequest("prefill not supported", status=400)
    a = fake(clock, "a", broken_stream())
    b = fake(clock, "b", default=Step(error=refusal))
    router = build_router(clock, [a, b])
    with pytest.raises(AllProvidersFailed) as info:
        await clock.run(router.stream("x").collect())
    message = str(info.value)
    assert message.startswith("the answer from a broke (transient: HTTP 503)")
    assert b.calls == 2  # instruct, then restart: each refused


# --- parameters a provider's API cannot take ---------------------------------------------------


async def test_a_temperature_outside_the_range_is_clamped_for_that_provider_only(clock):
    a = as_kind(fake(clock, "a"), "anthropic", "claude-3-5-haiku")
    rec = Recorder()
    router = build_router(clock, [a], listeners=[rec])
    await clock.run(router.route("x", temperature=1.5))
    assert a.requests[0].temperature == 1.0
    (note,) = rec.of(ParameterAdjusted)
    assert (note.provider, note.parameter, note.action) == ("a", "temperature", "clamped")


async def test_a_parameter_the_current_api_lacks_is_dropped_with_a_reason(clock):
    a = as_kind(fake(clock, "a"), "anthropic", "claude-sonnet-5-5")
    b = as_kind(fake(clock, "b"), "openai", "gpt-4.1")
    rec = Recorder()
    router = build_router(clock, [a, b], listeners=[rec])
    await clock.run(router.route("x", temperature=1.5))
    assert a.requests[0].temperature is None
    assert [(n.provider, n.action) for n in rec.of(ParameterAdjusted)] == [("a", "dropped")]


async def test_drop_params_in_config_overrides_the_table(clock):
    a = as_kind(fake(clock, "a"), "openai", "gpt-4.1", drop_params=("temperature",))
    router = build_router(clock, [a])
    await clock.run(router.route("x", temperature=0.3))
    assert a.requests[0].temperature is None


# --- 2. recovery: fingerprints and background probes -------------------------------------------


def _router_with_key(clock, store, key: str, provider: ScriptedProvider) -> FailoverRouter:
    cfg = ProviderConfig(name="a", kind="anthropic", model="claude-3-5-haiku")
    provider.config = cfg
    config = Config(providers=(cfg,), queue=QueueConfig(max_wait=0))
    return FailoverRouter(
        config,
        providers=[provider],
        store=store,
        clock=clock,
        env={"ANTHROPIC_API_KEY": key},
        background_probes=False,
    )


async def test_fixing_a_wrong_key_does_not_leave_the_provider_benched(clock):
    store = MemoryStore()
    a = fake(clock, "a", Step(error=provider_down(401)), default=Step(text="fixed"))
    router = _router_with_key(clock, store, "sk-wrong-key-0000", a)
    with pytest.raises(AllProvidersFailed):
        await clock.run(router.route("x"))
    await router.aclose()
    stored = store.load("default").provider("a").breaker
    assert stored.state == "open" and stored.fingerprint is not None
    assert "sk-wrong" not in json.dumps(store.load("default").to_dict())

    same = _router_with_key(clock, store, "sk-wrong-key-0000", a)
    assert same.tracker.breakers["a"].state(clock.time()) is BreakerState.OPEN

    fixed = _router_with_key(clock, store, "sk-right-key-1111", a)
    assert fixed.tracker.breakers["a"].state(clock.time()) is BreakerState.CLOSED
    assert (await clock.run(fixed.route("x"))).text == "fixed"


async def _opened_for_long(clock, error: TransientError):
    """A long-running router whose primary ``a`` failed 3 times with ``error`` (then answers:
    its health call passes), its breaker open for 600 s; and ``a``."""
    a = fake(clock, "a", *[Step(error=error)] * 3, default=Step(text="up"))
    policy = BreakerPolicy(cooldown=30.0, max_cooldown=600.0)
    router = build_router(clock, [a, fake(clock, "b")], breaker=policy, background_probes=True)
    for _ in range(3):
        await clock.run(router.route("x"))
    snap = router.tracker.breakers["a"].snap
    assert snap.state == "open" and snap.open_until is not None
    router.tracker.breakers["a"].snap = type(snap)(**{**snap.to_dict(), "open_until": T0 + 600})
    return router, a


async def test_a_background_probe_finds_a_recovered_provider_without_a_user_request(clock):
    refused = TransientError("cannot connect", reason="connect")
    router, a = await _opened_for_long(clock, refused)
    await clock.run(_idle(clock, 31))
    assert router.tracker.breakers["a"].state(clock.time()) is BreakerState.HALF_OPEN
    assert a.calls == 4  # the three failures, then the health probe: no user request spent
    await router.aclose()


@pytest.mark.parametrize("reason", ["first_token_timeout", "stall", "timeout"])
async def test_a_model_list_that_answers_does_not_readmit_a_silent_provider(clock, reason):
    """A server whose completions go silent may still list its models (a hung generation
    behind a live API): a pass of the no-token health call says nothing about silence, so
    it does not cut the breaker's grown cooldown short, and no user pays the timeout again
    on every base cooldown."""
    router, a = await _opened_for_long(clock, TransientError("no first token", reason=reason))
    await clock.run(_idle(clock, 95))  # three base cooldowns
    assert router.tracker.breakers["a"].state(clock.time()) is BreakerState.OPEN
    assert a.calls == 3  # no health call: it could only have passed
    await router.aclose()


async def test_a_one_shot_router_does_not_probe_in_the_background(clock):
    refused = TransientError("cannot connect", reason="connect")
    a = fake(clock, "a", default=Step(error=refused))
    router = build_router(clock, [a, fake(clock, "b")], background_probes=False)
    for _ in range(3):
        await clock.run(router.route("x"))
    calls = a.calls
    await clock.run(_idle(clock, 120))
    assert a.calls == calls


async def _idle(clock: VirtualClock, seconds: float) -> None:
    await clock.sleep(seconds)


async def test_a_recovered_primary_is_back_within_one_base_cooldown(clock):
    """Down for 60 s, then healthy, under one request every 4 s: the first request the
    primary answers comes within ~one base cooldown of its recovery (was: not in 30 s)."""
    a = fake(clock, "a")
    recovered_at = T0 + 60

    async def scripted_complete(request, *, timeout):
        a.calls += 1
        if clock.time() < recovered_at:
            raise transient(503)
        return await ScriptedProvider.complete(a, request, timeout=timeout)

    a.complete = scripted_complete  # type: ignore[method-assign]
    b = fake(clock, "b")
    router = build_router(clock, [a, b], retry=RetryPolicy(attempts=1))
    back_at = None
    while clock.time() < T0 + 180:
        result = await clock.run(router.route("x"))
        if result.provider == "a" and clock.time() >= recovered_at:
            back_at = clock.time()
            break
        clock.advance(4.0)
    assert back_at is not None and back_at - recovered_at <= 30 + 4


async def test_a_stale_pooled_connection_is_an_attempt_retried_at_once_without_a_verdict(clock):
    stale = TransientError("connection closed: server closed it", reason="stale_connection")
    a = fake(clock, "a", Step(error=stale), Step(text="second try"))
    router = build_router(clock, [a, fake(clock, "b")], breaker=BreakerPolicy(failure_threshold=1))
    result = await clock.run(router.route("x"))
    assert (result.provider, result.text, a.calls) == ("a", "second try", 2)
    assert [x.outcome for x in result.attempts] == ["failed", "ok"]  # the router counted it
    assert clock.sleeps == []
    assert router.tracker.breakers["a"].state(clock.time()) is BreakerState.CLOSED


def test_status_agrees_with_the_router_once_a_wrong_key_is_fixed():
    from failover_cli.breaker import BreakerSnapshot
    from failover_cli.cli.status import status_report
    from failover_cli.config import fingerprint
    from failover_cli.state import ChainState, ProviderState

    cfg = ProviderConfig(name="a", kind="anthropic", model="claude-3-5-haiku")
    config = Config(providers=(cfg,))
    wrong = fingerprint(cfg, {"ANTHROPIC_API_KEY": "sk-wrong-0000"})
    benched = BreakerSnapshot(
        state="open", opened_at=T0, open_until=T0 + 600, fingerprint=wrong, updated_at=T0
    )
    state = ChainState({"a": ProviderState(breaker=benched)})
    still = status_report(config, state, T0 + 5, env={"ANTHROPIC_API_KEY": "sk-wrong-0000"})
    fixed = status_report(config, state, T0 + 5, env={"ANTHROPIC_API_KEY": "sk-fixed-1111"})
    assert still["providers"][0]["state"] == "open"
    assert fixed["providers"][0]["state"] == "closed"
