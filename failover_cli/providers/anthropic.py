"""Anthropic Messages API adapter.

Sources:
* Request/response: ``POST /v1/messages`` in Anthropic's OpenAPI spec (CreateMessageParams,
  Message) and https://docs.anthropic.com/en/api/messages. ``content`` is a list of blocks: the
  text of every ``type: text`` block is joined.
* The official SDK, anthropic 2.16 (the reference for the current wire format):
  ``types/message_create_params.py`` (``system``, ``stop_sequences``, ``tools``,
  ``tool_choice``, ``output_config``; consecutive same-role turns are combined by the API),
  ``types/tool_param.py`` (``name``, ``description``, ``input_schema`` of ``type: object``),
  ``types/tool_choice_{auto,any,tool,none}_param.py``, ``types/image_block_param.py`` with
  ``base64_image_source_param.py`` (``media_type`` png/jpeg/gif/webp) and
  ``url_image_source_param.py``, ``types/tool_use_block_param.py`` (``input`` an object),
  ``types/tool_result_block_param.py`` (``tool_use_id``, ``content``),
  ``types/output_config_param.py`` and ``json_output_format_param.py`` (``format: {type:
  json_schema, schema}``), ``types/stop_reason.py``, ``types/usage.py`` and
  ``message_delta_usage.py`` (the input total is ``input_tokens`` + ``cache_read_input_tokens``
  + ``cache_creation_input_tokens``; ``output_tokens_details.thinking_tokens``),
  ``types/raw_*_event.py`` and ``input_json_delta.py`` (``partial_json``),
  ``lib/streaming/_messages.py`` (``accumulate_event``: content blocks by ``index``,
  ``input_json_delta`` fragments concatenated per block), and ``lib/_parse/_transform.py``
  (``transform_schema`` sets ``additionalProperties: false`` on every object of an
  ``output_config`` schema: the API requires it).
* The RequestToolUseBlock/RequestToolResultBlock id pattern ``^[a-zA-Z0-9_-]+$`` (the OpenAPI
  spec, tests/specs/anthropic-messages.openapi.json).
* Headers: ``Authorization: Bearer <key>`` and ``anthropic-version: 2026-10-21``, what the
  current SDK sends (anthropic 2.16: ``_client.py`` ``auth_headers``/``_api_key_auth`` and
  ``_constants.py`` ``ANTHROPIC_API_VERSION``; 1.x sent ``x-api-key`` and ``2023-06-01``).
* Streaming: https://docs.anthropic.com/en/api/messages-streaming. SSE events ``message_start``
  (usage.input_tokens), ``content_block_start``/``content_block_delta`` (``text_delta``,
  ``input_json_delta``)/``content_block_stop``, ``message_delta`` (stop_reason, cumulative
  usage), ``message_stop`` (the end); ``ping`` and unknown events are ignored; an ``error`` event
  may follow an HTTP 200. A ``message_delta`` with a ``stop_reason`` is the finish: a body that
  then ends cleanly without ``message_stop`` is complete.
* Errors: https://docs.anthropic.com/en/api/errors. ``{"type": "error", "error": {"type",
  "message"}}``; 529 ``overloaded_error``; a 400 ``invalid_request_error`` "prompt is too long"
  is a context-length error; billing / credit balance errors mean the account cannot serve.
* Prefill: a trailing ``assistant`` message is continued by the model; the API rejects one that
  ends in whitespace ("final assistant content cannot end with trailing whitespace"), so the
  prefix is sent right-stripped. Models without prefill answer a 400 "This model does not
  support assistant message prefill"; ``continuation: instruct`` then asks in a user turn.
* ``pause_turn`` (``types/message.py``): "You may provide the response back as-is in a
  subsequent request to let the model continue."

Chat requests. System and developer messages become the top-level ``system`` (joined with a
blank line). A ``tool`` message becomes a ``tool_result`` block in a user turn; consecutive
ones share one user turn, and a user message right after them is added to that turn after the
results (the API wants results first, in the turn right after the ``tool_use``). Images are
``image`` blocks (``base64`` or ``url`` sources). Tool names go through
:class:`~failover_cli.chat.ToolNames` (at most 64 characters, as the spec and OpenAI take them;
the current API takes 128) and back; a tool-call id that does not fit ``^[a-zA-Z0-9_-]+$``
(another provider's) is sent as ``toolu_`` + 24 hex digits of its SHA-256, the same on the
``tool_use`` and its ``tool_result``. ``stop`` is ``stop_sequences``; ``temperature`` and
``top_p`` are sent as the request carries them (the router drops what a model does not take);
``top_k`` never.

Structured output. ``json_schema`` on a model with native structured output
(:attr:`Capabilities.native_json`) is ``output_config.format``; its schema is sent with
``additionalProperties: false`` added to every object that does not say (the API rejects an
object schema without it). A schema that explicitly keeps an object open
(``additionalProperties`` true or a schema), ``json_object`` (which asks for any object:
``output_config`` cannot say that) and every structured request on older models use one forced
tool, :data:`JSON_TOOL`, whose ``input_schema`` is the schema (a schema whose root is not an
object is wrapped in an object's ``value`` property); its input is turned back into the answer
text, ``finish_reason`` ``stop``. With tools offered (``tool_choice`` auto) the JSON tool is
offered beside them with ``tool_choice: any``; a ``required`` or forced tool choice needs no
JSON tool.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import httpx

from ..capabilities import capabilities
from ..chat import (
    FinishReason,
    ForcedTool,
    ImagePart,
    Message,
    TextPart,
    ToolCall,
    ToolChoice,
    ToolNames,
    normalise_finish,
)
from ..errors import (
    ContextLengthExceeded,
    InvalidRequest,
    ProviderError,
    ProviderUnavailable,
    TransientError,
)
from ..records import frozen
from ..types import (
    Completion,
    CompletionRequest,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from ._base import BaseProvider, KindDefaults, api_url, conversation, merge_extra, turns
from ._http import (
    Call,
    Clocks,
    count,
    decode_json,
    drain,
    is_context_message,
    label,
    parsing,
    text_of,
    translate_errors,
)

API_VERSION = "2026-10-21"
JSON_TOOL = "json_answer"  # the forced tool carrying a structured answer on older models
MAX_PAUSES = 3  # pause_turn continuations of one complete()

_BY_TYPE: dict[str, tuple[type[ProviderError], str]] = {
    "rate_limit_error": (TransientError, "rate_limited"),
    "overloaded_error": (TransientError, "overloaded"),
    "timeout_error": (TransientError, "timeout"),
    "authentication_error": (ProviderUnavailable, "auth"),
    "permission_error": (ProviderUnavailable, "auth"),
    "not_found_error": (ProviderUnavailable, "model_not_found"),
    "billing_error": (ProviderUnavailable, "quota"),
    "request_too_large": (InvalidRequest, "invalid_request"),
}
_QUOTA_WORDS = ("credit balance", "billing", "spend limit", "usage limit")
_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "length",  # still paused after MAX_PAUSES continuations: not finished
}
_TOOL_ID = re.compile(r"[A-Za-z0-9_-]+")
_NO_NAMES = ToolNames(())
_JSON_DESCRIPTION = "Give your answer: call this with the answer as its input."
# Where a JSON schema holds subschemas: by name, and alone or in a list.
_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
_SCHEMA_KEYS = ("items", "prefixItems", "anyOf", "oneOf", "allOf", "not", "if", "then", "else")


def error_verdict(error: Any) -> tuple[str, tuple[type[ProviderError], str] | None]:
    """Message and class of an Anthropic ``error`` object, branching on ``error.type``."""
    if not isinstance(error, dict):
        return "", None
    etype = str(error.get("type") or "")
    message = str(error.get("message") or "")
    lowered = message.lower()
    details = error.get("details")
    code = details.get("error_code") if isinstance(details, dict) else None
    text = f"{message} ({etype})" if etype else message
    if code == "enforced_spend_limit_reached" or any(w in lowered for w in _QUOTA_WORDS):
        return text, (ProviderUnavailable, "quota")
    if etype == "invalid_request_error" and is_context_message(message):
        return text, (ContextLengthExceeded, "context_length")
    return text, _BY_TYPE.get(etype)


def tool_use_id(call_id: str) -> str:
    """``call_id`` as Anthropic takes it: kept when it fits ``^[a-zA-Z0-9_-]+$``, else
    ``toolu_`` and a digest of it (the same for the ``tool_use`` and its ``tool_result``)."""
    if _TOOL_ID.fullmatch(call_id):
        return call_id
    return "toolu_" + hashlib.sha256(call_id.encode("utf-8", "surrogatepass")).hexdigest()[:24]


@frozen
class _Plan:
    """How one chat request goes on the wire: tool names, and how structured output is asked
    for (``schema``: natively, in ``output_config``; ``json_tool``: by that forced tool, whose
    input is the answer, or its ``value`` when ``wrapped``)."""

    names: ToolNames
    schema: dict[str, Any] | None = None
    json_tool: str | None = None
    tool_schema: dict[str, Any] | None = None
    wrapped: bool = False


@frozen
class _Paused(Completion):
    """A completion that stopped with ``pause_turn``: its content, to be sent back."""

    content: tuple[Any, ...] = ()


# What POST /v1/messages/count_tokens takes (anthropic 2.16, message_count_tokens_params.py).
_COUNT_FIELDS = frozenset(
    ("messages", "model", "cache_control", "output_config", "speed", "system", "thinking",
     "tool_choice", "tools")
)  # fmt: skip


class AnthropicProvider(BaseProvider):
    defaults = KindDefaults.of("anthropic")

    def headers(self, key: str | None) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION}
        if key:
            headers["authorization"] = f"Bearer {key}"
        return headers

    def completion_url(self, *, stream: bool) -> str:
        return api_url(self.base_url, "v1", "messages")

    def health_url(self) -> str:
        return api_url(self.base_url, "v1", "models")

    # --- the request --------------------------------------------------------------------------

    def body(self, request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        if (
            request.messages
            or request.tools
            or request.response_format is not None
            or request.stop
            or request.tool_choice is not None
        ):
            return self._chat_body(request, stream=stream)
        messages = [
            {"role": role, "content": text} for role, text in turns(request, strip_prefill=True)
        ]
        body: dict[str, Any] = {
            "model": request.model or self.config.model,
            "max_tokens": request.max_tokens,
            "messages": messages,
            "stream": stream,
        }
        if request.system:
            body["system"] = request.system
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        return body

    def _chat_body(self, request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        """The body of a request with messages, tools, structured output or stop sequences."""
        plan = self._plan(request)
        history = conversation(request, strip_prefill=True)
        body: dict[str, Any] = {
            "model": request.model or self.config.model,
            "max_tokens": request.max_tokens,
            "messages": _messages(history.turns, plan.names),
            "stream": stream,
        }
        if history.system:
            body["system"] = "\n\n".join(history.system)
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        tools = [_tool(plan.names.wire(t.name), t.description, t.parameters) for t in request.tools]
        choice = _tool_choice(request.tool_choice, plan.names) if tools else None
        if plan.json_tool is not None and plan.tool_schema is not None:
            forced = not tools or request.tool_choice == "none"
            tools.append(_tool(plan.json_tool, _JSON_DESCRIPTION, plan.tool_schema))
            choice = {"type": "tool", "name": plan.json_tool} if forced else {"type": "any"}
        if tools:
            body["tools"] = tools
            if choice is not None:
                body["tool_choice"] = choice
        if plan.schema is not None:
            body["output_config"] = {"format": {"type": "json_schema", "schema": plan.schema}}
        return body

    def _plan(self, request: CompletionRequest | None) -> _Plan:
        """How ``request`` is sent (recomputed alike when its response is read)."""
        if request is None:
            return _Plan(_NO_NAMES)
        uses_tools = request.tools or any(m.tool_calls for m in request.messages)
        names = ToolNames.of(request.tools, request.messages) if uses_tools else _NO_NAMES
        wanted = request.response_format
        if wanted is None:
            return _Plan(names)
        schema = dict(wanted.schema or {}) if wanted.type == "json_schema" else None
        if schema is not None and self._native_json(request):
            try:
                return _Plan(names, schema=_closed(schema))
            except _OpenSchema:
                pass  # an open object: only a tool's input_schema takes it
        choice = request.tool_choice
        if choice == "required" or isinstance(choice, ForcedTool):
            return _Plan(names)  # a tool call is due: there is no answer to carry
        taken = {names.wire(t.name) for t in request.tools}
        name = JSON_TOOL
        while name in taken:
            name += "_"
        if schema is None:
            return _Plan(names, json_tool=name, tool_schema={"type": "object"})
        if schema.get("type") == "object" or ("type" not in schema and "properties" in schema):
            return _Plan(names, json_tool=name, tool_schema={"type": "object", **schema})
        wrapper = {"type": "object", "properties": {"value": schema}, "required": ["value"]}
        return _Plan(names, json_tool=name, tool_schema=wrapper, wrapped=True)

    def _native_json(self, request: CompletionRequest) -> bool:
        config = self.config
        if request.model and request.model != config.model:
            config = replace(config, model=request.model)
        return capabilities(config).native_json

    # --- errors -------------------------------------------------------------------------------

    def error_verdict(self, status: int, body: Any) -> tuple[str, Any]:
        return error_verdict(body.get("error") if isinstance(body, dict) else None)

    # --- the answer ---------------------------------------------------------------------------

    async def complete(self, request: CompletionRequest, *, timeout: float) -> Completion:
        """The answer; a turn the API pauses (``pause_turn``) is continued, sending the paused
        content back as the last assistant turn, up to :data:`MAX_PAUSES` times."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        completion = await super().complete(request, timeout=timeout)
        if not isinstance(completion, _Paused):
            return completion
        sent = self.body(request, stream=False)
        if request.extra:
            sent = merge_extra(sent, request.extra)
        messages = list(sent["messages"])
        texts, calls, usage = [completion.text], list(completion.tool_calls), completion.usage
        for _ in range(MAX_PAUSES):
            if not isinstance(completion, _Paused):
                break
            messages = [*messages, {"role": "assistant", "content": list(completion.content)}]
            again = replace(request, extra={**(request.extra or {}), "messages": messages})
            left = max(0.0, deadline - loop.time())
            completion = await super().complete(again, timeout=left)
            texts.append(completion.text)
            calls += completion.tool_calls
            usage = usage + completion.usage
        return Completion(
            text="".join(texts),
            model=completion.model,
            usage=usage,
            stop_reason=completion.stop_reason,
            ratelimit=completion.ratelimit,
            tool_calls=tuple(calls),
            finish_reason="tool_calls" if calls else completion.finish_reason,
            stop_sequence=completion.stop_sequence,
        )

    async def count_tokens(self, request: CompletionRequest, *, timeout: float) -> int:
        """The input tokens of ``request`` as the API counts them (``POST
        /v1/messages/count_tokens``, a Messages body without the sampling fields); every
        failure raises a :class:`ProviderError`."""
        key = self.api_key()
        headers, secrets = self.request_headers(key)
        with translate_errors(self.name, secrets) as call:
            call.clock = Clocks.start(
                timeout, connect=self.config.connect_timeout, first_token=timeout,
                idle=timeout, stream=False,
            )  # fmt: skip
            call.request = request
            body = self.body(request, stream=False)
            if request.extra:
                body = merge_extra(body, request.extra)
            body = {k: v for k, v in body.items() if k in _COUNT_FIELDS}
            url = api_url(self.base_url, "v1", "messages/count_tokens")
            async with asyncio.timeout(timeout):
                response = await self._open(call, "POST", url, headers, json=body)
                raw = await self._read(call, response)
            data = decode_json(call, raw)
            n = data.get("input_tokens") if isinstance(data, dict) else None
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise call.error(
                    TransientError, "token count without input_tokens", reason="malformed"
                )
            return n

    def parse_completion(self, call: Call, data: Any) -> Completion:
        with parsing(call):
            if data.get("type") == "error":
                raise _stream_error(call, data.get("error"))
            content = data["content"]
            if not isinstance(content, list):
                raise TypeError(f"content is a {type(content).__name__}")
            texts: list[str] = []
            calls: list[ToolCall] = []
            answer: str | None = None
            plan: _Plan | None = None
            for block in content:
                kind = block.get("type")
                if kind == "text":
                    texts.append(text_of(block["text"]))
                elif kind == "tool_use":
                    plan = plan or self._plan(call.request)
                    name, arguments = _tool_use(block)
                    if name == plan.json_tool:
                        answer = _answer(arguments, plan.wrapped)
                    else:
                        call_id = label(block.get("id"))
                        if call_id is None:
                            raise TypeError("a tool_use block without an id")
                        calls.append(ToolCall(call_id, plan.names.original(name), arguments))
            stop_reason = label(data.get("stop_reason"))
            finish = normalise_finish(stop_reason, _FINISH)
            if plan is not None and plan.json_tool is not None:
                if answer is not None and not calls and stop_reason == "tool_use":
                    finish = "stop"
                text = answer or ""
            else:
                text = "".join(texts)
            fields: dict[str, Any] = {
                "text": text,
                "model": label(data.get("model")) or self.config.model,
                "usage": _usage(data.get("usage")),
                "stop_reason": stop_reason,
                "tool_calls": tuple(calls),
                "finish_reason": finish,
                "stop_sequence": _stop_sequence(data.get("stop_sequence"), call.request),
            }
            if stop_reason == "pause_turn":
                return _Paused(**fields, content=tuple(content))
            return Completion(**fields)

    async def parse_stream(
        self, call: Call, response: httpx.Response
    ) -> AsyncGenerator[StreamEvent, None]:
        model, stop_reason, stop_sequence = self.config.model, None, None
        counts: dict[str, int] = {}
        request = call.request
        # In JSON-tool mode the answer is the JSON tool's input, and only that.
        plan = self._plan(request) if request and request.response_format else None
        json_mode = plan is not None and plan.json_tool is not None
        tool_blocks: dict[int, int] = {}  # content block index -> tool-call ordinal
        json_blocks: dict[int, _Unwrap | None] = {}  # blocks carrying the JSON answer
        events = self.events(call, response)
        async for name, raw in events:
            if name not in _HANDLED:
                continue  # ping and event types added after this adapter was written
            data = decode_json(call, raw)
            text = ""
            delta: ToolCallDelta | None = None
            with parsing(call):
                kind = data.get("type") or name
                if name == "error" or kind == "error":
                    raise _stream_error(call, data.get("error"))
                if kind == "message_start":
                    message = data["message"]
                    model = label(message.get("model")) or model
                    _count_usage(counts, message.get("usage"))
                elif kind == "content_block_start":
                    block = data.get("content_block") or {}
                    btype = block.get("type")
                    if btype == "text":
                        text = "" if json_mode else text_of(block.get("text"))
                    elif btype == "tool_use":
                        plan = plan or self._plan(request)
                        index = _index(data)
                        tool_name, arguments = _tool_use(block, streamed=True)
                        if tool_name == plan.json_tool:
                            unwrap = json_blocks[index] = _Unwrap() if plan.wrapped else None
                            text = _feed(unwrap, arguments)
                        else:
                            call_id = label(block.get("id"))
                            if call_id is None:
                                raise TypeError("a tool_use block without an id")
                            ordinal = tool_blocks[index] = len(tool_blocks)
                            original = plan.names.original(tool_name)
                            delta = ToolCallDelta(ordinal, call_id, original, arguments)
                elif kind == "content_block_delta":
                    change = data["delta"]
                    dtype = change.get("type")
                    if dtype == "text_delta":
                        text = text_of(change["text"])
                        if json_mode:
                            text = ""
                    elif dtype == "input_json_delta":
                        index = _index(data)
                        fragment = text_of(change.get("partial_json"))
                        if index in json_blocks:
                            text = _feed(json_blocks[index], fragment)
                        elif index in tool_blocks and fragment:
                            delta = ToolCallDelta(tool_blocks[index], arguments=fragment)
                elif kind == "content_block_stop":
                    if json_blocks:
                        unwrap = json_blocks.get(_index(data))
                        text = unwrap.close() if unwrap is not None else ""
                elif kind == "message_delta":
                    finished = data.get("delta") or {}
                    stop_reason = label(finished.get("stop_reason")) or stop_reason
                    matched = _stop_sequence(finished.get("stop_sequence"), request)
                    stop_sequence = matched or stop_sequence
                    _count_usage(counts, data.get("usage"))
            if text:
                yield TextDelta(text)
            if delta is not None:
                yield delta
            if kind == "message_stop":
                await drain(events)
                break
        else:
            if stop_reason is None:
                return  # the body ended before the message reported its finish: truncated
        if stop_reason == "pause_turn":
            return  # a paused turn is not finished: the router continues it (truncated)
        finish = normalise_finish(stop_reason, _FINISH)
        if json_blocks and not tool_blocks and stop_reason == "tool_use":
            finish = "stop"
        usage = Usage(
            counts.get("input_tokens", 0)
            + counts.get("cache_read_input_tokens", 0)
            + counts.get("cache_creation_input_tokens", 0),
            counts.get("output_tokens", 0),
            counts.get("cache_read_input_tokens", 0),
            counts.get("thinking_tokens", 0),
        )
        yield StreamEnd(model, usage, stop_reason, finish_reason=finish,
                        stop_sequence=stop_sequence)  # fmt: skip


