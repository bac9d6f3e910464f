"""What one ``failover ask`` process costs, end to end, and what it imports.

4. one-shot CLI: ``failover ask "Say hello." --no-stream`` and the streaming default, each a
   whole process against the OpenAI-compatible simulator (in its own process, on 127.0.0.1),
   versus ``curl`` posting the same request (the floor) and a bare Python script that imports
   httpx and posts once (the baseline: target ``failover`` ≤ 1.3x). Every command runs
   ``--runs`` times, interleaved (the order rotates each round), stdin from /dev/null and
   stdout piped, as in a pipeline; median and p90 wall milliseconds. The state file
   (``--state``, in a temporary directory) starts with a full history, as after some use.

   Then what ``ask`` loads and why it is slower, medians over ``--import-runs`` fresh
   processes each: the top of ``python -X importtime -c "import failover_cli.cli.commands"``
   (the Typer app); the chain ``ask`` actually imports (``python -X importtime -m
   failover_cli ask ...``) per top-level package, next to the bare script's; failover_cli's
   own modules; the import cost of each package the bare script does not load; the work
   redone at every start that the bytecode cache does not save (dataclass methods are
   generated and exec'd, regexes compiled); the phases of one ``ask`` timed in-process;
   adapters loaded for provider kinds not configured.

Child processes run with the bytecode cache on: PYTHONDONTWRITEBYTECODE is removed from their
environment (some shells and CI images set it; every start would then recompile failover_cli)
and each command runs once before timing to write the cache.

    python bench/bench_cli.py [--quick] [--runs 30] [--import-runs 5]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from _util import (
    KEY,
    ChildRun,
    bytecode_env,
    external_sim,
    machine,
    median,
    quantile,
    run_child,
    table,
)

from failover_cli.breaker import MAX_OUTCOMES
from failover_cli.state import DEFAULT_HISTORY, ProviderDelta, Sample, StateDelta
from failover_cli.store.jsonfile import JsonFileStore

PROMPT = "Say hello."
MODEL = "gpt-4o-mini"
MAX_TOKENS = 64

# Both bare scripts import httpx as a plain `pip install httpx` has it: without click, httpx
# skips its command line. This venv has click (the gateway's uvicorn brings it), and with it
# `import httpx` also imports click, rich and pygments; `failover ask` skips that (see
# failover_cli.cli.fast.skip_httpx_cli), so the baseline does too.
BARE_SCRIPT = """\
import os, sys
sys.modules["httpx._main"] = type(sys)("httpx._main")  # as without click: see above
import httpx

response = httpx.post(
    sys.argv[1] + "/v1/chat/completions",
    json={"model": %(model)r, "messages": [{"role": "user", "content": %(prompt)r}],
          "max_tokens": %(max_tokens)d},
    headers={"authorization": "Bearer " + os.environ["BENCH_KEY"]},
    timeout=30,
    trust_env=False,
)
response.raise_for_status()
print(response.json()["choices"][0]["message"]["content"])
"""

# Not a required row: shows what async httpx itself costs over the sync call (asyncio, anyio).
BARE_ASYNC_SCRIPT = """\
import asyncio, os, sys
sys.modules["httpx._main"] = type(sys)("httpx._main")  # as without click: see BARE_SCRIPT
import httpx

async def main():
    async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
        response = await client.post(
            sys.argv[1] + "/v1/chat/completions",
            json={"model": %(model)r, "messages": [{"role": "user", "content": %(prompt)r}],
                  "max_tokens": %(max_tokens)d},
            headers={"authorization": "Bearer " + os.environ["BENCH_KEY"]},
        )
        response.raise_for_status()
        print(response.json()["choices"][0]["message"]["content"])

asyncio.run(main())
"""

CONFIG = """\
providers:
  - name: sim
    kind: openai
    model: {model}
    base_url: {url}
    api_key_env: BENCH_KEY
"""

# Runs a command in-process (a module with -m semantics, or a script) and records, per calling
# module, the time spent in two things the bytecode cache does not save: generating dataclass
# methods (source built and exec'd for every class at every start) and compiling regexes.
EXEC_PROBE = """\
import dataclasses, json, re, runpy, sys, time
out, mode, target, *args = sys.argv[1:]
spent = {}
INTERNAL = {"re", "re._compiler", "re._parser", "dataclasses", "functools", "failover_cli.records"}
active = set()  # kinds being timed: a dataclass made inside a record is counted once
def caller():
    f = sys._getframe(2)
    while f is not None and f.f_globals.get("__name__") in INTERNAL:
        f = f.f_back
    return "?" if f is None else f.f_globals.get("__name__", "?")
