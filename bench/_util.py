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
from typing import Any

KEY = "sk-bench-not-a-real-key"


@contextlib.contextmanager
def running_sim(kind: str, *flags: str, log: bool = False) -> Iterator[subprocess.Popen[str]]:
    """Run a simulator in a subprocess; yield the process once it has printed its URL (the
    first line of its stdout, kept in ``proc.url``). ``log``: keep its per-request log on
    stderr (a pipe) instead of ``--quiet``."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "failover_cli.sim",
            "--kind",
            kind,
            "--api-key",
            KEY,
            *([] if log else ["--quiet"]),
            *flags,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if log else subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"simulator did not start: {url!r}")
        proc.url = url  # type: ignore[attr-defined]
        yield proc
    finally:
        stop(proc, 5)


def stop(proc: subprocess.Popen[Any], grace: float = 20) -> None:
    """Ask ``proc`` to end (SIGTERM), and kill it if it has not within ``grace`` seconds."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def external_sim(kind: str, *flags: str) -> Iterator[str]:
    """Run a quiet simulator in a subprocess; yield its base URL."""
    with running_sim(kind, *flags) as proc:
        yield proc.url  # type: ignore[attr-defined]


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
    """One finished child process: wall seconds, exit status, output, and (when asked for)
    its peak RSS in KiB."""

    wall: float
    returncode: int
    stdout: str
    stderr: str
    maxrss_kib: int | None = None


# Forks the command from a small process and reports the command's ru_maxrss on the fd given.
_RSS_LAUNCHER = """\
import os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
os.write(int(sys.argv[1]), str(usage.ru_maxrss).encode())
sys.exit(os.waitstatus_to_exitcode(status) & 0xFF)
"""


def run_child(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    measure_rss: bool = False,
) -> ChildRun:
    """Run ``argv`` to completion with stdin from /dev/null and stdout piped (not a terminal).

    The wall time spans spawn to exit. With ``measure_rss`` the command is forked from a small
    launcher (``python -S``, about 8 MiB) that reports the command's own ru_maxrss: Linux
    charges a process the peak RSS of the memory it was forked (or vforked) with, so a
    command spawned straight from a large benchmark process would report at least that
    process's peak. The launcher adds its start to the wall time.
    """
    read_fd = write_fd = -1
    if measure_rss:
        read_fd, write_fd = os.pipe()
        argv = [sys.executable, "-S", "-c", _RSS_LAUNCHER, str(write_fd), *argv]
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
            cwd=cwd,
            pass_fds=(write_fd,) if measure_rss else (),
        )
        if measure_rss:
            os.close(write_fd)
        assert proc.stdout is not None
        out = proc.stdout.read()
        proc.wait()
        wall = time.perf_counter() - start
        proc.stdout.close()
        maxrss = None
        if measure_rss:
            with os.fdopen(read_fd, "rb") as report:
                maxrss = int(report.read() or 0) or None  # KiB on Linux
        err.seek(0)
        return ChildRun(
            wall=wall,
            returncode=proc.returncode,
            stdout=out.decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
            maxrss_kib=maxrss,
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
    return (
        f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )
