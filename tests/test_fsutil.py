"""``fsutil.ensure_regular`` and ``fsutil.check_unchanged``: a file made ready for another
library to open is created exclusively with its mode, never through a link, and a
replacement before that library opens it is caught."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from failover_cli import fsutil


def test_a_missing_file_is_created_empty_with_exactly_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "f.db"
    old = os.umask(0o077)
    try:
        st = fsutil.ensure_regular(path, mode=0o640, dir_mode=0o700)
    finally:
        os.umask(old)
    assert path.read_bytes() == b""
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640  # the umask does not narrow it
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert (st.st_dev, st.st_ino) == (os.stat(path).st_dev, os.stat(path).st_ino)


def test_without_dir_mode_no_directory_is_made(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        fsutil.ensure_regular(tmp_path / "missing" / "f")
    assert not (tmp_path / "missing").exists()


def test_a_regular_file_already_there_is_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"kept")
    path.chmod(0o644)
    st = fsutil.ensure_regular(path)
    assert path.read_bytes() == b"kept" and stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert st.st_ino == os.stat(path).st_ino


@pytest.mark.parametrize("kind", ["symlink", "dangling symlink", "fifo", "directory"])
def test_anything_but_a_regular_file_is_refused_and_not_followed(tmp_path: Path, kind) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    path = tmp_path / "f"
    if kind == "symlink":
        path.symlink_to(victim)
    elif kind == "dangling symlink":
        path.symlink_to(tmp_path / "nowhere")
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    with pytest.raises(fsutil.NotRegularFile):
        fsutil.ensure_regular(path)
    assert victim.read_bytes() == b"precious" and not (tmp_path / "nowhere").exists()


def race(monkeypatch, plant) -> None:
    """The first look finds nothing; then ``plant`` runs, before the exclusive create."""
    real = fsutil.check_regular
    calls: list[str] = []

    def looked(path):
        found = real(path)
        if not calls:
            plant()
        calls.append(path)
        return found

    monkeypatch.setattr(fsutil, "check_regular", looked)


def test_a_link_planted_while_the_file_is_created_is_refused(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "f"
    race(monkeypatch, lambda: path.symlink_to(tmp_path / "nowhere"))
    with pytest.raises(fsutil.NotRegularFile, match="symbolic link"):
        fsutil.ensure_regular(path)
    assert path.is_symlink() and not (tmp_path / "nowhere").exists()


def test_a_file_made_meanwhile_by_another_process_is_used(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "f"
    race(monkeypatch, lambda: path.write_bytes(b"theirs"))
    st = fsutil.ensure_regular(path)
    assert path.read_bytes() == b"theirs" and st.st_ino == os.stat(path).st_ino


def test_check_unchanged_catches_a_replacement(tmp_path: Path) -> None:
    path = tmp_path / "f"
    before = fsutil.ensure_regular(path)
    fsutil.check_unchanged(path, before)  # the same file: nothing to say
    other = tmp_path / "other"
    other.write_bytes(b"")
    os.replace(other, path)
    with pytest.raises(fsutil.NotRegularFile, match="replaced while being opened"):
        fsutil.check_unchanged(path, before)
    path.unlink()
    path.symlink_to(tmp_path / "nowhere")
    with pytest.raises(fsutil.NotRegularFile, match="replaced while being opened"):
        fsutil.check_unchanged(path, os.lstat(path))  # even the same link is not a file
