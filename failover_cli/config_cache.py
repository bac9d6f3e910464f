"""A cache of validated configurations, so a run whose ``providers.yaml`` has not changed
neither imports PyYAML (about 11 ms, a tenth of a one-shot ``failover ask``) nor parses it.

Entries are keyed by content, not by modification time: the key hashes the file's bytes with a
fingerprint of everything else that shapes the result (failover's version, the defaults and
the bounds), so an entry can never be stale. One JSON file per configuration path, mode 0600;
an entry that cannot be read or decoded is ignored and rewritten. Only valid configurations
are cached: errors are always reported from the YAML itself, with lines.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import types as _pytypes
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

FORMAT = 1


def key(content: bytes, fingerprint: str) -> str:
    return hashlib.sha256(f"{FORMAT}\0{fingerprint}\0".encode() + content).hexdigest()


def entry_path(cache_dir: Path, config_path: Path) -> Path:
    name = hashlib.sha256(os.fsencode(os.path.abspath(config_path))).hexdigest()[:32]
    return cache_dir / "config" / f"{name}.json"


def read(cache_dir: Path, config_path: Path, want: str, cls: type) -> Any:
    """The cached ``cls`` for ``config_path`` if its key is ``want``; else None."""
    try:
        with open(entry_path(cache_dir, config_path), "rb") as f:
            entry = json.loads(f.read())
        if entry["key"] != want:
            return None
        return decode(cls, entry["value"])
    except Exception:  # missing, unreadable, or written by another version: parse again
        return None


def write(cache_dir: Path, config_path: Path, k: str, value: Any) -> None:
    """Store ``value`` (a dataclass) under key ``k``; failures are silent (it is a cache)."""
    target = entry_path(cache_dir, config_path)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = json.dumps({"key": k, "value": dataclasses.asdict(value)}).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def decode(tp: Any, value: Any) -> Any:
    """Rebuild a value of type ``tp`` (dataclasses, tuples, optionals, scalars) from the plain
    form :func:`dataclasses.asdict` gave. Raises on anything that does not fit."""
    origin = get_origin(tp)
    if origin in (Union, _pytypes.UnionType):
        if value is None:
            return None
        return decode(next(a for a in get_args(tp) if a is not type(None)), value)
    if origin is tuple:
        item = get_args(tp)[0]
        return tuple(decode(item, v) for v in value)
    if origin is Literal:
        if value not in get_args(tp):
            raise ValueError(f"{value!r} is not one of {get_args(tp)}")
        return value
    if dataclasses.is_dataclass(tp):
        hints = get_type_hints(tp)
        return tp(**{k: decode(hints[k], v) for k, v in value.items()})
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, tp):
        return value
    raise TypeError(f"expected {tp.__name__}, got {type(value).__name__}")
