"""Throughput of the provider simulators, as seen by a raw ``httpx.AsyncClient``.

Prints requests/s for each dialect, non-streamed and streamed, sequentially and with 50
concurrent requests, and the CPU time the simulator's thread spent per request; each figure
is the median of ``--runs`` runs. By default the simulator runs in this process (on its own
thread, sharing the GIL with the client: how the tests and benchmarks use it); ``--external``
runs it as ``python -m failover_cli.sim`` instead (no CPU figure then). The answer is 32
tokens long. The ``floor`` row is the same client against a do-nothing asyncio server that
answers every request with fixed bytes (no HTTP parsing): the client's own ceiling.

    python bench/bench_sim.py [--requests 2000] [--runs 5] [--external]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import httpx
from _util import stop

from failover_cli.sim import Simulator

KEY = "sk-bench"
HEADERS = {
    "x-api-key": KEY,
    "anthropic-version": "2023-06-01",
    "authorization": f"Bearer {KEY}",
    "x-goog-api-key": KEY,
}
MESSAGES = [{"role": "user", "content": "Say hello."}]
TEXT = "Hello! How can I help you today? " * 4  # 32 tokens


def request_for(kind: str, stream: bool) -> tuple[str, dict[str, object]]:
    if kind == "floor":
        return "/", {"stream": stream}
    if kind == "anthropic":
        return "/v1/messages", {
            "model": "m",
            "max_tokens": 64,
            "messages": MESSAGES,
            "stream": stream,
        }
    if kind == "openai":
        return "/v1/chat/completions", {"model": "m", "messages": MESSAGES, "stream": stream}
    if kind == "ollama":
        return "/api/chat", {"model": "m", "messages": MESSAGES, "stream": stream}
    action = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return f"/v1beta/models/m:{action}", {"contents": [{"parts": [{"text": "Say hello."}]}]}


async def one(client: httpx.AsyncClient, path: str, body: dict[str, object], stream: bool) -> None:
    if stream:
        async with client.stream("POST", path, json=body, headers=HEADERS) as response:
            await response.aread()
    else:
        response = await client.post(path, json=body, headers=HEADERS)
    if response.status_code != 200:
        raise RuntimeError(f"unexpected status {response.status_code}")


CpuClock = Callable[[], float | None]


async def rate(
    base_url: str, kind: str, stream: bool, requests: int, concurrency: int, cpu: CpuClock
) -> tuple[float, float | None]:
    """Requests per second, and server CPU microseconds per request (None if unknown)."""
    path, body = request_for(kind, stream)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits) as client:
        await one(client, path, body, stream)  # warm the connection

        async def worker(count: int) -> None:
            for _ in range(count):
                await one(client, path, body, stream)

        per_worker = requests // concurrency
        cpu_before = cpu()
        started = time.perf_counter()
        await asyncio.gather(*(worker(per_worker) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu_after = cpu()
    done = per_worker * concurrency
    if cpu_before is None or cpu_after is None:
        return done / elapsed, None
    return done / elapsed, (cpu_after - cpu_before) / done * 1e6


class _Fixed(asyncio.Protocol):
    """Answers each request (seen as the end of its headers) with the same bytes."""

    ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if b"\r\n\r\n" in data:
            self.transport.write(self.ANSWER)  # type: ignore[attr-defined]


@contextlib.contextmanager
def floor_server() -> Iterator[tuple[str, CpuClock]]:
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(_Fixed, "127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    clock = time.pthread_getcpuclockid(thread.ident)  # type: ignore[arg-type]
    try:
        yield (
            f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}",
            lambda: time.clock_gettime(clock),
        )
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        server.close()
        loop.close()


@contextlib.contextmanager
def serve(kind: str, external: bool) -> Iterator[tuple[str, CpuClock]]:
    if kind == "floor":
        with floor_server() as served:
            yield served
        return
    if not external:
        with Simulator(kind, api_key=KEY, history=1) as sim:
            sim.update(text=TEXT)
            yield sim.base_url, lambda: sim.cpu_time
        return
    command = [sys.executable, "-m", "failover_cli.sim", "--kind", kind, "--quiet"]
    command += ["--api-key", KEY, "--text", TEXT]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip(), lambda: None
    finally:
        stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--kinds", default="floor,anthropic,openai,ollama,gemini")
    parser.add_argument("--external", action="store_true", help="simulator in another process")
    args = parser.parse_args()
    where = "another process" if args.external else "this process (own thread)"
    print(f"simulator in {where}; {args.requests} requests per run, median of {args.runs} runs")
    print(
        f"{'dialect':<10} {'mode':<7} {'sequential req/s':>17} {'concurrency 50 req/s':>21}"
        f" {'server CPU us/req':>18}"
    )
    for kind in args.kinds.split(","):
        with serve(kind, args.external) as (base_url, cpu):
            for stream in (False, True):
                rates, costs = [], []
                for concurrency in (1, 50):
                    runs = [
                        asyncio.run(rate(base_url, kind, stream, args.requests, concurrency, cpu))
                        for _ in range(args.runs)
                    ]
                    rates.append(statistics.median(r for r, _ in runs))
                    costs += [c for _, c in runs if c is not None]
                cost = f"{statistics.median(costs):,.0f}" if costs else "n/a"
                mode = "stream" if stream else "json"
                print(f"{kind:<10} {mode:<7} {rates[0]:>17,.0f} {rates[1]:>21,.0f} {cost:>18}")


if __name__ == "__main__":
    main()
