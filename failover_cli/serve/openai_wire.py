"""OpenAI Chat Completions on the gateway: ``POST /v1/chat/completions`` bodies in,
``chat.completion`` objects, ``chat.completion.chunk`` streams and errors out.

Sources: the official SDK, openai 3.57 (``types/chat/completion_create_params.py``,
``chat_completion.py``, ``chat_completion_chunk.py``, ``completion_usage.py``, and
``_streaming.py``: a ``data: {"error": ...}`` event raises ``APIError``, ``data: [DONE]`` ends a
stream), the vendored spec (tests/specs/openai-chat-completions.openapi.json) and the
simulator's notes (failover_cli/sim/openai.py) for error bodies.

Requests. The messages, tools, ``tool_choice``, ``response_format`` and ``stop`` are the
router's own shapes and are checked once here (a 400 names the field as the API does:
``messages[2].content``). ``max_completion_tokens`` (else ``max_tokens``, else
:data:`DEFAULT_MAX_TOKENS`), ``temperature`` (0 to 2), ``top_p`` (0 to 1). Sent on to
OpenAI-kind providers only, as ``extra``: ``seed``, ``frequency_penalty``,
``presence_penalty``, and ``parallel_tool_calls`` when tools are offered. Ignored (nothing
portable to do with them): ``user``, ``metadata``, ``store``, ``service_tier``, ``logprobs``,
``top_logprobs``, ``logit_bias``, ``prediction``, ``reasoning_effort``, ``verbosity``,
``prompt_cache_key`` and other fields. Refused with a 400: ``n`` other than 1, the deprecated
``functions``/``function_call``, and audio output. LiteLLM's ``fallbacks`` is read (see
:func:`~.wire.fallbacks_of`).

Streams: a first chunk with the role, ``content`` deltas, ``tool_calls`` deltas (the first of
a call with ``index``, ``id``, ``type`` and ``function.name``, then ``function.arguments``
fragments), a last chunk with an empty delta and the ``finish_reason``, with
``include_usage`` a chunk with empty ``choices`` and the usage (every earlier chunk then
carries ``"usage": null``, as the API sends them), then ``data: [DONE]``. When the answer
cannot be finished (every provider failed, or a provider restarted an answer the client has
already partly received) the stream ends with an ``error`` chunk and never ``[DONE]``.

Refusals (an OpenAI provider's ``refusal``) are answered as the API does: ``content`` null,
``refusal`` the text (``delta.refusal`` in streams), ``finish_reason`` ``stop``; so the SDK's
structured-output helpers give ``parsed`` None and the refusal. Any other answer the
router reports as ``content_filter`` keeps that finish reason and its text as ``content``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ..types import RouteResult, ToolCallDelta, Usage
from .wire import (
    MAX_TOKENS,
    GatewayRequest,
    StreamWriter,
    WireError,
    call_id,
    dumps,
    error_for,
    fallbacks_of,
    finish_of,
    flag,
    guarded,
    json_string,
    load_object,
    model_of,
    number,
    response_id,
    stop_list,
    validated,
    whole,
)

__all__ = [
    "error_for",
    "parse_request",
    "render_error",
    "render_response",
    "render_stream",
]

DEFAULT_MAX_TOKENS = 4096  # when the client gives no limit (the API's is the model's own)
_REFUSED = {
    "functions": "functions: deprecated and not supported here; use tools",
    "function_call": "function_call: deprecated and not supported here; use tool_choice",
    "audio": "audio: audio output is not supported by this gateway",
}
# kind -> (OpenAI error type, code)
_TYPES: dict[str, tuple[str, str | None]] = {
    "invalid_request_error": ("invalid_request_error", None),
    "authentication_error": ("invalid_request_error", "invalid_api_key"),
    "permission_error": ("invalid_request_error", None),
    "not_found_error": ("invalid_request_error", None),
    "request_too_large": ("invalid_request_error", "request_too_large"),
    "rate_limit_error": ("requests", "rate_limit_exceeded"),
    "overloaded_error": ("server_error", None),
    "timeout_error": ("server_error", None),
    "api_error": ("server_error", None),
}
_DONE = b"data: [DONE]\n\n"
_TEXT_TAIL = b'},"logprobs":null,"finish_reason":null}]}\n\n'  # a text chunk's, after its delta


def parse_request(
    body: bytes, *, max_messages: int = 5000, default_max_tokens: int = DEFAULT_MAX_TOKENS
) -> GatewayRequest:
    """The request ``body`` asks for; WireError(400) naming the field on anything invalid."""
    data = load_object(body, "We could not parse the JSON body of your request.")
    model = model_of(data, "you must provide a model parameter")
    messages = data.get("messages")
    if messages is None:
        raise WireError(400, "Missing required parameter: 'messages'.", param="messages")
    if not isinstance(messages, list):
        raise WireError(400, "messages: must be an array", param="messages")
    if not messages:
        raise WireError(
            400,
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but "
            "got an empty array instead.",
            param="messages",
        )
    if len(messages) > max_messages:
        raise WireError(400, f"messages: at most {max_messages} messages", param="messages")
    for i, message in enumerate(messages):
        # failover_cli.messages looks a role up in a set: an unhashable one would be a
        # TypeError there, not a ValueError.
        if isinstance(message, dict) and not isinstance(message.get("role"), str | None):
            raise WireError(400, f"messages[{i}].role: must be a string",
                            param=f"messages[{i}].role")  # fmt: skip
    for name, problem in _REFUSED.items():
        if data.get(name) is not None:
            raise WireError(400, problem, param=name)
    modalities = data.get("modalities")
    if isinstance(modalities, list) and "audio" in modalities:
        raise WireError(
            400, "modalities: audio output is not supported by this gateway", param="modalities"
        )
    n = data.get("n")
    if n is not None and (isinstance(n, bool) or n != 1):
        raise WireError(400, "n: only 1 choice is supported by this gateway", param="n")
    stream = flag(data, "stream")
    include_usage = False
    options = data.get("stream_options")
    if options is not None:
        if not stream:
            raise WireError(
                400,
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
            )
        if not isinstance(options, dict):
            raise WireError(400, "stream_options: must be an object", param="stream_options")
        usage = options.get("include_usage")
        if usage is not None and not isinstance(usage, bool):
            raise WireError(
                400,
                "stream_options.include_usage: must be a boolean",
                param="stream_options.include_usage",
            )
        include_usage = bool(usage)
    limit = data.get("max_completion_tokens")
    limit_name = "max_completion_tokens"
    if limit is None:
        limit, limit_name = data.get("max_tokens"), "max_tokens"
    kwargs: dict[str, Any] = {
        "messages": messages,
        "max_tokens": default_max_tokens
        if limit is None
        else whole(limit, limit_name, high=MAX_TOKENS),
        "temperature": number(data, "temperature", 0, 2),
        "top_p": number(data, "top_p", 0, 1),
        "stop": stop_list(data.get("stop"), "stop"),
        "tools": data.get("tools"),
        "tool_choice": data.get("tool_choice"),
        "response_format": data.get("response_format"),
    }
    kwargs, request = validated(kwargs)
    extra = _extra(data, bool(kwargs.get("tools")))
    if extra:
        kwargs["extra"] = {"openai": extra}
    return GatewayRequest(model, stream, kwargs, request, include_usage, fallbacks_of(data))


def _extra(data: dict[str, Any], tools: bool) -> dict[str, Any]:
    """The OpenAI-only fields sent on to OpenAI-kind providers."""
    out: dict[str, Any] = {}
    seed = data.get("seed")
    if seed is not None:
        out["seed"] = whole(seed, "seed", low=-(2**63))
    for name in ("frequency_penalty", "presence_penalty"):
        value = number(data, name, -2, 2)
        if value is not None:
            out[name] = value
    if tools and data.get("parallel_tool_calls") is not None:
        out["parallel_tool_calls"] = flag(data, "parallel_tool_calls")
    return out


# --- answers ----------------------------------------------------------------------------------


def render_response(result: RouteResult, *, model: str, request_id: str, created: int) -> bytes:
    """``result`` as a ``chat.completion`` body."""
    seen: set[str] = set()
    calls = [
        {
            "id": call_id("call_", c.id, request_id, i, seen, foreign=True),
            "type": "function",
            "function": {"name": c.name, "arguments": c.arguments},
        }
        for i, c in enumerate(result.calls)
    ]
    refused = result.refused and not calls
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if refused else result.text if result.text or not calls else None,
        "refusal": result.text if refused else None,
        "annotations": [],
    }
    if calls:
        message["tool_calls"] = calls
    return dumps(
        {
            "id": response_id("chatcmpl-", request_id),
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "stop" if refused else finish_of(result),
                }
            ],
            "usage": usage_of(result.usage),
            "system_fingerprint": None,
        }
    )


def usage_of(usage: Usage) -> dict[str, Any]:
    """Our usage in OpenAI's words (``prompt_tokens`` counts cached tokens too)."""
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def render_stream(
    events: AsyncIterator[Any],
    *,
    model: str,
    request_id: str,
    created: int,
    include_usage: bool = False,
) -> AsyncIterator[bytes]:
    """The SSE frames of a ``chat.completion.chunk`` stream for the router's typed
    ``events`` (see the module docstring), one frame per item."""
    return guarded(events, _Chunks(model, request_id, created, include_usage))


