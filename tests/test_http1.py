"""The transport's two HTTP/1.1 codecs against each other: for the same request both write
the same bytes or refuse it alike, and for the same response bytes, however they are split
across reads, both give the same head, body, end and reusability, or both fail."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from failover_cli.providers import _http1
from failover_cli.providers._http1 import (
    END,
    H11Exchange,
    Head,
    HttptoolsExchange,
    LocalError,
    ProtocolError,
    Upgrade,
)

pytest.importorskip("httptools")

CODECS = [H11Exchange, HttptoolsExchange]

HOST = (b"Host", b"api.example.com")
JSON = (b"Content-Type", b"application/json")


def written(codec, method, target, headers, parts) -> bytes:
    exchange = codec()
    out = exchange.send_head(method, target, headers)
    for part in parts:
        out += exchange.send_data(part)
    return out + exchange.send_end()


REQUESTS = {
    "json post": (b"POST", b"/v1/chat/completions?x=1",
                  [HOST, (b"Content-Length", b"11"), JSON, (b"Authorization", b"Bearer k")],
                  [b'{"a": true}']),
    "host last, sent first": (b"GET", b"/v1/models", [(b"Accept", b"*/*"), HOST], []),
    "repeated equal lengths": (b"POST", b"/", [HOST, (b"content-length", b"2"),
                                               (b"Content-Length", b"2")], [b"ab"]),
    "list of equal lengths": (b"POST", b"/", [HOST, (b"Content-Length", b"3, 3")], [b"abc"]),
    "chunked": (b"POST", b"/u", [HOST, (b"Transfer-Encoding", b"Chunked")], [b"ab", b"", b"c"]),
    "value with inner spaces": (b"GET", b"/", [HOST, (b"User-Agent", b"a b\tc")], []),
    "empty value": (b"GET", b"/", [HOST, (b"X-Empty", b"")], []),
    "obs-text value": (b"GET", b"/", [HOST, (b"X-Latin", "café".encode("latin-1"))], []),
    "absolute target": (b"GET", b"http://upstream:8080/v1?q", [HOST], []),
}  # fmt: skip


@pytest.mark.parametrize("case", REQUESTS)
def test_both_codecs_write_a_request_byte_for_byte_alike(case):
    method, target, headers, parts = REQUESTS[case]
    by_h11 = written(H11Exchange, method, target, headers, parts)
    assert written(HttptoolsExchange, method, target, headers, parts) == by_h11
    assert by_h11.startswith(method + b" " + target + b" HTTP/1.1\r\nHost: ")


REFUSED = {
    "header injection in a value": ([HOST, (b"X-A", b"ok\r\nX-Injected: 1")], []),
    "a newline alone": ([HOST, (b"X-A", b"ok\nX-Injected: 1")], []),
    "a NUL": ([HOST, (b"X-A", b"a\x00b")], []),
    "leading space": ([HOST, (b"X-A", b" padded")], []),
    "trailing tab": ([HOST, (b"X-A", b"padded\t")], []),
    "bad name": ([HOST, (b"X A", b"v")], []),
    "colon in name": ([HOST, (b"X:A", b"v")], []),
    "no host": ([(b"Accept", b"*/*")], []),
    "two hosts": ([HOST, (b"host", b"other")], []),
    "conflicting lengths": ([HOST, (b"Content-Length", b"2"), (b"Content-Length", b"3")], [b"ab"]),
    "a length list that disagrees": ([HOST, (b"Content-Length", b"2, 3")], [b"ab"]),
    "non-numeric length": ([HOST, (b"Content-Length", b"-1")], []),
    "a 21-digit length": ([HOST, (b"Content-Length", b"1" * 21)], []),
    "gzip transfer coding": ([HOST, (b"Transfer-Encoding", b"gzip")], []),
    "two transfer codings": ([HOST, (b"Transfer-Encoding", b"chunked"),
                              (b"Transfer-Encoding", b"chunked")], []),
    "too much body": ([HOST, (b"Content-Length", b"1")], [b"ab"]),
    "too little body": ([HOST, (b"Content-Length", b"3")], [b"ab"]),
    "a body with no length": ([HOST], [b"x"]),
}  # fmt: skip


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("case", REFUSED)
def test_both_codecs_refuse_a_malformed_request(codec, case):
    headers, parts = REFUSED[case]
    with pytest.raises(LocalError):
        written(codec, b"POST", b"/", headers, parts)


def test_checked_header_lines_are_remembered_boundedly_and_still_checked_as_a_whole(monkeypatch):
    monkeypatch.setattr(_http1, "_CHECKED", {})
    monkeypatch.setattr(_http1, "_CHECKED_KEPT", 4)
    method, target, headers, parts = REQUESTS["json post"]
    first = written(HttptoolsExchange, method, target, headers, parts)
    assert (b"Authorization", b"Bearer k") in _http1._CHECKED  # framing is never remembered
    assert not any(name.lower() == b"content-length" for name, _ in _http1._CHECKED)
    assert written(HttptoolsExchange, method, target, headers, parts) == first
    with pytest.raises(LocalError, match="multiple Host"):  # both lines known, two Hosts
        written(HttptoolsExchange, b"GET", b"/", [HOST, HOST], [])
    for i in range(10):
        written(HttptoolsExchange, b"GET", b"/", [HOST, (b"X-N", b"%d" % i)], [])
    assert len(_http1._CHECKED) <= 4


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize(("method", "target"), [(b"GE T", b"/"), (b"GET", b"/a b"),
                                                 (b"GET", b""), (b"GET", b"/\x7f")])  # fmt: skip
def test_both_codecs_refuse_a_bad_request_line(codec, method, target):
    with pytest.raises(LocalError):
        codec().send_head(method, target, [HOST])


def parsed(codec, parts: list[bytes], *, close: bool) -> tuple:
    """What a codec makes of a response arriving as ``parts`` (then the connection closing,
    if ``close``): the head, the whole body, whether it ended, and whether it is reusable;
    or the error class it raised."""
    exchange = codec()
    exchange.send_head(b"GET", b"/", [HOST])
    exchange.send_end()
    head, body, ended = None, b"", False
    try:
        for part in [*parts, *([b""] if close else [])]:
            if part == b"" and exchange.awaiting_response:
                return ("no response", None)
            exchange.receive(part)
            while not ended and (event := exchange.next_event()) is not None:
                if isinstance(event, Head):
                    assert head is None and not body
                    head = event
                elif event is END:
                    ended = True  # the transport asks for nothing more
                else:
                    assert head is not None
                    body += event
            if ended:
                break
    except (ProtocolError, Upgrade) as exc:
        return (type(exc).__name__, None)
    return (head, body, ended, ended and exchange.reusable)


CRLF = b"\r\n"
RESPONSES = {
    "length": (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello", False),
    "chunked with an extension and trailers": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n", False),
    "informational first": (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n"
                            b"Link: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
                            False),
    "no content": (b"HTTP/1.1 204 No Content\r\n\r\n", False),
    "not modified with a length": (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
                                   False),
    "connection close": (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
                         False),
    "http/1.0": (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
    "http/1.0 keep-alive": (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n"
                            b"Content-Length: 2\r\n\r\nok", False),
    "until close": (b"HTTP/1.1 200 OK\r\nX-A: b\r\n\r\nno length, ends at close", True),
    "empty reason": (b"HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", False),
    "reason with spaces": (b"HTTP/1.1 429 Too Many   Requests\r\nRetry-After: 2\r\n"
                           b"Content-Length: 0\r\n\r\n", False),
    "header value padding": (b"HTTP/1.1 200 OK\r\nX-A:   padded \t\r\nContent-Length: 0\r\n\r\n",
                             False),
    "bytes after the response": (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", False),
    "a second response pipelined": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno", False),
    "cut in the head": (b"HTTP/1.1 200 OK\r\nContent-Le", True),
    "cut in the body": (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", True),
    "cut in a chunk": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", True),
    "garbage": (b"SMTP ready, not HTTP\r\n\r\n", False),
    "bad status code": (b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n", False),
    "bad chunk size": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", False),
    "a length and chunked": (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", False),
    "two different lengths": (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n"
                              b"\r\nab", False),
    "a space before the colon": (b"HTTP/1.1 200 OK\r\nX-A : b\r\nContent-Length: 0\r\n\r\n",
                                 False),
    "obs-fold": (b"HTTP/1.1 200 OK\r\nX-A: a\r\n  b\r\nContent-Length: 0\r\n\r\n", False),
    "a NUL in a value": (b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n", False),
    "switching protocols": (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                            b"Connection: upgrade\r\n\r\n", False),
}  # fmt: skip

# Where llhttp (httptools) is stricter than h11 or tells an error apart: what each gives.
# Either way the transport raises, and the router fails over.
DIFFERENT = {
    # RFC 9112 6.3: a response with both framings "ought to be handled as an error"; h11
    # lets Transfer-Encoding win.
    "a length and chunked": "ProtocolError",
    # Line folding is obsolete (RFC 9112 5.2); h11 unfolds it, llhttp refuses it.
    "obs-fold": "ProtocolError",
    # Both refuse a 101 to a request that asked for no upgrade, by different errors.
    "switching protocols": "Upgrade",
}


@pytest.mark.parametrize("case", RESPONSES)
def test_both_codecs_parse_a_response_alike_in_one_read(case):
    data, close = RESPONSES[case]
    by_h11 = parsed(H11Exchange, [data], close=close)
    by_httptools = parsed(HttptoolsExchange, [data], close=close)
    if case in DIFFERENT:
        assert by_httptools == (DIFFERENT[case], None)
        assert by_h11 != by_httptools
        return
    assert by_httptools == by_h11, (by_httptools, by_h11)


@settings(max_examples=300, deadline=None)
@given(
    case=st.sampled_from(sorted(set(RESPONSES) - set(DIFFERENT))),
    cuts=st.lists(st.integers(0, 400), max_size=6),
)
def test_both_codecs_parse_a_response_alike_however_it_is_split(case, cuts):
    data, close = RESPONSES[case]
    points = sorted({c % (len(data) + 1) for c in cuts})
    parts = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    parts = [p for p in parts if p]
    by_h11 = parsed(H11Exchange, parts, close=close)
    assert parsed(HttptoolsExchange, parts, close=close) == by_h11


@pytest.mark.parametrize("codec", CODECS)
def test_a_head_beyond_the_limit_is_a_protocol_error(codec):
    exchange = codec()
    exchange.send_head(b"GET", b"/", [HOST])
    exchange.send_end()
    exchange.receive(b"HTTP/1.1 200 OK\r\n")
    line = b"X-Padding: " + b"a" * 1000 + CRLF
    with pytest.raises(ProtocolError):
        for _ in range(_http1.MAX_HEAD_SIZE // len(line) + 2):
            exchange.receive(line)
            assert exchange.next_event() is None


def test_a_head_request_is_parsed_by_h11_whatever_the_default():
    """A HEAD's response announces a length it does not carry: only h11 can be told."""
    assert isinstance(_http1.new_exchange("HEAD", "httptools"), H11Exchange)
    assert isinstance(_http1.new_exchange("GET", "httptools"), HttptoolsExchange)
    assert isinstance(_http1.new_exchange("POST", "h11"), H11Exchange)


