"""Fault scenarios: each failure of issue 11 against the real router, adapters and transport,
with DEFAULT settings, over loopback HTTP to the simulators.

For each scenario it prints the attempts each provider received, the time until the caller had
its answer (or its error), and what the caller got: the complete answer, a clean error, or
something else (which would be a bug). Scenarios that take less than a second run ``--repeat``
times and report the median; the slow ones (a silent provider, a stall, a 60 s outage) run once.

    python bench/bench_faults.py            # every scenario (about three minutes)
    python bench/bench_faults.py --only stall,hang
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import KEY, machine, table

from failover_cli.config import Config
from failover_cli.errors import AllProvidersFailed, RoutingError
from failover_cli.router import FailoverRouter
from failover_cli.sim import Behavior, Simulator
from failover_cli.types import Cost, ProviderConfig, RouteResult

ANSWER = "The quick brown fox jumps over the lazy dog."
ENV = {"ANTHROPIC_API_KEY": KEY, "OPENAI_API_KEY": KEY}
PRIMARY_COST = Cost(3.0, 15.0)
SECONDARY_COST = Cost(0.25, 2.0)


@dataclass
class Row:
    scenario: str
    attempts: str
    seconds: float
    got: str
    expected: str


def provider(name: str, kind: str, model: str, sim: Simulator, cost: Cost) -> ProviderConfig:
    return ProviderConfig(
        name=name,
        kind=kind,
        model=model,
        base_url=sim.base_url,
        cost=cost,  # type: ignore[arg-type]
    )


@contextmanager
def chain(
    primary: Behavior,
    secondary: Behavior | None = None,
    *,
    primary_kind: str = "anthropic",
    secondary_kind: str = "openai",
    secondary_model: str = "gpt-5.4-mini",
) -> Iterator[tuple[Simulator, Simulator, Config]]:
    """Two simulators and the default configuration pointing at them."""
    with (
        Simulator(primary_kind, primary, api_key=KEY) as a,  # type: ignore[arg-type]
        Simulator(
            secondary_kind,  # type: ignore[arg-type]
            secondary or Behavior(text=ANSWER),
            api_key=KEY,
        ) as b,
    ):
        model_a = "claude-sonnet-5-5" if primary_kind == "anthropic" else "gpt-5.4-mini"
        config = Config(
            providers=(
                provider("claude", primary_kind, model_a, a, PRIMARY_COST),
                provider("gpt", secondary_kind, secondary_model, b, SECONDARY_COST),
            )
        )
        yield a, b, config


def completions(sim: Simulator) -> int:
    return sum(1 for r in sim.requests if r.method == "POST")


async def run_once(config: Config, stream: bool) -> tuple[float, RouteResult | Exception]:
    async with FailoverRouter(config, env=ENV, background_probes=False) as router:
        start = time.perf_counter()
        try:
            if stream:
                result: RouteResult | Exception = await router.stream(
                    prompt="Say the sentence.", max_tokens=64
                ).collect()
            else:
                result = await router.route(prompt="Say the sentence.", max_tokens=64)
        except RoutingError as exc:
            result = exc
        return time.perf_counter() - start, result


def verdict(result: RouteResult | Exception, expect_error: bool = False) -> str:
    if isinstance(result, AllProvidersFailed | RoutingError):
        return "clean error" if expect_error else f"error: {str(result)[:60]}"
    if isinstance(result, Exception):
        return f"crash: {type(result).__name__}"
    if result.text.strip() == ANSWER:
        stop = result.stop_reason
        return "complete answer" + (
            f", stop reason {stop}" if stop not in (None, "end_turn", "stop") else ""
        )
    return f"wrong text: {result.text[:40]!r}"


def scenario(
    name: str,
    primary: Behavior,
    expected: str,
    *,
    stream: bool = True,
    secondary: Behavior | None = None,
    repeat: int = 1,
    expect_error: bool = False,
    **chain_kw: object,
) -> Row:
    times: list[float] = []
    got = attempts = ""
    for _ in range(repeat):
        with chain(primary, secondary, **chain_kw) as (a, b, config):  # type: ignore[arg-type]
            seconds, result = asyncio.run(run_once(config, stream))
            times.append(seconds)
            got = verdict(result, expect_error)
            attempts = f"primary {completions(a)}, secondary {completions(b)}"
            if isinstance(result, RouteResult) and len(result.segments) > 1:
                got += " (" + " + ".join(s.provider for s in result.segments) + ")"
    return Row(name, attempts, statistics.median(times), got, expected)


# --- scenarios that need more than a Behavior -----------------------------------------------


@dataclass
class Resetter:
    url: str
    connections: int = 0


@contextmanager
def resetting_server() -> Iterator[Resetter]:
    """Accepts connections and resets each one before any response byte."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    server = Resetter(f"http://127.0.0.1:{listener.getsockname()[1]}")

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            server.connections += 1
            conn.recv(65536)
            conn.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join()
        listener.close()


