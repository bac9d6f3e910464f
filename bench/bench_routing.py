"""What the routing layer costs: overhead, failover, stampede and streaming TTFT.

Every figure is measured against a baseline in the same run, against simulators running in
their own processes on 127.0.0.1, and reported as a median over several runs.

1. overhead: FailoverRouter.route vs a raw httpx.AsyncClient posting the same request to the
   same OpenAI-compatible simulator, sequentially and at concurrency 50. The baseline is the
   very client the router uses (``make_client()``, on failover's asyncio transport), so the
   difference is the routing layer alone; a stock ``httpx.AsyncClient`` (httpcore transport)
   is measured too, for what a user of plain httpx would see.
2. failover cost: added latency vs calling the secondary directly, when the primary refuses
   connections, answers 500, or has an open breaker; first request, the tripping request and
   later ones separately.
3. stampede: 50 concurrent first requests on a fresh router whose primary is dead, vs the same
   burst sent straight to the secondary; how many reached the dead primary.
1c. rich requests: a 10-message conversation with 5 tools and an image, routed, against the
   same body posted raw; its added cost beside the plain prompt's.
7. streaming: time to first token through router.stream vs raw httpx on the same SSE stream.

    python bench/bench_routing.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from _util import KEY, external_sim, machine, median, table

from failover_cli.config import Config
from failover_cli.providers import make_client
from failover_cli.retry import RetryPolicy
from failover_cli.router import FailoverRouter
from failover_cli.sim import refused_url
from failover_cli.types import AttemptStarted, BreakerTransition, ProviderConfig

PROMPT = "Say hello."
ENV = {"BENCH_KEY": KEY}
# A whole OpenAI answer, served by the in-process MockTransport of sections 1b and 1c.
OPENAI_ANSWER = json.dumps(
    {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there"},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }
).encode()


def link(name: str, url: str, kind: str = "openai") -> ProviderConfig:
    return ProviderConfig(
        name=name, kind=kind, model="gpt-4o-mini", base_url=url, api_key_env="BENCH_KEY", timeout=10
    )


def router_for(
    *links: ProviderConfig,
    retry: RetryPolicy | None = None,
    client: httpx.AsyncClient | None = None,
    **kw: Any,
) -> FailoverRouter:
    config = Config(providers=links, retry=retry or RetryPolicy())
    return FailoverRouter(config, env=ENV, client=client, **kw)


def raw_request(url: str) -> tuple[str, dict[str, Any], dict[str, str]]:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 64,
    }
    return f"{url}/v1/chat/completions", body, {"authorization": f"Bearer {KEY}"}


async def raw_once(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str]
) -> str:
    response = await client.post(url, json=body, headers=headers)
    response.raise_for_status()
    return response.json()["choices"][0]["message"]["content"]


async def timed_seq(
    n: int, once: Callable[[], Awaitable[Any]], clock: Callable[[], float] = time.perf_counter
) -> float:
    """Mean seconds per request over ``n`` sequential requests, by ``clock``."""
    start = clock()
    for _ in range(n):
        await once()
    return (clock() - start) / n


async def interleaved_us(
    paths: dict[str, Callable[[], Awaitable[Any]]], n: int, runs: int
) -> dict[str, float]:
    """Median µs per request of each path: warmed up, then ``runs`` runs of ``n`` sequential
    requests, the paths' order reversed every other run."""
    for fn in paths.values():
        for _ in range(300):
            await fn()
    results: dict[str, list[float]] = {k: [] for k in paths}
    for run in range(runs):
        items = list(paths.items())
        for name, fn in items if run % 2 == 0 else reversed(items):
            results[name].append(await timed_seq(n, fn) * 1e6)
    return {k: median(v) for k, v in results.items()}


