"""Google Gemini API adapter (generativelanguage.googleapis.com, v1beta).

Sources:
* Request/response: https://ai.google.dev/api/generate-content. ``POST
  /v1beta/models/{model}:generateContent`` with header ``x-goog-api-key``; body ``contents``
  (``role`` user/model, ``parts[].text``), ``systemInstruction``, ``generationConfig``
  (``maxOutputTokens``, ``temperature``); response ``candidates[].content.parts[].text``,
  ``candidates[].finishReason``, ``usageMetadata`` (``promptTokenCount``,
  ``candidatesTokenCount``), ``promptFeedback.blockReason``.
* Streaming: ``:streamGenerateContent?alt=sse`` (google-gemini/cookbook "Streaming Quickstart
  with REST"): each SSE ``data:`` is a GenerateContentResponse; there is no ``[DONE]``, the last
  chunk carries ``finishReason``, so a stream that closes without one is truncated.
* Errors: https://ai.google.dev/gemini-api/docs/troubleshooting. ``{"error": {"code",
  "message", "status", "details"}}``; 400 INVALID_ARGUMENT (an invalid key also comes as a 400
  with reason ``API_KEY_INVALID``), 400 FAILED_PRECONDITION (billing), 403 PERMISSION_DENIED,
  404 NOT_FOUND, 429 RESOURCE_EXHAUSTED (with a ``QuotaFailure`` detail naming the quota and,
  for a short wait, ``RetryInfo.retryDelay``; a per-day quota is spent until tomorrow),
  500 INTERNAL, 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED.
* Health: ``GET /v1beta/models``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from typing import Any
from urllib.parse import quote

import httpx

from ..errors import ProviderError, ProviderUnavailable, TransientError
from ..types import Completion, CompletionRequest, StreamEnd, StreamEvent, TextDelta, Usage
from ._base import BaseProvider, KindDefaults, api_url, turns
from ._http import Call, count, decode_json, label, parsing, text_of, try_json

_DELAY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def _details(error: dict[str, Any]) -> list[dict[str, Any]]:
    details = error.get("details")
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def error_verdict(
    body: Any, status_code: int | None = None
) -> tuple[str, tuple[type[ProviderError], str] | None]:
    """Message and class of a Google API error body, branching on ``error.status`` and details.

    A 429 is a spent quota (provider) when a per-day quota is violated, or when the server
    names a violated quota without suggesting a retry; otherwise it is a rate limit."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):
        return error, None
    if not isinstance(error, dict):
        return "", None
    message = str(error.get("message") or "")
    status = str(error.get("status") or "")
    details = _details(error)
    text = f"{message} ({status})" if status else message
    types = {str(d.get("@type", "")).rsplit(".", 1)[-1] for d in details}
    quota_ids = [
        str(v.get("quotaId", ""))
        for d in details
        for v in (d.get("violations") or [])
        if isinstance(v, dict)
    ]
    if status_code in (400, 401, 403) and (
        "API_KEY_INVALID" in {d.get("reason") for d in details}
        or "api key not valid" in message.lower()
    ):
        return text, (ProviderUnavailable, "auth")
    if status_code == 400 and status == "FAILED_PRECONDITION":
        return text, (ProviderUnavailable, "quota")
    if status_code == 429 and (
        any("PerDay" in q for q in quota_ids)
        or ("QuotaFailure" in types and "RetryInfo" not in types)
    ):
        return text, (ProviderUnavailable, "quota")
    return text, None


def retry_delay(body: Any) -> float | None:
    """Seconds from a ``google.rpc.RetryInfo`` detail (``"retryDelay": "22s"``), if any."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    for detail in _details(error):
        match = _DELAY_RE.match(str(detail.get("retryDelay") or ""))
        if match:
            return float(match.group(1))
    return None


class GeminiProvider(BaseProvider):
    defaults = KindDefaults.of("gemini")

    def headers(self, key: str | None) -> dict[str, str]:
        headers: dict[str, str] = {}  # httpx sets content-type for a json= body
        if key:
            headers["x-goog-api-key"] = key
        return headers

    def _model_path(self) -> str:
        """``models/{model}``; a name already under ``models/`` or ``tunedModels/`` is kept."""
        collection, _, name = self.config.model.rpartition("/")
        if collection not in ("models", "tunedModels"):
            collection, name = "models", self.config.model
        return f"{collection}/{quote(name, safe='')}"

    def completion_url(self, *, stream: bool) -> str:
        if stream:
            path = f"{self._model_path()}:streamGenerateContent?alt=sse"
            return api_url(self.base_url, "v1beta", path)
        return api_url(self.base_url, "v1beta", f"{self._model_path()}:generateContent")

    def health_url(self) -> str:
        return api_url(self.base_url, "v1beta", "models")

    def body(self, request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        contents = [
            {"role": "model" if role == "assistant" else "user", "parts": [{"text": text}]}
            for role, text in turns(request)
        ]
        config: dict[str, Any] = {"maxOutputTokens": request.max_tokens}
        if request.temperature is not None:
            config["temperature"] = request.temperature
        body: dict[str, Any] = {"contents": contents, "generationConfig": config}
        if request.system:
            body["systemInstruction"] = {"parts": [{"text": request.system}]}
        return body

    def error_verdict(self, status: int, body: Any) -> tuple[str, Any]:
        return error_verdict(body, status)

    def _error(self, call: Call, response: httpx.Response, raw: bytes) -> ProviderError:
        error = super()._error(call, response, raw)
        if error.retry_after is None:
            error.retry_after = retry_delay(try_json(raw))
        return error

    def parse_completion(self, call: Call, data: Any) -> Completion:
        with parsing(call):
            if "error" in data:
                raise _stream_error(call, data)
            text, finish = _read_chunk(data)
            if finish is None:
                finish = label((data.get("promptFeedback") or {}).get("blockReason"))
            return Completion(
                text=text,
                model=label(data.get("modelVersion")) or self.config.model,
                usage=_usage(data.get("usageMetadata") or {}),
                stop_reason=finish,
            )

    async def parse_stream(
        self, call: Call, response: httpx.Response
    ) -> AsyncGenerator[StreamEvent, None]:
        model, finish, usage = self.config.model, None, Usage()
        async for _, raw in self.events(call, response):
            if not raw.strip():
                continue
            chunk = decode_json(call, raw)
            with parsing(call):
                if "error" in chunk:
                    raise _stream_error(call, chunk)
                text, chunk_finish = _read_chunk(chunk)
                finish = chunk_finish or finish
                model = label(chunk.get("modelVersion")) or model
                if chunk.get("usageMetadata"):
                    usage = _usage(chunk["usageMetadata"])
            if text:
                yield TextDelta(text)
        if finish is not None:
            yield StreamEnd(model, usage, finish)


def _read_chunk(data: dict[str, Any]) -> tuple[str, str | None]:
    """Text of the first candidate (thought parts skipped) and its finishReason."""
    candidates = data.get("candidates") or []
    if not candidates:
        return "", None
    candidate = candidates[0]
    parts = (candidate.get("content") or {}).get("parts") or []
    text = "".join(text_of(p.get("text")) for p in parts if not p.get("thought"))
    return text, label(candidate.get("finishReason"))


def _usage(meta: dict[str, Any]) -> Usage:
    return Usage(count(meta.get("promptTokenCount")), count(meta.get("candidatesTokenCount")))


def _stream_error(call: Call, body: Any) -> ProviderError:
    message, verdict = error_verdict(body)
    reason = verdict[1] if verdict and verdict[0] is TransientError else "stream_error"
    return call.error(TransientError, message or "error in stream", reason=reason)
