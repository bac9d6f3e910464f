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

Chat features, as the server takes them (ollama/ollama ``api/types.go``, ``server/routes.go``)
and the official SDK ollama 0.6.3 parses them (``_types.py`` ``Message.ToolCall``):

- ``tools`` are offered to the model; Ollama has no ``tool_choice``, so the view's choice is
  always ``auto``; ``format`` is ``"json"`` or a JSON schema.
- A tool call is answered as ``message.tool_calls: [{"id": "call_...", "function": {"index",
  "name", "arguments": {...}}}]`` with ``content: ""`` and ``done_reason: "stop"`` (Ollama has no
  tool-call finish reason). Streamed, the calls arrive whole in one chunk (``done: false``)
  after the text, then the ``done`` chunk; a stream broken before its finish (``truncate``,
  ``reset``, ``stall``, ``midstream_error``, ``malformed``) breaks before the call, too.
- Rejections, 400 ``{"error": "..."}`` as the server answers a body it cannot bind: an image
  that is not base64 (Go's ``illegal base64 data at input byte N``, as a ``data:`` URL sent
  whole gives), tool-call ``arguments`` that are not an object (JSON text, as OpenAI sends
  them: "Value looks like object, but can't find closing '}' symbol"), a field of the wrong
  type (``json: cannot unmarshal ...``), and tools offered to a model without the tools
  capability: ``registry.ollama.ai/library/<model>:<tag> does not support tools``. The
  simulator's models all take tools except those whose name contains ``notools``
  (``llama3-notools``), so a test picks the failure by the model it asks for.
- Stricter than Ollama: an unknown ``role`` is a 400 here. The real server lower-cases the role
  and hands it to the model's template, where most templates drop the message silently; a
  simulator that accepted it would hide an adapter sending, say, ``developer``.

