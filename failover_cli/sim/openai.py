"""The OpenAI Chat Completions API: ``POST /v1/chat/completions`` and ``GET /v1/models``.

Wire format, as documented by OpenAI:

- ``chat.completion`` and ``chat.completion.chunk`` objects, ``ListModelsResponse`` and the
  ``{"error":{"message","type","param","code"}}`` body: the official OpenAPI spec
  (tests/specs/openai-chat-completions.openapi.json, vendored from openai/openai-python).
- Streams are ``data: {chunk}`` events ending with ``data: [DONE]``; with
  ``stream_options.include_usage`` every chunk carries ``"usage": null`` except an extra last
  chunk with empty ``choices`` and the usage (``ChatCompletionStreamOptions`` in the same spec).
- A mid-stream failure is a ``data: {"error": {...}}`` event (what openai-python raises
  ``APIError`` on; see block/goose#8031).
- ``insufficient_quota`` is a 429 with ``type``/``code`` ``insufficient_quota``
  (langchain-ai/langchainjs#1929); context overflow is a 400 with ``param: messages`` and
  ``code: context_length_exceeded`` (chathub-dev/chathub#126).

- Rate limits: ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``, resets as Go
  durations until the refill (``6m0s``): https://platform.openai.com/docs/guides/rate-limits
- ``reject_prefill`` answers like an OpenAI-compatible server that refuses a final assistant
  turn (Mistral's wording, "Expected last role User or Tool (or Assistant with prefix True) for
  serving but got assistant", 0xPlaygrounds/rig#708), in OpenAI's error shape.

Unlike the real API, the 401 message never echoes any part of the key it was given.
"""

from __future__ import annotations

from .wire import (
    JSON_TYPE,
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
    go_duration,
    last_role,
    models_api_route,
    new_id,
    quote,
    sse,
)

_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY). You can obtain an API key from "
    "https://platform.openai.com/account/api-keys."
)
_BAD_KEY = (
    "Incorrect API key provided. You can find your API key at "
    "https://platform.openai.com/account/api-keys."
)
_QUOTA = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, read the docs: "
    "https://platform.openai.com/docs/guides/error-codes/api-errors."
)
_NO_PREFILL = (
    "Expected last role User or Tool (or Assistant with prefix True) for serving but got assistant"
)
_LIMITS = {"requests": 10_000, "tokens": 30_000_000}
_SERVER = "The server had an error while processing your request. Sorry about that!"
# status -> (type, code, message)
_ERRORS = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", _BAD_KEY),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
    404: ("invalid_request_error", None, "Not found."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, _SERVER),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


