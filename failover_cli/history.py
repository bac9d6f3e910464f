"""The history database: every answered ``ask`` and ``chat`` turn, searchable, and the
conversations they belong to.

One SQLite file (``sqlite3`` from the standard library, imported only when the history is
opened) in WAL mode, mode 0600 in a 0700 directory. It is created with ``O_CREAT | O_EXCL |
O_NOFOLLOW`` before SQLite opens it; a symbolic link, FIFO, device or anything but a regular
file at its path is refused (:class:`HistoryError`), never opened. Each entry holds the
prompt, system prompt and answer (each capped at :data:`MAX_TEXT` characters, ``truncated``
says so), attachments by name, type, size and SHA-256 (never their bytes), the provider and
model, the segments (who wrote which stretch of the answer), every attempt with its class and
duration, tokens, cost, latency, the configuration file and chain. Never a key, never request
headers. Old entries are pruned oldest first beyond ``max_entries`` or ``max_mb``.

The database is written without fsync (``PRAGMA synchronous = OFF``): a synced commit, and
the checkpoint SQLite runs when the last connection closes, cost several milliseconds on
every ``ask`` (see bench/README.md), more than the whole recording may. A crash of failover
loses nothing; a crash of the operating system or a power cut can lose the latest entries or,
at worst, damage the file, which then gives a warning until it is moved aside.

``prompt``, ``system`` and ``answer`` are indexed with FTS5 for :meth:`History.entries`'
``query`` (a substring search where this SQLite lacks FTS5).
"""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .fsutil import NotRegularFile, check_regular, check_unchanged, ensure_regular

if TYPE_CHECKING:
    import sqlite3

    from .config import Config, LogConfig
    from .types import RouteResult

__all__ = [
    "MAX_TEXT",
    "MAX_TURNS",
    "Entry",
    "History",
    "HistoryError",
    "enabled",
    "history_path",
    "messages_of",
    "new_cid",
    "result_fields",
]

