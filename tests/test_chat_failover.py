"""The same rich request, failed over from Anthropic to OpenAI to Ollama (and Gemini), gives
the caller the same ``result.message`` every time: a text answer, a tool call, an image
question and a JSON-schema answer, over real HTTP against the loopback simulators."""

from __future__ import annotations

import json
from typing import Any

import pytest

from failover_cli.config import Config
from failover_cli.router import FailoverRouter
from failover_cli.sim import Behavior, Simulator
from failover_cli.types import ProviderConfig, StreamDone

KEY = "sk-chat-failover"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
PNG = (  # a 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
CHAIN = [
    ("claude", "anthropic", "claude-sonnet-5-5"),
    ("gpt", "openai", "gpt-4o-mini"),
    ("llama", "ollama", "llava:13b"),
    ("gemini", "gemini", "gemini-3-flash"),
]

CASES: dict[str, tuple[dict[str, Any], Behavior]] = {
    "text": (
        {"messages": [{"role": "user", "content": "Say it."}]},
        Behavior(text="The same answer."),
    ),
    "tool_call": (
        {
            "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": [WEATHER],
        },
        Behavior(tool_call=("get_weather", {"city": "Paris"})),
    ),
    "image": (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    ],
                }
            ]
        },
        Behavior(text="A single pixel."),
    ),
    "json_schema": (
        {
            "messages": [{"role": "user", "content": "Who?"}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "person", "schema": PERSON},
            },
        },
        Behavior(json_text='{"name": "Ada", "age": 36}'),
    ),
}


@pytest.fixture(scope="module")
def sims():
    started = {
        name: Simulator(kind, Behavior(), api_key=None if kind == "ollama" else KEY).start()
        for name, kind, _ in CHAIN
    }  # type: ignore[arg-type]
    yield started
    for s in started.values():
        s.stop()


def router_over(sims: dict[str, Simulator]) -> FailoverRouter:
    providers = tuple(
        ProviderConfig(
            name=name,
            kind=kind,  # type: ignore[arg-type]
            model=model,
            base_url=sims[name].base_url,
            api_key_env=None if kind == "ollama" else "CHAT_KEY",
            timeout=10,
        )
        for name, kind, model in CHAIN
    )
    return FailoverRouter(
        Config(providers=providers), env={"CHAT_KEY": KEY}, background_probes=False
    )


def comparable(message: dict[str, Any]) -> dict[str, Any]:
    """The message with what legitimately differs per provider made equal: call ids (each
    API mints its own) and the formatting of JSON text."""
    out = dict(message)
    if out.get("tool_calls"):
        out["tool_calls"] = [
            {
                **c,
                "id": "<id>",
                "function": {**c["function"], "arguments": json.loads(c["function"]["arguments"])},
            }
            for c in out["tool_calls"]
        ]
    return out


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "stream"])
async def test_the_answer_has_one_shape_whoever_gives_it(sims, case, streamed):
    kwargs, behavior = CASES[case]
    seen = []
    for failing in range(len(CHAIN)):
        for i, (name, _, _) in enumerate(CHAIN):
            sims[name].behavior = behavior if i >= failing else Behavior(fault="auth")
        router = router_over(sims)
        try:
            if streamed:
                events = [e async for e in router.stream(**kwargs).events()]
                assert isinstance(events[-1], StreamDone)
                result = events[-1].result
            else:
                result = await router.route(**kwargs)
        finally:
            await router.aclose()
        assert result.provider == CHAIN[failing][0]
        if case == "json_schema":
            assert json.loads(result.text) == {"name": "Ada", "age": 36}
            message = {**result.message, "content": json.loads(result.message["content"])}
        else:
            message = comparable(result.message)
        seen.append((result.finish_reason, message))
    assert all(s == seen[0] for s in seen), seen
    finish, message = seen[0]
    assert finish == ("tool_calls" if case == "tool_call" else "stop")
    assert message["role"] == "assistant"
