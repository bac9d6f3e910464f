"""The gateway's wire translation (failover_cli/serve/*_wire.py): request bodies parsed into
router arguments (every field, every 400 with its field), answers and streams rendered in the
client's format and read back by the official SDKs' own models and stream parsers (over
``httpx2.MockTransport``: no sockets), and the golden fixtures round-tripped through each
adapter's body and back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pydantic
import pytest
from conftest import SIM_KEY
from hypothesis import given, settings
from hypothesis import strategies as st
from test_golden import request_of

from failover_cli.chat import ForcedTool, ResponseFormat, Tool, ToolCall
from failover_cli.errors import (
    AllProvidersFailed,
    ConfigError,
    InvalidRequest,
    ProviderError,
    QueueFull,
    RequestRejected,
)
from failover_cli.messages import Messages
from failover_cli.providers import create_provider
from failover_cli.request import build_request
from failover_cli.serve import anthropic_wire, openai_wire
from failover_cli.serve.wire import DEFAULT_RETRY_AFTER, WireError, error_for
from failover_cli.sim import Behavior
from failover_cli.testing import FakeProvider, Reply, VirtualClock, fake_router, outage
from failover_cli.types import (
    Attempt,
    ErrorClass,
    ProviderConfig,
    RouteResult,
    StreamDone,
    StreamSwitched,
    TextDelta,
    ToolCallDelta,
    Usage,
)

GOLDEN = Path(__file__).parent / "golden"
RID = "req_0123456789abcdef01234567"
WEATHER = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
OPENAI_WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": WEATHER["input_schema"],
    },
}
PNG = "iVBORw0KGgo="
USAGE = Usage(12, 5, 4, 2)


def body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def oa(**fields: Any) -> Any:
    fields.setdefault("model", "gpt-x")
    fields.setdefault("messages", [{"role": "user", "content": "hi"}])
    return openai_wire.parse_request(body(**fields))


def an(**fields: Any) -> Any:
    fields.setdefault("model", "claude-x")
    fields.setdefault("max_tokens", 100)
    fields.setdefault("messages", [{"role": "user", "content": "hi"}])
    return anthropic_wire.parse_request(body(**fields))


def dicts(messages: Any) -> list[dict[str, Any]]:
    """Parsed messages as OpenAI-shaped dicts (what the router reads)."""
    assert isinstance(messages, Messages)
    return [m.to_dict() for m in messages]


def result(
    text: str = "",
    calls: Iterable[tuple[str, str, str]] = (),
    finish: Any = "stop",
    stop_reason: str | None = None,
    usage: Usage = USAGE,
) -> RouteResult:

    return RouteResult(
        text=text,
        provider="p",
        model="served-model",
        usage=usage,
        cost=None,
        latency_ms=1.0,
        ttft_ms=None,
        attempts=(),
        stop_reason=stop_reason,
        finish_reason=finish,
        calls=tuple(ToolCall(*c) for c in calls),
    )


async def feed(events: Iterable[Any], error: BaseException | None = None) -> AsyncIterator[Any]:
    for event in events:
        yield event
    if error is not None:
        raise error


async def rendered(module: Any, events: AsyncIterator[Any], **kwargs: Any) -> bytes:
    out = b""
    async for frame in module.render_stream(
        events, model="served-model", request_id=RID, created=1700000000, **kwargs
    ):
        out += frame
    return out


def http(answer: bytes, *, stream: bool) -> httpx2.AsyncClient:
    kind = "text/event-stream" if stream else "application/json"

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": kind}, content=answer)

    return httpx2.AsyncClient(transport=httpx2.MockTransport(handler))


def openai_client(answer: bytes, *, stream: bool = False) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key="k", base_url="http://gw/v1", http_client=http(answer, stream=stream),
        max_retries=0,
    )  # fmt: skip


def anthropic_client(answer: bytes, *, stream: bool = False) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        api_key="k", base_url="http://gw", http_client=http(answer, stream=stream),
        max_retries=0,
    )  # fmt: skip


def broken(after: int = 0) -> AllProvidersFailed:
    attempts = [Attempt("a", "failed"), Attempt("b", "failed")][: after + 2]
    return AllProvidersFailed("no provider could answer: a: transient 503", attempts)


# --- OpenAI requests --------------------------------------------------------------------------


def test_openai_request_fields_reach_the_router_typed():
    req = oa(
        model="gpt-5",
        messages=[
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                         {"type": "image_url",
                                          "image_url": {"url": f"data:image/png;base64,{PNG}"}}]},
        ],
        tools=[OPENAI_WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
        max_completion_tokens=77, max_tokens=5, temperature=0.3, top_p=0.9, stop="END",
        stream=True, stream_options={"include_usage": True}, seed=7, presence_penalty=0.5,
        parallel_tool_calls=False, user="u1", fallbacks=["fast", {"model": "gpt"}],
    )  # fmt: skip
    assert (req.model, req.stream, req.include_usage) == ("gpt-5", True, True)
    assert req.fallbacks == ("fast", "gpt")
    kw = req.route_kwargs
    assert dicts(kw["messages"])[1]["content"][1]["image_url"]["url"].endswith(PNG)
    assert kw["tools"] == (
        Tool("get_weather", "Current weather in a city", WEATHER["input_schema"]),
    )
    assert kw["tool_choice"] == ForcedTool("get_weather")
    assert kw["response_format"] == ResponseFormat("json_schema", {}, "x")
    assert (kw["max_tokens"], kw["temperature"], kw["top_p"], kw["stop"]) == (
        77,
        0.3,
        0.9,
        ("END",),
    )
    assert kw["extra"] == {"openai": {"seed": 7, "presence_penalty": 0.5,
                                      "parallel_tool_calls": False}}  # fmt: skip
    assert "user" not in kw


def test_openai_defaults():
    req = oa()
    assert (req.stream, req.include_usage, req.fallbacks) == (False, False, ())
    kw = req.route_kwargs
    assert kw["max_tokens"] == openai_wire.DEFAULT_MAX_TOKENS
    assert kw["max_tokens"] == oa(max_tokens=None).route_kwargs["max_tokens"]
    assert oa(max_tokens=9).route_kwargs["max_tokens"] == 9
    assert "extra" not in kw and "tools" not in kw
    assert oa(stop=["a", "b"]).route_kwargs["stop"] == ("a", "b")
    assert oa(parallel_tool_calls=True).route_kwargs.get("extra") is None  # no tools: not sent


async def test_openai_parsed_request_routes_through_a_router():
    gpt = FakeProvider("gpt")
    router = fake_router(gpt)
    req = oa(messages=[{"role": "user", "content": "hi"}], tools=[OPENAI_WEATHER], stop="x")
    got = await router.route(**req.route_kwargs)
    assert got.text == "ok"
    sent = gpt.requests[0]
    assert sent.stop == ("x",) and sent.tools[0].name == "get_weather"
    assert sent.messages.wire is not None  # the client's own dicts, sent to OpenAI as they are


@pytest.mark.parametrize(
    ("raw", "param", "words"),
    [
        (b"{not json", None, "could not parse the JSON"),
        (b"[1, 2]", None, "could not parse the JSON"),
        (b"[" * 100_000, None, "could not parse the JSON"),
        (body(messages=[{"role": "user", "content": "x"}]), "model", "model parameter"),
        (body(model=3, messages=[]), "model", "must be a string"),
        (body(model="m" * 300, messages=[]), "model", "longer than"),
        (body(model="m"), "messages", "Missing required parameter: 'messages'"),
        (body(model="m", messages={}), "messages", "array"),
        (body(model="m", messages=[]), "messages", "empty array"),
        (b'{"model": "m", "temperature": NaN, "messages": []}', None, "could not parse"),
        (b'{"model": "m", "x": 1e400, "messages": []}', None, "could not parse"),
        (b'{"model": "m", "x": -Infinity, "messages": []}', None, "could not parse"),
        (body(model="m", max_tokens=10**300, messages=[{"role": "user", "content": "x"}]),
         "max_tokens", "at most"),
        (body(model="m", n=True, messages=[{"role": "user", "content": "x"}]), "n", "only 1"),
    ],
)  # fmt: skip
def test_openai_bad_bodies_are_400s_naming_the_field(raw: bytes, param: str | None, words: str):
    with pytest.raises(WireError) as info:
        openai_wire.parse_request(raw)
    assert info.value.status == 400
    assert info.value.param == param
    assert words in info.value.message


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"stream": "yes"}, "stream"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"stream": True, "stream_options": []}, "stream_options"),
        ({"stream": True, "stream_options": {"include_usage": 1}}, "stream_options.include_usage"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"max_tokens": "9"}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"temperature": 3}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": -0.1}, "top_p"),
        ({"stop": [1]}, "stop"),
        ({"stop": ["s"] * 17}, "stop"),
        ({"n": 2}, "n"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"function_call": "auto"}, "function_call"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"seed": 1.5}, "seed"),
        ({"frequency_penalty": 9}, "frequency_penalty"),
        ({"tools": {"a": 1}}, "tools"),
        ({"tools": [{"type": "function"}]}, "tools[0].function"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0].type"),
        ({"tools": [OPENAI_WEATHER], "tool_choice": {"type": "function",
                                                     "function": {"name": "nope"}}},
         "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
         "messages[0].content[0].type"),
        ({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "ftp://x"}}]}]},
         "messages[0].content[0].image_url.url"),
        ({"messages": [{"role": "user", "content": "x"},
                       {"role": "tool", "tool_call_id": "c1", "content": "r"}]},
         "messages[1].tool_call_id"),
        ({"fallbacks": "gpt"}, "fallbacks"),
        ({"fallbacks": [{"model": "gpt", "messages": []}]}, "fallbacks[0]"),
        ({"fallbacks": [""]}, "fallbacks[0]"),
        ({"fallbacks": ["a"] * 17}, "fallbacks"),
    ],
)  # fmt: skip
def test_openai_invalid_fields_are_400s_naming_the_field(fields: dict[str, Any], param: str):
    with pytest.raises(WireError) as info:
        oa(**fields)
    assert (info.value.status, info.value.param) == (400, param)
    assert info.value.message.startswith(param) or param in info.value.message


def test_openai_message_count_is_bounded():
    messages = [{"role": "user", "content": "x"}] * 6
    with pytest.raises(WireError, match="at most 5 messages") as info:
        openai_wire.parse_request(body(model="m", messages=messages), max_messages=5)
    assert info.value.param == "messages"
    openai_wire.parse_request(body(model="m", messages=messages[:5]), max_messages=5)


# --- Anthropic requests -----------------------------------------------------------------------


def test_anthropic_request_becomes_the_routers_messages():
    req = an(
        model="claude-opus",
        system=[{"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Use tools."}],
        messages=[
            {"role": "user", "content": [
                {"type": "text", "text": "Look:"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": PNG}},
                {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}},
            ]},
            {"role": "user", "content": "and the weather in Paris?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather",
                 "input": {"city": "Paris"}},
            ]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "call_2", "is_error": True,
                 "content": [{"type": "text", "text": "no city"},
                             {"type": "image", "source": {"type": "base64",
                                                          "media_type": "image/gif",
                                                          "data": "R0lG"}}]},
                {"type": "text", "text": "Which is warmer?"},
            ]},
        ],
        tools=[WEATHER],
        tool_choice={"type": "any"},
        stop_sequences=["\n\nHuman:"],
        temperature=0.5, top_p=0.8, top_k=5,
        thinking={"type": "enabled", "budget_tokens": 2000},
        metadata={"user_id": "u"}, service_tier="auto",
        output_config={"effort": "high"},
        stream=True, fallbacks=["fast"],
    )  # fmt: skip
    assert (req.model, req.stream, req.include_usage, req.fallbacks) == (
        "claude-opus", True, False, ("fast",)
    )  # fmt: skip
    kw = req.route_kwargs
    assert dicts(kw["messages"]) == [
        {"role": "system", "content": "Be terse."},
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": [
            {"type": "text", "text": "Look:"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
            {"type": "text", "text": "and the weather in Paris?"},
        ]},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "toolu_01", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_2", "type": "function",
             "function": {"name": "get_weather", "arguments": "{}"}},
        ]},
        {"role": "tool", "content": "18C", "tool_call_id": "toolu_01"},
        {"role": "tool", "content": "Error: no city", "tool_call_id": "call_2"},
        {"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/gif;base64,R0lG"}},
            {"type": "text", "text": "Which is warmer?"},
        ]},
    ]  # fmt: skip
    assert kw["tools"] == (
        Tool("get_weather", "Current weather in a city", WEATHER["input_schema"]),
    )
    assert kw["tool_choice"] == "required"
    assert kw["stop"] == ("\n\nHuman:",)
    assert (kw["max_tokens"], kw["temperature"], kw["top_p"]) == (100, 0.5, 0.8)
    assert "response_format" not in kw and "extra" not in kw


def test_anthropic_system_string_tool_choices_and_output_format():
    forced = {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}
    schema = {"format": {"type": "json_schema", "schema": {"type": "object"}}}
    req = an(system="S", tools=[WEATHER], tool_choice=forced, output_config=schema)
    kw = req.route_kwargs
    assert dicts(kw["messages"])[0] == {"role": "system", "content": "S"}
    assert kw["tool_choice"] == ForcedTool("get_weather")
    assert kw["response_format"] == ResponseFormat("json_schema", {"type": "object"})
    assert kw["extra"] == {
        "anthropic": {"tool_choice": {"disable_parallel_tool_use": True}},
        "openai": {"parallel_tool_calls": False},
    }
    assert an(tools=[WEATHER], tool_choice={"type": "auto"}).route_kwargs["tool_choice"] == "auto"
    assert an(tools=[WEATHER], tool_choice={"type": "none"}).route_kwargs["tool_choice"] == "none"
    assert "tool_choice" not in an(tool_choice={"type": "auto"}).route_kwargs  # no tools


def test_anthropic_system_turn_keeps_its_place_and_a_final_assistant_turn_is_a_prefill():
    kw = an(messages=[{"role": "user", "content": "a"},
                      {"role": "system", "content": [{"type": "text", "text": "mid"}]},
                      {"role": "user", "content": "b"},
                      {"role": "assistant", "content": "The answer is"}]).route_kwargs  # fmt: skip
    assert [(m["role"], m["content"]) for m in dicts(kw["messages"])] == [
        ("user", "a"), ("system", "mid"), ("user", "b"), ("assistant", "The answer is")
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": None}, "model"),
        ({"max_tokens": None}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"messages": None}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": ["hi"]}, "messages.0"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
        ({"messages": [{"role": "user"}]}, "messages.0.content"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
        ({"messages": [{"role": "user", "content": [{"text": "x"}]}]}, "messages.0.content.0.type"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]},
         "messages.0.content.0.text"),
        ({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
         "messages.0.content.0.type"),
        ({"messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/bmp",
                                         "data": "x"}}]}]},
         "messages.0.content.0.source.base64.media_type"),
        ({"messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png"}}]}]},
         "messages.0.content.0.source.base64.data"),
        ({"messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "url", "url": "file:///etc/passwd"}}]}]},
         "messages.0.content.0.source.url.url"),
        ({"messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "file", "file_id": "f"}}]}]},
         "messages.0.content.0.source"),
        ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": [
            {"type": "image", "source": {"type": "url", "url": "https://x"}}]}]},
         "messages.1.content.0.type"),
        ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": [
            {"type": "tool_use", "id": "bad id!", "name": "f", "input": {}}]}]},
         "messages.1.content.0.id"),
        ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": [
            {"type": "tool_use", "id": "t1", "input": {}}]}]},
         "messages.1.content.0.name"),
        ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": [
            {"type": "tool_use", "id": "t1", "name": "f", "input": [1]}]}]},
         "messages.1.content.0.input"),
        ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": [
            {"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
            {"role": "user", "content": "no result"}]},
         "messages.1"),
        ({"messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t9", "content": "r"}]}]},
         "messages.0.content.0"),
        ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": [
            {"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": 7}]}]},
         "messages.2.content.0.content"),
        ({"system": 5}, "system"),
        ({"system": [{"type": "image"}]}, "system.0"),
        ({"tools": {}}, "tools"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools.0.type"),
        ({"tools": [{"name": "bad name", "input_schema": {}}]}, "tools.0.custom.name"),
        ({"tools": [{"name": "f"}]}, "tools.0.custom.input_schema"),
        ({"tools": [WEATHER, WEATHER]}, "tools"),
        ({"tools": [{**WEATHER, "description": 3}]}, "tools.0.custom.description"),
        ({"tool_choice": {"type": "sometimes"}}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": {"type": "tool"}}, "tool_choice.tool.name"),
        ({"tools": [WEATHER], "tool_choice": {"type": "tool", "name": "nope"}}, "tool_choice.name"),
        ({"tools": [WEATHER], "tool_choice": {"type": "auto", "disable_parallel_tool_use": 1}},
         "tool_choice.auto.disable_parallel_tool_use"),
        ({"stop_sequences": "x"}, None),  # a string is taken, as one sequence
        ({"stop_sequences": [3]}, "stop_sequences"),
        ({"temperature": 1.5}, "temperature"),
        ({"output_config": []}, "output_config"),
        ({"output_config": {"format": {"type": "xml"}}}, "output_config.format.type"),
        ({"output_config": {"format": {"type": "json_schema"}}}, "output_config.format.schema"),
        ({"stream": 1}, "stream"),
        ({"fallbacks": [3]}, "fallbacks[0]"),
    ],
)  # fmt: skip
def test_anthropic_invalid_fields_are_400s_naming_the_field(
    fields: dict[str, Any], param: str | None
):
    if param is None:
        an(**fields)
        return
    with pytest.raises(WireError) as info:
        an(**fields)
    assert (info.value.status, info.value.param) == (400, param)
    assert info.value.message.startswith(param + ":")


def test_anthropic_count_tokens_bodies_need_no_max_tokens():
    raw = body(model="m", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(WireError, match="max_tokens: Field required"):
        anthropic_wire.parse_request(raw)
    parsed = anthropic_wire.parse_request(raw, default_max_tokens=1)
    assert parsed.route_kwargs["max_tokens"] == 1


def test_anthropic_bad_json_and_message_count():
    for raw in (b"", b"nope", b'"text"', b"{" * 50_000):
        with pytest.raises(WireError, match="error parsing the body"):
            anthropic_wire.parse_request(raw)
    many = body(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}] * 4)
    with pytest.raises(WireError, match="at most 3 messages"):
        anthropic_wire.parse_request(many, max_messages=3)


def test_anthropic_a_problem_the_router_finds_names_the_clients_message():
    # The router's own checks name our translated messages; the client reads its own index.
    rename = anthropic_wire._renamer([-1, 0, 2, 2])
    assert rename("messages[3].tool_call_id") == "messages.2"
    assert rename("messages[9]") == "messages"
    assert rename("tools[0].function.name") == "tools"
    assert rename("response_format.json_schema.schema") == "output_config.format"
    assert rename("max_tokens") == "max_tokens"


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("anthropic/*.json")), ids=lambda p: p.stem)
def test_anthropic_golden_bodies_round_trip(path: Path):
    """neutral request -> the adapter's Anthropic body -> parse_request -> the same body."""
    _round_trip(path, anthropic_wire, "ANTHROPIC_API_KEY")


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("openai/*.json")), ids=lambda p: p.stem)
def test_openai_golden_bodies_round_trip(path: Path):
    _round_trip(path, openai_wire, "OPENAI_API_KEY")


