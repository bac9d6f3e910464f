"""A hostile filesystem: devices, FIFOs, symbolic links, directories and sockets where files
should be, huge files, and planted links at lock and journal paths. Nothing is ever
replaced, followed, blocked on or read without bound; the state store refuses with one line.

Every path is a real one in ``tmp_path``; the character device is a node of /dev/null's
device made there (as root), never /dev/null itself, so a regression cannot break the machine."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Sandbox, provider

from failover_cli import fsutil
from failover_cli.errors import StateError
from failover_cli.sim import Behavior
from failover_cli.state import ProviderDelta, StateDelta
from failover_cli.store import JsonFileStore

ANSWER = "An answer from the simulator."
VICTIM = b"the file a planted link points at\n"


def one_provider(requests: int = 1) -> StateDelta:
    return StateDelta(providers={"p": ProviderDelta(requests=requests)})


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    yield path
    server.close()


def make(kind: str, path: Path, victim: Path) -> None:
    """Put ``kind`` at ``path`` (a socket is made by the fixture and moved here)."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink":
        path.symlink_to(victim)
    elif kind == "dangling symlink":
        path.symlink_to(victim.with_name("created-through-the-link"))
    elif kind == "directory":
        path.mkdir()
        (path / "inside").write_bytes(b"x")


KINDS = ["fifo", "symlink", "dangling symlink", "directory"]


def fingerprint(path: Path) -> tuple[int, int, int, bytes | None]:
    """What must not change: the type, inode and device number, and a link's target."""
    st = os.lstat(path)
    target = os.readlink(path).encode() if stat.S_ISLNK(st.st_mode) else None
    return stat.S_IFMT(st.st_mode), st.st_ino, st.st_rdev, target


def assert_untouched(path: Path, before: tuple[int, int, int, bytes | None], victim: Path) -> None:
    assert fingerprint(path) == before
    assert victim.read_bytes() == VICTIM
    assert not victim.with_name("created-through-the-link").exists()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim"
    path.write_bytes(VICTIM)
    return path


# --- fsutil.atomic_write -------------------------------------------------------------------------


def test_atomic_write_replaces_a_regular_file_privately(tmp_path: Path) -> None:
    path = tmp_path / "out.prom"
    path.write_bytes(b"old")
    path.chmod(0o644)
    fsutil.atomic_write(path, b"new")
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    fsutil.atomic_write(str(path), b"public", mode=0o644)  # the umask does not narrow it
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.prom"]


@pytest.mark.parametrize("kind", KINDS)
def test_atomic_write_refuses_what_is_not_a_regular_file(
    tmp_path: Path, victim: Path, kind: str
) -> None:
    path = tmp_path / "target"
    make(kind, path, victim)
    before = fingerprint(path)
    with pytest.raises(fsutil.NotRegularFile) as caught:
        fsutil.atomic_write(path, b"replacement")
    assert isinstance(caught.value, OSError)
    assert caught.value.kind in ("a FIFO", "a symbolic link", "a directory")
    assert_untouched(path, before, victim)


def test_atomic_write_refuses_a_socket(unix_socket: Path, victim: Path) -> None:
    before = fingerprint(unix_socket)
    with pytest.raises(fsutil.NotRegularFile, match="a socket"):
        fsutil.atomic_write(unix_socket, b"replacement")
    assert_untouched(unix_socket, before, victim)


def null_device(directory: Path) -> Path:
    """A character device node for /dev/null's device (1, 3), made in ``directory``."""
    node = directory / "null"
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return node


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="only root can make device nodes")


@needs_root
def test_atomic_write_refuses_a_character_device_even_as_root(tmp_path: Path) -> None:
    dev = null_device(tmp_path)
    before = fingerprint(dev)
    assert stat.S_ISCHR(before[0])
    with pytest.raises(fsutil.NotRegularFile, match="a character device"):
        fsutil.atomic_write(dev, b"replacement")
    assert fingerprint(dev) == before
    assert os.listdir(tmp_path) == ["null"]


def test_atomic_write_temporary_names_are_unpredictable(tmp_path: Path) -> None:
    names = {fsutil._temp_name(str(tmp_path / "f")) for _ in range(50)}
    assert len(names) == 50
    assert all(len(Path(n).name) == len("f.") + 32 + len(".tmp") for n in names)


# --- fsutil.read_limited -------------------------------------------------------------------------


def test_read_limited_reads_up_to_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 1000)
    assert fsutil.read_limited(path, 1000) == b"x" * 1000
    with pytest.raises(fsutil.TooLarge):
        fsutil.read_limited(path, 999)
    with pytest.raises(FileNotFoundError):
        fsutil.read_limited(tmp_path / "missing", 10)


