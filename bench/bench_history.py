"""What recording an ``ask`` in the history costs: ``sqlite3`` import, open, insert, commit.

1. in a fresh process (as each ``failover ask`` is), timed with ``perf_counter`` around the
   code ``ask`` runs after the answer is printed (what ``ask`` has loaded by then is
   imported first, untimed): import :mod:`failover_cli.history`, open the database (this
   imports ``sqlite3``), insert one entry (with its FTS5 index and the
   pruning check), commit, close. Against a baseline measured in the same child: the same
   timer around nothing. Medians of each phase and of the total. Three cases: the first
   ``ask`` ever (the file and schema are created), a database of ``--entries`` entries, and
   one at its ``max_entries`` bound (every insert prunes one).
1b. what recording costs once the answer is out, the way ``ask`` records now (the history
   opened in a thread while the request waits; a 50 ms sleep stands in for it) against
   opening it after the answer, in fresh processes taking turns.
2. whole processes: ``failover ask`` against the OpenAI-compatible simulator (in its own
   process) with and without ``--no-log``, interleaved, ``--process-runs`` each; medians.

    python bench/bench_history.py [--runs 30] [--process-runs 60] [--entries 1000]
                                  [--other-tree DIR] [--only-whole]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from _util import KEY, bytecode_env, external_sim, machine, median, quantile, run_child, table

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
t1 = time.perf_counter()  # the baseline: the timer around nothing
import failover_cli.cli.ask, failover_cli.router, failover_cli.store.jsonfile  # loaded by `ask`
from failover_cli.config import LogConfig
log = LogConfig(path=sys.argv[1], max_entries=int(sys.argv[2]))
fields = json.loads(sys.argv[3])
laps = [time.perf_counter()]
from failover_cli.history import History
laps.append(time.perf_counter())
h = History(sys.argv[1], log)
laps.append(time.perf_counter())
h.record(**fields)
laps.append(time.perf_counter())
h.close()
laps.append(time.perf_counter())
ms = [(b - a) * 1000 for a, b in zip(laps, laps[1:])]
print(json.dumps({"baseline_ms": (t1 - t0) * 1000, "phases_ms": ms}))
"""
PHASES = ("import", "open", "insert + commit", "close")

# What recording costs once the answer is out, the way `ask` records: the history opened
# early, in a thread, while the request is on its way (argv[2] == "early"), or opened after the
# answer (before stop 22). The request's wait is a sleep: the main thread waits on a socket.
AFTER_CHILD = r"""
import json, sys, time
import failover_cli.cli.ask, failover_cli.router, failover_cli.store.jsonfile  # loaded by `ask`
from failover_cli.cli.conversation import Conversation
from failover_cli.config import parse_config
cfg = parse_config(
    "providers: [{name: gpt, kind: openai, model: m}]\nlog: {path: '%s'}\n" % sys.argv[1]
)
fields = json.loads(sys.argv[3])
del fields["cid"]
talk = Conversation.start(cfg)
if sys.argv[2] == "early":
    talk.open_early()
time.sleep(float(sys.argv[4]))
t0 = time.perf_counter()
talk._write(fields.pop("prompt"), fields.pop("system"), [], fields)
print(json.dumps({"after_ms": (time.perf_counter() - t0) * 1000}))
"""

FIELDS = {
    "cid": "6752ab12cd3f0e91",
    "prompt": "Review this diff: " + "x = 1\n" * 200,
    "system": "Be brief.",
    "answer": "Looks fine. " * 40,
    "provider": "gpt",
    "model": "gpt-4o-mini",
    "input_tokens": 420,
    "output_tokens": 96,
    "cost_usd": 0.0000642,
    "latency_ms": 812.5,
    "ttft_ms": 230.1,
    "finish_reason": "stop",
    "segments": [{"provider": "gpt", "model": "gpt-4o-mini", "chars": 480}],
    "attempts": [
        {"provider": "claude", "outcome": "failed", "class": "transient", "status": 529,
         "message": "overloaded", "duration_ms": 40.2, "reason": None},
        {"provider": "gpt", "outcome": "ok", "class": None, "status": None, "message": "",
         "duration_ms": 812.0, "reason": None},
    ],
}  # fmt: skip


def fill(path: Path, count: int) -> None:
    """A database holding ``count`` entries, as after some use."""
    from failover_cli.history import History

    with History(path) as h:
        for i in range(count):
            h.record(**{**FIELDS, "prompt": f"{FIELDS['prompt']} {i}"})


