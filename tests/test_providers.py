"""Unit tests of the provider adapters over httpx.MockTransport (no sockets).

Request bodies are validated against the providers' OpenAPI schemas copied into tests/specs/
(Gemini has none there: a small schema written from https://ai.google.dev/api/generate-content
stands in for it).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from email.utils import formatdate
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from failover_cli.errors import (
    ConfigError,
    ContextLengthExceeded,
    InvalidRequest,
    ProviderError,
    ProviderUnavailable,
    TransientError,
)
from failover_cli.protocols import Provider
from failover_cli.providers import DEFAULTS, create_provider, make_client
from failover_cli.types import (
    CompletionRequest,
    ErrorClass,
    ProviderConfig,
    StreamEnd,
    TextDelta,
    Usage,
)

KEY = "sk-canary-7f3a9b"
ENV = {"ANTHROPIC_API_KEY": KEY, "OPENAI_API_KEY": KEY, "GEMINI_API_KEY": KEY}
KINDS = ("anthropic", "openai", "ollama", "gemini")
SPECS = Path(__file__).parent / "specs"

# --- helpers

Handler = Callable[[httpx.Request], Any]


class Recorder:
    """A MockTransport handler that records requests and answers from a script."""

    def __init__(self, *responses: httpx.Response | Handler | BaseException) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer):
            answer = answer(request)
            if asyncio.iscoroutine(answer):
                answer = await answer
            return answer
        # A fresh Response per request, so one scripted answer can serve several calls.
        return httpx.Response(answer.status_code, headers=answer.headers, stream=answer.stream)

    @property
    def body(self) -> dict[str, Any]:
        return json.loads(self.requests[-1].content)


def make(kind: str, *answers: Any, env: dict[str, str] | None = None, **cfg: Any):
    recorder = Recorder(*answers) if answers else Recorder(_unused)
    client = httpx.AsyncClient(transport=httpx.MockTransport(recorder))
    config = ProviderConfig(name=f"my-{kind}", kind=kind, model=cfg.pop("model", "m-1"), **cfg)
    return create_provider(config, client=client, env=ENV if env is None else env), recorder


def _unused(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"no request expected, got {request.method} {request.url}")


async def collect(provider, request: CompletionRequest | None = None, timeout: float = 5.0):
    events = []
    async for event in provider.stream(request or CompletionRequest("hi"), timeout=timeout):
        events.append(event)
    return events


async def stream_error(provider, request: CompletionRequest | None = None, timeout: float = 5.0):
    events: list[Any] = []
    with pytest.raises(ProviderError) as info:
        async for event in provider.stream(request or CompletionRequest("hi"), timeout=timeout):
            events.append(event)
    return info.value, events


def assert_clean(exc: BaseException) -> None:
    """The canary key appears nowhere a user could see it."""
    for text in (str(exc), repr(exc), getattr(exc, "message", ""), *map(str, exc.args)):
        assert KEY not in text


class Chunks(httpx.AsyncByteStream):
    """A response body sent chunk by chunk, then ending, failing or hanging; records aclose."""

    def __init__(self, *chunks: bytes | str, then: BaseException | str | None = None) -> None:
        self.chunks = [c.encode() if isinstance(c, str) else c for c in chunks]
        self.then = then
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if isinstance(self.then, BaseException):
            raise self.then
        if self.then == "hang":
            await asyncio.Event().wait()

    async def aclose(self) -> None:
        self.closed = True


def sse_response(body: str | Chunks, status: int = 200) -> httpx.Response:
    headers = {"content-type": "text/event-stream"}
    if isinstance(body, Chunks):
        return httpx.Response(status, headers=headers, stream=body)
    return httpx.Response(status, headers=headers, content=body.encode())


def ndjson_response(body: str | Chunks) -> httpx.Response:
    headers = {"content-type": "application/x-ndjson"}
    if isinstance(body, Chunks):
        return httpx.Response(200, headers=headers, stream=body)
    return httpx.Response(200, headers=headers, content=body.encode())


def events(*pairs: tuple[str | None, Any]) -> str:
    """SSE text: (event name or None, data as JSON or a raw string) per event."""
    out = []
    for name, data in pairs:
        line = data if isinstance(data, str) else json.dumps(data)
        out.append((f"event: {name}\n" if name else "") + f"data: {line}\n\n")
    return "".join(out)


# --- each dialect's well-formed answers


def anthropic_stream(*texts: str, end: bool = True) -> list[tuple[str | None, Any]]:
    out: list[tuple[str | None, Any]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": "claude-x",
                    "stop_reason": None,
                    "usage": {"input_tokens": 11, "output_tokens": 1},
                },
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        ("ping", {"type": "ping"}),
    ]
    for text in texts:
        out.append(
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": text},
                },
            )
        )
    if end:
        out += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": 7},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
    return out


def openai_stream(*texts: str, end: bool = True) -> list[tuple[str | None, Any]]:
    base = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x"}
    out: list[tuple[str | None, Any]] = [
        (
            None,
            {
                **base,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "finish_reason": None,
                    }
                ],
                "usage": None,
            },
        ),
    ]
    for text in texts:
        out.append(
            (
                None,
                {
                    **base,
                    "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
                    "usage": None,
                },
            )
        )
    if end:
        out += [
            (
                None,
                {
                    **base,
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                    "usage": None,
                },
            ),
            (
                None,
                {
                    **base,
                    "choices": [],
                    "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
                },
            ),
            (None, "[DONE]"),
        ]
    return out


def ollama_stream(*texts: str, end: bool = True) -> str:
    lines = [
        {
            "model": "llama-x",
            "created_at": "2025-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": t},
            "done": False,
        }
        for t in texts
    ]
    if end:
        lines.append(
            {
                "model": "llama-x",
                "created_at": "2025-01-01T00:00:00Z",
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "stop",
                "prompt_eval_count": 11,
                "eval_count": 7,
            }
        )
    return "".join(json.dumps(line) + "\n" for line in lines)


def gemini_chunk(text: str, finish: str | None = None, usage: bool = False) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}}
    if finish:
        candidate["finishReason"] = finish
    chunk: dict[str, Any] = {"candidates": [candidate], "modelVersion": "gemini-x"}
    if usage:
        chunk["usageMetadata"] = {"promptTokenCount": 11, "candidatesTokenCount": 7}
    return chunk


def gemini_stream(*texts: str, end: bool = True) -> list[tuple[str | None, Any]]:
    out: list[tuple[str | None, Any]] = [(None, gemini_chunk(t)) for t in texts]
    if end:
        out.append((None, gemini_chunk("", finish="STOP", usage=True)))
    return out


def stream_body(kind: str, *texts: str, end: bool = True) -> str:
    if kind == "ollama":
        return ollama_stream(*texts, end=end)
    builder = {"anthropic": anthropic_stream, "openai": openai_stream, "gemini": gemini_stream}
    return events(*builder[kind](*texts, end=end))


def stream_response(kind: str, body: str | Chunks) -> httpx.Response:
    return ndjson_response(body) if kind == "ollama" else sse_response(body)


def ok_json(kind: str, text: str = "Hello there") -> dict[str, Any]:
    if kind == "anthropic":
        return {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-x",
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 11, "output_tokens": 7},
        }
    if kind == "openai":
        return {
            "id": "c1",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-x",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        }
    if kind == "ollama":
        return {
            "model": "llama-x",
            "created_at": "2025-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": text},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 11,
            "eval_count": 7,
        }
    return {**gemini_chunk(text, finish="STOP", usage=True)}


def error_body(kind: str, message: str, label: str = "") -> dict[str, Any]:
    """Each dialect's error body; ``label`` is Anthropic's error.type, OpenAI's code (and type),
    Gemini's status; Ollama has none."""
    if kind == "anthropic":
        return {"type": "error", "error": {"type": label, "message": message}}
    if kind == "openai":
        return {"error": {"message": message, "type": label, "param": None, "code": label or None}}
    if kind == "ollama":
        return {"error": message}
    return {"error": {"code": 400, "message": message, "status": label}}


# --- spec validation

GEMINI_REQUEST_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["contents"],
    "properties": {
        "contents": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/content"}},
        "systemInstruction": {"$ref": "#/$defs/content"},
        "generationConfig": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "maxOutputTokens": {"type": "integer", "minimum": 1},
                "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            },
        },
    },
    "$defs": {
        "content": {
            "type": "object",
            "additionalProperties": False,
            "required": ["parts"],
            "properties": {
                "role": {"enum": ["user", "model"]},
                "parts": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["text"],
                        "properties": {"text": {"type": "string"}},
                    },
                },
            },
        }
    },
}


