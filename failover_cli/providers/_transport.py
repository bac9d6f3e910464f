"""An httpx transport speaking HTTP/1.1 over plain asyncio: no httpcore, no anyio.

Why: a one-shot ``failover ask`` pays for every import. httpx's default async transport costs
~35 ms per process here: importing httpcore (~17 ms, when an AsyncClient builds it) and anyio's
asyncio backend (~18 ms, on the first request: httpcore's pool locks use anyio). This transport
parses with ``h11`` (installed with httpx) over ``asyncio.open_connection``, and imports
``ssl``/``certifi`` and loads CA certificates only when the first https connection opens.

What it does: keep-alive pooling per (scheme, host, port) with httpx's limits, the
connect/read/write/pool timeouts of ``request.extensions``, incremental response bodies, and
the httpx exceptions httpcore would have raised (``_async/http11.py``, ``_backends/anyio.py``).
A request whose *reused* connection fails before any response byte (the server closed it at
its keep-alive timeout) is retried once on a fresh connection if its body can be replayed.

What it does not do: HTTP/2, proxies, ``trust_env`` (SSL_CERT_FILE...), Unix sockets,
upgrades/CONNECT, client certificates. The project uses ``trust_env=False`` and no proxies.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import TYPE_CHECKING

import h11
import httpx

if TYPE_CHECKING:
    import ssl

_READ_SIZE = 64 * 1024
_MAX_HEAD_SIZE = 100 * 1024  # status line + headers, as httpcore
_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]

# A request extension: the loop-time instant by which the whole exchange (connect, send, the
# response and all of its body) must be done; each wait is cut to what is left of it, and
# running out raises the httpx timeout of the phase it happens in. One timer per wait that
# is armed anyway, instead of a second one around the whole request.
DEADLINE = "failover.deadline"


class _Connection:
    """One TCP (or TLS) connection and the h11 state machine of its current exchange."""

    __slots__ = ("expires_at", "h11", "origin", "reader", "received", "reused", "writer")

    def __init__(self, origin: Origin, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.origin = origin
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD_SIZE)
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
        )


class AsyncioTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 for ``httpx.AsyncClient(transport=...)`` on asyncio alone.

    ``verify``: True checks certificates against certifi's CA bundle (the system's if certifi is
    missing), False checks nothing, an ``ssl.SSLContext`` is used as given. The context is built
    on the first https connection."""

    def __init__(
        self,
        *,
        verify: bool | ssl.SSLContext = True,
        max_connections: int = 100,
        max_keepalive: int = 50,
        keepalive_expiry: float = 30.0,
    ) -> None:
        self._verify = verify
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
        origin = (scheme, request.url.raw_host.decode("ascii"), request.url.port or _PORTS[scheme])
        timeouts = request.extensions.get("timeout", {})
        conn = await self._checkout(origin, request, timeouts, fresh=False)
        try:
            return await self._exchange(conn, request, timeouts)
        except (httpx.RemoteProtocolError, httpx.ReadError):
            replayable = isinstance(request.stream, httpx.ByteStream)
            if not (conn.reused and conn.received == 0 and replayable):
                raise
        # The idle connection was dead (closed at the server's keep-alive timeout): retry once.
        conn = await self._checkout(origin, request, timeouts, fresh=True)
        return await self._exchange(conn, request, timeouts)

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
        self, origin: Origin, request: httpx.Request, timeouts: dict, *, fresh: bool
    ) -> _Connection:
        """An idle connection to ``origin`` (most recently used first), or a new one once the
        ``max_connections`` cap allows; waits at most the pool timeout for a slot."""
        conn = self._reserve(origin, fresh)
        if conn is None:
            try:
                async with asyncio.timeout(_bound(timeouts.get("pool"), request)):
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
            connect_timeout = _bound(timeouts.get("connect"), request)
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
        state = conn.h11
        if (
            self._closed
            or state.our_state is not h11.DONE
            or state.their_state is not h11.DONE
            or state.trailing_data[0]
        ):
            self._discard(conn)
            return
        state.start_next_cycle()
        conn.expires_at = time.monotonic() + self._keepalive_expiry
        self._idle.append(conn)
        if len(self._idle) > self._max_keepalive:
            self._discard(self._idle[0])
        self._wake()

    def _discard(self, conn: _Connection) -> None:
        """Close a connection for good (idempotent) and free its slot."""
        if conn in self._idle:
            self._idle.remove(conn)
        if conn in self._connections:
            self._connections.remove(conn)
            conn.writer.transport.abort()  # no TLS close_notify wait, as httpcore
            self._wake()

    async def _connect(
        self, origin: Origin, request: httpx.Request, timeout: float | None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        scheme, host, port = origin
        tls = self.ssl_context if scheme == "https" else None
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.open_connection(
                    host, port, ssl=tls, server_hostname=host if tls else None
                )
        except TimeoutError:
            raise httpx.ConnectTimeout("Timed out while connecting.", request=request) from None
        except OSError as exc:  # refused, unreachable, DNS, TLS verification (ssl.SSLError)
            raise httpx.ConnectError(str(exc), request=request) from exc

    # --- one exchange -------------------------------------------------------------------------

    async def _exchange(
        self, conn: _Connection, request: httpx.Request, timeouts: dict
    ) -> httpx.Response:
        """Send the request and read up to the end of the response headers."""
        read_timeout = timeouts.get("read")
        try:
            await _send_request(conn, request, timeouts.get("write"))
            event = await _next_event(conn, request, read_timeout)
            while isinstance(event, h11.InformationalResponse):  # 100 Continue, 103...
                event = await _next_event(conn, request, read_timeout)
            if not isinstance(event, h11.Response):  # h11 paused after a 101 or a CONNECT
                raise httpx.UnsupportedProtocol(
                    "Upgrade and CONNECT are not supported.", request=request
                )
        except BaseException:
            self._discard(conn)
            raise
        return httpx.Response(
            event.status_code,
            headers=event.headers.raw_items(),
            stream=_ResponseStream(self, conn, request, read_timeout),
            extensions={
                "http_version": b"HTTP/" + event.http_version,
                "reason_phrase": event.reason,
            },
        )


class _ResponseStream(httpx.AsyncByteStream):
    """A response body, yielded as it arrives; the connection goes back to the pool only once
    the body was read to its end, and is closed if the stream is closed (or fails) before."""

    def __init__(
        self,
        transport: AsyncioTransport,
        conn: _Connection,
        request: httpx.Request,
        timeout: float | None,
    ) -> None:
        self._transport = transport
        self._conn: _Connection | None = conn
        self._request = request
        self._timeout = timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None:
            return
        try:
            while isinstance(
                event := await _next_event(conn, self._request, self._timeout), h11.Data
            ):
                yield bytes(event.data)
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


async def _send_request(conn: _Connection, request: httpx.Request, timeout: float | None) -> None:
    """Write the request as httpx prepared it. A connection error is left for the read to
    report (the server may have answered, say a 413, and closed), as httpcore does."""
    state = conn.h11
    try:
        head = h11.Request(
            method=request.method, target=request.url.raw_path, headers=request.headers.raw
        )
        pending = state.send(head) or b""
        async for chunk in request.stream:
            if chunk:
                pending += state.send(h11.Data(data=chunk)) or b""
                if len(pending) >= _READ_SIZE:
                    if not await _write(conn, request, pending, timeout):
                        return
                    pending = b""
        pending += state.send(h11.EndOfMessage()) or b""
        await _write(conn, request, pending, timeout)
    except h11.LocalProtocolError as exc:
        raise httpx.LocalProtocolError(str(exc), request=request) from exc


async def _write(
    conn: _Connection, request: httpx.Request, data: bytes, timeout: float | None
) -> bool:
    """Send ``data``; False if the connection failed (reset, closed)."""
    conn.writer.write(data)
    if not conn.writer.transport.get_write_buffer_size():
        return True  # all handed to the kernel: nothing to wait for, no timer to arm
    try:
        async with asyncio.timeout(_bound(timeout, request)):
            await conn.writer.drain()
    except TimeoutError:
        raise httpx.WriteTimeout("Timed out while sending the request.", request=request) from None
    except OSError:
        return False
    return True


async def _next_event(
    conn: _Connection, request: httpx.Request, timeout: float | None
) -> h11.Event | type[h11.PAUSED]:
    """The next h11 event of the response, reading from the socket as needed."""
    state = conn.h11
    while True:
        try:
            event = state.next_event()
        except h11.RemoteProtocolError as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        if event is not h11.NEED_DATA:
            return event
        try:
            async with asyncio.timeout(_bound(timeout, request)):
                data = await conn.reader.read(_READ_SIZE)
        except TimeoutError:
            raise httpx.ReadTimeout("Timed out while reading.", request=request) from None
        except OSError as exc:  # reset by peer, TLS errors
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc
        if not data and state.their_state is h11.SEND_RESPONSE:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        conn.received += len(data)
        state.receive_data(data)


def _bound(timeout: float | None, request: httpx.Request) -> float | None:
    """``timeout``, shortened to what is left of the request's ``deadline`` extension (a
    loop-time instant bounding the whole exchange, body included: see :data:`DEADLINE`)."""
    deadline = request.extensions.get(DEADLINE)
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


def _build_ssl_context(verify: bool | ssl.SSLContext) -> ssl.SSLContext:
    import ssl

    if isinstance(verify, ssl.SSLContext):
        return verify
    if not verify:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        try:
            import certifi
        except ImportError:
            context = ssl.create_default_context()
        else:
            context = ssl.create_default_context(cafile=certifi.where())
    context.set_alpn_protocols(["http/1.1"])
    return context