_HANDLED = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "error",
    }
)


# --- request pieces -------------------------------------------------------------------------


def _messages(history: Sequence[Message], names: ToolNames) -> list[dict[str, Any]]:
    """The conversation's turns in Anthropic's shape (system texts already lifted out)."""
    out: list[dict[str, Any]] = []
    results: list[dict[str, Any]] | None = None  # the open user turn of tool results
    for message in history:
        role = message.role
        if role == "tool":
            block: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": tool_use_id(message.tool_call_id or ""),
            }
            if message.text:
                block["content"] = message.text
            if results is None:
                results = [block]
                out.append({"role": "user", "content": results})
            else:
                results.append(block)
            continue
        if role == "assistant":
            results = None
            content = _assistant_content(message, names)
            if content:
                out.append({"role": "assistant", "content": content})
            continue
        # user (system and developer texts were lifted into ``system``)
        if results is not None:
            results.extend(_blocks(message))  # after the results, in the same turn
            results = None
            continue
        content = _user_content(message)
        if content:
            out.append({"role": "user", "content": content})
    last = out[-1] if out else None
    if last is not None and last["role"] == "assistant":  # a prefill: no trailing whitespace
        content = last["content"]
        if isinstance(content, str):
            last["content"] = content.rstrip()
        elif content and content[-1].get("type") == "text":
            content[-1] = {"type": "text", "text": content[-1]["text"].rstrip()}
            if not content[-1]["text"]:
                content.pop()
        if not last["content"]:
            out.pop()
    return out


