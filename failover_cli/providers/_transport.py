"""An httpx transport speaking HTTP/1.1 over plain asyncio: no httpcore, no anyio.

Why: a one-shot ``failover ask`` pays for every import. httpx's default async transport costs
~35 ms per process here: importing httpcore (~17 ms, when an AsyncClient builds it) and anyio's
asyncio backend (~18 ms, on the first request: httpcore's pool locks use anyio). This transport
speaks HTTP/1.1 through :mod:`._http1` (httptools when installed, else h11, which comes with
httpx) over ``asyncio.open_connection``, and loads CA certificates only when the first https
connection opens.

What it does: keep-alive pooling per (scheme, host, port, proxy) with httpx's limits, the
connect/read/write/pool timeouts of ``request.extensions``, incremental response bodies, and
the httpx exceptions httpcore would have raised (``_async/http11.py``, ``_backends/anyio.py``).
Names with several addresses are connected with Happy Eyeballs (RFC 8305: the next address is
tried 0.25 s after the previous one, without abandoning it): by asyncio's own
``create_connection``, or, on a loop whose ``create_connection`` cannot race addresses
(uvloop's has no ``happy_eyeballs_delay``), by this module over one connection per address.
``http://`` proxies: absolute-form requests for http, a CONNECT tunnel then TLS for https,
credentials from the proxy URL. Certificate failures raise :class:`TLSError`.

A request whose *reused* connection fails before any response byte (the server closed it at
its keep-alive timeout) is sent again once on a fresh connection only if its method is
idempotent and its body replayable; the response then carries ``extensions[RESENT] == 1``.
Otherwise (a POST) it raises :class:`StaleConnection`: the request went out once, and nothing
below the caller sends it again.

What it does not do: HTTP/2, https:// or SOCKS proxies, Unix sockets, upgrades, client
certificates. Which proxy a URL takes and which CAs are trusted is decided in ``_client``.
"""

from __future__ import annotations

import asyncio
import select
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import suppress
from itertools import zip_longest
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import httpx

from . import _http1
from ._http1 import Head

if TYPE_CHECKING:
    import ssl

_READ_SIZE = 64 * 1024
_PORTS = {"http": 80, "https": 443}
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})  # RFC 9110 9.2.2
HAPPY_EYEBALLS_DELAY = 0.25  # seconds before the next address is tried (RFC 8305 suggests 0.25)

# A request extension: the loop-time instant by which the whole exchange (connect, send, the
# response and all of its body) must be done; each wait is cut to what is left of it, and
# running out raises the httpx timeout of the phase it happens in. One timer per wait that
# is armed anyway, instead of a second one around the whole request.
DEADLINE = "failover.deadline"

# A response extension: 1 when the transport sent the request a second time, on a fresh
# connection, because the pooled one it first went out on was dead (idempotent methods only).
RESENT = "failover.resent"


class TLSError(httpx.ConnectError):
    """TLS cannot work with these settings: the server's certificate failed verification (a CA
    this machine does not trust, another host's name, expired), the handshake cannot agree
    (not a TLS server), or the configured CA certificates cannot be loaded. Retrying will not
    help; the message is one line saying what was wrong and which setting fixes it."""


class StaleConnection(httpx.RemoteProtocolError):
    """A pooled keep-alive connection turned out dead after the request was written to it and
    before any byte of the response (the server closed it at its idle timeout, or crashed).
    The request was not sent again: a non-idempotent request may or may not have been
    processed. The next request gets a fresh connection (the other idle connections to that
    origin are closed too); whether to retry is the caller's decision."""


class Proxy(NamedTuple):
    """An ``http://`` proxy: where to connect, and the Proxy-Authorization value, if any."""

    host: str
    port: int
    authorization: bytes | None = None

    @classmethod
    def from_url(cls, url: str | httpx.URL) -> Proxy:
        """From ``http://[user:password@]host[:port]``; ValueError for anything else."""
        parsed = httpx.URL(url)
        if parsed.scheme != "http" or not parsed.host:
            raise ValueError(f"not an http:// proxy URL: {parsed.scheme}://{parsed.host}")
        authorization = None
        if parsed.username or parsed.password:
            import base64

            userinfo = f"{parsed.username}:{parsed.password}".encode()
            authorization = b"Basic " + base64.b64encode(userinfo)
        return cls(parsed.host, parsed.port or 80, authorization)

    def __repr__(self) -> str:  # never show the credentials
        return f"Proxy({self.host}:{self.port})"


