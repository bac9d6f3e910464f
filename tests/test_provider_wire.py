"""The adapters over real HTTP on 127.0.0.1, against the provider simulators (failover_cli.sim).

FAULT_MATRIX lists, for every adapter, every simulated fault, streamed and not, the error the
adapter must raise (class and reason) and the text it must keep; ``None`` means it must answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from failover_cli.errors import (
    ContextLengthExceeded,
    InvalidRequest,
    ProviderError,
    ProviderUnavailable,
    TransientError,
)
from failover_cli.providers import create_provider, make_client
from failover_cli.providers._http import MAX_TOKENS
from failover_cli.sim import Behavior, Simulator, refused_url
from failover_cli.types import CompletionRequest, ErrorClass, ProviderConfig, StreamEnd, TextDelta

KEY = "sk-canary-7f3a9b"
ENV = {"ANTHROPIC_API_KEY": KEY, "OPENAI_API_KEY": KEY, "GEMINI_API_KEY": KEY}
KINDS = ("anthropic", "openai", "ollama", "gemini")
TEXT = "One two three four five six."
FIRST_TWO = "One two"  # the simulator cuts a stream after fault_after_tokens=2 tokens
HANG_TIMEOUT = 0.25

T, P, C = TransientError, ProviderUnavailable, ContextLengthExceeded
STREAM, WHOLE = True, False

# (kind, fault, streamed, error class or None for an answer, reason, partial text kept)
FAULT_MATRIX: list[tuple[str, str, bool, type[ProviderError] | None, str | None, str]] = [
    ("anthropic", "hang", WHOLE, T, "timeout", ""),
    ("anthropic", "hang", STREAM, T, "timeout", ""),
    ("anthropic", "drip", WHOLE, None, None, ""),
    ("anthropic", "drip", STREAM, None, None, ""),
    ("anthropic", "truncate", WHOLE, T, "truncated", ""),
    ("anthropic", "truncate", STREAM, T, "truncated", FIRST_TWO),
    ("anthropic", "reset", WHOLE, T, "truncated", ""),
    ("anthropic", "reset", STREAM, T, "truncated", FIRST_TWO),
    ("anthropic", "malformed", WHOLE, T, "malformed", ""),
    ("anthropic", "malformed", STREAM, T, "malformed", FIRST_TWO),
    ("anthropic", "midstream_error", WHOLE, T, "overloaded", ""),  # answered as a 529
    ("anthropic", "midstream_error", STREAM, T, "overloaded", FIRST_TWO),
    ("anthropic", "context_length", WHOLE, C, "context_length", ""),
    ("anthropic", "context_length", STREAM, C, "context_length", ""),
    ("anthropic", "quota", WHOLE, P, "quota", ""),
    ("anthropic", "quota", STREAM, P, "quota", ""),
    ("anthropic", "auth", WHOLE, P, "auth", ""),
    ("anthropic", "auth", STREAM, P, "auth", ""),
    ("anthropic", "not_found", WHOLE, P, "model_not_found", ""),
    ("anthropic", "not_found", STREAM, P, "model_not_found", ""),
    ("anthropic", "empty", WHOLE, None, None, ""),
    ("anthropic", "empty", STREAM, None, None, ""),
    ("openai", "hang", WHOLE, T, "timeout", ""),
    ("openai", "hang", STREAM, T, "timeout", ""),
    ("openai", "drip", WHOLE, None, None, ""),
    ("openai", "drip", STREAM, None, None, ""),
    ("openai", "truncate", WHOLE, T, "truncated", ""),
    ("openai", "truncate", STREAM, T, "truncated", FIRST_TWO),
    ("openai", "reset", WHOLE, T, "truncated", ""),
    ("openai", "reset", STREAM, T, "truncated", FIRST_TWO),
    ("openai", "malformed", WHOLE, T, "malformed", ""),
    ("openai", "malformed", STREAM, T, "malformed", FIRST_TWO),
    ("openai", "midstream_error", WHOLE, T, "overloaded", ""),  # answered as a 503
    ("openai", "midstream_error", STREAM, T, "stream_error", FIRST_TWO),
    ("openai", "context_length", WHOLE, C, "context_length", ""),
    ("openai", "context_length", STREAM, C, "context_length", ""),
    ("openai", "quota", WHOLE, P, "quota", ""),  # a 429 with code insufficient_quota
    ("openai", "quota", STREAM, P, "quota", ""),
    ("openai", "auth", WHOLE, P, "auth", ""),
    ("openai", "auth", STREAM, P, "auth", ""),
    ("openai", "not_found", WHOLE, P, "model_not_found", ""),
    ("openai", "not_found", STREAM, P, "model_not_found", ""),
    ("openai", "empty", WHOLE, None, None, ""),
    ("openai", "empty", STREAM, None, None, ""),
    ("ollama", "hang", WHOLE, T, "timeout", ""),
    ("ollama", "hang", STREAM, T, "timeout", ""),
    ("ollama", "drip", WHOLE, None, None, ""),
    ("ollama", "drip", STREAM, None, None, ""),
    ("ollama", "truncate", WHOLE, T, "truncated", ""),
    ("ollama", "truncate", STREAM, T, "truncated", FIRST_TWO),
    ("ollama", "reset", WHOLE, T, "truncated", ""),
    ("ollama", "reset", STREAM, T, "truncated", FIRST_TWO),
    ("ollama", "malformed", WHOLE, T, "malformed", ""),
    ("ollama", "malformed", STREAM, T, "malformed", FIRST_TWO),
    ("ollama", "midstream_error", WHOLE, T, "overloaded", ""),  # answered as a 503
    ("ollama", "midstream_error", STREAM, T, "stream_error", FIRST_TWO),
    ("ollama", "context_length", WHOLE, C, "context_length", ""),
    ("ollama", "context_length", STREAM, C, "context_length", ""),
    ("ollama", "quota", WHOLE, P, "quota", ""),  # a 429 "usage limit"
    ("ollama", "quota", STREAM, P, "quota", ""),
    ("ollama", "auth", WHOLE, P, "auth", ""),
    ("ollama", "auth", STREAM, P, "auth", ""),
    ("ollama", "not_found", WHOLE, P, "model_not_found", ""),
    ("ollama", "not_found", STREAM, P, "model_not_found", ""),
    ("ollama", "empty", WHOLE, None, None, ""),
    ("ollama", "empty", STREAM, None, None, ""),
    ("gemini", "hang", WHOLE, T, "timeout", ""),
    ("gemini", "hang", STREAM, T, "timeout", ""),
    ("gemini", "drip", WHOLE, None, None, ""),
    ("gemini", "drip", STREAM, None, None, ""),
    ("gemini", "truncate", WHOLE, T, "truncated", ""),
    ("gemini", "truncate", STREAM, T, "truncated", FIRST_TWO),  # closes without finishReason
    ("gemini", "reset", WHOLE, T, "truncated", ""),
    ("gemini", "reset", STREAM, T, "truncated", FIRST_TWO),
    ("gemini", "malformed", WHOLE, T, "malformed", ""),
    ("gemini", "malformed", STREAM, T, "malformed", FIRST_TWO),
    ("gemini", "midstream_error", WHOLE, T, "overloaded", ""),  # answered as a 503
    ("gemini", "midstream_error", STREAM, T, "stream_error", FIRST_TWO),
    ("gemini", "context_length", WHOLE, C, "context_length", ""),
    ("gemini", "context_length", STREAM, C, "context_length", ""),
    ("gemini", "quota", WHOLE, P, "quota", ""),  # 429 RESOURCE_EXHAUSTED + QuotaFailure
    ("gemini", "quota", STREAM, P, "quota", ""),
    ("gemini", "auth", WHOLE, P, "auth", ""),
    ("gemini", "auth", STREAM, P, "auth", ""),
    ("gemini", "not_found", WHOLE, P, "model_not_found", ""),
    ("gemini", "not_found", STREAM, P, "model_not_found", ""),
    ("gemini", "empty", WHOLE, None, None, ""),
    ("gemini", "empty", STREAM, None, None, ""),
]
# The faults of issue 11, the same for every dialect: (fault, streamed, class, reason, partial).
HOSTILE_FAULTS: list[tuple[str, bool, type[ProviderError] | None, str | None, str]] = [
    ("stall", WHOLE, T, "stall", ""),  # the head, half the body, then silence
    ("stall", STREAM, T, "stall", FIRST_TWO),
    ("no_end_marker", WHOLE, None, None, ""),
    ("no_end_marker", STREAM, None, None, ""),  # finished, then ended without the marker
    ("deep_json", WHOLE, T, "malformed", ""),
    ("deep_json", STREAM, T, "malformed", FIRST_TWO),
    ("huge_number", WHOLE, None, None, ""),  # token counts of 1e400: clamped
    ("huge_number", STREAM, None, None, ""),
    ("bad_delta", WHOLE, T, "malformed", ""),
    ("bad_delta", STREAM, T, "malformed", FIRST_TWO),
    ("gzip_bomb", WHOLE, T, "oversized", ""),
    ("gzip_bomb", STREAM, T, "oversized", ""),
    ("endless", WHOLE, T, "oversized", ""),
    ("endless", STREAM, T, "oversized", FIRST_TWO),
    ("reject_prefill", WHOLE, None, None, ""),  # nothing to refuse: the last turn is the user's
    ("reject_prefill", STREAM, None, None, ""),
]
FAULT_MATRIX += [(kind, *case) for kind in KINDS for case in HOSTILE_FAULTS]
# Short clocks for the matrix; requests ask for few tokens, so a whole answer's head is due
# after 0.3 s + 8 tokens at 25/s.
MATRIX_CLOCKS = {"first_token_timeout": 0.3, "idle_timeout": 0.3}
ENDLESS_CLOCKS = {"first_token_timeout": 3.0, "idle_timeout": 3.0}
MATRIX_REQUEST = CompletionRequest("hi", max_tokens=8)

# Scripted statuses: (status, error class, reason), the same for every dialect's error body.
STATUS_CASES = [
    (429, T, "rate_limited"),
    (500, T, "server_error"),
    (502, T, "server_error"),
    (503, T, "overloaded"),
    (504, T, "server_error"),
    (401, P, "auth"),
    (403, P, "auth"),
    (404, P, "model_not_found"),
    (400, InvalidRequest, "invalid_request"),
    (422, InvalidRequest, "invalid_request"),
]

# --- fixtures and helpers -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sims():
    """One simulator per dialect for the whole module (each test sets its behaviour)."""
    servers = {
        kind: Simulator(kind, Behavior(text=TEXT), api_key=None if kind == "ollama" else KEY)
        for kind in KINDS
    }
    for sim in servers.values():
        sim.start()
    yield servers
    for sim in servers.values():
        sim.stop()


@pytest.fixture
async def client():
    shared = make_client()
    yield shared
    await shared.aclose()


def adapter(kind: str, base_url: str, client: httpx.AsyncClient, **cfg: Any):
    config = ProviderConfig(name=f"wire-{kind}", kind=kind, model="m-1", base_url=base_url, **cfg)
    return create_provider(config, client=client, env=ENV)


async def run(provider, streamed: bool, request: CompletionRequest, timeout: float = 5.0):
    """Complete or stream; returns (text, events) or raises the adapter's error."""
    if not streamed:
        result = await provider.complete(request, timeout=timeout)
        return result.text, [result]
    events = [e async for e in provider.stream(request, timeout=timeout)]
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events