def _round_trip(path: Path, module: Any, key: str) -> None:
    case = json.loads(path.read_text())
    config = ProviderConfig(name="p", **case["provider"])
    adapter = create_provider(config, httpx.AsyncClient(), env={key: "k"})
    parsed = module.parse_request(json.dumps(case["body"]).encode())
    assert parsed.model == case["body"]["model"]
    assert parsed.stream is bool(case.get("stream"))
    kwargs = dict(parsed.route_kwargs)
    kwargs.pop("extra", None)
    again = build_request(**kwargs)
    assert adapter.body(again, stream=parsed.stream) == case["body"]
    original = request_of(case["request"])
    assert (again.max_tokens, again.stop) == (original.max_tokens, original.stop)


def test_anthropic_round_trip_keeps_the_neutral_request_where_nothing_is_rewritten():
    case = json.loads((GOLDEN / "anthropic/tools_result_roundtrip.json").read_text())
    parsed = anthropic_wire.parse_request(json.dumps(case["body"]).encode())
    again = build_request(**parsed.route_kwargs)
    original = request_of(case["request"])
    ids = {"call_abc123": "call_abc123"}  # the other id did not fit Anthropic's pattern
    got = [m.to_dict() for m in again.messages]
    want = [m.to_dict() for m in original.messages]
    assert [m["role"] for m in got] == [m["role"] for m in want]
    assert got[0] == want[0] and got[1] == want[1] and got[-1] == want[-1]
    assert got[2]["tool_calls"][0]["id"] == ids["call_abc123"]
    assert got[2]["tool_calls"][1]["id"].startswith("toolu_")
    assert [json.loads(c["function"]["arguments"]) for c in got[2]["tool_calls"]] == [
        {"city": "Paris"}, {"city": "Rome"}
    ]  # fmt: skip
    assert again.tools == original.tools


