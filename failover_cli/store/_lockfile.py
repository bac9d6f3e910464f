"""A non-blocking, cross-process exclusive lock on a file, for the JSON store.

On POSIX this is ``fcntl.flock`` on an open descriptor, as ``filelock.UnixFileLock`` does (and
interoperable with it), in a few lines: importing ``filelock`` costs about 11 ms, near a tenth
of a whole one-shot ``failover ask`` (measured with ``bench/bench_cli.py``). Elsewhere
(Windows) ``filelock`` does the work. The kernel drops a flock when its holder dies, so a
crashed process never leaves the state locked.
"""

from __future__ import annotations

import os
from typing import Protocol


class FileLock(Protocol):
    def try_acquire(self) -> bool:
        """Take the lock if it is free; never waits. OSError if the file cannot be opened."""
        ...

    def release(self) -> None: ...


def file_lock(path: str) -> FileLock:
    """An exclusive lock on ``path`` (created with mode 0600 if missing)."""
    if os.name == "posix":
        return _FlockLock(path)
    return _PortableLock(path)


class _FlockLock:
    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        import fcntl

        if self._fd is not None:
            raise RuntimeError(f"lock {self.path} is already held by this object")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        import fcntl

        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)


class _PortableLock:  # pragma: no cover - exercised on Windows only
    def __init__(self, path: str) -> None:
        from filelock import FileLock as _Lock

        self._lock = _Lock(path, mode=0o600, thread_local=False)

    def try_acquire(self) -> bool:
        from filelock import Timeout

        try:
            self._lock.acquire(blocking=False)
        except Timeout:
            return False
        return True

    def release(self) -> None:
        self._lock.release()
