"""The transport's direct POST (``AsyncioTransport.post``, ``ProviderClient.post_direct``):
the same bytes on the wire, the same pool and the same errors as an httpx request through
the same transport, and the provider's non-streamed call over it. Small asyncio servers on
127.0.0.1 (``test_transport``'s), with each HTTP/1.1 codec."""

from __future__ import annotations

import asyncio
import gzip
import json

import httpx
import pytest
from test_transport import (  # codec: every test here runs with each HTTP/1.1 codec
    GUARD,
    Server,
    closes_on_the_second_request,
    codec,  # noqa: F401
    ok,
    serving,
)

from failover_cli.errors import ProviderError, TransientError
from failover_cli.providers import make_client
from failover_cli.providers._client import ProviderClient
from failover_cli.providers._transport import AsyncioTransport, StaleConnection
from failover_cli.providers.openai import OpenAIProvider
from failover_cli.request import build_request
from failover_cli.types import ProviderConfig

TIMEOUT = httpx.Timeout(GUARD)
ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


def recording() -> tuple[list[bytes], object]:
    """A keep-alive handler that records each request whole (head and body) and answers it."""
    seen: list[bytes] = []

    async def handler(server, reader, writer, index):
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            seen.append(head + await reader.readexactly(length))
            writer.write(ok(b"done"))

    return seen, handler


async def test_the_direct_post_sends_the_bytes_an_httpx_request_sends():
    seen, handler = recording()
    headers = {"authorization": "Bearer k", "content-type": "application/json"}
    async with Server(handler) as server:
        client = make_client(env={})
        try:
            direct = await client.post_direct(
                server.url("/v1/chat"), headers, b'{"a":1}', timeout=TIMEOUT, deadline=None
            )
            assert direct is not None
            assert await direct.read(1024) == (b"done", True)
            await client.open(
                "POST", server.url("/v1/chat"), headers, content=b'{"a":1}', timeout=TIMEOUT,
                extensions={},
            )  # fmt: skip
        finally:
            await client.aclose()
    assert len(seen) == 2
    assert seen[0] == seen[1]
    assert seen[0].startswith(b"POST /v1/chat HTTP/1.1\r\nHost: 127.0.0.1:")
    assert seen[0].endswith(b'Content-Length: 7\r\n\r\n{"a":1}')


async def test_a_body_read_to_its_end_returns_the_connection_to_the_pool():
    transport = AsyncioTransport()
    async with Server(serving()) as server:
        url = httpx.URL(server.url())
        head = [(b"Host", url.netloc), (b"Content-Length", b"0")]
        for _ in range(3):
            direct = await transport.post(url, head, b"", timeouts={}, deadline=None)
            assert direct is not None and direct.status_code == 200
            assert direct.header(b"content-length") == b"5"
            assert await direct.read(1024) == (b"hello", True)
            assert transport.idle_connections == 1
        await transport.aclose()
    assert server.accepts == 1


async def test_a_body_past_the_limit_is_cut_and_its_connection_closed():
    transport = AsyncioTransport()
    async with Server(serving(lambda i, h: b"x" * 1000)) as server:
        url = httpx.URL(server.url())
        head = [(b"Host", url.netloc), (b"Content-Length", b"0")]
        direct = await transport.post(url, head, b"", timeouts={}, deadline=None)
        assert direct is not None
        body, whole = await direct.read(100)
        assert (body, whole) == (b"x" * 100, False)
        assert transport.idle_connections == 0 and transport.open_connections == 0
        direct = await transport.post(url, head, b"", timeouts={}, deadline=None)
        assert direct is not None
        direct.close()  # closed unread: not pooled either
        assert transport.open_connections == 0
        await transport.aclose()
    assert server.accepts == 2


async def test_a_post_on_a_dead_pooled_connection_is_stale_and_not_resent():
    transport = AsyncioTransport()
    async with Server(closes_on_the_second_request()) as server:
        url = httpx.URL(server.url())
        head = [(b"Host", url.netloc), (b"Content-Length", b"2")]
        first = await transport.post(url, head, b"{}", timeouts={}, deadline=None)
        assert first is not None and await first.read(10) == (b"0", True)
        with pytest.raises(StaleConnection, match="not re-sent"):
            await transport.post(url, head, b"{}", timeouts={}, deadline=None)
        assert len(server.requests) == 2  # it went out once, and only once
        again = await transport.post(url, head, b"{}", timeouts={}, deadline=None)
        assert again is not None and await again.read(10) == (b"1", True)
        await transport.aclose()


