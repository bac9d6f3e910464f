"""State in one JSON file, shared safely by every failover process on the machine.

Writers take an exclusive cross-process lock (``flock`` on ``<path>.lock``), re-read the
file, merge their delta into what is on disk and atomically replace the file (temporary file,
fsync, ``os.replace``), so concurrent processes lose nothing and a
crash leaves either the old or the new file. Readers take no lock. A corrupt or foreign file
is moved aside (never deleted) and a fresh state starts; a file written by a newer failover is
left alone.
"""

from __future__ import annotations

import errno
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import StateError
from ..state import ChainState, ForeignDocument, FutureSchema, StateDelta, merge
from ._copy import detach
from ._document import Document, parse
from ._lockfile import FileLock, file_lock

DEFAULT_LOCK_TIMEOUT = 2.0
_FIRST_POLL = 0.001  # seconds before the first retry of a held lock
_MAX_POLL = 0.05  # longest pause between retries


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
        self.lock_timeout = lock_timeout
        self.on_warning = on_warning
        self._tmp_path = self.path.with_name(self.path.name + ".tmp")
        self._file_lock: FileLock | None = None
        self._mutex = threading.RLock()  # one writer per process at a time; guards the cache
        self._cached = Document()  # the file as last read or written by this store
        self._warned_future = False

    # --- StateStore --------------------------------------------------------------------------

    def load(self, chain: str) -> ChainState:
        """The chain's state as on disk now (empty if the file does not exist yet)."""
        with self._mutex:
            data = self._read_bytes()
            if data is None:
                return ChainState()
            try:
                return detach(self._parse(data).chain(chain))
            except FutureSchema as exc:
                self._warn_future(exc)
                return ChainState()
            except ForeignDocument:
                pass
            # Corrupt: move it aside under the lock, unless a writer replaced it meanwhile.
            with self._exclusive("corrupt state file not moved aside"):
                return detach(self._read_for_write(chain)[1])

    def update(self, chain: str, delta: StateDelta) -> ChainState:
        """Merge ``delta`` into the chain on disk, atomically; return the merged state."""
        with self._exclusive("outcome not recorded"):
            doc, current = self._read_for_write(chain)
            merged = detach(merge(current, delta))
            self._write(doc.with_chain(chain, merged, set(delta.providers)))
            return detach(merged)

    def reset(self, chain: str, providers: Sequence[str] | None = None) -> None:
        """Forget the chain (or only the named providers in it)."""
        with self._exclusive("state not reset"):
            doc, state = self._read_for_write(chain)
            drop = set(state.providers if providers is None else providers)
            if chain not in doc.texts or not drop & set(state.providers):
                return
            kept = ChainState({n: p for n, p in state.providers.items() if n not in drop})
            self._write(doc.with_chain(chain, kept, set()))

    def close(self) -> None:
        with self._mutex:
            self._cached = Document()

    # --- reading -----------------------------------------------------------------------------

    def _read_bytes(self) -> bytes | None:
        try:
            with open(self.path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"cannot read state file {self.path}: {_reason(exc)}") from None

    def _parse(self, data: bytes) -> Document:
        """The parsed file, reusing the last parse when the bytes are the same."""
        if data != self._cached.data or not data:
            self._cached = parse(data)
        return self._cached

    def _read_for_write(self, chain: str) -> tuple[Document, ChainState]:
        """The current file and the chain in it, read under the lock; a corrupt file is
        moved aside first (and an empty document returned)."""
        data = self._read_bytes()
        if data is None:
            return Document(), ChainState()
        try:
            doc = self._parse(data)
            return doc, doc.chain(chain)
        except FutureSchema as exc:
            raise StateError(
                f"state file {self.path} is from a newer failover ({exc}); "
                "not overwriting it: upgrade failover or use another state file"
            ) from None
        except ForeignDocument as exc:
            self._quarantine(str(exc))
            return Document(), ChainState()

    def _quarantine(self, reason: str) -> None:
        """Move the unreadable file to ``<name>.corrupt-<UTC time>`` (never over another)."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        base = f"{self.path.name}.corrupt-{stamp}"
        try:
            target = _move_aside(self.path, base)
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

    # --- writing -----------------------------------------------------------------------------

    @contextmanager
    def _exclusive(self, consequence: str) -> Iterator[None]:
        """Hold this process's mutex and the cross-process file lock."""
        with self._mutex:
            lock = self._lock()
            try:
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise StateError(
                    f"cannot create state directory {self.path.parent}: {_reason(exc)}"
                ) from None
            try:
                acquired = self._acquire(lock)
            except (OSError, RuntimeError) as exc:
                raise StateError(
                    f"cannot lock state file {self.lock_path}: {_reason(exc)}"
                ) from None
            if not acquired:
                raise StateError(
                    f"state file locked by another process for more than "
                    f"{self.lock_timeout:g}s: {consequence}"
                )
            try:
                yield
            finally:
                lock.release()

    def _acquire(self, lock: FileLock) -> bool:
        """Try the lock until ``lock_timeout`` passes, backing off from 1 ms to 50 ms with
        jitter: waiters wake soon after a release yet many of them cost little CPU."""
        deadline = time.monotonic() + self.lock_timeout
        delay = _FIRST_POLL
        while True:
            if lock.try_acquire():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(remaining, delay * (0.5 + random.random())))
            delay = min(delay * 2, _MAX_POLL)

    def _lock(self) -> FileLock:
        if self._file_lock is None:
            self._file_lock = file_lock(str(self.lock_path))
        return self._file_lock

    def _write(self, doc: Document) -> None:
        """Replace the file atomically with ``doc`` (called with the lock held)."""
        tmp = self._tmp_path
        try:
            fd = os.open(tmp, _WRITE_FLAGS, 0o600)
            try:
                os.fchmod(fd, 0o600)
                view = memoryview(doc.data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError as exc:
            _unlink_quietly(tmp)
            raise StateError(f"cannot write state file {self.path}: {_reason(exc)}") from None
        # No fsync of the directory: it would make the rename itself survive a power cut
        # (~1.5 ms here), but without it a power cut leaves the old state, which is allowed.
        self._cached = doc

    # --- warnings ----------------------------------------------------------------------------

    def _warn_future(self, exc: FutureSchema) -> None:
        if not self._warned_future:
            self._warned_future = True
            self._warn(f"state file {self.path} is from a newer failover ({exc}); not using it")

    def _warn(self, message: str) -> None:
        if self.on_warning is not None:
            self.on_warning(message)
        else:
            import logging

            logging.getLogger("failover.store").warning("%s", message)


_WRITE_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_TRUNC
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


def _move_aside(path: Path, name: str) -> Path:
    """Rename ``path`` to ``name`` in its directory, adding ``-1``, ``-2``... if taken."""
    for n in range(1000):
        target = path.with_name(name if n == 0 else f"{name}-{n}")
        try:
            os.link(path, target)  # fails if target exists: nothing is overwritten
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            if target.exists() or target.is_symlink():  # no hard links here: check, then rename
                continue
            os.rename(path, target)
            return target
        os.unlink(path)
        return target
    raise FileExistsError(errno.EEXIST, "too many files moved aside already", str(path))


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
