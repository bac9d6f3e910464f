"""One socket write per answer: the coalescing transport, and uvicorn's own protocols writing
through it (driven directly with a recording transport, so the writes can be counted)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

uvicorn = pytest.importorskip("uvicorn")

from uvicorn.protocols.http.h11_impl import H11Protocol  # noqa: E402

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # not CPython
    HttpToolsProtocol = None
from uvicorn.server import ServerState  # noqa: E402

from failover_cli.serve.coalesce import (  # noqa: E402
    HTTPTOOLS,
    CoalescingH11Protocol,
    CoalescingTransport,
    protocol,
)
from failover_cli.serve.server import uvicorn_options  # noqa: E402

REQUEST = b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}"


class Recording(asyncio.Transport):
    """A transport that records what is written to it."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.events: list[str] = []

    def write(self, data: Any) -> None:
        if not data:  # a no-op in asyncio's transports: no send
            return
        self.writes.append(bytes(data))
        self.events.append("write")

    def close(self) -> None:
        self.closed = True
        self.events.append("close")

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8400), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def test_a_write_followed_by_another_goes_out_with_it() -> None:
    raw = Recording()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())
    transport.write(b"head")
    assert raw.writes == []
    assert transport.get_write_buffer_size() == 4
    transport.write(b"body")
    assert raw.writes == [b"headbody"]
    await asyncio.sleep(0)
    assert raw.writes == [b"headbody"]  # nothing left over for the loop's next turn


async def test_a_lone_write_leaves_on_the_loops_next_turn() -> None:
    raw = Recording()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())
    transport.write(b"chunk 1")
    await asyncio.sleep(0)
    assert raw.writes == [b"chunk 1"]
    transport.write(bytearray(b"chunk 2"))
    await asyncio.sleep(0)
    assert raw.writes == [b"chunk 1", b"chunk 2"]


async def test_close_writes_what_is_held_first() -> None:
    raw = Recording()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())
    transport.write(b"last")
    transport.close()
    assert raw.writes == [b"last"] and raw.events == ["write", "close"]
    await asyncio.sleep(0)
    assert raw.writes == [b"last"]


async def test_nothing_is_written_to_a_transport_already_closing() -> None:
    raw = Recording()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())
    transport.write(b"late")
    raw.closed = True  # the client went away, uvicorn aborted the connection
    await asyncio.sleep(0)
    assert raw.writes == []


async def test_an_empty_write_is_not_held() -> None:
    raw = Recording()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())
    transport.write(b"")
    transport.write(b"data")
    assert raw.writes == []  # held alone, as if the empty write had not happened
    await asyncio.sleep(0)
    assert raw.writes == [b"data"]


async def test_other_attributes_are_the_wrapped_transports() -> None:
    raw = Recording()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())
    assert transport.get_extra_info("peername") == ("127.0.0.1", 50000)
    assert transport.is_closing() is False


def serve_one(protocol_class: type[asyncio.Protocol], app: Any, raw: Recording | None = None
              ) -> Recording:  # fmt: skip
    """``app`` answering one request through ``protocol_class``, a uvicorn HTTP protocol, on
    a recording transport (``raw``, or a new one); returns it when the answer is complete."""
    raw = raw or Recording()

    async def main() -> Recording:
        options = uvicorn_options("127.0.0.1", 8400, 1, "asyncio", None)
        config = uvicorn.Config(app, **{**options, "factory": False, "lifespan": "off"})
        config.load()
        state = ServerState()
        proto = protocol_class(config=config, server_state=state, app_state={})  # type: ignore[call-arg]
        proto.connection_made(raw)
        proto.data_received(REQUEST)
        await asyncio.sleep(0)
        while state.tasks:  # the app's task, until the answer is complete
            await asyncio.wait(state.tasks, timeout=5)
        await asyncio.sleep(0)  # the loop's next turn: anything held goes out
        proto.connection_lost(None)
        return raw

    return asyncio.run(main())


async def answer(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"11")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b'{"ok":true}'})


PROTOCOLS = [CoalescingH11Protocol, *([HTTPTOOLS] if HTTPTOOLS else [])]


@pytest.mark.parametrize("protocol_class", PROTOCOLS, ids=lambda c: c.__name__)
def test_an_answer_leaves_in_one_write(protocol_class: type[asyncio.Protocol]) -> None:
    raw = serve_one(protocol_class, answer)
    assert len(raw.writes) == 1
    assert raw.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert raw.writes[0].endswith(b'\r\n\r\n{"ok":true}')


UVICORNS = [H11Protocol, *([HttpToolsProtocol] if HttpToolsProtocol else [])]


@pytest.mark.parametrize("protocol_class", UVICORNS, ids=lambda c: c.__name__)
def test_uvicorns_own_protocol_writes_twice(protocol_class: type[asyncio.Protocol]) -> None:
    """What the coalescing protocols save: without them the head and the body are two writes
    (if uvicorn ever joins them itself, the coalescing can go)."""
    raw = serve_one(protocol_class, answer)
    assert len(raw.writes) == 2


def test_a_streams_head_and_chunks_are_not_held_while_the_app_waits() -> None:
    out: list[bytes] = []
    raw = Recording()

    async def streaming(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})  # fmt: skip
        await asyncio.sleep(0)  # one turn of the loop (the first token is slow)
        out.append(b"".join(raw.writes))
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await asyncio.sleep(0)
        out.append(b"".join(raw.writes))
        await send({"type": "http.response.body", "body": b"data: 2\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    serve_one(protocol(), streaming, raw)
    head, first = out
    assert head.startswith(b"HTTP/1.1 200 OK") and head.endswith(b"\r\n\r\n")
    assert first.startswith(head) and b"data: 1" in first and b"data: 2" not in first
    everything = b"".join(raw.writes)
    assert b"data: 2" in everything and everything.endswith(b"0\r\n\r\n")


def test_the_gateway_serves_with_a_coalescing_protocol() -> None:
    options = uvicorn_options("127.0.0.1", 8400, 1, "asyncio", None)
    assert options["http"] is protocol()
    assert options["http"].__name__.startswith("Coalescing")
