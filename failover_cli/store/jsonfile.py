"""State in one JSON file, shared safely by every failover process on the machine.

Writers take an exclusive cross-process lock (``flock`` on ``<path>.lock``), re-read the
file, merge their delta into what is on disk and atomically replace the file
(:func:`failover_cli.fsutil.atomic_write`), so concurrent processes lose nothing and a crash
leaves either the old or the new file. A writer that cannot have the lock within
``lock_timeout`` appends its delta to ``<path>.journal`` instead, which the next lock holder
merges (see :mod:`._journal`): no outcome is dropped because a lock wait ran out. Readers take
no lock on the state file.

Half-open probe leases live beside the file in ``<path>.leases`` (JSON: chain -> provider ->
``{"owner", "expires_at"}`` in epoch seconds), read and written only under the same lock;
expired records are dropped on each write, and an unreadable leases file counts as empty.

The state file, its lock and its journal must be regular files: a symbolic link, directory,
device, FIFO or socket at any of those paths is refused with a one-line :class:`StateError`
and left untouched. The file is read with a bounded size. A corrupt or foreign file is moved
aside (never deleted) and a fresh state starts; a malformed chain is dropped alone, the other
chains kept, and the original file copied aside; a file written by a newer failover is left
alone.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..breaker import ProbeLease
from ..errors import StateError
from ..fsutil import (
    NotRegularFile,
    TooLarge,
    atomic_write,
    check_regular,
    create_exclusive,
    read_limited,
)
from ..state import ChainState, ForeignDocument, FutureSchema, StateDelta, forget, merge
from ._copy import detach
from ._document import Document, parse
from ._journal import Journal, Pending, encode_line
from ._lockfile import FileLock, file_lock, poll

DEFAULT_LOCK_TIMEOUT = 2.0  # seconds an update waits for the lock before journalling
JOURNAL_WAIT = 30.0  # seconds an append may wait for a holder merging the journal
MAX_STATE_BYTES = 32 * 2**20  # a larger state file is unreadable (moved aside)
MAX_LEASE_BYTES = 2**20  # a larger leases file is unreadable (treated as empty)
LEASE_LOCK_WAIT = 0.05  # seconds a lease claim waits for the lock (claims run on event loops)
_LEFTOVER = re.compile(r"(?:[0-9a-f]{32}\.)?tmp")  # temporary files of writers that died

# What a write does to the chain: its new state and the providers changed, or None: nothing.
_Change = Callable[[ChainState], "tuple[ChainState, Collection[str]] | None"]


class _Busy(StateError):
    """The lock stayed held by another process for the whole wait."""


class JsonFileStore:
    """A :class:`~failover_cli.protocols.StateStore` over one JSON file holding every chain."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        self.path = Path(path).expanduser()
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.journal_path = self.path.with_name(self.path.name + ".journal")
        self.leases_path = self.path.with_name(self.path.name + ".leases")
        self.lock_timeout = lock_timeout
        self.on_warning = on_warning
        self._journal = Journal(self.journal_path) if os.name == "posix" else None
        self._file_lock: FileLock | None = None
        self._mutex = threading.RLock()  # one writer per process at a time; guards the cache
        self._cached = Document()  # the file as last read or written by this store
        self._warned: set[str] = set()
        self._swept = False

    # --- StateStore --------------------------------------------------------------------------

    def load(self, chain: str) -> ChainState:
        """The chain's state as on disk now (empty if the file does not exist yet), with any
        journalled deltas not merged yet."""
        with self._mutex:
            try:
                doc, pending = self._snapshot()
            except FutureSchema as exc:
                message = f"state file {self.path} is from a newer failover ({exc}); not using it"
                self._warn_once("future", message)
                return ChainState()
            except ForeignDocument:
                doc = None
            if doc is not None:
                state = doc.chain(chain)
                if chain not in doc.malformed:
                    return detach(_with_pending(state, chain, pending, doc.journal))
            # Unreadable, whole or this chain: repair under the lock, unless a writer did.
            with self._exclusive("corrupt state file not moved aside"):
                return detach(self._commit(chain, None))

    def update(self, chain: str, delta: StateDelta) -> ChainState:
        """Merge ``delta`` into the chain on disk, atomically; return the merged state. If the
        lock stays held by others, the delta is journalled for the next holder to merge."""
        with self._mutex:
            try:
                with self._exclusive("outcome not recorded"):
                    return detach(self._commit(chain, _merging(delta)))
            except _Busy:
                if self._journal is None:
                    raise
                return self._journalled(chain, delta)

    def reset(self, chain: str, providers: Sequence[str] | None = None) -> None:
        """Forget the chain (or only the named providers in it)."""
        with self._exclusive("state not reset"):
            self._commit(chain, _dropping(providers))

    def claim_probe(
        self, chain: str, provider: str, owner: str, ttl: float, now: float
    ) -> ProbeLease:
        """Take the lease under the file lock: a record with an expiry in epoch seconds. A
        lock held by others for ``LEASE_LOCK_WAIT`` is contention: not granted, ask again."""
        try:
            with self._exclusive("probe lease not taken", LEASE_LOCK_WAIT):
                return self._claim(chain, provider, owner, ttl, now)
        except _Busy:
            return ProbeLease(False, "", now + 2 * LEASE_LOCK_WAIT)

    def _claim(self, chain: str, provider: str, owner: str, ttl: float, now: float) -> ProbeLease:
        """With the lock held: grant unless another owner's lease is still running."""
        leases = self._read_leases(now)
        held = leases.get(chain, {}).get(provider)
        if held is not None and held[0] != owner:
            return ProbeLease(False, held[0], held[1])
        leases.setdefault(chain, {})[provider] = (owner, now + ttl)
        self._write_leases(leases)
        return ProbeLease(True, owner, now + ttl)

    def end_probe(self, chain: str, provider: str, owner: str) -> None:
        with self._exclusive("probe lease not ended", LEASE_LOCK_WAIT):
            leases = self._read_leases(None)
            held = leases.get(chain, {}).get(provider)
            if held is not None and held[0] == owner:
                del leases[chain][provider]
                self._write_leases(leases)

    def close(self) -> None:
        with self._mutex:
            self._cached = Document()

    # --- probe leases (called with the lock held) -----------------------------------------------

    def _read_leases(self, now: float | None) -> dict[str, dict[str, tuple[str, float]]]:
        """The leases on disk, without those expired at ``now``; malformed records skipped."""
        try:
            raw = json.loads(read_limited(self.leases_path, MAX_LEASE_BYTES))
        except FileNotFoundError:
            return {}
        except NotRegularFile as exc:
            raise StateError(self._refusal("leases file", self.leases_path, exc)) from None
        except (TooLarge, ValueError, RecursionError):
            return {}  # unreadable: rewritten whole on the next claim
        except OSError as exc:
            raise StateError(f"cannot read {self.leases_path}: {_reason(exc)}") from None
        out: dict[str, dict[str, tuple[str, float]]] = {}
        for chain, providers in raw.items() if isinstance(raw, dict) else ():
            for name, rec in providers.items() if isinstance(providers, dict) else ():
                if not isinstance(rec, dict):
                    continue
                holder, until = rec.get("owner"), rec.get("expires_at")
                if (
                    isinstance(holder, str)
                    and isinstance(until, int | float)
                    and math.isfinite(until)
                    and (now is None or until > now)
                ):
                    out.setdefault(chain, {})[name] = (holder, float(until))
        return out

    def _write_leases(self, leases: dict[str, dict[str, tuple[str, float]]]) -> None:
        doc = {
            c: {n: {"owner": o, "expires_at": t} for n, (o, t) in ps.items()}
            for c, ps in leases.items()
            if ps
        }
        try:
            atomic_write(self.leases_path, json.dumps(doc, separators=(",", ":")).encode())
        except NotRegularFile as exc:
            raise StateError(self._refusal("leases file", self.leases_path, exc)) from None
        except OSError as exc:
            raise StateError(f"cannot write {self.leases_path}: {_reason(exc)}") from None

    # --- reading -----------------------------------------------------------------------------

    def _snapshot(self) -> tuple[Document, Pending | None]:
        """The file and the journal's pending lines, read consistently (no state lock)."""
        if self._journal is None:
            data = self._read_bytes()
            pending: Pending | None = Pending()
        else:
            with self._journal.shared(self.lock_timeout) as pending:
                data = self._read_bytes()
        return (Document() if data is None else self._parse(data)), pending

    def _read_bytes(self) -> bytes | None:
        """The file's bytes; None if missing. ForeignDocument if too large to be ours."""
        try:
            return read_limited(self.path, MAX_STATE_BYTES)
        except FileNotFoundError:
            return None
        except NotRegularFile as exc:
            raise StateError(self._refusal("state file", self.path, exc)) from None
        except TooLarge:
            raise ForeignDocument(f"larger than {MAX_STATE_BYTES >> 20} MiB") from None
        except OSError as exc:
            raise StateError(f"cannot read state file {self.path}: {_reason(exc)}") from None

    def _parse(self, data: bytes) -> Document:
        """The parsed file, reusing the last parse when the bytes are the same."""
        if data != self._cached.data or not data:
            self._cached = parse(data)
        return self._cached

    def _read_for_write(self) -> Document:
        """The current file, read under the lock; a corrupt file is moved aside first (and an
        empty document returned)."""
        try:
            data = self._read_bytes()
            return Document() if data is None else self._parse(data)
        except FutureSchema as exc:
            raise StateError(
                f"state file {self.path} is from a newer failover ({exc}); "
                "not overwriting it: upgrade failover or use another state file"
            ) from None
        except ForeignDocument as exc:
            self._quarantine(str(exc))
            return Document()

    def _quarantine(self, reason: str) -> None:
        """Move the unreadable file to ``<name>.corrupt-<UTC time>`` (never over another)."""
        try:
            target = _move_aside(self.path, _corrupt_name(self.path))
        except OSError as exc:
            raise StateError(
                f"state file {self.path} is unreadable ({reason}) and could not be moved "
                f"aside: {_reason(exc)}"
            ) from None
        self._cached = Document()
        self._warn(
            f"state file {self.path} was unreadable ({_one_line(reason)}); "
            f"moved it to {target} and started afresh"
        )

    def _keep_copy(self, original: bytes, malformed: dict[str, str]) -> None:
        """Copy the file as read to ``<name>.corrupt-<UTC time>`` before its malformed chains
        are dropped; StateError (and nothing dropped) if no copy can be made."""
        base = _corrupt_name(self.path)
        try:
            target = _first_free(self.path, base, lambda t: create_exclusive(t, original))
        except OSError as exc:
            raise StateError(
                f"state file {self.path} has a malformed chain and could not be copied "
                f"aside: {_reason(exc)}"
            ) from None
        names = ", ".join(f"{c!r} ({_one_line(r)})" for c, r in malformed.items())
        self._warn(
            f"state file {self.path}: dropped unreadable chain {names}, kept the others; "
            f"the original file is in {target}"
        )

    # --- writing -----------------------------------------------------------------------------

    def _commit(self, chain: str, change: _Change | None) -> ChainState:
        """With the lock held: read the file, merge the journal, apply ``change`` to the
        chain and write the file if anything changed; return the chain's state."""
        self._sweep()
        with self._consume() as pending:
            doc = self._read_for_write()
            original, dirty = doc.data, False
            if pending is not None and pending.entries:
                doc, dirty = _merge_pending(doc, pending), True
            state = doc.chain(chain)
            result = None if change is None else change(state)
            if result is not None:
                state = result[0]
                doc, dirty = doc.with_chain(chain, state, result[1]), True
            if doc.malformed:
                self._keep_copy(original, doc.malformed)
                dirty = True
            merged = doc.journal if pending is None else pending.ids
            if dirty or merged != doc.journal:
                self._write(doc.finish(merged))
                if pending is not None:
                    pending.commit()
            return state

    @contextmanager
    def _consume(self) -> Iterator[Pending | None]:
        if self._journal is None:
            yield Pending()
            return
        with self._journal.consume(self.lock_timeout, self._warn_once_by_text) as pending:
            yield pending

    def _journalled(self, chain: str, delta: StateDelta) -> ChainState:
        """Append ``delta`` to the journal; the state as it will be once merged."""
        assert self._journal is not None
        try:
            _, line = encode_line(chain, delta)
            self._journal.append(line, JOURNAL_WAIT)
        except (OSError, ValueError, TypeError) as exc:
            raise StateError(
                f"state file locked by another process for more than {self.lock_timeout:g}s "
                f"and its journal {self.journal_path} failed ({_reason(exc)}): "
                "outcome not recorded"
            ) from None
        try:
            doc, pending = self._snapshot()
            state = doc.chain(chain)
        except (StateError, ForeignDocument, FutureSchema):
            return detach(merge(ChainState(), delta))
        if pending is None:  # the journal could not be read: our line is not in this view
            return detach(merge(state, delta))
        return detach(_with_pending(state, chain, pending, doc.journal))

    @contextmanager
    def _exclusive(self, consequence: str, wait: float | None = None) -> Iterator[None]:
        """Hold this process's mutex and the cross-process file lock (waiting ``wait``
        seconds for it, default ``lock_timeout``)."""
        wait = self.lock_timeout if wait is None else wait
        with self._mutex:
            try:
                check_regular(self.path)  # before creating anything beside it
            except NotRegularFile as exc:
                raise StateError(self._refusal("state file", self.path, exc)) from None
            except OSError as exc:
                raise StateError(f"cannot use state file {self.path}: {_reason(exc)}") from None
            lock = self._lock()
            try:
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise StateError(
                    f"cannot create state directory {self.path.parent}: {_reason(exc)}"
                ) from None
            try:
                acquired = poll(lock.try_acquire, wait)
            except NotRegularFile as exc:
                raise StateError(self._refusal("lock file", self.lock_path, exc)) from None
            except (OSError, RuntimeError) as exc:
                raise StateError(
                    f"cannot lock state file {self.lock_path}: {_reason(exc)}"
                ) from None
            if not acquired:
                raise _Busy(
                    f"state file locked by another process for more than {wait:g}s: {consequence}"
                )
            try:
                yield
            finally:
                lock.release()

    def _lock(self) -> FileLock:
        if self._file_lock is None:
            self._file_lock = file_lock(str(self.lock_path))
        return self._file_lock

    def _write(self, doc: Document) -> None:
        """Replace the file atomically with ``doc`` (called with the lock held)."""
        if len(doc.data) > MAX_STATE_BYTES:
            raise StateError(
                f"cannot write state file {self.path}: it would exceed "
                f"{MAX_STATE_BYTES >> 20} MiB (lower state.history)"
            )
        try:
            atomic_write(self.path, doc.data)
        except NotRegularFile as exc:
            raise StateError(self._refusal("state file", self.path, exc)) from None
        except OSError as exc:
            raise StateError(f"cannot write state file {self.path}: {_reason(exc)}") from None
        # No fsync of the directory: it would make the rename itself survive a power cut
        # (~1.5 ms here), but without it a power cut leaves the old state, which is allowed.
        # (Emptying the journal does fsync it first: see _journal.)
        self._cached = doc

    def _sweep(self) -> None:
        """Once per store, with the lock held: remove temporary files left by writers that
        died mid-write (every writer of this file holds the lock, so none is in use)."""
        if self._swept:
            return
        self._swept = True
        prefix = self.path.name + "."
        try:
            with os.scandir(self.path.parent) as entries:
                for entry in entries:
                    name = entry.name
                    if (
                        name.startswith(prefix)
                        and _LEFTOVER.fullmatch(name[len(prefix) :])
                        and entry.is_file(follow_symlinks=False)
                    ):
                        _unlink_quietly(Path(entry.path))
        except OSError:
            pass

    # --- warnings ----------------------------------------------------------------------------

    def _refusal(self, what: str, path: Path, exc: NotRegularFile) -> str:
        return f"{what} {path} is {exc.kind}, not a regular file: not using it"

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self._warn(message)

    def _warn_once_by_text(self, message: str) -> None:
        self._warn_once(message, message)

    def _warn(self, message: str) -> None:
        if self.on_warning is not None:
            self.on_warning(message)
        else:
            import logging

            logging.getLogger("failover.store").warning("%s", message)


