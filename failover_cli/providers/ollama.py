"""Ollama chat adapter.

Sources:
* Request/response: ``POST /api/chat`` in ollama/ollama ``docs/openapi.yaml``
  (tests/specs/ollama-chat.openapi.json: ChatRequest ``model``, ``messages``, ``tools``,
  ``format``, ``stream`` defaulting to true, ``options`` with ``num_predict``, ``temperature``,
  ``top_p`` and ``stop``; ChatMessage ``role`` system/user/assistant/tool, ``content`` (a
  string, required), ``images`` (base64), ``tool_calls``; ToolDefinition; ChatResponse
  ``message.content``/``message.tool_calls``, ``done``, ``done_reason``, ``prompt_eval_count``,
  ``eval_count``) and ollama/ollama ``docs/api.md``.
* The server's own types, ollama/ollama ``api/types.go`` (``Message``: ``tool_name`` and
  ``tool_call_id``; ``ToolCall``: ``id`` and ``function.{index, name, arguments}``, the arguments
  a JSON object) and ``server/routes.go`` (``ChatHandler``: a tool call gets an id ``call_`` +
  8 characters, a response with tool calls still ends with ``done_reason`` ``stop``; a model
  without the tools capability is a 400 "<full model name> does not support tools"). Ollama's
  own OpenAI-compatible layer (``openai/openai.go`` ``FromChatRequest``) turns a ``tool``
  message into ``tool_name`` (looked up from the earlier call by id) plus ``tool_call_id``,
  and an assistant call into ``{id, function: {name, arguments: object}}``: this adapter sends
  the same.
* The official SDK ollama 0.6.3 (``_types.py``: ``Message`` with ``images``, ``tool_calls``,
  ``tool_name``, ``thinking``; ``Message.ToolCall.Function.arguments`` a mapping; ``Tool``;
  ``ChatRequest.format`` ``"json"`` or a JSON schema; ``ChatResponse`` ``done_reason`` and
  the eval counts). It models no tool-call ``id`` (pydantic ignores it), which is why a
  response without one gets a generated ``call_`` id here.
* Streaming: NDJSON, one ChatStreamEvent per line; the last line has ``done: true`` and the
  counts (it is the finish, even without its newline). A tool call arrives whole, in one
  chunk's ``message.tool_calls`` (often the last before ``done``): each becomes one
  ToolCallDelta carrying its full JSON arguments. A line ``{"error": "..."}`` can arrive after
  HTTP 200 and is a failure.
* Errors: ``{"error": "..."}``; 404 means the model is not pulled. Ollama's cloud models answer
  429 "you have reached your session/weekly usage limit, ... upgrade" (reported in
  continuedev/continue#10579, diegosouzapw/OmniRoute#3709): a quota, not a rate limit.
* No key by default; when ``api_key_env`` is configured (a proxy or hosted Ollama), it is sent as
  a bearer token (the spec's ``bearerAuth``).

Chat requests: system and developer messages are ``system`` turns where they stand; a user
turn's text parts are joined into ``content`` and its inline images go in ``images`` (raw
base64, the media type dropped). Ollama cannot fetch an image by URL: such a request is an
InvalidRequest here (the router skips Ollama for it before that). Tool names are sent as
:class:`~failover_cli.chat.ToolNames` shortens them and mapped back on the way in.

Ollama has no ``tool_choice``, and cannot force a call. The closest it gets: ``none`` sends no
tools (earlier calls and results in the conversation are still sent); ``required`` sends every
tool and a forced tool is sent alone, so the model can only call that one, but it may still
answer in text, and then ``finish_reason`` is ``stop``, not ``tool_calls``. ``json_object`` is
``format: "json"``, ``json_schema`` is ``format: <the schema>`` (``strict`` has no
counterpart); ``stop`` and ``top_p`` go in ``options``. An earlier call goes back with its id
and its arguments as an object (JSON text that is not an object becomes ``{}``); a tool
result names the tool it answers. A thinking model's ``message.thinking`` is not answer text
and is left out.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncGenerator
from typing import Any

import httpx

from ..chat import (
    FinishReason,
    ForcedTool,
    ImagePart,
    Message,
    ToolCall,
    ToolNames,
    normalise_finish,
    tool_names_by_id,
)
from ..errors import InvalidRequest, ProviderError, ProviderUnavailable, TransientError
from ..types import (
    Completion,
    CompletionRequest,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from ._base import BaseProvider, KindDefaults, conversation, turns
from ._http import Call, count, decode_json, drain, label, parsing, text_of

_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length"}
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


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
        if (
            request.messages
            or request.tools
            or request.response_format is not None
            or request.stop
            or request.top_p is not None
        ):
            return self._chat_body(request, stream=stream)
        messages: list[dict[str, Any]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages += ({"role": role, "content": text} for role, text in turns(request))
        options: dict[str, Any] = {"num_predict": request.max_tokens}
        if request.temperature is not None:
            options["temperature"] = request.temperature
        return {
            "model": request.model or self.config.model,
            "messages": messages,
            "stream": stream,
            "options": options,
        }

    def _chat_body(self, request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        """The body of a request with messages, tools, structured output or more options."""
        names = ToolNames.of(request.tools, request.messages) if request.uses_tools else None
        called = tool_names_by_id(request.messages) if names is not None else {}
        history = conversation(request, keep_system=True).turns
        messages = [self._message(m, names, called) for m in history]
        body: dict[str, Any] = {
            "model": request.model or self.config.model,
            "messages": messages,
            "stream": stream,
        }
        choice = request.tool_choice
        if request.tools and choice != "none" and names is not None:
            offered = request.tools
            if isinstance(choice, ForcedTool):  # Ollama cannot force a call: offer only it
                offered = tuple(t for t in offered if t.name == choice.name) or offered
            body["tools"] = [
                _tool(names.wire(t.name), t.description, t.parameters) for t in offered
            ]
        response_format = request.response_format
        if response_format is not None:
            if response_format.type == "json_schema":
                body["format"] = dict(response_format.schema or {})
            else:
                body["format"] = "json"
        options: dict[str, Any] = {"num_predict": request.max_tokens}
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.top_p is not None:
            options["top_p"] = request.top_p
        if request.stop:
            options["stop"] = list(request.stop)
        body["options"] = options
        return body

    def _message(
        self, message: Message, names: ToolNames | None, called: dict[str, str]
    ) -> dict[str, Any]:
        """One turn in Ollama's shape."""
        if message.role == "tool":
            out: dict[str, Any] = {"role": "tool", "content": message.text}
            name = called.get(message.tool_call_id or "") or message.name
            if name:
                out["tool_name"] = names.wire(name) if names is not None else name
            if message.tool_call_id:
                out["tool_call_id"] = message.tool_call_id
            return out
        out = {"role": _ROLES[message.role], "content": message.text}
        images = message.images
        if images:
            out["images"] = [self._inline(image) for image in images]
        if message.tool_calls:
            out["tool_calls"] = [_call_dict(call, names) for call in message.tool_calls]
        return out

    def _inline(self, image: ImagePart) -> str:
        """An image's base64 data; Ollama cannot fetch one by URL."""
        if image.data is None:
            raise InvalidRequest(
                "Ollama takes images only inline (a base64 data: URL), not by URL:"
                f" {(image.url or '')[:100]}",
                provider=self.name,
                reason="invalid_request",
            )
        return image.data

    def error_verdict(self, status: int, body: Any) -> tuple[str, Any]:
        message = error_message(body)
        if status == 429 and "usage limit" in message.lower():
            return message, (ProviderUnavailable, "quota")
        if status == 400 and message.endswith("does not support tools"):
            return message, (InvalidRequest, "tools_unsupported")
        return message, None

    def parse_completion(self, call: Call, data: Any) -> Completion:
        with parsing(call):
            if data.get("error") is not None:
                raise _stream_error(call, data)
            message = data.get("message") or {}
            calls = _tool_calls(call, message.get("tool_calls"))
            stop_reason = label(data.get("done_reason"))
            return Completion(
                text=text_of(message.get("content")),
                model=label(data.get("model")) or self.config.model,
                usage=_usage(data),
                stop_reason=stop_reason,
                tool_calls=calls,
                finish_reason="tool_calls" if calls else normalise_finish(stop_reason, _FINISH),
            )

    async def parse_stream(
        self, call: Call, response: httpx.Response
    ) -> AsyncGenerator[StreamEvent, None]:
        lines = self.ndjson(call, response)
        called = 0  # tool calls seen so far: the index of the next one
        async for line in lines:
            if not line.strip():
                continue
            data = decode_json(call, line)
            with parsing(call):
                if data.get("error") is not None:
                    raise _stream_error(call, data)
                message = data.get("message") or {}
                text = text_of(message.get("content"))
                found = message.get("tool_calls")
                calls = _tool_calls(call, found) if found else ()
                done = data.get("done") is True
                if done:
                    model = label(data.get("model")) or self.config.model
                    reason = label(data.get("done_reason"))
                    finish = "tool_calls" if called or calls else normalise_finish(reason, _FINISH)
                    end = StreamEnd(model, _usage(data), reason, finish_reason=finish)
            if text:
                yield TextDelta(text)
            for tool_call in calls:
                yield ToolCallDelta(called, tool_call.id, tool_call.name, tool_call.arguments)
                called += 1
            if done:
                await drain(lines)
                yield end
                return


