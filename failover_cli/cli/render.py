"""Everything the command line draws with Rich: consoles, the route trace and spinner,
messages, tables.

No decisions are made here. Colour and animation appear only on a terminal; ``NO_COLOR``
(any non-empty value) turns off colour but not the spinner or live tables; ``TERM=dumb`` turns
off every escape sequence, animation included.
Imported lazily (Rich costs start-up time): plain output is written by
:mod:`failover_cli.cli.output` without it.
"""

from __future__ import annotations

import errno
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import IO, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..types import (
    AttemptFailed,
    AttemptStarted,
    AttemptSucceeded,
    BreakerTransition,
    ErrorClass,
    Event,
    ParameterAdjusted,
    ProviderSkipped,
    Queued,
    StreamSwitched,
)

PIPE_WIDTH = 160  # table width when the output is not a terminal and COLUMNS is unset
STATE_STYLE = {"closed": "green", "half_open": "yellow", "open": "red"}
SPARK = "▁▂▃▄▅▆▇█"


# --- consoles ---------------------------------------------------------------------------------


def plain_env(environ: Mapping[str, str] | None = None) -> bool:
    """True when the user asked for no escape sequences at all (NO_COLOR, TERM=dumb)."""
    env = os.environ if environ is None else environ
    return bool(env.get("NO_COLOR")) or env.get("TERM") == "dumb"


def is_tty(stream: IO[Any] | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):
        return False


