"""OpenAI Chat Completions adapter (also any OpenAI-compatible server: vLLM, llama.cpp, ...).

Sources:
* Request/response: ``POST /v1/chat/completions`` in OpenAI's OpenAPI spec as vendored by
  openai/openai-python (CreateChatCompletionRequest: ``messages``, ``max_tokens``,
  ``temperature``, ``stream``, ``stream_options``; CreateChatCompletionResponse) and
  https://platform.openai.com/docs/api-reference/chat.
* Streaming: https://platform.openai.com/docs/api-reference/chat-streaming. ``data:`` chunks with
  ``choices[0].delta.content`` and ``finish_reason``; with ``stream_options.include_usage`` one
  more chunk with empty ``choices`` carries ``usage`` before the terminal ``data: [DONE]``. A
  ``finish_reason`` is the finish: a body that then ends cleanly without ``[DONE]`` (some
  compatible servers never send it) is complete.
* ``max_completion_tokens`` on api.openai.com: ``max_tokens`` is deprecated there and o-series
  models reject it (openai 3.57 ``resources/chat/completions/completions.py``, the
  ``max_tokens`` docstring); other compatible servers keep ``max_tokens``.
* Errors: https://platform.openai.com/docs/guides/error-codes. ``{"error": {"message", "type",
  "param", "code"}}``; a 429 with code ``insufficient_quota`` is an exhausted quota, not a rate
  limit; ``context_length_exceeded`` is a context-length error.
* Keys: api.openai.com needs one; any other base URL (a local server) may run without one, and
  then no Authorization header is sent.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from functools import cached_property
from typing import Any

import httpx

from ..errors import ContextLengthExceeded, ProviderError, ProviderUnavailable, TransientError
from ..types import Completion, CompletionRequest, StreamEnd, StreamEvent, TextDelta, Usage
from ._base import BaseProvider, KindDefaults, api_url, turns
from ._http import Call, count, decode_json, drain, label, parsing, text_of

OFFICIAL_HOST = "api.openai.com"

_BY_CODE: dict[str, tuple[type[ProviderError], str]] = {
    "insufficient_quota": (ProviderUnavailable, "quota"),
    "context_length_exceeded": (ContextLengthExceeded, "context_length"),
    "model_not_found": (ProviderUnavailable, "model_not_found"),
    "invalid_api_key": (ProviderUnavailable, "auth"),
    "rate_limit_exceeded": (TransientError, "rate_limited"),
}


def error_verdict(body: Any) -> tuple[str, tuple[type[ProviderError], str] | None]:
    """Message and class of an OpenAI-style error body, branching on ``error.code``."""
    if not isinstance(body, dict):
        return "", None
    error = body.get("error", body)
    if isinstance(error, str):
        return error, None
    if not isinstance(error, dict):
        return "", None
    message = str(error.get("message") or "")
    code = str(error.get("code") or "")
    etype = str(error.get("type") or "")
    verdict = _BY_CODE.get(code) or _BY_CODE.get(etype)
    tag = code or etype
    return (f"{message} ({tag})" if tag else message), verdict


class OpenAIProvider(BaseProvider):
    defaults = KindDefaults.of("openai")

    def key_required(self) -> bool:
        return self.official

    @cached_property
    def official(self) -> bool:
        """Whether this is OpenAI's own API (not a compatible server)."""
        return httpx.URL(self.base_url).host == OFFICIAL_HOST

    def headers(self, key: str | None) -> dict[str, str]:
        headers: dict[str, str] = {}  # httpx sets content-type for a json= body
        if key:
            headers["authorization"] = f"Bearer {key}"
        return headers

    def completion_url(self, *, stream: bool) -> str:
        return api_url(self.base_url, "v1", "chat/completions")

    def health_url(self) -> str:
        return api_url(self.base_url, "v1", "models")

    def body(self, request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        messages: list[dict[str, Any]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages += ({"role": role, "content": text} for role, text in turns(request))
        limit = "max_completion_tokens" if self.official else "max_tokens"
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            limit: request.max_tokens,
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        return body

    def error_verdict(self, status: int, body: Any) -> tuple[str, Any]:
        return error_verdict(body)

    def parse_completion(self, call: Call, data: Any) -> Completion:
        with parsing(call):
            if "error" in data:
                raise _stream_error(call, data)
            choice = data["choices"][0]
            return Completion(
                text=text_of(choice["message"].get("content")),
                model=label(data.get("model")) or self.config.model,
                usage=_usage(data.get("usage") or {}),
                stop_reason=label(choice.get("finish_reason")),
            )

    async def parse_stream(
        self, call: Call, response: httpx.Response
    ) -> AsyncGenerator[StreamEvent, None]:
        model, stop_reason, usage = self.config.model, None, Usage()
        events = self.events(call, response)
        async for name, raw in events:
            if raw.strip() == "[DONE]":
                await drain(events)
                break
            if not raw.strip():
                continue
            chunk = decode_json(call, raw)
            text = ""
            with parsing(call):
                if name == "error" or "error" in chunk:
                    raise _stream_error(call, chunk)
                model = label(chunk.get("model")) or model
                if chunk.get("usage"):
                    usage = _usage(chunk["usage"])
                for choice in chunk.get("choices") or ():
                    if choice.get("index", 0) != 0:
                        continue
                    text = text_of((choice.get("delta") or {}).get("content"))
                    stop_reason = label(choice.get("finish_reason")) or stop_reason
            if text:
                yield TextDelta(text)
        else:
            if stop_reason is None:
                return  # the body ended before a finish_reason: truncated
        yield StreamEnd(model, usage, stop_reason)


def _usage(usage: dict[str, Any]) -> Usage:
    return Usage(count(usage.get("prompt_tokens")), count(usage.get("completion_tokens")))


def _stream_error(call: Call, body: Any) -> ProviderError:
    """An error object inside a 200 response or stream: transient."""
    message, verdict = error_verdict(body)
    reason = verdict[1] if verdict and verdict[0] is TransientError else "stream_error"
    return call.error(TransientError, message or "error in stream", reason=reason)
