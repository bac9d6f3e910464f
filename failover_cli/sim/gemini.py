"""The Gemini API: ``models/{model}:generateContent``, ``:streamGenerateContent``, ``models``.

Wire format, as documented by Google (https://ai.google.dev/api/generate-content,
https://ai.google.dev/api/models):

- A ``GenerateContentResponse`` has ``candidates[0].content.parts[].text`` (role ``model``),
  ``finishReason`` and ``usageMetadata`` (``promptTokenCount``, ``candidatesTokenCount``,
  ``totalTokenCount``), plus ``modelVersion`` and ``responseId``.
- ``:streamGenerateContent?alt=sse`` sends one ``data: {GenerateContentResponse}`` event per
  chunk, CRLF-terminated (nyroway/nyro#265), with no ``[DONE]``: the last chunk carries
  ``finishReason`` and the cumulative usage (google-gemini cookbook ``Streaming_REST``;
  ankit373/hydra#855). Without ``alt=sse`` the stream is a JSON array, as the real API sends.
- Errors are ``{"error": {"code", "message", "status"}}`` with a google.rpc status name. A
  missing key is a 403 ``PERMISSION_DENIED`` ("Method doesn't allow unregistered callers",
  PublicAffairs/openai-gemini#92); a wrong key is a 400 ``INVALID_ARGUMENT`` whose details
  carry ``reason: API_KEY_INVALID`` (cequence-io/openai-scala-client#109); context overflow is
  a 400 "The input token count (N) exceeds the maximum number of tokens allowed (M)."
  (google-gemini/gemini-cli#6678).
- The key is accepted in the ``x-goog-api-key`` header or the ``key`` query parameter.

A request whose last turn is the model's gets, under ``reject_prefill``, the 400 "Please ensure
that multiturn requests ends with a user role or a function response." (songquanpeng/one-api#836).
No rate-limit headers are sent (a 429 carries its retry delay in the body). Under
``no_end_marker`` the last event (the one with ``finishReason``) lacks its blank line.

The ``auth`` fault answers 401 ``UNAUTHENTICATED`` (what the API sends for bad credentials
other than a key). Retry hints are sent only as a ``Retry-After`` header, not as the
``RetryInfo`` detail the real API uses.
"""

from __future__ import annotations

from .wire import (
    HEALTH,
    NO_CHAT,
    Budget,
    ChatView,
    End,
    Exchange,
    RecordedRequest,
    Reply,
    Route,
    StreamFrames,
    Template,
    cut_json,
    dumps,
    last_role,
    quote,
    sse,
)

JSON_UTF8 = "application/json; charset=UTF-8"
_PREFIXES = ("/v1beta/", "/v1/")
_ACTIONS = (":generateContent", ":streamGenerateContent")
_STATUS = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: ("NOT_FOUND", "Requested entity was not found."),
    409: ("ABORTED", "The operation was aborted."),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    499: ("CANCELLED", "The operation was cancelled."),
    500: (
        "INTERNAL",
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
    ),
    501: ("NOT_IMPLEMENTED", "Operation is not implemented, or supported, or enabled."),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}
_NO_PREFILL = "Please ensure that multiturn requests ends with a user role or a function response."
_QUOTA_METRIC = "generativelanguage.googleapis.com/generate_content_requests"
_UNREGISTERED = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)
_QUOTA = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
)