def assert_clean(exc: BaseException) -> None:
    for text in (str(exc), repr(exc), getattr(exc, "message", ""), *map(str, exc.args)):
        assert KEY not in text


SPECS = Path(__file__).parent / "specs"


def _validator(file: str, schema: str) -> Draft202012Validator:
    spec = json.loads((SPECS / file).read_text())
    return Draft202012Validator(
        {"$ref": f"#/components/schemas/{schema}", "components": spec["components"]}
    )


VALIDATORS = {
    "anthropic": _validator("anthropic-messages.openapi.json", "CreateMessageParams"),
    "openai": _validator("openai-chat-completions.openapi.json", "CreateChatCompletionRequest"),
    "ollama": _validator("ollama-chat.openapi.json", "ChatRequest"),
}


# --- the whole-request deadline ---------------------------------------------------------------


@pytest.mark.parametrize("stock", [False, True], ids=["failover-transport", "stock-httpx"])
@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "stream"])
async def test_a_slow_drip_is_cut_at_the_attempt_deadline(sims, stock, streamed):
    """Every read arrives well within the read timeout, yet the attempt must end at its
    deadline: on failover's transport (which enforces it per wait) and on a stock client (the
    adapter's own timer)."""
    sim = sims["openai"]
    sim.behavior = Behavior(text=TEXT * 20, fault="drip", drip_bytes=4, drip_interval=0.01)
    client = httpx.AsyncClient(trust_env=False) if stock else make_client()
    try:
        provider = adapter("openai", sim.base_url, client)
        assert provider._transport_deadlines is not stock
        async with asyncio.timeout(5):  # a guard: the deadline below must fire long before
            with pytest.raises(ProviderError) as info:
                await run(provider, streamed, CompletionRequest("hi"), timeout=0.2)
    finally:
        await client.aclose()
    assert (info.value.error_class, info.value.reason) == (ErrorClass.TRANSIENT, "timeout")