def _spec_validator(file: str, schema: str) -> Draft202012Validator:
    spec = json.loads((SPECS / file).read_text())
    root = {"$ref": f"#/components/schemas/{schema}", "components": spec["components"]}
    return Draft202012Validator(root)


VALIDATORS = {
    "anthropic": _spec_validator("anthropic-messages.openapi.json", "CreateMessageParams"),
    "openai": _spec_validator(
        "openai-chat-completions.openapi.json", "CreateChatCompletionRequest"
    ),
    "ollama": _spec_validator("ollama-chat.openapi.json", "ChatRequest"),
    "gemini": Draft202012Validator(GEMINI_REQUEST_SCHEMA),
}


def assert_valid(kind: str, body: dict[str, Any]) -> None:
    problems = [e.message for e in VALIDATORS[kind].iter_errors(body)]
    assert not problems, problems


def test_the_validators_reject_bad_bodies():
    assert VALIDATORS["anthropic"].iter_errors({"model": "m", "messages": []}).__next__()
    assert next(VALIDATORS["ollama"].iter_errors({"model": "m", "messages": "x"}))
    assert next(VALIDATORS["gemini"].iter_errors({"contents": [], "system_instruction": {}}))
    bad_role = {"model": "m", "messages": [{"role": "bogus", "content": "x"}]}
    assert next(VALIDATORS["openai"].iter_errors(bad_role))


# --- requests

FULL = CompletionRequest("Say hi", max_tokens=50, system="Be brief.", temperature=0.2)


@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic_request(stream):
    answer = (
        sse_response(stream_body("anthropic", "x"))
        if stream
        else httpx.Response(200, json=ok_json("anthropic"))
    )
    provider, rec = make("anthropic", answer)
    if stream:
        await collect(provider, FULL)
    else:
        await provider.complete(FULL, timeout=5)
    request = rec.requests[0]
    assert request.method == "POST"
    assert str(request.url) == "https://api.anthropic.com/v1/messages"
    # What the anthropic 2.16 SDK sends (1.x sent x-api-key and 2023-06-01).
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert "x-api-key" not in request.headers
    assert request.headers["anthropic-version"] == "2026-10-21"
    assert request.headers["content-type"] == "application/json"
    assert rec.body == {
        "model": "m-1",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "Say hi"}],
        "system": "Be brief.",
        "temperature": 0.2,
        "stream": stream,
    }
    assert_valid("anthropic", rec.body)


@pytest.mark.parametrize("stream", [False, True])
async def test_openai_request(stream):
    answer = (
        sse_response(stream_body("openai", "x"))
        if stream
        else httpx.Response(200, json=ok_json("openai"))
    )
    provider, rec = make("openai", answer)
    if stream:
        await collect(provider, FULL)
    else:
        await provider.complete(FULL, timeout=5)
    request = rec.requests[0]
    assert str(request.url) == "https://api.openai.com/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    expected: dict[str, Any] = {
        "model": "m-1",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hi"},
        ],
        "max_completion_tokens": 50,  # api.openai.com: o-series models reject max_tokens
        "temperature": 0.2,
        "stream": stream,
    }
    if stream:
        expected["stream_options"] = {"include_usage": True}
    assert rec.body == expected
    assert_valid("openai", rec.body)


@pytest.mark.parametrize("stream", [False, True])
async def test_ollama_request(stream):
    answer = (
        ndjson_response(stream_body("ollama", "x"))
        if stream
        else httpx.Response(200, json=ok_json("ollama"))
    )
    provider, rec = make("ollama", answer, env={})
    if stream:
        await collect(provider, FULL)
    else:
        await provider.complete(FULL, timeout=5)
    request = rec.requests[0]
    assert str(request.url) == "http://localhost:11434/api/chat"
    assert "authorization" not in request.headers
    assert rec.body == {
        "model": "m-1",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hi"},
        ],
        "stream": stream,  # sent explicitly: the server streams by default
        "options": {"num_predict": 50, "temperature": 0.2},
    }
    assert_valid("ollama", rec.body)