def test_read_limited_keeps_memory_flat_on_a_huge_file(tmp_path: Path) -> None:
    path = tmp_path / "huge"
    with open(path, "wb") as f:
        f.truncate(2**30)  # a sparse GiB
    tracemalloc.start()
    try:
        with pytest.raises(fsutil.TooLarge):
            fsutil.read_limited(path, 2**20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20


@pytest.mark.parametrize("kind", KINDS)
def test_read_limited_refuses_without_blocking(tmp_path: Path, victim: Path, kind: str) -> None:
    path = tmp_path / "target"
    make(kind, path, victim)
    before = fingerprint(path)
    with pytest.raises(fsutil.NotRegularFile):  # a FIFO with no writer: refused, not waited on
        fsutil.read_limited(path, 100)
    assert_untouched(path, before, victim)


# --- lock and append helpers ---------------------------------------------------------------------


@pytest.mark.parametrize("opener", [fsutil.open_lock_file, fsutil.open_append])
@pytest.mark.parametrize("kind", KINDS)
def test_lock_and_append_opens_never_follow_a_planted_link(
    tmp_path: Path, victim: Path, kind: str, opener: Callable[[Path], int]
) -> None:
    path = tmp_path / "state.json.lock"
    make(kind, path, victim)
    before = fingerprint(path)
    with pytest.raises(fsutil.NotRegularFile):
        opener(path)
    assert_untouched(path, before, victim)


def test_lock_file_is_created_private(tmp_path: Path) -> None:
    fd = fsutil.open_lock_file(tmp_path / "x.lock")
    os.close(fd)
    assert stat.S_IMODE((tmp_path / "x.lock").stat().st_mode) == 0o600


# --- the JSON state store ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_the_state_store_refuses_a_state_path_that_is_not_a_file(
    tmp_path: Path, victim: Path, kind: str
) -> None:
    path = tmp_path / "state.json"
    make(kind, path, victim)
    before = fingerprint(path)
    store = JsonFileStore(path, lock_timeout=0.1)
    for call in (lambda: store.load("c"), lambda: store.update("c", one_provider())):
        with pytest.raises(StateError) as caught:
            call()
        message = str(caught.value)
        assert "\n" not in message and "not a regular file" in message and str(path) in message
    with pytest.raises(StateError):
        store.reset("c")
    assert_untouched(path, before, victim)
    assert not path.with_name("state.json.lock").exists()  # nothing created beside it


@needs_root
def test_the_state_store_leaves_a_character_device_alone(tmp_path: Path) -> None:
    dev = null_device(tmp_path)
    before = fingerprint(dev)
    store = JsonFileStore(dev)
    with pytest.raises(StateError, match="null is a character device, not a regular file"):
        store.update("c", one_provider())
    with pytest.raises(StateError, match="a character device"):
        store.load("c")
    assert fingerprint(dev) == before
    assert os.listdir(tmp_path) == ["null"]  # no lock, no temp


@pytest.mark.parametrize("kind", KINDS)
def test_a_planted_lock_path_is_refused(tmp_path: Path, victim: Path, kind: str) -> None:
    path = tmp_path / "state.json"
    JsonFileStore(path).update("c", one_provider(5))
    lock = path.with_name("state.json.lock")
    lock.unlink()
    make(kind, lock, victim)
    before, state = fingerprint(lock), path.read_bytes()
    with pytest.raises(StateError, match=r"lock file .* not a regular file"):
        JsonFileStore(path).update("c", one_provider())
    assert_untouched(lock, before, victim)
    assert path.read_bytes() == state


def test_a_planted_journal_is_never_followed(tmp_path: Path, victim: Path) -> None:
    """A symbolic link at the journal path: an update that has to journal fails with one
    line; one that gets the lock warns once and carries on; the link's target is untouched."""
    path = tmp_path / "state.json"
    JsonFileStore(path).update("c", one_provider(5))
    journal = path.with_name("state.json.journal")
    journal.symlink_to(victim)
    before = fingerprint(journal)
    lock = fsutil.open_lock_file(path.with_name("state.json.lock"))
    try:
        import fcntl

        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(StateError, match=r"journal .* failed .*outcome not recorded"):
            JsonFileStore(path, lock_timeout=0.05).update("c", one_provider())
    finally:
        os.close(lock)
    warnings: list[str] = []
    store = JsonFileStore(path, on_warning=warnings.append)
    assert store.update("c", one_provider()).providers["p"].requests == 6
    assert store.update("c", one_provider()).providers["p"].requests == 7
    assert len(warnings) == 1 and "journal" in warnings[0] and "\n" not in warnings[0]
    assert_untouched(journal, before, victim)


def test_a_huge_state_file_is_moved_aside_unread(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with open(path, "wb") as f:
        f.truncate(2**30)
    warnings: list[str] = []
    store = JsonFileStore(path, on_warning=warnings.append)
    tracemalloc.start()
    try:
        assert store.load("c").providers == {}
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20
    (moved,) = tmp_path.glob("state.json.corrupt-*")
    assert moved.stat().st_size == 2**30
    assert len(warnings) == 1 and "larger than" in warnings[0]
    assert store.update("c", one_provider()).providers["p"].requests == 1


# --- the command line ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "symlink", "directory", "device"])
def test_ask_with_a_hostile_state_path_answers_and_leaves_it_alone(
    sandbox: Sandbox, sim, victim: Path, kind: str
) -> None:
    if kind == "device":
        if os.geteuid() != 0:
            pytest.skip("only root can make device nodes")
        state = null_device(sandbox.root)
    else:
        state = sandbox.root / "state.json"
        make(kind, state, victim)
    before = fingerprint(state)
    sandbox.config(provider("gpt", sim("openai", Behavior(text=ANSWER))))
    proc = sandbox.run("ask", "--state", str(state), "hi", timeout=30)  # a FIFO: no hang
    assert (proc.returncode, proc.stdout) == (0, ANSWER + "\n"), proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and "not a regular file" in warnings[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert fingerprint(state) == before
    assert victim.read_bytes() == VICTIM


def test_a_fifo_state_path_does_not_hang_a_reader(tmp_path: Path) -> None:
    """In a child process with a deadline: a hang fails the test instead of stalling it."""
    path = tmp_path / "state.json"
    os.mkfifo(path)
    code = (
        "import sys\nfrom failover_cli.store import JsonFileStore\n"
        "from failover_cli.errors import StateError\n"
        "try:\n    JsonFileStore(sys.argv[1]).load('c')\n"
        "except StateError as exc:\n    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=30
    )
    assert done.stdout == f"state file {path} is a FIFO, not a regular file: not using it\n"
    assert stat.S_ISFIFO(os.lstat(path).st_mode)
