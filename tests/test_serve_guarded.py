"""The course every gateway stream takes (failover_cli/serve/wire.py ``guarded``): a scripted
sequence of the router's events through a recording format, then through both wire formats'
writers, as the gateway streams them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from failover_cli.chat import ToolCall
from failover_cli.errors import AllProvidersFailed, InvalidRequest, RequestRejected
from failover_cli.serve import anthropic_wire, openai_wire
from failover_cli.serve.wire import StreamWriter, WireError, finish_of, guarded
from failover_cli.types import (
    Attempt,
    ErrorClass,
    RouteResult,
    StreamDone,
    StreamEnd,
    StreamSwitched,
    TextDelta,
    ToolCallDelta,
    Usage,
)

RID = "req_0123456789abcdef01234567"
DOWN = AllProvidersFailed("all down", [Attempt("a", "failed", ErrorClass.TRANSIENT, 503)])
USAGE = Usage(12, 5, 4, 2)


def result(
    calls: Sequence[tuple[str, str, str]] = (), finish: Any = None, usage: Usage = USAGE
) -> RouteResult:
    return RouteResult(text="", provider="p", model="m", usage=usage, cost=None, latency_ms=1.0,
                       ttft_ms=None, attempts=(), finish_reason=finish,
                       calls=tuple(ToolCall(*c) for c in calls))  # fmt: skip


class Feed:
    """The router's events, in order, then ``error`` raised if given; notes how many the
    stream read and whether it closed them."""

    def __init__(self, items: Sequence[Any], error: BaseException | None = None) -> None:
        self.items, self.error = items, error
        self.read = 0
        self.closed = False

    async def events(self) -> AsyncIterator[Any]:
        try:
            for item in self.items:
                self.read += 1
                yield item
            if self.error is not None:
                raise self.error
        finally:
            self.closed = True


class Script(StreamWriter):
    """A format whose frames say what ``guarded`` asked for: a tool-call delta without
    arguments writes nothing (as Anthropic's does once its block is open)."""

    def __init__(self) -> None:
        self.results: list[RouteResult] = []
        self.errors: list[WireError] = []

    def start(self) -> list[bytes]:
        return [b"start", b"ping"]

    def text(self, text: str) -> bytes:
        return b"text:" + text.encode()

    def tool(self, delta: ToolCallDelta) -> bytes:
        return f"tool:{delta.index}:{delta.arguments}".encode() if delta.arguments else b""

    def done(self, result: RouteResult) -> list[bytes]:
        self.results.append(result)
        return [b"finish", b"end"]

    def error(self, err: WireError) -> bytes:
        self.errors.append(err)
        return b"error"


async def drive(
    items: Sequence[Any], error: BaseException | None = None
) -> tuple[list[bytes], Script, Feed]:
    """The frames ``guarded`` writes for ``items`` (then ``error``), the writer, the feed."""
    feed, writer = Feed(items, error), Script()
    frames = [frame async for frame in guarded(feed.events(), writer)]
    return frames, writer, feed


# --- guarded, through a recording format ----------------------------------------------------------


async def test_a_whole_answer_is_one_frame_per_item_and_closes_its_events():
    done = StreamDone(result())
    frames, writer, feed = await drive([
        TextDelta("Hel"), TextDelta(""), StreamEnd("m"), ToolCallDelta(0, "t", "f", '{"a'),
        ToolCallDelta(0), done, TextDelta("after the end"),
    ])  # fmt: skip
    # Empty text and empty tool frames are not sent; events that are not the router's
    # stream events are skipped; the done frames go out one by one.
    assert frames == [b"start", b"ping", b"text:Hel", b'tool:0:{"a', b"finish", b"end"]
    assert writer.results == [done.result] and writer.errors == []
    assert feed.read == 6 and feed.closed  # nothing read past the StreamDone


async def test_an_error_after_content_ends_with_the_formats_error_never_done():
    frames, writer, feed = await drive([TextDelta("Hel")], DOWN)
    assert frames == [b"start", b"ping", b"text:Hel", b"error"]
    assert writer.results == []
    (err,) = writer.errors
    assert (err.status, err.kind) == (503, "overloaded_error")
    assert err.message == "no provider could answer: a: transient 503"
    assert feed.closed


async def test_events_that_stop_before_their_end_are_an_error():
    frames, writer, _ = await drive([TextDelta("Hel")])
    assert frames[-1] == b"error" and writer.results == []
    assert (writer.errors[0].status, writer.errors[0].kind) == (502, "api_error")
    assert "ended before it was complete" in writer.errors[0].message


@pytest.mark.parametrize(
    ("content", "had"),
    [
        ([TextDelta("one"), TextDelta(" two")], "7 characters"),
        ([ToolCallDelta(0, "t", "f", '{"a')], "the start of a tool call"),
        ([ToolCallDelta(0, "t", "f")], "the start of a tool call"),
    ],
    ids=["text", "tool-call", "tool-call-writing-nothing"],
)
async def test_a_restart_after_content_ends_the_stream_with_an_error(content: Any, had: str):
    """The error says how much the client had: the router's restart event keeps nothing
    (``kept`` 0), so the count is what this stream sent."""
    frames, writer, feed = await drive([
        *content, StreamSwitched("a", "b", "restart", 0), TextDelta("uno"),
        StreamDone(result()),
    ])  # fmt: skip
    assert frames[-1] == b"error" and b"text:uno" not in frames and writer.results == []
    (err,) = writer.errors
    assert (err.status, err.kind) == (503, "overloaded_error")
    assert err.message == (
        f"the answer broke after the client had {had} of it and b could only start it again "
        "from the beginning; retry the request"
    )
    assert feed.read == len(content) + 1 and feed.closed  # the new answer is not read


async def test_a_restart_before_content_and_continuations_go_on_unseen():
    frames, writer, _ = await drive([
        TextDelta(""), StreamSwitched("a", "b", "restart", 0), TextDelta("one"),
        StreamSwitched("b", "c", "prefill", 3), TextDelta("two"),
        StreamSwitched("c", "d", "instruct", 6), StreamDone(result()),
    ])  # fmt: skip
    assert frames == [b"start", b"ping", b"text:one", b"text:two", b"finish", b"end"]
    assert writer.errors == []


async def test_a_writer_that_fails_ends_the_stream_with_an_error_too():
    class Broken(Script):
        def text(self, text: str) -> bytes:
            raise ValueError("messages[0].content: cannot be written")

    feed, writer = Feed([TextDelta("x"), StreamDone(result())]), Broken()
    frames = [frame async for frame in guarded(feed.events(), writer)]
    assert frames == [b"start", b"ping", b"error"] and writer.results == []
    assert (writer.errors[0].status, writer.errors[0].param) == (400, "messages[0].content")
    assert feed.closed


async def test_a_stream_given_up_on_closes_its_events_at_once():
    feed = Feed([TextDelta("one"), TextDelta("two")])
    stream: Any = guarded(feed.events(), Script())  # an async generator
    assert [await anext(stream) for _ in range(3)] == [b"start", b"ping", b"text:one"]
    await stream.aclose()  # the client went away
    assert feed.closed and feed.read == 1


def test_the_finish_reason_is_the_providers_else_from_the_calls():
    assert finish_of(result(finish="length")) == "length"
    assert finish_of(result(calls=[("t", "f", "{}")])) == "tool_calls"
    assert finish_of(result()) == "stop"


# --- guarded, as both wire formats use it -----------------------------------------------------


async def openai(feed: Feed, include_usage: bool = False) -> list[Any]:
    """The chunks of an OpenAI stream, decoded (``[DONE]`` as it is)."""
    stream = openai_wire.render_stream(
        feed.events(), model="m", request_id=RID, created=1, include_usage=include_usage
    )
    raw = b"".join([frame async for frame in stream])
    data = [f.removeprefix(b"data: ") for f in raw.split(b"\n\n") if f]
    return [d.decode() if d == b"[DONE]" else json.loads(d) for d in data]


async def anthropic(feed: Feed) -> list[tuple[str, Any]]:
    """The events of an Anthropic stream: (name, data)."""
    stream = anthropic_wire.render_stream(feed.events(), model="m", request_id=RID, created=1)
    raw = b"".join([frame async for frame in stream])
    out = []
    for frame in filter(None, raw.split(b"\n\n")):
        name, data = frame.split(b"\n")
        out.append(
            (name.removeprefix(b"event: ").decode(), json.loads(data.removeprefix(b"data: ")))
        )
    return out


async def test_an_error_after_content_ends_each_format_with_its_error_event():
    chunks = await openai(Feed([TextDelta("Hel")], DOWN), include_usage=True)
    assert "[DONE]" not in chunks and not any(c.get("usage") for c in chunks[:-1])
    message = "no provider could answer: a: transient 503"
    assert chunks[-1] == {
        "error": {"message": message, "type": "server_error", "param": None, "code": None}
    }
    events = await anthropic(Feed([TextDelta("Hel")], DOWN))
    assert "message_stop" not in [name for name, _ in events]
    assert events[-1] == (
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": message}},
    )


async def test_anthropic_reports_a_failed_5xx_as_overloaded_and_keeps_a_4xx():
    timed_out = AllProvidersFailed("late", [], reason="deadline")  # 504 timeout_error
    events = await anthropic(Feed([TextDelta("x")], timed_out))
    assert events[-1][1]["error"]["type"] == "overloaded_error"
    chunks = await openai(Feed([TextDelta("x")], timed_out))
    assert chunks[-1]["error"]["type"] == "server_error"  # OpenAI's word for any 5xx
    rejected = RequestRejected(InvalidRequest("too big", provider="a", status=413))
    events = await anthropic(Feed([TextDelta("x")], rejected))
    assert events[-1][1]["error"]["type"] == "request_too_large"


async def test_a_restart_after_a_tool_call_delta_is_an_error_in_each_format():
    items = [
        ToolCallDelta(0, "toolu_a", "f", '{"a'),
        StreamSwitched("a", "b", "restart", 0),
        ToolCallDelta(0, "toolu_b", "f", "{}"),
        StreamDone(result([("toolu_b", "f", "{}")])),
    ]
    chunks = await openai(Feed(items))
    assert chunks[1]["choices"][0]["delta"]["tool_calls"][0]["id"] == "toolu_a"
    assert len(chunks) == 3 and "start it again" in chunks[-1]["error"]["message"]
    assert chunks[-1]["error"]["type"] == "server_error"
    events = await anthropic(Feed(items))
    assert [name for name, _ in events] == [
        "message_start", "ping", "content_block_start", "content_block_delta", "error"
    ]  # fmt: skip
    assert events[-1][1]["error"]["type"] == "overloaded_error"
    assert "start it again" in events[-1][1]["error"]["message"]


async def test_the_final_event_carries_the_finish_reason_and_usage():
    done = StreamDone(result([("toolu_a", "f", "{}")]))
    items = [ToolCallDelta(0, "toolu_a", "f", "{}"), done]
    *_, finish, usage, end = await openai(Feed(items), include_usage=True)
    assert finish["choices"][0] == {"index": 0, "delta": {}, "logprobs": None,
                                    "finish_reason": "tool_calls"}  # fmt: skip
    assert usage["choices"] == [] and end == "[DONE]"
    assert usage["usage"] == {
        "prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 2},
    }  # fmt: skip
    *_, (stop, _), (name, delta), (last, _) = await anthropic(Feed(items))
    assert (stop, name, last) == ("content_block_stop", "message_delta", "message_stop")
    assert delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert delta["usage"] == {"input_tokens": 8, "output_tokens": 5,
                              "cache_creation_input_tokens": 0, "cache_read_input_tokens": 4,
                              "output_tokens_details": {"thinking_tokens": 2}}  # fmt: skip


async def test_the_openai_end_goes_out_as_separate_frames():
    # Each frame is one body message on the wire: the split must not move.
    feed = Feed([TextDelta("x"), StreamDone(result())])
    stream = openai_wire.render_stream(
        feed.events(), model="m", request_id=RID, created=1, include_usage=True
    )
    frames = [frame async for frame in stream]
    assert len(frames) == 5 and frames[-1] == b"data: [DONE]\n\n"
    assert b'"finish_reason":"stop"' in frames[2] and b'"choices":[]' in frames[3]
