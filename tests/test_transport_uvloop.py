"""The providers' transport on uvloop's event loop (uvicorn's choice whenever uvloop is
installed): a chain over real HTTP, Happy Eyeballs done by the transport itself (uvloop's
``create_connection`` has no ``happy_eyeballs_delay``), TLS through it, and the errors when no
address answers.

Each test runs its coroutine on a fresh uvloop loop (``asyncio.Runner``); every server listens
on 127.0.0.1 (one test also binds 127.0.0.2), and names are answered by a stub resolver, a
subclass of uvloop's loop, never by DNS.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Coroutine
from typing import Any

import httpx
import pytest
import trustme
import uvloop
from test_transport import GUARD, Server, dropping_address, serving

from failover_cli.config import Config
from failover_cli.providers._transport import AsyncioTransport, _loop_races_addresses
from failover_cli.router import FailoverRouter
from failover_cli.sim import Behavior, Simulator
from failover_cli.types import ProviderConfig, StreamDone

KEY = "uvloop-test-key"


class StubLoop(uvloop.Loop):  # type: ignore[misc]
    """uvloop's loop whose ``getaddrinfo`` answers ``addresses`` for any name not an IP."""

    addresses: tuple[str, ...] = ()

    async def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in ("127.0.0.1", "127.0.0.2") or not self.addresses:
            return await super().getaddrinfo(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in self.addresses]


def on_uvloop(coro: Coroutine[Any, Any, Any], *addresses: str) -> Any:
    """Run ``coro`` on a new uvloop loop whose resolver answers ``addresses`` for names."""

    def factory() -> StubLoop:
        loop = StubLoop()
        loop.addresses = addresses
        return loop

    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_loops_are_told_apart():
    assert _loop_races_addresses(asyncio.new_event_loop()) is True
    assert on_uvloop(_running_loop_races()) is False


async def _running_loop_races() -> bool:
    return _loop_races_addresses(asyncio.get_running_loop())


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("host", ["127.0.0.1", "sim.test"])
def test_a_chain_fails_over_and_answers_on_uvloop(streamed, host):
    """A refused primary, then the OpenAI simulator: by IP literal (the loop's own connect)
    and by name (the transport's Happy Eyeballs, 127.0.0.2 refusing first)."""
    sim = Simulator("openai", Behavior(text="Answered on uvloop."), api_key=KEY).start()
    try:
        port = sim.base_url.rsplit(":", 1)[1]
        providers = (
            ProviderConfig(name="dead", kind="openai", model="m", api_key_env="K", timeout=5,
                           base_url=f"http://127.0.0.1:{refused_port()}"),
            ProviderConfig(name="up", kind="openai", model="m", api_key_env="K", timeout=5,
                           base_url=f"http://{host}:{port}"),
        )  # fmt: skip

        async def ask() -> Any:
            router = FailoverRouter(
                Config(providers=providers), env={"K": KEY}, background_probes=False
            )
            try:
                messages = [{"role": "user", "content": "Hi"}]
                if not streamed:
                    return await router.route(messages=messages, max_tokens=16)
                events = [e async for e in router.stream(messages=messages, max_tokens=16).events()]
                assert isinstance(events[-1], StreamDone)
                return events[-1].result
            finally:
                await router.aclose()

        result = on_uvloop(ask(), "127.0.0.2", "127.0.0.1")
    finally:
        sim.stop()
    assert result.provider == "up"
    assert result.text == "Answered on uvloop."
    assert [a.provider for a in result.attempts] == ["dead", "up"]


def test_an_address_that_drops_connections_costs_the_stagger_not_the_timeout():
    """127.0.0.2 first, where a full accept queue drops every SYN, then 127.0.0.1, which
    answers: the second attempt starts after the Happy Eyeballs delay, and wins."""
    connect_timeout = 3.0

    async def go() -> tuple[int, float, int]:
        async with Server(serving()) as server:
            with dropping_address(server.port):
                loop = asyncio.get_running_loop()
                transport = AsyncioTransport()
                timeout = httpx.Timeout(GUARD, connect=connect_timeout)
                async with httpx.AsyncClient(transport=transport, timeout=timeout) as c:
                    start = loop.time()
                    r = await c.get(f"http://dualhomed.test:{server.port}/")
                    took = loop.time() - start
                    open_after = transport.open_connections
        return r.status_code, took, open_after

    status, took, open_after = on_uvloop(go(), "127.0.0.2", "127.0.0.1")
    assert status == 200
    assert took < connect_timeout / 2  # ~0.25 s; trying the addresses in turn would time out
    assert open_after == 1  # the pending attempt was cancelled, not pooled


def test_when_no_address_answers_it_is_one_connect_error_naming_them_and_the_slot_is_freed():
    port = refused_port()

    async def go() -> tuple[str, int]:
        transport = AsyncioTransport(max_connections=1)
        async with httpx.AsyncClient(transport=transport, timeout=GUARD) as c:
            for _ in range(2):  # a leaked slot would make the second wait for the pool
                with pytest.raises(httpx.ConnectError) as caught:
                    await c.get(f"http://twohomed.test:{port}/")
            return str(caught.value), transport.open_connections

    message, open_after = on_uvloop(go(), "127.0.0.2", "127.0.0.1")
    assert "127.0.0.2" in message and "127.0.0.1" in message
    assert open_after == 0


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def test_https_by_name_verifies_the_name_through_the_race(ca):
    """The certificate is for the name, not the address: the race must pass the name on."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("api.example.test").configure_cert(server_context)
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)

    async def go(name: str) -> int:
        async with Server(serving(), tls=server_context) as server:
            transport = AsyncioTransport(verify=trusting)
            async with httpx.AsyncClient(transport=transport, timeout=GUARD) as c:
                return (await c.get(f"https://{name}:{server.port}/")).status_code

    assert on_uvloop(go("api.example.test"), "127.0.0.2", "127.0.0.1") == 200
    with pytest.raises(httpx.ConnectError, match=r"not valid for other\.example\.test"):
        on_uvloop(go("other.example.test"), "127.0.0.1")
