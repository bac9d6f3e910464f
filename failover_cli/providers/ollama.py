"""Ollama chat adapter.

Sources:
* Request/response: ``POST /api/chat`` in ollama/ollama ``docs/openapi.yaml`` (ChatRequest:
  ``model``, ``messages``, ``stream`` defaulting to true, ``options`` with ``num_predict`` and
  ``temperature``; ChatResponse: ``message.content``, ``done``, ``done_reason``,
  ``prompt_eval_count``, ``eval_count``) and ollama/ollama ``docs/api.md``.
* Streaming: NDJSON, one ChatStreamEvent per line; the last line has ``done: true`` and the
  counts (it is the finish, even without its newline). A line ``{"error": "..."}`` can arrive
  after HTTP 200 and is a failure.
* Errors: ``{"error": "..."}``; 404 means the model is not pulled. Ollama's cloud models answer
  429 "you have reached your session/weekly usage limit, ... upgrade" (reported in
  continuedev/continue#10579, diegosouzapw/OmniRoute#3709): a quota, not a rate limit.
* No key by default; when ``api_key_env`` is configured (a proxy or hosted Ollama), it is sent as
  a bearer token (the spec's ``bearerAuth``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import httpx

from ..errors import ProviderError, ProviderUnavailable, TransientError
from ..types import Completion, CompletionRequest, StreamEnd, StreamEvent, TextDelta, Usage
from ._base import BaseProvider, KindDefaults, turns
from ._http import Call, count, decode_json, drain, label, parsing, text_of


def error_message(body: Any) -> str:
    if isinstance(body, dict) and body.get("error") is not None:
        error = body["error"]
        return error if isinstance(error, str) else str(error.get("message", error))
    return ""


class OllamaProvider(BaseProvider):
    defaults = KindDefaults.of("ollama")

    def headers(self, key: str | None) -> dict[str, str]:
        headers: dict[str, str] = {}  # httpx sets content-type for a json= body
        if key:
            headers["authorization"] = f"Bearer {key}"
        return headers

    def completion_url(self, *, stream: bool) -> str:
        return f"{self.base_url}/api/chat"

    def health_url(self) -> str:
        return f"{self.base_url}/api/tags"

    def body(self, request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        messages: list[dict[str, Any]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages += ({"role": role, "content": text} for role, text in turns(request))
        options: dict[str, Any] = {"num_predict": request.max_tokens}
        if request.temperature is not None:
            options["temperature"] = request.temperature
        return {
            "model": self.config.model,
            "messages": messages,
            "stream": stream,
            "options": options,
        }

    def error_verdict(self, status: int, body: Any) -> tuple[str, Any]:
        message = error_message(body)
        if status == 429 and "usage limit" in message.lower():
            return message, (ProviderUnavailable, "quota")
        return message, None

    def parse_completion(self, call: Call, data: Any) -> Completion:
        with parsing(call):
            if data.get("error") is not None:
                raise _stream_error(call, data)
            return Completion(
                text=text_of((data.get("message") or {}).get("content")),
                model=label(data.get("model")) or self.config.model,
                usage=_usage(data),
                stop_reason=label(data.get("done_reason")),
            )

    async def parse_stream(
        self, call: Call, response: httpx.Response
    ) -> AsyncGenerator[StreamEvent, None]:
        lines = self.ndjson(call, response)
        async for line in lines:
            if not line.strip():
                continue
            data = decode_json(call, line)
            with parsing(call):
                if data.get("error") is not None:
                    raise _stream_error(call, data)
                text = text_of((data.get("message") or {}).get("content"))
                done = data.get("done") is True
                if done:
                    model = label(data.get("model")) or self.config.model
                    end = StreamEnd(model, _usage(data), label(data.get("done_reason")))
            if text:
                yield TextDelta(text)
            if done:
                await drain(lines)
                yield end
                return


def _usage(data: dict[str, Any]) -> Usage:
    return Usage(count(data.get("prompt_eval_count")), count(data.get("eval_count")))


def _stream_error(call: Call, body: Any) -> ProviderError:
    return call.error(
        TransientError, error_message(body) or "error in stream", reason="stream_error"
    )
