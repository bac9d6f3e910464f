"""OpenAI Chat Completions adapter (also any OpenAI-compatible server: vLLM, llama.cpp, ...).

Sources:
* Request/response: ``POST /v1/chat/completions`` in OpenAI's OpenAPI spec as vendored by
  openai/openai-python (tests/specs/openai-chat-completions.openapi.json:
  CreateChatCompletionRequest ``messages``, ``max_tokens``, ``max_completion_tokens``,
  ``temperature``, ``top_p``, ``stop`` (StopConfiguration), ``tools`` (ChatCompletionTool,
  FunctionObject: a name of ``a-z, A-Z, 0-9, _ and -`` up to 64 characters),
  ``tool_choice`` (ChatCompletionToolChoiceOption, ChatCompletionNamedToolChoice),
  ``response_format`` (ResponseFormatJsonObject, ResponseFormatJsonSchema, whose ``name``
  follows the tool-name rule), ``stream``, ``stream_options``; the message schemas
  ChatCompletionRequest{System,Developer,User,Assistant,Tool}Message and the content part
  ChatCompletionRequestMessageContentPartImage ``image_url.{url, detail}``;
  CreateChatCompletionResponse, ChatCompletionResponseMessage ``content``, ``refusal``,
  ``tool_calls``; CompletionUsage ``prompt_tokens_details.cached_tokens`` and
  ``completion_tokens_details.reasoning_tokens``) and
  https://platform.openai.com/docs/api-reference/chat.
* The official SDK, openai 3.57: ``types/chat/completion_create_params.py``,
  ``chat_completion.py`` (``finish_reason`` ``stop``, ``length``, ``tool_calls``,
  ``content_filter`` and the deprecated ``function_call``), ``chat_completion_message.py``
  (``refusal``; the deprecated ``function_call``), ``chat_completion_chunk.py``
  (``ChoiceDeltaToolCall``: ``index``, then ``id``, ``type`` and ``function.name`` on a call's
  first delta, ``function.arguments`` fragments to concatenate; ``delta.refusal``),
  ``completion_usage.py`` and ``lib/streaming/chat/_completions.py`` (how a stream's tool-call
  deltas are accumulated by ``index``).
* Streaming: https://platform.openai.com/docs/api-reference/chat-streaming. ``data:`` chunks with
  ``choices[0].delta.content`` / ``delta.tool_calls`` and ``finish_reason``; with
  ``stream_options.include_usage`` one more chunk with empty ``choices`` carries ``usage``
  before the terminal ``data: [DONE]``. A ``finish_reason`` is the finish: a body that then
  ends cleanly without ``[DONE]`` (some compatible servers never send it) is complete.
* ``max_completion_tokens`` on api.openai.com: ``max_tokens`` is deprecated there and o-series
  models reject it (openai 3.57 ``resources/chat/completions/completions.py``, the
  ``max_tokens`` docstring); other compatible servers keep ``max_tokens``.
* The ``developer`` role replaces ``system`` from o1 on (ChatCompletionRequestDeveloperMessage);
  compatible servers often know only ``system`` (Alibaba's "developer is not one of ['system',
  'assistant', 'user', 'tool', 'function']", DayuanJiang/next-ai-draw-io#304), so there a
  developer message is sent as ``system``.
* Tool-call ids: neither the spec nor the SDK bounds their length, but api.openai.com has
  answered ids over 40 characters with a 400 "Invalid 'messages[2].tool_calls[0].id': string
  too long. Expected a string with maximum length 40, but got a string with length 83
  instead." (openclaw/openclaw#875, microsoft/autogen#6377, vercel/ai#8132; vercel/ai#17233
  could not reproduce it in 2026-07). Ids longer than 40 characters (Gemini's, proxies') are
  therefore sent as ``call_`` + 24 hex digits of their SHA-256, the same on the assistant's
  call and on the tool message answering it; Anthropic's ``toolu_`` ids (30 characters) and
  OpenAI's own fit and are kept.
* A forced ``tool_choice`` is answered with ``finish_reason`` ``stop`` and the call (a known
  behaviour of the API): a response carrying tool calls is reported as ``tool_calls``.
* Refusals (structured outputs): ``message.refusal`` holds the text and ``content`` is null,
  ``finish_reason`` stays ``stop`` (https://platform.openai.com/docs/guides/structured-outputs,
  "Refusals"). The refusal text is reported as the answer's text, marked ``refused``
  (``TextDelta.refusal`` in streams), and ``finish_reason`` as ``content_filter``;
  ``stop_reason`` keeps the API's word.
* Errors: https://platform.openai.com/docs/guides/error-codes. ``{"error": {"message", "type",
  "param", "code"}}``; a 429 with code ``insufficient_quota`` is an exhausted quota, not a rate
  limit; ``context_length_exceeded`` is a context-length error.
* Keys: api.openai.com needs one; any other base URL (a local server) may run without one, and
  then no Authorization header is sent.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import AsyncGenerator
from functools import cached_property
from typing import Any

import httpx

from ..chat import (
    FinishReason,
    ForcedTool,
    ImagePart,
    Message,
    ResponseFormat,
    TextPart,
    ToolCall,
    ToolNames,
    Tools,
    normalise_finish,
    tool_choice_dict,
    wire_tool_name,
)
from ..errors import ContextLengthExceeded, ProviderError, ProviderUnavailable, TransientError
from ..messages import Messages
from ..types import (
    Completion,
    CompletionRequest,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from ._base import BaseProvider, KindDefaults, api_url, conversation, turns
from ._http import Call, count, decode_json, drain, label, parsing, text_of

OFFICIAL_HOST = "api.openai.com"
MAX_TOOL_CALL_ID = 40  # what api.openai.com has taken (see the module docstring)

_BY_CODE: dict[str, tuple[type[ProviderError], str]] = {
    "insufficient_quota": (ProviderUnavailable, "quota"),
    "context_length_exceeded": (ContextLengthExceeded, "context_length"),
    "model_not_found": (ProviderUnavailable, "model_not_found"),
    "invalid_api_key": (ProviderUnavailable, "auth"),
    "rate_limit_exceeded": (TransientError, "rate_limited"),
}
_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "function_call": "tool_calls",  # deprecated functions
}


def error_verdict(body: Any) -> tuple[str, tuple[type[ProviderError], str] | None]:
    """Message and class of an OpenAI-style error body, branching on ``error.code``."""
    if not isinstance(body, dict):
        return "", None
    error = body.get("error", body)
    if isinstance(error, str):
        return error, None
    if not isinstance(error, dict):
        return "", None
    message = str(error.get("message") or "")
    code = str(error.get("code") or "")
    etype = str(error.get("type") or "")
    verdict = _BY_CODE.get(code) or _BY_CODE.get(etype)
    tag = code or etype
    return (f"{message} ({tag})" if tag else message), verdict


def wire_call_id(call_id: str) -> str:
    """A tool-call id as OpenAI takes it: kept when it fits, else a digest of it (the same
    for the call and for the tool message answering it)."""
    if len(call_id) <= MAX_TOOL_CALL_ID:
        return call_id
    return "call_" + hashlib.sha256(call_id.encode()).hexdigest()[:24]


class OpenAIProvider(BaseProvider):
    defaults = KindDefaults.of("openai")

    def key_required(self) -> bool:
        return self.official

    @cached_property
    def official(self) -> bool:
        """Whether this is OpenAI's own API (not a compatible server)."""
        return httpx.URL(self.base_url).host == OFFICIAL_HOST

    def headers(self, key: str | None) -> dict[str, str]:
        headers: dict[str, str] = {}  # httpx sets content-type for a json= body
        if key:
            headers["authorization"] = f"Bearer {key}"
        return headers

    def completion_url(self, *, stream: bool) -> str:
        return api_url(self.base_url, "v1", "chat/completions")

    def health_url(self) -> str:
        return api_url(self.base_url, "v1", "models")

    def body(self, request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        if request.messages or request.tools or request.response_format is not None or request.stop:
            return self._chat_body(request, stream=stream)
        messages: list[dict[str, Any]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages += ({"role": role, "content": text} for role, text in turns(request))
        return self._finish_body(request, messages, stream=stream)

    def _finish_body(
        self, request: CompletionRequest, messages: list[dict[str, Any]], *, stream: bool
    ) -> dict[str, Any]:
        limit = "max_completion_tokens" if self.official else "max_tokens"
        body: dict[str, Any] = {
            "model": request.model or self.config.model,
            "messages": messages,
            limit: request.max_tokens,
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        return body

    def _chat_body(self, request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        """The body of a request with messages, tools, structured output or stop sequences."""
        names = _tool_names(request)
        given = request.messages
        if (
            type(given) is Messages
            and given.wire is not None
            and not request.assistant_prefix
            and (self.official or not given.developer)
        ):  # the caller's dicts are already what Chat Completions takes
            messages = [{"role": "system", "content": request.system}] if request.system else []
            messages += given.wire
            if request.prompt:
                messages.append({"role": "user", "content": request.prompt})
        else:
            developer = "developer" if self.official else "system"
            history = conversation(request, keep_system=True).turns
            messages = [_message(m, names, developer) for m in history]
        body = self._finish_body(request, messages, stream=stream)
        if request.stop:
            body["stop"] = list(request.stop)
        if request.tools and names is not None:
            wire = request.tools.wire if type(request.tools) is Tools else None
            if names is ToolNames.UNCHANGED and wire is not None:
                body["tools"] = list(wire)  # the caller's dicts, as Chat Completions takes them
            else:
                body["tools"] = [_tool(t.to_dict(), names.wire(t.name)) for t in request.tools]
            choice = request.tool_choice
            if isinstance(choice, ForcedTool):
                choice = ForcedTool(names.wire(choice.name))
            if choice is not None:
                body["tool_choice"] = tool_choice_dict(choice)
        if request.response_format is not None:
            body["response_format"] = _response_format(request.response_format)
        return body

    def error_verdict(self, status: int, body: Any) -> tuple[str, Any]:
        return error_verdict(body)

    def _model(self, call: Call) -> str:
        request = call.request
        return (request.model if request is not None else None) or self.config.model

    def parse_completion(self, call: Call, data: Any) -> Completion:
        with parsing(call):
            if "error" in data:
                raise _stream_error(call, data)
            choice = data["choices"][0]
            message = choice["message"]
            text = text_of(message.get("content"))
            stop_reason = label(choice.get("finish_reason"))
            finish = normalise_finish(stop_reason, _FINISH)
            calls: tuple[ToolCall, ...] = ()
            found = message.get("tool_calls")
            if found:
                calls = _tool_calls(call, found)
            elif message.get("function_call") is not None:  # deprecated functions
                calls = _tool_calls(call, [{"function": message["function_call"]}])
            refusal = text_of(message.get("refusal"))
            refused = bool(refusal) and not text
            if refusal:
                text, finish = text or refusal, "content_filter"
            elif calls and finish in (None, "stop"):
                finish = "tool_calls"
            return Completion(
                text=text,
                model=label(data.get("model")) or self._model(call),
                usage=_usage(data.get("usage") or {}),
                stop_reason=stop_reason,
                tool_calls=calls,
                finish_reason=finish,
                refused=refused,
            )

    async def parse_stream(
        self, call: Call, response: httpx.Response
    ) -> AsyncGenerator[StreamEvent, None]:
        model, stop_reason, usage = self._model(call), None, Usage()
        calls = _StreamCalls(call)
        refused = False
        events = self.events(call, response)
        async for name, raw in events:
            if raw.strip() == "[DONE]":
                await drain(events)
                break
            if not raw.strip():
                continue
            chunk = decode_json(call, raw)
            text = refusal = ""
            deltas: list[ToolCallDelta] = []
            with parsing(call):
                if name == "error" or "error" in chunk:
                    raise _stream_error(call, chunk)
                model = label(chunk.get("model")) or model
                if chunk.get("usage"):
                    usage = _usage(chunk["usage"])
                for choice in chunk.get("choices") or ():
                    if choice.get("index", 0) != 0:
                        continue
                    delta = choice.get("delta") or {}
                    text = text_of(delta.get("content"))
                    if delta.get("refusal") is not None:
                        refusal = text_of(delta["refusal"])
                        refused = refused or bool(refusal)
                    found = delta.get("tool_calls")
                    if found:
                        deltas = calls.add(found)
                    stop_reason = label(choice.get("finish_reason")) or stop_reason
            if text:
                yield TextDelta(text)
            if refusal:
                yield TextDelta(refusal, refusal=True)
            for piece in deltas:
                yield piece
        else:
            if stop_reason is None:
                return  # the body ended before a finish_reason: truncated
        finish = normalise_finish(stop_reason, _FINISH)
        if refused:
            finish = "content_filter"
        elif calls.seen and finish in (None, "stop"):
            finish = "tool_calls"
        yield StreamEnd(model, usage, stop_reason, finish_reason=finish)


class _StreamCalls:
    """The tool calls of one stream: their deltas read, names mapped back, ids filled in."""

    __slots__ = ("_call", "_names", "seen")

    def __init__(self, call: Call) -> None:
        self._call = call
        self._names: ToolNames | None = None
        self.seen: dict[int, str] = {}  # index -> id

    def add(self, found: Any) -> list[ToolCallDelta]:
        """``delta.tool_calls`` of one chunk as ToolCallDeltas; TypeError on a bad shape."""
        if not isinstance(found, list):
            raise TypeError(f"tool_calls is a {type(found).__name__}")
        if self._names is None:
            self._names = _tool_names(self._call.request) or ToolNames(())
        out = []
        for raw in found:
            index = raw.get("index")
            call_id = label(raw.get("id"))
            if index is None:  # some compatible servers leave it out: a new id is a new call
                known = call_id is None or call_id in self.seen.values()
                index = max(self.seen, default=0) if known else len(self.seen)
            elif isinstance(index, bool) or not isinstance(index, int) or index < 0:
                raise TypeError(f"tool call index is {index!r}")
            function = raw.get("function") or {}
            name = label(function.get("name"))
            if index not in self.seen:
                call_id = call_id or "call_" + secrets.token_hex(12)
                self.seen[index] = call_id
            out.append(
                ToolCallDelta(
                    index,
                    call_id,
                    self._names.original(name) if name is not None else None,
                    _arguments(function.get("arguments")),
                )
            )
        return out


def _tool_names(request: CompletionRequest | None) -> ToolNames | None:
    if request is None or not request.uses_tools:
        return None
    given = request.messages
    if not given or (type(given) is Messages and given.wire is not None):  # its names fit
        tools = request.tools
        if type(tools) is Tools:
            if tools.wire is not None:  # and so do the tools'
                return ToolNames.UNCHANGED
            return ToolNames(tools.names)
        return ToolNames(t.name for t in tools)
    return ToolNames.of(request.tools, given)


def _message(message: Message, names: ToolNames | None, developer: str) -> dict[str, Any]:
    """One turn in Chat Completions shape (``developer`` is how that role is sent here)."""
    role: str = message.role
    if role == "developer":
        role = developer
    content: Any
    parts = message.content
    if all(type(p) is TextPart for p in parts):
        content = message.text if parts or not message.tool_calls else None
    else:
        content = [_part(p) for p in parts]
    out: dict[str, Any] = {"role": role, "content": content}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": wire_call_id(c.id),
                "type": "function",
                "function": {
                    "name": names.wire(c.name) if names is not None else c.name,
                    "arguments": c.arguments,
                },
            }
            for c in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = wire_call_id(message.tool_call_id)
    if message.name is not None and role != "tool":  # a tool message has no name
        out["name"] = message.name
    return out


def _part(part: TextPart | ImagePart) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    image: dict[str, Any] = {"url": part.data_url}
    if part.detail:
        image["detail"] = part.detail
    return {"type": "image_url", "image_url": image}


def _tool(tool: dict[str, Any], wire_name: str) -> dict[str, Any]:
    tool["function"]["name"] = wire_name
    return tool


def _response_format(response_format: ResponseFormat) -> dict[str, Any]:
    out = response_format.to_dict()
    spec = out.get("json_schema")
    if spec is not None:  # the name follows the tool-name rule
        spec["name"] = wire_tool_name(spec["name"])
    return out


def _tool_calls(call: Call, found: Any) -> tuple[ToolCall, ...]:
    """``message.tool_calls`` as ToolCalls with the original names; TypeError or KeyError (a
    malformed response) on a bad shape. Calls of other tool types are left out."""
    if not isinstance(found, list):
        raise TypeError(f"tool_calls is a {type(found).__name__}")
    names = _tool_names(call.request)
    out = []
    for raw in found:
        if raw.get("type", "function") != "function":
            continue  # a custom tool: never offered by this adapter
        function = raw["function"]
        name = label(function.get("name"))
        if name is None:
            raise TypeError("a tool call without a name")
        out.append(
            ToolCall(
                label(raw.get("id")) or "call_" + secrets.token_hex(12),
                names.original(name) if names is not None else name,
                _arguments(function.get("arguments")) or "{}",
            )
        )
    return tuple(out)


def _arguments(value: Any) -> str:
    """Tool-call arguments (or a fragment of them) as JSON text; some compatible servers send
    an object."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    raise TypeError(f"tool-call arguments are a {type(value).__name__}")


def _usage(usage: dict[str, Any]) -> Usage:
    prompt = usage.get("prompt_tokens_details")
    completion = usage.get("completion_tokens_details")
    return Usage(
        count(usage.get("prompt_tokens")),
        count(usage.get("completion_tokens")),
        count(prompt.get("cached_tokens")) if prompt else 0,
        count(completion.get("reasoning_tokens")) if completion else 0,
    )


def _stream_error(call: Call, body: Any) -> ProviderError:
    """An error object inside a 200 response or stream: transient."""
    message, verdict = error_verdict(body)
    reason = verdict[1] if verdict and verdict[0] is TransientError else "stream_error"
    return call.error(TransientError, message or "error in stream", reason=reason)
