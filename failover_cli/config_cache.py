"""A cache of validated configurations, so a run whose ``providers.yaml`` has not changed
neither imports PyYAML (about 11 ms, a tenth of a one-shot ``failover ask``) nor parses it.

The cache is only ever a shortcut to what the YAML itself says, never a second source:

- An entry's key hashes the file's bytes, a fingerprint of everything else that shapes the
  result (failover's version, the defaults and the bounds) and the source of the code that
  validates it (:data:`CODE`, hashed once per process: far cheaper than importing PyYAML),
  so an entry can never be stale.
- Each entry carries an HMAC made with a per-user random secret (``secret`` in the cache
  directory, beside ``config/``: 0600, created exclusively), so an entry planted by someone
  who does not hold that secret, even under a key computed from public information, is
  rejected.
- The directories are made 0700 and are used only while owned by this user and writable by
  no one else; an entry or secret is used only if it is a regular file owned by this user that
  no one else may write (the secret: nor read).

One file per configuration path; anything rejected or unreadable is ignored silently (the
YAML is parsed again and the entry rewritten). Only valid configurations are cached: errors
are always reported from the YAML itself, with lines.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import json
import os
import stat
import types as _pytypes
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from .fsutil import atomic_write, create_exclusive, read_limited

FORMAT = 3
# The modules whose source decides what a configuration file turns into.
CODE = ("config.py", "types.py", "breaker.py", "retry.py", "scoring.py", "config_cache.py")
MAX_ENTRY = 1 << 20  # bytes in one entry
_SECRET_BYTES = 32
_MAC_CONTEXT = b"failover-config-cache\0"


@functools.cache
def code_digest() -> str:
    """A hash of the source of :data:`CODE`; random (so nothing matches) if unreadable."""
    h = hashlib.sha256()
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        for name in CODE:
            with open(os.path.join(here, name), "rb") as f:
                h.update(name.encode() + b"\0" + f.read() + b"\0")
    except OSError:
        return os.urandom(16).hex()
    return h.hexdigest()


def key(content: bytes, fingerprint: str) -> str:
    """The cache key of a file with ``content`` under ``fingerprint`` and this code."""
    head = f"{FORMAT}\0{fingerprint}\0{code_digest()}\0".encode()
    return hashlib.sha256(head + content).hexdigest()


def entry_path(cache_dir: Path, config_path: Path) -> Path:
    name = hashlib.sha256(os.fsencode(os.path.abspath(config_path))).hexdigest()[:32]
    return cache_dir / "config" / f"{name}.json"


def read(cache_dir: Path, config_path: Path, want: str, cls: type) -> Any:
    """The cached ``cls`` for ``config_path`` if a trusted entry has key ``want``; else None."""
    try:
        trusted = _trusted_dir(cache_dir) and _trusted_dir(cache_dir / "config")
        secret = trusted and _secret(cache_dir, create=False)
        if not secret:
            return None
        data = read_limited(
            entry_path(cache_dir, config_path), MAX_ENTRY, owner=_euid(), deny=0o022
        )
        mac, _, payload = data.partition(b"\n")
        if not hmac.compare_digest(mac, _mac(secret, payload)):
            return None
        entry = json.loads(payload)
        if entry["key"] != want:
            return None
        return decode(cls, entry["value"])
    except Exception:  # missing, unreadable, untrusted or from another version: parse again
        return None


def write(cache_dir: Path, config_path: Path, k: str, value: Any) -> None:
    """Store ``value`` (a dataclass) under key ``k``; failures are silent (it is a cache)."""
    try:
        trusted = _make_dir(cache_dir / "config") and _trusted_dir(cache_dir)
        secret = trusted and _secret(cache_dir, create=True)
        if not secret:
            return
        payload = json.dumps({"key": k, "value": dataclasses.asdict(value)}).encode()
        atomic_write(entry_path(cache_dir, config_path), _mac(secret, payload) + b"\n" + payload)
    except (OSError, ValueError, TypeError, AttributeError):
        pass


def _euid() -> int:
    """This process's effective user id (AttributeError where there is none: no cache)."""
    return os.geteuid()


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, _MAC_CONTEXT + payload, hashlib.sha256).hexdigest().encode()


def _trusted_dir(directory: Path) -> Path | None:
    """``directory`` if it is a real directory owned by this user that no one else may write."""
    try:
        st = os.lstat(directory)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != _euid() or st.st_mode & 0o022:
        return None
    return directory


def _make_dir(directory: Path) -> Path | None:
    """``directory``, created 0700 (its parent too) if missing; None if it is not trusted."""
    for d in (directory.parent, directory):
        if not d.exists():
            d.parent.mkdir(parents=True, exist_ok=True)
            try:
                d.mkdir(mode=0o700)
            except FileExistsError:
                pass
    return _trusted_dir(directory)


def _secret(directory: Path, *, create: bool) -> bytes | None:
    """This user's secret for MACs: a private regular file, made once (exclusively)."""
    path = directory / "secret"
    try:
        data = read_limited(path, _SECRET_BYTES, owner=_euid(), deny=0o077)
    except FileNotFoundError:
        if not create:
            return None
        try:
            create_exclusive(path, os.urandom(_SECRET_BYTES), mode=0o600)
        except FileExistsError:
            pass  # another process made it first
        data = read_limited(path, _SECRET_BYTES, owner=_euid(), deny=0o077)
    return data if len(data) == _SECRET_BYTES else None


def decode(tp: Any, value: Any) -> Any:
    """Rebuild a value of type ``tp`` (dataclasses, tuples, optionals, scalars) from the plain
    form :func:`dataclasses.asdict` gave. Raises on anything that does not fit."""
    origin = get_origin(tp)
    if origin in (Union, _pytypes.UnionType):
        if value is None:
            return None
        return decode(next(a for a in get_args(tp) if a is not type(None)), value)
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError(f"expected a mapping, got {type(value).__name__}")
        return {str(k): decode(get_args(tp)[1], v) for k, v in value.items()}
    if origin is tuple:
        item = get_args(tp)[0]
        return tuple(decode(item, v) for v in value)
    if origin is Literal:
        if value not in get_args(tp):
            raise ValueError(f"{value!r} is not one of {get_args(tp)}")
        return value
    if dataclasses.is_dataclass(tp):
        make: Any = tp  # a dataclass type, not an instance
        hints = get_type_hints(make)
        return make(**{k: decode(hints[k], v) for k, v in value.items()})
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, tp):
        return value
    raise TypeError(f"expected {tp.__name__}, got {type(value).__name__}")