class OpenAIDialect:
    default_model = "gpt-4o-mini"
    overloaded_status = 503
    id_prefix = "chatcmpl-"
    tool_id_prefix = "call_"
    json_type = JSON_TYPE

    def route(self, request: RecordedRequest) -> Route | None:
        return models_api_route(request, "/v1/chat/completions")

    def unknown_route(self, request: RecordedRequest) -> Reply:
        message = f"Invalid URL ({request.method} {request.path})"
        return _error(404, "invalid_request_error", None, message)

    def check_auth(self, request: RecordedRequest, api_key: str | None) -> Reply | None:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return _error(401, "invalid_request_error", None, _NO_KEY)
        if api_key is not None and key.strip() != api_key:
            return _error(401, "invalid_request_error", "invalid_api_key", _BAD_KEY)
        return None

    def chat_view(self, request: RecordedRequest) -> ChatView:
        return NO_CHAT

    def check_request(self, request: RecordedRequest) -> Reply | None:
        body = request.json
        if not isinstance(body, dict):
            message = "We could not parse the JSON body of your request."
            return _error(400, "invalid_request_error", None, message)
        if not body.get("model"):
            message = "you must provide a model parameter"
            return _error(400, "invalid_request_error", None, message)
        messages = body.get("messages")
        if messages is None:
            message = "Missing required parameter: 'messages'."
            return _error(400, "invalid_request_error", "missing_required_parameter", message)
        if not isinstance(messages, list) or not messages:
            message = (
                "Invalid 'messages': empty array. Expected an array with minimum length 1, "
                "but got an empty array instead."
            )
            return _error(400, "invalid_request_error", "empty_array", message)
        return None

    def stream_type(self, request: RecordedRequest) -> str:
        return "text/event-stream; charset=utf-8"

    def wants_stream(self, request: RecordedRequest) -> bool:
        return request.json.get("stream") is True

    def requested_model(self, request: RecordedRequest, route: Route) -> str | None:
        return request.json.get("model")

    def health(self, request: RecordedRequest, route: Route, models: list[str]) -> Reply:
        if route.model is not None:
            return Reply(200, dumps(_model(route.model)), JSON_TYPE)
        listing = {"object": "list", "data": [_model(model) for model in models]}
        return Reply(200, dumps(listing), JSON_TYPE)

    def message(self, exchange: Exchange, text: str, output_tokens: int) -> bytes:
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": None, "annotations": []},
            "logprobs": None,
            "finish_reason": "content_filter" if exchange.refused else "stop",
        }
        return dumps(
            {
                "id": exchange.request_id,
                "object": "chat.completion",
                "created": int(exchange.created),
                "model": exchange.model,
                "choices": [choice],
                "usage": _usage(exchange.input_tokens, output_tokens),
                "service_tier": "default",
            }
        )

    def stream(self, exchange: Exchange, tokens: list[str], end: End) -> StreamFrames:
        options = exchange.request.json.get("stream_options") or {}
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        base = {
            "id": exchange.request_id,
            "object": "chat.completion.chunk",
            "created": int(exchange.created),
            "model": exchange.model,
            "service_tier": "default",
        }
        if include_usage:
            base["usage"] = None

        def chunk(delta: dict[str, object], finish: str | None = None) -> dict[str, object]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return {**base, "choices": [choice]}

        head = [sse(dumps(chunk({"role": "assistant", "content": "", "refusal": None})))]
        token_frame = Template(chunk({"content": Template.slot(0)}), sse)
        frames = [token_frame(quote(token)) for token in tokens]
        if end is End.CUT:
            tail = []
        elif end is End.MALFORMED:
            tail = [b"data: " + cut_json(chunk({"content": " more"})) + b"\n\n"]
        elif end is End.ERROR:
            error = {"message": _SERVER, "type": "server_error", "param": None, "code": None}
            tail = [sse(dumps({"error": error}))]
        else:
            tail = [sse(dumps(chunk({}, "content_filter" if exchange.refused else "stop")))]
            if include_usage:
                usage = _usage(exchange.input_tokens, len(tokens))
                tail.append(sse(dumps({**base, "choices": [], "usage": usage})))
            if end is End.COMPLETE:
                tail.append(b"data: [DONE]\n\n")
        return StreamFrames(head, frames, tail)

    def status_error(self, status: int, exchange: Exchange | None) -> Reply:
        kind, code, message = _ERRORS.get(status) or (
            ("server_error", None, _SERVER)
            if status >= 500
            else ("invalid_request_error", None, "Invalid request.")
        )
        return _error(status, kind, code, message)

    def fault_error(self, fault: str, exchange: Exchange) -> Reply:
        if fault == "context_length":
            limit = 128_000
            message = (
                f"This model's maximum context length is {limit} tokens. However, your messages "
                f"resulted in {limit + exchange.input_tokens} tokens. "
                "Please reduce the length of the messages."
            )
            return _error(
                400, "invalid_request_error", "context_length_exceeded", message, "messages"
            )
        if fault == "quota":
            return _error(429, "insufficient_quota", "insufficient_quota", _QUOTA)
        if fault == "auth":
            return _error(401, "invalid_request_error", "invalid_api_key", _BAD_KEY)
        message = f"The model `{exchange.model}` does not exist or you do not have access to it."
        return _error(404, "invalid_request_error", "model_not_found", message)

    def prefill_error(self, request: RecordedRequest) -> Reply | None:
        if last_role(request.json.get("messages")) != "assistant":
            return None
        return _error(400, "invalid_request_error", None, _NO_PREFILL, "messages")

    def response_headers(self, request_id: str) -> list[tuple[str, str]]:
        return [
            ("x-request-id", request_id.replace("chatcmpl-", "req_")),
            ("openai-version", "2020-10-01"),
        ]

    def ratelimit_headers(self, budgets: list[Budget], now: float) -> list[tuple[str, str]]:
        headers = []
        for budget in budgets:
            limit = max(budget.remaining, _LIMITS[budget.kind])
            headers += [
                (f"x-ratelimit-limit-{budget.kind}", str(limit)),
                (f"x-ratelimit-remaining-{budget.kind}", str(budget.remaining)),
                (f"x-ratelimit-reset-{budget.kind}", go_duration(budget.reset)),
            ]
        return headers


def _model(model: str) -> dict[str, object]:
    return {"id": model, "object": "model", "created": 1721172741, "owned_by": "system"}


def _usage(prompt: int, completion: int) -> dict[str, object]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _error(
    status: int, kind: str, code: str | None, message: str, param: str | None = None
) -> Reply:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return Reply(status, dumps(body), JSON_TYPE, [("x-request-id", new_id("req_", 32))])


DIALECT = OpenAIDialect()
