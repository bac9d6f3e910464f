"""``failover logs`` and ``failover logs show``: the recorded requests, listed or one whole.

What ``ask`` and ``chat`` record, and the conversations they continue, are
:mod:`failover_cli.cli.conversation`'s; the database is :mod:`failover_cli.history`,
imported only when there is a history to read.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .conversation import history_exists, open_history
from .exits import BadOption, handled
from .output import clean, print_json, scrub

if TYPE_CHECKING:
    from ..config import Config
    from ..history import Entry

PREVIEW = 60  # characters of a prompt shown in the `logs` table
MAX_AGE = 100 * 366 * 86400.0  # seconds: the oldest --since age

_AGE = r"(\d+(?:\.\d+)?)\s*([smhdw])"  # compiled when --since is given, not at every ask
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: float) -> float:
    """``--since``'s Unix time: an age before ``now`` (``30m``, ``12h``, ``7d``, ``2w``) or a
    local date or date and time in ISO form; BadOption otherwise."""
    value = text.strip().lower()
    match = re.fullmatch(_AGE, value)
    if match:
        age = float(match.group(1)) * _UNITS[match.group(2)]
        if age <= MAX_AGE:
            return now - age
    else:
        from datetime import datetime

        try:
            return datetime.fromisoformat(text.strip()[:64]).timestamp()
        except (ValueError, OverflowError, OSError):
            pass
    raise BadOption(
        f"'{text[:64]}' is neither an age (30m, 12h, 7d) nor a date (2026-01-31T08:00)",
        "--since",
    )


def run_logs(
    *,
    requests: int = 20,
    query: str | None = None,
    provider: Sequence[str] | None = None,
    since: str | None = None,
    cid: str | None = None,
    json_out: bool = False,
    boxed: bool = False,
    config: str | None = None,
) -> None:
    """List the newest recorded requests (see ``failover logs --help``)."""
    from .wiring import load_config

    with handled():
        start = parse_since(since, time.time()) if since is not None else None
        cfg = load_config(config)
        entries = _list(cfg, requests, query, provider, start, cid)
        if json_out:
            print_json([e.to_dict() for e in entries])
            return
        _print_table(entries, boxed)


def _list(
    cfg: Config,
    count: int,
    query: str | None,
    providers: Sequence[str] | None,
    since: float | None,
    cid: str | None,
) -> list[Entry]:
    from ..errors import FailoverError
    from ..history import HistoryError

    if not history_exists(cfg):
        return []
    try:
        with open_history(cfg) as history:
            return history.entries(
                count=count, query=query, providers=providers, since=since, cid=cid
            )
    except HistoryError as exc:
        raise FailoverError(f"cannot read the history: {exc}") from None


def _when(at: float, full: bool = False) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S" if full else "%m-%d %H:%M", time.localtime(at))


def _writers(e: Entry) -> str:
    """Who wrote the answer: ``gpt``, or ``claude>gpt`` across a mid-answer seam."""
    if e.error is not None:
        return "failed"
    names = [str(s.get("provider")) for s in e.segments if isinstance(s, dict)]
    names = list(dict.fromkeys(names)) or [e.provider]
    return ">".join(names)


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW else flat[: PREVIEW - 1] + "…"


def _print_table(entries: Sequence[Entry], boxed: bool) -> None:
    from .render import fitted, make_console, print_table

    out = make_console(stderr=False)
    if not entries:
        print("no recorded requests", file=sys.stderr)
        return
    columns = [
        ("id", "right", 0),
        ("when", "left", 0),
        ("provider", "left", 0),
        ("conversation", "left", 2),
        ("tokens", "right", 3),
        ("cost", "right", 4),
        ("prompt", "left", 0),
    ]
    rows = []
    for e in entries:
        tokens = (e.input_tokens or 0) + (e.output_tokens or 0)
        cost = "-" if e.cost_usd is None else f"${e.cost_usd:.4f}"
        rows.append(
            [str(e.id), _when(e.at), scrub(_writers(e)), e.cid, str(tokens), cost,
             scrub(_preview(e.prompt))]
        )  # fmt: skip
    table = fitted("", columns, rows, out.width)
    print_table(out, table, boxed=boxed)


def run_logs_show(*, entry: str | None, json_out: bool = False, config: str | None = None) -> None:
    """Print one recorded request whole (see ``failover logs show --help``)."""
    from ..errors import FailoverError
    from ..history import HistoryError
    from .wiring import load_config

    with handled():
        if entry is None or not entry.strip().isdigit() or len(entry.strip()) > 18:
            raise BadOption("give the entry's number, as `failover logs` lists it", "ID")
        cfg = load_config(config)
        found = None
        if history_exists(cfg):
            try:
                with open_history(cfg) as history:
                    found = history.get(int(entry))
            except HistoryError as exc:
                raise FailoverError(f"cannot read the history: {exc}") from None
        if found is None:
            raise FailoverError(f"no entry {entry.strip()} in the history (see `failover logs`)")
        if json_out:
            print_json(found.to_dict())
        else:
            _print_entry(found)


def _print_entry(e: Entry) -> None:
    """An entry as text: a header of facts, then the system prompt, prompt and answer."""
    lines = [f"entry {e.id}, conversation {e.cid}, {_when(e.at, full=True)}"]
    cost = "cost unknown" if e.cost_usd is None else f"${e.cost_usd:.6f}"
    if e.error is not None:
        lines.append(f"not answered: {e.error}")
    else:
        lines.append(
            f"provider: {e.provider} ({e.model}); {e.input_tokens or 0} input + "
            f"{e.output_tokens or 0} output tokens, {cost}; "
            f"{0 if e.latency_ms is None else e.latency_ms:.0f} ms"
        )
    if len(e.segments) > 1:
        seams = ", then ".join(f"{s.get('provider')} {s.get('chars')} chars" for s in e.segments)
        lines.append(f"written by: {seams}")
    lines.append(f"config: {e.config or 'the built-in chain'} (chain '{e.chain}')")
    for a in e.attempts:
        detail = " ".join(str(a[k]) for k in ("class", "status") if a.get(k) is not None)
        message = f": {a['message']}" if a.get("message") and a.get("outcome") != "ok" else ""
        lines.append(
            f"attempt: {a.get('provider')} {a.get('outcome')} {detail}".rstrip()
            + f" ({float(a.get('duration_ms') or 0):.0f} ms){message}"
        )
    for f in e.attachments:
        lines.append(
            f"attached: {f.get('name')} ({f.get('type')}, {f.get('bytes')} bytes, "
            f"sha256 {f.get('sha256')})"
        )
    if e.truncated:
        lines.append("note: text longer than the history keeps was cut")
    if e.system is not None:
        lines += ["", "system:", e.system]
    lines += ["", "prompt:", e.prompt, "", "answer:", e.answer]
    text = "\n".join(clean(lines))
    out = sys.stdout
    out.write(text if text.endswith("\n") else text + "\n")
    out.flush()
