"""A provider that answers badly on purpose: hostile payloads, oversized and endless bodies,
and secrets in the way. Every one must fail over as a ProviderError (most as a transient
``malformed`` or ``oversized``), never crash the caller, never cost unbounded memory, and never
show a key.

Payloads come over httpx.MockTransport; bodies that must really stream (a gzip bomb, an endless
body) come from a raw HTTP server on 127.0.0.1 written here, so nothing of the simulator is
needed to exercise them.
"""

from __future__ import annotations

import asyncio
import json
import math
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from test_providers import (
    ENV,
    KEY,
    KINDS,
    Chunks,
    anthropic_stream,
    assert_clean,
    collect,
    error_body,
    events,
    gemini_chunk,
    make,
    ok_json,
    openai_stream,
    stream_body,
    stream_error,
    stream_response,
)

from failover_cli.errors import ProviderError, ProviderUnavailable, TransientError
from failover_cli.providers import create_provider, make_client
from failover_cli.providers._http import translate_errors
from failover_cli.types import CompletionRequest, ProviderConfig, StreamEnd, TextDelta, Usage

DEEP = "[" * 100_000 + "]" * 100_000
MIB = 1024 * 1024
MAX_TOKENS = 10_000_000  # failover_cli.providers._http.MAX_TOKENS: the clamp of a token count


# --- payload surgery: each dialect's answer with one field replaced ----------------------------


def whole_with(kind: str, *, text: Any = "ok", tokens: Any = 7) -> dict[str, Any]:
    """A well-formed whole answer whose text and output token count are replaced."""
    data = ok_json(kind)
    if kind == "anthropic":
        data["content"][0]["text"] = text
        data["usage"]["output_tokens"] = tokens
    elif kind == "openai":
        data["choices"][0]["message"]["content"] = text
        data["usage"]["completion_tokens"] = tokens
    elif kind == "ollama":
        data["message"]["content"] = text
        data["eval_count"] = tokens
    else:
        data["candidates"][0]["content"]["parts"][0]["text"] = text
        data["usageMetadata"]["candidatesTokenCount"] = tokens
    return data


def stream_with(kind: str, *, text: Any = "ok", tokens: Any = 7) -> str:
    """A well-formed stream: one good delta, one delta whose text is ``text``, and a finish
    reporting ``tokens`` output tokens."""
    if kind == "ollama":
        lines = [json.loads(line) for line in stream_body(kind, "ok", "x").splitlines()]
        lines[1]["message"]["content"] = text
        lines[-1]["eval_count"] = tokens
        return "".join(json.dumps(line) + "\n" for line in lines)
    if kind == "anthropic":
        pairs = anthropic_stream("ok", "x")
        pairs[4][1]["delta"]["text"] = text
        pairs[-2][1]["usage"]["output_tokens"] = tokens
    elif kind == "openai":
        pairs = openai_stream("ok", "x")
        pairs[2][1]["choices"][0]["delta"]["content"] = text
        pairs[-2][1]["usage"]["completion_tokens"] = tokens
    else:
        pairs = [
            (None, gemini_chunk("ok")),
            (None, gemini_chunk("x")),
            (None, gemini_chunk("", finish="STOP", usage=True)),
        ]
        pairs[1][1]["candidates"][0]["content"]["parts"][0]["text"] = text
        pairs[-1][1]["usageMetadata"]["candidatesTokenCount"] = tokens
    return events(*pairs)


def raw_json(data: Any, **literals: str) -> bytes:
    """``data`` as JSON, with each placeholder string ``"@name"`` replaced by raw JSON."""
    text = json.dumps(data)
    for name, literal in literals.items():
        text = text.replace(json.dumps(f"@{name}"), literal)
    return text.encode()


async def outcome(provider, streamed: bool) -> Any:
    """The completion (or the stream's events), or the ProviderError raised."""
    try:
        if streamed:
            return await collect(provider)
        return await provider.complete(CompletionRequest("hi"), timeout=5)
    except ProviderError as exc:
        return exc


def respond(kind: str, streamed: bool, body: bytes) -> httpx.Response:
    if streamed:
        return stream_response(kind, Chunks(body))
    return httpx.Response(200, content=body, headers={"content-type": "application/json"})