def test_the_preferred_codec_is_httptools_when_installed():
    pytest.importorskip("httptools")
    assert _http1.PREFERRED == "httptools"


def test_the_transport_takes_a_codec_by_name():
    from failover_cli.providers._transport import AsyncioTransport

    assert AsyncioTransport(codec="h11")._codec == "h11"
    with pytest.raises(ValueError, match="unknown codec"):
        AsyncioTransport(codec="picohttp")


def test_a_plain_request_does_not_import_h11_when_httptools_is_installed():
    """h11's import is most of what the transport used to cost an `ask` at start-up."""
    import subprocess
    import sys

    code = (
        "import asyncio, sys, httpx\n"
        "from failover_cli.providers._transport import AsyncioTransport\n"
        "async def answer(reader, writer):\n"
        "    await reader.readuntil(b'{}')\n"
        "    writer.write(b'HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok')\n"
        "    await writer.drain()\n"
        "async def main():\n"
        "    server = await asyncio.start_server(answer, '127.0.0.1', 0)\n"
        "    port = server.sockets[0].getsockname()[1]\n"
        "    async with httpx.AsyncClient(transport=AsyncioTransport()) as c:\n"
        "        r = await c.post(f'http://127.0.0.1:{port}/', json={})\n"
        "    assert r.content == b'ok', r\n"
        "asyncio.run(main())\n"
        "print('h11' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
