"""Gateways side by side: ``failover serve``, the LiteLLM proxy and the Portkey gateway.

    python bench/bench_gateway_peers.py [--runs 3] [--duration 4] [--connections 16]
        [--gateways failover,litellm,portkey] [--scenarios healthy,refused,500,529,stall]
        [--litellm-python PY] [--portkey DIR]
    (needs wrk, from the Debian package; the LiteLLM proxy in the Python PY; the Portkey
    gateway installed with npm in DIR: see bench/README.md, "Gateway vs peers")

The same workload through each gateway: ``wrk`` (one thread, ``--connections``) posting an
OpenAI chat completion (one user message, ``max_tokens`` 16), non-streamed and streamed, to
a gateway whose two upstreams are the built-in OpenAI simulators on 127.0.0.1, each in its
own process: a primary and a healthy secondary. Scenarios, set on the primary with the
simulators' Behavior options: ``healthy``; ``refused`` (nothing listens on its port); ``500``
and ``529`` (every completion answered with that status); ``stall`` (``--fault hang``: the
request is read and never answered, the connection kept open). The gateways are started
afresh for each scenario, then warmed up (one second of each mode), then measured: runs are
interleaved (each gateway and mode in turn, the order of the gateways rotating per run),
medians of ``--runs``. Reported per scenario and gateway: requests/s, p50 and p99 latency,
and the failures the client saw: any answer that is not a 200 carrying a complete answer
(non-streamed: a ``choices`` object; streamed: the ``[DONE]`` marker) or that carries an
``error``, plus wrk's socket errors (connect, read, write, timeout); and the CPU time the
gateway's processes spent per request (user + system, from /proc).

Equivalent settings (each tool's own name for them):

- Per attempt, give up after ``TIMEOUT`` seconds: failover ``providers[].timeout``; LiteLLM
  ``litellm_params.timeout`` and ``router_settings.timeout``; Portkey ``request_timeout``
  (ms) on each target. Shorter than bench_peer.py's 10 s so that the stall scenario is
  measured in seconds; the stall costs each tool this timeout per attempt on the primary.
- Three tries per provider: failover's default ``retry.attempts: 3``; LiteLLM
  ``num_retries: 2`` (bench_peer.py); Portkey ``retry: {attempts: 2}`` on each target (its
  attempts are retries after the first try), on the status codes it retries by default
  (429, 500, 502, 503, 504) plus 529 (an overload, which failover retries).
- Fall over to the secondary: failover's chain order (the model name is unknown, so the
  default chain serves it); LiteLLM ``fallbacks: [{primary: [secondary]}]`` with one
  deployment per model group (bench_peer.py); Portkey ``strategy: {mode: fallback}`` over
  the two targets (any non-2xx answer, its own 408 on timeout included, moves on).
- Stop sending to a failing primary: failover's default breaker (opens after 3 consecutive
  failures, for 30 s); LiteLLM ``allowed_fails: 2``, ``cooldown_time: 30`` (cooled down on
  the third failure, bench_peer.py); the Portkey gateway has no circuit breaker in its open
  source build (none found in build/start-server.js), so every request tries the primary.
- One process each: failover serve (uvicorn, as ``failover serve`` runs it, access log off);
  the LiteLLM proxy with ``--num_workers 1`` (its uvicorn, on uvloop when installed, as its
  ``proxy`` extra installs it); Portkey's Node server, ``build/start-server.js --headless``.
- A client key: the LiteLLM proxy refuses to start without a master key
  (``LITELLM_MASTER_KEY``), so failover serve checks one too (``serve.keys_env``); the
  Portkey gateway has no such check.

Offline: nothing may leave 127.0.0.1. The LiteLLM proxy runs with bench_peer.py's offline
environment plus ``LITELLM_TELEMETRY_DISABLED=true`` (its proxy telemetry veto) and with an
audit hook that refuses, and reports, any connection or name lookup off loopback; Portkey's
Node process runs with a preloaded guard doing the same for ``net`` connections. The
refused attempts are counted and printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _util import KEY, machine, median, running_sim, stop, table
from bench_gateway import cpu_seconds, free_port, wait_port
from bench_peer import ALLOWED_FAILS, COOLDOWN, OFFLINE_ENV

from failover_cli.sim import refused_url

TIMEOUT = 2.0  # seconds per attempt, in every gateway
TRIES = 3  # per provider
# The key clients present to the gateway: the LiteLLM proxy refuses to start without a master
# key, so failover serve checks one too (serve.keys_env); the Portkey gateway has none.
GATEWAY_KEY = "sk-bench-gateway-key-0123456789abcdef"
GATEWAYS = ("failover", "litellm", "portkey")
SCENARIOS: dict[str, tuple[str, ...] | None] = {  # simulator flags of the primary
    "healthy": (),
    "refused": None,
    "500": ("--failure-rate", "1", "--failure-status", "500"),
    "529": ("--failure-rate", "1", "--failure-status", "529"),
    "stall": ("--fault", "hang"),
}

# wrk: one request shape; a response counts as failed unless it is a complete answer.
LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
%(headers)s
wrk.body = '%(body)s'
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) bad = 0 end
function response(status, headers, body)
  if status ~= 200 or not string.find(body, [=[%(marker)s]=], 1, true)
      or string.find(body, '"error"', 1, true) then
    bad = bad + 1
  end
end
function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + t:get("bad") end
  local e = summary.errors
  io.write(string.format("FAILED %%d\\n", n + e.connect + e.read + e.write + e.timeout))
end
"""