# --- malformed payloads: malformed, never a crash ------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize(
    "poison",
    [
        "deep_json",  # RecursionError in json.loads
        "number_text",  # a TypeError wherever text is joined
        "object_text",
        "list_text",
        "string_count",
        "object_count",
    ],
)
async def test_malformed_payloads_are_transient_malformed(kind, streamed, poison):
    if poison == "deep_json":
        body = (stream_with if streamed else whole_with)(kind, text="@deep")
        raw = raw_json(body, deep=DEEP) if not streamed else body.replace('"@deep"', DEEP).encode()
    else:
        field = {
            "number_text": {"text": 42},
            "object_text": {"text": {"a": 1}},
            "list_text": {"text": ["a"]},
            "string_count": {"tokens": "7"},
            "object_count": {"tokens": {"n": 7}},
        }[poison]
        body = (stream_with if streamed else whole_with)(kind, **field)  # type: ignore[arg-type]
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    provider, _ = make(kind, respond(kind, streamed, raw))
    result = await outcome(provider, streamed)
    assert isinstance(result, TransientError), result
    assert result.reason == "malformed"
    if streamed and poison.endswith("text"):
        assert result.partial_text == "ok"  # what came before the bad delta is kept


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("1e400", MAX_TOKENS),
        ("-5", 0),
        ("NaN", 0),
        ("-Infinity", 0),
        ("1e300", MAX_TOKENS),
        ("123456789012345678901234567890", MAX_TOKENS),
        ("7.9", 7),
    ],
)
async def test_absurd_token_counts_are_clamped(kind, streamed, literal, expected):
    if streamed:
        raw = stream_with(kind, tokens="@n").replace('"@n"', literal).encode()
    else:
        raw = raw_json(whole_with(kind, tokens="@n"), n=literal)
    provider, _ = make(kind, respond(kind, streamed, raw))
    result = await outcome(provider, streamed)
    usage = result[-1].usage if streamed else result.usage
    assert usage.output_tokens == expected
    text = "".join(e.text for e in result if isinstance(e, TextDelta)) if streamed else result.text
    assert text == ("okok" if streamed else "ok")


@pytest.mark.parametrize("kind", KINDS)
async def test_wrong_types_for_names_fall_back_to_defaults(kind):
    data = ok_json(kind)
    key = {"anthropic": "model", "openai": "model", "ollama": "model", "gemini": "modelVersion"}
    data[key[kind]] = {"not": "a name"}
    provider, _ = make(kind, httpx.Response(200, json=data))
    result = await provider.complete(CompletionRequest("hi"), timeout=5)
    assert result.model == "m-1"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("payload", ["[1, 2]", '"text"', "null", "42", "{}"])
async def test_stream_events_of_the_wrong_shape_are_malformed(kind, payload):
    line = payload + "\n" if kind == "ollama" else events(("content_block_delta", payload))
    body = stream_body(kind, "ok", end=False) + line
    provider, _ = make(kind, stream_response(kind, body))
    exc, _ = await stream_error(provider)
    assert isinstance(exc, ProviderError)
    assert exc.reason in ("malformed", "truncated")  # never a crash


async def test_an_unexpected_exception_inside_an_attempt_becomes_a_provider_error():
    for raised in (RecursionError("deep"), OverflowError("big"), MemoryError(), KeyError("k")):
        with pytest.raises(TransientError) as info, translate_errors("p", [KEY]) as call:
            call.in_body = True
            raise raised
        assert info.value.reason == "malformed"
        assert info.value.provider == "p"
        assert type(raised).__name__ in info.value.message
    with pytest.raises(asyncio.CancelledError), translate_errors("p"):  # never swallowed
        raise asyncio.CancelledError


# --- bounded reads over MockTransport ----------------------------------------------------------


async def test_a_stream_longer_than_its_cap_is_oversized():
    from failover_cli.providers._http import Limits

    body = stream_body("openai", *(["word "] * 2000), end=False)
    pieces = [body[i : i + 1024] for i in range(0, len(body), 1024)]
    provider, _ = make("openai", stream_response("openai", Chunks(*pieces)))
    provider.limits = Limits(stream=64 * 1024)
    exc, got = await stream_error(provider)
    assert (type(exc), exc.reason) == (TransientError, "oversized")
    assert 0 < len(got) < 2000 and exc.partial_text == "word " * len(got)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_stream_line_longer_than_its_cap_is_oversized(kind):
    huge = "data: " + "x" * (2 * MIB) if kind != "ollama" else "x" * (2 * MIB)
    chunks = [huge[i : i + 65536] for i in range(0, len(huge), 65536)]
    body = Chunks(stream_body(kind, "ok", end=False), *chunks, then="hang")
    provider, _ = make(kind, stream_response(kind, body))
    exc, _ = await stream_error(provider)
    assert (exc.reason, exc.partial_text) == ("oversized", "ok")
    assert body.closed


