"""The user's config, state, cache and data directories for failover.

On Linux and the BSDs these follow the XDG base directory spec exactly as ``platformdirs``
does (``$XDG_CONFIG_HOME`` or ``~/.config``, ``$XDG_STATE_HOME`` or ``~/.local/state``,
``$XDG_CACHE_HOME`` or ``~/.cache``, ``$XDG_DATA_HOME`` or ``~/.local/share``, then
``failover``); importing platformdirs costs about 7 ms, paid by every ``failover ask`` that
finds its files in the default places. A test holds these equal to platformdirs' answers,
with one difference the spec asks for: a relative path in an ``XDG_*`` variable is invalid
and ignored (platformdirs would honour it, putting the configuration cache and its secret
wherever the command happens to run). macOS and Windows ask platformdirs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP = "failover"
_XDG = {
    "config": ("XDG_CONFIG_HOME", "~/.config"),
    "state": ("XDG_STATE_HOME", "~/.local/state"),
    "cache": ("XDG_CACHE_HOME", "~/.cache"),
    "data": ("XDG_DATA_HOME", "~/.local/share"),
}


def _user_dir(kind: str) -> Path:
    if sys.platform.startswith(("win", "darwin")):
        import platformdirs

        return getattr(platformdirs, f"user_{kind}_path")(APP)
    var, fallback = _XDG[kind]
    base = os.environ.get(var, "").strip()
    if not os.path.isabs(base):
        base = os.path.expanduser(fallback)
    return Path(base) / APP


def config_dir() -> Path:
    """Where ``providers.yaml`` is looked for after the working directory."""
    return _user_dir("config")


def state_dir() -> Path:
    """Where the default JSON state file lives."""
    return _user_dir("state")


def cache_dir() -> Path:
    """Where derived files that are safe to delete live (the parsed-configuration cache)."""
    return _user_dir("cache")


def data_dir() -> Path:
    """Where the user's own records live (the history database, ``history.db``)."""
    return _user_dir("data")
