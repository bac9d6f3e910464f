"""The Anthropic Messages API: ``POST /v1/messages`` (JSON and SSE) and ``GET /v1/models``.

Wire format, as documented by Anthropic:

- Stream event names, order and payloads (``message_start``, ``content_block_start``, ``ping``,
  ``content_block_delta``/``text_delta``, ``content_block_stop``, ``message_delta`` with
  ``stop_reason`` and cumulative ``usage.output_tokens``, ``message_stop``) and the in-stream
  ``event: error`` carrying ``overloaded_error``:
  https://docs.anthropic.com/en/docs/build-with-claude/streaming
- Status → ``error.type`` table, the ``{"type":"error","error":{...},"request_id":...}`` shape
  and the ``request-id`` header: https://docs.anthropic.com/en/api/errors
- Models list (``data``, ``has_more``, ``first_id``, ``last_id``):
  https://docs.anthropic.com/en/api/models-list
- The key comes as ``x-api-key`` (the OpenAPI spec, tests/specs/anthropic-messages.openapi.json,
  which also defines ``Message``/``ErrorResponse``; SDK 1.x) or ``Authorization: Bearer`` (SDK
  2.x); ``anthropic-version`` is required, and any version is accepted (``2023-06-01``,
  ``2026-10-21``).
- A model without prefill answers a final assistant turn with a 400 ``invalid_request_error``
  "This model does not support assistant message prefill. The conversation must end with a user
  message." (https://platform.claude.com/docs/en/api/errors#prefill-not-supported).
- Rate limits: ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,
  remaining,reset}``, resets as RFC 3339 timestamps (https://docs.anthropic.com/en/api/rate-limits).
- The credit-balance error is a 400 ``invalid_request_error`` ("Your credit balance is too low
  ...", anthropics/claude-code#4684); context overflow is a 400 "prompt is too long: N tokens >
  M maximum" (entropy-research/Devon#88).
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
    last_role,
    models_api_route,
    new_id,
    quote,
    rfc3339,
    sse,
)

_ERRORS = {
    400: ("invalid_request_error", "Invalid request"),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Billing error"),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    404: ("not_found_error", "Not found"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}
_NO_PREFILL = (
    "This model does not support assistant message prefill. "
    "The conversation must end with a user message."
)
_LIMITS = {"requests": 4_000, "tokens": 2_000_000}
_CREDIT = (
    "Your credit balance is too low to access the Anthropic API. "
    "Please go to Plans & Billing to upgrade or purchase credits."
)


class AnthropicDialect:
    default_model = "claude-sonnet-4-5"
    overloaded_status = 529
    id_prefix = "req_011C"
    tool_id_prefix = "toolu_"
    json_type = JSON_TYPE

    def route(self, request: RecordedRequest) -> Route | None:
        return models_api_route(request, "/v1/messages")

    def unknown_route(self, request: RecordedRequest) -> Reply:
        return _error(404, "not_found_error", "Not Found")

    def check_auth(self, request: RecordedRequest, api_key: str | None) -> Reply | None:
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        key = request.headers.get("x-api-key") or (bearer if scheme.lower() == "bearer" else "")
        if not key:
            return _error(401, "authentication_error", "x-api-key header is required")
        if api_key is not None and key != api_key:
            return _error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return _error(400, "invalid_request_error", "anthropic-version: header is required")
        return None

    def chat_view(self, request: RecordedRequest) -> ChatView:
        return NO_CHAT

    def check_request(self, request: RecordedRequest) -> Reply | None:
        body = request.json
        if not isinstance(body, dict):
            return _error(400, "invalid_request_error", "There was an error parsing the body.")
        for name in ("model", "max_tokens", "messages"):
            if name not in body:
                return _error(400, "invalid_request_error", f"{name}: Field required")
        if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
            return _error(400, "invalid_request_error", "max_tokens: must be at least 1")
        if not isinstance(body["messages"], list) or not body["messages"]:
            return _error(
                400, "invalid_request_error", "messages: at least one message is required"
            )
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
        entries = [_model(model) for model in models]
        listing = {
            "data": entries,
            "has_more": False,
            "first_id": entries[0]["id"] if entries else None,
            "last_id": entries[-1]["id"] if entries else None,
        }
        return Reply(200, dumps(listing), JSON_TYPE)

    def message(self, exchange: Exchange, text: str, output_tokens: int) -> bytes:
        return dumps(
            {
                "id": exchange.request_id.replace("req_", "msg_"),
                "type": "message",
                "role": "assistant",
                "model": exchange.model,
                "content": [{"type": "text", "text": text}] if text else [],
                "stop_reason": "refusal" if exchange.refused else "end_turn",
                "stop_sequence": None,
                "usage": _usage(exchange.input_tokens, output_tokens),
            }
        )

    def stream(self, exchange: Exchange, tokens: list[str], end: End) -> StreamFrames:
        start = {
            "type": "message_start",
            "message": {
                "id": exchange.request_id.replace("req_", "msg_"),
                "type": "message",
                "role": "assistant",
                "model": exchange.model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": _usage(exchange.input_tokens, 1),
            },
        }
        head = [sse(dumps(start), "message_start")]
        if tokens or end not in (End.COMPLETE, End.NO_MARKER):
            block = {"type": "content_block_start", "index": 0}
            block["content_block"] = {"type": "text", "text": ""}
            head.append(sse(dumps(block), "content_block_start"))
        head.append(sse(b'{"type":"ping"}', "ping"))
        frames = [_DELTA(quote(token)) for token in tokens]
        stop = "refusal" if exchange.refused else "end_turn"
        return StreamFrames(head, frames, _tail(end, bool(tokens), len(tokens), stop))

    def status_error(self, status: int, exchange: Exchange | None) -> Reply:
        kind, message = _ERRORS.get(status) or (
            ("api_error", "Internal server error")
            if status >= 500
            else ("invalid_request_error", "Invalid request")
        )
        return _error(status, kind, message)

    def fault_error(self, fault: str, exchange: Exchange) -> Reply:
        if fault == "context_length":
            too_many = exchange.input_tokens + 200_000
            message = f"prompt is too long: {too_many} tokens > 200000 maximum"
            return _error(400, "invalid_request_error", message)
        if fault == "quota":
            return _error(400, "invalid_request_error", _CREDIT)
        if fault == "auth":
            return _error(401, "authentication_error", "invalid x-api-key")
        return _error(404, "not_found_error", f"model: {exchange.model}")

    def prefill_error(self, request: RecordedRequest) -> Reply | None:
        if last_role(request.json.get("messages")) != "assistant":
            return None
        return _error(400, "invalid_request_error", _NO_PREFILL)

    def response_headers(self, request_id: str) -> list[tuple[str, str]]:
        return [("request-id", request_id)]

    def ratelimit_headers(self, budgets: list[Budget], now: float) -> list[tuple[str, str]]:
        headers = []
        for budget in budgets:
            kinds = ("tokens", "input-tokens", "output-tokens")
            for kind in kinds if budget.kind == "tokens" else ("requests",):
                prefix = f"anthropic-ratelimit-{kind}-"
                limit = max(budget.remaining, _LIMITS[budget.kind])
                headers += [
                    (prefix + "limit", str(limit)),
                    (prefix + "remaining", str(budget.remaining)),
                    (prefix + "reset", rfc3339(now + budget.reset)),
                ]
        return headers


def _model(model: str) -> dict[str, str]:
    return {
        "type": "model",
        "id": model,
        "display_name": model,
        "created_at": "2025-09-29T00:00:00Z",
    }


def _usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
    }


def _delta(text: str) -> dict[str, object]:
    return {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": text},
    }


_DELTA = Template(_delta(Template.slot(0)), lambda raw: sse(raw, "content_block_delta"))


def _tail(end: End, had_block: bool, output_tokens: int, stop_reason: str) -> list[bytes]:
    """What follows the tokens: nothing, a broken event, an error, or the end of the message
    (without ``message_stop`` for ``End.NO_MARKER``)."""
    if end is End.CUT:
        return []
    if end is End.MALFORMED:
        return [b"event: content_block_delta\ndata: " + cut_json(_delta(" more")) + b"\n\n"]
    if end is End.ERROR:
        error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        return [sse(dumps(error), "error")]
    stop = {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": {"output_tokens": output_tokens},
    }
    tail = (
        [sse(b'{"type":"content_block_stop","index":0}', "content_block_stop")] if had_block else []
    )
    tail.append(sse(dumps(stop), "message_delta"))
    if end is End.COMPLETE:
        tail.append(sse(b'{"type":"message_stop"}', "message_stop"))
    return tail


def _error(status: int, kind: str, message: str) -> Reply:
    request_id = new_id("req_011C")
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}
    return Reply(status, dumps(body), JSON_TYPE, [("request-id", request_id)])


DIALECT = AnthropicDialect()
