"""Memory: peak RSS of one ``failover ask`` process, and of a router over 10,000 requests.

8a. peak RSS of one whole ``failover ask`` process (``--no-stream`` and streaming) against the
    OpenAI-compatible simulator, next to the bare httpx script (the baseline), ``python -c
    pass`` and ``curl``: each command's own ru_maxrss, median of ``--runs``. Each command is
    forked from a small launcher: Linux charges a process the peak RSS of the memory it was
    forked with, so one spawned straight from this process would report at least our peak.
8b. one router in one process sending 10,000 sequential ``route()`` requests to the simulator:
    RSS and the Python heap measured by tracemalloc after 1k, 2k, 5k and 10k requests, with
    the state delta flushed to a MemoryStore, to a JSON file store in a temporary directory
    (both with autoflush), and with no store (the library default). The histories are bounded
    (100 latencies per provider in the tracker, 200 breaker outcomes, ``state.history``
    samples in the store), so once they are full at 1k requests the heap must stay flat. Each
    store runs in a fresh process; the state is flushed before each reading so that readings
    do not depend on where the background flush happens to be.

The simulator runs in its own process; child Python processes use the bytecode cache.

    python bench/bench_memory.py [--quick] [--runs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

from _util import KEY, bytecode_env, external_sim, machine, median, run_child, table
from bench_cli import BYTECODE_NOTE, Command, cli_setup, warm_up

from failover_cli.breaker import MAX_OUTCOMES

# What a plain `failover ask` imports (see failover_cli/cli/fast.py; bench_cli lists it).
ASK_IMPORTS = (
    "failover_cli.cli.ask",
    "failover_cli.cli.fast",
    "failover_cli.config",
    "failover_cli.router",
    "failover_cli.store.jsonfile",
    "failover_cli.providers",
    "asyncio",
)
CHECKPOINTS = (1_000, 2_000, 5_000, 10_000)
QUICK_CHECKPOINTS = (1_000, 1_500, 2_000)  # the histories are full from 1k on
STORES = ("memory", "json", "none")
STORE_LABELS = {
    "memory": "MemoryStore, autoflush",
    "json": "JSON file store, autoflush",
    "none": "no store (library default)",
}
GROWTH_MIN = 32 * 1024  # bytes: less is noise (timers in flight, caches); no site is listed
FLAT_BYTES_PER_REQUEST = 8.0  # more than this (and GROWTH_MIN in all) is growth


# --- 8a. one `failover ask` process -----------------------------------------------------------


def peak_rss(runs: int) -> str:
    with (
        tempfile.TemporaryDirectory(prefix="failover-bench-") as tmp,
        external_sim("openai") as url,
    ):
        setup = cli_setup(Path(tmp), url)
        expected = warm_up(setup)
        # A reference row: the same imports as `ask`, nothing else (no config, no request).
        imports_only = [sys.executable, "-c", f"import {', '.join(ASK_IMPORTS)}"]
        commands = [
            *setup.commands,
            Command("python: ask's imports only", imports_only, no_output=True),
        ]
        rss: dict[str, list[int]] = {c.label: [] for c in commands}
        for r in range(runs):  # interleaved, as in bench_cli
            for i in range(len(commands)):
                cmd = commands[(r + i) % len(commands)]
                child = run_child(cmd.argv, env={**setup.env, **(cmd.env or {})}, measure_rss=True)
                if (
                    child.maxrss_kib is None
                    or child.returncode != 0
                    or (not cmd.no_output and expected not in child.stdout)
                ):
                    raise RuntimeError(f"{cmd.label} failed: {child.stderr[-2000:]}")
                rss[cmd.label].append(child.maxrss_kib)
    base = median(rss[setup.bare.label])
    rows = [
        [label, median(v) / 1024, f"{median(v) / base:.2f}x", f"{(median(v) - base) / 1024:+.1f}"]
        for label, v in rss.items()
    ]
    return table(
        f"8a. Peak RSS of one process (its ru_maxrss, forked from a small launcher), median of "
        f"{runs} runs",
        ["command", "peak RSS MiB", "x bare script", "MiB vs bare script"],
        rows,
    )


# --- 8b. one router, many requests (runs in a child process per store) ------------------------


def rss_bytes() -> int:
    """This process's resident set size now (Linux /proc; elsewhere the peak)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def site(trace: tracemalloc.Trace) -> str | None:
    """Where a block was allocated: the innermost frame in a real file (code generated by
    exec, such as a NamedTuple's ``__new__``, is charged to its caller); None for blocks that
    tracemalloc allocated itself (snapshots, traces)."""
    frames = list(trace.traceback)  # oldest first
    frame = next((f for f in reversed(frames) if not f.filename.startswith("<")), frames[-1])
    if frame.filename == tracemalloc.__file__:
        return None
    return f"{os.path.basename(frame.filename)}:{frame.lineno}"  # Path() would intern names


