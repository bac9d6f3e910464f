"""State in Redis, shared by failover processes on many machines.

Each provider of each chain is one key, ``{prefix}:{chain}:{provider}``, holding that
provider's :class:`~failover_cli.state.ProviderState` as JSON (with a ``"schema"`` field),
and ``{prefix}:{chain}:providers`` is the set of provider names (``%`` and ``:`` in names are
percent-escaped; a provider named ``providers`` is stored as ``%70roviders``).

A half-open probe lease is ``{prefix}:{chain}:lock:probe:{provider}``, taken with
``SET NX PX`` (in a script that also renews the holder's own and reports another's expiry).

``update`` is atomic on the server: it WATCHes the delta's provider keys, merges with
:func:`~failover_cli.state.merge_provider` and writes in MULTI/EXEC. A client that loses the
race queues on a short-lived writer lock (``{prefix}:{chain}:lock:writer``) before trying
again, so many writers of one chain take turns instead of colliding. The ``redis`` package
is optional (``failover[redis]``) and imported only when a Redis store is opened. Needs
Redis 6 or newer (sub-second BLPOP timeouts).
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from ..breaker import ProbeLease
from ..errors import StateError, redact
from ..state import (
    DECODE_ERRORS,
    SCHEMA_VERSION,
    ChainState,
    ForeignDocument,
    FutureSchema,
    ProviderState,
    StateDelta,
    merge_provider,
    schema_of,
)
from ._copy import detach
from ._encode import encode_provider

CONNECT_TIMEOUT = 1.0  # seconds to open a connection
SOCKET_TIMEOUT = 2.0  # seconds for any one reply
BUSY_LIMIT = 10.0  # seconds of lost optimistic transactions before an update gives up
QUEUE_FOR = 1.0  # seconds to queue on the writer lock at once after losing a race
WRITER_LOCK_TTL = 2.0  # seconds a writer may hold a chain's lock (it expires if the holder dies)
WAKE_WAIT = 0.05  # seconds a queued writer sleeps before trying the lock again anyway
MAX_VALUE = 16 * 2**20  # bytes in one stored provider; a larger value is unreadable
# Release the writer lock if still ours and wake one waiter (the list keeps at most one token).
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    redis.call('del', KEYS[1])
    redis.call('lpush', KEYS[2], 1)
    redis.call('ltrim', KEYS[2], 0, 0)
    redis.call('pexpire', KEYS[2], 5000)
end
"""
# Claim a probe lease with SET NX PX, renewing our own; answer [granted, holder, ms left].
_CLAIM = """
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return {1, ARGV[1], tonumber(ARGV[2])}
end
local holder = redis.call('get', KEYS[1])
if holder == ARGV[1] then
    redis.call('pexpire', KEYS[1], ARGV[2])
    return {1, holder, tonumber(ARGV[2])}
end
return {0, holder or '', redis.call('pttl', KEYS[1])}
"""
# End a probe lease if still ours.
_END = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    redis.call('del', KEYS[1])
end
"""
_INSTALL_ADVICE = "pip install 'failover[redis]'"


class RedisStore:
    """A :class:`~failover_cli.protocols.StateStore` in a Redis server.

    Raises :class:`StateError` at once if the server cannot be reached (the caller then
    warns and runs on memory). ``socket_timeout``: seconds any one reply may take;
    ``busy_limit``: seconds an update keeps retrying lost transactions before it gives up.
    """

    def __init__(
        self,
        url: str,
        *,
        on_warning: Callable[[str], None] | None = None,
        prefix: str = "failover",
        socket_timeout: float = SOCKET_TIMEOUT,
        busy_limit: float = BUSY_LIMIT,
    ) -> None:
        self.prefix = prefix
        self._busy_limit = busy_limit
        self.on_warning = on_warning
        self._where = _describe(url)
        self._secrets = _url_secrets(url)
        self._warned: set[str] = set()
        self._queue_until = 0.0  # monotonic time until which updates queue on the lock first
        redis = _import_redis()
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._watch_error: type[BaseException] = redis.WatchError
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        try:
            self._client = redis.Redis.from_url(
                url,
                socket_connect_timeout=CONNECT_TIMEOUT,
                socket_timeout=socket_timeout,
                retry=Retry(NoBackoff(), 0),  # fail fast: the caller falls back to memory
            )
            self._client.ping()
        except (*self._errors, ValueError) as exc:
            raise self._error("cannot connect to", exc) from None

    # --- StateStore --------------------------------------------------------------------------

    def load(self, chain: str) -> ChainState:
        try:
            names = sorted(_text(n) for n in self._client.smembers(self._set_key(chain)))
            values = self._client.mget([self._key(chain, n) for n in names]) if names else []
        except self._errors as exc:
            raise self._error("cannot read state from", exc) from None
        return ChainState(self._readable(chain, names, values))

    def update(self, chain: str, delta: StateDelta) -> ChainState:
        """Merge ``delta`` atomically on the server; return the chain's merged state."""
        if not delta.providers:
            return self.load(chain)
        try:
            merged, others, values = self._transact(chain, delta)
        except self._errors as exc:
            raise self._error("cannot record outcome in", exc) from None
        merged.update(self._readable(chain, others, values))
        return detach(ChainState(dict(sorted(merged.items()))))

    def reset(self, chain: str, providers: Sequence[str] | None = None) -> None:
        """Forget the chain (or only the named providers in it), atomically. Spend stays
        (a reset must not reopen a budget): such a provider keeps its spend alone."""
        set_key = self._set_key(chain)
        try:
            with self._client.pipeline(transaction=True) as pipe:
                for backoff in _backoffs(self._busy_limit):
                    try:
                        pipe.watch(set_key)  # a provider added meanwhile restarts the reset
                        names = (
                            [_text(n) for n in pipe.smembers(set_key)]
                            if providers is None
                            else list(providers)
                        )
                        keys = [self._key(chain, n) for n in names]
                        spends = self._spends(pipe, keys) if keys else {}
                        pipe.multi()
                        if names:
                            pipe.delete(*keys)
                            pipe.srem(set_key, *names)
                        for name, key in zip(names, keys, strict=True):
                            if spends.get(key):
                                pipe.set(key, _encode(ProviderState(spend=spends[key])))
                                pipe.sadd(set_key, name)
                        pipe.execute()
                        return
                    except self._watch_error:
                        time.sleep(backoff)
        except self._errors as exc:
            raise self._error("cannot reset state in", exc) from None
        raise StateError(f"redis state store at {self._where} too busy: state not reset")

    def claim_probe(
        self, chain: str, provider: str, owner: str, ttl: float, now: float
    ) -> ProbeLease:
        """Take the lease with ``SET NX PX`` on the server (expiry on the server's clock)."""
        ms = max(1, int(ttl * 1000))
        try:
            granted, holder, left = self._client.eval(
                _CLAIM, 1, self._probe_key(chain, provider), owner, ms
            )
        except self._errors as exc:
            raise self._error("cannot claim probe lease in", exc) from None
        left = int(left) if int(left) > 0 else 0  # -1/-2: gone since GET; none left
        return ProbeLease(bool(granted), _text(holder), now + left / 1000)

    def end_probe(self, chain: str, provider: str, owner: str) -> None:
        try:
            self._client.eval(_END, 1, self._probe_key(chain, provider), owner)
        except self._errors as exc:
            raise self._error("cannot end probe lease in", exc) from None

    def close(self) -> None:
        try:
            self._client.close()
        except self._errors:
            pass

    def _spends(self, pipe: Any, keys: list[str]) -> dict[str, dict[str, float]]:
        """The spend stored under each key (watched from now on: a charge landing meanwhile
        restarts the reset); unreadable values have none."""
        pipe.watch(*keys)
        out: dict[str, dict[str, float]] = {}
        for key, value in zip(keys, pipe.mget(keys), strict=True):
            if value is not None:
                try:
                    out[key] = _decode(value).spend
                except (_Unreadable, _FutureValue):
                    continue
        return out

    # --- the optimistic transaction ----------------------------------------------------------

    def _transact(self, chain: str, delta: StateDelta) -> _Written:
        """Merge ``delta`` in one WATCH/MULTI/EXEC transaction. If another client wins the
        race, queue on the chain's writer lock and retry until it goes through: many
        writers of one chain then take turns instead of repeating work that is thrown away."""
        names = sorted(delta.providers)
        keys = [self._key(chain, n) for n in names]
        with self._client.pipeline(transaction=True) as pipe:
            if time.monotonic() >= self._queue_until:
                written = self._attempt(pipe, chain, names, keys, delta)
                if written is not None:
                    return written
                self._queue_until = time.monotonic() + QUEUE_FOR  # contended: queue first
            with self._writer_lock(chain):
                for backoff in _backoffs(self._busy_limit):
                    written = self._attempt(pipe, chain, names, keys, delta)
                    if written is not None:
                        return written
                    time.sleep(backoff)  # lost to a client that did not need the lock
        raise StateError(f"redis state store at {self._where} too busy: outcome not recorded")

    def _attempt(
        self, pipe: Any, chain: str, names: list[str], keys: list[str], delta: StateDelta
    ) -> _Written | None:
        """One optimistic transaction in three round trips: WATCH; read the delta's keys and
        the chain's names; MULTI, write, read the chain's other providers, EXEC. ``None`` if
        a watched key changed in between."""
        set_key = self._set_key(chain)
        try:
            pipe.watch(*keys)
            reader = self._client.pipeline(transaction=False)  # reads need not be on pipe's
            reader.mget(keys)  # connection: WATCH catches any change after it was set
            reader.smembers(set_key)
            values, members = reader.execute()
            others = sorted(n for n in map(_text, members) if n not in delta.providers)
            merged: dict[str, ProviderState] = {}
            blobs: dict[str, bytes] = {}
            for name, key, value in zip(names, keys, values, strict=True):
                old, old_text = ProviderState(), None
                if value is not None:
                    try:
                        old, old_text = _decode(value), value
                    except _FutureValue as exc:
                        raise StateError(
                            f"redis key {key} is from a newer failover ({exc}); "
                            "not overwriting it: upgrade failover"
                        ) from None
                    except _Unreadable as exc:  # keep a copy beside it, start afresh
                        aside = f"{key}:corrupt-{_stamp()}"
                        blobs[aside] = value
                        self._warn_once(
                            f"moved:{key}",
                            f"redis key {key} was unreadable ({exc}); "
                            f"copied it to {aside} and started afresh",
                        )
                merged[name] = merge_provider(old, delta.providers[name], delta.history)
                blobs[key] = _encode(merged[name], old, old_text)
            pipe.multi()
            pipe.mset(blobs)
            pipe.sadd(set_key, *names)
            if others:
                pipe.mget([self._key(chain, n) for n in others])
            results = pipe.execute()
            return merged, others, results[2] if others else []
        except self._watch_error:
            return None
        finally:
            pipe.reset()

    @contextmanager
    def _writer_lock(self, chain: str) -> Iterator[None]:
        """A short-lived lock key (``SET NX PX``) that queues contending writers; a waiter
        sleeps in ``BLPOP`` on a wake-up list that each release pushes to. Only an aid
        against contention: the transaction stays correct without it, so a holder that died
        (its key expires) or a lock that could not be had in time does not block an update."""
        base = f"{self.prefix}:{_escape(chain)}:lock"  # raw ":" never ends a provider key
        key, wake = f"{base}:writer", f"{base}:wake"
        token = uuid.uuid4().hex
        held = False
        deadline = time.monotonic() + WRITER_LOCK_TTL
        while time.monotonic() < deadline:
            if self._client.set(key, token, nx=True, px=int(WRITER_LOCK_TTL * 1000)):
                held = True
                break
            self._client.blpop([wake], timeout=WAKE_WAIT)
        try:
            yield
        finally:
            if held:
                self._client.eval(_RELEASE, 2, key, wake, token)

    def _readable(
        self, chain: str, names: list[str], values: list[bytes | None]
    ) -> dict[str, ProviderState]:
        """Decode stored providers; skip (with one warning) any that cannot be used."""
        out: dict[str, ProviderState] = {}
        for name, value in zip(names, values, strict=True):
            if value is None:
                continue  # removed between SMEMBERS and MGET
            key = self._key(chain, name)
            try:
                out[name] = _decode(value)
            except _FutureValue as exc:
                self._warn_once(
                    key, f"redis key {key} is from a newer failover ({exc}); ignoring it"
                )
            except _Unreadable as exc:
                self._warn_once(key, f"redis key {key} is unreadable ({exc}); ignoring it")
        return out

    # --- names and messages ------------------------------------------------------------------

    def _key(self, chain: str, provider: str) -> str:
        name = _escape(provider)
        if name == "providers":  # that key is the set of names
            name = "%70roviders"
        return f"{self.prefix}:{_escape(chain)}:{name}"

    def _probe_key(self, chain: str, provider: str) -> str:
        return f"{self.prefix}:{_escape(chain)}:lock:probe:{_escape(provider)}"

    def _set_key(self, chain: str) -> str:
        return f"{self.prefix}:{_escape(chain)}:providers"

    def _error(self, what: str, exc: BaseException) -> StateError:
        detail = redact(_one_line(exc) or type(exc).__name__, self._secrets)
        return StateError(f"{what} redis state store at {self._where}: {detail}")

    def _warn_once(self, key: str, message: str) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        if self.on_warning is not None:
            self.on_warning(message)
        else:
            import logging

            logging.getLogger("failover.store").warning("%s", message)


