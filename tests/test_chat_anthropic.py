"""Anthropic Messages, both ways: the adapter against the loopback simulator over real HTTP,
the simulator's rejections in the API's words, the official SDK (anthropic 2.16) as a client
of the simulator, and the adapter's own decisions (pause_turn, structured output, ids) on
scripted responses.

The exact translations are pinned by tests/golden/anthropic/*.json (see tests/test_golden.py)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import anthropic
import httpx
import pytest
from conftest import SIM_KEY
from streams import assembled, events_of, text_of

from failover_cli.chat import Message, ToolCall
from failover_cli.errors import InvalidRequest, ProviderError, TransientError
from failover_cli.providers import create_provider
from failover_cli.providers.anthropic import JSON_TOOL, MAX_PAUSES, _Unwrap, tool_use_id
from failover_cli.request import build_request
from failover_cli.sim import Behavior, Simulator
from failover_cli.types import (
    Completion,
    CompletionRequest,
    ProviderConfig,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)

MODEL = "claude-sonnet-4-5"  # native structured output, takes temperature
OLD = "claude-3-5-haiku-20241022"  # no output_config: structured output by a forced tool
CURRENT = "claude-opus-4-7"  # no sampling parameters in the current API
PARAMS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Weather in a city", "parameters": PARAMS},
}
PARIS = Behavior(tool_call=("get_weather", {"city": "Paris"}))
PNG = (  # a 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}
PERSON_FORMAT = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
SDK_TOOL = {"name": "get_weather", "description": "Weather in a city", "input_schema": PARAMS}


# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture
async def over_sim(sim: Any) -> AsyncIterator[Callable[..., tuple[Any, Simulator]]]:
    """``over_sim(behavior, model=MODEL)`` -> (adapter, simulator) over loopback HTTP."""
    made: list[Any] = []

    def start(behavior: Behavior | None = None, model: str = MODEL) -> tuple[Any, Simulator]:
        s = sim("anthropic", behavior)
        config = ProviderConfig(
            name="claude", kind="anthropic", model=model, base_url=s.base_url, api_key_env="K"
        )
        provider = create_provider(config, env={"K": SIM_KEY})
        made.append(provider)
        return provider, s

    yield start
    for provider in made:
        await provider.aclose()


class Scripted:
    """An httpx transport answering each POST with the next scripted JSON body (or SSE text),
    recording the bodies it was sent."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.sent: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(json.loads(request.content))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, str):
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, text=answer)
        return httpx.Response(200, json=answer)


def scripted(*answers: Any, model: str = MODEL) -> tuple[Any, Scripted]:
    script = Scripted(*answers)
    client = httpx.AsyncClient(transport=httpx.MockTransport(script))
    config = ProviderConfig(name="claude", kind="anthropic", model=model, api_key_env="K")
    return create_provider(config, client, env={"K": "k"}), script


def reply(content: list[dict[str, Any]], stop_reason: str, **usage: Any) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5, **usage},
    }


def sse(*events: dict[str, Any]) -> str:
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)


START = {
    "type": "message_start",
    "message": {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": 10, "output_tokens": 1},
    },
}


# --- the plain path ----------------------------------------------------------------------------


async def test_plain_request_body_is_unchanged_and_the_model_can_be_overridden():
    provider, script = scripted(reply([{"type": "text", "text": "ok"}], "end_turn"))
    request = CompletionRequest(
        "Hi", max_tokens=20, system="Be brief.", temperature=0.3, assistant_prefix="Sure:  "
    )
    await provider.complete(request, timeout=5)
    await provider.complete(replace(request, model="claude-other"), timeout=5)
    assert script.sent[0] == {
        "model": MODEL,
        "max_tokens": 20,
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Sure:"},
        ],
        "stream": False,
        "system": "Be brief.",
        "temperature": 0.3,
    }
    assert script.sent[1] == {**script.sent[0], "model": "claude-other"}
    await provider.aclose()


