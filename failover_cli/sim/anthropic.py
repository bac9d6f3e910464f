"""The Anthropic Messages API: ``POST /v1/messages`` (JSON and SSE), ``GET /v1/models`` and
``POST /v1/messages/count_tokens``.

Wire format, as documented by Anthropic:

- Stream event names, order and payloads (``message_start``, ``content_block_start``, ``ping``,
  ``content_block_delta``/``text_delta``, ``content_block_stop``, ``message_delta`` with
  ``stop_reason`` and cumulative ``usage.output_tokens``, ``message_stop``) and the in-stream
  ``event: error`` carrying ``overloaded_error``:
  https://docs.anthropic.com/en/docs/build-with-claude/streaming
- Status → ``error.type`` table, the ``{"type":"error","error":{...},"request_id":...}`` shape
  and the ``request-id`` header: https://docs.anthropic.com/en/api/errors
- Token counting answers ``{"input_tokens": N}`` (the SDK's ``MessageTokensCount``) to a
  Messages body without ``max_tokens``: https://docs.anthropic.com/en/api/messages-count-tokens
  (N is the same count the simulator reports as a completion's ``usage.input_tokens``).
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

Chat features, as the official SDK (anthropic 2.16) types them: ``types/tool_param.py``,
``tool_choice_{auto,any,tool,none}_param.py``, ``image_block_param.py`` with
``base64_image_source_param.py`` and ``url_image_source_param.py``, ``tool_use_block.py``,
``output_config_param.py``/``json_output_format_param.py``, ``raw_content_block_start_event.py``
and ``input_json_delta.py``; ``lib/streaming/_messages.py`` is how the SDK reads a stream
(blocks by ``index``, a ``tool_use`` block started with an empty ``input`` then filled by
``input_json_delta.partial_json`` fragments). A tool call is answered with ``tool_use`` blocks
(after any text) and ``stop_reason: tool_use``. Rejections, in the API's words (as reported):

- ``messages: Unexpected role "system". The Messages API accepts a top-level `system`
  parameter, not "system" as an input message role.`` (Maol-1997/cursor-claude-connector#3).
  Claude Opus 4.8 takes a ``system`` turn right after a user turn ("mid-conversation system
  messages", platform.claude.com whats-new-claude-4-8; ``types/system_message_param.py``).
- ``messages.N.content.M: unexpected `tool_use_id` found in `tool_result` blocks: ID. Each
  `tool_result` block must have a corresponding `tool_use` block in the previous message.``
  and ``messages.N: `tool_use` ids were found without `tool_result` blocks immediately after:
  ID. Each `tool_use` block must have a corresponding `tool_result` block in the next
  message.`` (anthropics/claude-code#13460, #5060). Consecutive same-role turns are one turn
  (``message_create_params.py``), so the rules apply to the combined turns.
- ``tools.N.custom.name: String should match pattern '^[a-zA-Z0-9_-]{1,128}$'`` (the current
  limit, home-assistant/core#147760; the old OpenAPI spec says 64).
- Image ``media_type`` and source ``type`` errors, and id patterns (``^[a-zA-Z0-9_-]+$``, the
  spec's RequestToolUseBlock), in the API's pydantic-style wording.
- ``output_config.format.schema: For 'object' type, 'additionalProperties' must be explicitly set
  to false`` (ax-llm/ax#458, BerriAI/litellm#35808); the deprecated top-level ``output_format``
  is refused (prism-php/prism#912).
- ```temperature` is deprecated for this model.`` (and ``top_p``, ``top_k``) on the models
  the current API takes no sampling parameters for (the Opus 4.7 migration guide: "Setting
  temperature, top_p, or top_k to any non-default value ... returns a 400 error"; reported in
  BoltAI/BoltAI#410), per :func:`failover_cli.capabilities.capabilities`.
- A ``tool_choice`` naming no offered tool: this wording is the simulator's own.
"""

from __future__ import annotations

import re
from typing import Any

from ..capabilities import capabilities
from ..types import ProviderConfig
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
    count_words,
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
_SYSTEM_ROLE = (
    'messages: Unexpected role "system". The Messages API accepts a top-level `system` '
    'parameter, not "system" as an input message role.'
)
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,128}")
_TOOL_NAME_PATTERN = "^[a-zA-Z0-9_-]{1,128}$"
_ID = re.compile(r"[a-zA-Z0-9_-]+")
_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_MID_SYSTEM = re.compile(r"claude-opus-4-8")  # models that take a mid-conversation system turn
_CHOICES = {"auto": "auto", "none": "none", "any": "required"}
_OPEN_OBJECT = (
    "output_config.format.schema: For 'object' type, 'additionalProperties' must be "
    "explicitly set to false"
)
_OUTPUT_FORMAT = (
    "output_format: This field is deprecated. Use 'output_config.format' instead. See "
    "https://platform.claude.com/docs/en/build-with-claude/structured-outputs for more "
    "information."
)


