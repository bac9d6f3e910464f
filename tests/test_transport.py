"""AsyncioTransport against small asyncio servers on 127.0.0.1, one per test, with each of
its HTTP/1.1 codecs (httptools and h11).

Each server hands connection number ``index`` to a handler coroutine and counts accepts and
concurrently open connections: reuse and the connection cap are read from what the server saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import httpx
import pytest
import trustme

from failover_cli.providers import _http1, make_client
from failover_cli.providers._transport import (
    RESENT,
    AsyncioTransport,
    StaleConnection,
    TLSError,
)

Handler = Callable[["Server", asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]

GUARD = 5.0  # seconds: a broken transport fails a test instead of hanging it


@pytest.fixture(autouse=True, params=["httptools", "h11"])
def codec(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs with each HTTP/1.1 codec as the transport's default."""
    if request.param == "httptools":
        pytest.importorskip("httptools")
    monkeypatch.setattr(_http1, "PREFERRED", request.param)
    return request.param


class Server:
    """A loopback server: ``handler(server, reader, writer, index)`` serves connection ``index``."""

    def __init__(self, handler: Handler, *, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.accepts = 0
        self.open = 0
        self.max_open = 0
        self.requests: list[bytes] = []  # request heads, in arrival order
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def url(self, path: str = "/") -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    async def read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        """One request's head (its body is read and dropped); None at end of stream."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        if length:
            await reader.readexactly(int(length[1]))
        self.requests.append(head)
        return head

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        index, self.accepts = self.accepts, self.accepts + 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        try:
            await self.handler(self, reader, writer, index)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # stopped by __aexit__ (asyncio 3.11 logs a cancelled handler task as an error)
        finally:
            self.open -= 1
            self._tasks.discard(task)
            writer.close()


def ok(body: bytes = b"hello", *headers: bytes) -> bytes:
    extra = b"".join(h + b"\r\n" for h in headers)
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


@contextlib.contextmanager
def dropping_address(port: int, ip: str = "127.0.0.2") -> Iterator[None]:
    """``ip``:``port`` listens with a full accept queue, so the kernel drops every further
    SYN: a connection there neither succeeds nor is refused."""
    blackhole = socket.socket()
    fillers: list[socket.socket] = []
    try:
        blackhole.bind((ip, port))
        blackhole.listen(0)
        while True:  # fill the accept queue; then the kernel drops further SYNs
            filler = socket.socket()
            filler.settimeout(0.2)
            try:
                filler.connect((ip, port))
            except OSError:
                filler.close()
                break
            fillers.append(filler)
        yield
    finally:
        for sock in [blackhole, *fillers]:
            sock.close()


def serving(make_body: Callable[[int, bytes], bytes] = lambda index, head: b"hello") -> Handler:
    """A keep-alive handler answering every request with ``make_body(index, head)``."""

    async def handler(server, reader, writer, index):
        while (head := await server.read_request(reader)) is not None:
            writer.write(ok(make_body(index, head)))
            await writer.drain()

    return handler


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


STREAM_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def client(transport: AsyncioTransport | None = None, **timeouts: float) -> httpx.AsyncClient:
    timeout = httpx.Timeout(GUARD, **timeouts)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport or AsyncioTransport(), timeout=timeout)


async def wait_until(condition: Callable[[], bool]) -> None:
    """Let the event loop run until ``condition`` holds (bounded: no sleeping on time)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


# --- reuse and the pool -----------------------------------------------------------------------


async def test_sequential_requests_share_one_connection_and_go_out_as_prepared():
    request_line = serving(lambda index, head: head.split(b"\r\n")[0])
    async with Server(request_line) as server, client() as c:
        for i in range(20):
            r = await c.post(server.url(f"/v1/chat?n={i}"), json={"i": i})
            assert (r.status_code, r.content) == (200, b"POST /v1/chat?n=%d HTTP/1.1" % i)
            assert r.http_version == "HTTP/1.1" and r.reason_phrase == "OK"
        head = server.requests[-1].lower()
        assert b"\r\nhost: 127.0.0.1:%d\r\n" % server.port in head
        assert b"\r\ncontent-type: application/json\r\n" in head
    assert server.accepts == 1


async def test_a_large_body_is_sent_whole():
    """Bodies beyond one write (a long `git diff` as the prompt) go out in full."""
    import hashlib

    async def digest(server, reader, writer, index):
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)[1])
            body = await reader.readexactly(length)
            writer.write(ok(hashlib.sha256(body).hexdigest().encode()))
            await writer.drain()

    payload = bytes(range(256)) * 4096  # 1 MiB
    async with Server(digest) as server, client() as c:
        for _ in range(2):  # and the connection stays usable after it
            r = await c.post(server.url("/upload"), content=payload)
            assert r.content == hashlib.sha256(payload).hexdigest().encode()
    assert server.accepts == 1


