"""What the gateway's two wire formats share: the parsed request, the client-facing error,
failover errors mapped to HTTP statuses, the checks both request parsers make, and the course
of a stream (:func:`guarded`).

The OpenAI (:mod:`.openai_wire`) and Anthropic (:mod:`.anthropic_wire`) modules each turn a
request body into a :class:`GatewayRequest` (keyword arguments for
:meth:`FailoverRouter.route` / :meth:`~FailoverRouter.stream`, already validated so the router's
own checks pass at once), and render results, streams (a :class:`StreamWriter`) and
:class:`WireError` in their format.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..chat import MAX_STOP, FinishReason
from ..errors import (
    AllProvidersFailed,
    BudgetExceeded,
    ConfigError,
    FailoverError,
    ProviderError,
    QueueFull,
    RequestRejected,
)
from ..types import (
    Attempt,
    CompletionRequest,
    RouteResult,
    StreamDone,
    StreamSwitched,
    TextDelta,
    ToolCallDelta,
)

MAX_MODEL_NAME = 256  # characters of a request's model name
MAX_FALLBACKS = 16  # entries of a body's ``fallbacks``
MAX_MESSAGE = 2000  # characters of an error message sent to a client
DEFAULT_RETRY_AFTER = 5.0  # seconds a client is told to wait when every provider is down
# Failures of providers the router skips because the request needs what they lack.
_UNSUPPORTED = frozenset({"unsupported", "tools_unsupported", "vision_unsupported"})
# The location a ValueError of the request model names: "messages[2].content: ..." (see
# failover_cli.chat.invalid).
_FIELD = re.compile(r"([A-Za-z_][\w.\[\]]*): ")

KINDS = (
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "overloaded_error",
    "timeout_error",
    "api_error",
)


@dataclass(frozen=True, slots=True)
class GatewayRequest:
    """One parsed request: the model name as the client sent it, whether to stream, keyword
    arguments for the router and the request built from them (validated once, taken by the
    router as it is), OpenAI's ``stream_options.include_usage``, and the body's
    ``fallbacks`` (model or provider names, LiteLLM's field)."""

    model: str
    stream: bool
    route_kwargs: dict[str, Any]
    request: CompletionRequest  # built from route_kwargs (less ``extra``)
    include_usage: bool = False
    fallbacks: tuple[str, ...] = ()


class WireError(Exception):
    """An error for the client, in its own format: HTTP ``status``, a one-line ``message``,
    ``kind`` (Anthropic's error types: see :data:`KINDS`; each format maps them to its own),
    the offending field ``param`` if any, and ``retry_after`` seconds for 429/503."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.message = _one_line(message)
        self.kind = kind if kind in KINDS else "api_error"
        self.param = param
        self.retry_after = retry_after
        super().__init__(self.message)


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def error_for(exc: BaseException, *, retry_after: float | None = None) -> WireError:
    """The client-facing error for what routing raised. ``retry_after`` (seconds until some
    provider may serve again, if the caller knows) goes with the 429/503 answers, else
    :data:`DEFAULT_RETRY_AFTER`.

    * ValueError (the router's validation): 400 naming the field;
    * AllProvidersFailed: 503 ``overloaded_error`` with ``retry_after``; 400 when every
      provider lacks what the request needs; 504 when the request's deadline passed; 503
      without ``retry_after`` when no provider is configured (no key);
    * RequestRejected: the provider's 4xx (400 when it gave none), its message;
    * QueueFull and a budget's ``BudgetExceeded``: 429 ``rate_limit_error``;
    * anything else: 500 ``api_error`` with a generic message (never a traceback).
    """
    wait = DEFAULT_RETRY_AFTER if retry_after is None else retry_after
    if isinstance(exc, WireError):
        return exc
    if isinstance(exc, ValueError):
        return WireError(400, str(exc), param=field_of(str(exc)))
    if isinstance(exc, RequestRejected):
        status = exc.error.status
        status = status if status is not None and 400 <= status < 500 else 400
        kind = "request_too_large" if status == 413 else "invalid_request_error"
        return WireError(status, str(exc), kind=kind)
    if isinstance(exc, BudgetExceeded):  # before AllProvidersFailed: it is one
        return WireError(429, str(exc), kind="rate_limit_error")
    if isinstance(exc, QueueFull):
        return WireError(429, str(exc), kind="rate_limit_error", retry_after=wait)
    if isinstance(exc, AllProvidersFailed):
        message = str(exc)
        tried = [a for a in exc.attempts if a.outcome != "skipped"]
        if exc.attempts and not tried and all(a.reason in _UNSUPPORTED for a in exc.attempts):
            return WireError(400, message)
        if exc.reason == "deadline":
            return WireError(504, summary("request deadline exceeded", exc.attempts),
                             kind="timeout_error")  # fmt: skip
        if exc.reason == "not_configured":
            return WireError(503, message, kind="api_error")
        return WireError(503, summary("no provider could answer", exc.attempts),
                         kind="overloaded_error", retry_after=wait)  # fmt: skip
    if isinstance(exc, TimeoutError):
        return WireError(504, "the request timed out", kind="timeout_error")
    if isinstance(exc, ProviderError):
        return WireError(502, summary("the provider failed", [attempt_of(exc)]), kind="api_error")
    if isinstance(exc, ConfigError | FailoverError):
        return WireError(500, "the gateway could not route this request", kind="api_error")
    return WireError(500, "internal error in the gateway", kind="api_error")


def summary(headline: str, attempts: Sequence[Attempt]) -> str:
    """``headline: claude: provider 401, gpt: transient 503``: each provider tried with the
    class and status of its last failure. Upstream error text never reaches a client: an
    upstream 401 can echo part of the key (``serve --log`` keeps each attempt's message)."""
    last: dict[str, str] = {}
    for a in attempts:
        if a.outcome == "skipped":
            last.setdefault(a.provider, f"skipped ({a.reason})" if a.reason else "skipped")
        elif a.outcome != "ok":
            word = a.error_class.value if a.error_class else a.outcome
            last[a.provider] = word if a.status is None else f"{word} {a.status}"
    parts = ", ".join(f"{name}: {what}" for name, what in last.items())
    return f"{headline}: {parts}" if parts else headline


def attempt_of(exc: ProviderError, provider: str = "") -> Attempt:
    """The failed attempt ``exc`` describes, for :func:`summary`."""
    name = provider or exc.provider or "provider"
    return Attempt(name, "failed", exc.error_class, exc.status)


MAX_WHOLE = 2**63 - 1  # the largest integer field any of these APIs takes (a seed)
MAX_TOKENS = 10_000_000  # max_tokens above this is no model's answer (providers/_http clamps so)


def field_of(message: str) -> str | None:
    """The field a validation message starts with (``messages[2].content: ...``), if any."""
    match = _FIELD.match(message)
    return match[1] if match else None


# --- request checks both parsers make ---------------------------------------------------------


MAX_NESTING = 100  # levels of arrays and objects in a request body (a tool schema needs ~10)
_HIGH_OR_LOW = re.compile(rb"\\u[dD][89a-fA-F]")  # a surrogate's escape, paired or not
MAX_FIELD_PATH = 120  # characters of a field path named in an error (keys are the client's)


def load_object(body: bytes, problem: str) -> dict[str, Any]:
    """The JSON object ``body`` holds; WireError(400, ``problem``) for anything else, and
    a 400 naming the field for what no provider could be sent: nesting deeper than
    :data:`MAX_NESTING` and strings holding a lone surrogate (an unpaired ``\\ud800``
    escape, which is not Unicode and cannot be encoded to any API)."""
    try:  # NaN, Infinity and 1e400 are not JSON any API takes: refused, not sent upstream
        data = json.loads(body, parse_constant=_not_finite, parse_float=_finite)
    except (ValueError, RecursionError):
        raise WireError(400, problem) from None
    if not isinstance(data, dict):
        raise WireError(400, problem)
    if body.count(b"[") + body.count(b"{") > MAX_NESTING:  # only then can it nest so deep
        where = _too_deep(data)
        if where is not None:
            where = where[:MAX_FIELD_PATH]
            raise WireError(400, f"{where}: nested deeper than {MAX_NESTING} levels", param=where)
    if b"\\u" in body and _HIGH_OR_LOW.search(body):
        where = _lone_surrogate(data)
        if where is not None:
            where = where[:MAX_FIELD_PATH]
            raise WireError(
                400, f"{where}: holds a lone surrogate, which is not Unicode", param=where
            )
    return data


def _too_deep(data: Any) -> str | None:
    """Where ``data`` nests past :data:`MAX_NESTING` (a field path), if it does."""
    pending: list[tuple[Any, int, str]] = [(data, 1, "")]
    while pending:
        value, depth, at = pending.pop()
        if depth > MAX_NESTING:
            return at
        if type(value) is dict:
            pending.extend((v, depth + 1, f"{at}.{k}" if at else str(k)) for k, v in value.items())
        elif type(value) is list:
            pending.extend((v, depth + 1, f"{at}[{i}]") for i, v in enumerate(value))
    return None


def _lone_surrogate(data: Any, at: str = "") -> str | None:
    """Where a string (or key) of ``data`` holds a lone surrogate (a field path), if one does;
    ``data`` nests at most :data:`MAX_NESTING` deep."""
    if type(data) is str:
        try:
            data.encode()
        except UnicodeEncodeError:
            return at or "body"
        return None
    if type(data) is dict:
        for k, v in data.items():
            where = f"{at}.{k}" if at else str(k)
            if _lone_surrogate(k) is not None:
                return at or "body"
            found = _lone_surrogate(v, where)
            if found is not None:
                return found
    elif type(data) is list:
        for i, v in enumerate(data):
            found = _lone_surrogate(v, f"{at}[{i}]")
            if found is not None:
                return found
    return None


def _not_finite(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def model_of(body: Mapping[str, Any], missing: str, param: str = "model") -> str:
    """The body's model name: a non-empty string of at most :data:`MAX_MODEL_NAME`."""
    model = body.get("model")
    if model is None or model == "":
        raise WireError(400, missing, param=param)
    if not isinstance(model, str):
        raise WireError(400, f"{param}: must be a string", param=param)
    if len(model) > MAX_MODEL_NAME:
        raise WireError(400, f"{param}: longer than {MAX_MODEL_NAME} characters", param=param)
    return model


def flag(body: Mapping[str, Any], name: str) -> bool:
    """A boolean field (absent or null: false)."""
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise WireError(400, f"{name}: must be a boolean", param=name)
    return value


def number(
    body: Mapping[str, Any], name: str, low: float, high: float, *, param: str | None = None
) -> float | None:
    """A finite number field within [low, high] (absent or null: None)."""
    value = body.get(name)
    if value is None:
        return None
    where = param or name
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WireError(400, f"{where}: must be a number", param=where)
    if type(value) is float and not math.isfinite(value):  # an int is finite, however long
        raise WireError(400, f"{where}: must be a number", param=where)
    if not low <= value <= high:
        raise WireError(400, f"{where}: must be between {low:g} and {high:g}", param=where)
    return value


def whole(value: Any, where: str, *, low: int = 1, high: int = MAX_WHOLE) -> int:
    """A whole number from ``low`` to ``high``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise WireError(400, f"{where}: must be an integer", param=where)
    if value < low:
        raise WireError(400, f"{where}: must be at least {low}", param=where)
    if value > high:
        raise WireError(400, f"{where}: must be at most {high}", param=where)
    return value


def stop_list(value: Any, where: str) -> tuple[str, ...]:
    """Stop sequences: a string or a list of at most :data:`MAX_STOP` non-empty strings."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
        raise WireError(
            400, f"{where}: must be a string or a list of non-empty strings", param=where
        )
    if len(value) > MAX_STOP:
        raise WireError(400, f"{where}: at most {MAX_STOP} stop sequences", param=where)
    return tuple(value)


def fallbacks_of(body: Mapping[str, Any]) -> tuple[str, ...]:
    """LiteLLM's ``fallbacks`` body field (docs.litellm.ai, proxy/client_side_fallbacks):
    model names to try after the requested one, as strings or ``{"model": name}`` objects
    (per-fallback ``messages`` and other overrides are not taken: 400)."""
    value = body.get("fallbacks")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise WireError(400, "fallbacks: must be a list of model names", param="fallbacks")
    if len(value) > MAX_FALLBACKS:
        raise WireError(400, f"fallbacks: at most {MAX_FALLBACKS} entries", param="fallbacks")
    out: list[str] = []
    for i, entry in enumerate(value):
        where = f"fallbacks[{i}]"
        if isinstance(entry, dict):
            if entry.keys() - {"model"}:
                extra = ", ".join(sorted(entry.keys() - {"model"}))
                raise WireError(
                    400, f"{where}: only a model name is taken, not {extra}", param=where
                )
            entry = entry.get("model")
        if not isinstance(entry, str) or not entry or len(entry) > MAX_MODEL_NAME:
            raise WireError(400, f"{where}: must be a model name", param=where)
        out.append(entry)
    return tuple(out)


def validated(
    kwargs: dict[str, Any], where: Any = None
) -> tuple[dict[str, Any], CompletionRequest]:
    """``kwargs`` with messages, tools, tool choice, response format and stop checked once by
    :func:`~failover_cli.request.build_request` and replaced by their typed values, and the
    request built from them (the router takes it as it is); a ValueError becomes a 400 naming
    the field, renamed by ``where`` (a function of the field) when the client wrote another
    shape."""
    from ..request import build_request

    try:
        request = build_request(
            messages=kwargs["messages"],
            max_tokens=kwargs["max_tokens"],
            temperature=kwargs.get("temperature"),
            top_p=kwargs.get("top_p"),
            stop=kwargs.get("stop"),
            tools=kwargs.get("tools"),
            tool_choice=kwargs.get("tool_choice"),
            response_format=kwargs.get("response_format"),
        )
    except ValueError as exc:
        message = str(exc)
        field = field_of(message)
        if where is not None and field is not None:
            renamed = where(field)
            if renamed is not None and renamed != field:
                message = renamed + message[len(field) :]
            field = renamed
        raise WireError(400, message, param=field) from None
    out = dict(kwargs)
    out["messages"] = request.messages
    if request.tools:
        out["tools"] = request.tools
    else:
        out.pop("tools", None)
    if request.tool_choice is not None:
        out["tool_choice"] = request.tool_choice
    else:
        out.pop("tool_choice", None)
    if request.response_format is not None:
        out["response_format"] = request.response_format
    else:
        out.pop("response_format", None)
    if request.stop:
        out["stop"] = request.stop
    else:
        out.pop("stop", None)
    return out, request


# --- responses --------------------------------------------------------------------------------


def response_id(prefix: str, request_id: str) -> str:
    """``request_id`` as an id of this format (``chatcmpl-...``, ``msg_...``)."""
    core = request_id.removeprefix("req_")
    return core if core.startswith(prefix) else prefix + core


def call_id(
    prefix: str,
    given: str | None,
    request_id: str,
    index: int,
    seen: set[str],
    *,
    foreign: bool = False,
) -> str:
    """A tool call's id for the client: kept when it has this format's ``prefix`` (any id
    with ``foreign``), else ``prefix`` and a digest of it (the same in a stream and a whole
    answer); an empty or repeated id gets one made from the request and the call's place."""
    fresh = bool(given) and given not in seen
    if fresh and given is not None and (foreign or given.startswith(prefix)):
        out = given
    else:
        seed = given if fresh and given else f"{request_id}:{index}:{given or ''}"
        out = prefix + hashlib.sha256(seed.encode("utf-8", "surrogatepass")).hexdigest()[:24]
    seen.add(out)
    return out


def finish_of(result: RouteResult) -> FinishReason:
    """The answer's finish reason: the provider's, else ``tool_calls`` if it called tools,
    else ``stop``."""
    return result.finish_reason or ("tool_calls" if result.calls else "stop")


# --- streams ----------------------------------------------------------------------------------


class StreamWriter(ABC):
    """How one stream is written in one format, for :func:`guarded`; it keeps the format's
    own state (tool-call ids, open blocks). Each method returns whole SSE frames: a delta's
    frame (``b""``: nothing to send), the opening and closing frames in the order sent."""

    @abstractmethod
    def start(self) -> Sequence[bytes]:
        """The frames before any content."""

    @abstractmethod
    def text(self, text: str) -> bytes:
        """A piece of answer text (never empty)."""

    @abstractmethod
    def tool(self, delta: ToolCallDelta) -> bytes:
        """A piece of a tool call."""

    def refusal(self, text: str) -> bytes:
        """A piece of the model's refusal (never empty): answer text unless the format has
        a place of its own for it."""
        return self.text(text)

    @abstractmethod
    def done(self, result: RouteResult) -> Sequence[bytes]:
        """The last frames of a complete answer: its finish reason, usage, end marker."""

    @abstractmethod
    def error(self, err: WireError) -> bytes:
        """``err`` as the last event of a stream that could not be completed."""

    def failed(self, exc: Exception) -> WireError:
        """The error for what ended an answer mid-stream (every provider failed, ...)."""
        return error_for(exc)


async def guarded(events: AsyncIterator[Any], writer: StreamWriter) -> AsyncIterator[bytes]:
    """The frames ``writer`` makes of the router's typed ``events``, one per item.

    Once content reached the client (a text or tool-call delta; empty text is not sent), a
    ``restart`` switch cannot be undone: the stream ends with an error; any other switch goes
    unseen. An exception after the opening frames (from the router: every provider failed;
    or from the writer) ends it with ``writer.failed``'s error, and so do events that stop
    before their :class:`StreamDone`: never a stream that looks complete. ``events`` is
    closed as soon as the stream ends or is given up on."""
    for frame in writer.start():
        yield frame
    sent = False  # content the client has
    shown = 0  # characters of text among it
    try:
        async for event in events:
            if type(event) is TextDelta:
                if event.text:
                    sent = True
                    shown += len(event.text)
                    yield writer.refusal(event.text) if event.refusal else writer.text(event.text)
            elif type(event) is ToolCallDelta:
                sent = True
                frame = writer.tool(event)
                if frame:
                    yield frame
            elif type(event) is StreamSwitched:
                if event.strategy == "restart" and sent:
                    yield writer.error(_restarted(event, shown))
                    return
            elif type(event) is StreamDone:
                for frame in writer.done(event.result):
                    yield frame
                return
    except Exception as exc:
        yield writer.error(writer.failed(exc))
        return
    finally:
        await close_events(events)
    yield writer.error(
        WireError(502, "the answer stream ended before it was complete", kind="api_error")
    )


def _restarted(event: StreamSwitched, shown: int) -> WireError:
    """The error for a restart after the client had part of the answer (``shown``: its
    characters of text; the event's ``kept`` is 0 for a restart, which keeps nothing)."""
    had = f"{shown} characters" if shown else "the start of a tool call"
    return WireError(
        503,
        f"the answer broke after the client had {had} of it and {event.new} could only start "
        "it again from the beginning; retry the request",
        kind="overloaded_error",
    )


async def close_events(events: Any) -> None:
    """Close an event iterator a renderer stopped reading (a provider stream left open)."""
    close = getattr(events, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:
            pass


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dumps(value: Any) -> bytes:
    """Compact JSON, UTF-8 (one shared encoder: ``json.dumps`` with options builds one per
    call)."""
    return _ENCODER.encode(value).encode("utf-8", "backslashreplace")


_STRING = json.encoder.encode_basestring  # what _ENCODER writes a string with (C where built)


def json_string(text: str) -> bytes:
    """``dumps(text)`` for a string, without the encoder's dispatch: a stream's text frames
    are templates around it."""
    return _STRING(text).encode()
