"""The gateway's HTTP server: uvicorn (httptools) on uvloop and on asyncio, against granian.

    python bench/bench_gateway.py [--runs 3] [--duration 5] [--connections 16]
        [--servers uvicorn-uvloop,uvicorn-asyncio,granian-uvloop]
    (needs wrk, from the Debian package, granian and uvloop: pip install '.[bench,serve,test]')

One OpenAI simulator upstream in its own process on loopback; ``failover serve``'s app in
another process per server (uvicorn as ``failover serve`` runs it, with the event loop
named; granian through its own CLI); ``wrk`` (Debian package ``wrk``) as the load generator,
posting a chat completion, non-streamed and streamed. Reports requests/s, p50/p99 latency
and the CPU time the server's processes spent per request (user + system, from /proc: less
sensitive to other jobs on a shared machine than throughput), the median of ``--runs``
interleaved runs each, and the upstream alone for reference.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _util import KEY, machine, median, running_sim, stop, table

LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
wrk.body = '{"model": "%s", "max_tokens": 16, "stream": %s, '
    .. '"messages": [{"role": "user", "content": "Hi"}]}'
"""
UVICORN = (
    "from failover_cli.serve.server import Spec, listen, run; "
    "run(Spec(config={config!r}, state={state!r}, access_log=None), "
    "listener=listen('127.0.0.1', {port}), loop={loop!r})"
)
SERVERS = ("uvicorn-uvloop", "uvicorn-asyncio", "granian-uvloop", "granian-asyncio")
APP = "failover_cli.serve.server:app_factory"


def server_command(server: str, config: Path, state: Path, port: int) -> tuple[list, dict]:
    """The command serving the gateway's app on ``server``, and its environment."""
    from failover_cli.serve.server import SPEC_ENV, Spec

    env = {**os.environ, "FAILOVER_BENCH_KEY": KEY}
    if server not in SERVERS:
        raise SystemExit(f"unknown server {server!r}: one of {', '.join(SERVERS)}")
    name, loop = server.split("-")
    if name == "uvicorn":  # as `failover serve` runs it
        code = UVICORN.format(config=str(config), state=str(state), port=port, loop=loop)
        return [sys.executable, "-c", code], env
    env[SPEC_ENV] = Spec(config=str(config), state=str(state), access_log=None).to_env()
    granian = Path(sys.executable).with_name("granian")
    return [
        str(granian),
        "--interface",
        "asgi",
        "--factory",
        "--loop",
        loop,
        "--no-ws",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        APP,
    ], env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (granian and uvicorn fork or spawn workers)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
        found.append(current)
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its live descendants."""
    total = 0.0
    for current in process_tree(pid):
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            continue
    return total


def wrk(
    url: str, script: Path, duration: int, connections: int, pid: int | None = None
) -> tuple[float, float, float, float]:
    """Requests/s, p50 ms, p99 ms and CPU ms per request of ``pid`` (with its children) in one
    wrk run (non-2xx answers fail the run)."""
    cpu = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script),
         url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"errors during the run:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    requests = re.search(r"(\d+) requests in", out)
    assert p50 and p99 and requests, out
    per_request = (cpu_seconds(pid) - cpu) * 1000 / int(requests[1]) if pid else float("nan")
    return rps, _ms(*p50.groups()), _ms(*p99.groups()), per_request


def measure(
    targets: dict[str, tuple[str, int]], scripts: dict[str, Path], args: argparse.Namespace
) -> dict[str, dict[str, tuple[float, ...]]]:
    """Medians per target and mode; runs are interleaved (one of each target in turn) so a
    busy spell on the machine does not fall on one target only."""
    for url, _ in targets.values():
        wrk(url, scripts["plain"], 1, args.connections)  # warm up
    got: dict[str, dict[str, list[tuple[float, ...]]]] = {
        name: {mode: [] for mode in scripts} for name in targets
    }
    for _ in range(args.runs):
        for name, (url, pid) in targets.items():
            for mode, script in scripts.items():
                got[name][mode].append(wrk(url, script, args.duration, args.connections, pid))
    return {
        name: {mode: tuple(median([r[i] for r in runs]) for i in range(4))
               for mode, runs in modes.items()}
        for name, modes in got.items()
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--servers", default=",".join(SERVERS[:3]), help=", ".join(SERVERS))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench_gateway needs wrk: apt-get install wrk")
    with tempfile.TemporaryDirectory() as tmp, running_sim("openai") as sim:
        root = Path(tmp)
        config = root / "providers.yaml"
        config.write_text(
            "providers:\n"
            f"  - {{name: up, kind: openai, model: m, base_url: '{sim.url}', "  # type: ignore[attr-defined]
            "api_key_env: FAILOVER_BENCH_KEY}\n"
        )
        scripts = {}
        for mode, stream in (("plain", "false"), ("stream", "true")):
            scripts[mode] = root / f"{mode}.lua"
            scripts[mode].write_text(LUA % (KEY, "default", stream))
        targets = {"upstream alone": (f"{sim.url}/v1/chat/completions", sim.pid)}  # type: ignore[attr-defined]
        procs = []
        try:
            for server in args.servers.split(","):
                port = free_port()
                command, env = server_command(server, config, root / f"{server}.json", port)
                procs.append(subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL))
                wait_port(port, procs[-1])
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                targets[f"gateway on {server}"] = (url, procs[-1].pid)
            results = measure(targets, scripts, args)
        finally:
            for proc in procs:
                stop(proc)
        rows = [(name, *r["plain"], *r["stream"]) for name, r in results.items()]
    print(f"{machine()}; wrk -t1 -c{args.connections}, {args.duration} s runs, median of "
          f"{args.runs}")  # fmt: skip
    print(table(
        "Gateway HTTP server (one OpenAI simulator upstream, loopback)",
        ["", "req/s", "p50 ms", "p99 ms", "CPU ms/req", "stream req/s", "stream p50 ms",
         "stream p99 ms", "stream CPU ms/req"],
        rows,
    ))  # fmt: skip


if __name__ == "__main__":
    main()
