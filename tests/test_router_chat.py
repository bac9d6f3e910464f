"""Rich requests through the router: messages, tools, images, structured output, capability
skips, per-provider extra fields and models, tool calls in streams (never continued mid-call).
Runs on failover_cli.testing's fake providers and virtual clock: the public testing mode."""

from __future__ import annotations

import json

import pytest

from failover_cli.errors import AllProvidersFailed, ConfigError
from failover_cli.testing import FakeProvider, Reply, VirtualClock, down, fake_router, outage
from failover_cli.types import (
    CapabilityOverrides,
    ProviderSkipped,
    StreamDone,
    StreamSwitched,
    TextDelta,
    ToolCallDelta,
)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


async def routed(clock: VirtualClock, router, **kwargs):
    """``router.route(**kwargs)`` with virtual time jumped over every retry's backoff."""
    return await clock.run(router.route(**kwargs))


async def streamed(clock: VirtualClock, router, **kwargs) -> list:
    async def collect() -> list:
        return [e async for e in router.stream(**kwargs).events()]

    return await clock.run(collect())


async def test_messages_and_tools_reach_the_provider_typed(clock):
    gpt = FakeProvider("gpt", [Reply(tool_calls=[("get_weather", {"city": "Paris"})])])
    router = fake_router(gpt, clock=clock)
    result = await routed(
        clock,
        router,
        messages=[
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": [{"type": "text", "text": "Weather?"}, IMAGE]},
        ],
        tools=[WEATHER],
        tool_choice="auto",
        max_tokens=50,
        stop="\n\n",
    )
    sent = gpt.requests[0]
    assert [m.role for m in sent.messages] == ["system", "user"]
    assert sent.messages[1].images[0].media_type == "image/png"
    assert sent.tools[0].name == "get_weather"
    assert sent.stop == ("\n\n",)
    assert result.finish_reason == "tool_calls"
    assert result.tool_calls == [
        {
            "id": "call_fake0",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        }
    ]
    assert result.message == {"role": "assistant", "content": None, "tool_calls": result.tool_calls}


async def test_bad_messages_raise_value_error_naming_the_field(clock):
    router = fake_router(FakeProvider("gpt"), clock=clock)
    with pytest.raises(ValueError, match=r"messages\[1\]\.role"):
        await router.route(messages=[{"role": "user", "content": "a"}, {"role": "robot"}])
    with pytest.raises(ValueError, match=r"messages\[0\]\.tool_call_id"):
        await router.route(messages=[{"role": "tool", "tool_call_id": "x", "content": "1"}])
    with pytest.raises(ValueError, match="tool_choice"):
        router.stream(messages=[{"role": "user", "content": "a"}], tool_choice="required")
    forced = {"type": "function", "function": {"name": "nope"}}
    with pytest.raises(ValueError, match="tool_choice: 'nope' is not one of the tools"):
        router.stream(prompt="a", tools=[WEATHER], tool_choice=forced)


async def test_a_provider_without_a_needed_capability_is_skipped_with_the_reason(clock):
    llama = FakeProvider("llama", kind="ollama", model="llama3.2")  # reads no images
    gpt = FakeProvider("gpt", [Reply("a cat")])
    seen: list[object] = []
    router = fake_router(llama, gpt, clock=clock, listeners=[seen.append])
    result = await routed(clock, router, messages=[{"role": "user", "content": [IMAGE]}])
    assert result.provider == "gpt" and llama.calls == 0
    skip = result.attempts[0]
    assert (skip.provider, skip.outcome, skip.reason) == ("llama", "skipped", "unsupported")
    assert "takes no images" in skip.message
    assert any(isinstance(e, ProviderSkipped) and e.provider == "llama" for e in seen)


async def test_every_provider_unfit_says_so(clock):
    llama = FakeProvider("llama", kind="ollama", model="llama3.2")
    router = fake_router(llama, clock=clock)
    with pytest.raises(AllProvidersFailed, match=r"no provider can serve this request.*images"):
        await router.route(messages=[{"role": "user", "content": [IMAGE]}])


async def test_config_overrides_the_capability_table(clock):
    gpt = FakeProvider("gpt")
    gpt.config = gpt.config.__class__(
        "gpt", "openai", "gpt-x", capabilities=CapabilityOverrides(tools=False)
    )
    backup = FakeProvider("backup", [Reply(tool_calls=[("get_weather", {})])])
    router = fake_router(gpt, backup, clock=clock)
    result = await routed(clock, router, prompt="hi", tools=[WEATHER])
    assert result.provider == "backup" and gpt.calls == 0


