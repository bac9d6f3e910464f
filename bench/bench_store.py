"""How fast the state stores are: one invocation's load + save, and many processes at once.

    python bench/bench_store.py                  # JSON, and Redis if redis-server is installed
    python bench/bench_store.py --redis URL      # that Redis server (keys under a random prefix)
    python bench/bench_store.py --no-redis --dir /dev/shm   # JSON files in memory: no disk

Every store is opened afresh for each run, as a new ``failover`` process would: nothing is
cached between runs. Each chain has 3 providers, each with ``N`` latency samples and a full
outcome window (1,000 outcomes), which is what a chain that has been in use for a while holds.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the private redis-server and the worker helper

from failover_cli.breaker import MAX_OUTCOMES  # noqa: E402
from failover_cli.protocols import StateStore  # noqa: E402
from failover_cli.state import ProviderDelta, Sample, StateDelta  # noqa: E402
from failover_cli.store.jsonfile import JsonFileStore  # noqa: E402

PROVIDERS = ("anthropic", "openai", "ollama")
T0 = 1_800_000_000.0


def filled(history: int) -> StateDelta:
    """A delta that fills every provider's history and outcome window."""
    delta = StateDelta(history=history)
    for i, name in enumerate(PROVIDERS):
        delta.providers[name] = ProviderDelta(
            requests=max(history, MAX_OUTCOMES),
            successes=max(history, MAX_OUTCOMES),
            outcomes=[(T0 + n * 0.25 + i / 10, n % 9 != 0) for n in range(MAX_OUTCOMES)],
            samples=[
                Sample(T0 + n * 0.5 + i / 10, 300 + (n * 37 % 900) + 0.125, 80.5, 120 + n % 50)
                for n in range(history)
            ],
        )
    return delta


_clock = itertools.count(1)


def one_outcome(history: int) -> StateDelta:
    """What one invocation records: one request on one provider, later than all before."""
    t = T0 + 1_000_000 + next(_clock)
    delta = StateDelta(history=history)
    delta.providers[PROVIDERS[0]] = ProviderDelta(
        requests=1,
        successes=1,
        outcomes=[(t, True)],
        samples=[Sample(t, 812.5, 95.25, 431)],
    )
    return delta


def median_ms(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median wall time and median CPU time of ``runs`` calls, in milliseconds."""
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return statistics.median(wall), statistics.median(cpu)


def round_trips(name: str, opener: Callable[[], StateStore], sizes: list[int], runs: int) -> None:
    for history in sizes:
        setup = opener()
        setup.reset("bench")
        setup.update("bench", filled(history))
        setup.close()
        n = max(10, runs * 500 // max(history, 500))

        def load() -> None:
            s = opener()
            s.load("bench")
            s.close()

        def update(h: int = history) -> None:
            s = opener()
            s.update("bench", one_outcome(h))
            s.close()

        def invocation(h: int = history) -> None:
            s = opener()
            s.load("bench")
            s.update("bench", one_outcome(h))
            s.close()

        cells = [median_ms(f, n) for f in (load, update, invocation)]
        text = "  ".join(f"{w:7.2f} ({c:6.2f})" for w, c in cells)
        print(f"{name:<6} {history:>7,}  {text}   ({n} runs)")


def contention(name: str, kind: str, target: str, processes: int, updates: int) -> None:
    from test_store_json import run_workers

    prefix = f"bench-{uuid.uuid4().hex}"
    start = time.perf_counter()
    codes = run_workers(
        kind=kind, mode="record", targets=[target] * processes, updates=updates, prefix=prefix
    )
    wall = time.perf_counter() - start
    if kind == "json":
        store: StateStore = JsonFileStore(target)
    else:
        from failover_cli.store.redis import RedisStore

        store = RedisStore(target, prefix=prefix)
    counted = store.load("chain").provider("shared").requests
    store.reset("chain")
    store.close()
    total = processes * updates
    exact = "exact" if counted == total and codes == [0] * processes else f"WRONG ({counted})"
    print(
        f"{name:<6} {processes} processes x {updates} updates: {wall:6.2f} s wall "
        f"(incl. one interpreter start), {total / wall:7.0f} updates/s, count {counted:,} {exact}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis", metavar="URL", help="benchmark this Redis server too")
    parser.add_argument("--no-redis", action="store_true", help="skip Redis")
    parser.add_argument("--runs", type=int, default=200, help="runs per cell at 500 samples")
    parser.add_argument("--processes", type=int, default=50)
    parser.add_argument("--updates", type=int, default=20, help="updates per process")
    parser.add_argument("--dir", help="where to put the JSON files (default: the temp dir)")
    args = parser.parse_args()
    sizes = [100, 500, 1_000, 10_000]

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
    print("\nOne invocation: median milliseconds, wall (CPU); 3 providers, full outcome windows")
    print(f"{'store':<6} {'samples':>7}  {'load':>16}  {'save (update)':>16}  {'load + save':>16}")

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "state.json"
        round_trips("json", lambda: JsonFileStore(path), sizes, args.runs)
        size = path.stat().st_size
        print(f"{'':6} (the 10,000-sample file is {size / 1e6:.1f} MB)")

        server = None
        url = args.redis
        if url is None and not args.no_redis:
            from redis_server import RedisServer, find_binary

            binary = find_binary()
            if binary:
                server = RedisServer(binary)
                url = server.url
            else:
                print("(no redis-server found: Redis skipped)")
        try:
            if url:
                from failover_cli.store.redis import RedisStore

                prefix = f"bench-{uuid.uuid4().hex}"
                round_trips("redis", lambda: RedisStore(url, prefix=prefix), sizes, args.runs)
                RedisStore(url, prefix=prefix).reset("bench")

            print(f"\nContention: {args.processes} processes updating one chain at once")
            contention("json", "json", str(Path(tmp) / "contended.json"), args.processes,
                       args.updates)  # fmt: skip
            if url:
                contention("redis", "redis", url, args.processes, args.updates)
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
