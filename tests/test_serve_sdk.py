"""The official ``openai`` and ``anthropic`` SDKs as clients of the gateway: text and tools,
streamed and not, each API served by either kind of provider, failover, and the errors the
SDKs raise for the gateway's 401/413/429/503."""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest
from conftest import SIM_KEY, provider
from test_serve_app import gateway

from failover_cli.serve.auth import GatewayKeys, digest
from failover_cli.sim import Behavior

__all__ = ["gateway"]  # a fixture

TEXT = "Hello from the failover simulator."
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
WEATHER_ANTHROPIC = {
    "name": "get_weather",
    "description": "Weather of a city",
    "input_schema": WEATHER["function"]["parameters"],  # type: ignore[index]
}
USER = [{"role": "user", "content": "Hi"}]


def oa(gw, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=10)


def an(gw, key: str = "unused") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0, timeout=10)


@pytest.fixture(params=["openai", "anthropic"])
def upstream(request, sim):
    """One provider of each kind behind the gateway, in turn."""
    return provider("up", sim(request.param))


def test_openai_text(gateway, upstream):
    gw = gateway(upstream)
    raw = oa(gw).chat.completions.with_raw_response.create(model="default", messages=USER)
    done = raw.parse()
    assert done.choices[0].message.content == TEXT
    assert done.choices[0].finish_reason == "stop"
    assert done.usage is not None and done.usage.completion_tokens > 0
    assert raw.headers["x-failover-provider"] == "up"


