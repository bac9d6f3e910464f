"""What the commands share to reach the core: the configuration, provider names given on the
command line, the state store, and files written atomically."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .exits import UnknownProvider
from .output import Secrets, warn

if TYPE_CHECKING:
    from ..config import Config
    from ..protocols import StateStore


def load_config(path: str | None) -> Config:
    """The configuration (``--config``, else the usual places); its key variables are never
    printed from then on."""
    from ..config import key_env
    from ..config import load_config as load
    from ..paths import cache_dir

    cfg = load(path, cache_dir=cache_dir())
    Secrets.watch([key_env(p) for p in cfg.providers])
    return cfg


def check_names(config: Config, names: Sequence[str] | None, option: str) -> list[str] | None:
    """Provider names given with ``option``, without repeats; UnknownProvider (a usage error)
    for a name the chain does not have."""
    if not names:
        return None
    import difflib

    known = [p.name for p in config.providers]
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UnknownProvider(
                f"no provider named '{name}'{hint}; the chain has: {', '.join(known)}", option
            )
    return list(dict.fromkeys(names))


def state_location(option: str | None, config: Config) -> str | None:
    """``--state`` / $FAILOVER_STATE, else the configuration's state.url or state.path."""
    return option or config.state.url or config.state.path or None


def open_store(location: str | None) -> StateStore | None:
    """The state store, or None (with one warning) when it cannot be opened."""
    from ..errors import StateError
    from ..store import open_store as open_

    try:
        return open_(location, on_warning=warn)
    except StateError as exc:
        warn(f"state unavailable, continuing without it: {exc}")
        return None


def close_store(store: StateStore | None) -> None:
    from ..errors import StateError

    if store is not None:
        try:
            store.close()
        except StateError as exc:
            warn(str(exc))


def write_atomically(path: str, text: str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text`` atomically; a symbolic link or anything but a regular
    file at ``path`` is refused (OSError), never followed (see :mod:`failover_cli.fsutil`)."""
    from ..fsutil import atomic_write

    atomic_write(path, text.encode("utf-8"), mode=mode)