def _backoffs(limit: float = BUSY_LIMIT) -> Iterator[float]:
    """Random pauses growing from 1 ms to 50 ms, for ``limit`` seconds."""
    deadline = time.monotonic() + limit
    ceiling = 0.001
    while time.monotonic() < deadline:
        yield random.uniform(0, ceiling)
        ceiling = min(ceiling * 2, 0.05)


# What a transaction wrote, and the chain's other providers as read in the same transaction.
_Written = tuple[dict[str, ProviderState], list[str], list[bytes | None]]


class _Unreadable(ValueError):
    """A stored value is not a provider state."""


class _FutureValue(ValueError):
    """A stored value was written by a newer failover."""


def _decode(value: bytes) -> ProviderState:
    if len(value) > MAX_VALUE:
        raise _Unreadable(f"larger than {MAX_VALUE >> 20} MiB")
    try:
        d = json.loads(value)
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
        if "schema" in d:  # values are written with one; a newer one is never overwritten
            schema_of(d)
        return ProviderState.from_dict(d)
    except FutureSchema as exc:
        raise _FutureValue(str(exc)) from None
    except (*DECODE_ERRORS, ForeignDocument, RecursionError) as exc:
        raise _Unreadable(_one_line(exc) or type(exc).__name__) from None


def _import_redis() -> Any:
    try:
        import redis
    except ImportError:
        raise StateError(
            f"the Redis state store needs the redis package: {_INSTALL_ADVICE}"
        ) from None
    return redis


def _encode(
    state: ProviderState, previous: ProviderState | None = None, text: bytes | None = None
) -> bytes:
    """The stored value: ``to_dict()`` plus ``"schema"``, reusing ``previous``'s ``text``."""
    return encode_provider(state, previous, text)[:-1] + b',"schema":%d}' % SCHEMA_VERSION


def _escape(name: str) -> str:
    """Keep ``:`` out of names so that chain and provider cannot run into each other."""
    return name.replace("%", "%25").replace(":", "%3A")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def _describe(url: str) -> str:
    """host:port/db of a Redis URL, without user name or password."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        port = parts.port or 6379
    except ValueError:
        return "<invalid URL>"
    return f"{host}:{port}{parts.path or ''}"


def _url_secrets(url: str) -> list[str | None]:
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    return [parts.password, parts.username]


def _one_line(exc: BaseException | str) -> str:
    return " ".join(str(exc).split())
