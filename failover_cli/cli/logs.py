"""The history on the command line: what ``ask`` and ``chat`` record, the conversations they
continue (``-c``, ``--cid``), and ``failover logs`` / ``failover logs show``.

The database is :mod:`failover_cli.history`, imported (with ``sqlite3``) only when it is
used: to read a conversation, or to record a turn. ``ask`` opens it in a thread while the
request is on its way (:meth:`Conversation.open_early`), so the answer's wait hides most of
what recording costs, and writes it after the answer has been printed and flushed. A history
that cannot be written (locked, unwritable, a symbolic link at its path) costs one warning on
stderr, never the answer or the exit code.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .exits import BadOption, handled
from .output import clean, print_json, scrub, warn

if TYPE_CHECKING:
    from ..config import Config
    from ..history import Entry, History
    from ..types import RouteResult

MAX_CID = 64  # characters of a conversation id given with --cid
# Characters of earlier turns a continued conversation sends: above any model's context, so
# only a runaway conversation meets it; its oldest turns are then left out, with a warning.
MAX_CONVERSATION_CHARS = 4 * 1024 * 1024
PREVIEW = 60  # characters of a prompt shown in the `logs` table
MAX_AGE = 100 * 366 * 86400.0  # seconds: the oldest --since age
OPEN_WAIT = 5.0  # seconds an answered turn waits for the history being opened early


def _history(cfg: Config) -> History:
    """The history database of ``cfg`` (HistoryError when it cannot be opened)."""
    from ..history import History, history_path

    return History(history_path(cfg.log), cfg.log)


def _exists(cfg: Config) -> bool:
    from ..history import history_path

    return os.path.lexists(history_path(cfg.log))


class _Opening:
    """The history of ``cfg`` being opened in a daemon thread (nothing when this call is not
    recorded): importing ``sqlite3`` and reading the schema are most of what recording
    costs."""

    def __init__(self, cfg: Config, no_log: bool) -> None:
        self._cfg = cfg
        self._no_log = no_log
        self._history: History | None = None
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._open, name="failover-history", daemon=True)
        self._thread.start()

    def _open(self) -> None:
        try:
            from ..history import History, enabled, history_path

            if enabled(self._cfg.log, no_log=self._no_log):
                log = self._cfg.log
                self._history = History(history_path(log), log, any_thread=True)
        except Exception as exc:  # raised again by take(), in the thread that records
            self._error = exc

    def take(self) -> History:
        """The open history; HistoryError when it could not be opened in time."""
        from ..history import HistoryError

        self._thread.join(OPEN_WAIT)
        if self._thread.is_alive():
            raise HistoryError(f"still opening after {OPEN_WAIT:g} s")
        if self._error is not None:
            raise self._error
        if self._history is None:
            raise HistoryError("not opened")  # not recorded: _write does not get here
        return self._history


class Conversation:
    """The conversation an ``ask`` or ``chat`` turn belongs to: its id, the earlier turns
    to send, and whether answers are recorded. A new conversation imports nothing of the
    history before its first answer is out."""

    def __init__(
        self, cfg: Config, cid: str | None, earlier: Sequence[Entry], no_log: bool
    ) -> None:
        self.cfg = cfg
        self._cid = cid
        self.earlier = list(earlier)
        self.no_log = no_log
        self.original_system = self.earlier[-1].system if self.earlier else None
        self._opening: _Opening | None = None

    @property
    def recorded(self) -> bool:
        """Whether this conversation's turns go to the history."""
        from ..history import enabled

        return enabled(self.cfg.log, no_log=self.no_log)

    @property
    def cid(self) -> str:
        """The conversation's id (a new one is made when first asked for)."""
        if self._cid is None:
            from ..history import new_cid

            self._cid = new_cid()
        return self._cid

    @classmethod
    def start(
        cls, cfg: Config, *, continue_last: bool = False, cid: str | None = None,
        no_log: bool = False,
    ) -> Conversation:  # fmt: skip
        """A new conversation, or the last one (``continue_last``) or ``cid`` read from the
        history; BadOption (a usage error) when there is no such conversation."""
        if not continue_last and cid is None:
            return cls(cfg, None, [], no_log)
        option = "--cid" if cid is not None else "--continue"
        if cid is not None and not (0 < len(cid) <= MAX_CID and cid.isprintable()):
            raise BadOption(f"not a conversation id (at most {MAX_CID} characters)", option)
        turns = _read_conversation(cfg, cid, option)
        return cls(cfg, turns[-1].cid, turns, no_log)

    def open_early(self) -> None:
        """Start opening the history for the next :meth:`record` in a thread, to run while
        the request is on its way; a no-op when this conversation is not recorded."""
        if self._opening is None and not self.no_log:
            self._opening = _Opening(self.cfg, self.no_log)

    def on_event(self, event: Any) -> None:
        """A router listener: :meth:`open_early` once the first attempt starts, when the
        request is about to wait on the network (before, ``ask`` is busy importing)."""
        if self._opening is None and type(event).__name__ == "AttemptStarted":
            self.open_early()

    def system(self, given: str | None) -> str | None:
        """The system prompt of this turn: ``given``, else the conversation's."""
        return given if given is not None else self.original_system

    def add_earlier(self, request: dict[str, Any]) -> None:
        """Put the earlier turns before ``request``'s prompt (or its messages)."""
        if not self.earlier:
            return
        from ..history import messages_of, newest_within

        kept = newest_within(self.earlier, MAX_CONVERSATION_CHARS)
        if len(kept) < len(self.earlier):
            warn(f"the oldest {len(self.earlier) - len(kept)} turns of conversation "
                 f"{self.cid} are not sent: together they pass "
                 f"{MAX_CONVERSATION_CHARS:,} characters")  # fmt: skip
            self.earlier = kept
        request["messages"] = messages_of(self.earlier) + list(request.get("messages") or [])

    def record(
        self,
        prompt: str,
        system: str | None,
        result: RouteResult | None,
        attachments: Sequence[Any] = (),
    ) -> None:
        """Record an answered turn (call it once the answer is out); one warning if the
        history cannot be written. The turn becomes an earlier turn of the next one."""
        if result is None:
            return
        from ..history import Entry, result_fields

        fields = result_fields(result)
        files = [_attachment(a) for a in attachments]
        entry_id = self._write(prompt, system, files, fields)
        self.earlier.append(
            Entry(id=entry_id, cid=self.cid, at=time.time(), prompt=prompt, system=system,
                  attachments=files, **fields)
        )  # fmt: skip
        self.original_system = system

    def record_failure(
        self, prompt: str, system: str | None, exc: Exception, attachments: Sequence[Any] = ()
    ) -> None:
        """Record a turn no provider answered, with why and every attempt, so nothing typed
        is lost; it is not sent again as part of the conversation."""
        from ..history import failure_fields

        self._write(prompt, system, [_attachment(a) for a in attachments], failure_fields(exc))

    def _write(
        self,
        prompt: str,
        system: str | None,
        files: list[dict[str, Any]],
        fields: dict[str, Any],
    ) -> int:
        """Store one entry of this conversation; its id, 0 when not recorded."""
        from ..history import HistoryError

        if not self.recorded:
            return 0
        # Redacted before anything is stored: a key pasted into a prompt, or echoed in an
        # answer or an error, never reaches the file.
        for name in ("answer", "error"):
            if isinstance(fields.get(name), str):
                fields = {**fields, name: scrub(fields[name])}
        opening, self._opening = self._opening, None
        try:
            with opening.take() if opening is not None else _history(self.cfg) as history:
                return history.record(
                    cid=self.cid, prompt=scrub(prompt), config=self.cfg, attachments=files,
                    system=None if system is None else scrub(system), **fields,
                )  # fmt: skip
        except HistoryError as exc:
            warn(f"history not written: {exc}")
            return 0


def _attachment(a: Any) -> dict[str, Any]:
    """An attachment as the history keeps it: name, type, size and SHA-256, not its bytes."""
    import hashlib

    return {**a.summary(), "sha256": hashlib.sha256(a.data).hexdigest()}


def _read_conversation(cfg: Config, cid: str | None, option: str) -> list[Entry]:
    from ..history import HistoryError, history_path

    where = history_path(cfg.log)
    if not _exists(cfg):
        raise BadOption(f"no conversation to continue: the history ({where}) is empty", option)
    try:
        with _history(cfg) as history:
            target = cid if cid is not None else history.last_cid()
            turns = history.conversation(target) if target is not None else []
    except HistoryError as exc:
        raise BadOption(f"cannot read the history: {exc}", option) from None
    if not turns:
        if cid is not None:
            raise BadOption(f"no conversation '{cid}' in the history ({where})", option)
        raise BadOption(f"no conversation to continue: the history ({where}) is empty", option)
    return turns


# --- failover logs ------------------------------------------------------------------------------

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

    if not _exists(cfg):
        return []
    try:
        with _history(cfg) as history:
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
        if _exists(cfg):
            try:
                with _history(cfg) as history:
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