@pytest.mark.parametrize("kind", KINDS)
async def test_what_precedes_an_overlong_line_in_the_same_chunk_is_delivered_first(kind):
    """One chunk holds a whole event and the start of a line past the cap: the event comes
    through before the stream is cut, as when they arrive apart."""
    from failover_cli.providers._http import Limits

    huge = ("data: " if kind != "ollama" else "") + "x" * 5000
    body = Chunks(stream_body(kind, "ok", end=False) + huge, then="hang")
    provider, _ = make(kind, stream_response(kind, body))
    provider.limits = Limits(line=4096)
    exc, _ = await stream_error(provider)
    assert (exc.reason, exc.partial_text) == ("oversized", "ok")


async def test_an_sse_event_of_many_small_data_lines_is_capped_too():
    many = "data: " + "y" * 1000 + "\n"
    body = Chunks(stream_body("gemini", "ok", end=False), *([many] * 1200))
    provider, _ = make("gemini", stream_response("gemini", body))
    exc, _ = await stream_error(provider)
    assert exc.reason == "oversized"


async def test_a_whole_answer_larger_than_its_cap_is_oversized():
    from failover_cli.providers._http import Limits

    data = ok_json("openai", "z" * 5000)
    provider, _ = make("openai", httpx.Response(200, json=data))
    provider.limits = Limits(body=4096)
    with pytest.raises(TransientError) as info:
        await provider.complete(CompletionRequest("hi"), timeout=5)
    assert info.value.reason == "oversized"
    assert "larger than 4 KiB" in info.value.message


class Counted(Chunks):
    """Chunks that count how many of them the client pulled."""

    pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in super().__aiter__():
            self.pulled += 1
            yield chunk


async def test_an_error_body_is_read_only_up_to_its_cap():
    body = Counted(json.dumps(error_body("openai", "overloaded")), *([b"x" * 65536] * 10_000))
    provider, _ = make("openai", httpx.Response(503, stream=body))
    with pytest.raises(TransientError) as info:
        await provider.complete(CompletionRequest("hi"), timeout=5)
    assert (info.value.status, info.value.reason) == (503, "overloaded")
    assert body.closed and body.pulled <= 3  # 64 KiB read, not 640 MiB


async def test_lines_split_on_cr_lf_and_crlf_across_chunks():
    texts = ["a", "b", "c", "d"]
    raw = events(*openai_stream(*texts)).replace("\n\n", "\r\n\r\n")
    # Split inside every CRLF, and use a lone CR as one event's line ends.
    raw = raw.replace("\r\n\r\n", "\r\n\r|\n", 2).replace("|", "")
    pieces = [raw[i : i + 1] for i in range(len(raw))]
    provider, _ = make("openai", stream_response("openai", Chunks(*pieces)))
    got = await collect(provider)
    assert "".join(e.text for e in got if isinstance(e, TextDelta)) == "abcd"
    assert got[-1] == StreamEnd("gpt-x", Usage(11, 7), "stop", finish_reason="stop")


# --- a raw HTTP server on 127.0.0.1 ------------------------------------------------------------

Writer = Callable[[asyncio.StreamWriter], Awaitable[None]]