@pytest.mark.parametrize("stream", [False, True])
async def test_gemini_request(stream):
    answer = (
        sse_response(stream_body("gemini", "x"))
        if stream
        else httpx.Response(200, json=ok_json("gemini"))
    )
    provider, rec = make("gemini", answer, model="gemini-2.0-flash")
    if stream:
        await collect(provider, FULL)
    else:
        await provider.complete(FULL, timeout=5)
    request = rec.requests[0]
    base = "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash"
    expected_url = f"{base}:streamGenerateContent?alt=sse" if stream else f"{base}:generateContent"
    assert str(request.url) == expected_url
    assert request.headers["x-goog-api-key"] == KEY
    assert "key=" not in str(request.url)
    assert rec.body == {
        "contents": [{"role": "user", "parts": [{"text": "Say hi"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"maxOutputTokens": 50, "temperature": 0.2},
    }
    assert_valid("gemini", rec.body)


@pytest.mark.parametrize("kind", KINDS)
async def test_minimal_request_omits_unset_options(kind):
    provider, rec = make(kind, httpx.Response(200, json=ok_json(kind)))
    await provider.complete(CompletionRequest("hi"), timeout=5)
    text = json.dumps(rec.body)
    assert "temperature" not in text
    assert "system" not in text.lower()
    assert_valid(kind, rec.body)


@pytest.mark.parametrize(
    ("kind", "expected_tail"),
    [
        ("anthropic", {"role": "assistant", "content": "The answer is"}),
        ("openai", {"role": "assistant", "content": "The answer is "}),
        ("ollama", {"role": "assistant", "content": "The answer is "}),
        ("gemini", {"role": "model", "parts": [{"text": "The answer is "}]}),
    ],
)
async def test_assistant_prefix_is_sent_as_a_trailing_assistant_turn(kind, expected_tail):
    provider, rec = make(kind, httpx.Response(200, json=ok_json(kind)))
    await provider.complete(CompletionRequest("Q?", assistant_prefix="The answer is "), timeout=5)
    turns = rec.body["contents"] if kind == "gemini" else rec.body["messages"]
    assert len(turns) == 2
    assert turns[-1] == expected_tail
    assert_valid(kind, rec.body)


async def test_anthropic_whitespace_only_prefix_is_not_sent():
    provider, rec = make("anthropic", httpx.Response(200, json=ok_json("anthropic")))
    await provider.complete(CompletionRequest("Q?", assistant_prefix=" \n"), timeout=5)
    assert rec.body["messages"] == [{"role": "user", "content": "Q?"}]


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000/v1/chat/completions"),
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1/chat/completions"),
        ("http://127.0.0.1:8000/v1/", "http://127.0.0.1:8000/v1/chat/completions"),
        ("http://host/proxy/openai", "http://host/proxy/openai/v1/chat/completions"),
    ],
)
async def test_openai_base_url_v1_is_not_doubled(base_url, expected):
    provider, rec = make("openai", httpx.Response(200, json=ok_json("openai")), base_url=base_url)
    await provider.complete(CompletionRequest("hi"), timeout=5)
    assert str(rec.requests[0].url) == expected


@pytest.mark.parametrize(
    ("model", "path"),
    [
        ("models/g-1", "/v1beta/models/g-1:generateContent"),
        ("tunedModels/my-tune", "/v1beta/tunedModels/my-tune:generateContent"),
        ("odd/name", "/v1beta/models/odd%2Fname:generateContent"),
    ],
)
async def test_gemini_model_path(model, path):
    provider, rec = make("gemini", httpx.Response(200, json=ok_json("gemini")), model=model)
    await provider.complete(CompletionRequest("hi"), timeout=5)
    assert rec.requests[0].url.raw_path.decode() == path


# --- keys


@pytest.mark.parametrize(
    ("kind", "variable"),
    [
        ("anthropic", "ANTHROPIC_API_KEY"),
        ("openai", "OPENAI_API_KEY"),
        ("gemini", "GEMINI_API_KEY"),
    ],
)
@pytest.mark.parametrize("value", [None, ""])
async def test_missing_key_fails_before_any_request(kind, variable, value):
    env = {} if value is None else {variable: value}
    provider, _ = make(kind, env=env)  # the transport fails the test if called
    with pytest.raises(ProviderUnavailable) as info:
        await provider.complete(CompletionRequest("hi"), timeout=5)
    assert info.value.reason == "no_key"
    assert variable in str(info.value)
    assert info.value.provider == f"my-{kind}"
    with pytest.raises(ProviderUnavailable, match=variable):
        await collect(provider)
    health = await provider.health()
    assert not health.ok
    assert health.error_class is ErrorClass.PROVIDER
    assert variable in (health.error or "")


async def test_key_is_read_at_request_time_and_custom_variable_is_used():
    env: dict[str, str] = {}
    provider, rec = make(
        "anthropic", httpx.Response(200, json=ok_json("anthropic")), env=env, api_key_env="MY_KEY"
    )
    with pytest.raises(ProviderUnavailable, match="MY_KEY"):
        await provider.complete(CompletionRequest("hi"), timeout=5)
    env["MY_KEY"] = "sk-later-1234"
    await provider.complete(CompletionRequest("hi"), timeout=5)
    assert rec.requests[0].headers["authorization"] == "Bearer sk-later-1234"


async def test_env_defaults_to_os_environ(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "g-env-key-99")
    client = httpx.AsyncClient(
        transport=httpx.MockTransport(Recorder(httpx.Response(200, json=ok_json("gemini"))))
    )
    provider = create_provider(ProviderConfig("g", "gemini", "g-1"), client=client)
    result = await provider.complete(CompletionRequest("hi"), timeout=5)
    assert result.text == "Hello there"
    monkeypatch.delenv("GEMINI_API_KEY")
    with pytest.raises(ProviderUnavailable, match="GEMINI_API_KEY"):
        await provider.complete(CompletionRequest("hi"), timeout=5)


async def test_openai_compatible_local_server_needs_no_key():
    provider, rec = make(
        "openai", httpx.Response(200, json=ok_json("openai")), env={}, base_url="http://127.0.0.1:9"
    )
    result = await provider.complete(CompletionRequest("hi"), timeout=5)
    assert result.text == "Hello there"
    assert "authorization" not in rec.requests[0].headers


async def test_openai_compatible_local_server_uses_a_key_when_set():
    provider, rec = make(
        "openai", httpx.Response(200, json=ok_json("openai")), base_url="http://127.0.0.1:9"
    )
    await provider.complete(CompletionRequest("hi"), timeout=5)
    assert rec.requests[0].headers["authorization"] == f"Bearer {KEY}"


async def test_ollama_with_configured_key_sends_bearer_and_requires_it():
    provider, rec = make(
        "ollama",
        httpx.Response(200, json=ok_json("ollama")),
        env={"OLLAMA_KEY": "ollama-k-1"},
        api_key_env="OLLAMA_KEY",
    )
    await provider.complete(CompletionRequest("hi"), timeout=5)
    assert rec.requests[0].headers["authorization"] == "Bearer ollama-k-1"
    missing, _ = make("ollama", env={}, api_key_env="OLLAMA_KEY")
    with pytest.raises(ProviderUnavailable, match="OLLAMA_KEY"):
        await missing.complete(CompletionRequest("hi"), timeout=5)


# --- responses


async def test_anthropic_joins_every_text_block_and_skips_the_others():
    data = ok_json("anthropic")
    data["content"] = [
        {"type": "thinking", "thinking": "hmm", "signature": "s"},
        {"type": "text", "text": "Hello, "},
        {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
        {"type": "text", "text": "world."},
    ]
    data["stop_reason"] = "max_tokens"
    provider, _ = make("anthropic", httpx.Response(200, json=data))
    result = await provider.complete(CompletionRequest("hi"), timeout=5)
    assert result.text == "Hello, world."
    assert result.stop_reason == "max_tokens"
    assert result.usage == Usage(11, 7)
    assert result.model == "claude-x"


@pytest.mark.parametrize(
    ("kind", "model", "stop"),
    [
        ("anthropic", "claude-x", "end_turn"),
        ("openai", "gpt-x", "stop"),
        ("ollama", "llama-x", "stop"),
        ("gemini", "gemini-x", "STOP"),
    ],
)
async def test_completion_is_parsed(kind, model, stop):
    provider, _ = make(kind, httpx.Response(200, json=ok_json(kind, "Bonjour")))
    result = await provider.complete(CompletionRequest("hi"), timeout=5)
    assert (result.text, result.model, result.stop_reason) == ("Bonjour", model, stop)
    assert result.usage == Usage(11, 7)


async def test_gemini_skips_thought_parts_and_reports_a_blocked_prompt():
    data = ok_json("gemini")
    data["candidates"][0]["content"]["parts"] = [
        {"text": "thinking...", "thought": True},
        {"text": "A"},
        {"text": "B"},
    ]
    provider, _ = make("gemini", httpx.Response(200, json=data))
    assert (await provider.complete(CompletionRequest("hi"), timeout=5)).text == "AB"
    blocked = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {}}
    provider, _ = make("gemini", httpx.Response(200, json=blocked))
    result = await provider.complete(CompletionRequest("hi"), timeout=5)
    assert (result.text, result.stop_reason) == ("", "SAFETY")


async def test_openai_null_content_is_empty_text():
    data = ok_json("openai")
    data["choices"][0]["message"]["content"] = None
    provider, _ = make("openai", httpx.Response(200, json=data))
    assert (await provider.complete(CompletionRequest("hi"), timeout=5)).text == ""


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("body", [b"{not json", b"<html>oops</html>", b""])
async def test_invalid_json_is_transient_malformed(kind, body):
    provider, _ = make(kind, httpx.Response(200, content=body))
    with pytest.raises(TransientError) as info:
        await provider.complete(CompletionRequest("hi"), timeout=5)
    assert info.value.reason == "malformed"


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("anthropic", {"type": "message", "content": "not a list of blocks"}),
        ("anthropic", [1, 2]),
        ("openai", {"choices": []}),
        ("openai", {"choices": [{"message": "x"}]}),
        ("ollama", {"message": "just a string"}),
        ("gemini", {"candidates": [{"content": {"parts": "x"}}]}),
    ],
)
async def test_unexpected_shape_is_transient_malformed(kind, data):
    provider, _ = make(kind, httpx.Response(200, json=data))
    with pytest.raises(TransientError) as info:
        await provider.complete(CompletionRequest("hi"), timeout=5)
    assert info.value.reason == "malformed"


# --- streams

STREAM_MODELS = {
    "anthropic": "claude-x",
    "openai": "gpt-x",
    "ollama": "llama-x",
    "gemini": "gemini-x",
}
STREAM_STOPS = {"anthropic": "end_turn", "openai": "stop", "ollama": "stop", "gemini": "STOP"}


@pytest.mark.parametrize("kind", KINDS)
async def test_stream_yields_deltas_then_one_end(kind):
    provider, _ = make(kind, stream_response(kind, stream_body(kind, "Hel", "lo", " you")))
    got = await collect(provider)
    assert got[:-1] == [TextDelta("Hel"), TextDelta("lo"), TextDelta(" you")]
    assert got[-1] == StreamEnd(
        STREAM_MODELS[kind], Usage(11, 7), STREAM_STOPS[kind], finish_reason="stop"
    )


@pytest.mark.parametrize("kind", KINDS)
async def test_stream_split_across_arbitrary_chunks(kind):
    raw = stream_body(kind, "a", "b").encode()
    pieces = [raw[i : i + 7] for i in range(0, len(raw), 7)]
    provider, _ = make(kind, stream_response(kind, Chunks(*pieces)))
    got = await collect(provider)
    assert "".join(e.text for e in got if isinstance(e, TextDelta)) == "ab"
    assert isinstance(got[-1], StreamEnd)


async def test_anthropic_stream_ignores_ping_and_unknown_events_and_non_text_deltas():
    pairs = anthropic_stream("A")
    pairs.insert(3, ("some_future_event", {"type": "some_future_event", "x": 1}))
    pairs.insert(
        4,
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": "{"},
            },
        ),
    )
    provider, _ = make("anthropic", sse_response(events(*pairs)))
    got = await collect(provider)
    assert got == [
        TextDelta("A"),
        StreamEnd("claude-x", Usage(11, 7), "end_turn", finish_reason="stop"),
    ]


async def test_anthropic_stream_usage_is_cumulative_and_zero_counts():
    pairs = anthropic_stream()  # no text: message_start says 1 output token, message_delta 0
    pairs[-2][1]["usage"] = {"output_tokens": 0, "input_tokens": 15}
    provider, _ = make("anthropic", sse_response(events(*pairs)))
    assert await collect(provider) == [
        StreamEnd("claude-x", Usage(15, 0), "end_turn", finish_reason="stop")
    ]


async def test_anthropic_stream_stops_reading_after_message_stop():
    body = Chunks(stream_body("anthropic", "A"), then="hang")
    provider, _ = make("anthropic", sse_response(body))
    got = await collect(provider, timeout=5)
    assert isinstance(got[-1], StreamEnd)
    assert body.closed


