"""One HTTP/1.1 client exchange (a request out, its response in) for the transport, in two
interchangeable codecs: :class:`HttptoolsExchange` parses with httptools (llhttp, in C; the
parser uvicorn uses), :class:`H11Exchange` with h11 (pure Python, installed with httpx).

:func:`new_exchange` picks httptools (a dependency wherever it has a wheel), h11 where it
is missing, and h11 for HEAD requests, whose responses announce a body they do not carry:
httptools cannot be told. Both send the same bytes for the same request, refuse the same
malformed ones, and give the same events for the same response however its bytes are split
(``tests/test_http1.py`` holds them to it). Neither is reused: the transport starts a new
exchange for each request on a kept-alive connection.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Final, NamedTuple, Protocol

try:
    import httptools as _lib
except ImportError:  # no wheel for this platform: h11 only
    _lib = None  # type: ignore[assignment]

MAX_HEAD_SIZE: Final = 100 * 1024  # status line + headers, as httpcore


class ProtocolError(Exception):
    """The server broke HTTP/1.1 (a garbage status line, a body cut short)."""


class LocalError(Exception):
    """The request cannot be sent as given (an illegal header, a body longer than declared)."""


class Upgrade(Exception):
    """The server switched protocols (101), which the transport does not support."""


class Head(NamedTuple):
    """A final response's status line and headers (raw, in the order received)."""

    status_code: int
    headers: list[tuple[bytes, bytes]]
    http_version: bytes  # b"1.1"
    reason: bytes


class _End:
    __slots__ = ()

    def __repr__(self) -> str:
        return "END"


END: Final = _End()  # the response's body is complete
Event = Head | bytes | _End  # bytes: a piece of the body


class Exchange(Protocol):
    """What the transport needs of a codec. ``receive(b"")`` means the server closed."""

    def send_head(
        self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]
    ) -> bytes: ...
    def send_data(self, data: bytes) -> bytes: ...
    def send_end(self) -> bytes: ...
    def receive(self, data: bytes) -> None: ...
    def next_event(self) -> Event | None:
        """The next event, or None until more data is received."""
        ...

    @property
    def awaiting_response(self) -> bool:
        """No final response head has been parsed yet."""
        ...

    @property
    def reusable(self) -> bool:
        """Both messages are complete and the connection may carry another request."""
        ...


PREFERRED: str = "httptools" if _lib is not None else "h11"


def new_exchange(method: str, codec: str | None = None) -> Exchange:
    """An exchange for one request with ``method``, by ``codec`` ("httptools", "h11"; None:
    :data:`PREFERRED`)."""
    if method == "HEAD" or (codec or PREFERRED) == "h11":
        return H11Exchange()
    return HttptoolsExchange()


# --- h11 ------------------------------------------------------------------------------------