@pytest.fixture(params=["failover-transport", "stock-httpx"])
async def any_client(request):
    """failover's own client (the transport enforces the deadline) and a stock httpx client
    (the adapter's timers do)."""
    shared = (
        make_client()
        if request.param == "failover-transport"
        else httpx.AsyncClient(trust_env=False)
    )
    yield shared
    await shared.aclose()


@pytest.mark.parametrize("kind", KINDS)
async def test_first_token_limit_on_a_stream(sims, any_client, kind):
    sims[kind].behavior = Behavior(text=TEXT, ttft=5)  # the head at once, the first token late
    provider = adapter(kind, sims[kind].base_url, any_client, first_token_timeout=0.2)
    with pytest.raises(TransientError) as info:
        await run(provider, STREAM, CompletionRequest("hi"), timeout=5)
    assert (info.value.reason, info.value.partial_text) == ("first_token_timeout", "")
    assert info.value.message == "no first token after 0.2s"


async def test_a_slow_start_within_the_first_token_limit_is_not_a_stall(sims, any_client):
    # Before the first token only the first-token clock runs: the idle clock waits for it.
    sims["anthropic"].behavior = Behavior(text=TEXT, ttft=0.3)
    provider = adapter(
        "anthropic", sims["anthropic"].base_url, any_client, first_token_timeout=3, idle_timeout=0.1
    )
    text, _ = await run(provider, STREAM, CompletionRequest("hi"), timeout=5)
    assert text == TEXT