# --- answers, checked by the SDKs' own models --------------------------------------------------


def test_openai_response_is_a_chat_completion():
    data = openai_wire.render_response(
        result("Hi there"), model="gpt-x", request_id=RID, created=1700000000
    )
    completion = openai.types.chat.ChatCompletion.model_validate(json.loads(data))
    assert completion.id == "chatcmpl-0123456789abcdef01234567"
    assert (completion.object, completion.model, completion.created) == (
        "chat.completion", "gpt-x", 1700000000
    )  # fmt: skip
    choice = completion.choices[0]
    assert (choice.message.content, choice.message.role, choice.finish_reason) == (
        "Hi there", "assistant", "stop"
    )  # fmt: skip
    assert choice.message.refusal is None and choice.message.tool_calls is None
    assert completion.system_fingerprint is None
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (12, 5, 17)
    assert usage.prompt_tokens_details and usage.prompt_tokens_details.cached_tokens == 4
    assert usage.completion_tokens_details and usage.completion_tokens_details.reasoning_tokens == 2


def test_openai_response_with_tool_calls():
    data = openai_wire.render_response(
        result(calls=[("toolu_1", "get_weather", '{"city":"Oslo"}'), ("", "f", "{}")],
               finish="tool_calls"),
        model="m", request_id=RID, created=1,
    )  # fmt: skip
    completion = openai.types.chat.ChatCompletion.model_validate(json.loads(data))
    message = completion.choices[0].message
    assert message.content is None
    assert message.tool_calls is not None
    first, second = message.tool_calls
    assert first.id == "toolu_1" and first.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(first.function.arguments) == {"city": "Oslo"}  # type: ignore[union-attr]
    assert second.id.startswith("call_") and len(second.id) == 29  # made up: the provider gave none
    assert completion.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize(
    ("finish", "stop_reason", "calls", "want"),
    [
        ("stop", "end_turn", False, "end_turn"),
        ("stop", "stop_sequence", False, "stop_sequence"),
        ("stop", "stop", False, "end_turn"),  # an OpenAI provider's words
        ("length", "max_tokens", False, "max_tokens"),
        ("length", "model_context_window_exceeded", False, "model_context_window_exceeded"),
        ("length", "pause_turn", False, "max_tokens"),  # still paused: not a turn to resume here
        ("tool_calls", "tool_use", True, "tool_use"),
        ("stop", "tool_use", False, "end_turn"),  # a JSON answer carried by a forced tool
        ("content_filter", "refusal", False, "refusal"),
        ("content_filter", "SAFETY", False, "refusal"),
        (None, None, False, "end_turn"),
        (None, None, True, "tool_use"),
    ],
)
def test_anthropic_stop_reasons(finish: Any, stop_reason: Any, calls: bool, want: str):
    got = result("x", [("toolu_1", "f", "{}")] if calls else [], finish, stop_reason)
    assert anthropic_wire.stop_reason_of(got) == want