class GeminiDialect:
    default_model = "gemini-2.5-flash"
    overloaded_status = 503
    id_prefix = ""
    tool_id_prefix = "call_"
    json_type = JSON_UTF8

    def route(self, request: RecordedRequest) -> Route | None:
        prefix = next((p for p in _PREFIXES if request.path.startswith(p)), None)
        if prefix is None:
            return None
        rest = request.path[len(prefix) :]
        if request.method == "GET" and rest == "models":
            return HEALTH
        if not rest.startswith("models/"):
            return None
        name = rest.removeprefix("models/")
        if request.method == "GET" and ":" not in name:
            return Route(completion=False, model=name)
        if request.method == "POST" and name.endswith(_ACTIONS):
            return Route(completion=True, model=name.rpartition(":")[0])
        return None

    def unknown_route(self, request: RecordedRequest) -> Reply:
        return _error(404, "NOT_FOUND", f"Method not found: {request.method} {request.path}")

    def check_auth(self, request: RecordedRequest, api_key: str | None) -> Reply | None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if not key:
            return _error(403, "PERMISSION_DENIED", _UNREGISTERED)
        if api_key is not None and key != api_key:
            details = [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }
            ]
            message = "API key not valid. Please pass a valid API key."
            return _error(400, "INVALID_ARGUMENT", message, details)
        return None

    def chat_view(self, request: RecordedRequest) -> ChatView:
        return NO_CHAT

    def check_request(self, request: RecordedRequest) -> Reply | None:
        body = request.json
        if not isinstance(body, dict):
            return _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        if not body.get("contents"):
            message = "* GenerateContentRequest.contents: contents is not specified\n"
            return _error(400, "INVALID_ARGUMENT", message)
        return None

    def wants_stream(self, request: RecordedRequest) -> bool:
        return request.path.endswith(":streamGenerateContent")

    def stream_type(self, request: RecordedRequest) -> str:
        return "text/event-stream" if _is_sse(request) else JSON_UTF8

    def requested_model(self, request: RecordedRequest, route: Route) -> str | None:
        return route.model

    def health(self, request: RecordedRequest, route: Route, models: list[str]) -> Reply:
        if route.model is not None:
            return Reply(200, dumps(_model(route.model), indent=2), JSON_UTF8)
        return Reply(200, dumps({"models": [_model(m) for m in models]}, indent=2), JSON_UTF8)

    def message(self, exchange: Exchange, text: str, output_tokens: int) -> bytes:
        return dumps(_response(exchange, text, output_tokens, finished=True), indent=2)

    def stream(self, exchange: Exchange, tokens: list[str], end: End) -> StreamFrames:
        piece = _piece(exchange)
        prompt = exchange.input_tokens
        finishes = end in (End.COMPLETE, End.NO_MARKER)
        plain = tokens[:-1] if finishes else tokens
        frames = [
            piece(quote(text), b"%d" % count, b"%d" % (prompt + count))
            for count, text in enumerate(plain, start=1)
        ]
        tail: list[bytes] = []
        if finishes:  # the last chunk carries the finish reason
            last = tokens[-1] if tokens else ""
            finished = dumps(_response(exchange, last, len(tokens), finished=True))
            (frames if tokens else tail).append(finished)
        elif end is End.ERROR:
            overloaded = {"code": 503, "message": _STATUS[503][1], "status": "UNAVAILABLE"}
            tail = [dumps({"error": overloaded})]
        elif end is End.MALFORMED:
            tail = [cut_json(_response(exchange, " more", len(tokens) + 1, finished=False))]
        if _is_sse(exchange.request):
            events = StreamFrames([], [_event(f) for f in frames], [_event(f) for f in tail])
            if end is End.NO_MARKER:  # the last event without its blank line
                ending = events.tail if events.tail else events.tokens
                ending[-1] = ending[-1].removesuffix(b"\r\n")
            return events
        # A JSON array, one element per chunk, closed only by a complete stream.
        items = [b"[" if i == 0 else b",\r\n" for i in range(len(frames) + len(tail))]
        pieces = [sep + item for sep, item in zip(items, frames + tail, strict=True)]
        closing = [b"]"] if finishes else []
        return StreamFrames([], pieces[: len(frames)], pieces[len(frames) :] + closing)

    def status_error(self, status: int, exchange: Exchange | None) -> Reply:
        name, message = _STATUS.get(status) or (
            ("INTERNAL", _STATUS[500][1]) if status >= 500 else ("FAILED_PRECONDITION", "Failed.")
        )
        return _error(status, name, message)

    def fault_error(self, fault: str, exchange: Exchange) -> Reply:
        if fault == "context_length":
            limit = 1_048_576
            message = (
                f"The input token count ({limit + exchange.input_tokens}) exceeds the maximum "
                f"number of tokens allowed ({limit})."
            )
            return _error(400, "INVALID_ARGUMENT", message)
        if fault == "quota":
            details = [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [{"quotaMetric": _QUOTA_METRIC}],
                }
            ]
            return _error(429, "RESOURCE_EXHAUSTED", _QUOTA, details)
        if fault == "auth":
            return _error(401, "UNAUTHENTICATED", _STATUS[401][1])
        message = (
            f"models/{exchange.model} is not found for API version v1beta, or is not supported "
            "for generateContent. Call ListModels to see the list of available models and their "
            "supported methods."
        )
        return _error(404, "NOT_FOUND", message)

    def prefill_error(self, request: RecordedRequest) -> Reply | None:
        if last_role(request.json.get("contents")) != "model":
            return None
        return _error(400, "INVALID_ARGUMENT", _NO_PREFILL)

    def response_headers(self, request_id: str) -> list[tuple[str, str]]:
        return []

    def ratelimit_headers(self, budgets: list[Budget], now: float) -> list[tuple[str, str]]:
        return []


def _is_sse(request: RecordedRequest) -> bool:
    return request.query.get("alt") == "sse"


def _event(data: bytes) -> bytes:
    return sse(data, eol=b"\r\n")


def _response(exchange: Exchange, text: str, output_tokens: int, *, finished: bool) -> dict:
    content: dict[str, object] = {"role": "model"}
    if text:
        content["parts"] = [{"text": text}]
    candidate: dict[str, object] = {"content": content, "index": 0}
    if finished:
        candidate["finishReason"] = "SAFETY" if exchange.refused else "STOP"
    prompt = exchange.input_tokens
    usage: dict[str, object] = {"promptTokenCount": prompt}
    if output_tokens:
        usage["candidatesTokenCount"] = output_tokens
    usage["totalTokenCount"] = prompt + output_tokens
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
    return {
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": exchange.model,
        "responseId": exchange.request_id,
    }


def _piece(exchange: Exchange) -> Template:
    """A chunk of a stream, with slots for its text and the cumulative token counts."""
    prompt = exchange.input_tokens
    usage = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": Template.slot(1),
        "totalTokenCount": Template.slot(2),
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    }
    content = {"role": "model", "parts": [{"text": Template.slot(0)}]}
    return Template(
        {
            "candidates": [{"content": content, "index": 0}],
            "usageMetadata": usage,
            "modelVersion": exchange.model,
            "responseId": exchange.request_id,
        }
    )


def _model(name: str) -> dict[str, object]:
    return {
        "name": f"models/{name}",
        "version": "001",
        "displayName": name,
        "description": "A model served by the failover simulator.",
        "inputTokenLimit": 1_048_576,
        "outputTokenLimit": 65_536,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
    }


def _error(status: int, name: str, message: str, details: list | None = None) -> Reply:
    error: dict[str, object] = {"code": status, "message": message, "status": name}
    if details:
        error["details"] = details
    return Reply(status, dumps({"error": error}, indent=2), JSON_UTF8)


DIALECT = GeminiDialect()