async def paired_rounds_us(
    paths: dict[str, Callable[[], Awaitable[Any]]], n: int, rounds: int
) -> list[dict[str, float]]:
    """CPU µs (this process's CPU time: other processes on a shared machine do not count) per
    request of each path in each of ``rounds`` rounds of ``n`` requests per path. Within a
    round the paths take turns request by request, in an order that rotates, so a shared
    machine's speed, which drifts over tenths of a second, weighs on every path alike and
    differences taken within a round cancel it. The garbage collector is paused within a
    round (and run between rounds): a collection lands on whichever request crosses its
    threshold, so with requests taking turns it would charge one path for another's garbage.
    For paths that do all their work in this process (httpx.MockTransport)."""
    for fn in paths.values():
        for _ in range(300):
            await fn()
    names = list(paths)
    clock = time.process_time
    out: list[dict[str, float]] = []
    for _ in range(rounds):
        spent = dict.fromkeys(names, 0.0)
        gc.collect()
        gc.disable()
        try:
            for i in range(n):
                k = i % len(names)
                for name in names[k:] + names[:k]:
                    fn = paths[name]
                    start = clock()
                    await fn()
                    spent[name] += clock() - start
        finally:
            gc.enable()
        out.append({name: spent[name] / n * 1e6 for name in names})
    return out


async def timed_conc(n: int, concurrency: int, once: Callable[[], Awaitable[Any]]) -> float:
    """Requests per second for ``n`` requests with ``concurrency`` workers."""
    remaining = n

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await once()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - start)


async def overhead(url: str, n: int, runs: int) -> list[str]:
    client = make_client()
    router = router_for(link("sim", url), client=client)
    rurl, body, headers = raw_request(url)

    stock = httpx.AsyncClient(
        trust_env=False,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=50),
        timeout=30,
    )

    async def raw() -> str:
        return await raw_once(client, rurl, body, headers)

    async def raw_stock() -> str:
        return await raw_once(stock, rurl, body, headers)

    async def routed() -> str:
        return (await router.route(PROMPT, max_tokens=64)).text

    assert await raw() == await routed() == await raw_stock()  # same server, same answer
    for _ in range(200):  # warm up every path and the connection pools
        await raw()
        await routed()
        await raw_stock()
    seq_raw, seq_routed, seq_stock, conc_raw, conc_routed, conc_stock = [], [], [], [], [], []
    for run in range(runs):
        gc.collect()
        order = [(raw, seq_raw), (routed, seq_routed), (raw_stock, seq_stock)]
        for fn, out in order[run % 3 :] + order[: run % 3]:
            out.append(await timed_seq(n, fn))
        order_c = [(raw, conc_raw), (routed, conc_routed), (raw_stock, conc_stock)]
        for fn, out in order_c[run % 3 :] + order_c[: run % 3]:
            out.append(await timed_conc(n, 50, fn))
    await router.aclose()
    await client.aclose()
    await stock.aclose()
    added = [(b - a) * 1e6 for a, b in zip(seq_raw, seq_routed, strict=True)]
    added_stock = [(b - a) * 1e6 for a, b in zip(seq_stock, seq_routed, strict=True)]
    ratio = [b / a for a, b in zip(conc_raw, conc_routed, strict=True)]
    ratio_stock = [b / a for a, b in zip(conc_stock, conc_routed, strict=True)]
    return [
        table(
            f"1. Routing overhead: {n} requests per run, median of {runs} runs",
            [
                "measure",
                "raw httpx, same client",
                "FailoverRouter.route",
                "difference",
                "target",
                "stock httpx.AsyncClient",
                "route vs stock",
            ],
            [
                [
                    "sequential, µs per request",
                    median(seq_raw) * 1e6,
                    median(seq_routed) * 1e6,
                    f"{median(added):+.0f} µs",
                    "≤ +100 µs",
                    median(seq_stock) * 1e6,
                    f"{median(added_stock):+.0f} µs",
                ],
                [
                    "concurrency 50, requests/s",
                    median(conc_raw),
                    median(conc_routed),
                    f"{median(ratio):.2f}x",
                    "≥ 0.90x",
                    median(conc_stock),
                    f"{median(ratio_stock):.2f}x",
                ],
            ],
        )
    ]


