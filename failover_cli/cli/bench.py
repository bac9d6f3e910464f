"""``failover bench``: call each provider directly (no failover) and measure it.

Providers are measured one after another, ``concurrency`` requests in flight at a time, each
request streamed so the time to first token is known. Every outcome is also recorded in the
tracker (the latency history and the breakers), which the command flushes to the store.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ProviderError
from ..protocols import Provider
from ..scoring import percentile
from ..tracker import Tracker
from ..types import CompletionRequest, ErrorClass, StreamEnd, TextDelta, Usage
from .exits import EXIT_FAILED, BadOption, handled, run_async
from .output import Answer, clean, err_console, print_json, warn
from .wiring import check_names, close_store, load_config, open_store, state_location

if TYPE_CHECKING:
    from ..config import Config

CSV_FIELDS = (
    "provider",
    "kind",
    "model",
    "requests",
    "successes",
    *(f"failures_{c.value}" for c in ErrorClass),
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "ttft_p50_ms",
    "output_tokens_per_s",
    "cost_per_1k_requests_usd",
    "skipped",
)


@dataclass
class ProviderBench:
    """What was measured for one provider."""

    provider: Provider
    requests: int = 0
    successes: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    ttfts_ms: list[float] = field(default_factory=list)
    decode_seconds: float = 0.0  # time from first token to the end, successes only
    usage: Usage = field(default_factory=Usage)
    skipped: str | None = None  # why it was not measured (no API key)

    def summary(self) -> dict[str, Any]:
        cfg = self.provider.config

        def ms(v: float | None) -> float | None:
            return None if v is None else round(v, 1)

        tps = None
        if self.decode_seconds > 0:
            tps = round(self.usage.output_tokens / self.decode_seconds, 1)
        cost = None
        if cfg.cost is not None and self.successes:
            cost = round(cfg.cost.usd(self.usage) / self.successes * 1000, 6)
        return {
            "provider": cfg.name,
            "kind": cfg.kind,
            "model": cfg.model,
            "requests": self.requests,
            "successes": self.successes,
            "failures": dict(sorted(self.failures.items())),
            "latency_ms": {
                "p50": ms(percentile(self.latencies_ms, 50)),
                "p95": ms(percentile(self.latencies_ms, 95)),
                "p99": ms(percentile(self.latencies_ms, 99)),
            },
            "ttft_ms": {"p50": ms(percentile(self.ttfts_ms, 50))},
            "output_tokens": self.usage.output_tokens,
            "output_tokens_per_s": tps,
            "cost_per_1k_requests_usd": cost,
            "skipped": self.skipped,
        }


async def _one(bench: ProviderBench, request: CompletionRequest, tracker: Tracker | None) -> None:
    """One streamed request; its outcome goes into ``bench`` and ``tracker``."""
    provider = bench.provider
    name = provider.name
    start = time.monotonic()
    first: float | None = None
    end: StreamEnd | None = None
    try:
        async for event in provider.stream(request, timeout=provider.config.timeout):
            if isinstance(event, TextDelta):
                if first is None and event.text:
                    first = time.monotonic()
            elif isinstance(event, StreamEnd):
                end = event
    except ProviderError as exc:
        if exc.reason == "no_key":
            bench.skipped = exc.message
            return
        duration = (time.monotonic() - start) * 1000
        bench.requests += 1
        cls = exc.error_class.value
        bench.failures[cls] = bench.failures.get(cls, 0) + 1
        if tracker is not None:
            tracker.on_failure(name, None, exc, duration)
        return
    done = time.monotonic()
    latency = (done - start) * 1000
    ttft = None if first is None else (first - start) * 1000
    usage = end.usage if end is not None else Usage()
    bench.requests += 1
    bench.successes += 1
    bench.latencies_ms.append(latency)
    if ttft is not None:
        bench.ttfts_ms.append(ttft)
        bench.decode_seconds += done - (first or done)
    bench.usage = bench.usage + usage
    if tracker is not None:
        tracker.on_success(name, None, latency, ttft, usage.output_tokens)


async def bench_provider(
    provider: Provider,
    request: CompletionRequest,
    *,
    requests: int,
    concurrency: int,
    tracker: Tracker | None = None,
    on_done: Callable[[str], None] = lambda _name: None,
) -> ProviderBench:
    """Send ``requests`` requests to ``provider``, ``concurrency`` at a time."""
    bench = ProviderBench(provider)
    gate = asyncio.Semaphore(concurrency)

    async def worker() -> None:
        async with gate:
            if bench.skipped is None:
                await _one(bench, request, tracker)
            on_done(provider.name)

    await asyncio.gather(*(worker() for _ in range(requests)))
    return bench


async def run_bench(
    providers: Sequence[Provider],
    request: CompletionRequest,
    *,
    requests: int,
    concurrency: int,
    tracker: Tracker | None = None,
    on_start: Callable[[str, int], None] = lambda _name, _total: None,
    on_done: Callable[[str], None] = lambda _name: None,
) -> list[dict[str, Any]]:
    """Benchmark each provider in turn; return one summary per provider, in order."""
    out = []
    try:
        for provider in providers:
            on_start(provider.name, requests)
            bench = await bench_provider(
                provider,
                request,
                requests=requests,
                concurrency=concurrency,
                tracker=tracker,
                on_done=on_done,
            )
            out.append(bench.summary())
    finally:
        for provider in providers:
            await provider.aclose()
    return out


def to_csv(results: Sequence[dict[str, Any]]) -> str:
    """One CSV row per provider (header first), failures split by class."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in results:
        row = {k: r.get(k) for k in ("provider", "kind", "model", "requests", "successes")}
        for c in ErrorClass:
            row[f"failures_{c.value}"] = r["failures"].get(c.value, 0)
        for q in ("p50", "p95", "p99"):
            row[f"latency_{q}_ms"] = r["latency_ms"][q]
        row["ttft_p50_ms"] = r["ttft_ms"]["p50"]
        row["output_tokens_per_s"] = r["output_tokens_per_s"]
        row["cost_per_1k_requests_usd"] = r["cost_per_1k_requests_usd"]
        row["skipped"] = r["skipped"] or ""
        writer.writerow(row)
    return buf.getvalue()


