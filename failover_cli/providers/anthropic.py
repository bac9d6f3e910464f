"""Anthropic Messages API adapter.

Sources:
* Request/response: ``POST /v1/messages`` in Anthropic's OpenAPI spec (CreateMessageParams,
  Message; headers ``x-api-key`` and ``anthropic-version: 2023-06-01``) and
  https://docs.anthropic.com/en/api/messages. ``content`` is a list of blocks: the text of every
  ``type: text`` block is joined.
* Streaming: https://docs.anthropic.com/en/api/messages-streaming. SSE events ``message_start``
  (usage.input_tokens), ``content_block_start``/``content_block_delta`` (``text_delta``)/
  ``content_block_stop``, ``message_delta`` (stop_reason, cumulative usage.output_tokens),
  ``message_stop`` (the end); ``ping`` and unknown events are ignored; an ``error`` event may
  follow an HTTP 200.
* Errors: https://docs.anthropic.com/en/api/errors. ``{"type": "error", "error": {"type",
  "message"}}``; 529 ``overloaded_error``; a 400 ``invalid_request_error`` "prompt is too long"
  is a context-length error; billing / credit balance errors mean the account cannot serve.
* Prefill: a trailing ``assistant`` message is continued by the model; the API rejects one that
  ends in whitespace ("final assistant content cannot end with trailing whitespace"), so the
  prefix is sent right-stripped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
from httpx_sse import EventSource

from ..errors import (
    ContextLengthExceeded,
    InvalidRequest,
    ProviderError,
    ProviderUnavailable,
    TransientError,
)
from ..types import Completion, CompletionRequest, StreamEnd, StreamEvent, TextDelta, Usage
from ._base import BaseProvider, KindDefaults, api_url
from ._http import Call, bounded, decode_json, drain, is_context_message, parsing

API_VERSION = "2023-06-01"

_BY_TYPE: dict[str, tuple[type[ProviderError], str]] = {
    "rate_limit_error": (TransientError, "rate_limited"),
    "overloaded_error": (TransientError, "overloaded"),
    "timeout_error": (TransientError, "timeout"),
    "authentication_error": (ProviderUnavailable, "auth"),
    "permission_error": (ProviderUnavailable, "auth"),
    "not_found_error": (ProviderUnavailable, "model_not_found"),
    "billing_error": (ProviderUnavailable, "quota"),
    "request_too_large": (InvalidRequest, "invalid_request"),
}
_QUOTA_WORDS = ("credit balance", "billing", "spend limit", "usage limit")


def error_verdict(error: Any) -> tuple[str, tuple[type[ProviderError], str] | None]:
    """Message and class of an Anthropic ``error`` object, branching on ``error.type``."""
    if not isinstance(error, dict):
        return "", None
    etype = str(error.get("type") or "")
    message = str(error.get("message") or "")
    lowered = message.lower()
    details = error.get("details")
    code = details.get("error_code") if isinstance(details, dict) else None
    text = f"{message} ({etype})" if etype else message
    if code == "enforced_spend_limit_reached" or any(w in lowered for w in _QUOTA_WORDS):
        return text, (ProviderUnavailable, "quota")
    if etype == "invalid_request_error" and is_context_message(message):
        return text, (ContextLengthExceeded, "context_length")
    return text, _BY_TYPE.get(etype)


class AnthropicProvider(BaseProvider):
    defaults = KindDefaults.of("anthropic")

    def headers(self, key: str | None) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION}
        if key:
            headers["x-api-key"] = key
        return headers

    def completion_url(self, *, stream: bool) -> str:
        return api_url(self.base_url, "v1", "messages")

    def health_url(self) -> str:
        return api_url(self.base_url, "v1", "models")

    def body(self, request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        messages: list[dict[str, Any]] = [{"role": "user", "content": request.prompt}]
        prefix = (request.assistant_prefix or "").rstrip()
        if prefix:
            messages.append({"role": "assistant", "content": prefix})
        body: dict[str, Any] = {
            "model": self.config.model,
            "max_tokens": request.max_tokens,
            "messages": messages,
            "stream": stream,
        }
        if request.system:
            body["system"] = request.system
        if request.temperature is not None:
            body["temperature"] = request.temperature
        return body

    def error_verdict(self, status: int, body: Any) -> tuple[str, Any]:
        return error_verdict(body.get("error") if isinstance(body, dict) else None)

    def parse_completion(self, call: Call, data: Any) -> Completion:
        with parsing(call):
            if data.get("type") == "error":
                raise _stream_error(call, data.get("error"))
            text = "".join(
                block["text"] for block in data["content"] if block.get("type") == "text"
            )
            usage = data.get("usage") or {}
            return Completion(
                text=text,
                model=data.get("model") or self.config.model,
                usage=Usage(
                    int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
                ),
                stop_reason=data.get("stop_reason"),
            )

    async def parse_stream(
        self, call: Call, response: httpx.Response, deadline: float
    ) -> AsyncIterator[StreamEvent]:
        model, stop_reason = self.config.model, None
        input_tokens = output_tokens = 0
        events = bounded(EventSource(response).aiter_sse(), deadline)
        async for sse in events:
            if sse.event not in _HANDLED:
                continue  # ping and event types added after this adapter was written
            data = decode_json(call, sse.data)
            text = None
            with parsing(call):
                kind = data.get("type") or sse.event
                if sse.event == "error" or kind == "error":
                    raise _stream_error(call, data.get("error"))
                if kind == "message_start":
                    message = data["message"]
                    model = message.get("model") or model
                    usage = message.get("usage") or {}
                    input_tokens = int(usage.get("input_tokens") or 0)
                    output_tokens = int(usage.get("output_tokens") or 0)
                elif kind == "content_block_start":
                    block = data.get("content_block") or {}
                    text = block.get("text") if block.get("type") == "text" else None
                elif kind == "content_block_delta":
                    delta = data["delta"]
                    text = delta["text"] if delta.get("type") == "text_delta" else None
                elif kind == "message_delta":
                    stop_reason = (data.get("delta") or {}).get("stop_reason") or stop_reason
                    usage = data.get("usage") or {}
                    # Cumulative counts: a 0 here is a real 0, not a missing value.
                    output_tokens = _count(usage.get("output_tokens"), output_tokens)
                    input_tokens = _count(usage.get("input_tokens"), input_tokens)
            if text:
                yield TextDelta(text)
            if kind == "message_stop":
                await drain(events)
                yield StreamEnd(model, Usage(input_tokens, output_tokens), stop_reason)
                return


_HANDLED = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "message_delta",
        "message_stop",
        "error",
    }
)


def _count(value: Any, default: int) -> int:
    return default if value is None else int(value)


def _stream_error(call: Call, error: Any) -> ProviderError:
    """An ``error`` event after HTTP 200: always transient (the stream broke, not the request)."""
    message, verdict = error_verdict(error)
    reason = verdict[1] if verdict and verdict[0] is TransientError else "stream_error"
    return call.error(TransientError, message or "error event in stream", reason=reason)