async def _serve(writer_fn: Writer) -> AsyncIterator[str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            await reader.readexactly(length)
            await writer_fn(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


@pytest.fixture
async def raw_server():
    """``await raw_server(writer)`` serves every request with ``writer``; yields the URL."""
    servers = []

    async def start(writer_fn: Writer) -> str:
        gen = _serve(writer_fn)
        servers.append(gen)
        return await anext(gen)

    yield start
    for gen in servers:
        await gen.aclose()


def _gzip_zeros(mib: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = bytes(MIB)
    return b"".join(compressor.compress(block) for _ in range(mib)) + compressor.flush()


BOMB = _gzip_zeros(64)  # ~64 KiB that inflate to 64 MiB


def _bomb_writer(content_type: str) -> Writer:
    async def write(writer: asyncio.StreamWriter) -> None:
        head = (
            "HTTP/1.1 200 OK\r\n"
            f"content-type: {content_type}\r\ncontent-encoding: gzip\r\n"
            f"content-length: {len(BOMB)}\r\n\r\n"
        )
        writer.write(head.encode() + BOMB)
        await writer.drain()

    return write


def _endless_writer(content_type: str, opening: bytes) -> Writer:
    async def write(writer: asyncio.StreamWriter) -> None:
        head = f"HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\n"
        writer.write(head.encode() + b"transfer-encoding: chunked\r\n\r\n")
        writer.write(b"%x\r\n%s\r\n" % (len(opening), opening))
        chunk = b"%x\r\n%s\r\n" % (65536, b"a" * 65536)
        while True:  # until the client hangs up
            writer.write(chunk)
            await writer.drain()

    return write


def adapter(kind: str, url: str, client: httpx.AsyncClient):
    config = ProviderConfig(name=f"hostile-{kind}", kind=kind, model="m-1", base_url=url)
    return create_provider(config, client=client, env=ENV)


async def peak_while(call: Callable[[], Awaitable[Any]]) -> tuple[Any, float]:
    """What ``call`` returns or raises, and the peak of traced memory meanwhile, in MiB."""
    tracemalloc.start()
    try:
        try:
            result: Any = await call()
        except ProviderError as exc:
            result = exc
        return result, tracemalloc.get_traced_memory()[1] / MIB
    finally:
        tracemalloc.stop()


@pytest.fixture(params=["failover-transport", "stock-httpx"])
async def client(request):
    shared = make_client() if request.param == "failover-transport" else httpx.AsyncClient()
    yield shared
    await shared.aclose()


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "stream"])
async def test_a_gzip_bomb_fails_over_with_flat_memory(raw_server, client, streamed):
    content_type = "text/event-stream" if streamed else "application/json"
    url = await raw_server(_bomb_writer(content_type))
    provider = adapter("openai", url, client)
    result, peak = await peak_while(lambda: outcome(provider, streamed))
    assert isinstance(result, TransientError), result
    assert result.reason == "oversized"
    assert peak < 40, f"{peak:.0f} MiB traced while reading a 64 MiB bomb"


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "stream"])
async def test_an_endless_body_fails_over_with_flat_memory(raw_server, client, streamed):
    content_type = "text/event-stream" if streamed else "application/json"
    opening = b'data: {"choices":[{"index":0,"delta":{"content":"' if streamed else b'{"x":"'
    url = await raw_server(_endless_writer(content_type, opening))
    provider = adapter("openai", url, client)
    result, peak = await peak_while(lambda: asyncio.wait_for(outcome(provider, streamed), 10))
    assert isinstance(result, TransientError), result
    assert result.reason == "oversized"
    assert peak < 40, f"{peak:.0f} MiB traced while reading an endless body"


# --- secrets ----------------------------------------------------------------------------------


def assert_no_piece_of(secret: str, text: str, piece: int = 6) -> None:
    """No run of ``piece`` characters of ``secret`` shows in ``text``."""
    for start in range(len(secret) - piece + 1):
        assert secret[start : start + piece] not in text, text


@pytest.mark.parametrize("offset", range(280, 300))
async def test_a_key_straddling_the_message_cut_is_never_shown_in_part(offset):
    message = "x" * offset + KEY + " rest of the message"
    provider, _ = make("openai", httpx.Response(400, json=error_body("openai", message)))
    with pytest.raises(ProviderError) as info:
        await provider.complete(CompletionRequest("hi"), timeout=5)
    assert_no_piece_of(KEY, info.value.message)


@pytest.mark.parametrize("offset", range(60, 82))
async def test_a_key_straddling_the_invalid_json_snippet_is_never_shown_in_part(offset):
    provider, _ = make("gemini", httpx.Response(200, content=b"<" * offset + KEY.encode()))
    with pytest.raises(TransientError) as info:
        await provider.complete(CompletionRequest("hi"), timeout=5)
    assert info.value.reason == "malformed"
    assert_no_piece_of(KEY, info.value.message)


