"""The provider-neutral chat model: messages, content parts, tools, tool choice and structured
output, validated once from OpenAI Chat Completions-shaped dicts and rendered back to them.

OpenAI's Chat Completions shape is the lingua franca callers already write: roles ``system``,
``developer``, ``user``, ``assistant`` and ``tool``; content as a string or a list of ``text``
and ``image_url`` parts; assistant ``tool_calls`` with JSON-text ``arguments``; ``tool``
messages answering one call by ``tool_call_id``. Adapters translate these typed values to each
API and back. Nothing here does I/O.

The values are built for every message of every request, so they are plain slotted
dataclasses (a frozen one costs five times as much to build): treat them as immutable.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import field
from typing import Any, Literal, TypeAlias, overload

from .records import frozen, slotted

Role = Literal["system", "developer", "user", "assistant", "tool"]
ROLES: tuple[Role, ...] = ("system", "developer", "user", "assistant", "tool")
_NO_PARAMETERS: Mapping[str, Any] = {"type": "object", "properties": {}}
FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")

MAX_TOOL_NAME = 64
# Bounds on what a caller sends, against hostile input: above what any provider takes, so a
# real request never meets them (OpenAI documents 128 tools; Anthropic 8,192 stop sequences).
MAX_TOOLS = 1024  # tools in one request
MAX_PARTS = 4096  # content parts in one message
MAX_STOP = 16  # stop sequences in one request
MAX_STOP_CHARS = 1024  # characters of one stop sequence
TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


@slotted
class TextPart:
    text: str


@slotted
class ImagePart:
    """An image by URL (``url``) or inline (``data``: base64 of ``media_type``)."""

    url: str | None = None
    media_type: str | None = None
    data: str | None = None
    detail: str | None = None

    @property
    def data_url(self) -> str:
        """The image as OpenAI takes it: its URL, or a ``data:`` URL."""
        return self.url if self.url is not None else f"data:{self.media_type};base64,{self.data}"


Part: TypeAlias = TextPart | ImagePart


@slotted
class ToolCall:
    """One call of a function tool; ``arguments`` is JSON text, as OpenAI reports it."""

    id: str
    name: str
    arguments: str = "{}"

    def parsed_arguments(self) -> Any:
        """The arguments as an object; text that is not a JSON object becomes ``{}``."""
        try:
            value = json.loads(self.arguments or "{}")
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@slotted
class Message:
    """One turn. ``content`` is empty for an assistant turn made only of tool calls."""

    role: Role
    content: tuple[Part, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    @classmethod
    def of(cls, role: Role, text: str) -> Message:
        return cls(role, (TextPart(text),) if text else ())

    @property
    def text(self) -> str:
        """The text parts joined (images left out)."""
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    @property
    def images(self) -> tuple[ImagePart, ...]:
        return tuple(p for p in self.content if isinstance(p, ImagePart))

    def to_dict(self) -> dict[str, Any]:
        """This message in OpenAI Chat Completions shape."""
        out: dict[str, Any] = {"role": self.role}
        if all(isinstance(p, TextPart) for p in self.content):
            out["content"] = self.text if self.content or not self.tool_calls else None
        else:
            out["content"] = [_part_dict(p) for p in self.content]
        if self.tool_calls:
            out["tool_calls"] = [c.to_dict() for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        return out


@slotted
class Tool:
    """A function the model may call; ``parameters`` is its JSON schema."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})
    strict: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        function: dict[str, Any] = {"name": self.name, "parameters": dict(self.parameters)}
        if self.description:
            function["description"] = self.description
        if self.strict is not None:
            function["strict"] = self.strict
        return {"type": "function", "function": function}


@frozen
class ForcedTool:
    """``tool_choice`` naming the one function the model must call."""

    name: str


ToolChoice: TypeAlias = Literal["auto", "none", "required"] | ForcedTool


@frozen
class ResponseFormat:
    """Structured output: any JSON object (``json_object``) or one matching ``schema``."""

    type: Literal["json_object", "json_schema"]
    schema: Mapping[str, Any] | None = None
    name: str = "response"
    strict: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.type == "json_object":
            return {"type": "json_object"}
        spec: dict[str, Any] = {"name": self.name, "schema": dict(self.schema or {})}
        if self.strict is not None:
            spec["strict"] = self.strict
        return {"type": "json_schema", "json_schema": spec}


def tool_choice_dict(choice: ToolChoice) -> str | dict[str, Any]:
    """``choice`` in OpenAI's shape."""
    if isinstance(choice, ForcedTool):
        return {"type": "function", "function": {"name": choice.name}}
    return choice


def _part_dict(part: Part) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    image: dict[str, Any] = {"url": part.data_url}
    if part.detail:
        image["detail"] = part.detail
    return {"type": "image_url", "image_url": image}


# --- validation: OpenAI-shaped dicts in, typed values out (messages: see failover_cli.messages)