class AnthropicDialect:
    default_model = "claude-sonnet-4-5"
    overloaded_status = 529
    id_prefix = "req_011C"
    tool_id_prefix = "toolu_"
    json_type = JSON_TYPE

    def route(self, request: RecordedRequest) -> Route | None:
        if request.method == "POST" and request.path == COUNT_TOKENS_PATH:
            return Route(completion=False)  # answered beside the health checks
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
        body = request.json
        tools_in, config = body.get("tools"), body.get("output_config")
        if not tools_in and not config:
            return NO_CHAT
        tools = {
            t["name"]: t.get("input_schema")
            for t in tools_in or ()
            if isinstance(t, dict) and t.get("type") in (None, "custom")
        }
        choice = "auto"
        wanted = body.get("tool_choice")
        if isinstance(wanted, dict):
            kind = wanted.get("type")
            choice = (
                wanted.get("name", "auto") if kind == "tool" else _CHOICES.get(str(kind), "auto")
            )
        after_tool = False
        for message in reversed(body["messages"]):
            if message.get("role") == "user":
                content = message.get("content")
                after_tool = isinstance(content, list) and any(
                    isinstance(b, dict) and b.get("type") == "tool_result" for b in content
                )
                break
        form = config.get("format") if isinstance(config, dict) else None
        schema = form.get("schema") if isinstance(form, dict) else None
        return ChatView(tools, choice, after_tool, json=schema is not None, schema=schema)

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
        model = body["model"] if isinstance(body["model"], str) else ""
        problem = (
            _sampling_problem(body, model)
            or _tools_problem(body)
            or _messages_problem(body["messages"], model)
            or _output_problem(body)
        )
        if problem:
            return _error(400, "invalid_request_error", problem)
        return None

    def stream_type(self, request: RecordedRequest) -> str:
        return "text/event-stream; charset=utf-8"

    def wants_stream(self, request: RecordedRequest) -> bool:
        return request.json.get("stream") is True

    def requested_model(self, request: RecordedRequest, route: Route) -> str | None:
        return request.json.get("model")

    def health(self, request: RecordedRequest, route: Route, models: list[str]) -> Reply:
        if request.path == COUNT_TOKENS_PATH:
            return _count_tokens(request)
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
        content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
        for call in exchange.tool_calls:
            content.append(
                {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
            )
            output_tokens += len(_pieces(call))
        return dumps(
            {
                "id": exchange.request_id.replace("req_", "msg_"),
                "type": "message",
                "role": "assistant",
                "model": exchange.model,
                "content": content,
                "stop_reason": _stop_reason(exchange),
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
        calls = exchange.tool_calls
        had_block = bool(tokens) or (end not in (End.COMPLETE, End.NO_MARKER) and not calls)
        if had_block:
            block = {"type": "content_block_start", "index": 0}
            block["content_block"] = {"type": "text", "text": ""}
            head.append(sse(dumps(block), "content_block_start"))
        head.append(sse(b'{"type":"ping"}', "ping"))
        frames = [_DELTA(quote(token)) for token in tokens]
        tail = _tail(end, had_block, len(tokens), _stop_reason(exchange), calls)
        return StreamFrames(head, frames, tail)

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


COUNT_TOKENS_PATH = "/v1/messages/count_tokens"


def _count_tokens(request: RecordedRequest) -> Reply:
    """``{"input_tokens": N}`` for a Messages body (``max_tokens`` is not needed here)."""
    body = request.json
    if not isinstance(body, dict):
        return _error(400, "invalid_request_error", "There was an error parsing the body.")
    for name in ("model", "messages"):
        if name not in body:
            return _error(400, "invalid_request_error", f"{name}: Field required")
    if not isinstance(body["messages"], list) or not body["messages"]:
        return _error(400, "invalid_request_error", "messages: at least one message is required")
    model = body["model"] if isinstance(body["model"], str) else ""
    problem = _tools_problem(body) or _messages_problem(body["messages"], model)
    if problem:
        return _error(400, "invalid_request_error", problem)
    return Reply(200, dumps({"input_tokens": max(1, count_words(body))}), JSON_TYPE)


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


def _tail(
    end: End,
    had_block: bool,
    output_tokens: int,
    stop_reason: str,
    calls: list[SimToolCall] | None = None,
) -> list[bytes]:
    """What follows the tokens: the tool calls (if any), then nothing, a broken event, an
    error, or the end of the message (without ``message_stop`` for ``End.NO_MARKER``). A stream
    cut, broken or failing during tool calls stops after the first call's first fragment."""
    done = end in (End.COMPLETE, End.NO_MARKER)
    stop_text = sse(b'{"type":"content_block_stop","index":0}', "content_block_stop")
    tail = [stop_text] if had_block and done else []
    if calls:
        first = 1 if had_block else 0
        frames = [_tool_frames(call, first + k) for k, call in enumerate(calls)]
        output_tokens += sum(len(f) - 2 for f in frames)
        if done:
            tail += [frame for call_frames in frames for frame in call_frames]
        else:  # broken during the first call, after its first fragment
            tail = frames[0][:2]
            if end is End.CUT:
                return tail
    elif end is End.CUT:
        return []
    if end is End.MALFORMED:
        return [*tail, b"event: content_block_delta\ndata: " + cut_json(_delta(" more")) + b"\n\n"]
    if end is End.ERROR:
        error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        return [*tail, sse(dumps(error), "error")]
    stop = {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": {"output_tokens": output_tokens},
    }
    tail.append(sse(dumps(stop), "message_delta"))
    if end is End.COMPLETE:
        tail.append(sse(b'{"type":"message_stop"}', "message_stop"))
    return tail


def _stop_reason(exchange: Exchange) -> str:
    if exchange.tool_calls:
        return "tool_use"
    return "refusal" if exchange.refused else "end_turn"


def _pieces(call: SimToolCall) -> list[str]:
    """A call's arguments as JSON text in three pieces or more (two for ``{}``), as the API
    streams ``input_json_delta`` fragments."""
    text = dumps(call.arguments).decode()
    size = max(1, -(-len(text) // 3))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _tool_frames(call: SimToolCall, index: int) -> list[bytes]:
    """One ``tool_use`` block: its start (empty input), its JSON fragments, its stop."""
    block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
    start = {"type": "content_block_start", "index": index, "content_block": block}
    frames = [sse(dumps(start), "content_block_start")]
    for piece in _pieces(call):
        delta = {"type": "input_json_delta", "partial_json": piece}
        event = {"type": "content_block_delta", "index": index, "delta": delta}
        frames.append(sse(dumps(event), "content_block_delta"))
    stop = {"type": "content_block_stop", "index": index}
    frames.append(sse(dumps(stop), "content_block_stop"))
    return frames


# --- request checks: each returns the API's message for the first problem, else None --------


def _sampling_problem(body: dict[str, Any], model: str) -> str | None:
    """Sampling parameters on a model whose current API takes none (a non-default value)."""
    present = [name for name in ("temperature", "top_p", "top_k") if body.get(name) is not None]
    if not present:
        return None
    config = ProviderConfig(name="simulator", kind="anthropic", model=model)
    if capabilities(config).temperature is not None:
        return None
    for name in present:
        value = body[name]
        if name == "top_k" or value != 1:
            return f"`{name}` is deprecated for this model."
    return None


def _tools_problem(body: dict[str, Any]) -> str | None:
    tools = body.get("tools")
    names: set[str] = set()
    if tools is not None:
        if not isinstance(tools, list):
            return "tools: Input should be a valid list"
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict):
                return f"tools.{i}: Input should be a valid dictionary"
            if tool.get("type") not in (None, "custom"):
                continue  # a server tool (web search, code execution...): not checked here
            name = tool.get("name")
            if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
                return f"tools.{i}.custom.name: String should match pattern '{_TOOL_NAME_PATTERN}'"
            if name in names:
                return "tools: Tool names must be unique."
            names.add(name)
            schema = tool.get("input_schema")
            if not isinstance(schema, dict):
                return f"tools.{i}.custom.input_schema: Field required"
            if schema.get("type") != "object":
                return f"tools.{i}.custom.input_schema.type: Input should be 'object'"
    choice = body.get("tool_choice")
    if choice is None:
        return None
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind not in ("auto", "any", "tool", "none"):
        return (
            f"tool_choice: Input tag '{kind}' found using 'type' does not match any of the "
            "expected tags: 'auto', 'any', 'tool', 'none'"
        )
    if kind == "tool":
        name = choice.get("name")
        if not isinstance(name, str):
            return "tool_choice.tool.name: Field required"
        if name not in names:
            return f"tool_choice.name: tool '{name}' is not one of the tools in `tools`"
    return None


def _messages_problem(messages: list[Any], model: str) -> str | None:
    """Roles, image blocks and ids, then the tool rules: each ``tool_result`` answers a
    ``tool_use`` of the turn just before, and each ``tool_use`` is answered in the next turn.
    Consecutive same-role messages make one turn."""
    turns: list[tuple[str, list[tuple[int, list[Any]]]]] = []  # role, [(index, blocks)]
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"messages.{i}: Input should be a valid dictionary"
        role = message.get("role")
        if role == "system":
            if turns and turns[-1][0] == "user" and _MID_SYSTEM.search(model):
                continue  # a mid-conversation system turn, right after a user turn
            return _SYSTEM_ROLE
        if role not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        content = message.get("content")
        if isinstance(content, str):
            blocks: list[Any] = []
        elif isinstance(content, list):
            blocks = content
        else:
            return f"messages.{i}.content: Input should be a valid list"
        for j, block in enumerate(blocks):
            problem = _block_problem(block, f"messages.{i}.content.{j}")
            if problem:
                return problem
        if turns and turns[-1][0] == role:
            turns[-1][1].append((i, blocks))
        else:
            turns.append((role, [(i, blocks)]))
    uses: list[str] = []  # the tool_use ids of the assistant turn just before
    uses_at = 0  # the index of its last message
    for role, parts in turns:
        answered: set[str] = set()
        found: list[str] = []
        for i, blocks in parts:
            for j, block in enumerate(blocks):
                kind = block.get("type") if isinstance(block, dict) else None
                if kind == "tool_use":
                    found.append(block["id"])
                elif kind == "tool_result":
                    result = block["tool_use_id"]
                    if role != "user" or result not in uses:
                        return (
                            f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                            f"`tool_result` blocks: {result}. Each `tool_result` block must "
                            "have a corresponding `tool_use` block in the previous message."
                        )
                    answered.add(result)
        missing = [u for u in uses if u not in answered]
        if missing:
            return _unanswered(uses_at, missing)
        uses, uses_at = (found, parts[-1][0]) if role == "assistant" else ([], 0)
    return None  # tool uses in a last assistant turn are a prefill: nothing to answer yet


def _block_problem(block: Any, where: str) -> str | None:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind == "image":
        return _image_problem(block.get("source"), where)
    if kind == "tool_use":
        use = block.get("id")
        if not isinstance(use, str) or not _ID.fullmatch(use):
            return f"{where}.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'"
    elif kind == "tool_result":
        result = block.get("tool_use_id")
        if not isinstance(result, str) or not _ID.fullmatch(result):
            return (
                f"{where}.tool_result.tool_use_id: String should match pattern '^[a-zA-Z0-9_-]+$'"
            )
    return None


def _unanswered(index: int, missing: list[str]) -> str:
    return (
        f"messages.{index}: `tool_use` ids were found without `tool_result` blocks immediately "
        f"after: {', '.join(missing)}. Each `tool_use` block must have a corresponding "
        "`tool_result` block in the next message."
    )


def _image_problem(source: Any, where: str) -> str | None:
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64":
        if source.get("media_type") not in _MEDIA_TYPES:
            return (
                f"{where}.image.source.base64.media_type: Input should be 'image/jpeg', "
                "'image/png', 'image/gif' or 'image/webp'"
            )
        if not isinstance(source.get("data"), str):
            return f"{where}.image.source.base64.data: Field required"
        return None
    if kind == "url":
        url = source.get("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            return f"{where}.image.source.url.url: Field required"
        return None
    return (
        f"{where}.image.source: Input tag '{kind}' found using 'type' does not match any of "
        "the expected tags: 'base64', 'url'"
    )


def _output_problem(body: dict[str, Any]) -> str | None:
    if "output_format" in body:
        return _OUTPUT_FORMAT
    config = body.get("output_config")
    if config is None:
        return None
    if not isinstance(config, dict):
        return "output_config: Input should be a valid dictionary"
    form = config.get("format")
    if form is None:
        return None
    if not isinstance(form, dict) or form.get("type") != "json_schema":
        return "output_config.format.type: Input should be 'json_schema'"
    schema = form.get("schema")
    if not isinstance(schema, dict):
        return "output_config.format.schema: Field required"
    return _OPEN_OBJECT if _open_object(schema) else None


def _open_object(schema: Any) -> bool:
    """Whether an object schema in ``schema`` lacks ``additionalProperties: false``."""
    if isinstance(schema, list):
        return any(_open_object(s) for s in schema)
    if not isinstance(schema, dict):
        return False
    kind = schema.get("type")
    is_object = kind == "object" or (isinstance(kind, list) and "object" in kind)
    if (is_object or (kind is None and "properties" in schema)) and schema.get(
        "additionalProperties"
    ) is not False:
        return True
    for key, value in schema.items():
        if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            if any(_open_object(v) for v in value.values()):
                return True
        elif key in ("items", "prefixItems", "anyOf", "oneOf", "allOf", "not") and _open_object(
            value
        ):
            return True
    return False


def _error(status: int, kind: str, message: str) -> Reply:
    request_id = new_id("req_011C")
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}
    return Reply(status, dumps(body), JSON_TYPE, [("request-id", request_id)])


DIALECT = AnthropicDialect()
