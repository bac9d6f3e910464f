"""HTTP plumbing shared by every adapter: the one place httpx errors become ProviderErrors.

* :func:`translate_errors` wraps all I/O of one attempt; nothing outside it sees an httpx type,
  and no other exception escapes it either (an unreadable payload is ``malformed``).
* :class:`Clocks` holds the four limits of an attempt; a timeout is reported by the one that
  ran out: ``connect``, ``first_token_timeout``, ``stall`` or ``timeout`` (the whole attempt).
* :func:`read_body`, :func:`lines` and :func:`sse_events` read a body within :class:`Limits`,
  counting decoded bytes (gzip and deflate are inflated here, a bounded piece at a time), and
  fail with ``reason="oversized"``.
* :func:`bounded` puts the stream clocks on every wait for an event, never across a ``yield``.
* :func:`classify_status` maps an HTTP status to an error class, before a dialect's verdict.

Status meanings follow the providers' error pages: Anthropic https://docs.anthropic.com/en/api/errors
(400/401/403/404/413/429/500/529), OpenAI https://platform.openai.com/docs/guides/error-codes,
Gemini https://ai.google.dev/gemini-api/docs/troubleshooting (400/403/404/429/500/503/504).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..errors import (
    ContextLengthExceeded,
    InvalidRequest,
    ProviderError,
    ProviderUnavailable,
    TransientError,
    redact,
)
from ..ratelimit import parse_ratelimit, seconds_until_reset
from ..records import frozen, slotted
from ..retry import parse_retry_after
from ..types import CompletionRequest, RateLimit
from ._transport import DirectResponse, ResponseStream, StaleConnection, TLSError

MESSAGE_LIMIT = 300
SNIPPET_LIMIT = 80
MAX_TOKENS = 10_000_000  # a token count above this is a lie: clamp it

# Wordings providers use when the prompt does not fit the model (Anthropic "prompt is too long",
# OpenAI "maximum context length", llama.cpp "context size", Gemini "input token count ...
# exceeds the maximum number of tokens", Ollama "context length").
CONTEXT_RE = re.compile(
    r"prompt is too long|context[ _-]?(length|window|size)|maximum context"
    r"|exceeds the maximum number of tokens|too many (input )?tokens",
    re.IGNORECASE,
)
# Wordings of a server refusing a final assistant turn (Anthropic "does not support assistant
# message prefill", Mistral-style "Expected last role User or Tool", Gemini "multiturn requests
# ends with a user role", Vertex "Requests ending with a model turn are not supported").
PREFILL_RE = re.compile(
    r"prefill|must end with a user|ends? with a user role|expected last role"
    r"|ending with a model turn",
    re.IGNORECASE,
)

_TRANSIENT_STATUS = {
    408: "timeout",
    409: "server_error",
    425: "rate_limited",
    429: "rate_limited",
    503: "overloaded",
    529: "overloaded",
}
_PROVIDER_STATUS = {401: "auth", 402: "quota", 403: "auth", 404: "model_not_found"}
_REQUEST_STATUS = {400, 413, 422}
_EPSILON = 1e-3  # a timer firing this close to the attempt deadline is the deadline's


@frozen
class Limits:
    """The most an adapter reads of one response, in decoded bytes."""

    body: int = 16 * 1024 * 1024  # a whole (non-streamed) answer
    error_body: int = 64 * 1024  # an error response: the rest is not read
    line: int = 1024 * 1024  # one SSE event or NDJSON line
    stream: int = 64 * 1024 * 1024  # a whole stream


@slotted
class Clocks:
    """The four limits of one attempt. Instants are event-loop time, spans seconds.

    ``first_token`` runs from the start of the attempt to the first token of a stream, or to
    the response head of a non-streamed call; ``idle`` bounds each gap between stream events
    once the first token came; ``deadline`` ends the whole attempt, and caps the others."""

    deadline: float
    budget: float
    connect: float
    first_token: float
    first_token_at: float
    idle: float
    stream: bool
    started: bool = False  # the first token arrived

    @classmethod
    def start(
        cls, budget: float, *, connect: float, first_token: float, idle: float, stream: bool
    ) -> Clocks:
        now = asyncio.get_running_loop().time()
        deadline = now + budget
        first_at = min(deadline, now + first_token)
        return cls(deadline, budget, connect, first_token, first_at, idle, stream)

    def left(self) -> float:
        return max(0.0, self.deadline - asyncio.get_running_loop().time())

    def next_wait(self) -> float:
        """The instant by which the next stream event must arrive."""
        if not self.started:
            return self.first_token_at
        return min(self.deadline, asyncio.get_running_loop().time() + self.idle)

    def http_timeout(self) -> httpx.Timeout:
        """httpx's own timeouts: connect, and a read timeout that never fires before the
        clock it backs (the head limit of a whole call; a backstop for a stream)."""
        left = self.left()
        read = max(self.first_token, self.idle) + 1.0 if self.stream else self.first_token
        return httpx.Timeout(left, connect=min(self.connect, left), read=min(read, left), pool=left)


@dataclass
class Call:
    """What one attempt has seen so far; lets :func:`translate_errors` describe a failure."""

    provider: str
    secrets: list[str | None]
    in_body: bool = False  # response headers received: a dropped connection now truncates
    parts: list[str] = field(default_factory=list)
    clock: Clocks | None = None
    ratelimit: RateLimit | None = None
    request: CompletionRequest | None = None  # what was asked (for mapping names back)

    @property
    def partial_text(self) -> str:
        return "".join(self.parts)

    def scrub(self, text: str) -> str:
        """``text`` without any secret, in plain or escaped renderings."""
        return redact(text, _renderings(self.secrets))

    def error(
        self,
        cls: type[ProviderError],
        message: str,
        *,
        reason: str,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> ProviderError:
        """An error whose message is scrubbed of every secret, then trimmed."""
        return cls(
            trim(self.scrub(message)),
            provider=self.provider,
            status=status,
            retry_after=retry_after,
            reason=reason,
            partial_text=self.partial_text,
            ratelimit=self.ratelimit,
        )

    def http_error(
        self,
        response: httpx.Response,
        message: str,
        verdict: tuple[type[ProviderError], str] | None = None,
    ) -> ProviderError:
        """An error for a non-2xx response; ``verdict`` is the dialect's reading of the body.
        A 429 without Retry-After waits until the reported rate-limit reset."""
        status = response.status_code
        cls, reason = verdict or classify_status(status)
        if cls is InvalidRequest and is_context_message(message):
            cls, reason = ContextLengthExceeded, "context_length"
        elif cls is InvalidRequest and PREFILL_RE.search(message):
            reason = "prefill_unsupported"
        now = time.time()
        retry_after = parse_retry_after(response.headers, now)
        if retry_after is None and status == 429:
            retry_after = seconds_until_reset(self.ratelimit, now)
        text = message or response.reason_phrase or "no message"
        return self.error(cls, text, reason=reason, status=status, retry_after=retry_after)

    def timeout_error(self, exc: BaseException) -> ProviderError:
        """The error for a timer that ran out, named after the clock it was."""
        clock = self.clock
        if isinstance(exc, httpx.PoolTimeout | httpx.WriteTimeout):  # bounded by the budget
            return self.error(TransientError, f"timed out ({type(exc).__name__})", reason="timeout")
        if clock is None or asyncio.get_running_loop().time() >= clock.deadline - _EPSILON:
            budget = f" after {clock.budget:.1f}s (the whole attempt)" if clock else ""
            return self.error(TransientError, f"timed out{budget}", reason="timeout")
        if isinstance(exc, httpx.ConnectTimeout):
            message = f"cannot connect: timed out after {clock.connect:.1f}s"
            return self.error(TransientError, message, reason="connect")
        if not self.in_body or (clock.stream and not clock.started):
            message = f"no first token after {clock.first_token:.1f}s"
            return self.error(TransientError, message, reason="first_token_timeout")
        if clock.stream:
            message = f"stream stalled: no event for {clock.idle:.1f}s"
        else:
            message = f"response stalled: no data for {clock.first_token:.1f}s"
        return self.error(TransientError, message, reason="stall")

    def oversized(self, what: str, limit: int) -> ProviderError:
        return self.error(
            TransientError, f"{what} larger than {_size(limit)}: not read", reason="oversized"
        )


def trim(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """Collapse whitespace and cut ``text`` to ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _renderings(secrets: Iterable[str | None]) -> list[str]:
    """Each secret as text may show it: plain, stripped, and escaped the ways ``repr``, JSON
    and h11 (bytes) render it; longest first, so no rendering is left half replaced."""
    out: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        for value in (secret, secret.strip()):
            out.update(
                (
                    value,
                    repr(value)[1:-1],
                    json.dumps(value)[1:-1],
                    repr(value.encode("utf-8", "surrogateescape"))[2:-1],
                )
            )
    return sorted((s for s in out if len(s) >= 4), key=len, reverse=True)