# --- what a write does ------------------------------------------------------------------------


def _merging(delta: StateDelta) -> _Change:
    def change(state: ChainState) -> tuple[ChainState, Collection[str]]:
        return detach(merge(state, delta)), set(delta.providers)

    return change


def _dropping(providers: Sequence[str] | None) -> _Change:
    def change(state: ChainState) -> tuple[ChainState, Collection[str]] | None:
        drop = set(state.providers if providers is None else providers)
        if not drop & set(state.providers):
            return None
        return forget(state, drop), drop  # spend stays: a reset must not reopen a budget

    return change


def _merge_pending(doc: Document, pending: Pending) -> Document:
    """``doc`` with every journalled delta it has not merged yet merged in."""
    done = set(doc.journal)
    by_chain: dict[str, list[StateDelta]] = {}
    for entry in pending.entries:
        if entry.id not in done:
            by_chain.setdefault(entry.chain, []).append(entry.delta)
    for chain, deltas in by_chain.items():
        state = doc.chain(chain)
        changed: set[str] = set()
        for delta in deltas:
            state = merge(state, delta)
            changed.update(delta.providers)
        doc = doc.with_chain(chain, detach(state), changed)
    return doc


def _with_pending(
    state: ChainState, chain: str, pending: Pending | None, done: Sequence[str]
) -> ChainState:
    """``state`` with the chain's journalled deltas that the file does not hold yet."""
    if not pending or not pending.entries:
        return state
    merged = set(done)
    for entry in pending.entries:
        if entry.chain == chain and entry.id not in merged:
            state = merge(state, entry.delta)
    return state