async def test_tool_choice_none_and_trailing_assistant_whitespace():
    provider, script = scripted(reply([{"type": "text", "text": "ok"}], "end_turn"))
    request = build_request(
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "I think  \n"},
        ],
        tools=[WEATHER],
        tool_choice="none",
    )
    await provider.complete(request, timeout=5)
    body = script.sent[0]
    assert body["tool_choice"] == {"type": "none"}
    assert body["messages"][-1] == {"role": "assistant", "content": "I think"}
    assert "top_k" not in body
    await provider.aclose()


def test_tool_use_ids_keep_valid_ids_and_map_others_deterministically():
    assert tool_use_id("call_abc-123") == "call_abc-123"
    mapped = tool_use_id("functions.get_weather:0")
    digest = hashlib.sha256(b"functions.get_weather:0").hexdigest()[:24]
    assert mapped == "toolu_" + digest == tool_use_id("functions.get_weather:0")
    assert tool_use_id("a|b") != tool_use_id("a/b")


async def test_empty_tool_result_is_sent_without_content_and_results_share_one_turn():
    provider, script = scripted(reply([{"type": "text", "text": "done"}], "end_turn"))
    calls = [
        {"id": f"call_{i}", "type": "function", "function": {"name": "get_weather"}}
        for i in range(3)
    ]
    request = build_request(
        messages=[
            {"role": "user", "content": "Go"},
            {"role": "assistant", "content": None, "tool_calls": calls},
            {"role": "tool", "tool_call_id": "call_0", "content": "a"},
            {"role": "tool", "tool_call_id": "call_1", "content": ""},
            {"role": "tool", "tool_call_id": "call_2", "content": "c"},
        ],
        tools=[WEATHER],
    )
    await provider.complete(request, timeout=5)
    turns = script.sent[0]["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_0", "content": "a"},
        {"type": "tool_result", "tool_use_id": "call_1"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": "c"},
    ]
    assert [b["input"] for b in turns[1]["content"]] == [{}, {}, {}]
    await provider.aclose()


# --- structured output decisions ---------------------------------------------------------------


async def test_an_open_object_schema_goes_by_forced_tool_even_on_a_native_model():
    open_schema = {"type": "object", "properties": {"x": {}}, "additionalProperties": True}
    answer = reply(
        [{"type": "tool_use", "id": "toolu_1", "name": JSON_TOOL, "input": {"x": 1, "y": 2}}],
        "tool_use",
    )
    provider, script = scripted(answer)
    request = build_request(
        "Anything",
        response_format={"type": "json_schema", "json_schema": {"schema": open_schema}},
    )
    result = await provider.complete(request, timeout=5)
    body = script.sent[0]
    assert "output_config" not in body
    assert body["tools"][0]["input_schema"] == open_schema
    assert body["tool_choice"] == {"type": "tool", "name": JSON_TOOL}
    assert json.loads(result.text) == {"x": 1, "y": 2}
    assert (result.finish_reason, result.tool_calls) == ("stop", ())
    await provider.aclose()


async def test_native_json_follows_a_model_override():
    provider, script = scripted(reply([{"type": "text", "text": "{}"}], "end_turn"), model=OLD)
    request = build_request("x", response_format=PERSON_FORMAT)
    await provider.complete(request, timeout=5)
    await provider.complete(replace(request, model=MODEL), timeout=5)
    assert "output_config" not in script.sent[0] and script.sent[0]["tools"][0]["name"] == JSON_TOOL
    assert script.sent[1]["model"] == MODEL and "tools" not in script.sent[1]
    schema = script.sent[1]["output_config"]["format"]["schema"]
    assert schema == {**PERSON, "additionalProperties": False}
    await provider.aclose()


async def test_json_tool_name_avoids_a_tool_of_the_same_name():
    taken = {"type": "function", "function": {"name": JSON_TOOL, "parameters": PARAMS}}
    provider, script = scripted(reply([{"type": "text", "text": "x"}], "end_turn"), model=OLD)
    await provider.complete(
        build_request("x", tools=[taken], response_format={"type": "json_object"}), timeout=5
    )
    names = [t["name"] for t in script.sent[0]["tools"]]
    assert names == [JSON_TOOL, JSON_TOOL + "_"]
    assert script.sent[0]["tool_choice"] == {"type": "any"}
    await provider.aclose()