def _user_content(message: Message) -> str | list[dict[str, Any]]:
    if all(type(p) is TextPart for p in message.content):
        return message.text
    return _blocks(message)


def _blocks(message: Message) -> list[dict[str, Any]]:
    """A message's parts as text and image blocks (empty text left out: the API rejects it)."""
    blocks: list[dict[str, Any]] = []
    for part in message.content:
        if isinstance(part, TextPart):
            if part.text:
                blocks.append({"type": "text", "text": part.text})
        else:
            blocks.append(_image(part))
    return blocks


def _image(image: ImagePart) -> dict[str, Any]:
    if image.data is not None:
        source: dict[str, Any] = {
            "type": "base64",
            "media_type": image.media_type,
            "data": image.data,
        }
    else:
        source = {"type": "url", "url": image.url}
    return {"type": "image", "source": source}


def _assistant_content(message: Message, names: ToolNames) -> str | list[dict[str, Any]]:
    if not message.tool_calls:
        return message.text
    blocks = [{"type": "text", "text": message.text}] if message.text else []
    for call in message.tool_calls:
        blocks.append(
            {
                "type": "tool_use",
                "id": tool_use_id(call.id),
                "name": names.wire(call.name),
                "input": call.parsed_arguments(),
            }
        )
    return blocks


