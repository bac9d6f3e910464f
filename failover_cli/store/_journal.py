"""Deltas that could not wait for the state file's lock: ``<state>.journal``, one JSON line each.

A writer that cannot have the state lock in time appends its delta here instead of dropping
it, and the next lock holder merges every line into the state file and empties the journal.
That makes "no outcome dropped because a lock wait ran out" exact:

- Appending takes an exclusive ``flock`` on the journal for one ``write`` of one line (O_APPEND,
  O_NOFOLLOW, 0600), so lines never interleave and never land while a holder empties it.
- The holder keeps that lock from reading the journal to truncating it. The state file it
  writes records the ids of the lines it merged (``"journal"`` in the document), and only
  then is the journal truncated: a crash in between leaves lines whose ids the state already
  lists, and the next holder skips them. Each line is merged exactly once.
- A journal found empty means no merged line remains in it, so the ids can be forgotten.
- Readers take a shared lock while they read the state file and the journal, so what they see
  is consistent: lines not yet merged are added to their view, merged ones are not.

The journal is never unlinked while in use (an appender might hold it open); one moved aside
as corrupt is noticed by appenders, which check they still write to the file at the path.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import field
from pathlib import Path

from ..fsutil import TooLarge, check_regular, fsync_dir, open_append, open_lock_file, read_fd
from ..records import frozen, slotted
from ..state import DECODE_ERRORS, ProviderDelta, StateDelta
from ._lockfile import flock_wait

JOURNAL_LIMIT = 16 * 2**20  # bytes; an appender finding more gives up (a holder is stuck)
MAX_LINE = 2**20  # bytes in one journal line


class JournalFull(OSError):
    """The journal cannot take this line (it is full, or the line is too long)."""


@frozen
class Entry:
    """One journal line: its id, the chain and the delta."""

    id: str
    chain: str
    delta: StateDelta


@slotted
class Pending:
    """The journal's lines as read under its lock; ``bad`` counts lines that did not decode.
    ``ids`` are those of every line read, to be recorded as merged."""

    entries: list[Entry] = field(default_factory=list)
    ids: tuple[str, ...] = ()
    bad: int = 0
    committed: bool = False

    def commit(self) -> None:
        """The state file now holds these lines: the journal may be emptied."""
        self.committed = True


def encode_line(chain: str, delta: StateDelta) -> tuple[str, bytes]:
    """A fresh id and the journal line for ``delta`` (strict JSON, newline-terminated)."""
    ident = secrets.token_hex(16)
    body = {
        "id": ident,
        "chain": chain,
        "history": delta.history,
        "providers": {n: d.finite().to_dict() for n, d in delta.providers.items()},
    }
    text = json.dumps(body, separators=(",", ":"), allow_nan=False)
    return ident, b"\n" + text.encode() + b"\n"  # the leading newline isolates a torn line


def decode(data: bytes) -> Pending:
    """Every complete line of a journal's bytes (a torn or foreign line counts as bad)."""
    pending = Pending()
    ids: list[str] = []
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            entry = _entry(json.loads(line))
        except (*DECODE_ERRORS, RecursionError):
            pending.bad += 1
            continue
        ids.append(entry.id)
        pending.entries.append(entry)
    pending.ids = tuple(ids)
    return pending


def _entry(d: object) -> Entry:
    if not isinstance(d, dict):
        raise ValueError("not an object")
    ident, chain, history, providers = d["id"], d["chain"], d["history"], d["providers"]
    if not (isinstance(ident, str) and isinstance(chain, str) and isinstance(providers, dict)):
        raise ValueError("malformed journal line")
    if isinstance(history, bool) or not isinstance(history, int):
        raise ValueError("malformed history")
    delta = StateDelta(
        {str(n): ProviderDelta.from_dict(p) for n, p in providers.items()}, history=history
    )
    return Entry(ident, chain, delta)