# The LiteLLM proxy, in its own Python: an audit hook first, then its CLI in this process.
LITELLM_CHILD = """
import sys
LOOPBACK = {"127.0.0.1", "::1", "localhost", b"127.0.0.1", b"::1", b"localhost", None}
def guard(event, args):
    if event in ("socket.connect", "socket.sendto"):
        address = args[1]
        if isinstance(address, tuple) and len(address) >= 2 and address[0] not in LOOPBACK:
            print(f"BLOCKED {event} {address[0]}:{address[1]}", file=sys.stderr, flush=True)
            raise PermissionError("bench: refused to leave 127.0.0.1")
    elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex"):
        if args[0] not in LOOPBACK:
            print(f"BLOCKED {event} {args[0]!r}", file=sys.stderr, flush=True)
            raise PermissionError("bench: refused to leave 127.0.0.1")
sys.addaudithook(guard)
sys.argv = ["litellm", *sys.argv[1:]]
from litellm.proxy.proxy_cli import run_server
run_server()
"""

# Portkey's Node server, preloaded with a guard on every net connection off loopback.
NODE_GUARD = """const net = require("net");
const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost", "::ffff:127.0.0.1"]);
const connect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function (...args) {
  let options = Array.isArray(args[0]) ? args[0][0] : args[0];
  let host = typeof options === "object" && options !== null ? options.host
    : (typeof args[1] === "string" ? args[1] : "localhost");
  if (!(typeof options === "object" && options !== null && options.path)
      && host !== undefined && !LOOPBACK.has(host)) {
    process.stderr.write(`BLOCKED connect ${host}\\n`);
    throw new Error(`bench: refused to leave 127.0.0.1 (${host})`);
  }
  return connect.apply(this, args);
};
"""


def failover_setup(
    root: Path, primary: str, secondary: str, port: int, workers: int = 1
) -> tuple[list, dict]:
    config = root / "failover.yaml"
    entry = "  - {{name: {}, kind: openai, model: gpt-4o-mini, base_url: '{}', timeout: {}, " \
        "api_key_env: FAILOVER_BENCH_KEY}}\n"  # fmt: skip
    config.write_text(
        "providers:\n"
        + entry.format("primary", primary, TIMEOUT)
        + entry.format("secondary", secondary, TIMEOUT)
        + f"retry: {{attempts: {TRIES}}}\n"
        + "serve: {keys_env: FAILOVER_BENCH_GATEWAY_KEYS}\n"
    )
    code = (
        "from failover_cli.serve.server import Spec, listen, run; "
        f"run(Spec(config={str(config)!r}, state={str(root / 'state.json')!r}, "
        f"access_log=None), listener=listen('127.0.0.1', {port}), workers={workers})"
    )
    env = {**os.environ, "FAILOVER_BENCH_KEY": KEY, "FAILOVER_BENCH_GATEWAY_KEYS": GATEWAY_KEY}
    return [sys.executable, "-c", code], env


