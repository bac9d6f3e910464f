"""A non-blocking, cross-process exclusive lock on a file, for the JSON store.

On POSIX this is ``fcntl.flock`` on an open descriptor, as ``filelock.UnixFileLock`` does (and
interoperable with it), in a few lines: importing ``filelock`` costs about 11 ms, near a tenth
of a whole one-shot ``failover ask`` (measured with ``bench/bench_cli.py``). Elsewhere
(Windows) ``filelock`` does the work. The kernel drops a flock when its holder dies, so a
crashed process never leaves the state locked. The lock file is opened with ``O_NOFOLLOW``
and must be a regular file (see :func:`failover_cli.fsutil.open_lock_file`): a symbolic link
or a FIFO planted at its path is refused, never followed or blocked on.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from typing import Protocol

from ..fsutil import open_lock_file

FIRST_POLL = 0.001  # seconds before the first retry of a held lock
MAX_POLL = 0.05  # longest pause between retries


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
        fd = open_lock_file(self.path)
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


def poll(attempt: Callable[[], bool], timeout: float) -> bool:
    """Call ``attempt`` until it returns True or ``timeout`` seconds pass, backing off from
    1 ms to 50 ms with jitter: waiters wake soon after a release yet many of them cost
    little CPU."""
    deadline = time.monotonic() + timeout
    delay = FIRST_POLL
    while True:
        if attempt():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(remaining, delay * (0.5 + random.random())))
        delay = min(delay * 2, MAX_POLL)


def flock_wait(fd: int, *, exclusive: bool, timeout: float) -> bool:
    """Take a ``flock`` on ``fd`` (exclusive or shared) within ``timeout`` seconds (POSIX)."""
    import fcntl

    mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB

    def attempt() -> bool:
        try:
            fcntl.flock(fd, mode)
        except BlockingIOError:
            return False
        return True

    return poll(attempt, timeout)


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
