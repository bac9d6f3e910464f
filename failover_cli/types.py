"""Plain data shared by every layer: provider configuration, requests, results and events.

Nothing here does I/O or imports another ``failover_cli`` module except :mod:`errors`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

KINDS = ("anthropic", "openai", "ollama", "gemini")
Kind = Literal["anthropic", "openai", "ollama", "gemini"]


class ErrorClass(StrEnum):
    """What a failure means for routing (see :mod:`failover_cli.errors`)."""

    TRANSIENT = "transient"  # retry here with backoff, then fail over; counts against the breaker
    PROVIDER = "provider"  # fail over at once; opens the breaker with the long cooldown
    REQUEST = "request"  # the request itself is bad: surface it, never fail over
    CONTEXT_LENGTH = "context_length"  # too long for this model: fail over; breaker untouched


@dataclass(frozen=True, slots=True)
class Cost:
    """Price in USD per million tokens."""

    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0

    @property
    def per_mtok(self) -> float:
        """Input plus output price: what scoring compares."""
        return self.input_per_mtok + self.output_per_mtok

    def usd(self, usage: Usage) -> float:
        return (
            usage.input_tokens * self.input_per_mtok + usage.output_tokens * self.output_per_mtok
        ) / 1_000_000


Continuation = Literal["auto", "prefill", "instruct", "restart"]


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """One link of the chain, as written in ``providers.yaml``.

    Four clocks bound an attempt: ``connect_timeout`` (TCP and TLS), ``first_token_timeout``
    (to the first token of a stream, or to the response head of a non-streamed call),
    ``idle_timeout`` (the longest gap between two stream events) and ``timeout`` (the whole
    attempt, long enough for a long answer).
    """

    name: str
    kind: Kind
    model: str
    base_url: str | None = None
    api_key_env: str | None = None
    timeout: float = 300.0
    connect_timeout: float = 5.0
    first_token_timeout: float = 10.0
    idle_timeout: float = 15.0
    priority: int | None = None
    cost: Cost | None = None
    # How a stream broken mid-answer is continued here (see failover_cli.capabilities).
    continuation: Continuation = "auto"
    # Request parameters never sent to this provider (LiteLLM calls this drop_params).
    drop_params: tuple[str, ...] = ()
    # Network: an explicit proxy URL (else the *_PROXY environment variables), a CA bundle
    # file added to the system trust store, ``verify: false`` (never for a cloud API), and
    # extra headers sent with every request (OpenRouter's HTTP-Referer, Azure's api-key).
    proxy: str | None = None
    ca_bundle: str | None = None
    verify: bool = True
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens
        )


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """What the caller asks for. ``assistant_prefix`` carries a partial answer to continue;
    ``continuation`` says how the adapter sends it: ``prefill`` as a last assistant turn the
    model extends, ``instruct`` as an assistant turn followed by a user turn asking the model
    to continue exactly where it stops."""

    prompt: str
    max_tokens: int = 1024
    system: str | None = None
    temperature: float | None = None
    assistant_prefix: str | None = None
    continuation: Literal["prefill", "instruct"] = "prefill"


@dataclass(frozen=True, slots=True)
class RateLimit:
    """What a provider's rate-limit headers said on one response (None: not reported).
    Resets are wall-clock epoch seconds."""

    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    requests_reset_at: float | None = None
    tokens_reset_at: float | None = None

    @property
    def exhausted_until(self) -> float | None:
        """When an exhausted budget refills; None when nothing reported is exhausted."""
        resets = [
            reset
            for remaining, reset in (
                (self.remaining_requests, self.requests_reset_at),
                (self.remaining_tokens, self.tokens_reset_at),
            )
            if remaining == 0 and reset is not None
        ]
        return max(resets) if resets else None


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole answer from one provider (what an adapter's ``complete`` returns)."""

    text: str
    model: str
    usage: Usage = Usage()
    stop_reason: str | None = None
    ratelimit: RateLimit | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of streamed answer text."""

    text: str


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The terminal event of a well-formed stream: final usage, stop reason, model."""

    model: str
    usage: Usage = Usage()
    stop_reason: str | None = None
    ratelimit: RateLimit | None = None