async def test_the_deadline_bounds_a_silent_server():
    async def silent(server, reader, writer, index):
        await server.read_request(reader)
        await asyncio.Event().wait()

    transport = AsyncioTransport()
    async with Server(silent) as server:
        url = httpx.URL(server.url())
        head = [(b"Host", url.netloc), (b"Content-Length", b"0")]
        deadline = asyncio.get_running_loop().time() + 0.05
        with pytest.raises(httpx.ReadTimeout):
            await transport.post(url, head, b"", timeouts={"read": GUARD}, deadline=deadline)
        assert transport.open_connections == 0
        await transport.aclose()


async def test_a_proxied_url_is_left_to_httpx():
    transport = AsyncioTransport(proxy=lambda url: None if url.host == "direct" else object())  # type: ignore[arg-type,return-value]
    url = httpx.URL("http://proxied:9/")
    assert await transport.post(url, [(b"Host", b"proxied:9")], b"", timeouts={},
                                deadline=None) is None  # fmt: skip
    client = ProviderClient(transport=transport, trust_env=False)
    client.cookies.set("a", "b")  # something httpx's client layer would apply
    assert await client.post_direct("http://direct:9/", {}, b"", timeout=TIMEOUT,
                                    deadline=None) is None  # fmt: skip
    await client.aclose()


# --- the provider's non-streamed call over it ------------------------------------------------


def answering(status: int, body: bytes, *headers: bytes) -> object:
    async def handler(server, reader, writer, index):
        while await server.read_request(reader) is not None:
            extra = b"".join(h + b"\r\n" for h in headers)
            writer.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n%s\r\n%s"
                         % (status, len(body), extra, body))  # fmt: skip

    return handler


def provider(server: Server) -> OpenAIProvider:
    config = ProviderConfig(name="p", kind="openai", model="m", base_url=server.url("/v1"),
                            api_key_env="K")  # fmt: skip
    return OpenAIProvider(config, env={"K": "sk-test-secret"})


async def complete(p: OpenAIProvider):
    return await p.complete(build_request(prompt="Hi", max_tokens=8), timeout=GUARD)


async def test_a_gzipped_answer_is_inflated_and_its_rate_limits_read():
    body = gzip.compress(json.dumps(ANSWER).encode())
    handler = answering(200, body, b"Content-Encoding: gzip", b"X-RateLimit-Remaining-Requests: 7")
    async with Server(handler) as server:
        p = provider(server)
        try:
            completion = await complete(p)
        finally:
            await p.aclose()
    assert completion.text == "hi"
    assert completion.ratelimit is not None
    assert completion.ratelimit.remaining_requests == 7


async def test_an_error_answer_is_the_provider_error_its_status_means():
    body = json.dumps({"error": {"message": "slow down sk-test-secret"}}).encode()
    async with Server(answering(429, body, b"Retry-After: 3")) as server:
        p = provider(server)
        try:
            with pytest.raises(ProviderError) as info:
                await complete(p)
        finally:
            await p.aclose()
    err = info.value
    assert err.status == 429 and err.reason == "rate_limited" and err.retry_after == 3
    assert "slow down" in err.message and "sk-test-secret" not in err.message


async def test_an_answer_past_the_body_limit_is_oversized():
    async with Server(answering(200, b"[" + b" " * 5000 + b"]")) as server:
        p = provider(server)
        p.limits = type(p.limits)(body=1000)
        try:
            with pytest.raises(TransientError) as info:
                await complete(p)
        finally:
            await p.aclose()
    assert info.value.reason == "oversized"


async def test_a_non_streamed_call_takes_the_direct_path(monkeypatch):
    opened: list[str] = []

    async def no_httpx_request(self, method, url, *args, **kwargs):
        opened.append(url)
        raise AssertionError("went through httpx")

    monkeypatch.setattr(ProviderClient, "open", no_httpx_request)
    async with Server(answering(200, json.dumps(ANSWER).encode())) as server:
        p = provider(server)
        try:
            assert (await complete(p)).text == "hi"
        finally:
            await p.aclose()
    assert opened == []