_MAX_ERROR = 4096  # characters of a failure's reason kept
MAX_TEXT = 1 << 20  # characters kept of a prompt, system prompt or answer
MAX_TURNS = 200  # earlier turns sent when a conversation is continued (the most recent)
MAX_QUERY = 1000  # characters of a search
BUSY_TIMEOUT = 0.05  # seconds to wait for another writer before giving up with a warning
SCHEMA_VERSION = 2  # 2: entries.error (requests no provider answered)
_OFF = ("0", "false", "no", "off")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS entries (
        id INTEGER PRIMARY KEY,
        cid TEXT NOT NULL,
        at REAL NOT NULL,
        prompt TEXT NOT NULL,
        system TEXT,
        answer TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        input_tokens INTEGER,
        output_tokens INTEGER,
        cost_usd REAL,
        latency_ms REAL,
        ttft_ms REAL,
        finish_reason TEXT,
        config TEXT,
        chain TEXT,
        attachments TEXT NOT NULL DEFAULT '[]',
        segments TEXT NOT NULL DEFAULT '[]',
        attempts TEXT NOT NULL DEFAULT '[]',
        truncated INTEGER NOT NULL DEFAULT 0,
        error TEXT)""",
    "CREATE INDEX IF NOT EXISTS entries_cid ON entries (cid, id)",
    "CREATE INDEX IF NOT EXISTS entries_at ON entries (at)",
)
_FTS = (
    """CREATE VIRTUAL TABLE IF NOT EXISTS entries_fts USING fts5(
        prompt, system, answer, content='entries', content_rowid='id')""",
    """CREATE TRIGGER IF NOT EXISTS entries_ai AFTER INSERT ON entries BEGIN
        INSERT INTO entries_fts (rowid, prompt, system, answer)
        VALUES (new.id, new.prompt, new.system, new.answer);
    END""",
    """CREATE TRIGGER IF NOT EXISTS entries_ad AFTER DELETE ON entries BEGIN
        INSERT INTO entries_fts (entries_fts, rowid, prompt, system, answer)
        VALUES ('delete', old.id, old.prompt, old.system, old.answer);
    END""",
)
_COLUMNS = (
    "id", "cid", "at", "prompt", "system", "answer", "provider", "model", "input_tokens",
    "output_tokens", "cost_usd", "latency_ms", "ttft_ms", "finish_reason", "config", "chain",
    "attachments", "segments", "attempts", "truncated", "error",
)  # fmt: skip
_JSON_COLUMNS = ("attachments", "segments", "attempts")
_NUMBER_COLUMNS = (
    "at", "input_tokens", "output_tokens", "cost_usd", "latency_ms", "ttft_ms",
)  # fmt: skip


class HistoryError(Exception):
    """The history cannot be read or written (locked, unwritable, not a regular file,
    damaged); the message is one line fit for a warning."""


def enabled(log: LogConfig, *, no_log: bool = False, env: Mapping[str, str] | None = None) -> bool:
    """Whether this call is recorded: not ``--no-log``, not ``FAILOVER_LOG=0`` (or false, no,
    off), not ``log: false`` in the configuration."""
    env = os.environ if env is None else env
    if no_log or env.get("FAILOVER_LOG", "").strip().lower() in _OFF:
        return False
    return log.enabled


def history_path(log: LogConfig) -> Path:
    """``log.path`` (``~`` expanded), else ``history.db`` in the user data directory."""
    if log.path:
        return Path(os.path.expanduser(log.path))
    from .paths import data_dir

    return data_dir() / "history.db"


def new_cid() -> str:
    """A new conversation id: sortable by time, unguessable, 16 hex digits."""
    return f"{int(time.time()) & 0xFFFFFFFF:08x}{os.urandom(4).hex()}"


def _cap(text: str | None) -> tuple[str | None, bool]:
    if text is None or len(text) <= MAX_TEXT:
        return text, False
    return text[:MAX_TEXT], True


class Entry:
    """One recorded answer (a row of the database), JSON-ready through :meth:`to_dict`. A
    plain class: a dataclass of this many fields costs a millisecond to build at import, on
    the path of every ``ask``."""

    __slots__ = _COLUMNS

    id: int
    cid: str
    at: float
    prompt: str
    system: str | None
    answer: str
    provider: str
    model: str
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    latency_ms: float | None
    ttft_ms: float | None
    finish_reason: str | None
    config: str | None
    chain: str | None
    attachments: list[dict[str, Any]]
    segments: list[dict[str, Any]]
    attempts: list[dict[str, Any]]
    truncated: bool
    error: str | None  # why no provider answered (the answer is empty), or None

    def __init__(
        self, id: int, cid: str, at: float, prompt: str, system: str | None, answer: str,
        provider: str, model: str, **rest: Any,
    ) -> None:  # fmt: skip
        unknown = set(rest) - set(_COLUMNS)
        if unknown:
            raise TypeError(f"Entry(): unknown fields {sorted(unknown)}")
        self.id, self.cid, self.at, self.prompt = id, cid, at, prompt
        self.system, self.answer, self.provider, self.model = system, answer, provider, model
        for name in _COLUMNS[8:]:
            default: Any = [] if name in _JSON_COLUMNS else (False if name == "truncated" else None)
            setattr(self, name, rest.get(name, default))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Entry) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Entry(id={self.id}, cid={self.cid!r}, provider={self.provider!r})"

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Entry:
        values = dict(zip(_COLUMNS, row, strict=True))
        for name in ("cid", "prompt", "answer", "provider", "model"):  # whatever is stored
            value = values[name]
            values[name] = "" if value is None else value if isinstance(value, str) else str(value)
        if values["system"] is not None and not isinstance(values["system"], str):
            values["system"] = str(values["system"])
        for name in _JSON_COLUMNS:  # a damaged or planted row must not crash a reader
            raw = values[name]
            try:
                parsed = json.loads(raw) if isinstance(raw, str) and len(raw) <= MAX_TEXT else []
            except (ValueError, RecursionError):
                parsed = []
            items = parsed if isinstance(parsed, list) else []
            values[name] = [item for item in items if isinstance(item, dict)]
        for name in _NUMBER_COLUMNS:
            value = values[name]
            if isinstance(value, bool) or not isinstance(value, int | float):
                values[name] = None
        if values["at"] is None:
            values["at"] = 0.0
        values["truncated"] = bool(values["truncated"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _COLUMNS}

    def user_turn(self) -> str:
        """The prompt as sent again when the conversation continues: attachments are not
        re-sent, a note names them."""
        if not self.attachments:
            return self.prompt
        names = ", ".join(str(a.get("name", "?")) for a in self.attachments)
        return f"{self.prompt}\n\n[attached earlier, not sent again: {names}]"


def failure_fields(exc: Exception) -> dict[str, Any]:
    """What :meth:`History.record` stores of a request no provider answered: why, and every
    attempt (``exc`` is a RoutingError, or anything with a one-line message)."""
    attempts = getattr(exc, "attempts", ())
    return {
        "answer": "",
        "provider": "",
        "model": "",
        "error": str(exc).splitlines()[0][:_MAX_ERROR] if str(exc) else type(exc).__name__,
        "attempts": [{**a.to_dict(), "reason": a.reason} for a in attempts],
    }


def result_fields(result: RouteResult) -> dict[str, Any]:
    """What :meth:`History.record` stores of a RouteResult."""
    return {
        "answer": result.text,
        "provider": result.provider,
        "model": result.model,
        "input_tokens": result.usage.input_tokens,
        "output_tokens": result.usage.output_tokens,
        "cost_usd": result.cost,
        "latency_ms": round(result.latency_ms, 3),
        "ttft_ms": None if result.ttft_ms is None else round(result.ttft_ms, 3),
        "finish_reason": result.finish_reason,
        "segments": [
            {"provider": s.provider, "model": s.model, "chars": len(s.text)}
            for s in result.segments
        ],
        "attempts": [{**a.to_dict(), "reason": a.reason} for a in result.attempts],
    }


def _add_error_column(db: sqlite3.Connection) -> None:
    """Schema 1 to 2: the ``error`` column, in one transaction (another process may race)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        if db.execute("PRAGMA user_version").fetchone()[0] == 1:
            db.execute("ALTER TABLE entries ADD COLUMN error TEXT")
            db.execute("PRAGMA user_version = 2")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