async def test_plain_prompts_are_never_checked_for_capabilities(clock):
    llama = FakeProvider("llama", kind="ollama", model="llama3.2")
    router = fake_router(llama, clock=clock)
    assert (await router.route(prompt="hi")).provider == "llama"


async def test_extra_fields_go_to_the_provider_they_name(clock):
    claude = FakeProvider("claude", [Reply(error=down())], kind="anthropic")
    gpt = FakeProvider("gpt")
    router = fake_router(claude, gpt, clock=clock)
    await routed(
        clock,
        router,
        prompt="hi",
        extra={
            "anthropic": {"metadata": {"user_id": "u1"}},
            "gpt": {"seed": 7},
            "openai": {"n": 1},
        },
    )
    assert claude.requests[0].extra == {"metadata": {"user_id": "u1"}}
    assert gpt.requests[0].extra == {"n": 1, "seed": 7}  # by name over by kind


async def test_extra_must_map_names_to_objects(clock):
    router = fake_router(FakeProvider("gpt"), clock=clock)
    with pytest.raises(ValueError, match="extra"):
        await router.route(prompt="hi", extra={"openai": 3})  # type: ignore[dict-item]


async def test_models_override_the_configured_model_for_one_call(clock):
    gpt = FakeProvider("gpt")
    router = fake_router(gpt, clock=clock)
    result = await routed(clock, router, prompt="hi", models={"gpt": "gpt-5.4"})
    assert gpt.requests[0].model == "gpt-5.4" and result.model == "gpt-5.4"
    with pytest.raises(ValueError, match="no provider named nope"):
        await router.route(prompt="hi", models={"nope": "m"})


async def test_stream_yields_typed_tool_call_deltas_and_a_final_event(clock):
    gpt = FakeProvider("gpt", [Reply(tool_calls=[("get_weather", {"city": "Oslo"})])])
    router = fake_router(gpt, clock=clock)
    events = await streamed(clock, router, prompt="hi", tools=[WEATHER])
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert deltas[0].id == "call_fake0" and deltas[0].name == "get_weather"
    assert json.loads("".join(d.arguments for d in deltas)) == {"city": "Oslo"}
    done = events[-1]
    assert isinstance(done, StreamDone)
    assert done.finish_reason == "tool_calls"
    assert done.result.calls[0].parsed_arguments() == {"city": "Oslo"}


async def test_iterating_a_tool_stream_for_text_still_works(clock):
    gpt = FakeProvider("gpt", [Reply("Let me check.", tool_calls=[("get_weather", {})])])
    router = fake_router(gpt, clock=clock)
    stream = router.stream(prompt="hi", tools=[WEATHER])
    chunks = [c async for c in stream]
    assert "".join(chunks) == "Let me check."
    assert stream.result is not None and stream.result.tool_calls[0]["function"]["name"] == (
        "get_weather"
    )


async def test_a_stream_broken_inside_a_tool_call_is_restarted_not_continued(clock):
    broken = Reply(tool_calls=[("get_weather", {"city": "Rome"})], error=outage(), fail_after=0)
    claude = FakeProvider("claude", [broken], kind="anthropic")
    gpt = FakeProvider("gpt", [Reply(tool_calls=[("get_weather", {"city": "Rome"})])])
    router = fake_router(claude, gpt, clock=clock)
    events = await streamed(clock, router, prompt="hi", tools=[WEATHER])
    switch = next(e for e in events if isinstance(e, StreamSwitched))
    assert (switch.old, switch.new, switch.strategy, switch.kept) == ("claude", "gpt", "restart", 0)
    assert gpt.requests[0].assistant_prefix is None  # nothing to continue from
    done = events[-1]
    assert isinstance(done, StreamDone)
    assert [c.parsed_arguments() for c in done.result.calls] == [{"city": "Rome"}]
    assert done.result.provider == "gpt"


async def test_a_text_stream_broken_mid_answer_is_still_continued(clock):
    claude = FakeProvider(
        "claude", [Reply("one two three four", error=outage(), fail_after=2)], kind="ollama"
    )
    gpt = FakeProvider("gpt", [Reply("three four")])
    router = fake_router(claude, gpt, clock=clock)
    events = await streamed(clock, router, prompt="count")
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == "one twothree four"
    assert gpt.requests[0].assistant_prefix == "one two"


