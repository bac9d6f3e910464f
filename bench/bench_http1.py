"""The transport's HTTP/1.1 codecs: httptools (llhttp) against h11, the baseline, in one run.

1. The codec alone: write a provider's request (the head and a JSON body, as the OpenAI
   adapter sends it) and parse the OpenAI simulator's answer to it, bytes in memory, no
   socket. Microseconds per exchange, best of ``--repeat`` timings of ``--loops`` exchanges.
2. Sequential ``route()`` calls through the router against the OpenAI simulator in its own
   process (loopback): CPU microseconds per request, the two codecs taking turns round by
   round (``--rounds`` rounds of ``--requests`` each), medians.

    python bench/bench_http1.py [--loops 20000] [--rounds 7] [--requests 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import KEY, machine, median, running_sim, table

from failover_cli.providers import _http1

CODECS = ("h11", "httptools")
BODY = json.dumps(
    {"model": "gpt-4o-mini", "max_tokens": 16, "messages": [{"role": "user", "content": "Hi"}]}
).encode()
HEADERS = [
    (b"Host", b"127.0.0.1:8000"),
    (b"Accept", b"*/*"),
    (b"Accept-Encoding", b"gzip, deflate"),
    (b"Connection", b"keep-alive"),
    (b"User-Agent", b"failover/0.1"),
    (b"Authorization", b"Bearer " + KEY.encode()),
    (b"Content-Type", b"application/json"),
    (b"Content-Length", str(len(BODY)).encode()),
]


def simulator_answer(url: str) -> bytes:
    """The raw bytes the OpenAI simulator answers a chat completion with."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    head = b"POST /v1/chat/completions HTTP/1.1\r\n" + b"".join(
        b"%s: %s\r\n" % (name, value) for name, value in HEADERS if name != b"Connection"
    )
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(head + b"Connection: close\r\n\r\n" + BODY)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.replace(b"Connection: close\r\n", b"")  # kept alive, as on a pooled connection


def one_exchange(codec: str, answer: bytes) -> None:
    exchange = _http1.new_exchange("POST", codec)
    exchange.send_head(b"POST", b"/v1/chat/completions", HEADERS)
    exchange.send_data(BODY)
    exchange.send_end()
    exchange.receive(answer)
    while exchange.next_event() is not _http1.END:
        pass
    assert exchange.reusable


def codec_alone(answer: bytes, loops: int, repeat: int) -> dict[str, float]:
    best = {}
    for codec in CODECS:
        timer = timeit.Timer(lambda codec=codec: one_exchange(codec, answer))
        best[codec] = min(timer.repeat(repeat, loops)) / loops * 1e6
    return best


async def routed(url: str, rounds: int, requests: int) -> dict[str, list[float]]:
    from failover_cli.config import parse_config
    from failover_cli.router import FailoverRouter
    from failover_cli.store import MemoryStore

    os.environ["FAILOVER_BENCH_KEY"] = KEY
    cfg = parse_config(
        "providers:\n  - {name: p, kind: openai, model: gpt-4o-mini, "
        f"base_url: '{url}', api_key_env: FAILOVER_BENCH_KEY}}\n"
    )
    cpu: dict[str, list[float]] = {codec: [] for codec in CODECS}
    routers = {}
    for codec in CODECS:
        _http1.PREFERRED = codec  # read by each new exchange
        routers[codec] = FailoverRouter(cfg, store=MemoryStore())
        for _ in range(200):  # warm: connections, caches
            await routers[codec].route(prompt="Hi", max_tokens=16)
    try:
        for round_ in range(rounds):
            for codec in CODECS if round_ % 2 == 0 else CODECS[::-1]:
                _http1.PREFERRED = codec
                router = routers[codec]
                start = time.process_time()
                for _ in range(requests):
                    await router.route(prompt="Hi", max_tokens=16)
                cpu[codec].append((time.process_time() - start) / requests * 1e6)
    finally:
        for router in routers.values():
            await router.aclose()
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    import httptools

    print(f"bench_http1 on {machine()}; httptools {httptools.__version__}, "
          f"h11 {__import__('h11').__version__}\n")  # fmt: skip
    with running_sim("openai") as sim:
        url = sim.url  # type: ignore[attr-defined]
        answer = simulator_answer(url)
        alone = codec_alone(answer, args.loops, args.repeat)
        cpu = asyncio.run(routed(url, args.rounds, args.requests))
    base = alone["h11"]
    print(table(
        f"1. One exchange, codec alone ({len(answer)}-byte answer; best of {args.repeat} x "
        f"{args.loops:,})",
        ["codec", "µs per exchange", "x h11"],
        [[codec, alone[codec], f"{alone[codec] / base:.2f}x"] for codec in CODECS],
    ))  # fmt: skip
    print()
    base_cpu = median(cpu["h11"])
    print(table(
        f"2. Sequential route() against the simulator, CPU per request ({args.rounds} rounds "
        f"of {args.requests:,}, turns alternating)",
        ["codec", "median µs", "per round", "x h11"],
        [[codec, median(cpu[codec]), " ".join(f"{v:.0f}" for v in cpu[codec]),
          f"{median(cpu[codec]) / base_cpu:.2f}x"] for codec in CODECS],
    ))  # fmt: skip


if __name__ == "__main__":
    main()
