"""ProviderClient: adapters' requests skip httpx's client layer while the client adds nothing,
and go out the same either way.

A loopback server records each request (head and body) and answers an OpenAI completion; the
same adapter request is sent through a plain ``make_client()`` (the direct path) and through
one with something set on it (httpx's ``build_request`` and ``send``)."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
import pytest

from failover_cli.providers import create_provider, make_client
from failover_cli.providers._client import ProviderClient
from failover_cli.types import CompletionRequest, ProviderConfig

KEY = "sk-test-provider-client"
COMPLETION = json.dumps({
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}).encode()  # fmt: skip


class Recorder:
    """Answers every request with COMPLETION (``set_cookie`` sets one) and keeps what came."""

    def __init__(self, set_cookie: bool = False) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []  # line, headers, body
        self.set_cookie = set_cookie

    async def __aenter__(self) -> Recorder:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                line, *rest = head.split("\r\n")[:-2]
                headers = {}
                for field in rest:
                    name, _, value = field.partition(":")
                    assert name.lower() not in headers, f"{name} sent twice"
                    headers[name.lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                self.requests.append((line, headers, body))
                cookie = b"Set-Cookie: affinity=abc; Path=/\r\n" if self.set_cookie else b""
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n%s"
                    b"Content-Length: %d\r\n\r\n%s" % (cookie, len(COMPLETION), COMPLETION)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def adapter(url: str, client: httpx.AsyncClient, **config: Any) -> Any:
    cfg = ProviderConfig(
        name="p", kind="openai", model="m", base_url=url, api_key_env="K", **config
    )
    return create_provider(cfg, client=client, env={"K": KEY})


REQUEST = CompletionRequest("Say hi", 16, "Be terse.", 0.5)


async def sent_through(
    server: Recorder, client: httpx.AsyncClient, **config: Any
) -> tuple[str, dict, bytes]:
    completion = await adapter(server.url, client, **config).complete(REQUEST, timeout=5.0)
    assert completion.text == "hi"
    return server.requests[-1]


async def test_the_direct_path_sends_what_httpx_client_layer_sends():
    seen: list[httpx.Request] = []

    async def hook(request: httpx.Request) -> None:
        seen.append(request)

    config = {"headers": (("X-Team", "blue"),)}
    async with (
        make_client(headers=(("X-Client", "c1"),)) as direct,
        make_client(headers=(("X-Client", "c1"),)) as layered,
        Recorder() as server,
    ):
        layered.event_hooks["request"].append(hook)  # something the client layer applies
        line, direct_headers, direct_body = await sent_through(server, direct, **config)
        line2, layered_headers, layered_body = await sent_through(server, layered, **config)
    assert len(seen) == 1  # the hooked client did go through httpx's layer
    assert line == line2 == "POST /v1/chat/completions HTTP/1.1"
    assert direct_headers == layered_headers
    assert direct_headers["authorization"] == f"Bearer {KEY}"
    assert direct_headers["content-type"] == "application/json"
    assert direct_headers["x-client"] == "c1" and direct_headers["x-team"] == "blue"
    assert direct_body == layered_body
    assert json.loads(direct_body)["messages"][-1] == {"role": "user", "content": "Say hi"}
    assert b": " not in direct_body  # httpx's compact separators, kept


@pytest.mark.parametrize("setting", ["auth", "cookies", "params", "base_url", "response_hook"])
async def test_a_client_with_something_set_goes_through_httpx_client_layer(setting):
    hooked: list[httpx.Response] = []

    async def on_response(response: httpx.Response) -> None:
        hooked.append(response)

    async with make_client() as client, Recorder() as server:
        if setting == "auth":
            client.auth = httpx.BasicAuth("u", "p")
        elif setting == "cookies":
            client.cookies.set("session", "s1")
        elif setting == "params":
            client.params = {"api-version": "2025-01-01"}
        elif setting == "base_url":
            client.base_url = server.url + "/ignored/"  # absolute URLs still win
        else:
            client.event_hooks["response"].append(on_response)
        await adapter(server.url, client).complete(REQUEST, timeout=5.0)
        [(line, headers, _)] = server.requests
    expected = {
        "auth": lambda: headers["authorization"].startswith("Basic "),  # httpx's auth flow
        "cookies": lambda: headers["cookie"] == "session=s1",
        "params": lambda: line == "POST /v1/chat/completions?api-version=2025-01-01 HTTP/1.1",
        "base_url": lambda: line == "POST /v1/chat/completions HTTP/1.1",
        "response_hook": lambda: len(hooked) == 1,
    }
    assert expected[setting](), (line, headers)


async def test_a_providers_cookies_are_not_sent_back_on_the_direct_path():
    async with make_client() as client, Recorder(set_cookie=True) as server:
        provider = adapter(server.url, client)
        for _ in range(2):
            await provider.complete(REQUEST, timeout=5.0)
        assert [("cookie" in h) for _, h, _ in server.requests] == [False, False]
        assert not client.cookies  # nothing kept: later requests stay on the direct path


async def test_the_direct_path_prepares_each_url_and_head_once_and_bounds_how_many():
    async with make_client() as client:
        assert isinstance(client, ProviderClient)
        async with Recorder() as server:
            provider = adapter(server.url, client)
            for _ in range(3):
                await provider.complete(REQUEST, timeout=5.0)
            assert [key[0] for key in client._prepared] == [server.url + "/v1/chat/completions"]
            for i in range(100):  # many distinct URLs: the memory stays bounded
                async with Recorder() as other:
                    await adapter(other.url + f"/{i}", client).complete(REQUEST, timeout=5.0)
            assert len(client._prepared) <= 64


async def test_the_direct_path_sends_the_clients_headers_as_they_are_now():
    async with make_client() as client, Recorder() as server:
        provider = adapter(server.url, client)
        await provider.complete(REQUEST, timeout=5.0)
        client.headers["x-team"] = "blue"  # changed in place after a first request
        await provider.complete(REQUEST, timeout=5.0)
        client.headers = {"x-team": "red"}
        await provider.complete(REQUEST, timeout=5.0)
    teams = [h.get("x-team") for _, h, _ in server.requests]
    assert teams == [None, "blue", "red"]


async def test_a_closed_client_refuses_as_httpx_does():
    client = make_client()
    await client.aclose()
    async with Recorder() as server:
        with pytest.raises(Exception, match=re.compile("RuntimeError")):
            await adapter(server.url, client).complete(REQUEST, timeout=5.0)
        assert server.requests == []