@pytest.mark.parametrize("kind", KINDS)
async def test_stream_without_terminal_marker_is_truncated_with_partial_text(kind):
    provider, _ = make(kind, stream_response(kind, stream_body(kind, "Hel", "lo", end=False)))
    exc, got = await stream_error(provider)
    assert isinstance(exc, TransientError)
    assert exc.reason == "truncated"
    assert exc.partial_text == "Hello"
    assert got == [TextDelta("Hel"), TextDelta("lo")]


async def test_openai_finish_reason_without_done_is_complete():
    pairs = openai_stream("x")[:-1]  # everything but [DONE]
    provider, _ = make("openai", sse_response(events(*pairs)))
    assert await collect(provider) == [
        TextDelta("x"),
        StreamEnd("gpt-x", Usage(11, 7), "stop", finish_reason="stop"),
    ]


@pytest.mark.parametrize("kind", KINDS)
async def test_connection_dropped_mid_stream_is_truncated_with_partial_text(kind):
    body = Chunks(
        stream_body(kind, "Hel", "lo", end=False),
        then=httpx.RemoteProtocolError("peer closed connection"),
    )
    provider, _ = make(kind, stream_response(kind, body))
    exc, _ = await stream_error(provider)
    assert isinstance(exc, TransientError)
    assert (exc.reason, exc.partial_text) == ("truncated", "Hello")
    assert body.closed


@pytest.mark.parametrize(
    ("kind", "error_event", "reason"),
    [
        (
            "anthropic",
            (
                "error",
                {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            ),
            "overloaded",
        ),
        (
            "anthropic",
            (
                "error",
                {"type": "error", "error": {"type": "invalid_request_error", "message": "odd"}},
            ),
            "stream_error",
        ),
        (
            "openai",
            (
                None,
                {
                    "error": {
                        "message": "The server had an error",
                        "type": "server_error",
                        "param": None,
                        "code": None,
                    }
                },
            ),
            "stream_error",
        ),
        (
            "gemini",
            (
                None,
                {
                    "error": {
                        "code": 503,
                        "message": "The model is overloaded.",
                        "status": "UNAVAILABLE",
                    }
                },
            ),
            "stream_error",
        ),
    ],
)
async def test_in_stream_error_event_is_transient_and_keeps_partial_text(kind, error_event, reason):
    body = stream_body(kind, "Par", "tial", end=False) + events(error_event)
    provider, _ = make(kind, sse_response(body))
    exc, _ = await stream_error(provider)
    assert type(exc) is TransientError
    assert (exc.reason, exc.partial_text) == (reason, "Partial")
    assert exc.provider == f"my-{kind}"


async def test_ollama_error_line_after_200_is_transient_and_keeps_partial_text():
    body = ollama_stream("Par", "tial", end=False) + json.dumps({"error": "model crashed"}) + "\n"
    provider, _ = make("ollama", ndjson_response(body))
    exc, _ = await stream_error(provider)
    assert type(exc) is TransientError
    assert (exc.reason, exc.partial_text) == ("stream_error", "Partial")
    assert "model crashed" in str(exc)


@pytest.mark.parametrize("kind", KINDS)
async def test_malformed_stream_line_is_transient_malformed(kind):
    garbage = "{broken json\n" if kind == "ollama" else "data: {broken json\n\n"
    if kind == "anthropic":
        garbage = "event: content_block_delta\n" + garbage
    body = stream_body(kind, "ok", end=False) + garbage
    provider, _ = make(kind, stream_response(kind, body))
    exc, _ = await stream_error(provider)
    assert (exc.reason, exc.partial_text) == ("malformed", "ok")


@pytest.mark.parametrize("kind", ["anthropic", "openai", "gemini"])
async def test_stream_answered_with_json_instead_of_sse_is_malformed(kind):
    provider, _ = make(kind, httpx.Response(200, json=ok_json(kind)))
    exc, _ = await stream_error(provider)
    assert isinstance(exc, TransientError)
    assert exc.reason == "malformed"


@pytest.mark.parametrize("kind", KINDS)
async def test_empty_stream_is_truncated(kind):
    provider, _ = make(kind, stream_response(kind, ""))
    exc, got = await stream_error(provider)
    assert (exc.reason, got) == ("truncated", [])


@pytest.mark.parametrize("kind", KINDS)
async def test_stream_error_status_is_mapped_before_any_event(kind):
    provider, _ = make(
        kind, httpx.Response(401, json=error_body(kind, "bad key", "authentication_error"))
    )
    exc, got = await stream_error(provider)
    assert isinstance(exc, ProviderUnavailable)
    assert (exc.status, exc.reason, got) == (401, "auth", [])


# --- status -> class

STATUS_TABLE = [
    (408, TransientError, "timeout"),
    (409, TransientError, "server_error"),
    (429, TransientError, "rate_limited"),
    (500, TransientError, "server_error"),
    (502, TransientError, "server_error"),
    (503, TransientError, "overloaded"),
    (504, TransientError, "server_error"),
    (529, TransientError, "overloaded"),
    (599, TransientError, "server_error"),
    (401, ProviderUnavailable, "auth"),
    (403, ProviderUnavailable, "auth"),
    (404, ProviderUnavailable, "model_not_found"),
    (402, ProviderUnavailable, "quota"),
    (405, ProviderUnavailable, "unexpected_status"),
    (400, InvalidRequest, "invalid_request"),
    (413, InvalidRequest, "invalid_request"),
    (422, InvalidRequest, "invalid_request"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("status", "cls", "reason"), STATUS_TABLE)
async def test_status_maps_to_class(kind, status, cls, reason):
    # A body the dialect does not single out: the status alone decides.
    body = error_body(kind, f"something went wrong ({status})")
    provider, _ = make(kind, httpx.Response(status, json=body))
    with pytest.raises(ProviderError) as info:
        await provider.complete(CompletionRequest("hi"), timeout=5)
    exc = info.value
    assert type(exc) is cls
    assert (exc.status, exc.reason, exc.provider) == (status, reason, f"my-{kind}")
    assert f"something went wrong ({status})" in str(exc)
    assert str(status) in str(exc)


T, P, R, C = TransientError, ProviderUnavailable, InvalidRequest, ContextLengthExceeded
CREDIT_LOW = "Your credit balance is too low to access the Anthropic API."
TOO_LONG = "prompt is too long: 215000 tokens > 200000 maximum"
OPENAI_TOO_LONG = "This model's maximum context length is 4096 tokens. However, you requested 5000"
GEMINI_TOO_LONG = "The input token count (1200000) exceeds the maximum number of tokens allowed"

DIALECT_CASES = [
    # Anthropic branches on error.type.
    ("anthropic", 529, "Overloaded", "overloaded_error", T, "overloaded"),
    ("anthropic", 500, "Internal", "api_error", T, "server_error"),
    ("anthropic", 429, "Number of requests exceeded", "rate_limit_error", T, "rate_limited"),
    ("anthropic", 400, CREDIT_LOW, "invalid_request_error", P, "quota"),
    ("anthropic", 402, "Payment required", "billing_error", P, "quota"),
    ("anthropic", 400, TOO_LONG, "invalid_request_error", C, "context_length"),
    ("anthropic", 400, "max_tokens: must be >= 1", "invalid_request_error", R, "invalid_request"),
    ("anthropic", 404, "model: claude-nope", "not_found_error", P, "model_not_found"),
    ("anthropic", 403, "no access", "permission_error", P, "auth"),
    ("anthropic", 413, "Request exceeds 32 MB", "request_too_large", R, "invalid_request"),
    # OpenAI branches on error.code.
    ("openai", 429, "You exceeded your current quota", "insufficient_quota", P, "quota"),
    ("openai", 429, "Rate limit reached", "rate_limit_exceeded", T, "rate_limited"),
    ("openai", 400, "Too long.", "context_length_exceeded", C, "context_length"),
    ("openai", 400, OPENAI_TOO_LONG, "invalid_request_error", C, "context_length"),
    ("openai", 400, "request exceeds the available context size", "", C, "context_length"),
    (
        "openai",
        400,
        "Invalid value for 'temperature'",
        "invalid_request_error",
        R,
        "invalid_request",
    ),
    ("openai", 404, "The model `gpt-9` does not exist", "model_not_found", P, "model_not_found"),
    # Ollama: a string error; the status decides, context wording upgrades a 400.
    ("ollama", 404, 'model "llama9" not found, try pulling it first', "", P, "model_not_found"),
    ("ollama", 400, "input length exceeds the context length", "", C, "context_length"),
    ("ollama", 500, "llama runner process has terminated", "", T, "server_error"),
    ("ollama", 429, "you have reached your weekly usage limit, upgrade", "", P, "quota"),
    ("ollama", 429, "too many requests", "", T, "rate_limited"),
    # Gemini branches on error.status and details.
    ("gemini", 400, GEMINI_TOO_LONG, "INVALID_ARGUMENT", C, "context_length"),
    ("gemini", 400, "User location is not supported", "FAILED_PRECONDITION", P, "quota"),
    ("gemini", 429, "Resource exhausted", "RESOURCE_EXHAUSTED", T, "rate_limited"),
    ("gemini", 404, "models/g-9 is not found", "NOT_FOUND", P, "model_not_found"),
    ("gemini", 503, "The model is overloaded.", "UNAVAILABLE", T, "overloaded"),
    # A status word only counts with the HTTP status it belongs to.
    ("gemini", 408, "Failed.", "FAILED_PRECONDITION", T, "timeout"),
    ("gemini", 422, "Failed.", "FAILED_PRECONDITION", R, "invalid_request"),
]


@pytest.mark.parametrize(("kind", "status", "message", "label", "cls", "reason"), DIALECT_CASES)
async def test_dialect_error_bodies(kind, status, message, label, cls, reason):
    provider, _ = make(kind, httpx.Response(status, json=error_body(kind, message, label)))
    with pytest.raises(ProviderError) as info:
        await provider.complete(CompletionRequest("hi"), timeout=5)
    assert type(info.value) is cls
    assert (info.value.status, info.value.reason) == (status, reason)
    assert message[:20] in str(info.value)


SPEND_LIMIT = {
    "type": "error",
    "error": {
        "type": "rate_limit_error",
        "message": "monthly limit",
        "details": {"error_code": "enforced_spend_limit_reached"},
    },
}
GEMINI_BAD_KEY = {
    "error": {
        "code": 400,
        "message": "API key not valid. Please pass a valid API key.",
        "status": "INVALID_ARGUMENT",
        "details": [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}
        ],
    }
}
QUOTA_FAILURE = {
    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
    "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_requests"}],
}
DAILY_QUOTA_FAILURE = {
    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
    "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}],
}
RETRY_INFO = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "22s"}


