"""Anthropic Messages on the gateway: ``POST /v1/messages`` bodies in, ``message`` objects,
event streams and errors out.

Sources: the official SDK, anthropic 2.16 (``types/message_create_params.py``,
``message_param.py``, ``text_block_param.py``, ``image_block_param.py`` with
``base64_image_source_param.py``/``url_image_source_param.py``, ``tool_use_block_param.py``,
``tool_result_block_param.py``, ``tool_param.py``, ``tool_choice_*_param.py``,
``output_config_param.py``; ``message.py``, ``usage.py``, ``message_delta_usage.py``,
``stop_reason.py``, ``raw_message_stream_event.py``; ``_streaming.py``: an ``event: error``
raises; ``lib/streaming/_messages.py``: blocks accumulate by ``index``), the simulator's notes
(failover_cli/sim/anthropic.py) for the API's error wording and the errors page
(https://docs.anthropic.com/en/api/errors) for ``{"type": "error", "error": {"type",
"message"}}``.

Requests become the router's OpenAI-shaped messages:

* ``system`` (a string, or text blocks: one system message each) leads; a ``system`` turn
  inside ``messages`` (newer models) stays a system message there;
* consecutive turns of one role are one turn, as the API combines them; in a user turn the
  ``tool_result`` blocks become ``tool`` messages (content a string, or text blocks joined;
  ``is_error`` prefixes the text with ``Error:``, as Chat Completions has no such flag), then
  its text and ``image`` blocks (``base64`` as a data URL, ``url`` as it is) one user message,
  with any images a tool result carried (tool messages take no images);
* an assistant turn's text blocks are its content and its ``tool_use`` blocks its
  ``tool_calls`` (``input`` as JSON text; ids as given); ``thinking`` and ``redacted_thinking``
  blocks are dropped (their signatures mean nothing to another provider, so ``thinking``
  itself is not passed on either: the serving provider's default applies);
* ``tools`` (custom tools: ``name``, ``description``, ``input_schema``, ``strict``) become
  function tools; server tools (``web_search_...``, ``bash_...``: any other ``type``) are
  refused with a 400, as no other provider runs them; ``tool_choice`` ``auto``/``any``/
  ``tool``/``none`` is ``auto``/``required``/that function/``none``, and its
  ``disable_parallel_tool_use`` goes to Anthropic providers as it is and to OpenAI ones as
  ``parallel_tool_calls: false``;
* ``stop_sequences`` is ``stop``; ``output_config.format`` (``json_schema``) is
  ``response_format``; ``temperature`` and ``top_p`` are kept (the router drops them where a
  model takes none); ``top_k``, ``metadata``, ``service_tier``, ``thinking``,
  ``output_config.effort``, ``cache_control`` (anywhere), ``citations`` and other fields
  are ignored; ``document``, ``search_result`` and server-tool result blocks are refused.

Errors name the field in the API's dotted style (``messages.1.content.0.source``).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..chat import IMAGE_TYPES
from ..types import RouteResult, ToolCallDelta, Usage
from .wire import (
    MAX_TOKENS,
    GatewayRequest,
    StreamWriter,
    WireError,
    call_id,
    dumps,
    error_for,
    fallbacks_of,
    finish_of,
    flag,
    guarded,
    json_string,
    load_object,
    model_of,
    number,
    response_id,
    stop_list,
    validated,
    whole,
)

__all__ = [
    "error_for",
    "parse_request",
    "render_error",
    "render_response",
    "render_stream",
]

_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,128}")
_ID = re.compile(r"[a-zA-Z0-9_-]+")
_DROPPED_BLOCKS = frozenset({"thinking", "redacted_thinking"})
_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
# finish_reason -> stop_reason
_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
# stop reasons of an Anthropic provider kept as they are, by the finish they mean
_KEPT = {"stop_sequence": "stop", "model_context_window_exceeded": "length", "pause_turn": "length"}


def _bad(where: str, problem: str) -> WireError:
    return WireError(400, f"{where}: {problem}", param=where)


def parse_request(
    body: bytes, *, max_messages: int = 5000, default_max_tokens: int | None = None
) -> GatewayRequest:
    """The request ``body`` asks for; WireError(400) naming the field on anything invalid.
    ``max_tokens`` is required unless ``default_max_tokens`` is given (``count_tokens``
    bodies have none)."""
    data = load_object(body, "There was an error parsing the body.")
    model = model_of(data, "model: Field required")
    if data.get("max_tokens") is None and default_max_tokens is not None:
        max_tokens = default_max_tokens
    elif "max_tokens" not in data:
        raise _bad("max_tokens", "Field required")
    else:
        max_tokens = whole(data["max_tokens"], "max_tokens", high=MAX_TOKENS)
    raw = data.get("messages")
    if raw is None:
        raise _bad("messages", "Field required")
    if not isinstance(raw, list):
        raise _bad("messages", "Input should be a valid list")
    if not raw:
        raise _bad("messages", "at least one message is required")
    if len(raw) > max_messages:
        raise _bad("messages", f"at most {max_messages} messages")
    messages: list[dict[str, Any]] = _system(data.get("system"))
    first = len(messages)  # index of the first translated turn
    where: list[int] = [-1] * first  # messages[k] came from client message where[k] (-1: system)
    tools, names = _tools(data.get("tools"))
    choice, parallel = _tool_choice(data.get("tool_choice"), names)
    _turns(raw, messages, where)
    kwargs: dict[str, Any] = {
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": number(data, "temperature", 0, 1),
        "top_p": number(data, "top_p", 0, 1),
        "stop": stop_list(data.get("stop_sequences"), "stop_sequences"),
        "tools": tools,
        "tool_choice": choice,
        "response_format": _response_format(data.get("output_config")),
    }
    kwargs, request = validated(kwargs, _renamer(where))
    if parallel is False and kwargs.get("tools"):
        kwargs["extra"] = {
            "anthropic": {"tool_choice": {"disable_parallel_tool_use": True}},
            "openai": {"parallel_tool_calls": False},
        }
    stream = flag(data, "stream")
    return GatewayRequest(model, stream, kwargs, request, fallbacks=fallbacks_of(data))


def _renamer(where: list[int]) -> Callable[[str], str | None]:
    """Our field names (``messages[3].content``) in the client's (``messages.2``)."""

    def rename(field: str) -> str | None:
        match = re.match(r"messages\[(\d+)\]", field)
        if match is not None:
            index = int(match[1])
            if index >= len(where):
                return "messages"
            return "system" if where[index] < 0 else f"messages.{where[index]}"
        head = re.split(r"[.\[]", field, maxsplit=1)[0]
        return {
            "tools": "tools",
            "response_format": "output_config.format",
            "stop": "stop_sequences",
        }.get(head, field)

    return rename


