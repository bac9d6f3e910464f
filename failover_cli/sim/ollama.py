"""The Ollama API: ``POST /api/chat`` (JSON or NDJSON), ``GET /api/tags``, ``GET /api/version``.

Wire format, as documented by Ollama:

- ``ChatResponse``/``ChatStreamEvent``, ``ListResponse`` and ``VersionResponse``: ollama/ollama
  ``docs/openapi.yaml`` (tests/specs/ollama-chat.openapi.json).
- ``/api/chat`` streams unless the body says ``"stream": false``; a stream is NDJSON
  (``application/x-ndjson``) whose last line has ``done: true``, ``done_reason`` and the counters;
  every duration is in nanoseconds: https://docs.ollama.com/api/streaming,
  https://github.com/ollama/ollama/blob/main/docs/api.md
- Errors are ``{"error": "..."}`` with the status code; an error after the stream started is
  an NDJSON line ``{"error": "..."}`` and the status stays 200: https://docs.ollama.com/api/errors
- An unknown model is a 404 ``model "x" not found, try pulling it first`` (ollama/ollama#718);
  an over-long input is a 400 ``the input length exceeds the context length``.

Ollama has no authentication; when the simulator is given an ``api_key`` it expects
``Authorization: Bearer <key>`` (as a proxy or ollama.com would) and answers 401 otherwise.
Ollama sends no rate-limit headers, and it continues a final assistant turn: ``reject_prefill``
(a 400 "the conversation must end with a user message") stands for a proxy that refuses it, and
``no_end_marker`` ends the ``done`` line without its newline.
"""

from __future__ import annotations

import time

from .wire import (
    COMPLETION,
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
)

JSON_UTF8 = "application/json; charset=utf-8"
NDJSON = "application/x-ndjson"
_MESSAGES = {
    400: "invalid request",
    401: "unauthorized",
    404: "not found",
    429: "too many requests",
    500: "an error was encountered while running the model",
    502: "bad gateway",
    503: "server busy, please try again.  maximum pending requests exceeded",
}


