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

Chat requests (tools, tool results, images, structured output) are checked as the API checks
them, each rejection a 400 in its words:

- a ``tool`` message that follows no assistant message with ``tool_calls``: "Invalid
  parameter: messages with role 'tool' must be a response to a preceeding message with
  'tool_calls'." (``param`` ``messages.[i].role``; miurla/morphic#136, sdcb/chats#132); one
  answering an id those calls do not have: "Invalid parameter: 'tool_call_id' of '...' not
  found in 'tool_calls' of previous message." (dapr/dapr-agents#145); calls left without their
  results: "An assistant message with 'tool_calls' must be followed by tool messages
  responding to each 'tool_call_id'. The following tool_call_ids did not have response
  messages: ..." (router-for-me/CLIProxyAPI#2798);
- an unknown role: "Invalid value: '...'. Supported values are: ..." (``invalid_value``, the
  API's wording for an enum; the role list is the spec's ChatCompletionRequestMessage);
- an image in a message that is not the user's: "Invalid 'messages[i]'. Image URLs are only
  allowed for messages with role 'user', but this message with role '...' contains an image
  URL." (openai/openai-node#1030, OpenHands/OpenHands#7700);
- a function name (of a tool or of an earlier call) outside ``^[a-zA-Z0-9_-]+$``: "Invalid
  'tools[0].function.name': string does not match pattern. ..." (``invalid_value``;
  brekkylab/ailoy#109, mcp-use/mcp-use#90), or over 64 characters (FunctionObject in the spec;
  "string too long. Expected a string with maximum length 64, ...", the API's wording for a
  length, as in hjnlxuexi's report in nanbingxyz/5ire#33);
- a tool-call id over 40 characters: "Invalid 'messages[2].tool_calls[0].id': string too long.
  Expected a string with maximum length 40, but got a string with length 83 instead."
  (openclaw/openclaw#875, microsoft/autogen#6377; not in the spec or SDK, and vercel/ai#17233
  could not reproduce it in 2026-07: the simulator keeps the stricter, reported limit);
