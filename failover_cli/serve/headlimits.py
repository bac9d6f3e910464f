"""Bounds on a request's head, which uvicorn's httptools protocol leaves open: a connection
that sends nothing, or its request line and headers a byte at a time, would otherwise hold
one of the worker's connections for ever (enough of them and every client is turned away),
and headers of any size were kept in memory. A head must arrive within
:data:`HEAD_TIMEOUT` seconds of the connection or of its request's first byte, and be at
most :data:`MAX_HEAD_BYTES`; otherwise the answer is a 408 or a 431 and the connection is
closed. Between requests uvicorn's own keep-alive timeout closes an idle connection.

The clock is one sweep per second of the worker's open connections, not a timer per
request: a request pays for two attribute writes.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import Collection
from typing import Any

HEAD_TIMEOUT = 10.0  # seconds for a request line and its headers
MAX_HEAD_BYTES = 64 * 1024  # nginx takes 4 x 8 KiB by default, Node 16 KiB
SWEEP_INTERVAL = 1.0

_sweeping: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()  # loops swept


class HeadLimits:
    """Mixed in before uvicorn's ``HttpToolsProtocol``: the head's time and size bounds."""

    _head_since: float | None = None  # loop time the head began, while it is arriving
    _head_bytes = 0

    loop: asyncio.AbstractEventLoop
    server_state: Any
    transport: Any

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._head_since = self.loop.time()  # a first request is due
        if self.loop not in _sweeping:
            _sweeping.add(self.loop)
            self.loop.call_later(SWEEP_INTERVAL, _sweep, self.loop, self.server_state.connections)

    def on_message_begin(self) -> None:
        super().on_message_begin()  # type: ignore[misc]
        self._head_since = self.loop.time()
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._head_since = None
        super().on_headers_complete()  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # type: ignore[misc]
        if self._head_since is not None:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self.refuse(431, f"the request head is larger than {MAX_HEAD_BYTES} bytes")

    def refuse(self, status: int, message: str) -> None:
        """Answer ``status`` with ``message`` (an OpenAI-shaped error: the path, which would
        say the format, may not have arrived) and close the connection."""
        self._head_since = None
        error = {"message": message, "type": "invalid_request_error", "param": None,
                 "code": None}  # fmt: skip
        body = json.dumps({"error": error}).encode()
        reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        head = (
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n" % (status, reason, len(body))
        )
        if not self.transport.is_closing():
            self.transport.write(head + body)
            self.transport.close()


def _sweep(loop: asyncio.AbstractEventLoop, connections: Collection[Any]) -> None:
    """Refuse every connection whose head is late; again in a second while any is open."""
    now = loop.time()
    for conn in list(connections):
        since = getattr(conn, "_head_since", None)
        if since is not None and now - since > HEAD_TIMEOUT:
            conn.refuse(408, f"the request head took longer than {HEAD_TIMEOUT:g} s")
    if connections:
        loop.call_later(SWEEP_INTERVAL, _sweep, loop, connections)
    else:
        _sweeping.discard(loop)