async def test_anthropic_answers_name_the_stop_sequence_met():
    """``stop_sequence`` is the sequence an Anthropic provider said it stopped on, whole and
    streamed; an answer that ended otherwise has none."""
    stopped = replace(result("1 2 3", stop_reason="stop_sequence"), stop_sequence="END")
    whole = json.loads(anthropic_wire.render_response(stopped, model="m", request_id=RID,
                                                      created=1))  # fmt: skip
    assert (whole["stop_reason"], whole["stop_sequence"]) == ("stop_sequence", "END")
    raw = await rendered(anthropic_wire, feed([TextDelta("1 2 3"), StreamDone(stopped)]))
    final = await anthropic_final(raw)
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "END")
    ended = replace(stopped, stop_reason="end_turn")
    whole = json.loads(anthropic_wire.render_response(ended, model="m", request_id=RID,
                                                      created=1))  # fmt: skip
    assert (whole["stop_reason"], whole["stop_sequence"]) == ("end_turn", None)


def test_anthropic_response_is_a_message():
    data = anthropic_wire.render_response(
        result("Let me check.", [("call_abc", "get_weather", '{"city":"Oslo"}'),
                                 ("toolu_keep", "f", "not json")], "tool_calls", "tool_calls"),
        model="claude-x", request_id=RID, created=1,
    )  # fmt: skip
    message = anthropic.types.Message.model_validate(json.loads(data))
    assert message.id == "msg_0123456789abcdef01234567"
    assert (message.type, message.role, message.model) == ("message", "assistant", "claude-x")
    text, use, kept = message.content
    assert text.type == "text" and text.text == "Let me check."
    assert use.type == "tool_use" and use.name == "get_weather" and use.input == {"city": "Oslo"}
    assert use.id.startswith("toolu_") and use.id != "call_abc"
    assert kept.type == "tool_use" and kept.id == "toolu_keep" and kept.input == {}
    assert message.stop_reason == "tool_use" and message.stop_sequence is None
    assert message.usage.input_tokens == 8  # fresh input: the 4 cached tokens counted apart
    assert message.usage.cache_read_input_tokens == 4
    assert message.usage.output_tokens == 5
    assert message.usage.output_tokens_details is not None
    assert message.usage.output_tokens_details.thinking_tokens == 2
    # The same call gets the same id in a stream and a whole answer, and on every render.
    again = json.loads(anthropic_wire.render_response(
        result("", [("call_abc", "get_weather", "{}")]), model="m", request_id="req_x",
        created=1))  # fmt: skip
    assert again["content"][0]["id"] == use.id


def test_anthropic_empty_answer_has_no_empty_text_block():
    data = json.loads(anthropic_wire.render_response(result(""), model="m", request_id=RID,
                                                     created=1))  # fmt: skip
    assert data["content"] == []
    anthropic.types.Message.model_validate(data)