async def test_same_message_shape_whichever_provider_answers(clock):
    """The caller gets one shape, whoever answers after fail-overs."""
    shapes = []
    for failing in ((), ("claude",), ("claude", "gpt")):
        claude = FakeProvider("claude", kind="anthropic", model="claude-sonnet-5-5")
        gpt = FakeProvider("gpt")
        llama = FakeProvider("llama", kind="ollama")
        for p in (claude, gpt, llama):
            p.script = [Reply(error=outage())] * 3 if p.name in failing else []
            p.default = Reply(tool_calls=[("get_weather", {"city": "Lima"})])
        router = fake_router(claude, gpt, llama, clock=clock)
        result = await routed(clock, router, prompt="weather", tools=[WEATHER])
        message = result.message
        message["tool_calls"][0]["id"] = "<id>"
        shapes.append((result.finish_reason, message))
    assert shapes[0] == shapes[1] == shapes[2]


async def test_the_readme_testing_example_holds():
    clock = VirtualClock()
    claude = FakeProvider("claude", [Reply(error=outage())] * 3, kind="anthropic")
    gpt = FakeProvider("gpt", [Reply(tool_calls=[("get_weather", {"city": "Paris"})])])
    router = fake_router(claude, gpt, clock=clock)
    result = await clock.run(router.route(prompt="Weather?", tools=[WEATHER]))
    assert result.provider == "gpt" and claude.calls == 3
    assert gpt.requests[0].tools[0].name == "get_weather"
    assert clock.time() > 1_800_000_000.0  # the backoff ran on virtual time


def test_cached_input_is_priced_at_its_own_rate():
    from failover_cli.types import Cost, Usage

    usage = Usage(input_tokens=1_000_000, output_tokens=0, cached_input_tokens=400_000)
    assert Cost(3.0, 15.0).usd(usage) == pytest.approx(3.0)  # no cached rate: input price
    assert Cost(3.0, 15.0, cached_input_per_mtok=0.3).usd(usage) == pytest.approx(
        0.6 * 3.0 + 0.4 * 0.3
    )


def test_capabilities_and_cached_price_are_read_from_the_config(tmp_path):
    from failover_cli.config import load_config

    path = tmp_path / "providers.yaml"
    path.write_text(
        "providers:\n"
        "  - name: llama\n    kind: ollama\n    model: llama3.2\n"
        "    capabilities: {vision: true, tools: false}\n"
        "    cost: {input_per_mtok: 1, output_per_mtok: 2, cached_input_per_mtok: 0.1}\n"
    )
    provider = load_config(str(path)).providers[0]
    assert provider.capabilities == CapabilityOverrides(tools=False, vision=True)
    assert provider.cost is not None and provider.cost.cached_input_per_mtok == 0.1
    path.write_text(
        "providers:\n  - name: llama\n    kind: ollama\n    model: m\n"
        "    capabilities: {vison: true}\n"
    )
    with pytest.raises(ConfigError, match=r"vison.*did you mean"):
        load_config(str(path))


async def test_a_provider_refusing_a_feature_fails_over_without_blame(clock):
    from failover_cli.errors import InvalidRequest

    refused = InvalidRequest(
        "registry.ollama.ai/library/llama2:latest does not support tools",
        status=400,
        reason="tools_unsupported",
    )
    llama = FakeProvider("llama", default=Reply(error=refused), kind="ollama")
    gpt = FakeProvider("gpt", default=Reply(tool_calls=[("get_weather", {})]))
    router = fake_router(llama, gpt, clock=clock)
    for _ in range(5):  # more than the breaker's failure threshold
        result = await routed(clock, router, prompt="hi", tools=[WEATHER])
        assert result.provider == "gpt"
        assert result.attempts[0].reason == "tools_unsupported"
    assert llama.calls == 5  # once per request: not retried, and its breaker never opened
    assert router.tracker.breakers["llama"].snap.state == "closed"


def test_an_assistant_turn_of_only_tool_calls_keeps_them():
    from failover_cli.messages import parse_messages

    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = parse_messages(
        [
            {"role": "user", "content": "go"},
            {"role": "assistant", "tool_calls": [call]},  # no content key at all
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
        ]
    )
    assert messages[1].tool_calls[0].id == "c1"