def heap_bytes(snapshot: tracemalloc.Snapshot) -> int:
    return sum(t.size for t in snapshot.traces if site(t) is not None)


def heap_by_site(snapshot: tracemalloc.Snapshot) -> dict[str, list[int]]:
    """Live bytes and blocks per allocation site."""
    sites: dict[str, list[int]] = {}
    for trace in snapshot.traces:
        where = site(trace)
        if where is not None:
            size = sites.setdefault(where, [0, 0])
            size[0] += trace.size
            size[1] += 1
    return sites


def bounded_sizes(router: Any, store: Any) -> dict[str, int | None]:
    """The lengths of the bounded histories (ints only: no reference to the state survives)."""
    tracker = router.tracker
    stored = store.load(router.config.chain).providers["sim"] if store is not None else None
    pending = tracker.pending.providers.get("sim")
    return {
        "latencies": len(tracker.latencies["sim"]),
        "outcomes": len(tracker.breakers["sim"].outcomes),
        "stored_samples": len(stored.samples) if stored else None,
        "stored_outcomes": len(stored.outcomes) if stored else None,
        "unflushed": len(pending.samples) if pending else 0,
    }


async def router_child(
    store_kind: str, url: str, checkpoints: list[int], tmp: str, traced: bool
) -> None:
    """Route ``checkpoints[-1]`` requests; print one JSON line per checkpoint, then (traced)
    the allocation sites that grew between the first and the last. Untraced, the readings are
    RSS only: tracemalloc adds memory of its own for every live block."""
    from failover_cli.config import Config
    from failover_cli.router import FailoverRouter
    from failover_cli.store import JsonFileStore, MemoryStore
    from failover_cli.types import ProviderConfig

    provider = ProviderConfig(
        name="sim",
        kind="openai",
        model="gpt-4o-mini",
        base_url=url,
        api_key_env="BENCH_KEY",
        timeout=10,
    )
    config = Config(providers=(provider,))
    store: Any = {
        "memory": lambda: MemoryStore(),
        "json": lambda: JsonFileStore(Path(tmp) / "state.json"),
        "none": lambda: None,
    }[store_kind]()
    router = FailoverRouter(config, store=store, env={"BENCH_KEY": KEY})
    await router.route("Say hello.", max_tokens=64)  # imports done, connection open
    done = 1
    gc.collect()
    # The heap: what was allocated after this point and is still alive. Two frames, so that
    # a block allocated by exec-generated code is charged to the line that called it.
    if traced:
        tracemalloc.start(2)
    first = last = None
    for checkpoint in checkpoints:
        while done < checkpoint:
            await router.route("Say hello.", max_tokens=64)
            done += 1
        await router.flush()
        gc.collect()
        reading: dict[str, Any] = {"requests": done, "rss": rss_bytes()}
        if traced:
            last = tracemalloc.take_snapshot()
            first = first or last
            reading["heap"] = heap_bytes(last)
        print(json.dumps(reading | bounded_sizes(router, store)), flush=True)
    await router.aclose()
    if store is not None:
        store.close()
    if first is None or last is None:
        return
    before, after = heap_by_site(first), heap_by_site(last)
    grown = []
    for where, (size, blocks) in after.items():
        size0, blocks0 = before.get(where, (0, 0))
        if size - size0 >= GROWTH_MIN:
            grown.append({"where": where, "bytes": size - size0, "blocks": blocks - blocks0})
    grown.sort(key=lambda g: -g["bytes"])
    print(json.dumps({"sites": grown[:3]}), flush=True)