async def test_sdks_read_whole_answers_over_http():
    data = openai_wire.render_response(result("Hello"), model="m", request_id=RID, created=1)
    async with openai_client(data) as client:
        got = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )
    assert got.choices[0].message.content == "Hello"
    data = anthropic_wire.render_response(result("Hello"), model="m", request_id=RID, created=1)
    async with anthropic_client(data) as aclient:
        message = await aclient.messages.create(
            model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    assert message.content[0].type == "text" and message.content[0].text == "Hello"


# --- errors -----------------------------------------------------------------------------------


def test_error_bodies_in_each_format():
    err = WireError(400, "messages[0].role: bad", param="messages[0].role")
    assert json.loads(openai_wire.render_error(err)) == {"error": {
        "message": "messages[0].role: bad", "type": "invalid_request_error",
        "param": "messages[0].role", "code": None}}  # fmt: skip
    assert json.loads(anthropic_wire.render_error(err)) == {
        "type": "error", "error": {"type": "invalid_request_error",
                                   "message": "messages[0].role: bad"}}  # fmt: skip
    down = WireError(503, "all down", kind="overloaded_error", retry_after=5)
    assert json.loads(openai_wire.render_error(down))["error"]["type"] == "server_error"
    assert json.loads(anthropic_wire.render_error(down))["error"]["type"] == "overloaded_error"
    auth = WireError(401, "key", kind="authentication_error")
    assert json.loads(openai_wire.render_error(auth))["error"]["code"] == "invalid_api_key"
    missing = WireError(404, "no such model", kind="not_found_error", param="model")
    assert json.loads(openai_wire.render_error(missing))["error"]["code"] == "model_not_found"
    assert WireError(500, "x", kind="made_up").kind == "api_error"
    assert WireError(400, "two\nlines " + "x" * 5000).message.count("\n") == 0
    assert len(WireError(400, "x" * 5000).message) <= 2000


def test_error_for_maps_failover_errors_to_statuses():
    down = error_for(broken())
    assert (down.status, down.kind, down.retry_after) == (503, "overloaded_error",
                                                          DEFAULT_RETRY_AFTER)  # fmt: skip
    assert error_for(broken(), retry_after=12.5).retry_after == 12.5
    unfit = AllProvidersFailed("no provider can serve this request: a: skipped",
                               [Attempt("a", "skipped", reason="vision_unsupported")])  # fmt: skip
    assert error_for(unfit).status == 400
    late = AllProvidersFailed("request deadline exceeded: a: transient", [Attempt("a", "failed")],
                              reason="deadline")  # fmt: skip
    assert (error_for(late).status, error_for(late).kind) == (504, "timeout_error")
    keyless = AllProvidersFailed("no provider is configured: a: skipped", [],
                                 reason="not_configured")  # fmt: skip
    assert (error_for(keyless).status, error_for(keyless).retry_after) == (503, None)
    # The status follows the router's reason, never the message's wording: an upstream
    # message that happens to start like one of the router's heads changes nothing.
    lookalike = AllProvidersFailed("request deadline exceeded (upstream said so)",
                                   [Attempt("a", "failed")])  # fmt: skip
    assert (error_for(lookalike).status, error_for(lookalike).kind) == (503, "overloaded_error")
    bad = error_for(ValueError("messages[2].content: must be a string or a list of parts"))
    assert (bad.status, bad.param) == (400, "messages[2].content")
    assert error_for(ValueError("no field here")).param is None
    rejected = RequestRejected(InvalidRequest("too big", provider="a", status=413))
    assert (error_for(rejected).status, error_for(rejected).kind) == (413, "request_too_large")
    assert error_for(RequestRejected(InvalidRequest("bad", provider="a"))).status == 400
    full = error_for(QueueFull("queue is full"))
    assert (full.status, full.kind, full.retry_after) == (429, "rate_limit_error", 5.0)
    assert error_for(TimeoutError()).status == 504
    internal = error_for(RuntimeError("secret detail sk-123"))
    assert internal.status == 500 and "secret" not in internal.message
    assert error_for(ConfigError("bad file")).status == 500

    from failover_cli.errors import BudgetExceeded

    over = error_for(BudgetExceeded("refused by the budget: a: skipped", broken().attempts))
    assert (over.status, over.kind, over.retry_after) == (429, "rate_limit_error", None)
    assert openai_wire.error_for is error_for and anthropic_wire.error_for is error_for


# --- OpenAI streams, read by the SDK --------------------------------------------------------------


async def openai_chunks(raw: bytes) -> list[Any]:
    async with openai_client(raw, stream=True) as client:
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        return [chunk async for chunk in stream]


async def test_openai_text_stream_with_usage():
    events = [TextDelta("Hel"), TextDelta(""), TextDelta("lo"), StreamDone(result("Hello"))]
    raw = await rendered(openai_wire, feed(events), include_usage=True)
    assert raw.endswith(b"data: [DONE]\n\n")
    frames = raw.split(b"\n\n")
    assert all(f.startswith(b"data: ") for f in frames if f)
    chunks = await openai_chunks(raw)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert all(c.usage is None for c in chunks[:-1])
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (12, 5)
    assert {c.id for c in chunks} == {"chatcmpl-0123456789abcdef01234567"}
    assert {c.model for c in chunks} == {"served-model"}
    assert all(c.object == "chat.completion.chunk" for c in chunks)


class Verdict(pydantic.BaseModel):
    ok: bool


async def test_a_refusal_reaches_openai_clients_as_a_refusal():
    """OpenAI's own shape for a refusal (``content`` null, ``refusal`` the text, finish
    ``stop``), whole and streamed: the SDK's structured-output helpers then give
    ``parsed=None`` and the refusal, where ``content_filter`` made them raise."""
    refused = replace(result("I can't help.", finish="content_filter", stop_reason="stop"),
                      refused=True)  # fmt: skip
    raw = openai_wire.render_response(refused, model="m", request_id=RID, created=1)
    async with openai_client(raw) as client:
        done = await client.chat.completions.parse(
            model="m", messages=[{"role": "user", "content": "x"}], response_format=Verdict
        )
    message = done.choices[0].message
    assert (message.content, message.refusal, message.parsed) == (None, "I can't help.", None)
    assert done.choices[0].finish_reason == "stop"
    events = [TextDelta("I can't", refusal=True), TextDelta(" help.", refusal=True),
              StreamDone(refused)]  # fmt: skip
    raw = await rendered(openai_wire, feed(events))
    async with (
        openai_client(raw, stream=True) as client,
        client.chat.completions.stream(
            model="m", messages=[{"role": "user", "content": "x"}], response_format=Verdict
        ) as stream,
    ):
        final = await stream.get_final_completion()
    message = final.choices[0].message  # content: the "" of the first chunk, sent before
    assert (message.content, message.refusal, message.parsed) == ("", "I can't help.", None)
    assert final.choices[0].finish_reason == "stop"
    filtered = result("Partial", finish="content_filter")  # a content filter stays one
    whole = json.loads(openai_wire.render_response(filtered, model="m", request_id=RID,
                                                   created=1))  # fmt: skip
    assert whole["choices"][0]["finish_reason"] == "content_filter"
    assert whole["choices"][0]["message"]["content"] == "Partial"


async def test_openai_stream_without_usage_has_no_usage_chunk():
    raw = await rendered(openai_wire, feed([TextDelta("x"), StreamDone(result("x"))]))
    chunks = await openai_chunks(raw)
    assert all(c.choices for c in chunks) and b'"usage"' not in raw


async def test_openai_tool_call_stream_accumulates_in_the_sdk():
    events = [
        TextDelta("Checking."),
        ToolCallDelta(0, "toolu_a", "get_weather", '{"ci'),
        ToolCallDelta(0, arguments='ty":"Oslo"}'),
        ToolCallDelta(1, "toolu_b", "get_time", ""),
        ToolCallDelta(1, arguments="{}"),
        StreamDone(result("Checking.", [("toolu_a", "get_weather", '{"city":"Oslo"}'),
                                        ("toolu_b", "get_time", "{}")], "tool_calls")),
    ]  # fmt: skip
    raw = await rendered(openai_wire, feed(events))
    async with (
        openai_client(raw, stream=True) as client,
        client.chat.completions.stream(
            model="m", messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        final = await stream.get_final_completion()
    choice = final.choices[0]
    assert choice.message.content == "Checking."
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("toolu_a", "get_weather", '{"city":"Oslo"}'), ("toolu_b", "get_time", "{}")
    ]  # fmt: skip
    first = json.loads(raw.split(b"\n\n")[2].removeprefix(b"data: "))
    assert first["choices"][0]["delta"]["tool_calls"] == [
        {"index": 0, "id": "toolu_a", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"ci'}}
    ]  # fmt: skip


async def test_openai_stream_failing_mid_answer_ends_with_an_error_not_done():
    raw = await rendered(openai_wire, feed([TextDelta("Hel")], broken()), include_usage=True)
    assert b"[DONE]" not in raw
    last = json.loads(raw.strip().split(b"\n\n")[-1].removeprefix(b"data: "))
    assert last["error"]["type"] == "server_error"
    assert "no provider could answer" in last["error"]["message"]
    got: list[str] = []
    with pytest.raises(openai.APIError, match="no provider could answer"):
        async with openai_client(raw, stream=True) as client:
            stream = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            async for chunk in stream:
                got.append(chunk.choices[0].delta.content or "")
    assert "".join(got) == "Hel"


async def test_openai_stream_cut_without_its_end_is_an_error():
    raw = await rendered(openai_wire, feed([TextDelta("Hel")]))
    assert b"[DONE]" not in raw
    with pytest.raises(openai.APIError, match="ended before it was complete"):
        await openai_chunks(raw)


async def test_openai_restart_after_content_ends_with_an_error():
    events = [TextDelta("one two"), StreamSwitched("a", "b", "restart", 7), TextDelta("uno"),
              StreamDone(result("uno"))]  # fmt: skip
    raw = await rendered(openai_wire, feed(events))
    assert b"uno" not in raw and b"[DONE]" not in raw
    with pytest.raises(openai.APIError, match="start it again from the beginning"):
        await openai_chunks(raw)


async def test_openai_restart_before_content_and_continuations_just_go_on():
    events = [StreamSwitched("a", "b", "restart", 0), TextDelta("one "),
              StreamSwitched("b", "c", "prefill", 4), TextDelta("two"),
              StreamSwitched("c", "d", "instruct", 7), TextDelta("!"),
              StreamDone(result("one two!"))]  # fmt: skip
    chunks = await openai_chunks(await rendered(openai_wire, feed(events)))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "one two!"


# --- Anthropic streams, read by the SDK ---------------------------------------------------------


async def anthropic_final(raw: bytes) -> Any:
    async with (
        anthropic_client(raw, stream=True) as client,
        client.messages.stream(
            model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        return await stream.get_final_message()


def sse_names(raw: bytes) -> list[str]:
    return [f.split(b"\n")[0].removeprefix(b"event: ").decode() for f in raw.split(b"\n\n") if f]


async def test_anthropic_text_stream():
    events = [
        TextDelta("Hel"),
        TextDelta("lo"),
        StreamDone(result("Hello", stop_reason="end_turn")),
    ]
    raw = await rendered(anthropic_wire, feed(events))
    assert sse_names(raw) == ["message_start", "ping", "content_block_start",
                              "content_block_delta", "content_block_delta", "content_block_stop",
                              "message_delta", "message_stop"]  # fmt: skip
    message = await anthropic_final(raw)
    assert message.id == "msg_0123456789abcdef01234567" and message.model == "served-model"
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [("text", "Hello")]
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (8, 5)
    assert message.usage.cache_read_input_tokens == 4


async def test_anthropic_tool_use_stream_accumulates_in_the_sdk():
    events = [
        TextDelta("Checking."),
        ToolCallDelta(0, "call_a", "get_weather", '{"ci'),
        ToolCallDelta(0, arguments='ty":"Oslo"}'),
        ToolCallDelta(1, "toolu_b", "get_time", ""),
        StreamDone(result("Checking.", [("call_a", "get_weather", '{"city":"Oslo"}'),
                                        ("toolu_b", "get_time", "{}")], "tool_calls")),
    ]  # fmt: skip
    raw = await rendered(anthropic_wire, feed(events))
    message = await anthropic_final(raw)
    text, weather, clock = message.content
    assert text.type == "text" and text.text == "Checking."
    assert weather.type == "tool_use" and weather.name == "get_weather"
    assert weather.input == {"city": "Oslo"}
    assert weather.id.startswith("toolu_") and clock.id == "toolu_b"  # type: ignore[union-attr]
    assert clock.type == "tool_use" and clock.input == {}
    assert message.stop_reason == "tool_use"
    whole = json.loads(anthropic_wire.render_response(events[-1].result, model="m",  # type: ignore[attr-defined]
                                                      request_id=RID, created=1))  # fmt: skip
    assert [b.get("id") for b in whole["content"][1:]] == [weather.id, clock.id]
    starts = [json.loads(f.split(b"data: ")[1]) for f in raw.split(b"\n\n")
              if f.startswith(b"event: content_block_start")]  # fmt: skip
    assert [s["index"] for s in starts] == [0, 1, 2]


async def test_anthropic_blocks_stay_in_sequence_when_tool_calls_interleave():
    """Chat Completions may interleave calls' argument fragments by index, and text may come
    after a call; a Messages stream's blocks run one after another: each block's stop event
    (which SDK clients act on) carries its whole input, and no delta follows a stop."""
    events = [
        TextDelta("Checking."),
        ToolCallDelta(0, "call_a", "get_weather", '{"ci'),
        ToolCallDelta(1, "call_b", "get_time", '{"tz'),
        ToolCallDelta(0, arguments='ty":"Oslo"}'),
        ToolCallDelta(1, arguments='":"UTC"}'),
        TextDelta(" Done."),
        StreamDone(result("Checking. Done.", [("call_a", "get_weather", '{"city":"Oslo"}'),
                                              ("call_b", "get_time", '{"tz":"UTC"}')],
                          "tool_calls")),
    ]  # fmt: skip
    raw = await rendered(anthropic_wire, feed(events))
    frames = [json.loads(f.split(b"data: ", 1)[1]) for f in raw.split(b"\n\n") if f]
    stopped: set[int] = set()
    opened: list[int] = []
    for frame in frames:
        index = frame.get("index")
        if frame["type"] == "content_block_start":
            assert not opened or opened[-1] in stopped, "a block starts before the last stops"
            opened.append(index)
        elif frame["type"] in ("content_block_delta", "content_block_stop"):
            assert index == opened[-1] and index not in stopped, frame
            if frame["type"] == "content_block_stop":
                stopped.add(index)
    assert opened == [0, 1, 2, 3] and stopped == {0, 1, 2, 3}
    async with (
        anthropic_client(raw, stream=True) as client,
        client.messages.stream(
            model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        stops = [e.content_block async for e in stream if e.type == "content_block_stop"]
        final = await stream.get_final_message()
    inputs = {b.name: b.input for b in stops if b.type == "tool_use"}
    assert inputs == {"get_weather": {"city": "Oslo"}, "get_time": {"tz": "UTC"}}
    assert [b.type for b in final.content] == ["text", "tool_use", "tool_use", "text"]
    assert final.content[0].text + final.content[3].text == "Checking. Done."  # type: ignore[union-attr]


async def test_anthropic_stream_failing_mid_answer_ends_with_an_error_event():
    raw = await rendered(anthropic_wire, feed([TextDelta("Hel")], broken()))
    assert b"message_stop" not in raw
    assert sse_names(raw)[-1] == "error"
    last = json.loads(raw.strip().split(b"\n\n")[-1].split(b"data: ")[1])
    assert last["type"] == "error" and last["error"]["type"] == "overloaded_error"
    with pytest.raises(anthropic.APIError, match="overloaded_error"):
        await anthropic_final(raw)


async def test_anthropic_stream_cut_or_restarted_after_content_is_an_error():
    cut = await rendered(anthropic_wire, feed([TextDelta("Hel")]))
    assert sse_names(cut)[-1] == "error" and b"message_stop" not in cut
    with pytest.raises(anthropic.APIError):
        await anthropic_final(cut)
    restarted = await rendered(anthropic_wire, feed([
        ToolCallDelta(0, "toolu_a", "f", '{"a'), StreamSwitched("a", "b", "restart", 0),
        ToolCallDelta(0, "toolu_b", "f", "{}"), StreamDone(result(""))]))  # fmt: skip
    assert b"toolu_b" not in restarted and b"message_stop" not in restarted
    with pytest.raises(anthropic.APIError, match="start it again"):
        await anthropic_final(restarted)


async def test_anthropic_restart_before_content_just_goes_on():
    events = [StreamSwitched("a", "b", "restart", 0), TextDelta("fine"),
              StreamSwitched("b", "c", "prefill", 4), TextDelta("!"),
              StreamDone(result("fine!"))]  # fmt: skip
    message = await anthropic_final(await rendered(anthropic_wire, feed(events)))
    assert message.content[0].type == "text" and message.content[0].text == "fine!"


# --- through a real router ------------------------------------------------------------------------


async def test_a_real_router_stream_broken_inside_a_tool_call_reaches_the_client_as_an_error():
    clock = VirtualClock()
    broken_call = Reply(tool_calls=[("get_weather", {"city": "Rome"})], error=outage(),
                        fail_after=0)  # fmt: skip
    claude = FakeProvider("claude", [broken_call], kind="anthropic", clock=clock)
    gpt = FakeProvider("gpt", [Reply(tool_calls=[("get_weather", {"city": "Rome"})])])
    router = fake_router(claude, gpt, clock=clock)
    req = an(tools=[WEATHER], stream=True)

    async def run() -> bytes:
        stream = router.stream(**req.route_kwargs)
        try:
            return await rendered(anthropic_wire, stream.events())
        finally:
            await stream.aclose()

    raw = await clock.run(run())
    assert sse_names(raw)[-1] == "error" and b"message_stop" not in raw
    # A text stream broken mid-answer is continued, and the client sees one whole answer.
    talker = FakeProvider("talker", [Reply("one two three", error=outage(), fail_after=2)],
                          kind="ollama")  # fmt: skip
    router = fake_router(talker, FakeProvider("gpt", [Reply("three")]), clock=clock)
    stream = router.stream(**oa(stream=True).route_kwargs)
    raw = await clock.run(rendered(openai_wire, stream.events(), include_usage=True))
    chunks = await openai_chunks(raw)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one twothree"  # the fake continues right after the kept text
    assert raw.endswith(b"data: [DONE]\n\n")


@pytest.mark.parametrize("stream", [False, True])
async def test_an_anthropic_client_served_by_an_openai_simulator(sim: Any, stream: bool):
    """The whole way: an Anthropic body, the router, an OpenAI provider over loopback HTTP,
    and the answer read by the Anthropic SDK."""
    from failover_cli.router import FailoverRouter

    s = sim("openai", Behavior(text="Sunny in Paris."))
    config = [ProviderConfig("gpt", "openai", "gpt-4o-mini", base_url=s.base_url + "/v1",
                             api_key_env="SIM_KEY")]  # fmt: skip
    req = an(system="Be brief.", messages=[{"role": "user", "content": "Weather?"}],
             tools=[WEATHER], tool_choice={"type": "none"}, stream=stream)  # fmt: skip
    async with FailoverRouter(config, env={"SIM_KEY": SIM_KEY}, background_probes=False) as router:
        if stream:
            rs = router.stream(**req.route_kwargs)
            raw = await rendered(anthropic_wire, rs.events())
            message = await anthropic_final(raw)
        else:
            got = await router.route(**req.route_kwargs)
            data = anthropic_wire.render_response(got, model=got.model, request_id=RID, created=1)
            message = anthropic.types.Message.model_validate(json.loads(data))
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [
        ("text", "Sunny in Paris.")
    ]
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens > 0
    sent = s.requests[-1].json
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["tool_choice"] == "none"


def test_parsed_values_are_not_rechecked_differently_by_the_router():
    """What parse_request hands on is what build_request makes of it: the router's second
    look changes nothing."""
    kw = an(tools=[WEATHER], tool_choice={"type": "any"}, stop_sequences=["x"]).route_kwargs
    once = build_request(**kw)
    assert once.messages is kw["messages"]  # checked once: the router reuses the checked value
    assert build_request(**kw) == once


@pytest.mark.parametrize("module", [openai_wire, anthropic_wire])
async def test_a_stream_given_up_on_is_closed_not_left_open(module: Any):
    closed: list[bool] = []

    async def events() -> AsyncIterator[Any]:
        try:
            yield TextDelta("one")
            yield StreamSwitched("a", "b", "restart", 3)
            yield TextDelta("never read")
        finally:
            closed.append(True)

    raw = await rendered(module, events())
    assert b"never read" not in raw
    assert closed == [True]  # the provider's stream is released at once, not at GC


# --- hostile bodies ---------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False)
    | st.sampled_from(["", "user", "assistant", "system", "tool", "text", "image", "tool_use",
                       "tool_result", "t1", "get_weather", "auto", "any", "json_schema"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["role", "content", "type", "text", "id", "name", "input",
                         "tool_use_id", "source", "tool_calls", "function", "tool_call_id",
                         "arguments", "schema", "format", "media_type", "data", "url"]),
        inner, max_size=4),
    max_leaves=12,
)  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(
    messages=JSON,
    tools=JSON,
    tool_choice=JSON,
    extra=st.dictionaries(st.sampled_from(["system", "stop_sequences", "output_config",
                                           "stop", "response_format", "stream"]), JSON,
                          max_size=2),
)  # fmt: skip
def test_hostile_bodies_get_a_400_or_a_request_the_router_takes(
    messages: Any, tools: Any, tool_choice: Any, extra: dict[str, Any]
):
    for module, fields in (
        (anthropic_wire, {"model": "m", "max_tokens": 5}),
        (openai_wire, {"model": "m"}),
    ):
        raw = body(**fields, messages=messages, tools=tools, tool_choice=tool_choice, **extra)
        try:
            parsed = module.parse_request(raw)
        except WireError as err:
            assert err.status == 400 and err.message and "\n" not in err.message
            continue
        build_request(**parsed.route_kwargs)  # the router's own checks pass too


# --- the gateway's streams, read back by failover's own adapters ----------------------------------


@pytest.mark.parametrize(("module", "kind"), [(openai_wire, "openai"),
                                              (anthropic_wire, "anthropic")])  # fmt: skip
async def test_a_gateway_stream_read_by_our_own_adapter_gives_the_same_events(
    module: Any, kind: str
):
    """A gateway behind a gateway: what we emit is what our adapters read."""
    calls = [("toolu_a", "get_weather", '{"city":"Oslo"}')]
    events = [TextDelta("Checking."), ToolCallDelta(0, "toolu_a", "get_weather", '{"city":'),
              ToolCallDelta(0, arguments='"Oslo"}'),
              StreamDone(result("Checking.", calls, "tool_calls"))]  # fmt: skip
    raw = await rendered(module, feed(events), include_usage=True)

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=raw)

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    config = ProviderConfig("p", kind, "m", base_url="http://gw")  # type: ignore[arg-type]
    adapter = create_provider(config, client, env={f"{kind.upper()}_API_KEY": "k"})
    request = build_request(messages=[{"role": "user", "content": "hi"}], tools=[OPENAI_WEATHER])
    try:
        got = [e async for e in adapter.stream(request, timeout=5)]
    finally:
        await client.aclose()
    text = "".join(e.text for e in got if isinstance(e, TextDelta))
    deltas = [e for e in got if isinstance(e, ToolCallDelta)]
    assert text == "Checking."
    assert deltas[0].name == "get_weather" and deltas[0].id == "toolu_a"
    assert "".join(d.arguments for d in deltas) == '{"city":"Oslo"}'
    end = got[-1]
    assert end.finish_reason == "tool_calls"  # type: ignore[union-attr]
    assert end.usage == USAGE  # type: ignore[union-attr]


IDS = st.sampled_from(["t1", "t2", "call_3"])
BLOCK = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, st.sampled_from(["", "a", "b c"])),
    st.just({"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PNG}}),
    st.builds(lambda i: {"type": "tool_use", "id": i, "name": "get_weather",
                         "input": {"city": "x"}}, IDS),
    st.builds(lambda i, e: {"type": "tool_result", "tool_use_id": i, "content": "r",
                            "is_error": e}, IDS, st.booleans()),
    st.just({"type": "thinking", "thinking": "hm", "signature": "s"}),
)  # fmt: skip
TURN = st.fixed_dictionaries({
    "role": st.sampled_from(["user", "assistant", "user", "system"]),
    "content": st.one_of(st.sampled_from(["", "hello"]), st.lists(BLOCK, max_size=3)),
})  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(st.lists(TURN, min_size=1, max_size=6))
def test_hostile_conversations_get_a_400_naming_a_client_field_or_route(turns: list[Any]):
    try:
        parsed = an(messages=turns, tools=[WEATHER])
    except WireError as err:
        assert err.status == 400
        assert err.param is not None and err.param.startswith(("messages", "system"))
        assert err.message.startswith(err.param)
        return
    again = build_request(**parsed.route_kwargs)  # the router's own checks pass too
    uses = {c.id for m in again.messages for c in m.tool_calls}
    answers = {m.tool_call_id for m in again.messages if m.role == "tool"}
    assert uses == answers


def test_5xx_messages_name_providers_and_classes_never_upstream_text():
    # An upstream 401 body can echo part of the key; a 5xx summary must not relay it.
    leak = "invalid x-api-key sk-ant-...wxyz for org acme"
    attempts = [
        Attempt("claude", "failed", ErrorClass.PROVIDER, 401, leak),
        Attempt("gpt", "failed", ErrorClass.TRANSIENT, 503, "upstream says: " + leak),
        Attempt("llama", "skipped", reason="breaker_open"),
    ]
    down = error_for(AllProvidersFailed(f"no provider could answer: claude: {leak}", attempts))
    assert down.status == 503 and "wxyz" not in down.message and "acme" not in down.message
    assert "claude" in down.message and "401" in down.message and "gpt" in down.message
    late = error_for(AllProvidersFailed(f"request deadline exceeded: {leak}", attempts,
                                        reason="deadline"))  # fmt: skip
    assert late.status == 504 and "wxyz" not in late.message
    bad_gateway = error_for(ProviderError(leak, provider="claude", status=401))
    assert bad_gateway.status == 502 and "wxyz" not in bad_gateway.message
    assert "claude" in bad_gateway.message


@pytest.mark.parametrize(
    "text",
    ["plain", "", 'quote " and \\ backslash', "tab\tnew\nline\r\x00\x1f", "é 漢字 🙂",
     "\u2028\u2029", "</script>", "{\"json\": [1]}"],
)  # fmt: skip
def test_text_frames_are_the_json_the_generic_encoder_writes(text: str):
    """A stream's text frames are templates around the encoded text: byte for byte what
    encoding the whole event would give, whatever the text holds."""
    from failover_cli.serve.anthropic_wire import _block_delta, _Events
    from failover_cli.serve.openai_wire import _Chunks

    chunks = _Chunks("m", "req_1", 1, include_usage=False)
    chunks.start()
    assert chunks.text(text) == chunks.chunk({"content": text})
    events = _Events("m", "req_1")
    events.text("first")  # opens the text block
    want = _block_delta(events.text_block, {"type": "text_delta", "text": text})
    assert events.text(text) == want
    for frame in (chunks.text(text), events.text(text)):
        data = frame.split(b"data: ", 1)[1]
        assert json.loads(data)  # one JSON document per frame


def test_the_field_a_refused_body_names_is_bounded():
    """The path of a lone surrogate or of nesting too deep names the field, cut short: a
    client's keys of any length do not come back whole in the error's message or param."""
    from failover_cli.serve.wire import load_object

    long_key = "k" * 10_000
    head = '{"extra": {"' + long_key + '": '
    for raw in (head + '"\\ud800"}}', head + "[" * 120 + "1" + "]" * 120 + "}}"):
        with pytest.raises(WireError) as info:
            load_object(raw.encode(), "bad body")
        assert info.value.param is not None and info.value.param.startswith("extra.kkk")
        assert len(info.value.param) <= 120 and len(info.value.message) < 300
