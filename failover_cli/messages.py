"""A conversation's messages: OpenAI Chat Completions-shaped dicts checked in one pass into
:class:`Messages`, a sequence of typed :class:`~failover_cli.chat.Message` values built only
when an adapter reads them.

The pass checks every field (a ValueError names the message index and field), and notes what
the router asks of every request (tools, images, text length) and whether the dicts are
already exactly what Chat Completions takes, in which case an OpenAI adapter sends them as
they are. The router and adapters read the caller's dicts while the request runs: do not
change them until it returns.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

from .chat import (
    IMAGE_TYPES,
    MAX_PARTS,
    ROLES,
    ImagePart,
    Message,
    Part,
    TextPart,
    ToolCall,
    checked_string,
    fits_tool_name,
    invalid,
)

_ROLE_SET = frozenset(ROLES)
_PLAIN_ROLES = _ROLE_SET - {"tool"}  # roles a turn of text alone may have
_WEB = ("https://", "http://")
_NO_TYPES: frozenset[str] = frozenset()
_DATA_URL = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+)(?:;[^;,]*)*?;base64,(?P<data>.*)", re.S)
MAX_WIRE_CALL_ID = 40  # the longest tool-call id Chat Completions takes (see providers.openai)
_MESSAGE_KEYS = frozenset({"role", "content", "tool_calls", "tool_call_id", "name"})
_TEXT_KEYS = frozenset({"type", "text"})
_IMAGE_KEYS = frozenset({"type", "image_url"})
_URL_KEYS = frozenset({"url", "detail"})
_CALL_KEYS = frozenset({"id", "type", "function"})
_NO_CALLS: frozenset[str] = frozenset()
_FUNCTION_KEYS = frozenset({"name", "arguments"})


class Messages(Sequence[Message]):
    """Checked messages. Besides the typed values (built on first use) it tells:
    ``uses_tools`` (tool calls or results), ``image_types`` (media types of inline images),
    ``url_images`` (images by URL), ``developer`` (a developer message), ``text_chars`` and
    ``wire``: the caller's dicts as Chat Completions takes them, or None when they need
    translating."""

    __slots__ = (
        "_source",
        "_typed",
        "developer",
        "image_types",
        "text_chars",
        "url_images",
        "uses_tools",
        "wire",
    )

    def __init__(
        self,
        source: Sequence[Any],
        *,
        uses_tools: bool = False,
        image_types: frozenset[str] = frozenset(),
        url_images: bool = False,
        developer: bool = False,
        text_chars: int = 0,
        wire: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        self._source = source
        self._typed: tuple[Message, ...] | None = None
        self.uses_tools = uses_tools
        self.image_types = image_types
        self.url_images = url_images
        self.developer = developer
        self.text_chars = text_chars
        self.wire = wire

    @property
    def typed(self) -> tuple[Message, ...]:
        if self._typed is None:
            self._typed = _build(self._source)
        return self._typed

    @property
    def has_images(self) -> bool:
        return self.url_images or bool(self.image_types)

    def __len__(self) -> int:
        return len(self._source)

    def __bool__(self) -> bool:
        return bool(self._source)

    @overload
    def __getitem__(self, index: int) -> Message: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Message, ...]: ...

    def __getitem__(self, index: int | slice) -> Message | tuple[Message, ...]:
        return self.typed[index]

    def __iter__(self) -> Iterator[Message]:
        return iter(self.typed)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Messages):
            return self.typed == other.typed
        if isinstance(other, tuple | list):
            return self.typed == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # messages are not hashable either

    def __repr__(self) -> str:
        return f"Messages({list(self.typed)!r})"


def parse_messages(messages: Any) -> tuple[Message, ...]:
    """:func:`check_messages`, as typed values."""
    return check_messages(messages).typed


def check_messages(messages: Any) -> Messages:
    """Check OpenAI-shaped message dicts (or :class:`Message` values).

    Raises ValueError naming the message index and field on bad input, including tool results
    out of place: every API wants an assistant turn's tool calls answered by ``tool`` messages
    right after it, one per call, before anything else."""
    if type(messages) is not list:
        if isinstance(messages, Messages):
            return messages
        if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
            raise ValueError("messages: must be a list of messages")
    wire = True  # every dict exactly as Chat Completions takes it
    uses_tools = url_images = developer = False
    image_types: set[str] = set()
    chars = 0
    calls: set[str] = set()  # the calls of the last assistant turn still unanswered
    asked_at = -1  # that turn's index
    for i, raw in enumerate(messages):
        if type(raw) is dict:
            role = raw.get("role")
            content = raw.get("content")
            if (
                type(content) is str
                and len(raw) == 2
                and type(role) is str
                and role in _PLAIN_ROLES
            ):  # the common turn, {"role": ..., "content": "..."}: nothing more to check
                if calls:
                    raise _unanswered(calls, asked_at, i)
                chars += len(content)
                if role == "developer":
                    developer = True
                continue
            if type(role) is not str or role not in _ROLE_SET:
                raise invalid(
                    f"messages[{i}].role", f"must be one of {', '.join(ROLES)}, not {role!r}"
                )
            asks: set[str] | frozenset[str] = _NO_CALLS
            tool_call_id = None
            if len(raw) > (2 if "content" in raw else 1):  # the rarer fields too
                if wire and not raw.keys() <= _MESSAGE_KEYS:
                    wire = False  # fields this model does not carry: translate, dropping them
                found = raw.get("tool_calls")
                if found is not None:
                    if role != "assistant":
                        raise invalid(
                            f"messages[{i}].tool_calls", "only assistant messages carry tool calls"
                        )
                    asks, added, exact = _check_calls(found, i)
                    chars += added
                    wire = wire and exact
                tool_call_id = raw.get("tool_call_id")
                name = raw.get("name")
                if name is not None:
                    checked_string(name, f"messages[{i}].name")
                    wire = wire and role != "tool"  # a tool message is sent without one
                refusal = raw.get("refusal")
                if refusal is not None:  # an earlier refusal sent back: the turn's text
                    if role != "assistant":
                        raise invalid(f"messages[{i}].refusal", "only assistant turns refuse")
                    chars += len(checked_string(refusal, f"messages[{i}].refusal"))
                    wire = False
            if type(content) is str:
                chars += len(content)
                wire = wire and (bool(content) or not asks)
            elif content is None:
                wire = wire and bool(asks) and "content" in raw
            else:
                added, exact, urls, types = _check_parts(content, i, role)
                chars += added
                wire = wire and exact
                url_images = url_images or urls
                image_types.update(types)
            if role == "tool":
                uses_tools = True
                if type(tool_call_id) is not str or not tool_call_id:
                    tool_call_id = checked_string(
                        tool_call_id, f"messages[{i}].tool_call_id", empty=False
                    )
                if tool_call_id not in calls:
                    raise invalid(
                        f"messages[{i}].tool_call_id",
                        f"{tool_call_id!r} answers no open tool call of the assistant message "
                        "just before",
                    )
                wire = wire and len(tool_call_id) <= MAX_WIRE_CALL_ID
                calls.discard(tool_call_id)
            elif tool_call_id is not None:
                raise invalid(
                    f"messages[{i}].tool_call_id", "only tool messages answer a tool call"
                )
            elif role == "developer":
                developer = True
        elif isinstance(raw, Message):
            wire = False
            role = raw.role
            if role == "tool":
                uses_tools = True
                if raw.tool_call_id not in calls:
                    problem = "answers no open tool call of the assistant message just before"
                    raise invalid(f"messages[{i}].tool_call_id", f"{raw.tool_call_id!r} {problem}")
                calls.discard(raw.tool_call_id)
            developer = developer or role == "developer"
            asks = {c.id for c in raw.tool_calls}
            for part in raw.content:
                if isinstance(part, TextPart):
                    chars += len(part.text)
                elif part.url is not None:
                    url_images = True
                elif part.media_type is not None:
                    image_types.add(part.media_type)
            chars += sum(len(c.arguments) for c in raw.tool_calls)
        else:
            raise invalid(f"messages[{i}]", "must be an object with a role")
        if role != "tool" and calls:
            raise _unanswered(calls, asked_at, i)
        if asks:
            uses_tools = True
            calls = set(asks)
            asked_at = i
    if calls:
        raise _unanswered(calls, asked_at, None)
    return Messages(
        messages,
        uses_tools=uses_tools,
        image_types=frozenset(image_types) if image_types else _NO_TYPES,
        url_images=url_images,
        developer=developer,
        text_chars=chars,
        wire=messages if wire else None,
    )


def _unanswered(calls: set[str], asked_at: int, at: int | None) -> ValueError:
    """The error for tool calls of ``messages[asked_at]`` left unanswered before
    ``messages[at]`` (None: by the end of the conversation)."""
    ids = ", ".join(sorted(calls))
    if at is None:
        return invalid("messages", f"the tool calls of messages[{asked_at}] ({ids}) have no answer")
    return invalid(
        f"messages[{at}]",
        f"the tool calls of messages[{asked_at}] ({ids}) need a tool message each before this",
    )


def _check_parts(content: Any, i: int, role: str) -> tuple[int, bool, bool, list[str]]:
    """The text characters in ``messages[i].content`` (a list of parts), whether Chat
    Completions takes it as it is, whether it has images by URL, and its inline images' media
    types. Locations are formatted only on error."""
    if type(content) is not list:
        raise invalid(f"messages[{i}].content", "must be a string or a list of parts")
    if len(content) > MAX_PARTS:
        raise invalid(f"messages[{i}].content", f"at most {MAX_PARTS} parts, not {len(content)}")
    chars = 0
    translate = images = urls = False  # a list of text parts alone is sent joined, a string
    types: list[str] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            text = part.get("text")
            if type(text) is not str:
                text = checked_string(text, f"messages[{i}].content[{j}].text")
            chars += len(text)
            translate = translate or part.keys() != _TEXT_KEYS
        elif kind == "refusal" and role == "assistant":  # an earlier refusal: its text
            text = checked_string(part.get("refusal"), f"messages[{i}].content[{j}].refusal")
            chars += len(text)
            translate = True
        elif kind == "image_url":
            if role != "user":
                raise invalid(
                    f"messages[{i}].content[{j}]", f"images are taken in user messages, not {role}"
                )
            images = True
            image = part.get("image_url")
            if type(image) is dict and len(image) == 1:
                url = image.get("url")
                if type(url) is str and url.startswith(_WEB):  # an image by URL, as it is
                    urls = True
                    translate = translate or part.keys() != _IMAGE_KEYS
                    continue
            at = f"messages[{i}].content[{j}]"
            if isinstance(image, str):
                found, sent_as_is = check_image(image, at + ".image_url"), False
            elif isinstance(image, dict):
                detail = image.get("detail")
                found = check_image(image.get("url"), at + ".image_url.url", detail)
                sent_as_is = bool(detail) or "detail" not in image
                sent_as_is = sent_as_is and image.keys() <= _URL_KEYS
            else:
                raise invalid(at + ".image_url", "must be an object with a url")
            if found is None:
                urls = True
            else:
                types.append(found[0])
                sent_as_is = sent_as_is and image["url"] == found[1]
            translate = translate or not sent_as_is or part.keys() != _IMAGE_KEYS
        elif isinstance(part, TextPart):
            chars += len(part.text)
            translate = True  # a typed part: not a dict to send
        elif isinstance(part, ImagePart):
            images = translate = True
            if part.url is not None:
                urls = True
            elif part.media_type is not None:
                types.append(part.media_type)
        elif isinstance(part, dict):
            raise invalid(
                f"messages[{i}].content[{j}].type",
                f"unknown part type {kind!r} (expected text or image_url"
                + ("; refusal in an assistant turn)" if kind == "refusal" else ")"),
            )
        else:
            raise invalid(f"messages[{i}].content[{j}]", "must be an object with a type")
    return chars, images and not translate, urls, types


def check_image(url: Any, where: str, detail: Any = None) -> tuple[str, str] | None:
    """Check an ``image_url`` URL: ``http(s)://`` (None) or a base64 ``data:`` URL of a PNG,
    JPEG, GIF or WebP image: its media type and the URL as adapters send it."""
    url = checked_string(url, where, empty=False)
    if detail is not None:
        checked_string(detail, where.rsplit(".", 1)[0] + ".detail")
    match = _DATA_URL.fullmatch(url)
    if match:
        media_type = match["type"].lower()
        if media_type not in IMAGE_TYPES:
            raise invalid(where, f"image type {media_type} is not one of {', '.join(IMAGE_TYPES)}")
        return media_type, f"data:{media_type};base64,{match['data'].strip()}"
    if url.startswith("data:"):
        raise invalid(where, "a data: URL must be base64 (data:image/png;base64,...)")
    if not url.startswith(_WEB):
        raise invalid(where, "must be an http(s) URL or a base64 data: URL")
    return None


def parse_image(url: Any, where: str, detail: Any = None) -> ImagePart:
    """An image from an ``image_url`` URL, checked by :func:`check_image`."""
    found = check_image(url, where, detail)
    if found is None:
        return ImagePart(url=url, detail=detail)
    media_type, data_url = found
    return ImagePart(media_type=media_type, data=data_url.partition(",")[2], detail=detail)


def _check_calls(value: Any, i: int) -> tuple[set[str], int, bool]:
    """The ids of ``messages[i].tool_calls``, the characters of their arguments, and whether
    Chat Completions takes them as they are. Locations are formatted only on error."""
    if not isinstance(value, list):
        raise invalid(f"messages[{i}].tool_calls", "must be a list")
    ids: set[str] = set()
    chars = 0
    exact = True
    for j, call in enumerate(value):
        if type(call) is not dict:
            if not isinstance(call, ToolCall):
                raise invalid(f"messages[{i}].tool_calls[{j}]", "must be an object")
            ids.add(call.id)
            chars += len(call.arguments)
            exact = False
            continue
        if call.get("type", "function") != "function":
            raise invalid(
                f"messages[{i}].tool_calls[{j}].type", "only function tool calls are supported"
            )
        function = call.get("function")
        if type(function) is not dict:
            raise invalid(
                f"messages[{i}].tool_calls[{j}].function",
                "must be an object with a name and arguments",
            )
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            call_id = checked_string(call_id, f"messages[{i}].tool_calls[{j}].id", empty=False)
        name = function.get("name")
        if not isinstance(name, str) or not name:
            name = checked_string(name, f"messages[{i}].tool_calls[{j}].function.name", empty=False)
        arguments = function.get("arguments", "{}")
        if type(arguments) is not str:
            if isinstance(arguments, dict):
                arguments = json.dumps(arguments, separators=(",", ":"), ensure_ascii=False)
                exact = False
            else:
                checked_string(arguments, f"messages[{i}].tool_calls[{j}].function.arguments")
        chars += len(arguments)
        ids.add(call_id)
        exact = (
            exact
            and len(call_id) <= MAX_WIRE_CALL_ID
            and fits_tool_name(name)
            and call.keys() == _CALL_KEYS
            and function.keys() == _FUNCTION_KEYS
        )
    return ids, chars, exact


def _build(source: Iterable[Any]) -> tuple[Message, ...]:
    """Typed values of checked messages."""
    try:
        return tuple(m if isinstance(m, Message) else _message(m) for m in source)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"messages: changed while the request ran ({exc})") from None


def _message(raw: dict[str, Any]) -> Message:
    role = raw["role"]
    content = raw.get("content")
    parts: tuple[Part, ...]
    if type(content) is str:
        parts = (TextPart(content),) if content else ()
    elif content is None:
        refusal = raw.get("refusal") if role == "assistant" else None
        parts = (TextPart(refusal),) if refusal else ()
    else:
        parts = tuple(_part(p) for p in content)
    found = raw.get("tool_calls")
    calls = tuple(_call(c) for c in found) if found is not None else ()
    tool_call_id = raw.get("tool_call_id") if role == "tool" else None
    return Message(role, parts, calls, tool_call_id, raw.get("name"))


def _part(part: Any) -> Part:
    if isinstance(part, TextPart | ImagePart):
        return part
    if part["type"] == "text":
        return TextPart(part["text"])
    if part["type"] == "refusal":
        return TextPart(part["refusal"])
    image = part["image_url"]
    if isinstance(image, str):
        return parse_image(image, "image_url")
    return parse_image(image["url"], "image_url.url", image.get("detail"))


def _call(call: Any) -> ToolCall:
    if isinstance(call, ToolCall):
        return call
    function = call["function"]
    arguments = function.get("arguments", "{}")
    if isinstance(arguments, dict):
        arguments = json.dumps(arguments, separators=(",", ":"), ensure_ascii=False)
    return ToolCall(call["id"], function["name"], arguments)