def test_openai_stream(gateway, upstream):
    gw = gateway(upstream)
    stream = oa(gw).chat.completions.create(
        model="default", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == TEXT
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_openai_tools(gateway, upstream):
    gw = gateway(upstream)
    client = oa(gw)
    done = client.chat.completions.create(model="default", messages=USER, tools=[WEATHER])
    call = done.choices[0].message.tool_calls[0]
    assert done.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and "city" in json.loads(call.function.arguments)
    stream = client.chat.completions.create(
        model="default", messages=USER, tools=[WEATHER], stream=True
    )
    args, names = "", set()
    for c in stream:
        for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            names.add(tc.function.name) if tc.function and tc.function.name else None
            args += (tc.function.arguments or "") if tc.function else ""
    assert names == {"get_weather"} and "city" in json.loads(args)


def test_anthropic_text(gateway, upstream):
    gw = gateway(upstream)
    raw = an(gw).messages.with_raw_response.create(model="default", max_tokens=50,
                                                   messages=USER)  # fmt: skip
    msg = raw.parse()
    assert msg.content[0].type == "text" and msg.content[0].text == TEXT
    assert msg.stop_reason == "end_turn" and msg.usage.output_tokens > 0
    assert raw.headers["x-failover-provider"] == "up"
    beta = an(gw).beta.messages.create(model="default", max_tokens=50, messages=USER)
    assert beta.content[0].text == TEXT  # POST /v1/messages?beta=true


def test_anthropic_stream(gateway, upstream):
    gw = gateway(upstream)
    with an(gw).messages.stream(model="default", max_tokens=50, messages=USER) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == TEXT and final.stop_reason == "end_turn"


def test_anthropic_tools(gateway, upstream):
    gw = gateway(upstream)
    client = an(gw)
    msg = client.messages.create(model="default", max_tokens=50, messages=USER,
                                 tools=[WEATHER_ANTHROPIC])  # fmt: skip
    use = next(b for b in msg.content if b.type == "tool_use")
    assert msg.stop_reason == "tool_use" and use.name == "get_weather" and "city" in use.input
    with client.messages.stream(model="default", max_tokens=50, messages=USER,
                                tools=[WEATHER_ANTHROPIC]) as s:  # fmt: skip
        final = s.get_final_message()
    assert any(b.type == "tool_use" and b.name == "get_weather" for b in final.content)


def test_failover_through_the_sdk(gateway, sim):
    down = sim("anthropic", Behavior(statuses=[529] * 10))
    gw = gateway(provider("a", down), provider("b", sim("openai")))
    raw = an(gw).messages.with_raw_response.create(model="default", max_tokens=50,
                                                   messages=USER)  # fmt: skip
    assert raw.parse().content[0].text == TEXT
    assert raw.headers["x-failover-provider"] == "b"
    assert int(raw.headers["x-failover-attempts"]) >= 2


def test_all_down_raises_the_sdks_server_error(gateway, sim):
    down = Behavior(statuses=[500] * 20)
    gw = gateway(provider("a", sim("openai", down)), provider("b", sim("anthropic", down)))
    with pytest.raises(openai.InternalServerError) as e:
        oa(gw).chat.completions.create(model="default", messages=USER)
    assert e.value.status_code == 503 and int(e.value.response.headers["retry-after"]) >= 1
    with pytest.raises(anthropic.InternalServerError) as e2:
        an(gw).messages.create(model="default", max_tokens=50, messages=USER)
    assert e2.value.status_code == 503 and e2.value.response.headers["retry-after"]
    with pytest.raises(openai.InternalServerError):  # a stream too: a status, not a 200
        list(oa(gw).chat.completions.create(model="default", messages=USER, stream=True))


def test_sdk_errors_for_gateway_limits(gateway, sim):
    keys = GatewayKeys([digest("gw-key")])
    gw = gateway(provider("a", sim("openai")), keys=keys,
                 serve={"rate_per_minute": 2, "max_body_bytes": 4000})  # fmt: skip
    with pytest.raises(openai.AuthenticationError):
        oa(gw, "wrong").chat.completions.create(model="default", messages=USER)
    with pytest.raises(anthropic.AuthenticationError):
        an(gw, "wrong").messages.create(model="default", max_tokens=5, messages=USER)
    with pytest.raises(openai.APIStatusError) as e:
        oa(gw, "gw-key").chat.completions.create(
            model="default", messages=[{"role": "user", "content": "x" * 5000}]
        )
    assert e.value.status_code == 413
    assert oa(gw, "gw-key").chat.completions.create(model="default", messages=USER)
    with pytest.raises(anthropic.RateLimitError):
        an(gw, "gw-key").messages.create(model="default", max_tokens=5, messages=USER)


def test_models_through_the_sdks(gateway, sim):
    gw = gateway(provider("a", sim("openai")), models={"fast": ["a"]})
    assert [m.id for m in oa(gw).models.list()] == ["fast", "a"]
    assert [m.id for m in an(gw).models.list()] == ["fast", "a"]


def test_cut_stream_is_continued_by_the_next_provider(gateway, sim):
    cut = sim("openai", Behavior(fault="truncate", fault_after_tokens=2))
    gw = gateway(provider("a", cut), provider("b", sim("anthropic")))
    stream = oa(gw).chat.completions.create(model="default", messages=USER, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.startswith("Hello from") and len(text) >= len("Hello from")


def test_cut_stream_with_nothing_behind_ends_in_an_error_the_sdk_raises(gateway, sim):
    cut = sim("anthropic", Behavior(fault="truncate", fault_after_tokens=2))
    gw = gateway(provider("a", cut))
    with (
        pytest.raises(anthropic.APIError),
        an(gw).messages.stream(model="default", max_tokens=50, messages=USER) as s,
    ):
        "".join(s.text_stream)
    with pytest.raises(openai.APIError):
        list(oa(gw).chat.completions.create(model="default", messages=USER, stream=True))


def test_body_fallbacks_extend_the_chain(gateway, sim):
    a = sim("openai", Behavior(statuses=[500] * 10))
    b, c = sim("openai"), sim("openai")
    gw = gateway(provider("a", a), provider("b", b), provider("c", c), models={"solo": ["a"]})
    raw = oa(gw).chat.completions.with_raw_response.create(
        model="solo", messages=USER, extra_body={"fallbacks": ["c"]}
    )
    assert raw.headers["x-failover-provider"] == "c" and b.count == 0
    with pytest.raises(openai.BadRequestError):
        oa(gw).chat.completions.create(model="solo", messages=USER,
                                       extra_body={"fallbacks": ["nope"]})  # fmt: skip
    raw = oa(gw).chat.completions.with_raw_response.create(
        model="default", messages=USER, extra_headers={"x-failover-providers": "a,c"}
    )
    assert raw.headers["x-failover-provider"] == "c" and b.count == 0


# --- count_tokens ----------------------------------------------------------------------------


def test_anthropic_count_tokens_is_the_providers_own_count(gateway, sim):
    """Answered by the chain's first Anthropic provider (an OpenAI one cannot count), with
    the number that provider's count_tokens endpoint gives for the same body."""
    claude = sim("anthropic")
    gw = gateway(provider("gpt", sim("openai")), provider("claude", claude))
    client = an(gw)
    messages = [{"role": "user", "content": "count these five words"}]
    got = client.messages.count_tokens(model="default", messages=messages, system="Be brief")
    direct = anthropic.Anthropic(base_url=claude.base_url, api_key=SIM_KEY, max_retries=0)
    want = direct.messages.count_tokens(model="claude-model", messages=messages, system="Be brief")
    assert got.input_tokens == want.input_tokens > 0
    sent = claude.requests[-2].json  # what the gateway forwarded: no sampling fields
    assert "max_tokens" not in sent and "stream" not in sent
    assert sent["system"] == "Be brief"
    tools = [{"name": "get_weather", "description": "Weather", "input_schema": {
        "type": "object", "properties": {"city": {"type": "string"}}}}]  # fmt: skip
    with_tools = client.messages.count_tokens(model="default", messages=messages, tools=tools)
    assert with_tools.input_tokens > got.input_tokens - 3  # the tools are counted too
    assert claude.requests[-1].json["tools"][0]["name"] == "get_weather"


def test_count_tokens_without_an_anthropic_provider_is_a_404_not_an_estimate(gateway, sim):
    gw = gateway(provider("gpt", sim("openai")))
    with pytest.raises(anthropic.NotFoundError) as e:
        an(gw).messages.count_tokens(model="default", messages=[{"role": "user", "content": "hi"}])
    assert "no provider of this chain can count tokens" in e.value.message
    assert e.value.body["error"]["type"] == "not_found_error"


def test_count_tokens_fails_over_between_anthropic_providers(gateway, sim):
    down = sim("anthropic", Behavior(health_status=529))
    up = sim("anthropic")
    gw = gateway(provider("first", down), provider("second", up))
    r = httpx.post(f"{gw.url}/v1/messages/count_tokens",
                   json={"model": "default", "messages": [{"role": "user", "content": "a b c"}]},
                   headers={"anthropic-version": "2023-06-01"}, timeout=10)  # fmt: skip
    assert r.status_code == 200 and r.json() == {"input_tokens": 3}
    assert r.headers["x-failover-provider"] == "second"
    bad = httpx.post(f"{gw.url}/v1/messages/count_tokens", json={"model": "default"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"


def test_count_tokens_takes_a_concurrency_slot_and_is_counted_in_metrics(gateway, sim):
    """A count is an upstream call like a completion: it waits for one of the gateway's
    slots (a 429 when the queue is full) and shows in the requests metric under its own api
    label."""
    slow = sim("anthropic", Behavior(text="one two three four five six", tokens_per_second=4))
    gw = gateway(provider("claude", slow), serve={"max_concurrency": 1, "max_queue": 0})
    count = {"model": "default", "messages": [{"role": "user", "content": "a b c"}]}
    version = {"anthropic-version": "2023-06-01"}
    held_body = {"model": "default", "max_tokens": 16, "stream": True,
                 "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
    with gw.client() as c, c.stream("POST", "/v1/messages", json=held_body) as held:
        assert held.status_code == 200  # in flight, holding the only slot
        r = gw.post("/v1/messages/count_tokens", count, headers=version)
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["type"] == "rate_limit_error"
        held.read()
    assert gw.post("/v1/messages/count_tokens", count, headers=version).json() == {
        "input_tokens": 3
    }
    metrics = gw.get("/metrics").text
    for status in ("429", "200"):
        assert ('failover_requests_total{api="anthropic_count_tokens",model="default",'
                f'status="{status}"}} 1.0') in metrics  # fmt: skip


def test_count_tokens_all_down_names_classes_not_upstream_text(gateway, sim):
    gw = gateway(provider("first", sim("anthropic", Behavior(health_status=529))),
                 provider("second", sim("anthropic", Behavior(health_status=529))))  # fmt: skip
    r = httpx.post(f"{gw.url}/v1/messages/count_tokens",
                   json={"model": "default", "messages": [{"role": "user", "content": "a b c"}]},
                   headers={"anthropic-version": "2023-06-01"}, timeout=10)  # fmt: skip
    assert r.status_code == 503, r.text
    message = r.json()["error"]["message"]
    assert "first: " in message and "second: " in message and "529" in message
    assert "verloaded" not in message  # the simulator's own error text stays in the gateway


def test_each_sdk_reads_the_request_id_of_answers_and_errors(gateway, sim):
    """The ids the SDKs keep for support and logs: OpenAI's from ``x-request-id``,
    Anthropic's from ``request-id`` (also in its error bodies), errors included."""
    gw = gateway(provider("a", sim("openai")))
    raw = oa(gw).chat.completions.with_raw_response.create(model="default", messages=USER)
    assert raw.request_id and raw.request_id.startswith("req_")
    msg = an(gw).messages.create(model="default", max_tokens=5, messages=USER)
    assert msg._request_id and msg._request_id.startswith("req_")
    assert msg._request_id != raw.request_id
    with an(gw).messages.with_streaming_response.create(
        model="default", max_tokens=5, messages=USER, stream=True
    ) as streamed:
        assert streamed.request_id and streamed.request_id.startswith("req_")
    with pytest.raises(openai.BadRequestError) as e:
        oa(gw).chat.completions.create(model="default", messages=[])
    assert e.value.request_id and e.value.request_id.startswith("req_")
    with pytest.raises(anthropic.BadRequestError) as e2:
        an(gw).messages.create(model="default", max_tokens=5, messages=[])
    assert e2.value.request_id and e2.value.request_id.startswith("req_")
    assert isinstance(e2.value.body, dict) and e2.value.body["request_id"] == e2.value.request_id
    with pytest.raises(anthropic.NotFoundError) as e3:  # an error outside a completion too
        an(gw).post("/v1/nowhere", cast_to=object, body={})
    assert e3.value.request_id


def test_models_retrieve_through_the_sdks(gateway, sim):
    """Both SDKs' ``models.retrieve``: a name the gateway serves is found, as a request
    naming it would be routed; with unknown names rejected, they are not found."""
    up = provider("a", sim("openai"))
    gw = gateway(up, models={"fast": ["a"]})
    assert oa(gw).models.retrieve("fast").id == "fast"
    assert an(gw).models.retrieve("a").id == "a"
    assert an(gw).models.retrieve("a").type == "model"
    assert oa(gw).models.retrieve("gpt-4o").id == "gpt-4o"  # unknown: the default chain
    strict = gateway(up, models={"fast": ["a"]}, serve={"unknown_model": "reject"})
    assert oa(strict).models.retrieve("fast").owned_by == "failover"
    with pytest.raises(openai.NotFoundError):
        oa(strict).models.retrieve("gpt-4o")
    with pytest.raises(anthropic.NotFoundError):
        an(strict).models.retrieve("gpt-4o")