def gemini_429(*details: dict[str, Any]) -> dict[str, Any]:
    message = "You exceeded your current quota, please check your plan and billing details."
    error = {"code": 429, "message": message, "status": "RESOURCE_EXHAUSTED"}
    return {"error": {**error, "details": list(details)}}


VLLM_TOO_LONG = {"object": "error", "message": "maximum context length is 2048", "code": 400}


@pytest.mark.parametrize(
    ("kind", "status", "body", "cls", "reason"),
    [
        ("anthropic", 429, SPEND_LIMIT, P, "quota"),
        ("gemini", 400, GEMINI_BAD_KEY, P, "auth"),
        ("gemini", 429, gemini_429(QUOTA_FAILURE), P, "quota"),
        ("gemini", 429, gemini_429(DAILY_QUOTA_FAILURE, RETRY_INFO), P, "quota"),
        ("gemini", 429, gemini_429(QUOTA_FAILURE, RETRY_INFO), T, "rate_limited"),
        ("gemini", 429, gemini_429(), T, "rate_limited"),
        ("openai", 400, VLLM_TOO_LONG, C, "context_length"),
    ],
)
async def test_special_error_bodies(kind, status, body, cls, reason):
    provider, _ = make(kind, httpx.Response(status, json=body))
    with pytest.raises(ProviderError) as info:
        await provider.complete(CompletionRequest("hi"), timeout=5)
    assert type(info.value) is cls
    assert (info.value.status, info.value.reason) == (status, reason)


async def test_error_message_is_the_providers_own_trimmed():
    long = "x" * 5000
    provider, _ = make(
        "anthropic",
        httpx.Response(400, json=error_body("anthropic", long, "invalid_request_error")),
    )
    with pytest.raises(InvalidRequest) as info:
        await provider.complete(CompletionRequest("hi"), timeout=5)
    assert 100 < len(info.value.message) <= 300
    assert str(info.value).startswith("my-anthropic: 400 request: xxx")


async def test_non_json_error_body_is_used_as_the_message():
    html = "<html><body><h1>502 Bad Gateway</h1>\n<p>nginx</p></body></html>"
    provider, _ = make("openai", httpx.Response(502, text=html))
    with pytest.raises(TransientError) as info:
        await provider.complete(CompletionRequest("hi"), timeout=5)
    assert "502 Bad Gateway" in info.value.message
    assert "\n" not in info.value.message


async def test_empty_error_body_falls_back_to_the_reason_phrase():
    provider, _ = make("ollama", httpx.Response(503))
    with pytest.raises(TransientError, match="Service Unavailable"):
        await provider.complete(CompletionRequest("hi"), timeout=5)


# --- Retry-After


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({}, None),
        ({"retry-after": "soon"}, None),
    ],
)
async def test_retry_after_is_parsed_from_error_responses(kind, headers, expected):
    body = error_body(kind, "slow down", "rate_limit_error")
    provider, _ = make(kind, httpx.Response(429, json=body, headers=headers))
    with pytest.raises(TransientError) as info:
        await provider.complete(CompletionRequest("hi"), timeout=5)
    assert info.value.retry_after == expected


async def test_retry_after_http_date():
    when = formatdate(time.time() + 120, usegmt=True)
    provider, _ = make("openai", httpx.Response(503, headers={"retry-after": when}, json={}))
    with pytest.raises(TransientError) as info:
        await provider.complete(CompletionRequest("hi"), timeout=5)
    assert 110 <= (info.value.retry_after or 0) <= 121


async def test_retry_after_on_a_stream_error_status():
    provider, _ = make(
        "anthropic",
        httpx.Response(
            529,
            headers={"retry-after": "3"},
            json=error_body("anthropic", "Overloaded", "overloaded_error"),
        ),
    )
    exc, _ = await stream_error(provider)
    assert (type(exc), exc.retry_after, exc.reason) == (TransientError, 3.0, "overloaded")


async def test_gemini_retry_delay_detail_is_used_without_a_header():
    body = {
        "error": {
            "code": 429,
            "message": "quota",
            "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "22s"}],
        }
    }
    provider, _ = make("gemini", httpx.Response(429, json=body))
    with pytest.raises(TransientError) as info:
        await provider.complete(CompletionRequest("hi"), timeout=5)
    assert info.value.retry_after == 22.0
    provider, _ = make("gemini", httpx.Response(429, json=body, headers={"retry-after": "4"}))
    with pytest.raises(TransientError) as info:
        await provider.complete(CompletionRequest("hi"), timeout=5)
    assert info.value.retry_after == 4.0


# --- transport failures, timeouts, cancellation


@pytest.mark.parametrize(
    ("raised", "cls", "reason"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), TransientError, "connect"),
        (httpx.ConnectTimeout("timed out"), TransientError, "connect"),
        (httpx.ReadTimeout("timed out"), TransientError, "first_token_timeout"),  # no head yet
        (httpx.PoolTimeout("timed out"), TransientError, "timeout"),
        (httpx.WriteTimeout("timed out"), TransientError, "timeout"),
        (httpx.RemoteProtocolError("Server disconnected"), TransientError, "connect"),
        (httpx.ReadError("reset by peer"), TransientError, "connect"),
        (
            httpx.UnsupportedProtocol("Request URL has an unsupported protocol"),
            ProviderUnavailable,
            "connect",
        ),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_transport_errors_are_translated(raised, cls, reason, stream):
    provider, _ = make("openai", raised)
    if stream:
        exc, _ = await stream_error(provider)
    else:
        with pytest.raises(ProviderError) as info:
            await provider.complete(CompletionRequest("hi"), timeout=5)
        exc = info.value
    assert type(exc) is cls
    assert exc.reason == reason
    assert exc.__cause__ is None and exc.__suppress_context__
    assert not isinstance(exc, httpx.HTTPError)


async def test_body_cut_short_on_a_plain_completion_is_truncated():
    body = Chunks(b'{"id": "c1", "choi', then=httpx.RemoteProtocolError("incomplete body"))
    provider, _ = make("openai", httpx.Response(200, stream=body))
    with pytest.raises(TransientError) as info:
        await provider.complete(CompletionRequest("hi"), timeout=5)
    assert info.value.reason == "truncated"
    assert body.closed


async def _never(request: httpx.Request) -> httpx.Response:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


@pytest.mark.parametrize("kind", KINDS)
async def test_timeout_bounds_a_call_that_never_answers(kind):
    provider, _ = make(kind, _never)
    with pytest.raises(TransientError) as info:
        await provider.complete(CompletionRequest("hi"), timeout=0.05)
    assert info.value.reason == "timeout"
    exc, _ = await stream_error(provider, timeout=0.05)
    assert exc.reason == "timeout"


