"""The gateway over real HTTP on 127.0.0.1: routes, model routing, headers, limits, auth,
metrics, readiness, the access log, background probes and graceful shutdown. Providers are
the loopback simulators; the gateway runs on uvicorn in a thread (or as ``failover serve``).

The fixtures here (``gateway``) are shared by tests/test_serve_sdk.py.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import FAILOVER, SIM_KEY, SIM_KEY_ENV, TEST_SECTIONS, provider

from failover_cli.clock import VirtualClock
from failover_cli.config import parse_config
from failover_cli.errors import ConfigError
from failover_cli.serve.accesslog import AccessLog
from failover_cli.serve.app import YOUNG_THRESHOLD, Gateway
from failover_cli.serve.auth import GatewayKeys, digest, load_keys, presented_key
from failover_cli.serve.limits import Admission, RateLimiter
from failover_cli.serve.server import connection_limit, uvicorn_options
from failover_cli.sim import Behavior

uvicorn = pytest.importorskip("uvicorn")

START_TIMEOUT = 10.0
OPENAI = "/v1/chat/completions"
ANTHROPIC = "/v1/messages"


def chat(text: str = "Hi", model: str = "default", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def anthropic_body(text: str = "Hi", model: str = "default", **extra: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": text}],
            **extra}  # fmt: skip


@dataclass
class Running:
    """A gateway serving on 127.0.0.1 in a thread."""

    app: Gateway
    url: str
    log: io.StringIO
    server: Any
    thread: threading.Thread

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, **kw)

    def post(self, path: str, body: Any, **kw: Any) -> httpx.Response:
        with self.client() as c:
            return c.post(path, json=body, **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        with self.client() as c:
            return c.get(path, **kw)

    def log_text(self) -> str:
        """The access log so far, once its writer thread has written what is queued."""
        assert self.app.log.flush(), "the access log writer did not catch up"
        return self.log.getvalue()

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_text().splitlines()]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(START_TIMEOUT)


def config_text(*providers: dict[str, Any], **sections: Any) -> str:
    return yaml.safe_dump({"providers": list(providers), **TEST_SECTIONS, **sections})


def serve_in_thread(app: Gateway, log: io.StringIO, max_connections: int | None = None) -> Running:
    """``app`` on uvicorn with the options ``failover serve`` uses, in a thread."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    options = uvicorn_options("127.0.0.1", port, 2, "asyncio", max_connections)
    config = uvicorn.Config(app, **{**options, "factory": False})
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the gateway did not start")
        time.sleep(0.01)  # waiting for the port, not proving timing
    return Running(app, f"http://127.0.0.1:{port}", log, server, thread)


@pytest.fixture
def gateway() -> Iterator[Callable[..., Running]]:
    """``gateway(*providers, keys=None, env=None, bodies=False, **sections)`` starts one."""
    started: list[Running] = []

    def start(
        *providers: dict[str, Any],
        keys: GatewayKeys | None = None,
        env: dict[str, str] | None = None,
        bodies: bool = False,
        router_options: dict[str, Any] | None = None,
        **sections: Any,
    ) -> Running:
        cfg = parse_config(config_text(*providers, **sections))
        log = io.StringIO()
        app = Gateway(cfg, env={SIM_KEY_ENV: SIM_KEY, **(env or {})}, keys=keys,
                      access_log=AccessLog(log, bodies=bodies),
                      router_options=router_options)  # fmt: skip
        running = serve_in_thread(app, log)
        started.append(running)
        return running

    yield start
    for r in started:
        r.stop()


# --- plain endpoints -----------------------------------------------------------------------


def test_probe_endpoints(gateway, sim):
    gw = gateway(provider("a", sim("openai")))
    assert gw.get("/").status_code == 200
    with gw.client() as c:
        head = c.head("/")
        assert head.status_code == 200 and head.content == b""
    assert gw.get("/healthz").json() == {"status": "ok"}
    ready = gw.get("/readyz")
    assert ready.status_code == 200 and ready.json()["providers"] == {"a": "closed"}