def timed(kind, fn):
    def wrapper(*a, **k):
        if kind in active:
            return fn(*a, **k)
        active.add(kind)
        start = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            active.discard(kind)
            key = kind + " " + caller()
            n, s = spent.get(key, (0, 0.0))
            spent[key] = (n + 1, s + time.perf_counter() - start)
    return wrapper
re._compile = timed("regex", re._compile)
dataclasses._process_class = timed("dataclass", dataclasses._process_class)
try:  # failover_cli's records (a dataclass whose methods are not generated from source)
    import failover_cli.records as records
    records._record = timed("dataclass", records._record)
except ImportError:  # a tree from before records
    pass
sys.argv = [target, *args]
try:
    if mode == "module":
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        runpy.run_path(target, run_name="__main__")
except SystemExit as exc:
    if exc.code not in (0, None):
        raise
finally:
    with open(out, "w") as f:
        json.dump(spent, f)
"""

# The phases of one `ask`, timed in a fresh process through the public API the CLI wires.
PHASES_PROBE = """\
import time
t0 = time.perf_counter()
import asyncio, json, sys
import failover_cli.cli.ask, failover_cli.cli.fast
from failover_cli.config import load_config
from failover_cli.paths import cache_dir
from failover_cli.router import FailoverRouter
from failover_cli.store import open_store
import failover_cli.store.jsonfile, failover_cli.providers
config_path, state_path, prompt, max_tokens = sys.argv[1:5]
marks = {}
last = [t0]
def mark(label):
    now = time.perf_counter()
    marks[label] = now - last[0]
    last[0] = now
mark("imports (the Typer-free CLI, config, router, JSON store, providers)")
config = load_config(config_path, cache_dir=cache_dir())
mark("load_config (from the cache of validated configurations)")
store = open_store(state_path)
mark("open_store")
async def main():
    mark("asyncio.run: loop start")
    router = FailoverRouter(config, store=store, autoflush=False)
    mark("FailoverRouter() (state load, HTTP client)")
    result = await router.route(prompt, max_tokens=int(max_tokens))
    mark("route (connect, request, answer)")
    await router.aclose()
    mark("aclose (state save: lock, merge, write, fsync)")
    return result.text
