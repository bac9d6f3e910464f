"""Plain data shared by every layer: provider configuration, requests, results and events.

Nothing here does I/O or imports another ``failover_cli`` module except :mod:`chat` (the
typed chat values requests carry).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import field
from enum import StrEnum
from typing import Any, Literal

from .chat import FinishReason, Message, ResponseFormat, TextPart, Tool, ToolCall, ToolChoice
from .messages import Messages
from .records import frozen

KINDS = ("anthropic", "openai", "ollama", "gemini")
Kind = Literal["anthropic", "openai", "ollama", "gemini"]


class ErrorClass(StrEnum):
    """What a failure means for routing (see :mod:`failover_cli.errors`)."""

    TRANSIENT = "transient"  # retry here with backoff, then fail over; counts against the breaker
    PROVIDER = "provider"  # fail over at once; opens the breaker with the long cooldown
    REQUEST = "request"  # the request itself is bad: surface it, never fail over
    CONTEXT_LENGTH = "context_length"  # too long for this model: fail over; breaker untouched


@frozen
class Cost:
    """Price in USD per million tokens."""

    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0
    cached_input_per_mtok: float | None = None  # None: cached input costs the input price

    @property
    def per_mtok(self) -> float:
        """Input plus output price: what scoring compares."""
        return self.input_per_mtok + self.output_per_mtok

    def usd(self, usage: Usage) -> float:
        cached = min(usage.cached_input_tokens, usage.input_tokens)
        cached_price = (
            self.input_per_mtok
            if self.cached_input_per_mtok is None
            else self.cached_input_per_mtok
        )
        return (
            (usage.input_tokens - cached) * self.input_per_mtok
            + cached * cached_price
            + usage.output_tokens * self.output_per_mtok
        ) / 1_000_000


Continuation = Literal["auto", "prefill", "instruct", "restart"]


@frozen
class CapabilityOverrides:
    """``providers[].capabilities``: what this provider takes, where the built-in table (see
    :mod:`failover_cli.capabilities`) is wrong for it. None keeps the table's answer."""

    tools: bool | None = None
    vision: bool | None = None
    json_schema: bool | None = None
    prefill: bool | None = None


@frozen
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
    capabilities: CapabilityOverrides | None = None


