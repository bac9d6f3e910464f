"""A small, fast HTTP/1.1 server (asyncio + h11) on its own thread and event loop.

Each connection is an :class:`asyncio.Protocol` feeding an ``h11`` state machine, with
keep-alive. A response that needs no waiting is written with one ``write``; anything timed
(latency, token pacing, drip) runs as a task, cancelled when the connection goes. Stopping
the server resets every open connection, hanging ones included.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from http import HTTPStatus
from urllib.parse import parse_qsl

import h11

from .engine import Plan
from .wire import RecordedRequest

Handler = Callable[[RecordedRequest], Plan]

_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
_REASONS[529] = b"Site Overloaded"


class _Connection(asyncio.Protocol):
    """One client connection: parse requests with h11, answer each with the handler's plan."""

    def __init__(self, handler: Handler, live: set[_Connection]) -> None:
        self._handler = handler
        self._live = live
        self._h11 = h11.Connection(h11.SERVER)
        self._transport: asyncio.Transport | None = None
        self._target = b""
        self._method = b""
        self._headers: Sequence[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._busy = False  # a response (or a hang) is in progress
        self._task: asyncio.Task[None] | None = None
        self._writable: asyncio.Event | None = None  # while the transport is paused

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._live.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            self._h11.receive_data(data)
        except RuntimeError:  # data after the client said it was done: ignore it
            return
        if not self._busy:
            self._advance()

    def eof_received(self) -> bool:
        try:
            self._h11.receive_data(b"")
        except RuntimeError:
            return False
        if not self._busy:
            self._advance()
        return False  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self._live.discard(self)
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def pause_writing(self) -> None:
        self._writable = asyncio.Event()

    def resume_writing(self) -> None:
        if self._writable is not None:
            self._writable.set()
            self._writable = None

    def abort(self) -> None:
        """Reset the connection (RST, not FIN): what a crashed peer or a dropped link looks like."""
        if self._transport is None:
            return
        sock = self._transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self._transport.abort()

    # --- request side -----------------------------------------------------------------------

    def _advance(self) -> None:
        """Consume parsed events until a request is being answered or the data runs out."""
        while not self._busy:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as error:
                self._reject(error.error_status_hint)
                return
            kind = type(event)  # `type() is` beats isinstance chains on this hot path
            if kind is h11.Request:
                assert isinstance(event, h11.Request)
                self._method, self._target = event.method, event.target
                self._headers, self._body = event.headers, []
            elif kind is h11.Data:
                assert isinstance(event, h11.Data)
                self._body.append(event.data)
            elif kind is h11.EndOfMessage:
                self._dispatch()
            elif kind is h11.ConnectionClosed:
                self._close()
                return
            else:  # NEED_DATA, or PAUSED while our response is still going
                return

    def _dispatch(self) -> None:
        self._busy = True
        path, _, query = self._target.decode("latin-1").partition("?")
        body = b"".join(self._body)
        request = RecordedRequest(
            method=self._method.decode("ascii"),
            path=path,
            query=dict(parse_qsl(query)),
            headers={
                name.decode("latin-1"): value.decode("latin-1") for name, value in self._headers
            },
            body=body,
            json=_parse_json(body),
        )
        try:
            plan = self._handler(request)
        except Exception:  # a simulator bug: say so on stderr and to the client
            traceback.print_exc(file=sys.stderr)
            plan = Plan(500, [("content-type", "text/plain")], [(0.0, b"simulator error")])
        if plan.ending == "hang":
            return
        if self._method == b"HEAD":
            plan.pieces = []
        if plan.instant:
            data = self._start(plan)
            for _, piece in plan.pieces:
                data += self._h11.send(h11.Data(data=piece))
            self._write(data + self._h11.send(h11.EndOfMessage()))
            self._next_cycle()
        else:
            self._task = asyncio.get_running_loop().create_task(self._send_slowly(plan))

    # --- response side ----------------------------------------------------------------------

    def _start(self, plan: Plan) -> bytes:
        headers = list(plan.headers)
        if plan.chunked:
            headers.append(("transfer-encoding", "chunked"))
        else:
            length = plan.content_length
            if length is None:
                length = sum(len(piece) for _, piece in plan.pieces)
            headers.append(("content-length", str(length)))
        response = h11.Response(
            status_code=plan.status, headers=headers, reason=_REASONS.get(plan.status, b"")
        )
        return self._h11.send(response)

    async def _send_slowly(self, plan: Plan) -> None:
        try:
            if plan.wait:
                await asyncio.sleep(plan.wait)
            self._write(self._start(plan))
            for pause, piece in plan.pieces:
                if pause:
                    await asyncio.sleep(pause)
                if not await self._send(piece):
                    return
            while plan.repeat is not None:  # until the client goes away
                if not await self._send(plan.repeat):
                    return
                await asyncio.sleep(0)  # let other connections have the loop
        except h11.LocalProtocolError:
            self.abort()
            return
        self._finish(plan.ending)

    async def _send(self, piece: bytes) -> bool:
        """Write one piece of the body once the transport takes more; False if it is gone."""
        if self._writable is not None:
            await self._writable.wait()
        if self._transport is None or self._transport.is_closing():
            return False
        self._write(self._h11.send(h11.Data(data=piece)))
        return True

    def _finish(self, ending: str) -> None:
        if ending == "end":
            self._write(self._h11.send(h11.EndOfMessage()))
            self._task = None
            self._next_cycle()
            self._advance()
        elif ending == "end_close":
            self._write(self._h11.send(h11.EndOfMessage()))
            self._close()
        elif ending == "cut":
            self._close()
        elif ending == "abort":
            self.abort()
        # "stall": nothing more, ever; the connection stays open until either side closes it

    def _next_cycle(self) -> None:
        """After a response: get ready for the next request on this connection, or close it."""
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
            self._busy = False
        else:
            self._close()

    def _reject(self, status: int) -> None:
        if self._h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            response = h11.Response(status_code=status, headers=[("content-length", "0")])
            self._write(self._h11.send(response) + self._h11.send(h11.EndOfMessage()))
        self._close()

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def _parse_json(body: bytes) -> object:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


class ServerThread:
    """Serve ``handler`` on ``host:port`` from a dedicated thread running its own event loop."""

    def __init__(self, handler: Handler, host: str, port: int) -> None:
        self._handler = handler
        self._host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: OSError | None = None

    def start(self) -> int:
        """Bind and start serving; returns the port. Raises ``OSError`` if it cannot bind."""
        self._thread = threading.Thread(target=self._run, name="failover-sim", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self.port

    def cpu_time(self) -> float | None:
        """CPU seconds the server thread has used so far (None where the OS cannot tell)."""
        thread = self._thread
        if thread is None or thread.ident is None or not hasattr(time, "pthread_getcpuclockid"):
            return None
        try:
            return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except OSError:  # the thread is gone
            return None

    def stop(self) -> None:
        """Stop serving and reset every open connection; returns once the thread is gone."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)  # this thread's own loop
        try:
            self._serve(loop)
        finally:
            loop.close()
            asyncio.set_event_loop(None)
            self._ready.set()  # if binding failed, start() learns it now

    def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        live: set[_Connection] = set()
        try:
            server = loop.run_until_complete(
                loop.create_server(
                    lambda: _Connection(self._handler, live), self._host, self.port, backlog=1024
                )
            )
        except OSError as error:
            self._error = error
            return
        self.port = server.sockets[0].getsockname()[1]
        self._loop = loop
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            for connection in list(live):
                connection.abort()
            loop.run_until_complete(server.wait_closed())
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