async def test_escaped_renderings_of_a_key_are_redacted():
    key = "sk-with\\backslash'and\"quote-12"
    env = {"OPENAI_API_KEY": key}
    renderings = [repr(key)[1:-1], json.dumps(key)[1:-1], repr(key.encode())[2:-1]]
    for shown in renderings:
        echo = httpx.LocalProtocolError(f"Illegal header value b'{shown}'")
        provider, _ = make("openai", echo, env=env)
        with pytest.raises(ProviderError) as info:
            await provider.complete(CompletionRequest("hi"), timeout=5)
        assert shown not in str(info.value) and "[REDACTED]" in str(info.value)


async def test_a_key_with_surrounding_whitespace_is_stripped_and_redacted_both_ways():
    raw = f"  {KEY}\n"
    answer = httpx.Response(401, json=error_body("anthropic", f"bad key {raw!r}", ""))
    provider, rec = make("anthropic", answer, env={"ANTHROPIC_API_KEY": raw})
    with pytest.raises(ProviderUnavailable) as info:
        await provider.complete(CompletionRequest("hi"), timeout=5)
    assert rec.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert_clean(info.value)
    assert "\\n" not in info.value.message  # the escaped newline went with the key


@pytest.mark.parametrize(
    "key", ["sk-ключ-1234", "sk-abc\ndef-1234", "sk-abc\x00def", "sk-tab\there", "sk-\u200bzero"]
)
@pytest.mark.parametrize("kind", ["anthropic", "openai", "gemini"])
async def test_a_key_that_cannot_be_sent_is_bad_key_without_any_request(kind, key):
    variable = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}.get(
        kind, "GEMINI_API_KEY"
    )
    provider, _ = make(kind, env={variable: key})  # the transport fails the test if called
    with pytest.raises(ProviderUnavailable) as info:
        await provider.complete(CompletionRequest("hi"), timeout=5)
    exc = info.value
    assert exc.reason == "bad_key"
    assert variable in exc.message
    for piece in ("ключ", "abc", "tab", "zero"):
        assert piece not in str(exc) + repr(exc)
    exc, _ = await stream_error(provider)
    assert exc.reason == "bad_key"
    health = await provider.health()
    assert not health.ok and variable in (health.error or "")


@pytest.mark.parametrize("secret", ["bad\nvalue-1234", "тайна-1234"])
async def test_a_header_secret_that_cannot_be_sent_is_bad_key(secret):
    provider, _ = make(
        "openai", env={"AZ": secret}, base_url="http://127.0.0.1:9", headers=(("api-key", "${AZ}"),)
    )
    with pytest.raises(ProviderUnavailable) as info:
        await provider.complete(CompletionRequest("hi"), timeout=5)
    assert info.value.reason == "bad_key" and "AZ" in info.value.message
    assert "1234" not in str(info.value)


async def test_a_plain_header_that_cannot_be_sent_is_reported_not_raised_raw():
    provider, _ = make("openai", base_url="http://127.0.0.1:9", headers=(("x-team", "é"),))
    with pytest.raises(ProviderUnavailable) as info:
        await provider.complete(CompletionRequest("hi"), timeout=5)
    assert info.value.reason == "bad_header" and "x-team" in info.value.message


def test_nan_is_not_a_token_count_but_is_clamped():
    from failover_cli.providers import _http

    assert _http.MAX_TOKENS == MAX_TOKENS
    count = _http.count
    assert count(math.nan) == 0 and count(math.inf) == MAX_TOKENS and count(None, 3) == 3
    for bad in (True, "7", [7], {"n": 7}):
        with pytest.raises(TypeError):
            count(bad)


@pytest.mark.parametrize(
    "value", ["gpt\x1b[31mred", "gpt\nFAKE LINE", "m" * 10_000, "", 7, None, "gpt\u202eevil"]
)
def test_a_name_field_with_control_characters_or_no_bound_is_not_taken(value: Any) -> None:
    """A model name or stop reason is printed on terminals and logged: one with escape
    sequences, line breaks, bidi overrides or no sane length is treated as absent."""
    from failover_cli.providers._http import label

    assert label(value) is None


def test_a_plain_name_field_is_taken_as_it_is() -> None:
    from failover_cli.providers._http import label

    assert label("gpt-5.4-mini-2026-03-01") == "gpt-5.4-mini-2026-03-01"
    assert label("models/gemini-2.5 pro") == "models/gemini-2.5 pro"