async def test_the_most_recently_used_idle_connection_is_reused_first():
    async with Server(serving(lambda index, head: b"%d" % index)) as server, client() as c:
        first = await c.send(c.build_request("GET", server.url()), stream=True)
        second = await c.send(c.build_request("GET", server.url()), stream=True)
        assert (await first.aread(), await second.aread()) == (b"0", b"1")
        assert (await c.get(server.url())).content == b"1"
    assert server.accepts == 2


async def test_idle_connection_closed_by_the_server_is_not_used_again():
    leftover: list[bytes] = []

    async def handler(server, reader, writer, index):
        await server.read_request(reader)
        writer.write(ok(b"%d" % index))
        if index == 0:
            writer.write_eof()  # closed at the server's keep-alive timeout
            leftover.append(await reader.read())  # what the client still sent on it
        else:
            while await server.read_request(reader) is not None:
                writer.write(ok(b"%d" % index))

    transport = AsyncioTransport()
    async with Server(handler) as server, client(transport) as c:
        assert (await c.get(server.url())).content == b"0"
        await wait_until(lambda: transport._idle[0].reader.at_eof())
        assert (await c.get(server.url())).content == b"1"
        await wait_until(lambda: bool(leftover))
    assert leftover == [b""]  # the request never went out on the dead connection
    assert server.accepts == 2


def closes_on_the_second_request() -> Handler:
    """Connection 0 answers once, then closes when the next request arrives on it (the
    keep-alive race: the server timed it out just as the client reused it)."""

    async def handler(server, reader, writer, index):
        while await server.read_request(reader) is not None:
            if index == 0 and len(server.requests) == 2:
                return
            writer.write(ok(b"%d" % index))

    return handler


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "OPTIONS"])
async def test_idempotent_request_on_a_dead_reused_connection_is_resent_once(method):
    async with Server(closes_on_the_second_request()) as server, client() as c:
        assert (await c.get(server.url())).content == b"0"
        r = await c.request(method, server.url(), content=b"{}")
        assert r.status_code == 200
        assert r.extensions.get(RESENT) == 1  # told, not hidden
        assert RESENT not in (await c.request(method, server.url())).extensions
    assert server.accepts == 2
    assert len(server.requests) == 4  # the second: on the dead connection, then once more


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_non_idempotent_request_on_a_dead_reused_connection_is_not_resent(method):
    async with Server(closes_on_the_second_request()) as server, client() as c:
        assert (await c.get(server.url())).content == b"0"
        with pytest.raises(StaleConnection, match="not re-sent") as info:
            await c.request(method, server.url(), json={"x": 1})
        assert isinstance(info.value, httpx.RemoteProtocolError)
        assert info.value.request.method == method
        assert len(server.requests) == 2  # it went out once, and only once
        # The caller's own retry (the router's next attempt) gets a fresh connection.
        assert (await c.request(method, server.url(), json={"x": 1})).content == b"1"
    assert server.accepts == 2


