"""State stores: where breaker state and latency history persist between invocations.

:func:`open_store` picks one from a path or URL. Each store is imported only when used, so
the JSON store never imports ``redis``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StateError

if TYPE_CHECKING:
    from ..protocols import StateStore
    from .jsonfile import JsonFileStore
    from .memory import MemoryStore
    from .redis import RedisStore

__all__ = ["JsonFileStore", "MemoryStore", "RedisStore", "default_state_path", "open_store"]

_REDIS_SCHEMES = ("redis://", "rediss://")
_LAZY = {"JsonFileStore": "jsonfile", "MemoryStore": "memory", "RedisStore": "redis"}


def default_state_path() -> Path:
    """``state.json`` in the user's state directory (``~/.local/state/failover`` on Linux)."""
    from ..paths import state_dir

    return state_dir() / "state.json"


def open_store(
    path_or_url: str | os.PathLike[str] | None = None,
    *,
    on_warning: Callable[[str], None] | None = None,
) -> StateStore:
    """The store for ``path_or_url``: ``None`` for the JSON file at the default location,
    ``redis://...`` or ``rediss://...`` for Redis, anything else for a JSON file there.

    Raises :class:`StateError` if a Redis server cannot be reached.
    """
    if path_or_url is None:
        from .jsonfile import JsonFileStore

        return JsonFileStore(default_state_path(), on_warning=on_warning)
    target = os.fspath(path_or_url)
    if not target.strip():
        raise StateError("empty state store path")
    if target.lower().startswith(_REDIS_SCHEMES):
        from .redis import RedisStore

        return RedisStore(target, on_warning=on_warning)
    from .jsonfile import JsonFileStore

    return JsonFileStore(target, on_warning=on_warning)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
