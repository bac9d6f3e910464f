"""``failover serve`` against the upstream direct, the LiteLLM proxy and the Portkey gateway,
at fixed request rates.

    python bench/bench_serve.py [--wrk2 PATH] [--targets direct,floor,failover,litellm,portkey]
        [--rates 100,500] [--duration 8] [--runs 3] [--ladder 25,50,...] [--ttfb 100]
        [--dead 20] [--parts rates,ttfb,ladder,dead]
        [--litellm-python PY] [--portkey DIR]
    (needs wrk2, built from github.com/giltene/wrk2; the LiteLLM proxy in the Python PY; the
    Portkey gateway installed with npm in DIR: see bench/README.md, "bench_serve.py")

One upstream for every target: the built-in OpenAI simulator in its own process on
127.0.0.1, answering after a fixed ``--delay`` (its ``--latency``). Each gateway has it as its
primary and a second, idle simulator as its fallback, with bench_gateway_peers.py's
equivalent settings (per-attempt timeout, tries, fallback, breaker: see that script's
docstring). "direct" is the upstream itself, called with its own key: the baseline that
every gateway's added latency is measured against, in the same run. "floor" is
bench/_floor_proxy.py: a bare relay to the upstream on failover serve's own HTTP server
(uvicorn, httptools, asyncio's loop), with none of a gateway's work, so what it adds is what
that server and a Python process cost on this machine.

The load generator is wrk2 (Gil Tene's fork of wrk): it sends at a constant rate whatever the
answers do, and measures each request's latency from the moment it was due to be sent, so a
target that falls behind is charged for the wait (no coordinated omission). ``hey -q`` (Debian)
is not used: its per-worker tickers fire in phase, sending bursts of ``-c`` requests at once
rather than a steady rate (bench/README.md has the reading). Each run records only after wrk2's
calibration (its first 10.3 s), which leaves out the start, when each of its connections sends
its first request at once; "answered" is the share of the requests due in the recorded time
that were answered in it.

Parts (``--parts``):

- ``rates``: each target at each of ``--rates`` req/s, non-streamed and streamed, ``--duration``
  seconds per run, ``--runs`` rounds with the targets' order rotating; medians. Added latency
  is a gateway's p50 (p99) minus direct's p50 (p99) at the same rate and mode, per round.
- ``ttfb``: streaming time to the first response byte and to the first content token,
  measured by a client here (one request at a time, the targets taking turns, ``--ttfb``
  requests each); overhead is a gateway's median (p99) minus direct's.
- ``ladder``: the highest sustainable rate of each target, non-streamed: rates from
  ``--ladder`` in turn, 4 s measured each, until one has p99 of 50 ms or more, or a failed
  request, or answers fewer than 95% of the requests due; such a rate is tried twice before
  it counts.
- ``dead``: a dead primary (refused, every answer a 500, or silent) behind ``failover serve``
  against the same chain in the library (``FailoverRouter.route`` in a process of its own):
  ``--dead`` requests one after another from a cold start, each path with a fresh state file;
  the extra time over the same requests with a healthy primary.

Peak RSS is each process's VmHWM from /proc, read when the last part is done; CPU ms/req is
the user + system time of the target's processes per answered request. Nothing leaves
127.0.0.1 (bench_gateway_peers.py's guards, counted and printed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(__file__))
from _util import KEY, machine, median, quantile, running_sim, stop, table
from bench_gateway import cpu_seconds, free_port, process_tree, wait_port
from bench_gateway_peers import (
    BLOCKED,
    GATEWAY_KEY,
    GATEWAYS,
    LUA,
    TIMEOUT,
    TRIES,
    gateways,
    portkey_config,
    primary_for,
)

TARGETS = ("direct", "floor", *GATEWAYS)
SUSTAINED_P99_MS = 50.0
LADDER = (25, 50, 75, 100, 150, 200, 300, 400, 500, 600, 700, 800, 1000, 1200, 1400, 1700, 2000)
LADDER_SECONDS = 4


def connections(rate: int) -> int:
    """wrk2's connections at ``rate``: each sends at most 8 req/s, so at 50 ms a request (the
    sustainable limit) a connection is busy less than half the time and none waits on its
    last answer; fewer connections at low rates keep each one sending often enough that the
    requests in a short run are spread evenly."""
    return min(512, max(8, math.ceil(rate / 8)))


def calibration(rate: int) -> float:
    """wrk2 records nothing for its first 10 s (CALIBRATE_DELAY_MS) plus 5 ms a connection:
    the start, when every connection sends its first request at once, is left out."""
    return 10.0 + 0.005 * connections(rate)


DEAD = ("refused", "500", "stall")


@dataclass(frozen=True)
class Target:
    """Where and how to send one target's chat completions."""

    name: str
    url: str
    pid: int
    headers: dict[str, str]
    model: str

    def body(self, stream: bool) -> bytes:
        return json.dumps({
            "model": self.model, "max_tokens": 16, "stream": stream,
            "messages": [{"role": "user", "content": "Hi"}],
        }).encode()  # fmt: skip

    def script(self, root: Path, stream: bool) -> Path:
        path = root / f"{self.name}-{'stream' if stream else 'plain'}.lua"
        path.write_text(LUA % {
            "headers": "\n".join(
                f"wrk.headers[{json.dumps(k)}] = '{v}'" for k, v in self.headers.items()
            ),
            "body": self.body(stream).decode(),
            "marker": "[DONE]" if stream else '"choices"',
        })  # fmt: skip
        return path


