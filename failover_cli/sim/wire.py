"""Shapes shared by the HTTP server, the response planner and the four API dialects."""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Callable
from dataclasses import field
from datetime import UTC, datetime
from enum import Enum
from json.encoder import encode_basestring
from typing import Any, Literal, Protocol

from ..records import frozen, slotted

JSON_TYPE = "application/json"


@frozen
class RecordedRequest:
    """One request a simulator received. Header names are lower-case."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any  # the parsed body, or None when it is empty or not JSON


@frozen
class Route:
    """What a request asks for: a completion or a health check, with a model named in the path."""

    completion: bool
    model: str | None = None


COMPLETION = Route(completion=True)
HEALTH = Route(completion=False)


def models_api_route(request: RecordedRequest, completion_path: str) -> Route | None:
    """Routing of the APIs that list models under /v1/models (Anthropic, OpenAI)."""
    if request.method == "POST" and request.path == completion_path:
        return COMPLETION
    if request.method == "GET" and request.path == "/v1/models":
        return HEALTH
    if request.method == "GET" and request.path.startswith("/v1/models/"):
        return Route(completion=False, model=request.path.removeprefix("/v1/models/"))
    return None


@slotted
class Reply:
    """A whole response, rendered by a dialect."""

    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)


@frozen
class SimToolCall:
    """A tool call a simulator answers with; ``arguments`` is an object."""

    id: str
    name: str
    arguments: dict[str, Any]


@frozen
class ChatView:
    """What a completion request asks of the chat features, read from any dialect's body.

    ``tools`` maps each offered tool's name (as sent) to its parameters schema; ``choice`` is
    ``auto``, ``none``, ``required`` or the name of a forced tool; ``after_tool`` says the
    last turn carries tool results; ``json`` says JSON output is asked for, ``schema`` (if
    any) the schema it must match."""

    tools: dict[str, Any] = field(default_factory=dict)
    choice: str = "auto"
    after_tool: bool = False
    json: bool = False
    schema: Any = None


NO_CHAT = ChatView()


@slotted
class Exchange:
    """One completion being answered: what the dialects need to render it."""

    request: RecordedRequest
    model: str
    stream: bool
    input_tokens: int
    created: float  # epoch seconds
    request_id: str
    # Planned durations (seconds), reported by dialects that expose timings (Ollama).
    latency: float = 0.0
    ttft: float = 0.0
    generation: float = 0.0
    refused: bool = False  # ended by a content filter / refusal instead of a normal stop
    tool_calls: list[SimToolCall] = field(default_factory=list)  # answered instead of text


@frozen
class Budget:
    """One rate-limit budget a response reports: what is left, and seconds until it refills."""

    kind: Literal["requests", "tokens"]
    remaining: int
    reset: float


class End(Enum):
    """How a rendered stream ends."""

    COMPLETE = "complete"  # the dialect's terminal marker
    NO_MARKER = "no_marker"  # the finish, without the optional marker that may follow it
    CUT = "cut"  # nothing: the stream just stops
    ERROR = "error"  # the dialect's in-stream error
    MALFORMED = "malformed"  # a line of invalid JSON


@slotted
class StreamFrames:
    """A rendered stream: frames before the first token, one frame per token, then the end."""

    head: list[bytes]
    tokens: list[bytes]
    tail: list[bytes]


class Dialect(Protocol):
    """One provider API: request checks and response rendering, no I/O and no timing."""

    default_model: str
    overloaded_status: int  # what a non-streamed ``midstream_error`` answers with
    id_prefix: str  # of the request id a completion reports
    tool_id_prefix: str  # of the ids of the tool calls it answers with
    json_type: str  # Content-Type of a JSON answer

    def route(self, request: RecordedRequest) -> Route | None: ...

    def unknown_route(self, request: RecordedRequest) -> Reply: ...

    def check_auth(self, request: RecordedRequest, api_key: str | None) -> Reply | None: ...

    def check_request(self, request: RecordedRequest) -> Reply | None:
        """A rejection (or any early answer) for a completion request, else None."""
        ...

    def chat_view(self, request: RecordedRequest) -> ChatView:
        """The tools, tool choice and structured output a (checked) request asks for."""
        ...

    def wants_stream(self, request: RecordedRequest) -> bool: ...

    def stream_type(self, request: RecordedRequest) -> str:
        """The Content-Type of a streamed answer."""
        ...

    def requested_model(self, request: RecordedRequest, route: Route) -> str | None: ...

    def health(self, request: RecordedRequest, route: Route, models: list[str]) -> Reply: ...

    def message(self, exchange: Exchange, text: str, output_tokens: int) -> bytes:
        """The JSON body of a whole answer: ``text``, then ``exchange.tool_calls`` if any."""
        ...

    def stream(self, exchange: Exchange, tokens: list[str], end: End) -> StreamFrames:
        """The frames of a streamed answer: ``tokens``, then ``exchange.tool_calls`` (if any)
        in the dialect's tool-call deltas, in ``tail``."""
        ...

    def status_error(self, status: int, exchange: Exchange | None) -> Reply: ...

    def fault_error(self, fault: str, exchange: Exchange) -> Reply:
        """The reply for ``context_length``, ``quota``, ``auth`` and ``not_found``."""
        ...

    def prefill_error(self, request: RecordedRequest) -> Reply | None:
        """The ``reject_prefill`` rejection, when the request's last turn is the assistant's."""
        ...

    def response_headers(self, request_id: str) -> list[tuple[str, str]]: ...

    def ratelimit_headers(self, budgets: list[Budget], now: float) -> list[tuple[str, str]]:
        """The dialect's rate-limit headers reporting ``budgets`` at epoch time ``now``."""
        ...