text = asyncio.run(main())
mark("asyncio.run: loop shutdown")
store.close()
mark("store.close")
print(json.dumps({"text": text, "marks": marks}))
"""


@dataclass(frozen=True)
class Command:
    label: str
    argv: list[str]
    is_json: bool = False  # curl prints the raw response body
    no_output: bool = False  # prints nothing (a reference row)
    env: dict[str, str] | None = None  # added to the common environment


@dataclass
class Imported:
    """One line of ``-X importtime``: times in microseconds; ``parent`` imported it."""

    name: str
    self_us: int
    cum_us: int
    parent: Imported | None = None

    @property
    def package(self) -> str:
        return self.name.split(".")[0]


_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)\s*$")


def parse_importtime(stderr: str) -> list[Imported]:
    """The modules in the order they finished importing, each linked to its importer.

    importtime prints a module after everything it imported, indented two spaces per level,
    so a line's children are the pending lines one level deeper.
    """
    entries: list[Imported] = []
    pending: dict[int, list[Imported]] = defaultdict(list)
    for line in stderr.splitlines():
        m = _IMPORT_LINE.match(line)
        if not m:
            continue
        level = len(m.group(3)) // 2
        entry = Imported(m.group(4), int(m.group(1)), int(m.group(2)))
        for child in pending.pop(level + 1, []):
            child.parent = entry
        pending[level].append(entry)
        entries.append(entry)
    return entries


@dataclass
class PackageCost:
    modules: int = 0
    self_us: int = 0  # sums to the whole import time over all packages
    cum_us: int = 0  # outermost modules only: includes what the package pulls in
    first_by: str = ""


def by_package(entries: Sequence[Imported]) -> dict[str, PackageCost]:
    costs: dict[str, PackageCost] = defaultdict(PackageCost)
    for e in entries:
        cost = costs[e.package]
        cost.modules += 1
        cost.self_us += e.self_us
        ancestor = e.parent
        while ancestor is not None and ancestor.package != e.package:
            ancestor = ancestor.parent
        if ancestor is None:  # outermost module of its package
            cost.cum_us += e.cum_us
            if not cost.first_by:
                cost.first_by = e.parent.name if e.parent else "(top level or deferred import)"
    return dict(costs)


def importtime_runs(argv: list[str], env: dict[str, str], runs: int) -> list[list[Imported]]:
    out = []
    for _ in range(runs):
        child = run_child([sys.executable, "-X", "importtime", *argv], env=env)
        if child.returncode != 0:
            raise RuntimeError(f"{argv} failed: {child.stderr[-2000:]}")
        out.append(parse_importtime(child.stderr))
    return out


def total_ms(runs: Sequence[Sequence[Imported]]) -> float:
    return median([sum(e.self_us for e in r) / 1000 for r in runs])


def _ms_median(runs: Sequence[dict[str, PackageCost]], pkg: str, attr: str) -> float:
    return median([getattr(r[pkg], attr) / 1000 if pkg in r else 0.0 for r in runs])


# --- 4a. wall time ----------------------------------------------------------------------------


def check_output(cmd: Command, child: ChildRun, expected: str) -> None:
    if child.returncode != 0:
        raise RuntimeError(f"{cmd.label} exited {child.returncode}: {child.stderr[-2000:]}")
    got = child.stdout
    if cmd.no_output:
        return
    if cmd.is_json:
        got = json.loads(got)["choices"][0]["message"]["content"]
    if got.strip() != expected:
        raise RuntimeError(f"{cmd.label} printed {got!r}, expected {expected!r}")


def wall_times(
    commands: Sequence[Command], env: dict[str, str], runs: int, expected: str
) -> dict[str, list[float]]:
    """Each command ``runs`` times; round r starts at command r (mod len) so that no command
    always follows the same one."""
    walls: dict[str, list[float]] = {c.label: [] for c in commands}
    for r in range(runs):
        for i in range(len(commands)):
            cmd = commands[(r + i) % len(commands)]
            child = run_child(cmd.argv, env={**env, **(cmd.env or {})})
            check_output(cmd, child, expected)
            walls[cmd.label].append(child.wall)
    return walls


def wall_table(
    commands: Sequence[Command], walls: dict[str, list[float]], bare: str, runs: int
) -> str:
    rows = []
    for cmd in commands:
        w = walls[cmd.label]
        ratios = [a / b for a, b in zip(w, walls[bare], strict=True)]  # paired by round
        target = "≤ 1.30x" if cmd.label.startswith("failover") and "YAML" not in cmd.label else ""
        rows.append(
            [cmd.label, median(w) * 1000, quantile(w, 0.9) * 1000, f"{median(ratios):.2f}x", target]
        )
    return (
        table(
            f"4. One-shot CLI: whole-process wall time, {runs} interleaved runs each",
            ["command", "median ms", "p90 ms", "x bare script", "target"],
            rows,
        )
        + "\nx bare script: median of the per-round ratios (each round runs every command once)."
    )


# --- 4b. imports ------------------------------------------------------------------------------


def cli_import_table(runs: list[list[Imported]], top: int) -> str:
    cum: dict[str, list[float]] = defaultdict(list)
    selfs: dict[str, list[float]] = defaultdict(list)
    depth: dict[str, int] = {}
    for r in runs:
        for e in r:
            cum[e.name].append(e.cum_us / 1000)
            selfs[e.name].append(e.self_us / 1000)
            d, p = 0, e.parent
            while p is not None:
                d, p = d + 1, p.parent
            depth[e.name] = d
    names = sorted(cum, key=lambda n: -median(cum[n]))[:top]
    rows = [[". " * depth[n] + n, median(selfs[n]), median(cum[n])] for n in names]
    return table(
        f'python -X importtime -c "import failover_cli.cli.commands": top {top} by cumulative, '
        f"median of {len(runs)} runs (total {total_ms(runs):.1f} ms)",
        ["module (. = nesting)", "self ms", "cumulative ms"],
        rows,
    )


WATCHED = (
    "typer",
    "httpx",
    "yaml",
    "failover_cli",
    "filelock",
    "platformdirs",
    "rich",
)


def ask_import_table(ask: list[list[Imported]], bare: list[list[Imported]]) -> str:
    """Per top-level package: what ``ask`` spends importing it, next to the bare script."""
    ask_pk = [by_package(r) for r in ask]
    bare_pk = [by_package(r) for r in bare]
    packages = set().union(*ask_pk)
    rows, rest = [], [0, 0.0, 0.0]
    for pkg in packages:
        a_self = _ms_median(ask_pk, pkg, "self_us")
        b_self = _ms_median(bare_pk, pkg, "self_us")
        if pkg not in WATCHED and a_self < 2.0 and a_self - b_self < 1.0:
            rest = [rest[0] + 1, rest[1] + a_self, rest[2] + b_self]
            continue
        first = ask_pk[0][pkg] if pkg in ask_pk[0] else PackageCost()
        cum = _ms_median(ask_pk, pkg, "cum_us")
        rows.append([pkg, first.modules, a_self, cum, b_self, a_self - b_self, first.first_by])
    rows.sort(key=lambda r: -r[2])
    rows.append([f"{rest[0]} other packages", "", rest[1], "", rest[2], rest[1] - rest[2], ""])
    rows += [[p, 0, "not imported", "", "", "", ""] for p in WATCHED if p not in packages]
    a_total, b_total = total_ms(ask), total_ms(bare)
    rows.append(["total", "", a_total, "", b_total, a_total - b_total, ""])
    return table(
        f"What `failover ask --no-stream` imports per top-level package, median of {len(ask)} "
        "runs of python -X importtime -m failover_cli ask ..., next to the bare httpx script",
        [
            "package",
            "modules",
            "self ms",
            "cumulative ms",
            "bare self ms",
            "extra ms",
            "first imported by",
        ],
        rows,
    ) + (
        "\nself: time in the package's own modules (sums to the total); cumulative: its outermost"
        "\nimports including what they pull in (overlaps other rows). 'deferred' = imported by"
        "\na function while `ask` runs, not at module level. Shown: packages above 2 ms, or 1 ms"
        "\nmore than the bare script, or watched."
    )


def failover_module_table(ask: list[list[Imported]], top: int) -> str:
    selfs: dict[str, list[float]] = defaultdict(list)
    by: dict[str, str] = {}
    for r in ask:
        for e in r:
            if e.package == "failover_cli":
                selfs[e.name].append(e.self_us / 1000)
                by[e.name] = e.parent.name if e.parent else "(top level or deferred)"
    names = sorted(selfs, key=lambda n: -median(selfs[n]))
    rows = [[n, median(selfs[n]), by[n]] for n in names[:top]]
    rows.append([f"all {len(names)} modules", sum(median(selfs[n]) for n in names), ""])
    return table(
        f"failover_cli modules loaded by `ask`, top {top} by self time",
        ["module", "self ms", "imported by"],
        rows,
    )


def marginal_imports(
    ask: list[list[Imported]], bare: list[list[Imported]], env: dict[str, str], runs: int
) -> str:
    """Each package ``ask`` loads more of than the bare script: the time to import it in a
    process that has already imported httpx (what the bare script has), median of ``runs``."""
    ask_pk = [by_package(r) for r in ask]
    bare_pk = [by_package(r) for r in bare]
    outermost: dict[str, list[str]] = defaultdict(list)
    for e in ask[0]:
        a = e.parent
        while a is not None and a.package != e.package:
            a = a.parent
        if a is None and e.name not in outermost[e.package]:
            outermost[e.package].append(e.name)
    candidates = [
        p
        for p in outermost
        if p != "failover_cli"
        and (p not in sys.stdlib_module_names or p in ("asyncio", "concurrent"))
        and _ms_median(ask_pk, p, "self_us") - _ms_median(bare_pk, p, "self_us") >= 0.2
    ]
    # Optional dependencies that are not installed show in importtime as failed attempts.
    code = (
        "import importlib, sys, time\nimport httpx\n"
        "start, loaded = time.perf_counter(), 0\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n        importlib.import_module(name)\n        loaded += 1\n"
        "    except ImportError:\n        pass\n"
        "print(time.perf_counter() - start if loaded else -1)\n"
    )
    rows = []
    for pkg in candidates:
        times = []
        for _ in range(runs):
            child = run_child([sys.executable, "-c", code, *outermost[pkg]], env=env)
            if child.returncode != 0:
                raise RuntimeError(child.stderr[-2000:])
            times.append(float(child.stdout) * 1000)
        if min(times) >= 0:
            rows.append([pkg, ", ".join(outermost[pkg][:3]), median(times)])
    rows.sort(key=lambda r: -r[2])
    return (
        table(
            f"Import cost of each package `ask` loads (more of) than the bare script, in a "
            f"process that already imported httpx, median of {runs} runs",
            ["package", "modules imported", "ms"],
            rows,
        )
        + "\nShared dependencies count for every package that needs them (rows overlap)."
    )


def exec_costs(
    ask_target: list[str], bare_target: list[str], env: dict[str, str], runs: int, tmp: Path
) -> str:
    """Dataclass method generation and regex compilation per calling package: work done at
    every start that the bytecode cache does not save."""
    out = tmp / "exec-probe.json"

    def probe(mode: str, target: list[str]) -> list[dict[str, tuple[int, float]]]:
        results = []
        for _ in range(runs):
            child = run_child([sys.executable, "-c", EXEC_PROBE, str(out), mode, *target], env=env)
            if child.returncode != 0:
                raise RuntimeError(child.stderr[-2000:])
            results.append(json.loads(out.read_text()))
        return results

    def grouped(results: list[dict[str, list]], key: str) -> dict[str, tuple[int, float]]:
        per: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for r in results:
            sums: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
            for k, (n, sec) in r.items():
                kind, module = k.split(" ", 1)
                name = module if key == "module" else module.split(".")[0]
                sums[f"{kind} {name}"][0] += n
                sums[f"{kind} {name}"][1] += sec * 1000
            for k, (n, ms) in sums.items():
                per[k].append((n, ms))
        return {
            k: (int(median([n for n, _ in v])), median([ms for _, ms in v])) for k, v in per.items()
        }

    ask_raw = probe("module", ask_target)
    ask_pk, bare_pk = grouped(ask_raw, "package"), grouped(probe("path", bare_target), "package")
    packages = sorted({k.split(" ", 1)[1] for k in ask_pk})

    def cell(d: dict[str, tuple[int, float]], kind: str, pkg: str) -> tuple[int, float]:
        return d.get(f"{kind} {pkg}", (0, 0.0))

    rows = []
    for pkg in packages:
        dn, dms = cell(ask_pk, "dataclass", pkg)
        rn, rms = cell(ask_pk, "regex", pkg)
        bare_ms = cell(bare_pk, "dataclass", pkg)[1] + cell(bare_pk, "regex", pkg)[1]
        rows.append([pkg, dn, dms, rn, rms, dms + rms, bare_ms])
    rows.sort(key=lambda r: -r[5])
    shown = [r for r in rows if r[5] >= 0.5][:10]
    totals = [sum(r[i] for r in rows) for i in range(1, 7)]
    shown.append(["all packages", *totals])
    ours = grouped(ask_raw, "module")
    detail = sorted(
        (
            (k.split(" ", 1)[1], n, ms)
            for k, (n, ms) in ours.items()
            if k.startswith("dataclass failover_cli")
        ),
        key=lambda t: -t[2],
    )
    lines = ", ".join(
        f"{m.removeprefix('failover_cli.')} {n} classes {ms:.1f} ms" for m, n, ms in detail[:5]
    )
    return (
        table(
            f"Work redone at every start (not saved by the bytecode cache), per calling package, "
            f"`ask --no-stream` vs the bare script, median of {runs} runs",
            [
                "package",
                "dataclasses",
                "dataclass ms",
                "re._compile calls",
                "regex ms",
                "total ms",
                "bare script ms",
            ],
            shown,
        )
        + "\nre._compile calls include hits in re's own cache (cheap); the time is what counts."
        + f"\nfailover_cli dataclasses by module: {lines}."
    )


def phases(config: Path, state: Path, env: dict[str, str], runs: int) -> str:
    per: dict[str, list[float]] = defaultdict(list)
    for _ in range(runs):
        child = run_child(
            [sys.executable, "-c", PHASES_PROBE, str(config), str(state), PROMPT, str(MAX_TOKENS)],
            env=env,
        )
        if child.returncode != 0:
            raise RuntimeError(child.stderr[-2000:])
        for label, sec in json.loads(child.stdout)["marks"].items():
            per[label].append(sec * 1000)
    rows = [[label, median(v)] for label, v in per.items()]
    rows.append(["sum (everything after interpreter start)", sum(r[1] for r in rows)])
    return table(
        f"Where one `ask --no-stream` spends its time, in-process through the same public API, "
        f"median of {runs} fresh processes",
        ["phase", "ms"],
        rows,
    )


def unused_adapters(ask: list[list[Imported]], kinds_used: set[str]) -> str:
    """Adapter modules for kinds the configuration does not use (imported by providers/)."""
    cum: dict[str, list[float]] = defaultdict(list)
    for r in ask:
        for e in r:
            parts = e.name.split(".")
            if (
                len(parts) == 3
                and parts[:2] == ["failover_cli", "providers"]
                and not parts[2].startswith("_")
                and parts[2] not in kinds_used
            ):
                cum[e.name].append(e.cum_us / 1000)
    if not cum:
        return "\nNo adapter for an unused provider kind is imported."
    total = sum(median(v) for v in cum.values())
    names = ", ".join(sorted(n.rsplit(".", 1)[1] for n in cum))
    return (
        f"\nLoaded but unused by this configuration (kinds: {', '.join(sorted(kinds_used))}): "
        f"the {names} adapters, {total:.2f} ms cumulative (median); "
        "failover_cli/providers/__init__.py imports every adapter."
    )


# --- main -------------------------------------------------------------------------------------


def failover_argv() -> list[str]:
    script = Path(sys.executable).parent / "failover"
    return [str(script)] if script.exists() else [sys.executable, "-m", "failover_cli"]


@dataclass(frozen=True)
class Setup:
    """Everything one comparison needs, written into a temporary directory."""

    commands: list[Command]  # curl (when installed), references, bare scripts, failover ask
    bare: Command  # the baseline: the bare sync httpx script
    ask: list[str]  # the ``ask`` arguments (without --no-stream)
    bare_argv: list[str]  # the bare script and its argument (no interpreter)
    config: Path
    state: Path
    env: dict[str, str]  # bytecode cache on, the key set, XDG dirs inside the temp dir


def prefill_state(path: Path, provider: str = "sim") -> None:
    """A state file as a chain in use for a while has it: a full history for ``provider``
    (``state.history`` samples, the whole outcome window), so each ``ask`` loads and saves a
    realistic document."""
    now = time.time()
    start = now - 24 * 3600
    delta = StateDelta(history=DEFAULT_HISTORY)
    delta.providers[provider] = ProviderDelta(
        requests=MAX_OUTCOMES,
        successes=MAX_OUTCOMES,
        outcomes=[(start + i * 60, True) for i in range(MAX_OUTCOMES)],
        samples=[Sample(start + i * 60, 300.0 + i % 400, 80.0, 40) for i in range(DEFAULT_HISTORY)],
    )
    store = JsonFileStore(path)
    try:
        store.update("default", delta)  # the chain name of a configuration without `chain:`
    finally:
        store.close()


def cli_setup(tmpdir: Path, url: str) -> Setup:
    """The configuration (one openai-kind provider at ``url``), a state file, the bare scripts
    and the curl body in ``tmpdir``; the commands that compare them."""
    env = bytecode_env(
        BENCH_KEY=KEY,  # nothing may land in the user's own config or state directories
        XDG_CONFIG_HOME=str(tmpdir / "xdg-config"),
        XDG_STATE_HOME=str(tmpdir / "xdg-state"),
        XDG_CACHE_HOME=str(tmpdir / "xdg-cache"),
        XDG_DATA_HOME=str(tmpdir / "xdg-data"),  # the history: recorded, as a user's ask is
    )
    config = tmpdir / "providers.yaml"
    config.write_text(CONFIG.format(model=MODEL, url=url), encoding="utf-8")
    state = tmpdir / "state.json"
    prefill_state(state)
    fields = {"model": MODEL, "prompt": PROMPT, "max_tokens": MAX_TOKENS}
    bare = tmpdir / "bare_httpx.py"
    bare.write_text(BARE_SCRIPT % fields, encoding="utf-8")
    bare_async = tmpdir / "bare_httpx_async.py"
    bare_async.write_text(BARE_ASYNC_SCRIPT % fields, encoding="utf-8")
    body = tmpdir / "body.json"
    message = {"role": "user", "content": PROMPT}
    body.write_text(
        json.dumps({"model": MODEL, "max_tokens": MAX_TOKENS, "messages": [message]}),
        encoding="utf-8",
    )
    ask = ["ask", PROMPT, "--max-tokens", str(MAX_TOKENS), "--config", str(config)]
    ask += ["--state", str(state)]
    commands = []
    curl = shutil.which("curl")
    if curl:
        headers = ["-H", f"authorization: Bearer {KEY}", "-H", "content-type: application/json"]
        argv = [curl, "-sS", "--fail", "--noproxy", "*", *headers]
        argv += ["--data-binary", f"@{body}", f"{url}/v1/chat/completions"]
        commands.append(Command("curl (floor)", argv, is_json=True))
    else:
        print("note: curl is not installed: its row (the floor) is skipped")
    python_start = [sys.executable, "-c", "pass"]
    bare_cmd = Command("bare httpx script (sync)", [sys.executable, str(bare), url])
    commands += [
        Command("python -c pass (interpreter start)", python_start, no_output=True),
        bare_cmd,
        Command("bare httpx script (async)", [sys.executable, str(bare_async), url]),
        Command("failover ask --no-stream", [*failover_argv(), *ask, "--no-stream"]),
        # A configuration cache that cannot be written: every run parses the YAML, as the
        # first run after each edit of providers.yaml does.
        Command(
            "failover ask --no-stream, YAML parsed",
            [*failover_argv(), *ask, "--no-stream"],
            env={"XDG_CACHE_HOME": str(tmpdir / "state.json" / "not-a-directory")},
        ),
        Command("failover ask (streaming)", [*failover_argv(), *ask]),
    ]
    return Setup(commands, bare_cmd, ask, [str(bare), url], config, state, env)


def warm_up(setup: Setup) -> str:
    """Run every command once, untimed (writes the bytecode cache, fills the page cache and
    the state file); check each answers; return the expected answer."""
    expected = run_child(setup.bare.argv, env=setup.env).stdout.strip()
    for cmd in setup.commands:
        check_output(cmd, run_child(cmd.argv, env={**setup.env, **(cmd.env or {})}), expected)
    return expected


BYTECODE_NOTE = (
    "child processes: bytecode cache on (PYTHONDONTWRITEBYTECODE removed from their "
    "environment; the cache is warmed by one untimed run of each command); stdin /dev/null, "
    "stdout piped"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few runs (a smoke run)")
    parser.add_argument("--runs", type=int, help="timed runs per command (default 30)")
    parser.add_argument("--import-runs", type=int, help="runs of each import probe (default 5)")
    args = parser.parse_args()
    runs = args.runs or (5 if args.quick else 30)
    probe_runs = args.import_runs or (2 if args.quick else 5)
    print(f"bench_cli on {machine()}")
    print(BYTECODE_NOTE)
    with (
        tempfile.TemporaryDirectory(prefix="failover-bench-") as tmp,
        external_sim("openai") as url,
    ):
        tmpdir = Path(tmp)
        setup = cli_setup(tmpdir, url)
        env = setup.env
        expected = warm_up(setup)
        walls = wall_times(setup.commands, env, runs, expected)
        print(wall_table(setup.commands, walls, setup.bare.label, runs), flush=True)

        cli_runs = importtime_runs(["-c", "import failover_cli.cli.commands"], env, probe_runs)
        print(cli_import_table(cli_runs, 15), flush=True)
        ask_target = ["failover_cli", *setup.ask, "--no-stream"]
        ask_runs = importtime_runs(["-m", *ask_target], env, probe_runs)
        bare_runs = importtime_runs(setup.bare_argv, env, probe_runs)
        print(ask_import_table(ask_runs, bare_runs), flush=True)
        print(failover_module_table(ask_runs, 10), flush=True)
        print(marginal_imports(ask_runs, bare_runs, env, probe_runs), flush=True)
        print(exec_costs(ask_target, setup.bare_argv, env, probe_runs, tmpdir), flush=True)
        print(phases(setup.config, setup.state, env, probe_runs), flush=True)
        print(unused_adapters(ask_runs, {"openai"}))


if __name__ == "__main__":
    main()