async def test_gemini_is_skipped_for_a_gif_it_cannot_read(clock):
    gemini = FakeProvider("gemini", kind="gemini", model="gemini-3-flash")
    gpt = FakeProvider("gpt")
    router = fake_router(gemini, gpt, clock=clock)
    gif = {"type": "image_url", "image_url": {"url": "data:image/gif;base64,R0lGODlhAQABAAAAACw="}}
    result = await routed(clock, router, messages=[{"role": "user", "content": [gif]}])
    assert result.provider == "gpt" and gemini.calls == 0
    assert "takes no image/gif images" in result.attempts[0].message
    png = {**gif, "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    result = await routed(clock, router, messages=[{"role": "user", "content": [png]}])
    assert result.provider == "gemini"


async def test_openai_gets_at_most_four_stop_sequences_and_the_trace_says_so(clock):
    from failover_cli.types import ParameterAdjusted

    gpt = FakeProvider("gpt", model="gpt-4o-mini")
    seen: list[object] = []
    router = fake_router(gpt, clock=clock, listeners=[seen.append])
    await routed(clock, router, prompt="hi", stop=["a", "b", "c", "d", "e"])
    assert gpt.requests[0].stop == ("a", "b", "c", "d")
    notes = [e for e in seen if isinstance(e, ParameterAdjusted)]
    assert [(n.parameter, n.action) for n in notes] == [("stop", "clamped")]


def test_unknown_tool_names_are_shortened_to_the_instance_limit():
    from failover_cli.chat import ToolNames

    names = ToolNames([], limit=20)
    assert len(names.wire("x" * 50)) == 20


def test_tool_results_must_answer_the_assistant_turn_just_before():
    from failover_cli.messages import parse_messages

    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    asked = {"role": "assistant", "content": None, "tool_calls": [call]}
    answer = {"role": "tool", "tool_call_id": "c1", "content": "1"}
    user = {"role": "user", "content": "go"}
    assert len(parse_messages([user, asked, answer, user])) == 4
    with pytest.raises(ValueError, match=r"messages\[2\]: the tool calls of messages\[1\] \(c1\)"):
        parse_messages([user, asked, user, answer])  # a turn between the call and its answer
    with pytest.raises(ValueError, match=r"^messages: the tool calls of messages\[1\]"):
        parse_messages([user, asked])  # never answered
    with pytest.raises(ValueError, match=r"messages\[3\]\.tool_call_id: 'c1' answers no open"):
        parse_messages([user, asked, answer, answer])  # answered twice


async def test_an_openai_refusal_is_marked_refused_whole_and_streamed(tmp_path):
    """The router's answer says when its text is the model's refusal (the gateway answers
    OpenAI clients with it as ``refusal``): the API's pinned answers of tests/golden/openai."""
    from pathlib import Path

    import httpx

    from failover_cli.router import FailoverRouter
    from failover_cli.store import JsonFileStore
    from failover_cli.types import ProviderConfig

    root = Path(__file__).parent / "golden" / "openai"
    answers = {name: json.loads((root / f"{name}.json").read_text())
               for name in ("text", "text_refusal", "stream_text_refusal")}  # fmt: skip
    pick = {"name": "text_refusal"}

    def answer(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content).get("stream"):
            sse = answers["stream_text_refusal"]["response_stream"].encode()
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=sse)
        return httpx.Response(200, json=answers[pick["name"]]["response"])

    cfg = ProviderConfig(name="gpt", kind="openai", model="m", base_url="http://gpt",
                         api_key_env="K")  # fmt: skip
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        router = FailoverRouter([cfg], client=client, env={"K": "k"},
                                store=JsonFileStore(tmp_path / "s.json"),
                                background_probes=False)  # fmt: skip
        got = await router.route(prompt="x", max_tokens=5)
        assert got.refused and got.text == "I'm sorry, I can't help with that request."
        stream = router.stream(prompt="x", max_tokens=5)
        text = "".join([piece async for piece in stream])
        assert stream.result is not None and stream.result.refused
        assert text == "I'm sorry, I can't help."
        pick["name"] = "text"
        plain = await router.route(prompt="x", max_tokens=5)
        assert not plain.refused and plain.text
