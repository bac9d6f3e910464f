"""Anthropic Messages API adapter.

Sources:
* Request/response: ``POST /v1/messages`` in Anthropic's OpenAPI spec (CreateMessageParams,
  Message) and https://docs.anthropic.com/en/api/messages. ``content`` is a list of blocks: the
  text of every ``type: text`` block is joined.
* Headers: ``Authorization: Bearer <key>`` and ``anthropic-version: 2026-10-21``, what the
  current SDK sends (anthropic 2.16: ``_client.py`` ``auth_headers``/``_api_key_auth`` and
  ``_constants.py`` ``ANTHROPIC_API_VERSION``; 1.x sent ``x-api-key`` and ``2023-06-01``).
* Streaming: https://docs.anthropic.com/en/api/messages-streaming. SSE events ``message_start``
  (usage.input_tokens), ``content_block_start``/``content_block_delta`` (``text_delta``)/
  ``content_block_stop``, ``message_delta`` (stop_reason, cumulative usage.output_tokens),
  ``message_stop`` (the end); ``ping`` and unknown events are ignored; an ``error`` event may
  follow an HTTP 200. A ``message_delta`` with a ``stop_reason`` is the finish: a body that then
  ends cleanly without ``message_stop`` is complete.
* Errors: https://docs.anthropic.com/en/api/errors. ``{"type": "error", "error": {"type",
  "message"}}``; 529 ``overloaded_error``; a 400 ``invalid_request_error`` "prompt is too long"
  is a context-length error; billing / credit balance errors mean the account cannot serve.
* Prefill: a trailing ``assistant`` message is continued by the model; the API rejects one that
  ends in whitespace ("final assistant content cannot end with trailing whitespace"), so the
  prefix is sent right-stripped. Models without prefill answer a 400 "This model does not
  support assistant message prefill"; ``continuation: instruct`` then asks in a user turn.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import httpx

from ..errors import (
    ContextLengthExceeded,
    InvalidRequest,
    ProviderError,
    ProviderUnavailable,
    TransientError,
)
from ..types import Completion, CompletionRequest, StreamEnd, StreamEvent, TextDelta, Usage
from ._base import BaseProvider, KindDefaults, api_url, turns
from ._http import Call, count, decode_json, drain, is_context_message, label, parsing, text_of

API_VERSION = "2026-10-21"

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
            headers["authorization"] = f"Bearer {key}"
        return headers

    def completion_url(self, *, stream: bool) -> str:
        return api_url(self.base_url, "v1", "messages")

    def health_url(self) -> str:
        return api_url(self.base_url, "v1", "models")

    def body(self, request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        messages = [
            {"role": role, "content": text} for role, text in turns(request, strip_prefill=True)
        ]
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
                text_of(block["text"]) for block in data["content"] if block.get("type") == "text"
            )
            usage = data.get("usage") or {}
            return Completion(
                text=text,
                model=label(data.get("model")) or self.config.model,
                usage=Usage(count(usage.get("input_tokens")), count(usage.get("output_tokens"))),
                stop_reason=label(data.get("stop_reason")),
            )

    async def parse_stream(
        self, call: Call, response: httpx.Response
    ) -> AsyncGenerator[StreamEvent, None]:
        model, stop_reason = self.config.model, None
        input_tokens = output_tokens = 0
        events = self.events(call, response)
        async for name, raw in events:
            if name not in _HANDLED:
                continue  # ping and event types added after this adapter was written
            data = decode_json(call, raw)
            text = ""
            with parsing(call):
                kind = data.get("type") or name
                if name == "error" or kind == "error":
                    raise _stream_error(call, data.get("error"))
                if kind == "message_start":
                    message = data["message"]
                    model = label(message.get("model")) or model
                    usage = message.get("usage") or {}
                    input_tokens = count(usage.get("input_tokens"))
                    output_tokens = count(usage.get("output_tokens"))
                elif kind == "content_block_start":
                    block = data.get("content_block") or {}
                    text = text_of(block.get("text")) if block.get("type") == "text" else ""
                elif kind == "content_block_delta":
                    delta = data["delta"]
                    text = text_of(delta["text"]) if delta.get("type") == "text_delta" else ""
                elif kind == "message_delta":
                    reason = (data.get("delta") or {}).get("stop_reason")
                    stop_reason = label(reason) or stop_reason
                    usage = data.get("usage") or {}
                    # Cumulative counts: a 0 here is a real 0, not a missing value.
                    output_tokens = count(usage.get("output_tokens"), output_tokens)
                    input_tokens = count(usage.get("input_tokens"), input_tokens)
            if text:
                yield TextDelta(text)
            if kind == "message_stop":
                await drain(events)
                break
        else:
            if stop_reason is None:
                return  # the body ended before the message reported its finish: truncated
        yield StreamEnd(model, Usage(input_tokens, output_tokens), stop_reason)


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


def _stream_error(call: Call, error: Any) -> ProviderError:
    """An ``error`` event after HTTP 200: always transient (the stream broke, not the request)."""
    message, verdict = error_verdict(error)
    reason = verdict[1] if verdict and verdict[0] is TransientError else "stream_error"
    return call.error(TransientError, message or "error event in stream", reason=reason)