def _size(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MiB" if limit >= 1024 * 1024 else f"{limit // 1024} KiB"


def classify_status(status: int) -> tuple[type[ProviderError], str]:
    """The default error class and reason for an HTTP status, before any dialect override."""
    if status in _TRANSIENT_STATUS:
        return TransientError, _TRANSIENT_STATUS[status]
    if status >= 500:
        return TransientError, "server_error"
    if status in _PROVIDER_STATUS:
        return ProviderUnavailable, _PROVIDER_STATUS[status]
    if status in _REQUEST_STATUS:
        return InvalidRequest, "invalid_request"
    # Any other status (405, 410, 415, a 3xx...) means this endpoint cannot serve the call:
    # the request may still succeed elsewhere, so fail over rather than reject it.
    return ProviderUnavailable, "unexpected_status"


def is_context_message(message: str) -> bool:
    return bool(CONTEXT_RE.search(message))


class translate_errors:
    """Run one attempt's I/O; every failure leaves as exactly one ProviderError subclass.

    ``asyncio.CancelledError`` is a BaseException and passes through untouched. A class, not a
    generator-based context manager: it wraps every request, and this is cheaper."""

    __slots__ = ("call",)

    def __init__(self, provider: str, secrets: Iterable[str | None] = ()) -> None:
        self.call = Call(provider, list(secrets))

    def __enter__(self) -> Call:
        return self.call

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if exc is None or not isinstance(exc, Exception):
            return
        call = self.call
        if isinstance(exc, ProviderError):
            exc.provider = exc.provider or call.provider
            exc.partial_text = exc.partial_text or call.partial_text
            exc.message = call.scrub(exc.message)
            exc.args = (exc.message,)
            return  # re-raised as is
        raise _translate(call, exc) from None


def _translate(call: Call, exc: Exception) -> ProviderError:
    """The ProviderError an exception that is not one means."""
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return call.timeout_error(exc)
    if isinstance(exc, httpx.DecodingError):
        return call.error(TransientError, f"unreadable response: {exc}", reason="malformed")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError | httpx.InvalidURL):
        return call.error(ProviderUnavailable, f"cannot send: {exc}", reason="connect")
    if isinstance(exc, TLSError):  # a trust-store or CA problem: no retry will fix it
        return call.error(ProviderUnavailable, str(exc), reason="tls")
    if isinstance(exc, StaleConnection):  # a keep-alive race: sent once, never re-sent here
        return call.error(TransientError, f"connection closed: {exc}", reason="stale_connection")
    if isinstance(exc, httpx.ConnectError | httpx.ProxyError):
        return call.error(TransientError, f"cannot connect: {exc}", reason="connect")
    if isinstance(exc, httpx.HTTPError | httpx.StreamError):
        text = str(exc) or type(exc).__name__
        if call.in_body:
            return call.error(TransientError, f"response cut short: {text}", reason="truncated")
        return call.error(TransientError, f"connection failed: {text}", reason="connect")
    # Anything else (RecursionError, OverflowError, a TypeError deep in a parser...) is a
    # response this adapter could not read: fail over, never crash the caller.
    what = "unreadable response" if call.in_body else "request failed"
    return call.error(TransientError, f"{what} ({type(exc).__name__})", reason="malformed")


# --- decoding payloads ------------------------------------------------------------------------


def decode_json(call: Call, raw: bytes | str, *, status: int | None = None) -> Any:
    """Parse a JSON payload the server sent; garbage is a transient ``malformed`` failure."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        window = raw[: SNIPPET_LIMIT + 4096]  # secrets are scrubbed before the cut
        text = window.decode("utf-8", "replace") if isinstance(window, bytes) else window
        snippet = call.scrub(text)[:SNIPPET_LIMIT]
        raise call.error(
            TransientError,
            f"invalid JSON from server: {snippet!r}",
            reason="malformed",
            status=status,
        ) from None


def try_json(raw: bytes) -> Any:
    """Parse an error body if it is JSON; None otherwise (error bodies may be HTML or text)."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


class parsing:
    """Reading fields of a decoded payload: a shape we cannot read is ``malformed``."""

    __slots__ = ("call",)

    def __init__(self, call: Call) -> None:
        self.call = call

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if isinstance(exc, Exception) and not isinstance(exc, ProviderError):
            raise self.call.error(
                TransientError,
                f"unexpected response shape: {type(exc).__name__}",
                reason="malformed",
            ) from None


def text_of(value: Any) -> str:
    """A text field: a string, or nothing; any other type is a malformed response."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"text is a {type(value).__name__}")
    return value


def count(value: Any, default: int = 0) -> int:
    """A token count: ``default`` when absent; clamped to [0, MAX_TOKENS]; NaN is 0; a value
    that is not a number is a malformed response."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"token count is a {type(value).__name__}")
    if isinstance(value, float) and math.isnan(value):
        return 0
    return int(min(max(value, 0), MAX_TOKENS))


MAX_LABEL = 256  # the longest model name or stop reason taken from a provider


def label(value: Any) -> str | None:
    """A name-like field (model, stop reason): a non-empty printable string of at most
    MAX_LABEL characters, else None. These are printed on terminals and logged, so escape
    sequences, line breaks and bidi overrides are not taken."""
    if isinstance(value, str) and 0 < len(value) <= MAX_LABEL and value.isprintable():
        return value
    return None


# --- reading bodies within limits -------------------------------------------------------------

_INFLATE_PIECE = 64 * 1024  # decoded bytes produced per step: a bomb never inflates at once


class _Inflater:
    """gzip or deflate, inflated a bounded piece at a time (httpx inflates a whole read)."""

    def __init__(self, encoding: str) -> None:
        self._gzip = encoding in ("gzip", "x-gzip")
        self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16 if self._gzip else zlib.MAX_WBITS)
        self._first = True

    def feed(self, data: bytes) -> Iterator[bytes]:
        while data and not self._zlib.eof:
            try:
                piece = self._zlib.decompress(data, _INFLATE_PIECE)
            except zlib.error as exc:
                if self._first and not self._gzip:  # raw deflate, without the zlib header
                    self._first = False
                    self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise httpx.DecodingError(f"bad compressed body: {exc}") from None
            self._first = False
            data = self._zlib.unconsumed_tail
            if piece:
                yield piece