@frozen
class Usage:
    """Tokens of one answer. ``input_tokens`` counts every input token, cached ones included;
    ``cached_input_tokens`` is the part read from a prompt cache, ``reasoning_tokens`` the part
    of ``output_tokens`` spent thinking (where the provider reports them)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )

    def to_dict(self) -> dict[str, int]:
        out = {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}
        if self.cached_input_tokens:
            out["cached_input_tokens"] = self.cached_input_tokens
        if self.reasoning_tokens:
            out["reasoning_tokens"] = self.reasoning_tokens
        return out


@frozen
class CompletionRequest:
    """What the caller asks for.

    The conversation is ``system`` (if any), then ``messages``, then ``prompt`` as a last user
    turn (if not empty). ``assistant_prefix`` carries a partial answer to continue;
    ``continuation`` says how the adapter sends it: ``prefill`` as a last assistant turn the
    model extends, ``instruct`` as an assistant turn followed by a user turn asking the model
    to continue exactly where it stops. ``extra`` is merged into the provider's request body
    as it is (the router picks the entry for the provider's name or kind): unportable.
    Adapters send ``model`` when set, else the provider's configured model.
    """

    prompt: str = ""
    max_tokens: int = 1024
    system: str | None = None
    temperature: float | None = None
    assistant_prefix: str | None = None
    continuation: Literal["prefill", "instruct"] = "prefill"
    messages: Sequence[Message] = ()  # a Messages from build_request, or typed values
    tools: Sequence[Tool] = ()  # a Tools from build_request, or typed values
    tool_choice: ToolChoice | None = None
    response_format: ResponseFormat | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    extra: Mapping[str, Any] | None = None
    model: str | None = None  # this call's model, instead of the provider's configured one

    @property
    def uses_tools(self) -> bool:
        """Whether the request offers tools or carries earlier tool calls."""
        if self.tools:
            return True
        if type(self.messages) is Messages:
            return self.messages.uses_tools
        return any(m.tool_calls or m.role == "tool" for m in self.messages)

    @property
    def has_images(self) -> bool:
        if type(self.messages) is Messages:
            return self.messages.has_images
        return any(m.images for m in self.messages)

    @property
    def url_images(self) -> bool:
        """Whether an image is sent by URL (not inline)."""
        if type(self.messages) is Messages:
            return self.messages.url_images
        return any(p.url is not None for m in self.messages for p in m.images)

    @property
    def image_types(self) -> frozenset[str]:
        """The media types of the inline images."""
        if type(self.messages) is Messages:
            return self.messages.image_types
        return frozenset(
            p.media_type for m in self.messages for p in m.images if p.media_type is not None
        )

    def text_chars(self) -> int:
        """Characters of text the model reads (a stand-in for the prompt's length)."""
        chars = len(self.prompt) + len(self.system or "") + len(self.assistant_prefix or "")
        if type(self.messages) is Messages:
            return chars + self.messages.text_chars
        for m in self.messages:
            for part in m.content:
                if type(part) is TextPart:
                    chars += len(part.text)
            for call in m.tool_calls:
                chars += len(call.arguments)
        return chars


@frozen
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


@frozen
class Completion:
    """A whole answer from one provider (what an adapter's ``complete`` returns).
    ``stop_reason`` is the provider's own word, ``finish_reason`` it in OpenAI's."""

    text: str
    model: str
    usage: Usage = Usage()
    stop_reason: str | None = None
    ratelimit: RateLimit | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: FinishReason | None = None
    stop_sequence: str | None = None  # which of the request's ``stop`` ended it, if known
    refused: bool = False  # ``text`` is the model's refusal (OpenAI's ``message.refusal``)


@frozen
class TextDelta:
    """A piece of streamed answer text; ``refusal``: of the model's refusal (OpenAI's
    ``delta.refusal``)."""

    text: str
    refusal: bool = False


@frozen
class ToolCallDelta:
    """A piece of a streamed tool call: the ``index``-th call of the answer. Its first piece
    carries ``id`` and ``name``; ``arguments`` fragments concatenate to its JSON text."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@frozen
class StreamEnd:
    """The terminal event of a well-formed stream: final usage, stop reason, model."""

    model: str
    usage: Usage = Usage()
    stop_reason: str | None = None
    ratelimit: RateLimit | None = None
    finish_reason: FinishReason | None = None
    stop_sequence: str | None = None


StreamEvent = TextDelta | ToolCallDelta | StreamEnd


@frozen
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


@frozen
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


@frozen
class Segment:
    """A stretch of the answer written by one provider (more than one after a mid-stream seam)."""

    provider: str
    model: str
    text: str


@frozen
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
    finish_reason: FinishReason | None = None
    calls: tuple[ToolCall, ...] = ()
    stop_sequence: str | None = None  # which of the request's ``stop`` ended it, if known
    refused: bool = False  # ``text`` is the model's refusal (OpenAI's ``message.refusal``)

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        """The tool calls in OpenAI's shape: ``{"id", "type": "function", "function":
        {"name", "arguments"}}`` with ``arguments`` as JSON text."""
        return [c.to_dict() for c in self.calls]

    @property
    def message(self) -> dict[str, Any]:
        """The assistant message in OpenAI Chat Completions shape."""
        out: dict[str, Any] = {
            "role": "assistant",
            "content": self.text if self.text or not self.calls else None,
        }
        if self.calls:
            out["tool_calls"] = self.tool_calls
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "text": self.text,
            "message": self.message,
            "finish_reason": self.finish_reason,
            "provider": self.provider,
            "model": self.model,
            "usage": self.usage.to_dict(),
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


@frozen
class StreamDone:
    """The last event of :meth:`RouteStream.events`: the whole answer's result."""

    result: RouteResult

    @property
    def usage(self) -> Usage:
        return self.result.usage

    @property
    def finish_reason(self) -> FinishReason | None:
        return self.result.finish_reason


# --- events emitted by the router to listeners (route trace, store recorder) ----------------


@frozen
class AttemptStarted:
    provider: str
    attempt: int  # 1-based try on this provider


@frozen
class AttemptFailed:
    provider: str
    error_class: ErrorClass
    status: int | None
    message: str
    duration_ms: float
    will_retry: bool
    retry_in: float | None = None


@frozen
class AttemptSucceeded:
    provider: str
    latency_ms: float
    ttft_ms: float | None
    usage: Usage


@frozen
class ProviderSkipped:
    provider: str
    reason: str


@frozen
class BreakerTransition:
    provider: str
    old: str
    new: str
    open_until: float | None  # wall-clock epoch seconds


@frozen
class StreamSwitched:
    """A stream broke mid-answer and ``new`` takes over. ``strategy`` is how: ``prefill`` or
    ``instruct`` continue after the ``kept`` characters already delivered; ``restart`` means
    the answer starts again from nothing, and what was delivered should be discarded."""

    old: str
    new: str
    strategy: Literal["prefill", "instruct", "restart"]
    kept: int


@frozen
class ParameterAdjusted:
    """The router changed a request parameter for one provider: dropped or clamped it."""

    provider: str
    parameter: str
    action: Literal["dropped", "clamped"]
    reason: str


@frozen
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
