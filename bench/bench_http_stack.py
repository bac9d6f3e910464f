"""Which HTTP stack: httpx 0.x or httpx2 2.x, each on its default transport (httpcore /
httpcore2 with anyio) or on failover's asyncio transport (``failover_cli/providers/_transport.py``).

Four stacks, each measured in fresh child processes against the OpenAI-compatible simulator
(its own process, on 127.0.0.1), runs interleaved, medians:

* import: ``python -c`` that imports the stack and builds an ``AsyncClient`` (no request),
  and ``python -X importtime -c "import httpx"`` / ``"import httpx2"``, with what
  ``importlib.metadata`` costs inside it;
* one-shot: a whole process posting one chat completion and printing the answer (what
  ``failover ask`` pays), also through an http proxy (proxy.py on 127.0.0.1);
* sequential: µs per request over ``--requests`` posts on one client, after a warm-up;
* concurrency 50: requests/s for ``--requests`` posts, 50 at a time, one client.

"httpx2 + project transport" runs the transport file unchanged with ``httpx`` bound to
``httpx2`` in that child process: httpx2 kept httpx's transport seam (``AsyncBaseTransport``,
``Request``, ``Response``, ``AsyncByteStream``), so a port is a one-line import change.

Then the TLS cost per new connection: ``truststore.SSLContext`` (what httpx2 uses) against a
context loaded once (what ``failover_cli.providers._client`` uses on Linux), in-process.

    pip install httpx2 proxy.py      # for this benchmark only
    python bench/bench_http_stack.py [--quick] [--runs 20] [--requests 2000]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from _util import KEY, bytecode_env, external_sim, machine, median, run_child, table

TRANSPORT = Path(__file__).resolve().parent.parent / "failover_cli" / "providers" / "_transport.py"

STACKS = {
    "httpx default (httpcore)": ("httpx", "default"),
    "httpx + project transport": ("httpx", "project"),
    "httpx2 default (httpcore2)": ("httpx2", "default"),
    "httpx2 + project transport": ("httpx2", "project"),
}
BASELINE = "httpx default (httpcore)"

# argv: stack transport mode url n concurrency proxy ("-": none)
CHILD = r"""
import asyncio, os, sys, time
stack, transport, mode, url, n, conc, proxy = sys.argv[1:8]
n, conc = int(n), int(conc)
proxy = None if proxy == "-" else proxy
if stack == "httpx2":
    import httpx2 as lib
else:
    import httpx as lib
if transport == "project":
    import importlib.util
    sys.modules["httpx"] = lib  # the transport file, unchanged, on this stack's classes
    spec = importlib.util.spec_from_file_location("failover_transport", os.environ["TRANSPORT"])
    tmod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tmod)
    route = None
    if proxy:
        chosen = tmod.Proxy.from_url(proxy)
        route = lambda u: chosen
    make = lambda: lib.AsyncClient(transport=tmod.AsyncioTransport(proxy=route), trust_env=False)
else:
    limits = lib.Limits(max_connections=100, max_keepalive_connections=50)
    make = lambda: lib.AsyncClient(trust_env=False, proxy=proxy, limits=limits)
BODY = {"model": "gpt-4o-mini", "max_tokens": 16,
        "messages": [{"role": "user", "content": "Say hello."}]}
HEADERS = {"authorization": "Bearer " + os.environ["BENCH_KEY"]}
TARGET = url + "/v1/chat/completions"

async def post(client):
    r = await client.post(TARGET, json=BODY, headers=HEADERS, timeout=30)
    r.raise_for_status()
    return r.json()["choices"][0]["message"]["content"]

async def main():
    async with make() as client:
        if mode == "import":
            return
        if mode == "oneshot":
            print(await post(client))
            return
        for _ in range(50):
            await post(client)
        start = time.perf_counter()
        if mode == "seq":
            for _ in range(n):
                await post(client)
            print((time.perf_counter() - start) / n * 1e6)
            return
        left = iter(range(n))
        async def worker():
            for _ in left:
                await post(client)
        await asyncio.gather(*(worker() for _ in range(conc)))
        print(n / (time.perf_counter() - start))