StreamEvent = TextDelta | StreamEnd


@dataclass(frozen=True, slots=True)
class HealthResult:
    """One provider's health check. ``error`` is already scrubbed of secrets."""

    provider: str
    ok: bool
    latency_ms: float
    error: str | None = None
    error_class: ErrorClass | None = None
    status: int | None = None
    checked_at: float = 0.0  # wall-clock epoch seconds


Outcome = Literal["ok", "failed", "skipped"]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try (or skip) of one provider during a route."""

    provider: str
    outcome: Outcome
    error_class: ErrorClass | None = None
    status: int | None = None
    message: str = ""
    duration_ms: float = 0.0
    ttft_ms: float | None = None
    reason: str | None = None  # the failure's machine word ("no_key", "stall", ...), if any

    def to_dict(self) -> dict[str, object]:
        return {
            "provider": self.provider,
            "outcome": self.outcome,
            "class": self.error_class.value if self.error_class else None,
            "status": self.status,
            "message": self.message,
            "duration_ms": round(self.duration_ms, 3),
        }


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of the answer written by one provider (more than one after a mid-stream seam)."""

    provider: str
    model: str
    text: str


@dataclass(frozen=True, slots=True)
class RouteResult:
    """The answer the router returns, with everything that happened on the way."""

    text: str
    provider: str
    model: str
    usage: Usage
    cost: float | None
    latency_ms: float
    ttft_ms: float | None
    attempts: tuple[Attempt, ...]
    segments: tuple[Segment, ...] = field(default=())
    stop_reason: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "text": self.text,
            "provider": self.provider,
            "model": self.model,
            "usage": {
                "input_tokens": self.usage.input_tokens,
                "output_tokens": self.usage.output_tokens,
            },
            "cost_usd": self.cost,
            "latency_ms": round(self.latency_ms, 3),
            "ttft_ms": None if self.ttft_ms is None else round(self.ttft_ms, 3),
            "stop_reason": self.stop_reason,
            "attempts": [a.to_dict() for a in self.attempts],
            "segments": [
                {"provider": s.provider, "model": s.model, "chars": len(s.text)}
                for s in self.segments
            ],
        }


# --- events emitted by the router to listeners (route trace, store recorder) ----------------


@dataclass(frozen=True, slots=True)
class AttemptStarted:
    provider: str
    attempt: int  # 1-based try on this provider


@dataclass(frozen=True, slots=True)
class AttemptFailed:
    provider: str
    error_class: ErrorClass
    status: int | None
    message: str
    duration_ms: float
    will_retry: bool
    retry_in: float | None = None


@dataclass(frozen=True, slots=True)
class AttemptSucceeded:
    provider: str
    latency_ms: float
    ttft_ms: float | None
    usage: Usage


@dataclass(frozen=True, slots=True)
class ProviderSkipped:
    provider: str
    reason: str


@dataclass(frozen=True, slots=True)
class BreakerTransition:
    provider: str
    old: str
    new: str
    open_until: float | None  # wall-clock epoch seconds


@dataclass(frozen=True, slots=True)
class StreamSwitched:
    """A stream broke mid-answer and ``new`` takes over. ``strategy`` is how: ``prefill`` or
    ``instruct`` continue after the ``kept`` characters already delivered; ``restart`` means
    the answer starts again from nothing, and what was delivered should be discarded."""

    old: str
    new: str
    strategy: Literal["prefill", "instruct", "restart"]
    kept: int


@dataclass(frozen=True, slots=True)
class ParameterAdjusted:
    """The router changed a request parameter for one provider: dropped or clamped it."""

    provider: str
    parameter: str
    action: Literal["dropped", "clamped"]
    reason: str


@dataclass(frozen=True, slots=True)
class Queued:
    """Every usable provider is down: the request waits until ``until`` (epoch seconds)."""

    until: float
    position: int


Event = (
    AttemptStarted
    | AttemptFailed
    | AttemptSucceeded
    | ProviderSkipped
    | BreakerTransition
    | Queued
    | StreamSwitched
    | ParameterAdjusted
)
