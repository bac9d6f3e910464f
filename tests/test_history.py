"""The history database in-process: what an entry keeps, search and filters, pruning, the
file's safety (mode, WAL, links, FIFOs, locks) and the turns a continued conversation sends."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from failover_cli import history
from failover_cli.cli.exits import BadOption
from failover_cli.cli.logs import parse_since
from failover_cli.config import LogConfig
from failover_cli.history import Entry, History, HistoryError, enabled, messages_of, result_fields
from failover_cli.types import Attempt, ErrorClass, RouteResult, Segment, Usage

T0 = 1_800_000_000.0


def add(h: History, prompt: str = "hello", answer: str = "hi", **kw) -> int:
    fields = {"cid": "c1", "system": None, "provider": "gpt", "model": "m", "at": T0, **kw}
    return h.record(prompt=prompt, answer=answer, **fields)


@pytest.fixture
def db(tmp_path: Path) -> History:
    h = History(tmp_path / "data" / "history.db")
    yield h
    h.close()


def test_an_entry_keeps_the_attempts_segments_and_usage_of_its_result(db: History) -> None:
    result = RouteResult(
        text="Claude began, GPT ended.",
        provider="gpt",
        model="gpt-model",
        usage=Usage(12, 30),
        cost=0.00042,
        latency_ms=123.4567,
        ttft_ms=45.6,
        attempts=(
            Attempt("claude", "failed", ErrorClass.TRANSIENT, 503, "overloaded", 12.5),
            Attempt("gpt", "ok", duration_ms=100.0),
        ),
        segments=(
            Segment("claude", "c-model", "Claude began, "),
            Segment("gpt", "g", "GPT ended."),
        ),
        finish_reason="stop",
    )
    entry_id = db.record(cid="c9", prompt="q", system="be brief", **result_fields(result))
    e = db.get(entry_id)
    assert e is not None
    assert (e.answer, e.provider, e.model, e.system) == (
        result.text,
        "gpt",
        "gpt-model",
        "be brief",
    )
    assert (e.input_tokens, e.output_tokens, e.cost_usd, e.latency_ms) == (12, 30, 0.00042, 123.457)
    assert [(a["provider"], a["outcome"], a["class"], a["status"]) for a in e.attempts] == [
        ("claude", "failed", "transient", 503),
        ("gpt", "ok", None, None),
    ]
    assert e.attempts[0]["duration_ms"] == 12.5
    assert e.segments == [
        {"provider": "claude", "model": "c-model", "chars": 14},
        {"provider": "gpt", "model": "g", "chars": 10},
    ]
    assert db.get(entry_id + 1) is None


def test_full_text_search_needs_every_word_and_takes_any_input(db: History) -> None:
    add(db, "circuit breakers explained", "they open")
    add(db, "retry budgets", "back off", system="talk about circuits")
    add(db, "nothing here", "the breaker answer")
    assert db.fts
    assert [e.prompt for e in db.entries(query="breakers")] == ["circuit breakers explained"]
    assert [e.prompt for e in db.entries(query="breaker")] == ["nothing here"]  # words, not stems
    assert [e.prompt for e in db.entries(query="circuits")] == ["retry budgets"]  # system text
    assert [e.prompt for e in db.entries(query="circuit open")] == ["circuit breakers explained"]
    for hostile in ['"', "AND OR NOT (", "*", "a:b", "NEAR(x y", "'; DROP TABLE entries; --"]:
        assert db.entries(query=hostile) == []
    assert len(db.entries()) == 3


def test_filters_by_provider_seam_time_and_conversation(db: History) -> None:
    add(db, "one", provider="claude", at=T0, cid="a")
    add(db, "two", provider="gpt", at=T0 + 10, cid="b",
        segments=[{"provider": "claude", "model": "c", "chars": 3},
                  {"provider": "gpt", "model": "g", "chars": 4}])  # fmt: skip
    add(db, "three", provider="gpt", at=T0 + 20, cid="b")
    assert [e.prompt for e in db.entries()] == ["three", "two", "one"]  # newest first
    assert [e.prompt for e in db.entries(count=2)] == ["three", "two"]
    assert [e.prompt for e in db.entries(providers=["claude"])] == ["two", "one"]
    assert [e.prompt for e in db.entries(providers=["gemini", "gpt"])] == ["three", "two"]
    assert [e.prompt for e in db.entries(since=T0 + 10)] == ["three", "two"]
    assert [e.prompt for e in db.entries(cid="a")] == ["one"]
    assert db.last_cid() == "b"
    assert [e.prompt for e in db.conversation("b")] == ["two", "three"]  # oldest first
    assert [e.prompt for e in db.conversation("b", limit=1)] == ["three"]  # the most recent


def test_pruning_keeps_the_newest_entries(tmp_path: Path) -> None:
    with History(tmp_path / "h.db", LogConfig(max_entries=3)) as h:
        for i in range(7):
            add(h, f"prompt {i}")
        assert [e.prompt for e in h.entries()] == ["prompt 6", "prompt 5", "prompt 4"]
        assert h.entries(query="prompt") == h.entries()  # the index is pruned with them


def test_pruning_keeps_the_database_under_its_size_bound(tmp_path: Path) -> None:
    with History(tmp_path / "h.db", LogConfig(max_entries=10_000, max_mb=0.25)) as h:
        for i in range(40):
            add(h, f"prompt {i}", "x" * 20_000)
        kept = h.entries(count=100)
        assert 0 < len(kept) < 40 and kept[0].prompt == "prompt 39"
        assert h._used_bytes() <= 0.25 * 1024 * 1024


def test_long_texts_are_cut_and_marked(db: History, monkeypatch) -> None:
    monkeypatch.setattr(history, "MAX_TEXT", 10)
    e = db.get(add(db, "p" * 50, "a" * 5))
    assert e is not None and e.prompt == "p" * 10 and e.answer == "a" * 5 and e.truncated


def test_the_file_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "history.db"
    old = os.umask(0)
    try:
        with History(path) as h:
            add(h)
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
            assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
            for side in ("-wal", "-shm"):
                assert stat.S_IMODE(os.stat(f"{path}{side}").st_mode) == 0o600
    finally:
        os.umask(old)
    other = sqlite3.connect(path)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other.close()


def test_a_symbolic_link_at_the_path_is_refused_and_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    link = tmp_path / "history.db"
    link.symlink_to(victim)
    with pytest.raises(HistoryError, match="symbolic link"):
        History(link)
    assert victim.read_bytes() == b"precious"
    dangling = tmp_path / "dangling.db"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(HistoryError, match="symbolic link"):
        History(dangling)
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("side", ["-wal", "-shm", "-journal"])
def test_a_link_or_fifo_planted_beside_the_database_is_refused(tmp_path: Path, side) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    beside = tmp_path / f"history.db{side}"
    beside.symlink_to(victim)
    with pytest.raises(HistoryError, match="symbolic link"):
        History(tmp_path / "history.db")
    assert victim.read_bytes() == b"precious"
    assert not (tmp_path / "history.db").exists()  # refused before anything is created
    beside.unlink()
    os.mkfifo(beside)
    with pytest.raises(HistoryError, match="FIFO"):
        History(tmp_path / "history.db")


def test_a_file_replaced_before_sqlite_opens_it_is_refused(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "history.db"
    planted = tmp_path / "planted.db"
    real_connect = sqlite3.connect

    def swapped(*args, **kwargs):
        planted.write_bytes(b"")
        os.replace(planted, path)  # between the check and SQLite's open
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", swapped)
    with pytest.raises(HistoryError, match="replaced while being opened"):
        History(path)
    assert path.read_bytes() == b""  # nothing was written to the planted file


def test_a_fifo_at_the_path_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "history.db"
    os.mkfifo(fifo)
    with pytest.raises(HistoryError, match="FIFO"):
        History(fifo)


def test_a_locked_database_fails_the_write_quickly_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    History(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with History(path) as h:
            with pytest.raises(HistoryError, match="locked") as caught:
                add(h)
            assert "\n" not in str(caught.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_damaged_file_is_an_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(HistoryError), History(path) as h:
        add(h)


def test_recording_can_be_turned_off_three_ways() -> None:
    on, off = LogConfig(), LogConfig(enabled=False)
    assert enabled(on, env={})
    assert not enabled(on, no_log=True, env={})
    assert not enabled(off, env={})
    for value in ("0", "false", "OFF", "no"):
        assert not enabled(on, env={"FAILOVER_LOG": value})
    assert enabled(on, env={"FAILOVER_LOG": "1"})


def test_earlier_turns_become_messages_and_attachments_a_note() -> None:
    def entry(prompt: str, answer: str, **kw) -> Entry:
        return Entry(1, "c", T0, prompt, None, answer, "gpt", "m", **kw)

    turns = [
        entry("look", "a red square", attachments=[{"name": "a.png", "sha256": "ab"}]),
        entry("silent", ""),  # an empty answer is left out, with its prompt
        entry("and then?", "nothing more"),
    ]
    assert messages_of(turns) == [
        {"role": "user", "content": "look\n\n[attached earlier, not sent again: a.png]"},
        {"role": "assistant", "content": "a red square"},
        {"role": "user", "content": "and then?"},
        {"role": "assistant", "content": "nothing more"},
    ]


def test_since_reads_ages_and_dates() -> None:
    assert parse_since("30m", T0) == T0 - 1800
    assert parse_since("2d", T0) == T0 - 2 * 86400
    assert parse_since("1.5h", T0) == T0 - 5400
    assert parse_since("2026-01-31", T0) < T0
    for bad in ("yesterday", "-1d", "1y", "", "9" * 400 + "d"):
        with pytest.raises(BadOption):
            parse_since(bad, T0)


def test_a_schema_1_database_gains_the_error_column_and_keeps_its_entries(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    with History(path) as h:
        add(h, prompt="kept")
    raw = sqlite3.connect(path)
    raw.execute("ALTER TABLE entries DROP COLUMN error")  # as schema 1 made it
    raw.execute("PRAGMA user_version = 1")
    raw.commit()
    raw.close()
    with History(path) as h:
        (old,) = h.entries()
        assert (old.prompt, old.error) == ("kept", None)
        add(h, prompt="failed", answer="", provider="", model="", error="no provider")
        assert [e.error for e in h.entries()] == ["no provider", None]
        assert h.last_cid() == "c1" and [e.prompt for e in h.conversation("c1")] == ["kept"]
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == history.SCHEMA_VERSION == 2
    check.close()


def test_a_damaged_row_reads_back_without_crashing_a_reader(db: History) -> None:
    add(db, prompt="fine")
    raw = sqlite3.connect(db.path)
    raw.execute(
        "UPDATE entries SET attachments = '[1, \"x\"]', segments = ?, attempts = '{}',"
        " cost_usd = 'lots', at = 'yesterday'",
        ["[" * 5000 + "]" * 5000],
    )
    raw.commit()
    raw.close()
    (e,) = db.entries()
    assert (e.attachments, e.segments, e.attempts) == ([], [], [])
    assert e.cost_usd is None and e.at == 0.0
    assert e.user_turn() == "fine"