def litellm_setup(
    root: Path, primary: str, secondary: str, port: int, python: str
) -> tuple[list, dict]:
    def deployment(group: str, url: str) -> dict:
        params = {"model": "openai/gpt-4o-mini", "api_base": f"{url}/v1", "api_key": KEY,
                  "timeout": TIMEOUT}  # fmt: skip
        return {"model_name": group, "litellm_params": params, "model_info": {"id": group}}

    config = {
        "model_list": [deployment("primary", primary), deployment("secondary", secondary)],
        "router_settings": {
            "num_retries": TRIES - 1,
            "allowed_fails": ALLOWED_FAILS,
            "cooldown_time": COOLDOWN,
            "timeout": TIMEOUT,
            "fallbacks": [{"primary": ["secondary"]}],
        },
        "litellm_settings": {"suppress_debug_info": True, "drop_params": False},
    }
    path = root / "litellm.json"  # YAML is a superset of JSON: the proxy reads it as YAML
    path.write_text(json.dumps(config))
    env = {**os.environ, **OFFLINE_ENV, "LITELLM_TELEMETRY_DISABLED": "true",
           "LITELLM_MASTER_KEY": GATEWAY_KEY}  # fmt: skip
    command = [python, "-c", LITELLM_CHILD, "--config", str(path), "--host", "127.0.0.1",
               "--port", str(port), "--num_workers", "1"]  # fmt: skip
    return command, env


def portkey_config(primary: str, secondary: str) -> str:
    def target(url: str) -> dict:
        return {
            "provider": "openai",
            "api_key": KEY,
            "custom_host": f"{url}/v1",
            "request_timeout": int(TIMEOUT * 1000),
            "retry": {"attempts": TRIES - 1, "on_status_codes": [429, 500, 502, 503, 504, 529]},
        }

    return json.dumps(
        {"strategy": {"mode": "fallback"}, "targets": [target(primary), target(secondary)]},
        separators=(",", ":"),
    )


def portkey_setup(root: Path, port: int, directory: Path) -> tuple[list, dict]:
    guard = root / "guard.js"
    guard.write_text(NODE_GUARD)
    server = directory / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    command = ["node", "--require", str(guard), str(server), f"--port={port}", "--headless"]
    return command, dict(os.environ)


def lua(root: Path, gateway: str, mode: str, primary: str, secondary: str) -> Path:
    headers = ""
    model = "gpt-4o-mini"
    if gateway == "portkey":
        config = portkey_config(primary, secondary).replace("'", "\\'")
        headers = f"wrk.headers[\"x-portkey-config\"] = '{config}'"
    else:
        headers = f'wrk.headers["Authorization"] = "Bearer {GATEWAY_KEY}"'
        model = "primary" if gateway == "litellm" else model
    stream = mode == "stream"
    path = root / f"{gateway}-{mode}.lua"
    body = json.dumps({"model": model, "max_tokens": 16, "stream": stream,
                       "messages": [{"role": "user", "content": "Hi"}]})  # fmt: skip
    path.write_text(LUA % {
        "headers": headers, "body": body, "marker": "[DONE]" if stream else '"choices"',
    })  # fmt: skip
    return path


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, script: Path, duration: int, connections: int, pid: int) -> tuple[float, ...]:
    """Requests/s, p50 ms, p99 ms, failed responses and the CPU ms per request of ``pid``
    (and its children) in one wrk run."""
    cpu = cpu_seconds(pid)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "30s", "--latency",
         "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    failed = re.search(r"FAILED (\d+)", out)
    done = re.search(r"(\d+) requests in", out)
    assert p50 and p99 and failed and done, out
    count = int(done[1])
    per_request = (cpu_seconds(pid) - cpu) * 1000 / count if count else float("nan")
    if not count:  # no request completed within the run: no latency to report
        return rps, float("nan"), float("nan"), float(failed[1]), per_request
    return rps, _ms(*p50.groups()), _ms(*p99.groups()), float(failed[1]), per_request


@contextmanager
def primary_for(scenario: str) -> Iterator[str]:
    flags = SCENARIOS[scenario]
    if flags is None:
        yield refused_url()
        return
    with running_sim("openai", *flags) as sim:
        yield sim.url  # type: ignore[attr-defined]