Ollama has no authentication; when the simulator is given an ``api_key`` it expects
``Authorization: Bearer <key>`` (as a proxy or ollama.com would) and answers 401 otherwise.
Ollama sends no rate-limit headers, and it continues a final assistant turn: ``reject_prefill``
(a 400 "the conversation must end with a user message") stands for a proxy that refuses it, and
``no_end_marker`` ends the ``done`` line without its newline.
"""

from __future__ import annotations

import time
from typing import Any

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
    SimToolCall,
    StreamFrames,
    Template,
    cut_json,
    dumps,
    last_role,
    quote,
)

JSON_UTF8 = "application/json; charset=utf-8"
NDJSON = "application/x-ndjson"
ROLES = ("system", "user", "assistant", "tool")
NO_TOOLS_MARK = "notools"  # models whose name holds it lack the tools capability
_BASE64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_CRLF = frozenset(b"\r\n")
_PAD = ord("=")
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
        body = request.json
        tools: dict[str, Any] = {}
        for tool in body.get("tools") or ():
            function = tool.get("function") if isinstance(tool, dict) else None
            if isinstance(function, dict) and isinstance(function.get("name"), str):
                parameters = function.get("parameters")
                tools[function["name"]] = parameters if isinstance(parameters, dict) else {}
        fmt = body.get("format")
        wants_json = fmt == "json" or isinstance(fmt, dict)
        after_tool = (last_role(body.get("messages")) or "").lower() == "tool"
        if not tools and not wants_json and not after_tool:
            return NO_CHAT
        schema = fmt if isinstance(fmt, dict) else None
        return ChatView(tools, "auto", after_tool, wants_json, schema)

    def check_request(self, request: RecordedRequest) -> Reply | None:
        body = request.json
        if not isinstance(body, dict):
            return _error(400, "missing request body" if not request.body else "invalid JSON")
        unbound = _bind_error(body)
        if unbound is not None:
            return _error(400, unbound)
        if not body.get("model"):
            return _error(400, "model is required")
        for message in body.get("messages") or ():
            role = message.get("role")
            if not isinstance(role, str) or role.lower() not in ROLES:
                return _error(
                    400,
                    f"invalid message role {dumps(role).decode()}: must be one of"
                    ' "system", "user", "assistant" or "tool"',
                )
        if body.get("tools") and NO_TOOLS_MARK in str(body["model"]).lower():
            return _error(400, f"{_full_name(str(body['model']))} does not support tools")
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
        final = _final(exchange, text, output_tokens + _call_tokens(exchange.tool_calls))
        if exchange.tool_calls:
            final["message"] = _assistant(text, exchange.tool_calls)
        return dumps(final)

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
            calls = exchange.tool_calls
            final = _line(_final(exchange, "", len(tokens) + _call_tokens(calls)))
            tail = [final if end is End.COMPLETE else final.rstrip(b"\n")]
            if calls:
                piece = _piece(exchange.model, stamp, "")
                piece["message"] = _assistant("", calls)
                tail.insert(0, _line(piece))
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


def _assistant(text: str, calls: list[SimToolCall]) -> dict[str, object]:
    """An assistant message with tool calls, as ``server/routes.go`` writes them."""
    return {
        "role": "assistant",
        "content": text,
        "tool_calls": [
            {
                "id": call.id,
                "function": {"index": i, "name": call.name, "arguments": call.arguments},
            }
            for i, call in enumerate(calls)
        ],
    }


def _call_tokens(calls: list[SimToolCall]) -> int:
    """Tokens a model spends writing ``calls`` (a stand-in: one per argument, plus one)."""
    return sum(len(dumps(c.arguments).split(b",")) + 1 for c in calls)


def _bind_error(body: dict[str, Any]) -> str | None:
    """What Go's JSON decoding of a ChatRequest says of ``body``'s messages, or None."""
    messages = body.get("messages")
    if messages is None:
        return None
    if not isinstance(messages, list):
        return _unmarshal(messages, "ChatRequest.messages", "[]api.Message")
    for message in messages:
        if not isinstance(message, dict):
            return _unmarshal(message, "ChatRequest.messages", "api.Message")
        for name in ("role", "content", "tool_name", "tool_call_id"):
            value = message.get(name)
            if value is not None and not isinstance(value, str):
                return _unmarshal(value, f"Message.messages.{name}", "string")
        unbound = _calls_error(message.get("tool_calls")) or _images_error(message.get("images"))
        if unbound is not None:
            return unbound
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        return _unmarshal(tools, "ChatRequest.tools", "api.Tools")
    return None


def _images_error(images: Any) -> str | None:
    if images is None:
        return None
    if not isinstance(images, list):
        return _unmarshal(images, "Message.messages.images", "[]api.ImageData")
    for image in images:
        if not isinstance(image, str):
            return _unmarshal(image, "Message.messages.images", "api.ImageData")
        at = _corrupt_base64(image)
        if at is not None:
            return f"illegal base64 data at input byte {at}"
    return None


def _calls_error(calls: Any) -> str | None:
    """Arguments must be an object: the server reads them with go-ordered-map, whose
    ``UnmarshalJSON`` (buger/jsonparser ``ObjectEach``) refuses anything else, such as the
    JSON text OpenAI sends."""
    if calls is None:
        return None
    if not isinstance(calls, list):
        return _unmarshal(calls, "Message.messages.tool_calls", "[]api.ToolCall")
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            return _unmarshal(
                function, "ToolCall.messages.tool_calls.function", "api.ToolCallFunction"
            )
        arguments = function.get("arguments")
        if arguments is not None and not isinstance(arguments, dict):
            return "Value looks like object, but can't find closing '}' symbol"
    return None


def _unmarshal(value: object, field: str, go_type: str) -> str:
    kinds = {bool: "bool", str: "string", list: "array", dict: "object", type(None): "null"}
    kind = kinds.get(type(value), "number")
    return f"json: cannot unmarshal {kind} into Go struct field {field} of type {go_type}"


def _corrupt_base64(text: str) -> int | None:
    """The byte offset where Go's ``base64.StdEncoding`` finds ``text`` corrupt, or None when
    it decodes: Go's ``decodeQuantum`` (padding required, CR and LF skipped), step by step."""
    data, si = text.encode(), 0
    size = len(data)
    while True:
        j = 0  # characters of the current quantum
        while j < 4:
            if si == size:
                return None if j == 0 else si - j
            byte = data[si]
            si += 1
            if byte in _BASE64:
                j += 1
            elif byte in _CRLF:
                continue
            elif byte != _PAD or j < 2:
                return si - 1
            else:  # padding ends the data
                if j == 2:  # "==" expected: the first is consumed
                    while si < size and data[si] in _CRLF:
                        si += 1
                    if si == size:
                        return size
                    if data[si] != _PAD:
                        return si - 1
                    si += 1
                while si < size and data[si] in _CRLF:
                    si += 1
                return si if si < size else None


def _full_name(model: str) -> str:
    """A model's full name as Ollama prints it: ``registry.ollama.ai/library/<name>:latest``."""
    name = model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest"
    parts = name.split("/")
    if len(parts) == 1:
        parts.insert(0, "library")
    if len(parts) == 2:
        parts.insert(0, "registry.ollama.ai")
    return "/".join(parts)


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
