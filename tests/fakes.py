"""Scripted in-process providers for router tests: no network, timing on a VirtualClock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from failover_cli.breaker import BreakerPolicy
from failover_cli.clock import VirtualClock
from failover_cli.config import Config, QueueConfig, RoutingConfig
from failover_cli.errors import (
    ContextLengthExceeded,
    InvalidRequest,
    ProviderError,
    ProviderUnavailable,
    TransientError,
)
from failover_cli.retry import RetryPolicy
from failover_cli.router import FailoverRouter
from failover_cli.types import (
    Completion,
    CompletionRequest,
    Cost,
    HealthResult,
    ProviderConfig,
    StreamEnd,
    StreamEvent,
    TextDelta,
    Usage,
)


def transient(status: int = 503, retry_after: float | None = None) -> TransientError:
    return TransientError(f"HTTP {status}", status=status, retry_after=retry_after)


def provider_down(status: int = 401) -> ProviderUnavailable:
    return ProviderUnavailable("invalid x-api-key", status=status, reason="auth")


def bad_request() -> InvalidRequest:
    return InvalidRequest("max_tokens: must be positive", status=400)


def too_long() -> ContextLengthExceeded:
    return ContextLengthExceeded("prompt is too long", status=400, reason="context_length")


@dataclass
class Step:
    """One scripted answer: wait ``delay`` virtual seconds, then fail with ``error`` or answer.
    For streams, ``fail_after`` tokens are sent before ``error`` is raised, ``ttft`` is waited
    before the first token, ``delay`` after each token, and ``truncate`` ends the stream
    without its terminal ``StreamEnd``."""

    error: ProviderError | None = None
    delay: float = 0.0
    text: str = "ok"
    fail_after: int | None = None
    ttft: float = 0.0
    truncate: bool = False  # streams: end (after ``fail_after`` tokens if set) without StreamEnd


@dataclass
class ScriptedProvider:
    """Answers from a script, one Step per call; after the script, ``default``."""

    name: str
    clock: VirtualClock
    script: list[Step] = field(default_factory=list)
    default: Step = field(default_factory=Step)
    priority: int | None = None
    cost: Cost | None = None
    calls: int = 0
    requests: list[CompletionRequest] = field(default_factory=list)
    closed_streams: int = 0
    calls_at: list[float] = field(default_factory=list)  # clock.time() of every call
    timeouts: list[float] = field(default_factory=list)  # the timeout each call was given
    cancelled: int = 0  # calls cancelled while in flight (a hedge's loser, a timeout)

    def __post_init__(self) -> None:
        self.config = ProviderConfig(
            name=self.name,
            kind="openai",
            model=f"{self.name}-model",
            priority=self.priority,
            cost=self.cost,
        )

    def _next(self, req: CompletionRequest) -> Step:
        self.calls += 1
        self.requests.append(req)
        self.calls_at.append(self.clock.time())
        return self.script.pop(0) if self.script else self.default

    async def complete(self, request: CompletionRequest, *, timeout: float) -> Completion:
        self.timeouts.append(timeout)
        step = self._next(request)
        if step.delay:
            try:
                await self.clock.sleep(step.delay)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        if step.error is not None:
            step.error.provider = self.name
            raise step.error
        return Completion(step.text, self.config.model, Usage(10, len(step.text.split())), "end")

    async def stream(
        self, request: CompletionRequest, *, timeout: float
    ) -> AsyncIterator[StreamEvent]:
        self.timeouts.append(timeout)
        step = self._next(request)
        try:
            if step.ttft:
                await self.clock.sleep(step.ttft)
            if step.error is not None and not step.fail_after:
                step.error.provider = self.name
                raise step.error
            words = step.text.split(" ")
            for i, word in enumerate(words):
                if step.fail_after is not None and i >= step.fail_after:
                    if step.truncate:
                        return
                    assert step.error is not None
                    step.error.provider = self.name
                    raise step.error
                yield TextDelta(word if i == 0 else " " + word)
                if step.delay:
                    await self.clock.sleep(step.delay)
            if step.truncate:
                return
            yield StreamEnd(self.config.model, Usage(10, len(words)), "end")
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.closed_streams += 1

    async def health(self, *, deep: bool = False, timeout: float = 5.0) -> HealthResult:
        step = self._next(CompletionRequest("health"))
        if step.error is not None:
            return HealthResult(
                self.name, False, 1.0, str(step.error), step.error.error_class, step.error.status
            )
        return HealthResult(self.name, True, 1.0)

    async def aclose(self) -> None:
        pass


def scripted(clock: VirtualClock, *specs: tuple[str, Iterable[Step]]) -> list[ScriptedProvider]:
    return [ScriptedProvider(name, clock, list(steps)) for name, steps in specs]


def rng(*values: float):
    """A deterministic ``random`` source returning ``values`` in turn (then the last again)."""
    seq = list(values)

    def draw() -> float:
        return seq.pop(0) if len(seq) > 1 else seq[0]

    return draw


class Recorder:
    """A router listener keeping every event, in order."""

    def __init__(self) -> None:
        self.events: list[object] = []

    def __call__(self, event: object) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


def build_router(
    clock: VirtualClock,
    providers: list[ScriptedProvider],
    *,
    retry: RetryPolicy | None = None,
    breaker: BreakerPolicy | None = None,
    routing: RoutingConfig | None = None,
    queue: QueueConfig | None = None,
    configs: Iterable[ProviderConfig] | None = None,
    **kwargs: object,
) -> FailoverRouter:
    """A router over scripted providers on ``clock`` (jitter 0.5 unless ``random`` is given)."""
    config = Config(
        providers=tuple(configs) if configs is not None else tuple(p.config for p in providers),
        retry=retry or RetryPolicy(),
        breaker=breaker or BreakerPolicy(),
        routing=routing or RoutingConfig(),
        queue=queue or QueueConfig(),
    )
    kwargs.setdefault("random", lambda: 0.5)
    kwargs.setdefault("background_probes", False)  # tests of them turn them on
    return FailoverRouter(config, providers=providers, clock=clock, **kwargs)  # type: ignore[arg-type]