class OllamaDialect:
    default_model = "llama3.2:latest"
    overloaded_status = 503
    id_prefix = "req_"
    tool_id_prefix = "call_"
    json_type = JSON_UTF8

    def route(self, request: RecordedRequest) -> Route | None:
        if request.method == "POST" and request.path == "/api/chat":
            return COMPLETION
        if request.method == "GET" and request.path in ("/api/tags", "/api/version", "/"):
            return HEALTH
        return None

    def unknown_route(self, request: RecordedRequest) -> Reply:
        return Reply(404, b"404 page not found", "text/plain")

    def check_auth(self, request: RecordedRequest, api_key: str | None) -> Reply | None:
        if api_key is not None and request.headers.get("authorization") != f"Bearer {api_key}":
            return _error(401, "unauthorized")
        return None

    def chat_view(self, request: RecordedRequest) -> ChatView:
        return NO_CHAT

    def check_request(self, request: RecordedRequest) -> Reply | None:
        body = request.json
        if not isinstance(body, dict):
            return _error(400, "missing request body" if not request.body else "invalid JSON")
        if not body.get("model"):
            return _error(400, "model is required")
        if not body.get("messages"):  # Ollama loads the model and answers at once
            reply = {
                "model": body["model"],
                "created_at": _timestamp(time.time()),
                "message": {"role": "assistant", "content": ""},
                "done_reason": "load",
                "done": True,
            }
            streaming = self.wants_stream(request)
            newline = b"\n" if streaming else b""
            return Reply(200, dumps(reply) + newline, NDJSON if streaming else JSON_UTF8)
        return None

    def stream_type(self, request: RecordedRequest) -> str:
        return NDJSON

    def wants_stream(self, request: RecordedRequest) -> bool:
        return request.json.get("stream", True) is not False

    def requested_model(self, request: RecordedRequest, route: Route) -> str | None:
        return request.json.get("model")

    def health(self, request: RecordedRequest, route: Route, models: list[str]) -> Reply:
        if request.path == "/":
            return Reply(200, b"Ollama is running", "text/plain; charset=utf-8")
        if request.path == "/api/version":
            return Reply(200, dumps({"version": "0.12.6"}), JSON_UTF8)
        return Reply(200, dumps({"models": [_model(name) for name in models]}), JSON_UTF8)

    def message(self, exchange: Exchange, text: str, output_tokens: int) -> bytes:
        return dumps(_final(exchange, text, output_tokens))

    def stream(self, exchange: Exchange, tokens: list[str], end: End) -> StreamFrames:
        stamp = _timestamp(exchange.created)
        token_line = Template(
            _piece(exchange.model, stamp, Template.slot(0)), lambda raw: raw + b"\n"
        )
        frames = [token_line(quote(token)) for token in tokens]
        if end is End.CUT:
            tail = []
        elif end is End.MALFORMED:
            tail = [cut_json(_piece(exchange.model, stamp, " more")) + b"\n"]
        elif end is End.ERROR:
            tail = [_line({"error": _MESSAGES[500]})]
        else:
            final = _line(_final(exchange, "", len(tokens)))
            tail = [final if end is End.COMPLETE else final.rstrip(b"\n")]
        return StreamFrames([], frames, tail)

    def status_error(self, status: int, exchange: Exchange | None) -> Reply:
        return _error(status, _MESSAGES.get(status) or f"status {status}")

    def fault_error(self, fault: str, exchange: Exchange) -> Reply:
        if fault == "context_length":
            return _error(400, "the input length exceeds the context length")
        if fault == "quota":
            return _error(429, "you have reached your usage limit, please upgrade to continue")
        if fault == "auth":
            return _error(401, "unauthorized")
        return _error(404, f'model "{exchange.model}" not found, try pulling it first')

    def prefill_error(self, request: RecordedRequest) -> Reply | None:
        if last_role(request.json.get("messages")) != "assistant":
            return None
        return _error(400, "the conversation must end with a user message")

    def response_headers(self, request_id: str) -> list[tuple[str, str]]:
        return []

    def ratelimit_headers(self, budgets: list[Budget], now: float) -> list[tuple[str, str]]:
        return []


def _timestamp(epoch: float) -> str:
    whole = int(epoch)
    nanos = int((epoch - whole) * 1e9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{nanos:09d}Z"


def _piece(model: str, stamp: str, text: str) -> dict[str, object]:
    return {
        "model": model,
        "created_at": stamp,
        "message": {"role": "assistant", "content": text},
        "done": False,
    }


def _final(exchange: Exchange, text: str, output_tokens: int) -> dict[str, object]:
    load = _nanos(exchange.latency)
    prompt = _nanos(exchange.ttft)
    generation = _nanos(exchange.generation)
    return {
        "model": exchange.model,
        "created_at": _timestamp(exchange.created),
        "message": {"role": "assistant", "content": text},
        "done_reason": "stop",
        "done": True,
        "total_duration": load + prompt + generation,
        "load_duration": load,
        "prompt_eval_count": exchange.input_tokens,
        "prompt_eval_duration": prompt,
        "eval_count": output_tokens,
        "eval_duration": generation,
    }


def _nanos(seconds: float) -> int:
    """Nanoseconds, never zero: a real model always takes some time."""
    return max(1000, int(seconds * 1e9))


def _model(name: str) -> dict[str, object]:
    return {
        "name": name,
        "model": name,
        "modified_at": "2025-10-03T23:34:03.409490317-07:00",
        "size": 2019393189,
        "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": "llama",
            "families": ["llama"],
            "parameter_size": "3.2B",
            "quantization_level": "Q4_K_M",
        },
    }


def _line(obj: object) -> bytes:
    return dumps(obj) + b"\n"


def _error(status: int, message: str) -> Reply:
    return Reply(status, dumps({"error": message}), JSON_UTF8)


DIALECT = OllamaDialect()