def reset_before_headers(repeat: int) -> Row:
    times: list[float] = []
    got = ""
    with (
        resetting_server() as resetter,
        Simulator("openai", Behavior(text=ANSWER), api_key=KEY) as b,
    ):
        config = Config(
            providers=(
                ProviderConfig("claude", "anthropic", "claude-sonnet-5-5", base_url=resetter.url),
                provider("gpt", "openai", "gpt-5.4-mini", b, SECONDARY_COST),
            )
        )
        for _ in range(repeat):
            seconds, result = asyncio.run(run_once(config, True))
            times.append(seconds)
            got = verdict(result)
        served = completions(b)
    return Row(
        "reset before headers",
        f"primary {resetter.connections / repeat:g}, secondary {served / repeat:g}",
        statistics.median(times),
        got,
        "fail over at once",
    )


def recovery_after_outage(down: float = 60.0, every: float = 4.0, after: float = 60.0) -> Row:
    """The primary answers 503 for ``down`` seconds, then is healthy; one request every
    ``every`` seconds through one long-lived router (as a gateway or a library app)."""
    served_by: list[tuple[float, str]] = []

    async def trickle(config: Config, a: Simulator) -> None:
        async with FailoverRouter(config, env=ENV) as router:
            start = time.monotonic()
            while (now := time.monotonic() - start) < down + after:
                if now >= down and a.behavior.failure_rate:
                    a.behavior = Behavior(text=ANSWER)
                result = await router.route(prompt="Say the sentence.", max_tokens=64)
                served_by.append((now, result.provider))
                await asyncio.sleep(every)

    with chain(Behavior(text=ANSWER, failure_rate=1.0, failure_status=503)) as (a, _b, config):
        asyncio.run(trickle(config, a))
        calls = completions(a)
    back = next((t for t, p in served_by if t >= down and p == "claude"), None)
    got = "never back" if back is None else f"primary back {back - down:.1f}s after recovery"
    return Row(
        f"primary down {down:g}s, then healthy; 1 request / {every:g}s",
        f"primary {calls} over {len(served_by)} requests",
        (back - down) if back is not None else float("nan"),
        got,
        "back within ~one base cooldown (30 s)",
    )


def cost_after_failover(repeat: int) -> Row:
    row = scenario(
        "cost accounting after a fail-over",
        Behavior(text=ANSWER, statuses=[503, 503, 503]),
        "priced at the provider that answered",
        stream=False,
        repeat=repeat,
    )
    with chain(Behavior(text=ANSWER, statuses=[503, 503, 503])) as (_a, _b, config):
        _, result = asyncio.run(run_once(config, False))
    if isinstance(result, RouteResult):
        expected = SECONDARY_COST.usd(result.usage)
        ok = result.provider == "gpt" and abs((result.cost or 0) - expected) < 1e-12
        row.got += f"; cost ${result.cost:.8f} ({'gpt price' if ok else 'WRONG'})"
    return row


