"""Gemini generateContent chat requests, both ways: the adapter's body and readings (through
``httpx.MockTransport``), the adapter against the loopback simulator over real HTTP, and the
official SDK google-genai as a client of the simulator.

The golden fixtures in ``tests/golden/gemini/`` pin whole translations; these tests cover what a
fixture cannot (generated ids, failures, rules over many names) and the two ends meeting.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import replace
from typing import Any

import httpx
import pytest
from conftest import SIM_KEY, SIM_KEY_ENV
from jsonschema import Draft202012Validator

from failover_cli.chat import ForcedTool, Message, TextPart
from failover_cli.errors import InvalidRequest, TransientError
from failover_cli.providers import create_provider
from failover_cli.providers.gemini import SKIP_SIGNATURE, GeminiToolNames, gemini_tool_name
from failover_cli.request import build_request
from failover_cli.sim import Behavior
from failover_cli.sim.gemini import DIALECT
from failover_cli.sim.wire import RecordedRequest, example_of
from failover_cli.types import (
    CompletionRequest,
    ProviderConfig,
    StreamEnd,
    TextDelta,
    ToolCallDelta,
)

KEY = "gemini-test-key-123"
GEMINI_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5Er"
    "kJggg=="
)
GIF = base64.b64encode(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;").decode()
CITY = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": CITY}}
LONG_NAME = "tool_" + "with_a_remarkably_long_and_descriptive_name_" * 3 + "v2"


def weather_request(**kw: Any) -> CompletionRequest:
    kw.setdefault("messages", [{"role": "user", "content": "Weather in Paris?"}])
    return build_request(tools=kw.pop("tools", [WEATHER]), **kw)


# --- the adapter alone ----------------------------------------------------------------------


class Wire:
    """A MockTransport answering every request with ``answer`` (a JSON body or SSE text)."""

    def __init__(self, answer: Any, *, stream: bool = False) -> None:
        self.answer, self.stream = answer, stream
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.stream:
            headers = {"content-type": "text/event-stream"}
            return httpx.Response(200, headers=headers, content=self.answer.encode())
        return httpx.Response(200, json=self.answer)

    @property
    def body(self) -> dict[str, Any]:
        return json.loads(self.requests[-1].content)

    @property
    def url(self) -> str:
        return str(self.requests[-1].url)


def adapter(wire: Wire, model: str = "gemini-2.5-flash"):
    client = httpx.AsyncClient(transport=httpx.MockTransport(wire))
    config = ProviderConfig(name="g", kind="gemini", model=model)
    return create_provider(config, client, env={"GEMINI_API_KEY": KEY})


def answer(*parts: dict[str, Any], finish: str | None = "STOP") -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": list(parts)}}
    if finish:
        candidate["finishReason"] = finish
    usage = {"promptTokenCount": 5, "candidatesTokenCount": 3}
    return {"candidates": [candidate], "usageMetadata": usage}


def sse(*chunks: dict[str, Any]) -> str:
    return "".join(f"data: {json.dumps(c)}\r\n\r\n" for c in chunks)


async def body_of(request: CompletionRequest, model: str = "gemini-2.5-flash") -> dict[str, Any]:
    wire = Wire(answer({"text": "ok"}))
    await adapter(wire, model).complete(request, timeout=5)
    return wire.body


async def test_the_plain_request_keeps_its_original_body():
    request = CompletionRequest(
        "Continue.", 50, system="Be kind.", temperature=0.3, assistant_prefix="Once upon"
    )
    assert await body_of(request) == {
        "contents": [
            {"role": "user", "parts": [{"text": "Continue."}]},
            {"role": "model", "parts": [{"text": "Once upon"}]},
        ],
        "generationConfig": {"maxOutputTokens": 50, "temperature": 0.3},
        "systemInstruction": {"parts": [{"text": "Be kind."}]},
    }


@pytest.mark.parametrize(
    ("model", "path"),
    [
        ("gemini-2.5-pro", "/v1beta/models/gemini-2.5-pro:"),
        ("models/gemini-2.0-flash", "/v1beta/models/gemini-2.0-flash:"),
        ("tunedModels/my-tune", "/v1beta/tunedModels/my-tune:"),
    ],
)
async def test_the_requests_own_model_is_the_url_path(model, path):
    wire = Wire(answer({"text": "ok"}))
    provider = adapter(wire, model="configured-model")
    result = await provider.complete(replace(CompletionRequest("hi"), model=model), timeout=5)
    assert path + "generateContent" in wire.url
    assert result.model == model  # the answer names no modelVersion
    streamed = Wire(sse(answer({"text": "ok"})), stream=True)
    events = [
        e
        async for e in adapter(streamed, "configured-model").stream(
            replace(CompletionRequest("hi"), model=model), timeout=5
        )
    ]
    assert streamed.url.endswith(path + "streamGenerateContent?alt=sse")
    assert events[-1] == StreamEnd(model, events[-1].usage, "STOP", finish_reason="stop")
    await provider.complete(CompletionRequest("hi"), timeout=5)
    assert "/models/configured-model:generateContent" in wire.url


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        (None, None),
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
        ),
    ],
)
async def test_tool_choice_is_the_function_calling_mode(choice, config):
    body = await body_of(weather_request(tool_choice=choice))
    assert body["tools"] == [
        {"functionDeclarations": [{"name": "get_weather", "parametersJsonSchema": CITY}]}
    ]
    if config is None:
        assert "toolConfig" not in body
    else:
        assert body["toolConfig"] == {"functionCallingConfig": config}


async def test_a_forced_long_name_is_sent_as_its_wire_name():
    tool = {"type": "function", "function": {"name": LONG_NAME, "parameters": CITY}}
    choice = {"type": "function", "function": {"name": LONG_NAME}}
    body = await body_of(weather_request(tools=[tool], tool_choice=choice))
    wire = body["tools"][0]["functionDeclarations"][0]["name"]
    assert wire != LONG_NAME and GEMINI_NAME.fullmatch(wire)
    assert body["toolConfig"]["functionCallingConfig"]["allowedFunctionNames"] == [wire]


NAMES = [
    "get_weather",
    "a" * 64,
    "a" * 65,
    "b" * 300,
    "x" * 64 + "y",
    "3d_render",
    "-dash-first",
    "ns:tool.v1",
    "search the web",
    "café_menu",
    "_",
    LONG_NAME,
    LONG_NAME + "2",
]


def test_every_tool_name_becomes_a_distinct_gemini_name_that_maps_back():
    names = GeminiToolNames(NAMES)
    wires = [names.wire(n) for n in NAMES]
    for name, wire in zip(NAMES, wires, strict=True):
        assert GEMINI_NAME.fullmatch(wire), wire
        assert names.original(wire) == name
        assert wire == gemini_tool_name(name)
        if GEMINI_NAME.fullmatch(name):
            assert wire == name  # a name Gemini takes is kept
    assert len(set(wires)) == len(NAMES)


async def test_consecutive_tool_results_are_one_user_content_answering_by_name():
    request = build_request(
        messages=[
            {"role": "user", "content": "Two cities."},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_a", "function": {"name": LONG_NAME, "arguments": "{}"}},
                    {"id": "call_b", "function": {"name": "get_weather", "arguments": "{}"}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_b", "content": '{"temp": 3}'},
            {"role": "tool", "tool_call_id": "call_a", "content": "plain text"},
            {"role": "assistant", "content": ""},  # nothing to send: left out
            {"role": "user", "content": "Thanks."},
        ]
    )
    body = await body_of(request)
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    wire = gemini_tool_name(LONG_NAME)
    calls = [p["functionCall"] for p in body["contents"][1]["parts"]]
    assert [(c["id"], c["name"]) for c in calls] == [("call_a", wire), ("call_b", "get_weather")]
    assert body["contents"][2]["parts"] == [
        {"functionResponse": {"id": "call_b", "name": "get_weather", "response": {"temp": 3}}},
        {"functionResponse": {"id": "call_a", "name": wire, "response": {"output": "plain text"}}},
        {"text": "Thanks."},
    ]
    assert "tools" not in body  # none offered: the earlier calls are still sent


@pytest.mark.parametrize(
    ("model", "signed"),
    [
        ("gemini-3-pro-preview", True),
        ("gemini-3.1-flash-lite", True),
        ("models/gemini-3-flash", True),
        ("gemini-2.5-flash", False),
        ("gemini-flash-latest", False),
        ("gemini-30x", False),
    ],
)
async def test_replayed_calls_carry_the_placeholder_signature_on_gemini_3(model, signed):
    request = build_request(
        messages=[
            {"role": "user", "content": "Go."},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "function": {"name": "get_weather", "arguments": "{}"}},
                    {"id": "c2", "function": {"name": "get_weather", "arguments": "{}"}},
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "1"},
            {"role": "tool", "tool_call_id": "c2", "content": "2"},
        ],
        tools=[WEATHER],
    )
    parts = (await body_of(request, model))["contents"][1]["parts"]
    assert [p.get("thoughtSignature") for p in parts] == [SKIP_SIGNATURE if signed else None, None]


@pytest.mark.parametrize(
    ("url", "mime"),
    [
        ("https://x.test/a.png", "image/png"),
        ("https://x.test/a.JPG", "image/jpeg"),
        ("https://x.test/dir.v2/a.jpeg?x=1#y", "image/jpeg"),
        ("https://x.test/a.webp", "image/webp"),
        ("https://x.test/a.heic", "image/heic"),
        ("https://x.test/a.gif", "image/gif"),
        ("https://x.test/dir.png/image", "image/jpeg"),
        ("http://x.test/", "image/jpeg"),
    ],
)
async def test_an_image_by_url_is_file_data_typed_by_its_extension(url, mime):
    content = [{"type": "image_url", "image_url": {"url": url}}]
    body = await body_of(build_request(messages=[{"role": "user", "content": content}]))
    assert body["contents"][0]["parts"] == [{"fileData": {"mimeType": mime, "fileUri": url}}]


async def test_a_call_without_an_id_gets_a_generated_one():
    call = {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}}
    wire = Wire(answer(call, dict(call)))
    result = await adapter(wire).complete(weather_request(), timeout=5)
    ids = [c.id for c in result.tool_calls]
    assert all(re.fullmatch(r"call_[0-9a-f]{24}", i) for i in ids) and ids[0] != ids[1]
    assert [c.arguments for c in result.tool_calls] == ['{"city":"Oslo"}'] * 2
    streamed = Wire(sse(answer(call)), stream=True)
    events = [e async for e in adapter(streamed).stream(weather_request(), timeout=5)]
    assert isinstance(events[0], ToolCallDelta) and events[0].id.startswith("call_")
    assert events[1].finish_reason == "tool_calls"


@pytest.mark.parametrize("reason", ["MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL"])
async def test_a_botched_function_call_is_a_transient_failure(reason):
    wire = Wire(answer(finish=reason))
    with pytest.raises(TransientError) as info:
        await adapter(wire).complete(weather_request(), timeout=5)
    assert info.value.reason == "malformed" and reason in info.value.message
    streamed = Wire(
        sse(answer({"text": "Let me"}, finish=None), answer(finish=reason)), stream=True
    )
    seen: list[Any] = []
    with pytest.raises(TransientError) as info:
        async for event in adapter(streamed).stream(weather_request(), timeout=5):
            seen.append(event)
    assert seen == [TextDelta("Let me")]
    assert info.value.reason == "malformed" and info.value.partial_text == "Let me"


@pytest.mark.parametrize(
    "data",
    [
        answer({"functionCall": {"name": "f", "args": [1, 2]}}),
        answer({"functionCall": {"args": {}}}),
        answer({"functionCall": {"name": 7}}),
        answer({"functionCall": "get_weather()"}),
        {**answer({"text": "x"}), "usageMetadata": {"promptTokenCount": "12"}},
        {**answer({"text": "x"}), "usageMetadata": {"thoughtsTokenCount": [1]}},
        {"candidates": [{"content": {"parts": [{"text": 5}]}}]},
    ],
)
async def test_an_unreadable_answer_is_malformed_not_a_crash(data):
    with pytest.raises(TransientError) as info:
        await adapter(Wire(data)).complete(weather_request(), timeout=5)
    assert info.value.reason == "malformed"


async def test_a_stream_whose_prompt_is_blocked_ends_as_content_filter():
    blocked = {
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 4},
    }
    wire = Wire(sse(blocked), stream=True)
    events = [e async for e in adapter(wire).stream(CompletionRequest("x"), timeout=5)]
    assert len(events) == 1 and isinstance(events[0], StreamEnd)
    assert (events[0].stop_reason, events[0].finish_reason) == ("SAFETY", "content_filter")
    assert events[0].usage.input_tokens == 4


# --- the adapter against the simulator, over loopback HTTP ---------------------------------


def live(sim, model: str = "gemini-2.5-flash"):
    config = ProviderConfig(
        name="g", kind="gemini", model=model, base_url=sim.base_url, api_key_env=SIM_KEY_ENV
    )
    return create_provider(config, env={SIM_KEY_ENV: SIM_KEY})


async def test_a_tool_call_over_http_whole_and_streamed(sim):
    s = sim("gemini", Behavior(tool_call=("get_weather", {"city": "Paris"})))
    provider = live(s)
    try:
        result = await provider.complete(weather_request(), timeout=5)
        assert [(c.name, c.parsed_arguments()) for c in result.tool_calls] == [
            ("get_weather", {"city": "Paris"})
        ]
        assert (result.text, result.finish_reason) == ("", "tool_calls")
        assert result.tool_calls[0].id.startswith("call_")
        events = [e async for e in provider.stream(weather_request(), timeout=5)]
        assert isinstance(events[0], ToolCallDelta)
        assert (events[0].index, events[0].name, json.loads(events[0].arguments)) == (
            0,
            "get_weather",
            {"city": "Paris"},
        )
        assert isinstance(events[-1], StreamEnd) and events[-1].finish_reason == "tool_calls"
        assert len(events) == 2
    finally:
        await provider.aclose()


async def test_the_simulator_calls_a_forced_long_named_tool_and_its_name_comes_back(sim):
    s = sim("gemini")
    tools = [WEATHER, {"type": "function", "function": {"name": LONG_NAME, "parameters": CITY}}]
    choice = {"type": "function", "function": {"name": LONG_NAME}}
    provider = live(s)
    try:
        result = await provider.complete(
            weather_request(tools=tools, tool_choice=choice), timeout=5
        )
    finally:
        await provider.aclose()
    assert [(c.name, c.parsed_arguments()) for c in result.tool_calls] == [
        (LONG_NAME, {"city": "example"})
    ]
    sent = s.requests[-1].json["tools"][0]["functionDeclarations"][1]["name"]
    assert sent == gemini_tool_name(LONG_NAME) != LONG_NAME


PARIS, OSLO = '{"city":"Paris"}', '{"city":"Oslo"}'


async def test_a_conversation_with_openai_call_ids_is_answered_after_its_tool_results(sim):
    s = sim("gemini", Behavior(text="It is sunny."))
    request = build_request(
        messages=[
            {"role": "user", "content": "Weather in Paris and Oslo?"},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {"id": "call_9fXa", "function": {"name": "get_weather", "arguments": PARIS}},
                    {"id": "call_Q2b", "function": {"name": "get_weather", "arguments": OSLO}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_9fXa", "content": '{"sky": "sun"}'},
            {"role": "tool", "tool_call_id": "call_Q2b", "content": "snow"},
        ],
        tools=[WEATHER],
    )  # fmt: skip
    provider = live(s, "gemini-3-flash-preview")
    try:
        result = await provider.complete(request, timeout=5)
    finally:
        await provider.aclose()
    assert (result.text, result.tool_calls, result.finish_reason) == ("It is sunny.", (), "stop")
    responses = [p["functionResponse"] for p in s.requests[-1].json["contents"][-1]["parts"]]
    assert [(r["id"], r["name"]) for r in responses] == [
        ("call_9fXa", "get_weather"),
        ("call_Q2b", "get_weather"),
    ]


async def test_images_inline_and_by_url_are_taken_and_a_gif_is_refused(sim):
    s = sim("gemini", Behavior(text="A pixel."))
    provider = live(s)
    content = [
        {"type": "text", "text": "What are these?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    gif = [{"type": "image_url", "image_url": {"url": f"data:image/gif;base64,{GIF}"}}]
    try:
        result = await provider.complete(
            build_request(messages=[{"role": "user", "content": content}]), timeout=5
        )
        assert result.text == "A pixel."
        with pytest.raises(InvalidRequest) as info:
            await provider.complete(
                build_request(messages=[{"role": "user", "content": gif}]), timeout=5
            )
    finally:
        await provider.aclose()
    assert info.value.status == 400 and "Unsupported MIME type: image/gif" in info.value.message


SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "size": {"enum": ["S", "M"]},
    },
    "required": ["name", "tags", "size"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("stream", [False, True])
async def test_a_json_schema_answer_parses_and_matches(sim, stream):
    s = sim("gemini")
    provider = live(s)
    request = build_request(
        messages=[{"role": "user", "content": "Describe a shirt."}],
        response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": SCHEMA}},
    )
    try:
        if stream:
            events = [e async for e in provider.stream(request, timeout=5)]
            text = "".join(e.text for e in events if isinstance(e, TextDelta))
        else:
            text = (await provider.complete(request, timeout=5)).text
    finally:
        await provider.aclose()
    value = json.loads(text)
    assert not list(Draft202012Validator(SCHEMA).iter_errors(value))
    assert value == {"name": "example", "tags": ["example"], "size": "S"}
    config = s.requests[-1].json["generationConfig"]
    assert config["responseMimeType"] == "application/json"


async def test_a_content_filter_ends_the_answer_as_such(sim):
    s = sim("gemini", Behavior(fault="content_filter", text="Partial answer"))
    provider = live(s)
    try:
        result = await provider.complete(CompletionRequest("x"), timeout=5)
        events = [e async for e in provider.stream(CompletionRequest("x"), timeout=5)]
    finally:
        await provider.aclose()
    assert (result.finish_reason, result.stop_reason) == ("content_filter", "SAFETY")
    assert isinstance(events[-1], StreamEnd) and events[-1].finish_reason == "content_filter"


GO = {"role": "user", "parts": [{"text": "go"}]}
CALLED = {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {}}}]}


def answered(name: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"functionResponse": {"name": name, "response": {}}}]}


NOT_BASE64 = {"inlineData": {"mimeType": "image/png", "data": "no base64!"}}
REJECTED = [
    ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "valid role: user, model"),
    ({"contents": [{"role": "user", "parts": []}]}, "contents.parts must not be empty"),
    ({"tools": [{"functionDeclarations": [{"name": "1st-tool"}]}]}, "Invalid function name"),
    ({"tools": [{"functionDeclarations": [{"name": "f" * 65}]}]}, "maximum length of 64"),
    ({"systemInstruction": {"role": "model", "parts": [{"text": "x"}]}}, "valid role"),
    ({"contents": [GO, CALLED, answered("get_time")]}, "matches no function declaration"),
    ({"contents": [answered("get_weather")]}, "comes immediately after a function call turn"),
    ({"contents": [{"parts": [NOT_BASE64]}]}, "Base64 decoding failed"),
]


@pytest.mark.parametrize(("extra", "words"), REJECTED)
async def test_what_the_api_refuses_is_an_invalid_request(sim, extra, words):
    s = sim("gemini")
    provider = live(s)
    request = replace(weather_request(), extra=extra)
    try:
        with pytest.raises(InvalidRequest) as info:
            await provider.complete(request, timeout=5)
    finally:
        await provider.aclose()
    assert info.value.status == 400 and words in info.value.message
    assert "INVALID_ARGUMENT" in info.value.message


# --- the simulator's reading of a request -----------------------------------------------------


def recorded(body: dict[str, Any]) -> RecordedRequest:
    raw = json.dumps(body).encode()
    path = "/v1beta/models/gemini-x:generateContent"
    return RecordedRequest("POST", path, {}, {"x-goog-api-key": KEY}, raw, body)


def test_the_view_reads_camel_and_snake_case_and_openapi_schemas():
    body = {
        "contents": [
            {"role": "user", "parts": [{"text": "hi"}]},
            {"role": "model", "parts": [{"function_call": {"name": "a", "args": {}}}]},
            {"role": "user", "parts": [{"function_response": {"name": "a", "response": {}}}]},
        ],
        "tools": [
            {
                "function_declarations": [
                    {"name": "a", "parameters_json_schema": CITY},
                    {
                        "name": "b",
                        "parameters": {
                            "type": "OBJECT",
                            "properties": {"n": {"type": "INTEGER"}},
                            "required": ["n"],
                        },
                    },
                ]
            }
        ],
        "tool_config": {
            "function_calling_config": {"mode": "ANY", "allowed_function_names": ["b"]}
        },
        "generation_config": {
            "response_mime_type": "application/json",
            "response_schema": {"type": "ARRAY", "items": {"type": "STRING"}},
        },
    }  # fmt: skip
    view = DIALECT.chat_view(recorded(body))
    assert view.tools["a"] == CITY
    assert example_of(view.tools["b"]) == {"n": 1}
    assert (view.choice, view.after_tool, view.json) == ("b", True, True)
    assert example_of(view.schema) == ["example"]
    assert DIALECT.check_request(recorded(body)) is None


@pytest.mark.parametrize(
    ("mode", "allowed", "choice"),
    [("AUTO", None, "auto"), ("NONE", None, "none"), ("ANY", None, "required"),
     ("ANY", ["a", "b"], "required"), ("VALIDATED", None, "auto")],
)  # fmt: skip
def test_the_view_reads_the_function_calling_mode(mode, allowed, choice):
    calling: dict[str, Any] = {"mode": mode}
    if allowed:
        calling["allowedFunctionNames"] = allowed
    body = {
        "contents": [{"parts": [{"text": "x"}]}],
        "tools": [{"functionDeclarations": [{"name": "a"}, {"name": "b"}]}],
        "toolConfig": {"functionCallingConfig": calling},
    }
    assert DIALECT.chat_view(recorded(body)).choice == choice


def call_turns(calls: list[dict[str, Any]], responses: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "contents": [
            {"role": "user", "parts": [{"text": "go"}]},
            {"role": "model", "parts": [{"functionCall": c} for c in calls]},
            {"role": "user", "parts": [{"functionResponse": r} for r in responses]},
        ]
    }


TEXT_ONLY = {"contents": [{"parts": [{"text": "x"}]}]}


def declared(**declaration: Any) -> dict[str, Any]:
    return {**TEXT_ONLY, "tools": [{"functionDeclarations": [{"name": "f", **declaration}]}]}


SIM_REJECTED = [
    (
        call_turns([{"name": "f"}, {"name": "f"}], [{"name": "f", "response": {}}]),
        "number of function response parts",
    ),
    (
        call_turns([{"id": "1", "name": "f"}], [{"id": "2", "name": "f", "response": {}}]),
        "matches the id of no",
    ),
    (call_turns([{"name": "f"}], [{"name": "", "response": {}}]), "Name cannot be empty"),
    (
        declared(parameters={"type": "object"}, parametersJsonSchema={}),
        "mutually exclusive",
    ),
    (declared(parameters={"$schema": "x", "type": "object"}), 'Unknown name "$schema"'),
    (
        declared(parameters={"type": "object", "properties": {"a": {"uniqueItems": True}}}),
        'Unknown name "uniqueItems"',
    ),
    (
        {**TEXT_ONLY, "toolConfig": {"functionCallingConfig": {"mode": "auto"}}},
        "Invalid value at 'tool_config",
    ),
    (
        {
            **TEXT_ONLY,
            "generationConfig": {"responseSchema": {"type": "OBJECT"}, "responseJsonSchema": {}},
        },
        "mutually exclusive",
    ),
    (
        {"contents": [{"parts": [{"file_data": {"mime_type": "image/bmp", "file_uri": "x"}}]}]},
        "Unsupported MIME type: image/bmp",
    ),
]


@pytest.mark.parametrize(("body", "words"), SIM_REJECTED)
def test_the_simulator_refuses_like_the_api(body, words):
    reply = DIALECT.check_request(recorded(body))
    assert reply is not None and reply.status == 400
    error = json.loads(reply.body)["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert words in error["message"]


def test_the_simulator_takes_what_the_adapter_sends_for_a_whole_conversation():
    body = {
        "systemInstruction": {"role": "user", "parts": [{"text": "sys"}]},
        **call_turns(
            [{"id": "c1", "name": "f", "args": {}}, {"id": "c2", "name": "f", "args": {}}],
            [{"id": "c2", "name": "f", "response": {}}, {"id": "c1", "name": "f", "response": {}}],
        ),
        "tools": [{"functionDeclarations": [{"name": "ns:f.v1-x"}, {"name": "f"}]}],
    }
    body["contents"][0]["parts"].append({"inline_data": {"mime_type": "image/webp", "data": PNG}})
    assert DIALECT.check_request(recorded(body)) is None


# --- the official SDK as a client of the simulator -------------------------------------------

genai = pytest.importorskip("google.genai")
from google.genai import errors as genai_errors  # noqa: E402
from google.genai import types as genai_types  # noqa: E402


def sdk(sim):
    options = genai_types.HttpOptions(base_url=sim.base_url)
    return genai.Client(api_key=SIM_KEY, http_options=options).aio


def sdk_config(**kw: Any):
    declaration = genai_types.FunctionDeclaration(
        name="get_weather", description="Weather now.", parameters_json_schema=CITY
    )
    return genai_types.GenerateContentConfig(
        tools=[genai_types.Tool(function_declarations=[declaration])],
        automatic_function_calling=genai_types.AutomaticFunctionCallingConfig(disable=True),
        **kw,
    )


async def test_the_sdk_reads_the_simulators_function_call(sim):
    s = sim("gemini", Behavior(tool_call=("get_weather", {"city": "Paris"})))
    client = sdk(s)
    try:
        response = await client.models.generate_content(
            model="gemini-2.5-flash", contents="Weather in Paris?", config=sdk_config()
        )
    finally:
        await client.aclose()
    calls = response.function_calls
    assert calls is not None and len(calls) == 1
    assert (calls[0].name, calls[0].args) == ("get_weather", {"city": "Paris"})
    assert calls[0].id is not None and calls[0].id.startswith("call_")
    assert response.candidates[0].finish_reason == genai_types.FinishReason.STOP
    declarations = s.requests[-1].json["tools"][0]["functionDeclarations"]
    assert declarations[0]["parameters_json_schema"] == CITY  # the SDK's own spelling


async def test_the_sdk_streams_the_simulators_function_call(sim):
    s = sim("gemini", Behavior(tool_call=("get_weather", {"city": "Paris"})))
    client = sdk(s)
    try:
        chunks = [
            chunk
            async for chunk in await client.models.generate_content_stream(
                model="gemini-2.5-flash", contents="Weather in Paris?", config=sdk_config()
            )
        ]
    finally:
        await client.aclose()
    calls = [c for chunk in chunks for c in chunk.function_calls or ()]
    assert [(c.name, c.args) for c in calls] == [("get_weather", {"city": "Paris"})]
    assert chunks[-1].candidates[0].finish_reason == genai_types.FinishReason.STOP
    assert s.requests[-1].query.get("alt") == "sse"


async def test_the_sdk_sends_a_function_response_the_simulator_answers(sim):
    s = sim("gemini", Behavior(text="Sunny in Paris."))
    contents = [
        genai_types.Content(role="user", parts=[genai_types.Part(text="Weather in Paris?")]),
        genai_types.Content(
            role="model",
            parts=[
                genai_types.Part(
                    function_call=genai_types.FunctionCall(
                        id="call_1", name="get_weather", args={"city": "Paris"}
                    )
                )
            ],
        ),
        genai_types.Content(
            role="user",
            parts=[
                genai_types.Part(
                    function_response=genai_types.FunctionResponse(
                        id="call_1", name="get_weather", response={"output": "sun"}
                    )
                )
            ],
        ),
    ]
    client = sdk(s)
    try:
        response = await client.models.generate_content(
            model="gemini-2.5-flash",
            contents=contents,
            config=sdk_config(system_instruction="Be brief."),
        )
    finally:
        await client.aclose()
    assert response.text == "Sunny in Paris." and not response.function_calls


async def test_the_sdk_gets_json_matching_its_schema(sim):
    s = sim("gemini")
    client = sdk(s)
    config = genai_types.GenerateContentConfig(
        response_mime_type="application/json", response_json_schema=SCHEMA
    )
    try:
        response = await client.models.generate_content(
            model="gemini-2.5-flash", contents="Describe a shirt.", config=config
        )
    finally:
        await client.aclose()
    assert json.loads(response.text) == example_of(SCHEMA)


async def test_the_sdk_sees_a_refused_image_as_a_client_error(sim):
    s = sim("gemini")
    client = sdk(s)
    image = genai_types.Part.from_bytes(data=base64.b64decode(GIF), mime_type="image/gif")
    try:
        with pytest.raises(genai_errors.ClientError) as info:
            await client.models.generate_content(
                model="gemini-2.5-flash", contents=[image, "What is this?"]
            )
    finally:
        await client.aclose()
    assert (info.value.code, info.value.status) == (400, "INVALID_ARGUMENT")
    assert "image/gif" in str(info.value.message)


def test_a_message_value_built_by_hand_is_sent_too():
    """Typed messages (not dicts) go through the same translation."""
    request = CompletionRequest(
        messages=(Message("user", (TextPart("hi"),)),),
        tools=build_request(tools=[WEATHER], messages=[{"role": "user", "content": "x"}]).tools,
        tool_choice=ForcedTool("get_weather"),
    )
    provider = adapter(Wire(answer({"text": "ok"})))
    body = provider.body(request, stream=False)
    assert body["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]
    assert body["toolConfig"]["functionCallingConfig"]["allowedFunctionNames"] == ["get_weather"]