@contextmanager
def gateways(
    names: list[str], root: Path, primary: str, secondary: str, args: argparse.Namespace
) -> Iterator[dict[str, tuple[str, int]]]:
    """Start each gateway; yield its chat completions URL and pid; stop them all."""
    procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []
    urls: dict[str, tuple[str, int]] = {}
    try:
        for name in names:
            port = free_port()
            if name == "failover":
                workers = getattr(args, "failover_workers", 1)
                command, env = failover_setup(root, primary, secondary, port, workers)
            elif name == "litellm":
                command, env = litellm_setup(root, primary, secondary, port, args.litellm_python)
            else:
                command, env = portkey_setup(root, port, Path(args.portkey))
            log = root / f"{name}.log"
            with log.open("ab") as out:
                proc = subprocess.Popen(command, env=env, stdout=out, stderr=out, cwd=root)
            procs.append((name, proc, log))
            try:
                wait_port(port, proc, timeout=120.0)
            except (RuntimeError, OSError) as exc:
                tail = log.read_text(errors="replace").strip().splitlines()[-5:]
                raise SystemExit(f"{name} did not start ({exc}):\n" + "\n".join(tail)) from None
            urls[name] = (f"http://127.0.0.1:{port}/v1/chat/completions", proc.pid)
        yield urls
    finally:
        for name, proc, log in procs:
            stop(proc)
            blocked = [ln for ln in log.read_text(errors="replace").splitlines() if "BLOCKED" in ln]
            BLOCKED.setdefault(name, []).extend(blocked)


BLOCKED: dict[str, list[str]] = {}


def measure(scenario: str, names: list[str], root: Path, args: argparse.Namespace) -> dict:
    """Medians per gateway and mode for one scenario, on freshly started gateways."""
    with ExitStack() as stack:
        secondary = stack.enter_context(running_sim("openai")).url  # type: ignore[attr-defined]
        primary = stack.enter_context(primary_for(scenario))
        urls = stack.enter_context(gateways(names, root, primary, secondary, args))
        scripts = {(g, m): lua(root, g, m, primary, secondary) for g in names
                   for m in ("plain", "stream")}  # fmt: skip
        for (name, _), script in scripts.items():  # warm up: imports, pools, breakers
            wrk(urls[name][0], script, 1, args.connections, urls[name][1])
        got: dict[tuple[str, str], list[tuple[float, ...]]] = {key: [] for key in scripts}
        for run in range(args.runs):
            order = names[run % len(names) :] + names[: run % len(names)]
            for name in order:
                for mode in ("plain", "stream"):
                    script = scripts[(name, mode)]
                    url, pid = urls[name]
                    got[(name, mode)].append(wrk(url, script, args.duration, args.connections,
                                                 pid))  # fmt: skip
    return {key: tuple(median([r[i] for r in runs]) for i in range(5)) for key, runs in got.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--gateways", default=",".join(GATEWAYS))
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--litellm-python", default=sys.executable,
                        help="a Python with litellm's proxy installed")  # fmt: skip
    parser.add_argument("--portkey", default=".", help="the folder npm installed it in")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench_gateway_peers needs wrk: apt-get install wrk")
    names = [g for g in args.gateways.split(",") if g]
    unknown = set(names) - set(GATEWAYS) | set(args.scenarios.split(",")) - set(SCENARIOS)
    if unknown:
        sys.exit(f"unknown gateways or scenarios: {', '.join(sorted(unknown))}")
    rows = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for scenario in args.scenarios.split(","):
            results = measure(scenario, names, Path(tmp), args)
            for name in names:
                plain, stream = results[(name, "plain")], results[(name, "stream")]
                rows.append((scenario, name, *plain, *stream))
            print(f"# {scenario} done at {time.monotonic() - started:.0f} s", file=sys.stderr)
    print(
        f"{machine()}; wrk -t1 -c{args.connections}, {args.duration} s runs, median of "
        f"{args.runs}; per-attempt timeout {TIMEOUT:g} s, {TRIES} tries per provider"
    )
    print(table(
        "Gateways (primary per scenario, healthy secondary; OpenAI simulators on loopback)",
        ["scenario", "gateway", "req/s", "p50 ms", "p99 ms", "failed", "CPU ms/req",
         "stream req/s", "stream p50 ms", "stream p99 ms", "stream failed", "stream CPU ms/req"],
        rows,
    ))  # fmt: skip
    for name in names:
        blocked = BLOCKED.get(name, [])
        print(f"{name}: {len(blocked)} connection(s) or lookup(s) off loopback refused"
              + (f": {'; '.join(sorted(set(blocked))[:5])}" if blocked else ""))  # fmt: skip


if __name__ == "__main__":
    main()
