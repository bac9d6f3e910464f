"""Behaviour every adapter shares: keys and extra headers, the four clocks, bounded reads,
the request/stream skeleton, health.

A dialect subclass supplies only what differs: URLs, headers, the request body, how to read a
response, a stream and an error body.
"""

from __future__ import annotations

import asyncio
import json as _json
import os
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from dataclasses import replace
from typing import Any, ClassVar, Literal

import httpx

from ..chat import Message, TextPart
from ..config import DEFAULT_BASE_URLS, DEFAULT_KEY_ENV
from ..errors import InvalidRequest, ProviderError, ProviderUnavailable, TransientError
from ..records import frozen
from ..types import (
    Completion,
    CompletionRequest,
    HealthResult,
    ProviderConfig,
    StreamEnd,
    StreamEvent,
    TextDelta,
)
from ._client import ProviderClient, make_client
from ._http import (
    Call,
    Clocks,
    Limits,
    bounded,
    decode_json,
    error_text,
    lines,
    ratelimit_of,
    ratelimit_of_head,
    read_body,
    read_direct,
    sse_events,
    translate_errors,
    try_json,
)
from ._transport import DEADLINE, enforces_deadlines

# How long reading a prompt and writing an answer may take before the first token (streamed)
# or the response head (non-streamed) is late: characters of input read, tokens written, per s.
PROMPT_CHARS_PER_SECOND = 40_000
TOKENS_PER_SECOND = 25

# The user turn that asks a model to continue a partial answer given as an assistant turn.
CONTINUE_PROMPT = (
    "Your previous answer was cut off. Continue it exactly where it stops, without repeating "
    "any of it and without any preamble."
)

Role = Literal["user", "assistant"]
_HEADER_SAFE = re.compile(r"[\x20-\x7e]*")  # what a header value can carry
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@frozen
class KindDefaults:
    base_url: str
    api_key_env: str | None

    @classmethod
    def of(cls, kind: str) -> KindDefaults:
        """The defaults :mod:`failover_cli.config` documents for ``kind``."""
        return cls(DEFAULT_BASE_URLS[kind], DEFAULT_KEY_ENV[kind])


def api_url(base_url: str, version: str, path: str) -> str:
    """``{base}/{version}/{path}``, without doubling ``version`` when base already ends in it."""
    base = base_url.rstrip("/")
    if base.endswith("/" + version):
        base = base[: -len(version) - 1]
    return f"{base}/{version}/{path.lstrip('/')}"


def turns(request: CompletionRequest, *, strip_prefill: bool = False) -> list[tuple[Role, str]]:
    """The conversation to send: the prompt, then any partial answer to continue, as a last
    assistant turn (``prefill``; right-stripped with ``strip_prefill``) or as an assistant
    turn followed by :data:`CONTINUE_PROMPT` (``instruct``). A blank partial is not sent."""
    conversation: list[tuple[Role, str]] = [("user", request.prompt)]
    prefix = request.assistant_prefix
    if not prefix or not prefix.strip():
        return conversation
    if request.continuation == "instruct":
        conversation += [("assistant", prefix), ("user", CONTINUE_PROMPT)]
    else:
        conversation.append(("assistant", prefix.rstrip() if strip_prefill else prefix))
    return conversation


@frozen
class Conversation:
    """A request's turns as an adapter sends them: ``system`` texts (``system`` and
    ``developer`` messages, in order) and the other ``turns``, ending with the prompt and any
    partial answer to continue."""

    system: list[str]
    turns: list[Message]


def conversation(
    request: CompletionRequest, *, strip_prefill: bool = False, keep_system: bool = False
) -> Conversation:
    """The request's conversation: ``request.system``, ``request.messages``, then the prompt as
    a user turn, then the partial answer as :func:`turns` sends it. ``keep_system`` leaves
    system and developer messages in place among the turns (APIs that take them there)."""
    system: list[str] = []
    out: list[Message] = []
    if request.system:
        if keep_system:
            out.append(Message.of("system", request.system))
        else:
            system.append(request.system)
    for message in request.messages:
        if message.role in ("system", "developer") and not keep_system:
            if message.text:
                system.append(message.text)
        else:
            out.append(message)
    if request.prompt:
        out.append(Message("user", (TextPart(request.prompt),)))
    prefix = request.assistant_prefix
    if prefix and prefix.strip():
        if request.continuation == "instruct":
            out += [Message.of("assistant", prefix), Message.of("user", CONTINUE_PROMPT)]
        else:
            out.append(Message.of("assistant", prefix.rstrip() if strip_prefill else prefix))
    return Conversation(system, out)