class H11Exchange:
    """An exchange on h11's state machine."""

    __slots__ = ("_closed", "_h11", "h11")

    def __init__(self) -> None:
        import h11  # imported only when used: off the start-up path of an `ask`

        self.h11 = h11
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_SIZE)
        self._closed = False  # the server closed (h11 ends a close-delimited body DONE)

    def send_head(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
        h11 = self.h11
        try:
            return self._h11.send(h11.Request(method=method, target=target, headers=headers)) or b""
        except h11.LocalProtocolError as exc:
            raise LocalError(str(exc)) from exc

    def send_data(self, data: bytes) -> bytes:
        h11 = self.h11
        try:
            return self._h11.send(h11.Data(data=data)) or b""
        except h11.LocalProtocolError as exc:
            raise LocalError(str(exc)) from exc

    def send_end(self) -> bytes:
        h11 = self.h11
        try:
            return self._h11.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError as exc:
            raise LocalError(str(exc)) from exc

    def receive(self, data: bytes) -> None:
        self._closed = self._closed or not data
        self._h11.receive_data(data)

    def next_event(self) -> Event | None:
        h11 = self.h11
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise ProtocolError(str(exc)) from exc
            kind = type(event)
            if kind is h11.Data:
                return bytes(event.data)  # type: ignore[union-attr]
            if kind is h11.Response:
                return Head(event.status_code, event.headers.raw_items(),  # type: ignore[union-attr]
                            event.http_version, event.reason)  # type: ignore[union-attr]  # fmt: skip
            if kind is h11.EndOfMessage:
                return END
            if event is h11.NEED_DATA:
                return None
            if event is h11.PAUSED:  # after a 101 (or a CONNECT's 2xx)
                raise Upgrade("the server switched protocols")
            if kind is h11.ConnectionClosed:
                raise ProtocolError("the server closed the connection")
            # an InformationalResponse (100 Continue, 103 Early Hints): the next one

    @property
    def awaiting_response(self) -> bool:
        return self._h11.their_state is self.h11.SEND_RESPONSE

    @property
    def reusable(self) -> bool:
        h11, state = self.h11, self._h11
        return (
            not self._closed
            and state.our_state is h11.DONE
            and state.their_state is h11.DONE
            and not state.trailing_data[0]
        )


# --- httptools ------------------------------------------------------------------------------

# What h11 accepts in a request (h11/_abnf.py), so both codecs refuse the same requests.
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
_FIELD_VALUE = re.compile(rb"(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?")
_TARGET = re.compile(rb"[\x21-\x7e]+")
_DIGITS = re.compile(rb"[0-9]+")
_MAX_LENGTH_DIGITS = 20  # as h11's CONTENT_LENGTH_MAX_DIGITS

_AWAITING, _BODY, _DONE = 0, 1, 2
_FRAMING = frozenset({b"content-length", b"transfer-encoding"})
_FRAMING_LENGTHS = frozenset(len(name) for name in _FRAMING)

# Header lines that passed the checks, by (name, value): neither framing nor Connection.
_CHECKED: dict[tuple[bytes, bytes], tuple[bytes, bytes]] = {}
_CHECKED_KEPT = 512


class HttptoolsExchange:
    """An exchange whose response httptools parses; the request is written here, checked by
    h11's rules. The parser's callbacks queue the events :meth:`next_event` hands out."""

    __slots__ = (
        "_chunked", "_events", "_framed", "_head_size", "_headers", "_informational", "_keep_alive",
        "_parser", "_reason", "_remaining", "_state", "_trailing", "_until_close",
    )  # fmt: skip

    def __init__(self) -> None:
        assert _lib is not None, "httptools is not installed"
        self._parser: _lib.HttpResponseParser | None = _lib.HttpResponseParser(self)
        self._events: deque[Event] = deque()
        self._headers: list[tuple[bytes, bytes]] = []
        self._reason = b""
        self._state = _AWAITING
        self._head_size = 0
        self._informational = False
        self._framed = False  # the head has a Content-Length or a Transfer-Encoding
        self._until_close = False  # the body ends when the connection does
        self._keep_alive = True  # neither side said Connection: close
        self._trailing = False  # bytes after the response: the connection cannot be reused
        self._chunked = False
        self._remaining: int | None = 0  # body bytes still to send (None: chunked)

    # --- the request

    def send_head(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
        if not _TOKEN.fullmatch(method):
            raise LocalError(f"Illegal method characters {method!r}")
        if not _TARGET.fullmatch(target):
            raise LocalError(f"Illegal target characters {target!r}")
        hosts: list[bytes] = []
        rest: list[bytes] = []
        length: bytes | None = None
        chunked = False
        for pair in headers:
            known = _CHECKED.get(pair)
            if known is not None:  # a header line checked before (a provider's are constant)
                (hosts if known[0] == b"host" else rest).append(known[1])
                continue
            name, value = pair
            if not _TOKEN.fullmatch(name):
                raise LocalError(f"Illegal header name {name!r}")
            if not _FIELD_VALUE.fullmatch(value):
                raise LocalError(f"Illegal header value {value!r}")
            lower = name.lower()
            if lower == b"content-length":
                lengths = {part.strip() for part in value.split(b",")}
                if len(lengths) != 1:
                    raise LocalError("conflicting Content-Length headers")
                value = lengths.pop()
                if not _DIGITS.fullmatch(value) or len(value) > _MAX_LENGTH_DIGITS:
                    raise LocalError("bad Content-Length")
                if length is not None:
                    if length != value:
                        raise LocalError("conflicting Content-Length headers")
                    continue  # h11 keeps one
                length = value
            elif lower == b"transfer-encoding":
                if chunked:
                    raise LocalError("multiple Transfer-Encoding headers")
                value = value.lower()
                if value != b"chunked":
                    raise LocalError("Only Transfer-Encoding: chunked is supported")
                chunked = True
            elif lower == b"connection" and b"close" in {
                part.strip().lower() for part in value.split(b",")
            }:
                self._keep_alive = False
            line = b"%s: %s\r\n" % (name, value)
            (hosts if lower == b"host" else rest).append(line)
            if lower not in _FRAMING and lower != b"connection":
                if len(_CHECKED) >= _CHECKED_KEPT:
                    _CHECKED.clear()
                _CHECKED[pair] = (lower, line)
        if not hosts:
            raise LocalError("Missing mandatory Host: header")
        if len(hosts) > 1:
            raise LocalError("Found multiple Host: headers")
        if chunked:
            if length is not None:  # h11 refuses both framings in one message
                raise LocalError("Transfer-Encoding and Content-Length in one request")
            self._chunked, self._remaining = True, None
        else:
            self._remaining = int(length) if length is not None else 0
        return b"%s %s HTTP/1.1\r\n%s%s\r\n" % (method, target, hosts[0], b"".join(rest))

    def send_data(self, data: bytes) -> bytes:
        if self._chunked:
            return b"%x\r\n%s\r\n" % (len(data), data) if data else b""
        assert self._remaining is not None
        if len(data) > self._remaining:
            raise LocalError("Too much data for declared Content-Length")
        self._remaining -= len(data)
        return data

    def send_end(self) -> bytes:
        if self._chunked:
            return b"0\r\n\r\n"
        if self._remaining:
            raise LocalError("Too little data for declared Content-Length")
        return b""

    # --- the response

    def receive(self, data: bytes) -> None:
        assert _lib is not None
        if self._state == _DONE:
            self._trailing = self._trailing or bool(data)
            return
        if not data:
            self._closed()
            return
        assert self._parser is not None  # dropped only once done
        try:
            self._parser.feed_data(data)
        except _lib.HttpParserUpgrade:
            raise Upgrade("the server switched protocols") from None
        except _lib.HttpParserError as exc:
            if self._state != _DONE:  # else: garbage after the response, never parsed
                raise ProtocolError(str(exc) or type(exc).__name__) from exc
            self._trailing = True
        if self._state == _DONE:
            # The parser holds this exchange (its callbacks), and this exchange the parser:
            # dropped now, both are freed when the transport lets go of the exchange, not
            # left as a cycle for the garbage collector (one per request, found by gc).
            self._parser = None
        elif self._state == _AWAITING:
            self._head_size += len(data)
            if self._head_size > MAX_HEAD_SIZE:
                raise ProtocolError("the response head is too long")

    def _closed(self) -> None:
        if self._state == _BODY and self._until_close:
            self._state, self._keep_alive = _DONE, False
            self._events.append(END)
            return
        what = "response" if self._state == _AWAITING else "message body"
        raise ProtocolError(f"peer closed connection without sending complete {what}")

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    @property
    def awaiting_response(self) -> bool:
        return self._state == _AWAITING

    @property
    def reusable(self) -> bool:
        return self._state == _DONE and self._keep_alive and not self._trailing

    # --- httptools' callbacks

    def on_message_begin(self) -> None:
        if self._state == _DONE:  # a second response: pipelined garbage
            self._trailing = True

    def on_status(self, reason: bytes) -> None:
        if self._state == _AWAITING:
            self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._state == _AWAITING:  # not the trailers of a chunked body
            self._headers.append((name, value.rstrip(b" \t")))  # llhttp keeps trailing OWS
            if len(name) in _FRAMING_LENGTHS and name.lower() in _FRAMING:
                self._framed = True

    def on_headers_complete(self) -> None:
        parser = self._parser
        if self._state != _AWAITING or parser is None:
            return
        status = parser.get_status_code()
        if 100 <= status < 200:  # 100 Continue, 103 Early Hints: the final one follows
            self._informational = True
            self._headers, self._reason, self._framed = [], b"", False
            return
        headers, self._headers = self._headers, []
        self._until_close = not self._framed and status not in (204, 304)
        version = parser.get_http_version().encode("ascii")
        self._events.append(Head(status, headers, version, self._reason))
        self._state = _BODY

    def on_body(self, body: bytes) -> None:
        if self._state == _BODY:
            self._events.append(body)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        parser = self._parser
        if self._state == _BODY and parser is not None:
            self._state = _DONE
            # HTTP/1.0's keep-alive is left alone, as h11 does: such servers are rare and old.
            self._keep_alive = (
                self._keep_alive
                and parser.should_keep_alive()
                and parser.get_http_version() == "1.1"
            )
            self._events.append(END)
