"""The routing core: try providers in order, retry transient failures, skip open breakers,
wait (bounded) when every provider is down, hedge slow first tokens, continue broken streams.

    router = FailoverRouter(load_config("providers.yaml"))
    result = await router.route(prompt="Hello", max_tokens=100)
    async for chunk in router.stream(prompt="Hello"): print(chunk, end="")
"""

from __future__ import annotations

import asyncio
import random as _random
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .breaker import BreakerState, Permit, Transition
from .capabilities import Capabilities, Strategy, adapt, capabilities, missing
from .chat import ToolCall
from .clock import SYSTEM_CLOCK, Clock
from .config import Config, as_config, fingerprint, key_env
from .errors import (
    AllProvidersFailed,
    BudgetExceeded,
    ConfigError,
    ProviderError,
    QueueFull,
    RequestRejected,
    StateError,
    TransientError,
    redact,
)
from .protocols import Provider, StateStore
from .request import build_request, check_extra
from .retry import decide
from .scoring import ScoreBreakdown, order
from .state import ProviderDelta, StateDelta
from .tracker import Tracker
from .types import (
    Attempt,
    AttemptFailed,
    AttemptStarted,
    AttemptSucceeded,
    BreakerTransition,
    CompletionRequest,
    ErrorClass,
    Event,
    ProviderConfig,
    ProviderSkipped,
    Queued,
    RateLimit,
    RouteResult,
    Segment,
    StreamDone,
    StreamEnd,
    StreamSwitched,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from .waitqueue import WaitQueue

if TYPE_CHECKING:
    from .budget import Ledger  # imported only when a budget is set: not on every ask

Listener = Callable[[Event], None]
DEFAULT_TIMEOUT = 600.0  # seconds a whole request may take unless told otherwise

# Failures that say nothing will come from this provider soon: with another provider able to
# answer, fail over at once instead of retrying here (a refused port, a silent server, a
# stalled stream). Retried here only when nothing else can answer.
FAIL_FAST_REASONS = frozenset({"connect", "first_token_timeout", "stall", "timeout"})
# The provider is not configured for this process (no key, or a key that cannot be sent):
# skipped with the reason, never waited for.
NOT_CONFIGURED_REASONS = frozenset({"no_key", "bad_key", "bad_header"})
# The provider refused a feature the request uses (tools, images) that the capability table
# thought it had: this provider cannot serve the request, another may. Failed over at once,
# breaker untouched, never RequestRejected.
UNSUPPORTED_REASONS = frozenset({"unsupported", "tools_unsupported", "vision_unsupported"})


class FailoverRouter:
    """Routes requests through a chain of providers. Safe to share between tasks.

    ``config`` is a :class:`Config` or a plain list of :class:`ProviderConfig`. Adapters are
    built from it unless ``providers`` (objects implementing the Provider protocol) are given.
    ``store`` persists breaker state and history; ``clock`` and ``random`` make timing and
    jitter deterministic in tests. With ``autoflush`` the store is written in the background
    after breaker transitions and at most every ``flush_interval`` seconds, and half-open probe
    leases are claimed in a worker thread (see :mod:`failover_cli.tracker`); either way
    :meth:`aclose` writes what is left.
    """

    def __init__(
        self,
        config: Config | Sequence[ProviderConfig],
        *,
        providers: Sequence[Provider] | None = None,
        store: StateStore | None = None,
        clock: Clock = SYSTEM_CLOCK,
        random: Callable[[], float] = _random.random,
        listeners: Iterable[Listener] = (),
        env: Mapping[str, str] | None = None,
        client: Any = None,
        on_warning: Callable[[str], None] | None = None,
        autoflush: bool = True,
        flush_interval: float = 0.25,
        timeout: float = DEFAULT_TIMEOUT,
        background_probes: bool = True,
    ) -> None:
        import os

        self.config = as_config(config)
        self.clock = clock
        self.random = random
        self.listeners: list[Listener] = list(listeners)
        self.timeout = timeout
        env = os.environ if env is None else env
        self._owned_clients: Any = None
        if providers is None:
            providers = self._build_providers(client, env)
        by_name = {p.name: p for p in providers}
        missing = [c.name for c in self.config.providers if c.name not in by_name]
        if missing:
            raise ValueError(f"no provider object for: {', '.join(missing)}")
        self.providers: dict[str, Provider] = {
            c.name: by_name[c.name] for c in self.config.providers
        }
        self._configs = {c.name: c for c in self.config.providers}
        self._prices = self.config.prices()
        self._priorities = dict(zip(self._configs, self.config.priorities(), strict=True))
        self._needs_scores = self.config.routing.strategy == "score" or len(
            set(self._priorities.values())
        ) < len(self._priorities)
        self._static_order = [n for n, _ in sorted(self._priorities.items(), key=lambda kv: kv[1])]
        self._env = env
        self._secrets = [env.get(k) for c in self.config.providers if (k := key_env(c))]
        self._caps: dict[str, Capabilities] = {
            c.name: capabilities(c) for c in self.config.providers
        }
        self._exhausted: dict[str, float] = {}  # provider -> epoch its reported limits reset
        self.background_probes = background_probes
        self._probes: dict[str, asyncio.Task[None]] = {}
        self.autoflush = autoflush and store is not None
        self.flush_interval = flush_interval
        self._flush_task: asyncio.Task[None] | None = None
        self._flush_soon: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        self._tripped: dict[str, asyncio.Event] = {}
        self.queue = WaitQueue(clock, self.config.queue.max_size)
        self.tracker = Tracker(
            self._configs,
            self.config.breaker,
            clock,
            store=store,
            chain=self.config.chain,
            history=self.config.state.history,
            on_warning=on_warning,
            on_transition=self._on_transition,
            fingerprints=self.fingerprints(),
            probe_ttls={n: c.timeout for n, c in self._configs.items()},
            claims_off_loop=self.autoflush,  # a long-running router keeps store I/O off the loop
        )
        # The budget, if any: every hop is checked against it (see _Run._admit).
        self._ledger: Ledger | None = None
        self._spend_lock: asyncio.Lock | None = None  # one store sync of spend at a time
        if self.config.budget.enabled:
            from .budget import Budget, Ledger

            prices = {c.name: c.cost for c in self.config.providers}
            self._ledger = Ledger(Budget.of(self.config.budget), prices)

    # --- public API --------------------------------------------------------------------------

    async def route(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Any] | None = None,
        max_tokens: int = 1024,
        system: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        tools: Sequence[Any] | None = None,
        tool_choice: Any = None,
        response_format: Any = None,
        extra: Mapping[str, Mapping[str, Any]] | None = None,
        models: Mapping[str, str] | None = None,
        timeout: float | None = None,
        max_wait: float | None = None,
        only: Sequence[str] | None = None,
        request: CompletionRequest | None = None,
    ) -> RouteResult:
        """Answer one request (not streamed): a ``prompt``, or OpenAI-shaped ``messages``
        with ``tools``, ``tool_choice`` and ``response_format``. ``extra`` maps a provider
        kind or name to body fields merged into that provider's request (unportable);
        ``models`` maps provider names to this call's model. Bad input raises ValueError
        before anything is sent; routing raises AllProvidersFailed, RequestRejected,
        QueueFull."""
        req = request or build_request(
            prompt, messages=messages, max_tokens=max_tokens, system=system,
            temperature=temperature, top_p=top_p, stop=stop, tools=tools,
            tool_choice=tool_choice, response_format=response_format,
        )  # fmt: skip
        run = _Run(self, req, timeout, max_wait, only, check_extra(extra), models)
        try:
            name, comp, ttft = await run.drive(run.try_complete)
        except BaseException:
            if self._ledger is not None:
                self._ledger.release(run)  # what its hops in flight held
            raise
        latency = (self.clock.monotonic() - run.started) * 1000
        if self._ledger is not None:
            await self._charge(name, self._cost(name, comp.usage), run, done=True)
        return RouteResult(
            text=comp.text,
            provider=name,
            model=comp.model,
            usage=comp.usage,
            cost=self._cost(name, comp.usage),
            latency_ms=latency,
            ttft_ms=ttft,
            attempts=tuple(run.attempts),
            segments=(Segment(name, comp.model, comp.text),),
            stop_reason=comp.stop_reason,
            finish_reason=comp.finish_reason,
            calls=comp.tool_calls,
            stop_sequence=comp.stop_sequence,
            refused=comp.refused,
        )

    def stream(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Any] | None = None,
        max_tokens: int = 1024,
        system: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        tools: Sequence[Any] | None = None,
        tool_choice: Any = None,
        response_format: Any = None,
        extra: Mapping[str, Mapping[str, Any]] | None = None,
        models: Mapping[str, str] | None = None,
        timeout: float | None = None,
        max_wait: float | None = None,
        only: Sequence[str] | None = None,
        request: CompletionRequest | None = None,
    ) -> RouteStream:
        """Stream one answer (arguments as :meth:`route`): iterate it for text chunks, or
        :meth:`RouteStream.events` for typed events; ``.result`` holds the RouteResult
        afterwards. Bad input raises ValueError here, before anything is sent."""
        req = request or build_request(
            prompt, messages=messages, max_tokens=max_tokens, system=system,
            temperature=temperature, top_p=top_p, stop=stop, tools=tools,
            tool_choice=tool_choice, response_format=response_format,
        )  # fmt: skip
        return RouteStream(_Run(self, req, timeout, max_wait, only, check_extra(extra), models))

    def order(self, only: Sequence[str] | None = None) -> list[str]:
        """The order providers would be tried in right now."""
        names = self._static_order
        if self._needs_scores:
            names = order(
                list(self._priorities),
                list(self._priorities.values()),
                self.scores(),
                self.config.routing.strategy,
            )
        if only is not None:
            names = [n for n in names if n in only]
        if self._exhausted:
            now = self.clock.time()
            for n, until in list(self._exhausted.items()):
                if until <= now:
                    del self._exhausted[n]
            if self._exhausted:  # tried after the others until their limits reset
                names = sorted(names, key=lambda n: n in self._exhausted)
        return names

    def fingerprints(self) -> dict[str, str]:
        """Each provider's identity for provider-class verdicts: endpoint, model and key."""
        return {c.name: fingerprint(c, self._env) for c in self.config.providers}

    def note_ratelimit(self, name: str, ratelimit: RateLimit | None) -> None:
        """Remember what ``name`` reported about its rate limits."""
        if ratelimit is None:
            return
        self.tracker.on_ratelimit(name, ratelimit)
        until = ratelimit.exhausted_until
        if until is not None and until > self.clock.time():
            self._exhausted[name] = until
        else:
            self._exhausted.pop(name, None)

    def scores(self) -> dict[str, ScoreBreakdown]:
        return self.tracker.scores(self._prices, self.config.routing.weights)

    def add_listener(self, listener: Listener) -> None:
        self.listeners.append(listener)

    async def flush(self) -> bool:
        return await self.tracker.flush()

    async def aclose(self) -> None:
        """Write pending state, stop timers, close connections this router opened."""
        if self._flush_task is not None:
            self._flush_task.cancel()
        for task in self._probes.values():
            task.cancel()
        self._probes.clear()
        self.queue.close()
        await self.tracker.flush()
        if self._owned_clients is not None:
            await self._owned_clients.aclose()

    async def __aenter__(self) -> FailoverRouter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- internals ---------------------------------------------------------------------------

    def _build_providers(self, client: Any, env: Mapping[str, str]) -> list[Provider]:
        """Adapters for the configuration: on ``client`` if given, else on one pooled client
        per distinct network setting (proxy, CA bundle, verification)."""
        from .providers import ClientSet, create_provider

        configs = self.config.providers
        if client is not None:
            return [create_provider(c, client, env) for c in configs]
        clients = self._owned_clients = ClientSet(env)
        try:
            return [create_provider(c, clients.for_config(c), env) for c in configs]
        except ValueError as exc:  # an unusable proxy URL, in the config or the environment
            raise ConfigError(str(exc)) from None

    def emit(self, event: Event) -> None:
        for listener in self.listeners:
            listener(event)

    def scrub(self, text: str) -> str:
        return redact(text, self._secrets)

    def _cost(self, name: str, usage: Usage) -> float | None:
        cost = self._configs[name].cost
        return None if cost is None else round(cost.usd(usage), 8)

    # --- the budget (only with one: nothing here runs otherwise) ------------------------------

    async def _charge(self, name: str, amount: float | None, run: _Run, done: bool) -> None:
        """Record what an attempt of ``run`` cost in place of its worst case (all of the
        run's when ``done``), and write it to the store at once."""
        assert self._ledger is not None
        self._ledger.release(run, None if done else name)
        self._ledger.charge(name, amount, self.clock.time())
        await self._sync_spend()

    async def _sync_spend(self) -> None:
        """Write this router's unwritten spend to the store (an atomic increment there) and
        take the chain's spend from it: every process's, so one budget holds for all. One
        sync at a time, so a read that began before a write never replaces what it wrote."""
        ledger, store = self._ledger, self.tracker.store
        if ledger is None or store is None:
            return
        if self._spend_lock is None:
            self._spend_lock = asyncio.Lock()
        async with self._spend_lock:
            unsaved = ledger.take_unsaved()
            chain = self.config.chain
            try:
                if unsaved:
                    delta = StateDelta(
                        {n: ProviderDelta(spend=s) for n, s in unsaved.items()},
                        history=self.config.state.history,
                    )
                    state = await asyncio.to_thread(store.update, chain, delta)
                else:
                    state = await asyncio.to_thread(store.load, chain)
            except StateError as exc:
                ledger.restore(unsaved)
                if not ledger.warned:
                    ledger.warned = True
                    self.tracker.on_warning(f"budget: spend not shared with others: {exc}")
                return
            # (Cancelled meanwhile, the thread still writes: nothing to give back.)
            ledger.adopt({n: p.spend for n, p in state.providers.items()})

    def _on_transition(self, name: str, t: Transition) -> None:
        self.emit(BreakerTransition(name, t.old.value, t.new.value, t.open_until))
        if t.new is BreakerState.OPEN:
            ev = self._tripped.pop(name, None)
            if ev is not None:
                ev.set()
            if self.background_probes:
                self._start_probe(name)
        self.queue.kick()  # waiters re-check: a failed probe must not leave them parked
        if self.autoflush:
            self._schedule_flush(0.0)

    def _start_probe(self, name: str) -> None:
        task = self._probes.get(name)
        if task is not None and not task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        from .prober import probe_while_open

        self._probes[name] = loop.create_task(
            probe_while_open(self.providers[name], self.tracker, self.clock)
        )

    def tripped(self, name: str) -> asyncio.Event:
        """An event set the next time ``name``'s breaker opens (wakes backoff sleepers)."""
        ev = self._tripped.get(name)
        if ev is None:
            ev = self._tripped[name] = asyncio.Event()
        return ev

    def recorded(self) -> None:
        if self.autoflush:
            self._schedule_flush(self.flush_interval)

    def _schedule_flush(self, delay: float) -> None:
        """Write to the store in ``delay`` seconds. A write already scheduled is not
        scheduled again, but one asked for at once (a transition) wakes it, or, if it is
        writing, makes it write once more after."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no running loop (called from sync code): flush at close
            return
        soon = self._soon(loop)
        if delay <= 0:
            soon.set()
        if self._flush_task is not None and not self._flush_task.done():
            return
        self._flush_task = loop.create_task(self._flush_later(delay, soon))

    def _soon(self, loop: asyncio.AbstractEventLoop) -> asyncio.Event:
        """The event that asks the scheduled write to happen now (one per event loop: a
        router may outlive an ``asyncio.run``)."""
        if self._flush_soon is None or self._flush_soon[0] is not loop:
            self._flush_soon = (loop, asyncio.Event())
        return self._flush_soon[1]

    async def _flush_later(self, delay: float, soon: asyncio.Event) -> None:
        if not soon.is_set():
            try:
                async with asyncio.timeout(delay):
                    await soon.wait()
            except TimeoutError:
                pass
        while True:
            soon.clear()
            await self.tracker.flush()
            if not soon.is_set():
                return


@dataclass
class _Opened:
    """A stream that produced its first event, ready to be continued."""

    name: str
    permit: Permit
    events: AsyncIterator[Any]
    first: TextDelta | StreamEnd
    started: float
    ttft_ms: float
    strategy: Strategy | None = None  # how it continues a broken answer, if it does


class _Run:
    """One request's journey through the chain."""

    def __init__(
        self,
        router: FailoverRouter,
        req: CompletionRequest,
        timeout: float | None,
        max_wait: float | None,
        only: Sequence[str] | None,
        extra: Mapping[str, Mapping[str, Any]] | None = None,
        models: Mapping[str, str] | None = None,
    ) -> None:
        self.r = router
        self.req = req
        self.only = only
        self.extra = extra
        self.models = models
        if models:
            unknown = [n for n in models if n not in router.providers]
            if unknown:
                raise ValueError(f"models: no provider named {', '.join(unknown)}")
        clock = router.clock
        self.started = clock.monotonic()
        self.deadline = self.started + (timeout if timeout is not None else router.timeout)
        wait = router.config.queue.max_wait if max_wait is None else max_wait
        self.give_up_at = clock.time() + min(wait, self.deadline - self.started)
        self.attempts: list[Attempt] = []
        self.excluded: set[str] = set()  # cannot serve this request at all (no key, too long)
        self.passed: set[str] = set()  # admitted or skipped during the current pass
        # Providers nothing listens for are waited for only when the caller asked to wait.
        self.wait_for_unreachable = max_wait is not None
        self.partial = ""  # answer text delivered before a stream broke: to be continued
        self.broken: Attempt | None = None  # the failure that broke it
        self.strategy_at: dict[str, int] = {}  # per provider: index of its next strategy
        self.restart = False  # a stream broke inside a tool call: the next one starts anew
        self._noted: set[str] = set()  # providers whose parameter changes were reported
        self.ledger = router._ledger  # the budget, if any: checked before every hop
        self._input_tokens: int | None = None  # the request's estimate, for the budget
        self._caps = router._caps
        if models:
            self._caps = dict(router._caps)
            for name, model in models.items():
                self._caps[name] = capabilities(replace(router._configs[name], model=model))
        if req.tools or req.messages or req.response_format is not None:
            self._exclude_unfit()

    def _exclude_unfit(self) -> None:
        """Skip, with the reason, every provider that cannot serve this request at all."""
        for name in self.r.order(self.only):
            why = missing(self._caps[name], self.req)
            if why is not None:
                self.excluded.add(name)
                message = f"{name} {why}"
                self.attempts.append(
                    Attempt(name, "skipped", message=message, reason="unsupported")
                )
                self.r.emit(ProviderSkipped(name, message))

    def request_for(self, name: str) -> CompletionRequest:
        """The request as ``name`` can take it, continuing the partial answer if any."""
        r = self.r
        req, notes = adapt(self.req, r._configs[name], self._caps[name])
        if self.models and name in self.models:
            req = replace(req, model=self.models[name])
        if self.extra:
            kind = r._configs[name].kind
            fields = {**self.extra.get(kind, {}), **self.extra.get(name, {})}
            if fields:
                req = replace(req, extra=fields)
        if notes and name not in self._noted:
            self._noted.add(name)
            for note in notes:
                r.emit(note)
        if self.partial:
            strategy = self.strategy(name)
            if strategy == "restart":
                req = replace(req, assistant_prefix=None)
            else:
                req = replace(req, assistant_prefix=self.partial, continuation=strategy)
        return req

    def strategy(self, name: str) -> Strategy:
        order = self._caps[name].continuation
        return order[min(self.strategy_at.get(name, 0), len(order) - 1)]

    # --- the pass loop -----------------------------------------------------------------------

    async def drive(self, attempt: Callable[[str, Permit], Awaitable[Any]]) -> Any:
        """Run ``attempt`` on providers in order until one returns non-None; wait when all
        are down; raise AllProvidersFailed when nothing more can be done."""
        r = self.r
        hedge_ms = r.config.routing.hedge_after_ms
        ticket: int | None = None
        if self.only is not None and not any(n in r.providers for n in self.only):
            raise AllProvidersFailed(
                f"no provider named {', '.join(self.only)}", reason="unavailable"
            )
        if self.ledger is not None:
            await r._sync_spend()  # every process's spend so far
        while True:
            self.passed.clear()
            candidates = (n for n in r.order(self.only) if n not in self.excluded)
            if hedge_ms is None:
                for name in candidates:
                    if r.tracker.must_wait(name):
                        await self._hold_while_scouting(name)
                    permit = self._admit(name)
                    if permit is not None:
                        result = await attempt(name, permit)
                        if result is not None:
                            return result
            else:
                result = await self._hedged(candidates, attempt, hedge_ms / 1000)
                if result is not None:
                    return result
            wake = self._next_wake()
            now = r.clock.time()
            if wake is None or wake > self.give_up_at or self._expired():
                raise self._all_failed(waited=ticket is not None)
            if ticket is None:
                try:
                    ticket = r.queue.ticket()
                except QueueFull as exc:
                    raise QueueFull(str(exc), self.attempts) from None
            r.emit(Queued(max(wake, now), r.queue.position(ticket)))
            if not await r.queue.wait(ticket, wake, self.give_up_at):
                raise self._all_failed(waited=True)

    async def _hedged(
        self, candidates: Iterable[str], attempt: Callable[..., Awaitable[Any]], hedge_after: float
    ) -> Any:
        """Like the plain loop, but start the next provider too when the current one has not
        produced a first token after ``hedge_after`` seconds; the first success wins."""
        clock = self.r.clock
        it = iter(candidates)
        running: set[asyncio.Task[Any]] = set()

        def start_next() -> bool:
            for name in it:
                if self.r.tracker.must_wait(name):
                    running.add(asyncio.ensure_future(self._held_attempt(name, attempt)))
                    return True
                permit = self._admit(name)
                if permit is not None:
                    running.add(asyncio.ensure_future(attempt(name, permit)))
                    return True
            return False

        timer: asyncio.Task[None] | None = None
        try:
            while running or start_next():
                if timer is None and len(running) == 1:
                    timer = asyncio.ensure_future(clock.sleep(hedge_after))
                waiting = running | ({timer} if timer is not None else set())
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if timer is not None and timer in done:
                    done.discard(timer)
                    timer = None
                    start_next()
                for task in done:
                    running.discard(task)
                    result = task.result()
                    if result is not None:
                        return result
                if timer is not None and not running:
                    timer.cancel()  # the provider it timed is gone: a fresh delay for the next
                    timer = None
            return None
        finally:
            if timer is not None:
                timer.cancel()
            for task in running:
                task.cancel()
            for task in running:
                try:
                    leftover = await task
                except (asyncio.CancelledError, ProviderError, RequestRejected):
                    continue
                if isinstance(leftover, _Opened):
                    await _close_quietly(leftover.events)
                    self.r.tracker.release(leftover.name, leftover.permit)

    async def _hold_while_scouting(self, name: str) -> None:
        """Wait, up to the policy's ``cold_start_wait`` and the request's deadline, while
        ``name`` is cold and its scouts are still finding out whether it works, or while the
        store has not answered its probe-lease claim."""
        r = self.r
        clock = r.clock
        until = min(clock.monotonic() + r.config.breaker.cold_start_wait, self.deadline)
        while r.tracker.must_wait(name):
            left = until - clock.monotonic()
            if left <= 0:
                return
            await _sleep_unless(clock, left, r.tracker.changed(name))

    async def _held_attempt(self, name: str, attempt: Callable[..., Awaitable[Any]]) -> Any:
        await self._hold_while_scouting(name)
        permit = self._admit(name)
        return None if permit is None else await attempt(name, permit)

    def _admit(self, name: str) -> Permit | None:
        if self.ledger is not None and self._over_budget(name):
            return None
        permit = self.r.tracker.acquire(name)
        self.passed.add(name)
        if permit is None:
            b = self.r.tracker.breakers[name]
            now = self.r.clock.time()
            state = b.state(now)
            if b.snap.forced == "open":
                why = "forced open"
            elif state is BreakerState.OPEN and b.snap.open_until:
                why = f"breaker open, half-open in {b.snap.open_until - now:.1f}s"
            elif self.r.tracker.claim_pending(name):
                why = "half-open, the state store has not answered the probe-lease claim"
            else:
                why = "half-open, probe already in flight"
            self.attempts.append(Attempt(name, "skipped", message=why))
            self.r.emit(ProviderSkipped(name, why))
        return permit

    def _over_budget(self, name: str) -> bool:
        """Whether this hop's worst case on ``name`` would exceed the budget: if so, skip
        ``name`` for the rest of the request, with the reason (spend only grows)."""
        assert self.ledger is not None
        clock = self.r.clock
        why = self.ledger.admit(
            self, name, self.input_tokens(), self.req.max_tokens, clock.time(),
            now=clock.monotonic(), until=self.deadline,
        )  # fmt: skip
        if why is None:
            return False
        self.excluded.add(name)
        self.passed.add(name)
        self.attempts.append(Attempt(name, "skipped", message=why, reason="budget"))
        self.r.emit(ProviderSkipped(name, why))
        return True

    def input_tokens(self) -> int:
        """The input tokens this hop is estimated to send: the request, and the partial
        answer it continues, if any."""
        from .budget import input_tokens, request_input_tokens

        if self._input_tokens is None:
            self._input_tokens = request_input_tokens(self.req)
        return self._input_tokens + input_tokens(len(self.partial))

    def _next_wake(self) -> float | None:
        """The earliest time a provider not excluded from this request may admit again."""
        now = self.r.clock.time()
        times = []
        tracker = self.r.tracker
        for n in self.r.order(self.only):
            b = tracker.breakers[n]
            state = b.state(now)
            if n in self.excluded or state is BreakerState.CLOSED:
                continue
            if not self.wait_for_unreachable and tracker.unreachable(n):
                continue
            t = b.next_admission(now)
            if t is None and state is BreakerState.HALF_OPEN:
                t = self.give_up_at  # a probe is in flight: its outcome kicks the queue
            if t is not None:
                times.append(t)
        return min(times) if times else None

    def _has_alternative(self, name: str) -> bool:
        """Whether another provider could still take this request now. Nothing listens on a
        refused port, so backing off on it only delays the answer when one can."""
        now = self.r.clock.time()
        return any(
            n != name
            and n not in self.excluded
            and n not in self.passed
            and self.r.tracker.breakers[n].next_admission(now) == now
            for n in self.r.order(self.only)
        )

    def _expired(self) -> bool:
        return self.r.clock.monotonic() >= self.deadline

    def _all_failed(self, waited: bool) -> AllProvidersFailed:
        tried = [a for a in self.attempts if a.outcome == "failed"]
        last: dict[str, Attempt] = {}
        for a in self.attempts:  # per provider: its last failure, else its last skip
            if a.outcome == "failed" or last.get(a.provider, a).outcome != "failed":
                last[a.provider] = a
        summary = "; ".join(
            f"{n}: {a.outcome if a.outcome == 'skipped' else a.error_class}"
            f"{' ' + str(a.status) if a.status else ''}"
            f"{' (' + a.message + ')' if a.message else ''}"
            for n, a in last.items()
        )
        not_configured = [
            a for a in self.attempts if a.outcome == "skipped" and a.error_class is not None
        ]
        if self._expired():
            reason, head = "deadline", "request deadline exceeded"
        elif self.broken is not None:
            b = self.broken
            reason = "broken"
            head = (
                f"the answer from {b.provider} broke ({b.error_class}: {b.message}) "
                "and no provider could continue it"
            )
        elif not tried and not_configured and len(not_configured) == len(last):
            reason, head = "not_configured", "no provider is configured"
        elif not tried and last and all(a.reason == "unsupported" for a in last.values()):
            reason, head = "unsupported", "no provider can serve this request"
        elif waited:
            reason, head = "still_down", "every provider is still down after waiting"
        elif not tried:
            reason, head = "unavailable", "no provider is available"
        else:
            reason, head = "failed", "no provider could answer"
        if self.ledger is not None and any(a.reason == "budget" for a in self.attempts):
            if all(a.reason == "budget" for a in last.values()):
                head = "refused by the budget"
            else:
                head = f"refused by the budget ({head} within it)"
            return BudgetExceeded(f"{head}: {summary}", self.attempts, "budget")
        message = f"{head}: {summary}" if summary else head
        return AllProvidersFailed(message, self.attempts, reason)

    # --- one provider, with retries ----------------------------------------------------------

    async def _with_retries(
        self, name: str, permit: Permit, call: Callable[[float], Awaitable[Any]]
    ) -> Any:
        """Call ``call(timeout)`` on ``name``, retrying transient failures with backoff.
        Returns (result, start time, the permit in force), or None to move on."""
        r = self.r
        clock = r.clock
        cfg = r._configs[name]
        tries = 0
        while True:
            tries += 1
            t0 = clock.monotonic()
            remaining = self.deadline - t0
            if remaining <= 0:
                r.tracker.release(name, permit)
                self.attempts.append(Attempt(name, "skipped", message="request deadline exceeded"))
                r.emit(ProviderSkipped(name, "request deadline exceeded"))
                return None
            if r.listeners:
                r.emit(AttemptStarted(name, tries))
            try:
                result = await call(min(cfg.timeout, remaining))
            except ProviderError as exc:
                delay = self._failed(name, permit, exc, (clock.monotonic() - t0) * 1000, tries)
                if delay is None:
                    return None
                if delay > 0:
                    await _sleep_unless(clock, delay, r.tripped(name))
                if r.tracker.must_wait(name):  # a retry is held like any other request
                    await self._hold_while_scouting(name)
                again = self._admit(name)
                if again is None:
                    return None
                permit = again
                continue
            except BaseException:
                r.tracker.release(name, permit)
                raise
            return result, t0, permit

    def _failed(
        self, name: str, permit: Permit, exc: ProviderError, duration_ms: float, tries: int
    ) -> float | None:
        """Record a failed attempt; return the delay before retrying, or None to move on."""
        r = self.r
        if self.ledger is not None:
            self.ledger.release(self, name)  # a hop that failed holds no budget
        msg = r.scrub(exc.message)
        if msg != exc.message:
            exc.message = msg
            exc.args = (msg,)
        cls = exc.error_class
        if exc.reason in NOT_CONFIGURED_REASONS:
            r.tracker.release(name, permit)
            self.excluded.add(name)
            self.attempts.append(
                Attempt(name, "skipped", cls, None, msg, duration_ms, reason=exc.reason)
            )
            r.emit(ProviderSkipped(name, msg))
            return None
        if exc.reason == "stale_connection":
            return self._stale(name, permit, exc, msg, duration_ms, tries)
        if exc.reason in UNSUPPORTED_REASONS:
            r.tracker.release(name, permit)
            self.excluded.add(name)
            self.attempts.append(
                Attempt(name, "failed", cls, exc.status, msg, duration_ms, reason=exc.reason)
            )
            r.emit(AttemptFailed(name, cls, exc.status, msg, duration_ms, False))
            return None
        r.tracker.on_failure(name, permit, exc, duration_ms)
        r.recorded()
        r.note_ratelimit(name, exc.ratelimit)
        if cls is ErrorClass.REQUEST and self.partial:
            return self._continuation_rejected(name, exc, msg, duration_ms)
        delay: float | None = None
        if cls is ErrorClass.TRANSIENT:
            now = r.clock.time()
            long_wait = (
                exc.retry_after is not None
                and exc.retry_after > r.config.retry.failover_retry_after
            )
            fail_fast = exc.reason in FAIL_FAST_REASONS or long_wait
            if r.tracker.breakers[name].state(now) is BreakerState.CLOSED and not (
                fail_fast and self._has_alternative(name)
            ):
                d = decide(
                    tries_done=tries,
                    policy=r.config.retry,
                    retry_after=exc.retry_after,
                    remaining=self.deadline - r.clock.monotonic(),
                    random=r.random,
                )
                delay = d.delay if d.retry else None
            if delay is None and exc.retry_after:
                r.tracker.hold_until(name, now + exc.retry_after)
        elif cls is ErrorClass.CONTEXT_LENGTH:
            self.excluded.add(name)
        self.attempts.append(Attempt(name, "failed", cls, exc.status, msg, duration_ms))
        r.emit(AttemptFailed(name, cls, exc.status, msg, duration_ms, delay is not None, delay))
        if cls is ErrorClass.REQUEST:
            raise RequestRejected(exc, self.attempts)
        return delay

    def _stale(
        self, name: str, permit: Permit, exc: ProviderError, msg: str, ms: float, tries: int
    ) -> float | None:
        """A pooled connection the server had closed took the request (sent once, never
        re-sent below): an attempt, retried at once, and no verdict on the provider."""
        r = self.r
        r.tracker.release(name, permit)
        retry = tries < r.config.retry.attempts
        self.attempts.append(Attempt(name, "failed", exc.error_class, None, msg, ms))
        r.emit(AttemptFailed(name, exc.error_class, None, msg, ms, retry, 0.0 if retry else None))
        return 0.0 if retry else None

    def _continuation_rejected(
        self, name: str, exc: ProviderError, msg: str, duration_ms: float
    ) -> float | None:
        """A provider refused the request that continues a broken answer (say, prefill on a
        model without it): the router's choice failed, not the caller's request. Try this
        provider's next strategy at once, or move on."""
        r = self.r
        strategy = self.strategy(name)
        self.strategy_at[name] = self.strategy_at.get(name, 0) + 1
        more = self.strategy_at[name] < len(self._caps[name].continuation)
        text = f"continuing by {strategy} was refused: {msg}"
        self.attempts.append(
            Attempt(name, "failed", exc.error_class, exc.status, text, duration_ms)
        )
        r.emit(AttemptFailed(name, exc.error_class, exc.status, text, duration_ms, more, 0.0))
        if not more:
            self.excluded.add(name)
            return None
        return 0.0

    def _succeeded(
        self,
        name: str,
        permit: Permit,
        duration_ms: float,
        ttft_ms: float | None,
        usage: Usage,
        ratelimit: RateLimit | None = None,
    ) -> None:
        r = self.r
        r.tracker.on_success(name, permit, duration_ms, ttft_ms, usage.output_tokens)
        r.recorded()
        if ratelimit is not None:
            r.note_ratelimit(name, ratelimit)
        self.attempts.append(Attempt(name, "ok", None, None, "", duration_ms, ttft_ms))
        if r.listeners:
            r.emit(AttemptSucceeded(name, duration_ms, ttft_ms, usage))

    async def try_complete(self, name: str, permit: Permit) -> Any:
        provider = self.r.providers[name]
        out = await self._with_retries(
            name, permit, lambda timeout: provider.complete(self.request_for(name), timeout=timeout)
        )
        if out is None:
            return None
        comp, t0, permit = out
        duration = (self.r.clock.monotonic() - t0) * 1000
        self._succeeded(name, permit, duration, None, comp.usage, comp.ratelimit)
        return name, comp, None

    async def try_stream(self, name: str, permit: Permit) -> _Opened | None:
        provider = self.r.providers[name]
        clock = self.r.clock

        async def open_stream(timeout: float) -> tuple[AsyncIterator[Any], Any]:
            events = provider.stream(self.request_for(name), timeout=timeout).__aiter__()
            try:
                first = await events.__anext__()
            except StopAsyncIteration:
                raise TransientError(
                    "stream ended before any event", provider=name, reason="truncated"
                ) from None
            except BaseException:
                await _close_quietly(events)
                raise
            return events, first

        out = await self._with_retries(name, permit, open_stream)
        if out is None:
            return None
        (events, first), t0, permit = out
        self.r.tracker.warm(name)
        strategy: Strategy | None = self.strategy(name) if self.partial else None
        if strategy is None and self.restart:
            strategy = "restart"
        ttft = (clock.monotonic() - t0) * 1000
        return _Opened(name, permit, events, first, t0, ttft, strategy)