@pytest.mark.parametrize("kind", KINDS)
async def test_head_limit_of_a_whole_answer_counts_the_tokens_asked_for(sims, any_client, kind):
    sims[kind].behavior = Behavior(text=TEXT, latency=5)
    provider = adapter(kind, sims[kind].base_url, any_client, first_token_timeout=0.1)
    with pytest.raises(TransientError) as info:
        await run(provider, WHOLE, CompletionRequest("hi", max_tokens=5), timeout=5)
    assert info.value.reason == "first_token_timeout"
    assert info.value.message == "no first token after 0.3s"  # 0.1 s + 5 tokens at 25/s
    # The same wait is fine for an answer long enough to need it.
    sims[kind].behavior = Behavior(text=TEXT, latency=0.3)
    text, _ = await run(provider, WHOLE, CompletionRequest("hi", max_tokens=25), timeout=5)
    assert text == TEXT


@pytest.mark.parametrize("streamed", [WHOLE, STREAM], ids=["whole", "stream"])
async def test_stall_after_the_head_on_both_clients(sims, any_client, streamed):
    sims["openai"].behavior = Behavior(text=TEXT, fault="stall")
    provider = adapter(
        "openai", sims["openai"].base_url, any_client, first_token_timeout=0.2, idle_timeout=0.2
    )
    with pytest.raises(TransientError) as info:
        await run(provider, streamed, CompletionRequest("hi", max_tokens=1), timeout=5)
    assert info.value.reason == "stall"
    assert info.value.partial_text == (FIRST_TWO if streamed else "")


