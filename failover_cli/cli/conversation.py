"""The conversation an ``ask`` or ``chat`` turn belongs to (``-c``, ``--cid``): the earlier
turns it sends, and the history it records each answer in.

The database is :mod:`failover_cli.history`, imported (with ``sqlite3``) only when it is
used: to read a conversation, or to record a turn. ``ask`` opens it in a thread while the
request is on its way (:meth:`Conversation.open_early`), so the answer's wait hides most of
what recording costs, and writes it after the answer has been printed and flushed. A history
that cannot be written (locked, unwritable, a symbolic link at its path) costs one warning on
stderr, never the answer or the exit code.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .exits import BadOption
from .output import scrub, warn

if TYPE_CHECKING:
    from ..config import Config
    from ..history import Entry, History
    from ..types import RouteResult

MAX_CID = 64  # characters of a conversation id given with --cid
# Characters of earlier turns a continued conversation sends: above any model's context, so
# only a runaway conversation meets it; its oldest turns are then left out, with a warning.
MAX_CONVERSATION_CHARS = 4 * 1024 * 1024
OPEN_WAIT = 5.0  # seconds an answered turn waits for the history being opened early


def open_history(cfg: Config) -> History:
    """The history database of ``cfg`` (HistoryError when it cannot be opened)."""
    from ..history import History, history_path

    return History(history_path(cfg.log), cfg.log)


def history_exists(cfg: Config) -> bool:
    """Whether anything is at the history's path (a link too: opening it says why not)."""
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
            with opening.take() if opening is not None else open_history(self.cfg) as history:
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
    """The answered turns of conversation ``cid`` (else the last one), oldest first;
    BadOption naming ``option`` when there are none."""
    from ..history import HistoryError, history_path

    where = history_path(cfg.log)
    if not history_exists(cfg):
        raise BadOption(f"no conversation to continue: the history ({where}) is empty", option)
    try:
        with open_history(cfg) as history:
            target = cid if cid is not None else history.last_cid()
            turns = history.conversation(target) if target is not None else []
    except HistoryError as exc:
        raise BadOption(f"cannot read the history: {exc}", option) from None
    if not turns:
        if cid is not None:
            raise BadOption(f"no conversation '{cid}' in the history ({where})", option)
        raise BadOption(f"no conversation to continue: the history ({where}) is empty", option)
    return turns