async def test_required_tool_choice_sends_no_json_tool():
    provider, script = scripted(reply([{"type": "text", "text": "x"}], "end_turn"), model=OLD)
    request = build_request(
        "x", tools=[WEATHER], tool_choice="required", response_format=PERSON_FORMAT
    )
    await provider.complete(request, timeout=5)
    assert [t["name"] for t in script.sent[0]["tools"]] == ["get_weather"]
    assert script.sent[0]["tool_choice"] == {"type": "any"}
    await provider.aclose()


@pytest.mark.parametrize(
    "pieces",
    [
        ['{"value": [1, {"a": 2}]}'],
        ["", '{"val', 'ue": ', "[1, {", '"a": 2}', "]", "}"],
        ['{ "value" :[1,{"a":2}] ', "}  "],
    ],
)
def test_unwrap_streams_the_value_of_a_wrapped_answer(pieces):
    unwrap = _Unwrap()
    text = "".join(unwrap.feed(p) for p in pieces) + unwrap.close()
    assert json.loads(text) == [1, {"a": 2}]


async def test_streamed_wrapped_answer_is_the_bare_value():
    events = [
        START,
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "t", "name": JSON_TOOL, "input": {}},
        },
        *(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": piece},
            }
            for piece in ['{"value": ["re', 'd", "blue"', "]}"]
        ),
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 9},
        },
        {"type": "message_stop"},
    ]
    provider, _ = scripted(sse(*events), model=OLD)
    schema = {"type": "array", "items": {"type": "string"}}
    request = build_request(
        "Colours", response_format={"type": "json_schema", "json_schema": {"schema": schema}}
    )
    got = await events_of(provider, request)
    assert json.loads(text_of(got)) == ["red", "blue"]
    assert got[-1] == StreamEnd(MODEL, Usage(10, 9), "tool_use", finish_reason="stop")
    await provider.aclose()


@pytest.mark.parametrize("stream", [False, True])
async def test_in_json_tool_mode_only_the_tool_input_is_the_answer(stream):
    preamble = {"type": "text", "text": "Here you go: "}
    tool = {"type": "tool_use", "id": "t", "name": JSON_TOOL, "input": {"name": "Ada", "age": 36}}
    if stream:
        answer: Any = sse(
            START,
            {"type": "content_block_start", "index": 0, "content_block": preamble},
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "!"},
            },
            {"type": "content_block_stop", "index": 0},
            {"type": "content_block_start", "index": 1, "content_block": {**tool, "input": {}}},
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": json.dumps(tool["input"])},
            },
            {"type": "content_block_stop", "index": 1},
            {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {}},
            {"type": "message_stop"},
        )
    else:
        answer = reply([preamble, tool], "tool_use")
    provider, _ = scripted(answer, model=OLD)
    request = build_request("Who?", response_format=PERSON_FORMAT)
    if stream:
        got = await events_of(provider, request)
        text, finish = text_of(got), got[-1].finish_reason  # type: ignore[union-attr]
    else:
        result = await provider.complete(request, timeout=5)
        text, finish = result.text, result.finish_reason
    assert json.loads(text) == {"name": "Ada", "age": 36}
    assert finish == "stop"
    await provider.aclose()


# --- pause_turn -------------------------------------------------------------------------------


SEARCH = [
    {"type": "text", "text": "Searching. "},
    {
        "type": "server_tool_use",
        "id": "srvtoolu_1",
        "name": "web_search",
        "input": {"query": "weather"},
    },
]


async def test_pause_turn_is_continued_with_the_paused_content_sent_back():
    provider, script = scripted(
        reply(SEARCH, "pause_turn"),
        reply([{"type": "text", "text": "It is sunny."}], "end_turn", cache_read_input_tokens=4),
    )
    request = build_request(messages=[{"role": "user", "content": "Weather?"}], stop="END")
    result = await provider.complete(request, timeout=5)
    assert len(script.sent) == 2
    first, second = script.sent
    assert second["messages"] == [*first["messages"], {"role": "assistant", "content": SEARCH}]
    assert second["stop_sequences"] == ["END"]
    assert result.text == "Searching. It is sunny."
    assert (result.stop_reason, result.finish_reason) == ("end_turn", "stop")
    assert result.usage == Usage(24, 10, 4)
    assert type(result) is Completion
    await provider.aclose()