def _tool(name: str, description: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    schema = dict(parameters)
    if "type" not in schema:  # OpenAI takes {} for no parameters; Anthropic wants an object
        schema = {"type": "object", **schema}
    tool: dict[str, Any] = {"name": name}
    if description:
        tool["description"] = description
    tool["input_schema"] = schema
    return tool


def _tool_choice(choice: ToolChoice | None, names: ToolNames) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, ForcedTool):
        return {"type": "tool", "name": names.wire(choice.name)}
    return {"type": {"auto": "auto", "none": "none", "required": "any"}[choice]}


class _OpenSchema(Exception):
    """A schema keeps an object open (``additionalProperties`` true or a schema)."""


def _closed(schema: Any) -> Any:
    """``schema`` with ``additionalProperties: false`` on every object schema that does not
    say; raises _OpenSchema when one says otherwise (``output_config`` cannot carry it)."""
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    kind = out.get("type")
    if (
        kind == "object"
        or (isinstance(kind, list) and "object" in kind)
        or (kind is None and "properties" in out)
    ):
        if out.get("additionalProperties", False) is not False:
            raise _OpenSchema
        out["additionalProperties"] = False
    for key in _SCHEMA_MAPS:
        value = out.get(key)
        if isinstance(value, dict):
            out[key] = {name: _closed(sub) for name, sub in value.items()}
    for key in _SCHEMA_KEYS:
        value = out.get(key)
        if isinstance(value, dict | list):
            out[key] = _closed(value)
    return out


