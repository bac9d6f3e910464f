"""The gateway's HTTP server: uvicorn (httptools) against granian, for this workload.

    python bench/bench_gateway.py [--runs 3] [--duration 5] [--connections 16]
    (needs wrk, from the Debian package, and granian: pip install '.[bench,serve]')

One OpenAI simulator upstream in its own process on loopback; ``failover serve``'s app in
another process per server; ``wrk`` (Debian package ``wrk``) as the load generator,
posting a chat completion, non-streamed and streamed. Reports requests/s and p50/p99
latency, the median of ``--runs`` interleaved runs each, and the upstream alone for
reference.
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
from _util import KEY, machine, median, running_sim, table

LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
wrk.body = '{"model": "%s", "max_tokens": 16, "stream": %s, '
    .. '"messages": [{"role": "user", "content": "Hi"}]}'
"""
UVICORN = (
    "from failover_cli.serve.server import Spec, run; "
    "run(Spec(config={config!r}, state={state!r}, access_log=None), host='127.0.0.1', "
    "port={port})"
)
APP = "failover_cli.serve.server:app_factory"


def server_command(server: str, config: Path, state: Path, port: int) -> tuple[list, dict]:
    """The command serving the gateway's app on ``server``, and its environment."""
    from failover_cli.serve.server import SPEC_ENV, Spec

    env = {**os.environ, "FAILOVER_BENCH_KEY": KEY}
    if server == "uvicorn":  # as `failover serve` runs it
        code = UVICORN.format(config=str(config), state=str(state), port=port)
        return [sys.executable, "-c", code], env
    env[SPEC_ENV] = Spec(config=str(config), state=str(state), access_log=None).to_env()
    granian = Path(sys.executable).with_name("granian")
    # asyncio's loop, as uvicorn's: uvloop cannot run the providers' transport.
    return [
        str(granian),
        "--interface",
        "asgi",
        "--factory",
        "--loop",
        "asyncio",
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


def wrk(url: str, script: Path, duration: int, connections: int) -> tuple[float, float, float]:
    """Requests/s, p50 ms and p99 ms of one wrk run (non-2xx answers fail the run)."""
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
    assert p50 and p99, out
    return rps, _ms(*p50.groups()), _ms(*p99.groups())


def measure(
    targets: dict[str, str], scripts: dict[str, Path], args: argparse.Namespace
) -> dict[str, dict[str, tuple[float, ...]]]:
    """Medians per target and mode; runs are interleaved (one of each target in turn) so a
    busy spell on the machine does not fall on one target only."""
    for url in targets.values():
        wrk(url, scripts["plain"], 1, args.connections)  # warm up
    got: dict[str, dict[str, list[tuple[float, float, float]]]] = {
        name: {mode: [] for mode in scripts} for name in targets
    }
    for _ in range(args.runs):
        for name, url in targets.items():
            for mode, script in scripts.items():
                got[name][mode].append(wrk(url, script, args.duration, args.connections))
    return {
        name: {mode: tuple(median([r[i] for r in runs]) for i in range(3))
               for mode, runs in modes.items()}
        for name, modes in got.items()
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--servers", default="uvicorn,granian")
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
        targets = {"upstream alone": f"{sim.url}/v1/chat/completions"}  # type: ignore[attr-defined]
        procs = []
        try:
            for server in args.servers.split(","):
                port = free_port()
                command, env = server_command(server, config, root / f"{server}.json", port)
                procs.append(subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL))
                wait_port(port, procs[-1])
                targets[f"gateway on {server}"] = f"http://127.0.0.1:{port}/v1/chat/completions"
            results = measure(targets, scripts, args)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(20)
        rows = [(name, *r["plain"], *r["stream"]) for name, r in results.items()]
    print(f"{machine()}; wrk -t1 -c{args.connections}, {args.duration} s runs, median of "
          f"{args.runs}")  # fmt: skip
    print(table(
        "Gateway HTTP server (one OpenAI simulator upstream, loopback)",
        ["", "req/s", "p50 ms", "p99 ms", "stream req/s", "stream p50 ms", "stream p99 ms"],
        rows,
    ))  # fmt: skip


if __name__ == "__main__":
    main()