def router_memory(checkpoints: tuple[int, ...]) -> list[str]:
    readings: dict[str, list[dict[str, Any]]] = {}
    sites: dict[str, list[dict[str, Any]]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="failover-bench-") as tmp,
        external_sim("openai") as url,
    ):
        for kind in STORES:
            # Twice, each in a fresh process: traced for the heap, untraced for the RSS.
            runs = {}
            for mode in ("traced", "untraced"):
                state_dir = Path(tmp) / f"{kind}-{mode}"
                state_dir.mkdir()
                argv = [sys.executable, __file__, "--router-child", kind, url, str(state_dir)]
                argv += [",".join(map(str, checkpoints)), mode]
                child = run_child(argv, env=bytecode_env())
                if child.returncode != 0:
                    raise RuntimeError(f"router child ({kind}) failed: {child.stderr[-3000:]}")
                runs[mode] = [json.loads(line) for line in child.stdout.splitlines()]
            readings[kind] = [
                traced | {"rss": untraced["rss"]}
                for traced, untraced in zip(runs["traced"][:-1], runs["untraced"], strict=True)
            ]
            sites[kind] = runs["traced"][-1]["sites"]
    rows, summary = [], []
    for kind in STORES:
        for r in readings[kind]:
            rows.append(
                [
                    STORE_LABELS[kind],
                    f"{r['requests']:,}",
                    r["rss"] / 2**20,
                    r["heap"] / 1024,
                    r["latencies"],
                    r["outcomes"],
                    "" if r["stored_samples"] is None else r["stored_samples"],
                    "" if r["stored_outcomes"] is None else r["stored_outcomes"],
                    r["unflushed"],
                ]
            )
        # The first interval may hold one-time steps (caches, timers in flight): the verdict
        # is on the slope from the second reading to the last.
        a, b = readings[kind][1 if len(readings[kind]) > 2 else 0], readings[kind][-1]
        growth = b["heap"] - a["heap"]
        per_request = growth / (b["requests"] - a["requests"])
        grows = per_request > FLAT_BYTES_PER_REQUEST and growth > GROWTH_MIN
        summary.append(
            [
                STORE_LABELS[kind],
                f"{a['requests']:,} → {b['requests']:,}",
                growth / 1024,
                per_request,
                (b["rss"] - a["rss"]) / 1024,
                "GROWS" if grows else "flat",
                "; ".join(
                    f"{s['where']} {s['bytes'] / 1024:+,.0f} KiB ({s['blocks']:+,} blocks)"
                    for s in sites[kind]
                )
                or f"none above {GROWTH_MIN // 1024} KiB",
            ]
        )
    return [
        table(
            "8b. One router, sequential route() to the simulator: memory after N requests "
            "(state flushed before each reading; RSS from a second, untraced process)",
            [
                "store",
                "requests",
                "RSS MiB",
                "heap KiB",
                "latencies kept",
                "breaker outcomes",
                "stored samples",
                "stored outcomes",
                "unflushed samples",
            ],
            rows,
        ),
        table(
            "Growth once the histories are full (heap: live Python blocks, tracemalloc)",
            [
                "store",
                "requests",
                "heap KiB",
                "heap bytes/request",
                "RSS KiB",
                "verdict",
                "top growing allocation sites, first to last reading",
            ],
            summary,
        )
        + f"\nGROWS: more than {FLAT_BYTES_PER_REQUEST:g} bytes per request and "
        f"{GROWTH_MIN // 1024} KiB in all, from the second reading to the last. Bounded: tracker "
        f"latencies 100 per provider, breaker outcomes {MAX_OUTCOMES}, stored samples "
        f"state.history (500), stored outcomes {MAX_OUTCOMES}.",
    ]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--router-child":
        kind, url, tmp, checkpoints, mode = sys.argv[2:7]
        points = [int(c) for c in checkpoints.split(",")]
        asyncio.run(router_child(kind, url, points, tmp, traced=mode == "traced"))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and requests")
    parser.add_argument("--runs", type=int, help="runs per command in 8a (default 10)")
    parser.add_argument("--only", choices=["process", "router"], help="run one part")
    args = parser.parse_args()
    runs = args.runs or (3 if args.quick else 10)
    print(f"bench_memory on {machine()}")
    print(BYTECODE_NOTE)
    if args.only in (None, "process"):
        print(peak_rss(runs), flush=True)
    if args.only in (None, "router"):
        for text in router_memory(QUICK_CHECKPOINTS if args.quick else CHECKPOINTS):
            print(text, flush=True)


if __name__ == "__main__":
    main()