# --- response pieces ------------------------------------------------------------------------


def _tool_use(block: Any, *, streamed: bool = False) -> tuple[str, str]:
    """A ``tool_use`` block's wire name and its input as compact JSON text (in a stream, the
    input is empty at the block's start: its JSON comes in ``input_json_delta`` fragments)."""
    name = label(block.get("name"))
    if name is None:
        raise TypeError("a tool_use block without a name")
    value = block.get("input")
    if value is None or (streamed and value == {}):
        return name, "" if streamed else "{}"
    if not isinstance(value, dict):
        raise TypeError(f"tool input is a {type(value).__name__}")
    return name, json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _answer(arguments: str, wrapped: bool) -> str:
    """The JSON answer carried by the JSON tool's input (its ``value`` when wrapped)."""
    if not wrapped:
        return arguments
    value = json.loads(arguments).get("value")
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _stop_sequence(value: Any, request: CompletionRequest | None) -> str | None:
    """The stop sequence an answer ended on, if it is one of those the request gave (the
    API names the one it met; anything else is not taken)."""
    if request is None or type(value) is not str:
        return None
    return value if value in request.stop else None


def _index(data: Any) -> int:
    index = data.get("index")
    if isinstance(index, bool) or not isinstance(index, int):
        raise TypeError(f"block index is a {type(index).__name__}")
    return index