async def test_pause_turn_is_continued_at_most_max_pauses_times():
    provider, script = scripted(reply([{"type": "text", "text": "."}], "pause_turn"))
    result = await provider.complete(CompletionRequest("x", stop=("\n",)), timeout=5)
    assert len(script.sent) == 1 + MAX_PAUSES
    assert len(script.sent[-1]["messages"]) == 1 + MAX_PAUSES
    assert result.text == "." * (1 + MAX_PAUSES)
    assert (result.stop_reason, result.finish_reason) == ("pause_turn", "length")
    await provider.aclose()


async def test_a_paused_stream_is_truncated_for_the_router_to_continue():
    stream = sse(
        START,
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hm"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "pause_turn"},
            "usage": {"output_tokens": 2},
        },
        {"type": "message_stop"},
    )
    provider, _ = scripted(stream)
    got: list[StreamEvent] = []
    with pytest.raises(TransientError) as info:
        async for event in provider.stream(CompletionRequest("x"), timeout=5):
            got.append(event)
    assert info.value.reason == "truncated"
    assert info.value.partial_text == "Hm"
    assert got == [TextDelta("Hm")]
    await provider.aclose()


# --- malformed responses are provider errors, never crashes ------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        [{"type": "tool_use", "id": "t", "name": "get_weather", "input": "city=Paris"}],
        [{"type": "tool_use", "id": "t", "input": {}}],
        [{"type": "tool_use", "name": "get_weather", "input": {}}],
        [{"type": "text", "text": 42}],
        "not a list",
    ],
)
async def test_malformed_content_is_a_malformed_error(content):
    data = reply([], "tool_use")
    data["content"] = content
    provider, _ = scripted(data)
    with pytest.raises(TransientError) as info:
        await provider.complete(build_request("x", tools=[WEATHER]), timeout=5)
    assert info.value.reason == "malformed"
    await provider.aclose()


@pytest.mark.parametrize(
    "usage",
    [
        {"input_tokens": "10", "output_tokens": 5},
        {"input_tokens": 1, "output_tokens": 5, "cache_read_input_tokens": [1]},
        {"input_tokens": 1, "output_tokens": 5, "output_tokens_details": {"thinking_tokens": "x"}},
    ],
)
async def test_malformed_usage_is_a_malformed_error(usage):
    data = reply([{"type": "text", "text": "x"}], "end_turn")
    data["usage"] = usage
    provider, _ = scripted(data)
    with pytest.raises(TransientError) as info:
        await provider.complete(CompletionRequest("x"), timeout=5)
    assert info.value.reason == "malformed"
    await provider.aclose()


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "content_block_start", "index": "0", "content_block": {"type": "tool_use"}},
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "name": "get_weather", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": None,
            "delta": {"type": "input_json_delta", "partial_json": "{"},
        },
    ],
)
async def test_malformed_stream_tool_events_are_malformed_errors(bad):
    provider, _ = scripted(sse(START, bad))
    with pytest.raises(TransientError) as info:
        await events_of(provider, build_request("x", tools=[WEATHER]))
    assert info.value.reason == "malformed"
    await provider.aclose()


# --- adapter and simulator over loopback HTTP --------------------------------------------------


async def test_tool_call_over_the_simulator(over_sim):
    provider, s = over_sim(PARIS)
    request = build_request(messages=[{"role": "user", "content": "Weather?"}], tools=[WEATHER])
    result = await provider.complete(request, timeout=5)
    assert result.finish_reason == "tool_calls" and result.stop_reason == "tool_use"
    (call,) = result.tool_calls
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    assert call.id.startswith("toolu_")
    sent = s.requests[-1].json
    assert sent["tools"][0]["input_schema"] == PARAMS


async def test_streamed_tool_call_reassembles_to_the_scripted_arguments(over_sim):
    provider, _ = over_sim(PARIS)
    request = build_request(messages=[{"role": "user", "content": "Weather?"}], tools=[WEATHER])
    got = await events_of(provider, request)
    deltas = [e for e in got if isinstance(e, ToolCallDelta)]
    assert len([d for d in deltas if d.arguments]) >= 2  # the JSON came in pieces
    assert deltas[0].id and deltas[0].name == "get_weather"
    (call,) = assembled(got).values()
    assert json.loads(call["arguments"]) == {"city": "Paris"}
    end = got[-1]
    assert isinstance(end, StreamEnd) and end.finish_reason == "tool_calls"