def in_process(runs: int, entries: int, env: dict[str, str], tmp: Path) -> list[list[object]]:
    rows: list[list[object]] = []
    cases = [
        ("first ask (creates the file)", None, 10_000),
        (f"{entries:,} entries", entries, 10_000),
        (f"at max_entries ({entries:,}: prunes)", entries, entries),
    ]
    for n, (name, count, bound) in enumerate(cases):
        base: list[float] = []
        phases: list[list[float]] = [[] for _ in PHASES]
        totals: list[float] = []
        for i in range(runs):
            path = tmp / f"case{n}-{i if count is None else 0}.db"
            if count is not None and not path.exists():
                fill(path, count)
            child = run_child(
                [sys.executable, "-c", CHILD, str(path), str(bound), json.dumps(FIELDS)], env=env
            )
            if child.returncode != 0:
                raise SystemExit(child.stderr)
            out = json.loads(child.stdout)
            base.append(out["baseline_ms"])
            for k, v in enumerate(out["phases_ms"]):
                phases[k].append(v)
            totals.append(sum(out["phases_ms"]))
        rows.append(
            [name, median(base), *(median(p) for p in phases), median(totals),
             quantile(totals, 0.9), median(totals) - median(base)]
        )  # fmt: skip
    return rows


def after_answer(runs: int, wait: float, env: dict[str, str], tmp: Path) -> list[list[object]]:
    """Milliseconds from the answer to the entry written and closed, the history opened
    early or after, in fresh processes taking turns, on a database of one entry."""
    path = tmp / "after.db"
    fill(path, 1)
    times: dict[str, list[float]] = {"opened early (ask)": [], "opened after the answer": []}
    for i in range(runs):
        order = list(zip(times, ("early", "after"), strict=True))
        for name, how in order if i % 2 else order[::-1]:
            argv = [sys.executable, "-c", AFTER_CHILD, str(path), how, json.dumps(FIELDS)]
            child = run_child([*argv, str(wait)], env=env)
            if child.returncode != 0:
                raise SystemExit(child.stderr)
            times[name].append(json.loads(child.stdout)["after_ms"])
    return [[name, median(t), quantile(t, 0.9)] for name, t in times.items()]


def whole_process(
    runs: int, env: dict[str, str], tmp: Path, other_tree: str | None = None
) -> list[list[object]]:
    with external_sim("openai") as url:
        config = tmp / "providers.yaml"
        config.write_text(
            "providers:\n  - name: gpt\n    kind: openai\n    model: gpt-4o-mini\n"
            f"    base_url: {url}\n    api_key_env: BENCH_KEY\n",
            encoding="utf-8",
        )
        child_env = {**env, "BENCH_KEY": KEY, "FAILOVER_CONFIG": str(config),
                     "XDG_DATA_HOME": str(tmp / "data"), "XDG_STATE_HOME": str(tmp / "state"),
                     "XDG_CACHE_HOME": str(tmp / "cache")}  # fmt: skip
        exe = [sys.executable, "-m", "failover_cli", "ask", "Say hello.", "--max-tokens", "64"]
        commands = {
            "ask --no-log": ([*exe, "--no-log"], child_env),
            "ask (recorded)": (exe, child_env),
        }
        if other_tree is not None:  # the same commands from another checkout, interleaved
            other_env = {**child_env, "PYTHONPATH": other_tree}
            commands["ask --no-log, other tree"] = ([*exe, "--no-log"], other_env)
            commands["ask (recorded), other tree"] = (exe, other_env)
        for argv, argv_env in commands.values():  # warm the bytecode and config caches
            run_child(argv, env=argv_env)
        walls: dict[str, list[float]] = {name: [] for name in commands}
        for i in range(runs):
            order = list(commands.items())
            if i % 2:
                order.reverse()
            for name, (argv, argv_env) in order:
                child = run_child(argv, env=argv_env)
                if child.returncode != 0:
                    raise SystemExit(child.stderr)
                walls[name].append(child.wall * 1000)
    rows = []
    for name, w in walls.items():
        base = median(walls[name.replace("ask (recorded)", "ask --no-log")])
        rows.append([name, median(w), quantile(w, 0.9), median(w) - base])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--process-runs", type=int, default=60)
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument(
        "--other-tree",
        help="also run section 2 with this checkout on PYTHONPATH (a worktree of an earlier "
        "commit), interleaved: before and after in one run",
    )
    parser.add_argument("--only-whole", action="store_true", help="section 2 alone")
    args = parser.parse_args()
    env = bytecode_env()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        os.environ.setdefault("XDG_DATA_HOME", str(tmp / "data"))
        print(machine())
        if not args.only_whole:
            rows = in_process(args.runs, args.entries, env, tmp)
            print(table(
                f"1. recording one entry in a fresh process (ms, {args.runs} processes each)",
                ["case", "baseline", *PHASES, "total", "total p90", "total - baseline"],
                rows,
            ))  # fmt: skip
            wait = 0.05
            rows = after_answer(args.runs, wait, env, tmp)
            print(table(
                f"1b. from the answer to the entry written, after a {wait * 1000:.0f} ms request "
                f"(ms, {args.runs} processes each)",
                ["history", "median", "p90"],
                rows,
            ))  # fmt: skip
        rows = whole_process(args.process_runs, env, tmp, args.other_tree)
        print(table(
            f"2. whole `failover ask` processes against the simulator (ms, {args.process_runs} "
            "each)",
            ["command", "median", "p90", "vs --no-log"],
            rows,
        ))  # fmt: skip


if __name__ == "__main__":
    main()