async def test_a_stale_connection_retires_the_other_idle_ones_to_its_origin():
    async def handler(server, reader, writer, index):
        while await server.read_request(reader) is not None:
            if index < 2 and len(server.requests) > 2:
                return  # both pooled connections were timed out by the server
            writer.write(ok(b"%d" % index))

    transport = AsyncioTransport()
    async with Server(handler) as server, client(transport) as c:
        await asyncio.gather(c.get(server.url()), c.get(server.url()))
        assert transport.idle_connections == 2
        with pytest.raises(StaleConnection):
            await c.post(server.url(), content=b"x")
        assert transport.idle_connections == 0
        assert (await c.post(server.url(), content=b"x")).content == b"2"
    assert server.accepts == 3


async def test_fresh_connection_dropped_before_answering_is_not_retried():
    async def handler(server, reader, writer, index):
        await server.read_request(reader)

    async with Server(handler) as server, client() as c:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await c.get(server.url())
    assert server.accepts == 1


async def _body_stream() -> AsyncIterator[bytes]:
    yield b"streamed"


@pytest.mark.parametrize("case", ["part_of_a_response_arrived", "body_cannot_be_replayed"])
async def test_reused_connection_failures_are_otherwise_not_retried(case):
    async def handler(server, reader, writer, index):
        await server.read_request(reader)
        writer.write(ok())
        await server.read_request(reader)
        if case == "part_of_a_response_arrived":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Le")

    async with Server(handler) as server, client() as c:
        await c.get(server.url())
        with pytest.raises(httpx.RemoteProtocolError):
            if case == "body_cannot_be_replayed":
                await c.post(server.url(), content=_body_stream())
            else:
                await c.get(server.url())
    assert server.accepts == 1


@pytest.mark.parametrize("side", ["server", "client"])
async def test_connection_close_from_either_side_is_honoured(side):
    async def handler(server, reader, writer, index):
        while await server.read_request(reader) is not None:
            if side == "server":
                writer.write(ok(b"bye", b"Connection: close"))
                return
            writer.write(ok())

    headers = {"connection": "close"} if side == "client" else {}
    async with Server(handler) as server, client() as c:
        for _ in range(3):
            assert (await c.get(server.url(), headers=headers)).status_code == 200
    assert server.accepts == 3


async def test_idle_connections_beyond_max_keepalive_are_closed():
    async with Server(serving()) as server, client(AsyncioTransport(max_keepalive=1)) as c:
        for _ in range(2):
            await asyncio.gather(c.get(server.url()), c.get(server.url()))
    assert server.accepts == 3  # round two reused the one connection kept


async def test_expired_idle_connections_are_not_reused():
    async with Server(serving()) as server, client(AsyncioTransport(keepalive_expiry=0)) as c:
        for _ in range(3):
            await c.get(server.url())
    assert server.accepts == 3


@pytest.mark.parametrize("cap", [5, 100])
async def test_fifty_concurrent_requests_succeed_within_max_connections(cap):
    path = serving(lambda index, head: head.split(b" ")[1])
    async with Server(path) as server, client(AsyncioTransport(max_connections=cap)) as c:
        responses = await asyncio.gather(*(c.get(server.url(f"/{i}")) for i in range(50)))
    assert [r.content for r in responses] == [b"/%d" % i for i in range(50)]
    assert server.max_open <= cap
    if cap == 5:
        assert server.accepts == 5


@pytest.mark.parametrize("release", ["read_to_the_end", "closed_early"])
async def test_a_full_pool_makes_requests_wait_bounded_by_the_pool_timeout(release):
    transport = AsyncioTransport(max_connections=1)
    async with Server(serving()) as server, client(transport) as c, asyncio.timeout(GUARD):
        held = await c.send(c.build_request("GET", server.url()), stream=True)
        with pytest.raises(httpx.PoolTimeout):
            await c.get(server.url(), timeout=httpx.Timeout(GUARD, pool=0.02))
        waiting = asyncio.create_task(c.get(server.url()))
        await wait_until(lambda: len(transport._waiters) == 1)
        # Either frees the slot for the waiter: the connection back in the pool, or closed.
        await (held.aread() if release == "read_to_the_end" else held.aclose())
        assert (await waiting).status_code == 200
    assert server.accepts == (1 if release == "read_to_the_end" else 2)


