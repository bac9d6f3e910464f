"""Behaviour every adapter shares: key lookup, timeouts, the request/stream skeleton, health.

A dialect subclass supplies only what differs: URLs, headers, the request body, how to read a
response, a stream and an error body.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx

from ..config import DEFAULT_BASE_URLS, DEFAULT_KEY_ENV
from ..errors import ProviderError, ProviderUnavailable, TransientError
from ..types import (
    Completion,
    CompletionRequest,
    HealthResult,
    ProviderConfig,
    StreamEnd,
    StreamEvent,
)
from ._http import Call, decode_json, error_text, translate_errors, try_json
from ._transport import DEADLINE, AsyncioTransport, enforces_deadlines

USER_AGENT = "failover/0.1"


def make_client() -> httpx.AsyncClient:
    """One AsyncClient to share between adapters: pooled HTTP/1.1 connections over
    :class:`AsyncioTransport` (no httpcore or anyio to import: ~35 ms per process), no proxies
    from the environment (``trust_env=False`` keeps loopback traffic local), no redirects.

    Certificates are always verified; the transport loads the CA certificates (40-55 ms) only
    when it opens its first ``https://`` connection, so a chain of local servers never does.
    """
    return httpx.AsyncClient(
        # Idle connections kept for reuse: a library router at concurrency 50 should not churn.
        transport=AsyncioTransport(
            verify=True, max_connections=100, max_keepalive=50, keepalive_expiry=30
        ),
        trust_env=False,
        follow_redirects=False,
        timeout=httpx.Timeout(30.0, connect=5.0),
        headers={"user-agent": USER_AGENT},
    )


@dataclass(frozen=True, slots=True)
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


class BaseProvider:
    """The skeleton of one provider adapter (implements ``failover_cli.protocols.Provider``)."""

    defaults: ClassVar[KindDefaults]

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
        self, call: Call, response: httpx.Response, deadline: float
    ) -> AsyncIterator[StreamEvent]:
        """Yield TextDeltas then one StreamEnd; raise ``truncated`` if the marker never came."""
        raise NotImplementedError

    def error_verdict(
        self, status: int, body: Any
    ) -> tuple[str, tuple[type[ProviderError], str] | None]:
        """The provider's message in an error body, and an override of the status's class."""
        return "", None

    # --- shared machinery ---------------------------------------------------------------------

    def api_key(self) -> str | None:
        """The key, read from the environment now. Raises ``no_key`` (no network) when needed."""
        key = self._env.get(self.api_key_env) if self.api_key_env else None
        if key:
            return key
        if self.key_required():
            raise ProviderUnavailable(
                f"no API key: set the environment variable {self.api_key_env}",
                provider=self.name,
                reason="no_key",
            )
        return None

    def http_timeout(self, timeout: float) -> httpx.Timeout:
        return httpx.Timeout(timeout, connect=min(self.config.connect_timeout, timeout))

    async def _open(
        self, call: Call, method: str, url: str, key: str | None, timeout: float, **kw: Any
    ) -> httpx.Response:
        """Send a request and return the response with its body unread; a non-2xx response is
        read, closed and raised as the matching ProviderError."""
        request = self._client.build_request(
            method, url, headers=self.headers(key), timeout=self.http_timeout(timeout), **kw
        )
        response = await self._client.send(request, stream=True)
        call.in_body = True
        if response.is_success:
            return response
        try:
            raw = await response.aread()
        finally:
            await response.aclose()
        raise self._error(call, response, raw)

    def _error(self, call: Call, response: httpx.Response, raw: bytes) -> ProviderError:
        body = try_json(raw)
        message, verdict = self.error_verdict(response.status_code, body)
        return call.http_error(response, message or error_text(body, raw), verdict)

    async def complete(self, request: CompletionRequest, *, timeout: float) -> Completion:
        key = self.api_key()
        with translate_errors(self.name, [key]) as call:
            url, body = self.completion_url(stream=False), self.body(request, stream=False)
            if self._transport_deadlines:  # the transport bounds every wait by the deadline
                deadline = asyncio.get_running_loop().time() + timeout
                raw = await self._fetch(call, url, key, timeout, body, {DEADLINE: deadline})
            else:
                async with asyncio.timeout(timeout):
                    raw = await self._fetch(call, url, key, timeout, body, None)
            return self.parse_completion(call, decode_json(call, raw))

    async def _fetch(
        self,
        call: Call,
        url: str,
        key: str | None,
        timeout: float,
        body: Any,
        extensions: dict[str, Any] | None,
    ) -> bytes:
        response = await self._open(
            call, "POST", url, key, timeout, json=body, extensions=extensions
        )
        try:
            return await response.aread()
        finally:
            await response.aclose()

    async def stream(
        self, request: CompletionRequest, *, timeout: float
    ) -> AsyncIterator[StreamEvent]:
        key = self.api_key()
        deadline = asyncio.get_running_loop().time() + timeout
        with translate_errors(self.name, [key]) as call:
            async with asyncio.timeout_at(deadline):
                url, body = self.completion_url(stream=True), self.body(request, stream=True)
                response = await self._open(call, "POST", url, key, timeout, json=body)
            try:
                async with aclosing(self.parse_stream(call, response, deadline)) as events:
                    async for event in events:
                        if isinstance(event, StreamEnd):
                            yield event
                            return
                        if event.text:
                            call.parts.append(event.text)
                            yield event
                raise call.error(
                    TransientError, "stream ended without its end marker", reason="truncated"
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
                key = self.api_key()
                with translate_errors(self.name, [key]) as call:
                    async with asyncio.timeout(timeout):
                        response = await self._open(call, "GET", self.health_url(), key, timeout)
                        status = response.status_code
                        await response.aclose()
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

    async def aclose(self) -> None:
        """Close the HTTP client, if this adapter created it."""
        if self._owns_client:
            await self._client.aclose()
