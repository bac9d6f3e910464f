"""OpenAI Chat Completions, both ways: the adapter against the loopback simulator over real
HTTP, the simulator's rejections in the API's words, the official SDK (openai 3.57) as a
client of the simulator, and the adapter's reading of odd or malformed responses.

The exact translations are pinned by tests/golden/openai/*.json (see tests/test_golden.py)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import httpx
import openai
import pytest
from conftest import SIM_KEY
from jsonschema import Draft202012Validator
from pydantic import BaseModel
from streams import assembled, events_of

from failover_cli.chat import Message, TextPart, ToolCall
from failover_cli.errors import InvalidRequest, ProviderError, TransientError
from failover_cli.providers import create_provider
from failover_cli.providers import openai as adapter
from failover_cli.providers.openai import MAX_TOOL_CALL_ID, wire_call_id
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

PARAMS = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Weather in a city", "parameters": PARAMS},
}
STRICT_WEATHER = {"type": "function", "function": {**WEATHER["function"], "strict": True}}
PARIS = Behavior(tool_call=("get_weather", {"city": "Paris"}))
PNG = (  # a 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
LONG_NAME = "mcp__weather_server_with_a_rather_long_prefix__get_current_conditions_for_city"
ANTHROPIC_ID = "toolu_01A09q90qw90lq917835lq9"
LONG_ID = "functions.get_weather:1|gemini-2.5-pro|f3a9c1e07b2d4c8e9a6b"
MODEL = "gpt-4o-mini"


# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture
async def over_sim(sim: Any) -> AsyncIterator[Any]:
    """``over_sim(behavior)`` -> (adapter, simulator): the adapter talks to a fresh OpenAI
    simulator over loopback HTTP."""
    made: list[Any] = []

    def start(behavior: Behavior | None = None) -> tuple[Any, Simulator]:
        s = sim("openai", behavior)
        config = ProviderConfig(
            name="gpt", kind="openai", model=MODEL, base_url=s.base_url, api_key_env="OAI_KEY"
        )
        provider = create_provider(config, env={"OAI_KEY": SIM_KEY})
        made.append(provider)
        return provider, s

    yield start
    for provider in made:
        await provider.aclose()


def last_body(s: Simulator) -> dict[str, Any]:
    return s.requests[-1].json


def weather_request(**kw: Any) -> CompletionRequest:
    return build_request(messages=[{"role": "user", "content": "Weather in Paris?"}], **kw)


def mock_provider(*answers: httpx.Response, **cfg: Any) -> tuple[Any, list[dict[str, Any]]]:
    sent: list[dict[str, Any]] = []
    queue = list(answers)

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return queue.pop(0)

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    config = ProviderConfig(name="gpt", kind="openai", model=cfg.pop("model", MODEL), **cfg)
    return create_provider(config, client, env={"OPENAI_API_KEY": "sk-test"}), sent


def completion_json(message: dict[str, Any], finish: str = "stop", **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        **extra,
    }


def sse_body(*chunks: dict[str, Any], done: bool = True) -> httpx.Response:
    text = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + (
        "data: [DONE]\n\n" if done else ""
    )
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=text)


def delta(d: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"model": MODEL, "choices": [{"index": 0, "delta": d, "finish_reason": finish}]}


# --- the adapter against the simulator --------------------------------------------------------


async def test_a_tool_call_is_answered_whole(over_sim):
    provider, s = over_sim(PARIS)
    result = await provider.complete(weather_request(tools=[WEATHER]), timeout=5)
    assert isinstance(result, Completion)
    assert result.text == ""
    assert result.finish_reason == "tool_calls"
    assert result.stop_reason == "tool_calls"
    [call] = result.tool_calls
    assert call.name == "get_weather"
    assert call.id.startswith("call_")
    assert json.loads(call.arguments) == {"city": "Paris"}
    assert result.usage.output_tokens >= 1
    assert last_body(s)["tools"] == [WEATHER]


async def test_a_tool_call_is_streamed_in_pieces_that_reassemble(over_sim):
    provider, _ = over_sim(PARIS)
    events = await events_of(provider, weather_request(tools=[WEATHER]))
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert deltas[0].id is not None and deltas[0].id.startswith("call_")
    assert deltas[0].name == "get_weather"
    assert all(d.index == 0 for d in deltas)
    assert all(d.id is None and d.name is None for d in deltas[1:])
    fragments = [d.arguments for d in deltas if d.arguments]
    assert len(fragments) >= 2  # the arguments arrive in pieces
    [call] = assembled(events).values()
    assert json.loads(call["arguments"]) == {"city": "Paris"}
    assert not any(isinstance(e, TextDelta) for e in events)
    end = events[-1]
    assert isinstance(end, StreamEnd)
    assert end.finish_reason == "tool_calls"
    assert end.usage.output_tokens >= 1


async def test_a_forced_tool_is_called_with_arguments_from_its_schema(over_sim):
    provider, s = over_sim()  # nothing scripted: the forced tool, arguments from its schema
    other = {"type": "function", "function": {"name": "get_time", "parameters": PARAMS}}
    request = weather_request(
        tools=[other, WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    result = await provider.complete(request, timeout=5)
    [call] = result.tool_calls
    assert call.name == "get_weather"
    assert call.parsed_arguments() == {"city": "example"}
    assert last_body(s)["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "stream"])
async def test_a_long_tool_name_is_shortened_on_the_wire_and_mapped_back(over_sim, streamed):
    provider, s = over_sim()
    tool = {"type": "function", "function": {"name": LONG_NAME, "parameters": PARAMS}}
    request = weather_request(tools=[tool], tool_choice="required")
    if streamed:
        [call] = assembled(await events_of(provider, request)).values()
        name = call["name"]
    else:
        name = (await provider.complete(request, timeout=5)).tool_calls[0].name
    assert name == LONG_NAME
    sent = last_body(s)["tools"][0]["function"]["name"]
    assert sent != LONG_NAME and len(sent) <= 64


def tool_conversation(*, answered: bool = True) -> list[dict[str, Any]]:
    """A conversation carried over from other providers: an Anthropic id and a long one."""
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "Weather in Paris and Lyon?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": ANTHROPIC_ID,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": LONG_ID,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Lyon"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": ANTHROPIC_ID, "content": "18C"},
    ]
    if answered:
        messages.append({"role": "tool", "tool_call_id": LONG_ID, "content": "12C"})
    return messages


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "stream"])
async def test_tool_results_with_foreign_and_long_ids_are_accepted(over_sim, streamed):
    provider, s = over_sim(Behavior(text="Paris 18C, Lyon 12C."))
    request = build_request(messages=tool_conversation(), tools=[WEATHER])
    if streamed:
        events = await events_of(provider, request)
        text = "".join(e.text for e in events if isinstance(e, TextDelta))
        end = events[-1]
        assert isinstance(end, StreamEnd) and end.finish_reason == "stop"
    else:
        result = await provider.complete(request, timeout=5)
        text = result.text
        assert result.finish_reason == "stop" and not result.tool_calls
    assert text == "Paris 18C, Lyon 12C."  # after the results, text (no new call)
    sent = last_body(s)["messages"]
    ids = [c["id"] for c in sent[1]["tool_calls"]]
    assert ids[0] == ANTHROPIC_ID  # fits: kept
    assert ids[1] != LONG_ID and len(ids[1]) <= MAX_TOOL_CALL_ID
    assert [m["tool_call_id"] for m in sent[2:]] == ids  # the same mapping on the answers


async def test_an_unmapped_long_id_is_what_the_simulator_rejects(over_sim):
    """The simulator does enforce the 40-character limit the adapter works around."""
    _, s = over_sim()
    body = {"model": MODEL, "messages": tool_conversation()}
    response = httpx.post(s.base_url + "/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages[1].tool_calls[1].id"


async def test_images_by_data_url_and_by_url_are_accepted(over_sim):
    provider, s = over_sim(Behavior(text="Two pictures."))
    content = [
        {"type": "text", "text": "Compare."},
        {
            "type": "image_url",
            "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"},
        },
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]
    request = build_request(messages=[{"role": "user", "content": content}])
    result = await provider.complete(request, timeout=5)
    assert result.text == "Two pictures."
    assert last_body(s)["messages"][0]["content"] == content


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "stream"])
async def test_a_json_schema_answer_parses_and_matches_the_schema(over_sim, streamed):
    provider, s = over_sim()
    fmt = {
        "type": "json_schema",
        "json_schema": {"name": "person", "schema": PERSON, "strict": True},
    }
    request = weather_request(response_format=fmt)
    if streamed:
        events = await events_of(provider, request)
        text = "".join(e.text for e in events if isinstance(e, TextDelta))
    else:
        text = (await provider.complete(request, timeout=5)).text
    value = json.loads(text)
    assert not list(Draft202012Validator(PERSON).iter_errors(value))
    assert set(value) == {"name", "age"}
    assert last_body(s)["response_format"] == fmt


async def test_a_json_object_answer_is_a_json_object(over_sim):
    provider, _ = over_sim(Behavior(text="plain words"))
    request = weather_request(response_format={"type": "json_object"})
    assert json.loads((await provider.complete(request, timeout=5)).text) == {
        "answer": "plain words"
    }


async def test_a_developer_message_reaches_a_compatible_server_as_system(over_sim):
    provider, s = over_sim()
    request = build_request(
        messages=[{"role": "developer", "content": "Be terse."}, {"role": "user", "content": "Hi"}]
    )
    await provider.complete(request, timeout=5)
    body = last_body(s)
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert body["max_tokens"] == 1024 and "max_completion_tokens" not in body


async def test_the_simulator_rejects_a_tool_message_without_its_call(over_sim):
    provider, _ = over_sim()
    # Built directly: build_request would refuse it before it is ever sent.
    request = CompletionRequest(
        messages=(Message.of("user", "Hi"), Message("tool", (TextPart("18C"),), tool_call_id="x"))
    )
    with pytest.raises(InvalidRequest) as info:
        await provider.complete(request, timeout=5)
    assert info.value.status == 400
    assert "must be a response to a preceeding message with 'tool_calls'" in info.value.message


async def test_the_simulator_rejects_calls_left_without_results(over_sim):
    provider, _ = over_sim()
    request = CompletionRequest(
        messages=(
            Message.of("user", "Hi"),
            Message("assistant", tool_calls=(ToolCall("call_1", "get_weather", "{}"),)),
            Message.of("user", "Well?"),
        )
    )
    with pytest.raises(InvalidRequest) as info:
        await provider.complete(request, timeout=5)
    assert "did not have response messages: call_1" in info.value.message


async def test_a_stream_cut_inside_a_tool_call_is_truncated(over_sim):
    provider, _ = over_sim(replace(PARIS, fault="truncate"))
    seen: list[StreamEvent] = []
    with pytest.raises(TransientError) as info:
        async for event in provider.stream(weather_request(tools=[WEATHER]), timeout=5):
            seen.append(event)
    assert info.value.reason == "truncated"
    assert isinstance(seen[0], ToolCallDelta) and seen[0].name == "get_weather"
    assert not any(isinstance(e, StreamEnd) for e in seen)


async def test_an_error_inside_a_tool_call_stream_is_a_stream_error(over_sim):
    provider, _ = over_sim(replace(PARIS, fault="midstream_error"))
    with pytest.raises(TransientError) as info:
        await events_of(provider, weather_request(tools=[WEATHER]))
    assert info.value.reason == "stream_error"


async def test_tool_choice_none_is_answered_with_text(over_sim):
    provider, _ = over_sim(replace(PARIS, text="No tools today."))
    result = await provider.complete(
        weather_request(tools=[WEATHER], tool_choice="none"), timeout=5
    )
    assert (result.text, result.tool_calls, result.finish_reason) == ("No tools today.", (), "stop")


# --- the simulator's rejections, in the API's words -----------------------------------------

AUTH = {"authorization": f"Bearer {SIM_KEY}"}
USER = {"role": "user", "content": "Hi"}


def _call(call_id: str = "call_1", name: str = "get_weather") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": "{}"}}


REJECTIONS: list[tuple[str, dict[str, Any], str, str | None, str]] = [
    # (case, body fields, param, code, words of the message)
    (
        "tool without call",
        {"messages": [USER, {"role": "tool", "tool_call_id": "call_1", "content": "x"}]},
        "messages.[1].role",
        None,
        "Invalid parameter: messages with role 'tool' must be a response to a preceeding message"
        " with 'tool_calls'.",
    ),
    (
        "tool answering another id",
        {
            "messages": [
                USER,
                {"role": "assistant", "content": None, "tool_calls": [_call()]},
                {"role": "tool", "tool_call_id": "call_2", "content": "x"},
            ]
        },
        "messages.[2].tool_call_id",
        None,
        "Invalid parameter: 'tool_call_id' of 'call_2' not found in 'tool_calls' of previous"
        " message.",
    ),
    (
        "calls without results",
        {"messages": [USER, {"role": "assistant", "content": None, "tool_calls": [_call()]}]},
        "messages.[1].role",
        None,
        "The following tool_call_ids did not have response messages: call_1",
    ),
    (
        "unknown role",
        {"messages": [{"role": "bot", "content": "Hi"}]},
        "messages[0].role",
        "invalid_value",
        "Invalid value: 'bot'. Supported values are: 'system', 'assistant', 'user', 'function',"
        " 'tool', and 'developer'.",
    ),
    (
        "image in a system message",
        {
            "messages": [
                {
                    "role": "system",
                    "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
                },
                USER,
            ]
        },
        "messages[0]",
        "invalid_value",
        "Invalid 'messages[0]'. Image URLs are only allowed for messages with role 'user', but"
        " this message with role 'system' contains an image URL.",
    ),
    (
        "forced tool not offered",
        {
            "messages": [USER],
            "tools": [WEATHER],
            "tool_choice": {"type": "function", "function": {"name": "get_time"}},
        },
        "tool_choice",
        "invalid_value",
        "'get_time'",
    ),
    (
        "tool_choice without tools",
        {"messages": [USER], "tool_choice": "auto"},
        "tool_choice",
        None,
        "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are"
        " specified.",
    ),
    (
        "tool name with a dot",
        {"messages": [USER], "tools": [{"type": "function", "function": {"name": "get.weather"}}]},
        "tools[0].function.name",
        "invalid_value",
        "Invalid 'tools[0].function.name': string does not match pattern. Expected a string that"
        " matches the pattern '^[a-zA-Z0-9_-]+$'.",
    ),
    (
        "tool name too long",
        {"messages": [USER], "tools": [{"type": "function", "function": {"name": "f" * 65}}]},
        "tools[0].function.name",
        "string_above_max_length",
        "Invalid 'tools[0].function.name': string too long. Expected a string with maximum"
        " length 64, but got a string with length 65 instead.",
    ),
    (
        "earlier call of a bad name",
        {
            "messages": [
                USER,
                {"role": "assistant", "content": None, "tool_calls": [_call(name="a b")]},
                {"role": "tool", "tool_call_id": "call_1", "content": "x"},
            ]
        },
        "messages[1].tool_calls[0].function.name",
        "invalid_value",
        "string does not match pattern",
    ),
    (
        "tool call id too long",
        {
            "messages": [
                USER,
                {"role": "assistant", "content": None, "tool_calls": [_call("c" * 41)]},
                {"role": "tool", "tool_call_id": "c" * 41, "content": "x"},
            ]
        },
        "messages[1].tool_calls[0].id",
        "string_above_max_length",
        "Invalid 'messages[1].tool_calls[0].id': string too long. Expected a string with maximum"
        " length 40, but got a string with length 41 instead.",
    ),
    (
        "json_schema without a schema",
        {
            "messages": [USER],
            "response_format": {"type": "json_schema", "json_schema": {"name": "person"}},
        },
        "response_format.json_schema.schema",
        "missing_required_parameter",
        "Missing required parameter: 'response_format.json_schema.schema'.",
    ),
    (
        "json_schema without json_schema",
        {"messages": [USER], "response_format": {"type": "json_schema"}},
        "response_format.json_schema",
        "missing_required_parameter",
        "Missing required parameter: 'response_format.json_schema'.",
    ),
]


@pytest.fixture(scope="module")
def openai_sim() -> Iterator[Simulator]:
    with Simulator("openai", Behavior(), api_key=SIM_KEY) as s:
        yield s


@pytest.mark.parametrize(
    ("fields", "param", "code", "words"),
    [r[1:] for r in REJECTIONS],
    ids=[r[0] for r in REJECTIONS],
)
def test_the_simulator_rejects_like_the_api(openai_sim, fields, param, code, words):
    body = {"model": MODEL, **fields}
    response = httpx.post(openai_sim.base_url + "/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert (error["param"], error["code"]) == (param, code)
    assert words in error["message"]


ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    (
        "parallel calls answered",
        {
            "messages": [
                USER,
                {"role": "assistant", "content": None, "tool_calls": [_call(), _call("call_2")]},
                {"role": "tool", "tool_call_id": "call_2", "content": "x"},
                {"role": "tool", "tool_call_id": "call_1", "content": "y"},
                {"role": "user", "content": "And?"},
            ],
            "tools": [WEATHER],
        },
    ),
    ("forced tool offered", {"messages": [USER], "tools": [WEATHER], "tool_choice": "required"}),
    ("developer role", {"messages": [{"role": "developer", "content": "x"}, USER]}),
    (
        "id of 40",
        {
            "messages": [
                USER,
                {"role": "assistant", "content": None, "tool_calls": [_call("c" * 40)]},
                {"role": "tool", "tool_call_id": "c" * 40, "content": "x"},
            ]
        },
    ),
    ("json_object", {"messages": [USER], "response_format": {"type": "json_object"}}),
]


@pytest.mark.parametrize("fields", [a[1] for a in ACCEPTED], ids=[a[0] for a in ACCEPTED])
def test_the_simulator_accepts_what_the_api_takes(openai_sim, fields):
    body = {"model": MODEL, **fields}
    response = httpx.post(openai_sim.base_url + "/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["object"] == "chat.completion"


def test_the_simulator_reports_what_a_request_asks(openai_sim):
    from failover_cli.sim.openai import DIALECT
    from failover_cli.sim.wire import RecordedRequest

    body = {
        "model": MODEL,
        "messages": [
            USER,
            {"role": "assistant", "content": None, "tool_calls": [_call()]},
            {"role": "tool", "tool_call_id": "call_1", "content": "x"},
        ],
        "tools": [WEATHER, {"type": "function", "function": {"name": "bare"}}],
        "tool_choice": {"type": "function", "function": {"name": "bare"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}},
    }
    raw = json.dumps(body).encode()
    view = DIALECT.chat_view(RecordedRequest("POST", "/v1/chat/completions", {}, {}, raw, body))
    assert view.tools == {"get_weather": PARAMS, "bare": {"type": "object", "properties": {}}}
    assert view.choice == "bare"
    assert view.after_tool is True
    assert (view.json, view.schema) == (True, PERSON)


# --- the official SDK as a client of the simulator ------------------------------------------


@pytest.fixture
async def client(openai_sim: Simulator) -> AsyncIterator[openai.AsyncOpenAI]:
    openai_sim.behavior = PARIS
    async with openai.AsyncOpenAI(
        api_key=SIM_KEY, base_url=openai_sim.base_url + "/v1", max_retries=0
    ) as c:
        yield c
    openai_sim.behavior = Behavior()


WEATHER_IN_PARIS: Any = [{"role": "user", "content": "Weather in Paris?"}]


async def test_sdk_reads_a_tool_call(client):
    response = await client.chat.completions.create(
        model=MODEL, messages=WEATHER_IN_PARIS, tools=[WEATHER]
    )
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert response.usage is not None and response.usage.completion_tokens >= 1


async def test_sdk_reads_a_streamed_tool_call(client):
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=WEATHER_IN_PARIS,
        tools=[WEATHER],
        stream=True,
        stream_options={"include_usage": True},
    )
    calls: dict[int, dict[str, str]] = {}
    finishes, usage = [], None
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            finishes += [choice.finish_reason] if choice.finish_reason else []
            for d in choice.delta.tool_calls or ():
                call = calls.setdefault(d.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += d.id or ""
                call["name"] += (d.function.name or "") if d.function else ""
                call["arguments"] += (d.function.arguments or "") if d.function else ""
    assert finishes == ["tool_calls"]
    assert usage is not None and usage.completion_tokens >= 1
    [call] = calls.values()
    assert call["name"] == "get_weather" and call["id"].startswith("call_")
    assert json.loads(call["arguments"]) == {"city": "Paris"}


async def test_sdk_stream_helper_parses_a_strict_tool_call(client):
    async with client.chat.completions.stream(
        model=MODEL, messages=WEATHER_IN_PARIS, tools=[STRICT_WEATHER]
    ) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_completion()
    assert "tool_calls.function.arguments.done" in kinds
    [call] = final.choices[0].message.tool_calls or []
    assert call.function.parsed_arguments == {"city": "Paris"}


class Person(BaseModel):
    name: str
    age: int


async def test_sdk_parse_fills_a_pydantic_model(client, openai_sim):
    openai_sim.behavior = Behavior(json_text='{"name": "Ada", "age": 36}')
    response = await client.chat.completions.parse(
        model=MODEL, messages=[{"role": "user", "content": "Who?"}], response_format=Person
    )
    assert response.choices[0].message.parsed == Person(name="Ada", age=36)
    sent = openai_sim.requests[-1].json["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["strict"] is True


async def test_sdk_parse_of_an_unscripted_answer_follows_the_schema(client, openai_sim):
    openai_sim.behavior = Behavior()
    response = await client.chat.completions.parse(
        model=MODEL, messages=[{"role": "user", "content": "Who?"}], response_format=Person
    )
    parsed = response.choices[0].message.parsed
    assert isinstance(parsed, Person)


async def test_sdk_sees_a_rejection_in_the_api_shape(client):
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(
            model=MODEL,
            messages=[USER, {"role": "tool", "tool_call_id": "call_9", "content": "x"}],
        )
    assert info.value.status_code == 400
    assert info.value.param == "messages.[1].role"
    assert info.value.type == "invalid_request_error"


# --- the adapter alone: what it sends, and what it makes of odd responses ---------------------


def test_a_long_id_maps_the_same_way_every_time():
    mapped = wire_call_id(LONG_ID)
    assert mapped == "call_" + hashlib.sha256(LONG_ID.encode()).hexdigest()[:24]
    assert len(mapped) <= MAX_TOOL_CALL_ID
    assert wire_call_id(ANTHROPIC_ID) == ANTHROPIC_ID
    assert wire_call_id("x" * 40) == "x" * 40
    assert wire_call_id(LONG_ID + "2") != mapped


async def test_the_plain_path_does_no_chat_work(monkeypatch):
    def forbidden(*args: Any, **kw: Any) -> Any:
        raise AssertionError("the plain path must not build a conversation")

    monkeypatch.setattr(adapter, "conversation", forbidden)
    provider, _ = mock_provider()
    request = CompletionRequest("Hi", max_tokens=5, system="S", temperature=0.1)
    assert provider.body(request, stream=False) == {
        "model": MODEL,
        "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}],
        "max_completion_tokens": 5,
        "stream": False,
        "temperature": 0.1,
    }
    await provider.aclose()


async def test_the_request_model_wins_over_the_configured_one():
    answer = httpx.Response(200, json=completion_json({"content": "ok"}, model=None))
    provider, sent = mock_provider(answer)
    result = await provider.complete(replace(CompletionRequest("Hi"), model="gpt-4.1"), timeout=5)
    assert sent[0]["model"] == "gpt-4.1"
    assert result.model == "gpt-4.1"  # the response named none
    await provider.aclose()


async def test_a_legacy_function_call_becomes_a_tool_call():
    message = {"content": None, "function_call": {"name": "get_weather", "arguments": "{}"}}
    provider, _ = mock_provider(httpx.Response(200, json=completion_json(message, "function_call")))
    result = await provider.complete(weather_request(tools=[WEATHER]), timeout=5)
    [call] = result.tool_calls
    assert (call.name, call.arguments, result.finish_reason) == ("get_weather", "{}", "tool_calls")
    assert call.id.startswith("call_") and len(call.id) > len("call_")
    await provider.aclose()


async def test_arguments_sent_as_an_object_become_json_text():
    message = {
        "content": None,
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": {"city": "Rome"}},
            }
        ],
    }
    provider, _ = mock_provider(httpx.Response(200, json=completion_json(message, "tool_calls")))
    result = await provider.complete(weather_request(tools=[WEATHER]), timeout=5)
    assert result.tool_calls == (ToolCall("c1", "get_weather", '{"city":"Rome"}'),)
    await provider.aclose()


async def test_usage_details_are_read():
    usage = {
        "prompt_tokens": 2000,
        "completion_tokens": 300,
        "prompt_tokens_details": {"cached_tokens": 1536},
        "completion_tokens_details": {"reasoning_tokens": 256},
    }
    data = {**completion_json({"content": "ok"}), "usage": usage}
    provider, _ = mock_provider(httpx.Response(200, json=data))
    result = await provider.complete(CompletionRequest("Hi"), timeout=5)
    assert result.usage == Usage(2000, 300, 1536, 256)
    await provider.aclose()


MALFORMED_MESSAGES: list[tuple[str, dict[str, Any]]] = [
    ("tool_calls not a list", {"content": None, "tool_calls": {"id": "c"}}),
    ("call without function", {"content": None, "tool_calls": [{"id": "c", "type": "function"}]}),
    ("name not a string", {"content": None, "tool_calls": [{"id": "c", "function": {"name": 7}}]}),
    ("call not an object", {"content": None, "tool_calls": ["c"]}),
    (
        "arguments a number",
        {"content": None, "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": 3}}]},
    ),
    ("refusal a number", {"content": None, "refusal": 1}),
    ("content a list", {"content": [{"type": "text", "text": "x"}]}),
]


@pytest.mark.parametrize(
    "message", [m[1] for m in MALFORMED_MESSAGES], ids=[m[0] for m in MALFORMED_MESSAGES]
)
async def test_a_malformed_message_is_a_malformed_response(message):
    provider, _ = mock_provider(httpx.Response(200, json=completion_json(message)))
    with pytest.raises(TransientError) as info:
        await provider.complete(weather_request(tools=[WEATHER]), timeout=5)
    assert info.value.reason == "malformed"
    await provider.aclose()


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": 1, "prompt_tokens_details": "many"},
        {"prompt_tokens": 1, "completion_tokens_details": {"reasoning_tokens": "many"}},
        {"prompt_tokens": "1"},
        [1, 2],
    ],
)
async def test_malformed_usage_is_a_malformed_response(usage):
    data = {**completion_json({"content": "ok"}), "usage": usage}
    provider, _ = mock_provider(httpx.Response(200, json=data))
    with pytest.raises(TransientError) as info:
        await provider.complete(CompletionRequest("Hi"), timeout=5)
    assert info.value.reason == "malformed"
    await provider.aclose()


@pytest.mark.parametrize(
    "calls",
    [
        [{"index": "0", "id": "c", "function": {"name": "f", "arguments": ""}}],
        [{"index": True, "id": "c", "function": {"name": "f", "arguments": ""}}],
        [{"index": -1, "id": "c", "function": {"name": "f", "arguments": ""}}],
        [{"index": 0, "function": {"arguments": 5}}],
        [{"index": 0, "function": "f"}],
        {"index": 0},
    ],
)
async def test_a_malformed_tool_call_delta_is_a_malformed_stream(calls):
    provider, _ = mock_provider(sse_body(delta({"tool_calls": calls}), delta({}, "tool_calls")))
    seen: list[StreamEvent] = []
    with pytest.raises(ProviderError) as info:
        async for event in provider.stream(weather_request(tools=[WEATHER]), timeout=5):
            seen.append(event)
    assert isinstance(info.value, TransientError) and info.value.reason == "malformed"
    assert seen == []
    await provider.aclose()


async def test_a_streamed_call_without_an_id_gets_one_and_keeps_it():
    first = {"index": 0, "function": {"name": "get_weather", "arguments": '{"city"'}}
    rest = {"index": 0, "function": {"arguments": ':"Oslo"}'}}
    body = sse_body(
        delta({"tool_calls": [first]}), delta({"tool_calls": [rest]}), delta({}, "stop")
    )
    provider, _ = mock_provider(body)
    events = await events_of(provider, weather_request(tools=[WEATHER]))
    [call] = assembled(events).values()
    assert call["id"].startswith("call_") and call["arguments"] == '{"city":"Oslo"}'
    end = events[-1]
    assert isinstance(end, StreamEnd)
    assert (end.finish_reason, end.stop_reason) == ("tool_calls", "stop")
    await provider.aclose()


async def test_streamed_calls_without_an_index_are_told_apart_by_id():
    one = {"id": "a", "function": {"name": "get_weather", "arguments": '{"city":"A"}'}}
    two = {"id": "b", "function": {"name": "get_weather", "arguments": '{"city":"B"}'}}
    body = sse_body(
        delta({"tool_calls": [one]}), delta({"tool_calls": [two]}), delta({}, "tool_calls")
    )
    provider, _ = mock_provider(body)
    calls = assembled(await events_of(provider, weather_request(tools=[WEATHER])))
    assert {i: (c["id"], c["arguments"]) for i, c in calls.items()} == {
        0: ("a", '{"city":"A"}'),
        1: ("b", '{"city":"B"}'),
    }
    await provider.aclose()


async def test_text_before_a_tool_call_is_kept_in_order():
    call = {
        "index": 0,
        "id": "c",
        "type": "function",
        "function": {"name": "get_weather", "arguments": "{}"},
    }
    body = sse_body(
        delta({"role": "assistant", "content": "Let me check."}),
        delta({"tool_calls": [call]}),
        delta({}, "tool_calls"),
    )
    provider, _ = mock_provider(body)
    events = await events_of(provider, weather_request(tools=[WEATHER]))
    assert events[:2] == [TextDelta("Let me check."), ToolCallDelta(0, "c", "get_weather", "{}")]
    await provider.aclose()


async def test_tool_dicts_that_fit_are_sent_as_given_and_others_rendered(monkeypatch):
    from failover_cli import chat

    def forbidden(self: Any) -> Any:
        raise AssertionError("tools that fit need no rendering")

    provider, _ = mock_provider()
    bare = {"type": "function", "function": {"name": "bare", "parameters": {"type": "object"}}}
    fitting = build_request("Hi", tools=[WEATHER, bare])
    with monkeypatch.context() as m:
        m.setattr(chat.Tool, "to_dict", forbidden)
        body = provider.body(fitting, stream=False)
    assert body["tools"] == [WEATHER, bare]
    assert body["tools"][0] is WEATHER  # the caller's dict, not a copy rendered again

    long_name = "x" * 70
    misfits = [
        {"function": WEATHER["function"]},  # no "type": rendered with it
        {"type": "function", "function": {**WEATHER["function"], "description": ""}},
        {"type": "function", "function": {"name": "no_params"}},
        {"type": "function", "function": {**WEATHER["function"], "name": long_name}},
    ]
    for tool in misfits:
        request = build_request("Hi", tools=[tool])
        assert request.tools.wire is None
        sent = provider.body(request, stream=False)["tools"][0]
        assert sent["type"] == "function"
        assert "description" not in sent["function"] or sent["function"]["description"]
        assert "parameters" in sent["function"]
        assert len(sent["function"]["name"]) <= 64
    await provider.aclose()


def test_checked_tools_are_typed_only_when_read():
    tools = [dict(WEATHER), {"type": "function", "function": {"name": "b"}}]
    checked = build_request("Hi", tools=tools).tools
    assert checked.names == ["get_weather", "b"]
    assert checked == (
        chat_tool("get_weather", "Weather in a city", PARAMS),
        chat_tool("b", "", {"type": "object", "properties": {}}),
    )
    assert len(checked) == 2 and checked[1].name == "b"
    source = [{"type": "function", "function": {"name": "c"}}]
    broken = build_request("Hi", tools=source).tools
    del source[0]["function"]  # changed while the request ran
    with pytest.raises(ValueError, match="tools: changed while the request ran"):
        list(broken)


def chat_tool(name: str, description: str, parameters: dict[str, Any]) -> Any:
    from failover_cli.chat import Tool

    return Tool(name, description, parameters)