# --- bodies -----------------------------------------------------------------------------------


async def test_chunked_body_is_decoded_and_the_connection_kept():
    async def handler(server, reader, writer, index):
        while await server.read_request(reader) is not None:
            writer.write(STREAM_HEAD + chunked(b"data: a\n\n", b"data: b\n\n"))

    async with Server(handler) as server, client() as c:
        for _ in range(2):
            assert (await c.get(server.url())).content == b"data: a\n\ndata: b\n\n"
    assert server.accepts == 1


async def test_close_delimited_body_is_read_to_the_end():
    async def handler(server, reader, writer, index):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nno length, ends at close")

    async with Server(handler) as server, client() as c:
        for _ in range(2):
            assert (await c.get(server.url())).content == b"no length, ends at close"
    assert server.accepts == 2


async def test_informational_and_bodiless_responses():
    answers = [
        b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"after 100"),
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",  # to HEAD
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
        ok(b"last"),
    ]

    async def handler(server, reader, writer, index):
        for answer in answers:
            await server.read_request(reader)
            writer.write(answer)
        await reader.read()

    async with Server(handler) as server, client() as c:
        got = [await c.get(server.url())]
        got.append(await c.head(server.url()))
        got += [await c.get(server.url()) for _ in range(3)]
    assert [(r.status_code, r.content) for r in got] == [
        (200, b"after 100"),
        (200, b""),
        (204, b""),
        (304, b""),
        (200, b"last"),
    ]
    assert server.accepts == 1


async def test_body_chunks_are_readable_before_the_server_sends_the_rest():
    go_on = asyncio.Event()

    async def handler(server, reader, writer, index):
        await server.read_request(reader)
        writer.write(STREAM_HEAD + b"6\r\nfirst\n\r\n")
        await go_on.wait()
        writer.write(b"5\r\nrest\n\r\n0\r\n\r\n")

    async with (
        Server(handler) as server,
        client() as c,
        asyncio.timeout(GUARD),
        c.stream("GET", server.url()) as r,
    ):
        chunks = r.aiter_raw()
        assert await anext(chunks) == b"first\n"
        go_on.set()
        assert [chunk async for chunk in chunks] == [b"rest\n"]


# --- errors and timeouts ----------------------------------------------------------------------


async def hang(server, reader, writer, index):
    await asyncio.Event().wait()


async def test_read_timeout():
    async with Server(hang) as server, client(read=0.02) as c, asyncio.timeout(GUARD):
        with pytest.raises(httpx.ReadTimeout):
            await c.get(server.url())


async def test_write_timeout_when_the_server_stops_reading():
    async with Server(hang) as server, client(write=0.02) as c, asyncio.timeout(GUARD):
        with pytest.raises(httpx.WriteTimeout):
            await c.post(server.url(), content=b"x" * (32 << 20))


async def test_connect_timeout(monkeypatch):
    async def never_connects(*args, **kwargs):
        await asyncio.Event().wait()

    monkeypatch.setattr(asyncio, "open_connection", never_connects)
    async with client(connect=0.02) as c, asyncio.timeout(GUARD):
        with pytest.raises(httpx.ConnectTimeout):
            await c.get("http://127.0.0.1:9/")


async def test_refused_connection_is_a_connect_error_and_frees_its_slot():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    async with client(AsyncioTransport(max_connections=1), pool=0.5) as c:
        for _ in range(2):  # a leaked slot would make the second a PoolTimeout
            with pytest.raises(httpx.ConnectError) as info:
                await c.get(f"http://127.0.0.1:{port}/")
            assert info.value.request.url.port == port


