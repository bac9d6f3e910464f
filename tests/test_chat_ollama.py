"""Ollama ``/api/chat`` chat features, both ways: the adapter's bodies and parsing, the
simulator's view, rejections and tool calls, the adapter against the simulator over loopback
HTTP, and the official SDK (ollama 0.6.3) as a client of the simulator.

The fixed translations are pinned by tests/golden/ollama/*.json (tests/test_golden.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest
from jsonschema import Draft202012Validator

from failover_cli.chat import ImagePart, Message, TextPart, ToolCall, wire_tool_name
from failover_cli.errors import InvalidRequest, ProviderError, TransientError
from failover_cli.providers import create_provider
from failover_cli.providers.ollama import OllamaProvider
from failover_cli.request import build_request
from failover_cli.sim import Behavior, Simulator
from failover_cli.sim.ollama import DIALECT, _corrupt_base64, _full_name
from failover_cli.sim.wire import RecordedRequest
from failover_cli.types import (
    Completion,
    CompletionRequest,
    ProviderConfig,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
)

SPEC = json.loads((Path(__file__).parent / "specs" / "ollama-chat.openapi.json").read_text())
PNG = "iVBORw0KGgoAAAANSUhEUg=="
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
PARIS = Behavior(tool_call=("get_weather", {"city": "Paris"}))
LONG = "lookup_customer_order_history_across_all_regional_warehouses_and_stores"
ASK = [{"role": "user", "content": "Weather in Paris?"}]

Sim = Callable[..., Simulator]


def spec_validator(schema: str) -> Draft202012Validator:
    root = {"$ref": f"#/components/schemas/{schema}", "components": SPEC["components"]}
    return Draft202012Validator(root)


def adapter(base_url: str, model: str = "llama3.2", **config: Any) -> OllamaProvider:
    provider = create_provider(
        ProviderConfig("ollama", "ollama", model, base_url=base_url, **config)
    )
    assert isinstance(provider, OllamaProvider)
    return provider


async def events(provider: OllamaProvider, request: CompletionRequest) -> list[StreamEvent]:
    return [event async for event in provider.stream(request, timeout=5)]


class Recorder:
    """An httpx MockTransport answering with a fixed response, keeping the bodies sent."""

    def __init__(self, response: httpx.Response | None = None) -> None:
        self.response = response or httpx.Response(200, json=done_body("ok"))
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        return self.response


def mocked(response: httpx.Response | None = None) -> tuple[OllamaProvider, Recorder]:
    recorder = Recorder(response)
    client = httpx.AsyncClient(transport=httpx.MockTransport(recorder))
    provider = create_provider(ProviderConfig("ollama", "ollama", "qwen3:8b"), client, env={})
    assert isinstance(provider, OllamaProvider)
    return provider, recorder


def done_body(content: str = "", **message: Any) -> dict[str, Any]:
    return {
        "model": "qwen3:8b",
        "created_at": "2026-05-01T12:00:00Z",
        "message": {"role": "assistant", "content": content, **message},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 3,
        "eval_count": 2,
    }


def ndjson(*items: dict[str, Any]) -> httpx.Response:
    text = "".join(json.dumps(item) + "\n" for item in items)
    return httpx.Response(200, headers={"content-type": "application/x-ndjson"}, text=text)


def post(sim: Simulator, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(sim.base_url + "/api/chat", json=body, timeout=5)


# --- the adapter's request bodies -----------------------------------------------------------------


async def test_plain_request_keeps_the_legacy_body_and_takes_the_request_model():
    provider, recorder = mocked()
    plain = CompletionRequest("Hi", max_tokens=9, system="S.", temperature=0.5)
    await provider.complete(plain, timeout=5)
    await provider.complete(CompletionRequest("Hi", model="llama3.3:70b"), timeout=5)
    assert recorder.bodies[0] == {
        "model": "qwen3:8b",
        "messages": [{"role": "system", "content": "S."}, {"role": "user", "content": "Hi"}],
        "stream": False,
        "options": {"num_predict": 9, "temperature": 0.5},
    }
    assert recorder.bodies[1]["model"] == "llama3.3:70b"


async def test_chat_request_sends_the_request_model():
    provider, recorder = mocked()
    request = CompletionRequest(messages=(Message.of("user", "x"),), model="gemma3:4b")
    await provider.complete(request, timeout=5)
    assert recorder.bodies[0]["model"] == "gemma3:4b"


async def test_an_image_url_is_refused_before_anything_is_sent():
    provider, recorder = mocked()
    request = build_request(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                ],
            }
        ]
    )
    with pytest.raises(InvalidRequest) as caught:
        await provider.complete(request, timeout=5)
    assert "https://example.com/cat.png" in caught.value.message
    assert caught.value.provider == "ollama"
    assert recorder.bodies == []
    with pytest.raises(InvalidRequest):
        await events(provider, request)
    assert recorder.bodies == []


async def test_required_tool_choice_offers_every_tool():
    provider, recorder = mocked()
    other = {"type": "function", "function": {"name": "get_time"}}
    request = build_request(messages=ASK, tools=[WEATHER, other], tool_choice="required")
    await provider.complete(request, timeout=5)
    names = [t["function"]["name"] for t in recorder.bodies[0]["tools"]]
    assert names == ["get_weather", "get_time"]
    assert "tool_choice" not in recorder.bodies[0]  # Ollama has none


async def test_a_tool_result_without_a_known_call_keeps_its_message_name():
    """A Message built directly (not validated) may name the tool itself."""
    provider, recorder = mocked()
    call = ToolCall("call_1", "get_weather", '{"city":"Oslo"}')
    request = CompletionRequest(
        messages=(
            Message("assistant", (), (call,)),
            Message("tool", (TextPart("cold"),), tool_call_id="call_2", name="get_weather"),
        ),
        tools=(),
    )
    await provider.complete(request, timeout=5)
    tool_message = recorder.bodies[0]["messages"][1]
    assert tool_message == {
        "role": "tool",
        "content": "cold",
        "tool_name": "get_weather",
        "tool_call_id": "call_2",
    }
    assert spec_validator("ChatRequest").is_valid(recorder.bodies[0])


# --- the adapter's parsing ------------------------------------------------------------------------


async def test_a_tool_call_without_an_id_gets_a_fresh_call_id():
    calls = [
        {"function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}},
        {"function": {"name": "get_weather", "arguments": {"city": "Nice"}}},
        {"function": {"name": "get_weather"}},
    ]
    provider, _ = mocked(httpx.Response(200, json=done_body(tool_calls=calls)))
    completion = await provider.complete(build_request(messages=ASK, tools=[WEATHER]), timeout=5)
    ids = [c.id for c in completion.tool_calls]
    assert all(re.fullmatch(r"call_[0-9a-f]{24}", i) for i in ids), ids
    assert len(set(ids)) == 3
    assert [c.arguments for c in completion.tool_calls] == [
        '{"city":"Rome"}',
        '{"city":"Nice"}',
        "{}",
    ]
    assert completion.finish_reason == "tool_calls"


@pytest.mark.parametrize(
    "tool_calls",
    [
        "not a list",
        [{"function": {"name": "get_weather", "arguments": "{not json"}}],
        [{"function": {"name": "get_weather", "arguments": "[1, 2]"}}],
        [{"function": {"name": "get_weather", "arguments": 42}}],
        [{"function": {"arguments": {}}}],
        [{"function": {"name": "", "arguments": {}}}],
        [{"name": "get_weather"}],
        ["get_weather"],
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_malformed_tool_calls_are_a_malformed_response(tool_calls, stream):
    body = done_body(tool_calls=tool_calls)
    provider, _ = mocked(ndjson(body) if stream else httpx.Response(200, json=body))
    request = build_request(messages=ASK, tools=[WEATHER])
    with pytest.raises(TransientError) as caught:
        if stream:
            await events(provider, request)
        else:
            await provider.complete(request, timeout=5)
    assert caught.value.reason == "malformed"


@pytest.mark.parametrize(
    ("done_reason", "finish"), [("stop", "stop"), ("length", "length"), ("load", "stop")]
)
async def test_done_reason_becomes_the_finish_reason(done_reason, finish):
    body = {**done_body("x"), "done_reason": done_reason}
    provider, _ = mocked(httpx.Response(200, json=body))
    completion = await provider.complete(build_request(messages=ASK), timeout=5)
    assert (completion.stop_reason, completion.finish_reason) == (done_reason, finish)
    provider, _ = mocked(ndjson(body))
    end = (await events(provider, build_request(messages=ASK)))[-1]
    assert isinstance(end, StreamEnd)
    assert (end.stop_reason, end.finish_reason) == (done_reason, finish)


async def test_a_streamed_tool_call_then_an_error_line_is_transient():
    call = {"id": "call_a", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    chunk = {"message": {"role": "assistant", "content": "", "tool_calls": [call]}, "done": False}
    text = json.dumps(chunk) + "\n" + json.dumps({"error": "runner crashed"}) + "\n"
    response = httpx.Response(200, headers={"content-type": "application/x-ndjson"}, text=text)
    provider, _ = mocked(response)
    seen: list[StreamEvent] = []
    with pytest.raises(TransientError) as caught:
        async for event in provider.stream(build_request(messages=ASK, tools=[WEATHER]), timeout=5):
            seen.append(event)
    assert caught.value.reason == "stream_error"
    assert seen == [ToolCallDelta(0, "call_a", "get_weather", '{"city":"Paris"}')]


# --- the simulator's view and rejections ----------------------------------------------------------


def recorded(body: dict[str, Any]) -> RecordedRequest:
    raw = json.dumps(body).encode()
    return RecordedRequest("POST", "/api/chat", {}, {}, raw, body)


def test_chat_view_reads_tools_format_and_a_last_tool_turn():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    view = DIALECT.chat_view(
        recorded(
            {
                "model": "m",
                "messages": [{"role": "user", "content": "x"}, {"role": "Tool", "content": "1"}],
                "tools": [tool, {"type": "function", "function": {"name": "g"}}],
                "format": schema,
            }
        )
    )
    assert view.tools == {"f": schema, "g": {}}
    assert (view.choice, view.after_tool, view.json, view.schema) == ("auto", True, True, schema)
    as_json = DIALECT.chat_view(
        recorded({"model": "m", "messages": [{"role": "user", "content": "x"}], "format": "json"})
    )
    assert (as_json.json, as_json.schema, as_json.tools, as_json.after_tool) == (
        True,
        None,
        {},
        False,
    )
    plain = DIALECT.chat_view(recorded({"model": "m", "messages": [], "format": ""}))
    assert not plain.json and not plain.tools


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (
            {"role": "user", "content": "x", "images": [f"data:image/png;base64,{PNG}"]},
            "illegal base64 data at input byte 4",
        ),
        (
            {"role": "user", "content": "x", "images": ["AAA"]},
            "illegal base64 data at input byte 0",
        ),
        (
            {"role": "user", "content": "x", "images": ["AAAA*AAA"]},
            "illegal base64 data at input byte 4",
        ),
        (
            {"role": "user", "content": "x", "images": [7]},
            "json: cannot unmarshal number into Go struct field Message.messages.images"
            " of type api.ImageData",
        ),
        (
            {"role": "user", "content": [{"type": "text", "text": "x"}]},
            "json: cannot unmarshal array into Go struct field Message.messages.content"
            " of type string",
        ),
        (
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "f", "arguments": '{"a": 1}'}}],
            },
            "Value looks like object, but can't find closing '}' symbol",
        ),
        (
            {"role": "assistant", "content": "", "tool_calls": {"function": {}}},
            "json: cannot unmarshal object into Go struct field Message.messages.tool_calls"
            " of type []api.ToolCall",
        ),
        (
            {"role": "developer", "content": "x"},
            'invalid message role "developer": must be one of "system", "user", "assistant"'
            ' or "tool"',
        ),
    ],
)
def test_simulator_rejects_what_ollama_cannot_take(sim: Sim, message, error):
    s = sim("ollama")
    response = post(s, {"model": "llava", "messages": [message], "stream": False})
    assert response.status_code == 400
    assert response.json() == {"error": error}


def test_simulator_takes_base64_with_line_breaks_and_any_role_case(sim: Sim):
    s = sim("ollama")
    wrapped = "iVBORw0K\nGgoAAAAN\r\nSUhEUg=="
    body = {"model": "llava", "messages": [{"role": "USER", "content": "x", "images": [wrapped]}]}
    response = post(s, {**body, "stream": False})
    assert response.status_code == 200, response.text
    assert response.json()["message"]["content"] == Behavior().text


@pytest.mark.parametrize(
    ("text", "at"),
    [
        ("", None),
        ("AAAA", None),
        ("AA==", None),
        ("AAA=", None),
        ("AAAAAA==", None),
        ("A", 0),
        ("AAAAAA", 4),
        ("A===", 1),
        ("AA=A", 2),
        ("AA==AAAA", 4),
        ("AA=", 3),
        ("AA=\n", 4),
        ("AAA=A", 4),
        ("AA-A", 2),
        ("AAAA\r\nAA", 6),
        ("AAAAé", 4),
        ("AA\n==\n", None),
    ],
)
def test_base64_check_follows_go_std_encoding(text, at):
    assert _corrupt_base64(text) == at


def test_tools_on_a_model_without_them_are_refused_with_its_full_name(sim: Sim):
    s = sim("ollama")
    body = {"messages": ASK, "tools": [WEATHER], "stream": False}
    refused = post(s, {**body, "model": "gemma-notools:4b"})
    assert refused.status_code == 400
    assert refused.json() == {
        "error": "registry.ollama.ai/library/gemma-notools:4b does not support tools"
    }
    assert post(s, {**body, "model": "gemma-notools:4b", "tools": []}).status_code == 200
    assert post(s, {**body, "model": "llama3.2"}).status_code == 200
    assert _full_name("x-notools") == "registry.ollama.ai/library/x-notools:latest"
    assert _full_name("me/x-notools") == "registry.ollama.ai/me/x-notools:latest"


def test_simulated_tool_calls_match_the_spec(sim: Sim):
    s = sim("ollama", PARIS)
    body = {"model": "qwen3", "messages": ASK, "tools": [WEATHER]}
    whole = post(s, {**body, "stream": False}).json()
    spec_validator("ChatResponse").validate(whole)
    assert whole["done_reason"] == "stop"
    assert whole["message"]["content"] == ""
    (call,) = whole["message"]["tool_calls"]
    assert call["function"] == {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}
    assert call["id"].startswith("call_")
    assert whole["eval_count"] > 0
    lines = [json.loads(line) for line in post(s, {**body, "stream": True}).text.splitlines()]
    for line in lines:
        spec_validator("ChatStreamEvent").validate(line)
    assert [line["done"] for line in lines] == [False, True]
    assert lines[0]["message"]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert "tool_calls" not in lines[1]["message"]
    assert lines[1]["done_reason"] == "stop"


# --- adapter <-> simulator over loopback HTTP -----------------------------------------------------


async def test_tool_call_complete_and_streamed(sim: Sim):
    s = sim("ollama", PARIS)
    provider = adapter(s.base_url)
    request = build_request(messages=ASK, tools=[WEATHER])
    try:
        completion = await provider.complete(request, timeout=5)
        streamed = await events(provider, request)
    finally:
        await provider.aclose()
    assert completion.text == ""
    assert [(c.name, c.arguments) for c in completion.tool_calls] == [
        ("get_weather", '{"city":"Paris"}')
    ]
    assert completion.tool_calls[0].id.startswith("call_")
    assert completion.finish_reason == "tool_calls"
    assert completion.stop_reason == "stop"
    delta, end = streamed
    assert isinstance(delta, ToolCallDelta) and isinstance(end, StreamEnd)
    assert (delta.index, delta.name, delta.arguments) == (0, "get_weather", '{"city":"Paris"}')
    assert delta.id and delta.id.startswith("call_")
    assert end.finish_reason == "tool_calls"
    assert end.usage.output_tokens > 0
    sent = s.requests[-1].json
    assert sent["tools"] == [WEATHER]
    assert "tool_choice" not in sent


async def test_tool_call_arguments_follow_the_schema_and_long_names_come_back(sim: Sim):
    s = sim("ollama")  # no scripted call: the first offered tool, arguments from its schema
    tool = {
        "type": "function",
        "function": {
            "name": LONG,
            "parameters": {
                "type": "object",
                "properties": {"customer": {"type": "string"}, "limit": {"type": "integer"}},
                "required": ["customer", "limit"],
            },
        },
    }
    provider = adapter(s.base_url)
    try:
        completion = await provider.complete(build_request(messages=ASK, tools=[tool]), timeout=5)
    finally:
        await provider.aclose()
    assert s.requests[-1].json["tools"][0]["function"]["name"] == wire_tool_name(LONG)
    (call,) = completion.tool_calls
    assert call.name == LONG
    assert json.loads(call.arguments) == {"customer": "example", "limit": 1}


async def test_after_the_tool_result_the_simulator_answers_text(sim: Sim):
    s = sim("ollama", Behavior(text="It is 18 degrees.", tool_call=("get_weather", {"city": "x"})))
    provider = adapter(s.base_url)
    messages = [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "toolu_01ABCdef",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01ABCdef", "content": "18"},
    ]
    try:
        completion = await provider.complete(
            build_request(messages=messages, tools=[WEATHER]), timeout=5
        )
        streamed = await events(provider, build_request(messages=messages, tools=[WEATHER]))
    finally:
        await provider.aclose()
    assert (completion.text, completion.tool_calls) == ("It is 18 degrees.", ())
    assert completion.finish_reason == "stop"
    assert "".join(e.text for e in streamed if isinstance(e, TextDelta)) == "It is 18 degrees."
    assert not any(isinstance(e, ToolCallDelta) for e in streamed)
    sent = s.requests[-1].json["messages"]
    assert sent[1]["tool_calls"] == [
        {
            "id": "toolu_01ABCdef",
            "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
        }
    ]
    assert sent[2] == {
        "role": "tool",
        "content": "18",
        "tool_name": "get_weather",
        "tool_call_id": "toolu_01ABCdef",
    }


async def test_inline_images_reach_the_simulator(sim: Sim):
    s = sim("ollama", Behavior(text="A cat."))
    provider = adapter(s.base_url, model="llava:13b")
    request = build_request(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is it?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                ],
            }
        ]
    )
    try:
        completion = await provider.complete(request, timeout=5)
    finally:
        await provider.aclose()
    assert completion.text == "A cat."
    assert s.requests[-1].json["messages"] == [
        {"role": "user", "content": "What is it?", "images": [PNG]}
    ]


async def test_an_image_that_is_not_base64_is_rejected_by_the_simulator(sim: Sim):
    s = sim("ollama")
    provider = adapter(s.base_url, model="llava:13b")
    bad = ImagePart(media_type="image/png", data="not base64!")
    request = CompletionRequest(messages=(Message("user", (TextPart("x"), bad)),))
    try:
        with pytest.raises(InvalidRequest) as caught:
            await provider.complete(request, timeout=5)
    finally:
        await provider.aclose()
    assert caught.value.status == 400
    assert caught.value.message == "illegal base64 data at input byte 3"


async def test_tools_on_a_model_without_them_are_an_invalid_request(sim: Sim):
    s = sim("ollama", PARIS)
    provider = adapter(s.base_url, model="phi-notools")
    request = build_request(messages=ASK, tools=[WEATHER])
    try:
        with pytest.raises(InvalidRequest) as caught:
            await provider.complete(request, timeout=5)
        with pytest.raises(InvalidRequest):
            await events(provider, request)
        plain = await provider.complete(build_request(messages=ASK), timeout=5)
    finally:
        await provider.aclose()
    assert caught.value.reason == "tools_unsupported"
    assert "registry.ollama.ai/library/phi-notools:latest does not support tools" in str(
        caught.value
    )
    assert plain.text == Behavior().text


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        (
            {
                "type": "json_schema",
                "json_schema": {
                    "name": "city",
                    "schema": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "population": {"type": "integer"},
                        },
                        "required": ["name", "population"],
                    },
                },
            },
            {"name": "example", "population": 1},
        ),
        ({"type": "json_object"}, {"answer": "Paris is big."}),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_json_format_answers_parse(sim: Sim, response_format, expected, stream):
    s = sim("ollama", Behavior(text="Paris is big."))
    provider = adapter(s.base_url)
    request = build_request(messages=ASK, response_format=response_format)
    try:
        if stream:
            got = await events(provider, request)
            text = "".join(e.text for e in got if isinstance(e, TextDelta))
        else:
            completion: Completion = await provider.complete(request, timeout=5)
            text = completion.text
    finally:
        await provider.aclose()
    assert json.loads(text) == expected
    sent_format = s.requests[-1].json["format"]
    if response_format["type"] == "json_object":
        assert sent_format == "json"
    else:
        assert sent_format == response_format["json_schema"]["schema"]


async def test_a_stream_cut_before_its_finish_loses_the_tool_call(sim: Sim):
    s = sim("ollama", Behavior(tool_call=("get_weather", {"city": "Paris"}), fault="truncate"))
    provider = adapter(s.base_url)
    seen: list[StreamEvent] = []
    try:
        with pytest.raises(ProviderError) as caught:
            async for event in provider.stream(
                build_request(messages=ASK, tools=[WEATHER]), timeout=5
            ):
                seen.append(event)
    finally:
        await provider.aclose()
    assert caught.value.reason == "truncated"
    assert seen == []


async def test_a_done_line_without_its_newline_still_ends_a_tool_stream(sim: Sim):
    s = sim("ollama", Behavior(tool_call=("get_weather", {"city": "Paris"}), fault="no_end_marker"))
    provider = adapter(s.base_url)
    try:
        got = await events(provider, build_request(messages=ASK, tools=[WEATHER]))
    finally:
        await provider.aclose()
    assert [type(e) for e in got] == [ToolCallDelta, StreamEnd]
    end = got[-1]
    assert isinstance(end, StreamEnd) and end.finish_reason == "tool_calls"


# --- the official SDK as a client of the simulator ------------------------------------------------


async def test_sdk_parses_a_whole_tool_call(sim: Sim):
    s = sim("ollama", PARIS)
    client = ollama.AsyncClient(host=s.base_url)
    response = await client.chat(model="qwen3", messages=ASK, tools=[WEATHER])
    assert response.done is True and response.done_reason == "stop"
    assert response.message.role == "assistant"
    (call,) = response.message.tool_calls or []
    assert call.function.name == "get_weather"
    assert dict(call.function.arguments) == {"city": "Paris"}
    assert s.requests[-1].json["tools"][0]["function"]["name"] == "get_weather"


async def test_sdk_parses_a_streamed_tool_call(sim: Sim):
    s = sim("ollama", PARIS)
    client = ollama.AsyncClient(host=s.base_url)
    chunks = [
        chunk
        async for chunk in await client.chat(
            model="qwen3", messages=ASK, tools=[WEATHER], stream=True
        )
    ]
    calls = [c for chunk in chunks for c in (chunk.message.tool_calls or [])]
    assert [(c.function.name, dict(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    assert chunks[-1].done is True and chunks[-1].done_reason == "stop"
    assert all(chunk.done is False for chunk in chunks[:-1])


async def test_sdk_sends_a_python_function_as_a_tool_and_images_as_base64(sim: Sim):
    def get_weather(city: str) -> str:
        """Current weather for a city.

        Args:
          city: The city
        """
        return "sunny"

    s = sim("ollama", PARIS)
    client = ollama.AsyncClient(host=s.base_url)
    response = await client.chat(
        model="llava",
        messages=[{"role": "user", "content": "Here?", "images": [bytes.fromhex("89504e47")]}],
        tools=[get_weather],
    )
    (call,) = response.message.tool_calls or []
    assert call.function.name == "get_weather"
    assert get_weather(**call.function.arguments) == "sunny"
    sent = s.requests[-1].json
    assert sent["messages"][0]["images"] == ["iVBORw=="]
    assert sent["tools"][0]["function"]["name"] == "get_weather"


async def test_sdk_sees_the_simulators_rejections_as_response_errors(sim: Sim):
    s = sim("ollama", PARIS)
    client = ollama.AsyncClient(host=s.base_url)
    with pytest.raises(ollama.ResponseError) as caught:
        await client.chat(model="tiny-notools", messages=ASK, tools=[WEATHER])
    assert caught.value.status_code == 400
    assert (
        caught.value.error
        == "registry.ollama.ai/library/tiny-notools:latest does not support tools"
    )


async def test_sdk_structured_output_parses(sim: Sim):
    s = sim("ollama")
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "sunny": {"type": "boolean"}},
        "required": ["city", "sunny"],
    }
    client = ollama.AsyncClient(host=s.base_url)
    response = await client.chat(model="qwen3", messages=ASK, format=schema)
    assert json.loads(response.message.content or "") == {"city": "example", "sunny": True}
    assert s.requests[-1].json["format"] == schema