async def decoded_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body as it arrives, decoded. gzip and deflate are inflated here; a body something
    else already read, or an encoding only httpx knows, comes through httpx."""
    if response.is_stream_consumed:
        yield response.content
        return
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", "x-gzip", "deflate"):
        async for chunk in response.aiter_bytes():
            yield chunk
        return
    inflater = None if encoding == "identity" else _Inflater(encoding)
    async for raw in _raw_chunks(response):
        if inflater is None:
            yield raw
        else:
            for piece in inflater.feed(raw):
                yield piece


async def _raw_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """``response.aiter_raw()``; for a body straight from the project transport (the direct
    send hands its stream over unwrapped), the stream itself: httpx's wrapper re-chunks
    nothing there and only counts bytes, a generator layer per chunk on the hot path."""
    stream = response.stream
    if type(stream) is not ResponseStream or response.is_stream_consumed or response.is_closed:
        async for raw in response.aiter_raw():
            yield raw
        return
    response.is_stream_consumed = True
    async for raw in stream:
        yield raw
    await response.aclose()  # as aiter_raw does at the end


async def read_body(call: Call, response: httpx.Response, limit: int, *, cut: bool) -> bytes:
    """The whole decoded body, at most ``limit`` bytes: past it, ``cut`` keeps what was read
    (an error body), otherwise the read fails as ``oversized``."""
    parts: list[bytes] = []
    size = 0
    async for chunk in decoded_chunks(response):
        size += len(chunk)
        if size > limit:
            if not cut:
                raise call.oversized("response body", limit)
            parts.append(chunk[: len(chunk) - (size - limit)])
            break
        parts.append(chunk)
    return b"".join(parts)


async def read_direct(call: Call, direct: DirectResponse, limit: int, *, cut: bool) -> bytes:
    """:func:`read_body` for a response of the transport's direct path."""
    raw, whole = await direct.read(limit)
    if not whole and not cut:
        raise call.oversized("response body", limit)
    encoding = direct.header(b"content-encoding")
    if encoding is None or encoding.strip().lower() == b"identity":
        return raw
    return await read_body(call, direct.response(raw), limit, cut=cut)  # inflated, bounded