def targets(
    names: Sequence[str], urls: dict[str, tuple[str, int]], upstream: subprocess.Popen[str],
    primary: str, secondary: str,
) -> list[Target]:  # fmt: skip
    found = []
    for name in names:
        if name == "direct":
            url = f"{primary}/v1/chat/completions"
            found.append(Target(name, url, upstream.pid, {"Authorization": f"Bearer {KEY}"},
                                "gpt-4o-mini"))  # fmt: skip
        elif name == "floor":
            found.append(Target(name, *urls[name], {}, "gpt-4o-mini"))
        elif name == "portkey":
            config = portkey_config(primary, secondary)
            found.append(Target(name, *urls[name], {"x-portkey-config": config}, "gpt-4o-mini"))
        else:
            model = "primary" if name == "litellm" else "gpt-4o-mini"
            found.append(Target(name, *urls[name], {"Authorization": f"Bearer {GATEWAY_KEY}"},
                                model))  # fmt: skip
    return found


# --- wrk2 ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    rate: int
    p50: float  # ms, from when each request was due
    p99: float
    answered_share: float  # requests completed / requests due
    failed: int
    cpu_ms: float  # per completed request

    def sustained(self) -> bool:
        return self.p99 < SUSTAINED_P99_MS and not self.failed and self.answered_share >= 0.95


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk2(binary: str, target: Target, script: Path, rate: int, seconds: int) -> Reading:
    """One wrk2 run at ``rate`` req/s, measured for ``seconds`` after its calibration."""
    cpu = cpu_seconds(target.pid)
    out = subprocess.run(
        [binary, "-t1", f"-c{connections(rate)}", f"-d{math.ceil(calibration(rate) + seconds)}s",
         f"-R{rate}", "--timeout", "10s", "--latency", "-s", str(script), target.url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    p50 = re.search(r"\s50\.000%\s+([\d.]+)(us|ms|s|m)\b", out)
    p99 = re.search(r"\s99\.000%\s+([\d.]+)(us|ms|s|m)\b", out)
    recorded = re.search(r"Total count\s+=\s+(\d+)", out)
    failed = re.search(r"FAILED (\d+)", out)
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b", out)
    assert failed and done, out
    count = int(done[1])
    cpu_ms = (cpu_seconds(target.pid) - cpu) * 1000 / count if count else float("nan")
    if not (recorded and p50 and p99):  # nothing answered after the calibration
        return Reading(rate, float("nan"), float("nan"), 0.0, int(failed[1]), cpu_ms)
    measured = _ms(done[2], done[3]) / 1000 - calibration(rate)
    return Reading(rate, _ms(*p50.groups()), _ms(*p99.groups()),
                   int(recorded[1]) / (rate * measured), int(failed[1]), cpu_ms)  # fmt: skip


def settle(pids: Sequence[int], limit: float = 120.0) -> None:
    """Wait until ``pids`` are idle (under a tenth of a core for 0.5 s): an overloaded target
    still working through requests of the last run must not slow the next one."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = sum(cpu_seconds(p) for p in pids)
        time.sleep(0.5)
        if sum(cpu_seconds(p) for p in pids) - before < 0.05:
            return
    print(f"# still busy after {limit:g} s; measuring anyway", file=sys.stderr)


# --- part: fixed rates ---------------------------------------------------------------------


def fixed_rates(
    found: list[Target], root: Path, args: argparse.Namespace
) -> dict[tuple[str, int, bool], list[Reading]]:
    scripts = {(t.name, s): t.script(root, s) for t in found for s in (False, True)}
    pids = [t.pid for t in found]
    for t in found:  # warm up: imports, pools, the breaker's first successes
        gateway_sequence(t, 20)
        for _ in range(20):
            first_byte_and_token(t)
    got: dict[tuple[str, int, bool], list[Reading]] = {}
    for run in range(args.runs):
        order = found[run % len(found) :] + found[: run % len(found)]
        for rate in args.rates:
            for t in order:
                for stream in (False, True):
                    settle(pids)
                    reading = wrk2(args.wrk2, t, scripts[(t.name, stream)], rate, args.duration)
                    got.setdefault((t.name, rate, stream), []).append(reading)
        print(f"# rates: round {run + 1} of {args.runs} done", file=sys.stderr)
    return got


def rate_rows(found: list[Target], got: dict, args: argparse.Namespace) -> list[tuple]:
    rows = []
    for rate in args.rates:
        for stream in (False, True):
            base = got.get(("direct", rate, stream))
            for t in found:
                runs = got[(t.name, rate, stream)]
                added50 = added99 = float("nan")
                if base and t.name != "direct":  # per round, against that round's direct
                    added50 = median([r.p50 - b.p50 for r, b in zip(runs, base, strict=True)])
                    added99 = median([r.p99 - b.p99 for r, b in zip(runs, base, strict=True)])
                rows.append((
                    rate, "stream" if stream else "plain", t.name,
                    median([r.p50 for r in runs]), median([r.p99 for r in runs]),
                    added50, added99, median([r.answered_share * 100 for r in runs]),
                    sum(r.failed for r in runs), median([r.cpu_ms for r in runs]),
                    " / ".join(f"{r.p50:,.1f}" for r in runs),
                ))  # fmt: skip
    return rows


# --- part: highest sustainable rate --------------------------------------------------------


def ladder(found: list[Target], root: Path, args: argparse.Namespace) -> list[tuple]:
    rows = []
    pids = [t.pid for t in found]
    for t in found:
        script = t.script(root, False)
        best: Reading | None = None
        first_miss: Reading | None = None
        for rate in args.ladder:
            settle(pids)
            reading = wrk2(args.wrk2, t, script, rate, LADDER_SECONDS)
            if not reading.sustained():
                settle(pids)
                reading = wrk2(args.wrk2, t, script, rate, LADDER_SECONDS)
            if not reading.sustained():
                first_miss = reading
                break
            best = reading
        print(f"# ladder: {t.name} done", file=sys.stderr)
        miss = (f"{first_miss.rate}: p99 {first_miss.p99:,.1f} ms, "
                f"{first_miss.answered_share:.0%} answered, {first_miss.failed} failed"
                if first_miss else "none up to the top of the ladder")  # fmt: skip
        rows.append((t.name, best.rate if best else 0, best.p99 if best else float("nan"), miss))
    return rows


# --- part: streaming time to first byte ----------------------------------------------------


def first_byte_and_token(target: Target) -> tuple[float, float]:
    """Seconds from sending one streamed request to its first response byte and to its first
    non-empty content delta (a fresh connection each time, as a client's first request)."""
    parts = urlsplit(target.url)
    body = target.body(True)
    head = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close",
            "Content-Type: application/json", f"Content-Length: {len(body)}"]  # fmt: skip
    head += [f"{k}: {v}" for k, v in target.headers.items()]
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + body
    token = re.compile(rb'"content"\s*:\s*"[^"]')
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        started = time.perf_counter()
        sock.sendall(request)
        seen = b""
        first = float("nan")
        while True:
            chunk = sock.recv(65536)
            if not chunk:  # a failed stream (an error body): no first token
                return first, float("nan")
            if first != first:
                first = time.perf_counter() - started
            seen += chunk
            if token.search(seen):
                return first, time.perf_counter() - started


def ttfb(found: list[Target], args: argparse.Namespace) -> list[tuple]:
    got: dict[str, list[tuple[float, float]]] = {t.name: [] for t in found}
    failed = dict.fromkeys(got, 0)
    for t in found:  # warm up
        for _ in range(5):
            first_byte_and_token(t)
    for _ in range(args.ttfb):
        for t in found:
            byte, token = first_byte_and_token(t)
            if token == token:
                got[t.name].append((byte, token))
            else:
                failed[t.name] += 1
    base = got.get("direct")
    rows = []
    for t in found:
        byte_ms = [b * 1000 for b, _ in got[t.name]]
        token_ms = [k * 1000 for _, k in got[t.name]]
        over = [float("nan")] * 4
        if base and t.name != "direct":
            base_byte = [b * 1000 for b, _ in base]
            base_token = [k * 1000 for _, k in base]
            over = [
                median(byte_ms) - median(base_byte),
                quantile(byte_ms, 0.99) - quantile(base_byte, 0.99),
                median(token_ms) - median(base_token),
                quantile(token_ms, 0.99) - quantile(base_token, 0.99),
            ]
        rows.append((t.name, median(byte_ms), median(token_ms), quantile(token_ms, 0.99), *over,
                     failed[t.name]))  # fmt: skip
    print("# ttfb done", file=sys.stderr)
    return rows


# --- part: a dead primary, gateway against library -----------------------------------------

LIBRARY_CHILD = """
import asyncio, json, sys, time
from failover_cli.config import load_config
from failover_cli.router import FailoverRouter
from failover_cli.store import open_store

async def main(config, state, count):
    router = FailoverRouter(load_config(config), store=open_store(state))
    seconds = []
    for _ in range(count):
        started = time.perf_counter()
        result = await router.route(prompt="Hi", max_tokens=16)
        assert result.text, result
        seconds.append(time.perf_counter() - started)
    await router.aclose()
    print(json.dumps(seconds))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def gateway_sequence(target: Target, count: int) -> list[float]:
    """Seconds per request for ``count`` non-streamed requests, one after another on one
    kept-alive connection; each must be a complete answer."""
    import http.client

    parts = urlsplit(target.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    headers = {"Content-Type": "application/json", **target.headers}
    seconds = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            conn.request("POST", parts.path, body=target.body(False), headers=headers)
            response = conn.getresponse()
            data = response.read()
            seconds.append(time.perf_counter() - started)
            if response.status != 200 or b'"choices"' not in data:
                raise RuntimeError(f"gateway answered {response.status}: {data[:200]!r}")
    finally:
        conn.close()
    return seconds


def library_sequence(config: Path, state: Path, count: int) -> list[float]:
    env = {**os.environ, "FAILOVER_BENCH_KEY": KEY}
    out = subprocess.run([sys.executable, "-c", LIBRARY_CHILD, str(config), str(state),
                          str(count)], capture_output=True, text=True, env=env)  # fmt: skip
    if out.returncode:
        raise RuntimeError(f"library run failed: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout)


def dead_primary(root: Path, args: argparse.Namespace) -> list[tuple]:
    got: dict[str, dict[str, list[float]]] = {}
    with running_sim("openai", "--latency", str(args.delay)) as secondary:
        for scenario in ("healthy", *DEAD):
            scenario_root = root / f"dead-{scenario}"
            scenario_root.mkdir()
            backup = secondary.url  # type: ignore[attr-defined]
            with (
                primary_for(scenario) as primary,
                gateways(["failover"], scenario_root, primary, backup, args) as urls,
            ):
                (t,) = targets(["failover"], urls, secondary, primary, backup)
                gateway = gateway_sequence(t, args.dead)
                config = scenario_root / "failover.yaml"  # failover_setup's: the same chain
                library = library_sequence(config, scenario_root / "library.json", args.dead)
            got[scenario] = {"gateway": gateway, "library": library}
            print(f"# dead: {scenario} done", file=sys.stderr)
    rows = []
    for scenario in DEAD:
        extra = {path: sum(got[scenario][path]) - sum(got["healthy"][path])
                 for path in ("gateway", "library")}  # fmt: skip
        rows.append((
            scenario, sum(got[scenario]["gateway"]), sum(got[scenario]["library"]),
            extra["gateway"], extra["library"], extra["gateway"] - extra["library"],
            max(got[scenario]["gateway"]), max(got[scenario]["library"]),
        ))  # fmt: skip
    return rows


# --- peak RSS ------------------------------------------------------------------------------


def peak_rss_mib(pid: int) -> tuple[float, float, int]:
    """The largest VmHWM among ``pid`` and its descendants, their sum (MiB), and how many."""
    peaks = []
    for current in process_tree(pid):
        try:
            status = Path(f"/proc/{current}/status").read_text()
            peaks.append(int(re.search(r"VmHWM:\s+(\d+) kB", status)[1]) / 1024)  # type: ignore[index]
        except (OSError, TypeError):
            continue
    return (max(peaks), sum(peaks), len(peaks)) if peaks else (float("nan"), float("nan"), 0)


@contextmanager
def floor_proxy(primary: str) -> Iterator[dict[str, tuple[str, int]]]:
    """bench/_floor_proxy.py in front of ``primary``: the least a Python proxy on failover
    serve's own HTTP server costs per request here."""
    port = free_port()
    script = Path(__file__).with_name("_floor_proxy.py")
    proc = subprocess.Popen([sys.executable, str(script), str(port), primary, KEY])
    try:
        wait_port(port, proc)
        yield {"floor": (f"http://127.0.0.1:{port}/v1/chat/completions", proc.pid)}
    finally:
        stop(proc)


@contextmanager
def upstreams(delay: float) -> Iterator[tuple[subprocess.Popen[str], str]]:
    with running_sim("openai", "--latency", str(delay)) as upstream, \
            running_sim("openai") as idle:  # fmt: skip
        yield upstream, idle.url  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wrk2", default=shutil.which("wrk2") or "wrk2", help="wrk2 binary")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--parts", default="rates,ttfb,ladder,dead")
    parser.add_argument("--rates", default="100,500")
    parser.add_argument("--duration", type=int, default=5, help="seconds measured per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ladder", default=",".join(map(str, LADDER)))
    parser.add_argument("--ttfb", type=int, default=100, help="streamed requests per target")
    parser.add_argument("--dead", type=int, default=20, help="requests per dead-primary run")
    parser.add_argument("--delay", type=float, default=0.02, help="upstream seconds per answer")
    parser.add_argument("--failover-workers", type=int, default=1,
                        help="failover serve --workers (1: one process, as the peers)")  # fmt: skip
    parser.add_argument("--litellm-python", default=sys.executable,
                        help="a Python with litellm's proxy installed")  # fmt: skip
    parser.add_argument("--portkey", default=".", help="the folder npm installed it in")
    args = parser.parse_args()
    args.rates = [int(r) for r in args.rates.split(",") if r]
    args.ladder = [int(r) for r in args.ladder.split(",") if r]
    names = [n for n in args.targets.split(",") if n]
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(names) - set(TARGETS) | set(parts) - {"rates", "ttfb", "ladder", "dead"}
    if unknown:
        sys.exit(f"unknown targets or parts: {', '.join(sorted(unknown))}")
    if {"rates", "ladder"} & set(parts) and shutil.which(args.wrk2) is None:
        sys.exit("bench_serve needs wrk2: git clone https://github.com/giltene/wrk2 && "
                 "make -C wrk2, then --wrk2 wrk2/wrk")  # fmt: skip
    print(f"{machine()}; upstream: the OpenAI simulator, {args.delay * 1000:g} ms per answer; "
          "wrk2 -t1, a connection per 8 req/s (at least 8); per-attempt timeout "
          f"{TIMEOUT:g} s, {TRIES} tries per provider; failover serve --workers "
          f"{args.failover_workers}", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        root = Path(tmp)
        found: list[Target] = []
        if {"rates", "ttfb", "ladder"} & set(parts):
            upstream, idle = stack.enter_context(upstreams(args.delay))
            primary = upstream.url  # type: ignore[attr-defined]
            gateway_names = [n for n in names if n not in ("direct", "floor")]
            urls = stack.enter_context(gateways(gateway_names, root, primary, idle, args))
            if "floor" in names:
                urls.update(stack.enter_context(floor_proxy(primary)))
            found = targets(names, urls, upstream, primary, idle)
        if "rates" in parts:
            got = fixed_rates(found, root, args)
            print(table(
                f"Fixed rates (wrk2, {args.duration} s runs, median of {args.runs}; added: "
                "minus direct's, per round)",
                ["req/s", "mode", "target", "p50 ms", "p99 ms", "added p50 ms", "added p99 ms",
                 "answered %", "failed", "CPU ms/req", "p50 per round"],
                rate_rows(found, got, args),
            ), flush=True)  # fmt: skip
        if "ttfb" in parts:
            print(table(
                f"Streaming time to first byte and first token ({args.ttfb} requests each, "
                "one at a time, a new connection each; overhead: minus direct's)",
                ["target", "first byte p50 ms", "first token p50 ms", "first token p99 ms",
                 "byte overhead p50", "byte overhead p99", "token overhead p50",
                 "token overhead p99", "failed streams"],
                ttfb(found, args),
            ), flush=True)  # fmt: skip
        if "ladder" in parts:
            print(table(
                f"Highest sustainable rate (p99 < {SUSTAINED_P99_MS:g} ms, no failures, 95% "
                f"answered; {LADDER_SECONDS} s per rate, a miss tried twice)",
                ["target", "req/s", "p99 ms there", "first rate missed"],
                ladder(found, root, args),
            ), flush=True)  # fmt: skip
        if found:
            print(table(
                "Peak RSS after the parts above (VmHWM)",
                ["target", "largest process MiB", "all processes MiB", "processes"],
                [(t.name, *peak_rss_mib(t.pid)) for t in found],
            ), flush=True)  # fmt: skip
        stack.close()
        if "dead" in parts:
            print(table(
                f"A dead primary: failover serve against the library, {args.dead} requests "
                "one at a time from a cold start (seconds; extra: over a healthy primary)",
                ["primary", "gateway s", "library s", "gateway extra s", "library extra s",
                 "gateway - library s", "gateway slowest s", "library slowest s"],
                dead_primary(root, args),
            ), flush=True)  # fmt: skip
    for name in names:
        if name in BLOCKED:
            blocked = BLOCKED[name]
            print(f"{name}: {len(blocked)} connection(s) or lookup(s) off loopback refused"
                  + (f": {'; '.join(sorted(set(blocked))[:5])}" if blocked else ""))  # fmt: skip


if __name__ == "__main__":
    main()