class RouteStream:
    """Async iterator of answer text; after exhaustion ``result`` is the RouteResult.

    A stream that breaks after producing text fails over: the next provider continues the
    partial answer in the way it accepts (see :mod:`failover_cli.capabilities`), or restarts
    it; ``result.segments`` records who wrote what. :meth:`events` yields typed events
    instead, including the :class:`StreamSwitched` that says a restart began.
    """

    def __init__(self, run: _Run) -> None:
        self._run = run
        self._sink = _Sink()
        self._iter: AsyncGenerator[Any, None] | None = None

    @property
    def result(self) -> RouteResult | None:
        return self._sink.result

    @property
    def provider(self) -> str | None:
        """The provider whose stream is being read now (None before the first event). With
        hedging, the one that won the race, whichever started last."""
        return self._sink.provider

    def __aiter__(self) -> AsyncIterator[str]:
        if self._iter is None:
            # The generator must not reference this object: breaking out of `async for`
            # then frees it at once, closing the provider stream and its probe permit.
            self._iter = _generate(self._run, self._sink, typed=False)
        return self._iter

    def events(self) -> AsyncIterator[TextDelta | ToolCallDelta | StreamSwitched | StreamDone]:
        """Iterate typed events: text and tool-call deltas, a StreamSwitched at each provider
        seam (after a ``restart`` switch, discard what came before), and a final StreamDone
        with the result: usage, finish reason, tool calls."""
        if self._iter is None:
            self._iter = _generate(self._run, self._sink, typed=True)
        return self._iter

    async def aclose(self) -> None:
        """Stop early: close the provider's stream and give back its permit."""
        if self._iter is not None:
            await self._iter.aclose()

    async def collect(self) -> RouteResult:
        """Consume the whole stream and return the result."""
        async for _ in self:
            pass
        assert self.result is not None
        return self.result