_EOL = re.compile(rb"\r\n|\r|\n")


async def lines(call: Call, response: httpx.Response, limits: Limits) -> AsyncIterator[str]:
    """Each line of the body (ended by CRLF, CR or LF), the last one even without its end;
    a line longer than ``limits.line`` or a body past ``limits.stream`` is ``oversized``."""
    buffer = bytearray()
    total = 0
    skip_lf = False  # the last chunk ended in CR: a LF starting the next one belongs to it
    async for chunk in decoded_chunks(response):
        total += len(chunk)
        if total > limits.stream:
            raise call.oversized("stream", limits.stream)
        if skip_lf and chunk[:1] == b"\n":
            chunk = chunk[1:]
        buffer += chunk
        start = 0
        for match in _EOL.finditer(buffer):
            yield buffer[start : match.start()].decode("utf-8", "replace")
            start = match.end()
        skip_lf = buffer[-1:] == b"\r" and start == len(buffer)
        del buffer[:start]
        if len(buffer) > limits.line:
            raise call.oversized("stream line", limits.line)
    if buffer:
        yield buffer.decode("utf-8", "replace")


async def sse_events(
    call: Call, response: httpx.Response, limits: Limits
) -> AsyncIterator[tuple[str, str]]:
    """``(event, data)`` of each server-sent event (https://html.spec.whatwg.org/multipage/
    server-sent-events.html); a last event the server ended without its blank line counts."""
    content_type = response.headers.get("content-type", "").partition(";")[0].strip()
    if content_type != "text/event-stream":
        raise call.error(
            TransientError,
            f"expected an event stream, got {content_type or 'no content type'!r}",
            reason="malformed",
        )
    event, size = "", 0
    data: list[str] = []
    async for line in lines(call, response, limits):
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data, size = "", [], 0
        elif line[0] != ":":
            name, _, value = line.partition(":")
            value = value[1:] if value[:1] == " " else value
            if name == "data":
                data.append(value)
                size += len(value)
                if size > limits.line:
                    raise call.oversized("stream event", limits.line)
            elif name == "event":
                event = value
    if data:
        yield event, "\n".join(data)