@pytest.mark.parametrize("kind", KINDS)
async def test_timeout_bounds_the_whole_stream_and_keeps_partial_text(kind):
    # MockTransport enforces no httpx read timeout: only the adapter's own deadline can end this.
    body = Chunks(stream_body(kind, "Hel", "lo", end=False), then="hang")
    provider, _ = make(kind, stream_response(kind, body))
    exc, got = await stream_error(provider, timeout=0.1)
    assert isinstance(exc, TransientError)
    assert (exc.reason, exc.partial_text) == ("timeout", "Hello")
    assert got == [TextDelta("Hel"), TextDelta("lo")]
    assert body.closed


async def test_http_timeouts_follow_the_clocks_capped_by_the_attempt():
    seen: list[dict[str, float]] = []

    def capture(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200, json=ok_json("openai"))

    provider, _ = make("openai", capture, connect_timeout=2.0, first_token_timeout=3.0)
    await provider.complete(CompletionRequest("hi", max_tokens=50), timeout=9.0)
    await provider.complete(CompletionRequest("hi"), timeout=1.0)
    first = seen[0]
    assert first["connect"] == 2.0
    # The head of a whole answer comes once it is written: 3 s + 50 tokens at 25/s (+ "hi").
    assert first["read"] == pytest.approx(3.0 + 2 / 40_000 + 2.0)
    assert 8.9 < first["write"] <= 9.0 and 8.9 < first["pool"] <= 9.0
    assert all(0.9 < seen[1][phase] <= 1.0 for phase in ("connect", "read", "write", "pool"))


async def test_cancellation_propagates_untouched_and_closes_the_stream():
    body = Chunks(stream_body("anthropic", "Hel", end=False), then="hang")
    provider, _ = make("anthropic", sse_response(body))
    started = asyncio.Event()

    async def consume():
        async for event in provider.stream(CompletionRequest("hi"), timeout=30):
            if isinstance(event, TextDelta):
                started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert body.closed


async def test_cancellation_of_a_completion_propagates_untouched():
    provider, _ = make("openai", _never)
    task = asyncio.create_task(provider.complete(CompletionRequest("hi"), timeout=30))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_consumer_breaking_early_closes_the_response():
    body = Chunks(stream_body("openai", "a", "b", "c"))
    provider, _ = make("openai", sse_response(body))
    stream = provider.stream(CompletionRequest("hi"), timeout=5)
    async for _ in stream:
        break
    await stream.aclose()
    assert body.closed


# --- secrets


@pytest.mark.parametrize("kind", ["anthropic", "openai", "gemini"])
async def test_key_echoed_by_the_server_never_reaches_an_error(kind):
    echoed = f"Incorrect API key provided: {KEY}. You can find your key at ..."
    provider, _ = make(
        kind, httpx.Response(401, json=error_body(kind, echoed, "authentication_error"))
    )
    with pytest.raises(ProviderUnavailable) as info:
        await provider.complete(CompletionRequest("hi"), timeout=5)
    assert "[REDACTED]" in str(info.value)
    assert_clean(info.value)
    exc, _ = await stream_error(provider)
    assert_clean(exc)
    health = await provider.health()
    assert KEY not in (health.error or "") and KEY not in repr(health)


async def test_key_inside_a_transport_error_or_stream_error_is_redacted():
    provider, _ = make("openai", httpx.ConnectError(f"proxy said {KEY}"))
    with pytest.raises(TransientError) as info:
        await provider.complete(CompletionRequest("hi"), timeout=5)
    assert_clean(info.value)
    body = stream_body("anthropic", "x", end=False) + events(
        ("error", {"type": "error", "error": {"type": "api_error", "message": f"key {KEY}"}})
    )
    provider, _ = make("anthropic", sse_response(body))
    exc, _ = await stream_error(provider)
    assert_clean(exc)
    provider, _ = make("gemini", httpx.Response(200, content=f"not json {KEY}".encode()))
    with pytest.raises(TransientError) as info:
        await provider.complete(CompletionRequest("hi"), timeout=5)
    assert_clean(info.value)


async def test_provider_repr_does_not_show_the_key():
    provider, _ = make("anthropic")
    assert KEY not in repr(provider)


# --- health

HEALTH_URLS = {
    "anthropic": "https://api.anthropic.com/v1/models",
    "openai": "https://api.openai.com/v1/models",
    "ollama": "http://localhost:11434/api/tags",
    "gemini": "https://generativelanguage.googleapis.com/v1beta/models",
}


@pytest.mark.parametrize("kind", KINDS)
async def test_health_lists_models_without_spending_tokens(kind):
    provider, rec = make(kind, httpx.Response(200, json={"data": [], "models": []}))
    before = time.time()
    result = await provider.health()
    assert result.ok and result.error is None and result.status == 200
    assert result.provider == f"my-{kind}"
    assert result.latency_ms >= 0
    assert before <= result.checked_at <= time.time()
    (request,) = rec.requests
    assert (request.method, str(request.url)) == ("GET", HEALTH_URLS[kind])
    if kind != "ollama":
        assert any(KEY in value for value in request.headers.values())


@pytest.mark.parametrize(
    ("answer", "error_class", "status"),
    [
        (httpx.Response(401, json={"error": "bad key"}), ErrorClass.PROVIDER, 401),
        (httpx.Response(503, json={}), ErrorClass.TRANSIENT, 503),
        (httpx.ConnectError("refused"), ErrorClass.TRANSIENT, None),
        (httpx.Response(302, headers={"location": "/elsewhere"}), ErrorClass.PROVIDER, 302),
    ],
)
async def test_health_failure_is_reported_not_raised(answer, error_class, status):
    provider, _ = make("ollama", answer)
    result = await provider.health()
    assert not result.ok
    assert (result.error_class, result.status) == (error_class, status)
    # The provider's own words; its name and the class are shown beside it, not repeated.
    assert result.error and not result.error.startswith("my-ollama")
    assert "provider:" not in result.error and "transient:" not in result.error


async def test_health_timeout_is_reported():
    provider, _ = make("gemini", _never)
    result = await provider.health(timeout=0.05)
    assert (result.ok, result.error_class) == (False, ErrorClass.TRANSIENT)
    assert "timed out" in (result.error or "")


@pytest.mark.parametrize("kind", KINDS)
async def test_deep_health_sends_a_one_token_completion(kind):
    provider, rec = make(kind, httpx.Response(200, json=ok_json(kind)))
    result = await provider.health(deep=True)
    assert result.ok
    body = rec.body
    max_tokens = {
        "anthropic": lambda b: b["max_tokens"],
        "openai": lambda b: b["max_completion_tokens"],
        "ollama": lambda b: b["options"]["num_predict"],
        "gemini": lambda b: b["generationConfig"]["maxOutputTokens"],
    }[kind](body)
    assert max_tokens == 1
    assert rec.requests[0].method == "POST"


async def test_deep_health_failure_carries_the_class():
    body = error_body("anthropic", "Overloaded", "overloaded_error")
    provider, _ = make("anthropic", httpx.Response(529, json=body))
    result = await provider.health(deep=True)
    assert (result.ok, result.error_class, result.status) == (False, ErrorClass.TRANSIENT, 529)


# --- construction


@pytest.mark.parametrize("kind", KINDS)
def test_adapters_implement_the_protocol(kind):
    provider, _ = make(kind)
    assert isinstance(provider, Provider)
    assert provider.name == f"my-{kind}"
    assert provider.config.kind == kind


def test_defaults():
    assert DEFAULTS["anthropic"].base_url == "https://api.anthropic.com"
    assert DEFAULTS["anthropic"].api_key_env == "ANTHROPIC_API_KEY"
    assert DEFAULTS["openai"].base_url == "https://api.openai.com"
    assert DEFAULTS["openai"].api_key_env == "OPENAI_API_KEY"
    assert DEFAULTS["ollama"].base_url == "http://localhost:11434"
    assert DEFAULTS["ollama"].api_key_env is None
    assert DEFAULTS["gemini"].base_url == "https://generativelanguage.googleapis.com"
    assert DEFAULTS["gemini"].api_key_env == "GEMINI_API_KEY"


def test_unknown_kind_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown provider kind"):
        create_provider(ProviderConfig("x", "bard", "m"))  # type: ignore[arg-type]