def invalid(where: str, problem: str) -> ValueError:
    return ValueError(f"{where}: {problem}")


def checked_string(value: Any, where: str, *, empty: bool = True) -> str:
    if not isinstance(value, str):
        raise invalid(where, f"must be a string, not {type(value).__name__}")
    if not empty and not value:
        raise invalid(where, "must not be empty")
    return value


class Tools(Sequence[Tool]):
    """Checked tools: their ``names`` in order, and ``wire``: the caller's dicts when Chat
    Completions takes them exactly as they are (each name within its rule, every field as
    :meth:`Tool.to_dict` renders it), so an OpenAI adapter sends them unchanged; None when
    they need rendering. The typed values are built on first use, from the caller's dicts:
    do not change them until the request returns."""

    __slots__ = ("_source", "_typed", "names", "wire")

    def __init__(
        self,
        source: Sequence[Any],
        names: Sequence[str],
        wire: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        self._source = source
        self._typed: tuple[Tool, ...] | None = None
        self.names = names
        self.wire = wire

    @property
    def typed(self) -> tuple[Tool, ...]:
        if self._typed is None:
            try:
                self._typed = tuple(_tool(t) for t in self._source)
            except (KeyError, TypeError, AttributeError) as exc:
                raise ValueError(f"tools: changed while the request ran ({exc})") from None
        return self._typed

    def __len__(self) -> int:
        return len(self._source)

    def __bool__(self) -> bool:
        return bool(self._source)

    @overload
    def __getitem__(self, index: int) -> Tool: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Tool, ...]: ...

    def __getitem__(self, index: int | slice) -> Tool | tuple[Tool, ...]:
        return self.typed[index]

    def __iter__(self) -> Iterator[Tool]:
        return iter(self.typed)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Tools):
            return self.typed == other.typed
        if isinstance(other, tuple | list):
            return self.typed == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Tools({list(self.typed)!r})"


def _tool(raw: Any) -> Tool:
    if isinstance(raw, Tool):
        return raw
    function = raw["function"]
    return Tool(
        function["name"],
        function.get("description", ""),
        function.get("parameters", _NO_PARAMETERS),
        function.get("strict"),
    )


_FITS: dict[str, bool] = {}  # tool name -> within Chat Completions' rule (tools recur)


def fits_tool_name(name: str) -> bool:
    """Whether Chat Completions takes ``name`` as a tool name as it is (remembered: the same
    tools come with every request)."""
    fits = _FITS.get(name)
    if fits is None:
        if len(_FITS) >= 1024:
            _FITS.clear()
        fits = _FITS[name] = len(name) <= MAX_TOOL_NAME and TOOL_NAME.fullmatch(name) is not None
    return fits


def parse_tools(tools: Any) -> Sequence[Tool]:
    """Validate OpenAI-shaped function tools (``{"type": "function", "function": {...}}``)
    into :class:`Tools`. Locations are formatted only on error."""
    if tools is None:
        return ()
    if type(tools) is not list:
        if isinstance(tools, Tools):
            return tools
        if isinstance(tools, str | bytes) or not isinstance(tools, Sequence):
            raise ValueError("tools: must be a list of tools")
    if len(tools) > MAX_TOOLS:
        raise ValueError(f"tools: at most {MAX_TOOLS} tools, not {len(tools)}")
    names: list[str] = []
    wire = True
    for i, raw in enumerate(tools):
        if type(raw) is dict:
            function = raw.get("function")
            if raw.get("type", "function") != "function":
                raise invalid(f"tools[{i}].type", "only function tools are supported")
            if type(function) is not dict:
                raise invalid(f"tools[{i}].function", "must be an object with a name")
            name = function.get("name")
            if type(name) is not str or not name:
                name = checked_string(name, f"tools[{i}].function.name", empty=False)
            parameters = function.get("parameters", _NO_PARAMETERS)
            if type(parameters) is not dict:
                raise invalid(f"tools[{i}].function.parameters", "must be a JSON schema object")
            description = function.get("description", "")
            if type(description) is not str:
                description = checked_string(description, f"tools[{i}].function.description")
            strict = function.get("strict")
            if strict is not None and type(strict) is not bool:
                raise invalid(f"tools[{i}].function.strict", "must be true or false")
            if wire:  # exactly {type, function: {name, parameters, [description], [strict]}}
                wire = (
                    len(raw) == 2
                    and "type" in raw
                    and parameters is not _NO_PARAMETERS
                    and len(function) == 2 + (description != "") + (strict is not None)
                    and fits_tool_name(name)
                )
        elif isinstance(raw, Tool):
            name = raw.name
            wire = False
        else:
            raise invalid(f"tools[{i}]", "must be an object")
        names.append(name)
    if len(set(names)) != len(names):
        seen: set[str] = set()
        for i, name in enumerate(names):
            if name in seen:
                raise invalid(f"tools[{i}].function.name", f"{name!r} is defined twice")
            seen.add(name)
    return Tools(tools, names, tools if wire else None)