class _Chunks(StreamWriter):
    """One ``chat.completion.chunk`` stream: every chunk shares its head (id, model, ...)."""

    def __init__(self, model: str, request_id: str, created: int, include_usage: bool) -> None:
        self.base: dict[str, Any] = {
            "id": response_id("chatcmpl-", request_id),
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
        }
        if include_usage:
            self.base["usage"] = None
        self.include_usage = include_usage
        self.request_id = request_id
        self.head = b""
        self.seen: set[str] = set()
        self.ids: dict[int, str] = {}  # tool-call index -> its id
        self.refused = False  # refusal deltas were sent

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        tail = b',"logprobs":null,"finish_reason":' + dumps(finish) + b"}]}\n\n"
        return b"data: " + self.head + dumps(delta) + tail

    def start(self) -> list[bytes]:
        self.head = dumps(self.base)[:-1] + b',"choices":[{"index":0,"delta":'
        return [self.chunk({"role": "assistant", "content": "", "refusal": None})]

    def text(self, text: str) -> bytes:  # self.chunk({"content": text}), templated
        return b"data: " + self.head + b'{"content":' + json_string(text) + _TEXT_TAIL

    def refusal(self, text: str) -> bytes:
        self.refused = True
        return self.chunk({"refusal": text})

    def tool(self, delta: ToolCallDelta) -> bytes:
        piece: dict[str, Any] = {"index": delta.index}
        if delta.index not in self.ids:
            self.ids[delta.index] = call_id(
                "call_", delta.id, self.request_id, delta.index, self.seen, foreign=True
            )
            piece["id"] = self.ids[delta.index]
            piece["type"] = "function"
            piece["function"] = {"name": delta.name or "", "arguments": delta.arguments}
        else:
            piece["function"] = {"arguments": delta.arguments}
        return self.chunk({"tool_calls": [piece]})

    def done(self, result: RouteResult) -> list[bytes]:
        finish = finish_of(result)
        if self.refused and finish == "content_filter":  # OpenAI's refusals end with stop
            finish = "stop"
        frames = [self.chunk({}, finish)]
        if self.include_usage:
            usage = {**self.base, "choices": [], "usage": usage_of(result.usage)}
            frames.append(b"data: " + dumps(usage) + b"\n\n")
        frames.append(_DONE)
        return frames

    def error(self, err: WireError) -> bytes:
        return render_error_event(err)


# --- errors -----------------------------------------------------------------------------------


def _error_object(err: WireError) -> dict[str, Any]:
    kind, code = _TYPES.get(err.kind, ("server_error", None))
    if err.kind == "not_found_error" and err.param == "model":
        code = "model_not_found"
    return {"message": err.message, "type": kind, "param": err.param, "code": code}


def render_error(err: WireError, request_id: str | None = None) -> bytes:
    """``{"error": {"message", "type", "param", "code"}}`` (OpenAI's bodies carry no request
    id: it is in the ``x-request-id`` header)."""
    return dumps({"error": _error_object(err)})


def render_error_event(err: WireError) -> bytes:
    """The error as a stream's last event (what the SDK raises ``APIError`` on)."""
    return b"data: " + render_error(err) + b"\n\n"