async def test_a_long_tool_name_round_trips_through_the_simulator(over_sim):
    long_name = "lookup_" + "x" * 80
    tool = {"type": "function", "function": {"name": long_name, "parameters": PARAMS}}
    provider, s = over_sim()
    request = build_request("Go", tools=[tool], tool_choice="required")
    result = await provider.complete(request, timeout=5)
    wire = s.requests[-1].json["tools"][0]["name"]
    assert len(wire) <= 64 and wire != long_name
    assert result.tool_calls[0].name == long_name
    assert json.loads(result.tool_calls[0].arguments) == {"city": "example"}


async def test_tool_results_with_foreign_ids_are_accepted_and_answered_in_text(over_sim):
    provider, s = over_sim(PARIS)
    calls = [
        {
            "id": "functions.get_weather:0",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        },
        {
            "id": "call_Xy12",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
        },
    ]
    request = build_request(
        messages=[
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None, "tool_calls": calls},
            {"role": "tool", "tool_call_id": "functions.get_weather:0", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_Xy12", "content": "24C"},
        ],
        tools=[WEATHER],
    )
    result = await provider.complete(request, timeout=5)
    assert result.text == PARIS.text and result.finish_reason == "stop"
    uses = [b["id"] for b in s.requests[-1].json["messages"][1]["content"]]
    assert uses == [tool_use_id("functions.get_weather:0"), "call_Xy12"]


async def test_images_are_accepted_by_the_simulator(over_sim):
    provider, s = over_sim()
    request = build_request(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare."},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.webp"}},
                ],
            }
        ]
    )
    result = await provider.complete(request, timeout=5)
    assert result.text == Behavior().text
    sources = [b["source"]["type"] for b in s.requests[-1].json["messages"][0]["content"][1:]]
    assert sources == ["base64", "url"]


@pytest.mark.parametrize("model", [MODEL, OLD])
@pytest.mark.parametrize("stream", [False, True])
async def test_json_schema_answer_parses(over_sim, model, stream):
    provider, s = over_sim(model=model)
    request = build_request("Who?", response_format=PERSON_FORMAT)
    if stream:
        got = await events_of(provider, request)
        text, end = text_of(got), got[-1]
        assert isinstance(end, StreamEnd) and end.finish_reason == "stop"
        assert not assembled(got)
    else:
        result = await provider.complete(request, timeout=5)
        text = result.text
        assert result.finish_reason == "stop" and not result.tool_calls
    assert json.loads(text) == {"name": "example", "age": 1}
    native = "output_config" in s.requests[-1].json
    assert native is (model == MODEL)


async def test_consecutive_user_turns_are_accepted(over_sim):
    provider, s = over_sim()
    request = build_request(
        messages=[
            {"role": "user", "content": "First."},
            {"role": "user", "content": "Second."},
            {"role": "assistant", "content": "Yes?"},
            {"role": "assistant", "content": "Go on."},
            {"role": "user", "content": "Third."},
        ]
    )
    result = await provider.complete(request, timeout=5)
    assert result.text == Behavior().text
    roles = [m["role"] for m in s.requests[-1].json["messages"]]
    assert roles == ["user", "user", "assistant", "assistant", "user"]


async def test_unanswered_tool_use_is_rejected_as_an_invalid_request(over_sim):
    provider, _ = over_sim()
    turns = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "toolu_9", "type": "function", "function": {"name": "get_weather"}}
            ],
        },
        {"role": "user", "content": "Never mind."},
    ]
    with pytest.raises(ValueError, match=r"messages\[2\]: the tool calls of messages\[1\]"):
        build_request(messages=turns, tools=[WEATHER])  # the library refuses it up front
    # Built past that check, the simulator refuses it as the API does.
    request = replace(
        build_request(messages=turns[:1], tools=[WEATHER]),
        messages=(
            Message.of("user", "Weather?"),
            Message("assistant", (), (ToolCall("toolu_9", "get_weather"),)),
            Message.of("user", "Never mind."),
        ),
    )
    with pytest.raises(InvalidRequest) as info:
        await provider.complete(request, timeout=5)
    assert info.value.status == 400
    assert "`tool_use` ids were found without `tool_result` blocks" in info.value.message
    assert "toolu_9" in info.value.message


