"""CPU per non-streamed provider call: the transport's direct POST against the same call as
an httpx request, and the floor under both.

Each path runs in its own child process (runs interleaved) against the OpenAI-compatible
simulator (its own process, on 127.0.0.1), one call after another on one kept-alive
connection, after a warm-up; the figure is the child's CPU time per call (process time),
the median of ``--runs`` children:

* floor: an ``asyncio.Protocol`` writing one pre-built request and parsing the answer with
  httptools, then ``json.loads``: what any Python client pays for the exchange itself;
* direct: ``OpenAIProvider.complete`` as it runs (``AsyncioTransport.post``, no httpx
  Request or Response per call);
* httpx: the same call with the direct path turned off, so that it builds an httpx Request
  and reads an httpx Response through the same transport (what a proxied provider takes).

    python bench/bench_provider_call.py [--runs 7] [--calls 2000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections import defaultdict

from _util import KEY, machine, median, running_sim, table

CHILD = r"""
import asyncio, json, os, sys, time
import httptools
from failover_cli.providers._client import ProviderClient
from failover_cli.providers.openai import OpenAIProvider
from failover_cli.request import build_request
from failover_cli.types import ProviderConfig

path, url, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
BODY = json.dumps({"model": "m", "max_tokens": 16,
                   "messages": [{"role": "user", "content": "Hi"}]}).encode()


class Floor(asyncio.Protocol):
    def __init__(self):
        self.parser = httptools.HttpResponseParser(self)
        self.parts, self.done = [], None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.parser.feed_data(data)

    def on_body(self, body):
        self.parts.append(body)

    def on_message_complete(self):
        self.done.set_result(b"".join(self.parts))
        self.parts = []


async def main():
    loop = asyncio.get_running_loop()
    if path == "floor":
        host, port = url.split("//")[1].split("/")[0].split(":")
        transport, proto = await loop.create_connection(Floor, host, int(port))
        head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"authorization: Bearer {os.environ['K']}\r\ncontent-type: application/json"
                f"\r\ncontent-length: {len(BODY)}\r\n\r\n").encode() + BODY

        async def call():
            proto.done = loop.create_future()
            transport.write(head)
            json.loads(await proto.done)
    else:
        if path == "httpx":
            async def no_direct(self, *args, **kwargs):
                return None
            ProviderClient.post_direct = no_direct
        config = ProviderConfig(name="p", kind="openai", model="m", base_url=url,
                                api_key_env="K")
        provider = OpenAIProvider(config)

        async def call():
            await provider.complete(build_request(prompt="Hi", max_tokens=16), timeout=10)
    for _ in range(300):
        await call()
    start = time.process_time()
    for _ in range(calls):
        await call()
    print((time.process_time() - start) / calls * 1e6)

asyncio.run(main())
"""

PATHS = ("floor", "direct", "httpx")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    print(machine())
    env = {**os.environ, "K": KEY}
    results: dict[str, list[float]] = defaultdict(list)
    with running_sim("openai") as sim:
        for _ in range(args.runs):
            for path in PATHS:
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, path, sim.url, str(args.calls)],
                    env=env, capture_output=True, text=True, check=True,
                )  # fmt: skip
                results[path].append(float(out.stdout))
    floor = median(results["floor"])
    httpx_path = median(results["httpx"])
    rows = []
    for path in PATHS:
        cpu = median(results[path])
        rows.append([path, f"{cpu:.0f}", f"{cpu - floor:.0f}", f"{cpu / httpx_path:.2f}",
                     " ".join(f"{v:.0f}" for v in results[path])])  # fmt: skip
    print(table(f"CPU µs per non-streamed call, medians of {args.runs} children x "
                f"{args.calls} calls", ["path", "µs/call", "over floor", "vs httpx", "all"],
                rows))  # fmt: skip


if __name__ == "__main__":
    main()
