"""Shared helpers for the benchmark scripts: simulators in their own process, medians, tables.

The simulators run as ``python -m failover_cli.sim`` subprocesses so that the code being
measured does not share a GIL with the server answering it.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

KEY = "sk-bench-not-a-real-key"


@contextlib.contextmanager
def external_sim(kind: str, *flags: str) -> Iterator[str]:
    """Run a simulator in a subprocess; yield its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "failover_cli.sim", "--kind", kind, "--quiet",
         "--api-key", KEY, *flags],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"simulator did not start: {url!r}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0 < q < 1) by linear interpolation; p90 is ``quantile(v, 0.9)``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def bytecode_env(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """An environment for child Python processes that reads and writes the bytecode cache.

    Drops PYTHONDONTWRITEBYTECODE (set in some shells and CI images: with it, every start
    recompiles every module not cached yet, which is not what users' installs do)."""
    env = dict(os.environ if base is None else base)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(extra)
    return env


@dataclass(frozen=True)
class ChildRun:
    """One finished child process: wall seconds, peak RSS (KiB), exit status and output."""

    wall: float
    maxrss_kib: int
    returncode: int
    stdout: str
    stderr: str


def run_child(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None
) -> ChildRun:
    """Run ``argv`` to completion with stdin from /dev/null and stdout piped (not a terminal).

    The wall time spans spawn to exit; the peak RSS is the child's own, from wait4(2) (not
    the maximum over every child, as RUSAGE_CHILDREN would be).
    """
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, env=env, cwd=cwd
        )
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.stdout.close()
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        err.seek(0)
        return ChildRun(
            wall=wall,
            maxrss_kib=usage.ru_maxrss,  # kilobytes on Linux
            returncode=proc.returncode,
            stdout=out.decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
        )


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table (also valid Markdown)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [f"\n{title}", ""]
    for n, row in enumerate(cells):
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if value != value:
            return "n/a"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def machine() -> str:
    return (f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}")
