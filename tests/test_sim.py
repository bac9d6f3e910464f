"""The provider simulators, over real HTTP on 127.0.0.1: wire formats, rejections, faults.

Response bodies are checked byte by byte for framing and, where the official OpenAPI specs
(tests/specs/) describe them, validated against the spec schemas.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from failover_cli.sim import FAULTS, Behavior, Simulator, refused_url
from failover_cli.sim.__main__ import build_parser
from failover_cli.sim.__main__ import main as sim_main
from failover_cli.sim.behavior import split_tokens

KINDS = ("anthropic", "openai", "ollama", "gemini")
KEY = "sk-test-4f1c9a"
TEXT = "The quick brown fox jumps over the lazy dog."
WORDS = TEXT.split(" ")
SPECS = Path(__file__).parent / "specs"
HTTP = httpx.Client(timeout=5)  # one client: creating one per request costs ~30 ms


@pytest.fixture(scope="module", autouse=True)
def _close_http_client():
    yield
    HTTP.close()


# --- helpers ------------------------------------------------------------------------------------


def auth(kind: str, key: str | None = KEY) -> dict[str, str]:
    if key is None:
        return {"anthropic-version": "2023-06-01"} if kind == "anthropic" else {}
    return {
        "anthropic": {"x-api-key": key, "anthropic-version": "2023-06-01"},
        "openai": {"authorization": f"Bearer {key}"},
        "ollama": {"authorization": f"Bearer {key}"},  # only checked when the sim has a key
        "gemini": {"x-goog-api-key": key},
    }[kind]


def completion(kind: str, stream: bool, **extra: Any) -> tuple[str, dict[str, Any]]:
    """Path and body of a well-formed completion request."""
    messages = [{"role": "user", "content": "Say something about foxes"}]
    if kind == "anthropic":
        return "/v1/messages", {
            "model": "claude-x",
            "max_tokens": 64,
            "messages": messages,
            "stream": stream,
            **extra,
        }
    if kind == "openai":
        return "/v1/chat/completions", {
            "model": "gpt-x",
            "messages": messages,
            "stream": stream,
            **extra,
        }
    if kind == "ollama":
        return "/api/chat", {"model": "llama-x", "messages": messages, "stream": stream, **extra}
    action = "streamGenerateContent?alt=sse" if stream else "generateContent"
    contents = [{"role": "user", "parts": [{"text": "Say something about foxes"}]}]
    return f"/v1beta/models/gemini-x:{action}", {"contents": contents, **extra}


def health_path(kind: str) -> str:
    return {
        "anthropic": "/v1/models",
        "openai": "/v1/models",
        "ollama": "/api/tags",
        "gemini": "/v1beta/models",
    }[kind]


def post(
    sim: Simulator, kind: str, stream: bool, timeout: float = 5.0, **extra: Any
) -> httpx.Response:
    path, body = completion(kind, stream, **extra)
    return HTTP.post(sim.base_url + path, json=body, headers=auth(kind), timeout=timeout)


def sse_blocks(body: bytes, eol: bytes = b"\n") -> list[dict[str, str]]:
    """Parse a complete SSE body, asserting its framing: every event ends with a blank line."""
    assert body.endswith(eol + eol), body[-40:]
    events = []
    for block in body[: -2 * len(eol)].split(eol + eol):
        fields = {}
        for line in block.split(eol):
            name, sep, value = line.decode().partition(": ")
            assert sep, f"not a field line: {line!r}"
            fields[name] = value
        events.append(fields)
    return events


def read_stream(kind: str, body: bytes) -> tuple[str, bool, list[Any]]:
    """The text a stream carried, whether it ended with its terminal marker, its JSON items."""
    if kind == "ollama":
        assert body.endswith(b"\n")
        items = [json.loads(line) for line in body.splitlines()]
        text = "".join(item.get("message", {}).get("content", "") for item in items)
        return text, bool(items) and items[-1].get("done") is True, items
    eol = b"\r\n" if kind == "gemini" else b"\n"
    events = sse_blocks(body, eol) if body else []
    if kind == "anthropic":
        items = [json.loads(e["data"]) for e in events]
        for event, item in zip(events, items, strict=True):
            assert event["event"] == item["type"]  # SSE event name == payload type
        text = "".join(i["delta"]["text"] for i in items if i["type"] == "content_block_delta")
        return text, bool(items) and items[-1]["type"] == "message_stop", items
    if kind == "openai":
        done = bool(events) and events[-1]["data"] == "[DONE]"
        items = [json.loads(e["data"]) for e in (events[:-1] if done else events)]
        text = "".join(c["delta"].get("content") or "" for i in items for c in i.get("choices", []))
        return text, done, items
    items = [json.loads(e["data"]) for e in events]
    text = "".join(
        part["text"]
        for item in items
        for candidate in item.get("candidates", [])
        for part in candidate["content"].get("parts", [])
    )
    return text, bool(items) and "finishReason" in items[-1].get("candidates", [{}])[0], items


def answer_text(kind: str, body: dict[str, Any]) -> str:
    if kind == "anthropic":
        return "".join(block["text"] for block in body["content"])
    if kind == "openai":
        return body["choices"][0]["message"]["content"]
    if kind == "ollama":
        return body["message"]["content"]
    return "".join(p["text"] for p in body["candidates"][0]["content"].get("parts", []))


def _nullable(node: Any) -> Any:
    """OpenAPI 3.0 ``nullable: true`` (left in the OpenAI spec) as JSON Schema."""
    if isinstance(node, list):
        return [_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _nullable(value) for key, value in node.items()}
    if node.get("nullable") is True:
        del node["nullable"]
        return {"anyOf": [node, {"type": "null"}]}
    return node


_SPEC_CACHE: dict[str, dict[str, Any]] = {}


def validator(spec: str, schema: str) -> Draft202012Validator:
    if spec not in _SPEC_CACHE:
        document = json.loads((SPECS / f"{spec}.openapi.json").read_text())
        components = _nullable(document["components"])
        # The spec says a stream chunk's usage "contains a null value except for the last
        # chunk" but types it as CompletionUsage only.
        chunk = components["schemas"].get("CreateChatCompletionStreamResponse")
        if chunk:
            usage = chunk["properties"]["usage"]
            chunk["properties"]["usage"] = {"anyOf": [usage, {"type": "null"}]}
        _SPEC_CACHE[spec] = components
    root = {"$ref": f"#/components/schemas/{schema}", "components": _SPEC_CACHE[spec]}
    return Draft202012Validator(root)


def valid(spec: str, schema: str, instance: Any) -> None:
    validator(spec, schema).validate(instance)


@pytest.fixture
def sims():
    """Start simulators on demand; all stopped at the end."""
    started: list[Simulator] = []

    def start(kind: str, behavior: Behavior | None = None, **options: Any) -> Simulator:
        options.setdefault("api_key", KEY)
        sim = Simulator(kind, behavior or Behavior(text=TEXT), **options)
        started.append(sim.start())
        return sim

    yield start
    for sim in started:
        sim.stop()


# --- behaviour basics ---------------------------------------------------------------------------


def test_tokens_keep_their_leading_whitespace_and_join_back():
    text = "Hello  big\nworld "
    tokens = split_tokens(text)
    assert tokens == ["Hello", "  big", "\nworld "]
    assert "".join(tokens) == text
    assert split_tokens("") == []
    assert split_tokens("   ") == ["   "]


@pytest.mark.parametrize(
    "bad",
    [
        {"latency": -1},
        {"failure_rate": 1.5},
        {"fault": "explode"},
        {"statuses": [99]},
        {"tokens_per_second": 0},
        {"health_status": 700},
    ],
)
def test_behavior_rejects_nonsense(bad):
    with pytest.raises(ValueError, match="invalid Behavior"):
        Behavior(**bad)


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="unknown simulator kind"):
        Simulator("bedrock")  # type: ignore[arg-type]


# --- anthropic ----------------------------------------------------------------------------------


def test_anthropic_message_matches_the_spec(sims):
    sim = sims("anthropic")
    response = post(sim, "anthropic", stream=False)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["request-id"].startswith("req_")
    body = response.json()
    valid("anthropic-messages", "Message", body)
    assert body["content"] == [{"type": "text", "text": TEXT}]
    assert body["model"] == "claude-x"  # the requested model, when Behavior.model is unset
    assert body["stop_reason"] == "end_turn"
    assert body["usage"]["output_tokens"] == len(WORDS)
    assert body["usage"]["input_tokens"] == 4  # "Say something about foxes"


def test_anthropic_stream_events_in_documented_order(sims):
    sim = sims("anthropic")
    response = post(sim, "anthropic", stream=True)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_blocks(response.content)
    names = [e["event"] for e in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * len(WORDS),
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(list(e) == ["event", "data"] for e in events)  # "event:" line, then "data:"
    text, complete, items = read_stream("anthropic", response.content)
    assert text == TEXT and complete
    valid("anthropic-messages", "Message", items[0]["message"])
    assert items[0]["message"]["content"] == [] and items[0]["message"]["stop_reason"] is None
    assert items[1]["content_block"] == {"type": "text", "text": ""}
    assert [i["delta"]["text"] for i in items[3:-3]] == split_tokens(TEXT)
    assert all(i["delta"]["type"] == "text_delta" for i in items[3:-3])
    assert items[-2]["delta"]["stop_reason"] == "end_turn"
    assert items[-2]["usage"]["output_tokens"] == len(WORDS)


@pytest.mark.parametrize(
    ("headers", "body_change", "status", "error_type", "message"),
    [
        ({"anthropic-version": "2023-06-01"}, {}, 401, "authentication_error", "x-api-key"),
        (
            {"x-api-key": "sk-wrong", "anthropic-version": "2023-06-01"},
            {},
            401,
            "authentication_error",
            "invalid x-api-key",
        ),
        ({"x-api-key": KEY}, {}, 400, "invalid_request_error", "anthropic-version"),
        (None, {"max_tokens": None}, 400, "invalid_request_error", "max_tokens"),
        (None, {"messages": []}, 400, "invalid_request_error", "messages"),
    ],
)
def test_anthropic_rejections_carry_the_real_error_body(
    sims, headers, body_change, status, error_type, message
):
    sim = sims("anthropic", Behavior(statuses=[529]))
    path, body = completion("anthropic", stream=False)
    body = {k: v for k, v in {**body, **body_change}.items() if v is not None}
    response = HTTP.post(
        sim.base_url + path, json=body, headers=auth("anthropic") if headers is None else headers
    )
    assert response.status_code == status
    error = response.json()
    valid("anthropic-messages", "ErrorResponse", error)
    assert error["type"] == "error" and error["error"]["type"] == error_type
    assert message in error["error"]["message"]
    assert error["request_id"] == response.headers["request-id"]
    assert post(sim, "anthropic", stream=False).status_code == 529  # rejections consume nothing


def test_anthropic_models_list(sims):
    sim = sims("anthropic", Behavior(models=["claude-a", "claude-b"]))
    response = HTTP.get(sim.base_url + "/v1/models", headers=auth("anthropic"))
    listing = response.json()
    assert [m["id"] for m in listing["data"]] == ["claude-a", "claude-b"]
    assert all(m["type"] == "model" for m in listing["data"])
    assert listing["has_more"] is False and listing["first_id"] == "claude-a"
    assert listing["last_id"] == "claude-b"


# --- openai -------------------------------------------------------------------------------------


def test_openai_completion_matches_the_spec(sims):
    sim = sims("openai", Behavior(text=TEXT, model="gpt-reported"))
    response = post(sim, "openai", stream=False)
    body = response.json()
    valid("openai-chat-completions", "CreateChatCompletionResponse", body)
    assert body["object"] == "chat.completion" and body["model"] == "gpt-reported"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": TEXT,
        "refusal": None,
        "annotations": [],
    }
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == len(WORDS)
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + len(WORDS)
    assert response.headers["x-request-id"]


@pytest.mark.parametrize("include_usage", [False, True])
def test_openai_stream_chunks_end_with_done(sims, include_usage):
    sim = sims("openai")
    response = post(sim, "openai", stream=True, stream_options={"include_usage": include_usage})
    assert response.content.endswith(b"\n\ndata: [DONE]\n\n")
    events = sse_blocks(response.content)
    assert all(list(e) == ["data"] for e in events)  # no "event:" lines
    text, complete, chunks = read_stream("openai", response.content)
    assert text == TEXT and complete
    for chunk in chunks:
        valid("openai-chat-completions", "CreateChatCompletionStreamResponse", chunk)
        assert chunk["object"] == "chat.completion.chunk" and chunk["id"] == chunks[0]["id"]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    if include_usage:
        final, chunks = chunks[-1], chunks[:-1]
        assert final["choices"] == []
        assert final["usage"]["completion_tokens"] == len(WORDS)
        assert all("usage" in c and c["usage"] is None for c in chunks)
    else:
        assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])


@pytest.mark.parametrize(
    ("headers", "body_change", "status", "code", "message"),
    [
        ({}, {}, 401, None, "didn't provide an API key"),
        ({"authorization": "Bearer sk-wrong-key"}, {}, 401, "invalid_api_key", "Incorrect API key"),
        (None, {"messages": []}, 400, "empty_array", "messages"),
    ],
)
def test_openai_rejections_carry_the_real_error_body(
    sims, headers, body_change, status, code, message
):
    sim = sims("openai")
    path, body = completion("openai", stream=False, **body_change)
    response = HTTP.post(
        sim.base_url + path, json=body, headers=auth("openai") if headers is None else headers
    )
    assert response.status_code == status
    error = response.json()
    valid("openai-chat-completions", "ErrorResponse", error)
    assert error["error"]["code"] == code and message in error["error"]["message"]
    assert "sk-wrong-key" not in response.text


def test_openai_models_list_matches_the_spec(sims):
    sim = sims("openai")
    listing = HTTP.get(sim.base_url + "/v1/models", headers=auth("openai")).json()
    valid("openai-chat-completions", "ListModelsResponse", listing)
    assert listing["data"][0]["id"] == "gpt-4o-mini"


# --- ollama -------------------------------------------------------------------------------------


def test_ollama_chat_json_matches_the_spec(sims):
    sim = sims("ollama", Behavior(text=TEXT, latency=0.002, tokens_per_second=1000))
    response = post(sim, "ollama", stream=False)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    valid("ollama-chat", "ChatResponse", body)
    assert body["message"] == {"role": "assistant", "content": TEXT}
    assert body["done"] is True and body["done_reason"] == "stop"
    assert body["eval_count"] == len(WORDS) and body["prompt_eval_count"] == 4
    assert body["load_duration"] == 2_000_000  # the planned latency, in nanoseconds
    assert body["eval_duration"] == len(WORDS) * 1_000_000  # 1 ms per token
    parts = ("load_duration", "prompt_eval_duration", "eval_duration")
    assert body["total_duration"] == sum(body[p] for p in parts)


def test_ollama_streams_ndjson_by_default(sims):
    sim = sims("ollama", api_key=None)  # Ollama has no authentication
    path, body = completion("ollama", stream=True)
    del body["stream"]  # absent means stream
    response = HTTP.post(sim.base_url + path, json=body)
    assert response.headers["content-type"] == "application/x-ndjson"
    text, complete, lines = read_stream("ollama", response.content)
    assert text == TEXT and complete
    assert len(lines) == len(WORDS) + 1
    for line in lines:
        valid("ollama-chat", "ChatStreamEvent", line)
    assert all(line["done"] is False and "done_reason" not in line for line in lines[:-1])
    final = lines[-1]
    assert final["done_reason"] == "stop" and final["message"]["content"] == ""
    assert final["eval_count"] == len(WORDS)
    for name in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(final[name], int) and final[name] > 0


def test_ollama_tags_and_version_match_the_spec(sims):
    sim = sims("ollama", Behavior(model="qwen3:4b"), api_key=None)
    tags = HTTP.get(sim.base_url + "/api/tags").json()
    valid("ollama-chat", "ListResponse", tags)
    assert [m["name"] for m in tags["models"]] == ["qwen3:4b"]
    version = HTTP.get(sim.base_url + "/api/version").json()
    valid("ollama-chat", "VersionResponse", version)
    assert version["version"].count(".") == 2


def test_ollama_rejects_a_missing_model_and_unknown_paths(sims):
    sim = sims("ollama", api_key=None)
    response = HTTP.post(sim.base_url + "/api/chat", json={"messages": []})
    assert (response.status_code, response.json()) == (400, {"error": "model is required"})
    assert HTTP.post(sim.base_url + "/api/nothing").status_code == 404


def test_ollama_without_messages_just_loads_the_model(sims):
    sim = sims("ollama", Behavior(statuses=[500]), api_key=None)
    loaded = HTTP.post(sim.base_url + "/api/chat", json={"model": "llama-x", "stream": False})
    body = loaded.json()
    assert (body["done"], body["done_reason"], body["message"]["content"]) == (True, "load", "")
    assert post(sim, "ollama", stream=False).status_code == 500  # loading consumed no status


def test_ollama_checks_a_bearer_key_only_when_given_one(sims):
    path, body = completion("ollama", stream=False)
    keyed = sims("ollama", api_key=KEY).base_url + path
    assert HTTP.post(keyed, json=body).json() == {"error": "unauthorized"}
    wrong = {"authorization": "Bearer sk-other"}
    assert HTTP.post(keyed, json=body, headers=wrong).status_code == 401
    assert HTTP.post(keyed, json=body, headers=auth("ollama")).status_code == 200
    keyless = sims("ollama", api_key=None).base_url + path
    assert HTTP.post(keyless, json=body).status_code == 200


# --- gemini -------------------------------------------------------------------------------------


def test_gemini_generate_content(sims):
    sim = sims("gemini")
    response = post(sim, "gemini", stream=False)
    body = response.json()
    candidate = body["candidates"][0]
    assert candidate["content"] == {"role": "model", "parts": [{"text": TEXT}]}
    assert candidate["finishReason"] == "STOP"
    usage = body["usageMetadata"]
    assert usage["candidatesTokenCount"] == len(WORDS)
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + len(WORDS)
    assert body["modelVersion"] == "gemini-x"


def test_gemini_sse_stream_is_crlf_framed_and_finishes_on_the_last_chunk(sims):
    sim = sims("gemini")
    response = post(sim, "gemini", stream=True)
    assert response.headers["content-type"] == "text/event-stream"
    assert b"\r\n\r\ndata: " in response.content and b"[DONE]" not in response.content
    text, complete, chunks = read_stream("gemini", response.content)
    assert text == TEXT and complete and len(chunks) == len(WORDS)
    assert all("finishReason" not in c["candidates"][0] for c in chunks[:-1])
    counts = [c["usageMetadata"]["candidatesTokenCount"] for c in chunks]
    assert counts == list(range(1, len(WORDS) + 1))  # cumulative


def test_gemini_stream_without_alt_sse_is_a_json_array(sims):
    sim = sims("gemini")
    path, body = completion("gemini", stream=False)
    path = path.replace(":generateContent", ":streamGenerateContent")
    response = HTTP.post(sim.base_url + path, json=body, headers=auth("gemini"))
    chunks = json.loads(response.content)
    assert isinstance(chunks, list) and len(chunks) == len(WORDS)
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == TEXT


def test_gemini_keys_and_their_real_errors(sims):
    sim = sims("gemini")
    path, body = completion("gemini", stream=False)
    missing = HTTP.post(sim.base_url + path, json=body)
    assert missing.status_code == 403
    assert missing.json()["error"]["status"] == "PERMISSION_DENIED"
    wrong = HTTP.post(sim.base_url + path, json=body, headers={"x-goog-api-key": "AIza-wrong"})
    error = wrong.json()["error"]
    assert (wrong.status_code, error["code"], error["status"]) == (400, 400, "INVALID_ARGUMENT")
    assert error["details"][0]["reason"] == "API_KEY_INVALID"
    assert "AIza-wrong" not in wrong.text
    by_query = HTTP.post(sim.base_url + path, json=body, params={"key": KEY})
    assert by_query.status_code == 200
    assert sim.requests[-1].query == {"key": KEY}


def test_gemini_models_list(sims):
    sim = sims("gemini")
    listing = HTTP.get(sim.base_url + "/v1beta/models", headers=auth("gemini")).json()
    assert listing["models"][0]["name"] == "models/gemini-2.5-flash"
    assert "generateContent" in listing["models"][0]["supportedGenerationMethods"]
    one = HTTP.get(sim.base_url + "/v1beta/models/gemini-x", headers=auth("gemini")).json()
    assert one["name"] == "models/gemini-x"


# --- faults, across dialects --------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_truncate_ends_the_stream_without_its_terminal_marker(sims, kind):
    sim = sims(kind, Behavior(text=TEXT, fault="truncate", fault_after_tokens=3))
    response = post(sim, kind, stream=True)
    assert response.status_code == 200
    assert response.headers["connection"] == "close"
    text, complete, _ = read_stream(kind, response.content)
    assert text == "".join(split_tokens(TEXT)[:3]) and not complete


@pytest.mark.parametrize("kind", KINDS)
def test_truncate_closes_a_json_answer_mid_body(sims, kind):
    sim = sims(kind, Behavior(fault="truncate"))
    with pytest.raises(httpx.RemoteProtocolError, match=r"incomplete|without sending complete"):
        post(sim, kind, stream=False)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stream", [False, True])
def test_reset_aborts_the_connection(sims, kind, stream):
    sim = sims(kind, Behavior(fault="reset"))
    with pytest.raises(httpx.TransportError):
        post(sim, kind, stream=stream)
    sim.update(fault=None)  # the server itself is unharmed
    assert post(sim, kind, stream=stream).status_code == 200


@pytest.mark.parametrize("kind", KINDS)
def test_malformed_json_answer(sims, kind):
    sim = sims(kind, Behavior(fault="malformed"))
    response = post(sim, kind, stream=False)
    assert response.status_code == 200 and response.content
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


@pytest.mark.parametrize("kind", KINDS)
def test_malformed_line_in_a_stream(sims, kind):
    sim = sims(kind, Behavior(text=TEXT, fault="malformed", fault_after_tokens=2))
    response = post(sim, kind, stream=True)
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        read_stream(kind, response.content)
    separator = {"ollama": b"\n", "gemini": b"\r\n\r\n"}.get(kind, b"\n\n")
    *sane, bad = response.content.strip().split(separator)
    assert split_tokens(TEXT)[1].encode() in sane[-1]  # the two tokens came first
    assert split_tokens(TEXT)[2].encode() not in bad


@pytest.mark.parametrize(
    ("kind", "marker"),
    [
        ("anthropic", b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error"'),
        ("openai", b'data: {"error":{"message":'),
        ("ollama", b'{"error":"'),
        ("gemini", b'data: {"error":{"code":503'),
    ],
)
def test_midstream_error_uses_the_dialects_in_stream_error(sims, kind, marker):
    sim = sims(kind, Behavior(text=TEXT, fault="midstream_error", fault_after_tokens=2))
    response = post(sim, kind, stream=True)
    assert response.status_code == 200
    text, complete, items = read_stream(kind, response.content)
    assert text == "".join(split_tokens(TEXT)[:2]) and not complete
    separator = {"ollama": b"\n", "gemini": b"\r\n\r\n"}.get(kind, b"\n\n")
    last_frame = response.content.strip().rsplit(separator, 1)[-1]
    assert last_frame.startswith(marker)
    assert "error" in items[-1] or items[-1].get("type") == "error"


@pytest.mark.parametrize(
    ("kind", "status"), [("anthropic", 529), ("openai", 503), ("ollama", 503), ("gemini", 503)]
)
def test_midstream_error_without_a_stream_is_an_overload(sims, kind, status):
    sim = sims(kind, Behavior(fault="midstream_error"))
    assert post(sim, kind, stream=False).status_code == status


ERROR_FAULTS = {
    # fault: {kind: (status, text in the body)}
    "context_length": {
        "anthropic": (400, "prompt is too long"),
        "openai": (400, '"code":"context_length_exceeded"'),
        "ollama": (400, "the input length exceeds the context length"),
        "gemini": (400, "exceeds the maximum number of tokens allowed"),
    },
    "quota": {
        "anthropic": (400, "Your credit balance is too low"),
        "openai": (429, '"code":"insufficient_quota"'),
        "ollama": (429, "usage limit"),
        "gemini": (429, '"status": "RESOURCE_EXHAUSTED"'),
    },
    "auth": {
        "anthropic": (401, '"type":"authentication_error"'),
        "openai": (401, '"code":"invalid_api_key"'),
        "ollama": (401, '"error":"unauthorized"'),
        "gemini": (401, '"status": "UNAUTHENTICATED"'),
    },
    "not_found": {
        "anthropic": (404, '"type":"not_found_error","message":"model: m-404"'),
        "openai": (404, "The model `m-404` does not exist"),
        "ollama": (404, 'model \\"m-404\\" not found, try pulling it first'),
        "gemini": (404, "models/m-404 is not found"),
    },
}


@pytest.mark.parametrize("fault", sorted(ERROR_FAULTS))
@pytest.mark.parametrize("kind", KINDS)
def test_error_faults_answer_with_the_real_status_and_body(sims, kind, fault):
    status, text = ERROR_FAULTS[fault][kind]
    sim = sims(kind, Behavior(fault=fault, model="m-404", retry_after=7))
    for stream in (False, True):
        response = post(sim, kind, stream=stream)
        assert response.status_code == status
        assert text in response.text
        assert response.headers["retry-after"] == "7"
    if kind == "anthropic":
        valid("anthropic-messages", "ErrorResponse", response.json())
    if kind == "openai":
        valid("openai-chat-completions", "ErrorResponse", response.json())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stream", [False, True])
def test_empty_answer_is_complete_with_no_text(sims, kind, stream):
    sim = sims(kind, Behavior(fault="empty"))
    response = post(sim, kind, stream=stream)
    assert response.status_code == 200
    if stream:
        text, complete, _ = read_stream(kind, response.content)
        assert (text, complete) == ("", True)
    else:
        assert answer_text(kind, response.json()) == ""


@pytest.mark.parametrize("kind", KINDS)
def test_drip_sends_the_same_bytes_in_small_pieces(sims, kind):
    sim = sims(kind)
    reference = post(sim, kind, stream=True).content
    sim.behavior = Behavior(text=TEXT, fault="drip", drip_bytes=64, drip_interval=0.001)
    path, body = completion(kind, stream=True)
    with HTTP.stream("POST", sim.base_url + path, json=body, headers=auth(kind)) as response:
        pieces = list(response.iter_raw())
    assert len(pieces) >= 3
    dripped = b"".join(pieces)
    assert read_stream(kind, dripped)[:2] == read_stream(kind, reference)[:2] == (TEXT, True)


def test_hang_reads_the_request_and_never_answers(sims):
    sim = sims("openai", Behavior(fault="hang"))
    with pytest.raises(httpx.ReadTimeout):
        post(sim, "openai", stream=False, timeout=0.2)
    assert sim.count == 1 and sim.requests[0].json["model"] == "gpt-x"


async def test_stop_resets_a_hanging_connection():
    planned = threading.Event()
    sim = Simulator("anthropic", Behavior(fault="hang"), listener=lambda *_: planned.set())
    async with sim, httpx.AsyncClient(base_url=sim.base_url, timeout=5) as client:
        path, body = completion("anthropic", stream=False)
        waiting = asyncio.create_task(client.post(path, json=body, headers=auth("anthropic")))
        await asyncio.to_thread(planned.wait, 5)
        await asyncio.to_thread(sim.stop)
        with pytest.raises(httpx.TransportError) as caught:
            await waiting
        assert not isinstance(caught.value, httpx.TimeoutException)


# --- scripting: statuses, random failures, health, runtime changes ------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_statuses_are_consumed_one_per_completion(sims, kind):
    sim = sims(
        kind, Behavior(statuses=[500, 429, 529, 200, 503], retry_after=2, retry_after_ms=1500)
    )
    seen = []
    for _ in range(6):
        response = post(sim, kind, stream=False)
        seen.append(response.status_code)
        if response.status_code != 200:
            assert response.headers["retry-after"] == "2"
            assert response.headers["retry-after-ms"] == "1500"
            assert response.headers["content-type"].startswith("application/json")
            response.json()
        else:
            assert "retry-after" not in response.headers
        health = HTTP.get(sim.base_url + health_path(kind), headers=auth(kind))
        assert health.status_code == 200  # health checks consume nothing
    assert seen == [500, 429, 529, 200, 503, 200]
    assert sim.count == 12


def test_anthropic_statuses_map_to_documented_error_types(sims):
    statuses = [400, 401, 403, 404, 429, 500, 529]
    sim = sims("anthropic", Behavior(statuses=statuses))
    types = []
    for status in statuses:
        response = post(sim, "anthropic", stream=False)
        assert response.status_code == status
        valid("anthropic-messages", "ErrorResponse", response.json())
        types.append(response.json()["error"]["type"])
    assert types == [
        "invalid_request_error",
        "authentication_error",
        "permission_error",
        "not_found_error",
        "rate_limit_error",
        "api_error",
        "overloaded_error",
    ]


def _statuses(sim: Simulator, count: int) -> list[int]:
    return [post(sim, "openai", stream=False).status_code for _ in range(count)]


def test_random_failures_are_reproducible_from_the_seed(sims):
    behavior = Behavior(failure_rate=0.5, failure_status=503, seed=7)
    first, second = sims("openai", behavior), sims("openai", behavior)
    statuses = _statuses(first, 30)
    assert statuses == _statuses(second, 30)
    assert set(statuses) == {200, 503}
    second.behavior = Behavior(failure_rate=0.5, failure_status=503, seed=8)
    assert _statuses(second, 30) != statuses
    second.behavior = Behavior(failure_rate=1.0)
    assert set(_statuses(second, 5)) == {500}


@pytest.mark.parametrize("kind", KINDS)
def test_health_status_fails_only_the_health_endpoint(sims, kind):
    sim = sims(kind, Behavior(health_status=503, retry_after=3))
    health = HTTP.get(sim.base_url + health_path(kind), headers=auth(kind))
    assert health.status_code == 503 and health.headers["retry-after"] == "3"
    assert "error" in health.json()
    assert post(sim, kind, stream=False).status_code == 200


@pytest.mark.parametrize(
    ("kind", "status"), [("anthropic", 401), ("openai", 401), ("ollama", 401), ("gemini", 403)]
)
def test_health_endpoints_require_the_key_too(sims, kind, status):
    sim = sims(kind)
    response = HTTP.get(sim.base_url + health_path(kind), headers=auth(kind, None))
    assert response.status_code == status


def test_behavior_changes_at_runtime_and_restart_the_script(sims):
    sim = sims("anthropic", Behavior(text="first answer", statuses=[500]))
    assert post(sim, "anthropic", stream=False).status_code == 500
    assert answer_text("anthropic", post(sim, "anthropic", stream=False).json()) == "first answer"
    sim.behavior = Behavior(text="second answer", statuses=[429])
    assert post(sim, "anthropic", stream=False).status_code == 429
    assert answer_text("anthropic", post(sim, "anthropic", stream=False).json()) == "second answer"
    sim.behavior = Behavior(statuses=[500, 502])
    assert post(sim, "anthropic", stream=False).status_code == 500
    assert sim.update(text="third answer").statuses == [500, 502]
    assert post(sim, "anthropic", stream=False).status_code == 502  # update() carries on
    assert answer_text("anthropic", post(sim, "anthropic", stream=False).json()) == "third answer"
    with pytest.raises(TypeError):
        sim.behavior = {"text": "not a Behavior"}  # type: ignore[assignment]


def test_requests_are_recorded_with_lower_case_headers(sims):
    sim = sims("openai")
    path, body = completion("openai", stream=False)
    HTTP.post(
        sim.base_url + path + "?trace=1",
        json=body,
        headers={"Authorization": f"Bearer {KEY}", "X-Custom": "Yes"},
    )
    HTTP.get(sim.base_url + "/v1/models", headers=auth("openai"))
    first, second = sim.requests
    assert (first.method, first.path, first.query) == ("POST", path, {"trace": "1"})
    assert first.headers["x-custom"] == "Yes" and first.headers["authorization"] == f"Bearer {KEY}"
    assert first.json == body and json.loads(first.body) == body
    assert (second.method, second.json) == ("GET", None)
    assert sim.count == 2
    sim.clear()
    assert sim.requests == [] and sim.count == 2


# --- timing (the server's pauses, observed from the client) -------------------------------------


async def test_stream_pacing_follows_latency_ttft_and_tokens_per_second():
    behavior = Behavior(text="a b c d e", latency=0.03, ttft=0.05, tokens_per_second=100)
    async with Simulator("openai", behavior) as sim, httpx.AsyncClient(base_url=sim.base_url) as c:
        path, body = completion("openai", stream=True)
        started = time.monotonic()
        async with c.stream("POST", path, json=body, headers=auth("openai")) as response:
            headers_at = time.monotonic() - started
            arrivals = []
            async for line in response.aiter_lines():
                if '"content":"' in line and '"content":""' not in line:
                    arrivals.append(time.monotonic() - started)
    slack = 0.01  # the event loop may wake up to one clock tick early
    assert headers_at >= 0.03 - slack
    assert arrivals[0] >= 0.03 + 0.05 - slack
    assert arrivals[-1] - arrivals[0] >= 4 * 0.01 - slack
    assert len(arrivals) == 5


# --- transport: keep-alive, bad requests, refused ports, restart --------------------------------


def _raw_exchange(sock: socket.socket, request: bytes) -> bytes:
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
    )
    while len(body) < length:
        body += sock.recv(65536)
    assert len(body) == length
    return head + b"\r\n\r\n" + body


def test_connections_are_kept_alive(sims):
    sim = sims("ollama", Behavior(text="hi"), api_key=None)
    port = int(sim.base_url.rsplit(":", 1)[1])
    request = b"GET /api/version HTTP/1.1\r\nhost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for _ in range(3):  # three requests, one connection
            reply = _raw_exchange(sock, request)
            assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
            assert reply.endswith(b'{"version":"0.12.6"}')
    assert sim.count == 3


def test_garbage_gets_a_400_and_a_closed_connection(sims):
    sim = sims("anthropic")
    port = int(sim.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 400 ")
    assert sim.count == 0


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_paths_get_the_dialects_404(sims, kind):
    sim = sims(kind)
    response = HTTP.post(sim.base_url + "/v2/nowhere", headers=auth(kind), json={})
    assert response.status_code == 404
    head = HTTP.head(sim.base_url + "/v2/nowhere", headers=auth(kind))
    assert (head.status_code, head.content) == (404, b"")


def test_refused_url_refuses():
    with pytest.raises(httpx.ConnectError):
        HTTP.get(refused_url() + "/v1/models", timeout=2)


def test_restart_keeps_the_url(sims):
    sim = sims("openai")
    url = sim.base_url
    sim.stop()
    assert not sim.running
    with pytest.raises(httpx.ConnectError):
        post(sim, "openai", stream=False)
    sim.start()
    assert sim.base_url == url and sim.running
    assert post(sim, "openai", stream=False).status_code == 200
    sim.restart()
    assert post(sim, "openai", stream=False).status_code == 200
    assert sim.count == 2


def test_base_url_needs_a_started_simulator():
    sim = Simulator("openai")
    with pytest.raises(RuntimeError, match="start it first"):
        _ = sim.base_url


async def test_many_concurrent_streams_from_another_event_loop():
    behavior = Behavior(text=TEXT, tokens_per_second=2000)
    sim = Simulator("anthropic", behavior, api_key=KEY)
    async with sim, httpx.AsyncClient(base_url=sim.base_url) as client:
        path, body = completion("anthropic", stream=True)

        async def one() -> str:
            response = await client.post(path, json=body, headers=auth("anthropic"))
            return read_stream("anthropic", response.content)[0]

        texts = await asyncio.gather(*(one() for _ in range(40)))
    assert texts == [TEXT] * 40
    assert sim.count == 40 and not sim.running


# --- command line -------------------------------------------------------------------------------


ENTRIES = {  # the simulator's two command lines: the same options, the same behaviour
    "python -m failover_cli.sim": [sys.executable, "-m", "failover_cli.sim"],
    "failover sim": [sys.executable, "-m", "failover_cli", "sim"],
}


def _cli(*args: str, entry: str = "python -m failover_cli.sim") -> subprocess.Popen[str]:
    command = [*ENTRIES[entry], *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


@pytest.mark.parametrize("entry", list(ENTRIES))
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_cli_serves_a_scripted_outage_until_ctrl_c(stop_signal, entry):
    process = _cli(
        "--kind",
        "openai",
        "--statuses",
        "500,200",
        "--retry-after",
        "2",
        "--api-key",
        KEY,
        "--text",
        "rehearsal",
        entry=entry,
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        path, body = completion("openai", stream=False)
        first = HTTP.post(base_url + path, json=body, headers=auth("openai"))
        assert (first.status_code, first.headers["retry-after"]) == (500, "2")
        second = HTTP.post(base_url + path, json=body, headers=auth("openai"))
        assert second.json()["choices"][0]["message"]["content"] == "rehearsal"
    finally:
        process.send_signal(stop_signal)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "Traceback" not in stderr
    assert f"POST {path} -> 500" in stderr and f"POST {path} -> 200" in stderr


def test_cli_reports_a_busy_port_without_a_traceback(sims):
    busy = sims("openai").base_url.rsplit(":", 1)[1]
    process = _cli("--kind", "openai", "--port", busy)
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 1
    assert f"cannot listen on 127.0.0.1:{busy}" in stderr and "Traceback" not in stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["--kind", "bedrock"],
        ["--kind", "openai", "--statuses", "500,oops"],
        ["--kind", "openai", "--failure-rate", "3"],
        ["--kind", "openai", "--fault", "explode"],
    ],
)
def test_cli_rejects_bad_options_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        sim_main(argv)
    assert exit_info.value.code == 2
    assert "usage:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--kind", "bedrock"], "--kind"),
        (["--kind", "openai", "--statuses", "500,oops"], "--statuses"),
        (["--kind", "openai", "--failure-rate", "3"], "--failure-rate"),
        (["--kind", "openai", "--fault", "explode"], "--fault"),
        (["--kind", "openai", "--tps", "0"], "--tps"),
    ],
)
def test_failover_sim_rejects_bad_options_like_the_other_commands(argv, option):
    process = _cli(*argv, entry="failover sim")
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2
    assert "failover: error: sim: Invalid value for" in stderr and option in stderr
    assert "Traceback" not in stderr and "usage: python" not in stderr


def test_failover_sim_help_is_the_command_lines_own():
    from typer.testing import CliRunner

    from failover_cli.cli import options
    from failover_cli.cli.commands import app
    from failover_cli.types import KINDS

    assert options.SIM_KINDS == KINDS and options.SIM_FAULTS == FAULTS
    result = CliRunner().invoke(app, ["sim", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Usage: failover sim [OPTIONS]" in result.output and "Examples" in result.output
    assert all(fault in result.output for fault in FAULTS)
    parser_flags = {f for a in build_parser()._actions for f in a.option_strings} - {"-h", "--help"}
    assert parser_flags == {flag for opt in options.SIM for flag in opt.flags}  # type: ignore[union-attr]


def test_every_fault_is_documented_in_the_cli_help(capsys):
    with pytest.raises(SystemExit):
        sim_main(["--help"])
    out = capsys.readouterr().out
    assert all(fault in out for fault in FAULTS)


# --- faults of issue 11, on the wire -----------------------------------------------------------


def _prefilled(kind: str, stream: bool) -> tuple[str, dict[str, Any]]:
    """A completion request whose last turn is the assistant's (a prefill)."""
    path, body = completion(kind, stream)
    if kind == "gemini":
        body["contents"].append({"role": "model", "parts": [{"text": "Foxes are"}]})
    else:
        body["messages"].append({"role": "assistant", "content": "Foxes are"})
    return path, body