BAD_BODIES = [
    pytest.param(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "x"}],
                }
            ]
        },
        "messages.0.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_1.",
        id="tool_result-without-tool_use",
    ),
    pytest.param(
        {
            "messages": [
                {"role": "user", "content": "a"},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "toolu_A", "name": "f", "input": {}}],
                },
                {"role": "user", "content": "b"},
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "toolu_B"}],
                },
            ]
        },
        "messages.3.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_B.",
        id="tool_result-answering-another-id",
    ),
    pytest.param(
        {"messages": [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "x"}]},
        'messages: Unexpected role "system".',
        id="system-role",
    ),
    pytest.param(
        {"messages": [{"role": "tool", "content": "x"}]},
        "messages.0.role: Input should be 'user' or 'assistant'",
        id="tool-role",
    ),
    pytest.param(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/bmp", "data": "Qk0="},
                        }
                    ],
                }
            ]
        },
        "messages.0.content.0.image.source.base64.media_type: Input should be 'image/jpeg'",
        id="image-media-type",
    ),
    pytest.param(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image", "source": {"type": "path", "path": "/a.png"}}],
                }
            ]
        },
        "messages.0.content.0.image.source: Input tag 'path' found using 'type'",
        id="image-source-type",
    ),
    pytest.param(
        {"tools": [{"name": "get.weather", "input_schema": {"type": "object"}}]},
        "tools.0.custom.name: String should match pattern '^[a-zA-Z0-9_-]{1,128}$'",
        id="tool-name-pattern",
    ),
    pytest.param(
        {"tools": [{"name": "a" * 129, "input_schema": {"type": "object"}}]},
        "tools.0.custom.name: String should match pattern",
        id="tool-name-length",
    ),
    pytest.param(
        {
            "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "get_time"},
        },
        "tool_choice.name: tool 'get_time' is not one of the tools",
        id="tool_choice-unknown-tool",
    ),
    pytest.param(
        {
            "output_config": {
                "format": {"type": "json_schema", "schema": {"type": "object", "properties": {}}}
            }
        },
        "output_config.format.schema: For 'object' type, 'additionalProperties' must be explicitly",
        id="output_config-open-object",
    ),
    pytest.param(
        {"model": CURRENT, "temperature": 0.2},
        "`temperature` is deprecated for this model.",
        id="temperature-on-a-current-model",
    ),
    pytest.param(
        {"model": CURRENT, "top_k": 5},
        "`top_k` is deprecated for this model.",
        id="top_k-on-a-current-model",
    ),
]


@pytest.mark.parametrize(("extra", "message"), BAD_BODIES)
async def test_simulator_rejects_like_the_api(over_sim, extra, message):
    provider, s = over_sim()
    request = replace(CompletionRequest("Hi"), extra=extra)
    with pytest.raises(InvalidRequest) as info:
        await provider.complete(request, timeout=5)
    assert info.value.status == 400 and info.value.reason == "invalid_request"
    assert message in info.value.message
    assert "invalid_request_error" in info.value.message
    # The same request without the faulty fields is answered: the rejection was about them.
    assert (await provider.complete(CompletionRequest("Hi"), timeout=5)).text == Behavior().text
    assert s.count == 2


async def test_sampling_parameters_are_taken_where_the_model_has_them(over_sim):
    provider, s = over_sim()
    for model, temperature in [(MODEL, 0.2), (CURRENT, 1.0)]:
        request = replace(CompletionRequest("Hi", temperature=temperature), model=model)
        result = await provider.complete(request, timeout=5)
        assert result.text == Behavior().text
        assert s.requests[-1].json["temperature"] == temperature