SCENARIOS: dict[str, Callable[[int], Row]] = {
    "429-retry-after": lambda n: scenario(
        "429 with Retry-After: 8",
        Behavior(text=ANSWER, statuses=[429], retry_after=8),
        "fail over at once, no 8 s wait",
        repeat=n,
    ),
    "429-no-retry-after": lambda n: scenario(
        "429 without Retry-After",
        Behavior(text=ANSWER, statuses=[429]),
        "retried on the primary after a backoff",
        repeat=n,
    ),
    "500-once": lambda n: scenario(
        "500 once", Behavior(text=ANSWER, statuses=[500]), "retried on the primary", repeat=n
    ),
    "503-persistent": lambda n: scenario(
        "503 persistent",
        Behavior(text=ANSWER, failure_rate=1.0, failure_status=503),
        "3 tries with backoff, then the secondary",
        repeat=n,
    ),
    "reset": reset_before_headers,
    "hang": lambda n: scenario(
        "no response (accepts, never answers)",
        Behavior(text=ANSWER, fault="hang"),
        "secondary within ~12 s",
    ),
    "slow-first-token": lambda n: scenario(
        "first token after 20 s",
        Behavior(text=ANSWER, ttft=20.0),
        "taken over at the first-token limit",
    ),
    "stream-cut": lambda n: scenario(
        "stream cut after 3 tokens",
        Behavior(text=ANSWER, fault="truncate", fault_after_tokens=3),
        "continued by the secondary",
        repeat=n,
    ),
    "stall": lambda n: scenario(
        "stream stalls after 3 tokens",
        Behavior(text=ANSWER, fault="stall", fault_after_tokens=3),
        "stall detected at the idle limit, continued",
    ),
    "malformed": lambda n: scenario(
        "malformed chunk after 3 tokens",
        Behavior(text=ANSWER, fault="malformed", fault_after_tokens=3),
        "continued by the secondary",
        repeat=n,
    ),
    "no-end-marker": lambda n: scenario(
        "stream without its end marker ([DONE])",
        Behavior(text=ANSWER, fault="no_end_marker"),
        "complete from the primary, 1 attempt",
        primary_kind="openai",
        repeat=n,
    ),
    "context-length": lambda n: scenario(
        "context length exceeded",
        Behavior(text=ANSWER, fault="context_length"),
        "fail over at once",
        repeat=n,
    ),
    "content-filter": lambda n: scenario(
        "content filter (a refusal)",
        Behavior(text=ANSWER, fault="content_filter"),
        "the answer as given, stop reason kept, no fail-over",
        repeat=n,
    ),
    "reject-prefill": lambda n: scenario(
        "cut stream; the fallback rejects prefill",
        Behavior(text=ANSWER, fault="truncate", fault_after_tokens=3),
        "prefill refused, continued by instruction",
        secondary=Behavior(text=ANSWER, fault="reject_prefill"),
        secondary_kind="anthropic",
        secondary_model="claude-3-5-haiku",
        repeat=n,
    ),
    "recovery": lambda n: recovery_after_outage(),
    "cost": cost_after_failover,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated scenario keys: " + ", ".join(SCENARIOS))
    parser.add_argument("--repeat", type=int, default=5, help="runs of each fast scenario")
    args = parser.parse_args()
    keys = args.only.split(",") if args.only else list(SCENARIOS)
    rows = []
    for key in keys:
        print(f"running {key} ...", file=sys.stderr, flush=True)
        rows.append(SCENARIOS[key](args.repeat))
    print(f"Fault scenarios, default settings ({machine()})")
    print(
        table(
            "Per scenario: completion requests each provider received in one run, time to the "
            "caller's answer (median of the runs; for the outage: time from recovery to the "
            "primary's first answer), and what the caller got",
            ["scenario", "attempts", "seconds", "caller got", "expected"],
            [(r.scenario, r.attempts, r.seconds, r.got, r.expected) for r in rows],
        )
    )


if __name__ == "__main__":
    main()