class History:
    """An open history database. Every method raises :class:`HistoryError` on failure."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        log: LogConfig | None = None,
        *,
        any_thread: bool = False,
    ) -> None:
        """Open (creating if missing) the database at ``path``; ``log`` sets the bounds.
        With ``any_thread`` it may be used from another thread than the one that opened it,
        one thread at a time."""
        from .config import LogConfig

        self.path = os.fspath(path)
        self.log = log or LogConfig()
        self._fts: bool | None = None
        self._db = self._open(any_thread)

    # --- opening ----------------------------------------------------------------------------

    def _open(self, any_thread: bool) -> sqlite3.Connection:
        import sqlite3

        try:
            before = _prepare(self.path)
            db = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT,
                isolation_level=None,
                check_same_thread=not any_thread,
            )
        except (OSError, sqlite3.Error) as exc:
            raise HistoryError(_describe(self.path, exc)) from None
        try:
            check_unchanged(self.path, before)  # not replaced since _prepare looked
            db.execute("PRAGMA synchronous = OFF")  # no fsync: see the module docstring
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                self._create(db)
            elif version == 1:
                _add_error_column(db)
            elif version != SCHEMA_VERSION:
                raise HistoryError(f"{self.path}: unknown history format {version}")
        except (OSError, sqlite3.Error) as exc:
            db.close()
            raise HistoryError(_describe(self.path, exc)) from None
        except BaseException:
            db.close()
            raise
        return db

    def _create(self, db: sqlite3.Connection) -> None:
        import sqlite3

        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise HistoryError(f"{self.path}: cannot use WAL mode ({mode})")
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("PRAGMA user_version").fetchone()[0] == 0:  # not done meanwhile
                for statement in _SCHEMA:
                    db.execute(statement)
                try:
                    db.execute(_FTS[0])
                except sqlite3.OperationalError:  # built without FTS5: substring search
                    pass
                else:
                    for statement in _FTS[1:]:
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    @property
    def fts(self) -> bool:
        """Whether the full-text index exists (looked up when first needed: a search)."""
        if self._fts is None:
            found = self._query(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'entries_fts'", []
            )
            self._fts = bool(found)
        return self._fts

    def close(self) -> None:
        """Close the database (a WAL checkpoint may run)."""
        import sqlite3

        try:
            self._db.close()
        except sqlite3.Error as exc:
            raise HistoryError(_describe(self.path, exc)) from None

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing ----------------------------------------------------------------------------

    def record(
        self,
        *,
        cid: str,
        prompt: str,
        system: str | None,
        answer: str,
        provider: str,
        model: str,
        config: Config | None = None,
        attachments: Sequence[Mapping[str, Any]] = (),
        at: float | None = None,
        **extra: Any,
    ) -> int:
        """Store one answered request (``extra``: the other :class:`Entry` fields, e.g. from
        :func:`result_fields`); prune beyond the bounds; return the new entry's id."""
        import sqlite3

        prompt_c, cut_p = _cap(prompt)
        system_c, cut_s = _cap(system)
        answer_c, cut_a = _cap(answer)
        values: dict[str, Any] = {
            "cid": cid,
            "at": time.time() if at is None else at,
            "prompt": prompt_c,
            "system": system_c,
            "answer": answer_c,
            "provider": provider,
            "model": model,
            "config": config.source if config is not None else None,
            "chain": config.chain if config is not None else None,
            "attachments": list(attachments),
            "truncated": int(cut_p or cut_s or cut_a),
        }
        for name, value in extra.items():
            if name not in _COLUMNS or name in values or name == "id":
                raise TypeError(f"record(): unknown field {name!r}")
            values[name] = value
        for name in _JSON_COLUMNS:
            values[name] = json.dumps(values.get(name, []), ensure_ascii=False)
        names = ", ".join(values)
        marks = ", ".join("?" * len(values))
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    f"INSERT INTO entries ({names}) VALUES ({marks})", list(values.values())
                )
                new_id = int(cur.lastrowid or 0)
                self._prune(new_id)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise HistoryError(_describe(self.path, exc)) from None
        return new_id

    def _prune(self, newest: int) -> None:
        """Delete the oldest entries beyond ``max_entries``, then beyond ``max_mb``."""
        keep = max(1, self.log.max_entries)
        self._db.execute("DELETE FROM entries WHERE id <= ?", (newest - keep,))
        limit = int(self.log.max_mb * 1024 * 1024)
        for _ in range(20):  # each pass drops a tenth of what is left
            if self._used_bytes() <= limit:
                return
            count = self._db.execute("SELECT count(*) FROM entries").fetchone()[0]
            if count <= 1:
                return
            self._db.execute(
                "DELETE FROM entries WHERE id IN (SELECT id FROM entries ORDER BY id LIMIT ?)",
                (max(1, count // 10),),
            )

    def _used_bytes(self) -> int:
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        size = self._db.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    # --- reading ----------------------------------------------------------------------------

    def entries(
        self,
        *,
        count: int = 20,
        query: str | None = None,
        providers: Sequence[str] | None = None,
        since: float | None = None,
        cid: str | None = None,
    ) -> list[Entry]:
        """The newest ``count`` entries, newest first: with ``query`` only those whose prompt,
        system prompt or answer hold each of its words (FTS5), with ``providers`` only those
        one of them answered or helped answer, with ``since`` only those recorded at or after
        that Unix time, with ``cid`` only that conversation's."""
        where: list[str] = []
        args: list[Any] = []
        if query is not None and query.strip():
            if self.fts:
                where.append("id IN (SELECT rowid FROM entries_fts WHERE entries_fts MATCH ?)")
                args.append(_fts_query(query[:MAX_QUERY]))
            else:
                for word in query[:MAX_QUERY].split():
                    where.append("(prompt || ' ' || coalesce(system, '') || ' ' || answer) LIKE ?")
                    args.append(f"%{word}%")
        if providers:
            names = list(providers)
            marks = ", ".join("?" * len(names))
            where.append(
                f"(provider IN ({marks}) OR EXISTS (SELECT 1 FROM json_each(entries.segments) "
                f"WHERE json_extract(value, '$.provider') IN ({marks})))"
            )
            args += names + names
        if since is not None:
            where.append("at >= ?")
            args.append(since)
        if cid is not None:
            where.append("cid = ?")
            args.append(cid)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        args.append(max(0, count))
        return self._select(f"{clause} ORDER BY id DESC LIMIT ?", args)

    def get(self, entry_id: int) -> Entry | None:
        """The entry with this id, or None."""
        found = self._select("WHERE id = ?", [entry_id])
        return found[0] if found else None

    def last_cid(self) -> str | None:
        """The conversation of the newest answered entry, or None when there is none."""
        row = self._query(
            "SELECT cid FROM entries WHERE error IS NULL ORDER BY id DESC LIMIT 1", []
        )
        return str(row[0][0]) if row else None

    def conversation(self, cid: str, limit: int = MAX_TURNS) -> list[Entry]:
        """The most recent ``limit`` answered entries of conversation ``cid``, oldest first
        (a turn no provider answered is not part of what the conversation sends again)."""
        found = self._select(
            "WHERE cid = ? AND error IS NULL ORDER BY id DESC LIMIT ?", [cid, limit]
        )
        return found[::-1]

    def _select(self, rest: str, args: Sequence[Any]) -> list[Entry]:
        rows = self._query(f"SELECT {', '.join(_COLUMNS)} FROM entries {rest}", args)
        return [Entry.from_row(r) for r in rows]

    def _query(self, sql: str, args: Sequence[Any]) -> list[Any]:
        import sqlite3

        try:
            return self._db.execute(sql, list(args)).fetchall()
        except sqlite3.Error as exc:
            raise HistoryError(_describe(self.path, exc)) from None


def newest_within(turns: Sequence[Entry], max_chars: int) -> list[Entry]:
    """The newest of ``turns`` (oldest first) whose prompts and answers total at most
    ``max_chars`` characters; the newest turn is always kept."""
    total = 0
    for start in range(len(turns) - 1, -1, -1):
        turn = turns[start]
        total += len(turn.prompt) + len(turn.answer)
        if total > max_chars and start < len(turns) - 1:
            return list(turns[start + 1 :])
    return list(turns)


def messages_of(turns: Sequence[Entry]) -> list[dict[str, str]]:
    """Earlier turns as OpenAI-shaped messages: each prompt, then its answer (a turn whose
    answer is empty is left out: some APIs refuse an empty assistant message)."""
    out: list[dict[str, str]] = []
    for turn in turns:
        if not turn.answer:
            continue
        out.append({"role": "user", "content": turn.user_turn()})
        out.append({"role": "assistant", "content": turn.answer})
    return out


def _fts_query(text: str) -> str:
    """``text`` as an FTS5 query of its words, each quoted (no operators: hostile input
    cannot form a syntax error)."""
    words = [w.replace('"', '""') for w in text.split()]
    return " ".join(f'"{w}"' for w in words) or '""'


# --- the file ---------------------------------------------------------------------------------


def _prepare(path: str) -> os.stat_result:
    """Make sure ``path`` is a regular file SQLite may open (see
    :func:`failover_cli.fsutil.ensure_regular`): created 0600 in a 0700 directory if
    missing, refused if it or a WAL, shared-memory or journal file beside it is a symbolic
    link or anything but a regular file. The files SQLite adds take the database's mode."""
    for suffix in ("-wal", "-shm", "-journal"):
        check_regular(path + suffix)  # a planted link or FIFO beside it is refused too
    return ensure_regular(path, mode=0o600, dir_mode=0o700)


def _describe(path: str, exc: BaseException) -> str:
    """One line on why the history at ``path`` is unusable."""
    if isinstance(exc, NotRegularFile):
        return f"{path}: refused, {exc.kind} is not a regular file"
    if isinstance(exc, OSError):
        reason = exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
        return f"{exc.filename or path}: {reason}"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{path}: {text}"
