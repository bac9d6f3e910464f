"""One socket write per answer instead of two. uvicorn writes a response's head as soon as
the application sends ``http.response.start``, and its body in a second write, so every
answer costs two ``send`` calls and two TCP segments. The protocols here are uvicorn's own,
writing through a :class:`CoalescingTransport`: a write is held until the next one (which
then goes out with it) or until the event loop's next turn, whichever comes first. A whole
answer leaves in one write, and no head or stream chunk is held past the current turn.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


class CoalescingTransport:
    """A transport that holds one write until the next write or the loop's next turn; every
    other attribute is the wrapped transport's."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:  # asyncio's transports ignore these too
            return
        held = self._held
        if held is None:
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
            return
        self._held = None
        self._transport.write(held + data)

    def writelines(self, lines: Any) -> None:
        self.write(b"".join(lines))

    def flush(self) -> None:
        """Write what is held now."""
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _Coalescing(asyncio.Protocol):
    """Mixed in before one of uvicorn's HTTP protocols: it writes through a
    :class:`CoalescingTransport`."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        loop = asyncio.get_running_loop()
        super().connection_made(CoalescingTransport(transport, loop))  # type: ignore[arg-type]


class CoalescingH11Protocol(_Coalescing, H11Protocol):
    """uvicorn's h11 protocol, one write per answer."""


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools missing (not CPython): uvicorn serves with h11
    HTTPTOOLS: type[asyncio.Protocol] | None = None
else:
    from .headlimits import HeadLimits

    class CoalescingHttpToolsProtocol(_Coalescing, HeadLimits, HttpToolsProtocol):
        """uvicorn's httptools protocol, one write per answer, the head bounded in time
        and size (see :mod:`.headlimits`; uvicorn's h11 protocol bounds its size itself)."""

    HTTPTOOLS = CoalescingHttpToolsProtocol


def protocol() -> type[asyncio.Protocol]:
    """The HTTP protocol class the gateway serves with: httptools' where it is installed."""
    return HTTPTOOLS or CoalescingH11Protocol