ProxyRoute = Callable[[httpx.URL], Proxy | None]
Origin = tuple[str, str, int, Proxy | None]


class _Connection:
    """One TCP (or TLS) connection and the HTTP/1.1 codec of its current exchange."""

    __slots__ = ("exchange", "expires_at", "origin", "reader", "received", "reused", "writer")

    def __init__(self, origin: Origin, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.origin = origin
        self.reader = reader
        self.writer = writer
        self.exchange: _http1.Exchange | None = None  # set for each request
        self.expires_at = 0.0
        self.reused = False  # taken from the idle pool for the current request
        self.received = 0  # response bytes read for the current request

    def usable(self, now: float) -> bool:
        """Still fit for another request: not expired, and the peer has not closed or reset."""
        reader = self.reader
        return (
            now < self.expires_at
            and not reader.at_eof()
            and reader.exception() is None
            and not self.writer.is_closing()
            and not self._readable()
        )

    def _readable(self) -> bool:
        """Whether the socket has something to read while idle: a FIN or a reset the event
        loop has not processed yet (an idle HTTP/1.1 peer sends nothing else), as urllib3
        checks before reusing a connection. Catches a server that closed it just now."""
        sock = self.writer.get_extra_info("socket")
        if sock is None:
            return False
        try:
            return bool(select.select([sock.fileno()], [], [], 0)[0])
        except (OSError, ValueError):
            return True


class AsyncioTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 for ``httpx.AsyncClient(transport=...)`` on asyncio alone.

    ``verify``: True trusts the OS store plus SSL_CERT_FILE/SSL_CERT_DIR (see
    ``_client.TLSContext``), False checks nothing, an ``ssl.SSLContext`` is used as given, a
    callable returns the context. Whichever, it is built on the first https connection.
    ``proxy`` maps a request URL to the :class:`Proxy` it goes through (None: direct).
    ``codec`` parses responses: "httptools", "h11", or None for httptools when installed
    (see :mod:`._http1`)."""

    def __init__(
        self,
        *,
        verify: bool | ssl.SSLContext | Callable[[], ssl.SSLContext] = True,
        proxy: ProxyRoute | None = None,
        max_connections: int = 100,
        max_keepalive: int = 50,
        keepalive_expiry: float = 30.0,
        happy_eyeballs_delay: float | None = HAPPY_EYEBALLS_DELAY,
        codec: str | None = None,
    ) -> None:
        if codec not in (None, "httptools", "h11"):
            raise ValueError(f"unknown codec {codec!r}: httptools or h11")
        self._codec = codec
        self._verify = verify
        self._proxy = proxy
        self._happy_eyeballs_delay = happy_eyeballs_delay
        self._ssl_context: ssl.SSLContext | None = None
        self._max_connections = max_connections
        self._max_keepalive = max_keepalive
        self._keepalive_expiry = keepalive_expiry
        self._connections: set[_Connection] = set()  # open: idle or serving a request
        self._idle: list[_Connection] = []  # least recently used first
        self._opening = 0  # connects in progress (they hold a slot too)
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """The context https connections use (built, and CA certificates loaded, on first use)."""
        if self._ssl_context is None:
            self._ssl_context = _build_ssl_context(self._verify)
        return self._ssl_context

    @property
    def open_connections(self) -> int:
        """Connections open now, idle or serving a request."""
        return len(self._connections)

    @property
    def idle_connections(self) -> int:
        """Connections waiting in the pool for a request."""
        return len(self._idle)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        scheme = request.url.scheme
        if scheme not in _PORTS:
            raise httpx.UnsupportedProtocol(
                f"Request URL has an unsupported protocol '{scheme}://'.", request=request
            )
        url = request.url
        proxy = self._proxy(url) if self._proxy is not None else None
        origin = (scheme, url.raw_host.decode("ascii"), url.port or _PORTS[scheme], proxy)
        timeouts = request.extensions.get("timeout", {})
        deadline = request.extensions.get(DEADLINE)
        conn = await self._checkout(origin, request, timeouts, fresh=False, deadline=deadline)
        try:
            return await self._exchange(conn, request, timeouts)
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            if not (conn.reused and conn.received == 0):
                raise
            self._retire_idle(origin)  # closed at the same idle timeout, most likely
            replayable = isinstance(request.stream, httpx.ByteStream)
            if request.method not in _IDEMPOTENT or not replayable:
                raise StaleConnection(
                    f"The pooled connection died before any response byte ({exc}); "
                    f"the {request.method} was not re-sent: it may or may not have been processed.",
                    request=request,
                ) from exc
        # An idempotent request on a dead idle connection: once more on a fresh one, and say so.
        conn = await self._checkout(origin, request, timeouts, fresh=True, deadline=deadline)
        response = await self._exchange(conn, request, timeouts)
        response.extensions[RESENT] = 1
        return response

    async def post(
        self,
        url: httpx.URL,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        *,
        timeouts: Mapping[str, float | None],
        deadline: float | None,
    ) -> DirectResponse | None:
        """POST ``body`` to ``url`` with exactly ``headers`` (Host and Content-Length
        included) and read up to the end of the response head, without an httpx Request or
        Response: the request :meth:`handle_async_request` would send, and the same errors,
        but no objects per exchange beyond the :class:`DirectResponse`. ``timeouts`` as
        httpx's, ``deadline`` as :data:`DEADLINE`. None when ``url`` goes through a proxy:
        send that one as an httpx request. A dead pooled connection raises
        :class:`StaleConnection` (a POST is never sent twice)."""
        scheme = url.scheme
        if scheme not in _PORTS:
            raise httpx.UnsupportedProtocol(
                f"Request URL has an unsupported protocol '{scheme}://'."
            )
        if self._proxy is not None and self._proxy(url) is not None:
            return None
        origin = (scheme, url.raw_host.decode("ascii"), url.port or _PORTS[scheme], None)
        conn = await self._checkout(origin, None, timeouts, fresh=False, deadline=deadline)
        read_timeout = timeouts.get("read")
        exchange = conn.exchange = _http1.new_exchange("POST", self._codec)
        try:
            try:
                data = exchange.send_head(b"POST", url.raw_path, headers)
                data += exchange.send_data(body) + exchange.send_end()
            except _http1.LocalError as exc:
                raise httpx.LocalProtocolError(str(exc)) from exc
            await _write(conn, None, data, timeouts.get("write"), deadline)
            event = await _next_event(conn, None, read_timeout, deadline)
            if type(event) is not Head:  # no response head can come before its body
                raise httpx.RemoteProtocolError("No response head.")
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            self._discard(conn)
            if not (conn.reused and conn.received == 0):
                raise
            self._retire_idle(origin)  # closed at the same idle timeout, most likely
            raise StaleConnection(
                f"The pooled connection died before any response byte ({exc}); "
                "the POST was not re-sent: it may or may not have been processed."
            ) from exc
        except BaseException:
            self._discard(conn)
            raise
        return DirectResponse(self, conn, event, read_timeout, deadline)

    async def aclose(self) -> None:
        """Close every connection, idle or in use; the pool takes no connection back after."""
        self._closed = True
        writers = [conn.writer for conn in self._connections]
        for conn in list(self._connections):
            self._discard(conn)
        # Aborted transports report closed within a loop iteration or two; never hang on it.
        with suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)

    # --- the pool -----------------------------------------------------------------------------

    async def _checkout(
        self,
        origin: Origin,
        request: httpx.Request | None,
        timeouts: Mapping[str, float | None],
        *,
        fresh: bool,
        deadline: float | None,
    ) -> _Connection:
        """An idle connection to ``origin`` (most recently used first), or a new one once the
        ``max_connections`` cap allows; waits at most the pool timeout for a slot."""
        conn = self._reserve(origin, fresh)
        if conn is None:
            try:
                async with asyncio.timeout(_bound(timeouts.get("pool"), deadline)):
                    while conn is None:
                        await self._wait_for_slot()
                        conn = self._reserve(origin, fresh)
            except TimeoutError:
                raise httpx.PoolTimeout(
                    "Timed out waiting for a connection.", request=request
                ) from None
        if isinstance(conn, _Connection):
            conn.reused, conn.received = True, 0
            return conn
        try:
            connect_timeout = _bound(timeouts.get("connect"), deadline)
            reader, writer = await self._connect(origin, request, connect_timeout)
        except BaseException:
            self._opening -= 1
            self._wake()
            raise
        self._opening -= 1
        conn = _Connection(origin, reader, writer)
        self._connections.add(conn)
        return conn

    def _reserve(self, origin: Origin, fresh: bool) -> _Connection | bool | None:
        """An idle connection, True for a reserved slot to connect in, None to wait."""
        if not fresh:
            now = time.monotonic()
            for index in range(len(self._idle) - 1, -1, -1):
                conn = self._idle[index]
                if conn.origin == origin:
                    del self._idle[index]
                    if conn.usable(now):
                        return conn
                    self._discard(conn)
        if len(self._connections) + self._opening >= self._max_connections:
            if not self._idle:
                return None
            self._discard(self._idle[0])  # make room: close the least recently used
        self._opening += 1
        return True

    async def _wait_for_slot(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._wake()  # woken, then cancelled: pass the turn on
            else:
                with suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _checkin(self, conn: _Connection) -> None:
        """Pool a connection whose exchange completed, if both sides allow keep-alive."""
        exchange, conn.exchange = conn.exchange, None
        if self._closed or exchange is None or not exchange.reusable:
            self._discard(conn)
            return
        conn.expires_at = time.monotonic() + self._keepalive_expiry
        self._idle.append(conn)
        if len(self._idle) > self._max_keepalive:
            self._discard(self._idle[0])
        self._wake()

    def _retire_idle(self, origin: Origin) -> None:
        """Close every idle connection to ``origin``."""
        for conn in [c for c in self._idle if c.origin == origin]:
            self._discard(conn)

    def _discard(self, conn: _Connection) -> None:
        """Close a connection for good (idempotent) and free its slot."""
        if conn in self._idle:
            self._idle.remove(conn)
        if conn in self._connections:
            self._connections.remove(conn)
            conn.writer.transport.abort()  # no TLS close_notify wait, as httpcore
            self._wake()

    async def _connect(
        self, origin: Origin, request: httpx.Request | None, timeout: float | None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to ``origin`` (through its proxy, tunnelled for https), TLS included."""
        scheme, host, port, proxy = origin
        try:
            async with asyncio.timeout(timeout):
                tls = self.ssl_context if scheme == "https" else None
                if proxy is None:
                    return await self._open(host, port, tls)
                reader, writer = await self._open_proxy(proxy)
                if tls is None:  # plain http: requests go to the proxy in absolute form
                    return reader, writer
                try:
                    await _tunnel(reader, writer, host, port, proxy, request)
                    await writer.start_tls(tls, server_hostname=host)
                except BaseException:
                    writer.transport.abort()
                    raise
                return reader, writer
        except TimeoutError:
            raise httpx.ConnectTimeout("Timed out while connecting.", request=request) from None
        except TLSError as exc:  # the CA certificates could not be loaded
            if request is not None:
                exc.request = request
            raise
        except OSError as exc:  # refused, unreachable, DNS, TLS (ssl.SSLError)
            message = _tls_failure(exc, host, port)
            if message is not None:
                raise TLSError(message, request=request) from exc
            raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from exc

    async def _open(
        self, host: str, port: int, tls: ssl.SSLContext | None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """TCP (and TLS) to ``host``; a name's addresses are raced with Happy Eyeballs."""
        delay = None if _is_ip_literal(host) else self._happy_eyeballs_delay
        hostname = host if tls else None
        if delay is None:
            return await asyncio.open_connection(host, port, ssl=tls, server_hostname=hostname)
        loop = asyncio.get_running_loop()
        if _loop_races_addresses(loop):
            return await asyncio.open_connection(
                host, port, ssl=tls, server_hostname=hostname, happy_eyeballs_delay=delay
            )
        return await _race_addresses(loop, host, port, tls, delay)

    async def _open_proxy(self, proxy: Proxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await self._open(proxy.host, proxy.port, None)
        except OSError as exc:
            raise OSError(f"cannot connect to the proxy {proxy.host}:{proxy.port}: {exc}") from exc

    # --- one exchange -------------------------------------------------------------------------

    async def _exchange(
        self, conn: _Connection, request: httpx.Request, timeouts: dict
    ) -> httpx.Response:
        """Send the request and read up to the end of the response headers."""
        read_timeout = timeouts.get("read")
        deadline = request.extensions.get(DEADLINE)
        conn.exchange = _http1.new_exchange(request.method, self._codec)
        try:
            await _send_request(conn, request, timeouts.get("write"), deadline)
            event = await _next_event(conn, request, read_timeout, deadline)
            if type(event) is not Head:  # no response head can come before its body
                raise httpx.RemoteProtocolError("No response head.", request=request)
        except BaseException:
            self._discard(conn)
            raise
        return httpx.Response(
            event.status_code,
            headers=event.headers,
            stream=ResponseStream(self, conn, request, read_timeout, deadline),
            extensions={
                "http_version": b"HTTP/" + event.http_version,
                "reason_phrase": event.reason,
            },
        )


class ResponseStream(httpx.AsyncByteStream):
    """A response body, yielded as it arrives; the connection goes back to the pool only once
    the body was read to its end, and is closed if the stream is closed (or fails) before."""

    def __init__(
        self,
        transport: AsyncioTransport,
        conn: _Connection,
        request: httpx.Request,
        timeout: float | None,
        deadline: float | None,
    ) -> None:
        self._transport = transport
        self._conn: _Connection | None = conn
        self._request = request
        self._timeout = timeout
        self._deadline = deadline

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None:
            return
        try:
            request, timeout, deadline = self._request, self._timeout, self._deadline
            while type(event := await _next_event(conn, request, timeout, deadline)) is bytes:
                yield event
        except BaseException:  # errors, cancellation, and GeneratorExit from an early close
            self._conn = None
            self._transport._discard(conn)
            raise
        self._conn = None
        self._transport._checkin(conn)

    async def aclose(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            self._transport._discard(conn)


class DirectResponse:
    """A response head :meth:`AsyncioTransport.post` read; its body is still on the
    connection, which goes back to the pool once :meth:`read` reached the body's end, and is
    closed by :meth:`close` otherwise."""

    __slots__ = ("_conn", "_deadline", "_timeout", "_transport", "head")

    def __init__(
        self,
        transport: AsyncioTransport,
        conn: _Connection,
        head: Head,
        timeout: float | None,
        deadline: float | None,
    ) -> None:
        self._transport = transport
        self._conn: _Connection | None = conn
        self.head = head
        self._timeout = timeout
        self._deadline = deadline

    @property
    def status_code(self) -> int:
        return self.head.status_code

    def header(self, name: bytes) -> bytes | None:
        """The first value of the header ``name`` (lower case), if any."""
        for key, value in self.head.headers:
            if len(key) == len(name) and key.lower() == name:
                return value
        return None

    def response(self, body: bytes = b"") -> httpx.Response:
        """An httpx Response with this head and ``body`` (as sent, still encoded)."""
        head = self.head
        return httpx.Response(
            head.status_code,
            headers=head.headers,
            stream=httpx.ByteStream(body),
            extensions={"http_version": b"HTTP/" + head.http_version, "reason_phrase": head.reason},
        )

    async def read(self, limit: int) -> tuple[bytes, bool]:
        """The body as sent (still content-encoded) and whether it was whole: reading stops
        past ``limit`` bytes, keeping the first ``limit``, and the connection is closed."""
        conn = self._conn
        if conn is None:
            return b"", True
        parts: list[bytes] = []
        size = 0
        timeout, deadline = self._timeout, self._deadline
        try:
            while type(event := await _next_event(conn, None, timeout, deadline)) is bytes:
                size += len(event)
                if size > limit:
                    parts.append(event[: len(event) - (size - limit)])
                    self.close()
                    return b"".join(parts), False
                parts.append(event)
        except BaseException:
            self.close()
            raise
        self._conn = None
        self._transport._checkin(conn)
        return b"".join(parts), True

    def close(self) -> None:
        """Close the connection unless the body was read to its end (idempotent)."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            self._transport._discard(conn)


async def _send_request(
    conn: _Connection, request: httpx.Request, timeout: float | None, deadline: float | None
) -> None:
    """Write the request as httpx prepared it. A connection error is left for the read to
    report (the server may have answered, say a 413, and closed), as httpcore does."""
    exchange = cast(_http1.Exchange, conn.exchange)
    url, headers, proxy = request.url, request.headers.raw, conn.origin[3]
    target = url.raw_path
    if proxy is not None and conn.origin[0] == "http":  # to the proxy, in absolute form
        target = b"http://" + url.netloc + target
        if proxy.authorization is not None:
            headers = [*headers, (b"Proxy-Authorization", proxy.authorization)]
    try:
        pending = exchange.send_head(request.method.encode("ascii"), target, headers)
        async for chunk in cast(httpx.AsyncByteStream, request.stream):
            if chunk:
                pending += exchange.send_data(chunk)
                if len(pending) >= _READ_SIZE:
                    if not await _write(conn, request, pending, timeout, deadline):
                        return
                    pending = b""
        pending += exchange.send_end()
        await _write(conn, request, pending, timeout, deadline)
    except _http1.LocalError as exc:
        raise httpx.LocalProtocolError(str(exc), request=request) from exc


async def _write(
    conn: _Connection,
    request: httpx.Request | None,
    data: bytes,
    timeout: float | None,
    deadline: float | None,
) -> bool:
    """Send ``data``; False if the connection failed (reset, closed)."""
    conn.writer.write(data)
    if not conn.writer.transport.get_write_buffer_size():
        return True  # all handed to the kernel: nothing to wait for, no timer to arm
    try:
        async with asyncio.timeout(_bound(timeout, deadline)):
            await conn.writer.drain()
    except TimeoutError:
        raise httpx.WriteTimeout("Timed out while sending the request.", request=request) from None
    except OSError:
        return False
    return True


async def _next_event(
    conn: _Connection, request: httpx.Request | None, timeout: float | None, deadline: float | None
) -> _http1.Event:
    """The next event of the response, reading from the socket as needed."""
    exchange = cast(_http1.Exchange, conn.exchange)
    try:
        while (event := exchange.next_event()) is None:
            try:
                async with asyncio.timeout(_bound(timeout, deadline)):
                    data = await conn.reader.read(_READ_SIZE)
            except TimeoutError:
                raise httpx.ReadTimeout("Timed out while reading.", request=request) from None
            except OSError as exc:  # reset by peer, TLS errors
                raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc
            if not data and exchange.awaiting_response:
                raise httpx.RemoteProtocolError(
                    "Server disconnected without sending a response.", request=request
                )
            conn.received += len(data)
            exchange.receive(data)
    except _http1.ProtocolError as exc:
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc
    except _http1.Upgrade:
        raise httpx.UnsupportedProtocol(
            "Upgrade and CONNECT are not supported.", request=request
        ) from None
    return event


async def _tunnel(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    host: str,
    port: int,
    proxy: Proxy,
    request: httpx.Request | None,
) -> None:
    """Ask ``proxy`` for a tunnel to ``host:port``; ProxyError unless it answers 2xx."""
    import h11  # only here: a CONNECT answer has no body, whatever its headers say

    authority = (f"[{host}]:{port}" if ":" in host else f"{host}:{port}").encode("ascii")
    headers = [(b"Host", authority)]
    if proxy.authorization is not None:
        headers.append((b"Proxy-Authorization", proxy.authorization))
    state = h11.Connection(h11.CLIENT, max_incomplete_event_size=_http1.MAX_HEAD_SIZE)
    head = h11.Request(method=b"CONNECT", target=authority, headers=headers)
    writer.write((state.send(head) or b"") + (state.send(h11.EndOfMessage()) or b""))
    where = f"the proxy {proxy.host}:{proxy.port}"
    try:
        event = state.next_event()
        while event is h11.NEED_DATA or isinstance(event, h11.InformationalResponse):
            if event is h11.NEED_DATA:
                state.receive_data(await reader.read(_READ_SIZE))
            event = state.next_event()
    except h11.RemoteProtocolError as exc:
        raise httpx.ProxyError(
            f"{where} gave no HTTP answer to CONNECT {authority.decode()} ({exc})", request=request
        ) from exc
    if not isinstance(event, h11.Response) or not 200 <= event.status_code < 300:
        answer = (
            f"{event.status_code} {event.reason.decode('latin-1')}"
            if isinstance(event, h11.Response)
            else type(event).__name__
        )
        raise httpx.ProxyError(
            f"{where} refused CONNECT {authority.decode()}: {answer}", request=request
        )


# Per event loop class: whether its create_connection takes ``happy_eyeballs_delay``.
_RACING_LOOPS: dict[type, bool] = {}


def _loop_races_addresses(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop.create_connection`` does Happy Eyeballs itself (asyncio's loops do,
    uvloop's does not); looked up once per loop class."""
    if isinstance(loop, asyncio.BaseEventLoop):  # asyncio's own, since Python 3.8
        return True
    kind = type(loop)
    known = _RACING_LOOPS.get(kind)
    if known is None:
        import inspect

        try:
            known = "happy_eyeballs_delay" in inspect.signature(loop.create_connection).parameters
        except (TypeError, ValueError):  # no signature to read: assume the plain one
            known = False
        _RACING_LOOPS[kind] = known
    return known


async def _race_addresses(
    loop: asyncio.AbstractEventLoop,
    host: str,
    port: int,
    tls: ssl.SSLContext | None,
    delay: float,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Happy Eyeballs over ``open_connection``, for loops that cannot race addresses: the
    name's addresses, families interleaved as asyncio orders them, each tried ``delay``
    seconds after the previous one started (at once if it failed); the first to connect (TLS
    included) wins, the others are cancelled or closed."""
    from asyncio.staggered import staggered_race
    from functools import partial

    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys((info[0], info[4][0]) for info in _interleave(infos)))
    if not addresses:
        raise OSError(f"no address for {host}")
    hostname = host if tls else None
    opened: list[asyncio.StreamWriter] = []

    async def attempt(family: int, address: str) -> tuple[Any, Any]:
        reader, writer = await asyncio.open_connection(
            address, port, family=family, ssl=tls, server_hostname=hostname
        )
        if opened:  # another address connected in the same loop iteration
            writer.transport.abort()
            raise OSError(f"{address} connected after another address")
        opened.append(writer)
        return reader, writer

    try:
        winner, _, errors = await staggered_race(
            [partial(attempt, family, address) for family, address in addresses], delay
        )
    except BaseException:  # cancelled: close what may have connected meanwhile
        for writer in opened:
            writer.transport.abort()
        raise
    if winner is not None:
        return cast("tuple[asyncio.StreamReader, asyncio.StreamWriter]", winner)
    raise _no_connection(host, [a for _, a in addresses], errors, tls)


def _interleave(infos: list[Any]) -> list[Any]:
    """Addresses alternating between families, the first family first (RFC 8305, 4)."""
    by_family: dict[int, list[Any]] = {}
    for info in infos:
        by_family.setdefault(info[0], []).append(info)
    lists = list(by_family.values())
    return [info for row in zip_longest(*lists) for info in row if info is not None]


def _no_connection(
    host: str, addresses: list[str], errors: list[Exception | None], tls: ssl.SSLContext | None
) -> BaseException:
    """What failed when no address connected: a TLS failure if there was one (it says what to
    fix), else one OSError naming the addresses tried and what each answered."""
    if tls is not None:
        import ssl

        for error in errors:
            if isinstance(error, ssl.SSLError):
                return error
    tried: dict[str, list[str]] = {}  # message -> addresses
    for address, error in zip(addresses, errors, strict=False):
        if error is not None:
            tried.setdefault(str(error) or type(error).__name__, []).append(address)
    detail = "; ".join(f"{', '.join(where)}: {message}" for message, where in tried.items())
    return OSError(f"cannot connect to {host} ({detail})")


def _is_ip_literal(host: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return True
    return False


# OpenSSL's X509_V_ERR_* codes, grouped by what the user has to change.
_UNKNOWN_CA = {2, 18, 19, 20, 21}  # no issuer here, self-signed, unable to verify the leaf
_WRONG_NAME = {62, 63, 64}  # hostname, email, IP address mismatch
_NOT_NOW = {9, 10}  # not yet valid, expired
# Handshake failures that no retry fixes (a TLS client talking to a plain HTTP port...).
_HANDSHAKE_MISMATCH = {
    "WRONG_VERSION_NUMBER",
    "UNSUPPORTED_PROTOCOL",
    "TLSV1_ALERT_PROTOCOL_VERSION",
    "SSLV3_ALERT_HANDSHAKE_FAILURE",
    "NO_PROTOCOLS_AVAILABLE",
    "PACKET_LENGTH_TOO_LONG",
    "RECORD_LAYER_FAILURE",
}
_TRUST_FIX = (
    "add that CA to the OS trust store, or point SSL_CERT_FILE, SSL_CERT_DIR or "
    "providers[].ca_bundle at it"
)


def _tls_failure(exc: OSError, host: str, port: int) -> str | None:
    """The one-line TLSError message for a TLS failure, None for any other error (a reset or
    an EOF mid-handshake stays a ConnectError: those are transient)."""
    import ssl

    where = f"{host}:{port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        code, detail = exc.verify_code, exc.verify_message or exc.reason or str(exc)
        if code in _UNKNOWN_CA:
            what = f"{where} presented a certificate from a CA this machine does not trust"
            fix = _TRUST_FIX
        elif code in _WRONG_NAME:
            what = f"the certificate {where} presented is not valid for {host}"
            fix = "use a name it is issued for in providers[].base_url"
        elif code in _NOT_NOW:
            what = f"the certificate {where} presented is expired or not yet valid"
            fix = "check that server and this machine's clock"
        else:
            what = f"cannot verify the certificate {where} presented"
            fix = f"if this machine does not trust its CA, {_TRUST_FIX}"
        return f"TLS: {what} ({detail}); {fix}"
    if isinstance(exc, ssl.SSLError) and exc.reason in _HANDSHAKE_MISMATCH:
        return (
            f"TLS: the handshake with {where} failed ({exc.reason}); is it an https server? "
            "Check providers[].base_url"
        )
    return None


def _bound(timeout: float | None, deadline: float | None) -> float | None:
    """``timeout``, shortened to what is left until ``deadline`` (a loop-time instant
    bounding the whole exchange, body included: see :data:`DEADLINE`)."""
    if deadline is None:
        return timeout
    left = deadline - asyncio.get_running_loop().time()
    return left if timeout is None or left < timeout else timeout


def enforces_deadlines(client: httpx.AsyncClient) -> bool:
    """Whether every request ``client`` sends goes through an :class:`AsyncioTransport`,
    which honours the :data:`DEADLINE` extension."""
    return isinstance(getattr(client, "_transport", None), AsyncioTransport) and not getattr(
        client, "_mounts", None
    )


def _build_ssl_context(
    verify: bool | ssl.SSLContext | Callable[[], ssl.SSLContext],
) -> ssl.SSLContext:
    import ssl

    if isinstance(verify, ssl.SSLContext):
        return verify
    if callable(verify):
        return verify()
    if verify:
        from ._client import TLSContext  # the module that builds contexts imports this one

        return TLSContext()()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context