def test_anthropic_takes_a_bearer_key_and_any_api_version(sims):
    sim = sims("anthropic")
    path, body = completion("anthropic", stream=False)
    for headers in (
        {"authorization": f"Bearer {KEY}", "anthropic-version": "2026-10-21"},
        {"x-api-key": KEY, "anthropic-version": "2023-06-01"},
    ):
        assert HTTP.post(sim.base_url + path, json=body, headers=headers).status_code == 200
    wrong = {"authorization": "Bearer sk-wrong", "anthropic-version": "2026-10-21"}
    assert HTTP.post(sim.base_url + path, json=body, headers=wrong).status_code == 401
    basic = {"authorization": f"Basic {KEY}", "anthropic-version": "2026-10-21"}
    assert HTTP.post(sim.base_url + path, json=body, headers=basic).status_code == 401


@pytest.mark.parametrize(
    ("kind", "status", "wording"),
    [
        ("anthropic", 400, "does not support assistant message prefill"),
        ("openai", 400, "Expected last role User or Tool"),
        ("ollama", 400, "must end with a user message"),
        ("gemini", 400, "ends with a user role or a function response"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_reject_prefill_refuses_only_a_final_assistant_turn(sims, kind, status, wording, stream):
    sim = sims(kind, Behavior(text=TEXT, fault="reject_prefill"))
    path, body = _prefilled(kind, stream)
    refused = HTTP.post(sim.base_url + path, json=body, headers=auth(kind))
    assert refused.status_code == status and wording in refused.text
    if kind == "anthropic":
        valid("anthropic-messages", "ErrorResponse", refused.json())
    if kind == "openai":
        valid("openai-chat-completions", "ErrorResponse", refused.json())
    assert post(sim, kind, stream=stream).status_code == 200  # a user turn last: answered


@pytest.mark.parametrize("kind", KINDS)
def test_no_end_marker_finishes_then_ends_without_the_marker(sims, kind):
    sim = sims(kind, Behavior(text=TEXT, fault="no_end_marker"))
    content = post(sim, kind, stream=True).content
    if kind == "anthropic":
        assert b"message_stop" not in content and b'"stop_reason":"end_turn"' in content
    elif kind == "openai":
        assert b"[DONE]" not in content and b'"finish_reason":"stop"' in content
        for event in sse_blocks(content):
            valid(
                "openai-chat-completions",
                "CreateChatCompletionStreamResponse",
                json.loads(event["data"]),
            )
    elif kind == "ollama":
        assert not content.endswith(b"\n") and json.loads(content.splitlines()[-1])["done"]
    else:
        assert content.endswith(b"\r\n") and not content.endswith(b"\r\n\r\n")
        assert b'"finishReason":"STOP"' in content.rsplit(b"data: ", 1)[1]
    assert TEXT.split()[-1].encode() in content


@pytest.mark.parametrize("kind", KINDS)
def test_stall_sends_part_then_keeps_the_connection_open(sims, kind):
    sim = sims(kind, Behavior(text=TEXT, fault="stall", fault_after_tokens=2))
    for stream in (False, True):
        path, body = completion(kind, stream)
        received = b""
        with (
            pytest.raises(httpx.ReadTimeout),
            HTTP.stream(
                "POST",
                sim.base_url + path,
                json=body,
                headers=auth(kind),
                timeout=httpx.Timeout(5, read=0.3),
            ) as response,
        ):
            assert response.status_code == 200
            for chunk in response.iter_raw():
                received += chunk
        assert received  # something came before the silence
        if stream:
            assert split_tokens(TEXT)[1].encode() in received
            assert split_tokens(TEXT)[2].encode() not in received


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stream", [False, True])
def test_deep_json_bad_delta_and_huge_number(sims, kind, stream):
    sim = sims(kind, Behavior(text=TEXT, fault="deep_json"))
    content = post(sim, kind, stream=stream).content
    assert b"[" * 100_000 in content
    sim.behavior = Behavior(text=TEXT, fault="bad_delta")
    content = post(sim, kind, stream=stream).content
    assert re.search(rb'"(text|content)": ?42\b', content), content[:300]
    sim.behavior = Behavior(text=TEXT, fault="huge_number")
    extra = {"stream_options": {"include_usage": True}} if kind == "openai" and stream else {}
    content = post(sim, kind, stream=stream, **extra).content
    assert b"1e400" in content
    counts = re.findall(
        rb'"(?:output_tokens|completion_tokens|eval_count|candidatesTokenCount)"'
        rb": ?(\S+?)[,}]",
        content,
    )
    assert counts and set(counts) == {b"1e400"}


@pytest.mark.parametrize("kind", KINDS)
def test_deep_json_breaks_a_parser_and_bad_delta_is_a_number(sims, kind):
    sim = sims(kind, Behavior(text=TEXT, fault="deep_json"))
    with pytest.raises(RecursionError):
        json.loads(post(sim, kind, stream=False).content)
    sim.behavior = Behavior(text=TEXT, fault="bad_delta")
    assert answer_text_raw(kind, post(sim, kind, stream=False).json()) == 42


def answer_text_raw(kind: str, body: dict[str, Any]) -> Any:
    if kind == "anthropic":
        return body["content"][0]["text"]
    if kind == "openai":
        return body["choices"][0]["message"]["content"]
    if kind == "ollama":
        return body["message"]["content"]
    return body["candidates"][0]["content"]["parts"][0]["text"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stream", [False, True])
def test_gzip_bomb_is_small_on_the_wire_and_huge_inflated(sims, kind, stream):
    sim = sims(kind, Behavior(fault="gzip_bomb"))
    path, body = completion(kind, stream)
    with HTTP.stream("POST", sim.base_url + path, json=body, headers=auth(kind)) as response:
        assert response.headers["content-encoding"] == "gzip"
        raw = b"".join(response.iter_raw())
    assert len(raw) < 1024 * 1024
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    inflated = len(inflater.decompress(raw[: 64 * 1024], 64 * 1024 * 1024))
    assert inflated > 32 * 1024 * 1024  # 64 KiB of it already inflate past any body cap


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stream", [False, True])
def test_endless_never_ends(sims, kind, stream):
    sim = sims(kind, Behavior(text=TEXT, fault="endless"))
    path, body = completion(kind, stream)
    received = 0
    with HTTP.stream("POST", sim.base_url + path, json=body, headers=auth(kind)) as response:
        for chunk in response.iter_raw():
            received += len(chunk)
            if received > 4 * 1024 * 1024:
                break
    assert received > 4 * 1024 * 1024
    sim.update(fault=None)  # the server itself is unharmed
    assert post(sim, kind, stream=stream).status_code == 200


@pytest.mark.parametrize("include_usage", [False, True])
def test_openai_ratelimit_headers(sims, include_usage):
    behavior = Behavior(
        text=TEXT,
        remaining_requests=0,
        remaining_tokens=1234,
        requests_reset=0.012,
        tokens_reset=3723.5,
    )
    sim = sims("openai", behavior)
    for response in (
        post(sim, "openai", stream=True, stream_options={"include_usage": include_usage}),
        post(sim, "openai", stream=False),
    ):
        headers = response.headers
        assert headers["x-ratelimit-remaining-requests"] == "0"
        assert headers["x-ratelimit-remaining-tokens"] == "1234"
        assert headers["x-ratelimit-reset-requests"] == "12ms"
        assert headers["x-ratelimit-reset-tokens"] == "1h2m3.5s"
        assert int(headers["x-ratelimit-limit-requests"]) >= 1
    sim.behavior = Behavior(statuses=[429], remaining_requests=0, requests_reset=360)
    limited = post(sim, "openai", stream=False)
    assert limited.status_code == 429 and limited.headers["x-ratelimit-reset-requests"] == "6m0s"


def test_anthropic_ratelimit_headers_are_rfc3339():
    from datetime import datetime

    with Simulator(
        "anthropic",
        Behavior(remaining_requests=3, remaining_tokens=0, requests_reset=5, tokens_reset=60),
        api_key=KEY,
    ) as sim:
        before = time.time()
        headers = post(sim, "anthropic", stream=False).headers
    assert headers["anthropic-ratelimit-requests-remaining"] == "3"
    for kind in ("tokens", "input-tokens", "output-tokens"):
        assert headers[f"anthropic-ratelimit-{kind}-remaining"] == "0"
        reset = datetime.fromisoformat(headers[f"anthropic-ratelimit-{kind}-reset"]).timestamp()
        assert before + 59 <= reset <= time.time() + 62
    assert headers["anthropic-ratelimit-requests-reset"].endswith("Z")


@pytest.mark.parametrize("kind", ["ollama", "gemini"])
def test_dialects_without_ratelimit_headers_send_none(sims, kind):
    sim = sims(kind, Behavior(remaining_requests=3, remaining_tokens=4))
    assert not [h for h in post(sim, kind, stream=False).headers if "ratelimit" in h]


@pytest.mark.parametrize(
    "bad", [{"remaining_requests": -1}, {"remaining_tokens": 1.5}, {"tokens_reset": -2}]
)
def test_behavior_rejects_nonsense_rate_limits(bad):
    with pytest.raises(ValueError, match="invalid Behavior"):
        Behavior(**bad)


def test_cli_serves_new_faults_and_rate_limits():
    process = _cli(
        "--kind",
        "openai",
        "--api-key",
        KEY,
        "--fault",
        "no_end_marker",
        "--remaining-requests",
        "0",
        "--requests-reset",
        "5",
        "--quiet",
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        path, body = completion("openai", stream=True)
        response = HTTP.post(base_url + path, json=body, headers=auth("openai"))
        assert b"[DONE]" not in response.content and b'"finish_reason":"stop"' in response.content
        assert response.headers["x-ratelimit-reset-requests"] == "5s"
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    assert process.returncode == 0


# --- continuing a partial answer ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["anthropic", "openai", "ollama", "gemini"])
@pytest.mark.parametrize("how", ["prefill", "instruct"])
async def test_a_simulator_continues_a_partial_answer_of_its_own_text(kind, how):
    from failover_cli.providers import create_provider
    from failover_cli.types import CompletionRequest, ProviderConfig

    text = "one two three four five"
    key = None if kind == "ollama" else "sk-sim-key"
    with Simulator(kind, Behavior(text=text), api_key=key) as sim:
        cfg = ProviderConfig(name="p", kind=kind, model="m", base_url=sim.base_url)
        env = {"ANTHROPIC_API_KEY": "sk-sim-key", "OPENAI_API_KEY": "sk-sim-key"}
        env["GEMINI_API_KEY"] = "sk-sim-key"
        provider = create_provider(cfg, env=env)
        try:
            req = CompletionRequest("say it", assistant_prefix="one two", continuation=how)
            done = await provider.complete(req, timeout=5)
            fresh = await provider.complete(CompletionRequest("say it"), timeout=5)
        finally:
            await provider.aclose()
    assert done.text == " three four five"
    assert fresh.text == text


@pytest.mark.parametrize(
    ("kind", "reason"),
    [("anthropic", "refusal"), ("openai", "content_filter"), ("gemini", "SAFETY")],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_the_content_filter_fault_ends_with_the_dialects_reason(kind, reason, stream):
    from failover_cli.providers import create_provider
    from failover_cli.types import CompletionRequest, ProviderConfig, StreamEnd

    env = {f"{k}_API_KEY": "sk-sim-key" for k in ("ANTHROPIC", "OPENAI", "GEMINI")}
    with Simulator(kind, Behavior(fault="content_filter"), api_key="sk-sim-key") as sim:
        cfg = ProviderConfig(name="p", kind=kind, model="m", base_url=sim.base_url)
        provider = create_provider(cfg, env=env)
        try:
            if stream:
                events = [e async for e in provider.stream(CompletionRequest("x"), timeout=5)]
                end = events[-1]
                assert isinstance(end, StreamEnd)
                stop = end.stop_reason
            else:
                stop = (await provider.complete(CompletionRequest("x"), timeout=5)).stop_reason
        finally:
            await provider.aclose()
    assert stop is not None and reason.lower() in stop.lower()
