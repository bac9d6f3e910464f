"""Files that may sit in a hostile place: atomic replacement, bounded reads, lock files, and
files made ready for another library (SQLite) to open.

Every open here uses ``O_NOFOLLOW`` (a planted symbolic link is never followed), ``O_NOCTTY``
and ``O_CLOEXEC``; a path is looked at with ``lstat`` before it is opened, so a device, a FIFO
or a socket in place of a file is refused without being opened at all (a FIFO would block,
a device open can have side effects), and the opened descriptor is checked again with
``fstat``. Nothing here ever replaces, truncates or removes something that is not a regular
file.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat

__all__ = [
    "NotRegularFile",
    "TooLarge",
    "atomic_write",
    "check_regular",
    "check_unchanged",
    "create_exclusive",
    "ensure_regular",
    "fsync_dir",
    "open_append",
    "open_lock_file",
    "read_fd",
    "read_limited",
    "write_all",
]

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_O_NOCTTY = getattr(os, "O_NOCTTY", 0)
_SAFE = _O_NOFOLLOW | _O_CLOEXEC | _O_NOCTTY
_READ = os.O_RDONLY | _O_NONBLOCK | _SAFE
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _SAFE
_LOCK = os.O_RDWR | os.O_CREAT | _O_NONBLOCK | _SAFE
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | _O_NONBLOCK | _SAFE
_CHUNK = 1 << 16

_KINDS = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
)


class NotRegularFile(OSError):
    """The path is not a regular file; ``kind`` says what it is ("a FIFO", ...)."""

    def __init__(self, path: str, kind: str) -> None:
        super().__init__(errno.EINVAL, f"not a regular file ({kind})", path)
        self.kind = kind

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


class TooLarge(OSError):
    """The file is larger than the caller's limit."""

    def __init__(self, path: str, limit: int) -> None:
        super().__init__(errno.EFBIG, f"larger than {limit} bytes", path)
        self.limit = limit


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def check_regular(path: str | os.PathLike[str]) -> os.stat_result | None:
    """``lstat`` of ``path``: None if nothing is there; NotRegularFile unless a regular file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFile(os.fspath(path), _kind(st.st_mode))
    return st


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def check_unchanged(path: str | os.PathLike[str], before: os.stat_result) -> None:
    """NotRegularFile unless ``path`` is still the regular file ``before`` describes (say,
    replaced between a check and another library's open of it)."""
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode) or not _same_file(st, before):
        raise NotRegularFile(os.fspath(path), "replaced while being opened")


def ensure_regular(
    path: str | os.PathLike[str], *, mode: int = 0o600, dir_mode: int | None = None
) -> os.stat_result:
    """The stat of the regular file ``path``; if nothing is there, it is created empty with
    exactly ``mode``, exclusively and never through a link (with ``dir_mode``, its missing
    directories are made first). NotRegularFile for a symbolic link or anything but a
    regular file, also one planted while it is being created."""
    target = os.fspath(path)
    st = check_regular(target)
    if st is not None:
        return st
    if dir_mode is not None:
        os.makedirs(os.path.dirname(target) or ".", mode=dir_mode, exist_ok=True)
    try:
        fd = _create(target, mode)
    except FileExistsError:  # created meanwhile: look again
        st = check_regular(target)
        if st is None:
            raise
        return st
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


def _open_checked(path: str | os.PathLike[str], flags: int, mode: int = 0o600) -> int:
    """Open ``path`` only if it is a regular file (or missing, when ``flags`` create)."""
    before = check_regular(path)
    if before is None and not flags & os.O_CREAT:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), os.fspath(path))
    try:
        fd = os.open(path, flags, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # replaced by a symbolic link since the lstat
            raise NotRegularFile(os.fspath(path), "a symbolic link") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(os.fspath(path), _kind(st.st_mode))
        if before is not None and not _same_file(st, before):
            raise NotRegularFile(os.fspath(path), "replaced while being opened")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_limited(
    path: str | os.PathLike[str], limit: int, *, owner: int | None = None, deny: int = 0
) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them.

    Raises FileNotFoundError, NotRegularFile (a FIFO, device, directory, socket or symbolic
    link: never opened or never read), or TooLarge, reading no more than ``limit + 1`` bytes.
    With ``owner``, PermissionError unless that user id owns the file; with ``deny``,
    PermissionError if any of those mode bits (e.g. ``0o022``: group or other may write) is set.
    """
    fd = _open_checked(path, _READ)
    try:
        st = os.fstat(fd)
        if (owner is not None and st.st_uid != owner) or st.st_mode & deny:
            raise PermissionError(errno.EPERM, "untrusted owner or mode", os.fspath(path))
        return read_fd(fd, limit, os.fspath(path))
    finally:
        os.close(fd)


def read_fd(fd: int, limit: int, name: str = "") -> bytes:
    """Everything from ``fd``'s current offset, raising TooLarge past ``limit`` bytes."""
    if os.fstat(fd).st_size > limit:
        raise TooLarge(name, limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = os.read(fd, min(_CHUNK, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:  # it grew while being read
            raise TooLarge(name, limit)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd``."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _temp_name(path: str) -> str:
    head, tail = os.path.split(path)
    return os.path.join(head, f"{tail}.{secrets.token_hex(16)}.tmp")


def _create(path: str, mode: int) -> int:
    """A write descriptor on the new file ``path`` (FileExistsError if anything is there),
    with exactly ``mode``."""
    fd = os.open(path, _CREATE, mode)
    try:
        os.fchmod(fd, mode)  # the umask does not apply
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_new(path: str, data: bytes, mode: int) -> None:
    """Create ``path`` (it must not exist) holding ``data``, fsynced, with exactly ``mode``."""
    fd = _create(path, mode)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with a file holding ``data``: a new file with an unpredictable name in
    the same directory, created exclusively, written, fsynced, then renamed over ``path``.

    Raises NotRegularFile, never touching it, if ``path`` is a symbolic link, a directory, a
    device, a FIFO or a socket; a reader sees the old file or the new one, never a mix.
    """
    target = os.fspath(path)
    check_regular(target)
    tmp = _temp_name(target)
    try:
        _write_new(tmp, data, mode)
        check_regular(target)  # once more, right before the rename
        os.replace(tmp, target)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def create_exclusive(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o600) -> None:
    """Create ``path`` holding ``data`` in full or not at all; FileExistsError if anything
    (even a dangling symbolic link) is already there. Written under a temporary name, then
    hard-linked into place (``link`` never replaces)."""
    target = os.fspath(path)
    tmp = _temp_name(target)
    try:
        _write_new(tmp, data, mode)
        os.link(tmp, target, follow_symlinks=False)
    finally:
        _unlink_quietly(tmp)


def open_lock_file(path: str | os.PathLike[str]) -> int:
    """A read-write descriptor on the lock file ``path``, created 0600 if missing; raises
    NotRegularFile for a symbolic link or anything but a regular file."""
    return _open_checked(path, _LOCK)


def open_append(path: str | os.PathLike[str]) -> int:
    """An ``O_APPEND`` descriptor on the regular file ``path``, created 0600 if missing."""
    return _open_checked(path, _APPEND)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make renames in directory ``path`` durable (best effort where directories cannot be
    opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