def _text_blocks(value: Any, where: str) -> list[str]:
    """The texts of a string or a list of text blocks."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise _bad(where, "Input should be a valid string or a list of text blocks")
    texts = []
    for j, block in enumerate(value):
        at = f"{where}.{j}"
        if not isinstance(block, dict) or block.get("type") != "text":
            raise _bad(at, "Input should be a text block")
        text = block.get("text")
        if not isinstance(text, str):
            raise _bad(f"{at}.text", "Input should be a valid string")
        texts.append(text)
    return texts


def _system(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    return [{"role": "system", "content": t} for t in _text_blocks(value, "system") if t]


def _turns(raw: list[Any], out: list[dict[str, Any]], where: list[int]) -> None:
    """Translate the client's messages into ``out``, noting in ``where`` which client message
    each came from. Consecutive same-role messages are one turn; each ``tool_result``
    answers a ``tool_use`` of the assistant turn just before, every one of which is answered
    (the API's rules, in its words)."""
    turns: list[tuple[str, list[tuple[int, int, Any]]]] = []  # role, [(i, j, block)]
    for i, message in enumerate(raw):
        at = f"messages.{i}"
        if not isinstance(message, dict):
            raise _bad(at, "Input should be a valid dictionary")
        role = message.get("role")
        if role not in ("user", "assistant", "system"):
            raise _bad(f"{at}.role", "Input should be 'user', 'assistant' or 'system'")
        content = message.get("content")
        if content is None:
            raise _bad(f"{at}.content", "Field required")
        if role == "system":
            _text_blocks(content, f"{at}.content")
            turns.append(("system", [(i, -1, content)]))
            continue
        if isinstance(content, str):
            blocks = [(i, -1, {"type": "text", "text": content})] if content else []
        elif isinstance(content, list):
            blocks = [(i, j, b) for j, b in enumerate(content)]
        else:
            raise _bad(f"{at}.content", "Input should be a valid list")
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))
    open_uses: dict[str, int] = {}  # tool_use ids of the assistant turn before -> its message
    for role, blocks in turns:
        if role == "system":
            _unanswered(open_uses)
            open_uses = {}
            i, _, content = blocks[0]
            for text in _text_blocks(content, f"messages.{i}.content"):
                out.append({"role": "system", "content": text})
                where.append(i)
        elif role == "assistant":
            _unanswered(open_uses)
            open_uses = _assistant(blocks, out, where)
        elif role == "user":
            _user(blocks, open_uses, out, where)
            open_uses = {}
    _unanswered(open_uses)