async def failover_cost(secondary: str, failing: str, trials: int) -> list[str]:
    """Per request position: the added latency over calling the secondary directly."""
    client = make_client()
    direct = router_for(link("secondary", secondary), client=client)
    for _ in range(100):
        await direct.route(PROMPT, max_tokens=64)
    base = [
        await timed_seq(1, lambda: direct.route(PROMPT, max_tokens=64)) for _ in range(trials * 5)
    ]
    base_ms = median(base) * 1000
    rows = []
    dead = refused_url()
    for label, primary, retry in [
        ("primary refuses connections", dead, RetryPolicy()),
        ("primary answers 500 (retry: 3 tries, 0.5 s base)", failing, RetryPolicy()),
        ("primary answers 500 (retry: 1 try)", failing, RetryPolicy(attempts=1)),
    ]:
        first, tripping, later = [], [], []
        for _ in range(trials):
            r = router_for(
                link("primary", primary), link("secondary", secondary), retry=retry, client=client
            )
            opened: list[int] = []
            r.add_listener(
                lambda e, o=opened: (
                    o.append(1)
                    if isinstance(e, BreakerTransition)
                    and e.provider == "primary"
                    and e.new == "open"
                    else None
                )
            )
            times, trip = [], None
            for i in range(8):
                times.append(await timed_seq(1, lambda r=r: r.route(PROMPT, max_tokens=64)))
                if trip is None and opened:
                    trip = i
            first.append(times[0])
            if trip is not None:
                tripping.append(times[trip])
                later.extend(times[trip + 1 :])
        rows.append(
            [
                label,
                (median(first) * 1000 - base_ms),
                (median(tripping) * 1000 - base_ms),
                (median(later) * 1000 - base_ms),
            ]
        )
    # An open breaker: forced open, zero connections may reach the primary.
    with external_sim("openai") as primary_url:
        r = router_for(link("primary", primary_url), link("secondary", secondary), client=client)
        r.tracker.force("primary", "open")
        started: list[str] = []
        r.add_listener(
            lambda e: started.append(e.provider) if isinstance(e, AttemptStarted) else None
        )
        times = [
            await timed_seq(1, lambda: r.route(PROMPT, max_tokens=64)) for _ in range(trials * 5)
        ]
        reached = started.count("primary")
    rows.append(
        [
            f"primary's breaker open (attempts sent to it: {reached})",
            "",
            "",
            median(times) * 1000 - base_ms,
        ]
    )
    await client.aclose()
    return [
        table(
            f"2. Failover cost: ms added over calling the secondary directly "
            f"({base_ms:.2f} ms), median of {trials} fresh routers",
            ["primary", "first request", "tripping request", "later requests"],
            rows,
        )
        + "\nTargets: refused primary ≤ 3 ms; open breaker ≤ 0.2 ms with zero attempts to it."
    ]


async def stampede(secondary: str, failing: str, trials: int) -> list[str]:
    async def burst(r: FailoverRouter) -> float:
        start = time.perf_counter()
        results = await asyncio.gather(*(r.route(PROMPT, max_tokens=64) for _ in range(50)))
        assert all(res.provider == "secondary" for res in results)
        return time.perf_counter() - start

    cases = {"direct": None, "refused": refused_url(), "500": failing}
    walls: dict[str, list[float]] = {k: [] for k in cases}
    reached: dict[str, list[int]] = {k: [] for k in cases}
    for _ in range(trials):  # interleaved, so every case meets the simulators equally warm
        for label, primary in cases.items():
            links = [link("secondary", secondary)]
            if primary is not None:
                links.insert(0, link("primary", primary))
            # A fresh client per burst: a warm pool of 50 idle connections makes httpcore
            # hand each freed connection to every queued request (encode/httpcore#1035), which
            # would slow whichever case meets the warm pool, not measure routing.
            client = make_client()
            r = router_for(*links, client=client)
            hits: list[int] = []
            r.add_listener(
                lambda e, h=hits: (
                    h.append(1)
                    if isinstance(e, AttemptStarted) and e.provider == "primary"
                    else None
                )
            )
            walls[label].append(await burst(r))
            reached[label].append(len(hits))
            await client.aclose()
    direct = median(walls["direct"])
    rows = [
        [
            f"primary {label}",
            median(walls[label]) * 1000,
            direct * 1000,
            f"{median(walls[label]) / direct:.2f}x",
            f"{median(reached[label]):.0f} / 50",
        ]
        for label in ("refused", "500")
    ]
    return [
        table(
            f"3. Stampede: 50 concurrent first requests on a fresh router, median of {trials}",
            ["primary", "wall ms", "straight to secondary ms", "ratio", "attempts on primary"],
            rows,
        )
        + "\nTarget: ≤ 1.5x the direct wall time."
    ]