async def test_unsupported_scheme():
    transport = AsyncioTransport()
    with pytest.raises(httpx.UnsupportedProtocol):
        await transport.handle_async_request(httpx.Request("GET", "ftp://127.0.0.1/"))


async def test_garbage_status_line_is_a_remote_protocol_error():
    async def handler(server, reader, writer, index):
        await server.read_request(reader)
        writer.write(b"SMTP ready, not HTTP\r\n\r\n")

    async with Server(handler) as server, client() as c:
        with pytest.raises(httpx.RemoteProtocolError):
            await c.get(server.url())


async def test_body_shorter_than_content_length_is_a_remote_protocol_error():
    async def handler(server, reader, writer, index):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")

    async with Server(handler) as server, client() as c:
        with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
            await c.get(server.url())


# --- closing and cancelling mid-body ----------------------------------------------------------


async def first_chunk_then_wait(server, reader, writer, index):
    """Connection 0 sends the head and one chunk, then waits; the others serve normally."""
    await server.read_request(reader)
    if index == 0:
        writer.write(STREAM_HEAD + b"6\r\nfirst\n\r\n")
        await reader.read()  # until the client closes it
        return
    writer.write(ok(b"%d" % index))
    while await server.read_request(reader) is not None:
        writer.write(ok(b"%d" % index))


async def test_closing_a_streamed_response_early_discards_its_connection():
    async with Server(first_chunk_then_wait) as server, client() as c:
        async with c.stream("GET", server.url()) as r:
            chunks = r.aiter_raw()  # kept alive: only the response's close may end it
            assert await anext(chunks) == b"first\n"
        assert (await c.get(server.url())).content == b"1"
        await wait_until(lambda: server.open == 1)  # connection 0 was closed by the client
        del chunks
    assert server.accepts == 2


async def test_cancelling_a_read_discards_the_connection_and_leaks_nothing():
    loop_errors: list[dict] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: loop_errors.append(ctx))
    got_first = asyncio.Event()

    async def read_all(c: httpx.AsyncClient, url: str) -> None:
        r = await c.send(c.build_request("GET", url), stream=True)  # and never closed
        async for _ in r.aiter_raw():
            got_first.set()

    async with Server(first_chunk_then_wait) as server, client() as c, asyncio.timeout(GUARD):
        reader = asyncio.create_task(read_all(c, server.url()))
        await got_first.wait()
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        assert (await c.get(server.url())).content == b"1"
        await wait_until(lambda: server.open == 1)
    assert server.accepts == 2
    assert loop_errors == []


async def test_aclose_closes_every_connection():
    async with Server(serving()) as server:
        transport = AsyncioTransport()
        c = client(transport)
        await asyncio.gather(*(c.get(server.url()) for _ in range(3)))
        assert server.open == 3
        await c.aclose()
        await wait_until(lambda: server.open == 0)


# --- TLS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(ca) -> Server:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return Server(serving(), tls=context)


async def test_https_with_a_context_that_trusts_the_ca(ca, tls_server):
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    async with tls_server as server, client(AsyncioTransport(verify=trusting)) as c:
        for _ in range(2):
            assert (await c.get(server.url())).content == b"hello"
    assert server.accepts == 1


async def test_https_fails_verification_against_the_default_ca_bundle(tls_server):
    transport = AsyncioTransport()
    async with tls_server as server, client(transport) as c:
        with pytest.raises(TLSError, match="does not trust"):
            await c.get(server.url())
    assert transport.ssl_context.verify_mode == ssl.CERT_REQUIRED


async def test_https_without_verification(tls_server):
    transport = AsyncioTransport(verify=False)
    async with tls_server as server, client(transport) as c:
        assert (await c.get(server.url())).status_code == 200
    assert transport.ssl_context.verify_mode == ssl.CERT_NONE


async def test_make_client_uses_the_asyncio_transport():
    c = make_client()
    try:
        assert isinstance(c._transport, AsyncioTransport)
        assert c.trust_env is False and c.follow_redirects is False
    finally:
        await c.aclose()