def parse_tool_choice(choice: Any, tools: Sequence[Tool]) -> ToolChoice | None:
    """``auto``, ``none``, ``required`` or ``{"type": "function", "function": {"name": ...}}``
    naming one of ``tools``."""
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, ForcedTool):
        forced = choice
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        forced = ForcedTool(
            checked_string(choice["function"].get("name"), "tool_choice.function.name")
        )
    else:
        raise ValueError(
            "tool_choice: must be auto, none, required or"
            ' {"type": "function", "function": {"name": ...}}'
        )
    names = tools.names if isinstance(tools, Tools) else [t.name for t in tools]
    if forced.name not in names:
        raise ValueError(f"tool_choice: {forced.name!r} is not one of the tools")
    return forced


def parse_response_format(value: Any) -> ResponseFormat | None:
    """``{"type": "json_object"}`` or ``{"type": "json_schema", "json_schema": {"name",
    "schema", "strict"}}``; ``{"type": "text"}`` and None ask for nothing."""
    if value is None or isinstance(value, ResponseFormat):
        return value
    if not isinstance(value, dict):
        raise ValueError("response_format: must be an object with a type")
    kind = value.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat("json_object")
    if kind != "json_schema":
        raise ValueError(
            f"response_format.type: must be json_schema, json_object or text, not {kind!r}"
        )
    spec = value.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
        raise ValueError("response_format.json_schema.schema: must be a JSON schema object")
    strict = spec.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise ValueError("response_format.json_schema.strict: must be true or false")
    name = spec.get("name", "response")
    return ResponseFormat(
        "json_schema",
        spec["schema"],
        checked_string(name, "response_format.json_schema.name"),
        strict,
    )


def parse_stop(stop: Any) -> tuple[str, ...]:
    """Stop sequences: a string or a list of at most :data:`MAX_STOP` strings of at most
    :data:`MAX_STOP_CHARS` characters."""
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = (stop,)
    elif not isinstance(stop, Sequence) or not all(isinstance(s, str) for s in stop):
        raise ValueError("stop: must be a string or a list of strings")
    if len(stop) > MAX_STOP:
        raise ValueError(f"stop: at most {MAX_STOP} stop sequences, not {len(stop)}")
    for i, s in enumerate(stop):
        if len(s) > MAX_STOP_CHARS:
            raise ValueError(f"stop[{i}]: longer than {MAX_STOP_CHARS} characters")
    return tuple(stop)


# --- tool names a provider can take ------------------------------------------------------------


def wire_tool_name(
    name: str, limit: int = MAX_TOOL_NAME, pattern: re.Pattern[str] = TOOL_NAME
) -> str:
    """``name`` as a provider that allows ``limit`` characters of ``pattern`` takes it: kept
    when it fits, else its allowed characters cut short and a digest of the whole name, so
    two long names never collide. Reverse with :class:`ToolNames`."""
    if len(name) <= limit and pattern.fullmatch(name):
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    clean = re.sub(r"[^A-Za-z0-9_-]", "_", name)
    return f"{clean[: limit - 9]}_{digest}"


class ToolNames:
    """The names of one request's tools as sent to a provider, and back. ``UNCHANGED`` is
    the one for names known to fit already."""

    __slots__ = ("_back", "_limit", "_out")
    UNCHANGED: ToolNames

    def __init__(self, names: Iterable[str], limit: int = MAX_TOOL_NAME) -> None:
        self._limit = limit
        self._out = {n: wire_tool_name(n, limit) for n in names}
        self._back = {w: n for n, w in self._out.items() if w != n}

    @classmethod
    def of(
        cls, tools: Sequence[Tool], messages: Sequence[Message], limit: int = MAX_TOOL_NAME
    ) -> ToolNames:
        names = [t.name for t in tools]
        names += [c.name for m in messages for c in m.tool_calls]
        return cls(names, limit)

    def wire(self, name: str) -> str:
        if self is ToolNames.UNCHANGED:
            return name
        return self._out.get(name) or wire_tool_name(name, self._limit)

    def original(self, wire_name: str) -> str:
        return self._back.get(wire_name, wire_name)


ToolNames.UNCHANGED = ToolNames(())


def tool_names_by_id(messages: Sequence[Message]) -> dict[str, str]:
    """Each earlier tool call's id → its function name (APIs that answer calls by name)."""
    return {c.id: c.name for m in messages for c in m.tool_calls}


def normalise_finish(reason: str | None, table: Mapping[str, FinishReason]) -> FinishReason | None:
    """A provider's stop reason in OpenAI's words, by the adapter's ``table``; an unknown
    reason is ``stop``, none is None."""
    if reason is None:
        return None
    return table.get(reason, "stop")