asyncio.run(main())
"""


def child_env(url_key: str = KEY) -> dict[str, str]:
    return bytecode_env(BENCH_KEY=url_key, TRANSPORT=str(TRANSPORT))


def run(stack: str, mode: str, url: str, n: int = 0, proxy: str | None = None) -> tuple[float, str]:
    """One child process: its wall seconds and what it printed."""
    lib, transport = STACKS[stack]
    argv = [sys.executable, "-c", CHILD, lib, transport, mode, url, str(n), "50", proxy or "-"]
    done = run_child(argv, env=child_env())
    if done.returncode != 0:
        raise RuntimeError(f"{stack} {mode} failed: {done.stderr[-2000:]}")
    return done.wall, done.stdout.strip()


def interleaved(runs: int, rows: list[str], measure) -> dict[str, list[float]]:
    """``measure(row)`` ``runs`` times per row, the order rotating each round."""
    values: dict[str, list[float]] = defaultdict(list)
    for round_ in range(runs):
        order = rows[round_ % len(rows) :] + rows[: round_ % len(rows)]
        for row in order:
            values[row].append(measure(row))
    return values


def import_table(runs: int, url: str) -> str:
    rows = list(STACKS)
    floor = interleaved(
        runs, ["asyncio"], lambda _: run_child([sys.executable, "-c", "import asyncio"]).wall
    )["asyncio"]
    walls = interleaved(runs, rows, lambda row: run(row, "import", url)[0])
    base = median(walls[BASELINE])
    out = [
        (row, median(walls[row]) * 1e3, (median(walls[row]) - median(floor)) * 1e3,
         median(walls[row]) / base)
        for row in rows
    ]  # fmt: skip
    return table(
        f"Import and build an AsyncClient, no request: {runs} runs each, median "
        f"(`python -c 'import asyncio'`: {median(floor) * 1e3:.1f} ms)",
        ["stack", "wall ms", "over asyncio ms", f"x {BASELINE}"],
        out,
    )


def importtime(module: str, runs: int) -> tuple[float, float]:
    """Median cumulative µs of ``import module`` by -X importtime, and of importlib.metadata
    inside it (0 when not imported by it)."""
    totals, metadata = [], []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            capture_output=True, text=True, env=bytecode_env(), check=True,
        )  # fmt: skip
        cumulative = {}
        for line in done.stderr.splitlines():
            m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)", line)
            if m:
                cumulative.setdefault(m[3].strip(), int(m[1]))
        totals.append(cumulative.get(module, 0))
        metadata.append(cumulative.get("importlib.metadata", 0))
    return median(totals), median(metadata)


def importtime_table(runs: int) -> str:
    rows = []
    for module in ("httpx", "httpx2"):
        total, metadata = importtime(module, runs)
        rows.append((f"import {module}", total / 1e3, metadata / 1e3))
    return table(
        f"python -X importtime -c 'import X': {runs} runs, median cumulative ms",
        ["", "total ms", "of which importlib.metadata ms"],
        rows,
    )


def oneshot_table(runs: int, url: str, proxy: str) -> str:
    rows = list(STACKS)
    keys = [(row, p) for row in rows for p in (None, proxy)]
    walls: dict[tuple[str, str | None], list[float]] = defaultdict(list)
    for round_ in range(runs):
        shift = round_ % len(keys)
        for key in keys[shift:] + keys[:shift]:
            wall, text = run(key[0], "oneshot", url, proxy=key[1])
            assert text, key
            walls[key].append(wall)
    base = median(walls[(BASELINE, None)])
    out = [
        (row, median(walls[(row, None)]) * 1e3, median(walls[(row, None)]) / base,
         median(walls[(row, proxy)]) * 1e3, median(walls[(row, proxy)]) / base)
        for row in rows
    ]  # fmt: skip
    return table(
        f"One-shot process posting once (imports, client, connect, request, answer): "
        f"{runs} interleaved runs, median",
        ["stack", "direct ms", "x baseline", "through an http proxy ms", "x baseline"],
        out,
    )


def load_table(runs: int, requests: int, url: str) -> str:
    rows = list(STACKS)
    seq = interleaved(runs, rows, lambda row: float(run(row, "seq", url, requests)[1]))
    conc = interleaved(runs, rows, lambda row: float(run(row, "conc", url, requests)[1]))
    base_seq, base_conc = median(seq[BASELINE]), median(conc[BASELINE])
    out = [
        (row, median(seq[row]), base_seq / median(seq[row]), median(conc[row]),
         median(conc[row]) / base_conc)
        for row in rows
    ]  # fmt: skip
    return table(
        f"Loopback load, one client per process: {requests} requests per run, median of "
        f"{runs} runs",
        ["stack", "sequential µs/req", "x baseline speed", "concurrency 50 req/s", "x baseline"],
        out,
    )


def tls_table(connections: int) -> str:
    """CPU to set up one TLS client connection's SSL object, and to build the context."""
    import ssl

    import truststore

    sys.path.insert(0, str(TRANSPORT.parent.parent.parent))
    from failover_cli.providers._client import TLSContext

    def per_wrap(context: ssl.SSLContext) -> float:
        start = time.perf_counter()
        for _ in range(connections):
            context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="api.example")
        return (time.perf_counter() - start) / connections * 1e3

    start = time.perf_counter()
    ours = TLSContext(env={})()
    built_ours = (time.perf_counter() - start) * 1e3
    start = time.perf_counter()
    theirs = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    built_theirs = (time.perf_counter() - start) * 1e3
    rows = [
        ("failover TLSContext (OS store loaded once)", built_ours, per_wrap(ours)),
        ("truststore.SSLContext (httpx2's default)", built_theirs, per_wrap(theirs)),
    ]
    return table(
        f"TLS: build the context once, then per new connection ({connections} wrap_bio, "
        f"{ssl.OPENSSL_VERSION})",
        ["context", "build ms", "per new connection ms"],
        rows,
    )


@contextmanager
def proxy_server() -> Iterator[str]:
    """proxy.py on 127.0.0.1 in its own process group; yields its URL."""
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        proc = subprocess.Popen(
            [sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", "0",
             "--port-file", str(port_file), "--num-workers", "1", "--num-acceptors", "1",
             "--log-level", "WARNING"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            for _ in range(400):
                if port_file.exists() and port_file.read_text().strip():
                    break
                time.sleep(0.05)
            yield f"http://127.0.0.1:{int(port_file.read_text())}"
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(10)


def versions() -> str:
    import h11
    import httpx
    import httpx2

    return f"httpx {httpx.__version__}, httpx2 {httpx2.__version__}, h11 {h11.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few runs, few requests")
    parser.add_argument("--runs", type=int, default=20, help="one-shot and import runs per row")
    parser.add_argument("--load-runs", type=int, default=5, help="load runs per row")
    parser.add_argument("--requests", type=int, default=2000, help="requests per load run")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.load_runs, args.requests = 3, 1, 200
    print(f"{machine()}; {versions()}")
    with external_sim("openai") as url, proxy_server() as proxy:
        for stack in STACKS:  # write the bytecode caches before timing
            run(stack, "oneshot", url)
        print(import_table(args.runs, url))
        print(importtime_table(args.runs))
        print(oneshot_table(args.runs, url, proxy))
        print(load_table(args.load_runs, args.requests, url))
    print(tls_table(20 if args.quick else 100))


if __name__ == "__main__":
    main()
