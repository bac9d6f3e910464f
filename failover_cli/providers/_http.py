"""HTTP plumbing shared by every adapter: the one place httpx errors become ProviderErrors.

* :func:`translate_errors` wraps all I/O of one attempt; nothing outside it sees an httpx type.
* :func:`status_error` maps an HTTP status (plus the dialect's verdict) to an error class.
* :func:`decode_json` and :func:`parsing` turn unreadable payloads into ``reason="malformed"``.
* :func:`bounded` enforces one deadline over every await of a stream, never across a ``yield``.

Status meanings follow the providers' error pages: Anthropic https://docs.anthropic.com/en/api/errors
(400/401/403/404/413/429/500/529), OpenAI https://platform.openai.com/docs/guides/error-codes,
Gemini https://ai.google.dev/gemini-api/docs/troubleshooting (400/403/404/429/500/503/504).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
from httpx_sse import SSEError

from ..errors import (
    ContextLengthExceeded,
    InvalidRequest,
    ProviderError,
    ProviderUnavailable,
    TransientError,
    redact,
)
from ..retry import parse_retry_after

MESSAGE_LIMIT = 300

# Wordings providers use when the prompt does not fit the model (Anthropic "prompt is too long",
# OpenAI "maximum context length", llama.cpp "context size", Gemini "input token count ...
# exceeds the maximum number of tokens", Ollama "context length").
CONTEXT_RE = re.compile(
    r"prompt is too long|context[ _-]?(length|window|size)|maximum context"
    r"|exceeds the maximum number of tokens|too many (input )?tokens",
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


def trim(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """Collapse whitespace and cut ``text`` to ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


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


@dataclass
class Call:
    """What one attempt has seen so far; lets :func:`translate_errors` describe a failure."""

    provider: str
    secrets: list[str | None]
    in_body: bool = False  # response headers received: a dropped connection now truncates
    parts: list[str] = field(default_factory=list)

    @property
    def partial_text(self) -> str:
        return "".join(self.parts)

    def error(
        self,
        cls: type[ProviderError],
        message: str,
        *,
        reason: str,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> ProviderError:
        """Build an error whose message is trimmed and scrubbed of every secret."""
        return cls(
            redact(trim(message), self.secrets),
            provider=self.provider,
            status=status,
            retry_after=retry_after,
            reason=reason,
            partial_text=self.partial_text,
        )

    def http_error(
        self,
        response: httpx.Response,
        message: str,
        verdict: tuple[type[ProviderError], str] | None = None,
    ) -> ProviderError:
        """An error for a non-2xx response; ``verdict`` is the dialect's reading of the body."""
        status = response.status_code
        cls, reason = verdict or classify_status(status)
        if cls is InvalidRequest and is_context_message(message):
            cls, reason = ContextLengthExceeded, "context_length"
        retry_after = parse_retry_after(response.headers, time.time())
        text = message or response.reason_phrase or "no message"
        return self.error(cls, text, reason=reason, status=status, retry_after=retry_after)


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
        if exc is None:
            return
        call = self.call
        if isinstance(exc, ProviderError):
            exc.provider = exc.provider or call.provider
            exc.partial_text = exc.partial_text or call.partial_text
            exc.message = redact(exc.message, call.secrets)
            exc.args = (exc.message,)
            return  # re-raised as is
        if isinstance(exc, TimeoutError | httpx.TimeoutException):
            what = type(exc).__name__ if isinstance(exc, httpx.TimeoutException) else "deadline"
            raise call.error(TransientError, f"timed out ({what})", reason="timeout") from None
        if isinstance(exc, SSEError | httpx.DecodingError):
            raise call.error(
                TransientError, f"unreadable response: {exc}", reason="malformed"
            ) from None
        if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError | httpx.InvalidURL):
            raise call.error(ProviderUnavailable, f"cannot send: {exc}", reason="connect") from None
        if isinstance(exc, httpx.ConnectError | httpx.ProxyError):
            raise call.error(TransientError, f"cannot connect: {exc}", reason="connect") from None
        if isinstance(exc, httpx.HTTPError | httpx.StreamError):
            text = str(exc) or type(exc).__name__
            if call.in_body:
                raise call.error(
                    TransientError, f"response cut short: {text}", reason="truncated"
                ) from None
            raise call.error(
                TransientError, f"connection failed: {text}", reason="connect"
            ) from None


def decode_json(call: Call, raw: bytes | str, *, status: int | None = None) -> Any:
    """Parse a JSON payload the server sent; garbage is a transient ``malformed`` failure."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        snippet = raw[:80].decode("utf-8", "replace") if isinstance(raw, bytes) else raw[:80]
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
    except (ValueError, UnicodeDecodeError):
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
        if isinstance(exc, KeyError | IndexError | TypeError | AttributeError | ValueError):
            raise self.call.error(
                TransientError,
                f"unexpected response shape: {type(exc).__name__}",
                reason="malformed",
            ) from None


async def bounded(source: AsyncIterable[Any], deadline: float) -> AsyncIterator[Any]:
    """Yield from ``source``, bounding every wait by ``deadline`` (loop time).

    The timeout scope never spans a ``yield``, so the consumer's own awaits are never cancelled
    by it; time the consumer spends still counts against the deadline."""
    iterator = aiter(source)
    while True:
        async with asyncio.timeout_at(deadline):
            try:
                item = await anext(iterator)
            except StopAsyncIteration:
                return
        yield item


DRAIN_GRACE = 0.25  # seconds to read what follows a stream's terminal marker


async def drain(source: AsyncIterator[Any], grace: float = DRAIN_GRACE) -> None:
    """Read what follows a stream's terminal marker (normally just the end of the body), so
    the connection goes back to the pool instead of being torn down; a server that keeps
    talking costs at most ``grace`` seconds and the connection, never the answer."""
    try:
        async with asyncio.timeout(grace):
            async for _ in source:
                pass
    except (TimeoutError, httpx.HTTPError, SSEError, ValueError):
        pass


def error_text(body: Any, raw: bytes) -> str:
    """A fallback message for an error body no dialect understood."""
    if isinstance(body, dict):
        for key in ("message", "detail", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
    return raw.decode("utf-8", "replace")
