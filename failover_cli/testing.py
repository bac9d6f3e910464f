"""Test code that uses the router without a network: scripted fake providers on a virtual
clock.

::

    from failover_cli.testing import FakeProvider, Reply, VirtualClock, fake_router, outage

    clock = VirtualClock()
    claude = FakeProvider("claude", [Reply(error=outage())], clock=clock)
    gpt = FakeProvider("gpt", [Reply("Hello from GPT")], clock=clock)
    router = fake_router(claude, gpt, clock=clock)
    result = await clock.run(router.route(prompt="Hi"))  # jumps time over retry backoff
    assert result.provider == "gpt" and claude.calls == 3  # tried, retried, then failed over

A :class:`FakeProvider` answers each call with the next :class:`Reply` of its script (then
with its ``default``), records every request it was sent, and implements the same Provider
protocol as the real adapters, streaming included. Delays run on the :class:`VirtualClock`,
so a test of a 30-second outage takes no time: await the router through
:meth:`VirtualClock.run`, which jumps time whenever everything waits on it (or advance the
clock yourself).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .breaker import BreakerPolicy
from .chat import FinishReason, ToolCall
from .clock import Clock, VirtualClock
from .config import Config, QueueConfig
from .errors import (
    ContextLengthExceeded,
    InvalidRequest,
    ProviderError,
    ProviderUnavailable,
    TransientError,
)
from .retry import RetryPolicy
from .router import FailoverRouter
from .types import (
    Completion,
    CompletionRequest,
    HealthResult,
    Kind,
    ProviderConfig,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)

__all__ = [
    "FakeProvider",
    "Reply",
    "VirtualClock",
    "down",
    "fake_router",
    "outage",
    "rate_limited",
    "rejected",
    "too_long",
]


def outage(status: int = 503) -> TransientError:
    """A transient failure (retried, then failed over; counts against the breaker)."""
    return TransientError(f"HTTP {status}: service unavailable", status=status)


def rate_limited(retry_after: float | None = None) -> TransientError:
    """A 429, with the Retry-After the provider would send."""
    return TransientError(
        "HTTP 429: rate limited", status=429, retry_after=retry_after, reason="rate_limited"
    )


def down(status: int = 401) -> ProviderUnavailable:
    """The provider cannot serve at all (bad key, no credit): failed over at once."""
    return ProviderUnavailable(f"HTTP {status}: invalid API key", status=status, reason="auth")


def rejected() -> InvalidRequest:
    """The request itself is bad: surfaced to the caller, never failed over."""
    return InvalidRequest("HTTP 400: invalid request", status=400)


def too_long() -> ContextLengthExceeded:
    """Too long for this model: failed over, breaker untouched."""
    return ContextLengthExceeded(
        "HTTP 400: prompt is too long", status=400, reason="context_length"
    )


@dataclass(frozen=True)
class Reply:
    """One scripted answer: after ``delay`` virtual seconds (a stream: ``ttft`` before the
    first token), ``error`` is raised, or ``text`` and ``tool_calls`` (``(name, arguments)``
    pairs or :class:`ToolCall` values) are answered. A stream raises ``error`` after
    ``fail_after`` words when both are set."""

    text: str = "ok"
    tool_calls: Sequence[tuple[str, Mapping[str, Any]] | ToolCall] = ()
    error: ProviderError | None = None
    delay: float = 0.0
    ttft: float = 0.0
    fail_after: int | None = None
    finish_reason: FinishReason | None = None
    usage: Usage | None = None

    def calls(self) -> tuple[ToolCall, ...]:
        out = []
        for i, call in enumerate(self.tool_calls):
            if isinstance(call, ToolCall):
                out.append(call)
            else:
                name, arguments = call
                args = json.dumps(dict(arguments), separators=(",", ":"))
                out.append(ToolCall(f"call_fake{i}", name, args))
        return tuple(out)


@dataclass
class FakeProvider:
    """A provider answering from a script (implements ``failover_cli.protocols.Provider``)."""

    name: str
    script: list[Reply] = field(default_factory=list)
    default: Reply = field(default_factory=Reply)
    clock: Clock | None = None
    kind: Kind = "openai"
    model: str | None = None
    requests: list[CompletionRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.script = list(self.script)
        self.config = ProviderConfig(self.name, self.kind, self.model or f"{self.name}-model")

    @property
    def calls(self) -> int:
        """How many requests this provider was sent."""
        return len(self.requests)

    def _next(self, request: CompletionRequest) -> Reply:
        self.requests.append(request)
        return self.script.pop(0) if self.script else self.default

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            await (self.clock.sleep(seconds) if self.clock else asyncio.sleep(seconds))

    def _raise(self, error: ProviderError) -> None:
        error.provider = self.name
        raise error

    def _finish(self, reply: Reply, calls: tuple[ToolCall, ...]) -> FinishReason:
        return reply.finish_reason or ("tool_calls" if calls else "stop")

    def _usage(self, reply: Reply) -> Usage:
        return reply.usage or Usage(10, max(1, len(reply.text.split())))

    async def complete(self, request: CompletionRequest, *, timeout: float) -> Completion:
        reply = self._next(request)
        await self._sleep(reply.delay)
        if reply.error is not None:
            self._raise(reply.error)
        calls = reply.calls()
        text = "" if calls and reply.text == "ok" else reply.text
        finish = self._finish(reply, calls)
        return Completion(
            text,
            request.model or self.config.model,
            self._usage(reply),
            finish,
            None,
            calls,
            finish,
        )

    async def stream(
        self, request: CompletionRequest, *, timeout: float
    ) -> AsyncIterator[StreamEvent]:
        reply = self._next(request)
        await self._sleep(reply.ttft or reply.delay)
        if reply.error is not None and reply.fail_after is None:
            self._raise(reply.error)
        calls = reply.calls()
        text = "" if calls and reply.text == "ok" else reply.text
        words = text.split(" ") if text else []
        for i, word in enumerate(words):
            if reply.error is not None and reply.fail_after is not None and i >= reply.fail_after:
                self._raise(reply.error)
            yield TextDelta(word if i == 0 else " " + word)
        for index, call in enumerate(calls):
            half = len(call.arguments) // 2
            yield ToolCallDelta(index, call.id, call.name, call.arguments[:half])
            if reply.error is not None and reply.fail_after is not None:
                self._raise(reply.error)  # broken inside a tool call
            yield ToolCallDelta(index, arguments=call.arguments[half:])
        if reply.error is not None:
            self._raise(reply.error)
        finish = self._finish(reply, calls)
        model = request.model or self.config.model
        yield StreamEnd(model, self._usage(reply), finish, None, finish)

    async def health(self, *, deep: bool = False, timeout: float = 5.0) -> HealthResult:
        return HealthResult(self.name, True, 0.0)

    async def aclose(self) -> None:
        pass


def fake_router(
    *providers: FakeProvider,
    clock: Clock | None = None,
    retry: RetryPolicy | None = None,
    breaker: BreakerPolicy | None = None,
    max_wait: float = 0.0,
    **kwargs: Any,
) -> FailoverRouter:
    """A router over ``providers`` in the given order, no state store, no background probes,
    jitter fixed (retries wait ``base_delay`` exactly) and, by default, no waiting when every
    provider is down."""
    config = Config(
        providers=tuple(p.config for p in providers),
        retry=retry or RetryPolicy(),
        breaker=breaker or BreakerPolicy(),
        queue=QueueConfig(max_wait=max_wait),
    )
    kwargs.setdefault("random", lambda: 0.5)
    kwargs.setdefault("background_probes", False)
    if clock is not None:
        kwargs["clock"] = clock
    return FailoverRouter(config, providers=list(providers), **kwargs)