@dataclass
class _Sink:
    result: RouteResult | None = None
    provider: str | None = None  # the stream being read


async def _generate(run: _Run, sink: _Sink, typed: bool) -> AsyncGenerator[Any, None]:
    r = run.r
    clock = r.clock
    segments: list[Segment] = []
    written = ""
    usage = Usage()
    first_ttft: float | None = None
    while True:
        opened: _Opened = await run.drive(run.try_stream)
        sink.provider = opened.name
        if first_ttft is None:
            first_ttft = (opened.started - run.started) * 1000 + opened.ttft_ms
        if run.broken is not None and opened.strategy is not None:
            if opened.strategy == "restart":
                segments.clear()
                written = ""
            run.restart = False
            switch = StreamSwitched(run.broken.provider, opened.name, opened.strategy, len(written))
            r.emit(switch)
            if typed:
                yield switch
        seg_text = ""
        refused = False
        calls = _Calls()
        end: StreamEnd | None = None
        try:
            ev = opened.first
            while True:
                if isinstance(ev, TextDelta):
                    if ev.text:
                        seg_text += ev.text
                        refused = refused or ev.refusal
                        yield ev if typed else ev.text
                elif isinstance(ev, ToolCallDelta):
                    calls.add(ev)
                    if typed:
                        yield ev
                else:
                    end = ev
                    break
                try:
                    ev = await opened.events.__anext__()
                except StopAsyncIteration:
                    raise TransientError(
                        "stream ended without its terminal event",
                        provider=opened.name,
                        reason="truncated",
                    ) from None
        except ProviderError as exc:
            duration = (clock.monotonic() - opened.started) * 1000
            exc.partial_text = seg_text
            # Mid-stream failures move on at once: retrying would repeat the text.
            run._failed(opened.name, opened.permit, exc, duration, r.config.retry.attempts)
            run.excluded.add(opened.name)
            if run.ledger is not None:  # a broken stream reports no usage: charge an estimate
                from .budget import input_tokens

                sent = Usage(run.input_tokens(), input_tokens(len(seg_text) + calls.chars()))
                await r._charge(opened.name, r._cost(opened.name, sent), run, done=False)
            if calls:  # never continued mid-call: the next provider writes the turn anew
                segments.clear()
                written = ""
                run.partial = ""
                run.restart = True
                run.broken = run.attempts[-1]
                continue
            if seg_text:
                segments.append(Segment(opened.name, r._configs[opened.name].model, seg_text))
                written += seg_text
            if written:
                run.partial = written
                run.broken = run.attempts[-1]
            continue
        except BaseException:
            r.tracker.release(opened.name, opened.permit)
            if run.ledger is not None:
                run.ledger.release(run)  # closed or cancelled mid-answer
            await _close_quietly(opened.events)
            raise
        await _close_quietly(opened.events)  # free the connection now, not at garbage collection
        duration = (clock.monotonic() - opened.started) * 1000
        usage = usage + end.usage
        run._succeeded(
            opened.name, opened.permit, duration, opened.ttft_ms, end.usage, end.ratelimit
        )
        segments.append(Segment(opened.name, end.model, seg_text))
        written += seg_text
        sink.result = RouteResult(
            text=written,
            provider=opened.name,
            model=end.model,
            usage=usage,
            # A seamed answer is priced at the provider that finished it: providers do not
            # report usage for a stream that broke.
            cost=r._cost(opened.name, usage),
            latency_ms=(clock.monotonic() - run.started) * 1000,
            ttft_ms=first_ttft,
            attempts=tuple(run.attempts),
            segments=tuple(segments),
            stop_reason=end.stop_reason,
            finish_reason=end.finish_reason,
            calls=calls.done(),
            stop_sequence=end.stop_sequence,
            refused=refused,
        )
        if run.ledger is not None:
            await r._charge(opened.name, r._cost(opened.name, end.usage), run, done=True)
        if typed:
            yield StreamDone(sink.result)
        return


class _Calls:
    """Tool calls being assembled from their streamed deltas, by index."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: dict[int, list[str]] = {}  # index -> [id, name, argument fragments...]

    def __bool__(self) -> bool:
        return bool(self._parts)

    def chars(self) -> int:
        """Characters of the calls so far (names and arguments)."""
        return sum(len(s) for parts in self._parts.values() for s in parts[1:])

    def add(self, delta: ToolCallDelta) -> None:
        parts = self._parts.setdefault(delta.index, ["", ""])
        if delta.id:
            parts[0] = delta.id
        if delta.name:
            parts[1] = delta.name
        if delta.arguments:
            parts.append(delta.arguments)

    def done(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(p[0], p[1], "".join(p[2:]) or "{}") for _, p in sorted(self._parts.items())
        )


async def _close_quietly(events: AsyncIterator[Any]) -> None:
    close = getattr(events, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:
            pass


async def _sleep_unless(clock: Clock, seconds: float, event: asyncio.Event) -> None:
    """Sleep, but wake early when ``event`` is set (the provider's breaker opened)."""
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeper.cancel()
        waiter.cancel()