async def cpu_cost(n: int, runs: int) -> list[str]:
    """The router's own CPU per request, without sockets: raw httpx and FailoverRouter on one
    httpx.MockTransport serving a fixed OpenAI answer; and skipping an open breaker."""
    body = OPENAI_ANSWER
    transport = httpx.MockTransport(
        lambda request: httpx.Response(
            200, content=body, headers={"content-type": "application/json"}
        )
    )
    client = httpx.AsyncClient(transport=transport)
    url = "http://sim.test"
    direct = router_for(link("secondary", url), client=client)
    skipping = router_for(link("primary", url), link("secondary", url), client=client)
    skipping.tracker.force("primary", "open")
    rurl, rbody, headers = raw_request(url)

    async def raw() -> str:
        return await raw_once(client, rurl, rbody, headers)

    paths = {
        "raw httpx": raw,
        "FailoverRouter.route": lambda: direct.route(PROMPT, max_tokens=64),
        "route, primary's breaker open": lambda: skipping.route(PROMPT, max_tokens=64),
    }
    us = await interleaved_us(paths, n, runs)
    await client.aclose()
    raw_us = us["raw httpx"]
    route_us = us["FailoverRouter.route"]
    skip_us = us["route, primary's breaker open"]
    return [
        table(
            f"1b. CPU per request in one process, no sockets (httpx.MockTransport): "
            f"{n} requests per run, median of {runs} runs",
            ["path", "µs per request", "added", "target"],
            [
                ["raw httpx", raw_us, "", ""],
                [
                    "FailoverRouter.route",
                    route_us,
                    f"+{route_us - raw_us:.0f} µs vs raw",
                    "≤ +100 µs",
                ],
                [
                    "route, primary's breaker open",
                    skip_us,
                    f"+{skip_us - route_us:.0f} µs vs route",
                    "≤ +200 µs",
                ],
            ],
        )
    ]


def rich_conversation() -> dict[str, Any]:
    """A 10-message conversation with 5 tools, an image reference and an answered tool call,
    as OpenAI-shaped arguments of ``route``."""
    tools = [
        {
            "type": "function",
            "function": {
                "name": f"tool_{i}",
                "description": f"Tool number {i}",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                    "required": ["city"],
                },
            },
        }
        for i in range(5)
    ]
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    call = {
        "id": "call_abc123",
        "type": "function",
        "function": {"name": "tool_0", "arguments": '{"city":"Paris"}'},
    }
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]},
        {"role": "assistant", "content": "A cat on a roof."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_abc123", "content": '{"temp": 21}'},
        {"role": "assistant", "content": "21 degrees."},
        {"role": "user", "content": "And tomorrow?"},
        {"role": "assistant", "content": "Probably the same."},
        {"role": "user", "content": "Thanks. One more question about the cat."},
    ]
    return {"messages": messages, "tools": tools, "max_tokens": 64}