def last_role(turns: Any) -> str | None:
    """The role of the last of a request's messages/contents, if it has one."""
    if isinstance(turns, list) and turns and isinstance(turns[-1], dict):
        role = turns[-1].get("role")
        return role if isinstance(role, str) else None
    return None


def go_duration(seconds: float) -> str:
    """``seconds`` as Go prints a duration: ``12ms``, ``1s``, ``6m0s``, ``1h2m3.5s``."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{int(hours)}h{int(minutes)}m{text}"
    return f"{int(minutes)}m{text}" if minutes else text


def rfc3339(epoch: float) -> str:
    """``epoch`` as an RFC 3339 UTC timestamp, to the second (``2026-05-01T12:00:00Z``)."""
    return datetime.fromtimestamp(math.ceil(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def dumps(obj: Any, indent: int | None = None) -> bytes:
    """Compact JSON (as the APIs send it) encoded as UTF-8."""
    if indent:
        return json.dumps(obj, indent=indent, ensure_ascii=False).encode()
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def quote(text: str) -> bytes:
    """``text`` as a JSON string literal (what :func:`dumps` would write for it)."""
    return encode_basestring(text).encode()


class Template:
    """A frame whose JSON has slots, rendered by concatenation: the per-token hot path.

    Build it from an object holding ``Template.slot(0)``, ``Template.slot(1)``, ... where the
    values go, and a function framing the JSON bytes; call it with each slot's JSON bytes
    (``quote(text)``, ``b"42"``) in slot order.
    """

    def __init__(self, obj: Any, frame: Callable[[bytes], bytes] = lambda raw: raw) -> None:
        raw = frame(dumps(obj))
        self._parts: list[bytes] = []
        index = 0
        while (marker := dumps(self.slot(index))) in raw:
            before, raw = raw.split(marker, 1)
            self._parts.append(before)
            index += 1
        self._parts.append(raw)

    @staticmethod
    def slot(index: int) -> str:
        return f"\x00slot{index}\x00"

    def __call__(self, *values: bytes) -> bytes:
        parts = self._parts
        if len(values) == 1 and len(parts) == 2:
            return parts[0] + values[0] + parts[1]
        out = [parts[0]]
        for value, part in zip(values, parts[1:], strict=True):
            out += (value, part)
        return b"".join(out)


def sse(data: bytes, event: str | None = None, eol: bytes = b"\n") -> bytes:
    """One server-sent event: optional ``event:`` line, a ``data:`` line, a blank line."""
    head = b"event: " + event.encode() + eol if event else b""
    return head + b"data: " + data + eol + eol


def cut_json(obj: Any) -> bytes:
    """The first half of ``obj`` serialised: JSON that no parser accepts."""
    raw = dumps(obj)
    return raw[: max(1, len(raw) // 2)]


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + secrets.token_hex(length // 2)


_TEXT_KEYS = frozenset(
    {"messages", "contents", "content", "text", "parts", "system", "systemInstruction"}
)


def count_words(node: Any) -> int:
    """Whitespace-separated words in the text of messages/contents (a stand-in for tokens)."""
    if isinstance(node, str):
        return len(node.split())
    if isinstance(node, list):
        return sum(count_words(item) for item in node)
    if isinstance(node, dict):
        return sum(count_words(value) for key, value in node.items() if key in _TEXT_KEYS)
    return 0


def example_of(schema: Any, depth: int = 0) -> Any:
    """A small value matching a JSON schema: required (else all) properties of an object,
    the first of an enum, a placeholder of each type."""
    if not isinstance(schema, dict) or depth > 8:
        return None
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return example_of(schema[key][0], depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        found = schema.get("properties")
        props: dict[str, Any] = found if isinstance(found, dict) else {}
        required = schema.get("required")
        names = [n for n in required if n in props] if isinstance(required, list) else list(props)
        return {n: example_of(props[n], depth + 1) for n in names}
    if kind == "array":
        item = example_of(schema.get("items"), depth + 1)
        return [] if item is None else [item]
    return {"string": "example", "integer": 1, "number": 1.5, "boolean": True}.get(
        kind if isinstance(kind, str) else ""
    )