def _count_usage(counts: dict[str, int], usage: Any) -> None:
    """Take the counts ``usage`` reports (cumulative: a 0 is a real 0, absent keeps the last)."""
    if not isinstance(usage, dict):
        return
    for key in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
        counts[key] = count(usage.get(key), counts.get(key, 0))
    counts["output_tokens"] = count(usage.get("output_tokens"), counts.get("output_tokens", 0))
    details = usage.get("output_tokens_details")
    if isinstance(details, dict):
        counts["thinking_tokens"] = count(details.get("thinking_tokens"))


def _usage(usage: Any) -> Usage:
    """Anthropic's usage as ours: every input token (fresh, read from and written to the
    cache), the cache reads, the thinking part of the output."""
    if not isinstance(usage, dict):
        return Usage()
    fresh = count(usage.get("input_tokens"))
    read = count(usage.get("cache_read_input_tokens"))
    written = count(usage.get("cache_creation_input_tokens"))
    details = usage.get("output_tokens_details")
    thinking = count(details.get("thinking_tokens")) if isinstance(details, dict) else 0
    return Usage(fresh + read + written, count(usage.get("output_tokens")), read, thinking)


class _Unwrap:
    """The streamed input of a wrapped JSON tool, ``{"value": <answer>}``, as the answer's
    text: the opening is dropped, and the closing brace held back until the block ends."""

    __slots__ = ("_head", "_held", "_open")

    _OPENING = re.compile(r'\s*\{\s*"value"\s*:\s*')

    def __init__(self) -> None:
        self._open = False
        self._head = ""
        self._held = ""

    def feed(self, fragment: str) -> str:
        if not self._open:
            self._head += fragment
            match = self._OPENING.match(self._head)
            if match is None:
                return ""
            self._open, fragment = True, self._head[match.end() :]
        text = self._held + fragment
        body = text.rstrip("} \t\r\n")
        self._held = text[len(body) :]
        return body

    def close(self) -> str:
        held = self._held.rstrip(" \t\r\n")
        self._held = ""
        return held[:-1] if held.endswith("}") else held


def _feed(unwrap: _Unwrap | None, fragment: str) -> str:
    return fragment if unwrap is None else unwrap.feed(fragment)


def _stream_error(call: Call, error: Any) -> ProviderError:
    """An ``error`` event after HTTP 200: always transient (the stream broke, not the request)."""
    message, verdict = error_verdict(error)
    reason = verdict[1] if verdict and verdict[0] is TransientError else "stream_error"
    return call.error(TransientError, message or "error event in stream", reason=reason)