async def test_mid_conversation_system_turn_is_taken_by_a_model_that_has_it(over_sim):
    provider, _ = over_sim()
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "system", "content": "From now on, be brief."},
    ]
    request = replace(CompletionRequest("Hi"), extra={"messages": messages})
    assert (await provider.complete(replace(request, model="claude-opus-4-8"), timeout=5)).text
    with pytest.raises(InvalidRequest):
        await provider.complete(request, timeout=5)


async def test_a_stream_cut_during_a_tool_call_is_truncated(over_sim):
    provider, _ = over_sim(replace(PARIS, fault="truncate"))
    got: list[StreamEvent] = []
    with pytest.raises(ProviderError) as info:
        async for event in provider.stream(build_request("Go", tools=[WEATHER]), timeout=5):
            got.append(event)
    assert info.value.reason == "truncated"
    assert [type(e) for e in got] == [ToolCallDelta, ToolCallDelta]
    assert got[0].name == "get_weather" and got[1].arguments


# --- the official SDK as a client of the simulator ---------------------------------------------


@pytest.fixture
async def sdk(sim: Any) -> AsyncIterator[Callable[..., anthropic.AsyncAnthropic]]:
    clients: list[anthropic.AsyncAnthropic] = []

    def connect(behavior: Behavior | None = None) -> anthropic.AsyncAnthropic:
        s = sim("anthropic", behavior)
        client = anthropic.AsyncAnthropic(api_key=SIM_KEY, base_url=s.base_url, max_retries=0)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        await client.close()


async def test_sdk_reads_a_tool_use_message(sdk):
    client = sdk(PARIS)
    message = await client.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[SDK_TOOL],
    )
    assert message.stop_reason == "tool_use"
    (block,) = message.content
    assert block.type == "tool_use"
    assert block.name == "get_weather" and block.input == {"city": "Paris"}
    assert block.id.startswith("toolu_")


async def test_sdk_message_stream_accumulates_the_tool_input(sdk):
    client = sdk(PARIS)
    partials: list[str] = []
    async with client.messages.stream(
        model=MODEL,
        max_tokens=100,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[SDK_TOOL],
    ) as stream:
        async for event in stream:
            if event.type == "input_json":
                partials.append(event.partial_json)
        final = await stream.get_final_message()
    assert len(partials) >= 2
    assert json.loads("".join(partials)) == {"city": "Paris"}
    assert final.stop_reason == "tool_use"
    (block,) = final.content
    assert block.type == "tool_use" and block.input == {"city": "Paris"}


async def test_sdk_raw_stream_events(sdk):
    client = sdk(PARIS)
    raw = await client.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[SDK_TOOL],
        tool_choice={"type": "tool", "name": "get_weather"},
        stream=True,
    )
    kinds, fragments, stop_reason = [], [], None
    async for event in raw:
        kinds.append(event.type)
        if event.type == "content_block_start":
            assert event.content_block.type == "tool_use"
            assert event.content_block.input == {}
        elif event.type == "content_block_delta":
            assert event.delta.type == "input_json_delta"
            fragments.append(event.delta.partial_json)
        elif event.type == "message_delta":
            stop_reason = event.delta.stop_reason
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert kinds.count("content_block_start") == kinds.count("content_block_stop") == 1
    assert json.loads("".join(fragments)) == {"city": "Paris"}
    assert stop_reason == "tool_use"


async def test_sdk_reads_structured_output_and_an_image_request(sdk):
    client = sdk()
    schema = {**PERSON, "additionalProperties": False}
    message = await client.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "url", "url": "https://e.com/a.png"}},
                    {"type": "text", "text": "Who is this?"},
                ],
            }
        ],
        output_config={"format": {"type": "json_schema", "schema": schema}},
    )
    assert message.stop_reason == "end_turn"
    assert json.loads(message.content[0].text) == {"name": "example", "age": 1}


async def test_sdk_sees_a_rejection_as_a_bad_request(sdk):
    client = sdk()
    with pytest.raises(anthropic.BadRequestError) as info:
        await client.messages.create(
            model=MODEL,
            max_tokens=100,
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "x"}],
                }
            ],
        )
    assert info.value.status_code == 400
    body = info.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "invalid_request_error"
    assert "unexpected `tool_use_id`" in body["error"]["message"]
