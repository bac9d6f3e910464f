"""Golden fixtures: each pins one translation of one wire format, both ways.

A fixture ``tests/golden/<kind>/<case>.json`` holds:

* ``provider``: ProviderConfig fields (``kind`` and ``model`` at least);
* ``request``: :func:`failover_cli.request.build_request` arguments (OpenAI-shaped
  ``messages``, ``tools``, ``tool_choice``, ``response_format``, ``max_tokens``, ...), plus
  optionally ``assistant_prefix``/``continuation`` and ``extra`` (body fields);
* ``stream``: whether the call is streamed;
* ``body``: the exact JSON body the adapter must send (checked against the official OpenAPI
  spec in ``tests/specs/`` where one covers the API);
* ``response`` (a JSON body) or ``response_stream`` (the raw SSE / NDJSON text): what the
  provider answers;
* ``expect``: what the adapter makes of it. Not streamed: ``text``, ``tool_calls`` (``id``,
  ``name``, ``arguments`` as JSON text), ``finish_reason``, ``stop_reason``, ``usage``. Streamed:
  ``events``, a list of ``{"text": ...}``, ``{"tool_call": {"index", "id", "name",
  "arguments"}}`` and finally ``{"end": {"finish_reason", "stop_reason", "usage"}}``.

``newer_than_spec`` (``{"fields": [...], "source": ...}``) names fields the official SDK has
but the vendored OpenAPI spec predates; spec errors about them are ignored.

The HTTP exchange goes through ``httpx.MockTransport``: these tests pin translation; the
adapters' HTTP behaviour is tested against the loopback simulators elsewhere.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from failover_cli.providers import create_provider
from failover_cli.request import build_request
from failover_cli.types import (
    Completion,
    CompletionRequest,
    ProviderConfig,
    StreamEnd,
    TextDelta,
    ToolCallDelta,
    Usage,
)

GOLDEN = Path(__file__).parent / "golden"
SPECS = Path(__file__).parent / "specs"
SPEC_OF = {
    "anthropic": ("anthropic-messages.openapi.json", "/v1/messages"),
    "openai": ("openai-chat-completions.openapi.json", "/v1/chat/completions"),
    "ollama": ("ollama-chat.openapi.json", "/api/chat"),
}
CASES = sorted(GOLDEN.glob("*/*.json"))


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def request_of(spec: dict[str, Any]) -> CompletionRequest:
    spec = dict(spec)
    prefix = spec.pop("assistant_prefix", None)
    continuation = spec.pop("continuation", "prefill")
    extra = spec.pop("extra", None)
    request = build_request(**spec)
    return replace(request, assistant_prefix=prefix, continuation=continuation, extra=extra)


def usage_dict(usage: Usage) -> dict[str, int]:
    return usage.to_dict()


def completion_dict(c: Completion) -> dict[str, Any]:
    return {
        "text": c.text,
        "tool_calls": [
            {"id": t.id, "name": t.name, "arguments": t.arguments} for t in c.tool_calls
        ],
        "finish_reason": c.finish_reason,
        "stop_reason": c.stop_reason,
        "usage": usage_dict(c.usage),
        **({"stop_sequence": c.stop_sequence} if c.stop_sequence is not None else {}),
        **({"refused": True} if c.refused else {}),
    }


def event_dict(event: Any) -> dict[str, Any]:
    if isinstance(event, TextDelta):
        return {"text": event.text, "refusal": True} if event.refusal else {"text": event.text}
    if isinstance(event, ToolCallDelta):
        return {
            "tool_call": {
                "index": event.index,
                "id": event.id,
                "name": event.name,
                "arguments": event.arguments,
            }
        }
    assert isinstance(event, StreamEnd)
    return {
        "end": {
            "finish_reason": event.finish_reason,
            "stop_reason": event.stop_reason,
            "usage": usage_dict(event.usage),
            **({"stop_sequence": event.stop_sequence} if event.stop_sequence is not None else {}),
        }
    }


def _schema_validator(kind: str) -> Draft202012Validator | None:
    if kind not in SPEC_OF:
        return None
    file, path = SPEC_OF[kind]
    doc = json.loads((SPECS / file).read_text())
    ref = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return Draft202012Validator({**ref, "components": doc["components"]})


def merge_stream_text(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive text deltas joined: fixtures pin the text, not how it was cut."""
    out: list[dict[str, Any]] = []
    for e in events:
        if "text" in e and out and "text" in out[-1] and e.keys() == out[-1].keys():
            out[-1] = {**e, "text": out[-1]["text"] + e["text"]}
        else:
            out.append(e)
    return out


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.stem}" for p in CASES])
async def test_golden(path: Path) -> None:
    case = load(path)
    config = ProviderConfig(name="p", **case["provider"])
    sent: list[dict[str, Any]] = []
    streamed = bool(case.get("stream"))

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        if streamed:
            kind = "application/x-ndjson" if config.kind == "ollama" else "text/event-stream"
            return httpx.Response(
                200, headers={"content-type": kind}, content=case["response_stream"].encode()
            )
        return httpx.Response(200, json=case["response"])

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    provider = create_provider(config, client, env={"KEY": "k", **_key_env(config)})
    request = request_of(case["request"])
    try:
        if streamed:
            events = [event_dict(e) async for e in provider.stream(request, timeout=5)]
            got: Any = merge_stream_text(events)
            want = merge_stream_text(case["expect"]["events"])
        else:
            got = completion_dict(await provider.complete(request, timeout=5))
            want = case["expect"]
    finally:
        await client.aclose()
    assert sent[0] == case["body"]
    assert got == want
    validator = _schema_validator(config.kind)
    if validator is not None:
        # A fixture may name fields newer than the vendored spec (say, Anthropic's
        # output_config, from SDK 2.16's output_config_param.py): errors mentioning them are
        # the spec's age, not the body's fault; everything else must validate.
        exempt = case.get("newer_than_spec", {}).get("fields", [])
        errors = [
            f"{'/'.join(map(str, e.path))}: {e.message}"
            for e in validator.iter_errors(sent[0])
            if not any(f in e.message or f in "/".join(map(str, e.path)) for f in exempt)
        ]
        assert not errors, errors


def _key_env(config: ProviderConfig) -> dict[str, str]:
    from failover_cli.providers import DEFAULTS

    env = DEFAULTS[config.kind].api_key_env
    return {env: "test-key"} if env else {}


def test_every_wire_format_pins_every_translation() -> None:
    """Each wire format has a text, a tool, an image, a JSON-schema and a streamed case."""
    for kind in ("anthropic", "openai", "ollama", "gemini"):
        names = {p.stem for p in (GOLDEN / kind).glob("*.json")}
        for prefix in ("text", "tools", "image", "json_schema", "stream_text", "stream_tools"):
            assert any(n.startswith(prefix) for n in names), f"{kind}: no {prefix}* fixture"