class Journal:
    """The journal at ``path``; every wait is bounded by the caller's ``timeout``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, line: bytes, timeout: float) -> None:
        """Add one line; OSError (JournalFull, TimeoutError, ...) if it was not added."""
        if len(line) > MAX_LINE:
            raise JournalFull(errno.EFBIG, "the delta is too large for the journal")
        for _ in range(3):
            fd = open_append(self.path)
            try:
                if not flock_wait(fd, exclusive=True, timeout=timeout):
                    raise TimeoutError(errno.ETIMEDOUT, "the journal stayed locked")
                st = os.fstat(fd)
                if not _same_file(st, self.path):
                    continue  # moved aside meanwhile: append to the new one
                if st.st_size + len(line) > JOURNAL_LIMIT:
                    raise JournalFull(errno.ENOSPC, "the journal is full")
                os.write(fd, line)  # one write of one short line: O_APPEND keeps it whole
                return
            finally:
                os.close(fd)  # releases the lock
        raise TimeoutError(errno.ETIMEDOUT, "the journal kept being replaced")

    def _open_existing(self) -> int | None:
        """A descriptor on the journal if it holds anything; None if missing or empty."""
        st = check_regular(self.path)  # refuses a symbolic link, a FIFO, a device...
        if st is None or st.st_size == 0:
            return None
        fd = open_lock_file(self.path)
        if os.fstat(fd).st_size == 0:
            os.close(fd)
            return None
        return fd

    @contextmanager
    def _locked(
        self, *, exclusive: bool, timeout: float, on_unusable: Callable[[OSError], None]
    ) -> Iterator[int | None]:
        """The journal's descriptor under a flock until the block ends: :data:`_EMPTY` when
        it holds nothing, None when it cannot be opened or locked now."""
        try:
            fd = self._open_existing()
        except OSError as exc:
            on_unusable(exc)
            yield None
            return
        if fd is None:
            yield _EMPTY
            return
        try:
            yield fd if flock_wait(fd, exclusive=exclusive, timeout=timeout) else None
        finally:
            with suppress(OSError):
                os.close(fd)

    @contextmanager
    def consume(
        self, timeout: float, on_warning: Callable[[str], None]
    ) -> Iterator[Pending | None]:
        """For a holder of the state lock: the pending lines, locked until the block ends;
        emptied then if :meth:`Pending.commit` was called. ``Pending()`` when there is
        nothing; ``None`` when the journal cannot be read now (the merged ids must then be
        kept as they are)."""

        def unusable(exc: OSError) -> None:
            on_warning(f"state journal {self.path} is unusable ({_reason(exc)}); not merged")

        with self._locked(exclusive=True, timeout=timeout, on_unusable=unusable) as fd:
            if fd is None or fd == _EMPTY:
                yield None if fd is None else Pending()
                return
            pending = self._read(fd, on_warning)
            yield pending
            if pending.committed and (pending.ids or pending.bad):
                fsync_dir(self.path.parent)  # the state file's rename first, for good
                os.ftruncate(fd, 0)

    def _read(self, fd: int, on_warning: Callable[[str], None]) -> Pending:
        try:
            pending = decode(read_fd(fd, JOURNAL_LIMIT, str(self.path)))
        except TooLarge:
            moved = self.path.with_name(f"{self.path.name}.corrupt-{secrets.token_hex(4)}")
            os.rename(self.path, moved)
            on_warning(f"state journal {self.path} was too large; moved it to {moved}")
            return Pending()
        if pending.bad:
            on_warning(
                f"state journal {self.path}: {pending.bad} unreadable line(s) skipped "
                "(outcomes of processes that died while writing them)"
            )
        return pending

    @contextmanager
    def shared(self, timeout: float) -> Iterator[Pending | None]:
        """For a reader: the pending lines under a shared lock held until the block ends
        (read the state file inside it). ``None`` if they cannot be had now."""
        with self._locked(exclusive=False, timeout=timeout, on_unusable=lambda _e: None) as fd:
            if fd is None or fd == _EMPTY:
                yield None if fd is None else Pending()
                return
            try:
                pending: Pending | None = decode(read_fd(fd, JOURNAL_LIMIT, str(self.path)))
            except OSError:
                pending = None
            yield pending


_EMPTY = -1  # what Journal._locked yields for a journal with nothing in it


def _same_file(st: os.stat_result, path: Path) -> bool:
    try:
        now = os.lstat(path)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)