class _Console(Console):
    """A Console that reports a closed pipe as BrokenPipeError (the command line maps it to
    exit 141 after saving state) instead of Rich's own exit with status 1."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, "output closed")


def make_console(*, stderr: bool) -> Console:
    """A console on stdout or stderr: styled only on a terminal without NO_COLOR."""
    stream = sys.stderr if stderr else sys.stdout
    tty = is_tty(stream)
    width = None if tty or os.environ.get("COLUMNS") else PIPE_WIDTH
    if plain_env():
        return _Console(stderr=stderr, color_system=None, highlight=False, width=width)
    return _Console(stderr=stderr, highlight=False, width=width)


def print_table(console: Console, *renderables: Any, boxed: bool = False, end: str = "\n") -> None:
    """Print tables (alone or in Groups) with borders on a terminal or when ``boxed``; else
    without box drawing and without trailing spaces, for pipes and files."""
    if boxed or console.is_terminal:
        console.print(*renderables, end=end)
        return
    for renderable in renderables:
        _unbox(renderable)
    with console.capture() as captured:
        console.print(*renderables, end=end)
    lines = captured.get().split("\n")
    console.file.write("\n".join(line.rstrip() for line in lines))
    console.file.flush()


def _unbox(renderable: Any) -> None:
    from rich.console import Group

    if isinstance(renderable, Table):
        renderable.box = None
        renderable.pad_edge = False
        renderable.show_edge = False
    elif isinstance(renderable, Group):
        for inner in renderable.renderables:
            _unbox(inner)


def animated(console: Console) -> bool:
    """Whether spinners and live tables may be drawn on ``console`` (NO_COLOR allows them)."""
    from .output import dumb_terminal

    return console.is_terminal and not dumb_terminal()


# --- the route trace and the waiting indicator -----------------------------------------------


def _dash(state: str) -> str:
    return state.replace("_", "-")


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.2f} s" if value >= 10_000 else f"{value:.0f} ms"


def trace_line(event: Event, now: float | None = None) -> Text | None:
    """One line of the route trace for ``event`` (None for events not shown)."""
    now = time.time() if now is None else now
    line = Text()
    if isinstance(event, AttemptStarted):
        line.append("  try   ", style="dim")
        line.append(event.provider, style="bold")
        line.append(f" (attempt {event.attempt})", style="dim")
    elif isinstance(event, AttemptFailed):
        line.append("  FAIL  ", style="bold red")
        line.append(event.provider, style="bold")
        status = f" {event.status}" if event.status else ""
        line.append(f" {event.error_class.value}{status} after {_ms(event.duration_ms)}")
        if event.message:
            line.append(f": {event.message}", style="dim")
        line.append(" -> ", style="dim")
        if event.will_retry:
            line.append(f"retry in {_ms((event.retry_in or 0.0) * 1000)}")
        elif event.error_class is ErrorClass.REQUEST:
            line.append("not failed over (the request itself was rejected)")
        elif event.error_class is ErrorClass.CONTEXT_LENGTH:
            line.append("too long for this model, next provider")
        else:
            line.append("next provider")
    elif isinstance(event, AttemptSucceeded):
        line.append("  OK    ", style="bold green")
        line.append(event.provider, style="bold")
        ttft = f", first token {_ms(event.ttft_ms)}" if event.ttft_ms is not None else ""
        line.append(
            f" answered in {_ms(event.latency_ms)}{ttft}, {event.usage.output_tokens} output tokens"
        )
    elif isinstance(event, ProviderSkipped):
        line.append("  SKIP  ", style="bold yellow")
        line.append(event.provider, style="bold")
        line.append(f" {event.reason}")
    elif isinstance(event, BreakerTransition):
        line.append("  BRKR  ", style="bold magenta")
        line.append(event.provider, style="bold")
        line.append(f" breaker {_dash(event.old)} -> ")
        line.append(_dash(event.new), style=STATE_STYLE.get(event.new, ""))
        if event.new == "open" and event.open_until:
            line.append(f", half-open in {max(0.0, event.open_until - now):.1f} s")
    elif isinstance(event, Queued):
        line.append("  WAIT  ", style="bold cyan")
        line.append(
            f"every provider is down; next try in {max(0.0, event.until - now):.1f} s "
            f"(queue position {event.position})"
        )
    elif isinstance(event, StreamSwitched):
        line.append("  SWITCH ", style="bold cyan")
        line.append(event.old, style="bold")
        line.append(" broke off mid-answer -> ")
        line.append(event.new, style="bold")
        if event.strategy == "restart":
            line.append(" restarts the answer from the beginning")
        else:
            line.append(f" continues after {event.kept} characters ({event.strategy})")
    elif isinstance(event, ParameterAdjusted):
        line.append("  ADJUST ", style="bold blue")
        line.append(event.provider, style="bold")
        line.append(f" {event.parameter} {event.action}")
        if event.reason:
            line.append(f": {event.reason}", style="dim")
    else:
        return None
    return line


def _scrubbed(event: Event, scrub: Callable[[str], str]) -> Event:
    """``event`` with its free-text fields passed through ``scrub``."""
    for name in ("message", "reason"):
        text = getattr(event, name, None)
        if isinstance(text, str) and text:
            event = replace(event, **{name: scrub(text)})  # type: ignore[arg-type]
    return event


class Waiting:
    """The spinner's text while an attempt runs: provider, attempt and seconds elapsed,
    recomputed on every refresh."""

    def __init__(
        self, provider: str, attempt: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.provider = provider
        self.attempt = attempt
        self.clock = clock
        self.since = clock()

    def __rich__(self) -> Text:
        elapsed = max(0.0, self.clock() - self.since)
        return Text(f"waiting for {self.provider} (attempt {self.attempt}, {elapsed:.1f} s)")


class _Countdown:
    """A status text recomputed on every refresh while the request is queued."""

    def __init__(self, until: float, position: int) -> None:
        self.until = until
        self.position = position

    def __rich__(self) -> Text:
        left = math.ceil(max(0.0, self.until - time.time()))
        return Text(
            f"every provider is down; retrying in {left} s (queue position {self.position})"
        )


class RouteDisplay:
    """Shows a request's route on stderr: with ``verbose`` the trace, one line per event;
    when ``animate``, a spinner while waiting for the first token (naming the provider, the
    attempt and the time waited), a countdown while queued, and one dim line when the answer
    switches provider mid-stream. Register it as a router listener. ``answer`` (an object
    with ``isatty``, ``at_line_start`` and ``write``) is the answer being written to stdout:
    when both share a terminal, a line on stderr first ends the answer's unfinished line.
    ``scrub`` redacts secrets from the free text of events."""

    def __init__(
        self,
        console: Console,
        *,
        verbose: bool,
        animate: bool,
        answer: Any = None,
        scrub: Callable[[str], str] = str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.verbose = verbose
        self.animate = animate
        self.answer = answer
        self.scrub = scrub
        self.clock = clock
        self._status: Any = None

    def header(self, text: str) -> None:
        """The first trace line: where the configuration comes from."""
        self._print(Text.assemble(("  CONFIG ", "dim"), (self.scrub(text), "dim")))

    def start(self, text: str) -> None:
        if self.animate and self._status is None:
            self._status = self.console.status(text, spinner="dots")
            self._status.start()

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def __call__(self, event: Event) -> None:
        if self._status is not None:
            if isinstance(event, AttemptStarted):
                self._status.update(Waiting(event.provider, event.attempt, self.clock))
            elif isinstance(event, Queued):
                self._status.update(_Countdown(event.until, event.position))
        if self.verbose:
            line = trace_line(_scrubbed(event, self.scrub))
            if line is not None:
                self._print(line)
        elif self.animate and isinstance(event, StreamSwitched):
            from .output import switch_text

            self._print(Text(f"failover: {switch_text(event)}", style="dim"))

    def _print(self, line: Text) -> None:
        shared_tty = self.answer is not None and self.answer.isatty and self.console.is_terminal
        if shared_tty and self.answer is not None and not self.answer.at_line_start:
            self.answer.write("\n")
        self.console.print(line, soft_wrap=True)


def message(console: Console, kind: str, text: str) -> None:
    """One ``failover: error: ...`` / ``warning`` / ``hint`` line on ``console``."""
    style = {"error": "bold red", "warning": "yellow", "hint": "dim", "note": "cyan"}.get(kind, "")
    line = Text("failover: ")
    line.append(f"{kind}: ", style=style)
    line.append(text)
    console.print(line, soft_wrap=True)


def print_json(console: Console, text: str) -> None:
    """A JSON answer (``ask --schema``) on a terminal: indented and highlighted, long lines
    left unbroken (soft-wrapped) so a copy of it is still JSON."""
    from rich.json import JSON

    console.print(JSON(text, indent=2, ensure_ascii=False), soft_wrap=True)


# --- tables -------------------------------------------------------------------------------------


def _state(state: str, extra: str = "") -> Text:
    return Text(state.replace("_", "-") + extra, style=STATE_STYLE.get(state, ""))


def _age(at: float | None, now: float) -> str:
    if not at:
        return "-"
    secs = max(0.0, now - at)
    if secs < 120:
        return f"{secs:.0f}s ago"
    if secs < 7200:
        return f"{secs / 60:.0f}m ago"
    if secs < 172800:
        return f"{secs / 3600:.0f}h ago"
    return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M")


def sparkline(values: Sequence[float]) -> str:
    """Latencies as block characters, low to high (empty for no data); values that are not
    finite numbers are left out."""
    values = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
    if not values:
        return ""
    lo, hi = min(values), max(values)
    span = hi - lo or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int((v - lo) / span * len(SPARK)))] for v in values)


def health_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(title="Provider health", title_justify="left", expand=False)
    for col in ("provider", "kind", "model", "reachable", "latency", "breaker", "error"):
        table.add_column(col, justify="right" if col == "latency" else "left")
    for r in rows:
        table.add_row(
            r["name"],
            r["kind"],
            r["model"],
            Text("yes", style="green") if r["ok"] else Text("NO", style="bold red"),
            _ms(r["latency_ms"]),
            _state(r["breaker"]),
            Text(r["error"] or "", style="dim"),
        )
    return table


def health_summary(status_name: str, exit_code: int) -> Text:
    style = {0: "green", 1: "yellow", 2: "bold red"}.get(exit_code, "")
    return Text.assemble("overall: ", (status_name, style), f" (exit {exit_code})")


# status columns: header, justification, and the order they are dropped in to fit the
# terminal (1 goes first; 0 is never dropped)
_STATUS_COLUMNS = (
    ("provider", "left", 0),
    ("model", "left", 7),
    ("breaker", "left", 0),
    ("fails in a row", "right", 0),
    ("reqs", "right", 5),
    ("ok", "right", 0),
    ("p50", "right", 0),
    ("p95", "right", 6),
    ("p99", "right", 3),
    ("ttft p50", "right", 2),
    ("score", "right", 4),
    ("trend", "left", 1),
)


def status_table(report: Mapping[str, Any], width: int | None = None) -> Table:
    """The chain's providers, one row each; within ``width`` columns when given, by leaving
    out the least useful columns (provider names and models are never cut short)."""
    rows = [_status_row(p) for p in report["providers"]]
    return fitted(f"Chain '{report['chain']}'", _STATUS_COLUMNS, rows, width, whole=(0, 1))


def fitted(
    title: str,
    columns: Sequence[tuple[str, str, int]],
    rows: Sequence[Sequence[Any]],
    width: int | None,
    *,
    whole: Sequence[int] = (),
) -> Table:
    """A table of ``columns`` (header, justification, drop order: 1 is left out first, 0
    never) narrowed to ``width`` by leaving columns out; the ``whole`` columns wrap onto more
    lines rather than end in an ellipsis."""
    keep = list(range(len(columns)))

    def build() -> Table:
        table = Table(title=title, title_justify="left")
        for i in keep:
            header, just, _ = columns[i]
            overflow = "fold" if i in whole else "ellipsis"
            table.add_column(header, justify=just, overflow=overflow)  # type: ignore[arg-type]
        for row in rows:
            table.add_row(*(row[i] for i in keep))
        return table

    table = build()
    if width is None:
        return table
    for _, i in sorted((c[2], i) for i, c in enumerate(columns) if c[2]):
        if _table_width(table) <= width:
            break
        keep.remove(i)
        table = build()
    return table


def _table_width(table: Table) -> int:
    from rich.console import Console
    from rich.measure import Measurement

    console = Console(width=10_000)
    return Measurement.get(console, console.options, table).maximum


def _status_row(p: Mapping[str, Any]) -> list[Any]:
    extra = ""
    if p["forced"]:
        extra = " (forced)"
    elif p["state"] == "open" and p["cooldown_remaining_s"] is not None:
        extra = f" {p['cooldown_remaining_s']:.0f}s"
    rate = p["success_rate"]
    lat = p["latency_ms"]
    return [
        p["name"],
        p["model"],
        _state(p["state"], extra),
        str(p["consecutive_failures"]),
        str(p["requests"]),
        "-" if rate is None else f"{rate * 100:.0f}%",
        _ms(lat["p50"]),
        _ms(lat["p95"]),
        _ms(lat["p99"]),
        _ms(p["ttft_ms"]["p50"]),
        f"{p['score']:.2f}",
        sparkline(p["sparkline_ms"]),
    ]


def status_details(report: Mapping[str, Any]) -> Text:
    """Score breakdowns, last errors and last health checks, one line each."""
    now = report["generated_at"]
    out = Text()
    for p in report["providers"]:
        b = p["score_breakdown"]
        out.append(p["name"], style="bold")
        out.append(
            f": score {b['total']:.2f} = latency {b['latency']:.2f}, "
            f"reliability {b['reliability']:.2f}, cost {b['cost']:.2f}"
        )
        err = p["last_error"]
        if err:
            status = f" {err.get('status')}" if err.get("status") else ""
            out.append(f"; last error {_age(err.get('at'), now)}: {err.get('class')}{status}")
            if err.get("message"):
                out.append(f" {err['message']}", style="dim")
        health = p["last_health"]
        if health:
            verdict = "ok" if health.get("ok") else "failed"
            out.append(f"; last health check {_age(health.get('at'), now)}: {verdict}")
        limits = p.get("last_ratelimit")
        if limits:
            out.append(f"; rate limits {_age(limits.get('at'), now)}: {_limits(limits, now)}")
        out.append("\n")
    return out


def _limits(limits: Mapping[str, Any], now: float) -> str:
    """``12 requests, 4000 tokens left; tokens reset in 8s`` from a stored rate-limit report."""
    parts = [
        f"{limits[key]} {what}"
        for key, what in (("remaining_requests", "requests"), ("remaining_tokens", "tokens"))
        if isinstance(limits.get(key), int)
    ]
    text = (", ".join(parts) + " left") if parts else "reported"
    for key, what in (("requests_reset_at", "requests"), ("tokens_reset_at", "tokens")):
        at = limits.get(key)
        if isinstance(at, int | float) and at > now:
            text += f"; {what} reset in {at - now:.0f}s"
    return text


def bench_table(results: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(title="Benchmark (each provider called directly)", title_justify="left")
    for col in (
        "provider",
        "ok",
        "failed",
        "p50",
        "p95",
        "p99",
        "ttft p50",
        "tokens/s",
        "$ / 1k req",
    ):
        table.add_column(col, justify="left" if col in ("provider", "failed") else "right")
    for r in results:
        if r["skipped"]:
            table.add_row(r["provider"], "-", Text(f"skipped: {r['skipped']}", style="yellow"))
            continue
        failed = ", ".join(f"{n} {c}" for c, n in r["failures"].items()) or "0"
        lat = r["latency_ms"]
        tps = r["output_tokens_per_s"]
        cost = r["cost_per_1k_requests_usd"]
        table.add_row(
            r["provider"],
            f"{r['successes']}/{r['requests']}",
            Text(failed, style="red" if r["failures"] else ""),
            _ms(lat["p50"]),
            _ms(lat["p95"]),
            _ms(lat["p99"]),
            _ms(r["ttft_ms"]["p50"]),
            "-" if tps is None else f"{tps:.1f}",
            "-" if cost is None else f"{cost:.4f}",
        )
    return table


_CONFIG_COLUMNS = (  # as _STATUS_COLUMNS
    ("#", "left", 2),
    ("name", "left", 0),
    ("kind", "left", 3),
    ("model", "left", 0),
    ("base_url", "left", 0),
    ("key", "left", 0),
    ("timeout", "left", 1),
    ("$/Mtok in / out", "left", 4),
)


def config_table(
    rows: Sequence[Mapping[str, Any]], source: str, chain: str, width: int | None = None
) -> Table:
    """The chain's providers as configured, within ``width`` columns when given; names,
    models, URLs and key variables wrap rather than end in an ellipsis."""
    cells = []
    for i, r in enumerate(rows, 1):
        if r["api_key_env"] is None:
            key = Text("not needed", style="dim")
        elif r["api_key_env"] == "***":
            key = Text("*** (not a variable name)", style="bold red")
        elif r["api_key_set"]:
            key = Text.assemble(r["api_key_env"], (" (set)", "green"))
        else:
            key = Text.assemble(r["api_key_env"], (" (NOT SET)", "bold red"))
        cost = r["cost"]
        cells.append(
            [
                str(r["priority"] if r["priority"] is not None else i),
                r["name"],
                r["kind"],
                r["model"],
                r["base_url"],
                key,
                f"{r['timeout']:g}s",
                "-"
                if cost is None
                else f"{cost['input_per_mtok']:g} / {cost['output_per_mtok']:g}",
            ]
        )
    title = f"Chain '{chain}' from {source}"
    return fitted(title, _CONFIG_COLUMNS, cells, width, whole=(1, 3, 4, 5))


def sections_text(sections: Mapping[str, Mapping[str, Any]]) -> Text:
    """The non-provider configuration sections, one line each."""
    out = Text()
    for name, values in sections.items():
        out.append(f"{name}: ", style="bold")
        out.append(", ".join(f"{k}={_plain(v)}" for k, v in values.items()))
        out.append("\n")
    return out


def _plain(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}={_plain(v)}" for k, v in value.items()) + "}"
    return "null" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