def merge_extra(body: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` with ``extra`` merged in: objects merged key by key, anything else replaced."""
    for key, value in extra.items():
        current = body.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            body[key] = merge_extra(dict(current), value)
        else:
            body[key] = value
    return body


def long_to_write(max_tokens: int, first_token_timeout: float) -> bool:
    """Whether writing an answer of ``max_tokens`` may take longer than its first token may
    take to come: a whole answer's head then waits on that (see :func:`first_token_limit`),
    so a provider that accepted the request and never answers costs that long; a stream's
    first-token clock notices it sooner."""
    return max_tokens / TOKENS_PER_SECOND > first_token_timeout


def first_token_limit(config: ProviderConfig, request: CompletionRequest, *, stream: bool) -> float:
    """Seconds to the first token (to the response head when not streamed, which comes only
    once the whole answer is written): more for a long prompt, and for a long answer."""
    chars = request.text_chars()
    limit = config.first_token_timeout + chars / PROMPT_CHARS_PER_SECOND
    return limit if stream else limit + request.max_tokens / TOKENS_PER_SECOND


# httpx's encoding of a ``json=`` body (``_content.encode_json``), built once.
_encode_json = _json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def encoded(call: Call, body: Any) -> bytes:
    """A request body as JSON. One that cannot be (a string holding a lone surrogate, which
    is not Unicode; nesting past the encoder's depth; NaN) is the request's fault, the same
    at every provider: InvalidRequest, never a failure that counts against this one."""
    try:
        return _encode_json(body).encode()
    except UnicodeEncodeError:
        problem = "a string in it holds a lone surrogate, which is not Unicode"
    except RecursionError:
        problem = "it nests too deeply"
    except (ValueError, TypeError) as exc:
        problem = f"{type(exc).__name__}: {str(exc)[:100]}"
    raise call.error(InvalidRequest, f"the request cannot be sent as JSON: {problem}",
                     reason="unencodable")  # fmt: skip


class BaseProvider:
    """The skeleton of one provider adapter (implements ``failover_cli.protocols.Provider``)."""

    defaults: ClassVar[KindDefaults]
    limits: Limits = Limits()  # what one response may hold; an instance may narrow it

    def __init__(
        self,
        config: ProviderConfig,
        client: httpx.AsyncClient | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self._owns_client = client is None
        self._client = client if client is not None else make_client()
        self._transport_deadlines = enforces_deadlines(self._client)
        self._env: Mapping[str, str] = os.environ if env is None else env
        self.base_url = (config.base_url or self.defaults.base_url).rstrip("/")
        self.api_key_env = config.api_key_env or self.defaults.api_key_env

    @property
    def name(self) -> str:
        return self.config.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, base_url={self.base_url!r})"

    # --- what a dialect provides --------------------------------------------------------------

    def key_required(self) -> bool:
        return self.api_key_env is not None

    def headers(self, key: str | None) -> dict[str, str]:
        raise NotImplementedError

    def completion_url(self, *, stream: bool) -> str:
        raise NotImplementedError

    def health_url(self) -> str:
        raise NotImplementedError

    def body(self, request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        raise NotImplementedError

    def parse_completion(self, call: Call, data: Any) -> Completion:
        raise NotImplementedError

    def parse_stream(
        self, call: Call, response: httpx.Response
    ) -> AsyncGenerator[StreamEvent, None]:
        """Yield TextDeltas then one StreamEnd once the stream reports its finish; end
        without a StreamEnd if it never did (the base raises ``truncated``)."""
        raise NotImplementedError

    def error_verdict(
        self, status: int, body: Any
    ) -> tuple[str, tuple[type[ProviderError], str] | None]:
        """The provider's message in an error body, and an override of the status's class."""
        return "", None

    # --- keys and headers ---------------------------------------------------------------------

    def api_key(self) -> str | None:
        """The key, read from the environment now and stripped of surrounding whitespace.
        Raises ``no_key`` when a needed key is unset, ``bad_key`` when it cannot be sent."""
        raw = self._env.get(self.api_key_env) if self.api_key_env else None
        key = raw.strip() if raw else None
        if key:
            return self._sendable(key, self.api_key_env or "")
        if self.key_required():
            raise ProviderUnavailable(
                f"no API key: set the environment variable {self.api_key_env}",
                provider=self.name,
                reason="no_key",
            )
        return None

    def _sendable(self, value: str, variable: str) -> str:
        if _HEADER_SAFE.fullmatch(value):
            return value
        raise ProviderUnavailable(
            f"the environment variable {variable} holds a character that cannot be sent in an"
            " HTTP header (non-ASCII or a control character)",
            provider=self.name,
            reason="bad_key",
        )

    def request_headers(self, key: str | None) -> tuple[dict[str, str], list[str | None]]:
        """The dialect's headers with ``providers[].headers`` merged over them (``${VAR}``
        read from the environment now), and every secret among them."""
        headers = self.headers(key)
        raw = self._env.get(self.api_key_env) if key and self.api_key_env else None
        secrets: list[str | None] = [key, raw]  # the raw value, whitespace and all, too
        for name, template in self.config.headers:
            value = _ENV_REF.sub(lambda m: self._header_secret(m.group(1), secrets), template)
            if not _HEADER_SAFE.fullmatch(value):
                raise ProviderUnavailable(
                    f"header {name} holds a character that cannot be sent in an HTTP header",
                    provider=self.name,
                    reason="bad_header",
                )
            headers[name.lower()] = value
        return headers, secrets

    def _header_secret(self, variable: str, secrets: list[str | None]) -> str:
        value = (self._env.get(variable) or "").strip()
        if not value:
            raise ProviderUnavailable(
                f"no value for a header: set the environment variable {variable}",
                provider=self.name,
                reason="no_key",
            )
        secrets.append(self._sendable(value, variable))
        return value

    # --- shared machinery ---------------------------------------------------------------------

    def clocks(self, request: CompletionRequest, timeout: float, *, stream: bool) -> Clocks:
        """The four clocks of one attempt given ``timeout`` seconds in all."""
        config = self.config
        return Clocks.start(
            timeout,
            connect=config.connect_timeout,
            first_token=first_token_limit(config, request, stream=stream),
            idle=config.idle_timeout,
            stream=stream,
        )

    async def _open(
        self,
        call: Call,
        method: str,
        url: str,
        headers: dict[str, str],
        *,
        json: Any = None,
        content: bytes | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """Send a request (``json``: the body, encoded as httpx encodes ``json=``; or
        ``content`` as given) and return the response with its body unread; a non-2xx
        response is read (up to ``limits.error_body``), closed and raised as the matching
        ProviderError."""
        assert call.clock is not None
        if json is not None:
            content = encoded(call, json)
            headers = {"content-type": "application/json", **headers}
        client = self._client
        timeout = call.clock.http_timeout()
        if isinstance(client, ProviderClient):
            response = await client.open(
                method, url, headers, content=content, timeout=timeout,
                extensions=extensions if extensions is not None else {},
            )  # fmt: skip
        else:
            request = client.build_request(
                method, url, headers=headers, content=content, timeout=timeout,
                extensions=extensions,
            )  # fmt: skip
            response = await client.send(request, stream=True)
        call.in_body = True
        call.ratelimit = ratelimit_of(response)
        if response.is_success:
            return response
        try:
            raw = await read_body(call, response, self.limits.error_body, cut=True)
        finally:
            await response.aclose()
        raise self._error(call, response, raw)

    def _error(self, call: Call, response: httpx.Response, raw: bytes) -> ProviderError:
        body = try_json(raw)
        message, verdict = self.error_verdict(response.status_code, body)
        return call.http_error(response, message or error_text(body, raw), verdict)

    def events(self, call: Call, response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
        """The stream's server-sent events ``(event, data)``, each within the stream clocks."""
        assert call.clock is not None
        return bounded(sse_events(call, response, self.limits), call.clock)

    def ndjson(self, call: Call, response: httpx.Response) -> AsyncIterator[str]:
        """The stream's lines, each within the stream clocks."""
        assert call.clock is not None
        return bounded(lines(call, response, self.limits), call.clock)

    async def complete(self, request: CompletionRequest, *, timeout: float) -> Completion:
        key = self.api_key()
        headers, secrets = self.request_headers(key)
        with translate_errors(self.name, secrets) as call:
            clock = call.clock = self.clocks(request, timeout, stream=False)
            call.request = request
            url, body = self.completion_url(stream=False), self.body(request, stream=False)
            if request.extra:
                body = merge_extra(body, request.extra)
            if self._transport_deadlines:  # the transport bounds every wait by the deadline
                raw = await self._post(call, url, headers, body, clock.deadline)
            else:  # one timer: to the head's limit, then moved to the attempt's deadline
                async with asyncio.timeout_at(clock.first_token_at) as timer:
                    response = await self._open(call, "POST", url, headers, json=body)
                    timer.reschedule(clock.deadline)
                    raw = await self._read(call, response)
            completion = self.parse_completion(call, decode_json(call, raw))
            if call.ratelimit is not None:
                completion = replace(completion, ratelimit=call.ratelimit)
            return completion

    async def _post(
        self, call: Call, url: str, headers: dict[str, str], json: Any, deadline: float
    ) -> bytes:
        """The decoded body of a 2xx answer to POSTing ``json`` (a non-2xx one is raised as
        in :meth:`_open`), every wait bounded by ``deadline``: through the client's direct
        path where it applies (no httpx Request or Response per call), else through httpx."""
        assert call.clock is not None
        content = encoded(call, json)
        headers = {"content-type": "application/json", **headers}
        client = self._client
        if isinstance(client, ProviderClient):
            timeout = call.clock.http_timeout()
            direct = await client.post_direct(
                url, headers, content, timeout=timeout, deadline=deadline
            )
            if direct is not None:
                try:
                    call.in_body = True
                    call.ratelimit = ratelimit_of_head(direct.head.headers)
                    if 200 <= direct.status_code < 300:
                        return await read_direct(call, direct, self.limits.body, cut=False)
                    raw = await read_direct(call, direct, self.limits.error_body, cut=True)
                    raise self._error(call, direct.response(), raw)
                finally:
                    direct.close()
        extensions = {DEADLINE: deadline}
        response = await self._open(
            call, "POST", url, headers, content=content, extensions=extensions
        )
        return await self._read(call, response)

    async def _read(self, call: Call, response: httpx.Response) -> bytes:
        try:
            return await read_body(call, response, self.limits.body, cut=False)
        finally:
            await response.aclose()

    async def stream(
        self, request: CompletionRequest, *, timeout: float
    ) -> AsyncIterator[StreamEvent]:
        key = self.api_key()
        headers, secrets = self.request_headers(key)
        with translate_errors(self.name, secrets) as call:
            clock = call.clock = self.clocks(request, timeout, stream=True)
            call.request = request
            async with asyncio.timeout_at(clock.first_token_at):
                url, body = self.completion_url(stream=True), self.body(request, stream=True)
                if request.extra:
                    body = merge_extra(body, request.extra)
                response = await self._open(call, "POST", url, headers, json=body)
            try:
                async with aclosing(self.parse_stream(call, response)) as events:
                    async for event in events:
                        if isinstance(event, StreamEnd):
                            if call.ratelimit is not None:
                                event = replace(event, ratelimit=call.ratelimit)
                            yield event
                            return
                        if isinstance(event, TextDelta):
                            if event.text:
                                clock.started = True
                                call.parts.append(event.text)
                                yield event
                        else:  # a tool-call delta
                            clock.started = True
                            yield event
                raise call.error(
                    TransientError, "stream ended before it reported its finish", reason="truncated"
                )
            finally:
                await response.aclose()

    async def health(self, *, deep: bool = False, timeout: float = 5.0) -> HealthResult:
        """Reachability (a model list; ``deep``: a 1-token completion). Never raises for a
        provider failure: the result carries the scrubbed error and its class."""
        start = time.monotonic()
        status: int | None = None
        try:
            if deep:
                await self.complete(CompletionRequest(prompt="ping", max_tokens=1), timeout=timeout)
                status = 200
            else:
                status = await self._reach(timeout)
        except ProviderError as exc:
            return HealthResult(
                provider=self.name,
                ok=False,
                latency_ms=(time.monotonic() - start) * 1000,
                error=exc.message,
                error_class=exc.error_class,
                status=exc.status,
                checked_at=time.time(),
            )
        return HealthResult(
            provider=self.name,
            ok=True,
            latency_ms=(time.monotonic() - start) * 1000,
            status=status,
            checked_at=time.time(),
        )

    async def _reach(self, timeout: float) -> int:
        """GET the no-token health endpoint; its status (a failure raises)."""
        key = self.api_key()
        headers, secrets = self.request_headers(key)
        with translate_errors(self.name, secrets) as call:
            call.clock = Clocks.start(
                timeout,
                connect=self.config.connect_timeout,
                first_token=timeout,
                idle=timeout,
                stream=False,
            )
            async with asyncio.timeout(timeout):
                response = await self._open(call, "GET", self.health_url(), headers)
                await response.aclose()
                return response.status_code

    async def aclose(self) -> None:
        """Close the HTTP client, if this adapter created it."""
        if self._owns_client:
            await self._client.aclose()