def test_unknown_path_is_404_in_the_clients_format(gateway, sim):
    gw = gateway(provider("a", sim("openai")))
    r = gw.get("/v1/nothing")
    assert r.status_code == 404 and "message" in r.json()["error"]
    r = gw.get("/v1/nothing", headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 404 and r.json()["type"] == "error"
    r = gw.get(OPENAI)
    assert r.status_code == 405


def test_models_lists_aliases_and_providers(gateway, sim):
    s = sim("openai")
    gw = gateway(provider("a", s), provider("b", s), models={"fast": ["b", "a"]})
    r = gw.get("/v1/models").json()
    assert r["object"] == "list"
    assert [m["id"] for m in r["data"]] == ["fast", "a", "b"]
    r = gw.get("/v1/models", headers={"anthropic-version": "2023-06-01"}).json()
    assert [m["id"] for m in r["data"]] == ["fast", "a", "b"] and r["has_more"] is False


# --- bad requests --------------------------------------------------------------------------


def test_malformed_json_is_400_in_each_shape(gateway, sim):
    gw = gateway(provider("a", sim("openai")))
    r = gw.post(OPENAI, None, content=b"{not json")
    assert r.status_code == 400 and r.json()["error"]["message"]
    r = gw.post(ANTHROPIC, None, content=b"{not json")
    assert r.status_code == 400 and r.json()["type"] == "error"
    r = gw.post(OPENAI, {"model": "default", "messages": "nope"})
    assert r.status_code == 400


def test_a_declared_body_over_the_limit_is_refused_before_it_is_sent(gateway, sim):
    """A Content-Length past max_body_bytes is a 413 at once: the client is not kept until
    the body timeout (30 s) for a body it has not sent."""
    gw = gateway(provider("a", sim("openai")), serve={"max_body_bytes": 2000})
    host, port = gw.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n"
        sock.sendall(head + b"Content-Type: application/json\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)  # a timeout (5 s) here fails the test
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413") and b"2000" in body


def test_body_and_message_limits(gateway, sim):
    gw = gateway(provider("a", sim("openai")), serve={"max_body_bytes": 2000, "max_messages": 2})
    r = gw.post(OPENAI, chat("x" * 5000))
    assert r.status_code == 413 and "2000" in r.json()["error"]["message"]
    msgs = [{"role": "user", "content": "hi"}] * 3
    r = gw.post(OPENAI, {"model": "default", "messages": msgs})
    assert r.status_code == 400
    assert gw.post(OPENAI, chat()).status_code == 200


# --- answers, headers and routing ----------------------------------------------------------


def test_answer_carries_failover_headers(gateway, sim):
    gw = gateway(provider("a", sim("openai")))
    r = gw.post(OPENAI, chat())
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "Hello from the failover simulator."
    assert r.headers["x-failover-provider"] == "a"
    assert r.headers["x-failover-model"] == "a-model"
    assert r.headers["x-failover-attempts"] == "1"
    assert float(r.headers["x-failover-overhead-ms"]) >= 0
    r = gw.post(ANTHROPIC + "?beta=true", anthropic_body())
    assert r.status_code == 200 and r.json()["type"] == "message"
    assert r.headers["x-failover-provider"] == "a"


def test_the_router_takes_the_request_as_the_parser_validated_it(gateway, sim, monkeypatch):
    """Each request is checked and built once, by the wire parser: the router does not
    build it again from the same arguments (streamed or not, with provider fields)."""
    gw = gateway(provider("a", sim("openai")))
    import failover_cli.router as router_module

    def built_again(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the router built the request a second time")

    monkeypatch.setattr(router_module, "build_request", built_again)
    r = gw.post(OPENAI, chat(seed=7, stop="END"))
    assert r.status_code == 200, r.text
    with gw.client() as c, c.stream("POST", OPENAI, json=chat(stream=True)) as s:
        assert s.status_code == 200 and "[DONE]" in s.read().decode()
    r = gw.post(ANTHROPIC, anthropic_body(system="Be brief.", stop_sequences=["END"]))
    assert r.status_code == 200 and r.json()["type"] == "message", r.text


def test_failover_when_first_is_down_shows_attempts(gateway, sim):
    down = sim("openai", Behavior(statuses=[500] * 10))
    gw = gateway(provider("a", down), provider("b", sim("anthropic")))
    r = gw.post(OPENAI, chat())
    assert r.status_code == 200
    assert r.headers["x-failover-provider"] == "b"
    assert int(r.headers["x-failover-attempts"]) == 3  # two tries of a, then b
    assert float(r.headers["x-failover-overhead-ms"]) > 0


def test_a_silent_primary_costs_a_long_whole_answer_its_first_token_limit(gateway, sim):
    """A whole answer that may take long to write (an OpenAI client's request with no
    max_tokens: 4096) is read from the chain as a stream: a provider that accepts the request
    and never answers costs the first-token limit, not the time a 4096-token answer could
    take (first_token_timeout + 4096 / 25 s, which the whole-attempt timeout caps here)."""
    silent = sim("openai", Behavior(fault="hang"))
    backup = sim("anthropic")
    gw = gateway(provider("a", silent, first_token_timeout=0.3, timeout=8),
                 provider("b", backup, first_token_timeout=0.3, timeout=8))  # fmt: skip
    began = time.monotonic()
    r = gw.post(OPENAI, chat())
    took = time.monotonic() - began
    assert r.status_code == 200 and r.headers["x-failover-provider"] == "b", r.text
    assert r.json()["choices"][0]["message"]["content"] and r.json()["object"] == "chat.completion"
    assert [q.json.get("stream") for q in silent.requests] == [True]
    assert took < 4  # the whole-attempt timeout (8 s) would have run out first
    short = gw.post(OPENAI, chat(max_tokens=5))  # a short answer is read whole, as asked
    assert short.status_code == 200
    assert backup.requests[-1].json.get("stream") is False


def _nested(depth: int) -> str:
    """A tool whose parameters schema nests ``depth`` arrays, as JSON text."""
    items = '{"type":"array","items":' * depth + '{"type":"string"}' + "}" * depth
    schema = '{"type":"object","properties":{"x":' + items + "}}"
    return '[{"type":"function","function":{"name":"f","parameters":' + schema + "}}]"


HI = '[{"role":"user","content":"hi"}]'


@pytest.mark.parametrize(
    ("api", "raw", "field"),
    [
        (OPENAI, '{"model":"m","messages":[{"role":"user","content":"hi \\ud800"}]}',
         "messages[0].content"),
        (ANTHROPIC, '{"model":"m","max_tokens":9,"system":"be \\udfff","messages":' + HI + "}",
         "system"),
        (OPENAI, '{"model":"m","stop":["\\ud800"],"messages":' + HI + "}", "stop"),
        (OPENAI, '{"model":"m","tools":' + _nested(940) + ',"messages":' + HI + "}", "tools"),
        (ANTHROPIC, '{"model":"m","max_tokens":9,"fallbacks":["\\ud800"],"messages":' + HI
         + "}", "fallbacks"),
        (OPENAI, '{"model":"m","temperature":1' + "0" * 400 + ',"messages":' + HI + "}",
         "temperature"),
    ],
    ids=["lone surrogate", "lone surrogate, anthropic", "in a stop", "nested 940 deep",
         "in a message echoed", "a 401-digit temperature"],
)  # fmt: skip
def test_a_request_that_cannot_be_sent_on_is_a_400_and_opens_no_breaker(
    gateway, sim, api, raw, field
):
    """A string no API can take (a lone surrogate) or JSON nested deeper than any schema
    needs is the client's 400, in its own format and naming the field: it reaches no provider
    and counts against none (it used to open every breaker of the chain, or, echoed in an
    error, give a text/plain 500); so is a number too long to check (it was a 500)."""
    a, b = sim("openai"), sim("anthropic")
    gw = gateway(provider("a", a), provider("b", b))
    with gw.client() as c:
        r = c.post(api, content=raw.encode(), headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and field in error["message"], error
    assert a.requests == [] and b.requests == []
    assert gw.get("/readyz").json()["providers"] == {"a": "closed", "b": "closed"}
    assert gw.post(OPENAI, chat()).status_code == 200


def test_all_down_is_503_with_retry_after(gateway, sim):
    gw = gateway(provider("a", sim("openai", Behavior(statuses=[500] * 10))))
    r = gw.post(OPENAI, chat())
    assert r.status_code == 503
    assert int(r.headers["retry-after"]) >= 1
    assert r.headers["x-failover-attempts"] == "2"
    r = gw.post(ANTHROPIC, anthropic_body(), headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 503 and r.json()["type"] == "error"


def test_stream_failure_before_first_byte_is_a_proper_status(gateway, sim):
    gw = gateway(provider("a", sim("openai", Behavior(statuses=[500] * 10))))
    r = gw.post(OPENAI, chat(stream=True))
    assert r.status_code == 503
    assert r.headers["content-type"].startswith("application/json")


def test_stream_headers_name_the_provider_that_streams(gateway, sim):
    down = sim("openai", Behavior(statuses=[500] * 10))
    gw = gateway(provider("a", down), provider("b", sim("openai")))
    with gw.client() as c, c.stream("POST", OPENAI, json=chat(stream=True)) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-failover-provider"] == "b"
        assert r.headers["x-failover-model"] == "b-model"
        assert r.headers["x-failover-attempts"] == "3"
        body = r.read().decode()
    assert "Hello" in body or "failover" in body


def test_stream_headers_name_the_winner_of_a_hedge_not_the_last_started(gateway, sim):
    """With hedging, the second provider starts while the first is slow to its first token;
    when the first still wins, the headers name it (the hedge started last, and lost)."""
    first = sim("openai", Behavior(text="from the first", ttft=0.4))
    hedge = sim("openai", Behavior(text="from the hedge", ttft=5))
    gw = gateway(provider("a", first), provider("b", hedge), routing={"hedge_after_ms": 200})
    with gw.client() as c, c.stream("POST", OPENAI, json=chat(stream=True)) as r:
        assert r.status_code == 200
        body = r.read().decode()
    assert len(hedge.requests) == 1  # the hedge was started...
    assert "first" in body and "hedge" not in body  # ...and the first provider won
    assert r.headers["x-failover-provider"] == "a"
    assert r.headers["x-failover-model"] == "a-model"
    # Overhead: until the winner's attempt began (at once), not the hedge's (after 200 ms).
    assert float(r.headers["x-failover-overhead-ms"]) < 150


def test_stream_headers_skip_a_provider_without_its_key(gateway, sim):
    gw = gateway(provider("a", sim("anthropic"), api_key_env="FAILOVER_TEST_UNSET"),
                 provider("b", sim("openai")))  # fmt: skip
    with gw.client() as c, c.stream("POST", OPENAI, json=chat(stream=True)) as r:
        assert r.headers["x-failover-provider"] == "b"
        assert r.headers["x-failover-attempts"] == "1"
        r.read()
    r = gw.post(OPENAI, chat())
    assert r.headers["x-failover-provider"] == "b" and r.headers["x-failover-attempts"] == "1"
    ready = gw.get("/readyz").json()
    assert ready["ready"] is True and ready["providers"]["a"] == "closed"


def test_alias_routes_in_its_own_order(gateway, sim):
    a, b = sim("openai"), sim("openai")
    gw = gateway(provider("a", a), provider("b", b), models={"fast": ["b", "a"]})
    r = gw.post(OPENAI, chat(model="fast"))
    assert r.headers["x-failover-provider"] == "b"
    assert (a.count, b.count) == (0, 1)


def test_provider_name_goes_first_with_the_chain_behind(gateway, sim):
    a = sim("openai")
    b = sim("openai", Behavior(statuses=[500] * 10))
    gw = gateway(provider("a", a), provider("b", b))
    r = gw.post(OPENAI, chat(model="b"))
    assert r.headers["x-failover-provider"] == "a"
    assert b.count == 2 and a.count == 1  # b first (twice), then the default chain
    r = gw.post(OPENAI, chat(model="b-model"))  # a provider's configured model: the same
    assert b.count > 2


def test_unknown_model_default_or_rejected(gateway, sim):
    s = sim("openai")
    gw = gateway(provider("a", s))
    assert gw.post(OPENAI, chat(model="gpt-9-ultra")).status_code == 200
    gw = gateway(provider("a", s), serve={"unknown_model": "reject"})
    r = gw.post(OPENAI, chat(model="gpt-9-ultra"))
    assert r.status_code == 404 and "gpt-9-ultra" in r.json()["error"]["message"]
    assert gw.post(OPENAI, chat(model="a")).status_code == 200


def test_providers_header_overrides_and_is_validated(gateway, sim):
    a, b = sim("openai"), sim("openai")
    gw = gateway(provider("a", a), provider("b", b))
    r = gw.post(OPENAI, chat(), headers={"x-failover-providers": "b"})
    assert r.headers["x-failover-provider"] == "b" and a.count == 0
    r = gw.post(OPENAI, chat(), headers={"x-failover-providers": "b, nope"})
    assert r.status_code == 400 and "nope" in r.json()["error"]["message"]


# --- security --------------------------------------------------------------------------------


def test_gateway_keys_are_required_when_configured(gateway, sim):
    keys = GatewayKeys([digest("k-one"), digest("k-two")])
    gw = gateway(provider("a", sim("openai")), keys=keys)
    assert gw.post(OPENAI, chat()).status_code == 401
    assert gw.post(OPENAI, chat(), headers={"authorization": "Bearer wrong"}).status_code == 401
    assert gw.post(OPENAI, chat(), headers={"authorization": "Bearer k-one"}).status_code == 200
    assert gw.post(OPENAI, chat(), headers={"x-api-key": "k-two"}).status_code == 200
    assert gw.get("/v1/models").status_code == 401
    assert gw.get("/healthz").status_code == 200  # probes of load balancers need no key
    lines = gw.log_lines()
    assert all("k-one" not in json.dumps(line) for line in lines)
    assert lines[-1]["key"] == digest("k-two").hex()[:12]


def test_upstream_key_never_reaches_the_client_or_log(gateway, sim):
    gw = gateway(provider("a", sim("openai", Behavior(statuses=[401] * 5))))
    r = gw.post(OPENAI, chat())
    assert r.status_code >= 400
    assert SIM_KEY not in r.text and SIM_KEY not in gw.log_text()
    assert SIM_KEY not in gw.get("/metrics").text


def test_clients_own_provider_keys_are_never_forwarded(gateway, sim):
    up = sim("anthropic")
    gw = gateway(provider("a", up))
    client_keys = {"authorization": "Bearer sk-client-own", "x-api-key": "sk-client-own-2"}
    assert gw.post(ANTHROPIC, anthropic_body(), headers=client_keys).status_code == 200
    (sent,) = up.requests
    assert SIM_KEY in sent.headers.get("x-api-key", sent.headers.get("authorization", ""))
    assert "sk-client-own" not in json.dumps(sent.headers)


def test_load_keys_from_env_and_file(tmp_path: Path):
    f = tmp_path / "keys"
    f.write_text(f"# ops\n{digest('filekey').hex()}\n")
    keys = load_keys("GW_KEYS", str(f), {"GW_KEYS": "a, b\nc"})
    assert keys is not None and len(keys) == 4
    assert keys.check("c") and keys.check("filekey") and not keys.check("d")
    assert load_keys(None, None, {}) is None
    f.write_text("not-a-digest\n")
    with pytest.raises(ConfigError, match=r":1: expected a sha256"):
        load_keys(None, str(f), {})
    with pytest.raises(ConfigError, match=r"\$GW_KEYS"):
        load_keys("GW_KEYS", None, {})
    f.write_text(f"{digest('planted').hex()}\n")
    f.chmod(0o666)  # anyone could add a key of their own
    with pytest.raises(ConfigError, match=r"serve\.keys_file: cannot read"):
        load_keys(None, str(f), {})
    assert presented_key("Bearer  tok ", None) == "tok"
    assert presented_key(None, "xk") == "xk"
    assert presented_key("Basic abc", None) is None


# --- limits ----------------------------------------------------------------------------------


async def test_admission_queues_then_refuses():
    adm = Admission(max_concurrency=1, max_queue=1)
    assert await adm.acquire()
    waiter = asyncio.ensure_future(adm.acquire())
    await asyncio.sleep(0)
    assert adm.waiting == 1
    assert not await adm.acquire()  # the queue is full: refused at once
    adm.release()
    assert await waiter and adm.active == 1 and adm.waiting == 0
    cancelled = asyncio.ensure_future(adm.acquire())
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    adm.release()
    assert adm.active == 0 and adm.waiting == 0


async def test_try_acquire_takes_only_a_free_slot_nobody_waits_for():
    adm = Admission(max_concurrency=1, max_queue=1)
    assert adm.try_acquire() and adm.active == 1
    assert not adm.try_acquire()  # busy: refused without waiting
    waiter = asyncio.ensure_future(adm.acquire())
    await asyncio.sleep(0)
    adm.release()  # handed to the waiter, not freed
    assert not adm.try_acquire()
    assert await waiter and adm.active == 1
    adm.release()
    assert adm.active == 0 and adm.try_acquire()


def test_rate_limiter_refills_on_the_clock():
    clock = VirtualClock(1000.0)
    rl = RateLimiter(60, burst=2, clock=clock)
    assert rl.take("k") is None and rl.take("k") is None
    wait = rl.take("k")
    assert wait == pytest.approx(1.0)
    assert rl.take("other") is None  # per key
    clock.advance(1.0)
    assert rl.take("k") is None


def test_rate_limit_is_429_with_retry_after(gateway, sim):
    gw = gateway(provider("a", sim("openai")), serve={"rate_per_minute": 2})
    assert gw.post(OPENAI, chat()).status_code == 200
    assert gw.post(OPENAI, chat()).status_code == 200
    r = gw.post(OPENAI, chat())
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


def test_concurrency_limit_is_429_when_the_queue_is_full(gateway, sim):
    slow = sim("openai", Behavior(text="one two three four five six", tokens_per_second=4))
    gw = gateway(provider("a", slow), serve={"max_concurrency": 1, "max_queue": 0})
    with gw.client() as c, c.stream("POST", OPENAI, json=chat(stream=True)) as held:
        assert held.status_code == 200  # in flight, holding the only slot
        r = gw.post(OPENAI, chat())
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        held.read()
    assert gw.post(OPENAI, chat()).status_code == 200


def test_a_client_that_leaves_frees_its_slot_and_upstream_call(gateway, sim):
    silent = sim("openai", Behavior(latency=30))  # answers after 30 s
    gw = gateway(provider("a", silent), serve={"max_concurrency": 1, "max_queue": 0})
    with pytest.raises(httpx.ReadTimeout), httpx.Client(base_url=gw.url, timeout=0.5) as c:
        c.post(OPENAI, json=chat())  # the client gives up and closes its connection
    deadline = time.monotonic() + 10
    while not gw.log.getvalue():
        assert time.monotonic() < deadline, "the gateway never noticed the client left"
        time.sleep(0.02)  # polling for the log line, not proving timing
    (line,) = gw.log_lines()
    assert line["status"] == 499
    assert gw.app.admission.active == 0  # the only slot is free again


# --- metrics, readiness, log -----------------------------------------------------------------


def test_metrics_count_requests_attempts_and_breakers(gateway, sim):
    down = sim("openai", Behavior(statuses=[500] * 10))
    gw = gateway(provider("a", down), provider("b", sim("openai")))
    gw.post(OPENAI, chat())
    text = gw.get("/metrics").text
    assert 'failover_requests_total{api="openai",model="default",status="200"} 1.0' in text
    assert 'failover_attempts_total{error_class="transient",outcome="failed",provider="a"}' in text
    assert 'failover_failovers_total{error_class="transient",provider="a"} 1.0' in text
    assert 'failover_breaker_state{provider="b"} 0.0' in text
    assert "failover_request_duration_seconds_bucket" in text
    assert 'failover_tokens_total{direction="output",provider="b"}' in text


def test_readyz_is_503_when_every_breaker_is_open(gateway, sim):
    bad = Behavior(statuses=[500] * 20)
    gw = gateway(provider("a", sim("openai", bad)), provider("b", sim("openai", bad)),
                 breaker={"failure_threshold": 1, "cooldown": 600})  # fmt: skip
    assert gw.post(OPENAI, chat()).status_code == 503
    r = gw.get("/readyz")
    assert r.status_code == 503 and r.json() == {
        "ready": False, "providers": {"a": "open", "b": "open"}
    }  # fmt: skip
    assert 'failover_breaker_state{provider="a"} 2.0' in gw.get("/metrics").text


def test_access_log_has_the_route_but_no_prompt(gateway, sim):
    gw = gateway(provider("a", sim("openai")))
    gw.post(OPENAI, chat("my secret prompt"))
    (line,) = gw.log_lines()
    assert line["status"] == 200 and line["provider"] == "a" and line["attempts"] == 1
    assert line["model"] == "default" and line["input_tokens"] > 0 and "latency_ms" in line
    assert "my secret prompt" not in json.dumps(line)
    gw = gateway(provider("a", sim("openai")), bodies=True)
    gw.post(OPENAI, chat("my secret prompt"))
    assert "my secret prompt" in gw.log_lines()[0]["request_body"]


def test_background_probe_notices_recovery_without_a_request(gateway, sim):
    a = sim("openai")
    a.stop()  # refused: a network-level failure the prober can see the end of
    breaker = {"failure_threshold": 1, "cooldown": 0.1, "cooldown_ratio": 10}
    gw = gateway(provider("a", a), provider("b", sim("openai")), breaker=breaker)

    def state() -> str:
        return gw.get("/readyz").json()["providers"]["a"]

    def wait_for(check: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 10
        while not check():
            assert time.monotonic() < deadline, "the breaker never changed"
            time.sleep(0.02)  # polling for a state change, not proving timing

    assert gw.post(OPENAI, chat()).headers["x-failover-provider"] == "b"  # a trips
    wait_for(lambda: state() == "half_open")  # the first spell is one short cooldown
    # The half-open probe fails: the spell grows to ten times the outage so far, much longer
    # than the probe interval (the base cooldown).
    assert gw.post(OPENAI, chat()).headers["x-failover-provider"] == "b"
    assert state() == "open"
    a.start()
    wait_for(lambda: state() != "open")
    assert a.requests and all(r.method == "GET" for r in a.requests)  # health calls only
    assert gw.post(OPENAI, chat()).headers["x-failover-provider"] == "a"


# --- the command -----------------------------------------------------------------------------


class ServeProcess:
    """``failover serve --port 0`` in a child process: the port it announced, and its stderr
    (read by a thread, so the child never blocks on a full pipe)."""

    ANNOUNCED = re.compile(r"serving on http://127\.0\.0\.1:(\d+) ")

    def __init__(self, args: list[str], sandbox: Any, *, stdout: int = subprocess.DEVNULL,
                 timeout: float = START_TIMEOUT) -> None:  # fmt: skip
        self.proc = subprocess.Popen(
            [*FAILOVER, "serve", "--port", "0", *args], env=sandbox.env, cwd=sandbox.root,
            stdout=stdout, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.stderr: list[str] = []
        self._announced = threading.Event()
        threading.Thread(target=self._drain, daemon=True).start()
        try:
            if not self._announced.wait(timeout):
                raise RuntimeError(f"failover serve announced no port: {self.stderr!r}")
            self._wait_accepting(timeout)
        except BaseException:
            self.proc.kill()
            self.proc.wait()
            raise

    def _drain(self) -> None:
        for line in self.proc.stderr:  # type: ignore[union-attr]
            self.stderr.append(line)
            if not self._announced.is_set() and (m := self.ANNOUNCED.search(line)):
                self.port = int(m.group(1))
                self._announced.set()
        self._announced.set()  # exited without announcing: the waiter sees no port

    def _wait_accepting(self, timeout: float) -> None:
        """Until the port accepts connections: it is bound (so no one else's) once announced,
        but the server listens only when its workers have started."""
        if not hasattr(self, "port"):
            raise RuntimeError(f"failover serve exited: {''.join(self.stderr)!r}")
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"failover serve exited: {''.join(self.stderr)!r}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def test_serve_refuses_other_addresses_without_keys(sandbox, sim):
    sandbox.config(provider("a", sim("openai")))
    r = sandbox.run("serve", "--host", "0.0.0.0", "--port", "1")
    assert r.returncode == 2
    assert "without gateway keys" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_serve_on_a_port_in_use_says_so_in_one_line_before_announcing_anything(sandbox, sim):
    sandbox.config(provider("a", sim("openai")))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = sandbox.run("serve", "--port", str(port))
    assert r.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "--port" in r.stderr
    assert "serving on" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_serve_on_port_0_announces_the_port_it_serves(sandbox, sim):
    sandbox.config(provider("a", sim("openai")))
    served = ServeProcess(["--access-log", "off"], sandbox)
    try:
        assert served.port != 0
        r = httpx.post(served.url + OPENAI, json=chat(), timeout=10)
        assert r.status_code == 200 and r.headers["x-failover-provider"] == "a"
    finally:
        served.proc.terminate()
        assert served.proc.wait(15) == 0


@pytest.mark.parametrize("takes_target", [False, True])
def test_the_workers_supervisor_is_built_for_either_uvicorn_signature(monkeypatch, takes_target):
    """uvicorn 0.52 dropped ``Multiprocess``'s ``target``; older versions require it."""
    import uvicorn.supervisors

    from failover_cli.serve import server

    made: dict[str, Any] = {}

    class Old:
        def __init__(self, config: Any, target: Any, sockets: list[Any]) -> None:
            made.update(config=config, target=target, sockets=sockets)

    class New:
        def __init__(self, config: Any, sockets: list[Any]) -> None:
            made.update(config=config, sockets=sockets)

    monkeypatch.setattr(uvicorn.supervisors, "Multiprocess", Old if takes_target else New)
    config = uvicorn.Config("failover_cli.serve.server:app_factory", factory=True, workers=2)
    with socket.socket() as listener:
        server.supervisor(config, listener)
        assert made["config"] is config and made["sockets"] == [listener]
        assert ("target" in made) is takes_target
        if takes_target:
            assert made["target"].__self__.config is config  # Server(config).run


def test_serve_without_the_extra_says_how_to_install(sandbox):
    code = (
        "import sys; sys.modules['uvicorn'] = None; "
        "from failover_cli.cli.commands import run; run(['serve'])"
    )
    r = subprocess.run([sys.executable, "-c", code],
                       capture_output=True, text=True, env=sandbox.env, timeout=30)  # fmt: skip
    assert r.returncode == 2 and "pip install 'failover[serve]'" in r.stderr


def test_sigterm_lets_an_inflight_stream_finish(sandbox, sim):
    slow = sim("openai", Behavior(text="a b c d e f g h", tokens_per_second=10))
    sandbox.config(provider("a", slow))
    served = ServeProcess(["--grace", "10"], sandbox, stdout=subprocess.PIPE)
    proc = served.proc
    try:
        with (
            httpx.Client(base_url=served.url, timeout=10) as c,
            c.stream("POST", OPENAI, json=chat(stream=True)) as r,
        ):
            assert r.status_code == 200
            it = r.iter_bytes()
            first = next(it)
            proc.send_signal(signal.SIGTERM)
            rest = b"".join(it)
        body = (first + rest).decode()
        assert body.rstrip().endswith("data: [DONE]")
        assert proc.wait(15) == 0
        assert sandbox.state_path.exists()  # state flushed at shutdown
        log = [json.loads(x) for x in proc.stdout.read().splitlines() if x.strip()]  # type: ignore[union-attr]
        assert log and log[-1]["status"] == 200 and log[-1]["stream"] is True
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_connections_beyond_the_limit_are_turned_away_before_their_bodies(sim):
    """Clients holding half-sent bodies cannot pile up past the server's connection limit
    (uvicorn's ``limit_concurrency``: the connection that reaches it is answered 503)."""
    cfg = parse_config(config_text(provider("a", sim("openai"))))
    assert connection_limit(cfg.serve) > cfg.serve.max_concurrency + cfg.serve.max_queue
    app = Gateway(cfg, env={SIM_KEY_ENV: SIM_KEY}, access_log=AccessLog(io.StringIO()))
    running = serve_in_thread(app, io.StringIO(), max_connections=3)
    host, port = running.url.removeprefix("http://").split(":")
    connections = running.server.server_state.connections
    half_sent = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: "
                 b"application/json\r\ncontent-length: 100000\r\n\r\n{")  # fmt: skip
    opened: list[socket.socket] = []
    try:
        for _ in range(3):
            s = socket.create_connection((host, int(port)), timeout=5)
            opened.append(s)
            deadline = time.monotonic() + START_TIMEOUT
            while len(connections) < len(opened):  # the server has accepted it
                assert time.monotonic() < deadline, "the server did not accept the connection"
                time.sleep(0.01)
            s.sendall(half_sent)
        assert opened[-1].recv(200).startswith(b"HTTP/1.1 503 ")
        opened[0].settimeout(0.2)
        with pytest.raises(TimeoutError):  # the first two are still being read
            opened[0].recv(200)
    finally:
        for s in opened:
            s.close()
        deadline = time.monotonic() + START_TIMEOUT
        while httpx.get(f"{running.url}/healthz", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "the closed connections were not released"
            time.sleep(0.05)
        running.stop()


@pytest.mark.parametrize("freeze", [True, False])
def test_startup_freezes_the_heap_only_when_asked(freeze, sim):
    """``freeze_heap``: startup moves what it built to the collector's permanent generation,
    so a full collection under load walks only what requests made, and collects the young
    generation rarely. The collector stays on."""
    import gc

    cfg = parse_config(config_text(provider("gpt", sim("openai"))))
    app = Gateway(cfg, env={SIM_KEY_ENV: SIM_KEY}, freeze_heap=freeze)
    gc.unfreeze()
    thresholds = gc.get_threshold()
    try:
        asyncio.run(app.startup())
        assert (gc.get_freeze_count() > 0) is freeze
        assert gc.isenabled()
        assert app.router is not None and gc.is_tracked(app.router)
        # A frozen object is in no generation; by identity, since `in` would call others'
        # __eq__ (httpx's Headers iterates what it is compared with, and raised here)
        in_permanent = not any(o is app.router for o in gc.get_objects())
        assert in_permanent is freeze
        young, *older = gc.get_threshold()
        assert older == list(thresholds[1:])
        assert young == (max(thresholds[0], YOUNG_THRESHOLD) if freeze else thresholds[0])
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        asyncio.run(app.shutdown())


def test_the_served_gateway_freezes_its_heap(tmp_path, monkeypatch):
    from failover_cli.serve.server import Spec, build_app

    config = tmp_path / "failover.yaml"
    config.write_text(config_text(provider("gpt", "http://127.0.0.1:9", "openai")))
    monkeypatch.setenv(SIM_KEY_ENV, SIM_KEY)
    app = build_app(Spec(config=str(config), state=str(tmp_path / "state.json"), access_log=None))
    assert app.freeze_heap is True


def test_a_client_that_leaves_cancels_its_provider_call_and_frees_its_slot(gateway, sim):
    """The route is cancelled as soon as the client's connection closes, long before the
    provider would answer: the slot comes back and the log says 499."""
    gw = gateway(provider("slow", sim("openai", Behavior(latency=30.0)), timeout=60))
    host, port = gw.url.removeprefix("http://").split(":")
    body = json.dumps(chat()).encode()
    client = socket.create_connection((host, int(port)))
    client.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    deadline = time.monotonic() + 5
    while gw.app.admission.active == 0:  # the request is in flight
        assert time.monotonic() < deadline, "the request never took a slot"
        time.sleep(0.01)
    left = time.monotonic()
    client.close()
    while gw.app.admission.active:
        assert time.monotonic() < left + 5, "the slot was not given back"
        time.sleep(0.01)  # within 5 s, not the provider's 30 s
    (line,) = gw.log_lines()
    assert line["status"] == 499


async def _asgi_request(app: Gateway, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """One request straight through the ASGI app (no server, no client: nothing of theirs in
    the collector's way); the messages it sent."""
    data = json.dumps(body).encode()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 5000),
             "server": ("127.0.0.1", 8400),
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(data)).encode())]}  # fmt: skip
    inbox = [{"type": "http.request", "body": data, "more_body": False}]
    sent: list[dict[str, Any]] = []
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if inbox:
            return inbox.pop()
        await never.wait()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


@pytest.mark.parametrize("kind", ["openai", "anthropic", "ollama", "gemini"])
@pytest.mark.parametrize("stream", [False, True])
def test_requests_leave_no_garbage_for_the_collector(kind, stream):
    """A request, streamed or not, frees everything it made by reference counting: no
    reference cycle is left per request for the garbage collector to find (its pauses stall
    every request in flight), so that ``failover serve`` can collect rarely. The simulator
    runs in a process of its own: what it leaves is not the gateway's."""
    key = [] if kind == "ollama" else ["--api-key", SIM_KEY]  # Ollama takes no key
    command = [sys.executable, "-m", "failover_cli.sim", "--kind", kind, "--quiet", *key]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as simulator:
        try:
            assert simulator.stdout is not None
            url = simulator.stdout.readline().strip()
            _no_garbage_from_requests(kind, stream, url)
        finally:
            simulator.terminate()


def _no_garbage_from_requests(kind: str, stream: bool, url: str) -> None:
    import gc

    cfg = parse_config(config_text(provider("p", url, kind)))
    app = Gateway(cfg, env={SIM_KEY_ENV: SIM_KEY})
    path = ANTHROPIC if kind == "anthropic" else OPENAI  # each client API, a translation too
    body = (anthropic_body if kind == "anthropic" else chat)(stream=stream)

    async def main() -> int:
        await app.startup()
        try:
            for _ in range(3):  # first uses: imports, caches, pooled connections
                await _asgi_request(app, path, body)
            gc.collect()
            for _ in range(20):
                sent = await _asgi_request(app, path, body)
                assert sent[0]["status"] == 200
            return gc.collect()
        finally:
            await app.shutdown()

    enabled = gc.isenabled()
    gc.disable()
    try:
        assert asyncio.run(main()) == 0
    finally:
        if enabled:
            gc.enable()


async def test_a_call_that_ends_before_watch_after_never_reads_the_connection():
    """No watcher task for a quick call: ``receive`` is never called."""
    from failover_cli.serve import app as app_module

    reads: list[int] = []

    async def receive() -> dict[str, Any]:
        reads.append(1)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def quick() -> str:
        await asyncio.sleep(0)
        return "done"

    assert await app_module._unless_gone(receive, quick()) == "done"
    await asyncio.sleep(0)
    assert reads == []


async def test_a_client_that_leaves_during_a_long_call_cancels_it(monkeypatch):
    """Past WATCH_AFTER the connection is watched: a disconnect cancels the call, which
    sees the cancellation, and the caller gets ConnectionError."""
    from failover_cli.serve import app as app_module

    monkeypatch.setattr(app_module, "WATCH_AFTER", 0.0)
    left = asyncio.Event()
    cancelled = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await left.wait()
        return {"type": "http.disconnect"}

    async def long_call() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    task = asyncio.create_task(app_module._unless_gone(receive, long_call()))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not task.done()
    left.set()
    with pytest.raises(ConnectionError, match="client disconnected"):
        await task
    assert cancelled.is_set()


def test_the_gateway_writes_outcomes_to_the_store_at_its_own_interval(sim, monkeypatch):
    """A gateway writes its outcomes every FLUSH_INTERVAL (not the library router's 0.25 s:
    each write stalls the requests in flight), unless told otherwise."""
    from failover_cli.serve import app as app_module

    monkeypatch.setattr(app_module, "FLUSH_INTERVAL", 7.5)
    cfg = parse_config(config_text(provider("gpt", sim("openai"))))
    for options, expected in (({}, 7.5), ({"flush_interval": 0.1}, 0.1)):
        app = Gateway(cfg, env={SIM_KEY_ENV: SIM_KEY}, router_options=options)
        asyncio.run(app.startup())
        try:
            assert app.router is not None and app.router.flush_interval == expected
        finally:
            asyncio.run(app.shutdown())


def test_request_ids_are_distinct_within_a_process_and_across_a_fork():
    import os

    from failover_cli.serve.app import request_id

    ids = {request_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"req_[0-9a-f]{24}", i) for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first ids, then out
        os.close(read)
        os.write(write, " ".join(request_id() for _ in range(3)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    os.waitpid(pid, 0)
    assert len(child) == 3 and not child & (ids | {request_id() for _ in range(3)})