async def test_aclose_closes_only_a_client_the_adapter_made():
    shared = httpx.AsyncClient(transport=httpx.MockTransport(_unused))
    provider = create_provider(ProviderConfig("a", "anthropic", "m"), client=shared, env=ENV)
    await provider.aclose()
    assert not shared.is_closed
    own = create_provider(ProviderConfig("b", "ollama", "m"))
    await own.aclose()
    assert own._client.is_closed
    await shared.aclose()


async def test_make_client_reads_proxies_from_the_env_it_is_given(monkeypatch):
    # The process environment is not consulted when an environment is passed in: a router
    # built with env={} never sends loopback traffic to the user's proxy.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.9:3128")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.9:3128")
    client = make_client(env={})
    try:
        assert client.trust_env is False  # the client reads `env` itself, never os.environ
        assert client._transport._proxy is None  # type: ignore[attr-defined]
        assert client.follow_redirects is False
    finally:
        await client.aclose()


# --- the four clocks (issue 11) -----------------------------------------------------------------
# MockTransport enforces no httpx timeout: these are the adapter's own clocks, on a stock client.


@pytest.mark.parametrize("kind", KINDS)
async def test_a_stream_without_a_first_token_fails_at_the_first_token_limit(kind):
    # The head and (Anthropic) message_start and ping arrive; no token ever does.
    head = stream_body(kind, end=False)
    provider, _ = make(
        kind,
        stream_response(kind, Chunks(head, then="hang")),
        first_token_timeout=0.1,
        idle_timeout=0.05,
    )
    exc, got = await stream_error(provider, timeout=5)
    assert (type(exc), exc.reason, got) == (TransientError, "first_token_timeout", [])
    assert "no first token after 0.1s" in exc.message


@pytest.mark.parametrize("kind", KINDS)
async def test_a_stream_silent_after_its_first_tokens_stalls(kind):
    body = Chunks(stream_body(kind, "Hel", "lo", end=False), then="hang")
    provider, _ = make(kind, stream_response(kind, body), first_token_timeout=5, idle_timeout=0.1)
    exc, got = await stream_error(provider, timeout=5)
    assert (type(exc), exc.reason, exc.partial_text) == (TransientError, "stall", "Hello")
    assert "stream stalled: no event for 0.1s" in exc.message
    assert got == [TextDelta("Hel"), TextDelta("lo")]
    assert body.closed


async def test_no_head_is_a_first_token_timeout_and_the_budget_caps_it():
    provider, _ = make("openai", _never, first_token_timeout=0.05)
    exc, _ = await stream_error(provider, timeout=5)
    assert exc.reason == "first_token_timeout"
    # A whole answer's head waits for the whole answer: 0.05 s + 1 token at 25/s.
    with pytest.raises(TransientError) as info:
        await provider.complete(CompletionRequest("hi", max_tokens=1), timeout=5)
    assert (info.value.reason, info.value.message) == (
        "first_token_timeout",
        "no first token after 0.1s",
    )
    # The attempt budget, shorter than every other clock, is the one that runs out.
    slow, _ = make("openai", _never, first_token_timeout=10)
    with pytest.raises(TransientError) as info:
        await slow.complete(CompletionRequest("hi"), timeout=0.05)
    assert info.value.reason == "timeout"
    exc, _ = await stream_error(slow, timeout=0.05)
    assert exc.reason == "timeout"


def test_first_token_limit_grows_with_the_prompt_and_for_a_whole_answer_the_output():
    from failover_cli.providers._base import first_token_limit

    config = ProviderConfig("p", "openai", "m", first_token_timeout=10)
    big = CompletionRequest("x" * 400_000, max_tokens=500, system="y" * 40_000)
    assert first_token_limit(config, big, stream=True) == pytest.approx(10 + 11)
    assert first_token_limit(config, big, stream=False) == pytest.approx(10 + 11 + 20)
    assert first_token_limit(config, CompletionRequest(""), stream=True) == 10


# --- a semantic finish without the optional end marker ------------------------------------------


def _finished_without_marker(kind: str) -> str:
    if kind == "anthropic":
        return events(*anthropic_stream("Hi")[:-1])  # no message_stop
    if kind == "openai":
        return events(*openai_stream("Hi")[:-1])  # no [DONE]
    if kind == "ollama":
        return ollama_stream("Hi").rstrip("\n")  # the done line without its newline
    return events(*gemini_stream("Hi")).removesuffix("\n\n") + "\n"  # no blank line


@pytest.mark.parametrize("kind", KINDS)
async def test_a_finished_stream_ending_without_its_marker_is_complete(kind):
    provider, _ = make(kind, stream_response(kind, _finished_without_marker(kind)))
    end = StreamEnd(STREAM_MODELS[kind], Usage(11, 7), STREAM_STOPS[kind], finish_reason="stop")
    assert await collect(provider) == [TextDelta("Hi"), end]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_finished_stream_cut_at_the_transport_is_still_truncated(kind):
    cut = httpx.RemoteProtocolError("peer closed connection without sending complete message")
    body = Chunks(_finished_without_marker(kind), then=cut)
    provider, _ = make(kind, stream_response(kind, body))
    exc, _ = await stream_error(provider)
    assert (exc.reason, exc.partial_text) == ("truncated", "Hi")


async def test_anthropic_stream_ending_before_its_message_delta_is_truncated():
    pairs = anthropic_stream("Hi")[:-2]  # content_block_stop, then nothing
    provider, _ = make("anthropic", sse_response(events(*pairs)))
    exc, _ = await stream_error(provider)
    assert (exc.reason, exc.partial_text) == ("truncated", "Hi")


# --- continuation bodies, golden ----------------------------------------------------------------

PARTIAL = "The answer is "
CONTINUE = (
    "Your previous answer was cut off. Continue it exactly where it stops, without repeating "
    "any of it and without any preamble."
)
CONTINUATION_GOLDEN: dict[tuple[str, str], dict[str, Any]] = {
    ("anthropic", "prefill"): {
        "model": "m-1",
        "max_tokens": 20,
        "messages": [
            {"role": "user", "content": "Q?"},
            {"role": "assistant", "content": "The answer is"},  # no trailing whitespace
        ],
        "stream": False,
        "system": "S.",
    },
    ("anthropic", "instruct"): {
        "model": "m-1",
        "max_tokens": 20,
        "messages": [
            {"role": "user", "content": "Q?"},
            {"role": "assistant", "content": PARTIAL},
            {"role": "user", "content": CONTINUE},
        ],
        "stream": False,
        "system": "S.",
    },
    ("openai", "prefill"): {
        "model": "m-1",
        "messages": [
            {"role": "system", "content": "S."},
            {"role": "user", "content": "Q?"},
            {"role": "assistant", "content": PARTIAL},
        ],
        "max_completion_tokens": 20,
        "stream": False,
    },
    ("openai", "instruct"): {
        "model": "m-1",
        "messages": [
            {"role": "system", "content": "S."},
            {"role": "user", "content": "Q?"},
            {"role": "assistant", "content": PARTIAL},
            {"role": "user", "content": CONTINUE},
        ],
        "max_completion_tokens": 20,
        "stream": False,
    },
    ("ollama", "prefill"): {
        "model": "m-1",
        "messages": [
            {"role": "system", "content": "S."},
            {"role": "user", "content": "Q?"},
            {"role": "assistant", "content": PARTIAL},
        ],
        "stream": False,
        "options": {"num_predict": 20},
    },
    ("ollama", "instruct"): {
        "model": "m-1",
        "messages": [
            {"role": "system", "content": "S."},
            {"role": "user", "content": "Q?"},
            {"role": "assistant", "content": PARTIAL},
            {"role": "user", "content": CONTINUE},
        ],
        "stream": False,
        "options": {"num_predict": 20},
    },
    ("gemini", "prefill"): {
        "contents": [
            {"role": "user", "parts": [{"text": "Q?"}]},
            {"role": "model", "parts": [{"text": PARTIAL}]},
        ],
        "generationConfig": {"maxOutputTokens": 20},
        "systemInstruction": {"parts": [{"text": "S."}]},
    },
    ("gemini", "instruct"): {
        "contents": [
            {"role": "user", "parts": [{"text": "Q?"}]},
            {"role": "model", "parts": [{"text": PARTIAL}]},
            {"role": "user", "parts": [{"text": CONTINUE}]},
        ],
        "generationConfig": {"maxOutputTokens": 20},
        "systemInstruction": {"parts": [{"text": "S."}]},
    },
}