- ``tool_choice`` without ``tools``: "Invalid value for 'tool_choice': 'tool_choice' is only
  allowed when 'tools' are specified." (dapr/dapr-agents#248); naming a function that is not
  among them (the wording here is the simulator's own: no report of the real one was found);
- ``response_format`` ``json_schema`` without ``json_schema``, its ``name`` (required by the
  spec) or its ``schema``: "Missing required parameter: '...'." (the spec makes ``schema``
  optional; the simulator requires it, as a schema-less answer cannot be checked);
- a value of the wrong type: "Invalid type for '...': expected an object, but got a string
  instead." (``invalid_type``, the API's wording for a type).

A tool call is answered as the SDK (openai 3.57, ``chat_completion_chunk.py``,
``lib/streaming/chat/_completions.py``) reads it: whole, ``message.tool_calls`` with JSON-text
``arguments``, ``content`` null and ``finish_reason`` ``tool_calls``; streamed, a first chunk
with the role and each call's ``index``, ``id``, ``type``, ``function.name`` and empty
``arguments``, then the arguments in several fragments, then the ``tool_calls`` finish.

Unlike the real API, the 401 message never echoes any part of the key it was given.
"""

from __future__ import annotations

import re
from typing import Any

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
    SimToolCall,
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
_ROLES = ("system", "assistant", "user", "function", "tool", "developer")
_SUPPORTED_ROLES = "'system', 'assistant', 'user', 'function', 'tool', and 'developer'"
_NAME = re.compile(r"[a-zA-Z0-9_-]+")
MAX_NAME = 64  # FunctionObject.name
MAX_TOOL_CALL_ID = 40  # reported by the API, not in the spec (see above)
_NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}
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
        body = request.json
        offered, fmt = body.get("tools"), body.get("response_format")
        if not offered and not isinstance(fmt, dict):
            return NO_CHAT
        tools: dict[str, Any] = {}
        for tool in offered if isinstance(offered, list) else ():
            function = tool.get("function") if isinstance(tool, dict) else None
            if isinstance(function, dict) and isinstance(function.get("name"), str):
                parameters = function.get("parameters")
                tools[function["name"]] = (
                    parameters if isinstance(parameters, dict) else _NO_PARAMETERS
                )
        choice = body.get("tool_choice")
        if isinstance(choice, dict):
            function = choice.get("function")
            name = function.get("name") if isinstance(function, dict) else None
            choice = name if isinstance(name, str) else "auto"
        elif choice not in ("none", "required"):
            choice = "auto"
        wants_json, schema = False, None
        if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
            wants_json = True
            spec = fmt.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, dict) else None
        after_tool = last_role(body.get("messages")) == "tool"
        return ChatView(tools, choice, after_tool, wants_json, schema)

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
        return _check_messages(messages) or _check_tools(body) or _check_format(body)

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
        message: dict[str, Any] = {
            "role": "assistant",
            "content": text,
            "refusal": None,
            "annotations": [],
        }
        finish = "content_filter" if exchange.refused else "stop"
        if exchange.tool_calls:
            message["content"] = text or None
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": _arguments(c)},
                }
                for c in exchange.tool_calls
            ]
            finish = "tool_calls"
            output_tokens += _call_tokens(exchange.tool_calls)
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
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

        role: dict[str, object] = {"role": "assistant", "content": "", "refusal": None}
        calls = exchange.tool_calls
        finish = "content_filter" if exchange.refused else "stop"
        pieces: list[bytes] = []  # the tool calls' frames, after the text
        if calls:
            finish = "tool_calls"
            for index, call in enumerate(calls):
                opening = {
                    "index": index,
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": ""},
                }
                if index == 0 and not tokens:  # the first chunk opens the first call
                    role = {**role, "content": None, "tool_calls": [opening]}
                else:
                    pieces.append(sse(dumps(chunk({"tool_calls": [opening]}))))
                for fragment in _fragments(_arguments(call)):
                    piece = {"index": index, "function": {"arguments": fragment}}
                    delta: dict[str, object] = {"tool_calls": [piece]}
                    pieces.append(sse(dumps(chunk(delta))))
        head = [sse(dumps(chunk(role)))]
        token_frame = Template(chunk({"content": Template.slot(0)}), sse)
        frames = [token_frame(quote(token)) for token in tokens]
        if end is End.CUT:
            tail = pieces[:1]  # a call's first fragment, if any, then nothing
        elif end is End.MALFORMED:
            tail = [*pieces[:1], b"data: " + cut_json(chunk({"content": " more"})) + b"\n\n"]
        elif end is End.ERROR:
            error = {"message": _SERVER, "type": "server_error", "param": None, "code": None}
            tail = [*pieces[:1], sse(dumps({"error": error}))]
        else:
            tail = [*pieces, sse(dumps(chunk({}, finish)))]
            if include_usage:
                usage = _usage(exchange.input_tokens, len(tokens) + _call_tokens(calls))
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


def _arguments(call: SimToolCall) -> str:
    return dumps(call.arguments).decode()


def _call_tokens(calls: list[SimToolCall]) -> int:
    """Output tokens the calls stand for (about four characters each)."""
    return sum(max(1, len(_arguments(c)) // 4) for c in calls)


def _fragments(text: str) -> list[str]:
    """``text`` in three pieces (two when it is that short), as the API streams arguments."""
    size = max(1, -(-len(text) // 3))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _invalid(param: str, message: str, code: str | None = "invalid_value") -> Reply:
    return _error(400, "invalid_request_error", code, message, param)


def _too_long(param: str, limit: int, length: int) -> Reply:
    message = (
        f"Invalid '{param}': string too long. Expected a string with maximum length {limit}, "
        f"but got a string with length {length} instead."
    )
    return _invalid(param, message, "string_above_max_length")


def _check_name(name: Any, param: str) -> Reply | None:
    """A function name as FunctionObject takes it."""
    if not isinstance(name, str):
        message = f"Invalid type for '{param}': expected a string, but got {_json_type(name)}."
        return _invalid(param, message, "invalid_type")
    if len(name) > MAX_NAME:
        return _too_long(param, MAX_NAME, len(name))
    if not _NAME.fullmatch(name):
        message = (
            f"Invalid '{param}': string does not match pattern. Expected a string that matches "
            "the pattern '^[a-zA-Z0-9_-]+$'."
        )
        return _invalid(param, message)
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null instead"
    kinds = {bool: "a boolean", int: "an integer", float: "a decimal", str: "a string"}
    kinds |= {list: "an array", dict: "an object"}
    return kinds.get(type(value), "a value") + " instead"


def _check_messages(messages: list[Any]) -> Reply | None:
    """The messages' roles, images, earlier calls, and every tool message answering a call
    of the assistant message before it (and every call answered)."""
    calls: list[str] | None = None  # the ids of the assistant calls tool messages answer
    pending: list[str] = []  # those not answered yet
    owner = 0  # the index of that assistant message
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            message_ = f"Invalid type for 'messages[{i}]': expected an object, but got "
            return _invalid(f"messages[{i}]", message_ + _json_type(message) + ".", "invalid_type")
        role = message.get("role")
        if role not in _ROLES:
            text = f"Invalid value: {role!r}. Supported values are: {_SUPPORTED_ROLES}."
            return _invalid(f"messages[{i}].role", text)
        content = message.get("content")
        if role != "user" and isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") == "image_url":
                    text = (
                        f"Invalid 'messages[{i}]'. Image URLs are only allowed for messages with"
                        f" role 'user', but this message with role '{role}' contains an image URL."
                    )
                    return _invalid(f"messages[{i}]", text)
        if role == "tool":
            if calls is None:
                text = (
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'."
                )
                return _invalid(f"messages.[{i}].role", text, None)
            answered = message.get("tool_call_id")
            if answered not in calls:
                text = (
                    f"Invalid parameter: 'tool_call_id' of '{answered}' not found in "
                    "'tool_calls' of previous message."
                )
                return _invalid(f"messages.[{i}].tool_call_id", text, None)
            if answered in pending:
                pending.remove(answered)
            continue
        if pending:
            return _unanswered(owner, pending)
        calls = None
        found = message.get("tool_calls") if role == "assistant" else None
        if found:
            problem = _check_calls(found, i)
            if problem is not None:
                return problem
            calls = [c.get("id") for c in found]
            pending, owner = list(calls), i
    return _unanswered(owner, pending) if pending else None


def _check_calls(found: Any, i: int) -> Reply | None:
    if not isinstance(found, list):
        text = f"Invalid type for 'messages[{i}].tool_calls': expected an array, but got "
        return _invalid(f"messages[{i}].tool_calls", text + _json_type(found) + ".", "invalid_type")
    for j, call in enumerate(found):
        at = f"messages[{i}].tool_calls[{j}]"
        if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
            return _invalid(at, f"Invalid '{at}': expected an object with a function.")
        call_id = call.get("id")
        if not isinstance(call_id, str):
            message = f"Missing required parameter: '{at}.id'."
            return _invalid(f"{at}.id", message, "missing_required_parameter")
        if len(call_id) > MAX_TOOL_CALL_ID:
            return _too_long(f"{at}.id", MAX_TOOL_CALL_ID, len(call_id))
        problem = _check_name(call["function"].get("name"), f"{at}.function.name")
        if problem is not None:
            return problem
    return None


def _unanswered(owner: int, pending: list[str]) -> Reply:
    text = (
        "An assistant message with 'tool_calls' must be followed by tool messages responding "
        "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
        + ", ".join(map(str, pending))
    )
    return _invalid(f"messages.[{owner}].role", text, None)


def _check_tools(body: dict[str, Any]) -> Reply | None:
    tools = body.get("tools")
    names: list[str] = []
    if tools is not None:
        if not isinstance(tools, list):
            text = "Invalid type for 'tools': expected an array, but got "
            return _invalid("tools", text + _json_type(tools) + ".", "invalid_type")
        for i, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(function, dict):
                message = f"Missing required parameter: 'tools[{i}].function'."
                return _invalid(f"tools[{i}].function", message, "missing_required_parameter")
            problem = _check_name(function.get("name"), f"tools[{i}].function.name")
            if problem is not None:
                return problem
            names.append(function["name"])
    choice = body.get("tool_choice")
    if choice is None:
        return None
    if not names:
        text = (
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are"
            " specified."
        )
        return _invalid("tool_choice", text, None)
    if isinstance(choice, dict):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if name not in names:
            text = f"Invalid value for 'tool_choice': function {name!r} is not one of the 'tools'."
            return _invalid("tool_choice", text)
    elif choice not in ("none", "auto", "required"):
        text = f"Invalid value: {choice!r}. Supported values are: 'none', 'auto', and 'required'."
        return _invalid("tool_choice", text)
    return None


def _check_format(body: dict[str, Any]) -> Reply | None:
    fmt = body.get("response_format")
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None
    spec = fmt.get("json_schema")
    for param, present in (
        ("response_format.json_schema", isinstance(spec, dict)),
        ("response_format.json_schema.name", isinstance(spec, dict) and "name" in spec),
        ("response_format.json_schema.schema", isinstance(spec, dict) and "schema" in spec),
    ):
        if not present:
            message = f"Missing required parameter: '{param}'."
            return _invalid(param, message, "missing_required_parameter")
    return None


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