def _tool(name: str, description: str, parameters: Any) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name}
    if description:
        function["description"] = description
    function["parameters"] = dict(parameters)
    return {"type": "function", "function": function}


def _call_dict(call: ToolCall, names: ToolNames | None) -> dict[str, Any]:
    """An earlier call as Ollama takes it back: the arguments as an object, and its id."""
    name = names.wire(call.name) if names is not None else call.name
    return {"id": call.id, "function": {"name": name, "arguments": call.parsed_arguments()}}


def _tool_calls(call: Call, found: Any) -> tuple[ToolCall, ...]:
    """``message.tool_calls`` of a response as ToolCalls (original names, JSON-text
    arguments); raises TypeError or ValueError (a malformed response) on a bad shape."""
    if found is None:
        return ()
    if not isinstance(found, list):
        raise TypeError(f"tool_calls is a {type(found).__name__}")
    if not found:
        return ()
    request = call.request
    names = ToolNames.of(request.tools, request.messages) if request is not None else None
    out = []
    for raw in found:
        function = raw["function"]
        name = function["name"]
        if not isinstance(name, str) or not name:
            raise TypeError("a tool call without a name")
        call_id = label(raw.get("id")) or "call_" + secrets.token_hex(12)
        out.append(
            ToolCall(
                call_id,
                names.original(name) if names is not None else name,
                _arguments(function.get("arguments")),
            )
        )
    return tuple(out)


def _arguments(value: Any) -> str:
    """Tool-call arguments as compact JSON text: an object, or JSON text of one."""
    if value is None:
        return "{}"
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else {}
    if not isinstance(value, dict):
        raise TypeError(f"tool-call arguments are a {type(value).__name__}")
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _usage(data: dict[str, Any]) -> Usage:
    return Usage(count(data.get("prompt_eval_count")), count(data.get("eval_count")))


def _stream_error(call: Call, body: Any) -> ProviderError:
    return call.error(
        TransientError, error_message(body) or "error in stream", reason="stream_error"
    )