async def rich_cost(n: int, runs: int) -> list[str]:
    """CPU per request of a rich request (rich_conversation) against the same body posted raw,
    beside the plain prompt against its raw body: what the chat translation adds."""
    answer = OPENAI_ANSWER
    client = httpx.AsyncClient(
        transport=httpx.MockTransport(
            lambda request: httpx.Response(
                200, content=answer, headers={"content-type": "application/json"}
            )
        )
    )
    url = "http://sim.test"
    router = router_for(link("only", url), client=client)
    rurl, plain_body, headers = raw_request(url)
    rich = rich_conversation()
    rich_body = {"model": "gpt-4o-mini", **rich}

    async def raw_plain() -> str:
        return await raw_once(client, rurl, plain_body, headers)

    async def raw_rich() -> str:
        return await raw_once(client, rurl, rich_body, headers)

    paths: dict[str, Callable[[], Awaitable[Any]]] = {
        "raw httpx, plain body": raw_plain,
        "route(prompt=...)": lambda: router.route(PROMPT, max_tokens=64),
        "raw httpx, rich body": raw_rich,
        "route(messages=..., tools=...)": lambda: router.route(**rich),
    }
    rounds = await paired_rounds_us(paths, max(n // 10, 50), runs * 6)
    await client.aclose()
    us = {k: median([r[k] for r in rounds]) for k in paths}
    plain_added = us["route(prompt=...)"] - us["raw httpx, plain body"]
    rich_added = us["route(messages=..., tools=...)"] - us["raw httpx, rich body"]
    # The rich request's cost beyond the plain one, each round against its own raw bodies.
    extra = sorted(
        (r["route(messages=..., tools=...)"] - r["raw httpx, rich body"])
        - (r["route(prompt=...)"] - r["raw httpx, plain body"])
        for r in rounds
    )
    q1, q3 = extra[len(extra) // 4], extra[(3 * len(extra)) // 4]
    return [
        table(
            "1c. CPU per request, 10 messages + 5 tools + an image URL vs a plain prompt, each "
            f"against its own body posted raw (httpx.MockTransport): {len(rounds)} rounds of "
            f"{max(n // 10, 50)} requests per path taking turns, collector paused, medians",
            ["path", "µs per request", "added vs raw", "target"],
            [
                ["raw httpx, plain body", us["raw httpx, plain body"], "", ""],
                ["route(prompt=...)", us["route(prompt=...)"], f"+{plain_added:.0f} µs", ""],
                ["raw httpx, rich body", us["raw httpx, rich body"], "", ""],
                [
                    "route(messages=..., tools=...)",
                    us["route(messages=..., tools=...)"],
                    f"+{rich_added:.0f} µs",
                    "",
                ],
                [
                    "rich beyond plain (per round)",
                    median(extra),
                    f"IQR {q1:+.0f}..{q3:+.0f} µs",
                    "≤ +30 µs",
                ],
            ],
        )
    ]


async def streaming(url: str, n: int, runs: int) -> list[str]:
    client = make_client()
    router = router_for(link("sim", url), client=client)
    rurl, body, headers = raw_request(url)
    sbody = {**body, "stream": True, "stream_options": {"include_usage": True}}

    async def raw_ttft() -> float:
        start = time.perf_counter()
        ttft = 0.0
        async with client.stream("POST", rurl, json=sbody, headers=headers) as response:
            async for line in response.aiter_lines():
                # The first chunk carries only the role (content ""): a token is non-empty.
                if not ttft and line.startswith("data: {"):
                    choices = json.loads(line[6:])["choices"]
                    if choices and choices[0]["delta"].get("content"):
                        ttft = time.perf_counter() - start
        return ttft

    async def routed_ttft() -> float:
        start = time.perf_counter()
        ttft = 0.0
        async for _chunk in router.stream(PROMPT, max_tokens=64):
            if not ttft:
                ttft = time.perf_counter() - start
        return ttft

    for _ in range(100):
        await raw_ttft()
        await routed_ttft()
    raw_runs, routed_runs = [], []
    for run in range(runs):
        pair = [(raw_ttft, raw_runs), (routed_ttft, routed_runs)]
        for fn, out in pair if run % 2 == 0 else reversed(pair):
            out.append(median([await fn() for _ in range(n)]))
    await router.aclose()
    await client.aclose()
    added = [(b - a) * 1e6 for a, b in zip(raw_runs, routed_runs, strict=True)]
    return [
        table(
            f"7. Streaming: time to first token, {n} streams per run, median of {runs} runs",
            ["raw httpx µs", "router.stream µs", "added"],
            [[median(raw_runs) * 1e6, median(routed_runs) * 1e6, f"+{median(added):.0f} µs"]],
        )
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    parser.add_argument(
        "--only", choices=["overhead", "cpu", "rich", "failover", "stampede", "streaming"]
    )
    args = parser.parse_args()
    n, runs, trials = (200, 3, 5) if args.quick else (2000, 5, 15)
    print(f"bench_routing on {machine()}")
    with (
        external_sim("openai") as ok_url,
        external_sim("openai", "--failure-rate", "1", "--failure-status", "500") as failing_url,
    ):
        sections = {
            # The saturated (concurrency 50) ratio swings ±10% run to run on 2 shared cores.
            "overhead": lambda: overhead(ok_url, n, runs if args.quick else 11),
            "cpu": lambda: cpu_cost(n, runs + 2),
            "rich": lambda: rich_cost(n, runs + 2),
            "failover": lambda: failover_cost(ok_url, failing_url, trials),
            "stampede": lambda: stampede(ok_url, failing_url, trials),
            "streaming": lambda: streaming(ok_url, n // 4, runs),
        }
        for name, run in sections.items():
            if args.only in (None, name):
                for text in await run():
                    print(text, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