@pytest.mark.parametrize(("kind", "strategy"), sorted(CONTINUATION_GOLDEN))
async def test_continuation_body_is_golden(kind, strategy):
    provider, rec = make(kind, httpx.Response(200, json=ok_json(kind)))
    request = CompletionRequest(
        "Q?", max_tokens=20, system="S.", assistant_prefix=PARTIAL, continuation=strategy
    )
    await provider.complete(request, timeout=5)
    assert rec.body == CONTINUATION_GOLDEN[kind, strategy]
    assert_valid(kind, rec.body)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("strategy", ["prefill", "instruct"])
async def test_a_blank_partial_answer_is_not_sent(kind, strategy):
    provider, rec = make(kind, httpx.Response(200, json=ok_json(kind)))
    request = CompletionRequest("Q?", assistant_prefix=" \n", continuation=strategy)
    await provider.complete(request, timeout=5)
    turns = rec.body["contents"] if kind == "gemini" else rec.body["messages"]
    assert len(turns) == 1


@pytest.mark.parametrize(
    ("base_url", "field"),
    [
        ("https://api.openai.com", "max_completion_tokens"),
        ("https://api.openai.com/v1", "max_completion_tokens"),
        ("http://127.0.0.1:8000", "max_tokens"),
        ("https://openrouter.ai/api", "max_tokens"),
        ("https://my.openai.azure.com/openai", "max_tokens"),
    ],
)
async def test_openai_token_limit_field_follows_the_host(base_url, field):
    provider, rec = make("openai", httpx.Response(200, json=ok_json("openai")), base_url=base_url)
    await provider.complete(CompletionRequest("hi", max_tokens=33), timeout=5)
    other = {"max_tokens", "max_completion_tokens"} - {field}
    assert rec.body[field] == 33 and not other & rec.body.keys()


# --- extra headers ------------------------------------------------------------------------------


async def test_configured_headers_are_sent_and_env_references_read_at_request_time():
    env = {"AZURE_OPENAI_API_KEY": " azure-secret-9d8c7b6a\n"}
    provider, rec = make(
        "openai",
        httpx.Response(200, json=ok_json("openai")),
        sse_response(stream_body("openai", "x")),
        env=env,
        base_url="https://my.openai.azure.com/openai",
        headers=(("api-key", "${AZURE_OPENAI_API_KEY}"), ("HTTP-Referer", "https://x.example")),
    )
    await provider.complete(CompletionRequest("hi"), timeout=5)
    sent = rec.requests[-1].headers
    assert sent["api-key"] == "azure-secret-9d8c7b6a"
    assert sent["http-referer"] == "https://x.example"
    assert "authorization" not in sent  # no OPENAI_API_KEY: none needed off api.openai.com
    env["AZURE_OPENAI_API_KEY"] = "azure-rotated-1111"
    async for _ in provider.stream(CompletionRequest("hi"), timeout=5):
        pass
    assert rec.requests[-1].headers["api-key"] == "azure-rotated-1111"


async def test_configured_header_overrides_the_dialects_own():
    provider, rec = make(
        "anthropic",
        httpx.Response(200, json=ok_json("anthropic")),
        headers=(("Anthropic-Version", "2023-06-01"), ("anthropic-beta", "x-1")),
    )
    await provider.complete(CompletionRequest("hi"), timeout=5)
    sent = rec.requests[-1].headers
    assert sent.get_list("anthropic-version") == ["2023-06-01"]
    assert sent["anthropic-beta"] == "x-1"


async def test_a_header_secret_echoed_by_the_server_is_redacted():
    secret = "azure-secret-9d8c7b6a"
    body = {"error": {"message": f"key {secret} is not valid here", "code": "401"}}
    provider, _ = make(
        "openai",
        httpx.Response(401, json=body),
        env={"AZ": secret},
        base_url="https://my.openai.azure.com/openai",
        headers=(("api-key", "${AZ}"),),
    )
    with pytest.raises(ProviderUnavailable) as info:
        await provider.complete(CompletionRequest("hi"), timeout=5)
    assert secret not in str(info.value) and "[REDACTED]" in str(info.value)


async def test_a_header_variable_that_is_unset_skips_the_provider_before_any_request():
    provider, _ = make(
        "openai",
        env={},
        base_url="http://127.0.0.1:9",
        headers=(("api-key", "${AZURE_OPENAI_API_KEY}"),),
    )
    with pytest.raises(ProviderUnavailable) as info:
        await provider.complete(CompletionRequest("hi"), timeout=5)
    assert info.value.reason == "no_key"
    assert "AZURE_OPENAI_API_KEY" in str(info.value)
    result = await provider.health()
    assert not result.ok and "AZURE_OPENAI_API_KEY" in (result.error or "")


# --- rate limits on the wire's headers ----------------------------------------------------------

OPENAI_LIMITS = {
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-reset-requests": "6m0s",
    "x-ratelimit-remaining-tokens": "1200",
    "x-ratelimit-reset-tokens": "1s",
}


async def test_ratelimit_is_attached_to_a_completion_and_a_stream_end():
    before = time.time()
    provider, _ = make("openai", httpx.Response(200, json=ok_json("openai"), headers=OPENAI_LIMITS))
    result = await provider.complete(CompletionRequest("hi"), timeout=5)
    limit = result.ratelimit
    assert limit is not None and (limit.remaining_requests, limit.remaining_tokens) == (0, 1200)
    assert before + 360 <= (limit.requests_reset_at or 0) <= time.time() + 360
    response = httpx.Response(
        200,
        headers={"content-type": "text/event-stream", **OPENAI_LIMITS},
        content=stream_body("openai", "x").encode(),
    )
    provider, _ = make("openai", response)
    end = (await collect(provider))[-1]
    assert isinstance(end, StreamEnd) and end.ratelimit == limit.__class__(
        0, 1200, end.ratelimit.requests_reset_at, end.ratelimit.tokens_reset_at
    )
    plain, _ = make("openai", httpx.Response(200, json=ok_json("openai")))
    assert (await plain.complete(CompletionRequest("hi"), timeout=5)).ratelimit is None


async def test_a_429_without_retry_after_waits_until_the_reported_reset():
    body = error_body("openai", "Rate limit reached for requests", "rate_limit_exceeded")
    provider, _ = make("openai", httpx.Response(429, json=body, headers=OPENAI_LIMITS))
    with pytest.raises(TransientError) as info:
        await provider.complete(CompletionRequest("hi"), timeout=5)
    exc = info.value
    assert exc.reason == "rate_limited"
    assert exc.ratelimit is not None and exc.ratelimit.remaining_requests == 0
    assert 359 <= (exc.retry_after or 0) <= 360  # the exhausted budget's reset
    with_header = {**OPENAI_LIMITS, "retry-after": "2"}
    provider, _ = make("openai", httpx.Response(429, json=body, headers=with_header))
    exc, _ = await stream_error(provider)
    assert exc.retry_after == 2.0 and exc.ratelimit is not None


async def test_anthropic_429_waits_until_its_rfc3339_reset():
    reset = time.time() + 42
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(reset))
    headers = {
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": stamp,
    }
    body = error_body("anthropic", "Number of requests exceeded", "rate_limit_error")
    provider, _ = make("anthropic", httpx.Response(429, json=body, headers=headers))
    with pytest.raises(TransientError) as info:
        await provider.complete(CompletionRequest("hi"), timeout=5)
    assert 40 <= (info.value.retry_after or 0) <= 42
    # Only a 429 borrows the reset: a 503 without Retry-After leaves the wait to the router.
    provider, _ = make("anthropic", httpx.Response(503, json=body, headers=headers))
    with pytest.raises(TransientError) as info:
        await provider.complete(CompletionRequest("hi"), timeout=5)
    assert info.value.retry_after is None and info.value.ratelimit is not None


def test_only_the_adapters_a_chain_uses_are_imported() -> None:
    code = (
        "import sys\n"
        "from failover_cli.providers import create_provider\n"
        "from failover_cli.types import ProviderConfig\n"
        "create_provider(ProviderConfig('gpt', 'openai', 'm'))\n"
        "print(sorted(m for m in sys.modules if m.startswith('failover_cli.providers.')"
        " and not m.split('.')[-1].startswith('_')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['failover_cli.providers.openai']"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_a_request_that_cannot_be_json_is_the_requests_fault(kind, stream):
    """A prompt holding a lone surrogate cannot be encoded for any API: InvalidRequest (the
    same everywhere, counted against no provider), never a transient failure of this one;
    nothing is sent."""
    provider, _ = make(kind)  # a request sent would fail the test (no answer is scripted)
    request = CompletionRequest("hi \ud800", max_tokens=5)
    with pytest.raises(InvalidRequest) as info:
        if stream:
            await collect(provider, request)
        else:
            await provider.complete(request, timeout=5)
    assert "lone surrogate" in info.value.message and "\ud800" not in info.value.message