# --- files ------------------------------------------------------------------------------------


def _corrupt_name(path: Path) -> str:
    return f"{path.name}.corrupt-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def _first_free(path: Path, name: str, make: Callable[[Path], None]) -> Path:
    """``make`` the first of ``name``, ``name-1``, ``name-2``... that does not exist yet."""
    for n in range(1000):
        target = path.with_name(name if n == 0 else f"{name}-{n}")
        try:
            make(target)
        except FileExistsError:
            continue
        return target
    raise FileExistsError(errno.EEXIST, "too many files moved aside already", str(path))


def _move_aside(path: Path, name: str) -> Path:
    """Rename ``path`` to ``name`` in its directory, adding ``-1``, ``-2``... if taken."""
    return _first_free(path, name, lambda target: _move(path, target))


def _move(path: Path, target: Path) -> None:
    """Move ``path`` to ``target``, never over an existing file."""
    try:
        os.link(path, target, follow_symlinks=False)  # fails if target exists
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        if target.exists() or target.is_symlink():  # no hard links here: check, then rename
            raise FileExistsError(errno.EEXIST, "exists", str(target)) from None
        os.rename(path, target)
        return
    os.unlink(path)


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _reason(exc: Any) -> str:
    """A short reason for an OS error: 'Permission denied', 'Read-only file system', ..."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.strerror or errno.errorcode.get(exc.errno, str(exc.errno))
    return _one_line(str(exc)) or type(exc).__name__