async def bounded(source: AsyncIterable[Any], clock: Clocks) -> AsyncIterator[Any]:
    """Yield from ``source``, bounding every wait by the stream clocks (the first token, then
    the idle gap, both capped by the attempt deadline): TimeoutError when one runs out.

    Only the waits are bounded, never the consumer's own awaits between two items; time the
    consumer spends still counts against the deadline. One timer serves the whole stream
    (see :class:`_WaitTimer`)."""
    iterator = aiter(source)
    timer = _WaitTimer(asyncio.get_running_loop())
    try:
        while True:
            task = timer.arm(clock.next_wait())
            try:
                item = await anext(iterator)
            except StopAsyncIteration:
                timer.settle(task)
                return
            except asyncio.CancelledError:
                if timer.settle(task):
                    raise TimeoutError from None
                raise
            except BaseException:
                timer.settle(task)
                raise
            timer.settle(task)
            yield item
    finally:
        timer.close()


class _WaitTimer:
    """The deadline of the wait in progress, on one loop timer for a whole stream. An
    ``asyncio.timeout`` per wait creates and cancels a timer per event; this one is re-armed
    only when a wait needs an earlier instant than the one it is set for, and when it fires
    early (set for an earlier wait's instant: it moves to the current one). Firing outside a
    wait does nothing, so a consumer is never cancelled between items."""

    __slots__ = ("_handle", "_loop", "cancelling", "expired", "waiting", "when")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._handle: asyncio.TimerHandle | None = None
        self.when = 0.0
        self.waiting: asyncio.Task[Any] | None = None  # the task in a wait, if one is
        self.cancelling = 0  # that task's pending cancellations when its wait began
        self.expired = False  # this timer cancelled the wait in progress

    def arm(self, when: float) -> asyncio.Task[Any]:
        """Bound the current task's next wait by ``when`` (loop time); the task."""
        task = asyncio.current_task()
        assert task is not None
        self.when, self.waiting, self.expired = when, task, False
        self.cancelling = task.cancelling()
        handle = self._handle
        if handle is None or handle.when() > when:
            if handle is not None:
                handle.cancel()
            self._handle = self._loop.call_at(when, self._fire)
        return task

    def settle(self, task: asyncio.Task[Any]) -> bool:
        """End the wait; True if this timer's cancellation ended it and nobody else's is
        pending (as ``asyncio.timeout`` decides whether to raise TimeoutError)."""
        self.waiting = None
        if not self.expired:
            return False
        self.expired = False
        return task.uncancel() <= self.cancelling

    def _fire(self) -> None:
        self._handle = None
        task = self.waiting
        if task is None:
            return  # between waits: the next one arms it again
        if self._loop.time() < self.when:  # set for an earlier wait's instant
            self._handle = self._loop.call_at(self.when, self._fire)
            return
        self.expired = True
        task.cancel()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