def _unanswered(uses: dict[str, int]) -> None:
    if uses:
        index = max(uses.values())
        raise _bad(
            f"messages.{index}",
            f"`tool_use` ids were found without `tool_result` blocks immediately after: "
            f"{', '.join(uses)}. Each `tool_use` block must have a corresponding `tool_result` "
            "block in the next message.",
        )


def _block_at(i: int, j: int) -> str:
    return f"messages.{i}.content" if j < 0 else f"messages.{i}.content.{j}"


def _kind(block: Any, at: str) -> str:
    if not isinstance(block, dict):
        raise _bad(at, "Input should be a valid dictionary")
    kind = block.get("type")
    if not isinstance(kind, str):
        raise _bad(f"{at}.type", "Field required")
    return kind


def _text(block: dict[str, Any], at: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise _bad(f"{at}.text", "Input should be a valid string")
    return text


def _assistant(
    blocks: list[tuple[int, int, Any]], out: list[dict[str, Any]], where: list[int]
) -> dict[str, int]:
    if len(blocks) == 1 and blocks[0][1] < 0:  # a plain string: the usual turn
        i, _, block = blocks[0]
        out.append({"role": "assistant", "content": block["text"]})
        where.append(i)
        return {}
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    uses: dict[str, int] = {}
    for i, j, block in blocks:
        at = _block_at(i, j)
        kind = _kind(block, at)
        if kind == "text":
            texts.append(_text(block, at))
        elif kind == "tool_use":
            use = block.get("id")
            if not isinstance(use, str) or not _ID.fullmatch(use):
                raise _bad(f"{at}.id", "String should match pattern '^[a-zA-Z0-9_-]+$'")
            name = block.get("name")
            if not isinstance(name, str) or not name:
                raise _bad(f"{at}.name", "Field required")
            value = block.get("input", {})
            if not isinstance(value, dict):
                raise _bad(f"{at}.input", "Input should be a valid dictionary")
            if use in uses:
                raise _bad(f"{at}.id", f"`tool_use` ids must be unique: {use}")
            arguments = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
            calls.append(
                {"id": use, "type": "function", "function": {"name": name, "arguments": arguments}}
            )
            uses[use] = i
        elif kind not in _DROPPED_BLOCKS:
            raise _bad(
                f"{at}.type",
                f"'{kind[:50]}' blocks are not supported in an assistant turn by this gateway",
            )
    if not texts and not calls:
        return uses
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    elif message["content"] is None:
        message["content"] = ""
    out.append(message)
    where.append(blocks[0][0])
    return uses


def _image(block: dict[str, Any], at: str) -> dict[str, Any]:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64":
        assert isinstance(source, dict)
        media = source.get("media_type")
        if media not in IMAGE_TYPES:
            raise _bad(
                f"{at}.source.base64.media_type",
                "Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'",
            )
        payload = source.get("data")
        if not isinstance(payload, str) or not payload:
            raise _bad(f"{at}.source.base64.data", "Field required")
        url = f"data:{media};base64,{payload}"
    elif kind == "url":
        assert isinstance(source, dict)
        given = source.get("url")
        if not isinstance(given, str) or not given.startswith(("https://", "http://")):
            raise _bad(f"{at}.source.url.url", "must be an http(s) URL")
        url = given
    else:
        raise _bad(
            f"{at}.source",
            f"Input tag '{kind}' found using 'type' does not match any "
            "of the expected tags: 'base64', 'url'",
        )
    return {"type": "image_url", "image_url": {"url": url}}


def _user(
    blocks: list[tuple[int, int, Any]],
    uses: dict[str, int],
    out: list[dict[str, Any]],
    where: list[int],
) -> None:
    if len(blocks) == 1 and blocks[0][1] < 0 and not uses:  # a plain string: the usual turn
        i, _, block = blocks[0]
        out.append({"role": "user", "content": block["text"]})
        where.append(i)
        return
    parts: list[dict[str, Any]] = []
    carried: list[dict[str, Any]] = []  # images from tool results, shown after them
    answered: set[str] = set()
    for i, j, block in blocks:
        at = _block_at(i, j)
        kind = _kind(block, at)
        if kind == "text":
            parts.append({"type": "text", "text": _text(block, at)})
        elif kind == "image":
            parts.append(_image(block, at))
        elif kind == "tool_result":
            use = block.get("tool_use_id")
            if not isinstance(use, str) or not _ID.fullmatch(use):
                raise _bad(f"{at}.tool_use_id", "String should match pattern '^[a-zA-Z0-9_-]+$'")
            if use not in uses or use in answered:
                raise _bad(
                    at,
                    f"unexpected `tool_use_id` found in `tool_result` blocks: {use}. "
                    "Each `tool_result` block must have a corresponding `tool_use` block "
                    "in the previous message.",
                )
            answered.add(use)
            text, images = _result_content(block, at)
            if block.get("is_error") is True:
                text = f"Error: {text}" if text else "Error"
            out.append({"role": "tool", "tool_call_id": use, "content": text})
            where.append(i)
            carried.extend(images)
        else:
            raise _bad(f"{at}.type", f"'{kind[:50]}' blocks are not supported by this gateway")
    missing = {u: n for u, n in uses.items() if u not in answered}
    _unanswered(missing)
    parts = carried + parts
    if not parts:
        return
    if all(p["type"] == "text" for p in parts) and len(parts) == 1:
        out.append({"role": "user", "content": parts[0]["text"]})
    else:
        out.append({"role": "user", "content": parts})
    where.append(blocks[0][0])


def _result_content(block: dict[str, Any], at: str) -> tuple[str, list[dict[str, Any]]]:
    """A ``tool_result``'s text (its text blocks joined) and images."""
    content = block.get("content")
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise _bad(f"{at}.content", "Input should be a valid string or list")
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    for k, item in enumerate(content):
        item_at = f"{at}.content.{k}"
        kind = _kind(item, item_at)
        if kind == "text":
            texts.append(_text(item, item_at))
        elif kind == "image":
            images.append(_image(item, item_at))
        else:
            raise _bad(
                f"{item_at}.type",
                f"'{kind[:50]}' blocks are not supported in a tool result by this gateway",
            )
    return "\n".join(texts), images


def _tools(value: Any) -> tuple[list[dict[str, Any]] | None, set[str]]:
    if value is None:
        return None, set()
    if not isinstance(value, list):
        raise _bad("tools", "Input should be a valid list")
    out: list[dict[str, Any]] = []
    names: set[str] = set()
    for i, tool in enumerate(value):
        at = f"tools.{i}"
        if not isinstance(tool, dict):
            raise _bad(at, "Input should be a valid dictionary")
        kind = tool.get("type")
        if kind not in (None, "custom"):
            raise _bad(
                f"{at}.type",
                f"server tool '{str(kind)[:50]}' is not supported by this "
                "gateway (only custom tools, which any provider can call)",
            )
        name = tool.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
            raise _bad(f"{at}.custom.name", "String should match pattern '^[a-zA-Z0-9_-]{1,128}$'")
        if name in names:
            raise _bad("tools", "Tool names must be unique.")
        names.add(name)
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise _bad(f"{at}.custom.input_schema", "Field required")
        function: dict[str, Any] = {"name": name, "parameters": schema}
        description = tool.get("description")
        if description is not None:
            if not isinstance(description, str):
                raise _bad(f"{at}.custom.description", "Input should be a valid string")
            if description:
                function["description"] = description
        strict = tool.get("strict")
        if strict is not None:
            if not isinstance(strict, bool):
                raise _bad(f"{at}.custom.strict", "Input should be a valid boolean")
            function["strict"] = strict
        out.append({"type": "function", "function": function})
    return out, names


def _tool_choice(value: Any, names: set[str]) -> tuple[Any, bool | None]:
    """The tool choice in OpenAI's shape, and whether parallel calls are allowed (None: not
    said)."""
    if value is None:
        return None, None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in ("auto", "any", "tool", "none"):
        raise _bad(
            "tool_choice",
            f"Input tag '{kind}' found using 'type' does not match any of "
            "the expected tags: 'auto', 'any', 'tool', 'none'",
        )
    assert isinstance(value, dict)
    disable = value.get("disable_parallel_tool_use")
    if disable is not None and not isinstance(disable, bool):
        raise _bad(f"tool_choice.{kind}.disable_parallel_tool_use", "Input should be a boolean")
    parallel = None if disable is None else not disable
    if kind == "tool":
        name = value.get("name")
        if not isinstance(name, str):
            raise _bad("tool_choice.tool.name", "Field required")
        if name not in names:
            raise _bad(
                "tool_choice.name", f"tool '{name[:128]}' is not one of the tools in `tools`"
            )
        return {"type": "function", "function": {"name": name}}, parallel
    if not names and kind != "none":
        return None, parallel  # the API takes a tool choice without tools; so do we
    return _CHOICES[kind], parallel


def _response_format(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad("output_config", "Input should be a valid dictionary")
    form = value.get("format")
    if form is None:
        return None
    if not isinstance(form, dict) or form.get("type") != "json_schema":
        raise _bad("output_config.format.type", "Input should be 'json_schema'")
    schema = form.get("schema")
    if not isinstance(schema, dict):
        raise _bad("output_config.format.schema", "Field required")
    return {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}


# --- answers ----------------------------------------------------------------------------------


def stop_reason_of(result: RouteResult) -> str:
    """The Anthropic stop reason of ``result``: by its finish reason, keeping an Anthropic
    provider's own finer word (``stop_sequence``, ...) where it means the same."""
    finish = finish_of(result)
    if finish == "tool_calls" and not result.calls:
        finish = "stop"
    kept = _KEPT.get(result.stop_reason or "")
    if kept == finish and result.stop_reason != "pause_turn":
        return result.stop_reason or _STOP[finish]
    return _STOP.get(finish, "end_turn")


def stop_sequence_of(result: RouteResult, stop_reason: str) -> str | None:
    """The stop sequence met, when the answer stopped on one and its provider said which."""
    return result.stop_sequence if stop_reason == "stop_sequence" else None


def usage_of(usage: Usage) -> dict[str, Any]:
    """Our usage in Anthropic's words: ``input_tokens`` leaves out cache reads, and the
    thinking part of the output is ``output_tokens_details.thinking_tokens``."""
    cached = min(usage.cached_input_tokens, usage.input_tokens)
    out: dict[str, Any] = {
        "input_tokens": usage.input_tokens - cached,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }
    if usage.reasoning_tokens:
        out["output_tokens_details"] = {"thinking_tokens": usage.reasoning_tokens}
    return out


def _tool_use(call_id_: str, name: str, arguments: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        value = {}
    return {
        "type": "tool_use",
        "id": call_id_,
        "name": name,
        "input": value if isinstance(value, dict) else {},
    }


def render_response(result: RouteResult, *, model: str, request_id: str, created: int) -> bytes:
    """``result`` as a ``message`` body (``created`` is not part of this format)."""
    content: list[dict[str, Any]] = []
    if result.text:
        content.append({"type": "text", "text": result.text})
    seen: set[str] = set()
    for i, call in enumerate(result.calls):
        content.append(
            _tool_use(call_id("toolu_", call.id, request_id, i, seen), call.name, call.arguments)
        )
    stop = stop_reason_of(result)
    return dumps(
        {
            "id": response_id("msg_", request_id),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": stop_sequence_of(result, stop),
            "usage": usage_of(result.usage),
        }
    )


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + dumps(data) + b"\n\n"


def _block_start(index: int, block: dict[str, Any]) -> bytes:
    start = {"type": "content_block_start", "index": index, "content_block": block}
    return _event("content_block_start", start)


def _block_delta(index: int, delta: dict[str, Any]) -> bytes:
    return _event(
        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
    )


def _block_stop(index: int) -> bytes:
    return _event("content_block_stop", {"type": "content_block_stop", "index": index})


_PING = b'event: ping\ndata: {"type":"ping"}\n\n'
_TEXT_HEAD = (  # a text delta's frame up to its text, for the block's index
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
    b'"delta":{"type":"text_delta","text":'
)
_STOP_EVENT = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


def render_stream(
    events: AsyncIterator[Any],
    *,
    model: str,
    request_id: str,
    created: int,
    include_usage: bool = False,
) -> AsyncIterator[bytes]:
    """The SSE frames of a Messages stream for the router's typed ``events``:
    ``message_start``, ``ping``, content blocks (``text_delta``; ``tool_use`` blocks filled by
    ``input_json_delta``), ``message_delta`` with the stop reason and usage, ``message_stop``.
    When the answer cannot be finished the stream ends with an ``error`` event, never
    ``message_stop``. ``created`` and ``include_usage`` are not part of this format."""
    return guarded(events, _Events(model, request_id))


class _Held:
    """A block held back until the stream's end: text, or a tool call (``use``, ``name``)."""

    __slots__ = ("name", "pieces", "use")

    def __init__(self, use: str | None = None, name: str = "") -> None:
        self.use = use
        self.name = name
        self.pieces: list[str] = []


class _Events(StreamWriter):
    """One Messages stream: content blocks opened in turn, one open at a time. A block, once
    stopped, takes no more deltas, and a tool call's input can grow until the answer ends
    (Chat Completions streams may interleave calls by ``index``): so while a tool_use block
    is open it stays open, and what comes for any other block (a further call, more text)
    is held and sent as whole blocks at the end."""

    def __init__(self, model: str, request_id: str) -> None:
        self.model = model
        self.request_id = request_id
        self.blocks = 0  # content blocks started
        self.current: int | None = None  # the open block's index
        self.text_block: int | None = None  # the open block, when it is text
        self.calls: dict[int, int] = {}  # tool-call index -> its block (the open one)
        self.seen: set[str] = set()
        self.held: list[_Held] = []  # in the order they began
        self.held_calls: dict[int, _Held] = {}

    def open(self, block: dict[str, Any]) -> tuple[int, bytes]:
        """Close the open block and start ``block`` after it: its index, and the frames."""
        out = b"" if self.current is None else _block_stop(self.current)
        index = self.current = self.blocks
        self.blocks += 1
        return index, out + _block_start(index, block)

    def start(self) -> tuple[bytes, ...]:
        start = {
            "type": "message_start",
            "message": {
                "id": response_id("msg_", self.request_id),
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            },
        }
        return _event("message_start", start), _PING

    def text(self, text: str) -> bytes:
        if self.calls:  # a tool_use block is open: this text waits for the end
            last = self.held[-1] if self.held else None
            if last is None or last.use is not None:
                last = _Held()
                self.held.append(last)
            last.pieces.append(text)
            return b""
        out = b""
        if self.text_block is None:
            self.text_block, out = self.open({"type": "text", "text": ""})
        # _block_delta(self.text_block, {"type": "text_delta", "text": text}), templated
        return out + _TEXT_HEAD % self.text_block + json_string(text) + b"}}\n\n"

    def tool(self, delta: ToolCallDelta) -> bytes:
        out = b""
        block = self.calls.get(delta.index)
        if block is None:
            held = self.held_calls.get(delta.index)
            if held is None and self.calls:  # another call is open: this one waits
                use = call_id("toolu_", delta.id, self.request_id, delta.index, self.seen)
                held = self.held_calls[delta.index] = _Held(use, delta.name or "")
                self.held.append(held)
            if held is not None:
                if delta.arguments:
                    held.pieces.append(delta.arguments)
                return b""
            use = call_id("toolu_", delta.id, self.request_id, delta.index, self.seen)
            tool = {"type": "tool_use", "id": use, "name": delta.name or "", "input": {}}
            block, out = self.open(tool)
            self.calls[delta.index] = block
            self.text_block = None
        if delta.arguments:
            json_delta = {"type": "input_json_delta", "partial_json": delta.arguments}
            out += _block_delta(block, json_delta)
        return out

    def _release(self) -> bytes:
        """The held blocks, each whole: its start, one delta, and the stop of the one before."""
        out = b""
        for held in self.held:
            pieces = "".join(held.pieces)
            if held.use is None:
                index, frames = self.open({"type": "text", "text": ""})
                out += frames + _TEXT_HEAD % index + json_string(pieces) + b"}}\n\n"
                continue
            tool = {"type": "tool_use", "id": held.use, "name": held.name, "input": {}}
            index, frames = self.open(tool)
            out += frames
            if pieces:
                out += _block_delta(index, {"type": "input_json_delta", "partial_json": pieces})
        self.held.clear()
        return out

    def done(self, result: RouteResult) -> tuple[bytes]:
        out = self._release() if self.held else b""
        out += b"" if self.current is None else _block_stop(self.current)
        stop = stop_reason_of(result)
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": stop_sequence_of(result, stop)},
            "usage": usage_of(result.usage),
        }
        return (out + _event("message_delta", delta) + _STOP_EVENT,)

    def error(self, err: WireError) -> bytes:
        return render_error_event(err)

    def failed(self, exc: Exception) -> WireError:
        """As :func:`~.wire.error_for`, but a 5xx is an ``overloaded_error``."""
        err = error_for(exc)
        if err.status >= 500:
            err = WireError(err.status, err.message, kind="overloaded_error")
        return err


# --- errors -----------------------------------------------------------------------------------


def _error_object(err: WireError) -> dict[str, Any]:
    return {"type": err.kind, "message": err.message}


def render_error(err: WireError, request_id: str | None = None) -> bytes:
    """``{"type": "error", "error": {"type", "message"}, "request_id"}`` (Anthropic's own
    error types; the id when there is one)."""
    body: dict[str, Any] = {"type": "error", "error": _error_object(err)}
    if request_id is not None:
        body["request_id"] = request_id
    return dumps(body)


def render_error_event(err: WireError) -> bytes:
    """The error as a stream's last event (``event: error``, what the SDK raises on)."""
    return _event("error", {"type": "error", "error": _error_object(err)})