@pytest.fixture
def unanswered_url():
    """A loopback port whose accept queue is full: a connect there never completes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    yield f"http://127.0.0.1:{port}"
    for sock in (*fillers, listener):
        sock.close()


@pytest.mark.parametrize("streamed", [WHOLE, STREAM], ids=["whole", "stream"])
async def test_connect_timeout_is_a_connect_failure(any_client, unanswered_url, streamed):
    provider = adapter("ollama", unanswered_url, any_client, connect_timeout=0.2)
    with pytest.raises(TransientError) as info:
        await run(provider, streamed, CompletionRequest("hi"), timeout=5)
    assert info.value.reason == "connect"
    assert "timed out after 0.2s" in info.value.message
    # A budget shorter than the connect timeout is the attempt's own timeout.
    provider = adapter("ollama", unanswered_url, any_client, connect_timeout=5)
    with pytest.raises(TransientError) as info:
        await run(provider, streamed, CompletionRequest("hi"), timeout=0.2)
    assert info.value.reason == "timeout"


# --- the fault matrix ---------------------------------------------------------------------------


def _matrix_id(case: tuple) -> str:
    kind, fault, streamed, *_ = case
    return f"{kind}-{fault}-{'stream' if streamed else 'whole'}"


@pytest.mark.parametrize(
    ("kind", "fault", "streamed", "cls", "reason", "partial"),
    FAULT_MATRIX,
    ids=[_matrix_id(c) for c in FAULT_MATRIX],
)
async def test_fault_matrix(sims, client, kind, fault, streamed, cls, reason, partial):
    sim = sims[kind]
    # A fast drip (16-byte slices) so a whole answer arrives in many pieces within the test.
    sim.behavior = Behavior(text=TEXT, fault=fault, drip_bytes=16, drip_interval=0.001)
    # An endless answer must hit the size bound, not a stall timeout of a loaded machine.
    clocks = ENDLESS_CLOCKS if fault == "endless" else MATRIX_CLOCKS
    provider = adapter(kind, sim.base_url, client, **clocks)
    timeout = HANG_TIMEOUT if fault == "hang" else 5.0
    if cls is None:
        text, events = await run(provider, streamed, MATRIX_REQUEST, timeout)
        assert text == ("" if fault == "empty" else TEXT)
        if streamed:
            assert isinstance(events[-1], StreamEnd)
            assert sum(isinstance(e, StreamEnd) for e in events) == 1
        if fault == "huge_number":
            assert events[-1].usage.output_tokens == MAX_TOKENS
        return
    with pytest.raises(ProviderError) as info:
        await run(provider, streamed, MATRIX_REQUEST, timeout)
    exc = info.value
    assert type(exc) is cls, str(exc)
    assert exc.reason == reason, str(exc)
    assert exc.partial_text == partial
    assert exc.provider == f"wire-{kind}"
    assert_clean(exc)


# --- answers and requests -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("streamed", [WHOLE, STREAM])
async def test_answer_and_request_on_the_wire(sims, client, kind, streamed):
    sim = sims[kind]
    sim.behavior = Behavior(text=TEXT, model="served-model")
    sim.clear()
    provider = adapter(kind, sim.base_url, client)
    request = CompletionRequest("Say hi", max_tokens=64, system="Be brief.", temperature=0.3)
    text, events = await run(provider, streamed, request)
    assert text == TEXT
    last = events[-1]
    assert last.model == "served-model"
    assert last.usage.output_tokens == 6
    assert last.usage.input_tokens > 0
    assert last.stop_reason
    (recorded,) = sim.requests
    if kind in VALIDATORS:
        problems = [e.message for e in VALIDATORS[kind].iter_errors(recorded.json)]
        assert not problems, problems
    if kind == "anthropic":
        assert recorded.headers["authorization"] == f"Bearer {KEY}"
        assert recorded.headers["anthropic-version"] == "2026-10-21"
    elif kind == "openai":
        assert recorded.headers["authorization"] == f"Bearer {KEY}"
    elif kind == "gemini":
        assert recorded.headers["x-goog-api-key"] == KEY
        assert recorded.query.get("alt") == ("sse" if streamed else None)
    else:
        assert "authorization" not in recorded.headers


@pytest.mark.parametrize("kind", KINDS)
async def test_continuation_prefix_is_accepted(sims, client, kind):
    sim = sims[kind]
    sim.behavior = Behavior(text=" three four")
    sim.clear()
    provider = adapter(kind, sim.base_url, client)
    request = CompletionRequest("Count", assistant_prefix="One two")
    text, _ = await run(provider, STREAM, request)
    assert text == " three four"
    body = sim.requests[-1].json
    last_turn = body["contents"][-1] if kind == "gemini" else body["messages"][-1]
    assert last_turn["role"] == ("model" if kind == "gemini" else "assistant")
    assert "One two" in json.dumps(last_turn)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("status", "cls", "reason"), STATUS_CASES)
async def test_scripted_status(sims, client, kind, status, cls, reason):
    sim = sims[kind]
    sim.behavior = Behavior(text=TEXT, statuses=[status], retry_after=7)
    provider = adapter(kind, sim.base_url, client)
    with pytest.raises(ProviderError) as info:
        await provider.complete(CompletionRequest("hi"), timeout=5)
    exc = info.value
    assert (type(exc), exc.status, exc.reason) == (cls, status, reason)
    assert exc.retry_after == 7.0
    assert_clean(exc)
    # The script is spent: the next call answers.
    assert (await provider.complete(CompletionRequest("hi"), timeout=5)).text == TEXT


@pytest.mark.parametrize("kind", KINDS)
async def test_retry_after_ms_wins_over_seconds_on_a_stream(sims, client, kind):
    sim = sims[kind]
    sim.behavior = Behavior(text=TEXT, statuses=[429], retry_after=9, retry_after_ms=1500)
    with pytest.raises(TransientError) as info:
        await run(adapter(kind, sim.base_url, client), STREAM, CompletionRequest("hi"))
    assert (info.value.retry_after, info.value.reason) == (1.5, "rate_limited")


async def test_retry_after_http_date(sims, client):
    sim = sims["anthropic"]
    sim.behavior = Behavior(statuses=[529], retry_after="Fri, 01 Jan 2100 00:00:00 GMT")
    with pytest.raises(TransientError) as info:
        await adapter("anthropic", sim.base_url, client).complete(CompletionRequest("x"), timeout=5)
    assert info.value.reason == "overloaded"
    assert info.value.retry_after is not None and info.value.retry_after > 3600


@pytest.mark.parametrize("kind", KINDS)
async def test_a_slow_stream_is_bounded_as_a_whole(sims, client, kind):
    # Every token arrives well within any read timeout, but all of them take ~2 s.
    sim = sims[kind]
    long_text = " ".join(f"w{i}" for i in range(40))
    sim.behavior = Behavior(text=long_text, tokens_per_second=20)
    with pytest.raises(TransientError) as info:
        await run(adapter(kind, sim.base_url, client), STREAM, CompletionRequest("hi"), 0.3)
    assert info.value.reason == "timeout"
    assert long_text.startswith(info.value.partial_text)


@pytest.mark.parametrize("kind", ["anthropic", "openai", "gemini"])  # Ollama takes no key
async def test_wrong_key_is_an_auth_failure_and_never_shown(sims, client, kind):
    sim = sims[kind]
    sim.behavior = Behavior(text=TEXT)
    env = {name: "sk-wrong-canary-55aa" for name in ENV}
    provider = create_provider(
        ProviderConfig(f"wire-{kind}", kind, "m-1", base_url=sim.base_url), client, env
    )
    status = 400 if kind == "gemini" else 401  # Gemini: 400 INVALID_ARGUMENT, API_KEY_INVALID
    with pytest.raises(ProviderUnavailable) as info:
        await provider.complete(CompletionRequest("hi"), timeout=5)
    assert (info.value.status, info.value.reason) == (status, "auth")
    assert "sk-wrong-canary-55aa" not in str(info.value) + repr(info.value)
    health = await provider.health()
    assert (health.ok, health.error_class, health.status) == (False, ErrorClass.PROVIDER, status)


# --- connections -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_refused_connection(client, kind):
    provider = adapter(kind, refused_url(), client)
    with pytest.raises(TransientError) as info:
        await provider.complete(CompletionRequest("hi"), timeout=5)
    assert info.value.reason == "connect"
    with pytest.raises(TransientError) as info:
        await run(provider, STREAM, CompletionRequest("hi"))
    assert info.value.reason == "connect"
    health = await provider.health()
    assert (health.ok, health.error_class) == (False, ErrorClass.TRANSIENT)


async def test_provider_coming_back_on_the_same_url(client):
    with Simulator("openai", Behavior(text=TEXT), api_key=KEY) as sim:
        provider = adapter("openai", sim.base_url, client)
        assert (await provider.complete(CompletionRequest("hi"), timeout=5)).text == TEXT
        sim.stop()
        with pytest.raises(TransientError) as info:
            await provider.complete(CompletionRequest("hi"), timeout=5)
        assert info.value.reason == "connect"
        sim.start()
        assert (await provider.complete(CompletionRequest("hi"), timeout=5)).text == TEXT


async def test_cancelling_a_stream_propagates_and_the_client_stays_usable(sims, client):
    sim = sims["ollama"]
    sim.behavior = Behavior(text=" ".join(["tok"] * 50), tokens_per_second=5)
    provider = adapter("ollama", sim.base_url, client)
    first = asyncio.Event()

    async def consume():
        async for event in provider.stream(CompletionRequest("hi"), timeout=30):
            if isinstance(event, TextDelta):
                first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    sim.behavior = Behavior(text=TEXT)
    assert (await provider.complete(CompletionRequest("hi"), timeout=5)).text == TEXT


# --- health -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_health(sims, client, kind):
    sim = sims[kind]
    sim.behavior = Behavior(text=TEXT)
    provider = adapter(kind, sim.base_url, client)
    before = sim.count
    result = await provider.health()
    assert (result.ok, result.status, result.error) == (True, 200, None)
    assert sim.requests[-1].method == "GET"
    assert sim.count == before + 1
    sim.behavior = Behavior(health_status=503)
    result = await provider.health()
    assert (result.ok, result.error_class, result.status) == (False, ErrorClass.TRANSIENT, 503)
    sim.behavior = Behavior(text=TEXT)
    deep = await provider.health(deep=True)
    assert deep.ok
    assert sim.requests[-1].method == "POST"


@pytest.mark.parametrize("kind", KINDS)
async def test_a_finished_stream_hands_its_connection_back_to_the_pool(kind: str) -> None:
    """A consumer that stops at StreamEnd (as the router does) must leave the connection
    idle and reusable: otherwise every stream pays a new connection (a TLS handshake)."""
    key = None if kind == "ollama" else KEY  # Ollama has no auth
    with Simulator(kind, Behavior(text=TEXT), api_key=key) as sim:
        client = make_client()
        try:
            provider = create_provider(
                ProviderConfig(name=kind, kind=kind, model="m", base_url=sim.base_url),
                client,
                ENV,
            )
            for _ in range(5):
                events = provider.stream(CompletionRequest("hi"), timeout=5).__aiter__()
                async for event in events:
                    if isinstance(event, StreamEnd):
                        break
                await events.aclose()
            transport = client._transport  # type: ignore[attr-defined]
            assert transport.open_connections == 1
            assert transport.idle_connections == 1
        finally:
            await client.aclose()


# --- rate limits, continuation refusals ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["anthropic", "openai"])  # Gemini and Ollama send none
@pytest.mark.parametrize("streamed", [WHOLE, STREAM], ids=["whole", "stream"])
async def test_ratelimit_headers_reach_the_answer(sims, client, kind, streamed):
    sims[kind].behavior = Behavior(
        text=TEXT, remaining_requests=41, remaining_tokens=9000, requests_reset=2, tokens_reset=90
    )
    before = time.time()
    _, events = await run(
        adapter(kind, sims[kind].base_url, client), streamed, CompletionRequest("hi")
    )
    limit = events[-1].ratelimit
    assert limit is not None
    assert (limit.remaining_requests, limit.remaining_tokens) == (41, 9000)
    assert before + 1 <= (limit.requests_reset_at or 0) <= time.time() + 3
    assert before + 89 <= (limit.tokens_reset_at or 0) <= time.time() + 91


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
async def test_a_429_without_retry_after_waits_for_the_reported_reset(sims, client, kind):
    sims[kind].behavior = Behavior(statuses=[429], remaining_requests=0, requests_reset=30)
    with pytest.raises(TransientError) as info:
        await run(adapter(kind, sims[kind].base_url, client), STREAM, CompletionRequest("hi"))
    exc = info.value
    assert (exc.status, exc.reason) == (429, "rate_limited")
    assert exc.ratelimit is not None and exc.ratelimit.remaining_requests == 0
    assert 28 <= (exc.retry_after or 0) <= 31


@pytest.mark.parametrize("kind", ["ollama", "gemini"])
async def test_dialects_without_ratelimit_headers_report_none(sims, client, kind):
    sims[kind].behavior = Behavior(text=TEXT, remaining_requests=1)
    text, events = await run(
        adapter(kind, sims[kind].base_url, client), WHOLE, CompletionRequest("hi")
    )
    assert text == TEXT and events[-1].ratelimit is None


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("streamed", [WHOLE, STREAM], ids=["whole", "stream"])
async def test_a_refused_prefill_is_a_request_error_and_instruct_is_taken(
    sims, client, kind, streamed
):
    sim = sims[kind]
    sim.behavior = Behavior(text=" three four", fault="reject_prefill")
    provider = adapter(kind, sim.base_url, client)
    prefill = CompletionRequest("Count", assistant_prefix="One two", continuation="prefill")
    with pytest.raises(InvalidRequest) as info:
        await run(provider, streamed, prefill)
    assert (info.value.status, info.value.reason) == (400, "prefill_unsupported")
    instruct = CompletionRequest("Count", assistant_prefix="One two", continuation="instruct")
    text, _ = await run(provider, streamed, instruct)
    assert text == " three four"
    turns = sim.requests[-1].json["contents" if kind == "gemini" else "messages"]
    assert [t["role"] for t in turns[-3:]] == (
        ["user", "model", "user"] if kind == "gemini" else ["user", "assistant", "user"]
    )
    if kind in VALIDATORS:
        assert not [e.message for e in VALIDATORS[kind].iter_errors(sim.requests[-1].json)]


async def test_anthropic_simulator_still_takes_the_1x_headers(sims):
    """Clients on SDK 1.x send x-api-key and 2023-06-01: the simulator takes both lines."""
    sim = sims["anthropic"]
    sim.behavior = Behavior(text=TEXT)
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient() as http:
        old = await http.post(
            sim.base_url + "/v1/messages",
            json=body,
            headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
        )
        new = await http.post(
            sim.base_url + "/v1/messages",
            json=body,
            headers={"authorization": f"Bearer {KEY}", "anthropic-version": "2026-10-21"},
        )
    assert old.status_code == new.status_code == 200
