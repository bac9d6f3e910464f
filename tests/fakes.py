"""Scripted in-process providers for router tests: no network, timing on a VirtualClock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from failover_cli.clock import VirtualClock
from failover_cli.errors import (
    ContextLengthExceeded,
    InvalidRequest,
    ProviderError,
    ProviderUnavailable,
    TransientError,
)
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
    For streams, ``fail_after`` tokens are sent before ``error`` is raised."""

    error: ProviderError | None = None
    delay: float = 0.0
    text: str = "ok"
    fail_after: int | None = None
    ttft: float = 0.0


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
        return self.script.pop(0) if self.script else self.default

    async def complete(self, request: CompletionRequest, *, timeout: float) -> Completion:
        step = self._next(request)
        if step.delay:
            await self.clock.sleep(step.delay)
        if step.error is not None:
            step.error.provider = self.name
            raise step.error
        return Completion(step.text, self.config.model, Usage(10, len(step.text.split())), "end")

    async def stream(
        self, request: CompletionRequest, *, timeout: float
    ) -> AsyncIterator[StreamEvent]:
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
                    assert step.error is not None
                    step.error.provider = self.name
                    raise step.error
                yield TextDelta(word if i == 0 else " " + word)
                if step.delay:
                    await self.clock.sleep(step.delay)
            yield StreamEnd(self.config.model, Usage(10, len(words)), "end")
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
