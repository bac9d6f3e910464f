"""One socket write per answer, or per turn of the event loop for a stream. uvicorn writes a
response's head as soon as the application sends ``http.response.start``, and every body
message in a write of its own, so every answer costs at least two ``send`` calls, and a stream
one per event even when its events arrived together. The protocols here are uvicorn's own,
writing through a :class:`CoalescingTransport`: writes are held until the answer is complete
(then they leave at once, in one write) or until the event loop's next turn, whichever comes
first, and never past :data:`HOLD_LIMIT` bytes. No head or stream event is held past the
current turn.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.h11_impl import H11Protocol

HOLD_LIMIT = 64 * 1024  # bytes held before they are written out, whatever comes next


class CoalescingTransport:
    """A transport that holds writes until :meth:`flush` (the answer is complete) or the
    loop's next turn; every other attribute is the wrapped transport's."""

    __slots__ = ("_held", "_loop", "_size", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] | None = None
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:  # asyncio's transports ignore these too
            return
        held = self._held
        if held is None:
            self._held = [bytes(data)]
            self._size = len(data)
            self._loop.call_soon(self.flush)
            return
        held.append(bytes(data))
        self._size += len(data)
        if self._size >= HOLD_LIMIT:
            self.flush()

    def writelines(self, lines: Any) -> None:
        self.write(b"".join(lines))

    def flush(self) -> None:
        """Write what is held now."""
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + (self._size if self._held else 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _Coalescing(asyncio.Protocol):
    """Mixed in before one of uvicorn's HTTP protocols: it writes through a
    :class:`CoalescingTransport`, and a complete answer leaves at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        loop = asyncio.get_running_loop()
        super().connection_made(CoalescingTransport(transport, loop))  # type: ignore[arg-type]

    def on_response_complete(self) -> None:
        cast(CoalescingTransport, self.transport).flush()  # type: ignore[attr-defined]
        super().on_response_complete()  # type: ignore[misc]


class CoalescingH11Protocol(_Coalescing, H11Protocol):
    """uvicorn's h11 protocol, one write per answer."""


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools missing (not CPython): uvicorn serves with h11
    HTTPTOOLS: type[asyncio.Protocol] | None = None
else:

    class CoalescingHttpToolsProtocol(_Coalescing, HttpToolsProtocol):
        """uvicorn's httptools protocol, one write per answer."""

    HTTPTOOLS = CoalescingHttpToolsProtocol


def protocol() -> type[asyncio.Protocol]:
    """The HTTP protocol class the gateway serves with: httptools' where it is installed."""
    return HTTPTOOLS or CoalescingH11Protocol