DRAIN_GRACE = 0.25  # seconds to read what follows a stream's terminal marker


async def drain(source: AsyncIterator[Any], grace: float = DRAIN_GRACE) -> None:
    """Read what follows a stream's terminal marker (normally just the end of the body), so
    the connection goes back to the pool instead of being torn down; a server that keeps
    talking costs at most ``grace`` seconds and the connection, never the answer."""
    try:
        async with asyncio.timeout(grace):
            async for _ in source:
                pass
    except (TimeoutError, httpx.HTTPError, ProviderError, ValueError):
        pass


def error_text(body: Any, raw: bytes) -> str:
    """A fallback message for an error body no dialect understood."""
    if isinstance(body, dict):
        for key in ("message", "detail", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
    return raw.decode("utf-8", "replace")


def ratelimit_of(response: httpx.Response) -> RateLimit | None:
    """What the response's rate-limit headers report."""
    return parse_ratelimit(response.headers, time.time())


def ratelimit_of_head(headers: list[tuple[bytes, bytes]]) -> RateLimit | None:
    """:func:`ratelimit_of` for raw header lines (a repeated header's values joined by
    commas, as httpx joins them)."""
    found: dict[str, str] = {}
    for name, value in headers:
        if b"ratelimit-" in name.lower():
            key, text = name.decode("latin-1").lower(), value.decode("latin-1")
            found[key] = f"{found[key]}, {text}" if key in found else text
    return parse_ratelimit(found, time.time()) if found else None
