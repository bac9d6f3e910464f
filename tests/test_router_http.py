"""Routing over real HTTP on 127.0.0.1: a refused port as the primary, a small local asyncio
HTTP server as the secondary. The providers here are tiny httpx clients written for this test,
so it depends on neither the real adapters nor the simulators."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import AsyncIterator

import httpx
import pytest

from failover_cli.config import Config
from failover_cli.errors import (
    AllProvidersFailed,
    ProviderError,
    ProviderUnavailable,
    TransientError,
)
from failover_cli.retry import RetryPolicy, parse_retry_after
from failover_cli.router import FailoverRouter
from failover_cli.types import (
    Completion,
    CompletionRequest,
    ErrorClass,
    HealthResult,
    ProviderConfig,
    StreamEnd,
    StreamEvent,
    TextDelta,
    Usage,
)


def refused_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalServer:
    """A minimal HTTP/1.1 server: POST /complete answers JSON, POST /stream answers NDJSON.
    ``statuses`` scripts error answers (status, headers) for the first requests."""

    def __init__(self, words: list[str], statuses: list[tuple[int, dict[str, str]]] = ()):
        self.words = words
        self.statuses = list(statuses)
        self.bodies: list[dict] = []
        self.server: asyncio.AbstractServer | None = None
        self.handlers: set[asyncio.Task] = set()

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def __aenter__(self) -> LocalServer:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in self.handlers:  # idle keep-alive connections
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    return
                _method, path, _ = request_line.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    k, v = line.decode().split(":", 1)
                    headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.bodies.append(json.loads(body or b"{}"))
                writer.write(self._answer(path))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # client gone, or the server is shutting down
        finally:
            writer.close()
            self.handlers.discard(task)

    def _answer(self, path: str) -> bytes:
        if self.statuses:
            status, extra = self.statuses.pop(0)
            return _http(status, b'{"error": "scripted"}', "application/json", extra)
        if path == "/stream":
            lines = [json.dumps({"t": w}) for w in self.words]
            lines.append(json.dumps({"done": True, "model": "local-model", "out": len(self.words)}))
            return _http(200, ("\n".join(lines) + "\n").encode(), "application/x-ndjson")
        payload = {"text": "".join(self.words), "model": "local-model", "out": len(self.words)}
        return _http(200, json.dumps(payload).encode(), "application/json")


def _http(status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> bytes:
    head = [f"HTTP/1.1 {status} X", f"content-type: {ctype}", f"content-length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in (extra or {}).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class HttpProvider:
    """A tiny Provider over httpx: connect errors and 5xx are transient, 401 is provider-class."""

    def __init__(self, name: str, base_url: str, client: httpx.AsyncClient) -> None:
        self.config = ProviderConfig(name=name, kind="openai", model="m", base_url=base_url)
        self.client = client

    @property
    def name(self) -> str:
        return self.config.name

    def _fail(self, exc: Exception | None = None, response: httpx.Response | None = None):
        if response is None:
            return TransientError(f"cannot connect: {type(exc).__name__}", reason="connect")
        status = response.status_code
        retry_after = parse_retry_after(response.headers, 0.0)
        cls = ProviderUnavailable if status in (401, 403) else TransientError
        return cls(f"HTTP {status}", status=status, retry_after=retry_after)

    async def complete(self, request: CompletionRequest, *, timeout: float) -> Completion:
        try:
            r = await self.client.post(
                f"{self.config.base_url}/complete", json={"prompt": request.prompt}, timeout=timeout
            )
        except httpx.ConnectError as exc:
            raise self._fail(exc) from None
        if r.status_code != 200:
            raise self._fail(response=r)
        data = r.json()
        return Completion(data["text"], data["model"], Usage(1, data["out"]), "end")

    async def stream(
        self, request: CompletionRequest, *, timeout: float
    ) -> AsyncIterator[StreamEvent]:
        body = {"prompt": request.prompt, "prefix": request.assistant_prefix}
        try:
            async with self.client.stream(
                "POST", f"{self.config.base_url}/stream", json=body, timeout=timeout
            ) as r:
                if r.status_code != 200:
                    raise self._fail(response=r)
                async for line in r.aiter_lines():
                    if not line:
                        continue
                    item = json.loads(line)
                    if item.get("done"):
                        yield StreamEnd(item["model"], Usage(1, item["out"]), "end")
                        return
                    yield TextDelta(item["t"])
        except httpx.ConnectError as exc:
            raise self._fail(exc) from None
        raise TransientError("no done line", reason="truncated")

    async def health(self, *, deep: bool = False, timeout: float = 5.0) -> HealthResult:
        return HealthResult(self.name, True, 0.0)

    async def aclose(self) -> None:
        pass


async def _router(*providers: HttpProvider, attempts: int = 3) -> FailoverRouter:
    config = Config(
        providers=tuple(p.config for p in providers), retry=RetryPolicy(attempts=attempts)
    )
    # zero jitter: retries go out at once, so nothing here sleeps
    return FailoverRouter(config, providers=list(providers), random=lambda: 0.0)


async def test_refused_primary_fails_over_to_local_server():
    async with (
        LocalServer(["hello", " from", " loopback"]) as server,
        httpx.AsyncClient(trust_env=False) as client,
    ):
        primary = HttpProvider("primary", f"http://127.0.0.1:{refused_port()}", client)
        secondary = HttpProvider("secondary", server.url, client)
        router = await _router(primary, secondary)
        result = await router.route("say hello", max_tokens=5)
        await router.aclose()
    assert (result.provider, result.text, result.model) == (
        "secondary",
        "hello from loopback",
        "local-model",
    )
    assert server.bodies == [{"prompt": "say hello"}]
    why = [(a.provider, a.outcome, a.error_class, a.status, a.message) for a in result.attempts]
    # a refused connection is not retried while another provider can answer
    assert why == [
        ("primary", "failed", ErrorClass.TRANSIENT, None, "cannot connect: ConnectError"),
        ("secondary", "ok", None, None, ""),
    ]
    assert all(a.duration_ms > 0 for a in result.attempts)
    assert router.tracker.breakers["primary"].consecutive_failures() == 1


async def test_refused_primary_fails_over_while_streaming():
    async with (
        LocalServer(["one", " two", " three"]) as server,
        httpx.AsyncClient(trust_env=False) as client,
    ):
        primary = HttpProvider("primary", f"http://127.0.0.1:{refused_port()}", client)
        secondary = HttpProvider("secondary", server.url, client)
        router = await _router(primary, secondary, attempts=1)
        stream = router.stream("count")
        chunks = [c async for c in stream]
        await router.aclose()
    assert chunks == ["one", " two", " three"]
    assert stream.result.provider == "secondary"
    assert [(a.provider, a.outcome) for a in stream.result.attempts] == [
        ("primary", "failed"),
        ("secondary", "ok"),
    ]


async def test_http_statuses_drive_retry_and_failover():
    # primary: 503 with Retry-After: 0 (retried at once), then 401 (fail over, no retry)
    statuses = [(503, {"retry-after": "0"}), (401, {})]
    async with (
        LocalServer(["unused"], statuses) as bad,
        LocalServer(["fine"]) as good,
        httpx.AsyncClient(trust_env=False) as client,
    ):
        router = await _router(
            HttpProvider("primary", bad.url, client), HttpProvider("secondary", good.url, client)
        )
        result = await router.route("x")
        await router.aclose()
    assert result.text == "fine"
    assert [(a.provider, a.error_class, a.status) for a in result.attempts] == [
        ("primary", ErrorClass.TRANSIENT, 503),
        ("primary", ErrorClass.PROVIDER, 401),
        ("secondary", None, None),
    ]
    assert len(bad.bodies) == 2


async def test_nothing_listening_anywhere_reports_every_refusal():
    async with httpx.AsyncClient(trust_env=False) as client:
        one = HttpProvider("one", f"http://127.0.0.1:{refused_port()}", client)
        two = HttpProvider("two", f"http://127.0.0.1:{refused_port()}", client)
        router = await _router(one, two, attempts=1)
        with pytest.raises(AllProvidersFailed) as info:
            await router.route("x")
        await router.aclose()
    assert str(info.value) == (
        "no provider could answer: one: transient (cannot connect: ConnectError); "
        "two: transient (cannot connect: ConnectError)"
    )
    assert not any(isinstance(a, ProviderError) for a in info.value.attempts)


@pytest.mark.parametrize(
    "urls",
    [["https://api.anthropic.com", "http://127.0.0.1:11434"], ["http://127.0.0.1:8000"]],
)
async def test_certificates_are_always_verified_and_loaded_only_when_needed(urls):
    configs = [
        ProviderConfig(name=f"p{i}", kind="ollama", model="m", base_url=url)
        for i, url in enumerate(urls)
    ]
    router = FailoverRouter(configs)
    try:
        (client,) = router._owned_clients._clients.values()  # one network setting: one client
        transport = client._transport
        assert transport._ssl_context is None  # nothing loaded until an https connection
        assert transport.ssl_context.verify_mode == ssl.CERT_REQUIRED
        assert transport.ssl_context.check_hostname
    finally:
        await router.aclose()