class BenchProgress:
    """A Rich progress bar per provider on stderr, only when ``enabled`` (a terminal)."""

    def __init__(self, console: Any, *, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                console=console,
                transient=True,
            )

    def __enter__(self) -> BenchProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def add(self, name: str, total: int) -> None:
        if self._progress is not None:
            self._tasks[name] = self._progress.add_task(name, total=total)

    def advance(self, name: str) -> None:
        if self._progress is not None and name in self._tasks:
            self._progress.advance(self._tasks[name])


def run_bench_command(
    *,
    requests: int,
    concurrency: int,
    prompt: str,
    max_tokens: int,
    provider: Sequence[str] | None,
    json_out: bool,
    csv_out: bool,
    config: str | None,
    state: str | None,
) -> None:
    """Measure each provider (see ``failover bench --help``); exit 1 if none answered."""
    with handled():
        if json_out and csv_out:
            raise BadOption("choose one of --json and --csv", "--csv")
        if not prompt.strip():
            raise BadOption("the prompt is empty", "--prompt")
        cfg = load_config(config)
        names = check_names(cfg, provider, "--provider") or [p.name for p in cfg.providers]
        results = run_async(
            _bench(cfg, state_location(state, cfg), names, requests, concurrency, prompt,
                   max_tokens)
        )  # fmt: skip
        if json_out:
            print_json({"providers": results})
        elif csv_out:
            Answer().write(to_csv(clean(results, finite=False)))
        else:
            from .render import bench_table, make_console

            make_console(stderr=False).print(bench_table(clean(results, finite=False)))
    if not any(r["successes"] for r in results):
        raise SystemExit(EXIT_FAILED)


async def _bench(
    cfg: Config,
    location: str | None,
    names: list[str],
    requests: int,
    concurrency: int,
    prompt: str,
    max_tokens: int,
) -> list[dict[str, Any]]:
    from ..clock import SYSTEM_CLOCK
    from ..providers import create_provider, make_client
    from .render import animated

    store = open_store(location)
    tracker = Tracker(
        [p.name for p in cfg.providers],
        cfg.breaker,
        SYSTEM_CLOCK,
        store=store,
        chain=cfg.chain,
        history=cfg.state.history,
        on_warning=warn,
    )
    client = make_client()
    configs = {p.name: p for p in cfg.providers}
    providers = [create_provider(configs[n], client) for n in names]
    progress = BenchProgress(err_console(), enabled=animated(err_console()))
    try:
        with progress:
            return await run_bench(
                providers,
                CompletionRequest(prompt, max_tokens),
                requests=requests,
                concurrency=concurrency,
                tracker=tracker,
                on_done=progress.advance,
                on_start=progress.add,
            )
    finally:
        await tracker.flush()
        await client.aclose()
        close_store(store)
